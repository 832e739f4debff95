"""The Learner protocol and the registry's answer to "does this policy learn?", for every registered name.

A learned policy declares in ``diagnostics`` every key its ``feedback`` may return in any mode its
factory builds: ``nac-linear`` declares the NAC core's keys (``mode="natural"``) and the KL step's
(``mode="kl"``), and returns only one of the two sets. So the coverage test drives every mode of a
learner (``learner_fixtures.LEARNER_MODES``) and asks that the keys seen over all of them together
cover what was declared, and that each mode's keys alone are declared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from learner_fixtures import MU, busy_rewards, busy_tick, modes_of, tick

from controller.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from policies import registry
from policies.registry import available, learned_policies, learns, make, register
from policies.types import Learner, Policy, is_learner

DATA = Path(__file__).parent / "data"
LEARNED = learned_policies()
BASELINES = tuple(name for name in available() if name not in LEARNED)
LEARNER_CASES = [(name, params) for name in LEARNED for params in modes_of(name)]
LEARNER_IDS = [name + (f"-{p['mode']}" if "mode" in p else "") for name, p in LEARNER_CASES]


def drive(policy: Policy, ticks: range) -> list[tuple[list[int], dict[str, float]]]:
    """Decide, then feed back, over ``ticks`` of six busy functions; each tick's actions and diagnostics."""
    out = []
    for t in ticks:
        actions = policy.decide(busy_tick(t), MU).action.tolist()
        out.append((actions, dict(policy.feedback(busy_tick(t), MU, busy_rewards(t)))))
    return out


def diagnostics_of(policy: Policy, ticks: range) -> list[dict[str, float]]:
    """The diagnostics of every tick of :func:`drive`."""
    return [diagnostics for _, diagnostics in drive(policy, ticks)]


def keys_seen(name: str, params: dict[str, Any]) -> set[str]:
    """Every diagnostic key a fresh policy returned over five ticks, including the first (no transition)."""
    return set().union(*diagnostics_of(make(name, seed=1, **params), range(1, 6)))


def test_the_learners_are_registered_as_learning_and_listed_sorted() -> None:
    assert {"nac-linear", "nac-nn"} <= set(LEARNED)
    assert list(LEARNED) == sorted(LEARNED)
    assert all(learns(name) for name in LEARNED)


@pytest.mark.parametrize(("name", "params"), LEARNER_CASES, ids=LEARNER_IDS)
def test_every_key_feedback_returns_is_declared_in_diagnostics(name: str, params: dict) -> None:
    policy = make(name, seed=1, **params)
    for t, diagnostics in enumerate(diagnostics_of(policy, range(1, 6)), start=1):
        undeclared = set(diagnostics) - set(policy.diagnostics)
        assert not undeclared, f"tick {t}: {sorted(undeclared)} not in {name}.diagnostics"
        assert all(isinstance(value, float) for value in diagnostics.values())


@pytest.mark.parametrize("name", LEARNED)
def test_the_keys_returned_over_every_mode_cover_the_declared_diagnostics(name: str) -> None:
    declared = make(name).diagnostics
    seen = set().union(*(keys_seen(name, params) for params in modes_of(name)))
    assert len(set(declared)) == len(declared), "a key is declared twice"
    assert set(declared) == seen


@pytest.mark.parametrize("name", LEARNED)
def test_a_learner_declares_the_same_diagnostics_in_every_mode(name: str) -> None:
    # An exporter declares its series from the name, before it knows the mode.
    assert len({make(name, **params).diagnostics for params in modes_of(name)}) == 1


def test_the_reward_centre_is_declared_by_every_learner() -> None:
    for name in LEARNED:
        assert "reward_centre" in make(name).diagnostics


@pytest.mark.parametrize(("name", "params"), LEARNER_CASES, ids=LEARNER_IDS)
def test_every_learner_satisfies_the_learner_protocol(name: str, params: dict) -> None:
    policy = make(name, seed=4, **params)
    assert is_learner(policy) and isinstance(policy, Learner) and isinstance(policy, Policy)
    assert policy.seed == 4
    assert policy.settings_record and json.dumps(dict(policy.settings_record))
    assert policy.checkpoint_signature()["policy"] == name


@pytest.mark.parametrize("name", BASELINES)
def test_no_baseline_is_a_learner(name: str) -> None:
    policy = make(name)
    assert isinstance(policy, Policy) and not is_learner(policy)


@pytest.mark.parametrize("name", available())
def test_the_registry_says_a_policy_learns_exactly_when_it_builds_a_learner(name: str) -> None:
    assert learns(name) == is_learner(make(name))


def test_an_unknown_name_is_refused_by_learns_with_the_known_names_as_make_refuses_it() -> None:
    with pytest.raises(KeyError) as by_learns:
        learns("sarsa")
    with pytest.raises(KeyError) as by_make:
        make("sarsa")
    assert str(by_learns.value) == str(by_make.value)
    assert "unknown policy 'sarsa'; known policies: " in str(by_learns.value)
    for name in available():
        assert name in str(by_learns.value)


