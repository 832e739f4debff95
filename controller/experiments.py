"""``mfrm simulate``, ``mfrm compare`` and ``mfrm demo``: policies on the simulated cluster, with reports.

One run = one policy on the ``sim`` backend, driven by the control loop for the workload's minutes.
A comparison runs several policies on the *same* workload and the *same* arrivals (every seed is
derived from the one ``--seed``), in parallel worker processes, then writes:

* ``overall.csv`` (one row per policy) and ``functions.csv`` (one row per policy and function);
* ``latency_cdf.png`` and ``timeseries.png`` (containers, CPU shares, invoker utilisation);
* ``run.json``: the command, the effective settings (secrets masked), the seeds, the workload, the
  SLOs, the versions of mfrm and its main libraries, and each run's wall time and learner cost;
* ``checkpoints/<policy>.ckpt.npz`` for every learned policy (saved at exit, and every
  ``loop.checkpoint_every_ticks`` ticks when set).

Learned policies (``nac-linear``, ``nac-nn``) run like any baseline; each gets its own seed derived
from the run's seed, may start from a checkpoint (``--checkpoint NAME=PATH``), and keeps learning
online during the run (the paper's setting) unless ``--frozen``.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import platform
import queue as queue_module
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import numpy as np

from controller.settings import Settings, SettingsError, load_settings
from controller.version import __version__

log = logging.getLogger(__name__)

#: The shipped trace sample, relative to the source tree (``data/`` beside the packages).
SAMPLE_TRACE = Path(__file__).resolve().parents[1] / "data" / "azure-functions-2019-sample"

#: Policies that learn (they take a ``seed``, have checkpointable state, and accept ``frozen`` and
#: ``greedy``); every other registered policy is a stateless-between-runs baseline.
LEARNED_POLICIES: tuple[str, ...] = ("nac-linear", "nac-nn")

#: What ``mfrm demo`` runs: every baseline and both learners, which start from scratch and learn
#: online during the demo (no shipped checkpoint: the demo shows the online setting of the paper).
DEMO_POLICIES: tuple[str, ...] = ("openwhisk-default", "ensure", "kpa", "hpa", "hybrid-histogram", *LEARNED_POLICIES)

#: What ``mfrm demo`` pins, on top of the defaults: the paper's cluster and 12 functions.
#: All 480 minutes of the shipped sample (08:00-16:00); timings in docs/results-simulator.md (the
#: baselines, ~25 s) and docs/results-agents.md (with the learners, whose updates dominate).
DEMO_OVERRIDES: dict[str, Any] = {
    "cluster.invokers": 21,
    "cluster.cores": 8.0,
    "cluster.user_memory_mb": 2048,
    "workload.functions": 12,
    "workload.minutes": 480,
    "policy.compare": list(DEMO_POLICIES),
    "output.out_dir": "runs/demo",
}


# --------------------------------------------------------------------------------------------
# seeds, workload, one run
# --------------------------------------------------------------------------------------------


def _child_int(sequence: np.random.SeedSequence) -> int:
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class RunSeeds:
    """Independent seeds of a run's components, all derived from the run's one seed."""

    workload: int
    """Which trace functions are picked and which benchmark each plays."""
    arrivals: int
    """Arrival times inside each trace minute, and the rounding of scaled counts."""
    cluster: int
    """The simulator's own draws (execution times, placement ties)."""
    slo: int
    """The solo runs that measure each function's SLO."""
    policies: int
    """Root of the learned policies' seeds (one child per policy name, :meth:`policy_seed`)."""

    @classmethod
    def from_seed(cls, seed: int) -> RunSeeds:
        """Spawn one child seed per component (numpy SeedSequence: independent streams).

        Children are numbered in field order; a field added later takes the next child, so the
        seeds of the older components (and every published number) stay the same.
        """
        children = np.random.SeedSequence(seed).spawn(5)
        return cls(*[_child_int(child) for child in children])

    def policy_seed(self, name: str) -> int:
        """The seed of learned policy ``name``: a child of ``policies`` keyed by a stable hash of the name,
        so two learners of one run draw independent streams and a learner's seed does not depend on
        which other policies run beside it."""
        key = zlib.crc32(name.encode("utf-8"))
        return _child_int(np.random.SeedSequence(self.policies, spawn_key=(key,)))


