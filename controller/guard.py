"""The guard between a policy and the cluster: bounds, rate limits, capacity, and reconciliation.

Step 4 of the control loop (docs/architecture.md). A pure function of (decisions, snapshot, the
targets in force, bounds, the reconciliation's pacing); it never talks to a backend. In order, for
every function:

1. a decision that is not valid, that is about a row the backend could not observe, or about a
   function whose observed container count is unknown (NaN, infinite or negative) does not pass:
   no data, no decision. The guard never reads an unknown value as a number;
2. container targets >= 0 are clamped to [min, max]; CPU shares to [min_shares, max_shares]. An
   unset ``max_containers`` is what the cluster's user memory admits at the function's memory, an
   unset ``max_shares`` all the cores of the largest invoker: bounds that follow the cluster, not
   a workload;
3. the change against the reference (the target in force, else what the snapshot shows) is
   limited to ``max_container_change_per_tick`` containers (unset: the larger of 16 and the
   reference, so a pool may double every tick) and ``max_shares_change_per_tick`` shares. A
   shares decision for a function whose shares are neither in force nor observed (on containers
   it is seen to have) keeps them;
4. with ``respect_capacity``, container increases are trimmed until the memory of every
   function's containers fits the cluster's user memory: every increase is scaled by the same
   fraction, rounded down, and the memory the rounding left free then goes one container at a
   time to the largest fractional remainders (so when each of many functions asks for one more
   container at a nearly full cluster, some get it rather than none). This is
   a check of the total: packing containers onto invokers is the platform's job, so on a
   fragmented cluster a target that passes may still be only partly placed (the backend then
   starts what fits, as OpenWhisk would). What a function holds is its target in force, else its
   observed pool; where neither is known, the memory the invokers report in use beyond what the
   known pools explain stands for it, and when that is unknown too no increase passes. An
   increase of a function whose memory is unknown never passes;
5. a decision equal to the targets in force is not written again (``unchanged``);
6. reconciliation: every function whose observed state differs from its targets in force, with
   no change towards them in progress (:func:`compare`), gets the targets in force written again
   (``reapplied``), whatever was sent before: at most ``max_reapply_per_tick`` functions a tick,
   the longest waiting first; one that keeps differing is written again after 1, 2, 4, ... ticks,
   at most :data:`REAPPLY_BACKOFF_MAX_TICKS` (a platform that cannot follow is not hammered).

Every write carries every target in force of its function (a container change also restates the
shares), so a backend can always compare the whole desired state with what it observes.
``UNMANAGED`` container targets and ``KEEP_SHARES`` pass through steps 2–4 untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.types import KEEP_SHARES, SHARES_PER_CORE, UNMANAGED, ClusterSnapshot, Decisions, LazyReasons


@dataclass(frozen=True)
class GuardBounds:
    """The limits decisions are held to (see ``controller.settings.GuardSettings`` for each default)."""

    min_containers: int = 0
    """Fewest containers of a managed function."""
    max_containers: int | None = None
    """Most containers of one function; None: what the cluster's user memory admits."""
    min_shares: int = 2
    """Smallest CPU shares per container."""
    max_shares: int | None = None
    """Largest CPU shares per container; None: every core of the largest invoker (1024 per core)."""
    max_container_change_per_tick: int | None = None
    """Largest change of a container target in one tick; None: max(16, the current pool)."""
    max_shares_change_per_tick: int = 1024
    """Largest change of CPU shares in one tick."""
    respect_capacity: bool = True
    """Trim container increases to the cluster's user memory."""
    max_reapply_per_tick: int = 32
    """Most functions whose targets in force are written again in one tick because the observed
    state differs from them (0: never; a platform that lost them keeps its own defaults). 32: at
    the ~50 ms a remote write costs (a Docker update on an invoker), 32 writes take under 2 s, a
    fifth of the 10-s tick, while a platform restart under the default 12 functions is healed in
    the first tick that sees it (N managed functions take ⌈N / 32⌉ ticks)."""

    @classmethod
    def from_settings(cls, settings: object) -> GuardBounds:
        """Bounds from a ``GuardSettings`` (any object with the same attribute names; a bound the
        object does not name keeps its default here)."""
        names = [name for name in cls.__dataclass_fields__ if hasattr(settings, name)]
        return cls(**{name: getattr(settings, name) for name in names})


