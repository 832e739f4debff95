"""The embedded simulated OpenWhisk cluster: the API the controller's ``sim`` backend drives.

A :class:`Cluster` is advanced through time with batches of arrivals, its per-function knobs
(warm-pool target and CPU shares, with exactly the semantics of ``policies.types.Decisions``) are
set between calls, and it reports per-tick statistics (:class:`TickStats`, column for column the
numbers ``policies.types.FunctionStats`` / ``InvokerStats`` need, plus the memory integrals),
exact cumulative cost accounting at any instant (:class:`Totals`, from :meth:`Cluster.totals`) and
one record per finished invocation, shaped like an OpenWhisk activation (:data:`RECORD_DTYPE`).

The model (see ``docs/simulator.md``): N invokers with C cores and some user memory each;
containers reserve their function's memory from the start of their cold start until they are
removed; an invocation first spends its I/O time (wall clock, no CPU), then its CPU work, which
progresses under weighted processor sharing of the invoker's cores by CPU shares, each container
capped at its function's ``max_cores``. The event core is compiled with numba (``simulator._core``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from simulator import _core as core
from simulator.config import MAX_CPU_SHARES, MIN_CPU_SHARES, ClusterConfig, default_cpu_shares
from simulator.placement import home_and_step
from workload.profiles import FunctionProfile

#: Pool target meaning "OpenWhisk's own behaviour" (same value as ``policies.types.UNMANAGED``).
UNMANAGED = core.UNMANAGED

#: One finished invocation, shaped like an OpenWhisk activation record. Times are seconds since
#: the start of the simulation; ``arrival_s + wait_s + init_s == start_s`` and
#: ``start_s + duration_s == end_s``; the end-to-end latency is ``end_s - arrival_s``.
RECORD_DTYPE = np.dtype(
    [
        ("fn", np.int32),  # function index (position in the profiles given to Cluster)
        ("arrival_s", np.float64),  # when the invocation arrived
        ("start_s", np.float64),  # when its execution began (after any wait and cold start)
        ("end_s", np.float64),  # when it finished
        ("wait_s", np.float64),  # OpenWhisk waitTime: queueing before a container was ready
        ("init_s", np.float64),  # OpenWhisk initTime: the part of a cold start it waited through; 0 if warm
        ("duration_s", np.float64),  # execution time (no wait, no init)
        ("cold", np.bool_),  # whether it ran on a container that had just finished its cold start
        ("invoker", np.int32),  # invoker that ran it
    ]
)

_STATE_NAMES = np.array(["free", "starting", "busy", "idle", "ready"])
_INITIAL_ACTIVATIONS = 4096
_INITIAL_RECORDS = 8192


def _readonly(values: np.ndarray) -> np.ndarray:
    array = np.array(values, dtype=np.float64, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class FunctionTick:
    """Per-function columns for one tick, each of shape (n_functions,), float.

    Names and meanings are those of ``policies.types.FunctionStats`` (minus ``names`` and ``valid``,
    which the backend adds): the simulator observes every function every tick.
    """

    memory_mb: np.ndarray
    """Memory of one container of the function, MB (from its profile)."""
    slo_s: np.ndarray
    """Latency objective given to the cluster, s; NaN when none was given."""
    arrivals: np.ndarray
    """Invocations that arrived during the tick."""
    completions: np.ndarray
    """Invocations that finished during the tick."""
    in_flight: np.ndarray
    """Invocations executing (I/O or CPU phase) at the end of the tick."""
    queued: np.ndarray
    """Invocations waiting at the end of the tick: in the function's queue, or for the container
    being cold-started for them."""
    p50_latency_s: np.ndarray
    """Median end-to-end latency (wait + init + execution) of the tick's completions, s; NaN if none."""
    p99_latency_s: np.ndarray
    """99th-percentile end-to-end latency of the tick's completions (linear interpolation), s; NaN if none."""
    mean_exec_s: np.ndarray
    """Mean execution time (``duration_s``) of the tick's completions, s; NaN if none."""
    recent_exec_s: np.ndarray
    """Mean execution time of the function's last 3 completions ever, s; NaN before 3 completions."""
    cold_starts: np.ndarray
    """Invocations that began during the tick on a container that had just been cold-started."""
    slo_violations: np.ndarray
    """Completions during the tick with latency above ``slo_s``; NaN when no SLO was given."""
    containers: np.ndarray
    """Containers of the function at the end of the tick: starting, busy or idle."""
    busy_containers: np.ndarray
    """Containers running an invocation at the end of the tick."""
    cpu_shares: np.ndarray
    """CPU shares per container currently set for the function."""
    cpu_used_core_s: np.ndarray
    """CPU the function's containers consumed during the tick, core-seconds."""
    cpu_alloc_core_s: np.ndarray
    """Time integral over the tick of containers x shares / 1024, core-seconds."""
    container_s: np.ndarray
    """Time integral over the tick of the function's containers (starting, busy or idle),
    container-seconds: exact, not sampled at the tick's end."""
    memory_mb_s: np.ndarray
    """Time integral over the tick of the memory the function's containers hold, MB-s
    (``container_s`` x the function's container memory)."""
    idle_memory_mb_s: np.ndarray
    """Part of ``memory_mb_s`` held by idle (paused) containers, executing nothing, MB-s."""
    init_memory_mb_s: np.ndarray
    """Part of ``memory_mb_s`` held by containers still cold-starting, MB-s (neither idle nor busy)."""
    dropped: np.ndarray
    """Invocations the cluster refused or dropped during the tick: always 0, since the simulator
    queues every invocation it cannot start (without bound) and never drops one."""


