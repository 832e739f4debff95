"""The Knative Pod Autoscaler (KPA) as a policy: concurrency-driven scaling with stable and panic modes.

Source: knative/serving's autoscaler documentation ("Configuring the autoscaler", "Autoscale
sample app") and the defaults of its ``config-autoscaler`` ConfigMap. The rule, per function:

* observed concurrency is averaged over the **stable window** (60 s) and the **panic window**
  (6 s = 10% of the stable window);
* the per-container target is ``target concurrency × target utilisation`` (1 × 70% here);
* desired stable / panic counts are ``ceil(average / target)``, held within the scale rates
  (at most ``max_scale_up_rate`` × current, at least current / ``max_scale_down_rate``);
* **panic** starts when the desired panic count is at least ``panic_threshold`` (200%) of the
  current count, and is extended each tick that still meets the condition. While panicking the
  desired count is the larger of the stable and panic counts and never falls below the largest
  count of this panic (nor below the count at which it started): the KPA does not scale down in
  panic. Panic ends once a full stable window has passed without the condition;
* a function with no concurrency over the whole stable window scales to zero, after the last
  container was kept ``scale_to_zero_grace_s`` (30 s) more.

Mapping onto this model (see docs/baselines.md):

* Concurrency per tick. Knative's queue-proxy reports the time-averaged number of requests inside
  a pod, in flight or queued. Here it is ``max(in_flight + queued, arrivals / tick_s × exec_s)``:
  the snapshot-instant count of requests the function holds, or Little's law on the tick's
  arrivals (rate × mean execution time, the last known one when nothing completed), whichever is
  larger, so that neither a quiet instant nor a tick of short bursts hides the load.
* Resolution. Knative samples every second; here one sample per tick. A window averages the
  samples of the ticks that ended within it, and a window shorter than a tick (the 6 s panic
  window with 10 s ticks) uses the tick that just ended.
* "Current" is the function's container count in the snapshot (starting ones included); Knative
  divides by ready pods (at least 1), which the snapshot does not distinguish.
* The activator (which buffers requests while a revision is at zero) is the platform's cold start
  under ``containers = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from policies.baselines._common import (
    COUNT_EPS,
    TimedColumns,
    assemble,
    ceil_count,
    check_range,
    column_nanmean,
    config_from_params,
    grow,
)
from policies.registry import register
from policies.types import KEEP_SHARES, ClusterSnapshot, Decisions, StatelessFeedback


@dataclass(frozen=True)
class KpaConfig:
    """Hyperparameters of the Knative Pod Autoscaler (defaults: knative/serving ``config-autoscaler``)."""

    target_concurrency: float = 1.0
    """Concurrent requests one container is meant to hold. An OpenWhisk action container runs one
    activation at a time (default action concurrency limit 1); Knative caps its target (default 100)
    at the container's hard concurrency limit, so 1 here."""
    target_utilisation: float = 0.7
    """Fraction of ``target_concurrency`` aimed at (Knative ``container-concurrency-target-percentage``
    70%), leaving headroom for bursts."""
    stable_window_s: float = 60.0
    """Window of the stable-mode average, s (Knative ``stable-window`` 60 s)."""
    panic_window_s: float = 6.0
    """Window of the panic-mode average, s (Knative ``panic-window-percentage`` 10% of 60 s)."""
    panic_threshold: float = 2.0
    """Desired panic count / current count at which panic starts (Knative ``panic-threshold-percentage``
    200%)."""
    max_scale_up_rate: float = 1000.0
    """Most the count may grow in one decision, as a multiple of the current count (Knative
    ``max-scale-up-rate`` 1000)."""
    max_scale_down_rate: float = 2.0
    """The count may shrink to no less than current / this in one decision (Knative
    ``max-scale-down-rate`` 2)."""
    scale_to_zero_grace_s: float = 30.0
    """Time the last container is kept after the function went quiet for a whole stable window, s
    (Knative ``scale-to-zero-grace-period`` 30 s)."""
    min_scale: int = 0
    """Fewest containers (Knative ``min-scale`` annotation, default 0: scale to zero allowed)."""
    max_scale: int | None = None
    """Most containers, or None for no limit (Knative ``max-scale`` default 0 = unlimited)."""

    def __post_init__(self) -> None:
        name = "KpaConfig"
        check_range(name, "target_concurrency", self.target_concurrency, 1e-9)
        check_range(name, "target_utilisation", self.target_utilisation, 1e-9, 1.0)
        check_range(name, "stable_window_s", self.stable_window_s, 1e-9)
        check_range(name, "panic_window_s", self.panic_window_s, 1e-9, self.stable_window_s)
        check_range(name, "panic_threshold", self.panic_threshold, 1.0)
        check_range(name, "max_scale_up_rate", self.max_scale_up_rate, 1.0)
        check_range(name, "max_scale_down_rate", self.max_scale_down_rate, 1.0)
        check_range(name, "scale_to_zero_grace_s", self.scale_to_zero_grace_s, 0.0)
        check_range(name, "min_scale", self.min_scale, 0)
        if self.max_scale is not None:
            check_range(name, "max_scale", self.max_scale, max(self.min_scale, 1))


