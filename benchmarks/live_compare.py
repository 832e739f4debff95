"""A simulator-trained NAC-Linear, ENSURE and OpenWhisk's default on localwhisk, under the same
replayed load, in rotation so that each policy meets the same machine load.

Three steps, each resumable (a checkpoint or run that exists is kept):

``train``: NAC-Linear learns on the simulated twin of the platform (one invoker with the machine's
cores and localwhisk's 4096 MB of user memory, 10-s ticks) with the same functions as the live runs
over a *different* trace window (``--train-start-minute``, ``--train-minutes``), twice:

* ``nac-linear-sim``: with the profiles measured on localwhisk (``--solo``), so that the simulator it
  learns in runs these functions as the platform does. It is trained by the library ``mfrm train``
  calls (``controller.runner.run_policy`` per episode, with ``controller.training.episode_seeds``),
  because ``mfrm train`` has no setting yet that selects measured profiles;
* ``nac-linear-train``: ``mfrm train --policy nac-linear`` itself, as shipped (estimated profiles).

``run``: for each repeat, every policy in turn, each on a fresh recorded localwhisk
(``benchmarks/recorded_localwhisk.py``) with the same ``mfrm replay`` workload and seed; the
daemon ``mfrm run --backend local`` applies ENSURE and NAC-Linear (a learner starts from its
checkpoint and keeps learning online, as in the paper); OpenWhisk's default is the platform's own.
Each run's costs are ``controller.costs``' (``live_common.live_costs``: memory held and idle from
the platform's container event log, exact), with the machine's load average over the run.

``report``: ``results.md`` (the table: mean and range over the repeats, and every run with its
load), ``results.csv``, and the figures ``costs.png`` and ``latency_cdf.png``.

    python benchmarks/live_compare.py train --out runs/live --solo runs/solo.json
    python benchmarks/live_compare.py run --out runs/live --solo runs/solo.json --repeats 3
    python benchmarks/live_compare.py report --out runs/live --solo runs/solo.json

Not a test: ``run`` takes (minutes / speed-up + ~1) minutes per policy and repeat.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import live_common as live

#: The compared policies, in the order of the rotation.
LABELS = ("openwhisk-default", "ensure", "nac-linear-sim", "nac-linear-train")
#: Overall metrics of the table (``controller.costs``), with their headers.
TABLE = (
    ("invocations", "invocations", "{:.0f}"),
    ("slo_violation_rate", "SLO viol.", "{:.1%}"),
    ("p50_latency_s", "p50 ms", "ms"),
    ("p99_latency_s", "p99 ms", "ms"),
    ("p99_over_slo", "p99/SLO", "{:.2f}"),
    ("cold_start_rate", "cold", "{:.2%}"),
    ("memory_gb_s", "mem GB-s", "{:.0f}"),
    ("idle_memory_gb_s", "idle GB-s", "{:.0f}"),
    ("container_s", "container-s", "{:.0f}"),
    ("cpu_core_s", "CPU core-s", "{:.0f}"),
    ("paper_cpu_utilisation", "paper util.", "{:.2f}"),
)


def policy_runs(out: Path) -> dict[str, live.PolicyRun]:
    """The compared policies and, for the learners, their checkpoints (made by ``train``)."""
    return {
        "openwhisk-default": live.PolicyRun("openwhisk-default", "openwhisk-default"),
        "ensure": live.PolicyRun("ensure", "ensure"),
        "nac-linear-sim": live.PolicyRun("nac-linear-sim", "nac-linear", out / "train" / "nac-linear-sim.ckpt.npz"),
        "nac-linear-train": live.PolicyRun("nac-linear-train", "nac-linear",
                                           out / "train" / "nac-linear-train.ckpt.npz"),
    }


# --------------------------------------------------------------------------------------------
# training on the simulator
# --------------------------------------------------------------------------------------------


def train_measured(plan: live.ReplayPlan, solo: Path, episodes: int, checkpoint: Path) -> dict[str, Any]:
    """NAC-Linear trained on the simulated twin with the measured profiles (see the module docstring)."""
    from controller.assemble import PolicySpec, build_policy, build_workload, measure_slos, tick_count
    from controller.checkpoint import Checkpointer
    from controller.runner import run_policy
    from controller.training import episode_seeds
    from workload.profiles import profiles_from_solo

    values = plan.settings_dict("nac-linear", live.machine_cores())
    values["output"] = {"out_dir": str(checkpoint.parent / "scratch"), "plots": False}
    settings = live.settings_of(values)
    profiles = profiles_from_solo(json.loads(solo.read_text()))
    workload = build_workload(settings)
    workload = replace(workload, functions=tuple(replace(f, profile=profiles[f.profile.name])
                                                 for f in workload.functions))
    slo_s = measure_slos(settings, workload)
    policy = build_policy(settings, PolicySpec("nac-linear"))
    checkpointer = Checkpointer(checkpoint)
    started = time.perf_counter()
    rewards = []
    for episode in range(episodes):
        checkpointer.tick_offset = episode * tick_count(settings)  # ticks count on across episodes
        result = run_policy(settings, workload, slo_s, "nac-linear", policy=policy, checkpointer=checkpointer,
                            seeds=episode_seeds(settings, episode))
        rewards.append(float(np.nanmean(result.rewards)))
    meta = {"episodes": episodes, "mean_reward_per_episode": rewards, "wall_s": time.perf_counter() - started,
            "settings": values, "profiles": {k: v.source for k, v in profiles.items()}, "code": live.code_state()}
    checkpoint.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return meta


def train_with_mfrm(plan: live.ReplayPlan, episodes: int, checkpoint: Path) -> list[str]:
    """``mfrm train --policy nac-linear`` on the simulated twin (its default, estimated profiles);
    the command it ran."""
    values = plan.settings_dict("nac-linear", live.machine_cores())
    argv = [sys.executable, "-m", "controller", "train", "--policy", "nac-linear", "--episodes", str(episodes),
            "--functions", str(plan.functions), "--select", plan.select, "--start-minute", str(plan.start_minute),
            "--minutes", str(plan.minutes), "--rate-scale", str(plan.rate_scale), "--seed", str(plan.seed),
            "--set", f"loop.tick_s={plan.tick_s}", "--no-plots", "--overwrite", "--out", str(checkpoint)]
    for key, value in values["cluster"].items():
        argv += ["--set", f"cluster.{key}={value}"]
    subprocess.run(argv, cwd=live.ROOT, check=True)
    shown = ["mfrm", *argv[3:]]
    checkpoint.with_suffix(".json").write_text(json.dumps({"command": shown, "code": live.code_state()}, indent=2))
    return shown


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------


def load_runs(out: Path, labels: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Every finished run of each label, in repeat order."""
    runs = {}
    for label in labels:
        found = [json.loads(p.read_text()) for p in sorted((out / "live" / label).glob("run*/result.json"))]
        if found:
            runs[label] = found
    return runs


