"""The Kubernetes Horizontal Pod Autoscaler (HPA) on CPU utilisation, as a policy.

Source: the Kubernetes documentation, "Horizontal Pod Autoscaling" (algorithm details, stabilisation
window, default scaling behaviour) and the kube-controller-manager flags
``--horizontal-pod-autoscaler-tolerance`` (0.1) and ``--horizontal-pod-autoscaler-downscale-stabilization``
(5 min). The rule, per function and decision:

1. metric = CPU utilisation of what is allocated, ``cpu_used_core_s / cpu_alloc_core_s`` (the CPU
   request of a container is its shares / 1024 cores, Kubernetes' own mapping);
2. recommendation = ``ceil(current × metric / target)``, or ``current`` when
   ``|metric / target - 1| <= tolerance`` (no change for small deviations);
3. scale-down stabilisation: the count may only fall to the **largest** recommendation of the last
   ``scale_down_stabilisation_s`` seconds (the current one included); scale-up uses the current
   recommendation at once (the default scale-up stabilisation window is 0 s);
4. scale-up rate: at most ``max(current × (1 + scale_up_percent/100), current + scale_up_pods)``
   per decision (the default policies "100% or 4 pods per 15 s, whichever is more"; applied per tick);
5. the result is clamped to ``[min_replicas, max_replicas]``.

Mapping onto this model (see docs/baselines.md):

* CPU shares are weights, not limits: a container may use more than its share when the invoker is
  idle, so the metric can exceed 1 — like a pod using more than its request.
* "Current" is the container count in the snapshot. Kubernetes computes the metric over ready pods
  and treats missing pod metrics conservatively; the snapshot has one aggregate per function, so a
  function without allocated CPU this tick (no containers) holds ``max(current, min_replicas)``.
* A recommendation is stored per tick; with 10 s ticks the HPA's 15 s sync period is approximated by
  the tick, and the window holds recommendations of ticks that ended within the last 300 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from policies.baselines._common import (
    TimedColumns,
    assemble,
    ceil_count,
    check_range,
    column_nanmax,
    config_from_params,
)
from policies.registry import register
from policies.types import KEEP_SHARES, ClusterSnapshot, Decisions, StatelessFeedback


@dataclass(frozen=True)
class HpaConfig:
    """Hyperparameters of the Kubernetes HPA."""

    target_utilisation: float = 0.7
    """CPU utilisation of the allocated CPU to aim at. Kubernetes has no built-in target (the HPA
    object sets it; ``kubectl autoscale`` falls back to 80%); 70% is the common recommendation and
    the same headroom as Knative's target, so the two autoscalers are compared at equal aims."""
    tolerance: float = 0.1
    """No change while ``|metric / target - 1|`` is at most this (kube-controller-manager
    ``--horizontal-pod-autoscaler-tolerance`` default 0.1)."""
    scale_down_stabilisation_s: float = 300.0
    """Window whose largest recommendation bounds a scale-down, s (``behavior.scaleDown.
    stabilizationWindowSeconds`` default 300)."""
    scale_up_percent: float = 100.0
    """Scale-up limit per decision as a percentage of the current count (default policy 100%)."""
    scale_up_pods: int = 4
    """Scale-up limit per decision in containers (default policy 4 pods); the larger limit wins."""
    min_replicas: int = 1
    """Fewest containers (``minReplicas`` default 1: the HPA never scales to zero)."""
    max_replicas: int | None = None
    """Most containers (``maxReplicas``, which Kubernetes asks the operator for). Unset: no cap of
    the policy's own; the guard holds a pool to what the cluster's memory admits."""

    def __post_init__(self) -> None:
        name = "HpaConfig"
        check_range(name, "target_utilisation", self.target_utilisation, 1e-9)
        check_range(name, "tolerance", self.tolerance, 0.0, 1.0)
        check_range(name, "scale_down_stabilisation_s", self.scale_down_stabilisation_s, 0.0)
        check_range(name, "scale_up_percent", self.scale_up_percent, 0.0)
        check_range(name, "scale_up_pods", self.scale_up_pods, 0)
        check_range(name, "min_replicas", self.min_replicas, 1)
        if self.max_replicas is not None:
            check_range(name, "max_replicas", self.max_replicas, self.min_replicas)


