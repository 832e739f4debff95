"""The simulator against the real local platform: the same functions, load and policy on both.

Three steps, each resumable (a run whose ``result.json`` exists is not repeated):

``replay``: for each repeat, for each policy in turn (so that the machine's load is comparable
across policies), a fresh recorded localwhisk (``benchmarks/recorded_localwhisk.py``) runs the
workload of ``mfrm replay`` (functions, window, rate scale, seed), with the daemon ``mfrm run
--backend local`` applying the policy when it is not the platform's own (``openwhisk-default`` is
the platform itself: nothing to run). Per function it keeps p50 and p99 latency, cold starts,
containers held on average (exact, from the container event log), and the machine's load average.

``shares``: two CPU-bound functions contend for the cores: each has a pool of 2 containers kept busy
by 2 closed-loop clients (4 single-threaded runs on the machine's 2 cores), with their CPU shares
equal, then 1024:256, then 256:1024, after each alone (1 client). The slowdown of a function is
its mean ``duration`` under contention over its mean alone. The simulator runs the same closed
loop (``simulate_shares``).

``report``: the simulator (``controller.runner.run_policy``, the batch runner of ``mfrm simulate``,
on a 1-invoker cluster with the machine's cores and localwhisk's user memory) runs the same
settings and seed with each profile set: ``estimated`` (``workload.profiles.BENCHMARK_PROFILES``,
the default) and ``measured`` (from a solo measurement on localwhisk,
``workload.profiles.profiles_from_solo``), over several simulator seeds (execution-time draws; the
arrivals are the seed's). It writes the per-function error tables (``report.md``), ``errors.csv``
and a figure.

    python benchmarks/sim_vs_localwhisk.py replay --out runs/simvslw --solo runs/solo.json --repeats 3
    python benchmarks/sim_vs_localwhisk.py shares --out runs/simvslw --solo runs/solo.json --repeats 3
    python benchmarks/sim_vs_localwhisk.py report --out runs/simvslw --solo runs/solo.json

Not a test: ``replay`` takes (minutes / speed-up + ~1) minutes per run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import live_common as live

#: Policies compared by default: the platform's own behaviour and the main heuristic baseline.
POLICIES = ("openwhisk-default", "ensure")
#: Metrics compared per function, with how the error is expressed (relative, or absolute for counts
#: that may be 0 on the platform).
METRICS = ("p50_s", "p99_s", "cold_starts", "containers")


# --------------------------------------------------------------------------------------------
# the same on the simulator
# --------------------------------------------------------------------------------------------


def profile_sets(solo: Path | None) -> dict[str, dict[str, Any]]:
    """The profile sets compared: the estimated defaults, and those measured in ``solo``."""
    from workload.profiles import BENCHMARK_PROFILES, profiles_from_solo

    sets: dict[str, dict[str, Any]] = {"estimated": dict(BENCHMARK_PROFILES)}
    if solo is not None:
        sets["measured"] = profiles_from_solo(json.loads(solo.read_text()), provenance=f"from {solo.name}")
    return sets


def simulate(policy: str, plan: live.ReplayPlan, profiles: Mapping[str, Any], sim_seed: int, out: Path,
             cores: float | None = None) -> dict[str, dict[str, float]]:
    """``policy`` on the simulated twin of the platform with ``profiles``; per-function metrics.
    ``sim_seed`` replaces only the simulator's own draws (execution times): the functions and
    arrivals are the plan seed's, as on the platform."""
    from controller.assemble import RunSeeds, build_workload, measure_slos
    from controller.runner import run_policy

    values = plan.settings_dict(policy, cores or live.machine_cores(), 4096)
    values["output"] = {"out_dir": str(out)}
    settings = live.settings_of(values)
    workload = build_workload(settings)
    functions = tuple(replace(f, profile=profiles[f.profile.name]) for f in workload.functions)
    workload = replace(workload, functions=functions)
    seeds = RunSeeds.from_seed(plan.seed)
    seeds = replace(seeds, cluster=int(np.random.SeedSequence([plan.seed, sim_seed]).generate_state(1)[0] >> 1))
    result = run_policy(settings, workload, measure_slos(settings, workload), policy, seeds=seeds, save_learner=False)
    from controller.costs import Activations

    activations = Activations(result.function_index, result.latency_s, result.cold)
    return live.per_function(list(workload.names), activations, result.usage, plan.window_s)


# --------------------------------------------------------------------------------------------
# shares: two functions contending for the cores
# --------------------------------------------------------------------------------------------

