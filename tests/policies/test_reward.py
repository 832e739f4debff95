"""The reward r = (1 − α)q + αu: every case of the table in policies/reward.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_invokers, make_snapshot

from controller.loop import cores_per_mb
from policies.reward import (
    DEFAULT_ALPHA,
    memory_reserved_core_s,
    quality,
    reward,
    reward_columns,
    utilisation,
)

NAN = float("nan")

# (p99 s, slo s, completions, pending, cpu used, cpu alloc, valid, alpha, expected r)
CASES = [
    (0.5, 1.0, 10, 0, 5.0, 10.0, True, 0.3, 0.7 * 1.0 + 0.3 * 0.5),
    (1.0, 1.0, 10, 0, 10.0, 10.0, True, 0.3, 1.0),
    (2.0, 1.0, 10, 0, 10.0, 10.0, True, 0.3, 0.7 * 0.5 + 0.3),
    (4.0, 1.0, 10, 0, 20.0, 10.0, True, 0.3, 0.7 * 0.25 + 0.3),
    (0.5, 1.0, 10, 0, 0.0, 10.0, True, 0.0, 1.0),
    (4.0, 1.0, 10, 0, 10.0, 10.0, True, 1.0, 1.0),
    (NAN, 1.0, 0, 0, 0.0, 10.0, True, 0.3, 0.7),
    (NAN, 1.0, 0, 0, 0.0, 0.0, True, 0.3, 1.0),
    (NAN, 1.0, 0, 3, 1.0, 10.0, True, 0.3, NAN),
    (0.5, 1.0, 10, 0, 5.0, 10.0, False, 0.3, NAN),
]
IDS = [
    "within the SLO earns full quality and pays for idle CPU",
    "exactly at the SLO with every allocated core busy earns 1",
    "twice the SLO halves the quality",
    "borrowing CPU beyond the allocation caps utilisation at 1",
    "alpha 0 ignores utilisation",
    "alpha 1 ignores latency",
    "an idle tick with idle warm containers earns only the quality part",
    "an idle tick with nothing allocated earns 1",
    "work in progress without completions earns no reward",
    "an invalid row earns no reward",
]


@pytest.mark.parametrize("p99, slo, done, pending, used, alloc, valid, alpha, expected", CASES, ids=IDS)
def test_reward_matches_the_table(p99, slo, done, pending, used, alloc, valid, alpha, expected):
    r = reward_columns(
        p99_latency_s=np.array([p99]),
        slo_s=np.array([slo]),
        completions=np.array([done]),
        pending=np.array([pending]),
        cpu_used_core_s=np.array([used]),
        cpu_alloc_core_s=np.array([alloc]),
        valid=np.array([valid]),
        alpha=alpha,
    )
    if math.isnan(expected):
        assert np.isnan(r[0])
    else:
        assert r[0] == pytest.approx(expected)


def test_reward_of_a_snapshot_scores_each_row_and_stays_in_unit_interval():
    snapshot = make_snapshot(
        ("fast", "slow", "down"),
        p99_latency_s=np.array([0.2, 3.0, NAN]),
        completions=np.array([5, 5, 0]),
        arrivals=np.array([5, 5, 2]),
        cpu_used_core_s=np.array([1.0, 4.0, 0.0]),
        cpu_alloc_core_s=np.array([2.0, 4.0, 1.0]),
        valid=np.array([True, True, False]),
    )
    r = reward(snapshot.functions)
    assert r[0] == pytest.approx(0.7 + 0.3 * 0.5)
    assert r[1] == pytest.approx(0.7 / 3.0 + 0.3)
    assert np.isnan(r[2])
    assert np.all((r[:2] >= 0) & (r[:2] <= 1))


def test_quality_is_nan_without_a_latency_and_utilisation_is_one_without_an_allocation():
    assert np.isnan(quality(np.array([NAN]), np.array([1.0]))[0])
    assert utilisation(np.array([0.0]), np.array([0.0]))[0] == 1.0


@pytest.mark.parametrize("alpha", [-0.1, 1.5], ids=["negative", "above one"])
def test_reward_refuses_an_alpha_outside_the_unit_interval(alpha):
    with pytest.raises(ValueError, match="alpha"):
        reward(make_snapshot().functions, alpha)


def test_default_alpha_is_the_papers():
    assert DEFAULT_ALPHA == 0.3


def test_memory_reserves_the_invokers_cpu_in_proportion():
    # 4 containers of 256 MB on invokers of 8 cores and 2048 MB: 1 core each, 40 core-s over 10 s.
    reserved = memory_reserved_core_s(np.array([4.0, 0.0, NAN]), np.array([256.0, 256.0, 256.0]), 8 / 2048, 10.0)
    assert reserved.tolist() == [40.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="cores_per_mb"):
        memory_reserved_core_s(np.array([1.0]), np.array([256.0]), -1.0, 10.0)


def test_utilisation_multiplies_the_use_of_shares_and_of_reserved_cpu():
    # 10 core-s used by containers whose shares give 5 but whose memory holds 40: u = 1 x 0.25.
    assert utilisation(np.array([10.0]), np.array([5.0]), np.array([40.0]))[0] == pytest.approx(0.25)
    # Without the memory term the same pool looks fully used (capped at 1).
    assert utilisation(np.array([10.0]), np.array([5.0]))[0] == 1.0
    # Raising the shares costs as well: 10 / 50 x 10 / 40.
    assert utilisation(np.array([10.0]), np.array([50.0]), np.array([40.0]))[0] == pytest.approx(0.05)
    # A factor whose denominator is 0 is 1.
    assert utilisation(np.array([10.0]), np.array([0.0]), np.array([20.0]))[0] == pytest.approx(0.5)


def test_an_idle_pool_at_small_shares_costs_reward_only_when_memory_is_charged():
    snapshot = make_snapshot(
        ("lean", "bloated"),
        invokers=make_invokers(2, cores=8.0, memory_mb=2048.0),
        p99_latency_s=np.array([0.5, 0.5]),
        completions=np.array([10.0, 10.0]),
        containers=np.array([2.0, 20.0]),
        memory_mb=np.array([256.0, 256.0]),
        cpu_used_core_s=np.array([15.0, 15.0]),
        cpu_alloc_core_s=np.array([2.5, 25.0]),  # 1/8 core per container over 10 s
    )
    assert cores_per_mb(snapshot) == pytest.approx(16 / 4096)
    plain = reward(snapshot.functions)
    charged = reward(snapshot.functions, cores_per_mb=cores_per_mb(snapshot), tick_s=10.0)
    assert plain.tolist() == pytest.approx([1.0, 0.7 + 0.3 * 0.6])
    # Memory holds 1 core per container: 20 and 200 core-s, used 15.
    assert charged.tolist() == pytest.approx([0.7 + 0.3 * 0.75, 0.7 + 0.3 * 0.6 * 0.075])


# --- the operator's reward -----------------------------------------------------------------------

def operator_tick(violations, queued=(0.0, 0.0, 0.0), idle=(0.0, 0.0, 0.0), shares=(128.0, 128.0, 128.0)):
    """Three functions of 10 completions each; ``idle`` idle containers of 256 MB beside 2 busy ones."""
    from policies.types import FunctionStats

    names = ("a", "b", "c")
    return FunctionStats.empty_like(
        names, completions=np.full(3, 10.0), slo_violations=np.array(violations), queued=np.array(queued),
        containers=2.0 + np.array(idle), busy_containers=np.full(3, 2.0), memory_mb=np.full(3, 256.0),
        slo_s=np.ones(3), cpu_shares=np.array(shares))


def test_the_operator_reward_prices_late_work_per_average_work_and_idle_memory_per_invoker():
    from policies.reward import operator_reward

    f = operator_tick(violations=[0.0, 2.0, 0.0], queued=[0.0, 1.0, 0.0], idle=[0.0, 0.0, 4.0])
    r = operator_reward(f, 0.5, memory_scale_mb=2048.0)
    average = (30.0 + 1.0) / 3  # completions + queued, per function
    assert r[0] == 1.0
    assert r[1] == pytest.approx(1 - 0.5 * 3.0 / average)
    assert r[2] == pytest.approx(1 - 0.5 * 4 * 256.0 / 2048.0)


def test_asking_for_fewer_shares_does_not_raise_the_operator_reward():
    from policies.reward import operator_reward

    many, few = (operator_reward(operator_tick([1.0, 0.0, 0.0], shares=(s, s, s)), 0.3, memory_scale_mb=2048.0)
                 for s in (1024.0, 2.0))
    assert many.tolist() == few.tolist()


def test_the_cost_cap_decides_where_a_badly_served_function_stops_being_told_apart():
    from policies.reward import operator_reward

    f = operator_tick(violations=[30.0, 60.0, 0.0])  # costs well above 1 average function's work
    capped = operator_reward(f, 0.0, memory_scale_mb=2048.0)
    wide = operator_reward(f, 0.0, memory_scale_mb=2048.0, cost_cap=10.0)
    assert capped[0] == capped[1] == 0.0  # both at the cap: the same reward
    assert 0.0 < wide[1] < wide[0] < 1.0  # below a wider cap: the worse tick scores less
    with pytest.raises(ValueError, match="cost_cap"):
        operator_reward(f, 0.3, memory_scale_mb=2048.0, cost_cap=0.0)
