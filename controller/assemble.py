"""Settings become components: the one place where a run's parts are built.

Every command (``simulate``, ``compare``, ``demo``, ``train``, ``run``, ``replay``, ``bench``) and
every library above this module (the batch runner, training, the daemon) builds through it, so the
same settings and seed give the same parts everywhere:

==================  =========================================================================
``RunSeeds``        one seed → independent seeds of the workload, arrivals, cluster, SLO probes
                    and policies (numpy ``SeedSequence`` children)
``build_workload``  the trace (2019 or 2021 format), the sampled functions and their scaled
                    per-minute counts over the replayed window
``build_arrivals``  the arrival stream of that workload (the same times in ``simulate`` and
                    ``replay``)
``cluster_config``  the simulated cluster
``measure_slos``    each function's SLO: solo p99 in the simulated cluster + margin
``build_policy``    a policy by name with its ``policy.params``, always seeded; a learner may
                    resume from a checkpoint, freeze or act greedily
``build_backend``   ``sim``, ``local`` or ``openwhisk``
``build_loop``      the control loop over a backend and a policy
==================  =========================================================================

Errors a user can cause (a missing trace folder, a window outside the trace, parameters a policy
refuses) are raised as :class:`AssemblyError` or :class:`PolicyParamsError` with a message that
names the setting; the commands turn them into one line and exit status 2.
"""

from __future__ import annotations

import importlib
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from controller.backends.base import Backend
from controller.checkpoint import Checkpointer
from controller.estimator import PopulationEstimator
from controller.guard import GuardBounds
from controller.loop import ControlLoop, MetricsSink
from controller.settings import Settings, backend_names
from policies.types import ClusterSnapshot

#: The shipped 2019 trace sample, relative to the source tree (``data/`` beside the packages).
SAMPLE_TRACE = Path(__file__).resolve().parents[1] / "data" / "azure-functions-2019-sample"

#: File name of the Azure Functions 2021 invocation trace, as Microsoft publishes it.
TRACE_2021_FILE = "AzureFunctionsInvocationTraceForTwoWeeksJan2021.csv"


class AssemblyError(ValueError):
    """Settings that cannot be turned into a run (the message names the setting at fault)."""


class PolicyParamsError(AssemblyError):
    """``policy.params`` of a policy that its constructor refuses (unknown key or invalid value)."""


# --------------------------------------------------------------------------------------------
# seeds
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
    """Root of the policies' seeds (one child per policy name, :meth:`policy_seed`)."""

    @classmethod
    def from_seed(cls, seed: int) -> RunSeeds:
        """Spawn one child seed per component (numpy SeedSequence: independent streams).

        Children are numbered in field order; a new field takes the next child, so the
        seeds of the older components (and every published number) stay the same.
        """
        children = np.random.SeedSequence(seed).spawn(5)
        return cls(*[_child_int(child) for child in children])

    def policy_seed(self, name: str) -> int:
        """The seed of policy ``name``: a child of ``policies`` keyed by a stable hash of the name, so
        two learners of one run draw independent streams and a learner's seed does not depend on
        which other policies run beside it."""
        key = zlib.crc32(name.encode("utf-8"))
        return _child_int(np.random.SeedSequence(self.policies, spawn_key=(key,)))

    def episode(self, seed: int, episode: int) -> RunSeeds:
        """The seeds of training episode ``episode`` of a run with ``seed``: episode 0 is the run's
        own; later episodes draw fresh arrivals and simulator draws (children of the run's seed) and
        keep the workload, SLO and policy seeds, so every episode replays the same functions."""
        if episode == 0:
            return self
        arrivals, cluster = np.random.SeedSequence(seed, spawn_key=(1_000_000 + episode,)).spawn(2)
        return replace(self, arrivals=_child_int(arrivals), cluster=_child_int(cluster))


# --------------------------------------------------------------------------------------------
# workload
# --------------------------------------------------------------------------------------------


