"""Benchmark profiles and trace-derived profiles."""

from __future__ import annotations

import pytest

from workload.azure2019 import DurationStats, MemoryStats
from workload.profiles import BENCHMARK_PROFILES, FunctionProfile, round_memory_mb

PAPER_FUNCTIONS = {
    "base64",
    "primes",
    "markdown2html",
    "sentiment-analysis",
    "image-resize",
    "html-gen",
    "uploader",
    "compression",
    "image-inference",
    "page-rank",
    "graph-bfs",
    "graph-mst",
}


def durations(p50_ms: float, p99_ms: float) -> DurationStats:
    return DurationStats(
        average_ms=p50_ms,
        count=10,
        minimum_ms=0.0,
        maximum_ms=p99_ms,
        p0_ms=0.0,
        p1_ms=0.0,
        p25_ms=p50_ms,
        p50_ms=p50_ms,
        p75_ms=p50_ms,
        p99_ms=p99_ms,
        p100_ms=p99_ms,
    )


def memory(pct99_mb: float) -> MemoryStats:
    return MemoryStats(
        sample_count=5,
        average_mb=pct99_mb,
        pct1_mb=pct99_mb,
        pct5_mb=pct99_mb,
        pct25_mb=pct99_mb,
        pct50_mb=pct99_mb,
        pct75_mb=pct99_mb,
        pct95_mb=pct99_mb,
        pct99_mb=pct99_mb,
        pct100_mb=pct99_mb,
    )


def test_the_12_benchmark_functions_of_the_paper_each_have_a_profile_with_a_source():
    assert set(BENCHMARK_PROFILES) == PAPER_FUNCTIONS
    for name, profile in BENCHMARK_PROFILES.items():
        assert profile.name == name
        assert profile.source
        assert profile.memory_mb % 128 == 0


def test_io_bound_benchmarks_use_less_cpu_than_compute_bound_ones():
    io_bound = max(BENCHMARK_PROFILES[n].cpu_fraction for n in ("uploader", "compression"))
    compute = min(BENCHMARK_PROFILES[n].cpu_fraction for n in ("image-resize", "image-inference", "primes"))
    assert io_bound < compute


@pytest.mark.parametrize(
    ("p50_ms", "p99_ms", "median_s", "p99_s"),
    [
        pytest.param(120.0, 800.0, 0.12, 0.8, id="milliseconds-to-seconds"),
        pytest.param(0.0, 0.0, 0.001, 0.001, id="zeros-floored-at-1-ms"),
        pytest.param(0.0, 27.0, 0.001, 0.027, id="zero-median-only"),
    ],
)
def test_trace_execution_times_come_from_the_duration_percentiles(p50_ms, p99_ms, median_s, p99_s):
    profile = FunctionProfile.from_trace("t", durations(p50_ms, p99_ms), memory(10.0))
    assert (profile.exec_median_s, profile.exec_p99_s) == pytest.approx((median_s, p99_s))


@pytest.mark.parametrize(
    ("pct99_mb", "memory_mb"),
    [
        pytest.param(0.0, 128, id="nothing-gets-the-minimum"),
        pytest.param(9.4, 128, id="small-gets-the-minimum"),
        pytest.param(128.0, 128, id="exact-step"),
        pytest.param(128.1, 256, id="just-above-a-step-rounds-up"),
        pytest.param(615.5, 640, id="large"),
    ],
)
def test_trace_memory_is_rounded_up_to_128_mb_steps(pct99_mb, memory_mb):
    assert FunctionProfile.from_trace("t", durations(1, 2), memory(pct99_mb)).memory_mb == memory_mb


def test_trace_init_time_grows_with_memory_by_the_documented_rule():
    small = FunctionProfile.from_trace("t", durations(1, 2), memory(100))
    large = FunctionProfile.from_trace("t", durations(1, 2), memory(1000))
    assert small.init_s == pytest.approx(0.5 + 128 / 1024)
    assert large.init_s == pytest.approx(0.5 + 1024 / 1024)


def test_a_function_without_a_memory_row_gets_the_minimum():
    assert FunctionProfile.from_trace("t", durations(1, 2), None).memory_mb == 128


def test_a_negative_memory_footprint_is_refused():
    with pytest.raises(ValueError, match="memory footprint"):
        round_memory_mb(-1.0)