def resolve_trace_dir(settings: Settings) -> Path:
    """The trace folder of ``settings`` (the shipped sample when unset); a clear error if it is missing."""
    path = settings.workload.trace_dir if settings.workload.trace_dir is not None else SAMPLE_TRACE
    if not path.is_dir():
        hint = (
            " (the sample ships in the source tree under data/; run from a git checkout or pass --trace)"
            if settings.workload.trace_dir is None
            else ""
        )
        raise click.ClickException(f"trace folder not found: {path}{hint}")
    return path


def busiest_trace_ids(trace: Any, k: int) -> list[str]:
    """Trace ids of the ``k`` functions with the most invocations over the whole trace, busiest first
    (ties kept in trace order)."""
    invocations = trace.invocations
    if k > len(invocations.keys):
        raise ValueError(f"cannot pick the {k} busiest functions of a trace with {len(invocations.keys)}")
    totals = invocations.counts.sum(axis=1, dtype=np.int64)
    order = np.argsort(-totals, kind="stable")[:k]
    return [invocations.keys[int(i)].trace_id for i in order]


def build_workload(settings: Settings) -> Any:
    """The sampled ``workload.sampler.Workload`` of ``settings`` (same settings and seed: same workload).

    Functions are picked from the trace's whole span (``workload.select``), their counts multiplied
    by ``workload.rate_scale`` over that span, and only then cut to the replayed minutes
    [start_minute, start_minute + minutes). So a training run over one window and an evaluation run
    over another see the same functions, playing the same benchmarks, with the same scaled counts.
    """
    from workload.arrivals import scale_minute_counts
    from workload.azure2019 import load_trace
    from workload.sampler import Workload, sample_workload

    w = settings.workload
    seeds = RunSeeds.from_seed(settings.seed)
    trace = load_trace(resolve_trace_dir(settings))
    span_start = trace.invocations.first_minute
    span_end = span_start + trace.invocations.n_minutes
    start, end = w.start_minute, w.start_minute + w.minutes
    if not span_start <= start < end <= span_end:
        raise ValueError(
            f"workload minutes [{start}, {end}) (workload.start_minute={start}, workload.minutes={w.minutes}) "
            f"are not within the trace's minutes [{span_start}, {span_end})"
        )
    names = busiest_trace_ids(trace, w.functions) if w.select == "busiest" else None
    whole = sample_workload(
        trace,
        w.functions,
        seed=seeds.workload,
        functions=names,
        start_minute=span_start,
        end_minute=span_end,
        profiles=w.profiles,
    )
    counts = np.stack([f.counts_per_minute for f in whole.functions])
    counts = scale_minute_counts(counts, span_start, w.rate_scale, seeds.arrivals)
    window = counts[:, start - span_start : end - span_start].astype(np.int32)
    window.setflags(write=False)
    functions = tuple(
        replace(f, counts_per_minute=window[i], first_minute=start) for i, f in enumerate(whole.functions)
    )
    return Workload(functions=functions, start_minute=start, end_minute=end, seed=whole.seed,
                    profile_mode=whole.profile_mode)


def cluster_config(settings: Settings) -> Any:
    """The simulator's ``ClusterConfig`` for ``settings.cluster``."""
    from simulator import ClusterConfig

    c = settings.cluster
    return ClusterConfig(invokers=c.invokers, cores=c.cores, user_memory_mb=c.user_memory_mb,
                         idle_timeout_s=c.idle_timeout_s)


def measure_slos(settings: Settings, workload: Any) -> np.ndarray:
    """Each function's SLO, s (solo p99 in the simulated cluster + margin; cached per profile)."""
    from controller.backends.sim import solo_slo_s

    return solo_slo_s(
        [f.profile for f in workload.functions],
        cluster_config(settings),
        margin=settings.reward.slo_margin,
        seed=RunSeeds.from_seed(settings.seed).slo,
        probes=settings.reward.slo_probe_invocations,
    )


def tick_count(settings: Settings) -> int:
    """Ticks that cover the workload's minutes (the last one may run past the trace's end)."""
    return math.ceil(settings.workload.minutes * 60.0 / settings.loop.tick_s)


@dataclass(frozen=True)
class PolicySpec:
    """Which policy a run uses and, for a learned one, where it starts and whether it keeps learning."""

    name: str
    """Registered policy name."""
    checkpoint: Path | None = None
    """Checkpoint to start from (learned policies only); None starts from the learner's θ₀."""
    frozen: bool = False
    """Learned policies only: decide without learning (evaluation of a trained policy). Off by
    default: as in the paper, the agents keep learning online while they are evaluated."""
    greedy: bool = False
    """Learned policies only: take the most probable move instead of sampling one."""

    @property
    def learned(self) -> bool:
        """Whether the policy learns (has a seed, state and checkpoints)."""
        return self.name in LEARNED_POLICIES


