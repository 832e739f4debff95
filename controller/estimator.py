"""The population estimator: the mean-field state μ from invoker utilisation.

μ is the distribution of invoker CPU utilisation over ``bins`` equal bins of [0, 1] (docs/architecture.md,
"The serverless mean-field game"). Each tick the observed histogram μ_obs of the valid invokers is
blended into the estimate on the slow timescale of the paper's Algorithm 1, step 4:

    μ_{t+1} = (1 − β) μ_t + β μ_obs        (β ≪ the policy's step η)

In the paper μ_obs is Γ₂(π_t, μ_t), one step of the population dynamics; on a real or simulated
cluster that step is what the cluster did during the tick, so it is measured rather than computed.

No data, no update: invalid invokers are left out of μ_obs, and a tick without a single valid
invoker leaves μ unchanged (a failed scrape never reads as an idle cluster).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from policies.types import InvokerStats


def utilisation_histogram(utilisation: np.ndarray, bins: int) -> np.ndarray | None:
    """Share of invokers in each of ``bins`` equal utilisation bins of [0, 1]; None if no finite value.

    Utilisation exactly 1 falls in the last bin; NaN (invalid invoker) is ignored.
    """
    values = np.asarray(utilisation, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    index = np.minimum((np.clip(values, 0.0, 1.0) * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins).astype(float)
    return counts / counts.sum()


def smooth(mu: np.ndarray, mu_observed: np.ndarray | None, beta: float) -> np.ndarray:
    """μ ← (1 − β) μ + β μ_obs; ``mu`` unchanged when there is no observation."""
    if mu_observed is None:
        return mu
    return (1.0 - beta) * mu + beta * mu_observed


@dataclass
class PopulationEstimator:
    """Holds μ between ticks; ``update`` is the only way it changes."""

    bins: int = 10
    """Utilisation bins of μ (see ``EstimatorSettings.bins``)."""
    beta: float = 0.05
    """Smoothing step β per tick (see ``EstimatorSettings.beta``)."""
    mu: np.ndarray = field(init=False)
    """Current estimate, shape (bins,), sums to 1. Uniform until the first observation: with no
    knowledge of the cluster, no utilisation level is favoured."""
    observed: bool = field(init=False, default=False)
    """Whether any tick has had a valid invoker yet. The first observation replaces the uniform
    start outright instead of being blended into it, so that early ticks are not dominated by
    the arbitrary prior."""

    def __post_init__(self) -> None:
        if self.bins < 2:
            raise ValueError(f"estimator bins must be >= 2, got {self.bins}")
        if not 0.0 < self.beta <= 1.0:
            raise ValueError(f"estimator beta must be in (0, 1], got {self.beta}")
        self.mu = np.full(self.bins, 1.0 / self.bins)

    def update(self, invokers: InvokerStats, tick_s: float) -> np.ndarray:
        """Blend this tick's invoker utilisation into μ and return a read-only copy of the new μ."""
        observed = utilisation_histogram(invokers.utilisation(tick_s), self.bins)
        if observed is not None:
            self.mu = observed if not self.observed else smooth(self.mu, observed, self.beta)
            self.observed = True
        out = self.mu.copy()
        out.setflags(write=False)
        return out


__all__ = ["PopulationEstimator", "smooth", "utilisation_histogram"]