@dataclass(frozen=True, eq=False)
class InvokerTick:
    """Per-invoker columns for one tick, each of shape (n_invokers,), float (as ``InvokerStats``)."""

    cores: np.ndarray
    """CPU cores of the invoker."""
    memory_mb: np.ndarray
    """User memory of the invoker, MB."""
    memory_used_mb: np.ndarray
    """Memory reserved by the invoker's containers at the end of the tick, MB."""
    cpu_used_core_s: np.ndarray
    """CPU consumed by the invoker's containers during the tick, core-seconds."""
    cpu_shares_allocated: np.ndarray
    """Sum of the CPU shares of the invoker's containers at the end of the tick."""
    memory_mb_s: np.ndarray
    """Time integral over the tick of the memory the invoker's containers hold, MB-s."""
    idle_memory_mb_s: np.ndarray
    """Part of ``memory_mb_s`` held by idle containers, MB-s."""
    init_memory_mb_s: np.ndarray
    """Part of ``memory_mb_s`` held by containers still cold-starting, MB-s."""


@dataclass(frozen=True, eq=False)
class TickStats:
    """What happened in the cluster between two :meth:`Cluster.tick_stats` calls."""

    start_s: float
    """Start of the period, s (the previous call's ``end_s``, or 0)."""
    end_s: float
    """End of the period: the cluster's ``now`` when the statistics were taken, s."""
    functions: FunctionTick
    """Per-function columns."""
    invokers: InvokerTick
    """Per-invoker columns."""

    @property
    def tick_s(self) -> float:
        """Length of the period, s."""
        return self.end_s - self.start_s


@dataclass(frozen=True, eq=False)
class FunctionTotals:
    """Per-function totals, each of shape (n_functions,), float.

    Counters and integrals are cumulative over the period of the enclosing :class:`Totals`; the
    two gauges (``queued``, ``in_flight``) are the work left at its end. At any instant
    ``arrivals == completions + queued + in_flight + dropped`` for a cumulative :class:`Totals`.
    """

    GAUGES: ClassVar[tuple[str, ...]] = ("queued", "in_flight")
    """Columns that are values at the period's end rather than amounts over the period."""

    arrivals: np.ndarray
    """Invocations that arrived."""
    completions: np.ndarray
    """Invocations that finished."""
    cold_starts: np.ndarray
    """Invocations that began on a container that had just been cold-started."""
    dropped: np.ndarray
    """Invocations refused or dropped: always 0 (the simulator queues, without bound, every
    invocation it cannot start), kept so that callers need not special-case the simulator."""
    evicted_idle: np.ndarray
    """Idle containers removed by the idle timeout (``ClusterConfig.idle_timeout_s``)."""
    evicted_for_memory: np.ndarray
    """Idle containers evicted by the keep-alive rule: for a new container's memory, or to keep
    idle memory within ``ClusterConfig.idle_memory_fraction``."""
    queued: np.ndarray
    """Gauge: invocations waiting at the end, in the function's queue or for the container being
    cold-started for them."""
    in_flight: np.ndarray
    """Gauge: invocations executing (I/O or CPU phase) at the end."""
    container_s: np.ndarray
    """Time integral of the function's containers, from the start of each one's cold start to its
    removal (starting, busy, idle), container-seconds."""
    memory_mb_s: np.ndarray
    """Time integral of the memory those containers hold, MB-s (``container_s`` x memory)."""
    idle_memory_mb_s: np.ndarray
    """Part of ``memory_mb_s`` held while idle (paused, executing nothing; managed pools included), MB-s."""
    init_memory_mb_s: np.ndarray
    """Part of ``memory_mb_s`` held while cold-starting, MB-s. The rest,
    ``memory_mb_s - idle_memory_mb_s - init_memory_mb_s``, is held while executing."""
    cpu_used_core_s: np.ndarray
    """CPU the function's invocations consumed, core-seconds."""
    cpu_alloc_core_s: np.ndarray
    """Time integral of containers x shares / 1024, core-seconds (the paper's allocation)."""


@dataclass(frozen=True, eq=False)
class InvokerTotals:
    """Per-invoker integrals, each of shape (n_invokers,), float, over the enclosing period.

    Kept by their own bookkeeping (invoker memory, not function counts), so that summed over
    invokers they check the per-function columns summed over functions.
    """

    memory_mb_s: np.ndarray
    """Time integral of the memory the invoker's containers hold, MB-s."""
    idle_memory_mb_s: np.ndarray
    """Part of ``memory_mb_s`` held by idle containers, MB-s."""
    init_memory_mb_s: np.ndarray
    """Part of ``memory_mb_s`` held by containers still cold-starting, MB-s."""
    cpu_used_core_s: np.ndarray
    """CPU the invoker's containers consumed, core-seconds."""