def as_spec(policy: str | PolicySpec) -> PolicySpec:
    """A policy name as a spec with the defaults; a spec unchanged."""
    return policy if isinstance(policy, PolicySpec) else PolicySpec(policy)


class PolicyParamsError(ValueError):
    """``policy.params`` of a policy that its constructor refuses (unknown key or invalid value)."""


def build_policy(settings: Settings, policy: str | PolicySpec) -> Any:
    """A fresh policy for ``settings``: ``policy.params`` of its name, and for a learned policy its own
    seed (``RunSeeds.policy_seed``), ``frozen``/``greedy`` and the checkpoint it resumes from.

    Raises :class:`PolicyParamsError`, its message starting ``policy.params.<name>:``, when the
    policy refuses its parameters."""
    from policies.registry import make

    spec = as_spec(policy)
    params = dict(settings.policy.params.get(spec.name, {}))
    if not spec.learned:
        if spec.checkpoint is not None:
            raise ValueError(f"policy {spec.name!r} does not learn: it has no checkpoint to load")
        return _make(make, spec.name, params)
    if spec.frozen:
        params["frozen"] = True
    if spec.greedy:
        params["greedy"] = True
    built = _make(make, spec.name, {"seed": RunSeeds.from_seed(settings.seed).policy_seed(spec.name), **params})
    if spec.checkpoint is not None:
        from controller.checkpoint import load_checkpoint

        load_checkpoint(spec.checkpoint, built)
    return built


def _make(make: Any, name: str, params: dict[str, Any]) -> Any:
    try:
        return make(name, **params)
    except (TypeError, ValueError) as error:  # constructors refuse unknown keys (TypeError) and values
        raise PolicyParamsError(f"policy.params.{name}: {error}") from None


