"""What the live benchmarks share: a recorded localwhisk, the daemon, the replayer, the machine's
load, and the run's costs as ``controller.costs`` defines them.

Used by ``benchmarks/sim_vs_localwhisk.py`` and ``benchmarks/live_compare.py``; not a test. Every
child runs in a session of its own and is stopped (SIGTERM, then SIGKILL after a grace) when its
``with`` block ends, also after an error or Ctrl-C.

Costs of a live run (:func:`live_costs`) are taken over the replay's window [t0, t0 + W), t0 the
replay's time 0 on the wall clock and W its nominal length (trace minutes x 60 / speed-up), the
same window the simulator integrates over:

* activations: the successful ones that ended inside the window, latency = ``waitTime + duration``
  (arrival at the platform to the end: wait, init, run), cold = it had an ``initTime``;
* unfinished: arrivals of the window whose activation had not ended by its end (or never answered);
  dropped: arrivals the platform refused, never ran, or ran with an error;
* memory held and container-seconds: each container's life from the event log of
  ``benchmarks/recorded_localwhisk.py``, clipped to the window (exact, not sampled);
* idle memory: memory held minus the memory of the containers' busy time (each activation's
  [start, end), init included) minus, for containers a pool started with no activation waiting
  (pre-warmed), their initialisation, taken as the function's median initTime in the run (the one
  term not read from the platform: a pre-warm's init ends without a record);
* CPU used: the increase of the actions' ``cpuSeconds`` (localwhisk's resource API, monotonic over
  container removals), read by a sampler and interpolated to the window's ends;
* CPU "allocated" (the paper's, reported only): containers x shares / 1024, from the same log
  (shares changes included), integrated exactly.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import recorded_localwhisk as recorded

from controller.costs import Activations, Usage
from localwhisk.testing import WhiskClient, free_port, http_get, stop_process_group, wait_until

ROOT = Path(__file__).resolve().parents[1]
#: The shipped Azure Functions 2019 sample.
TRACE = ROOT / "data" / "azure-functions-2019-sample"
#: Key of the throw-away platforms (loopback only, gone with the run).
AUTH = "5e1f0c2a-3b4d-4e6f-8a9b-0c1d2e3f4a5b:live-bench-not-secret"
#: ``cpu.shares`` of the platform's own cgroup: the kernel's largest, so that while its containers
#: run, other people's processes on the shared machine take little from them (see
#: ``recorded_localwhisk.py``); it costs the other work nothing while the platform is idle.
PLATFORM_CPU_WEIGHT = 262144


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def child(argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
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


@dataclass(frozen=True)
class RunningPlatform:
    """A recorded localwhisk started by :func:`recorded_platform`."""

    url: str
    """Its API, ``http://127.0.0.1:<port>``."""
    events: Path
    """Its container event log (``recorded_localwhisk.EVENT_FIELDS``); complete once it has stopped."""
    cpu_weight: int
    """``cpu.shares`` of its own cgroup (1024: none of its own)."""


@contextlib.contextmanager
def recorded_platform(out: Path, cpu_weight: int = PLATFORM_CPU_WEIGHT) -> Iterator[RunningPlatform]:
    """A fresh recorded localwhisk (state, log and event log under ``out``) on an ephemeral port."""
    port = free_port()
    events = out / "containers.csv"
    argv = [sys.executable, str(ROOT / "benchmarks" / "recorded_localwhisk.py"), "--state-dir", str(out / "state"),
            "--port", str(port), "--events", str(events), "--cpu-weight", str(cpu_weight)]
    with child(argv, out / "platform.log", env={"LOCALWHISK_AUTH": AUTH}, grace_s=40.0) as process:
        url = f"http://127.0.0.1:{port}"
        wait_until("localwhisk", lambda: http_get(url + "/ping")[0] == 200, 60.0, process)
        yield RunningPlatform(url, events, cpu_weight)