@dataclass(frozen=True, eq=False)
class AppliedTargets:
    """The targets in force per function: what the loop last applied successfully, i.e. the state
    the platform should hold (the desired state the reconciliation compares with the observed one)."""

    containers: np.ndarray
    """Last container target, or UNMANAGED if the function was never managed."""
    cpu_shares: np.ndarray
    """Last CPU-share target, or KEEP_SHARES if shares were never set."""

    @classmethod
    def initial(cls, n: int) -> AppliedTargets:
        """Nothing applied yet for ``n`` functions."""
        return cls(np.full(n, UNMANAGED, dtype=np.int64), np.full(n, KEEP_SHARES, dtype=np.int64))

    def grown(self, n: int) -> AppliedTargets:
        """The same targets extended to ``n`` functions (new functions appear at the end)."""
        extra = n - len(self.containers)
        if extra <= 0:
            return self
        return AppliedTargets(
            np.concatenate([self.containers, np.full(extra, UNMANAGED, dtype=np.int64)]),
            np.concatenate([self.cpu_shares, np.full(extra, KEEP_SHARES, dtype=np.int64)]),
        )

    def with_applied(self, decisions: Decisions, failed: np.ndarray) -> AppliedTargets:
        """Targets after applying ``decisions``; rows in ``failed`` keep their previous targets."""
        take = decisions.valid & ~failed
        containers = np.where(take, decisions.containers, self.containers)
        shares = np.where(take & (decisions.cpu_shares != KEEP_SHARES), decisions.cpu_shares, self.cpu_shares)
        return AppliedTargets(containers.astype(np.int64), shares.astype(np.int64))


#: Longest wait, in ticks, between two writes of the same targets in force to a function whose
#: observed state keeps differing from them: 32 ticks (about 5 minutes at 10-s ticks), so a platform
#: that cannot follow (a pool it cannot start, a knob that is a cap) costs one write in 32 ticks.
REAPPLY_BACKOFF_MAX_TICKS = 32


@dataclass(frozen=True, eq=False)
class ReconcileState:
    """How the reconciliation paces its writes, per function (carried by the loop between ticks)."""

    writes: np.ndarray
    """Re-applies in a row since the observed state last held the targets in force (int)."""
    wait: np.ndarray
    """Ticks before the targets may be written again; <= 0 allows it, and the more negative, the
    longer a write has been due (the first in line under ``max_reapply_per_tick``) (int)."""

    @classmethod
    def initial(cls, n: int) -> ReconcileState:
        """Nothing written again yet for ``n`` functions."""
        return cls(np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64))

    def grown(self, n: int) -> ReconcileState:
        """The same pacing extended to ``n`` functions (new functions appear at the end)."""
        extra = n - len(self.writes)
        if extra <= 0:
            return self
        return ReconcileState(np.concatenate([self.writes, np.zeros(extra, dtype=np.int64)]),
                              np.concatenate([self.wait, np.zeros(extra, dtype=np.int64)]))


@dataclass(frozen=True, eq=False)
class Comparison:
    """The observed state of every function against its targets in force (:func:`compare`)."""

    differs: np.ndarray
    """The observed state is known and differs from a target in force, and no change towards the
    target is in progress: writing the targets again is due."""
    holds: np.ndarray
    """Something is in force and the observed state equals every target in force."""
    containers_differ: np.ndarray
    """The container count is part of ``differs``."""
    shares_differ: np.ndarray
    """The CPU shares are part of ``differs``."""


def known_counts(values: np.ndarray) -> np.ndarray:
    """``values`` where each is a finite number >= 0, NaN elsewhere: an observed count or amount
    that is infinite or negative is as unknown as a missing one."""
    values = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(values) & (values >= 0), values, np.nan)


def room_for_one(snapshot: ClusterSnapshot, memory_mb: np.ndarray) -> np.ndarray:
    """Per function, whether an invoker observed this tick has free memory for one more of its
    containers: 1.0 where one has, 0.0 where none has, NaN where that cannot be told (the
    function's memory unknown, or no room on the invokers seen while another was not seen)."""
    inv = snapshot.invokers
    free = known_counts(inv.memory_mb) - known_counts(inv.memory_used_mb)
    seen = inv.valid & np.isfinite(free)
    memory = known_counts(memory_mb)
    if not seen.any():
        return np.full(len(memory), np.nan)
    largest = float(np.max(free[seen]))
    with np.errstate(invalid="ignore"):
        fits = np.where(np.isfinite(memory) & (memory > 0), (largest >= memory).astype(float), np.nan)
    # An invoker not observed might have room: "no room on the ones seen" is then unknown.
    return np.where((fits == 0.0) & ~inv.valid.all(), np.nan, fits)


