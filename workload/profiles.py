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

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from workload.azure2019 import DurationStats, MemoryStats

#: OpenWhisk's default minimum action memory limit, MB; also the step trace memory is rounded up to.
#: OpenWhisk accepts any whole MB between its configured minimum and maximum; rounding trace memory
#: up to 128-MB steps (the step Azure Functions bills by) keeps container sizes a handful of classes.
MEMORY_STEP_MB = 128

#: Trace durations are whole milliseconds; a 0 means "under 1 ms", so times are floored at 1 ms.
TRACE_TIME_RESOLUTION_S = 0.001

#: Cold-start rule for trace functions (the trace has no cold-start data; see docs/workload.md):
#: container creation + runtime start of a stock OpenWhisk runtime image ...
TRACE_INIT_BASE_S = 0.5
#: ... plus loading code and libraries, taken proportional to the memory footprint, s per GB.
TRACE_INIT_S_PER_GB = 1.0

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
            raise ValueError(
                f"profile {self.name!r}: cpu_fraction must be in [0, 1], got {self.cpu_fraction}"
            )
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

    @classmethod
    def from_trace(
        cls,
        name: str,
        durations: DurationStats,
        memory: MemoryStats | None,
        *,
        cpu_fraction: float = 1.0,
        max_cores: float = 1.0,
        init_base_s: float = TRACE_INIT_BASE_S,
        init_s_per_gb: float = TRACE_INIT_S_PER_GB,
    ) -> FunctionProfile:
        """A profile from a 2019 trace function's own duration and memory percentiles.

        - execution: median and p99 from ``percentile_Average_50`` / ``_99`` (ms -> s), each floored at
          the trace's 1-ms resolution, p99 raised to the median if it is below it;
        - memory: the 99th percentile of allocated memory rounded up to ``MEMORY_STEP_MB``, at least
          128 MB (``memory=None``, i.e. no memory row, gives 128 MB);
        - init: ``init_base_s + init_s_per_gb * memory_mb / 1024`` (an estimate: the trace records no
          cold starts, and heavier functions load more code).
        ``cpu_fraction`` defaults to 1 (the trace says nothing about I/O, and treating all time as
        CPU work does not understate contention).
        """
        median_s = max(durations.p50_ms / 1000.0, TRACE_TIME_RESOLUTION_S)
        p99_s = max(durations.p99_ms / 1000.0, median_s)
        footprint_mb = memory.pct99_mb if memory is not None else 0.0
        memory_mb = round_memory_mb(footprint_mb)
        return cls(
            name=name,
            memory_mb=memory_mb,
            exec_median_s=median_s,
            exec_p99_s=p99_s,
            init_s=init_base_s + init_s_per_gb * memory_mb / 1024.0,
            cpu_fraction=cpu_fraction,
            max_cores=max_cores,
            source="Azure Functions 2019 trace: durations p50/p99, memory pct99; init by rule (estimate)",
        )


def round_memory_mb(footprint_mb: float, step_mb: int = MEMORY_STEP_MB) -> int:
    """An OpenWhisk memory limit for a footprint: rounded up to ``step_mb``, at least ``step_mb``."""
    if not math.isfinite(footprint_mb) or footprint_mb < 0:
        raise ValueError(f"memory footprint must be a finite number >= 0 MB, got {footprint_mb}")
    return max(step_mb, step_mb * math.ceil(footprint_mb / step_mb))


_FAASPROFILER = "FaaSProfiler (Shahrad et al., MICRO 2019) functions/"
_SEBS = "SeBS (Copik et al., Middleware 2021) benchmarks/"
_PAPER = "paper App. E"