def deploy(url: str, workload: Any) -> list[str]:
    """Create every workload function as the benchmark action it plays (as ``mfrm replay --deploy``)."""
    from workload.functions import FUNCTIONS

    client = WhiskClient(url, auth=AUTH)
    try:
        for function in workload.functions:
            status, body = client.put_action(function.name, overwrite=True,
                                             **FUNCTIONS[function.profile.name].action_body())
            if status != 200:
                raise RuntimeError(f"deploying {function.name} failed: HTTP {status} {body}")
    finally:
        client.close()
    return list(workload.names)


@contextlib.contextmanager
def daemon(policy: str, url: str, names: Sequence[str], slo_file: Path, out: Path, tick_s: float, seed: int,
           checkpoint: Path | None = None, sets: Sequence[str] = ()) -> Iterator[str]:
    """``mfrm run --backend local`` with ``policy`` managing ``names``; yields its /metrics URL once up.

    A learner given a ``checkpoint`` starts from it (copied into the daemon's checkpoint folder,
    ``daemon.resume=true``); otherwise it starts fresh.
    """
    port = free_port()
    settings = [f"policy.name={policy}", f"loop.tick_s={tick_s}", f"seed={seed}", "daemon.metrics_host=127.0.0.1",
                f"local.api_host={url}", f"local.slo_file={slo_file}", f"local.functions={json.dumps(list(names))}",
                f"output.out_dir={out}", f"daemon.resume={'true' if checkpoint else 'false'}", *sets]
    if checkpoint is not None:
        target = out / "checkpoints" / f"{policy}.ckpt.npz"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(checkpoint.read_bytes())
    argv = [sys.executable, "-m", "controller", "run", "--backend", "local", "--metrics-port", str(port)]
    for setting in settings:
        argv += ["--set", setting]
    with child(argv, out / "daemon.log", env={"MFRM_LOCAL__AUTH": AUTH}, grace_s=40.0) as process:
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        wait_until("daemon", lambda: http_get(metrics_url)[0] == 200, 120.0, process)
        yield metrics_url


def replay(url: str, workload_args: Sequence[str], out: Path, concurrency: int = 64) -> int:
    """``mfrm replay`` of the workload ``workload_args`` describe against ``url`` (actions already
    deployed), records into ``out``; its exit status."""
    argv = [sys.executable, "-m", "controller", "replay", "--api-host", url, "--auth", AUTH, "--trace", str(TRACE),
            "--concurrency", str(concurrency), "--no-deploy", "--out", str(out), *workload_args]
    with (out.parent / f"{out.name}.log").open("ab") as log:
        return subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                              check=False).returncode


# --------------------------------------------------------------------------------------------
# samplers
# --------------------------------------------------------------------------------------------


