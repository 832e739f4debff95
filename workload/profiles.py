"""Resource profiles of serverless functions: what one invocation costs when it runs alone.

A :class:`FunctionProfile` is the simulator's whole knowledge of a function. Profiles come either from
the 12 benchmark functions of the paper (``BENCHMARK_PROFILES``, each with its sources) or from a
trace function's own duration and memory percentiles (``FunctionProfile.from_trace``).

Execution model (shared with ``simulator/``): an invocation needs ``cpu_s`` core-seconds of CPU work
plus ``io_s`` seconds of wall time that use no CPU. Running alone with at least ``max_cores`` cores
free it takes ``io_s + cpu_s / max_cores`` seconds; the profile's execution-time percentiles are of
that uncontended time. ``cpu_fraction`` splits each sampled execution time into the two parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: z-score of the 99th percentile of a standard normal: p99 = median * exp(Z99 * sigma) for a lognormal.
Z99 = 2.3263478740408408


@dataclass(frozen=True)
class FunctionProfile:
    """One function's uncontended cost; all times are for a warm container running alone."""

    name: str
    """Profile name, e.g. ``image-inference`` (lower case, hyphens)."""
    memory_mb: int
    """Container memory limit, MB (OpenWhisk action limit; decides placement and default shares)."""
    exec_median_s: float
    """Median uncontended execution time (OpenWhisk ``duration``), s."""
    exec_p99_s: float
    """99th-percentile uncontended execution time, s (>= median; equal means deterministic)."""
    init_s: float
    """Cold-start initialisation time (container start + runtime init + code load), s."""
    cpu_fraction: float = 1.0
    """Share of execution time that is CPU work (1 = CPU-bound; I/O-bound functions are lower)."""
    max_cores: float = 1.0
    """Cores one invocation can use at once (most functions are single-threaded: 1)."""
    source: str = ""
    """Where the numbers come from (benchmark suite, paper, measurement)."""

    def __post_init__(self) -> None:
        if self.memory_mb <= 0:
            raise ValueError(f"profile {self.name!r}: memory_mb must be > 0, got {self.memory_mb}")
        if not (0 < self.exec_median_s <= self.exec_p99_s):
            raise ValueError(
                f"profile {self.name!r}: need 0 < exec_median_s <= exec_p99_s, "
                f"got {self.exec_median_s} and {self.exec_p99_s}"
            )
        if self.init_s < 0:
            raise ValueError(f"profile {self.name!r}: init_s must be >= 0, got {self.init_s}")
        if not (0.0 <= self.cpu_fraction <= 1.0):
            raise ValueError(f"profile {self.name!r}: cpu_fraction must be in [0, 1], got {self.cpu_fraction}")
        if self.max_cores <= 0:
            raise ValueError(f"profile {self.name!r}: max_cores must be > 0, got {self.max_cores}")

    @property
    def exec_sigma(self) -> float:
        """Log-scale spread of the lognormal execution-time model fitted to (median, p99)."""
        return float(np.log(self.exec_p99_s / self.exec_median_s) / Z99)

    @property
    def exec_mean_s(self) -> float:
        """Mean uncontended execution time of the lognormal model, s."""
        return float(self.exec_median_s * np.exp(0.5 * self.exec_sigma**2))

    def sample_exec_s(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` uncontended execution times, s (lognormal through the median and p99)."""
        sigma = self.exec_sigma
        if sigma == 0.0:
            return np.full(n, self.exec_median_s)
        return self.exec_median_s * np.exp(sigma * rng.standard_normal(n))

    def split_work(self, exec_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split uncontended execution times into (cpu core-seconds, io seconds)."""
        io_s = exec_s * (1.0 - self.cpu_fraction)
        cpu_s = exec_s * self.cpu_fraction * self.max_cores
        return cpu_s, io_s
