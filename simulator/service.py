"""Service-time distributions other than the profiles' lognormal, for checks against queueing theory.

The cluster draws every execution time through ``FunctionProfile.sample_exec_s``; that method is
the simulator's service-distribution hook. A profile subclass that overrides it changes the
distribution and nothing else (CPU/I-O split, memory, cold start and placement still come from the
profile's fields). Closed-form results such as Erlang C need exponential service, hence
:class:`ExponentialServiceProfile`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from workload.profiles import FunctionProfile


@dataclass(frozen=True)
class ExponentialServiceProfile(FunctionProfile):
    """A function whose uncontended execution time is exponential with mean ``exec_mean_s``.

    Build it with :meth:`with_mean`, which fills the median (mean x ln 2) and p99 (mean x ln 100)
    of the exponential, so every field keeps its meaning.
    """

    @classmethod
    def with_mean(
        cls,
        name: str,
        mean_s: float,
        memory_mb: int = 256,
        init_s: float = 0.5,
        cpu_fraction: float = 1.0,
        max_cores: float = 1.0,
    ) -> ExponentialServiceProfile:
        """An exponential-service profile with the given mean execution time, s."""
        if not (math.isfinite(mean_s) and mean_s > 0):
            raise ValueError(f"ExponentialServiceProfile {name!r}: mean_s must be > 0, got {mean_s}")
        return cls(
            name=name,
            memory_mb=memory_mb,
            exec_median_s=mean_s * math.log(2.0),
            exec_p99_s=mean_s * math.log(100.0),
            init_s=init_s,
            cpu_fraction=cpu_fraction,
            max_cores=max_cores,
            source="exponential service (queueing-theory checks)",
        )

    @property
    def exec_mean_s(self) -> float:
        """Mean execution time, s (median / ln 2)."""
        return self.exec_median_s / math.log(2.0)

    def sample_exec_s(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` exponential execution times, s."""
        return rng.exponential(self.exec_mean_s, n)


__all__ = ["ExponentialServiceProfile"]
