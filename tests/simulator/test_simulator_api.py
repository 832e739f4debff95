"""The simulated cluster's API: configuration, argument checks, tick statistics and records."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simulator import RECORD_DTYPE, Cluster, ClusterConfig, default_cpu_shares, measure_solo_p99
from workload.profiles import FunctionProfile

EMPTY_T = np.empty(0)
EMPTY_F = np.empty(0, dtype=np.int64)


def test_the_default_configuration_is_the_papers_cluster() -> None:
    config = ClusterConfig()
    assert (config.invokers, config.cores, config.user_memory_mb, config.idle_timeout_s) == (
        21,
        8,
        2048,
        600.0,
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("invokers", 0),
        ("invokers", 2.5),
        ("cores", 0.0),
        ("cores", float("nan")),
        ("user_memory_mb", 0),
        ("idle_timeout_s", 0.0),
    ],
    ids=["no-invokers", "fractional-invokers", "no-cores", "nan-cores", "no-memory", "zero-timeout"],
)
def test_an_invalid_configuration_is_rejected_naming_the_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"ClusterConfig\.{field} .*{value!r}"):
        ClusterConfig(**{field: value})


def test_keep_records_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=r"ClusterConfig\.keep_records must be a bool, got 1"):
        ClusterConfig(keep_records=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("memory_mb", "user_memory_mb", "shares"),
    [(256, 2048, 128), (128, 2048, 64), (2048, 2048, 1024), (512, 2048, 256), (128, 65536, 2)],
    ids=["256-of-2048", "128-of-2048", "whole-invoker", "512-of-2048", "floor-of-2"],
)
def test_default_cpu_shares_follow_openwhisk(memory_mb: int, user_memory_mb: int, shares: int) -> None:
    assert default_cpu_shares(memory_mb, user_memory_mb) == shares


def small_cluster(**config: object) -> Cluster:
    profiles = [
        FunctionProfile("a", 256, 0.2, 0.5, 0.5),
        FunctionProfile("b", 512, 1.0, 2.0, 1.0, cpu_fraction=0.5),
    ]
    return Cluster(
        ClusterConfig(invokers=2, cores=2, user_memory_mb=1024, **config), profiles, slo_s=[0.6, 2.5]
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.set_pool(2, 1), r"function index 2 is not in \[0, 2\)"),
        (lambda c: c.set_pool(0, -2), r"containers must be an int >= -1, got -2"),
        (lambda c: c.set_pool(0, 1.5), r"containers must be an int >= -1, got 1.5"),
        (lambda c: c.set_cpu_shares(1, 1), r"shares must be an int in \[2, 262144\], got 1"),
        (lambda c: c.set_cpu_shares(1, 262145), r"got 262145"),
        (lambda c: c.advance(-1.0, EMPTY_T, EMPTY_F), r"until_s=-1.0 must be finite and >= now=0.0"),
        (lambda c: c.advance(5.0, np.array([1.0, 0.5]), np.array([0, 0])), r"not sorted at index 1"),
        (lambda c: c.advance(5.0, np.array([5.0]), np.array([0])), r"must lie in \[now=0.0, until_s=5.0\)"),
        (lambda c: c.advance(5.0, np.array([1.0]), np.array([2])), r"arrival_fn values must be in \[0, 2\)"),
        (lambda c: c.advance(5.0, np.array([1.0]), np.array([0, 1])), r"must be 1-D of one length"),
    ],
    ids=[
        "fn-out-of-range",
        "pool-below-unmanaged",
        "pool-not-int",
        "shares-too-low",
        "shares-too-high",
        "time-backwards",
        "unsorted-arrivals",
        "arrival-at-until",
        "unknown-function",
        "length-mismatch",
    ],
)
def test_bad_calls_are_rejected_with_the_value_at_fault(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(small_cluster())


def test_slo_of_the_wrong_length_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"slo_s has shape \(1,\), expected \(2,\)"):
        Cluster(ClusterConfig(), small_cluster().profiles, slo_s=[1.0])


def test_records_are_consistent_activations_and_drained_once() -> None:
    cluster = small_cluster()
    rng = np.random.default_rng(1)
    times = np.sort(rng.uniform(0, 50, 300))
    cluster.advance(100.0, times, rng.integers(0, 2, 300))
    records = cluster.drain_records()
    assert records.dtype == RECORD_DTYPE
    assert records.size == 300
    assert records["arrival_s"] + records["wait_s"] + records["init_s"] == pytest.approx(records["start_s"])
    assert records["start_s"] + records["duration_s"] == pytest.approx(records["end_s"])
    assert np.all(records["wait_s"] >= -1e-12) and np.all(records["init_s"] >= 0)
    assert np.all(records["init_s"][~records["cold"]] == 0)
    assert set(records["invoker"]) <= {0, 1}
    assert cluster.drain_records().size == 0


def test_tick_statistics_cover_exactly_the_period_since_the_previous_call() -> None:
    cluster = small_cluster()
    rng = np.random.default_rng(2)
    all_records = []
    for k in range(3):
        n = 80
        times = np.sort(rng.uniform(10 * k, 10 * k + 8, n))
        fns = rng.integers(0, 2, n)
        cluster.advance(10 * (k + 1), times, fns)
        stats = cluster.tick_stats()
        records = cluster.drain_records()
        all_records.append(records)
        f = stats.functions
        assert (stats.start_s, stats.end_s, stats.tick_s) == (10 * k, 10 * (k + 1), 10)
        assert f.arrivals.tolist() == np.bincount(fns, minlength=2).tolist()
        assert f.completions.tolist() == np.bincount(records["fn"], minlength=2).tolist()
        for j in range(2):
            mine = records[records["fn"] == j]
            latency = mine["end_s"] - mine["arrival_s"]
            assert mine.size > 0, "the test needs completions of every function in every tick"
            assert f.p50_latency_s[j] == pytest.approx(np.percentile(latency, 50))
            assert f.p99_latency_s[j] == pytest.approx(np.percentile(latency, 99))
            assert f.mean_exec_s[j] == pytest.approx(mine["duration_s"].mean())
            assert f.cold_starts[j] == mine["cold"].sum()
            assert f.slo_violations[j] == (latency > [0.6, 2.5][j]).sum()
        assert f.cpu_used_core_s.sum() == pytest.approx(stats.invokers.cpu_used_core_s.sum())
        assert np.all(stats.invokers.cpu_used_core_s <= 2 * 10 + 1e-9)
    last_three = np.concatenate(all_records)
    last_a = last_three[last_three["fn"] == 0]
    assert f.recent_exec_s[0] == pytest.approx(np.sort(last_a, order="end_s")["duration_s"][-3:].mean())


def test_tick_statistics_describe_containers_memory_and_allocated_cpu() -> None:
    cluster = small_cluster()
    cluster.set_pool(0, 3)
    cluster.set_cpu_shares(0, 256)
    cluster.advance(10.0, EMPTY_T, EMPTY_F)
    stats = cluster.tick_stats()
    f, inv = stats.functions, stats.invokers
    assert f.containers.tolist() == [3, 0]
    assert f.cpu_shares.tolist() == [256, default_cpu_shares(512, 1024)]
    assert f.cpu_alloc_core_s[0] == pytest.approx(3 * 256 / 1024 * 10.0)
    assert f.cpu_used_core_s.tolist() == [0, 0]
    assert inv.memory_used_mb.sum() == 3 * 256
    assert inv.cpu_shares_allocated.sum() == 3 * 256
    assert inv.cores.tolist() == [2, 2] and inv.memory_mb.tolist() == [1024, 1024]
    assert np.isnan(f.p99_latency_s).all() and np.isnan(f.recent_exec_s).all()
    with pytest.raises(ValueError):
        f.containers[0] = 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.end_s = 0.0  # type: ignore[misc]


def test_without_an_slo_the_violation_counts_are_nan_not_zero() -> None:
    cluster = Cluster(ClusterConfig(), [FunctionProfile("a", 256, 0.2, 0.5, 0.5)])
    cluster.advance(5.0, np.array([0.0]), np.array([0]))
    assert np.isnan(cluster.tick_stats().functions.slo_violations).all()


def test_a_cluster_that_keeps_no_records_refuses_to_drain_but_still_reports_latency() -> None:
    cluster = small_cluster(keep_records=False)
    cluster.advance(10.0, np.array([0.0, 1.0]), np.array([0, 0]))
    assert np.isfinite(cluster.tick_stats().functions.p99_latency_s[0])
    with pytest.raises(RuntimeError, match="keep_records=False"):
        cluster.drain_records()


@pytest.mark.parametrize(
    "profile",
    [
        FunctionProfile("fixed", 256, 0.3, 0.3, 1.0),
        FunctionProfile("io", 256, 0.3, 0.3, 1.0, cpu_fraction=0.2),
    ],
    ids=["cpu-bound", "io-bound"],
)
def test_the_solo_p99_of_a_deterministic_function_is_its_execution_time(profile: FunctionProfile) -> None:
    assert measure_solo_p99(profile, n=200) == pytest.approx(0.3, rel=1e-9)


def test_the_solo_p99_of_a_lognormal_function_is_near_its_profile_p99() -> None:
    profile = FunctionProfile("spread", 256, 0.2, 0.8, 0.5)
    assert measure_solo_p99(profile, n=3000, seed=1) == pytest.approx(0.8, rel=0.1)
