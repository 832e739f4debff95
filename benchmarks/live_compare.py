"""NAC-Linear, OpenWhisk default and ENSURE on the local platform, live, on the same replayed load.

For every policy, one after another, each on a fresh platform (own state directory, port and
cgroups), the same trace window and the same seed:

1. start localwhisk (``python -m localwhisk``, cgroups on);
2. start the daemon with the policy on the ``local`` backend (``mfrm run --backend local``), managing
   the K actions the replayer will create;
3. replay K functions of the shipped Azure 2019 trace sample for M trace minutes with ``mfrm replay
   --deploy`` (the 12 real benchmark actions of ``workload/functions``), while this script samples
   the platform's resource API every few seconds (containers, CPU shares, CPU seconds per action);
4. stop everything and score the run from the replayer's records (SLO violations, p99), the samples
   (CPU used and allocated) and the daemon's last ``/metrics`` (ticks, changes it made).

The SLO of a function is its solo p99 on this platform + 15% (``python -m workload.functions.solo``),
measured once at the start on a fresh platform (or read from ``--slo-file``). Each policy's result is
written to ``OUT/<policy>/result.json`` as soon as it is known, and ``OUT/results.md`` is rewritten
after every policy, so a run cut short keeps what it finished; a rerun skips policies whose
result exists.

    python benchmarks/live_compare.py --out runs/live --minutes 20 --speedup 1

Not a test: it takes M / speedup minutes per policy plus the solo measurement (over an hour for the
defaults). Every child runs in its own process group and is stopped (SIGTERM, then SIGKILL) when the
script exits, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from localwhisk.testing import free_port, http_get, stop_process_group, wait_until

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "data" / "azure-functions-2019-sample"
#: Key of the throw-away platforms (loopback only, gone with the run).
AUTH = "5e1f0c2a-3b4d-4e6f-8a9b-0c1d2e3f4a5b:live-compare-not-secret"
POLICIES = ("nac-linear", "openwhisk-default", "ensure")


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def child(argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
          grace_s: float = 20.0) -> Iterator[subprocess.Popen[Any]]:
    """A child process in its own session (so its whole group can be stopped), output to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
        try:
            yield process
        finally:
            stop_process_group(process, grace_s)


@contextlib.contextmanager
def platform(state_dir: Path, log_path: Path) -> Iterator[str]:
    """A fresh localwhisk (cgroups on where the machine allows) on an ephemeral port; its URL."""
    port = free_port()
    argv = [sys.executable, "-m", "localwhisk", "--port", str(port), "--auth", AUTH, "--state-dir", str(state_dir)]
    with child(argv, log_path, grace_s=30.0) as process:
        url = f"http://127.0.0.1:{port}"
        wait_until("localwhisk", lambda: http_get(url + "/ping")[0] == 200, 60.0, process)
        yield url


# --------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------


def measure_solo(out: Path, runs: int) -> Path:
    """Solo latencies and SLOs of the 12 benchmarks on a fresh platform (``workload.functions.solo``)."""
    path = out / "solo.json"
    with platform(out / "solo-platform", out / "solo-platform.log") as url:
        subprocess.run([sys.executable, "-m", "workload.functions.solo", "--apihost", url, "--auth", AUTH,
                        "--runs", str(runs), "--json", str(path)], cwd=ROOT, check=True)
    return path


