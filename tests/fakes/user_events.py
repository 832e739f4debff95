"""What Prometheus holds of OpenWhisk's user-events metrics, answering the PromQL the ``openwhisk``
backend asks (``controller.backends.openwhisk.PrometheusLatency``), without a server.

Each :meth:`UserEvents.scrape` records the cumulative counters and histograms of every action at
one instant, as Prometheus stores a scrape; a query at time ``t`` sees the last scrape at or before
``t``, as an instant query does (staleness aside). Times are the run's seconds. The answers have the
shape of ``controller.backends.openwhisk.promql_query``: ``[(labels, value)]``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

#: Bucket bounds of the latency histograms, s (those of the user-events service, shortened).
BOUNDS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, math.inf)


@dataclass
class Action:
    """One action's cumulative counters (what the exporter holds)."""

    activations: float = 0.0
    cold_starts: float = 0.0
    wait: dict[float, float] = field(default_factory=lambda: dict.fromkeys(BOUNDS, 0.0))
    init: dict[float, float] = field(default_factory=lambda: dict.fromkeys(BOUNDS, 0.0))
    duration: dict[float, float] = field(default_factory=lambda: dict.fromkeys(BOUNDS, 0.0))
    duration_sum: float = 0.0

    def record(self, wait_s: float, duration_s: float, init_s: float | None = None, times: int = 1) -> None:
        """``times`` activations with these parts (a cold start when ``init_s`` is given)."""
        self.activations += times
        for histogram, value in ((self.wait, wait_s), (self.duration, duration_s), (self.init, init_s)):
            if value is None:
                continue
            for bound in BOUNDS:
                if value <= bound:
                    histogram[bound] += times
        if init_s is not None:
            self.cold_starts += times
        self.duration_sum += duration_s * times

    def copy(self) -> Action:
        return Action(self.activations, self.cold_starts, dict(self.wait), dict(self.init), dict(self.duration),
                      self.duration_sum)


class UserEvents:
    """The exporter's counters (:attr:`actions`) and Prometheus' scrapes of them."""

    def __init__(self, namespace: str = "guest") -> None:
        self.namespace = namespace
        self.actions: dict[str, Action] = {}
        self.scrapes: list[tuple[float, dict[str, Action]]] = []
        self.queries: list[tuple[str, float]] = []

    def action(self, name: str) -> Action:
        return self.actions.setdefault(name, Action())

    def scrape(self, at_s: float) -> None:
        """Prometheus scrapes the exporter at run time ``at_s``."""
        self.scrapes.append((at_s, {name: a.copy() for name, a in self.actions.items()}))

    def restart(self) -> None:
        """The exporter restarts: every counter starts again from zero (and absent until used)."""
        self.actions = {}

    def target_down(self, at_s: float) -> None:
        """A failed scrape at ``at_s``: Prometheus marks every series stale (absent from then on)."""
        self.scrapes.append((at_s, {}))

    def __call__(self, expr: str, time: float) -> list[tuple[dict[str, str], float]]:
        self.queries.append((expr, time))
        if f'namespace="{self.namespace}"' not in expr:
            return []
        seen = [(t, state) for t, state in self.scrapes if t <= time]
        if not seen:
            return []
        stamp, state = seen[-1]
        histogram = re.search(r"openwhisk_action_(waitTime|initTime|duration)_seconds_bucket", expr)
        if histogram is not None:
            part = {"waitTime": "wait", "initTime": "init", "duration": "duration"}[histogram.group(1)]
            return [({"action": name, "le": "+Inf" if le == math.inf else repr(le)}, count)
                    for name, a in state.items() for le, count in getattr(a, part).items()
                    if part != "init" or a.cold_starts > 0]
        if "timestamp(openwhisk_action_activations_total" in expr:
            return [({"action": name}, stamp) for name in state]
        if "openwhisk_action_activations_total" in expr:
            return [({"action": name}, a.activations) for name, a in state.items()]
        if "openwhisk_action_coldStarts_total" in expr:
            return [({"action": name}, a.cold_starts) for name, a in state.items() if a.cold_starts > 0]
        if "openwhisk_action_duration_seconds_sum" in expr:
            return [({"action": name}, a.duration_sum) for name, a in state.items()]
        raise AssertionError(f"the fake does not know the query {expr!r}")
