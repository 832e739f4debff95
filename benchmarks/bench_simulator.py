"""Throughput of the simulated cluster (simulator/), printed as a table.

Two scenarios, both on the paper's cluster (21 invokers x 8 cores, 2048 MB user memory each):

1. ``control-loop``: the 12 benchmark functions (``workload.profiles.BENCHMARK_PROFILES``) under
   Poisson arrivals whose rates give every function the same offered CPU load and the cluster a
   mean offered load of ``--load`` (default 50%) of its cores; 10-s ticks, and between ticks a
   cheap square-root-staffing rule sets every function's pool and alternates its CPU shares, as a
   controller would. Measured: invocations per wall-clock second over advance + tick_stats +
   drain_records + the knob calls. Target: >= 200,000 /s.
2. ``azure-8h``: the whole 8-hour excerpt of the Azure Functions 2019 trace (400 functions,
   ``data/azure-functions-2019-sample``) under OpenWhisk's default behaviour (no knob touched),
   profiles from each function's own duration and memory percentiles, arrival times spread
   uniformly at random inside each trace minute (seeded), 10-s ticks with tick statistics and no
   kept records. Targets: < 120 s wall time, < 2 GB peak memory.
3. ``azure-8h-greedy-dual``: the same replay on FaasCache's Greedy-Dual keep-alive (no idle
   timeout) with idle containers capped at half of each invoker's memory, reading the exact
   cost totals (``Cluster.totals``) every tick as well. Same targets.

Both replays end with the run's memory held and idle memory (GB-s) and cold starts, from the
exact totals, so the two keep-alive platforms can be compared at a glance.

The JIT warm-up (compiling the numba core, or loading it from numba's on-disk cache) is timed
separately and kept out of the rates. ``--cold-cache`` points numba at an empty cache directory so
that the warm-up includes a full compilation.

    python benchmarks/bench_simulator.py [--quick] [--cold-cache]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TRACE_DIR = REPO / "data" / "azure-functions-2019-sample"
TICK_S = 10.0


def _poisson_tick(rng: np.random.Generator, rates: np.ndarray, t0: float) -> tuple[np.ndarray, np.ndarray]:
    counts = rng.poisson(rates * TICK_S)
    fn = np.repeat(np.arange(rates.size), counts)
    times = rng.uniform(t0, t0 + TICK_S, fn.size)
    order = np.argsort(times, kind="stable")
    return times[order], fn[order]


def jit_warmup() -> float:
    """Wall time of the first (tiny) simulation in this process: numba compile or cache load."""
    from simulator import Cluster, ClusterConfig
    from workload.profiles import FunctionProfile

    start = time.perf_counter()
    profile = FunctionProfile("warmup", 256, 0.1, 0.3, 0.5, cpu_fraction=0.5)
    cluster = Cluster(ClusterConfig(invokers=2, cores=1), [profile], slo_s=[1.0], seed=0)
    cluster.advance(5.0, np.array([0.0, 0.1, 0.2]), np.array([0, 0, 0]))
    cluster.set_pool(0, 2)
    cluster.set_cpu_shares(0, 512)
    cluster.tick_stats()
    cluster.drain_records()
    return time.perf_counter() - start


def control_loop(ticks: int, load: float, seed: int) -> dict[str, float]:
    from simulator import Cluster, ClusterConfig
    from workload.profiles import BENCHMARK_PROFILES

    profiles = list(BENCHMARK_PROFILES.values())
    config = ClusterConfig()
    cpu_per_invocation = np.array([p.exec_mean_s * p.cpu_fraction * p.max_cores for p in profiles])
    rates = load * config.invokers * config.cores / len(profiles) / cpu_per_invocation
    rng = np.random.default_rng(seed)
    cluster = Cluster(config, profiles, slo_s=[1.15 * p.exec_p99_s for p in profiles], seed=seed)
    invocations = 0
    completions = 0
    busy = 0.0
    for k in range(ticks):
        times, fns = _poisson_tick(rng, rates, k * TICK_S)
        start = time.perf_counter()
        cluster.advance((k + 1) * TICK_S, times, fns)
        stats = cluster.tick_stats()
        completions += cluster.drain_records().size
        # Square-root staffing on the observed load (ENSURE's rule), shares alternating 128/256.
        work = stats.functions.arrivals / TICK_S * np.nan_to_num(stats.functions.mean_exec_s, nan=0.1)
        pools = np.maximum(np.ceil(work + 1.06 * np.sqrt(work)), 1).astype(int)
        for j in range(len(profiles)):
            cluster.set_pool(j, int(pools[j]))
            cluster.set_cpu_shares(j, 256 if k % 2 else 128)
        busy += time.perf_counter() - start
        invocations += times.size
    used = stats.invokers.cpu_used_core_s.sum() / (config.invokers * config.cores * TICK_S)
    return {
        "invocations": invocations,
        "completions": completions,
        "wall_s": busy,
        "rate": invocations / busy,
        "simulated_s": ticks * TICK_S,
        "last_tick_cpu_util": used,
    }


def azure_replay(minutes: int | None, seed: int, keep_alive: dict[str, object] | None = None,
                 read_totals: bool = False) -> dict[str, float]:
    from simulator import Cluster, ClusterConfig
    from workload.azure2019 import load_trace
    from workload.profiles import FunctionProfile

    start_load = time.perf_counter()
    trace = load_trace(TRACE_DIR)
    keys = trace.invocations.keys
    profiles = [
        FunctionProfile.from_trace(f"fn-{j:03d}", trace.durations[key], trace.memory.get(key))
        for j, key in enumerate(keys)
    ]
    counts = trace.invocations.counts.astype(np.int64)
    if minutes is not None:
        counts = counts[:, :minutes]
    load_s = time.perf_counter() - start_load

    rng = np.random.default_rng(seed)
    cluster = Cluster(ClusterConfig(keep_records=False, **(keep_alive or {})), profiles, seed=seed)
    n_fn, n_min = counts.shape
    ticks_per_minute = int(60 / TICK_S)
    invocations = 0
    completions = 0
    cold = 0
    generate_s = 0.0
    start = time.perf_counter()
    for m in range(n_min):
        g0 = time.perf_counter()
        fn = np.repeat(np.arange(n_fn), counts[:, m])
        times = m * 60.0 + rng.uniform(0.0, 60.0, fn.size)
        order = np.argsort(times, kind="stable")
        times, fn = times[order], fn[order]
        bounds = np.searchsorted(times, m * 60.0 + TICK_S * np.arange(ticks_per_minute + 1))
        generate_s += time.perf_counter() - g0
        for k in range(ticks_per_minute):
            lo, hi = bounds[k], bounds[k + 1]
            cluster.advance(m * 60.0 + (k + 1) * TICK_S, times[lo:hi], fn[lo:hi])
            stats = cluster.tick_stats()
            completions += int(stats.functions.completions.sum())
            cold += int(stats.functions.cold_starts.sum())
            if read_totals:
                cluster.totals()
        invocations += fn.size
    wall = time.perf_counter() - start
    totals = cluster.totals().functions
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "functions": n_fn,
        "invocations": invocations,
        "completions": completions,
        "cold_starts": cold,
        "wall_s": wall,
        "generate_s": generate_s,
        "load_s": load_s,
        "rate": invocations / wall,
        "peak_rss_mb": peak_mb,
        "memory_gb_s": float(totals.memory_mb_s.sum()) / 1024.0,
        "idle_memory_gb_s": float(totals.idle_memory_mb_s.sum()) / 1024.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test of the script)")
    parser.add_argument("--cold-cache", action="store_true", help="compile the numba core from scratch")
    parser.add_argument("--load", type=float, default=0.5, help="offered CPU load of the control-loop run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.cold_cache:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="mfrm-numba-")
    sys.path.insert(0, str(REPO))

    warm = jit_warmup()
    loop = control_loop(ticks=6 if args.quick else 90, load=args.load, seed=args.seed)
    minutes = 5 if args.quick else None
    replay = azure_replay(minutes=minutes, seed=args.seed)
    greedy = azure_replay(minutes=minutes, seed=args.seed, read_totals=True,
                          keep_alive={"eviction": "greedy-dual", "idle_memory_fraction": 0.5})

    print(
        f"JIT warm-up ({'cold cache: full compile' if args.cold_cache else 'numba cache as found'}): {warm:.2f} s"
    )
    print()
    print("| scenario | invocations | simulated | wall (s) | invocations / s | target | met |")
    print("|---|---:|---:|---:|---:|---|---|")
    print(
        f"| control loop, 12 functions, load {args.load:.0%}, 10-s ticks | {loop['invocations']:,} | "
        f"{loop['simulated_s']:.0f} s | {loop['wall_s']:.2f} | {loop['rate']:,.0f} | >= 200,000 /s | "
        f"{'yes' if loop['rate'] >= 200_000 else 'NO'} |"
    )
    for label, run in (("OpenWhisk default", replay), ("Greedy-Dual, idle budget 50%, totals every tick", greedy)):
        print(
            f"| Azure 2019 excerpt, {run['functions']} functions, {label} | "
            f"{run['invocations']:,} | {counts_label(args.quick)} | {run['wall_s']:.2f} | {run['rate']:,.0f} | "
            f"< 120 s, < 2048 MB | {'yes' if run['wall_s'] < 120 and run['peak_rss_mb'] < 2048 else 'NO'} |"
        )
    print()
    print(
        f"control loop: {loop['completions']:,} completions; CPU utilisation in the last tick "
        f"{loop['last_tick_cpu_util']:.0%}"
    )
    print(
        f"Azure replay: {replay['completions']:,} completions, {replay['cold_starts']:,} cold starts; "
        f"arrival generation {replay['generate_s']:.2f} s (inside the wall time), trace loading "
        f"{replay['load_s']:.2f} s (outside); peak RSS of the process {replay['peak_rss_mb']:.0f} MB"
    )
    for label, run in (("OpenWhisk default", replay), ("Greedy-Dual, budget 50%", greedy)):
        print(
            f"{label}: {run['cold_starts']:,} cold starts, memory held {run['memory_gb_s']:,.0f} GB-s, "
            f"of which idle {run['idle_memory_gb_s']:,.0f} GB-s"
        )
    return 0


def counts_label(quick: bool) -> str:
    return "5 min" if quick else "8 h"


if __name__ == "__main__":
    raise SystemExit(main())
