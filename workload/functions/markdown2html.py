"""Benchmark function ``markdown2html``: render a generated Markdown document to HTML.

Parameters: ``sections`` (default 60: each a heading, paragraphs with emphasis and links, a list, a
table and a code block), ``seed`` (default 0), or ``text`` to render a given document instead.
Dependency: ``markdown`` (PyPI).
"""

import hashlib
import random

import markdown

_WORDS = ["serverless", "function", "container", "invoker", "latency", "throughput", "cache", "cold", "warm", "pool", "share", "memory", "trace", "arrival", "policy", "agent", "reward", "critic", "actor", "population", "equilibrium", "cluster", "queue"]


def _document(sections, rng):
    parts = []
    for s in range(sections):
        words = lambda n: " ".join(rng.choice(_WORDS) for _ in range(n))
        parts.append(f"## Section {s}: {words(3)}\n")
        for _ in range(3):
            parts.append(f"{words(20)} *{words(2)}* and **{words(2)}** with a [link](https://example.org/{s}) {words(10)}.\n")
        parts.extend(f"- {words(6)}\n" for _ in range(5))
        parts.append("\n| key | value | count |\n|---|---|---|\n")
        parts.extend(f"| {rng.choice(_WORDS)} | {words(2)} | {rng.randint(0, 999)} |\n" for _ in range(4))
        parts.append(f"\n```\nfor i in range({rng.randint(1, 99)}):\n    print('{rng.choice(_WORDS)}', i)\n```\n\n")
    return "".join(parts)


def main(args):
    text = args.get("text")
    if text is None:
        sections = int(args.get("sections", 60))
        if not (1 <= sections <= 100_000):
            return {"error": f"sections must be in [1, 100000], got {sections}"}
        text = _document(sections, random.Random(int(args.get("seed", 0))))
    html = markdown.markdown(text, extensions=["tables", "fenced_code"])
    return {"markdown_bytes": len(text), "html_bytes": len(html), "sha256": hashlib.sha256(html.encode()).hexdigest()}