def resolve_trace_dir(settings: Settings) -> Path:
    """The trace folder of ``settings`` (the shipped 2019 sample when unset)."""
    path = settings.workload.trace_dir if settings.workload.trace_dir is not None else SAMPLE_TRACE
    if not path.exists():
        hint = (
            " (the sample ships in the source tree under data/; run from a git checkout or pass --trace)"
            if settings.workload.trace_dir is None
            else ""
        )
        raise AssemblyError(f"workload.trace_dir: trace folder not found: {path}{hint}")
    return path


def trace_format(path: Path) -> str:
    """``azure2019`` (a folder of invocations/durations/memory CSVs) or ``azure2021`` (the 2021
    invocation trace file, or a folder holding it)."""
    if path.is_file():
        return "azure2021"
    if (path / TRACE_2021_FILE).is_file() and not any(path.glob("invocations*.csv")):
        return "azure2021"
    return "azure2019"


def busiest_rows(counts: np.ndarray, k: int) -> list[int]:
    """Rows of the ``k`` functions with the most invocations over all minutes, busiest first
    (ties kept in trace order)."""
    if k > counts.shape[0]:
        raise AssemblyError(
            f"workload.functions={k}: cannot pick the {k} busiest functions of a trace with {counts.shape[0]}"
        )
    totals = counts.sum(axis=1, dtype=np.int64)
    return [int(i) for i in np.argsort(-totals, kind="stable")[:k]]


def busiest_trace_ids(trace: Any, k: int) -> list[str]:
    """Trace ids of the ``k`` busiest functions of a 2019 trace (see :func:`busiest_rows`)."""
    invocations = trace.invocations
    return [invocations.keys[i].trace_id for i in busiest_rows(invocations.counts, k)]


def _check_window(settings: Settings, span_start: int, span_end: int) -> tuple[int, int]:
    w = settings.workload
    start, end = w.start_minute, w.start_minute + w.minutes
    if not span_start <= start < end <= span_end:
        raise AssemblyError(
            f"workload minutes [{start}, {end}) (workload.start_minute={start}, workload.minutes={w.minutes}) "
            f"are not within the trace's minutes [{span_start}, {span_end})"
        )
    return start, end


def _sample_whole_trace(settings: Settings, path: Path, seeds: RunSeeds) -> tuple[Any, int, int]:
    """Every picked function over the trace's whole span, and that span [first, end) in minutes."""
    from workload.errors import TraceFormatError
    from workload.sampler import sample_workload, sample_workload_2021

    w = settings.workload
    try:
        if trace_format(path) == "azure2021":
            from workload.azure2021 import read_trace_2021

            trace_2021 = read_trace_2021(path if path.is_file() else path / TRACE_2021_FILE)
            first, counts = trace_2021.counts_per_minute()
            if w.functions > counts.shape[0]:
                raise AssemblyError(f"workload.functions={w.functions}: the trace has {counts.shape[0]} functions")
            rows = busiest_rows(counts, w.functions) if w.select == "busiest" else None
            whole = sample_workload_2021(trace_2021, w.functions, seed=seeds.workload, profiles=w.profiles, rows=rows)
            return whole, first, first + counts.shape[1]
        from workload.azure2019 import load_trace

        trace = load_trace(path)
    except TraceFormatError as error:
        raise AssemblyError(f"workload.trace_dir: {error}") from None
    except OSError as error:
        raise AssemblyError(f"workload.trace_dir: cannot read the trace in {path}: {error}") from None
    span_start = trace.invocations.first_minute
    span_end = span_start + trace.invocations.n_minutes
    names = busiest_trace_ids(trace, w.functions) if w.select == "busiest" else None
    try:
        whole = sample_workload(trace, w.functions, seed=seeds.workload, functions=names, start_minute=span_start,
                                end_minute=span_end, profiles=w.profiles)
    except ValueError as error:
        raise AssemblyError(f"workload: {error}") from None
    return whole, span_start, span_end


