"""Each pool level's recent record for each function: what the level would have cost the function over
the last hour, had it held the function's pool, in the operator's two currencies.

The game's features and a function's arrival history describe the function; which pool level is best
for it still has to be learned from them, and a policy fitted on one sample of functions learns it for
that sample. A level's record says it directly, in terms that mean the same for every function: "the
KPA at 0.7 would have missed a warm container for 30% of your arrivals in the last hour and held 0.1
invoker of idle memory; the histogram rule 5% and 0.02". A shared policy that prefers the level with the
better record carries to functions it never saw.

Every level decides a pool for every function each tick whichever level the function follows (the
members' pools, the staffing constants' ⌈R + c·√R⌉, the platform's keep-alive), so the record is a
counterfactual of the decision alone: the pool level ``l`` decided at the previous tick, ``P_l``, set
against the containers the function's work needed in this tick, ``D`` (⌈max(R, in flight + queued)⌉,
at least 1 when anything arrived; R the offered load in busy containers)::

    miss_l   arrivals × clip((D − P_l) / D, 0, 1)     arrivals that found no warm container (cold start or wait)
    idle_l   max(P_l − D, 0) × memory / invoker memory   idle memory held, in invokers

Both are averaged with a time constant of 1 hour (``RECORD_TAU_S``), as are the arrivals, and enter the
state as ``miss_rate_l`` = average miss / average arrivals (0 before the first arrival) and
``idle_l`` (clipped at 1): two entries per level, in [0, 1].

The platform's level is modelled, not read from the pool the function holds (which is the followed
level's): the largest need since the function was last idle for ``PLATFORM_KEEP_S`` (OpenWhisk's default
idle eviction, 10 minutes), 0 after. A staffing constant leaves an idle function (load under the agent's
``idle_load``) to the platform, so its pool there is the platform's. The record ignores what a pool does
to other functions (memory contention) and the time a container takes to start: it is an estimate.

Functions keep their row index across snapshots; rows appended later start empty. The record is not
checkpointed: after a restart it fills again from the arrivals.
"""

from __future__ import annotations

import math

import numpy as np

from policies.types import ClusterSnapshot

#: Time constant of the averages, s.
RECORD_TAU_S = 3600.0
#: How long the modelled platform keeps a function's containers after its last need, s.
PLATFORM_KEEP_S = 600.0
#: Names of the record's two entries per level (``<name>:<level>`` in the state).
RECORD_ENTRIES: tuple[str, ...] = ("miss_rate", "idle")


def demand(snapshot: ClusterSnapshot, load: np.ndarray) -> np.ndarray:
    """Containers each function's work needed in the snapshot's tick: ⌈max(R, in flight + queued)⌉, at
    least 1 when anything arrived, 0 for a function that was idle (or unobserved)."""
    f = snapshot.functions
    held = np.nan_to_num(np.asarray(f.in_flight, dtype=float)) + np.nan_to_num(np.asarray(f.queued, dtype=float))
    r = np.where(np.isfinite(load), np.maximum(load, 0.0), 0.0)
    need = np.ceil(np.maximum(r, held) - 1e-9)
    arrived = np.nan_to_num(np.asarray(f.arrivals, dtype=float)) > 0
    need = np.where(arrived, np.maximum(need, 1.0), need)
    return np.where(np.asarray(f.valid, dtype=bool), np.maximum(need, 0.0), 0.0)


