"""How long training takes: NAC-NN (and NAC-Linear) on one simulated hour of 12 functions.

Target: training NAC-NN on one simulated hour of 12 functions takes at most 5 minutes of
wall time. Measured through ``controller.training.train_policy`` (what ``mfrm train`` runs: trace
loading excluded, SLO probes included), on the paper's cluster (21 invokers x 8 cores), for two
workloads: the default sample (12 functions spread over rate classes, the trace's own load) and the
contended point of docs/results-agents.md (the 12 busiest functions, counts x 3). Torch and BLAS run
on one thread (NAC-NN sets it); the simulator is single-threaded.

    python benchmarks/bench_training.py [--minutes 60] [--policies nac-nn nac-linear]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

# One BLAS thread, before numpy is imported: the cost on one core, as the controller runs.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

TARGET_S = 300.0
WORKLOADS = {
    "default sample (spread, x1)": {"workload.select": "spread", "workload.rate_scale": 1.0},
    "contended (12 busiest, x3)": {"workload.select": "busiest", "workload.rate_scale": 3.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=60, help="Simulated minutes (trace minutes 480 on).")
    parser.add_argument("--policies", nargs="+", default=["nac-nn", "nac-linear"])
    args = parser.parse_args()

    from controller.settings import load_settings
    from controller.training import train_policy

    rows = []
    for workload, overrides in WORKLOADS.items():
        for policy in args.policies:
            settings = load_settings(overrides={
                "workload.functions": 12, "workload.start_minute": 480, "workload.minutes": args.minutes,
                "output.plots": False, **overrides,
            })
            with tempfile.TemporaryDirectory() as folder:
                started = time.perf_counter()
                cpu_started = time.process_time()
                result = train_policy(settings, policy, Path(folder) / f"{policy}.ckpt.npz")
                wall = time.perf_counter() - started
                cpu = time.process_time() - cpu_started
            rows.append((policy, workload, len(result.rows), wall, cpu, result.decide_ms, result.update_ms))
            print(f"done: {policy}, {workload}: {wall:.1f} s", flush=True)

    print()
    print("| policy | workload | ticks | wall s | CPU s | ms/decide | ms/update | target s | met |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for policy, workload, ticks, wall, cpu, decide, update in rows:
        target = f"{TARGET_S:.0f}" if policy == "nac-nn" else "–"
        met = ("yes" if wall <= TARGET_S else "**no**") if policy == "nac-nn" else "–"
        print(f"| {policy} | {workload} | {ticks} | {wall:.1f} | {cpu:.1f} | {decide:.2f} | {update:.2f} | {target} | {met} |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (the machine is shared; wall times grow with it)")


if __name__ == "__main__":
    main()