class PoolSampler(threading.Thread):
    """Reads every pool of the platform each ``period_s`` (containers, shares, CPU seconds) into rows."""

    def __init__(self, url: str, period_s: float) -> None:
        super().__init__(name="pool-sampler", daemon=True)
        self.url = url
        self.period_s = period_s
        self.rows: list[dict[str, Any]] = []
        """One row per (sample, action): t_s (monotonic), action, containers, shares, cpu_s, target."""
        self.failed = 0
        """Samples that could not be read."""
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            status, body = http_get(self.url + "/resources/v1/namespaces/_/actions", AUTH)
            t = time.monotonic()
            if status == 200:
                for pool in json.loads(body):
                    self.rows.append({
                        "t_s": t, "action": pool["action"], "containers": int(pool["current"]["total"]),
                        "shares": int(pool["cpuShares"]), "cpu_s": float(pool["cpuSeconds"]),
                        "target": int(pool["containers"]),
                    })
            else:
                self.failed += 1
            self._halt.wait(self.period_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def cpu_usage(rows: Sequence[dict[str, Any]], cores: float) -> dict[str, float]:
    """CPU used and allocated by the actions over the sampled span.

    used = increase of the actions' cumulative CPU seconds; allocated = Σ over sample intervals of
    containers × shares / 1024 × Δt (cgroup v1 shares: 1024 = one core's weight), the same
    definition as the reward's u (docs/agents.md). Utilisation of the machine = used / (cores × span).
    """
    if not rows:
        return {"span_s": math.nan, "cpu_used_core_s": math.nan, "cpu_alloc_core_s": math.nan,
                "machine_utilisation": math.nan, "allocated_utilisation": math.nan, "mean_containers": math.nan}
    times = sorted({r["t_s"] for r in rows})
    by_time: dict[float, list[dict[str, Any]]] = {t: [] for t in times}
    for r in rows:
        by_time[r["t_s"]].append(r)
    first_cpu: dict[str, float] = {}
    last_cpu: dict[str, float] = {}
    alloc = 0.0
    containers = []
    for t0, t1 in zip(times, times[1:] + [times[-1]], strict=True):
        pools = by_time[t0]
        containers.append(sum(p["containers"] for p in pools))
        alloc += sum(p["containers"] * p["shares"] / 1024.0 for p in pools) * (t1 - t0)
        for p in pools:
            first_cpu.setdefault(p["action"], p["cpu_s"])
            last_cpu[p["action"]] = p["cpu_s"]
    span = times[-1] - times[0]
    used = sum(last_cpu[a] - first_cpu[a] for a in last_cpu)
    return {
        "span_s": span,
        "cpu_used_core_s": used,
        "cpu_alloc_core_s": alloc,
        "machine_utilisation": used / (cores * span) if span > 0 else math.nan,
        "allocated_utilisation": used / alloc if alloc > 0 else math.nan,
        "mean_containers": float(np.mean(containers)),
    }


def slo_of(name: str, slo_ms: dict[str, float]) -> float:
    """The SLO of an action named ``<benchmark>-<n>``, ms."""
    return slo_ms[name.rsplit("-", 1)[0]]


def score_records(records_csv: Path, slo_ms: dict[str, float]) -> dict[str, Any]:
    """SLO violations and latency percentiles from the replayer's ``records.csv``.

    A violation is an invocation that did not succeed within its SLO: a success slower than the
    SLO, or any other outcome (error, time-out, throttled, dropped) — it did not meet the SLO either.
    """
    per_function: dict[str, dict[str, Any]] = {}
    latencies_all, normalised_all = [], []
    with records_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for name in sorted({r["function"] for r in rows}):
        mine = [r for r in rows if r["function"] == name]
        ok = [float(r["latency_ms"]) for r in mine if r["status"] == "success" and r["latency_ms"]]
        slo = slo_of(name, slo_ms)
        slow = sum(1 for x in ok if x > slo)
        failed = len(mine) - len(ok)
        latencies_all += ok
        normalised_all += [x / slo for x in ok]
        per_function[name] = {
            "invocations": len(mine), "succeeded": len(ok), "failed": failed,
            "cold": sum(1 for r in mine if r["cold"] == "True"),
            "slo_ms": slo, "violations": slow + failed,
            "p50_ms": float(np.percentile(ok, 50)) if ok else math.nan,
            "p99_ms": float(np.percentile(ok, 99)) if ok else math.nan,
        }
    invocations = sum(f["invocations"] for f in per_function.values())
    violations = sum(f["violations"] for f in per_function.values())
    return {
        "invocations": invocations,
        "succeeded": sum(f["succeeded"] for f in per_function.values()),
        "cold": sum(f["cold"] for f in per_function.values()),
        "violations": violations,
        "violation_rate": violations / invocations if invocations else math.nan,
        "p99_ms": float(np.percentile(latencies_all, 99)) if latencies_all else math.nan,
        "p99_over_slo": float(np.percentile(normalised_all, 99)) if normalised_all else math.nan,
        "functions": per_function,
    }


def daemon_totals(metrics_text: str) -> dict[str, float]:
    """Ticks, failed ticks, changes made and mean reward from the daemon's last ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    totals = {"ticks_ok": 0.0, "ticks_failed": 0.0, "container_changes": 0.0, "share_changes": 0.0,
              "reward_mean": math.nan}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "mfrm_ticks_total":
                totals["ticks_ok" if sample.labels.get("result") == "ok" else "ticks_failed"] += sample.value
            elif sample.name == "mfrm_decision_changes_total":
                key = "container_changes" if sample.labels.get("resource") == "containers" else "share_changes"
                totals[key] += sample.value
            elif sample.name == "mfrm_reward_mean_ratio":
                totals["reward_mean"] = sample.value
    return totals


# --------------------------------------------------------------------------------------------
# one policy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunPlan:
    """What every policy's run replays, and how the daemon ticks."""

    functions: int
    """Trace functions replayed (K), each one benchmark action."""
    start_minute: int
    """First trace minute."""
    minutes: int
    """Trace minutes replayed (M)."""
    speedup: float
    """Trace seconds per wall second."""
    seed: int
    """Seed of the sampling, the arrivals and the daemon."""
    tick_s: float
    """The daemon's tick, s (wall time on the local backend)."""
    concurrency: int
    """Replayer worker threads (invocations outstanding at once)."""
    sample_s: float
    """Period of the pool sampler, s."""


def action_names(plan: RunPlan) -> list[str]:
    """The action names ``mfrm replay`` gives the sampled functions (same call as the replayer's)."""
    from workload.azure2019 import load_trace
    from workload.sampler import sample_workload

    trace = load_trace(TRACE)
    workload = sample_workload(trace, plan.functions, seed=plan.seed, start_minute=plan.start_minute,
                               end_minute=plan.start_minute + plan.minutes)
    return list(workload.names)


def run_policy(policy: str, plan: RunPlan, slo_file: Path, out: Path) -> dict[str, Any]:
    """One policy's live run (module docstring, steps 1–4); returns its result and writes it."""
    out.mkdir(parents=True, exist_ok=True)
    names = action_names(plan)
    cores = float(len(os.sched_getaffinity(0)))
    slo_ms = {row["function"]: float(row["slo_ms"]) for row in json.loads(slo_file.read_text())["functions"]}
    daemon_port = free_port()
    with platform(out / "platform-state", out / "platform.log") as url:
        daemon_argv = [
            sys.executable, "-m", "controller", "run", "--backend", "local", "--metrics-port", str(daemon_port),
            "--set", f"policy.name={policy}", "--set", f"loop.tick_s={plan.tick_s}", "--set", f"seed={plan.seed}",
            "--set", "daemon.metrics_host=127.0.0.1", "--set", f"local.api_host={url}",
            "--set", f"local.slo_file={slo_file}", "--set", f"local.functions={json.dumps(names)}",
            "--set", f"output.out_dir={out / 'daemon'}", "--set", "daemon.resume=false",
        ]
        with child(daemon_argv, out / "daemon.log", env={"MFRM_LOCAL__AUTH": AUTH}, grace_s=40.0) as daemon:
            metrics_url = f"http://127.0.0.1:{daemon_port}/metrics"
            wait_until("daemon", lambda: http_get(metrics_url)[0] == 200, 120.0, daemon)
            sampler = PoolSampler(url, plan.sample_s)
            sampler.start()
            replay_argv = [
                sys.executable, "-m", "controller", "replay", "--api-host", url, "--auth", AUTH, "--trace", str(TRACE),
                "--functions", str(plan.functions), "--start-minute", str(plan.start_minute),
                "--minutes", str(plan.minutes), "--speedup", str(plan.speedup), "--seed", str(plan.seed),
                "--concurrency", str(plan.concurrency), "--deploy", "--out", str(out / "replay"),
            ]
            started = time.monotonic()
            try:
                with (out / "replay.log").open("ab") as log:
                    replay = subprocess.run(replay_argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, check=False)
            finally:
                sampler.stop()
            wall_s = time.monotonic() - started
            _, metrics = http_get(metrics_url)
            daemon_exit_metrics = metrics.decode()
    if replay.returncode != 0:
        raise RuntimeError(f"{policy}: mfrm replay exited with {replay.returncode}; see {out / 'replay.log'}")
    with (out / "pools.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["t_s", "action", "containers", "shares", "cpu_s", "target"])
        writer.writeheader()
        writer.writerows(sampler.rows)
    (out / "daemon-metrics.txt").write_text(daemon_exit_metrics)
    shares_set = sorted({r["shares"] for r in sampler.rows})
    result = {
        "policy": policy,
        "plan": asdict(plan),
        "cores": cores,
        "replay_wall_s": wall_s,
        "pool_samples_failed": sampler.failed,
        "distinct_shares_seen": shares_set,
        **score_records(out / "replay" / "records.csv", slo_ms),
        **cpu_usage(sampler.rows, cores),
        **daemon_totals(daemon_exit_metrics),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------


def table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table of the policies' results."""
    head = ("| policy | invocations | SLO violations | violation rate | p99 latency ms | p99 latency / SLO | cold starts "
            "| CPU used core·s | machine CPU util. | CPU used / allocated | mean containers | container changes "
            "| share changes | daemon ticks ok/failed | replay wall s (nominal) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        lines.append(
            f"| {r['policy']} | {r['invocations']} | {r['violations']} | {100 * r['violation_rate']:.1f}% "
            f"| {r['p99_ms']:.0f} | {r['p99_over_slo']:.2f} | {r['cold']} | {r['cpu_used_core_s']:.0f} "
            f"| {100 * r['machine_utilisation']:.1f}% | {100 * r['allocated_utilisation']:.1f}% "
            f"| {r['mean_containers']:.1f} | {r['container_changes']:.0f} | {r['share_changes']:.0f} "
            f"| {r['ticks_ok']:.0f}/{r['ticks_failed']:.0f} "
            f"| {r['replay_wall_s']:.0f} ({60 * r['plan']['minutes'] / r['plan']['speedup']:.0f}) |"
        )
    return "\n".join(lines) + "\n"


def per_function_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table: per function, SLO and each policy's violations and p99."""
    names = sorted({n for r in results for n in r["functions"]})
    head = "| function | invocations | SLO ms | " + " | ".join(
        f"{r['policy']} viol. | {r['policy']} p99 ms" for r in results) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name in names:
        first = next(r["functions"][name] for r in results if name in r["functions"])
        cells = []
        for r in results:
            f = r["functions"].get(name)
            cells.append("– | –" if f is None else f"{f['violations']} | {f['p99_ms']:.0f}")
        lines.append(f"| {name} | {first['invocations']} | {first['slo_ms']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/live"))
    parser.add_argument("--policies", nargs="+", default=list(POLICIES))
    parser.add_argument("--functions", type=int, default=12)
    parser.add_argument("--start-minute", type=int, default=480)
    parser.add_argument("--minutes", type=int, default=20)
    parser.add_argument("--speedup", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tick", type=float, default=10.0, help="daemon tick, s (the live default)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sample", type=float, default=5.0, help="pool sampling period, s")
    parser.add_argument("--solo-runs", type=int, default=50)
    parser.add_argument("--slo-file", type=Path, help="solo JSON to reuse instead of measuring")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    plan = RunPlan(args.functions, args.start_minute, args.minutes, args.speedup, args.seed, args.tick,
                   args.concurrency, args.sample)
    slo_file = args.slo_file.resolve() if args.slo_file else out / "solo.json"
    if not slo_file.exists():
        print(f"measuring solo latencies ({args.solo_runs} warm runs per function) ...", flush=True)
        measure_solo(out, args.solo_runs)
    results = []
    for policy in args.policies:
        done = out / policy / "result.json"
        if done.exists():
            results.append(json.loads(done.read_text()))
            print(f"{policy}: already measured ({done})", flush=True)
            continue
        print(f"{policy}: running {args.minutes} trace minutes at speed-up {args.speedup:g} ...", flush=True)
        results.append(run_policy(policy, plan, slo_file, out / policy))
        (out / "results.md").write_text(table(results) + "\n" + per_function_table(results))
        print(table(results[-1:]), flush=True)
    (out / "results.md").write_text(table(results) + "\n" + per_function_table(results))
    print(table(results))


if __name__ == "__main__":
    main()