def _shown(metric: str, pattern: str, value: float) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{1000 * value:.0f}" if pattern == "ms" else pattern.format(value)


def summary_table(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Per policy: each overall metric's mean over its runs and, below it, the range."""
    head = "| policy | runs | load (1-min) | " + " | ".join(h for _, h, _ in TABLE) + " |"
    lines = [head, "|---|---:|---:|" + "---:|" * len(TABLE)]
    for label, found in runs.items():
        loads = [r["load"]["load_1m_mean"] for r in found]
        cells = []
        for metric, _, pattern in TABLE:
            values = np.array([r["costs"]["overall"][metric] for r in found], dtype=float)
            mean = _shown(metric, pattern, float(np.nanmean(values)))
            spread = f"{_shown(metric, pattern, float(np.nanmin(values)))}–{_shown(metric, pattern, float(np.nanmax(values)))}"
            cells.append(f"{mean} ({spread})" if len(found) > 1 else mean)
        lines.append(f"| {label} | {len(found)} | {np.mean(loads):.2f} ({min(loads):.2f}–{max(loads):.2f}) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def runs_table(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Every run in the order it ran, with its load."""
    rows = sorted(((r["origin_s"], label, k, r) for label, found in runs.items() for k, r in enumerate(found)),
                  key=lambda row: row[0])
    lines = [("| # | policy | repeat | started (UTC) | load 1-min mean (min–max) | SLO viol. | p99/SLO | cold "
             "| mem GB-s | idle GB-s | CPU core-s | late sends p99 s |"), "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, (origin, label, k, r) in enumerate(rows, start=1):
        o = r["costs"]["overall"]
        load = r["load"]
        lines.append(
            f"| {n} | {label} | {k} | {time.strftime('%H:%M', time.gmtime(origin))} | {load['load_1m_mean']:.2f} "
            f"({load['load_1m_min']:.2f}–{load['load_1m_max']:.2f}) | {o['slo_violation_rate']:.1%} "
            f"| {o['p99_over_slo']:.2f} | {o['cold_start_rate']:.2%} | {o['memory_gb_s']:.0f} "
            f"| {o['idle_memory_gb_s']:.0f} | {o['cpu_core_s']:.0f} | {r['late_send_p99_s']:.3f} |")
    return "\n".join(lines)


def write_csv(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> None:
    """One row per run: the overall costs, the load, the code."""
    loads = ("load_1m_mean", "load_1m_min", "load_1m_max")
    metrics = list(next(iter(runs.values()))[0]["costs"]["overall"])
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["policy", "repeat", "origin_s", *loads, "commit", *metrics])
        writer.writeheader()
        for label, found in runs.items():
            for k, r in enumerate(found):
                row = {"policy": label, "repeat": k, "origin_s": r["origin_s"], "commit": r["code"]["commit"]}
                row.update({key: r["load"][key] for key in loads})
                row.update(r["costs"]["overall"])
                writer.writerow(row)


def plot(runs: Mapping[str, Sequence[Mapping[str, Any]]], out: Path) -> None:
    """``costs.png``: each run's SLO violations, memory held, idle memory and cold starts per policy,
    coloured by the machine's load; ``latency_cdf.png``: latency / SLO of every invocation per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(runs)
    panels = (("slo_violation_rate", "SLO violation rate"), ("memory_gb_s", "memory held, GB-s"),
              ("idle_memory_gb_s", "idle memory, GB-s"), ("cold_start_rate", "cold-start rate"))
    loads = [r["load"]["load_1m_mean"] for found in runs.values() for r in found]
    norm = matplotlib.colors.Normalize(vmin=min(loads), vmax=max(max(loads), min(loads) + 0.1))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
    for ax, (metric, title) in zip(axes, panels, strict=True):
        for x, label in enumerate(labels):
            values = [r["costs"]["overall"][metric] for r in runs[label]]
            colours = [r["load"]["load_1m_mean"] for r in runs[label]]
            ax.bar(x, np.mean(values), color="lightgrey", edgecolor="grey")
            points = ax.scatter(np.full(len(values), x) + np.linspace(-0.2, 0.2, len(values)), values, c=colours,
                                cmap="viridis", norm=norm, zorder=3)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
    fig.colorbar(points, ax=axes, label="1-min load average during the run", shrink=0.8)
    fig.savefig(out / "costs.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label in labels:
        ratio = np.sort(np.concatenate([np.asarray(r["latency_over_slo"]) for r in runs[label]]))
        if ratio.size:
            ax.plot(ratio, np.arange(1, ratio.size + 1) / ratio.size, label=label)
    ax.axvline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("latency / SLO (every completed invocation of every run)")
    ax.set_ylabel("fraction of invocations")
    ax.legend(fontsize=8)
    fig.savefig(out / "latency_cdf.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def report(out: Path, labels: Sequence[str]) -> None:
    runs = load_runs(out, labels)
    if not runs:
        raise SystemExit(f"no finished run under {out / 'live'}")
    text = "\n\n".join(["## Per policy (mean over runs, range in brackets)", summary_table(runs),
                        "## Every run, in the order they ran", runs_table(runs)]) + "\n"
    (out / "results.md").write_text(text)
    write_csv(runs, out / "results.csv")
    plot(runs, out)
    print(text)


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("train", "run", "report"))
    parser.add_argument("--out", type=Path, required=True, help="folder of the checkpoints, runs and report")
    parser.add_argument("--solo", type=Path, required=True,
                        help="solo measurement JSON (python -m workload.functions.solo --json): SLOs, measured profiles")
    parser.add_argument("--policies", nargs="+", default=list(LABELS), choices=LABELS)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the rotation")
    parser.add_argument("--functions", type=int, default=12)
    parser.add_argument("--select", default="busiest", choices=("spread", "busiest"))
    parser.add_argument("--start-minute", type=int, default=480)
    parser.add_argument("--minutes", type=int, default=8)
    parser.add_argument("--rate-scale", type=float, default=0.25,
                        help="default 0.25: the 12 busiest functions of the sample then offer ~0.35 core of work")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tick", type=float, default=10.0, help="control-loop tick, s")
    parser.add_argument("--train-start-minute", type=int, default=540)
    parser.add_argument("--train-minutes", type=int, default=60)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--cpu-weight", type=int, default=live.PLATFORM_CPU_WEIGHT,
                        help="cpu.shares of the platform's own cgroup (1024: as python -m localwhisk runs)")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    solo: Path = args.solo.resolve()
    if not solo.is_file():
        parser.error(f"--solo {solo}: no such file (measure it with python -m workload.functions.solo --json)")
    plan = live.ReplayPlan(args.functions, args.select, args.start_minute, args.minutes, args.rate_scale, args.seed,
                           args.tick)
    if args.step == "train":
        training = replace(plan, start_minute=args.train_start_minute, minutes=args.train_minutes)
        runs = policy_runs(out)
        if not runs["nac-linear-sim"].checkpoint.exists():  # type: ignore[union-attr]
            meta = train_measured(training, solo, args.episodes, runs["nac-linear-sim"].checkpoint)  # type: ignore[arg-type]
            print(f"nac-linear-sim: mean reward per episode {meta['mean_reward_per_episode']}", flush=True)
        if not runs["nac-linear-train"].checkpoint.exists():  # type: ignore[union-attr]
            print("nac-linear-train:", " ".join(train_with_mfrm(training, args.episodes,
                                                                runs["nac-linear-train"].checkpoint)), flush=True)  # type: ignore[arg-type]
    elif args.step == "run":
        runs = policy_runs(out)
        chosen = {label: runs[label] for label in args.policies}
        for _, _, result in live.run_rotation(chosen, plan, solo, out, args.repeats, args.cpu_weight):
            o = result["costs"]["overall"]
            print(f"  load {result['load']['load_1m_mean']:.2f}; SLO violations {o['slo_violation_rate']:.1%}, "
                  f"memory {o['memory_gb_s']:.0f} GB-s, idle {o['idle_memory_gb_s']:.0f} GB-s", flush=True)
    else:
        report(out, args.policies)


if __name__ == "__main__":
    main()