@dataclass
class HpaPolicy(StatelessFeedback):
    """Kubernetes' CPU-utilisation HPA (see the module docstring)."""

    name: ClassVar[str] = "hpa"
    config: HpaConfig = field(default_factory=HpaConfig)
    """The policy's hyperparameters."""
    recommendations: TimedColumns = field(init=False, repr=False)
    """Recommended counts per function for the ticks of the stabilisation window (NaN: no data)."""

    def __post_init__(self) -> None:
        # A zero-length window still keeps the current tick (TimedColumns.window), so no special case.
        self.recommendations = TimedColumns(span_s=self.config.scale_down_stabilisation_s)

    @staticmethod
    def utilisation(snapshot: ClusterSnapshot) -> np.ndarray:
        """CPU used / CPU allocated per function over the tick; NaN where nothing was allocated."""
        f = snapshot.functions
        allocated = f.cpu_alloc_core_s
        return np.where(allocated > 0, f.cpu_used_core_s / np.where(allocated > 0, allocated, 1.0), np.nan)

    def recommend(self, current: np.ndarray, utilisation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The HPA's raw recommendation per function and the ratio metric / target it came from."""
        cfg = self.config
        ratio = utilisation / cfg.target_utilisation
        measured = np.isfinite(ratio) & (current > 0)
        within = measured & (np.abs(ratio - 1.0) <= cfg.tolerance)
        proposed = ceil_count(current * np.nan_to_num(ratio))
        recommendation = np.where(measured & ~within, proposed, current)
        recommendation = np.where(measured, recommendation, np.maximum(current, cfg.min_replicas))
        return recommendation.astype(np.int64), ratio

    def decide(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> Decisions:
        cfg = self.config
        f = snapshot.functions
        n = len(f)
        now = snapshot.time_s
        current = f.containers.astype(np.int64)
        recommendation, ratio = self.recommend(current, self.utilisation(snapshot))
        self.recommendations.append(now, np.where(f.valid, recommendation, np.nan))
        window_max = column_nanmax(self.recommendations.window(now, cfg.scale_down_stabilisation_s, n))
        highest = np.nan_to_num(window_max, nan=0.0).astype(np.int64)

        # Kubernetes' stabilisation: move up to the current recommendation, down only as far as the
        # largest recommendation of the window.
        stabilised = np.where(recommendation > current, recommendation, current)
        stabilised = np.where(stabilised > highest, highest, stabilised)
        up_limit = np.maximum(
            ceil_count(current * (1.0 + cfg.scale_up_percent / 100.0)), current + cfg.scale_up_pods
        )
        desired = np.clip(np.minimum(stabilised, up_limit), cfg.min_replicas, cfg.max_replicas)

        reasons: list[str] = []
        for i in range(n):
            if not np.isfinite(ratio[i]) or current[i] == 0:
                head = "hpa: no CPU allocated this tick"
            else:
                head = f"hpa: utilisation/target {ratio[i]:.2f}"
            tail = f"{current[i]} -> {desired[i]} containers"
            if recommendation[i] < current[i] and desired[i] > recommendation[i]:
                tail += f" (stabilising: max {highest[i]} in {cfg.scale_down_stabilisation_s:g}s)"
            reasons.append(f"{head}, {tail}")
        return assemble(f.valid, desired, np.full(n, KEEP_SHARES), reasons)


@register("hpa")
def make_hpa(**params: Any) -> HpaPolicy:
    """Registry factory: ``params`` are fields of :class:`HpaConfig`."""
    return HpaPolicy(config_from_params(HpaConfig, "hpa", params))