def compare(snapshot: ClusterSnapshot, targets: AppliedTargets) -> Comparison:
    """Compare each function's observed state with its targets in force.

    Containers (a target k >= 0 against the observed count c, which counts starting containers):
    c == k holds; c > k is in progress while the surplus may be work the platform lets finish
    (c <= max(k, busy + queued)); c < k is in progress while no observed invoker has room for one
    more container (the platform starts the rest as memory frees). CPU shares (a target s against
    the observed shares per container) hold within half a share (a backend may report the mean of
    its containers) and change at once, so any other value differs. A value needed for a
    comparison that is unknown (NaN, infinite, negative, an invalid row) makes it neither hold nor
    differ, and a function whose container count is unknown never differs: nothing is written on an
    unknown value.
    """
    fns = snapshot.functions
    n = len(fns)
    targets = targets.grown(n)
    k = targets.containers.astype(float)
    s = targets.cpu_shares.astype(float)
    count = known_counts(fns.containers)
    work = known_counts(fns.busy_containers) + known_counts(fns.queued)
    room = room_for_one(snapshot, fns.memory_mb)
    with np.errstate(invalid="ignore"):
        shares = np.where(np.isfinite(fns.cpu_shares) & (fns.cpu_shares > 0), fns.cpu_shares, np.nan)
        pool = k >= 0
        surplus = pool & (count > k)
        deficit = pool & (count < k)
        surplus_settling = np.maximum(k, work) >= count  # False where work is unknown
        containers_differ = fns.valid & ((surplus & np.isfinite(work) & ~surplus_settling) | (deficit & (room == 1.0)))
        containers_hold = ~pool | (count == k)
        set_shares = targets.cpu_shares != KEEP_SHARES
        shares_differ = fns.valid & set_shares & (np.abs(shares - s) >= 0.5)
        shares_hold = ~set_shares | (np.abs(shares - s) < 0.5)
    holds = fns.valid & (pool | set_shares) & containers_hold & shares_hold
    # Nothing is written for a function whose pool is not known, whatever its shares say.
    shares_differ &= np.isfinite(count)
    return Comparison(
        differs=containers_differ | shares_differ,
        holds=holds,
        containers_differ=containers_differ,
        shares_differ=shares_differ,
    )


@dataclass(frozen=True, eq=False)
class GuardResult:
    """The decisions that may be applied, what the guard did to the rest, and what it re-applies."""

    decisions: Decisions
    """The policy's changes: ``valid[i]`` True only for a function whose targets change (a target
    in force restated is ``KEEP_SHARES`` here)."""
    to_apply: Decisions
    """What the backend is given: the changes and the re-applies, each with every target in force
    of its function (a container change carries the shares in force)."""
    blocked_invalid: int
    """Decisions dropped because the row had no data or the observed container count was unknown."""
    clamped: int
    """Passed decisions changed by a bound, the per-tick limit or the capacity."""
    unchanged: int
    """Valid decisions skipped because they equal the targets in force."""
    reapply: np.ndarray
    """Per function, whether its targets in force are written again because the observed state
    differs from them."""
    deferred: int
    """Functions whose observed state differs from their targets in force but wait (the per-tick
    bound, or the pause after an earlier re-apply)."""
    notes: tuple[str, ...]
    """Per function, what the guard changed ("" when nothing)."""
    reconcile: ReconcileState
    """The reconciliation's pacing after this tick (the loop passes it to the next call)."""

    @property
    def reapplied(self) -> int:
        """Functions whose targets in force are written again this tick."""
        return int(self.reapply.sum())


#: With ``max_container_change_per_tick`` unset, a pool may always move by this many containers in
#: one tick (and by its own size when that is larger).
SMALL_POOL_STEP = 16


