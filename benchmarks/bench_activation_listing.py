"""Cost of one page of ``GET .../activations`` against the number of records localwhisk holds.

Run: ``python benchmarks/bench_activation_listing.py [--sizes 1000 10000 100000 1000000] [--repeat R]``.
Prints, for each store size, microseconds per page of 200 (best of R) for the pages a daemon and a
user ask for, from the store indexed by start time (:class:`localwhisk.store.ActivationStore`); the
same window by a full filter-and-sort of every record (what a listing cost before the index); one
page over HTTP from a running platform (JSON encoding included); and microseconds per record added
to a full store.

Records arrive at 400 per second over 12 actions, with starts a little out of order (a record's
start is its arrival plus its wait), as under the load of a trace replay.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from localwhisk.actions import ActionLimits
from localwhisk.store import MAX_LIST_LIMIT, ActivationStore
from localwhisk.testing import running_platform

RATE_PER_S = 400
ACTIONS = tuple(f"action-{i}" for i in range(12))
ORIGIN_MS = 1_700_000_000_000


def make_records(size: int, seed: int) -> list[dict[str, Any]]:
    """Activation records shaped as the platform keeps them (about 600 bytes of JSON each)."""
    rng = random.Random(seed)
    limits = ActionLimits(60_000, 256, 10, 1).to_json()
    records = []
    for i in range(size):
        start = ORIGIN_MS + i * 1000 // RATE_PER_S + rng.randint(0, 200)
        name = rng.choice(ACTIONS)
        records.append({
            "namespace": "guest", "name": name, "version": "0.0.1", "publish": False, "subject": "guest",
            "activationId": f"{i:032x}", "start": start, "end": start + 25, "duration": 25, "statusCode": 0,
            "response": {"status": "success", "statusCode": 0, "success": True, "result": {"n": i}, "size": 12},
            "logs": [],
            "annotations": [{"key": "path", "value": f"guest/{name}"}, {"key": "waitTime", "value": 3},
                            {"key": "kind", "value": "python:3"}, {"key": "timeout", "value": False},
                            {"key": "limits", "value": limits}],
        })
    return records


def full_scan(records: list[dict[str, Any]], since: int, upto: int) -> list[Any]:
    """The listing without an index: filter every record, sort, slice."""
    chosen = [(r["start"], i, r) for i, r in enumerate(records) if since <= r["start"] <= upto]
    chosen.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return chosen[:MAX_LIST_LIMIT]


def best_us(repeat: int, action: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best * 1e6


def over_http(records: list[dict[str, Any]], since: int, upto: int, repeat: int) -> float:
    """One page of the window through a running platform's REST API."""
    with tempfile.TemporaryDirectory() as state, running_platform(
        Path(state), cgroups="off", max_stored_activations=len(records)
    ) as (whisk, client):
        for record in records:
            whisk.platform.activations.add(record)
        path = f"/api/v1/namespaces/_/activations?since={since}&upto={upto}&limit={MAX_LIST_LIMIT}"
        return best_us(repeat, lambda: client.request("GET", path))


def row(size: int, repeat: int, seed: int, scan: bool) -> list[str]:
    """One line of the table: a store of ``size`` records."""
    records = make_records(size, seed)
    store = ActivationStore(capacity=size)
    for record in records:
        store.add(record)
    last = records[-1]["start"]
    since, upto = last - 2_000, last
    cells = [
        best_us(repeat, lambda: store.list("guest", limit=MAX_LIST_LIMIT)),
        best_us(repeat, lambda: store.list("guest", since_ms=since, upto_ms=upto, limit=MAX_LIST_LIMIT)),
        best_us(repeat, lambda: store.list("guest", skip=size // 2, limit=MAX_LIST_LIMIT)),
        best_us(repeat, lambda: store.list("guest", name=ACTIONS[0], limit=MAX_LIST_LIMIT)),
    ]
    slow = [best_us(max(repeat // 10, 1), lambda: full_scan(records, since, upto)),
            over_http(records, since, upto, repeat)] if scan else []
    # Records added to a full store: two batches of drops at least (ActivationStore's docstring).
    count = max(5_000, 2 * (size // 100))
    extra = [r | {"activationId": f"x{i:031x}", "start": last + 1 + i} for i, r in enumerate(records[:count])]
    started = time.perf_counter()
    for record in extra:
        store.add(record)
    add_us = (time.perf_counter() - started) / len(extra) * 1e6
    return [f"{size:,}", *(f"{c:,.1f}" for c in cells), *(f"{c:,.0f}" for c in slow), *(["–", "–"] if not scan else []),
            f"{add_us:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--scan-up-to", type=int, default=100_000,
                        help="largest store also timed by a full scan and over HTTP")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    table = Table(title=f"µs per page of {MAX_LIST_LIMIT} (best of {args.repeat}), µs per record added")
    for column in ("records", "newest page", "2 s window", "skip n/2", "one action", "2 s window, full scan",
                   "2 s window, HTTP", "add to a full store"):
        table.add_column(column, justify="right")
    for size in args.sizes:
        table.add_row(*row(size, args.repeat, args.seed, scan=size <= args.scan_up_to))
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
