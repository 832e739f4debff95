"""How long the serverless mean-field agents take for one tick at cluster scale, on one core.

    python benchmarks/bench_serverless_agents.py [--functions 10000] [--repeats 7]

For NAC-Linear (natural and KL-penalised step) and NAC-NN, under each action scheme (the staffing
levels, the nine moves, and the portfolio, whose decide also runs its three KPA members): the time of one ``decide`` for all functions of a snapshot (features,
batched policy, sampling, decisions with reasons) and of one learner update from one transition per
function. Targets: decide and update each ≤ 20 ms for NAC-Linear and ≤ 100 ms for NAC-NN with 10,000
functions. The portfolio also with its histogram member and the history features (``+hist +history``)
or the level twins' regrets (``+hist +twins``, the configuration judged since the twins, the twins stood
in for by drawn regrets: they are simulated clusters, not the learner), and the same with the two-block state
(``+novel``, half the functions new to the policy). Also the whole tick of a learner behind its ENSURE fallback (its decide, ENSURE's shadow
decide, the learner's feedback with its update, and the fallback's queueing model), which has no
target of its own: it is what the daemon spends per tick on the policy. Reports the median and best wall
time over repeats (after one warm-up) and the median CPU time of this process, and compares both
with the target: on an idle machine they agree; on a shared one the wall time also counts the
time other processes held the core, so the CPU column is the cost "on one core".

Single core: BLAS and torch thread pools are limited to one thread before numpy/torch load.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from policies.agent import Transitions
from policies.registry import make
from policies.serverless_features import LOCAL_FEATURES
from policies.types import ClusterSnapshot, FunctionStats, InvokerStats

TARGET_MS = {"nac-linear": 20.0, "nac-nn": 100.0}
#: The portfolio as the suite's trained points are judged with: its histogram member (a hybrid-histogram
#: policy deciding beside the KPA members) and the function-history features.
JUDGED = {"scheme": "portfolio", "histogram_member": True, "history_features": True}
#: The portfolio with its histogram member and the level twins' regrets (``twin_features``), the
#: configuration judged since the twins. The twins themselves are simulated clusters (their cost is the
#: simulator's, ``bench_simulator.py``); here they are stood in for by regrets drawn per tick.
JUDGED_TWINS = {"scheme": "portfolio", "histogram_member": True, "twin_features": True}
#: The two-block state (``AgentSettings.novel_block``): functions the fit was made on and new ones keep
#: separate weights; measured with half the functions new.
NOVEL = {"warm_start": "fitted", "novel_block": True}


def synthetic_snapshot(n: int, time_s: float, rng: np.random.Generator) -> ClusterSnapshot:
    """A busy cluster of ``n`` functions with realistic spreads of every column."""
    names = tuple(f"fn{i:05d}" for i in range(n))
    containers = rng.integers(0, 12, n).astype(float)
    # Every function busy (at least one arrival, a known execution time): all are managed, so the
    # staffing band is computed for each and every one forms a transition (no idle hand-off).
    arrivals = 1.0 + rng.poisson(rng.lognormal(2.0, 1.5, n)).astype(float)
    functions = FunctionStats.empty_like(
        names,
        memory_mb=np.full(n, 256.0),
        slo_s=rng.uniform(0.2, 3.0, n),
        arrivals=arrivals,
        completions=arrivals,
        queued=rng.poisson(1.0, n).astype(float),
        p99_latency_s=rng.uniform(0.1, 6.0, n),
        mean_exec_s=rng.uniform(0.05, 2.0, n),
        cold_starts=rng.binomial(arrivals.astype(int), 0.05).astype(float),
        containers=containers,
        cpu_shares=rng.choice([0.0, 128.0, 256.0, 512.0], n),
        cpu_used_core_s=rng.uniform(0.0, 10.0, n),
        cpu_alloc_core_s=containers * 2.5,
        valid=rng.random(n) > 0.01,
    )
    k = 21
    invokers = InvokerStats(
        names=tuple(f"inv{i}" for i in range(k)),
        cores=np.full(k, 8.0),
        memory_mb=np.full(k, 32768.0),
        memory_used_mb=np.zeros(k),
        cpu_used_core_s=rng.uniform(0, 80, k),
        cpu_shares_allocated=np.zeros(k),
        valid=np.ones(k, dtype=bool),
    )
    return ClusterSnapshot(time_s=time_s, tick_s=10.0, functions=functions, invokers=invokers)


class DrawnTwins:
    """Stands in for the level twins: each function's regret per level drawn uniform in [0, 1) every
    snapshot, one level of each function at 0 (the least), as the twins' entries are."""

    def __init__(self, levels: int, seed: int = 11) -> None:
        self.levels = levels
        self.rng = np.random.default_rng(seed)

    def features(self, snapshot: ClusterSnapshot) -> np.ndarray:
        n = len(snapshot.functions.names)
        x = self.rng.random((n, self.levels))
        x[np.arange(n), self.rng.integers(0, self.levels, n)] = 0.0
        return x


def tick_like(batch: Transitions, blocks: int, mu_bins: int, rng: np.random.Generator) -> Transitions:
    """``batch`` with every column of x(s) and x(s′) varying over functions as in a real tick's batch,
    except the bias and μ's bins, which one tick shares across functions.

    The synthetic snapshots leave some columns constant that vary on a cluster (the function histories,
    which two ticks cannot fill; whether a latency was seen). A learner that factors constant columns
    out of its products would be timed on an easier batch than it meets, so those columns get draws
    of the features' size (uniform in [0, 1]). With x in ``blocks`` (the two-block state) each row
    fills one block, and a column is drawn anew over the rows that fill its block.
    """
    size = batch.x.shape[1] // blocks
    shared = {0, *range(len(LOCAL_FEATURES), len(LOCAL_FEATURES) + mu_bins)}
    varied = {}
    for key in ("x", "x_next"):
        x = getattr(batch, key).copy()
        for b in range(blocks):
            part = x[:, b * size : (b + 1) * size]  # a view: draws land in x
            rows = np.flatnonzero(np.any(part != 0.0, axis=1))
            for j in np.flatnonzero(np.ptp(part[rows], axis=0) == 0):
                if j not in shared:
                    part[rows, j] = rng.random(rows.size)
        varied[key] = x
    return replace(batch, **varied)


