"""The layering of docs/architecture.md, checked on the source: ``policies/`` is pure.

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


# --------------------------------------------------------------------------------------------
# private names stay private; no import cycles
# --------------------------------------------------------------------------------------------

PACKAGES = ("policies", "mfg", "simulator", "workload", "controller", "localwhisk")
PROJECT_FILES = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))
BENCHMARK_FILES = sorted((ROOT / "benchmarks").glob("*.py"))


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(path: Path) -> list[str]:
    """Imports in ``path`` of a project module's underscore name, or of a private module from outside
    the package that holds it. ``from simulator import _core`` inside ``simulator`` is the package's
    own business; ``from controller.runner import _helper`` is reaching into another module."""
    own = _module_of(path)
    own_package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                # A package may share a private module or name among its own modules.
                if _is_private(alias.name) and node.module != own_package:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{alias.name}")
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names if alias.name.split(".")[0] in PACKAGES]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            for depth, part in enumerate(parts):
                if _is_private(part):
                    holder = ".".join(parts[:depth])
                    if own_package != holder and not own_package.startswith(holder + "."):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports private module {module}")
                    break
    return found


@pytest.mark.parametrize("path", PROJECT_FILES + BENCHMARK_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_another_modules_underscore_name(path: Path) -> None:
    assert private_imports(path) == []


def test_the_private_name_check_flags_reaching_into_another_module(tmp_path: Path) -> None:
    probe = ROOT / "controller" / "probe_private_imports.py"
    source = ("from controller.loop import _pad\n"
              "from simulator._core import advance\n"
              "import policies.baselines._common\n"
              "from controller.loop import ControlLoop\n")
    try:
        probe.write_text(source, encoding="utf-8")
        found = private_imports(probe)
    finally:
        probe.unlink()
    assert len(found) == 3, found


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (the import cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return out


def test_no_import_cycle_between_any_two_modules() -> None:
    # grimp (import-linter's graph builder) counts every import, including ones inside functions
    # and under TYPE_CHECKING. A package's __init__ re-exporting its own modules is not a cycle of
    # dependencies, so edges from a package to its own descendants are left out.
    import grimp

    graph = grimp.build_graph(*PACKAGES)
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        if module.split(".")[0] not in PACKAGES:
            continue
        edges[module] = {
            target for target in graph.find_modules_directly_imported_by(module)
            if target.split(".")[0] in PACKAGES and not target.startswith(module + ".")
        }
    assert _strongly_connected(edges) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
