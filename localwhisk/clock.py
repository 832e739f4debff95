"""Time as a parameter: the platform's decisions (pause, idle eviction, throttling windows) read a
:class:`Clock` handed to them, never the system clock directly, so that tests move time by hand.

Durations of real work (a process start, an action's run) are measured with ``time.perf_counter``
where they happen: faking them would measure nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Where the platform's logic reads the time."""

    def now(self) -> float:
        """Monotonic time, s (only differences are meaningful)."""
        ...

    def wall_ms(self) -> int:
        """Wall-clock time, ms since the Unix epoch (OpenWhisk's timestamps)."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``time.time``."""

    def now(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return int(time.time() * 1000)


class ManualClock:
    """A clock that moves only when told to; thread-safe, for tests and replays."""

    def __init__(self, start_s: float = 0.0, epoch_ms: int = 1_700_000_000_000) -> None:
        self._lock = threading.Lock()
        self._now = float(start_s)
        self._epoch_ms = int(epoch_ms)

    def now(self) -> float:
        with self._lock:
            return self._now

    def wall_ms(self) -> int:
        with self._lock:
            return self._epoch_ms + round(self._now * 1000)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError(f"ManualClock.advance: seconds must be >= 0, got {seconds}")
        with self._lock:
            self._now += seconds
