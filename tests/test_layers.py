"""The layering of DESIGN.md, checked on the source: ``policies/`` is pure.

import-linter (run by .ci/run) checks the package graph; this test also catches what a graph cannot:
a clock read through an attribute (``time.time()``) or a function-local import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Modules whose import from policies/ would mean I/O, HTTP, a cluster client or a clock.
FORBIDDEN_IN_POLICIES = {
    "requests", "httpx", "aiohttp", "urllib", "urllib3", "http", "socket", "docker", "kubernetes",
    "prometheus_client", "time", "datetime", "subprocess", "controller", "simulator", "workload",
}


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


POLICY_FILES = sorted((ROOT / "policies").rglob("*.py"))


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_policies_import_no_cluster_client_http_or_clock(path: Path) -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for line, name in _imported_modules(path)
        if name.split(".")[0] in FORBIDDEN_IN_POLICIES
    ]
    assert not offending, "\n".join(offending)


def test_the_layer_check_itself_flags_a_forbidden_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nfrom time import monotonic\nimport requests.adapters\n")
    names = {name.split(".")[0] for _, name in _imported_modules(probe)}
    assert names & FORBIDDEN_IN_POLICIES == {"time", "requests"}


def test_policies_is_importable_without_cluster_clients() -> None:
    # Run in a fresh interpreter so modules imported by other tests do not hide a dependency.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import policies.types, policies.registry\n"
        "bad = [m for m in ('requests', 'docker', 'kubernetes', 'prometheus_client') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == ""
