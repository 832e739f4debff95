"""Placement in the simulated cluster: home invoker by a stable hash, coprime probing, memory admission."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator import Cluster, ClusterConfig
from simulator.placement import coprime_steps, home_and_step, probe_order, stable_hash
from workload.profiles import FunctionProfile

EMPTY_T = np.empty(0)
EMPTY_F = np.empty(0, dtype=np.int64)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0xCBF29CE484222325), ("a", 0xAF63DC4C8601EC8C), ("foobar", 0x85944171F73967E8)],
    ids=["empty", "a", "foobar"],
)
def test_the_name_hash_is_64_bit_fnv_1a_and_the_same_in_every_process(text: str, expected: int) -> None:
    assert stable_hash(text) == expected


@pytest.mark.parametrize("n", [1, 2, 3, 8, 21, 32], ids=lambda n: f"{n}-invokers")
def test_every_probing_step_is_coprime_with_n_so_the_probe_visits_every_invoker_once(n: int) -> None:
    assert all(math.gcd(step, n) == 1 for step in coprime_steps(n))
    for name in ("image-inference", "base64", "fn-017"):
        order = probe_order(name, n)
        home, step = home_and_step(name, n)
        assert sorted(order) == list(range(n))
        assert order[0] == home == stable_hash(name) % n
        assert all((order[j + 1] - order[j]) % n == step % n for j in range(n - 1))


def one_container_per_invoker(name: str) -> FunctionProfile:
    return FunctionProfile(name, 1024, 1.0, 1.0, init_s=0.5)


def test_a_first_container_lands_on_the_home_invoker() -> None:
    names = ["base64", "primes", "graph-bfs", "uploader"]
    cluster = Cluster(ClusterConfig(), [FunctionProfile(n, 256, 0.1, 0.2, 0.5) for n in names])
    cluster.advance(1.0, np.zeros(4), np.arange(4))
    placed = np.sort(cluster.containers(), order="fn")
    assert placed["invoker"].tolist() == [home_and_step(n, 21)[0] for n in names]


def test_containers_that_do_not_fit_at_home_follow_the_probe_order() -> None:
    config = ClusterConfig(invokers=7, cores=4, user_memory_mb=1024)
    cluster = Cluster(config, [one_container_per_invoker("big")])
    cluster.set_pool(0, 5)
    cluster.advance(1.0, EMPTY_T, EMPTY_F)
    assert sorted(cluster.containers()["invoker"]) == sorted(probe_order("big", 7)[:5])


def test_memory_admission_refuses_what_does_not_fit_and_the_invocation_waits_for_room() -> None:
    config = ClusterConfig(invokers=2, cores=4, user_memory_mb=1024)
    hog = one_container_per_invoker("hog")
    late = FunctionProfile("late", 512, 1.0, 1.0, init_s=0.5)
    cluster = Cluster(config, [hog, late])
    cluster.set_pool(0, 2)
    cluster.advance(1.0, EMPTY_T, EMPTY_F)
    cluster.advance(2.0, np.array([1.0, 1.5]), np.array([0, 1]))
    stats = cluster.tick_stats()
    assert stats.functions.containers.tolist() == [2, 0]
    assert stats.functions.queued.tolist() == [0, 1]
    assert stats.invokers.memory_used_mb.tolist() == [1024, 1024]
    # Shrinking the pool to 1 removes its idle container at once (at 2.0): "late" gets that room.
    cluster.set_pool(0, 1)
    cluster.advance(10.0, EMPTY_T, EMPTY_F)
    record = cluster.drain_records()
    late_record = record[record["fn"] == 1][0]
    assert late_record["cold"]
    assert late_record["start_s"] == pytest.approx(2.0 + 0.5)
    assert late_record["wait_s"] == pytest.approx(0.5)


def test_a_function_larger_than_an_invokers_user_memory_is_rejected_up_front() -> None:
    with pytest.raises(ValueError, match=r"profiles\[0\] \('huge'\): memory_mb=4096 exceeds"):
        Cluster(ClusterConfig(), [FunctionProfile("huge", 4096, 1.0, 1.0, 0.5)])
