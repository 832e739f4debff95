"""The reward r = (1 − α)q + αu: every case of the table in policies/reward.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_snapshot

from policies.reward import DEFAULT_ALPHA, quality, reward, reward_columns, utilisation

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