def build_workload(settings: Settings) -> Any:
    """The sampled ``workload.sampler.Workload`` of ``settings`` (same settings and seed: same workload).

    Functions are picked from the trace's whole span (``workload.select``), their counts multiplied
    by ``workload.rate_scale`` over that span, and only then cut to the replayed minutes
    [start_minute, start_minute + minutes). So a training run over one window and an evaluation run
    over another see the same functions, playing the same benchmarks, with the same scaled counts.
    """
    from workload.arrivals import scale_minute_counts
    from workload.sampler import Workload

    w = settings.workload
    seeds = RunSeeds.from_seed(settings.seed)
    whole, span_start, span_end = _sample_whole_trace(settings, resolve_trace_dir(settings), seeds)
    start, end = _check_window(settings, span_start, span_end)
    counts = np.stack([f.counts_per_minute for f in whole.functions])
    if w.arrivals == "trace" and (w.rate_scale != 1.0 or trace_format(resolve_trace_dir(settings)) != "azure2021"):
        raise AssemblyError("workload.arrivals=trace replays the recorded times of a 2021 per-invocation trace: "
                            "it needs a 2021 workload.trace_dir and workload.rate_scale=1")
    counts = scale_minute_counts(counts, span_start, w.rate_scale, seeds.arrivals)
    window = counts[:, start - span_start : end - span_start].astype(np.int32)
    window.setflags(write=False)
    functions = tuple(
        replace(f, counts_per_minute=window[i], first_minute=start) for i, f in enumerate(whole.functions)
    )
    if w.split_within_seed is not None:
        if w.split_seed is None:
            raise AssemblyError("workload.split_within_seed needs workload.split_seed (the split of that half)")
        functions = tuple(functions[i] for i in split_half(len(functions), w.split_within_seed, w.split_within_part))
    if w.split_seed is not None and w.split_part != "all":
        functions = tuple(functions[i] for i in split_half(len(functions), w.split_seed, w.split_part))
    return Workload(functions=functions, start_minute=start, end_minute=end, seed=whole.seed,
                    profile_mode=whole.profile_mode)


