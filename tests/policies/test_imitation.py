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
    likeliest_temperature,
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


def test_a_stronger_penalty_keeps_what_the_labels_share_and_drops_what_tells_a_few_apart():
    """Most states follow one signal; a few are labelled against it by a feature only they have. The
    default penalty learns the exception, a strong one keeps only the broad rule — and so does not
    carry the exception to states that share the rare feature by chance."""
    rng = np.random.default_rng(5)
    n = 4000
    signal, rare = rng.random(n), (rng.random(n) < 0.02).astype(float)
    x = np.column_stack([np.ones(n), signal, rare]) / np.sqrt(3.0)
    labels = np.where(rare > 0, 0, (signal > 0.5).astype(int))
    loose, _ = fit_linear_policy(x, labels, 2, np.random.default_rng(1))
    tight, _ = fit_linear_policy(x, labels, 2, np.random.default_rng(1), l2=1.0)
    assert np.linalg.norm(tight) < 0.5 * np.linalg.norm(loose)
    exception = np.array([[1.0, 0.9, 1.0]]) / np.sqrt(3.0)
    assert np.argmax(exception @ loose.T) == 0 and np.argmax(exception @ tight.T) == 1
    costs_tight, _ = fit_linear_policy_to_costs(x, np.eye(2)[1 - labels], np.random.default_rng(1), l2=1.0)
    costs_loose, _ = fit_linear_policy_to_costs(x, np.eye(2)[1 - labels], np.random.default_rng(1))
    assert np.linalg.norm(costs_tight) < 0.5 * np.linalg.norm(costs_loose)


def test_the_agent_fits_with_its_own_penalty_and_refuses_a_bad_one():
    from learner_fixtures import busy_tick

    from policies.registry import make

    for name in ("nac-linear", "nac-nn"):
        norms = []
        for l2 in (None, 1.0):
            policy = make(name, seed=3, scheme="staffing", fit_l2=l2)
            x, _ = policy._state(busy_tick(2), np.full(10, 0.1))
            policy.imitate(np.vstack([x] * 50), np.tile(np.arange(len(x)) % 3, 50))
            weights = (policy.learner.core.theta if name == "nac-linear"
                       else np.concatenate([p.detach().numpy().ravel() for p in policy.learner.actor.parameters()]))
            norms.append(np.linalg.norm(weights))
        assert norms[1] < norms[0], name
    for bad in (-1.0, float("nan"), "much", True):
        with pytest.raises(ValueError, match="fit_l2"):
            make("nac-linear", seed=3, scheme="staffing", fit_l2=bad)
    for flag in ("fit_temperature", "history_features"):
        with pytest.raises(ValueError, match=f"AgentSettings.{flag}='maybe': must be true or false"):
            make("nac-linear", seed=3, scheme="staffing", **{flag: "maybe"})


def test_the_likeliest_temperature_keeps_the_ranking_and_restores_the_firmness_a_penalty_took():
    rng = np.random.default_rng(2)
    x, labels = labelled_states(seed=4)
    noisy = np.where(rng.random(len(labels)) < 0.1, (labels + 1) % 3, labels)
    theta, _ = fit_linear_policy(x, noisy, 3, np.random.default_rng(1), l2=1.0)
    logits = x @ theta.T
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    scale = likeliest_temperature(log_p, noisy)

    def likelihood(s):
        z = s * log_p
        return np.mean(z[np.arange(len(z)), noisy] - np.log(np.exp(z).sum(axis=1)))

    assert scale > 2.0  # the strong penalty had flattened the policy
    assert likelihood(scale) > max(likelihood(scale * 1.05), likelihood(scale / 1.05), likelihood(1.0))
    assert np.array_equal(np.argmax(scale * log_p, axis=1), np.argmax(log_p, axis=1))
    separable = np.log(np.array([[0.6, 0.4], [0.3, 0.7]]))
    assert likeliest_temperature(separable, np.array([0, 1]), largest=50.0) == pytest.approx(50.0)


def test_a_fitted_temperature_sharpens_each_learner_without_changing_its_choice():
    from learner_fixtures import busy_tick

    from policies.registry import make

    for name in ("nac-linear", "nac-nn"):
        entropies, choices = [], []
        for calibrated in (False, True):
            policy = make(name, seed=3, scheme="staffing", fit_l2=0.1, fit_temperature=calibrated)
            x, _ = policy._state(busy_tick(2), np.full(10, 0.1))
            policy.imitate(np.vstack([x] * 50), np.tile(np.arange(len(x)) % 3, 50))
            probs = policy.learner.probabilities(x)
            entropies.append(float(-(probs * np.log(probs)).sum(axis=1).mean()))
            choices.append(np.argmax(probs, axis=1))
        assert entropies[1] < entropies[0], name
        assert np.array_equal(choices[0], choices[1]), name
    with pytest.raises(ValueError, match="fit_temperature needs fit_target=label"):
        make("nac-linear", seed=3, scheme="staffing", fit_temperature=True, fit_target="cost")


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
