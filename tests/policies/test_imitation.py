"""Fitting a policy to labelled states: the supervised step of a fitted warm start."""

from __future__ import annotations

import numpy as np
import pytest

from policies.imitation import (
    check_costs,
    cost_rows,
    fit_linear_policy,
    fit_linear_policy_to_costs,
    imitation_rows,
)


def labelled_states(n=3000, seed=0):
    """States with a bias entry and two signals; the label is 0, 1 or 2 by which signal is larger
    (a rule a linear policy can represent), and the rows are scaled to norm <= 1 as x(s) is."""
    rng = np.random.default_rng(seed)
    signals = rng.random((n, 2))
    x = np.column_stack([np.ones(n), signals]) / np.sqrt(3.0)
    labels = np.where(signals[:, 0] > signals[:, 1] + 0.2, 0, np.where(signals[:, 1] > signals[:, 0] + 0.2, 1, 2))
    return x, labels


def test_the_linear_fit_recovers_a_labelling_its_policy_can_represent():
    x, labels = labelled_states()
    theta, accuracy = fit_linear_policy(x, labels, 4, np.random.default_rng(1))
    assert theta.shape == (4, 3)
    predicted = np.argmax(x @ theta.T, axis=1)
    assert accuracy == pytest.approx(np.mean(predicted == labels)) and accuracy > 0.9
    assert not np.any(predicted == 3)  # an action no state was labelled with is never the most probable


def test_each_learner_becomes_the_fitted_policy():
    from learner_fixtures import busy_tick

    from policies.registry import make

    for name in ("nac-linear", "nac-nn"):
        policy = make(name, seed=3, scheme="staffing")
        x, _ = policy._state(busy_tick(2), np.full(10, 0.1))
        rows = np.vstack([x] * 50)
        labels = np.tile(np.arange(len(x)) % 3, 50)  # each of the tick's functions its own level
        accuracy = policy.imitate(rows, labels)
        probs = policy.learner.probabilities(x)
        assert accuracy > 0.5, name
        assert np.mean(np.argmax(probs, axis=1) == labels[: len(x)]) == pytest.approx(accuracy), name


def test_bad_labels_are_refused_with_the_reason():
    x, labels = labelled_states(10)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="one action per state"):
        imitation_rows(x, labels[:5], rng)
    with pytest.raises(ValueError, match=">= 0"):
        imitation_rows(x, -labels - 1, rng)
    with pytest.raises(ValueError, match="at least one"):
        imitation_rows(x[:0], labels[:0], rng)
    with pytest.raises(ValueError, match="< 2"):
        fit_linear_policy(x, labels, 2, rng)
    kept, kept_labels = imitation_rows(x, labels, rng, max_rows=4)
    assert len(kept) == 4 and len(kept_labels) == 4


def test_a_cost_fit_follows_what_the_choice_costs_where_a_label_fit_counts_heads():
    # One state, two kinds of function in it: half nearly indifferent (action 0 cheaper by 0.01), half
    # for which action 0 is far worse. The labels split evenly; the expected cost says take action 1.
    n = 400
    x = np.tile(np.array([[1.0, 0.5]]) / np.sqrt(1.25), (n, 1))
    costs = np.where(np.arange(n)[:, None] % 2 == 0, [[0.0, 0.01]], [[5.0, 0.0]])
    rng = np.random.default_rng(0)
    theta_l, _ = fit_linear_policy(x, np.argmin(costs, axis=1), 2, rng)
    theta_c, accuracy = fit_linear_policy_to_costs(x, costs, rng)

    def p1(theta):
        logits = x[0] @ theta.T
        return float(np.exp(logits[1]) / np.exp(logits).sum())

    assert abs(p1(theta_l) - 0.5) < 0.05 and p1(theta_c) > 0.9
    assert accuracy == pytest.approx(0.5)  # its most probable action is the cheapest in half the states


def test_a_cost_fit_recovers_a_rule_its_policy_can_represent():
    x, labels = labelled_states()
    costs = np.ones((len(x), 4))
    costs[np.arange(len(x)), labels] = 0.0
    theta, accuracy = fit_linear_policy_to_costs(x, costs, np.random.default_rng(1))
    assert theta.shape == (4, 3) and accuracy > 0.9
    assert accuracy == pytest.approx(np.mean(np.argmax(x @ theta.T, axis=1) == labels))


def test_each_learner_takes_the_cheapest_action_after_a_cost_fit():
    from learner_fixtures import busy_tick

    from policies.registry import make

    for name in ("nac-linear", "nac-nn"):
        policy = make(name, seed=3, scheme="staffing")
        x, _ = policy._state(busy_tick(2), np.full(10, 0.1))
        rows = np.vstack([x] * 50)
        cheapest = np.tile(np.arange(len(x)) % 3, 50)
        costs = np.ones((len(rows), policy.agent.n_actions))
        costs[np.arange(len(rows)), cheapest] = 0.0
        accuracy = policy.imitate_costs(rows, costs)
        probs = policy.learner.probabilities(x)
        assert accuracy > 0.5, name
        assert np.mean(np.argmax(probs, axis=1) == cheapest[: len(x)]) == pytest.approx(accuracy), name
        with pytest.raises(ValueError, match="one cost per action"):
            policy.imitate_costs(rows, costs[:, :3])


def test_bad_costs_are_refused_with_the_reason():
    x, _ = labelled_states(10)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="costs \\(N, A\\)"):
        cost_rows(x, np.zeros((5, 3)), rng)
    with pytest.raises(ValueError, match="finite"):
        cost_rows(x, np.full((10, 3), np.inf), rng)
    with pytest.raises(ValueError, match="at least one"):
        cost_rows(x[:0], np.zeros((0, 3)), rng)
    with pytest.raises(ValueError, match="one cost per action \\(4\\)"):
        check_costs(np.zeros((10, 3)), 4)