class NotALearner:
    """A policy with no learning state at all."""

    name = "fake"

    def decide(self, snapshot, mu):  # pragma: no cover - never called
        raise AssertionError

    def feedback(self, snapshot, mu, rewards):  # pragma: no cover - never called
        return {}


@pytest.mark.parametrize("claimed", [True, False], ids=["claims-to-learn", "claims-not-to"])
def test_make_refuses_a_factory_whose_policy_disagrees_with_its_registration(
    claimed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = NotALearner() if claimed else make("nac-linear")
    # A registry of its own, so that the fake name never reaches the other tests.
    monkeypatch.setattr(registry, "_REGISTRY", {})
    register("fake", learns=claimed)(lambda: built)
    assert learns("fake") is claimed and learned_policies() == (("fake",) if claimed else ())
    with pytest.raises(TypeError, match="registered with learns="):
        make("fake")


@pytest.mark.parametrize(("name", "params"), LEARNER_CASES, ids=LEARNER_IDS)
def test_a_checkpoint_saved_from_a_learners_state_loads_into_a_fresh_one_and_continues_identically(
    name: str, params: dict, tmp_path: Path
) -> None:
    trained = make(name, seed=2, **params)
    drive(trained, range(1, 5))
    path = save_checkpoint(tmp_path / "c.npz", trained, tick=4, time_s=40.0)
    fresh = make(name, seed=2, **params)
    loaded = load_checkpoint(path, fresh)
    assert loaded.settings_differences == ()
    _, saved = read_checkpoint(path)
    assert set(saved) == set(trained.state_dict())
    # The restored policy makes the decisions and the updates the uninterrupted one makes.
    assert drive(fresh, range(5, 8)) == drive(trained, range(5, 8))


@pytest.mark.parametrize(("name", "params"), LEARNER_CASES, ids=LEARNER_IDS)
def test_a_stored_checkpoint_still_loads_and_its_next_tick_is_the_recorded_one(name: str, params: dict) -> None:
    # Files and expected tick written by data/make_checkpoints.py: same format, keys and behaviour.
    case = name + (f"-{params['mode']}" if "mode" in params else "")
    path = DATA / f"{case}.ckpt.npz"
    if not path.exists():
        pytest.fail(f"{path} is missing: run python tests/policies/data/make_checkpoints.py")
    expected = json.loads((DATA / "expected.json").read_text())[case]
    # The files were written when a learner's own pool cap defaulted to 64 and before the action
    # schemes, warm start and safety net existed: settings, reported when they differ (or were absent
    # then), never a reason to refuse a checkpoint.
    policy = make(name, seed=3, **params)
    differences = load_checkpoint(path, policy).settings_differences
    assert "actions.max_containers: checkpoint 64, this policy 1000000" in differences
    assert all(d == "actions.max_containers: checkpoint 64, this policy 1000000" or "checkpoint '<absent>'" in d
               for d in differences), differences
    decisions = policy.decide(busy_tick(5), MU)
    diagnostics = policy.feedback(busy_tick(5), MU, busy_rewards(5))
    assert decisions.action.tolist() == expected["actions"]
    # NAC-NN computes in float32 through torch, whose kernels differ by CPU (AVX2 or AVX-512): its
    # actor loss, a small difference of larger terms, moved by 2.8e-5 of itself between two machines.
    # NAC-Linear computes in float64 with numpy.
    rel = 1e-4 if name == "nac-nn" else 1e-6
    assert diagnostics == pytest.approx(expected["diagnostics"], rel=rel, abs=1e-9)


def test_the_stored_checkpoints_keep_their_state_keys() -> None:
    # Renaming a key breaks every checkpoint users hold: these are the keys they hold.
    header, state = read_checkpoint(DATA / "nac-linear-kl.ckpt.npz")
    assert {key for key in state if key.startswith("learner/")} == {
        f"learner/{key}"
        for key in (
            "theta", "psi", "actor_adam_m", "actor_adam_v", "actor_adam_steps", "critic_adam_m",
            "critic_adam_v", "critic_adam_steps", "kl_coef", "updates", "rng",
        )
    }
    assert {"agent/rng", "agent/reward_mean", "agent/reward_batches"} <= set(state)
    assert header["signature"] == make("nac-linear", mode="kl").checkpoint_signature()


def test_a_fresh_policy_without_any_tick_is_still_checkpointable(tmp_path: Path) -> None:
    for name in LEARNED:
        policy = make(name)
        fresh = make(name)
        load_checkpoint(save_checkpoint(tmp_path / f"{name}.npz", policy, tick=0, time_s=0.0), fresh)
        assert fresh.decide(tick(1), MU).action.tolist() == make(name).decide(tick(1), MU).action.tolist()
