"""Per-namespace admission: invocations per minute and invocations in flight (OpenWhisk's two
user limits). A refused invocation is answered 429 and never reaches a pool."""

from __future__ import annotations

import threading
from collections import deque

from localwhisk.config import ThrottleConfig
from localwhisk.errors import ApiError

#: Length of the per-minute window, s.
WINDOW_S = 60.0


class Throttle:
    """Admits or refuses invocations; ``now`` is passed in, so the window moves with the caller's clock."""

    def __init__(self, config: ThrottleConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._arrivals: dict[str, deque[float]] = {}
        self._in_flight: dict[str, int] = {}

    def admit(self, namespace: str, now: float) -> None:
        """Count one invocation in, or raise 429 naming the limit and the counts."""
        with self._lock:
            arrivals = self._arrivals.setdefault(namespace, deque())
            while arrivals and arrivals[0] <= now - WINDOW_S:
                arrivals.popleft()
            in_flight = self._in_flight.get(namespace, 0)
            if in_flight >= self._config.concurrent_invocations:
                raise ConcurrencyThrottled(
                    f"Too many concurrent requests in flight (count: {in_flight}, allowed: "
                    f"{self._config.concurrent_invocations})."
                )
            if len(arrivals) >= self._config.invocations_per_minute:
                raise RateThrottled(
                    f"Too many requests in the last minute (count: {len(arrivals)}, allowed: "
                    f"{self._config.invocations_per_minute})."
                )
            arrivals.append(now)
            self._in_flight[namespace] = in_flight + 1

    def release(self, namespace: str) -> None:
        """One admitted invocation has completed."""
        with self._lock:
            self._in_flight[namespace] = max(self._in_flight.get(namespace, 0) - 1, 0)

    def in_flight(self, namespace: str) -> int:
        with self._lock:
            return self._in_flight.get(namespace, 0)


class ConcurrencyThrottled(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(429, message)


class RateThrottled(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(429, message)


__all__ = ["WINDOW_S", "ConcurrencyThrottled", "RateThrottled", "Throttle"]
