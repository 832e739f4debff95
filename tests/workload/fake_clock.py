"""A virtual clock for the replayer's tests."""

from __future__ import annotations

import threading


class VirtualClock:
    """Monotonic seconds that move only when the replayer sleeps (shared by its threads)."""

    def __init__(self) -> None:
        self.now = 0.0
        """The time, s."""
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