def split_half(n: int, seed: int, part: str) -> list[int]:
    """The indices of half ``part`` (``train``: the first ⌊n/2⌋ of a permutation drawn with ``seed``,
    ``evaluate``: the rest), in their original order. The same ``seed`` and ``n`` always give the same
    halves, whatever the run's own seed."""
    if part not in ("train", "evaluate"):
        raise AssemblyError(f"workload.split_part={part!r}: one of train, evaluate (or all)")
    if n < 2:
        raise AssemblyError(f"workload.split_seed: {n} function(s) cannot be split in two halves")
    order = np.random.default_rng(seed).permutation(n)
    half = order[: n // 2] if part == "train" else order[n // 2:]
    return sorted(int(i) for i in half)


def build_arrivals(settings: Settings, workload: Any, seeds: RunSeeds | None = None) -> Any:
    """The arrival stream of ``workload``: time 0 is the start of its first minute. The same
    settings, seed and workload give the same arrival times in every command."""
    from workload.arrivals import ArrivalStream, TraceArrivalStream

    seeds = seeds or RunSeeds.from_seed(settings.seed)
    w = settings.workload
    if w.arrivals == "trace":
        from workload.azure2021 import read_trace_2021

        path = resolve_trace_dir(settings)
        trace = read_trace_2021(path if path.is_file() else path / TRACE_2021_FILE)
        rows = {trace.function_name(i): i for i in range(len(trace.functions))}
        return TraceArrivalStream(trace, origin_s=60.0 * workload.start_minute, end_s=60.0 * workload.end_minute,
                                  functions=[rows[f.trace_id] for f in workload.functions])
    return ArrivalStream(workload.functions, workload.start_minute, workload.end_minute,
                         mode=w.arrivals, seed=seeds.arrivals, burst_count=w.burst_count,
                         burst_width_s=w.burst_width_s)


def cluster_config(settings: Settings) -> Any:
    """The simulator's ``ClusterConfig`` for ``settings.cluster``."""
    from simulator import ClusterConfig

    c = settings.cluster
    return ClusterConfig(invokers=c.invokers, cores=c.cores, user_memory_mb=c.user_memory_mb,
                         idle_timeout_s=c.idle_timeout_s, eviction=c.eviction,
                         idle_memory_fraction=c.idle_memory_fraction)


def measure_slos(settings: Settings, workload: Any) -> np.ndarray:
    """Each function's SLO, s (solo p99 in the simulated cluster + margin; cached per profile)."""
    from controller.backends.sim import solo_slo_s

    try:
        return solo_slo_s(
            [f.profile for f in workload.functions],
            cluster_config(settings),
            margin=settings.reward.slo_margin,
            seed=RunSeeds.from_seed(settings.seed).slo,
            probes=settings.reward.slo_probe_invocations,
        )
    except ValueError as error:  # e.g. a function larger than an invoker's user memory
        raise AssemblyError(f"cannot simulate this workload on this cluster (cluster.*): {error}") from None


def tick_count(settings: Settings) -> int:
    """Ticks that cover the workload's minutes (the last one may run past the trace's end)."""
    return math.ceil(settings.workload.minutes * 60.0 / settings.loop.tick_s)


# --------------------------------------------------------------------------------------------
# policies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicySpec:
    """Which policy a run uses and, for a learner, where it starts and whether it keeps learning."""

    name: str
    """Registered policy name."""
    checkpoint: Path | None = None
    """Checkpoint to start from (learners only); None starts from the learner's θ₀."""
    frozen: bool = False
    """Learners only: decide without learning (evaluation of a trained policy). Off by default: as
    in the paper, the agents keep learning online while they are evaluated."""
    greedy: bool = False
    """Learners only: take the most probable move instead of sampling one."""

    @property
    def learned(self) -> bool:
        """Whether the policy learns (has checkpointable state)."""
        from policies.registry import learns

        return learns(self.name)


def as_spec(policy: str | PolicySpec) -> PolicySpec:
    """A policy name as a spec with the defaults; a spec unchanged."""
    return policy if isinstance(policy, PolicySpec) else PolicySpec(policy)


def check_policy_names(names: Sequence[str]) -> None:
    """Refuse names that are not registered, listing the known ones."""
    from policies.registry import available

    known = available()
    unknown = [name for name in names if name not in known]
    if unknown:
        shown = ", ".join(repr(name) for name in unknown)
        raise AssemblyError(f"unknown polic{'y' if len(unknown) == 1 else 'ies'} {shown}; "
                            f"known policies: {', '.join(known)}")


def build_policy(settings: Settings, policy: str | PolicySpec, *, seeds: RunSeeds | None = None) -> Any:
    """A fresh policy for ``settings``: ``policy.params`` of its name, its own seed
    (:meth:`RunSeeds.policy_seed`) when it learns, and for a learner ``frozen``/``greedy`` and the
    checkpoint it resumes from.

    Raises :class:`PolicyParamsError` (``policy.params.<name>: ...``) when the policy refuses its
    parameters, :class:`AssemblyError` for an unknown name or a checkpoint given to a baseline, and
    ``controller.checkpoint.CheckpointError`` when the checkpoint does not fit.
    """
    from policies.registry import make

    spec = as_spec(policy)
    check_policy_names([spec.name])
    params = dict(settings.policy.params.get(spec.name, {}))
    if not spec.learned:
        if spec.checkpoint is not None:
            raise AssemblyError(f"policy {spec.name!r} does not learn: it has no checkpoint to load")
        return _make(make, spec.name, params)
    if spec.frozen:
        params["frozen"] = True
    if spec.greedy:
        params["greedy"] = True
    seeds = seeds or RunSeeds.from_seed(settings.seed)
    built = _make(make, spec.name, {"seed": seeds.policy_seed(spec.name), **params})
    if spec.checkpoint is not None:
        from controller.checkpoint import load_checkpoint

        load_checkpoint(spec.checkpoint, built)
    return built


def _make(make: Any, name: str, params: dict[str, Any]) -> Any:
    try:
        return make(name, **params)
    except (TypeError, ValueError) as error:  # constructors refuse unknown keys (TypeError) and values
        raise PolicyParamsError(f"policy.params.{name}: {error}") from None


# --------------------------------------------------------------------------------------------
# backends and the loop
# --------------------------------------------------------------------------------------------

#: Backends other than ``sim``: module and factory ``from_settings(settings) -> Backend``. Each is
#: imported only when chosen, so a run does not load a cluster client it does not use.
BACKEND_FACTORIES: dict[str, str] = {
    "local": "controller.backends.local:from_settings",
    "openwhisk": "controller.backends.openwhisk:from_settings",
}


def build_sim_backend(settings: Settings, workload: Any, slo_s: np.ndarray, *, seeds: RunSeeds | None = None,
                      endless: bool = False) -> Any:
    """The simulated cluster of ``settings`` running ``workload``.

    ``endless``: a daemon's backend: the trace window repeats forever and the per-activation
    records are not kept (they would grow without bound); a batch run keeps them for its report.
    """
    from controller.backends.sim import SimBackend
    from simulator import Cluster
    from workload.arrivals import RepeatingArrivals

    seeds = seeds or RunSeeds.from_seed(settings.seed)
    cluster = Cluster(cluster_config(settings), [f.profile for f in workload.functions], slo_s, seed=seeds.cluster)
    arrivals = build_arrivals(settings, workload, seeds)
    if endless:
        arrivals = RepeatingArrivals(arrivals)
    return SimBackend(cluster, arrivals, workload.names, settings.loop.tick_s, keep_records=not endless)


class InjectedArrivals:
    """An arrival stream handed in one tick at a time (``window`` as the simulated backend reads it)."""

    def __init__(self) -> None:
        self.times_s = np.zeros(0)
        self.fn = np.zeros(0, dtype=np.int64)

    def put(self, times_s: np.ndarray, fn: np.ndarray) -> None:
        """The arrivals of the next window (times ascending)."""
        self.times_s, self.fn = np.asarray(times_s, dtype=float), np.asarray(fn, dtype=np.int64)

    def window(self, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]:
        keep = (self.times_s > t0_s) & (self.times_s <= t1_s)
        return self.times_s[keep], self.fn[keep]


class HeuristicTwin:
    """A fallback's heuristic run on a simulated twin of the cluster, fed the arrivals the cluster had.

    Every tick the twin gets each function's arrival count of the tick just observed, spread uniformly
    over the tick, and runs one tick of the heuristic's own control loop (guard included) on them; its
    SLO violations in that tick are what the heuristic would have had on those arrivals, with whatever
    one function's pool costs the others. It knows the functions' profiles, so it exists where the
    cluster is simulated; the arrival times within a tick are its own (bursts inside a tick are
    smoothed, which makes the heuristic look a little better than it was, never worse).
    """

    def __init__(self, loop: ControlLoop, arrivals: InjectedArrivals, names: Sequence[str], seed: int) -> None:
        self.loop, self.arrivals, self.names = loop, arrivals, tuple(names)
        self.rng = np.random.default_rng(seed)
        self.time_s = 0.0

    def heuristic_violations(self, snapshot: ClusterSnapshot) -> float:
        f = snapshot.functions
        if tuple(f.names) != self.names or snapshot.time_s <= self.time_s:
            return math.nan  # another function set or a repeated tick: nothing comparable
        counts = np.maximum(np.rint(np.nan_to_num(np.asarray(f.arrivals, dtype=float))), 0).astype(np.int64)
        times = self.rng.uniform(self.time_s, snapshot.time_s, int(counts.sum()))
        fn = np.repeat(np.arange(len(counts)), counts)
        order = np.argsort(times, kind="stable")
        self.arrivals.put(times[order], fn[order])
        report = self.loop.step(float(snapshot.time_s))
        self.time_s = float(snapshot.time_s)
        return float(np.nansum(report.snapshot.functions.slo_violations))


def attach_twin(policy: Any, settings: Settings, workload: Any, slo_s: np.ndarray, seeds: RunSeeds) -> None:
    """Give a learner whose fallback asks for a twin (``counterfactual: twin``) the twin of this simulated
    cluster running its heuristic; any other policy is left as it is."""
    wants = getattr(getattr(policy, "settings", None), "counterfactual", None) == "twin"
    if not wants or not hasattr(policy, "counterfactual"):
        return
    from controller.backends.sim import SimBackend
    from policies.registry import make
    from simulator import Cluster

    cluster = Cluster(cluster_config(settings), [fn.profile for fn in workload.functions], slo_s,
                      seed=seeds.cluster)
    arrivals = InjectedArrivals()
    backend = SimBackend(cluster, arrivals, workload.names, settings.loop.tick_s, keep_records=False)
    policy.counterfactual = HeuristicTwin(build_loop(settings, backend, make(policy.heuristic.name)), arrivals,
                                          workload.names, seeds.arrivals)


def build_backend(settings: Settings) -> Backend:
    """The backend ``settings.daemon.backend`` names, for a long-running loop: ``sim`` replays its
    workload forever; ``local`` and ``openwhisk`` are built by their module's ``from_settings``."""
    name = settings.daemon.backend
    if name not in backend_names():
        raise AssemblyError(f"daemon.backend={name!r}: one of {', '.join(backend_names())}")
    if name == "sim":
        workload = build_workload(settings)
        return build_sim_backend(settings, workload, measure_slos(settings, workload), endless=True)
    module_name, attribute = BACKEND_FACTORIES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise  # a dependency of the backend is missing: a broken installation, not a setting
        raise AssemblyError(f"daemon.backend={name!r} is not available in this build (no module {module_name})") from None
    return getattr(module, attribute)(settings)


def build_loop(settings: Settings, backend: Backend, policy: Any, *, sinks: Sequence[MetricsSink] = (),
               checkpointer: Checkpointer | None = None, dry_run: bool = False) -> ControlLoop:
    """The control loop of ``settings`` over ``backend`` and ``policy``."""
    return ControlLoop(
        backend=backend,
        policy=policy,
        estimator=PopulationEstimator(bins=settings.estimator.bins, beta=settings.estimator.beta),
        bounds=GuardBounds.from_settings(settings.guard),
        reward_alpha=settings.reward.alpha,
        reward_kind=settings.reward.kind,
        reward_cost_cap=settings.reward.cost_cap,
        reward_charge_memory=settings.reward.charge_memory,
        sinks=list(sinks),
        checkpointer=checkpointer,
        checkpoint_every_ticks=settings.loop.checkpoint_every_ticks,
        dry_run=dry_run,
    )


__all__ = [
    "BACKEND_FACTORIES",
    "SAMPLE_TRACE",
    "TRACE_2021_FILE",
    "AssemblyError",
    "HeuristicTwin",
    "InjectedArrivals",
    "PolicyParamsError",
    "PolicySpec",
    "RunSeeds",
    "as_spec",
    "attach_twin",
    "build_arrivals",
    "build_backend",
    "build_loop",
    "build_policy",
    "build_sim_backend",
    "build_workload",
    "busiest_rows",
    "busiest_trace_ids",
    "check_policy_names",
    "cluster_config",
    "measure_slos",
    "resolve_trace_dir",
    "split_half",
    "tick_count",
    "trace_format",
]
