"""The population estimator: histogram of invoker utilisation, smoothed on the slow timescale."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_invokers

from controller.estimator import PopulationEstimator, smooth, utilisation_histogram


def _invokers(util: list[float], valid: list[bool] | None = None, tick_s: float = 10.0):
    n = len(util)
    return make_invokers(
        n,
        cores=4.0,
        cpu_used_core_s=np.array(util) * 4.0 * tick_s,
        valid=np.array(valid if valid is not None else [True] * n),
    )


@pytest.mark.parametrize(
    "util, bins, expected",
    [
        ([0.05, 0.15, 0.95, 1.0], 10, [0.25, 0.25, 0, 0, 0, 0, 0, 0, 0, 0.5]),
        ([0.0, 0.49, 0.5, 0.99], 2, [0.5, 0.5]),
        ([np.nan, 0.3], 2, [1.0, 0.0]),
    ],
    ids=["full utilisation falls in the last bin", "bin edges go up", "nan is ignored"],
)
def test_histogram_counts_shares_of_invokers(util, bins, expected):
    assert utilisation_histogram(np.array(util), bins) == pytest.approx(expected)


def test_histogram_of_no_finite_value_is_none():
    assert utilisation_histogram(np.array([np.nan, np.nan]), 4) is None


def test_first_observation_replaces_the_uniform_prior_and_later_ones_are_blended_with_beta():
    estimator = PopulationEstimator(bins=2, beta=0.25)
    assert estimator.mu == pytest.approx([0.5, 0.5])
    assert estimator.update(_invokers([0.1, 0.2]), 10.0) == pytest.approx([1.0, 0.0])
    assert estimator.update(_invokers([0.9, 0.9]), 10.0) == pytest.approx([0.75, 0.25])
    assert estimator.update(_invokers([0.9, 0.9]), 10.0) == pytest.approx([0.5625, 0.4375])


def test_invalid_invokers_are_left_out_of_the_observation():
    estimator = PopulationEstimator(bins=2, beta=1.0)
    mu = estimator.update(_invokers([0.9, 0.1, 0.1], valid=[True, False, False]), 10.0)
    assert mu == pytest.approx([0.0, 1.0])


def test_a_tick_without_a_valid_invoker_leaves_mu_unchanged():
    estimator = PopulationEstimator(bins=2, beta=0.5)
    before = estimator.update(_invokers([0.9]), 10.0).copy()
    after = estimator.update(_invokers([0.1], valid=[False]), 10.0)
    assert after == pytest.approx(before)


def test_returned_mu_is_read_only_and_sums_to_one():
    mu = PopulationEstimator(bins=5).update(_invokers([0.3, 0.7]), 10.0)
    assert mu.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mu[0] = 1.0


def test_smooth_without_an_observation_returns_mu():
    mu = np.array([0.2, 0.8])
    assert smooth(mu, None, 0.5) is mu


@pytest.mark.parametrize("bins, beta", [(1, 0.1), (10, 0.0), (10, 1.5)], ids=["one bin", "beta zero", "beta above one"])
def test_estimator_refuses_bad_parameters(bins, beta):
    with pytest.raises(ValueError):
        PopulationEstimator(bins=bins, beta=beta)