@dataclass(frozen=True, eq=False)
class Totals:
    """Exact accounting of the cluster over ``[start_s, end_s]``: event-time integrals, not samples.

    :meth:`Cluster.totals` gives the totals since time 0; ``later.since(earlier)`` gives those of
    the period between two such calls.
    """

    start_s: float
    """Start of the period, s (0 for :meth:`Cluster.totals`)."""
    end_s: float
    """End of the period: the cluster's ``now`` when the totals were taken, s."""
    functions: FunctionTotals
    """Per-function columns."""
    invokers: InvokerTotals
    """Per-invoker columns."""

    def since(self, earlier: Totals) -> Totals:
        """The totals of ``[earlier.end_s, self.end_s]``: counters and integrals differenced, gauges
        from ``self``. Both must come from the same cluster, ``earlier`` first."""
        if earlier.end_s > self.end_s:
            raise ValueError(f"Totals.since: earlier ends at {earlier.end_s} s, after this one ({self.end_s} s)")
        if earlier.functions.arrivals.shape != self.functions.arrivals.shape or (
            earlier.invokers.memory_mb_s.shape != self.invokers.memory_mb_s.shape
        ):
            raise ValueError("Totals.since: the two totals come from clusters of different shapes")
        functions = FunctionTotals(
            **{
                f.name: getattr(self.functions, f.name)
                if f.name in FunctionTotals.GAUGES
                else getattr(self.functions, f.name) - getattr(earlier.functions, f.name)
                for f in fields(FunctionTotals)
            }
        )
        invokers = InvokerTotals(
            **{
                f.name: getattr(self.invokers, f.name) - getattr(earlier.invokers, f.name)
                for f in fields(InvokerTotals)
            }
        )
        _freeze(functions)
        _freeze(invokers)
        return Totals(start_s=earlier.end_s, end_s=self.end_s, functions=functions, invokers=invokers)


def _freeze(table: object) -> None:
    """Make every column of a frozen table a read-only float copy."""
    for f in fields(table):  # type: ignore[arg-type]
        object.__setattr__(table, f.name, _readonly(getattr(table, f.name)))


def _percentiles_by_group(
    group: np.ndarray, values: np.ndarray, n_groups: int, quantiles: Sequence[float]
) -> list[np.ndarray]:
    """Per-group quantiles of ``values`` (numpy's default linear interpolation); NaN for empty groups."""
    counts = np.bincount(group, minlength=n_groups)
    out = [np.full(n_groups, np.nan) for _ in quantiles]
    if values.size == 0:
        return out
    ordered = values[np.lexsort((values, group))]
    starts = np.cumsum(counts) - counts
    has = counts > 0
    last = np.maximum(counts - 1, 0)
    for q, column in zip(quantiles, out):
        pos = q * last
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, last)
        frac = pos - lo
        base = ordered[np.where(has, starts + lo, 0)]
        top = ordered[np.where(has, starts + hi, 0)]
        column[has] = (base + (top - base) * frac)[has]
    return out


def _tree(n: int) -> tuple[np.ndarray, np.ndarray]:
    """An empty min segment tree over ``n`` leaves (values all +inf), as used by the core."""
    p = 1
    while p < n:
        p *= 2
    values = np.full(2 * p, np.inf)
    index = np.zeros(2 * p, dtype=np.int64)
    index[p:] = np.arange(p)
    for pos in range(p - 1, 0, -1):
        index[pos] = index[2 * pos]
    return values, index


