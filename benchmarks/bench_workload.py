"""Workload timings: reading the 2019 excerpt, generating its arrivals, reading a synthetic full day.

Run: ``python benchmarks/bench_workload.py [--full-day-functions N] [--repeat R]``. Prints a table.
The full-day file is synthetic (random counts in the original layout, 1,440 minute columns) and is
written to a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from workload.arrivals import ArrivalStream
from workload.azure2019 import load_trace, read_invocations
from workload.sampler import sample_workload

EXCERPT = Path(__file__).resolve().parents[1] / "data" / "azure-functions-2019-sample"


def best_of(repeat: int, action) -> tuple[float, object]:
    best = float("inf")
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - started)
    return best, result


def drain(stream: ArrivalStream, window_s: float) -> int:
    return sum(window.times_s.size for window in stream.windows(window_s))


def write_full_day(folder: Path, n_functions: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path = folder / "invocations_per_function_md.anon.d01.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write("HashOwner,HashApp,HashFunction,Trigger," + ",".join(str(m) for m in range(1, 1441)) + "\n")
        for start in range(0, n_functions, 1000):
            block = rng.poisson(
                rng.choice([0.01, 0.3, 3.0, 50.0], size=(min(1000, n_functions - start), 1)),
                size=(min(1000, n_functions - start), 1440),
            )
            for offset, row in enumerate(block):
                i = start + offset
                out.write(f"o{i % 997},a{i // 4},f{i},http," + ",".join(map(str, row.tolist())) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--full-day-functions",
        type=int,
        default=5000,
        help="functions in the synthetic full-day file (the real day has ~46,000)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the best time is reported")
    args = parser.parse_args()

    table = Table(title=f"workload/ timings (best of {args.repeat})")
    for column in ("what", "amount", "time (s)", "rate"):
        table.add_column(column, justify="right" if column != "what" else "left")

    seconds, trace = best_of(args.repeat, lambda: load_trace(EXCERPT))
    table.add_row(
        "load 2019 excerpt (3 files)", f"{trace.invocations.n_functions} functions", f"{seconds:.3f}", ""
    )

    workload = sample_workload(trace, 400, seed=0)
    for mode in ("poisson", "equidistant"):
        for window_s in (10.0, 60.0 * 480):
            seconds, n = best_of(
                args.repeat,
                lambda m=mode, w=window_s: drain(ArrivalStream(workload.functions, mode=m, seed=1), w),
            )
            table.add_row(
                f"arrivals, {mode}, {window_s:g}-s windows, 480 min",
                f"{n:,} arrivals",
                f"{seconds:.3f}",
                f"{n / seconds / 1e6:.1f} M/s",
            )

    with tempfile.TemporaryDirectory() as folder:
        path = write_full_day(Path(folder), args.full_day_functions, seed=0)
        size_mb = path.stat().st_size / 1e6
        seconds, counts = best_of(
            1, lambda: read_invocations(path, lambda row: row.key.function.endswith("7"))
        )
        table.add_row(
            f"read synthetic full day ({size_mb:.0f} MB), keep 10%",
            f"{counts.rows_in_file:,} x 1440",
            f"{seconds:.2f}",
            f"{counts.rows_in_file / seconds:,.0f} rows/s",
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table.add_row("peak resident memory of this process", "", "", f"{peak_mb:.0f} MB")
    Console().print(table)


if __name__ == "__main__":
    main()
