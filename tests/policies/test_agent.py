"""The shared-policy driver: transitions across ticks, reward centring, diagnostics, one call per tick."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from learner_fixtures import MU, run_tick, tick

from policies.agent import (
    AGENT_DIAGNOSTICS,
    AgentSettings,
    AgentStep,
    SharedPolicyAgent,
    Transitions,
    pair_transitions,
)
from policies.registry import make
from policies.serverless_features import N_ACTIONS, ActionSettings, FeatureSettings, state_features
from policies.types import UNMANAGED


@dataclass
class RecordingLearner:
    """A fake learner: row i of the k-th probabilities call puts all mass on action (i + k) % 9."""

    diagnostics: tuple[str, ...] = ("fake/updates",)

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


def test_the_driver_declares_its_own_diagnostics_then_the_learners() -> None:
    assert driver(RecordingLearner()).diagnostics == (*AGENT_DIAGNOSTICS, "fake/updates")


def test_declared_diagnostics_that_miss_a_returned_key_are_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"policy 'test'.*missing \['fake/updates'\]"):
        SharedPolicyAgent(
            "test",
            RecordingLearner(),
            features=FeatureSettings(),
            actions=ActionSettings(),
            agent=AgentSettings(),
            seed=0,
            settings_record={},
            diagnostics=AGENT_DIAGNOSTICS,
        )


def test_the_pending_batch_is_what_feedback_hands_the_learner_and_changes_nothing() -> None:
    learner = RecordingLearner()
    policy = driver(learner)
    with pytest.raises(ValueError, match="decide has not run on two ticks yet"):
        policy.pending_batch(np.zeros(3))
    policy.decide(tick(1), MU)
    policy.feedback(tick(1), MU, np.full(3, np.nan))
    policy.decide(tick(2), MU)
    rewards = np.array([0.5, np.nan, 0.7])
    before = policy.state_dict()
    batch = policy.pending_batch(rewards)
    assert policy.state_dict().keys() == before.keys() and learner.batches == []
    policy.feedback(tick(2), MU, rewards)
    (fed,) = learner.batches
    for name in ("x", "action", "reward", "x_next", "action_next", "probs", "probs_next"):
        np.testing.assert_array_equal(getattr(batch, name), getattr(fed, name), err_msg=name)


def step(time_s: float, usable: list[bool], acted: list[bool] | None = None) -> AgentStep:
    """A tick of len(usable) functions whose row i has state (i, time_s) and took action i."""
    n = len(usable)
    return AgentStep(
        time_s=time_s,
        names=tuple(f"f{i}" for i in range(n)),
        x=np.column_stack([np.arange(n, dtype=float), np.full(n, time_s)]),
        usable=np.array(usable),
        actions=np.arange(n),
        probs=np.full((n, N_ACTIONS), 1.0 / N_ACTIONS),
        acted=None if acted is None else np.array(acted),
    )


def test_pairing_keeps_rows_with_a_decision_a_reward_and_a_next_state_and_counts_the_others() -> None:
    previous = step(10.0, [True, True, True, True, False], acted=[True, True, True, False, True])
    current = step(20.0, [True, True, False, True, True, True])  # one function more
    rewards = np.array([0.1, np.nan, 0.3, 0.4, 0.5, 0.6])
    batch, no_reward, no_next = pair_transitions(previous, current, rewards)
    # Row 0 pairs; 1 has no reward; 2 no usable next state; 3 was not acted on; 4 was not usable;
    # 5 did not exist at the previous tick.
    assert (len(batch), no_reward, no_next) == (1, 1, 1)
    assert batch.reward.tolist() == [0.1] and batch.action.tolist() == [0]
    np.testing.assert_array_equal(batch.x, [[0.0, 10.0]])
    np.testing.assert_array_equal(batch.x_next, [[0.0, 20.0]])
