"""The paper's 12 benchmark functions as OpenWhisk Python actions (Appendix E of the paper).

Each module in this package is a self-contained action: one file, a ``main(args) -> dict``, inputs
generated from a seed inside the function (no network, no data files). Its source text is what gets
deployed (``exec.code`` of kind ``python:3``), to localwhisk or to a real OpenWhisk whose Python
runtime has the listed dependencies.

``FUNCTIONS`` is the catalogue: name (as in ``workload/profiles.py``), module, memory limit, the
resource the function mostly stresses, and its PyPI dependencies. ``python -m workload.functions.solo``
measures each one's solo latency through any OpenWhisk-compatible API.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BenchmarkFunction:
    """One benchmark function and how to deploy it."""

    name: str
    """Action name, lower case with hyphens (the profile name in ``workload/profiles.py``)."""
    module: str
    """Module file in this package holding the action's source (without ``.py``)."""
    memory_mb: int
    """Memory limit to deploy with, MB: OpenWhisk's default 256 unless the function needs more."""
    stresses: str
    """What the function mostly uses: ``cpu``, ``memory``, ``io`` or ``data`` (the paper's mix)."""
    dependencies: tuple[str, ...]
    """PyPI distributions the action imports beyond the standard library."""
    timeout_ms: int = 60_000
    """Time limit to deploy with, ms (OpenWhisk's default)."""

    @property
    def path(self) -> Path:
        return _HERE / f"{self.module}.py"

    def source(self) -> str:
        """The action's code, as sent in ``exec.code``."""
        return self.path.read_text()

    def action_body(self, **parameters: Any) -> dict[str, Any]:
        """An OpenWhisk ``ActionPut`` body; ``parameters`` become the action's default parameters."""
        return {
            "exec": {"kind": "python:3", "code": self.source()},
            "limits": {"memory": self.memory_mb, "timeout": self.timeout_ms},
            "parameters": [{"key": k, "value": v} for k, v in parameters.items()],
            "annotations": [{"key": "description", "value": f"mfrm benchmark function {self.name}"}],
        }


FUNCTIONS: dict[str, BenchmarkFunction] = {
    f.name: f
    for f in (
        BenchmarkFunction("base64", "base64_codec", 256, "cpu", ()),
        BenchmarkFunction("primes", "primes", 256, "cpu", ()),
        BenchmarkFunction("markdown2html", "markdown2html", 256, "cpu", ("markdown",)),
        BenchmarkFunction("sentiment-analysis", "sentiment_analysis", 256, "cpu", ("vaderSentiment",)),
        BenchmarkFunction("image-resize", "image_resize", 256, "memory", ("Pillow",)),
        BenchmarkFunction("html-gen", "html_gen", 256, "cpu", ("jinja2",)),
        BenchmarkFunction("uploader", "uploader", 256, "io", ()),
        BenchmarkFunction("compression", "compression", 256, "cpu", ()),
        BenchmarkFunction("image-inference", "image_inference", 512, "memory", ("torch",)),
        BenchmarkFunction("page-rank", "page_rank", 256, "data", ("networkx", "scipy")),
        BenchmarkFunction("graph-bfs", "graph_bfs", 256, "data", ("networkx",)),
        BenchmarkFunction("graph-mst", "graph_mst", 256, "data", ("networkx",)),
    )
}


def get(name: str) -> BenchmarkFunction:
    """The function called ``name``; the error lists the known names."""
    try:
        return FUNCTIONS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark function {name!r}; known: {', '.join(FUNCTIONS)}") from None


__all__ = ["FUNCTIONS", "BenchmarkFunction", "get"]