class TimedPolicy:
    """A policy wrapper that adds up the wall time of ``decide`` and ``feedback`` (the learner's cost
    per tick, reported beside the results; measurement only, it changes no decision)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.decide_s = 0.0
        """Total wall time in ``decide``, s."""
        self.feedback_s = 0.0
        """Total wall time in ``feedback`` (the learner's update), s."""
        self.calls = 0
        """Ticks decided."""

    def decide(self, snapshot: Any, mu: np.ndarray) -> Any:
        started = time.perf_counter()
        try:
            return self.inner.decide(snapshot, mu)
        finally:
            self.decide_s += time.perf_counter() - started
            self.calls += 1

    def feedback(self, snapshot: Any, mu: np.ndarray, rewards: np.ndarray) -> Mapping[str, float]:
        started = time.perf_counter()
        try:
            return self.inner.feedback(snapshot, mu, rewards)
        finally:
            self.feedback_s += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        # Checkpoints read the inner policy's state, signature, seed and settings through the wrapper.
        return getattr(self.inner, name)


class _InnerCheckpointer:
    """The loop's checkpointer for a wrapped policy: saves the policy inside the wrapper."""

    def __init__(self, store: Any, policy: Any) -> None:
        self.store = store
        self.policy = policy

    def save(self, policy: Any, tick: int, now: float) -> None:
        self.store.save(self.policy, tick, now)


def run_policy(settings: Settings, workload: Any, slo_s: np.ndarray, policy_name: str | PolicySpec,
               on_tick: Callable[[int], None] | None = None, *, policy: Any = None,
               checkpoint_dir: Path | None = None, checkpointer: Any = None, sinks: Sequence[Any] = (),
               seeds: RunSeeds | None = None) -> Any:
    """One policy on the simulated cluster over the whole workload; returns a ``RunResult``.

    ``policy`` is a pre-built policy object (e.g. a learner resumed with ``CheckpointStore.load``);
    None builds ``policy_name`` with :func:`build_policy`. A policy with learnable state is saved when
    the run ends, however it ends, and every ``loop.checkpoint_every_ticks`` ticks when that is set:
    through ``checkpointer`` (anything with ``save(policy, tick, now)``) when given, else into
    ``checkpoint_dir`` (default ``output.out_dir/checkpoints``). ``sinks`` get every tick's report.
    ``seeds`` replaces the run's arrival and simulator seeds (another episode over the same workload);
    None derives them from ``settings.seed``.
    """
    from controller.backends.sim import SimBackend
    from controller.checkpoint import CheckpointStore
    from controller.estimator import PopulationEstimator
    from controller.guard import GuardBounds
    from controller.loop import ControlLoop, tick_times
    from controller.report import RunRecorder
    from simulator import Cluster
    from workload.arrivals import ArrivalStream

    spec = as_spec(policy_name)
    seeds = seeds or RunSeeds.from_seed(settings.seed)
    cluster = Cluster(cluster_config(settings), [f.profile for f in workload.functions], slo_s, seed=seeds.cluster)
    arrivals = ArrivalStream(workload.functions, workload.start_minute, workload.end_minute,
                             mode=settings.workload.arrivals, seed=seeds.arrivals)
    backend = SimBackend(cluster, arrivals, workload.names, settings.loop.tick_s)
    inner = policy if policy is not None else build_policy(settings, spec)
    timed = TimedPolicy(inner)
    recorder = RunRecorder()
    learns = hasattr(inner, "state_dict")
    store = None
    if learns:
        store = checkpointer or CheckpointStore(checkpoint_dir or settings.output.out_dir / "checkpoints")
    loop = ControlLoop(
        backend=backend,
        policy=timed,
        estimator=PopulationEstimator(bins=settings.estimator.bins, beta=settings.estimator.beta),
        bounds=GuardBounds.from_settings(settings.guard),
        reward_alpha=settings.reward.alpha,
        reward_charge_memory=settings.reward.charge_memory,
        sinks=[recorder, *sinks],
        checkpointer=_InnerCheckpointer(store, inner) if store is not None else None,
        checkpoint_every_ticks=settings.loop.checkpoint_every_ticks,
    )
    started = time.perf_counter()
    try:
        loop.run(tick_times(0.0, settings.loop.tick_s, tick_count(settings)),
                 on_tick=(lambda report: on_tick(report.tick + 1)) if on_tick else None)
    finally:
        if store is not None and loop.counters.ticks > 0:
            store.save(inner, loop.counters.ticks, backend.time_s)
    records = backend.records()
    ticks = max(timed.calls, 1)
    return recorder.result(
        spec.name,
        latency_s=records["end_s"] - records["arrival_s"],
        function_index=records["fn"],
        cold=records["cold"],
        wall_s=time.perf_counter() - started,
        decide_ms=1000.0 * timed.decide_s / ticks,
        update_ms=1000.0 * timed.feedback_s / ticks,
    )


# --------------------------------------------------------------------------------------------
# several runs in parallel processes, with progress
# --------------------------------------------------------------------------------------------

_progress_queue: Any = None


def _init_worker(progress_queue: Any, log_level: int) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")


def _worker(settings: Settings, workload: Any, slo_s: np.ndarray, spec: PolicySpec) -> Any:
    def report(done: int) -> None:
        _progress_queue.put((spec.name, done))

    return run_policy(settings, workload, slo_s, spec, on_tick=report)


def run_policies(settings: Settings, workload: Any, slo_s: np.ndarray, policies: Sequence[str | PolicySpec],
                 on_progress: Callable[[str, int], None]) -> list[Any]:
    """Every policy on the same workload; in ``settings.output.workers`` processes when more than one."""
    specs = [as_spec(p) for p in policies]
    workers = min(settings.output.workers, len(specs))
    if workers <= 1:
        return [run_policy(settings, workload, slo_s, spec, on_tick=lambda done, n=spec.name: on_progress(n, done))
                for spec in specs]
    context = multiprocessing.get_context()
    progress_queue = context.Queue()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=(progress_queue, logging.getLogger().getEffectiveLevel())) as pool:
        # Learners cost ~10x a baseline per tick: start them first, so the two processes finish
        # together (the results keep the order the policies were given in).
        order = sorted(range(len(specs)), key=lambda i: not specs[i].learned)
        submitted = {i: pool.submit(_worker, settings, workload, slo_s, specs[i]) for i in order}
        futures: list[Future[Any]] = [submitted[i] for i in range(len(specs))]
        while not all(f.done() for f in futures):
            try:
                name, done = progress_queue.get(timeout=0.2)
            except queue_module.Empty:
                continue
            on_progress(name, done)
        # The last updates may still be in the queue's feeder: drain until it stays empty briefly.
        while True:
            try:
                on_progress(*progress_queue.get(timeout=0.05))
            except queue_module.Empty:
                break
        return [f.result() for f in futures]


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    import matplotlib
    import pydantic
    import scipy

    return {
        "mfrm": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
        "pydantic": pydantic.VERSION,
        "platform": platform.platform(),
    }


