"""Container life cycle in the simulated cluster: cold starts, idle eviction, pool targets, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import UNMANAGED, Cluster, ClusterConfig
from workload.profiles import FunctionProfile

EMPTY_T = np.empty(0)
EMPTY_F = np.empty(0, dtype=np.int64)
INIT_S = 0.5
EXEC_S = 0.1


def fixed(name: str = "f", exec_s: float = EXEC_S, memory_mb: int = 256) -> FunctionProfile:
    """A function with a deterministic execution time (median == p99) and a 0.5-s cold start."""
    return FunctionProfile(name, memory_mb, exec_s, exec_s, init_s=INIT_S)


def idle_until(cluster: Cluster, t: float) -> None:
    cluster.advance(t, EMPTY_T, EMPTY_F)


def containers_of(cluster: Cluster, fn: int = 0) -> np.ndarray:
    table = cluster.containers()
    return table[table["fn"] == fn]


def test_an_idle_container_is_evicted_at_ten_minutes_and_not_before() -> None:
    cluster = Cluster(ClusterConfig(), [fixed()])
    cluster.advance(1.0, np.array([0.0]), np.array([0]))
    finished_at = INIT_S + EXEC_S
    idle_until(cluster, finished_at + 600.0 - 1e-6)
    assert list(containers_of(cluster)["state"]) == ["idle"]
    idle_until(cluster, finished_at + 600.0 + 1e-6)
    assert containers_of(cluster).size == 0


def test_a_container_used_again_restarts_its_idle_clock() -> None:
    cluster = Cluster(ClusterConfig(), [fixed()])
    cluster.advance(400.0, np.array([0.0, 300.0]), np.array([0, 0]))
    idle_until(cluster, 300.0 + EXEC_S + 599.0)
    assert containers_of(cluster).size == 1
    idle_until(cluster, 300.0 + EXEC_S + 601.0)
    assert containers_of(cluster).size == 0


def test_every_cold_start_is_counted_once_in_records_and_tick_statistics() -> None:
    cluster = Cluster(ClusterConfig(), [fixed()])
    # Cold at 0; warm at 100; the container is evicted at 700.1; cold again at 800; two at once at
    # 900 (one warm, one cold because the first is busy).
    arrivals = np.array([0.0, 100.0, 800.0, 900.0, 900.0])
    cold_per_tick = []
    for end in (10.0, 110.0, 810.0, 910.0, 1000.0):
        lo, hi = np.searchsorted(arrivals, [cluster.now, end])
        cluster.advance(end, arrivals[lo:hi], np.zeros(hi - lo, dtype=np.int64))
        cold_per_tick.append(cluster.tick_stats().functions.cold_starts[0])
    records = np.sort(cluster.drain_records(), order="arrival_s")
    assert list(records["cold"]) == [True, False, True, False, True]
    assert cold_per_tick == [1, 0, 1, 1, 0]
    assert records["init_s"][records["cold"]] == pytest.approx(INIT_S)
    assert np.all(records["init_s"][~records["cold"]] == 0.0)


def test_unmanaged_functions_cold_start_on_demand_and_keep_their_containers_warm() -> None:
    cluster = Cluster(ClusterConfig(), [fixed()])
    cluster.advance(5.0, np.zeros(3), np.zeros(3, dtype=np.int64))
    stats = cluster.tick_stats().functions
    assert stats.cold_starts[0] == 3
    assert stats.containers[0] == 3
    assert list(containers_of(cluster)["state"]) == ["idle"] * 3


@pytest.mark.parametrize("k", [1, 3, 5], ids=["one", "three", "five"])
def test_a_managed_pool_starts_exactly_k_containers_at_once(k: int) -> None:
    cluster = Cluster(ClusterConfig(), [fixed()])
    cluster.set_pool(0, k)
    idle_until(cluster, 0.1)
    assert list(containers_of(cluster)["state"]) == ["starting"] * k
    idle_until(cluster, 1.0)
    assert list(containers_of(cluster)["state"]) == ["idle"] * k
    # Far past the idle timeout: managed containers are never evicted.
    idle_until(cluster, 2_000.0)
    assert containers_of(cluster).size == k


def test_invocations_that_find_a_managed_pool_busy_wait_in_fifo_order_without_cold_starts() -> None:
    cluster = Cluster(ClusterConfig(), [fixed(exec_s=1.0)])
    cluster.set_pool(0, 2)
    idle_until(cluster, 1.0)
    cluster.advance(10.0, np.array([1.0, 1.0, 1.0, 1.0, 1.0]), np.zeros(5, dtype=np.int64))
    records = np.sort(cluster.drain_records(), order="start_s", kind="stable")
    assert not records["cold"].any()
    assert records["start_s"] == pytest.approx([1.0, 1.0, 2.0, 2.0, 3.0])
    assert records["wait_s"] == pytest.approx([0.0, 0.0, 1.0, 1.0, 2.0])
    assert containers_of(cluster).size == 2


def test_shrinking_a_pool_removes_idle_surplus_at_once_and_busy_surplus_when_it_finishes() -> None:
    cluster = Cluster(ClusterConfig(), [fixed(exec_s=10.0)])
    cluster.set_pool(0, 4)
    idle_until(cluster, 1.0)
    cluster.advance(2.0, np.array([1.0, 1.0]), np.array([0, 0]))
    cluster.set_pool(0, 1)
    states = sorted(containers_of(cluster)["state"])
    assert states == ["busy", "busy"]
    idle_until(cluster, 10.9)
    assert containers_of(cluster).size == 2
    idle_until(cluster, 11.1)
    assert list(containers_of(cluster)["state"]) == ["idle"]


def test_growing_a_pool_starts_only_what_memory_admits_and_the_rest_when_memory_frees() -> None:
    # One invoker with room for 4 containers; another function holds 2 of the slots while busy.
    config = ClusterConfig(invokers=1, cores=8, user_memory_mb=1024)
    cluster = Cluster(config, [fixed("pooled"), fixed("other", exec_s=5.0)])
    cluster.set_pool(1, 0)
    cluster.advance(0.1, np.array([0.0, 0.0]), np.array([1, 1]))
    cluster.set_pool(0, 4)
    idle_until(cluster, 1.0)
    assert containers_of(cluster, 0).size == 2
    # "other" finishes at 5.5 and scales to zero: its memory goes to the waiting pool.
    idle_until(cluster, 5.6)
    assert containers_of(cluster, 1).size == 0
    assert containers_of(cluster, 0).size == 4


def test_scale_to_zero_cold_starts_for_an_invocation_and_removes_the_container_once_idle() -> None:
    cluster = Cluster(ClusterConfig(), [fixed()])
    cluster.set_pool(0, 0)
    cluster.advance(0.3, np.array([0.0]), np.array([0]))
    assert list(containers_of(cluster)["state"]) == ["starting"]
    idle_until(cluster, INIT_S + EXEC_S + 1e-6)
    assert containers_of(cluster).size == 0
    record = cluster.drain_records()[0]
    assert record["cold"] and record["end_s"] == pytest.approx(INIT_S + EXEC_S)


def test_scaling_an_unmanaged_function_to_zero_removes_its_idle_containers_at_once() -> None:
    cluster = Cluster(ClusterConfig(), [fixed()])
    cluster.advance(5.0, np.zeros(2), np.zeros(2, dtype=np.int64))
    assert containers_of(cluster).size == 2
    cluster.set_pool(0, 0)
    assert containers_of(cluster).size == 0


def test_a_pool_handed_back_to_the_platform_idles_out_ten_minutes_after_the_hand_back() -> None:
    cluster = Cluster(ClusterConfig(), [fixed()])
    cluster.set_pool(0, 2)
    idle_until(cluster, 100.0)
    cluster.set_pool(0, UNMANAGED)
    idle_until(cluster, 699.0)
    assert containers_of(cluster).size == 2
    idle_until(cluster, 701.0)
    assert containers_of(cluster).size == 0


def test_an_unmanaged_container_needing_memory_evicts_the_least_recently_used_idle_container() -> None:
    config = ClusterConfig(invokers=1, cores=8, user_memory_mb=512)
    cluster = Cluster(config, [fixed("old"), fixed("recent"), fixed("newcomer")])
    cluster.advance(10.0, np.array([0.0, 5.0]), np.array([0, 1]))
    cluster.advance(20.0, np.array([10.0]), np.array([2]))
    assert sorted(cluster.containers()["fn"]) == [1, 2]


def test_a_managed_idle_container_is_never_evicted_for_another_function() -> None:
    config = ClusterConfig(invokers=1, cores=8, user_memory_mb=256)
    cluster = Cluster(config, [fixed("kept"), fixed("waiting")])
    cluster.set_pool(0, 1)
    idle_until(cluster, 1.0)
    cluster.advance(2.0, np.array([1.0]), np.array([1]))
    stats = cluster.tick_stats().functions
    assert stats.containers.tolist() == [1, 0]
    assert stats.queued.tolist() == [0, 1]
    # Handing the pool back makes the idle container evictable: the waiting invocation gets the room.
    cluster.set_pool(0, UNMANAGED)
    idle_until(cluster, 3.0)
    assert cluster.tick_stats().functions.containers.tolist() == [0, 1]


def run_mixed_workload(seed: int) -> np.ndarray:
    profiles = [
        FunctionProfile("a", 256, 0.2, 0.9, 0.5),
        FunctionProfile("b", 512, 1.0, 3.0, 1.0, cpu_fraction=0.5),
        FunctionProfile("c", 128, 0.05, 0.2, 0.3, max_cores=2.0),
    ]
    rng = np.random.default_rng(99)
    cluster = Cluster(ClusterConfig(invokers=3, cores=2, user_memory_mb=1024), profiles, seed=seed)
    records = []
    for k in range(20):
        n = rng.poisson(30)
        times = np.sort(rng.uniform(10.0 * k, 10.0 * (k + 1), n))
        cluster.advance(10.0 * (k + 1), times, rng.integers(0, 3, n))
        cluster.set_pool(k % 3, (k % 4) - 1)
        cluster.set_cpu_shares((k + 1) % 3, 128 * (1 + k % 5))
        records.append(cluster.drain_records())
    return np.concatenate(records)


def test_the_same_seed_gives_identical_records() -> None:
    first, second = run_mixed_workload(seed=4), run_mixed_workload(seed=4)
    assert first.size > 400
    assert first.tobytes() == second.tobytes()


def test_a_different_seed_gives_different_records() -> None:
    first, second = run_mixed_workload(seed=4), run_mixed_workload(seed=5)
    assert not np.array_equal(first["duration_s"][:50], second["duration_s"][:50])


def test_under_memory_pressure_invocations_start_in_arrival_order_across_functions() -> None:
    # Room for one container. "busy" keeps its container busy with its own queue; the invocation of
    # "other" that arrived in between must not starve behind it.
    config = ClusterConfig(invokers=1, cores=8, user_memory_mb=256)
    cluster = Cluster(config, [fixed("busy", exec_s=1.0), fixed("other")])
    cluster.advance(10.0, np.array([0.0, 0.1, 0.15, 0.2]), np.array([0, 0, 1, 0]))
    records = np.sort(cluster.drain_records(), order="arrival_s")
    assert records["fn"].tolist() == [0, 0, 1, 0]
    assert records["start_s"] == pytest.approx([0.5, 1.5, 3.0, 3.6])
    assert records["cold"].tolist() == [True, False, True, True]


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed-{s}")
def test_random_workloads_and_knob_changes_keep_the_books_balanced(seed: int) -> None:
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
    config = ClusterConfig(invokers=3, cores=2, user_memory_mb=1024, idle_timeout_s=30.0)
    cluster = Cluster(config, profiles, seed=seed)
    memory = np.array([p.memory_mb for p in profiles])
    arrived = 0
    finished = 0
    for k in range(60):
        n = int(rng.poisson(15))
        times = np.sort(rng.uniform(5.0 * k, 5.0 * (k + 1), n))
        cluster.advance(5.0 * (k + 1), times, rng.integers(0, 6, n))
        arrived += n
        stats = cluster.tick_stats()
        finished += int(stats.functions.completions.sum())
        live = cluster.containers()
        f, inv = stats.functions, stats.invokers
        assert f.containers.tolist() == np.bincount(live["fn"], minlength=6).tolist()
        used = np.bincount(live["invoker"], weights=memory[live["fn"]], minlength=3)
        assert inv.memory_used_mb.tolist() == used.tolist()
        assert np.all(inv.memory_used_mb <= 1024)
        assert np.all(inv.cpu_used_core_s <= 2 * 5.0 * (1 + 1e-9))
        assert np.all(f.busy_containers <= f.containers)
        assert (
            f.busy_containers.tolist()
            == np.bincount(live["fn"][live["state"] == "busy"], minlength=6).tolist()
        )
        fn = int(rng.integers(0, 6))
        if rng.random() < 0.5:
            cluster.set_pool(fn, int(rng.integers(-1, 4)))
        else:
            cluster.set_cpu_shares(fn, int(rng.integers(2, 2048)))
    for fn in range(6):
        cluster.set_pool(fn, UNMANAGED)
    cluster.advance(cluster.now + 1_000.0, EMPTY_T, EMPTY_F)
    finished += int(cluster.tick_stats().functions.completions.sum())
    assert finished == arrived
    assert cluster.containers().size == 0
    records = cluster.drain_records()
    assert records.size == arrived
    assert np.all(records["wait_s"] >= -1e-9)
