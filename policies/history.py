"""A function's longer arrival history as features: how long it has been idle, how often it is busy,
and how long and how regular its idle gaps are.

The game's local state describes one tick: arrivals, pool, latency. Which pool level serves a function
best over an hour is decided by what a tick does not show — a function invoked every 5 minutes and one
invoked every 5 hours are both idle in most ticks and look alike in x(s), yet the platform's 10-minute
keep-alive suits the first and wastes memory on the second, and a timer-driven function with a fixed
period is what a pre-warming rule serves without a cold start. These entries give the shared policy
that difference as a property of the function's own arrivals, not of its name, so a policy fitted to
one sample of functions can apply it to another.

Per function, all in [0, 1] (``H`` = 4 hours, the horizon the hybrid-histogram policy keeps idle times
for; idle times in minutes, t = now − end of the last busy tick)::

    idle_now       log(1 + min(t, H)) / log(1 + H); 1 before the function's first invocation
    busy_long      exponential average of "the tick had arrivals or work", τ = 1 hour
    idle_typical   average of log(1 + gap) / log(1 + H) over the gaps between busy ticks
                   (0 between consecutive busy ticks)
    idle_spread    standard deviation of the same, over half its largest possible value
    gaps_seen      min(gaps recorded / 10, 1): how far the two above are to be trusted

The averages run over every gap while fewer than 32 have been seen and then forget with weight 1/32:
a function's habits change over a day, and a fitted policy reads them as they are now.

Functions keep their row index across snapshots (as everywhere in the driver); rows appended later
start empty. The state is not checkpointed: after a restart the features fill again from the arrivals.
"""

from __future__ import annotations

import math

import numpy as np

from policies.types import ClusterSnapshot

#: Names of the history features, in order.
HISTORY_FEATURES: tuple[str, ...] = ("idle_now", "busy_long", "idle_typical", "idle_spread", "gaps_seen")
#: Idle times beyond this many minutes read as this (4 hours).
HORIZON_MIN = 240.0
#: Time constant of ``busy_long``, s.
BUSY_TAU_S = 3600.0
#: Gaps after which the running averages forget with weight 1/this.
GAP_MEMORY = 32
#: Gaps at which ``gaps_seen`` reaches 1.
GAPS_TRUSTED = 10

_LOG_H = math.log1p(HORIZON_MIN)


class ArrivalHistory:
    """Per-function arrival history, advanced once per snapshot time."""

    def __init__(self) -> None:
        self.last_busy_s = np.zeros(0)
        """End of each function's last busy tick, s (NaN before its first)."""
        self.busy = np.zeros(0)
        """Exponential average of busy ticks (``busy_long``)."""
        self.gaps = np.zeros(0)
        """Gaps recorded per function."""
        self.gap_mean = np.zeros(0)
        """Running mean of log(1 + gap minutes) / log(1 + H)."""
        self.gap_square = np.zeros(0)
        """Running mean of its square."""
        self._time: float | None = None

    def _grow(self, n: int) -> None:
        extra = n - len(self.gaps)
        if extra <= 0:
            return
        self.last_busy_s = np.concatenate([self.last_busy_s, np.full(extra, np.nan)])
        for name in ("busy", "gaps", "gap_mean", "gap_square"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(extra)]))

    def observe(self, snapshot: ClusterSnapshot) -> None:
        """Fold in one snapshot (a second call with the same snapshot time changes nothing)."""
        if self._time == snapshot.time_s:
            return
        f = snapshot.functions
        n = len(f)
        if n < len(self.gaps):
            self.__init__()
        self._grow(n)
        self._time = float(snapshot.time_s)
        valid = np.asarray(f.valid, dtype=bool)
        held = np.nan_to_num(np.asarray(f.in_flight, dtype=float)) + np.nan_to_num(np.asarray(f.queued, dtype=float))
        arrived = valid & (np.nan_to_num(np.asarray(f.arrivals, dtype=float)) > 0)
        busy = valid & (arrived | (held > 0))

        weight = 1.0 - math.exp(-snapshot.tick_s / BUSY_TAU_S)
        self.busy = np.where(valid, self.busy + weight * (busy - self.busy), self.busy)

        rows = np.flatnonzero(arrived & np.isfinite(self.last_busy_s))
        if rows.size:
            gap_min = np.maximum(snapshot.time_s - self.last_busy_s[rows] - snapshot.tick_s, 0.0) / 60.0
            value = np.log1p(np.minimum(gap_min, HORIZON_MIN)) / _LOG_H
            self.gaps[rows] += 1
            step = 1.0 / np.minimum(self.gaps[rows], GAP_MEMORY)
            self.gap_mean[rows] += step * (value - self.gap_mean[rows])
            self.gap_square[rows] += step * (value**2 - self.gap_square[rows])
        self.last_busy_s = np.where(busy, snapshot.time_s, self.last_busy_s)

    def features(self, snapshot: ClusterSnapshot) -> np.ndarray:
        """(N, 5) the entries of the module docstring for this snapshot (observing it first)."""
        self.observe(snapshot)
        idle_min = np.maximum(snapshot.time_s - self.last_busy_s, 0.0) / 60.0
        idle_now = np.where(np.isfinite(self.last_busy_s),
                            np.log1p(np.minimum(np.nan_to_num(idle_min), HORIZON_MIN)) / _LOG_H, 1.0)
        spread = np.sqrt(np.maximum(self.gap_square - self.gap_mean**2, 0.0)) / 0.5
        seen = np.minimum(self.gaps / GAPS_TRUSTED, 1.0)
        x = np.column_stack([idle_now, self.busy, self.gap_mean, spread, seen])
        return np.clip(x, 0.0, 1.0)


__all__ = ["HISTORY_FEATURES", "ArrivalHistory"]