#: The 12 benchmark functions of the paper (supplement App. E), uncontended on an OpenWhisk invoker.
#: Every number is either measured here (stated) or an estimate with its reason; the table with the
#: reasoning is in docs/workload.md. Memory limits follow the suites' configured sizes where they
#: give one (SeBS ``config.json``), rounded to 128-MB steps.
BENCHMARK_PROFILES: dict[str, FunctionProfile] = {
    profile.name: profile
    for profile in (
        FunctionProfile(
            name="base64",
            memory_mb=128,
            exec_median_s=0.47,
            exec_p99_s=0.61,
            init_s=0.6,
            cpu_fraction=1.0,
            max_cores=1.0,
            source=f"{_FAASPROFILER}microbenchmarks/base64 (Python, 100 encodes + 100 decodes of 1 MB): "
            "median 0.47 s measured on the dev machine; p99 = 1.3 x median (estimate); 128 MB "
            "(1-MB buffers); init 0.6 s = stock Python runtime cold start (estimate)",
        ),
        FunctionProfile(
            name="primes",
            memory_mb=256,
            exec_median_s=1.03,
            exec_p99_s=1.34,
            init_s=0.6,
            cpu_fraction=1.0,
            max_cores=1.0,
            source=f"{_FAASPROFILER}microbenchmarks/primes (Python sieve below 10^7, {_PAPER}): median "
            "1.03 s measured on the dev machine; p99 = 1.3 x median (estimate); 256 MB (a list of 5 M "
            "Python ints is ~180 MB); init 0.6 s (estimate)",
        ),
        FunctionProfile(
            name="markdown2html",
            memory_mb=128,
            exec_median_s=0.03,
            exec_p99_s=0.06,
            init_s=0.7,
            cpu_fraction=1.0,
            max_cores=1.0,
            source=f"{_FAASPROFILER}markdown-to-html (Python markdown on a base64 README): estimate, "
            "tens of ms for a few-kB document; p99 = 2 x median; init 0.7 s (runtime + markdown import)",
        ),
        FunctionProfile(
            name="sentiment-analysis",
            memory_mb=256,
            exec_median_s=0.10,
            exec_p99_s=0.20,
            init_s=1.8,
            cpu_fraction=1.0,
            max_cores=1.0,
            source=f"{_FAASPROFILER}sentiment-analysis (TextBlob): estimate 0.1 s for a short text; "
            "256 MB for TextBlob/NLTK data; init 1.8 s (NLTK and TextBlob imports, estimate)",
        ),
        FunctionProfile(
            name="image-resize",
            memory_mb=256,
            exec_median_s=0.04,
            exec_p99_s=0.08,
            init_s=0.8,
            cpu_fraction=0.95,
            max_cores=1.0,
            source=f"{_FAASPROFILER}img-resize, SeBS 210.thumbnailer: Pillow decode+resize+encode of a "
            "1080p JPEG measured 28 ms here, +~10 ms base64 and proxy overhead (estimate); 256 MB "
            f"(SeBS thumbnailer config); compute-intensive per {_PAPER}",
        ),
        FunctionProfile(
            name="html-gen",
            memory_mb=128,
            exec_median_s=0.005,
            exec_p99_s=0.02,
            init_s=0.7,
            cpu_fraction=1.0,
            max_cores=1.0,
            source=f"{_SEBS}110.dynamic-html (jinja2 template of random numbers): render of 1,000 items "
            "measured 0.4 ms here, + a few ms action-proxy overhead (estimate); 128 MB (SeBS config)",
        ),
        FunctionProfile(
            name="uploader",
            memory_mb=128,
            exec_median_s=0.40,
            exec_p99_s=1.50,
            init_s=1.0,
            cpu_fraction=0.10,
            max_cores=1.0,
            source=f"{_SEBS}120.uploader (download from URL, upload to object storage): I/O-bound per "
            f"{_PAPER}; 0.4 s median and a wide network tail (p99 1.5 s) are estimates for a few-MB "
            "file inside a data centre; 128 MB (SeBS config); init 1.0 s (storage client import)",
        ),
        FunctionProfile(
            name="compression",
            memory_mb=256,
            exec_median_s=1.20,
            exec_p99_s=2.50,
            init_s=1.0,
            cpu_fraction=0.40,
            max_cores=1.0,
            source=f"{_SEBS}311.compression (fetch files, zip, upload): I/O-bound per {_PAPER}, with "
            "deflate as the CPU part (40%, estimate); 1.2 s median / 2.5 s p99 estimated for a few MB; "
            "256 MB (SeBS config)",
        ),
        FunctionProfile(
            name="image-inference",
            memory_mb=1024,
            exec_median_s=0.45,
            exec_p99_s=0.70,
            init_s=4.5,
            cpu_fraction=0.95,
            max_cores=2.0,
            source=f"{_SEBS}411.image-recognition (PyTorch ResNet-50, {_PAPER}): ~4 GFLOP per image, "
            "estimated 0.45 s on 2 cores (batch-1 intra-op parallelism scales poorly past 2); 1024 MB "
            "(PyTorch + 100-MB weights exceed SeBS's 512-MB default in a container); init 4.5 s "
            "(torch import + weight load, estimate)",
        ),
        FunctionProfile(
            name="page-rank",
            memory_mb=512,
            exec_median_s=0.50,
            exec_p99_s=0.80,
            init_s=0.8,
            cpu_fraction=1.0,
            max_cores=1.0,
            source=f"{_SEBS}501.graph-pagerank (igraph, generated graph of 100k nodes): estimate 0.5 s "
            f"incl. graph generation; 512 MB (SeBS config); data-intensive per {_PAPER}",
        ),
        FunctionProfile(
            name="graph-bfs",
            memory_mb=512,
            exec_median_s=0.30,
            exec_p99_s=0.50,
            init_s=0.8,
            cpu_fraction=1.0,
            max_cores=1.0,
            source=f"{_SEBS}503.graph-bfs (igraph, 100k nodes): estimate 0.3 s incl. graph generation; "
            "512 MB (SeBS config)",
        ),
        FunctionProfile(
            name="graph-mst",
            memory_mb=512,
            exec_median_s=0.40,
            exec_p99_s=0.65,
            init_s=0.8,
            cpu_fraction=1.0,
            max_cores=1.0,
            source=f"{_SEBS}502.graph-mst (igraph, 100k nodes): estimate 0.4 s incl. graph generation; "
            "512 MB (SeBS config)",
        ),
    )
}


