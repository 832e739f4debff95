"""Cost of one page of ``GET .../activations`` against the number of records localwhisk holds.

Run: ``python benchmarks/bench_activation_listing.py [--sizes 1000 10000 100000 1000000] [--repeat R]``.
Prints a table of microseconds per page (best of R) and per record added to a full store for the pages a daemon and a user ask for, with
the store indexed by start time (:class:`localwhisk.store.ActivationStore`) and, for comparison, a
full filter-and-sort of every record (what a listing cost before the index).

Records arrive at 400 per second over 12 actions, with starts a little out of order (a record's
start is its arrival plus its wait), as under the load of a trace replay.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from localwhisk.store import MAX_LIST_LIMIT, ActivationStore

RATE_PER_S = 400
ACTIONS = tuple(f"action-{i}" for i in range(12))


def fill(size: int, seed: int) -> tuple[ActivationStore, list[dict[str, Any]]]:
    rng = random.Random(seed)
    store = ActivationStore(capacity=size)
    records = []
    for i in range(size):
        start = 1_700_000_000_000 + i * 1000 // RATE_PER_S + rng.randint(0, 200)
        record = {"activationId": f"{i:032x}", "namespace": "guest", "name": rng.choice(ACTIONS), "start": start}
        store.add(record)
        records.append(record)
    return store, records


def full_scan(records: list[dict[str, Any]], name: str | None, since: int | None, upto: int | None, skip: int) -> list[Any]:
    """The listing without an index: filter every record, sort, slice."""
    chosen = [
        (r["start"], i, r) for i, r in enumerate(records)
        if (name is None or r["name"] == name) and (since is None or r["start"] >= since) and (upto is None or r["start"] <= upto)
    ]
    chosen.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return chosen[skip:skip + MAX_LIST_LIMIT]


def best_us(repeat: int, action: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best * 1e6


def row(size: int, repeat: int, seed: int, scan: bool) -> list[str]:
    """One line of the table: a store of ``size`` records."""
    store, records = fill(size, seed)
    last = records[-1]["start"]
    since, upto = last - 2_000, last
    cells = [
        best_us(repeat, lambda: store.list("guest", limit=MAX_LIST_LIMIT)),
        best_us(repeat, lambda: store.list("guest", since_ms=since, upto_ms=upto, limit=MAX_LIST_LIMIT)),
        best_us(repeat, lambda: store.list("guest", skip=size // 2, limit=MAX_LIST_LIMIT)),
        best_us(repeat, lambda: store.list("guest", name=ACTIONS[0], limit=MAX_LIST_LIMIT)),
    ]
    scanned = f"{best_us(max(repeat // 10, 1), lambda: full_scan(records, None, since, upto, 0)):,.0f}" if scan else "–"
    # Records added to a full store: two batches of drops at least (ActivationStore's docstring).
    count = max(5_000, 2 * (size // 100))
    extra = [r | {"activationId": f"x{i:031x}", "start": last + 1 + i} for i, r in enumerate(records[:count])]
    started = time.perf_counter()
    for record in extra:
        store.add(record)
    add_us = (time.perf_counter() - started) / len(extra) * 1e6
    return [f"{size:,}", f"{add_us:.1f}", *(f"{c:,.1f}" for c in cells), scanned]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--scan-up-to", type=int, default=100_000, help="largest store also timed with a full scan")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    table = Table(title=f"µs per page of {MAX_LIST_LIMIT} (best of {args.repeat})")
    for column in ("records", "add at capacity", "newest page", "tick window (2 s)", "deep page (skip n/2)", "one action",
                   "full scan, tick window"):
        table.add_column(column, justify="right")
    for size in args.sizes:
        table.add_row(*row(size, args.repeat, args.seed, scan=size <= args.scan_up_to))
    Console().print(table)


if __name__ == "__main__":
    main()
