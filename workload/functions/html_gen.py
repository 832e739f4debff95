"""Benchmark function ``html-gen``: render an HTML report of generated records with a Jinja2 template.

Parameters: ``rows`` (default 2000), ``seed`` (default 0). Dependency: ``jinja2`` (PyPI).
"""

import hashlib
import random

from jinja2 import Environment

# Compiled once per container: template compilation is part of the cold start.
_TEMPLATE = Environment(autoescape=True).from_string(
    """<!doctype html>
<html><head><title>{{ title }}</title></head>
<body>
<h1>{{ title }}</h1>
<p>{{ rows|length }} orders, total {{ "%.2f"|format(total) }} EUR.</p>
<table>
<tr><th>#</th><th>customer</th><th>email</th><th>item</th><th>amount</th><th>status</th></tr>
{% for row in rows %}<tr class="{{ loop.cycle('odd', 'even') }}"><td>{{ loop.index }}</td><td>{{ row.name }}</td>
<td><a href="mailto:{{ row.email }}">{{ row.email }}</a></td><td>{{ row.item }}</td>
<td>{{ "%.2f"|format(row.amount) }}</td><td>{% if row.paid %}paid{% else %}<b>open</b>{% endif %}</td></tr>
{% endfor %}</table>
</body></html>
"""
)
_FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Leslie"]
_LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Lamport"]
_ITEMS = ["<keyboard>", "mouse & pad", "monitor", "cable", "dock", "headset", "webcam", "\"chair\""]


def main(args):
    n = int(args.get("rows", 2000))
    if not (0 <= n <= 1_000_000):
        return {"error": f"rows must be in [0, 1000000], got {n}"}
    rng = random.Random(int(args.get("seed", 0)))
    rows = []
    for _ in range(n):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        rows.append(
            {
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}@example.org",
                "item": rng.choice(_ITEMS),
                "amount": rng.uniform(1, 500),
                "paid": rng.random() < 0.7,
            }
        )
    html = _TEMPLATE.render(title="Orders", rows=rows, total=sum(r["amount"] for r in rows))
    return {"rows": n, "html_bytes": len(html), "sha256": hashlib.sha256(html.encode()).hexdigest()}