def _cluster_memory_mb(snapshot: ClusterSnapshot) -> float:
    """User memory of every invoker whose memory is known, MB; NaN when none is.

    Capacity does not vanish when an invoker's scrape fails: every invoker counts, valid or not."""
    memory = known_counts(snapshot.invokers.memory_mb)
    known = np.isfinite(memory)
    return float(np.sum(memory[known])) if known.any() else float("nan")


def container_bounds(snapshot: ClusterSnapshot, bounds: GuardBounds) -> np.ndarray:
    """The most containers each function may hold: ``bounds.max_containers``, or, unset, as many as
    the cluster's user memory admits at the function's memory (at least ``min_containers``)."""
    n = len(snapshot.functions)
    if bounds.max_containers is not None:
        return np.full(n, bounds.max_containers, dtype=np.int64)
    memory = np.asarray(snapshot.functions.memory_mb, dtype=float)
    capacity = _cluster_memory_mb(snapshot)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        fit = np.floor(capacity / memory)
        # An unknown capacity or memory bounds nothing here (the capacity check holds increases).
        fit = np.where(np.isfinite(fit) & (memory > 0), np.minimum(fit, 1_000_000), 1_000_000)
    return np.maximum(fit.astype(np.int64), bounds.min_containers)


def shares_bound(snapshot: ClusterSnapshot, bounds: GuardBounds) -> int:
    """The most CPU shares per container: ``bounds.max_shares``, or, unset, 1024 per core of the
    largest invoker (at least ``min_shares``)."""
    if bounds.max_shares is not None:
        return bounds.max_shares
    cores = np.asarray(snapshot.invokers.cores, dtype=float)
    cores = cores[np.isfinite(cores)]
    largest = float(cores.max()) if cores.size else 1.0
    return max(int(round(SHARES_PER_CORE * largest)), bounds.min_shares)


def _share_room(increase: np.ndarray, memory_mb: np.ndarray, room_mb: float) -> np.ndarray:
    """Containers granted of each ``increase`` within ``room_mb`` of memory (largest remainders).

    Every increase is scaled by room / asked, rounded down; then, in order of the largest
    fractional part (ties: the earlier function), one more container goes to each function whose
    container still fits the memory left.
    """
    asked_mb = float(np.sum(increase * memory_mb))
    keep = min(1.0, room_mb / asked_mb) if asked_mb > 0 else 0.0
    exact = increase * keep
    granted = np.floor(exact + 1e-9).astype(np.int64)
    left = room_mb - float(np.sum(granted * memory_mb))
    for i in np.argsort(-(exact - granted), kind="stable"):
        if granted[i] < increase[i] and memory_mb[i] <= left + 1e-9:
            granted[i] += 1
            left -= float(memory_mb[i])
    return granted




def _held_elsewhere_mb(snapshot: ClusterSnapshot, targets: AppliedTargets, count: np.ndarray, memory: np.ndarray,
                       unknown: np.ndarray) -> float:
    """Memory held by the functions of ``unknown`` (what they hold is not known), MB: the invokers'
    memory in use that the known pools do not explain; inf when the invokers cannot tell."""
    if not unknown.any():
        return 0.0
    used = known_counts(snapshot.invokers.memory_used_mb)
    if not (snapshot.invokers.valid.all() and np.isfinite(used).all()):
        return float("inf")
    # What the other functions hold now: the observed pool, else the target in force.
    now = np.where(np.isfinite(count), count, np.maximum(targets.containers, 0))
    explained = float(np.sum(np.where(unknown | ~np.isfinite(memory), 0.0, now * np.nan_to_num(memory))))
    return max(0.0, float(np.sum(used)) - explained)