@dataclass
class KpaPolicy(StatelessFeedback):
    """Knative's stable/panic concurrency autoscaler (see the module docstring)."""

    name: ClassVar[str] = "kpa"
    config: KpaConfig = field(default_factory=KpaConfig)
    """The policy's hyperparameters."""
    concurrency: TimedColumns = field(init=False, repr=False)
    """Observed concurrency per function for the ticks of the last stable window (NaN: no data)."""
    exec_s: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Last observed mean execution time per function, s (NaN until a completion was seen)."""
    panic_time_s: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Last tick at which the panic condition held, s; NaN when the function is not in panic."""
    max_panic_count: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    """Largest count decided during the current panic (0 outside panic)."""
    quiet_since_s: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    """First tick at which the desired count fell to zero, s; NaN while it is not zero."""
    explain: bool = True
    """Write each function's reason. False gives every row the same short reason, for a caller that
    reads only the counts (the portfolio's members): the per-function text is most of a decide's time
    at 10,000 functions."""

    def __post_init__(self) -> None:
        self.concurrency = TimedColumns(span_s=self.config.stable_window_s)

    def _grow(self, n: int) -> None:
        self.exec_s = grow(self.exec_s, n, np.nan)
        self.panic_time_s = grow(self.panic_time_s, n, np.nan)
        self.max_panic_count = grow(self.max_panic_count, n, 0)
        self.quiet_since_s = grow(self.quiet_since_s, n, np.nan)

    def panicking(self) -> np.ndarray:
        """Whether each function is in panic mode after the last decision."""
        return ~np.isnan(self.panic_time_s)

    def observed_concurrency(self, snapshot: ClusterSnapshot) -> np.ndarray:
        """This tick's concurrency sample per function (NaN where the row is invalid)."""
        f = snapshot.functions
        completed = f.valid & np.isfinite(f.mean_exec_s) & (f.completions > 0)
        self.exec_s = np.where(completed, f.mean_exec_s, self.exec_s)
        littles_law = np.nan_to_num(f.arrivals / snapshot.tick_s * self.exec_s)
        held = f.in_flight + f.queued
        return np.where(f.valid, np.maximum(held, littles_law), np.nan)

    def decide(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> Decisions:
        cfg = self.config
        f = snapshot.functions
        n = len(f)
        now = snapshot.time_s
        self._grow(n)
        self.concurrency.append(now, self.observed_concurrency(snapshot))
        stable = column_nanmean(self.concurrency.window(now, cfg.stable_window_s, n))
        panic = column_nanmean(self.concurrency.window(now, cfg.panic_window_s, n))
        valid = f.valid & np.isfinite(stable) & np.isfinite(panic)
        stable = np.nan_to_num(stable)
        panic = np.nan_to_num(panic)

        per_container = cfg.target_concurrency * cfg.target_utilisation
        current = f.containers.astype(np.int64)
        ready = np.maximum(current, 1)
        most = np.ceil(cfg.max_scale_up_rate * ready - COUNT_EPS).astype(np.int64)
        fewest = np.floor(ready / cfg.max_scale_down_rate + COUNT_EPS).astype(np.int64)
        want_stable = ceil_count(stable / per_container)
        want_panic = ceil_count(panic / per_container)
        stable_count = np.clip(want_stable, fewest, most)
        panic_count = np.clip(want_panic, fewest, most)

        # Panic bookkeeping (Knative: start or extend on the condition, end a stable window later).
        over = valid & (want_panic >= cfg.panic_threshold * ready - COUNT_EPS)
        starting = over & np.isnan(self.panic_time_s)
        self.max_panic_count = np.where(starting, current, self.max_panic_count)
        self.panic_time_s = np.where(over, now, self.panic_time_s)
        ending = valid & ~over & (now - self.panic_time_s >= cfg.stable_window_s - COUNT_EPS)
        self.panic_time_s = np.where(ending, np.nan, self.panic_time_s)
        self.max_panic_count = np.where(ending, 0, self.max_panic_count)
        panicking = valid & ~np.isnan(self.panic_time_s)

        desired = np.where(
            panicking, np.maximum.reduce([stable_count, panic_count, self.max_panic_count]), stable_count
        )
        self.max_panic_count = np.where(panicking, desired, self.max_panic_count)
        desired = np.maximum(desired, cfg.min_scale)
        if cfg.max_scale is not None:
            desired = np.minimum(desired, cfg.max_scale)

        # Scale to zero only after the grace period; the last container stays meanwhile.
        to_zero = valid & (desired == 0)
        self.quiet_since_s = np.where(to_zero & np.isnan(self.quiet_since_s), now, self.quiet_since_s)
        self.quiet_since_s = np.where(valid & ~to_zero, np.nan, self.quiet_since_s)
        in_grace = (
            to_zero & (current > 0) & (now - self.quiet_since_s < cfg.scale_to_zero_grace_s - COUNT_EPS)
        )
        desired = np.where(in_grace, 1, desired)

        if not self.explain:
            return assemble(valid, desired, np.full(n, KEEP_SHARES), "kpa")
        reasons: list[str] = []
        for i in range(n):
            mode = "panic" if panicking[i] else "stable"
            text = (
                f"kpa {mode}: concurrency {stable[i]:.2f} ({cfg.stable_window_s:g}s) / "
                f"{panic[i]:.2f} ({cfg.panic_window_s:g}s), "
                f"{current[i]} -> {desired[i]} containers"
            )
            if in_grace[i]:
                text += " (scale-to-zero grace)"
            reasons.append(text)
        return assemble(valid, desired, np.full(n, KEEP_SHARES), reasons)


@register("kpa")
def make_kpa(**params: Any) -> KpaPolicy:
    """Registry factory: ``params`` are fields of :class:`KpaConfig`."""
    return KpaPolicy(config_from_params(KpaConfig, "kpa", params))
