"""The user memory of the memory-contended scenario, calibrated on its training window only.

    python benchmarks/calibrate_memory_contended.py [--seeds 0 1 2] [--factor 1.2]

Runs the default point of every baseline family of the suite on the scenario's *training* window
with ample memory (the file's cluster, user memory 16 GB per invoker). "The best baseline" is the
one with the fewest SLO violations among those that hold, at their peak, no more memory than the
stock platform (OpenWhisk's default, fixed keep-alive of 10 minutes) — a baseline that buys its
violations with memory the stock platform never held is not what an operator would size a cluster
for. Its peak memory held is the largest sum over functions of containers x memory at a tick's end
(worst seed); the scenario's user memory per invoker is ``factor`` x that peak / invokers, rounded
up to 128 MB. Nothing of the evaluation window is looked at.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np

from controller.assemble import PolicySpec, build_workload, measure_slos
from controller.bench.scenarios import load_scenario
from controller.bench.suite import FAMILIES
from controller.report import overall_metrics
from controller.runner import run_policy

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "memory-contended.yaml"
AMPLE_MB = 16_384


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--factor", type=float, default=1.2)
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    scenario = load_scenario(args.scenario)
    results: dict[str, list[tuple[float, float]]] = {}
    for family, points in FAMILIES.items():
        point = next(p for p in points if p.default)
        if point.learned:
            continue
        for seed in args.seeds:
            settings = scenario.settings("train", quick=False, overrides={
                **point.overrides, "seed": seed, "cluster.user_memory_mb": AMPLE_MB, "output.plots": False})
            workload = build_workload(settings)
            result = run_policy(settings, workload, measure_slos(settings, workload), PolicySpec(point.policy),
                                save_learner=False)
            peak_mb = float(np.max(result.containers @ result.memory_mb))
            violations = overall_metrics(result)["slo_violation_rate"]
            results.setdefault(point.label, []).append((violations, peak_mb))
            print(f"{point.label:<36} seed {seed}: violations {100 * violations:6.2f}%  peak memory {peak_mb:9,.0f} MB")
    stock = max(p for _, p in results[next(p.label for p in FAMILIES["fixed-keepalive"] if p.default)])
    frugal = [label for label, runs in results.items() if max(p for _, p in runs) <= stock]
    best = min(frugal, key=lambda label: np.mean([v for v, _ in results[label]]))
    peak = max(p for _, p in results[best])
    invokers = scenario.settings("train", quick=False).cluster.invokers
    per_invoker = math.ceil(args.factor * peak / invokers / 128) * 128
    print(f"stock platform's peak on the training window: {stock:,.0f} MB")
    print(f"best baseline holding no more: {best}; its peak memory held {peak:,.0f} MB")
    print(f"cluster.user_memory_mb = {per_invoker}  ({args.factor:g} x {peak:,.0f} MB over {invokers} invokers)")


if __name__ == "__main__":
    main()
