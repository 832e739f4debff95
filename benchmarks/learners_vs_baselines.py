"""Train NAC-Linear and NAC-NN, then compare them with the baselines, over seeds.

Protocol (docs/results-agents.md): the paper-scale simulated cluster (21 invokers x 8 cores, scaled
with the number of functions by ``invokers_for``), the K busiest functions of the shipped trace
playing the paper's 12 benchmark functions, per-minute counts x ``--rate-scale``. For every seed:

1. train each learned policy on trace minutes [480, 720) (``controller.training.train_policy``);
2. evaluate every policy on minutes [720, 960): the baselines as they are, the learned policies from
   their checkpoint, learning online during the evaluation (the paper's setting) or ``--frozen``.

Every (seed, policy) is one job; jobs run in ``--workers`` processes, print a line when they finish,
and each writes its own CSV row to ``OUT/seed<S>/<policy>.csv`` at once, so a partial run keeps what
it finished and a rerun skips jobs whose CSV exists. At the end ``OUT/runs.csv`` holds every row,
``OUT/summary.csv`` the mean and standard deviation over seeds, and ``OUT/summary.png`` the SLO
violations against CPU utilisation per policy.

    python benchmarks/learners_vs_baselines.py --out runs/learners/f12 --seeds 0 1 2 3 4
    python benchmarks/learners_vs_baselines.py --out runs/learners/f100 --functions 100 --seeds 0 1 2
    python benchmarks/learners_vs_baselines.py --out runs/learners/f12-untrained --policies nac-linear nac-nn --untrained
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import yaml

BASELINES = ("openwhisk-default", "ensure", "kpa", "hpa")
LEARNED = ("nac-linear", "nac-nn")
TRAIN = (480, 240)
EVALUATE = (720, 240)

#: The paper's testbed serves its 12 functions with 21 invokers; a run with K functions gets the same
#: invokers per function, never fewer than 21 (1.75 invokers, i.e. 14 cores and 3.5 GB of user
#: memory, per function).
PAPER_INVOKERS, PAPER_FUNCTIONS = 21, 12


def invokers_for(functions: int) -> int:
    """Invokers of the cluster for ``functions`` functions (see ``PAPER_INVOKERS``)."""
    return max(PAPER_INVOKERS, math.ceil(PAPER_INVOKERS * functions / PAPER_FUNCTIONS))


def settings_for(args: argparse.Namespace, seed: int, window: tuple[int, int]) -> Any:
    from controller.settings import load_settings

    overrides: dict[str, Any] = {
        "seed": seed,
        "cluster.invokers": invokers_for(args.functions),
        "workload.functions": args.functions,
        "workload.select": "busiest",
        "workload.rate_scale": args.rate_scale,
        "workload.start_minute": window[0],
        "workload.minutes": window[1],
        "output.plots": False,
        "output.workers": 1,
    }
    if args.params:
        overrides["policy.params"] = yaml.safe_load(Path(args.params).read_text(encoding="utf-8"))
    for item in args.set or ():
        key, _, raw = item.partition("=")
        overrides[key.strip()] = yaml.safe_load(raw)
    return load_settings(overrides=overrides)


def _row(result: Any, seed: int, phase: str, extra: dict[str, Any]) -> dict[str, Any]:
    from controller.report import overall_metrics

    row = {"seed": seed, "phase": phase, **overall_metrics(result)}
    row.update({"decide_ms": result.decide_ms, "update_ms": result.update_ms, "wall_s": result.wall_s, **extra})
    return row


def job(args: argparse.Namespace, seed: int, policy: str) -> tuple[str, dict[str, Any]]:
    """Train (learned policies) and evaluate one policy for one seed; write its CSV row."""
    from controller.assemble import PolicySpec, build_workload, measure_slos
    from controller.report import write_csv
    from controller.runner import run_policy
    from controller.training import summary, train_policy

    folder = Path(args.out) / f"seed{seed}"
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    spec = PolicySpec(policy)
    if policy in LEARNED and args.untrained:
        spec = PolicySpec(policy, frozen=True, greedy=args.greedy)  # θ = 0: uniform moves inside the band
    elif policy in LEARNED:
        train_settings = settings_for(args, seed, TRAIN)
        trained = train_policy(train_settings, policy, folder / f"{policy}.ckpt.npz", episodes=args.episodes)
        figures = summary(trained.rows)
        extra = {"train_wall_s": trained.wall_s, "train_decide_ms": trained.decide_ms,
                 "train_update_ms": trained.update_ms, **{f"train_{k}": v for k, v in figures.items()}}
        spec = PolicySpec(policy, checkpoint=trained.checkpoint, frozen=args.frozen, greedy=args.greedy)
    settings = settings_for(args, seed, EVALUATE)
    workload = build_workload(settings)
    slo_s = measure_slos(settings, workload)
    result = run_policy(settings, workload, slo_s, spec, checkpoint_dir=folder / "evaluated")
    row = _row(result, seed, "evaluate", extra)
    row["job_wall_s"] = time.perf_counter() - started
    write_csv([row], folder / f"{policy}.csv")
    return f"seed {seed} {policy}", row


def aggregate(out: Path, policies: list[str]) -> list[dict[str, Any]]:
    """Every finished row into runs.csv, and mean/std per policy into summary.csv; returns the summary."""
    from controller.report import write_csv

    rows = []
    for path in sorted(p for policy in policies for p in out.glob(f"seed*/{policy}.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            rows.extend(csv.DictReader(handle))
    if not rows:
        return []
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with (out / "runs.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    keys = ("slo_violation_rate", "cpu_utilisation", "p99_latency_s", "cold_start_rate", "container_seconds",
            "mean_reward", "decide_ms", "update_ms")
    summary = []
    for policy in policies:
        mine = [r for r in rows if r["policy"] == policy]
        if not mine:
            continue
        entry: dict[str, Any] = {"policy": policy, "seeds": len(mine)}
        for key in keys:
            values = np.array([float(r[key]) for r in mine], dtype=float)
            entry[f"{key}_mean"] = float(np.mean(values))
            entry[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        summary.append(entry)
    write_csv(summary, out / "summary.csv")
    return summary


def plot(summary: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for entry in summary:
        ax.errorbar(100 * entry["cpu_utilisation_mean"], 100 * entry["slo_violation_rate_mean"],
                    xerr=100 * entry["cpu_utilisation_std"], yerr=100 * entry["slo_violation_rate_std"],
                    fmt="o", capsize=3, label=entry["policy"])
    ax.set_xlabel("CPU-allocation utilisation (%), higher is better")
    ax.set_ylabel("SLO violations (% of invocations), lower is better")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="Output folder (a rerun skips finished jobs).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--functions", type=int, default=12)
    parser.add_argument("--rate-scale", type=float, default=3.0)
    parser.add_argument("--policies", nargs="+", default=[*BASELINES, *LEARNED])
    parser.add_argument("--episodes", type=int, default=1, help="Training replays of minutes 480-719.")
    parser.add_argument("--frozen", action="store_true", help="Evaluate learned policies without learning.")
    parser.add_argument("--greedy", action="store_true", help="Learned policies take their most probable move.")
    parser.add_argument("--untrained", action="store_true",
                        help="Ablation: learned policies neither train nor learn; they draw uniformly random "
                             "moves (their initial policy), so only the action mapping (staffing band) acts. "
                             "Rows are named like the trained ones: give it its own --out.")
    parser.add_argument("--params", help="YAML file of policy.params (per-policy hyperparameters).")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="Any other setting (repeatable).")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "command.txt").write_text(" ".join(["python benchmarks/learners_vs_baselines.py", *__import__("sys").argv[1:]]) + "\n")
    todo = [(seed, policy) for seed in args.seeds for policy in args.policies
            if not (out / f"seed{seed}" / f"{policy}.csv").exists()]
    # Longest jobs first (learners train, then evaluate) so the two processes finish together.
    todo.sort(key=lambda item: (item[1] not in LEARNED, item[1] != "nac-nn", item[0]))
    print(f"{len(todo)} jobs to run ({len(args.seeds) * len(args.policies) - len(todo)} already done), "
          f"{args.functions} functions on {invokers_for(args.functions)} invokers, load x{args.rate_scale:g}", flush=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(job, args, seed, policy) for seed, policy in todo]
        for done, future in enumerate(as_completed(futures), 1):
            label, row = future.result()
            print(f"[{done}/{len(todo)} {time.perf_counter() - started:6.0f} s] {label}: "
                  f"SLO viol. {100 * row['slo_violation_rate']:.2f}%, CPU util. {100 * row['cpu_utilisation']:.1f}%, "
                  f"p99 {row['p99_latency_s']:.3f} s, decide {row['decide_ms']:.2f} ms, update {row['update_ms']:.2f} ms",
                  flush=True)
    summary = aggregate(out, list(args.policies))
    if summary:
        plot(summary, out / "summary.png", f"{args.functions} functions, load x{args.rate_scale:g}, "
             f"{invokers_for(args.functions)} invokers")
    print(f"{'policy':<18} {'seeds':>5} {'SLO viol. %':>16} {'CPU util. %':>16} {'p99 s':>14} {'cold %':>12} "
          f"{'container-s':>20} {'decide ms':>10} {'update ms':>10}")
    for e in summary:
        print(f"{e['policy']:<18} {e['seeds']:>5} "
              f"{100 * e['slo_violation_rate_mean']:>8.2f} ± {100 * e['slo_violation_rate_std']:<5.2f} "
              f"{100 * e['cpu_utilisation_mean']:>8.1f} ± {100 * e['cpu_utilisation_std']:<5.1f} "
              f"{e['p99_latency_s_mean']:>7.3f} ± {e['p99_latency_s_std']:<5.3f}"
              f"{100 * e['cold_start_rate_mean']:>6.2f} ± {100 * e['cold_start_rate_std']:<4.2f}"
              f"{e['container_seconds_mean']:>12,.0f} ± {e['container_seconds_std']:<8,.0f}"
              f"{e['decide_ms_mean']:>10.2f} {e['update_ms_mean']:>10.2f}")


if __name__ == "__main__":
    main()