#: Fewest paused-container runs a solo measurement needs before its execution-time percentiles come
#: from them rather than from the back-to-back runs (a p99 from fewer is mostly one sample).
MIN_PAUSED_RUNS = 100


def _samples_s(row: Mapping[str, Any], key: str) -> np.ndarray:
    values = np.asarray(row.get("samples", {}).get(key, []), dtype=float)
    return values[np.isfinite(values)] / 1000.0


def profile_from_solo(row: Mapping[str, Any], *, provenance: str = "") -> FunctionProfile:
    """A profile from one function's solo measurement (a ``functions`` row of the JSON that
    ``python -m workload.functions.solo --json`` writes).

    - execution time: median and p99 of the warm activations' ``duration`` (ms -> s, at least
      1 ms). The runs that found their container paused are used when there are at least
      ``MIN_PAUSED_RUNS`` of them, since a replay's activations mostly do; else the back-to-back
      runs;
    - ``init_s``: the median initTime of the cold starts;
    - ``cpu_fraction`` and ``max_cores``: CPU time of a warm activation (``warm_cpu_s``) over the
      mean back-to-back ``duration``; above 1 the function uses more than one core
      (``cpu_fraction`` 1, ``max_cores`` the ratio); unknown (NaN), CPU-bound on one core;
    - ``memory_mb``: the memory limit it was deployed with (what a container reserves).

    Raises ``ValueError`` naming the function and the missing field.
    """
    name = str(row.get("function", "?"))
    paused = _samples_s(row, "paused_duration_ms")
    warm = _samples_s(row, "duration_ms")
    exec_s = paused if paused.size >= MIN_PAUSED_RUNS else warm
    cold_init = _samples_s(row, "cold_init_ms")
    if exec_s.size == 0 or cold_init.size == 0:
        raise ValueError(f"solo measurement of {name!r}: needs samples.duration_ms and samples.cold_init_ms")
    if "memory_mb" not in row:
        raise ValueError(f"solo measurement of {name!r}: needs memory_mb")
    median_s = max(float(np.median(exec_s)), TRACE_TIME_RESOLUTION_S)
    p99_s = max(float(np.percentile(exec_s, 99)), median_s)
    mean_s = max(float(np.mean(warm)), TRACE_TIME_RESOLUTION_S) if warm.size else math.nan
    ratio = float(row.get("warm_cpu_s", math.nan)) / mean_s
    if not math.isfinite(ratio):
        cpu_fraction, max_cores = 1.0, 1.0
    elif ratio > 1.0:
        cpu_fraction, max_cores = 1.0, round(ratio, 2)
    else:
        cpu_fraction, max_cores = round(max(ratio, 0.0), 2), 1.0
    which = f"{paused.size} paused" if exec_s is paused else f"{warm.size} back-to-back"
    source = (f"measured solo: duration p50/p99 of {which} warm runs, init = median of {cold_init.size} cold "
              f"starts, CPU {1000 * float(row.get('warm_cpu_s', math.nan)):.1f} ms per warm run")
    return FunctionProfile(
        name=name,
        memory_mb=int(row["memory_mb"]),
        exec_median_s=round(median_s, 4),
        exec_p99_s=round(p99_s, 4),
        init_s=round(float(np.median(cold_init)), 4),
        cpu_fraction=cpu_fraction,
        max_cores=max_cores,
        source=f"{source}; {provenance}" if provenance else source,
    )


def profiles_from_solo(measurement: Mapping[str, Any], *, provenance: str = "") -> dict[str, FunctionProfile]:
    """Every function of a solo measurement JSON (``{"functions": [row, ...]}``) as a profile, by name
    (see :func:`profile_from_solo`)."""
    rows = measurement.get("functions")
    if not isinstance(rows, list) or not rows:
        raise ValueError("a solo measurement needs a non-empty 'functions' list")
    return {str(row["function"]): profile_from_solo(row, provenance=provenance) for row in rows}
