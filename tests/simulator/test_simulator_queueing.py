"""The simulator against queueing theory: long seeded runs with the tolerance stated in each test.

Service times are exponential through ``simulator.service.ExponentialServiceProfile`` (a profile
subclass overriding the ``sample_exec_s`` hook), or the profiles' own lognormal where the result does
not depend on the distribution (processor sharing).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator import Cluster, ClusterConfig
from simulator.service import ExponentialServiceProfile
from workload.profiles import FunctionProfile

EMPTY_T = np.empty(0)
EMPTY_F = np.empty(0, dtype=np.int64)


def poisson_arrivals(rng: np.random.Generator, rate: float, start: float, end: float) -> np.ndarray:
    n = rng.poisson(rate * (end - start))
    return np.sort(rng.uniform(start, end, n))


def erlang_c_wait(c: int, arrival_rate: float, mean_service_s: float) -> float:
    """Mean queueing delay of M/M/c (Erlang C): P(wait) / (c mu - lambda)."""
    a = arrival_rate * mean_service_s
    tail = a**c / math.factorial(c) * c / (c - a)
    p_wait = tail / (sum(a**k / math.factorial(k) for k in range(c)) + tail)
    return p_wait / (c / mean_service_s - arrival_rate)


def run_in_chunks(
    cluster: Cluster, times: np.ndarray, fns: np.ndarray, end: float, chunk_s: float
) -> np.ndarray:
    """Advance to ``end`` in steps of ``chunk_s`` (as a controller would) and return all records."""
    records = []
    t = cluster.now
    while t < end:
        nxt = min(t + chunk_s, end)
        lo, hi = np.searchsorted(times, [t, nxt])
        cluster.advance(nxt, times[lo:hi], fns[lo:hi])
        records.append(cluster.drain_records())
        t = nxt
    return np.concatenate(records)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("containers", "utilisation", "cpu_fraction"),
    [(1, 0.7, 1.0), (4, 0.8, 1.0), (4, 0.8, 0.0)],
    ids=["m-m-1-cpu-bound", "m-m-4-cpu-bound", "m-m-4-io-bound"],
)
def test_a_managed_pool_of_c_warm_containers_waits_like_erlang_c_within_5_percent(
    containers: int, utilisation: float, cpu_fraction: float
) -> None:
    mean_s = 1.0
    rate = utilisation * containers / mean_s
    profile = ExponentialServiceProfile.with_mean("mmc", mean_s, memory_mb=128, cpu_fraction=cpu_fraction)
    # One invoker with more cores than containers: the containers never contend for CPU.
    cluster = Cluster(ClusterConfig(invokers=1, cores=8, user_memory_mb=4096), [profile], seed=11)
    cluster.set_pool(0, containers)
    warm_up_s = 2.0
    end = 300_000.0
    times = poisson_arrivals(np.random.default_rng(5), rate, warm_up_s, end)
    records = run_in_chunks(cluster, times, np.zeros(times.size, dtype=np.int64), end, 5_000.0)
    assert not records["cold"].any(), "containers were warm before the first arrival"
    steady = records[records["arrival_s"] > 1_000.0]
    assert steady.size > 200_000
    expected = erlang_c_wait(containers, rate, mean_s)
    measured = float(np.mean(steady["start_s"] - steady["arrival_s"]))
    assert measured == pytest.approx(expected, rel=0.05)


@pytest.mark.slow
def test_many_containers_sharing_one_core_respond_like_m_g_1_processor_sharing_within_5_percent() -> None:
    # Lognormal service (median 0.5 s, p99 2 s): M/G/1-PS mean response E[S] / (1 - rho) holds for
    # any service distribution.
    profile = FunctionProfile("ps", 128, exec_median_s=0.5, exec_p99_s=2.0, init_s=0.1)
    rho = 0.7
    rate = rho / profile.exec_mean_s
    config = ClusterConfig(invokers=1, cores=1, user_memory_mb=128 * 200)
    cluster = Cluster(config, [profile], seed=3)
    # 150 warm containers: with rho = 0.7, P(more than 150 in system) = 0.7**150, so nobody queues.
    cluster.set_pool(0, 150)
    end = 300_000.0
    times = poisson_arrivals(np.random.default_rng(8), rate, 1.0, end)
    records = run_in_chunks(cluster, times, np.zeros(times.size, dtype=np.int64), end, 5_000.0)
    assert records["wait_s"].max() == 0.0
    steady = records[records["arrival_s"] > 1_000.0]
    assert steady.size > 300_000
    expected = profile.exec_mean_s / (1.0 - rho)
    measured = float(np.mean(steady["end_s"] - steady["arrival_s"]))
    assert measured == pytest.approx(expected, rel=0.05)


def deterministic(
    name: str, exec_s: float, cpu_fraction: float = 1.0, max_cores: float = 1.0
) -> FunctionProfile:
    return FunctionProfile(
        name, 128, exec_s, exec_s, init_s=0.0, cpu_fraction=cpu_fraction, max_cores=max_cores
    )


def test_two_busy_containers_with_shares_1024_and_512_on_one_core_progress_at_2_to_1() -> None:
    profiles = [deterministic("heavy", 10.0), deterministic("light", 10.0)]
    cluster = Cluster(ClusterConfig(invokers=1, cores=1, user_memory_mb=1024), profiles, seed=0)
    cluster.set_cpu_shares(0, 1024)
    cluster.set_cpu_shares(1, 512)
    cluster.advance(9.0, np.array([0.0, 0.0]), np.array([0, 1]))
    used = cluster.tick_stats().functions.cpu_used_core_s
    assert used[0] / used[1] == pytest.approx(2.0, rel=1e-9)
    assert used.sum() == pytest.approx(9.0, rel=1e-9)
    cluster.advance(30.0, EMPTY_T, EMPTY_F)
    records = np.sort(cluster.drain_records(), order="fn")
    # "heavy" runs at 2/3 core: 10 core-s take 15 s; then "light" has 5 core-s left at 1 core.
    assert records["end_s"] == pytest.approx([15.0, 20.0], rel=1e-9)


@pytest.mark.parametrize(
    ("cores", "shares", "max_cores", "expected_rates"),
    [
        (1.0, [1024, 1024], [1.0, 1.0], [0.5, 0.5]),
        (2.0, [1024, 256, 256], [1.0, 1.0, 1.0], [1.0, 0.5, 0.5]),
        (4.0, [128, 128], [1.0, 1.0], [1.0, 1.0]),
        (4.0, [1024, 1024, 1024], [2.0, 1.0, 2.0], [1.5, 1.0, 1.5]),
        (3.0, [512, 512, 2048], [1.0, 1.0, 4.0], [0.5, 0.5, 2.0]),
    ],
    ids=[
        "equal-split",
        "cap-binds-for-the-heavy-one",
        "caps-below-cores",
        "multicore-caps",
        "weighted-multicore",
    ],
)
def test_cores_are_water_filled_by_shares_under_per_container_caps(
    cores: float, shares: list[int], max_cores: list[float], expected_rates: list[float]
) -> None:
    profiles = [deterministic(f"f{j}", 1000.0, max_cores=m) for j, m in enumerate(max_cores)]
    cluster = Cluster(ClusterConfig(invokers=1, cores=cores, user_memory_mb=128 * len(profiles)), profiles)
    for j, s in enumerate(shares):
        cluster.set_cpu_shares(j, s)
    cluster.advance(10.0, np.zeros(len(profiles)), np.arange(len(profiles)))
    rates = cluster.tick_stats().functions.cpu_used_core_s / 10.0
    assert rates == pytest.approx(expected_rates, rel=1e-9)


def test_io_time_passes_at_wall_clock_speed_without_using_cpu() -> None:
    io_bound = deterministic("io", 4.0, cpu_fraction=0.25)
    hog = deterministic("hog", 100.0)
    cluster = Cluster(ClusterConfig(invokers=1, cores=1, user_memory_mb=256), [io_bound, hog])
    cluster.advance(20.0, np.array([0.0, 0.0]), np.array([1, 0]))
    records = cluster.drain_records()
    done = records[records["fn"] == 0][0]
    # 3 s of I/O alone, then 1 core-s of CPU at half a core (the hog takes the other half): 5 s.
    assert done["duration_s"] == pytest.approx(5.0, rel=1e-9)
    assert cluster.tick_stats().functions.cpu_used_core_s[0] == pytest.approx(1.0, rel=1e-9)
