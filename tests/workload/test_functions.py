"""The 12 benchmark functions: each computes the right thing on small inputs, and each runs as an
action on a real localwhisk."""

from __future__ import annotations

import hashlib
import importlib
import random
from pathlib import Path
from types import ModuleType
from typing import Any

import markdown
import networkx as nx
import pytest

from localwhisk.clock import ManualClock
from localwhisk.testing import annotation, running_platform
from workload.functions import FUNCTIONS, get

PAPER_FUNCTIONS = [
    "base64", "primes", "markdown2html", "sentiment-analysis", "image-resize", "html-gen",
    "uploader", "compression", "image-inference", "page-rank", "graph-bfs", "graph-mst",
]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"workload.functions.{get(name).module}")


def test_the_catalogue_has_the_papers_twelve_functions() -> None:
    assert list(FUNCTIONS) == PAPER_FUNCTIONS
    for function in FUNCTIONS.values():
        assert "def main(args)" in function.source(), function.name


def test_an_unknown_function_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="graph-bfs"):
        get("fibonacci")


def test_an_action_body_is_an_openwhisk_python_action_with_limits() -> None:
    body = get("image-inference").action_body(resolution=96)
    assert body["exec"]["kind"] == "python:3" and "def main(args)" in body["exec"]["code"]
    assert body["limits"] == {"memory": 512, "timeout": 60_000}
    assert body["parameters"] == [{"key": "resolution", "value": 96}]


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("base64", {"size_bytes": 1000, "rounds": 2}, {"size_bytes": 1000, "encoded_bytes": 1336, "rounds": 2}),
        ("primes", {"limit": 100}, {"limit": 100, "count": 25, "largest": 97}),
        ("primes", {"limit": 2}, {"limit": 2, "count": 0, "largest": None}),
        ("sentiment-analysis", {"text": "I love this, it is great. I hate it, it is awful."},
         {"sentences": 2, "positive": 1, "negative": 1, "neutral": 0}),
        ("compression", {"files": 2, "file_bytes": 10_000}, {"files": 2, "raw_bytes": 20_000}),
        ("graph-bfs", {"nodes": 100, "edges_per_node": 2}, {"nodes": 100, "reached": 100}),
        ("graph-mst", {"nodes": 100, "edges_per_node": 3}, {"nodes": 100, "tree_edges": 99}),
        ("page-rank", {"nodes": 60, "edges_per_node": 2, "top": 3}, {"nodes": 60}),
    ],
    ids=["base64", "primes-below-100", "primes-below-2", "sentiment", "compression", "bfs", "mst", "page-rank"],
)
def test_a_function_computes_the_known_answer(name: str, args: dict[str, Any], expected: dict[str, Any]) -> None:
    result = _module(name).main(args)
    assert {k: result[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("base64", {"size_bytes": 0}),
        ("primes", {"limit": 10_000_001}),
        ("image-resize", {"width": 8}),
        ("graph-bfs", {"nodes": 10, "source": 10}),
        ("image-inference", {"resolution": 8}),
    ],
    ids=["base64-empty", "primes-too-large", "image-too-small", "bfs-source-outside", "inference-too-small"],
)
def test_a_function_reports_bad_input_as_an_application_error(name: str, args: dict[str, Any]) -> None:
    assert "error" in _module(name).main(args)


def test_markdown_is_rendered_to_the_html_the_markdown_package_gives() -> None:
    text = "# Title\n\nSome *emphasis* and a [link](https://example.org).\n"
    result = _module("markdown2html").main({"text": text})
    html = markdown.markdown(text, extensions=["tables", "fenced_code"])
    assert result["sha256"] == hashlib.sha256(html.encode()).hexdigest()
    assert result["html_bytes"] == len(html)


@pytest.mark.parametrize("name", ["html-gen", "markdown2html", "base64", "compression"])
def test_generated_inputs_depend_only_on_the_seed(name: str) -> None:
    main = _module(name).main
    small = {"rows": 20, "sections": 2, "size_bytes": 5000, "files": 1, "file_bytes": 4000}
    assert main(small | {"seed": 1}) == main(small | {"seed": 1})
    assert main(small | {"seed": 1}) != main(small | {"seed": 2})


def test_image_resize_makes_each_thumbnail_at_its_size() -> None:
    result = _module("image-resize").main({"width": 64, "height": 48, "sizes": [[32, 24], [16, 12]]})
    assert [(t["width"], t["height"]) for t in result["thumbnails"]] == [(32, 24), (16, 12)]
    assert all(t["jpeg_bytes"] > 0 for t in result["thumbnails"])


def test_the_uploader_writes_the_object_and_keeps_only_the_newest(tmp_path: Path) -> None:
    main = _module("uploader").main
    results = [main({"size_bytes": 1000, "dest_dir": str(tmp_path), "max_objects": 2, "seed": i}) for i in range(3)]
    stored = sorted(p.name for p in tmp_path.iterdir())
    assert len(stored) == 2 and results[-1]["key"] in stored
    data = (tmp_path / results[-1]["key"]).read_bytes()
    assert len(data) == 1000 and hashlib.sha256(data).hexdigest() == results[-1]["sha256"]


def test_the_spanning_tree_weighs_what_prims_algorithm_finds() -> None:
    result = _module("graph-mst").main({"nodes": 200, "edges_per_node": 3, "seed": 5})
    graph = nx.barabasi_albert_graph(200, 3, seed=5)
    rng = random.Random(6)
    for u, v in graph.edges():
        graph[u][v]["weight"] = rng.random()
    prim = nx.minimum_spanning_tree(graph, algorithm="prim")
    assert result["total_weight"] == pytest.approx(prim.size(weight="weight"))


def test_page_ranks_sum_to_one() -> None:
    result = _module("page-rank").main({"nodes": 300})
    assert result["rank_sum"] == pytest.approx(1.0)
    ranks = [entry["rank"] for entry in result["top"]]
    assert ranks == sorted(ranks, reverse=True)


def test_every_function_runs_as_an_action_on_localwhisk(tmp_path: Path) -> None:
    """Deploy all 12 from the catalogue and invoke each once (a cold start each: about 10 s in all,
    most of it importing torch for image-inference)."""
    expected_key = {
        "base64": "encoded_bytes", "primes": "count", "markdown2html": "html_bytes",
        "sentiment-analysis": "mean_compound", "image-resize": "thumbnails", "html-gen": "html_bytes",
        "uploader": "sha256", "compression": "ratio", "image-inference": "top5", "page-rank": "top",
        "graph-bfs": "reached", "graph-mst": "total_weight",
    }
    failures = []
    with running_platform(tmp_path / "state", clock=ManualClock()) as (_, client):
        for function in FUNCTIONS.values():
            status, body = client.put_action(function.name, **function.action_body())
            assert status == 200, body
            params = {"dest_dir": str(tmp_path / "bucket")} if function.name == "uploader" else {}
            status, record = client.invoke(function.name, params, blocking=True)
            if status != 200 or expected_key[function.name] not in record["response"]["result"]:
                failures.append((function.name, status, record))
            elif annotation(record, "initTime") is None:
                failures.append((function.name, "not a cold start", record))
    assert not failures