def timed(call: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    """(median wall, best wall, median CPU) time of ``call`` in ms, after one warm-up call.

    CPU time (this process, one thread) is what the call costs on one core; wall time also counts
    waiting for a core the other processes of a shared machine hold.
    """
    call()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return statistics.median(wall), min(wall), statistics.median(cpu)


def bench(
    name: str, params: dict[str, object], n: int, repeats: int
) -> list[tuple[str, str, float, float, float, float]]:
    rng = np.random.default_rng(7)
    policy = make(name, seed=1, **params)
    if params.get("twin_features"):
        policy.level_twins = DrawnTwins(len(policy.agent.levels))
    mu = np.full(10, 0.1)
    snapshots = [synthetic_snapshot(n, 10.0 * (t + 1), rng) for t in range(2)]
    if params.get("novel_block"):
        # Half the functions known to the fit, half new: both blocks of x(s) in every batch (the dearer case).
        names = snapshots[0].functions.names
        policy.know(names[: len(names) // 2])
    rewards = rng.uniform(0.0, 1.0, n)

    # decide() on a fresh snapshot time each call, so no step is reused from feedback.
    clock = iter(range(3, 10_000))

    def decide_once() -> object:
        snap = snapshots[0]
        fresh = ClusterSnapshot(
            time_s=10.0 * next(clock), tick_s=snap.tick_s, functions=snap.functions, invokers=snap.invokers
        )
        return policy.decide(fresh, mu)

    decide_ms = timed(decide_once, repeats)

    # One update from one transition per function: build the batch the driver would, then time learner.update.
    policy.decide(snapshots[0], mu)
    policy.decide(snapshots[1], mu)
    batch = tick_like(policy.pending_batch(rewards), 2 if params.get("novel_block") else 1, mu.size, rng)
    update_ms = timed(lambda: policy.learner.update(batch), repeats)
    label = name + "".join(f" ({params[k]})" for k in ("mode", "scheme") if k in params)
    if params.get("history_features"):
        label += " +hist +history"
    if params.get("twin_features"):
        label += " +hist +twins"
    if params.get("novel_block"):
        label += " +novel"
    target = TARGET_MS[name]
    return [
        (label, f"decide, {n} functions", *decide_ms, target),
        (label, f"update, {len(batch)} transitions", *update_ms, target),
    ]


def bench_fallback(name: str, n: int, repeats: int) -> tuple[str, str, float, float, float, float]:
    """One whole tick of ``name`` behind its ENSURE fallback: decide and feedback (with the update)."""
    rng = np.random.default_rng(7)
    policy = make(name, seed=1, scheme="staffing", warm_start="ensure", fallback="ensure")
    mu = np.full(10, 0.1)
    snapshot = synthetic_snapshot(n, 10.0, rng)
    rewards = rng.uniform(0.0, 1.0, n)
    clock = iter(range(3, 10_000))

    def tick_once() -> None:
        fresh = ClusterSnapshot(time_s=10.0 * next(clock), tick_s=snapshot.tick_s, functions=snapshot.functions,
                                invokers=snapshot.invokers)
        policy.decide(fresh, mu)
        policy.feedback(fresh, mu, rewards)

    return (f"{name} + fallback", f"tick (decide+feedback), {n}", *timed(tick_once, repeats), math.nan)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--functions", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = []
    for name, params in (("nac-linear", {"mode": "natural", "scheme": "staffing"}),
                         ("nac-linear", {"mode": "kl", "scheme": "staffing"}), ("nac-nn", {"scheme": "staffing"}),
                         ("nac-linear", {"mode": "natural", "scheme": "moves"}), ("nac-nn", {"scheme": "moves"}),
                         ("nac-linear", {"mode": "natural", "scheme": "portfolio"}),
                         ("nac-nn", {"scheme": "portfolio"}),
                         ("nac-linear", {"mode": "natural", **JUDGED}), ("nac-nn", JUDGED),
                         ("nac-linear", {"mode": "natural", **JUDGED_TWINS}), ("nac-nn", JUDGED_TWINS),
                         ("nac-linear", {"mode": "natural", **JUDGED, **NOVEL}), ("nac-nn", {**JUDGED, **NOVEL})):
        rows.extend(bench(name, params, args.functions, args.repeats))
    for name in ("nac-linear", "nac-nn"):
        rows.append(bench_fallback(name, args.functions, args.repeats))
    header = (
        f"| {'policy':<28} | {'operation':<30} | {'median ms':>9} | {'best ms':>8} | {'CPU ms':>8} "
        f"| {'target ms':>9} | wall ok | CPU ok |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for label, op, median, best, cpu, target in rows:
        wall_ok = "–" if math.isnan(target) else "yes" if median <= target else "NO"
        cpu_ok = "–" if math.isnan(target) else "yes" if cpu <= target else "NO"
        print(
            f"| {label:<28} | {op:<30} | {median:9.2f} | {best:8.2f} | {cpu:8.2f} | {'–' if math.isnan(target) else f'{target:.0f}':>9} "
            f"| {wall_ok:<7} | {cpu_ok:<6} |"
        )


if __name__ == "__main__":
    main()