@dataclass(frozen=True)
class Outputs:
    """Files a run or comparison wrote."""

    overall_csv: Path
    """One row of overall metrics per policy."""
    functions_csv: Path
    """One row per policy and function."""
    run_json: Path
    """Settings, seeds, workload, SLOs, versions, wall times."""
    plots: tuple[Path, ...]
    """PNG plots (empty when plots are off)."""


def write_outputs(settings: Settings, workload: Any, slo_s: np.ndarray, results: Sequence[Any],
                  command: str, specs: Sequence[PolicySpec] = ()) -> tuple[Outputs, list[dict[str, Any]]]:
    """Write CSVs, plots and ``run.json`` into ``settings.output.out_dir``; return them and the overall rows."""
    from controller.report import (
        function_metrics,
        overall_metrics,
        plot_latency_cdf,
        plot_timeseries,
        write_csv,
    )

    out = settings.output.out_dir
    out.mkdir(parents=True, exist_ok=True)
    overall = [overall_metrics(r) for r in results]
    per_function = [row for r in results for row in function_metrics(r)]
    plots: tuple[Path, ...] = ()
    if settings.output.plots:
        plots = (plot_latency_cdf(results, out / "latency_cdf.png"), plot_timeseries(results, out / "timeseries.png"))
    seeds = RunSeeds.from_seed(settings.seed)
    meta = {
        "command": command,
        "seed": settings.seed,
        "seeds": seeds.__dict__,
        "settings": settings.logged(),
        "trace_dir": str(resolve_trace_dir(settings)),
        "versions": _versions(),
        "ticks": tick_count(settings),
        "functions": [
            {"name": f.name, "profile": f.profile.name, "memory_mb": f.profile.memory_mb, "trace_id": f.trace_id,
             "rate_class": f.rate_class, "invocations": int(f.counts_per_minute.sum()), "slo_s": float(s)}
            for f, s in zip(workload.functions, slo_s)
        ],
        "learned": [{"policy": spec.name, "checkpoint": str(spec.checkpoint) if spec.checkpoint else None,
                     "frozen": spec.frozen, "greedy": spec.greedy,
                     "seed": RunSeeds.from_seed(settings.seed).policy_seed(spec.name)}
                    for spec in specs if spec.learned],
        "runs": [{"policy": r.policy, "wall_s": r.wall_s, "decide_ms": r.decide_ms, "update_ms": r.update_ms,
                  "failures": dict(r.failures)} for r in results],
    }
    outputs = Outputs(
        overall_csv=write_csv(overall, out / "overall.csv"),
        functions_csv=write_csv(per_function, out / "functions.csv"),
        run_json=out / "run.json",
        plots=plots,
    )
    outputs.run_json.write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    return outputs, overall


# --------------------------------------------------------------------------------------------
# the commands
# --------------------------------------------------------------------------------------------


def _parse_set(values: Sequence[str]) -> dict[str, Any]:
    """``--set key=value`` pairs; values are read as YAML scalars (numbers, booleans, lists)."""
    import yaml

    overrides: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        overrides[key.strip()] = yaml.safe_load(raw)
    return overrides


def _settings_from_cli(config: Path | None, options: dict[str, Any], sets: Sequence[str],
                       base: dict[str, Any] | None = None) -> Settings:
    mapping = {
        "trace": "workload.trace_dir",
        "functions": "workload.functions",
        "minutes": "workload.minutes",
        "start_minute": "workload.start_minute",
        "profiles": "workload.profiles",
        "select": "workload.select",
        "rate_scale": "workload.rate_scale",
        "seed": "seed",
        "out": "output.out_dir",
        "workers": "output.workers",
    }
    overrides = dict(base or {})
    overrides.update({mapping[k]: v for k, v in options.items() if k in mapping and v is not None})
    if options.get("no_plots"):
        overrides["output.plots"] = False
    overrides.update(_parse_set(sets))
    try:
        return load_settings(config, overrides)
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


