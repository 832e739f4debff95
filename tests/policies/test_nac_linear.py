"""NAC-Linear: its modes and parameters, the natural adapter over the core, the linear KL learner's maths."""

from __future__ import annotations

import numpy as np
import pytest
from learner_fixtures import MU, bandit_rewards, tick

from policies.agent import Transitions
from policies.kl_step import KLStepSettings, log_softmax_columns
from policies.nac import NACHyperparameters, NaturalActorCritic, TransitionBatch
from policies.nac_linear import LinearKLLearner, NaturalLinearLearner, linear_kl_actor_grad
from policies.registry import make
from policies.serverless_features import (
    HOLD_ACTION,
    N_ACTIONS,
    FeatureSettings,
    action_features,
    state_features,
)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mode": "ppo"}, "mode='ppo'"),
        ({"learning_rate": 0.1}, "unknown parameter 'learning_rate'"),
        ({"mode": "kl", "policy_lr": 0.1}, "unknown parameter 'policy_lr'"),
        ({"n_features": 3}, "unknown parameter"),
    ],
    ids=[
        "unknown-mode",
        "kl-parameter-in-natural-mode",
        "natural-parameter-in-kl-mode",
        "derived-core-field",
    ],
)
def test_nac_linear_rejects_parameters_that_do_not_belong_to_its_mode(params: dict, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        make("nac-linear", **params)


def test_exact_shift_reaches_the_core_and_is_recorded_only_in_natural_mode() -> None:
    policy = make("nac-linear", exact_shift=True)
    assert policy.learner.core.hp.exact_shift is True
    assert policy.settings_record["learner"]["exact_shift"] is True
    assert make("nac-linear").learner.core.hp.exact_shift is False
    with pytest.raises((TypeError, ValueError), match="unknown parameter 'exact_shift'"):
        make("nac-linear", mode="kl", exact_shift=True)


def test_the_state_critic_reaches_the_core_is_recorded_and_checkpointed_only_when_on() -> None:
    policy = make("nac-linear", state_critic=True)
    assert policy.learner.core.hp.state_critic is True
    assert policy.settings_record["learner"]["state_critic"] is True
    assert policy.learner.core.v.shape == (policy.learner.state_dim,)
    assert "learner/v" in policy.state_dict()
    assert "learner/v" not in make("nac-linear").state_dict()
    with pytest.raises((TypeError, ValueError), match="unknown parameter 'state_critic'"):
        make("nac-linear", mode="kl", state_critic=True)


def test_the_natural_adapter_gives_the_cores_own_probabilities_without_building_features() -> None:
    rng = np.random.default_rng(0)
    d = FeatureSettings().state_dim
    learner = NaturalLinearLearner.create(d, {}, np.random.default_rng(1))
    learner.core.theta = rng.normal(size=N_ACTIONS * d)
    x = rng.random((50, d)) / np.sqrt(d)
    np.testing.assert_allclose(
        learner.probabilities(x), learner.core.probabilities(action_features(x)), rtol=1e-12
    )


def test_the_natural_adapter_feeds_the_core_the_same_update_it_would_get_from_dense_features() -> None:
    rng = np.random.default_rng(0)
    d = 4
    x, x_next = rng.random((30, d)) / 2, rng.random((30, d)) / 2
    a, a_next = rng.integers(0, N_ACTIONS, 30), rng.integers(0, N_ACTIONS, 30)
    r = rng.random(30)
    learner = NaturalLinearLearner.create(d, {"policy_lr": 0.5}, np.random.default_rng(1))
    reference = NaturalActorCritic(
        NACHyperparameters(n_features=N_ACTIONS * d, n_actions=N_ACTIONS, policy_lr=0.5),
        np.random.default_rng(1),
    )
    probs = learner.probabilities(x)
    learner.update(Transitions(x, a, r, x_next, a_next, probs, learner.probabilities(x_next)))
    reference.update(TransitionBatch(action_features(x), a, r, action_features(x_next), a_next))
    np.testing.assert_allclose(learner.core.theta, reference.theta)
    assert np.linalg.norm(learner.core.theta) > 0


def test_the_analytic_kl_surrogate_gradient_matches_autograd() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    m, d = 40, 6
    theta = rng.normal(size=(N_ACTIONS, d))
    x = rng.random((m, d))
    a = rng.integers(0, N_ACTIONS, m)
    adv = rng.normal(size=m)
    logp_old = log_softmax_columns(rng.normal(size=(N_ACTIONS, d)) @ x.T)
    grad, loss = linear_kl_actor_grad(theta, x, a, adv, np.exp(logp_old), logp_old, 0.7)

    t = torch.tensor(theta, requires_grad=True)
    logp = torch.log_softmax(t @ torch.tensor(x).T, dim=0)
    lo = torch.tensor(logp_old)
    ratio = torch.exp(logp[a, np.arange(m)] - lo[a, np.arange(m)])
    kl = torch.sum(torch.exp(lo) * (lo - logp), dim=0)
    reference = -torch.mean(ratio * torch.tensor(adv)) + 0.7 * torch.mean(kl)
    reference.backward()
    assert loss == pytest.approx(reference.item(), rel=1e-10)
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_the_kl_critic_reaches_the_soft_q_fixed_point_of_a_two_state_cycle() -> None:
    # States s0 -> s1 -> s0 whatever the action; uniform policy; r(s, a) = 0.1·a in s0, 1 in s1.
    # Shifted soft Q (Algorithm 2's target): q(s, a) = r(s, a) − λ log(1/9) + γ m(s′), m = mean_a q.
    gamma, lam = 0.5, 0.1
    c = lam * np.log(N_ACTIONS)
    r = np.array([0.1 * np.arange(N_ACTIONS), np.ones(N_ACTIONS)])
    rbar = r.mean(axis=1)
    m0 = (rbar[0] + c + gamma * (rbar[1] + c)) / (1 - gamma**2)
    m1 = rbar[1] + c + gamma * m0
    q_true = np.array([r[0] + c + gamma * m1, r[1] + c + gamma * m0])

    states = np.eye(2)
    rows = [(s, a, a2) for s in (0, 1) for a in range(N_ACTIONS) for a2 in range(N_ACTIONS)]
    s_idx, a_idx, a2_idx = (np.array(col) for col in zip(*rows))
    uniform = np.full((len(rows), N_ACTIONS), 1.0 / N_ACTIONS)
    batch = Transitions(states[s_idx], a_idx, r[s_idx, a_idx], states[1 - s_idx], a2_idx, uniform, uniform)
    # One full-batch step per epoch: the batch holds every (s, a, a′) once, so its mean TD direction
    # is the exact expected one and the iteration has q_true as its fixed point.
    settings = KLStepSettings(learning_rate=0.05, gamma=gamma, entropy_reg=lam, max_minibatches_per_epoch=1)
    learner = LinearKLLearner(state_dim=2, settings=settings, rng=np.random.default_rng(0))
    for _ in range(100):
        learner.update(batch)
    np.testing.assert_allclose(learner.psi.T, q_true, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("nac-linear", {"mode": "natural", "policy_lr": 0.5, "gamma": 0.0}),
        ("nac-linear", {"mode": "natural", "policy_lr": 0.5, "gamma": 0.0, "exact_shift": True}),
        ("nac-linear", {"mode": "natural", "policy_lr": 0.5, "gamma": 0.0, "state_critic": True}),
        ("nac-linear", {"mode": "kl", "learning_rate": 0.05, "gamma": 0.0}),
        ("nac-nn", {"learning_rate": 0.01, "gamma": 0.0}),
    ],
    ids=["linear-natural", "linear-natural-exact-shift", "linear-natural-state-critic", "linear-kl", "nn"],
)
def test_each_learner_learns_to_prefer_the_rewarded_move(name: str, params: dict) -> None:
    policy = make(name, seed=11, **params)
    rewards = np.full(40, np.nan)
    for t in range(1, 31):
        snapshot = tick(t, n=40)
        decisions = policy.decide(snapshot, MU)
        policy.feedback(snapshot, MU, rewards)
        rewards = bandit_rewards(decisions)
    probs = policy.learner.probabilities(state_features(tick(31, n=40), MU, FeatureSettings()).x)
    assert probs[:, HOLD_ACTION].mean() > 0.5
