"""Exact cost accounting of the simulated cluster: container-seconds, memory held, idle and
initialising memory, CPU, and the work left, on tiny clusters whose answers are computed by hand.

Times and memories are chosen as binary fractions, so the hand-computed integrals are exact in
floating point and compared with ``==``.
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator import UNMANAGED, Cluster, ClusterConfig, Totals
from workload.profiles import FunctionProfile

EMPTY_T = np.empty(0)
EMPTY_F = np.empty(0, dtype=np.int64)
MEMORY_MB = 256


def fixed(name: str = "f", exec_s: float = 1.0, init_s: float = 0.5, memory_mb: int = MEMORY_MB) -> FunctionProfile:
    """A single-threaded, CPU-bound function with a deterministic execution time."""
    return FunctionProfile(name, memory_mb, exec_s, exec_s, init_s=init_s)


def idle_until(cluster: Cluster, t: float) -> None:
    cluster.advance(t, EMPTY_T, EMPTY_F)


def test_a_container_created_at_a_and_removed_at_b_holds_b_minus_a_times_its_memory() -> None:
    cluster = Cluster(ClusterConfig(), [fixed(init_s=0.5)])
    idle_until(cluster, 2.0)
    cluster.set_pool(0, 1)  # created at a = 2.0
    idle_until(cluster, 10.25)
    cluster.set_pool(0, 0)  # idle surplus removed at b = 10.25
    idle_until(cluster, 30.0)
    f = cluster.totals().functions
    assert f.container_s[0] == 8.25
    assert f.memory_mb_s[0] == 8.25 * MEMORY_MB
    assert f.init_memory_mb_s[0] == 0.5 * MEMORY_MB
    assert f.idle_memory_mb_s[0] == 7.75 * MEMORY_MB


def test_idle_time_between_invocations_is_idle_memory_and_execution_is_not() -> None:
    # Cold start 0-0.5, busy 0.5-1.5, idle 1.5-10, busy 10-11, idle 11-20.
    cluster = Cluster(ClusterConfig(), [fixed(exec_s=1.0, init_s=0.5)])
    cluster.advance(20.0, np.array([0.0, 10.0]), np.array([0, 0]))
    totals = cluster.totals()
    f = totals.functions
    assert f.container_s[0] == 20.0
    assert f.init_memory_mb_s[0] == 0.5 * MEMORY_MB
    assert f.idle_memory_mb_s[0] == 17.5 * MEMORY_MB
    assert f.memory_mb_s[0] - f.idle_memory_mb_s[0] - f.init_memory_mb_s[0] == 2.0 * MEMORY_MB
    assert f.cpu_used_core_s[0] == pytest.approx(2.0, abs=1e-9)
    assert totals.end_s == 20.0


def test_a_cold_start_counts_as_initialising_memory_while_its_invocation_waits_for_it() -> None:
    cluster = Cluster(ClusterConfig(), [fixed(init_s=0.5)])
    cluster.advance(0.25, np.array([0.0]), np.array([0]))
    f = cluster.totals().functions
    assert (f.queued[0], f.in_flight[0]) == (1.0, 0.0)
    assert f.init_memory_mb_s[0] == 0.25 * MEMORY_MB
    assert f.idle_memory_mb_s[0] == 0.0
    idle_until(cluster, 1.0)
    f = cluster.totals().functions
    assert (f.queued[0], f.in_flight[0]) == (0.0, 1.0)
    assert f.init_memory_mb_s[0] == 0.5 * MEMORY_MB


def test_a_pools_cold_starts_are_initialising_then_idle_memory() -> None:
    cluster = Cluster(ClusterConfig(), [fixed(init_s=2.0)])
    cluster.set_pool(0, 3)
    idle_until(cluster, 1.0)
    f = cluster.totals().functions
    assert (f.init_memory_mb_s[0], f.idle_memory_mb_s[0]) == (3 * 1.0 * MEMORY_MB, 0.0)
    idle_until(cluster, 5.0)
    f = cluster.totals().functions
    assert (f.init_memory_mb_s[0], f.idle_memory_mb_s[0]) == (3 * 2.0 * MEMORY_MB, 3 * 3.0 * MEMORY_MB)
    assert f.memory_mb_s[0] == 3 * 5.0 * MEMORY_MB


def test_a_pool_scaled_up_and_down_between_two_tick_ends_is_charged_in_full() -> None:
    # One 60-s tick; the pool exists only from 20 s to 40 s. Sampling containers at the tick's end
    # sees none; the exact integral charges 2 containers x 20 s.
    cluster = Cluster(ClusterConfig(), [fixed(init_s=0.5)])
    idle_until(cluster, 20.0)
    cluster.set_pool(0, 2)
    idle_until(cluster, 40.0)
    cluster.set_pool(0, 0)
    idle_until(cluster, 60.0)
    stats = cluster.tick_stats()
    f = stats.functions
    assert f.containers[0] == 0
    assert f.container_s[0] == 40.0
    assert f.memory_mb_s[0] == 2 * 20.0 * MEMORY_MB
    assert f.init_memory_mb_s[0] == 2 * 0.5 * MEMORY_MB
    assert f.idle_memory_mb_s[0] == 2 * 19.5 * MEMORY_MB
    assert stats.invokers.memory_mb_s.sum() == 2 * 20.0 * MEMORY_MB
    assert stats.invokers.idle_memory_mb_s.sum() == 2 * 19.5 * MEMORY_MB


def test_an_idle_timeout_eviction_ends_the_containers_holding_at_the_eviction() -> None:
    # Cold start 0-0.5, busy 0.5-1.0, idle from 1.0, evicted at 601.0.
    cluster = Cluster(ClusterConfig(), [fixed(exec_s=0.5, init_s=0.5)])
    cluster.advance(1000.0, np.array([0.0]), np.array([0]))
    f = cluster.totals().functions
    assert f.container_s[0] == 601.0
    assert f.idle_memory_mb_s[0] == 600.0 * MEMORY_MB
    assert (f.evicted_idle[0], f.evicted_for_memory[0]) == (1.0, 0.0)


def test_an_eviction_for_memory_ends_the_victims_holding_when_the_newcomer_starts() -> None:
    config = ClusterConfig(invokers=1, cores=8, user_memory_mb=2 * MEMORY_MB)
    cluster = Cluster(config, [fixed("old", exec_s=0.5), fixed("recent", exec_s=0.5), fixed("new", exec_s=0.5)])
    cluster.advance(20.0, np.array([0.0, 5.0, 10.0]), np.array([0, 1, 2]))
    f = cluster.totals().functions
    assert f.container_s.tolist() == [10.0, 15.0, 10.0]
    assert f.evicted_for_memory.tolist() == [1.0, 0.0, 0.0]


def test_smaller_cpu_shares_do_not_lower_the_memory_charged() -> None:
    charged = []
    for shares in (2, 1024):
        cluster = Cluster(ClusterConfig(), [fixed()])
        cluster.set_pool(0, 4)
        cluster.set_cpu_shares(0, shares)
        cluster.advance(100.0, np.arange(0.0, 100.0, 2.0), np.zeros(50, dtype=np.int64))
        charged.append(cluster.totals().functions)
    assert charged[0].memory_mb_s[0] == charged[1].memory_mb_s[0] == 4 * 100.0 * MEMORY_MB
    assert charged[0].cpu_alloc_core_s[0] < charged[1].cpu_alloc_core_s[0]


def test_the_simulator_never_drops_an_invocation_and_says_so_with_zeros() -> None:
    config = ClusterConfig(invokers=1, cores=1, user_memory_mb=MEMORY_MB)
    cluster = Cluster(config, [fixed(exec_s=10.0)])
    cluster.advance(5.0, np.zeros(50), np.zeros(50, dtype=np.int64))
    f = cluster.totals().functions
    assert f.dropped[0] == 0.0
    assert cluster.tick_stats().functions.dropped[0] == 0.0
    assert (f.arrivals[0], f.queued[0], f.in_flight[0], f.completions[0]) == (50.0, 49.0, 1.0, 0.0)


def test_totals_since_an_earlier_call_are_the_period_between_the_two() -> None:
    cluster = Cluster(ClusterConfig(), [fixed(exec_s=1.0)])
    cluster.advance(10.0, np.array([0.0, 3.0]), np.array([0, 0]))
    earlier = cluster.totals()
    cluster.advance(20.0, np.array([15.0, 15.0]), np.array([0, 0]))
    later = cluster.totals()
    period = later.since(earlier)
    assert (period.start_s, period.end_s) == (10.0, 20.0)
    # The first container all period; a second one cold-started at 15 for the second arrival.
    assert period.functions.container_s[0] == 10.0 + 5.0
    assert period.functions.arrivals[0] == 2.0
    assert period.functions.cold_starts[0] == 1.0
    assert period.functions.queued[0] == later.functions.queued[0]
    with pytest.raises(ValueError, match="earlier ends at 20.0 s, after this one"):
        earlier.since(later)


def test_reading_totals_changes_nothing_in_the_simulation() -> None:
    def run(read_totals: bool) -> tuple[bytes, bytes]:
        profiles = [FunctionProfile("a", 256, 0.2, 0.9, 0.5), FunctionProfile("b", 512, 1.0, 3.0, 1.0, cpu_fraction=0.5)]
        rng = np.random.default_rng(7)
        cluster = Cluster(ClusterConfig(invokers=2, cores=2, user_memory_mb=1024), profiles, seed=3)
        alloc = []
        for k in range(30):
            n = rng.poisson(20)
            cluster.advance(10.0 * (k + 1), np.sort(rng.uniform(10.0 * k, 10.0 * (k + 1), n)), rng.integers(0, 2, n))
            if read_totals:
                cluster.totals()
            cluster.set_pool(k % 2, (k % 4) - 1)
            if read_totals:
                cluster.totals()
            alloc.append(cluster.tick_stats().functions.cpu_alloc_core_s)
        return cluster.drain_records().tobytes(), np.concatenate(alloc).tobytes()

    assert run(read_totals=True) == run(read_totals=False)


CONFIGS = {
    "openwhisk-default": ClusterConfig(invokers=3, cores=2, user_memory_mb=1024, idle_timeout_s=30.0),
    "greedy-dual": ClusterConfig(invokers=3, cores=2, user_memory_mb=1024, eviction="greedy-dual"),
    "lru-half-budget": ClusterConfig(invokers=3, cores=2, user_memory_mb=1024, idle_memory_fraction=0.5),
    "greedy-dual-budget-timeout": ClusterConfig(
        invokers=3, cores=2, user_memory_mb=1024, eviction="greedy-dual", idle_memory_fraction=0.25, idle_timeout_s=30.0
    ),
}


def check_books(totals: Totals) -> None:
    f, v = totals.functions, totals.invokers
    assert f.memory_mb_s.sum() == pytest.approx(v.memory_mb_s.sum(), rel=1e-9, abs=1e-6)
    assert f.idle_memory_mb_s.sum() == pytest.approx(v.idle_memory_mb_s.sum(), rel=1e-9, abs=1e-6)
    assert f.init_memory_mb_s.sum() == pytest.approx(v.init_memory_mb_s.sum(), rel=1e-9, abs=1e-6)
    assert f.cpu_used_core_s.sum() == pytest.approx(v.cpu_used_core_s.sum(), rel=1e-9, abs=1e-9)
    assert np.all(f.idle_memory_mb_s >= 0) and np.all(f.init_memory_mb_s >= 0)
    assert np.all(f.idle_memory_mb_s + f.init_memory_mb_s <= f.memory_mb_s * (1 + 1e-12) + 1e-6)
    assert np.array_equal(f.arrivals, f.completions + f.queued + f.in_flight + f.dropped)
    assert np.all(f.dropped == 0)


@pytest.mark.parametrize("config", list(CONFIGS.values()), ids=list(CONFIGS))
@pytest.mark.parametrize("seed", [0, 1], ids=lambda s: f"seed-{s}")
def test_per_function_totals_add_up_to_the_clusters_on_random_workloads(config: ClusterConfig, seed: int) -> None:
    rng = np.random.default_rng(seed)
    profiles = [
        FunctionProfile(
            f"f{j}",
            int(rng.choice([128, 256, 512])),
            0.05 + rng.random(),
            2.0,
            0.3 + rng.random(),
            cpu_fraction=float(rng.random()),
            max_cores=float(rng.choice([1.0, 2.0])),
        )
        for j in range(6)
    ]
    cluster = Cluster(config, profiles, seed=seed)
    memory = np.array([p.memory_mb for p in profiles], dtype=float)
    tick_memory = np.zeros(6)
    tick_idle = np.zeros(3)
    for k in range(60):
        n = int(rng.poisson(15))
        cluster.advance(5.0 * (k + 1), np.sort(rng.uniform(5.0 * k, 5.0 * (k + 1), n)), rng.integers(0, 6, n))
        stats = cluster.tick_stats()
        tick_memory += stats.functions.memory_mb_s
        tick_idle += stats.invokers.idle_memory_mb_s
        assert np.all(stats.invokers.memory_mb_s <= 1024 * 5.0 * (1 + 1e-12))
        totals = cluster.totals()
        check_books(totals)
        assert np.array_equal(totals.functions.memory_mb_s, totals.functions.container_s * memory)
        fn = int(rng.integers(0, 6))
        if rng.random() < 0.5:
            cluster.set_pool(fn, int(rng.integers(-1, 4)))
        else:
            cluster.set_cpu_shares(fn, int(rng.integers(2, 2048)))
    for fn in range(6):
        cluster.set_pool(fn, UNMANAGED)
    cluster.advance(cluster.now + 1_000.0, EMPTY_T, EMPTY_F)
    totals = cluster.totals()
    check_books(totals)
    assert totals.functions.memory_mb_s == pytest.approx(tick_memory + cluster.tick_stats().functions.memory_mb_s)
    assert tick_idle.sum() > 0
    assert totals.functions.queued.sum() == totals.functions.in_flight.sum() == 0