def _common_options(command: Callable[..., Any], out_file: bool = False) -> Callable[..., Any]:
    """The options every run command shares; ``out_file``: ``--out`` names a file (``mfrm train``'s
    checkpoint) instead of a folder."""
    out_option = (
        click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                     help="Checkpoint file [default: runs/train/POLICY.ckpt.npz]; diagnostics, plot and "
                          "run.json are written beside it.")
        if out_file
        else click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
    )
    options = [
        click.option("--config", "config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="YAML settings file (see docs/user-guide.md)."),
        click.option("--trace", type=click.Path(file_okay=False, path_type=Path),
                     help="Azure Functions 2019 trace folder [default: the shipped sample]."),
        click.option("--functions", type=int, help="Functions sampled from the trace [default: 12]."),
        click.option("--minutes", type=int, help="Trace minutes replayed [default: 10]."),
        click.option("--start-minute", type=int, help="First trace minute [default: 480]."),
        click.option("--profiles", type=click.Choice(["benchmark", "trace"]),
                     help="Benchmark profiles (the paper's 12) or the trace's own [default: benchmark]."),
        click.option("--select", type=click.Choice(["spread", "busiest"]),
                     help="Pick functions spread over rate classes, or the busiest [default: spread]."),
        click.option("--rate-scale", type=float,
                     help="Multiply every per-minute invocation count (load knob) [default: 1]."),
        click.option("--seed", type=int, help="Seed of everything random [default: 0]."),
        out_option,
        click.option("--no-plots", is_flag=True, default=False, help="Skip the PNG plots."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override any setting, e.g. --set loop.tick_s=5 (repeatable)."),
        click.option("-v", "--verbose", is_flag=True, default=False, help="Log every applied change."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _execute(settings: Settings, policies: Sequence[str | PolicySpec], command: str, title: str) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from controller.report import overall_table
    from policies.registry import available

    specs = [as_spec(p) for p in policies]
    known = available()
    unknown = [s.name for s in specs if s.name not in known]
    if unknown:
        raise click.ClickException(f"unknown policy {', '.join(unknown)}; known policies: {', '.join(known)}")
    from controller.checkpoint import CheckpointError

    for spec in specs:
        # Refuse parameters a policy does not take, and a checkpoint that does not fit here, with
        # their reasons, before any work starts (in a worker they would end as a traceback).
        try:
            build_policy(settings, spec)
        except (CheckpointError, ValueError) as error:
            raise click.ClickException(str(error)) from None
    console = Console(stderr=True)
    console.log(f"mfrm {__version__}: {len(specs)} polic{'y' if len(specs) == 1 else 'ies'}, "
                f"{settings.workload.functions} functions, {settings.workload.minutes} min from minute "
                f"{settings.workload.start_minute}, load x{settings.workload.rate_scale:g}, seed {settings.seed}")
    log.info("effective settings: %s", json.dumps(settings.logged()))
    try:
        workload = build_workload(settings)
    except (ValueError, OSError) as error:
        raise click.ClickException(f"cannot build the workload: {error}") from None
    with console.status("measuring each function's SLO (solo p99 + margin)"):
        try:
            slo_s = measure_slos(settings, workload)
        except ValueError as error:  # e.g. a function larger than an invoker's user memory
            raise click.ClickException(f"cannot simulate this workload on this cluster: {error}") from None
    ticks = tick_count(settings)
    started = time.perf_counter()
    with Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        tasks = {spec.name: progress.add_task(spec.name, total=ticks) for spec in specs}
        results = run_policies(settings, workload, slo_s, specs,
                               on_progress=lambda name, done: progress.update(tasks[name], completed=done))
    elapsed = time.perf_counter() - started
    outputs, overall = write_outputs(settings, workload, slo_s, results, command, specs)
    out_console = Console()
    if not out_console.is_terminal:
        # Piped or captured output is not wrapped to 80 columns: the table must stay readable.
        out_console = Console(width=160)
    out_console.print(overall_table(overall, title=title))
    out_console.print(f"policies ran in {elapsed:.1f} s wall time")
    out_console.print(f"overall:   {outputs.overall_csv}")
    out_console.print(f"functions: {outputs.functions_csv}")
    out_console.print(f"run:       {outputs.run_json}")
    for plot in outputs.plots:
        out_console.print(f"plot:      {plot}")


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _command_line() -> str:
    return " ".join(["mfrm", *sys.argv[1:]])


@click.command("simulate")
@click.option("--policy", help="Registered policy name [default: openwhisk-default].")
@_common_options
def simulate_command(policy: str | None, config: Path | None, sets: tuple[str, ...], verbose: bool,
                     **options: Any) -> None:
    """Run one policy on the embedded simulated cluster and report its metrics."""
    _configure_logging(verbose)
    base = {"policy.name": policy} if policy else {}
    settings = _settings_from_cli(config, options, sets, base)
    _execute(settings, [settings.policy.name], _command_line(), f"{settings.policy.name} on the simulated cluster")


def parse_checkpoints(values: Sequence[str]) -> dict[str, Path]:
    """``--checkpoint NAME=PATH`` pairs: learned policy name -> checkpoint file (must exist)."""
    out: dict[str, Path] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name or not raw.strip():
            raise click.BadParameter(f"expected NAME=PATH, got {item!r}", param_hint="--checkpoint")
        if name not in LEARNED_POLICIES:
            raise click.BadParameter(f"{name!r} is not a learned policy (one of {', '.join(LEARNED_POLICIES)})",
                                     param_hint="--checkpoint")
        path = Path(raw.strip())
        if not path.is_file():
            raise click.BadParameter(f"checkpoint file not found: {path}", param_hint="--checkpoint")
        out[name] = path
    return out


def compare_specs(names: Sequence[str], checkpoints: Mapping[str, Path], frozen: bool, greedy: bool) -> list[PolicySpec]:
    """The run's policies: ``names``, then any learned policy given a checkpoint but not named; learned
    ones carry their checkpoint and the ``frozen``/``greedy`` flags."""
    ordered = list(dict.fromkeys([*names, *checkpoints]))
    return [
        PolicySpec(name, checkpoints.get(name), frozen, greedy) if name in LEARNED_POLICIES else PolicySpec(name)
        for name in ordered
    ]


@click.command("compare")
@click.option("--policies", help="Comma-separated policy names [default: every baseline].")
@click.option("--workers", type=int, help="Parallel worker processes [default: 2].")
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="NAME=PATH",
              help="Start learned policy NAME (nac-linear, nac-nn) from a checkpoint; adds it to the "
                   "comparison (repeatable).")
@click.option("--frozen", is_flag=True, default=False,
              help="Learned policies only decide; without it they keep learning online, as in the paper.")
@click.option("--greedy", is_flag=True, default=False,
              help="Learned policies take their most probable move instead of sampling one.")
@_common_options
def compare_command(policies: str | None, checkpoints: tuple[str, ...], frozen: bool, greedy: bool,
                    config: Path | None, sets: tuple[str, ...], verbose: bool, **options: Any) -> None:
    """Run several policies on the same simulated workload (same seed, same arrivals) and compare them."""
    _configure_logging(verbose)
    base = {"policy.compare": [p.strip() for p in policies.split(",") if p.strip()]} if policies else {}
    settings = _settings_from_cli(config, options, sets, base)
    specs = compare_specs(settings.policy.compare, parse_checkpoints(checkpoints), frozen, greedy)
    if frozen and not any(s.learned and s.checkpoint for s in specs):
        log.warning("--frozen without --checkpoint: the learned policies stay at their initial (uniform) policy")
    _execute(settings, specs, _command_line(), "Policies on the same workload")


@click.command("demo")
@click.option("--workers", type=int, help="Parallel worker processes [default: 2].")
@_common_options
def demo_command(config: Path | None, sets: tuple[str, ...], verbose: bool, **options: Any) -> None:
    """Compare every manager of ``policy.compare`` on the paper-scale simulated cluster (21 x 8 cores)."""
    _configure_logging(verbose)
    settings = _settings_from_cli(config, options, sets, DEMO_OVERRIDES)
    _execute(settings, list(settings.policy.compare), _command_line(),
             f"{settings.cluster.invokers} invokers x {settings.cluster.cores:g} cores, "
             f"{settings.workload.functions} functions, {settings.workload.minutes} min")


__all__ = [
    "DEMO_OVERRIDES",
    "DEMO_POLICIES",
    "LEARNED_POLICIES",
    "SAMPLE_TRACE",
    "PolicySpec",
    "RunSeeds",
    "TimedPolicy",
    "as_spec",
    "build_policy",
    "build_workload",
    "busiest_trace_ids",
    "cluster_config",
    "compare_command",
    "compare_specs",
    "demo_command",
    "measure_slos",
    "parse_checkpoints",
    "resolve_trace_dir",
    "run_policies",
    "run_policy",
    "simulate_command",
    "tick_count",
    "write_outputs",
]