class LevelRecord:
    """The running record of every level for every function, advanced once per snapshot time."""

    def __init__(self, levels: tuple[str, ...]) -> None:
        if not levels:
            raise ValueError("LevelRecord needs at least one pool level")
        self.levels = tuple(levels)
        """The pool levels, in the order of their entries."""
        self._clear(0)

    def _clear(self, n: int) -> None:
        k = len(self.levels)
        self.arrivals = np.zeros(n)
        """Average arrivals per tick."""
        self.miss = np.zeros((k, n))
        """Average arrivals per tick each level's pool would have left without a warm container."""
        self.idle = np.zeros((k, n))
        """Average idle memory each level's pool would have held, in invokers."""
        self.pools = np.full((k, n), np.nan)
        """The pools the levels decided at the last snapshot (NaN: none yet)."""
        self.platform_need = np.zeros(n)
        """The modelled platform's pool: the largest need since the function was last idle long enough."""
        self.platform_until_s = np.full(n, -math.inf)
        """When the modelled platform's containers expire."""
        self._time: float | None = None

    def _grow(self, n: int) -> None:
        extra = n - len(self.arrivals)
        if extra <= 0:
            return
        k = len(self.levels)
        self.arrivals = np.concatenate([self.arrivals, np.zeros(extra)])
        self.miss = np.hstack([self.miss, np.zeros((k, extra))])
        self.idle = np.hstack([self.idle, np.zeros((k, extra))])
        self.pools = np.hstack([self.pools, np.full((k, extra), np.nan)])
        self.platform_need = np.concatenate([self.platform_need, np.zeros(extra)])
        self.platform_until_s = np.concatenate([self.platform_until_s, np.full(extra, -math.inf)])

    def platform_pool(self, snapshot: ClusterSnapshot, need: np.ndarray) -> np.ndarray:
        """Advance the modelled platform by this tick's ``need`` and return the pool it holds now."""
        now = float(snapshot.time_s)
        busy = need > 0
        live = now < self.platform_until_s
        self.platform_need = np.where(busy, np.where(live, np.maximum(self.platform_need, need), need),
                                      np.where(live, self.platform_need, 0.0))
        self.platform_until_s = np.where(busy, now + PLATFORM_KEEP_S, self.platform_until_s)
        return self.platform_need.copy()

    def observe(self, snapshot: ClusterSnapshot, pools: np.ndarray, load: np.ndarray, idle_load: float) -> None:
        """Fold in one snapshot: score the pools decided at the previous one against this tick's need,
        then keep ``pools`` ((levels, N), each level's decision for the coming tick; the platform's row
        and an idle function's staffing constants are replaced by the modelled platform). A second call
        with the same snapshot time changes nothing."""
        if self._time == snapshot.time_s:
            return
        f = snapshot.functions
        n = len(f)
        pools = np.asarray(pools, dtype=float)
        if pools.shape != (len(self.levels), n):
            raise ValueError(f"LevelRecord.observe: pools has shape {pools.shape}, expected ({len(self.levels)}, {n})")
        if n < len(self.arrivals):
            self._clear(n)
        self._grow(n)
        self._time = float(snapshot.time_s)
        valid = np.asarray(f.valid, dtype=bool)
        need = demand(snapshot, load)
        arrivals = np.where(valid, np.maximum(np.nan_to_num(np.asarray(f.arrivals, dtype=float)), 0.0), 0.0)

        scored = valid & np.all(np.isfinite(self.pools), axis=0)
        if scored.any():
            previous = self.pools[:, scored]
            d = need[scored]
            short = np.clip((d - previous) / np.maximum(d, 1.0), 0.0, 1.0) * arrivals[scored]
            memories = snapshot.invokers.memory_mb[snapshot.invokers.valid & (snapshot.invokers.memory_mb > 0)]
            user_memory = float(np.median(memories)) if memories.size else 2048.0
            memory = np.nan_to_num(np.maximum(np.asarray(f.memory_mb, dtype=float)[scored], 0.0))
            held = np.maximum(previous - d, 0.0) * memory / user_memory
            w = 1.0 - math.exp(-snapshot.tick_s / RECORD_TAU_S)
            self.arrivals[scored] += w * (arrivals[scored] - self.arrivals[scored])
            self.miss[:, scored] += w * (short - self.miss[:, scored])
            self.idle[:, scored] += w * (held - self.idle[:, scored])

        platform = self.platform_pool(snapshot, need)
        kept = np.where(np.isfinite(pools), np.maximum(pools, 0.0), platform)
        r = np.where(np.isfinite(load), np.maximum(load, 0.0), 0.0)
        for j, level in enumerate(self.levels):
            if level == "platform":
                kept[j] = platform
            elif level.startswith("c="):
                kept[j] = np.where(r < idle_load, platform, kept[j])
        self.pools = np.where(valid, kept, self.pools)

    def features(self, snapshot: ClusterSnapshot, pools: np.ndarray, load: np.ndarray,
                 idle_load: float) -> np.ndarray:
        """(N, 2·levels) each level's ``miss_rate`` then ``idle`` entries (level by level), observing the
        snapshot first."""
        self.observe(snapshot, pools, load, idle_load)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(self.arrivals > 0, self.miss / np.where(self.arrivals > 0, self.arrivals, 1.0), 0.0)
        x = np.empty((len(self.arrivals), 2 * len(self.levels)))
        x[:, 0::2] = np.clip(rate, 0.0, 1.0).T
        x[:, 1::2] = np.clip(self.idle, 0.0, 1.0).T
        return x


def record_names(levels: tuple[str, ...]) -> tuple[str, ...]:
    """Names of the record's entries for ``levels``, in state order."""
    return tuple(f"{entry}:{level}" for level in levels for entry in RECORD_ENTRIES)


__all__ = ["PLATFORM_KEEP_S", "RECORD_ENTRIES", "RECORD_TAU_S", "LevelRecord", "demand", "record_names"]