class Cluster:
    """A seeded, deterministic simulated OpenWhisk cluster running the functions of ``profiles``.

    ``profiles[j]`` describes function ``j`` (its name chooses its home invoker). ``slo_s[j]`` is
    function ``j``'s latency objective, used only to count SLO violations. Execution times are
    drawn from each profile's ``sample_exec_s`` with one generator seeded by ``seed``: the same
    seed, arrivals and control calls give identical records.

    Every function starts unmanaged (OpenWhisk's default) with OpenWhisk's default CPU shares.
    """

    def __init__(
        self,
        config: ClusterConfig,
        profiles: Sequence[FunctionProfile],
        slo_s: Sequence[float] | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(config, ClusterConfig):
            raise TypeError(f"config must be a ClusterConfig, got {type(config).__name__}")
        profiles = tuple(profiles)
        if not profiles:
            raise ValueError("Cluster needs at least one function profile")
        for j, p in enumerate(profiles):
            if not isinstance(p, FunctionProfile):
                raise TypeError(f"profiles[{j}] must be a FunctionProfile, got {type(p).__name__}")
            if p.memory_mb > config.user_memory_mb:
                raise ValueError(
                    f"profiles[{j}] ({p.name!r}): memory_mb={p.memory_mb} exceeds an invoker's "
                    f"user_memory_mb={config.user_memory_mb}; it could never be placed"
                )
        n_fn = len(profiles)
        if slo_s is None:
            self._slo = None
        else:
            slo = np.asarray(slo_s, dtype=np.float64)
            if slo.shape != (n_fn,):
                raise ValueError(f"slo_s has shape {slo.shape}, expected ({n_fn},) like profiles")
            bad = np.flatnonzero(~(np.isfinite(slo) & (slo > 0)))
            if bad.size:
                raise ValueError(f"slo_s[{bad[0]}]={slo[bad[0]]} must be a finite number > 0")
            self._slo = slo
        self._config = config
        self._profiles = profiles
        self._rng = np.random.default_rng(seed)
        self._now = 0.0
        self._last_tick_s = 0.0

        n_inv = config.invokers
        memory = np.array([p.memory_mb for p in profiles], dtype=np.float64)
        per_invoker = config.user_memory_mb // int(memory.min())
        n_cont = n_inv * per_invoker
        self._default_shares = np.array(
            [default_cpu_shares(p.memory_mb, config.user_memory_mb) for p in profiles], dtype=np.int64
        )
        self._cpu_fraction = np.array([p.cpu_fraction for p in profiles])
        self._max_cores = np.array([p.max_cores for p in profiles])

        g_i = np.zeros((1, core.N_GI), dtype=np.int64)
        g_i[0, core.G_C_FREE_N] = n_cont
        g_i[0, core.G_A_FREE_N] = _INITIAL_ACTIVATIONS
        g_i[0, core.G_IDLE_HEAD] = -1
        g_i[0, core.G_IDLE_TAIL] = -1
        g_i[0, core.G_EVICTION] = core.EVICT_GREEDY_DUAL if config.eviction == "greedy-dual" else core.EVICT_LRU
        g_f = np.zeros((1, core.N_GF))
        g_f[0, core.G_IDLE_TIMEOUT] = config.idle_timeout_s

        c_i = np.full((n_cont, core.N_CI), -1, dtype=np.int64)
        c_i[:, core.C_STATE] = core.ST_FREE
        c_f = np.zeros((n_cont, core.N_CF))
        c_free = np.arange(n_cont - 1, -1, -1, dtype=np.int64)

        v_i = np.full((n_inv, core.N_VI), -1, dtype=np.int64)
        v_i[:, core.V_NACT] = 0
        v_f = np.zeros((n_inv, core.N_VF))
        v_f[:, core.V_CORES] = config.cores
        v_f[:, core.V_MEM] = config.user_memory_mb
        v_f[:, core.V_FREE] = config.user_memory_mb
        v_f[:, core.V_IDLE_BUDGET] = config.idle_memory_fraction * config.user_memory_mb
        v_act = np.full((n_inv, per_invoker), -1, dtype=np.int64)

        f_i = np.full((n_fn, core.N_FI + n_inv), -1, dtype=np.int64)
        f_i[:, core.F_NCONT_ON :] = 0
        f_i[:, core.F_TARGET] = UNMANAGED
        for col in (
            core.F_NCONT,
            core.F_NBUSY,
            core.F_NSTART,
            core.F_QLEN,
            core.F_NIDLE,
            core.F_COLD,
            core.F_NRECENT,
            core.F_BLOCKED,
            core.F_NBOUND,
            core.F_EVICT_IDLE,
            core.F_EVICT_ROOM,
        ):
            f_i[:, col] = 0
        for j, p in enumerate(profiles):
            f_i[j, core.F_HOME], f_i[j, core.F_STEP] = home_and_step(p.name, n_inv)
        f_f = np.zeros((n_fn, core.N_FF + n_inv))
        f_f[:, core.F_MEM] = memory
        f_f[:, core.F_INIT] = [p.init_s for p in profiles]
        f_f[:, core.F_CAP] = self._max_cores
        f_f[:, core.F_SHARES] = self._default_shares
        f_f[:, core.F_RECENT : core.F_RECENT + 3] = np.nan

        ct_v, ct_i = _tree(n_cont)
        vt_v, vt_i = _tree(n_inv)
        self._arrays: dict[str, np.ndarray] = {
            "g_i": g_i,
            "g_f": g_f,
            "c_i": c_i,
            "c_f": c_f,
            "c_free": c_free,
            "a_i": np.zeros((_INITIAL_ACTIVATIONS, core.N_AI), dtype=np.int64),
            "a_f": np.zeros((_INITIAL_ACTIVATIONS, core.N_AF)),
            "a_free": np.arange(_INITIAL_ACTIVATIONS - 1, -1, -1, dtype=np.int64),
            "v_i": v_i,
            "v_f": v_f,
            "v_act": v_act,
            "f_i": f_i,
            "f_f": f_f,
            "ct_v": ct_v,
            "ct_i": ct_i,
            "vt_v": vt_v,
            "vt_i": vt_i,
            "rec_i": np.zeros((max(_INITIAL_RECORDS, 4 * (per_invoker + 1)), core.N_RI), dtype=np.int64),
            "rec_f": np.zeros((max(_INITIAL_RECORDS, 4 * (per_invoker + 1)), core.N_RF)),
            "blocked": np.zeros(n_fn, dtype=np.int64),
            # Scratch rows per invoker: the water-filling order, then the containers finishing together.
            "order": np.zeros((2, per_invoker), dtype=np.int64),
            "key": np.zeros(per_invoker),
        }
        self._state = self._pack()

        self._pending_target = np.full(n_fn, core.NO_CHANGE, dtype=np.int64)
        self._pending_shares = np.zeros(n_fn, dtype=np.int64)
        self._dirty = False

        self._tick_ptr = 0
        self._drain_ptr = 0
        self._arrivals_total = np.zeros(n_fn, dtype=np.int64)
        self._prev = {
            "arrivals": np.zeros(n_fn),
            "cold": np.zeros(n_fn),
            "cpu_fn": np.zeros(n_fn),
            "alloc": np.zeros(n_fn),
            "cpu_inv": np.zeros(n_inv),
            "integrals_fn": np.zeros((n_fn, core.N_TF)),
            "integrals_inv": np.zeros((n_inv, core.N_TV)),
        }

    # ------------------------------------------------------------------ read-only views

    @property
    def now(self) -> float:
        """Simulated time, s: the ``until_s`` of the last :meth:`advance` (0 at the start)."""
        return self._now

    @property
    def config(self) -> ClusterConfig:
        """The cluster's configuration."""
        return self._config

    @property
    def profiles(self) -> tuple[FunctionProfile, ...]:
        """The functions' profiles, in function-index order."""
        return self._profiles

    @property
    def n_functions(self) -> int:
        """Number of functions."""
        return len(self._profiles)

    @property
    def function_names(self) -> tuple[str, ...]:
        """The functions' names (their profiles' names), in function-index order."""
        return tuple(p.name for p in self._profiles)

    @property
    def invoker_names(self) -> tuple[str, ...]:
        """Names of the invokers, ``invoker0`` ... (OpenWhisk's own naming), in index order."""
        return tuple(f"invoker{i}" for i in range(self._config.invokers))

    @property
    def default_cpu_shares(self) -> np.ndarray:
        """OpenWhisk's default shares per container of each function (read-only copy)."""
        out = self._default_shares.copy()
        out.setflags(write=False)
        return out

    @property
    def pool_targets(self) -> np.ndarray:
        """Current pool target per function (UNMANAGED, 0 or k >= 1), including pending calls."""
        current = self._arrays["f_i"][:, core.F_TARGET].copy()
        pending = self._pending_target != core.NO_CHANGE
        current[pending] = self._pending_target[pending]
        return current

    @property
    def cpu_shares(self) -> np.ndarray:
        """Current CPU shares per container of each function, including pending calls."""
        current = self._arrays["f_f"][:, core.F_SHARES].astype(np.int64)
        pending = self._pending_shares > 0
        current[pending] = self._pending_shares[pending]
        return current

    def containers(self) -> np.ndarray:
        """The live containers: a structured array with fields ``fn``, ``invoker`` and ``state``
        (``"starting"``, ``"busy"`` or ``"idle"``), in slot order. For inspection and tests."""
        self._flush()
        c_i = self._arrays["c_i"]
        live = np.flatnonzero(c_i[:, core.C_STATE] != core.ST_FREE)
        out = np.zeros(live.size, dtype=[("fn", np.int32), ("invoker", np.int32), ("state", "U8")])
        out["fn"] = c_i[live, core.C_FN]
        out["invoker"] = c_i[live, core.C_INV]
        out["state"] = _STATE_NAMES[c_i[live, core.C_STATE]]
        return out

    # ------------------------------------------------------------------ control knobs

    def _check_fn(self, fn: int) -> int:
        if isinstance(fn, bool) or not isinstance(fn, (int, np.integer)) or not 0 <= fn < self.n_functions:
            raise ValueError(f"function index {fn!r} is not in [0, {self.n_functions})")
        return int(fn)

    def set_pool(self, fn: int, containers: int) -> None:
        """Set function ``fn``'s warm-pool target, with the semantics of ``Decisions.containers``.

        * ``UNMANAGED`` (-1): OpenWhisk's default: an invocation that finds no idle container gets a
          new one cold-started (where memory admits, evicting other unmanaged functions' idle
          containers by ``ClusterConfig.eviction``: least recently used first by default, as
          OpenWhisk's container pool does); a container idle for ``idle_timeout_s`` is evicted, and
          so are idle containers beyond ``idle_memory_fraction`` of an invoker's memory.
        * ``k >= 1``: exactly ``k`` containers: missing ones are cold-started now (as many as memory
          admits; the rest as memory frees), idle surplus is removed now, busy surplus when it
          finishes. Invocations that find all busy wait in the function's FIFO queue. Managed
          containers are never evicted.
        * ``0``: scale to zero: an invocation that finds no container cold-starts one, which is
          removed as soon as it has no queued work.

        Takes effect at the current time (``now``), before the next :meth:`advance` runs.
        """
        fn = self._check_fn(fn)
        if isinstance(containers, bool) or not isinstance(containers, (int, np.integer)) or containers < -1:
            raise ValueError(f"set_pool(fn={fn}): containers must be an int >= -1, got {containers!r}")
        self._pending_target[fn] = int(containers)
        self._dirty = True

    def set_cpu_shares(self, fn: int, shares: int) -> None:
        """Set the CPU shares of every container of function ``fn``, existing and new.

        Shares are weights of processor sharing among the containers doing CPU work on one invoker
        (Docker ``--cpu-shares``), in [2, 262144]. Takes effect at ``now``.
        """
        fn = self._check_fn(fn)
        if (
            isinstance(shares, bool)
            or not isinstance(shares, (int, np.integer))
            or not MIN_CPU_SHARES <= shares <= MAX_CPU_SHARES
        ):
            raise ValueError(
                f"set_cpu_shares(fn={fn}): shares must be an int in [{MIN_CPU_SHARES}, {MAX_CPU_SHARES}], "
                f"got {shares!r}"
            )
        self._pending_shares[fn] = int(shares)
        self._dirty = True

    def _flush(self) -> None:
        if self._dirty:
            core.apply_controls(self._state, self._now, self._pending_target, self._pending_shares)
            self._pending_target.fill(core.NO_CHANGE)
            self._pending_shares.fill(0)
            self._dirty = False

    # ------------------------------------------------------------------ time

    def advance(self, until_s: float, arrival_times_s: np.ndarray, arrival_fn: np.ndarray) -> None:
        """Run the cluster from ``now`` to ``until_s`` with the given invocations arriving.

        ``arrival_times_s`` must be sorted and lie in ``[now, until_s)``; ``arrival_fn[k]`` is the
        function index of arrival ``k``. Events exactly at ``until_s`` are left for the next call.
        """
        until = float(until_s)
        if not (math.isfinite(until) and until >= self._now):
            raise ValueError(f"advance: until_s={until_s!r} must be finite and >= now={self._now}")
        times = np.ascontiguousarray(arrival_times_s, dtype=np.float64)
        fns = np.ascontiguousarray(arrival_fn, dtype=np.int64)
        if times.ndim != 1 or fns.shape != times.shape:
            raise ValueError(
                f"advance: arrival_times_s {times.shape} and arrival_fn {fns.shape} must be 1-D of one length"
            )
        if times.size:
            if not (times[0] >= self._now and times[-1] < until):
                raise ValueError(
                    f"advance: arrivals must lie in [now={self._now}, until_s={until}), "
                    f"got [{times[0]}, {times[-1]}]"
                )
            if times.size > 1 and np.any(times[1:] < times[:-1]):
                k = int(np.flatnonzero(times[1:] < times[:-1])[0])
                raise ValueError(f"advance: arrival_times_s not sorted at index {k + 1}")
            if fns.min() < 0 or fns.max() >= self.n_functions:
                raise ValueError(f"advance: arrival_fn values must be in [0, {self.n_functions})")
        self._flush()
        cpu_s, io_s = self._sample_work(fns)
        self._compact_records()
        self._arrays["g_i"][0, core.G_ARR_POS] = 0
        while True:
            status = core.run(self._state, until, times, fns, cpu_s, io_s)
            if status == core.DONE:
                break
            if status == core.NEED_RECORDS:
                self._grow_records()
            else:
                self._grow_activations()
        if fns.size:
            self._arrivals_total += np.bincount(fns, minlength=self.n_functions)
        self._now = until

    def _sample_work(self, fns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Draw each arrival's execution time from its profile and split it into CPU and I/O work.

        Profiles are asked in function-index order (one ``sample_exec_s`` call per function present),
        which keeps the random stream a function of the seed and the arrivals only.
        """
        n = fns.size
        exec_s = np.empty(n)
        if n == 0:
            return exec_s, exec_s
        counts = np.bincount(fns, minlength=self.n_functions)
        order = np.argsort(fns, kind="stable")
        grouped = np.empty(n)
        start = 0
        for f in np.flatnonzero(counts):
            k = int(counts[f])
            draw = np.asarray(self._profiles[f].sample_exec_s(self._rng, k), dtype=np.float64)
            if draw.shape != (k,) or not np.all(np.isfinite(draw) & (draw >= 0)):
                raise ValueError(
                    f"profile {self._profiles[f].name!r}: sample_exec_s must return {k} finite times >= 0"
                )
            grouped[start : start + k] = draw
            start += k
        exec_s[order] = grouped
        frac = self._cpu_fraction[fns]
        # FunctionProfile.split_work, vectorised over functions: alone and uncontended an
        # invocation takes io_s + cpu_s / max_cores == exec_s.
        return exec_s * frac * self._max_cores[fns], exec_s * (1.0 - frac)

    # ------------------------------------------------------------------ buffers

    def _pack(self) -> tuple[np.ndarray, ...]:
        a = self._arrays
        return (
            a["g_i"],
            a["g_f"],
            a["c_i"],
            a["c_f"],
            a["c_free"],
            a["a_i"],
            a["a_f"],
            a["a_free"],
            a["v_i"],
            a["v_f"],
            a["v_act"],
            a["f_i"],
            a["f_f"],
            a["ct_v"],
            a["ct_i"],
            a["vt_v"],
            a["vt_i"],
            a["rec_i"],
            a["rec_f"],
            a["blocked"],
            a["order"],
            a["key"],
        )

    def _grow_records(self) -> None:
        a = self._arrays
        for name in ("rec_i", "rec_f"):
            old = a[name]
            new = np.zeros((2 * old.shape[0], old.shape[1]), dtype=old.dtype)
            new[: old.shape[0]] = old
            a[name] = new
        self._state = self._pack()

    def _grow_activations(self) -> None:
        a = self._arrays
        cap = a["a_i"].shape[0]
        for name in ("a_i", "a_f"):
            new = np.zeros((2 * cap, a[name].shape[1]), dtype=a[name].dtype)
            new[:cap] = a[name]
            a[name] = new
        n_free = int(a["g_i"][0, core.G_A_FREE_N])
        free = np.empty(2 * cap, dtype=np.int64)
        free[:n_free] = a["a_free"][:n_free]
        free[n_free : n_free + cap] = np.arange(2 * cap - 1, cap - 1, -1)
        a["a_free"] = free
        a["g_i"][0, core.G_A_FREE_N] = n_free + cap
        self._state = self._pack()

    def _compact_records(self) -> None:
        """Drop records both consumers (tick statistics, and drain unless records are not kept) have read."""
        g_i = self._arrays["g_i"]
        n = int(g_i[0, core.G_REC_N])
        lo = min(self._tick_ptr, self._drain_ptr) if self._config.keep_records else self._tick_ptr
        if lo == 0:
            return
        for name in ("rec_i", "rec_f"):
            buf = self._arrays[name]
            buf[: n - lo] = buf[lo:n]
        g_i[0, core.G_REC_N] = n - lo
        self._tick_ptr -= lo
        self._drain_ptr = max(self._drain_ptr - lo, 0)

    def drain_records(self) -> np.ndarray:
        """The activation records (:data:`RECORD_DTYPE`) finished since the previous drain, in
        completion order. Needs ``ClusterConfig.keep_records`` (the default)."""
        if not self._config.keep_records:
            raise RuntimeError(
                "drain_records: this cluster does not keep records (ClusterConfig.keep_records=False)"
            )
        n = int(self._arrays["g_i"][0, core.G_REC_N])
        out = self._records(self._drain_ptr, n)
        self._drain_ptr = n
        return out

    def _records(self, lo: int, hi: int) -> np.ndarray:
        rec_i = self._arrays["rec_i"][lo:hi]
        rec_f = self._arrays["rec_f"][lo:hi]
        out = np.empty(hi - lo, dtype=RECORD_DTYPE)
        out["fn"] = rec_i[:, core.R_FN]
        out["cold"] = rec_i[:, core.R_COLD] == 1
        out["invoker"] = rec_i[:, core.R_INV]
        for name, col in (
            ("arrival_s", core.R_ARRIVAL),
            ("start_s", core.R_START),
            ("end_s", core.R_END),
            ("wait_s", core.R_WAIT),
            ("init_s", core.R_INIT),
            ("duration_s", core.R_DURATION),
        ):
            out[name] = rec_f[:, col]
        return out

    # ------------------------------------------------------------------ statistics

    def _integrals(self) -> tuple[np.ndarray, np.ndarray]:
        """The core's cumulative integrals at ``now`` (functions x N_TF, invokers x N_TV), read
        without changing the simulation."""
        out_f = np.zeros((self.n_functions, core.N_TF))
        out_v = np.zeros((self._config.invokers, core.N_TV))
        core.totals(self._state, self._now, out_f, out_v)
        return out_f, out_v

    def totals(self) -> Totals:
        """Exact cumulative accounting from time 0 to ``now``, per function and per invoker.

        The integrals are taken at event times (every container's cold start, state change and
        removal), so scaling a pool up and down between two observations is fully counted. Reading
        them changes nothing in the simulation; knob calls pending at ``now`` have not acted yet.
        Difference two calls with :meth:`Totals.since` for any period.
        """
        integrals_fn, integrals_inv = self._integrals()
        a = self._arrays
        f_i, f_f = a["f_i"], a["f_f"]
        memory = f_f[:, core.F_MEM]
        functions = FunctionTotals(
            arrivals=self._arrivals_total,
            completions=f_i[:, core.F_NRECENT],
            cold_starts=f_i[:, core.F_COLD],
            dropped=np.zeros(self.n_functions),
            evicted_idle=f_i[:, core.F_EVICT_IDLE],
            evicted_for_memory=f_i[:, core.F_EVICT_ROOM],
            queued=f_i[:, core.F_QLEN] + f_i[:, core.F_NBOUND],
            in_flight=f_i[:, core.F_NBUSY],
            container_s=integrals_fn[:, core.T_CONT_S],
            memory_mb_s=integrals_fn[:, core.T_CONT_S] * memory,
            idle_memory_mb_s=integrals_fn[:, core.T_IDLE_S] * memory,
            init_memory_mb_s=integrals_fn[:, core.T_INIT_S] * memory,
            cpu_used_core_s=integrals_fn[:, core.T_CPU_USED],
            cpu_alloc_core_s=integrals_fn[:, core.T_ALLOC],
        )
        invokers = InvokerTotals(
            memory_mb_s=integrals_inv[:, core.T_MEM_S],
            idle_memory_mb_s=integrals_inv[:, core.T_IDLE_MEM_S],
            init_memory_mb_s=integrals_inv[:, core.T_INIT_MEM_S],
            cpu_used_core_s=integrals_inv[:, core.T_INV_CPU_USED],
        )
        _freeze(functions)
        _freeze(invokers)
        return Totals(start_s=0.0, end_s=self._now, functions=functions, invokers=invokers)

    def tick_stats(self) -> TickStats:
        """Statistics of the period since the previous call (or the start), ending at ``now``."""
        self._flush()
        core.sync(self._state, self._now)
        a = self._arrays
        f_i, f_f, v_f = a["f_i"], a["f_f"], a["v_f"]
        n_fn = self.n_functions
        n = int(a["g_i"][0, core.G_REC_N])
        rec_i = a["rec_i"][self._tick_ptr : n]
        rec_f = a["rec_f"][self._tick_ptr : n]
        self._tick_ptr = n
        fn = rec_i[:, core.R_FN]
        latency = rec_f[:, core.R_END] - rec_f[:, core.R_ARRIVAL]
        duration = rec_f[:, core.R_DURATION]
        completions = np.bincount(fn, minlength=n_fn).astype(np.float64)
        p50, p99 = _percentiles_by_group(fn, latency, n_fn, (0.5, 0.99))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_exec = np.bincount(fn, weights=duration, minlength=n_fn) / completions
        if self._slo is None:
            slo = np.full(n_fn, np.nan)
            violations = np.full(n_fn, np.nan)
        else:
            slo = self._slo
            violations = np.bincount(fn, weights=(latency > slo[fn]).astype(np.float64), minlength=n_fn)
        recent = np.where(
            f_i[:, core.F_NRECENT] >= 3, f_f[:, core.F_RECENT : core.F_RECENT + 3].mean(axis=1), np.nan
        )
        prev = self._prev
        integrals_fn, integrals_inv = self._integrals()
        now_values = {
            "arrivals": self._arrivals_total.astype(np.float64),
            "cold": f_i[:, core.F_COLD].astype(np.float64),
            "cpu_fn": f_f[:, core.F_CPU_USED].copy(),
            "alloc": f_f[:, core.F_ALLOC_ACC].copy(),
            "cpu_inv": v_f[:, core.V_CPU_USED].copy(),
            "integrals_fn": integrals_fn,
            "integrals_inv": integrals_inv,
        }
        period_fn = integrals_fn - prev["integrals_fn"]
        period_inv = integrals_inv - prev["integrals_inv"]
        memory = f_f[:, core.F_MEM]
        functions = FunctionTick(
            memory_mb=f_f[:, core.F_MEM],
            slo_s=slo,
            arrivals=now_values["arrivals"] - prev["arrivals"],
            completions=completions,
            in_flight=f_i[:, core.F_NBUSY],
            queued=f_i[:, core.F_QLEN] + f_i[:, core.F_NBOUND],
            p50_latency_s=p50,
            p99_latency_s=p99,
            mean_exec_s=mean_exec,
            recent_exec_s=recent,
            cold_starts=now_values["cold"] - prev["cold"],
            slo_violations=violations,
            containers=f_i[:, core.F_NCONT],
            busy_containers=f_i[:, core.F_NBUSY],
            cpu_shares=f_f[:, core.F_SHARES],
            cpu_used_core_s=now_values["cpu_fn"] - prev["cpu_fn"],
            cpu_alloc_core_s=now_values["alloc"] - prev["alloc"],
            container_s=period_fn[:, core.T_CONT_S],
            memory_mb_s=period_fn[:, core.T_CONT_S] * memory,
            idle_memory_mb_s=period_fn[:, core.T_IDLE_S] * memory,
            init_memory_mb_s=period_fn[:, core.T_INIT_S] * memory,
            dropped=np.zeros(n_fn),
        )
        invokers = InvokerTick(
            cores=v_f[:, core.V_CORES],
            memory_mb=v_f[:, core.V_MEM],
            memory_used_mb=v_f[:, core.V_MEM] - v_f[:, core.V_FREE],
            cpu_used_core_s=now_values["cpu_inv"] - prev["cpu_inv"],
            cpu_shares_allocated=v_f[:, core.V_SHARES],
            memory_mb_s=period_inv[:, core.T_MEM_S],
            idle_memory_mb_s=period_inv[:, core.T_IDLE_MEM_S],
            init_memory_mb_s=period_inv[:, core.T_INIT_MEM_S],
        )
        _freeze(functions)
        _freeze(invokers)
        self._prev = now_values
        stats = TickStats(start_s=self._last_tick_s, end_s=self._now, functions=functions, invokers=invokers)
        self._last_tick_s = self._now
        return stats


def measure_solo_p99(
    profile: FunctionProfile, config: ClusterConfig | None = None, seed: int = 0, n: int = 2000
) -> float:
    """The p99 end-to-end latency of ``profile`` running alone, s (for SLO = this + 15%).

    "Alone" here: an otherwise empty cluster, one pre-warmed container (pool target 1) with
    OpenWhisk's default shares, and a closed loop of ``n`` invocations, each arriving once the
    previous one has finished, so none waits, cold-starts or shares the CPU. The latencies of that
    loop are the invocations' execution times on the lone container; they are obtained in one pass by
    queueing the ``n`` invocations on that container and timing each from its start. The result is
    the p99 of the profile's uncontended execution time as the simulator runs it (equal to the
    profile's own p99 up to sampling error whenever ``max_cores`` <= ``cores``).
    """
    if n < 100:
        raise ValueError(f"measure_solo_p99: n={n} is too few invocations for a p99 (need >= 100)")
    cluster = Cluster(config or ClusterConfig(), [profile], seed=seed)
    cluster.set_pool(0, 1)
    start = profile.init_s + 1.0
    cluster.advance(start, np.empty(0), np.empty(0, dtype=np.int64))
    arrivals = np.full(n, start)
    horizon = 2.0 * n * profile.exec_p99_s + 1.0
    cluster.advance(start + horizon, arrivals, np.zeros(n, dtype=np.int64))
    records = [cluster.drain_records()]
    done = records[0].size
    while done < n:
        cluster.advance(cluster.now + horizon, np.empty(0), np.empty(0, dtype=np.int64))
        records.append(cluster.drain_records())
        done += records[-1].size
    finished = np.concatenate(records)
    if finished["cold"].any():
        raise RuntimeError("measure_solo_p99: an invocation found the pre-warmed container cold")
    return float(np.percentile(finished["duration_s"], 99))


__all__ = [
    "RECORD_DTYPE",
    "UNMANAGED",
    "Cluster",
    "FunctionTick",
    "FunctionTotals",
    "InvokerTick",
    "InvokerTotals",
    "TickStats",
    "Totals",
    "measure_solo_p99",
]
