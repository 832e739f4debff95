"""The real clock around the control loop: when to tick, how long to back off, and how to stop.

This is the only module of the daemon that reads a clock or waits. The control loop itself keeps
taking ``now`` as a parameter (docs/architecture.md, "The control loop"); :class:`IntervalDriver` decides
*when* to call it and passes it the elapsed monotonic time. Tests drive the same code with a fake
:class:`Clock` whose ``wait`` moves time forward instantly, so they never sleep.

Scheduling rules (the reasons are in the docstrings below):

* ticks sit on a fixed grid ``start + k·interval`` of monotonic time, so a tick's own duration does
  not make the loop drift;
* a tick that overruns its slot skips the slots it missed instead of running them back to back
  (a burst of catch-up ticks would act on nearly identical snapshots);
* after a failed tick the next attempt waits ``max(interval, backoff delay)``; the delay grows
  along a fixed sequence while failures continue and resets at the first good tick.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

#: Delays after 1, 2, 3, ... consecutive failures, s; the last one repeats. Short first steps
#: recover quickly from a blip; the 60 s ceiling bounds the load a broken daemon puts on a
#: struggling platform (with a 10 s interval the daemon slows down only from the 5th failure).
DEFAULT_BACKOFF_S: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class Clock(Protocol):
    """Monotonic time, and a wait that a stop request cuts short."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (its origin is arbitrary)."""
        ...

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` (return at once when <= 0); True when a stop was requested."""
        ...

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`request_stop` has been called."""
        ...

    def request_stop(self) -> None:
        """Wake any wait and make every later wait return True at once."""
        ...


class RealClock:
    """``time.monotonic`` and a ``threading.Event``: a signal handler or another thread stops the wait."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float) -> bool:
        return self._stop.wait(max(0.0, seconds))

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        self._stop.set()


@dataclass(frozen=True)
class BackoffPolicy:
    """How long to wait after consecutive failures (kopf's habit: a sequence that resets on success)."""

    delays_s: tuple[float, ...] = DEFAULT_BACKOFF_S
    """Delay after the 1st, 2nd, ... consecutive failure, s; the last one repeats (see
    :data:`DEFAULT_BACKOFF_S` for why these values)."""

    def __post_init__(self) -> None:
        if not self.delays_s or any(not (d > 0 and math.isfinite(d)) for d in self.delays_s):
            raise ValueError(f"backoff delays must be a non-empty sequence of finite delays > 0 s, got {self.delays_s}")

    def delay_s(self, failures: int) -> float:
        """The delay after ``failures`` (>= 1) consecutive failed ticks, s."""
        if failures < 1:
            raise ValueError(f"backoff after {failures} failures: must be >= 1")
        return self.delays_s[min(failures, len(self.delays_s)) - 1]


def next_slot(previous_slot_s: float, interval_s: float, now_s: float) -> tuple[float, int]:
    """The first grid time ``previous_slot_s + k·interval_s`` (k >= 1) strictly after ``now_s``,
    and how many grid slots in between were skipped because the tick overran them."""
    if interval_s <= 0:
        raise ValueError(f"tick interval must be > 0 s, got {interval_s}")
    k = max(1, math.floor((now_s - previous_slot_s) / interval_s) + 1)
    return previous_slot_s + k * interval_s, k - 1


@dataclass
class TimeScale:
    """Maps elapsed wall time to the loop's ``now``: ``loop = base_loop + (elapsed − base_elapsed)·scale``.

    With a real cluster the scale is 1 (the loop's seconds are real seconds). The simulated cluster
    runs ``scale`` times faster than real time. A new scale (a reloaded interval) is applied from
    the current instant on, so the loop's time keeps growing continuously.
    """

    scale: float = 1.0
    """Loop seconds per elapsed wall second."""
    base_elapsed_s: float = 0.0
    """Elapsed wall time at which ``scale`` took effect, s."""
    base_loop_s: float = 0.0
    """Loop time at that instant, s."""

    def __post_init__(self) -> None:
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"time scale must be a finite number > 0, got {self.scale}")

    def loop_time(self, elapsed_s: float) -> float:
        """The loop's ``now`` at ``elapsed_s`` seconds of wall time since the start."""
        return self.base_loop_s + (elapsed_s - self.base_elapsed_s) * self.scale

    def rescaled(self, elapsed_s: float, scale: float) -> TimeScale:
        """The same mapping up to ``elapsed_s``, with ``scale`` from there on."""
        return TimeScale(scale=scale, base_elapsed_s=elapsed_s, base_loop_s=self.loop_time(elapsed_s))


@dataclass
class DriverStats:
    """What the driver did (for logs at exit and for tests)."""

    ticks: int = 0
    """Ticks run (good and failed)."""
    failed: int = 0
    """Ticks that reported failure."""
    skipped_slots: int = 0
    """Grid slots skipped because a tick overran them."""
    consecutive_failures: int = 0
    """Failures since the last good tick (0 after a good one)."""
    last_wait_s: float = 0.0
    """The wait chosen after the last tick, s (the interval, the rest of it, or a backoff delay)."""


@dataclass
class IntervalDriver:
    """Calls ``tick(elapsed_s) -> ok`` on a monotonic grid, backs off on failure, stops on request."""

    clock: Clock
    """Where time and waiting come from (:class:`RealClock` in the daemon, a fake in tests)."""
    interval_s: float
    """Grid spacing, s; may be changed between ticks (a reloaded config), taking effect at the next slot."""
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    """Delays after failed ticks."""
    stats: DriverStats = field(default_factory=DriverStats)
    """Running totals."""
    start_s: float | None = None
    """Monotonic time of the first :meth:`run`; ``elapsed_s`` counts from it in every later run too,
    so the loop's time keeps growing when a run is resumed."""

    def run(self, tick: Callable[[float], bool], *, max_ticks: int | None = None,
            first_tick_after_s: float | None = None) -> DriverStats:
        """Tick until a stop is requested (or ``max_ticks`` ticks ran in this call); returns the totals.

        The first tick comes ``first_tick_after_s`` (default: one interval) after the start, so
        that the first observation covers a whole tick. ``elapsed_s`` passed to ``tick`` is
        monotonic time since the first run started, so it grows from call to call.
        """
        if self.interval_s <= 0:
            raise ValueError(f"tick interval must be > 0 s, got {self.interval_s}")
        if self.start_s is None:
            self.start_s = self.clock.monotonic()
        start = self.start_s
        slot = self.clock.monotonic() + (self.interval_s if first_tick_after_s is None else first_tick_after_s)
        ran = 0
        while not self.clock.wait(slot - self.clock.monotonic()):
            ok = tick(self.clock.monotonic() - start)
            ran += 1
            s = self.stats
            s.ticks += 1
            done = self.clock.monotonic()
            if ok:
                s.consecutive_failures = 0
                slot, skipped = next_slot(slot, self.interval_s, done)
                s.skipped_slots += skipped
            else:
                s.failed += 1
                s.consecutive_failures += 1
                slot = done + max(self.interval_s, self.backoff.delay_s(s.consecutive_failures))
            s.last_wait_s = slot - done
            if max_ticks is not None and ran >= max_ticks:
                break
        return self.stats


__all__ = [
    "DEFAULT_BACKOFF_S",
    "BackoffPolicy",
    "Clock",
    "DriverStats",
    "IntervalDriver",
    "RealClock",
    "TimeScale",
    "next_slot",
]
