"""NAC-Linear and the shared-policy driver: transitions across ticks, batching, learners' maths."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from conftest import make_snapshot

from policies.nac import NACHyperparameters, NaturalActorCritic
from policies.registry import available, make
from policies.serverless_features import (
    HOLD_ACTION,
    N_ACTIONS,
    ActionSettings,
    FeatureSettings,
    action_features,
    state_features,
)
from policies.serverless_nac import (
    AgentSettings,
    KLStepSettings,
    LinearKLLearner,
    NaturalLinearLearner,
    SharedPolicyAgent,
    Transitions,
    adapt_kl_coef,
    linear_kl_actor_grad,
    log_softmax_columns,
    minibatch_slices,
)
from policies.types import UNMANAGED, Policy

MU = np.full(10, 0.1)


@dataclass
class RecordingLearner:
    """A fake learner: row i of the k-th probabilities call puts all mass on action (i + k) % 9."""

    probability_calls: list[tuple[int, ...]] = field(default_factory=list)
    batches: list[Transitions] = field(default_factory=list)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        k = len(self.probability_calls)
        self.probability_calls.append(x.shape)
        probs = np.zeros((len(x), N_ACTIONS))
        probs[np.arange(len(x)), (np.arange(len(x)) + k) % N_ACTIONS] = 1.0
        return probs

    def update(self, batch: Transitions) -> dict[str, float]:
        self.batches.append(batch)
        return {"fake/updates": float(len(self.batches))}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass

    def signature(self) -> dict[str, Any]:
        return {"learner": "recording"}


def driver(learner: Any, **agent: Any) -> SharedPolicyAgent:
    """The driver around ``learner``; rewards reach the learner uncentred unless a test asks."""
    agent = {"reward_centering": 0.0, **agent}
    return SharedPolicyAgent(
        "test",
        learner,
        features=FeatureSettings(),
        actions=ActionSettings(),
        agent=AgentSettings(**agent),
        seed=0,
        settings_record={},
    )


def tick(t: int, n: int = 3, **columns: Any):
    names = tuple(f"f{i}" for i in range(n))
    base = {
        "arrivals": np.arange(n, dtype=float) + 10.0 * t,
        "containers": np.full(n, 2.0),
        "cpu_shares": np.full(n, 256.0),
    }
    base.update(columns)
    return make_snapshot(names, time_s=10.0 * t, **base)


def run_tick(policy, snapshot, rewards, feedback_first: bool):
    if feedback_first:
        diagnostics = policy.feedback(snapshot, MU, rewards)
        decisions = policy.decide(snapshot, MU)
    else:
        decisions = policy.decide(snapshot, MU)
        diagnostics = policy.feedback(snapshot, MU, rewards)
    return decisions, diagnostics


def test_the_learner_sees_rewards_minus_their_running_mean() -> None:
    learner = RecordingLearner()
    policy = driver(learner, reward_centering=0.5)
    run_tick(policy, tick(1), np.full(3, np.nan), False)
    _, first = run_tick(policy, tick(2), np.array([0.2, 0.4, 0.6]), False)
    _, second = run_tick(policy, tick(3), np.array([1.0, 1.0, 1.0]), False)
    # The first batch sets r̄ to its mean (0.4); the second moves it half-way to 1.0 (0.7).
    assert first["reward_centre"] == pytest.approx(0.4) and second["reward_centre"] == pytest.approx(0.7)
    np.testing.assert_allclose(learner.batches[0].reward, [-0.2, 0.0, 0.2], atol=1e-12)
    np.testing.assert_allclose(learner.batches[1].reward, [0.3, 0.3, 0.3])
    # The diagnostics keep the raw reward.
    assert second["mean_reward"] == pytest.approx(1.0)
    # r̄ is part of the driver's state: a restored driver centres the next batch identically.
    restored = driver(RecordingLearner(), reward_centering=0.5)
    restored.load_state_dict(policy.state_dict())
    assert restored.reward_mean == pytest.approx(0.7) and restored.reward_batches == 2


@pytest.mark.parametrize(
    "feedback_first", [False, True], ids=["decide-then-feedback", "feedback-then-decide"]
)
def test_a_transition_pairs_last_ticks_state_and_action_with_this_ticks_reward_state_and_action(
    feedback_first: bool,
) -> None:
    learner = RecordingLearner()
    policy = driver(learner)
    s1, s2 = tick(1), tick(2)
    d1, diag1 = run_tick(policy, s1, np.full(3, np.nan), feedback_first)
    assert diag1["transitions"] == 0 and learner.batches == []
    d2, diag2 = run_tick(policy, s2, np.array([0.5, np.nan, 0.7]), feedback_first)

    (batch,) = learner.batches
    assert diag2["transitions"] == 2 and diag2["skipped_no_reward"] == 1
    assert diag2["mean_reward"] == pytest.approx(0.6)
    np.testing.assert_array_equal(batch.reward, [0.5, 0.7])
    np.testing.assert_array_equal(batch.x, state_features(s1, MU, FeatureSettings()).x[[0, 2]])
    np.testing.assert_array_equal(batch.x_next, state_features(s2, MU, FeatureSettings()).x[[0, 2]])
    # a is what tick 1 decided, a′ what tick 2 decided: the actions actually taken.
    np.testing.assert_array_equal(batch.action, d1.action[[0, 2]])
    np.testing.assert_array_equal(batch.action_next, d2.action[[0, 2]])
    assert not np.array_equal(batch.action, batch.action_next)
    # One probabilities call per tick, whichever comes first.
    assert learner.probability_calls == [(3, FeatureSettings().state_dim)] * 2


def test_functions_that_appear_later_or_lose_their_data_give_no_transition() -> None:
    learner = RecordingLearner()
    policy = driver(learner)
    policy.decide(tick(1, n=3), MU)
    policy.feedback(tick(1, n=3), MU, np.full(3, np.nan))
    s2 = tick(2, n=5, valid=np.array([True, False, True, True, True]))
    policy.decide(s2, MU)
    diagnostics = policy.feedback(s2, MU, np.array([0.1, 0.2, 0.3, 0.4, 0.5]))
    (batch,) = learner.batches
    np.testing.assert_array_equal(batch.reward, [0.1, 0.3])
    assert diagnostics["skipped_no_next_state"] == 1


@pytest.mark.parametrize(
    "feedback_first", [False, True], ids=["decide-then-feedback", "feedback-then-decide"]
)
def test_a_function_left_to_the_platform_as_idle_starts_no_transition(feedback_first: bool) -> None:
    # f0 had no arrivals (known size): its move was not applied, so (s, a) of f0 teaches nothing.
    learner = RecordingLearner()
    policy = driver(learner)
    sized = {"mean_exec_s": np.full(3, 0.5)}
    s1 = tick(1, arrivals=np.array([0.0, 5.0, 5.0]), **sized)
    s2 = tick(2, **sized)
    d1, _ = run_tick(policy, s1, np.full(3, np.nan), feedback_first)
    assert d1.action.tolist()[0] == -1 and d1.containers[0] == UNMANAGED
    _, diagnostics = run_tick(policy, s2, np.array([0.9, 0.5, 0.7]), feedback_first)
    (batch,) = learner.batches
    np.testing.assert_array_equal(batch.reward, [0.5, 0.7])
    assert diagnostics["transitions"] == 2


def test_the_smoothed_load_survives_functions_being_appended() -> None:
    policy = driver(RecordingLearner())
    sized = {"mean_exec_s": np.full(3, 1.0)}
    policy.decide(tick(1, arrivals=np.array([100.0, 100.0, 100.0]), **sized), MU)  # R = 10 each
    quiet = tick(2, n=4, arrivals=np.zeros(4), mean_exec_s=np.full(4, 1.0))
    load = policy._staffing_load(quiet)
    assert np.all(load[:3] > 0) and load[3] == 0  # the burst is remembered, the newcomer starts at 0


def test_feedback_twice_for_the_same_tick_learns_once() -> None:
    learner = RecordingLearner()
    policy = driver(learner)
    for t in (1, 2):
        policy.decide(tick(t), MU)
        policy.feedback(tick(t), MU, np.full(3, 0.5))
    policy.feedback(tick(2), MU, np.full(3, 0.5))
    assert len(learner.batches) == 1


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")], ids=["negative", "above-one", "nan"])
def test_a_reward_centring_rate_outside_the_unit_interval_is_rejected(rate: float) -> None:
    with pytest.raises(ValueError, match="reward_centering"):
        AgentSettings(reward_centering=rate)


def test_rewards_of_the_wrong_length_are_rejected() -> None:
    policy = driver(RecordingLearner())
    policy.decide(tick(1), MU)
    with pytest.raises(ValueError, match=r"rewards has shape \(2,\), expected \(3,\)"):
        policy.feedback(tick(1), MU, np.zeros(2))


def test_a_frozen_policy_decides_but_never_learns() -> None:
    learner = RecordingLearner()
    policy = driver(learner, frozen=True)
    for t in (1, 2, 3):
        decisions = policy.decide(tick(t), MU)
        assert policy.feedback(tick(t), MU, np.full(3, 0.9)) == {}
    assert learner.batches == [] and decisions.valid.all()


@pytest.mark.parametrize("name", ["nac-linear", "nac-nn"])
def test_one_decide_covers_ten_thousand_functions_with_one_policy_evaluation(name: str, monkeypatch) -> None:
    policy = make(name, seed=3)
    calls = []
    original = policy.learner.probabilities
    monkeypatch.setattr(policy.learner, "probabilities", lambda x: calls.append(x.shape) or original(x))
    n = 10_000
    valid = np.ones(n, dtype=bool)
    valid[::7] = False
    decisions = policy.decide(tick(1, n=n, valid=valid), MU)
    assert calls == [(n, FeatureSettings().state_dim)]
    assert len(decisions) == n and decisions.valid.tolist() == valid.tolist()
    assert set(np.unique(decisions.action[valid])) <= set(range(N_ACTIONS))


def test_both_learners_are_registered_and_satisfy_the_policy_protocol() -> None:
    assert {"nac-linear", "nac-nn"} <= set(available())
    for name, params in (("nac-linear", {}), ("nac-linear", {"mode": "kl"}), ("nac-nn", {})):
        assert isinstance(make(name, **params), Policy)


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
    from policies.nac import TransitionBatch

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
    ("coef", "kl", "expected"),
    [(1.0, 0.1, 2.0), (1.0, 0.001, 0.5), (1.0, 0.01, 1.0), (1.0, float("nan"), 1.0), (1e6, 1.0, 1e6)],
    ids=["overshoot-doubles", "undershoot-halves", "on-target-keeps", "nan-keeps", "bounded-above"],
)
def test_the_kl_coefficient_adapts_like_ppos_rule(coef: float, kl: float, expected: float) -> None:
    assert adapt_kl_coef(coef, kl, KLStepSettings()) == expected


@pytest.mark.parametrize(
    ("n", "count"),
    [(12, 3), (5, 1), (1, 1), (10_000, 8)],
    ids=["paper-12-functions", "one-minibatch", "single", "capped"],
)
def test_minibatches_are_the_papers_size_of_5_until_the_cap(n: int, count: int) -> None:
    slices = minibatch_slices(n, KLStepSettings())
    assert len(slices) == count
    assert sum(s.stop - s.start for s in slices) == n


def bandit_rewards(decisions) -> np.ndarray:
    """Reward 1 for the hold move and 0 otherwise: a contextual bandit every learner should solve."""
    return np.where(decisions.action == HOLD_ACTION, 1.0, 0.0)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("nac-linear", {"mode": "natural", "policy_lr": 0.5, "gamma": 0.0}),
        ("nac-linear", {"mode": "kl", "learning_rate": 0.05, "gamma": 0.0}),
        ("nac-nn", {"learning_rate": 0.01, "gamma": 0.0}),
    ],
    ids=["linear-natural", "linear-kl", "nn"],
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