def guard(decisions: Decisions, snapshot: ClusterSnapshot, applied: AppliedTargets, bounds: GuardBounds,
          reconcile: ReconcileState | None = None) -> GuardResult:
    """Apply the guard's six steps (module docstring) to one tick's decisions.

    ``applied`` holds the targets in force; ``reconcile`` the pacing the previous call returned
    (None: nothing written again yet).
    """
    fns = snapshot.functions
    n = len(fns)
    if len(decisions) != n:
        raise ValueError(f"{len(decisions)} decisions for a snapshot of {n} functions")
    applied = applied.grown(n)
    pacing = (reconcile if reconcile is not None else ReconcileState.initial(n)).grown(n)
    notes: list[list[str]] = [[] for _ in range(n)]

    # --- no data, no decision: an invalid row, or an unknown observed pool ---
    count = known_counts(fns.containers)
    known = np.isfinite(count)
    wanted = decisions.valid.copy()
    no_row = wanted & ~fns.valid
    unknown_pool = wanted & fns.valid & ~known
    wanted &= fns.valid & known
    for i in np.flatnonzero(no_row):
        notes[i].append("row has no data: decision dropped")
    for i in np.flatnonzero(unknown_pool):
        notes[i].append(f"observed containers unknown ({fns.containers[i]}): decision dropped")

    # --- containers: bounds, then the per-tick limit, then the bounds again (they are hard) ---
    target = decisions.containers.astype(np.int64).copy()
    managed = wanted & (target != UNMANAGED)
    observed = np.rint(np.where(known, count, 0.0)).astype(np.int64)
    in_force = applied.containers >= 0
    reference = np.where(in_force, applied.containers, observed)
    lo, hi = bounds.min_containers, container_bounds(snapshot, bounds)
    if bounds.max_container_change_per_tick is not None:
        step = np.full(n, bounds.max_container_change_per_tick, dtype=np.int64)
    else:
        step = np.maximum(SMALL_POOL_STEP, np.maximum(reference, 0))
    limited = np.clip(np.clip(target, lo, hi), reference - step, reference + step)
    limited = np.clip(limited, lo, hi)
    for i in np.flatnonzero(managed & (limited != target)):
        notes[i].append(f"containers {target[i]} -> {limited[i]} (bounds [{lo}, {hi[i]}], step {step[i]})")
    target = np.where(managed, limited, target)

    # --- capacity: trim increases so that every container's memory fits the cluster ---
    if bounds.respect_capacity and managed.any():
        capacity = _cluster_memory_mb(snapshot)
        memory = known_counts(fns.memory_mb)
        memory_known = np.isfinite(memory) & (memory > 0)
        blind = managed & ~memory_known & (target > reference)
        for i in np.flatnonzero(blind):
            notes[i].append(f"containers {target[i]} -> {reference[i]} (memory of a container unknown)")
        target = np.where(blind, reference, target)
        mem = np.where(memory_known, memory, 0.0)
        held = np.where(managed, target, np.where(in_force, applied.containers, observed))
        unknown_holding = ~managed & ((~in_force & ~known) | (~memory_known & (held != 0)))
        held_mb = np.where(unknown_holding, 0.0, np.maximum(held, 0) * mem)
        excess = float(np.sum(held_mb)) - capacity
        excess += _held_elsewhere_mb(snapshot, applied, count, memory, unknown_holding)
        if not np.isfinite(capacity):
            excess = float("inf")
        increase = np.where(managed, np.maximum(target - reference, 0), 0)
        increase_mb = float(np.sum(increase * mem))
        if excess > 0 and increase_mb > 0:
            room_mb = max(0.0, increase_mb - excess)
            trimmed = reference + _share_room(increase, mem, room_mb)
            why = f"cluster memory {capacity:.0f} MB" if np.isfinite(excess) else "cluster memory in use unknown"
            for i in np.flatnonzero(increase > 0):
                if trimmed[i] != target[i]:
                    notes[i].append(f"containers {target[i]} -> {trimmed[i]} ({why})")
            target = np.where(increase > 0, trimmed, target)

    # --- CPU shares: bounds, then the per-tick limit ---
    shares = decisions.cpu_shares.astype(np.int64).copy()
    setting = wanted & (shares != KEEP_SHARES)
    # Shares per container of a pool observed empty have no value to move from, unknown or not.
    seen_shares = np.isfinite(fns.cpu_shares) | (count == 0)
    observed_shares = np.rint(np.where(np.isfinite(fns.cpu_shares), fns.cpu_shares, 0.0)).astype(np.int64)
    shares_in_force = applied.cpu_shares >= 0
    shares_ref = np.where(shares_in_force, applied.cpu_shares, observed_shares)
    blind_shares = setting & ~shares_in_force & ~seen_shares
    for i in np.flatnonzero(blind_shares):
        notes[i].append(f"shares {shares[i]} kept (observed shares unknown)")
    setting &= ~blind_shares
    slo, shi = bounds.min_shares, shares_bound(snapshot, bounds)
    sstep = bounds.max_shares_change_per_tick
    bounded = np.clip(shares, slo, shi)
    # With no reference (no containers yet, shares never set) there is nothing to move from.
    has_ref = shares_ref > 0
    limited_shares = np.where(has_ref, np.clip(bounded, shares_ref - sstep, shares_ref + sstep), bounded)
    limited_shares = np.clip(limited_shares, slo, shi)
    for i in np.flatnonzero(setting & (limited_shares != shares)):
        notes[i].append(f"shares {shares[i]} -> {limited_shares[i]} (bounds [{slo}, {shi}], step {sstep})")
    shares = np.where(setting, limited_shares, np.where(blind_shares, KEEP_SHARES, shares))

    # --- skip what would not change anything ---
    same_containers = target == applied.containers
    same_shares = (shares == KEEP_SHARES) | (shares == applied.cpu_shares)
    unchanged = wanted & same_containers & same_shares
    passed = wanted & ~unchanged
    clamped = sum(1 for i in np.flatnonzero(passed) if notes[i])
    changes = Decisions(
        containers=target,
        cpu_shares=np.where(same_shares, KEEP_SHARES, shares),
        valid=passed,
        reasons=decisions.reasons,
        action=decisions.action,
    )

    # --- reconcile: write the targets in force again where the platform does not hold them ---
    reapply, deferred, pacing = _reconcile(compare(snapshot, applied), passed, pacing, bounds.max_reapply_per_tick)
    restate = np.where(passed & same_shares, applied.cpu_shares, changes.cpu_shares)
    again, told = reapply.copy(), decisions.reasons
    reasons = LazyReasons(
        len(again), lambda i: "re-applied: the observed state differs from the targets in force" if again[i] else told[i]
    )
    to_apply = Decisions(
        containers=np.where(passed, target, applied.containers),
        cpu_shares=np.where(passed, restate, applied.cpu_shares),
        valid=passed | reapply,
        reasons=reasons,
        action=decisions.action,
    )
    return GuardResult(
        decisions=changes,
        to_apply=to_apply,
        blocked_invalid=int((no_row | unknown_pool).sum()),
        clamped=int(clamped),
        unchanged=int(unchanged.sum()),
        reapply=reapply,
        deferred=deferred,
        notes=tuple("; ".join(parts) for parts in notes),
        reconcile=pacing,
    )