class LoadSampler(threading.Thread):
    """The machine's load averages (``/proc/loadavg``) every ``period_s`` seconds."""

    def __init__(self, period_s: float = 5.0) -> None:
        super().__init__(daemon=True, name="load-sampler")
        self.period_s = period_s
        """Seconds between samples."""
        self.samples: list[tuple[float, float, float, float]] = []
        """(wall time, 1-, 5- and 15-minute load average)."""
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.time(), *os.getloadavg()))
            self._halt.wait(self.period_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def summary(self, start_s: float = -math.inf, end_s: float = math.inf) -> dict[str, float]:
        """Mean, min and max of the 1-minute load average over the samples in [start, end]."""
        ones = np.array([s[1] for s in self.samples if start_s <= s[0] <= end_s])
        if ones.size == 0:
            return {"load_1m_mean": math.nan, "load_1m_min": math.nan, "load_1m_max": math.nan, "load_samples": 0}
        return {"load_1m_mean": float(ones.mean()), "load_1m_min": float(ones.min()),
                "load_1m_max": float(ones.max()), "load_samples": int(ones.size)}


class PoolSampler(threading.Thread):
    """Every action's cumulative ``cpuSeconds`` from localwhisk's resource API, every ``period_s``."""

    def __init__(self, url: str, period_s: float = 5.0) -> None:
        super().__init__(daemon=True, name="pool-sampler")
        self.url = url
        """The platform's API."""
        self.period_s = period_s
        """Seconds between reads."""
        self.rows: list[tuple[float, str, float]] = []
        """(wall time, action, cumulative CPU seconds)."""
        self.failed = 0
        """Reads that did not answer 200."""
        self._halt = threading.Event()

    def read_once(self) -> None:
        status, body = http_get(self.url + "/resources/v1/namespaces/_/actions", AUTH)
        now = time.time()
        if status != 200:
            self.failed += 1
            return
        for pool in json.loads(body):
            self.rows.append((now, str(pool["action"]), float(pool["cpuSeconds"])))

    def run(self) -> None:
        while not self._halt.is_set():
            self.read_once()
            self._halt.wait(self.period_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
        self.read_once()

    def cpu_used(self, names: Sequence[str], start_s: float, end_s: float) -> np.ndarray:
        """CPU seconds each action used in [start, end]: its counter interpolated at both ends."""
        out = np.full(len(names), math.nan)
        for i, name in enumerate(names):
            mine = sorted((t, cpu) for t, action, cpu in self.rows if action == name)
            if len(mine) >= 2:
                times, cpu = np.array(mine).T
                out[i] = float(np.interp(end_s, times, cpu) - np.interp(start_s, times, cpu))
        return out


# --------------------------------------------------------------------------------------------
# the replay's records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ReplayRows:
    """The columns of a replay's ``records.csv`` the costs need, one entry per arrival."""

    function: np.ndarray
    """Action name of each row."""
    status: np.ndarray
    """``success``, an error, or why it did not run (``workload.records``)."""
    scheduled_s: np.ndarray
    """Arrival time in the trace, s from the replay's start (before the speed-up)."""
    sent_s: np.ndarray
    """When the request left, s from the replay's start; NaN if never sent."""
    start_s: np.ndarray
    """Activation start on the platform, s since the epoch; NaN if none."""
    end_s: np.ndarray
    """Activation end, s since the epoch; NaN if none."""
    wait_s: np.ndarray
    """``waitTime``, s."""
    init_s: np.ndarray
    """``initTime``, s (0 when warm)."""
    latency_s: np.ndarray
    """``waitTime + duration``, s."""
    cold: np.ndarray
    """Whether it had an ``initTime``."""


def _float(value: str) -> float:
    return float(value) if value not in ("", None) else math.nan


def read_replay_rows(path: Path) -> ReplayRows:
    """``records.csv`` of ``mfrm replay`` as arrays (times converted to seconds)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    column = {key: np.array([_float(r[key]) for r in rows]) for key in
              ("scheduled_s", "sent_s", "start_ms", "end_ms", "wait_ms", "init_ms", "latency_ms")}
    return ReplayRows(
        function=np.array([r["function"] for r in rows], dtype=object),
        status=np.array([r["status"] for r in rows], dtype=object),
        scheduled_s=column["scheduled_s"],
        sent_s=column["sent_s"],
        start_s=column["start_ms"] / 1000.0,
        end_s=column["end_ms"] / 1000.0,
        wait_s=column["wait_ms"] / 1000.0,
        init_s=np.nan_to_num(column["init_ms"]) / 1000.0,
        latency_s=column["latency_ms"] / 1000.0,
        cold=np.array([r["cold"] == "True" for r in rows]),
    )


def replay_origin_s(rows: ReplayRows) -> float:
    """The wall time of the replay's time 0: each activation arrived at the platform at
    ``start − waitTime``, which the replayer sent at ``t0 + sent_s`` (plus a loopback hop of a
    fraction of a millisecond); the median over activations of the difference."""
    ran = np.isfinite(rows.start_s) & np.isfinite(rows.sent_s)
    if not ran.any():
        raise ValueError("no activation in the records: cannot place the replay on the wall clock")
    return float(np.median(rows.start_s[ran] - rows.wait_s[ran] - rows.sent_s[ran]))


def live_costs(names: Sequence[str], rows: ReplayRows, lifetimes: Sequence[recorded.Lifetime],
               cpu_used_core_s: np.ndarray, origin_s: float, window_s: float) -> tuple[Activations, Usage]:
    """The run's :class:`Activations` and :class:`Usage` over [origin, origin + window) (see the
    module docstring for each term)."""
    start, end = origin_s, origin_s + window_s
    index = {name: i for i, name in enumerate(names)}
    n = len(names)
    arrived = rows.scheduled_s < window_s
    known = np.array([f in index for f in rows.function])
    mine = arrived & known
    fn = np.array([index.get(f, -1) for f in rows.function])
    succeeded = rows.status == "success"
    ended = np.isfinite(rows.end_s) & (rows.end_s <= end)
    done = mine & succeeded & ended
    refused = mine & ~succeeded & np.isin(rows.status, ("throttled", "not_found", "rejected", "refused", "dropped",
                                                        "cancelled", "application_error", "developer_error",
                                                        "internal_error"))
    unfinished = mine & ~done & ~refused
    activations = Activations(function_index=fn[done], latency_s=rows.latency_s[done], cold=rows.cold[done])

    held = recorded.container_usage(lifetimes, names, start, end)
    intervals = [(f, s, e) for f, s, e, ok in zip(rows.function, rows.start_s, rows.end_s,
                                                  np.isfinite(rows.start_s) & np.isfinite(rows.end_s), strict=True) if ok]
    busy = recorded.busy_seconds(intervals, names, start, end)
    memory = {life.action: life.memory_mb for life in lifetimes}
    idle = np.zeros(n)
    alloc = np.zeros(n)
    for i, name in enumerate(names):
        colds = mine & rows.cold & (rows.function == name) & np.isfinite(rows.start_s)
        started_cold = int(np.sum(colds & (rows.start_s >= start) & (rows.start_s < end)))
        prewarmed = max(held[name].containers_started - started_cold, 0)
        init_s = float(np.median(rows.init_s[colds])) if colds.any() else 0.0
        idle[i] = max(held[name].memory_mb_s - memory.get(name, 0.0) * (busy[name] + prewarmed * init_s), 0.0)
    for life in lifetimes:
        if life.action in index:
            alloc[index[life.action]] += life.shares_core_s(start, end)
    usage = Usage(
        arrivals=np.bincount(fn[mine], minlength=n).astype(float),
        unfinished=np.bincount(fn[unfinished], minlength=n).astype(float),
        dropped=np.bincount(fn[refused], minlength=n).astype(float),
        memory_mb_s=np.array([held[name].memory_mb_s for name in names]),
        idle_memory_mb_s=idle,
        container_s=np.array([held[name].container_s for name in names]),
        cpu_used_core_s=np.nan_to_num(np.maximum(cpu_used_core_s, 0.0)),
        cpu_alloc_core_s=alloc,
    )
    return activations, usage


# --------------------------------------------------------------------------------------------
# one live run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayPlan:
    """What a run replays: ``mfrm replay`` settings, and ``mfrm simulate`` settings of the same meaning."""

    functions: int
    """Trace functions (K), each one benchmark action."""
    select: str
    """``spread`` or ``busiest`` (``workload.select``)."""
    start_minute: int
    """First trace minute."""
    minutes: int
    """Trace minutes replayed."""
    rate_scale: float
    """Multiplier on every per-minute count (``workload.rate_scale``)."""
    seed: int
    """Seed of the sampling and the arrivals (and of the policies)."""
    tick_s: float
    """The control loop's tick, s (daemon and simulator)."""
    speedup: float = 1.0
    """Trace seconds per wall second (1: real time, as the simulator's clock)."""

    @property
    def window_s(self) -> float:
        """Length of the replay on the wall clock, s."""
        return 60.0 * self.minutes / self.speedup

    def settings_dict(self, policy: str, cores: float, user_memory_mb: int = 4096) -> dict[str, Any]:
        """``mfrm`` settings of this plan on the simulated twin of the platform: one invoker with the
        machine's cores and localwhisk's user memory and idle timeout."""
        return {
            "seed": self.seed,
            "policy": {"name": policy},
            "loop": {"tick_s": self.tick_s},
            "workload": {"functions": self.functions, "select": self.select, "start_minute": self.start_minute,
                         "minutes": self.minutes, "rate_scale": self.rate_scale},
            "cluster": {"invokers": 1, "cores": cores, "user_memory_mb": user_memory_mb, "idle_timeout_s": 600.0},
        }

    def replay_args(self) -> list[str]:
        """The same workload as ``mfrm replay`` options."""
        return ["--functions", str(self.functions), "--select", self.select, "--start-minute", str(self.start_minute),
                "--minutes", str(self.minutes), "--rate-scale", str(self.rate_scale), "--seed", str(self.seed),
                "--speedup", str(self.speedup)]


@dataclass(frozen=True)
class PolicyRun:
    """A policy as a live run uses it."""

    label: str
    """Name of its runs (folder, table row)."""
    policy: str
    """Registered policy name (``openwhisk-default`` is the platform itself: no daemon runs)."""
    checkpoint: Path | None = None
    """A learner's starting checkpoint (trained on the simulator); None starts it fresh."""


def settings_of(values: Mapping[str, Any]) -> Any:
    """Validated ``controller.settings.Settings`` from nested values."""
    from controller.settings import Settings

    return Settings.model_validate(dict(values))


def machine_cores() -> float:
    """Cores this process may run on (the platform's, on the same machine)."""
    return float(len(os.sched_getaffinity(0)))


def code_state() -> dict[str, Any]:
    """The commit, the files of the working tree that differ from it and a hash of the difference:
    what ran (other engineers change the tree while a run goes on)."""
    def git(*args: str) -> bytes:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=False).stdout

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").decode().splitlines()]
    diff = git("diff", "HEAD")
    return {"commit": git("rev-parse", "HEAD").decode().strip(), "modified_files": changed,
            "diff_sha1": hashlib.sha1(diff).hexdigest() if diff else ""}


