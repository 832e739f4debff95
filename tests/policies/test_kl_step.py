"""The KL-penalised step shared by NAC-Linear's kl mode and NAC-NN: β's rule, minibatches, helpers."""

from __future__ import annotations

import numpy as np
import pytest

from policies.kl_step import (
    Adam,
    KLStepSettings,
    adapt_kl_coef,
    clip_grad_norm,
    explained_variance,
    log_softmax_columns,
    minibatch_slices,
    soft_advantage,
    softmax_rows,
)


@pytest.mark.parametrize(
    ("coef", "kl", "expected"),
    [(1.0, 0.1, 2.0), (1.0, 0.001, 0.5), (1.0, 0.01, 1.0), (1.0, float("nan"), 1.0), (1e6, 1.0, 1e6)],
    ids=["overshoot-doubles", "undershoot-halves", "on-target-keeps", "nan-keeps", "bounded-above"],
)
def test_the_kl_coefficient_adapts_like_ppos_rule(coef: float, kl: float, expected: float) -> None:
    assert adapt_kl_coef(coef, kl, KLStepSettings()) == expected


@pytest.mark.parametrize("kl", [1e-9, 0.01, 5.0])
def test_a_factor_of_one_holds_the_kl_coefficient_whatever_the_step(kl: float) -> None:
    held = KLStepSettings(kl_coef_init=100.0, kl_adapt_factor=1.0)
    assert adapt_kl_coef(100.0, kl, held) == 100.0


@pytest.mark.parametrize(
    ("n", "count"),
    [(12, 3), (5, 1), (1, 1), (10_000, 8)],
    ids=["paper-12-functions", "one-minibatch", "single", "capped"],
)
def test_minibatches_are_the_papers_size_of_5_until_the_cap(n: int, count: int) -> None:
    slices = minibatch_slices(n, KLStepSettings())
    assert len(slices) == count
    assert sum(s.stop - s.start for s in slices) == n


@pytest.mark.parametrize(
    ("field", "value"),
    [("learning_rate", 0.0), ("gamma", 1.0), ("minibatch_size", 0), ("kl_adapt_factor", 0.5)],
    ids=["zero-learning-rate", "gamma-one", "empty-minibatch", "factor-below-one"],
)
def test_kl_step_settings_out_of_range_are_rejected_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"KLStepSettings.{field}={value}"):
        KLStepSettings(**{field: value})


def test_the_column_log_softmax_is_normalised_and_stable_for_huge_logits() -> None:
    logits_a_n = np.array([[1000.0, 0.0], [999.0, 0.0], [0.0, 0.0]])
    logp = log_softmax_columns(logits_a_n)
    np.testing.assert_allclose(np.exp(logp).sum(axis=0), 1.0)
    assert np.isfinite(logp).all()
    x = np.array([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(softmax_rows(x, np.zeros((3, 2))), np.full((2, 3), 1 / 3))


def test_the_soft_advantage_of_a_uniform_policy_is_q_minus_its_mean() -> None:
    q_a_n = np.array([[1.0, 0.0], [0.0, 2.0], [2.0, 1.0]])
    p_a_n = np.full((3, 2), 1 / 3)
    action_n = np.array([0, 1])
    # With π uniform, −λ log π is the same for every action and cancels.
    adv = soft_advantage(q_a_n, p_a_n, np.log(p_a_n), action_n, entropy_reg=0.5)
    np.testing.assert_allclose(adv, [1.0 - 1.0, 2.0 - 1.0])


def test_explained_variance_is_one_for_a_perfect_fit_and_nan_for_a_constant_target() -> None:
    target = np.array([1.0, 2.0, 3.0])
    assert explained_variance(target, target) == 1.0
    assert explained_variance(np.zeros(3), target) == 0.0
    assert np.isnan(explained_variance(target, np.ones(3)))


def test_adam_moves_against_the_gradient_by_the_learning_rate_on_its_first_step() -> None:
    params = np.array([1.0, -1.0])
    adam = Adam(size=2, learning_rate=0.1)
    adam.step(params, np.array([3.0, -0.5]))
    np.testing.assert_allclose(params, [0.9, -0.9], atol=1e-7)
    assert adam.steps == 1


def test_a_gradient_longer_than_the_limit_is_scaled_to_it_and_a_shorter_one_is_kept() -> None:
    np.testing.assert_allclose(clip_grad_norm(np.array([3.0, 4.0]), 1.0), [0.6, 0.8])
    np.testing.assert_array_equal(clip_grad_norm(np.array([0.3, 0.4]), 1.0), [0.3, 0.4])