def _reconcile(comparison: Comparison, written: np.ndarray, pacing: ReconcileState,
               limit: int) -> tuple[np.ndarray, int, ReconcileState]:
    """Which functions get their targets in force written again, how many wait, and the new pacing.

    Due: the observed state differs, no change is written this tick, and the pause after an
    earlier re-apply is over; of those, the ``limit`` that have waited longest (ties: the earlier
    function). A function whose observed state holds its targets, or that gets a change, starts
    afresh; a re-applied one pauses 1, 2, 4, ... ticks (at most REAPPLY_BACKOFF_MAX_TICKS).
    """
    differs = comparison.differs & ~written
    due = np.flatnonzero(differs & (pacing.wait <= 0))
    order = due[np.lexsort((due, pacing.wait[due]))]
    chosen = order[: max(limit, 0)]
    reapply = np.zeros(len(differs), dtype=bool)
    reapply[chosen] = True
    writes = np.where(reapply, pacing.writes + 1, pacing.writes)
    pause = np.minimum(2 ** np.minimum(np.maximum(writes - 1, 0), 30), REAPPLY_BACKOFF_MAX_TICKS)
    wait = np.where(reapply, pause, pacing.wait - 1)
    fresh = comparison.holds | written
    writes = np.where(fresh, 0, writes)
    # A wait far in the past orders nothing more than "due": keep the numbers small.
    wait = np.where(fresh, 0, np.maximum(wait, -1_000_000))
    deferred = int((differs & ~reapply).sum())
    return reapply, deferred, ReconcileState(writes.astype(np.int64), wait.astype(np.int64))


__all__ = [
    "REAPPLY_BACKOFF_MAX_TICKS",
    "SMALL_POOL_STEP",
    "AppliedTargets",
    "Comparison",
    "GuardBounds",
    "GuardResult",
    "ReconcileState",
    "compare",
    "container_bounds",
    "guard",
    "known_counts",
    "room_for_one",
    "shares_bound",
]