def per_function(names: Sequence[str], activations: Activations, usage: Usage,
                 window_s: float) -> dict[str, dict[str, float]]:
    """p50 and p99 latency (s) of the completed invocations, cold starts among them, containers
    held on average (container-s / window), memory held and idle (GB-s), and the invocations."""
    out = {}
    for i, name in enumerate(names):
        mine = activations.function_index == i
        latency = activations.latency_s[mine]
        out[name] = {
            "invocations": float(usage.arrivals[i]),
            "completed": float(latency.size),
            "p50_s": float(np.percentile(latency, 50)) if latency.size else math.nan,
            "p99_s": float(np.percentile(latency, 99)) if latency.size else math.nan,
            "cold_starts": float(np.sum(activations.cold[mine])),
            "containers": float(usage.container_s[i]) / window_s,
            "memory_gb_s": float(usage.memory_mb_s[i]) / 1024.0,
            "idle_memory_gb_s": float(usage.idle_memory_mb_s[i]) / 1024.0,
        }
    return out


def run_live(run: PolicyRun, plan: ReplayPlan, solo: Path, out: Path, cpu_weight: int = PLATFORM_CPU_WEIGHT,
             ) -> dict[str, Any]:
    """One run of ``run`` on a fresh recorded localwhisk; writes ``out/result.json`` and returns it.

    The result has per-function metrics (:func:`per_function`) and ``controller.costs``' rows per
    function and overall (SLO: the solo p99 + 15% of ``solo``), the machine's load over the
    window, the daemon's counters and the code that ran."""
    from controller.assemble import build_workload
    from controller.backends.local import benchmark_slos_s
    from controller.costs import GuardCuts, function_costs, overall_costs

    out.mkdir(parents=True, exist_ok=True)
    workload = build_workload(settings_of(plan.settings_dict(run.policy, machine_cores())))
    names = list(workload.names)
    load = LoadSampler(period_s=5.0)
    load.start()
    with recorded_platform(out / "platform", cpu_weight) as platform:
        deploy(platform.url, workload)
        pools = PoolSampler(platform.url, period_s=5.0)
        pools.start()
        if run.policy == "openwhisk-default":  # the platform's own behaviour: nothing to apply
            status, daemon_metrics = replay(platform.url, plan.replay_args(), out / "replay"), {}
        else:
            with daemon(run.policy, platform.url, names, solo, out / "daemon", plan.tick_s, plan.seed,
                        checkpoint=run.checkpoint) as metrics_url:
                status = replay(platform.url, plan.replay_args(), out / "replay")
                daemon_metrics = daemon_counters(metrics_url)
        pools.stop()
    load.stop()
    if status not in (0, 1):
        raise RuntimeError(f"{run.label}: mfrm replay exited with {status}; see {out / 'replay.log'}")
    rows = read_replay_rows(out / "replay" / "records.csv")
    origin = replay_origin_s(rows)
    lifetimes = recorded.read_lifetimes(platform.events, names)
    activations, usage = live_costs(names, rows, lifetimes, pools.cpu_used(names, origin, origin + plan.window_s),
                                    origin, plan.window_s)
    slo_s = benchmark_slos_s(solo, names)
    cuts = GuardCuts.none(len(names))
    result = {
        "label": run.label,
        "policy": run.policy,
        "checkpoint": str(run.checkpoint) if run.checkpoint else None,
        "plan": asdict(plan),
        "cpu_weight": cpu_weight,
        "origin_s": origin,
        "replay_exit": status,
        "late_send_p99_s": float(np.nanpercentile(rows.sent_s - rows.scheduled_s / plan.speedup, 99)),
        "load": load.summary(origin, origin + plan.window_s),
        "code": code_state(),
        "daemon_metrics": daemon_metrics,
        "functions": per_function(names, activations, usage, plan.window_s),
        "costs": {"overall": overall_costs(slo_s, activations, usage, cuts),
                  "functions": function_costs(names, slo_s, activations, usage, cuts)},
        "latency_s": activations.latency_s.tolist(),
        "latency_over_slo": (activations.latency_s / slo_s[activations.function_index]).tolist(),
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


def daemon_counters(url: str) -> dict[str, float]:
    """The daemon's tick, change and guard counters from its ``/metrics``, by labels."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(url)
    totals: dict[str, float] = {}
    if status != 200:
        return totals
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name in ("mfrm_ticks_total", "mfrm_decision_changes_total", "mfrm_guard_decisions_total"):
                key = sample.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())) + "}"
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def lone_run_times(rows: ReplayRows) -> dict[str, np.ndarray]:
    """Per action, the run time (``duration − initTime``, s) of its successful warm activations
    during which nothing else ran on the platform: no other activation, no cold start. These are
    uncontended executions in the state a replay leaves a function in between its invocations
    (its container paused for seconds, its caches taken by others), which a solo measurement of
    back-to-back or briefly paused runs does not reproduce."""
    ran = np.isfinite(rows.start_s) & np.isfinite(rows.end_s)
    start, end = rows.start_s[ran], rows.end_s[ran]
    order = np.argsort(start, kind="stable")
    start, end = start[order], end[order]
    earlier_end = np.maximum.accumulate(np.concatenate([[-np.inf], end[:-1]]))  # latest end of those before
    next_start = np.concatenate([start[1:], [np.inf]])
    alone = (earlier_end <= start) & (next_start >= end)
    lone = np.zeros(rows.start_s.size, dtype=bool)
    lone[np.flatnonzero(ran)[order]] = alone
    keep = lone & (rows.status == "success") & ~rows.cold
    run_s = rows.latency_s - rows.wait_s - rows.init_s
    return {str(name): run_s[keep & (rows.function == name)] for name in np.unique(rows.function[keep])}


def run_rotation(runs: Mapping[str, PolicyRun], plan: ReplayPlan, solo: Path, out: Path, repeats: int,
                 cpu_weight: int = PLATFORM_CPU_WEIGHT) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Every run of ``runs`` (label -> run) ``repeats`` times, the labels in turn within each round so
    that each meets the same machine load, each in ``out/live/<label>/run<k>``. A run whose
    ``result.json`` exists is kept, not repeated (the rotation resumes). Yields (label, round, result)
    of each run made."""
    for repeat in range(repeats):
        for label, run in runs.items():
            folder = out / "live" / label / f"run{repeat}"
            if (folder / "result.json").exists():
                continue
            print(f"{label}, run {repeat}: {plan.minutes} trace minutes ...", flush=True)
            yield label, repeat, run_live(run, plan, solo, folder, cpu_weight)

