"""Load a script of ``benchmarks/`` as a module, for the tests of its functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def script(name: str) -> Path:
    """The path of ``benchmarks/<name>.py``."""
    return ROOT / "benchmarks" / f"{name}.py"


def load(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` run as module ``name``; registered under that name first, so that what looks
    its module up by name while it loads (a dataclass, for one) finds it."""
    spec = importlib.util.spec_from_file_location(name, script(name))
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return sys.modules[name]
