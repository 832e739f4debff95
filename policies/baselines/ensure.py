"""ENSURE (Suresh, Tomas, Gandhi et al., "ENSURE: Efficient Scheduling and Autonomous Resource
Management in Serverless Environments", ACSOS 2020), the paper's main heuristic baseline.

Two of ENSURE's three mechanisms are decisions of this model; the third is the platform's.

1. **Warm containers by square-root staffing.** A function with arrival rate λ and mean execution
   time E[S] offers the load R = λ·E[S] (Erlang; the mean number of busy containers). ENSURE keeps
   ``k = ceil(R + c·sqrt(R))`` warm containers. In the Halfin–Whitt regime of an M/M/k queue with
   ``k = R + c·sqrt(R)`` the chance that an arrival finds every container busy tends to
   ``P(wait) = 1 / (1 + c·Φ(c)/φ(c))`` (Φ, φ: standard normal cdf and density); c = 1.06 gives
   P(wait) ≈ 0.20, the default here. :func:`halfin_whitt_delay_probability` and
   :func:`staffing_c_for_delay` convert between the two.
2. **In-node CPU scaling.** When the mean execution time of a function's last 3 completions
   (``recent_exec_s``) is at least 10% above its uncontended execution time, ENSURE gives each of
   its containers one more CPU step (128 shares); when the node has no CPU left to give, it steps
   the shares back down.
3. **Node scaling / packing** (load packed onto the fewest invokers, invokers added on a memory
   threshold) is placement, which a ``Decisions`` cannot express: it stays the platform's.

What the observations allow, and how it is approximated (see also docs/baselines.md):

* R per tick is ``arrivals / tick_s × mean_exec_s`` (the last known mean execution time when the
  tick had no completion). It is smoothed by an exponential moving average with time constant
  ``load_smoothing_s`` (tick-length independent: weight ``1 - exp(-tick_s / τ)``), and the policy
  staffs for ``max(R_tick, R_smoothed)``: it follows a burst at once and lets go over about τ.
* When the smoothed load is below ``idle_load`` (no arrivals for a while) the function is handed
  back to the platform (``UNMANAGED``: OpenWhisk's on-demand creation and 10-minute keep-alive),
  because staffing a zero load would either keep a container forever (ceil of a tiny R is 1) or
  evict the last one the moment traffic pauses.
* The uncontended execution time is not observable directly. It is estimated as the lowest
  per-tick mean execution time seen over ticks with at least ``baseline_min_completions``
  completions. The minimum of noisy means is biased low, which makes the policy slightly eager to
  add CPU; that errs on ENSURE's side (it exists to protect latency).
* "The node has no free CPU" is read at cluster level, because a snapshot does not say which
  invokers hold a function's containers: CPU used by all observed invokers over the tick divided
  by their capacity (cores × tick) is at least ``no_free_cpu_utilisation``. A CPU step is only
  taken on a tick with at least one new completion, so a stale ``recent_exec_s`` is not acted on
  twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from policies.baselines._common import (
    MIN_DOCKER_SHARES,
    assemble,
    ceil_count,
    check_range,
    config_from_params,
    grow,
    openwhisk_cpu_shares,
)
from policies.registry import register
from policies.types import KEEP_SHARES, UNMANAGED, ClusterSnapshot, Decisions, StatelessFeedback

#: Float guard for the degradation test: a slow-down of exactly 10% computed in floating point can
#: land a hair below 0.1 (0.0318623724744949 / 0.02896579315863173 - 1 is 0.09999999999999987).
_RATIO_EPS = 1e-9


def halfin_whitt_delay_probability(c: float) -> float:
    """Chance that an arrival waits when ``R + c·sqrt(R)`` servers serve load R (Halfin–Whitt limit)."""
    density = math.exp(-0.5 * c * c) / math.sqrt(2.0 * math.pi)
    cdf = 0.5 * (1.0 + math.erf(c / math.sqrt(2.0)))
    return 1.0 / (1.0 + c * cdf / density)


def staffing_c_for_delay(p_wait: float) -> float:
    """The square-root-staffing constant c whose Halfin–Whitt delay probability is ``p_wait``."""
    check_range("staffing_c_for_delay", "p_wait", p_wait, 1e-6, 1.0 - 1e-6)
    low, high = -6.0, 6.0  # the delay probability falls monotonically in c over this range
    for _ in range(100):
        middle = 0.5 * (low + high)
        if halfin_whitt_delay_probability(middle) > p_wait:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


@dataclass(frozen=True)
class EnsureConfig:
    """Hyperparameters of ENSURE."""

    staffing_c: float = 1.06
    """Square-root staffing constant c in ``k = ceil(R + c·sqrt(R))``. 1.06 gives a ≈20% chance that
    an arrival finds every container busy (Halfin–Whitt; the paper's Appendix E)."""
    load_smoothing_s: float = 30.0
    """Time constant of the moving average of the offered load R, s. Three ticks of 10 s: long
    enough to ride out one quiet tick between bursts, short enough to release containers within a
    minute (our choice; ENSURE's paper reacts on a similar scale)."""
    idle_load: float = 1e-3
    """Smoothed offered load (busy containers) below which the function is left to the platform.
    One 100 ms invocation per 100 s is 1e-3: below that a warm pool is pure waste."""
    cpu_step_shares: int = 128
    """CPU shares added or removed per step, per container. 128 = 1/8 core, this project's action
    step (docs/agents.md) and the share of a 256 MB action on a 2048 MB invoker."""
    degradation_threshold: float = 0.10
    """Relative slow-down of the last 3 completions against the uncontended execution time that
    triggers a CPU step up (ENSURE's 10% latency-degradation threshold)."""
    baseline_min_completions: int = 3
    """Completions a tick needs before its mean execution time may become the uncontended baseline:
    the same 3 completions the degradation signal averages, so both are equally noisy."""
    no_free_cpu_utilisation: float = 0.9
    """Cluster CPU utilisation (used / capacity over the tick) at or above which the node counts as
    having no free CPU and shares are stepped back. 0.9 leaves the usual 10% headroom."""
    max_shares: int = 1024
    """Most CPU shares per container ENSURE will give: one core (1024 shares), the most a
    single-threaded action can use."""

    def __post_init__(self) -> None:
        name = "EnsureConfig"
        check_range(name, "staffing_c", self.staffing_c, 0.0, 10.0)
        check_range(name, "load_smoothing_s", self.load_smoothing_s, 1e-9)
        check_range(name, "idle_load", self.idle_load, 0.0)
        check_range(name, "cpu_step_shares", self.cpu_step_shares, 1)
        check_range(name, "degradation_threshold", self.degradation_threshold, 0.0)
        check_range(name, "baseline_min_completions", self.baseline_min_completions, 1)
        check_range(name, "no_free_cpu_utilisation", self.no_free_cpu_utilisation, 0.0, 1.0)
        check_range(name, "max_shares", self.max_shares, MIN_DOCKER_SHARES)


@dataclass
class EnsurePolicy(StatelessFeedback):
    """Square-root staffing of warm containers plus in-node CPU steps (see the module docstring)."""

    name: ClassVar[str] = "ensure"
    config: EnsureConfig = field(default_factory=EnsureConfig)
    """The policy's hyperparameters."""
    load: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Smoothed offered load R per function (busy containers); NaN until first measurable."""
    exec_s: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Last observed mean execution time per function, s; NaN until a completion was seen."""
    uncontended_exec_s: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Estimated uncontended execution time per function (lowest well-sampled tick mean), s; NaN
    until a tick had ``baseline_min_completions`` completions."""

    def _grow(self, n: int) -> None:
        self.load = grow(self.load, n, np.nan)
        self.exec_s = grow(self.exec_s, n, np.nan)
        self.uncontended_exec_s = grow(self.uncontended_exec_s, n, np.nan)

    @staticmethod
    def cluster_utilisation(snapshot: ClusterSnapshot) -> float:
        """CPU used by the observed invokers over the tick / their capacity; NaN with none observed."""
        invokers = snapshot.invokers
        capacity = float(np.sum(invokers.cores[invokers.valid])) * snapshot.tick_s
        if capacity <= 0.0:
            return math.nan
        return float(np.sum(invokers.cpu_used_core_s[invokers.valid])) / capacity

    def staffing(self, offered_load: np.ndarray) -> np.ndarray:
        """``ceil(R + c·sqrt(R))`` containers for offered loads R (ENSURE's square-root staffing)."""
        load = np.maximum(np.asarray(offered_load, dtype=float), 0.0)
        return ceil_count(load + self.config.staffing_c * np.sqrt(load))

    def _update_load(self, snapshot: ClusterSnapshot) -> np.ndarray:
        """Update the execution-time, baseline and load estimates; return this tick's R per function."""
        cfg = self.config
        f = snapshot.functions
        observed = f.valid & np.isfinite(f.mean_exec_s) & (f.completions > 0)
        self.exec_s = np.where(observed, f.mean_exec_s, self.exec_s)
        sampled = observed & (f.completions >= cfg.baseline_min_completions)
        self.uncontended_exec_s = np.where(
            sampled, np.fmin(self.uncontended_exec_s, f.mean_exec_s), self.uncontended_exec_s
        )
        tick_load = f.arrivals / snapshot.tick_s * self.exec_s  # NaN while the execution time is unknown
        measurable = f.valid & np.isfinite(tick_load)
        weight = 1.0 - math.exp(-snapshot.tick_s / cfg.load_smoothing_s)
        smoothed = np.where(np.isnan(self.load), tick_load, self.load + weight * (tick_load - self.load))
        self.load = np.where(measurable, smoothed, self.load)
        return tick_load

    def _cpu_targets(self, snapshot: ClusterSnapshot) -> tuple[np.ndarray, list[str]]:
        """Shares per function (or KEEP_SHARES) and the CPU half of each reason."""
        cfg = self.config
        f = snapshot.functions
        n = len(f)
        utilisation = self.cluster_utilisation(snapshot)
        node_full = bool(np.isfinite(utilisation) and utilisation >= cfg.no_free_cpu_utilisation)
        invokers = snapshot.invokers
        user_memory = invokers.memory_mb[invokers.valid & (invokers.memory_mb > 0)]
        if user_memory.size:
            floor = openwhisk_cpu_shares(f.memory_mb, float(np.median(user_memory)))
        else:
            floor = np.full(n, MIN_DOCKER_SHARES, dtype=np.int64)
        current = np.where(f.cpu_shares > 0, f.cpu_shares, floor).astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            slowdown = f.recent_exec_s / self.uncontended_exec_s - 1.0
        fresh = f.completions > 0
        degraded = fresh & np.isfinite(slowdown) & (slowdown >= cfg.degradation_threshold - _RATIO_EPS)

        up = np.minimum(current + cfg.cpu_step_shares, cfg.max_shares)
        down = np.maximum(current - cfg.cpu_step_shares, floor)
        if node_full:
            lowered = down < current
            shares = np.where(lowered, down, KEEP_SHARES).astype(np.int64)
            reasons = [f"node full ({utilisation:.0%}): shares {c} -> {d}" if low
                       else f"node full ({utilisation:.0%}): shares at floor {c}"
                       for low, c, d in zip(lowered.tolist(), current.tolist(), down.tolist())]
            return shares, reasons
        raised = degraded & (up > current)
        shares = np.where(raised, up, KEEP_SHARES).astype(np.int64)
        reasons = [("shares kept" if not bad
                    else f"slowdown {slow:+.0%}: shares {c} -> {u}" if rise
                    else f"slowdown {slow:+.0%}: shares at max {c}")
                   for bad, rise, slow, c, u in zip(degraded.tolist(), raised.tolist(), slowdown.tolist(),
                                                    current.tolist(), up.tolist())]
        return shares, reasons

    def decide(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> Decisions:
        f = snapshot.functions
        n = len(f)
        self._grow(n)
        tick_load = self._update_load(snapshot)
        offered = np.fmax(tick_load, self.load)  # NaN only where neither is known
        idle = ~(offered >= self.config.idle_load)
        counts = self.staffing(np.nan_to_num(offered))
        containers = np.where(idle, UNMANAGED, counts)
        shares, cpu_reasons = self._cpu_targets(snapshot)

        reasons = [
            ("ensure: no execution time yet, containers left to the platform" if unknown
             else f"ensure: idle (R={r:.3g}), containers left to the platform" if rest
             else f"ensure: R={r:.2f} -> {k} containers") + f"; {cpu}"
            for unknown, rest, r, k, cpu in zip(np.isnan(offered).tolist(), idle.tolist(), offered.tolist(),
                                                np.asarray(counts).tolist(), cpu_reasons)
        ]
        return assemble(f.valid, containers, shares, reasons)


@register("ensure")
def make_ensure(**params: Any) -> EnsurePolicy:
    """Registry factory: ``params`` are fields of :class:`EnsureConfig`."""
    return EnsurePolicy(config_from_params(EnsureConfig, "ensure", params))
