"""Keep-alive platforms as cluster options: fixed keep-alive of any length, FaasCache's Greedy-Dual
eviction, and the idle-memory budget that gives each its frontier.

Greedy-Dual priorities in the comments are clock + frequency x init_s / memory_mb, with every
function's memory 256 MB; the binary-fraction cold-start times keep them exact.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from simulator import UNMANAGED, Cluster, ClusterConfig
from workload.profiles import FunctionProfile

EMPTY_T = np.empty(0)
EMPTY_F = np.empty(0, dtype=np.int64)
MEMORY_MB = 256


def fixed(name: str, init_s: float = 0.5, exec_s: float = 0.5) -> FunctionProfile:
    return FunctionProfile(name, MEMORY_MB, exec_s, exec_s, init_s=init_s)


def idle_until(cluster: Cluster, t: float) -> None:
    cluster.advance(t, EMPTY_T, EMPTY_F)


def live_functions(cluster: Cluster) -> list[int]:
    return sorted(cluster.containers()["fn"].tolist())


def one_invoker(slots: int, **options: object) -> ClusterConfig:
    """One 8-core invoker with room for ``slots`` containers of 256 MB."""
    return ClusterConfig(invokers=1, cores=8, user_memory_mb=slots * MEMORY_MB, **options)


def run_mixed(config: ClusterConfig) -> bytes:
    profiles = [FunctionProfile("a", 256, 0.2, 0.9, 0.5), FunctionProfile("b", 512, 1.0, 3.0, 1.0, cpu_fraction=0.5)]
    rng = np.random.default_rng(11)
    cluster = Cluster(config, profiles, seed=2)
    for k in range(40):
        n = rng.poisson(12)
        cluster.advance(50.0 * (k + 1), np.sort(rng.uniform(50.0 * k, 50.0 * (k + 1), n)), rng.integers(0, 2, n))
        if k % 7 == 3:
            cluster.set_pool(k % 2, (k % 3) - 1)
    return cluster.drain_records().tobytes()


# ----------------------------------------------------------------------------- configuration


def test_the_default_keep_alive_is_openwhisks_lru_with_a_ten_minute_timeout_and_no_budget() -> None:
    config = ClusterConfig()
    assert (config.eviction, config.idle_timeout_s, config.idle_memory_fraction) == ("lru", 600.0, 1.0)
    spelled_out = ClusterConfig(eviction="lru", idle_timeout_s=600.0, idle_memory_fraction=1.0)
    assert spelled_out == config
    small: dict = {"invokers": 2, "cores": 2, "user_memory_mb": 1024}
    assert run_mixed(ClusterConfig(**small)) == run_mixed(
        ClusterConfig(**small, eviction="lru", idle_timeout_s=600.0, idle_memory_fraction=1.0)
    )


def test_greedy_dual_keeps_containers_until_evicted_unless_a_timeout_is_given() -> None:
    assert ClusterConfig(eviction="greedy-dual").idle_timeout_s == math.inf
    assert ClusterConfig(eviction="greedy-dual", idle_timeout_s=1200.0).idle_timeout_s == 1200.0
    assert dataclasses.replace(ClusterConfig(), eviction="greedy-dual").idle_timeout_s == 600.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"eviction": "fifo"}, r"ClusterConfig\.eviction must be one of lru, greedy-dual, got 'fifo'"),
        ({"idle_memory_fraction": 1.5}, r"ClusterConfig\.idle_memory_fraction must be a number in \[0, 1\], got 1.5"),
        ({"idle_memory_fraction": -0.25}, r"idle_memory_fraction .* got -0.25"),
        ({"idle_memory_fraction": float("nan")}, r"idle_memory_fraction .* got nan"),
        ({"idle_memory_fraction": True}, r"idle_memory_fraction .* got True"),
        ({"idle_timeout_s": float("nan")}, r"ClusterConfig\.idle_timeout_s must be > 0 \(inf for never\), got nan"),
        ({"idle_timeout_s": -math.inf}, r"idle_timeout_s .* got -inf"),
    ],
    ids=["unknown-rule", "fraction-above-one", "negative-fraction", "nan-fraction", "bool-fraction", "nan-timeout",
         "minus-infinite-timeout"],
)
def test_an_invalid_keep_alive_option_is_rejected_naming_the_field_and_value(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClusterConfig(**options)


# ----------------------------------------------------------------------------- fixed keep-alive


@pytest.mark.parametrize("timeout_s", [600.0, 1200.0, 86_400.0 * 7], ids=["10-min", "20-min", "one-week"])
def test_fixed_keep_alive_evicts_an_unmanaged_container_exactly_its_timeout_after_it_went_idle(timeout_s: float) -> None:
    cluster = Cluster(ClusterConfig(idle_timeout_s=timeout_s), [fixed("f")])
    cluster.advance(2.0, np.array([0.0]), np.array([0]))  # idle from 1.0
    idle_until(cluster, 1.0 + timeout_s - 0.25)
    assert live_functions(cluster) == [0]
    idle_until(cluster, 1.0 + timeout_s + 0.25)
    assert live_functions(cluster) == []
    assert cluster.totals().functions.evicted_idle[0] == 1.0


def test_an_infinite_keep_alive_never_evicts_an_idle_container_however_long_the_run() -> None:
    cluster = Cluster(ClusterConfig(idle_timeout_s=math.inf), [fixed("f")])
    cluster.advance(2.0, np.array([0.0]), np.array([0]))
    idle_until(cluster, 1e9)
    assert live_functions(cluster) == [0]
    f = cluster.totals().functions
    assert f.evicted_idle[0] == 0.0
    assert f.idle_memory_mb_s[0] == (1e9 - 1.0) * MEMORY_MB


def test_an_infinite_keep_alive_still_gives_the_least_recently_used_idle_container_to_a_newcomer() -> None:
    cluster = Cluster(one_invoker(2, idle_timeout_s=math.inf), [fixed("old"), fixed("recent"), fixed("new")])
    cluster.advance(100_000.0, np.array([0.0, 5.0, 99_999.0]), np.array([0, 1, 2]))
    assert live_functions(cluster) == [1, 2]


def test_a_pool_handed_back_to_the_platform_follows_a_long_keep_alive() -> None:
    cluster = Cluster(ClusterConfig(idle_timeout_s=3600.0), [fixed("f")])
    cluster.set_pool(0, 2)
    idle_until(cluster, 100.0)
    cluster.set_pool(0, UNMANAGED)
    idle_until(cluster, 3699.0)
    assert live_functions(cluster) == [0, 0]
    idle_until(cluster, 3701.0)
    assert live_functions(cluster) == []


# ----------------------------------------------------------------------------- Greedy-Dual


def two_functions_then_a_newcomer(config: ClusterConfig) -> Cluster:
    """A runs twice (idle from 2.5, frequency 2, priority 2/256); B once, later (idle from 4.5,
    priority 1/256); C arrives at 10 on the full invoker."""
    cluster = Cluster(config, [fixed("A", init_s=1.0), fixed("B", init_s=1.0), fixed("C", init_s=1.5), fixed("D")])
    cluster.advance(10.5, np.array([0.0, 2.0, 3.0, 10.0]), np.array([0, 0, 1, 2]))
    return cluster


def test_greedy_dual_evicts_the_lowest_priority_container_where_lru_evicts_the_oldest() -> None:
    greedy = two_functions_then_a_newcomer(one_invoker(2, eviction="greedy-dual"))
    assert live_functions(greedy) == [0, 2]  # B (priority 1/256) made way
    lru = two_functions_then_a_newcomer(one_invoker(2))
    assert live_functions(lru) == [1, 2]  # A (idle longest) made way
    assert greedy.totals().functions.evicted_for_memory.tolist() == [0.0, 1.0, 0.0, 0.0]


def test_the_greedy_dual_clock_lets_a_recently_used_container_outlive_an_older_more_frequent_one() -> None:
    # Evicting B set the clock to 1/256. C ran once (idle from 12.0): priority 1/256 + 1.5/256 =
    # 2.5/256 > A's 2/256, so D's arrival evicts A. Without the clock C (1.5/256) would go.
    cluster = two_functions_then_a_newcomer(one_invoker(2, eviction="greedy-dual"))
    cluster.advance(21.0, np.array([20.0]), np.array([3]))
    assert live_functions(cluster) == [2, 3]


def test_a_functions_greedy_dual_frequency_restarts_when_its_last_container_on_the_invoker_goes() -> None:
    # A runs 5 times, then its container times out at 108.5. B (cold start 2 s) runs at 150:
    # priority 2/256. A runs again at 160 on a new container: frequency 1, priority 1/256 (6/256
    # had the count survived). C's arrival at 200 evicts A.
    config = one_invoker(2, eviction="greedy-dual", idle_timeout_s=100.0)
    cluster = Cluster(config, [fixed("A", init_s=1.0), fixed("B", init_s=2.0), fixed("C")])
    times = np.array([0.0, 2.0, 4.0, 6.0, 8.0, 150.0, 160.0, 200.0])
    cluster.advance(200.5, times, np.array([0, 0, 0, 0, 0, 1, 0, 2]))
    assert live_functions(cluster) == [1, 2]
    f = cluster.totals().functions
    assert f.evicted_idle.tolist() == [1.0, 0.0, 0.0]
    assert f.evicted_for_memory.tolist() == [1.0, 0.0, 0.0]


def test_greedy_dual_never_evicts_a_managed_container() -> None:
    cluster = Cluster(one_invoker(1, eviction="greedy-dual"), [fixed("kept"), fixed("waiting")])
    cluster.set_pool(0, 1)
    idle_until(cluster, 1.0)
    cluster.advance(50.0, np.array([1.0]), np.array([1]))
    assert live_functions(cluster) == [0]
    assert cluster.totals().functions.queued.tolist() == [0.0, 1.0]


# ----------------------------------------------------------------------------- idle-memory budget


def three_go_idle(config: ClusterConfig, init_s: tuple[float, float, float] = (0.5, 0.5, 0.5)) -> Cluster:
    """Three unmanaged functions run once each at 0, 1 and 2 on a 4-slot invoker."""
    profiles = [fixed(f"f{j}", init_s=s) for j, s in enumerate(init_s)]
    cluster = Cluster(config, profiles)
    cluster.advance(10.0, np.array([0.0, 1.0, 2.0]), np.array([0, 1, 2]))
    return cluster


def test_an_idle_memory_budget_evicts_the_least_recently_used_idle_container_above_it() -> None:
    cluster = three_go_idle(one_invoker(4, idle_memory_fraction=0.5))
    assert live_functions(cluster) == [1, 2]
    assert cluster.totals().functions.evicted_for_memory.tolist() == [1.0, 0.0, 0.0]


def test_under_greedy_dual_the_budget_may_evict_the_container_that_just_went_idle() -> None:
    # Priorities 0.5/256, 0.5/256 and 0.125/256: the third is the cheapest to lose.
    cluster = three_go_idle(one_invoker(4, eviction="greedy-dual", idle_memory_fraction=0.5), (0.5, 0.5, 0.125))
    assert live_functions(cluster) == [0, 1]


def test_without_a_budget_every_idle_container_stays() -> None:
    assert live_functions(three_go_idle(one_invoker(4))) == [0, 1, 2]


def test_a_zero_budget_removes_an_unmanaged_container_as_soon_as_it_is_idle() -> None:
    cluster = Cluster(ClusterConfig(idle_memory_fraction=0.0), [fixed("f")])
    cluster.advance(10.0, np.array([0.0, 5.0]), np.array([0, 0]))
    assert live_functions(cluster) == []
    records = np.sort(cluster.drain_records(), order="arrival_s")
    assert records["cold"].tolist() == [True, True]
    assert cluster.totals().functions.idle_memory_mb_s[0] == 0.0


def test_managed_pools_are_outside_the_idle_memory_budget() -> None:
    cluster = Cluster(one_invoker(4, idle_memory_fraction=0.0), [fixed("pooled")])
    cluster.set_pool(0, 3)
    idle_until(cluster, 100.0)
    assert live_functions(cluster) == [0, 0, 0]


def test_a_pool_handed_back_to_the_platform_is_trimmed_to_the_budget_at_once() -> None:
    cluster = Cluster(one_invoker(4, idle_memory_fraction=0.5), [fixed("f")])
    cluster.set_pool(0, 4)
    idle_until(cluster, 10.0)
    cluster.set_pool(0, UNMANAGED)
    assert live_functions(cluster) == [0, 0]
