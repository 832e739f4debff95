"""The guard between a policy and the cluster: bounds, rate limits, capacity, and no needless writes.

Step 4 of the control loop (docs/architecture.md). A pure function of (decisions, snapshot, what was last
applied, bounds); it never talks to a backend. In order, for every function:

1. a decision that is not valid, or that is about a row the backend could not observe, does not
   pass (no data, no decision);
2. container targets >= 0 are clamped to [min, max]; CPU shares to [min_shares, max_shares]. An
   unset ``max_containers`` is what the cluster's user memory admits at the function's memory, an
   unset ``max_shares`` all the cores of the largest invoker: bounds that follow the cluster, not
   a workload;
3. the change against the reference (the last applied target, else what the snapshot shows) is
   limited to ``max_container_change_per_tick`` containers (unset: the larger of 16 and the
   reference, so a pool may double every tick) and ``max_shares_change_per_tick`` shares;
4. with ``respect_capacity``, container increases are trimmed until the memory of every
   function's containers fits the cluster's user memory: every increase is scaled by the same
   fraction, rounded down, and the memory the rounding left free then goes one container at a
   time to the largest fractional remainders (so when each of many functions asks for one more
   container at a nearly full cluster, some get it rather than none). This is
   a check of the total: packing containers onto invokers is the platform's job, so on a
   fragmented cluster a target that passes may still be only partly placed (the backend then
   starts what fits, as OpenWhisk would);
5. a decision equal to the last applied targets is skipped, so an unchanged policy writes nothing.

``UNMANAGED`` container targets and ``KEEP_SHARES`` pass through steps 2–4 untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.types import KEEP_SHARES, SHARES_PER_CORE, UNMANAGED, ClusterSnapshot, Decisions


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

    @classmethod
    def from_settings(cls, settings: object) -> GuardBounds:
        """Bounds from a ``GuardSettings`` (any object with the same attribute names)."""
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True, eq=False)
class AppliedTargets:
    """What the loop last applied successfully per function, i.e. what the backend is holding to."""

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


@dataclass(frozen=True, eq=False)
class GuardResult:
    """The decisions that may be applied, and what the guard did to the rest."""

    decisions: Decisions
    """What to apply: ``valid[i]`` True only for a function whose targets change."""
    blocked_invalid: int
    """Decisions dropped because the snapshot row was invalid (no data)."""
    clamped: int
    """Passed decisions changed by a bound, the per-tick limit or the capacity."""
    unchanged: int
    """Valid decisions skipped because they equal the last applied targets."""
    notes: tuple[str, ...]
    """Per function, what the guard changed ("" when nothing)."""


#: With ``max_container_change_per_tick`` unset, a pool may always move by this many containers in
#: one tick (and by its own size when that is larger).
SMALL_POOL_STEP = 16


def _cluster_memory_mb(snapshot: ClusterSnapshot) -> float:
    # Capacity does not vanish when an invoker's scrape fails: all invokers count.
    return float(np.nansum(snapshot.invokers.memory_mb))


def container_bounds(snapshot: ClusterSnapshot, bounds: GuardBounds) -> np.ndarray:
    """The most containers each function may hold: ``bounds.max_containers``, or, unset, as many as
    the cluster's user memory admits at the function's memory (at least ``min_containers``)."""
    n = len(snapshot.functions)
    if bounds.max_containers is not None:
        return np.full(n, bounds.max_containers, dtype=np.int64)
    memory = np.asarray(snapshot.functions.memory_mb, dtype=float)
    capacity = _cluster_memory_mb(snapshot)
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = np.floor(capacity / memory)
    fit = np.where(np.isfinite(fit) & (memory > 0), fit, 1_000_000)
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


def guard(decisions: Decisions, snapshot: ClusterSnapshot, applied: AppliedTargets, bounds: GuardBounds) -> GuardResult:
    """Apply the guard's five steps (module docstring) to one tick's decisions."""
    fns = snapshot.functions
    n = len(fns)
    if len(decisions) != n:
        raise ValueError(f"{len(decisions)} decisions for a snapshot of {n} functions")
    applied = applied.grown(n)
    notes: list[list[str]] = [[] for _ in range(n)]

    wanted = decisions.valid.copy()
    blocked = wanted & ~fns.valid
    wanted &= fns.valid
    for i in np.flatnonzero(blocked):
        notes[i].append("row has no data: decision dropped")

    # --- containers: bounds, then the per-tick limit, then the bounds again (they are hard) ---
    target = decisions.containers.astype(np.int64).copy()
    managed = wanted & (target != UNMANAGED)
    observed = np.rint(fns.containers).astype(np.int64)
    reference = np.where(applied.containers >= 0, applied.containers, observed)
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
        held = np.where(managed, target, np.where(applied.containers >= 0, applied.containers, observed))
        excess = float(np.sum(np.maximum(held, 0) * fns.memory_mb)) - capacity
        increase = np.where(managed, np.maximum(target - reference, 0), 0)
        increase_mb = float(np.sum(increase * fns.memory_mb))
        if excess > 0 and increase_mb > 0:
            room_mb = max(0.0, increase_mb - excess)
            trimmed = reference + _share_room(increase, fns.memory_mb, room_mb)
            for i in np.flatnonzero(increase > 0):
                if trimmed[i] != target[i]:
                    notes[i].append(f"containers {target[i]} -> {trimmed[i]} (cluster memory {capacity:.0f} MB)")
            target = np.where(increase > 0, trimmed, target)

    # --- CPU shares: bounds, then the per-tick limit ---
    shares = decisions.cpu_shares.astype(np.int64).copy()
    setting = wanted & (shares != KEEP_SHARES)
    observed_shares = np.rint(fns.cpu_shares).astype(np.int64)
    shares_ref = np.where(applied.cpu_shares >= 0, applied.cpu_shares, observed_shares)
    slo, shi = bounds.min_shares, shares_bound(snapshot, bounds)
    sstep = bounds.max_shares_change_per_tick
    bounded = np.clip(shares, slo, shi)
    # With no reference (no containers yet, shares never set) there is nothing to move from.
    has_ref = shares_ref > 0
    limited_shares = np.where(has_ref, np.clip(bounded, shares_ref - sstep, shares_ref + sstep), bounded)
    limited_shares = np.clip(limited_shares, slo, shi)
    for i in np.flatnonzero(setting & (limited_shares != shares)):
        notes[i].append(f"shares {shares[i]} -> {limited_shares[i]} (bounds [{slo}, {shi}], step {sstep})")
    shares = np.where(setting, limited_shares, shares)

    # --- skip what would not change anything ---
    same_containers = target == applied.containers
    same_shares = (shares == KEEP_SHARES) | (shares == applied.cpu_shares)
    unchanged = wanted & same_containers & same_shares
    passed = wanted & ~unchanged
    clamped = sum(1 for i in np.flatnonzero(passed) if notes[i])

    result = Decisions(
        containers=target,
        cpu_shares=np.where(same_shares, KEEP_SHARES, shares),
        valid=passed,
        reasons=decisions.reasons,
        action=decisions.action,
    )
    return GuardResult(
        decisions=result,
        blocked_invalid=int(blocked.sum()),
        clamped=int(clamped),
        unchanged=int(unchanged.sum()),
        notes=tuple("; ".join(parts) for parts in notes),
    )


__all__ = ["SMALL_POOL_STEP", "AppliedTargets", "GuardBounds", "GuardResult", "container_bounds", "guard", "shares_bound"]