#: Share settings of the contention experiment: (name, shares of function A, shares of function B).
SHARE_SETTINGS = (("equal", 1024, 1024), ("a-high", 1024, 256), ("b-high", 256, 1024))
#: Containers (and closed-loop clients) per function under contention: 2 + 2 single-threaded runs
#: on a 2-core machine keep the cores oversubscribed twice.
CONTENDERS = 2


class ClosedLoopClient(threading.Thread):
    """Invokes one action back to back (blocking) for ``seconds``; keeps each activation's duration."""

    def __init__(self, url: str, name: str, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(daemon=True, name=f"{name}-client")
        self.url, self.action, self.seconds, self.clock = url, name, seconds, clock
        self.durations: list[float] = []
        """``duration`` of every successful activation, s."""

    def run(self) -> None:
        client = live.WhiskClient(self.url, auth=live.AUTH)
        deadline = self.clock() + self.seconds
        try:
            while self.clock() < deadline:
                status, record = client.invoke(self.action, {}, blocking=True)
                if status == 200:
                    self.durations.append(float(record["duration"]) / 1000.0)
        finally:
            client.close()


def _run_clients(url: str, loads: Mapping[str, int], seconds: float) -> dict[str, list[float]]:
    """``loads[name]`` closed-loop clients per action, all at once; every duration per action."""
    clients = {name: [ClosedLoopClient(url, name, seconds) for _ in range(k)] for name, k in loads.items()}
    for group in clients.values():
        for client in group:
            client.start()
    for group in clients.values():
        for client in group:
            client.join()
    return {name: [d for c in group for d in c.durations] for name, group in clients.items()}


def live_shares(pair: tuple[str, str], seconds: float, warmup_s: float, out: Path, cpu_weight: int) -> dict[str, Any]:
    """The contention experiment on a fresh recorded localwhisk; writes and returns ``result.json``."""
    from workload.functions import FUNCTIONS

    out.mkdir(parents=True, exist_ok=True)
    load = live.LoadSampler(period_s=5.0)
    load.start()
    result: dict[str, Any] = {"pair": list(pair), "seconds": seconds, "cpu_weight": cpu_weight, "code": live.code_state(),
                              "alone": {}, "settings": {}}
    with live.recorded_platform(out / "platform", cpu_weight) as platform:
        client = live.WhiskClient(platform.url, auth=live.AUTH)
        for name in pair:
            client.put_action(name, overwrite=True, **FUNCTIONS[name].action_body())
        for name in pair:  # alone: one container, one client, nothing else of ours running
            client.resources(name, containers=1, cpu_shares=1024)
            _run_clients(platform.url, {name: 1}, warmup_s)
            t0 = time.time()
            durations = _run_clients(platform.url, {name: 1}, seconds)[name]
            result["alone"][name] = {"mean_s": float(np.mean(durations)), "n": len(durations),
                                     "load": load.summary(t0, time.time())}
            client.resources(name, containers=0)
        for label, shares_a, shares_b in SHARE_SETTINGS:
            for name, shares in zip(pair, (shares_a, shares_b), strict=True):
                client.resources(name, containers=CONTENDERS, cpu_shares=shares)
            _run_clients(platform.url, dict.fromkeys(pair, CONTENDERS), warmup_s)
            cpu_before = {name: client.resources(name)[1]["cpuSeconds"] for name in pair}
            t0 = time.time()
            durations = _run_clients(platform.url, dict.fromkeys(pair, CONTENDERS), seconds)
            elapsed = time.time() - t0
            cpu_after = {name: client.resources(name)[1]["cpuSeconds"] for name in pair}
            result["settings"][label] = {
                "shares": [shares_a, shares_b],
                "load": load.summary(t0, time.time()),
                **{name: {"mean_s": float(np.mean(durations[name])), "n": len(durations[name]),
                          "cores": (cpu_after[name] - cpu_before[name]) / elapsed,
                          "slowdown": float(np.mean(durations[name])) / result["alone"][name]["mean_s"]}
                   for name in pair},
            }
        client.close()
    load.stop()
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


def simulate_shares(profiles: Sequence[Any], shares: Sequence[int], clients: Sequence[int], seconds: float,
                    cores: float, seed: int = 0, step_s: float = 0.001) -> list[dict[str, float]]:
    """The closed loop on the simulator: function i gets a pool of ``clients[i]`` containers with
    ``shares[i]`` shares, and ``clients[i]`` clients that each send their next invocation when their
    previous one ends (to within ``step_s``); per function, mean execution time (start to end) and
    the cores its containers used on average, over ``seconds`` after the pools have warmed up."""
    from simulator import Cluster, ClusterConfig

    cluster = Cluster(ClusterConfig(invokers=1, cores=cores, user_memory_mb=4096), list(profiles), seed=seed)
    for fn, (k, s) in enumerate(zip(clients, shares, strict=True)):
        cluster.set_pool(fn, k)
        cluster.set_cpu_shares(fn, s)
    warm = max(p.init_s for p in profiles) + 1.0
    cluster.advance(warm, np.zeros(0), np.zeros(0, dtype=np.int64))
    cluster.tick_stats()
    cluster.drain_records()
    pending = np.repeat(np.arange(len(profiles)), clients)  # functions of the next arrivals
    durations: list[list[float]] = [[] for _ in profiles]
    now, end = warm, warm + seconds
    while now < end:
        until = min(now + step_s, end)
        cluster.advance(until, np.full(pending.size, now), pending.astype(np.int64))
        finished = cluster.drain_records()
        for record in finished:
            durations[int(record["fn"])].append(float(record["end_s"] - record["start_s"]))
        pending = np.sort(finished["fn"].astype(np.int64))  # each client sends again at once
        now = until
    stats = cluster.tick_stats()
    span = stats.end_s - stats.start_s
    return [{"mean_s": float(np.mean(d)) if d else math.nan, "n": len(d),
             "cores": float(stats.functions.cpu_used_core_s[fn]) / span} for fn, d in enumerate(durations)]


def shares_report(results: Sequence[Mapping[str, Any]], models: Mapping[str, tuple[Mapping[str, Any], float]],
                  seconds: float) -> list[dict[str, Any]]:
    """Per model, share setting and function: slowdown measured (mean over repeats, min, max) and
    simulated, the relative error, and the cores each side's containers used."""
    pair = results[0]["pair"]
    rows = []
    for model, (profiles, cores) in models.items():
        chosen = [profiles[name] for name in pair]
        alone = [simulate_shares([p], [1024], [1], seconds, cores)[0]["mean_s"] for p in chosen]
        for label, shares_a, shares_b in SHARE_SETTINGS:
            sim = simulate_shares(chosen, [shares_a, shares_b], [CONTENDERS, CONTENDERS], seconds, cores)
            for i, name in enumerate(pair):
                measured = np.array([r["settings"][label][name]["slowdown"] for r in results])
                measured_cores = np.array([r["settings"][label][name]["cores"] for r in results])
                simulated = sim[i]["mean_s"] / alone[i]
                rows.append({
                    "model": model, "setting": label, "function": name,
                    "shares": shares_a if i == 0 else shares_b,
                    "live_slowdown": float(measured.mean()), "live_min": float(measured.min()),
                    "live_max": float(measured.max()), "sim_slowdown": simulated,
                    "error": simulated / float(measured.mean()) - 1.0,
                    "live_cores": float(measured_cores.mean()), "sim_cores": sim[i]["cores"],
                })
    return rows


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------


def error_of(metric: str, sim: float, real: float) -> float:
    """Relative error sim / real − 1; for cold starts with none on the platform, the absolute
    difference (a relative error of a zero is undefined)."""
    if metric == "cold_starts" and real == 0:
        return sim - real
    return sim / real - 1.0 if real else math.nan


def compare(live_runs: Sequence[Mapping[str, Any]], sim_runs: Sequence[Mapping[str, Mapping[str, float]]],
            ) -> dict[str, dict[str, Any]]:
    """Per function: each metric's mean over the platform's runs (and its min and max) and over the
    simulator's, and the simulator's error against the platform's mean."""
    names = list(live_runs[0]["functions"])
    table: dict[str, dict[str, Any]] = {}
    for name in names:
        row: dict[str, Any] = {"invocations": live_runs[0]["functions"][name]["invocations"]}
        for metric in METRICS:
            real = np.array([r["functions"][name][metric] for r in live_runs], dtype=float)
            sim = np.array([s[name][metric] for s in sim_runs], dtype=float)
            row[metric] = {"live": float(np.nanmean(real)), "live_min": float(np.nanmin(real)),
                           "live_max": float(np.nanmax(real)), "sim": float(np.nanmean(sim)),
                           "error": error_of(metric, float(np.nanmean(sim)), float(np.nanmean(real)))}
        table[name] = row
    return table


#: Acceptance of the issue: largest |error| per metric (cold starts: relative, or 1 start when the
#: platform had none... and the share slowdown's).
TOLERANCE = {"p50_s": 0.10, "p99_s": 0.20, "cold_starts": 0.05, "slowdown": 0.10}


def _cell(metric: str, entry: Mapping[str, float]) -> str:
    if metric in ("p50_s", "p99_s"):
        values = f"{1000 * entry['live']:.1f} / {1000 * entry['sim']:.1f}"
    elif metric == "containers":
        values = f"{entry['live']:.2f} / {entry['sim']:.2f}"
    else:
        values = f"{entry['live']:.1f} / {entry['sim']:.1f}"
    error = entry["error"]
    shown = "–" if not math.isfinite(error) else f"{100 * error:+.0f}%"
    limit = TOLERANCE.get(metric)
    miss = limit is not None and math.isfinite(error) and abs(error) > limit
    return f"{values} ({'**' + shown + '**' if miss else shown})"


def markdown_table(table: Mapping[str, Mapping[str, Any]]) -> str:
    """Per function: platform mean / simulator mean (error) of each metric; errors beyond the
    acceptance in bold."""
    head = "| function | invocations | p50 ms | p99 ms | cold starts | containers (mean) |"
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for name, row in table.items():
        cells = " | ".join(_cell(metric, row[metric]) for metric in METRICS)
        lines.append(f"| {name} | {row['invocations']:.0f} | {cells} |")
    return "\n".join(lines)


def plot_errors(tables: Mapping[str, Mapping[str, Mapping[str, Any]]], path: Path) -> None:
    """Per function, p50 and p99 error of each (policy, profile set)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(tables)
    names = list(next(iter(tables.values())))
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.35 * len(names) + 2), sharey=True)
    y = np.arange(len(names))
    height = 0.8 / max(len(keys), 1)
    for ax, metric, limit in ((axes[0], "p50_s", 0.10), (axes[1], "p99_s", 0.20)):
        for k, key in enumerate(keys):
            errors = [100 * tables[key][name][metric]["error"] for name in names]
            ax.barh(y + k * height, errors, height, label=key)
        ax.axvspan(-100 * limit, 100 * limit, color="green", alpha=0.1)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{metric[:3]} latency: simulator vs localwhisk, % (band: ±{100 * limit:.0f}%)")
        ax.set_xlim(-100, 150)
    axes[0].set_yticks(y + 0.4 - height / 2, names)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass(frozen=True)
class Model:
    """One way of simulating the platform: a profile set and the invoker's cores."""

    name: str
    """Row label, e.g. ``measured, 1.8 cores``."""
    profiles: Mapping[str, Any]
    """Benchmark name -> ``FunctionProfile``."""
    cores: float
    """Cores of the one simulated invoker."""


def fit_cores(live_runs: Sequence[Mapping[str, Any]], policy: str, plan: live.ReplayPlan, profiles: Mapping[str, Any],
              out: Path, grid: Sequence[float], sim_seeds: int = 2) -> tuple[float, dict[float, float]]:
    """The invoker cores (from ``grid``) whose simulated p99 latencies are closest to the platform's:
    least mean |log(simulated p99 / measured p99)| over the functions, per candidate."""
    scores = {}
    for cores in grid:
        table = compare(live_runs, [simulate(policy, plan, profiles, k, out, cores) for k in range(sim_seeds)])
        logs = [abs(math.log(row["p99_s"]["sim"] / row["p99_s"]["live"])) for row in table.values()
                if row["p99_s"]["sim"] > 0 and row["p99_s"]["live"] > 0]
        scores[cores] = float(np.mean(logs))
    return min(scores, key=scores.__getitem__), scores


def concurrency_slowdowns(rows: live.ReplayRows, solo_median_s: Mapping[str, float]) -> dict[str, np.ndarray]:
    """Slowdown of each successful activation's run (run time / its function's solo median) by what
    else ran on the platform during its run: nothing, one other activation, two or more, or a cold
    start's initialisation (overlapping any part of the run)."""
    ok = np.flatnonzero(rows.status == "success")
    run_start = rows.start_s + rows.init_s
    run_s = rows.latency_s - rows.wait_s - rows.init_s
    inits = [(rows.start_s[i], rows.start_s[i] + rows.init_s[i]) for i in ok if rows.cold[i]]
    groups: dict[str, list[float]] = {"alone": [], "one other": [], "two or more others": [], "during a cold start": []}
    for i in ok:
        a, b = run_start[i], rows.end_s[i]
        others = int(np.sum((run_start[ok] < b) & (rows.end_s[ok] > a))) - 1
        slowdown = run_s[i] / solo_median_s[str(rows.function[i]).rsplit("-", 1)[0]]
        if any(s < b and e > a for s, e in inits):
            groups["during a cold start"].append(slowdown)
        else:
            groups["alone" if others <= 0 else "one other" if others == 1 else "two or more others"].append(slowdown)
    return {k: np.array(v) for k, v in groups.items()}


def report(out: Path, solo: Path, sim_seeds: int, policies: Sequence[str] = POLICIES,
           fit_policy: str = "openwhisk-default") -> None:
    """Simulate every policy with each model (estimated profiles; measured profiles; measured profiles
    on the effective cores fitted to ``fit_policy``'s runs) and write the error tables."""
    cores = live.machine_cores()
    sets = profile_sets(solo)
    scratch = out / "sim-scratch"
    runs = {p: [json.loads(f.read_text()) for f in sorted((out / "live" / p).glob("run*/result.json"))] for p in policies}
    runs = {p: r for p, r in runs.items() if r}
    models = [Model(f"{name}, {cores:g} cores", profiles, cores) for name, profiles in sets.items()]
    lines = [f"# Simulator vs localwhisk ({time.strftime('%Y-%m-%d %H:%M')})", ""]
    fitted = None
    if fit_policy in runs and "measured" in sets:
        plan = live.ReplayPlan(**runs[fit_policy][0]["plan"])
        fitted, scores = fit_cores(runs[fit_policy], fit_policy, plan, sets["measured"], scratch,
                                   grid=[round(c, 2) for c in np.arange(1.0, cores + 1e-9, 0.1)])
        models.append(Model(f"measured, {fitted:g} cores (fitted)", sets["measured"], fitted))
        lines += [f"Effective cores fitted to the p99 latencies of {fit_policy} (mean |log error| per candidate): "
                  + ", ".join(f"{c:g}: {v:.3f}" for c, v in scores.items()), ""]
    solo_median = {name: p.exec_median_s for name, p in sets.get("measured", {}).items()}
    tables: dict[str, dict[str, Any]] = {}
    for policy, live_runs in runs.items():
        plan = live.ReplayPlan(**live_runs[0]["plan"])
        loads = [f"{r['load']['load_1m_mean']:.2f} ({r['load']['load_1m_min']:.2f}-{r['load']['load_1m_max']:.2f})"
                 for r in live_runs]
        lines += [f"## {policy}", "", f"{len(live_runs)} localwhisk runs; 1-min load average per run, mean (min-max): "
                  + ", ".join(loads), ""]
        for model in models:
            sims = [simulate(policy, plan, model.profiles, k, scratch, model.cores) for k in range(sim_seeds)]
            table = compare(live_runs, sims)
            tables[f"{policy} / {model.name}"] = table
            lines += [f"### {model.name} ({sim_seeds} simulator seeds)", "", within_summary(table), "",
                      "Each cell: localwhisk mean / simulator mean (simulator's error).", "", markdown_table(table), ""]
        if solo_median:
            groups: dict[str, list[np.ndarray]] = {}
            for k in range(len(live_runs)):
                rows = live.read_replay_rows(out / "live" / policy / f"run{k}" / "replay" / "records.csv")
                for key, values in concurrency_slowdowns(rows, solo_median).items():
                    groups.setdefault(key, []).append(values)
            lines += ["Run time on localwhisk over the solo median, by what else ran meanwhile (all runs):", "",
                      "| during the run | activations | p50 | p90 | p99 |", "|---|---:|---:|---:|---:|"]
            for key, parts in groups.items():
                values = np.concatenate(parts)
                if values.size:
                    lines.append(f"| {key} | {values.size} | {np.percentile(values, 50):.2f} | "
                                 f"{np.percentile(values, 90):.2f} | {np.percentile(values, 99):.2f} |")
            lines.append("")
    shares_runs = [json.loads(p.read_text()) for p in sorted((out / "shares").glob("run*/result.json"))]
    rows_out: list[dict[str, Any]] = []
    if shares_runs:
        share_models = {f"{m.name}": (m.profiles, m.cores) for m in models if not m.name.startswith("estimated")}
        rows_out = shares_report(shares_runs, share_models, shares_runs[0]["seconds"])
        lines += ["## CPU shares: slowdown under contention", "",
                  f"{len(shares_runs)} localwhisk runs; load per run: "
                  + ", ".join(f"{r['settings']['equal']['load']['load_1m_mean']:.2f}" for r in shares_runs), "",
                  ("| model | setting | function | shares | localwhisk slowdown (min-max) | simulator | error "
                   "| cores used: localwhisk / simulator |"), "|---|---|---|---:|---:|---:|---:|---:|"]
        for r in rows_out:
            miss = abs(r["error"]) > TOLERANCE["slowdown"]
            error = f"{100 * r['error']:+.0f}%"
            lines.append(f"| {r['model']} | {r['setting']} | {r['function']} | {r['shares']} | {r['live_slowdown']:.2f} "
                         f"({r['live_min']:.2f}-{r['live_max']:.2f}) | {r['sim_slowdown']:.2f} "
                         f"| {'**' + error + '**' if miss else error} | {r['live_cores']:.2f} / {r['sim_cores']:.2f} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "errors.json").write_text(json.dumps({"replay": tables, "shares": rows_out, "fitted_cores": fitted}, indent=2))
    if tables:
        plot_errors(tables, out / "latency_errors.png")
    print("\n".join(lines))


def within_summary(table: Mapping[str, Mapping[str, Any]]) -> str:
    """How many functions each metric's error keeps within the acceptance."""
    parts = []
    for metric, label in (("p50_s", "p50 within 10%"), ("p99_s", "p99 within 20%"), ("cold_starts", "cold starts within 5%")):
        errors = [row[metric]["error"] for row in table.values()]
        inside = sum(1 for e in errors if math.isfinite(e) and abs(e) <= TOLERANCE[metric])
        parts.append(f"{label}: {inside}/{len(errors)}")
    return "Functions " + "; ".join(parts) + "."


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("replay", "shares", "report"))
    parser.add_argument("--out", type=Path, required=True, help="folder of every run and the report")
    parser.add_argument("--solo", type=Path, required=True,
                        help="solo measurement JSON (python -m workload.functions.solo --json): SLOs and measured profiles")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES))
    parser.add_argument("--repeats", type=int, default=3, help="runs of each policy (in rotation) or of the shares test")
    parser.add_argument("--functions", type=int, default=12)
    parser.add_argument("--select", default="busiest", choices=("spread", "busiest"))
    parser.add_argument("--start-minute", type=int, default=480)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--rate-scale", type=float, default=0.25,
                        help="default 0.25: the 12 busiest functions of the sample then offer ~0.35 core of work")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tick", type=float, default=10.0, help="control-loop tick, s")
    parser.add_argument("--cpu-weight", type=int, default=live.PLATFORM_CPU_WEIGHT,
                        help="cpu.shares of the platform's own cgroup (1024: as python -m localwhisk runs)")
    parser.add_argument("--pair", default="compression,image-resize", help="the two functions of the shares test")
    parser.add_argument("--seconds", type=float, default=30.0, help="shares test: seconds per measurement")
    parser.add_argument("--sim-seeds", type=int, default=5, help="report: simulator seeds per policy and profile set")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    solo: Path = args.solo.resolve()
    if not solo.is_file():
        parser.error(f"--solo {solo}: no such file (measure it with python -m workload.functions.solo --json)")
    plan = live.ReplayPlan(args.functions, args.select, args.start_minute, args.minutes, args.rate_scale, args.seed, args.tick)
    if args.step == "replay":
        runs = {policy: live.PolicyRun(policy, policy) for policy in args.policies}
        for _, _, result in live.run_rotation(runs, plan, solo, out, args.repeats, args.cpu_weight):
            print(f"  load {result['load']}", flush=True)
    elif args.step == "shares":
        pair = tuple(args.pair.split(","))
        if len(pair) != 2:
            parser.error(f"--pair takes two function names, got {args.pair!r}")
        for repeat in range(args.repeats):
            run = out / "shares" / f"run{repeat}"
            if not (run / "result.json").exists():
                print(f"shares, run {repeat} ...", flush=True)
                result = live_shares(pair, args.seconds, 3.0, run, args.cpu_weight)  # type: ignore[arg-type]
                print(json.dumps(result["settings"], indent=1), flush=True)
    else:
        report(out, solo, args.sim_seeds, args.policies)


if __name__ == "__main__":
    main()
