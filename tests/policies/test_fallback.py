"""Safe online learning: the learner hands control to its heuristic while it is worse, and takes it back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_snapshot

from policies.fallback import FallbackLearner, FallbackSettings, erlang_c, expected_violations
from policies.registry import make
from policies.staffing import action_index
from policies.types import KEEP_SHARES, Decisions

MU = np.full(10, 0.1)


class FixedPool:
    """A policy that always asks for ``pool`` containers (a fake learner or heuristic)."""

    def __init__(self, name: str, pool: int) -> None:
        self.name, self.pool, self.seed = name, pool, 0
        self.diagnostics: tuple[str, ...] = ("transitions",)
        self.settings_record = {"pool": pool}
        self.fed: list[float] = []

    def decide(self, snapshot, mu):
        n = len(snapshot.functions)
        return Decisions(containers=np.full(n, self.pool), cpu_shares=np.full(n, KEEP_SHARES),
                         valid=np.ones(n, dtype=bool), reasons=(f"{self.name}",) * n)

    def feedback(self, snapshot, mu, rewards):
        self.fed.append(float(np.nansum(rewards)))
        return {"transitions": float(np.isfinite(rewards).sum())}

    def state_dict(self):
        return {"pool": np.array([self.pool])}

    def load_state_dict(self, state):
        self.pool = int(np.asarray(state["pool"])[0])

    def checkpoint_signature(self):
        return {"policy": self.name}


def tick(t: int, rate_per_s: float, violations: float) -> object:
    """One function, 0.5-s invocations at ``rate_per_s``, with ``violations`` counted this tick."""
    arrivals = rate_per_s * 10.0
    return make_snapshot(("f",), time_s=10.0 * t, arrivals=np.array([arrivals]),
                         completions=np.array([arrivals]), slo_violations=np.array([violations]),
                         mean_exec_s=np.array([0.5]), recent_exec_s=np.array([0.5]), containers=np.array([4.0]),
                         busy_containers=np.array([4.0]), slo_s=np.array([0.6]), memory_mb=np.array([256.0]))


def run(wrapper: FallbackLearner, ticks: range, rate_per_s: float, violations: float) -> list[bool]:
    control = []
    for t in ticks:
        snapshot = tick(t, rate_per_s, violations)
        decisions = wrapper.decide(snapshot, MU)
        control.append(decisions.reasons[0].startswith("fallback"))
        wrapper.feedback(snapshot, MU, np.array([0.5]))
    return control


def test_erlang_c_matches_known_values():
    # M/M/1 at load 0.5: an arrival waits with probability 0.5; M/M/2 at load 1: 1/3.
    assert erlang_c(np.array([1.0, 2.0]), np.array([0.5, 1.0])) == pytest.approx([0.5, 1 / 3])
    assert erlang_c(np.array([3.0]), np.array([3.5]))[0] == 1.0  # overloaded: everyone waits


def test_the_model_expects_more_violations_from_a_smaller_pool():
    snapshot = tick(1, rate_per_s=16.0, violations=0.0)  # R = 8 busy containers
    few, many = (expected_violations(np.array([k]), snapshot.functions, np.array([8.0]))[0] for k in (9, 14))
    assert few > many > 0


def test_a_worse_learner_falls_back_and_takes_control_back_once_it_is_no_worse():
    settings = FallbackSettings(window_ticks=6, margin=0.1, min_violations=5.0, hold_ticks=6)
    learner, heuristic = FixedPool("learner", 9), FixedPool("ensure", 12)
    wrapper = FallbackLearner(learner, heuristic, settings)
    # Busy (R = 8): the learner's 9 containers queue, 30 violations a tick against the heuristic's 12.
    busy = run(wrapper, range(1, 13), rate_per_s=16.0, violations=30.0)
    assert not busy[0] and any(busy), busy
    assert wrapper.active and wrapper.reason == "violations"
    assert math.isnan(learner.fed[-1]) or learner.fed[-1] == 0.0  # no reward for decisions not applied
    # Quiet (R = 0.05): both pools serve everyone at once; after the hold the learner takes over again.
    quiet = run(wrapper, range(13, 40), rate_per_s=0.1, violations=0.0)
    assert quiet[0] and not quiet[-1], quiet
    assert not wrapper.active


def test_a_learner_no_worse_than_its_heuristic_keeps_control():
    settings = FallbackSettings(window_ticks=6, hold_ticks=6)
    wrapper = FallbackLearner(FixedPool("learner", 14), FixedPool("ensure", 12), settings)
    assert not any(run(wrapper, range(1, 30), rate_per_s=16.0, violations=1.0))


def test_falling_back_is_reported_in_the_diagnostics_with_its_reason():
    wrapper = FallbackLearner(FixedPool("learner", 9), FixedPool("ensure", 12),
                              FallbackSettings(window_ticks=3, hold_ticks=100))
    run(wrapper, range(1, 8), rate_per_s=16.0, violations=30.0)
    snapshot = tick(8, 16.0, 30.0)
    wrapper.decide(snapshot, MU)
    out = wrapper.feedback(snapshot, MU, np.array([0.5]))
    assert out["fallback_active"] == 1.0 and out["fallback_reason_violations"] == 1.0
    assert out["fallback_learner_violations"] > out["fallback_heuristic_violations"]
    assert set(out) <= set(wrapper.diagnostics)


def test_the_fallback_state_survives_a_checkpoint():
    wrapper = FallbackLearner(FixedPool("learner", 9), FixedPool("ensure", 12),
                              FallbackSettings(window_ticks=3, hold_ticks=100))
    run(wrapper, range(1, 8), rate_per_s=16.0, violations=30.0)
    fresh = FallbackLearner(FixedPool("learner", 1), FixedPool("ensure", 12), FallbackSettings(window_ticks=3))
    fresh.load_state_dict(wrapper.state_dict())
    assert fresh.active and fresh.reason == "violations" and fresh.learner.pool == 9


def test_the_registered_learners_take_a_fallback_and_start_from_ensure():
    for name in ("nac-linear", "nac-nn"):
        policy = make(name, seed=3, scheme="staffing", warm_start="ensure", fallback="ensure", window_ticks=30)
        assert isinstance(policy, FallbackLearner) and policy.heuristic.name == "ensure"
        assert "fallback_active" in policy.diagnostics
    with pytest.raises(ValueError, match="warm_start=ensure needs scheme=staffing"):
        make("nac-linear", warm_start="ensure")
    assert action_index("c=1.06") != action_index("platform")


def test_erlang_c_in_closed_form_agrees_with_erlang_bs_recursion_at_any_pool():
    def by_recursion(k: float, r: float) -> float:
        if k <= 0 or r >= k:
            return 1.0
        b = 1.0
        for j in range(1, int(k) + 1):
            b = r * b / (j + r * b)
        return k * b / (k - r * (1.0 - b))

    rng = np.random.default_rng(5)
    k = rng.integers(0, 600, 500).astype(float)
    r = rng.uniform(0.0, 1.2, 500) * k + rng.uniform(0.0, 0.5, 500)
    assert erlang_c(k, r) == pytest.approx([by_recursion(a, b) for a, b in zip(k, r)], abs=1e-9)


class Mixed:
    """A fake learner deciding per function: pools, shares and which rows it has data for."""

    def __init__(self, containers, shares, valid=None) -> None:
        self.name, self.seed = "learner", 0
        self.diagnostics: tuple[str, ...] = ()
        self.settings_record: dict = {}
        self.containers, self.shares = np.array(containers), np.array(shares)
        self.valid = np.ones(len(containers), dtype=bool) if valid is None else np.array(valid)

    def decide(self, snapshot, mu):
        n = len(self.containers)
        return Decisions(containers=self.containers, cpu_shares=self.shares, valid=self.valid,
                         reasons=tuple(f"mine {i}" for i in range(n)), action=np.arange(n))

    def feedback(self, snapshot, mu, rewards):
        return {}


def five_functions() -> object:
    names = tuple("abcde")
    return make_snapshot(names, arrivals=np.full(5, 10.0), completions=np.full(5, 10.0), containers=np.full(5, 3.0),
                         mean_exec_s=np.full(5, 0.5), recent_exec_s=np.full(5, 0.5))


def test_with_the_heuristic_floor_no_function_gets_less_than_the_heuristic_gives_it():
    # Learner: a smaller pool, a larger pool, the platform, fewer shares, and no data; heuristic: 4 containers
    # at 256 shares everywhere but the fourth function, which it leaves to the platform.
    learner = Mixed([2, 9, -1, 5, 1], [128, 512, KEEP_SHARES, 128, 64], valid=[True, True, True, True, False])
    heuristic = Mixed([4, 4, 4, -1, 4], [256, 256, 256, KEEP_SHARES, 256])
    floored_run = FallbackLearner(learner, heuristic, FallbackSettings(heuristic_floor=True))
    free_run = FallbackLearner(learner, heuristic, FallbackSettings())
    snapshot = five_functions()
    out = floored_run.decide(snapshot, MU)
    assert out.containers.tolist() == [4, 9, 4, 5, 4]
    assert out.cpu_shares.tolist() == [256, 512, 256, 128, 256]
    assert out.valid.tolist() == [True] * 5
    assert out.action.tolist() == [0, 1, 2, 3, -1]  # the learner's choices stand; none where it made none
    assert "held up to" in out.reasons[0] and out.reasons[1] == "mine 1" and "no decision" in out.reasons[4]
    assert free_run.decide(snapshot, MU).containers.tolist() == [2, 9, -1, 5, 1]


def test_a_floored_learner_that_asks_for_too_little_is_never_worse_and_keeps_control():
    # The learner's own pool (9) would queue; floored at the heuristic's 12 it is the heuristic, so no fallback.
    wrapper = FallbackLearner(FixedPool("learner", 9), FixedPool("ensure", 12),
                              FallbackSettings(window_ticks=6, hold_ticks=6, heuristic_floor=True))
    assert wrapper.decide(tick(1, 16.0, 0.0), MU).containers.tolist() == [12]
    assert not any(run(wrapper, range(2, 30), rate_per_s=16.0, violations=1.0))
    unfloored = FallbackLearner(FixedPool("learner", 9), FixedPool("ensure", 12),
                                FallbackSettings(window_ticks=6, hold_ticks=6))
    assert any(run(unfloored, range(1, 30), rate_per_s=16.0, violations=1.0))  # judged on its own pool, it is


class FixedTwin:
    """A counterfactual that reports ``violations`` for the heuristic every tick."""

    def __init__(self, violations: float) -> None:
        self.violations, self.calls = violations, 0

    def heuristic_violations(self, snapshot) -> float:
        self.calls += 1
        return self.violations


def test_with_a_twin_the_heuristics_violations_are_the_twins_not_the_models():
    # Same pools (the model sees no difference), but the twin's heuristic had far fewer violations.
    settings = FallbackSettings(window_ticks=6, hold_ticks=6, counterfactual="twin")
    wrapper = FallbackLearner(FixedPool("learner", 12), FixedPool("ensure", 12), settings)
    wrapper.counterfactual = FixedTwin(0.0)
    assert any(run(wrapper, range(1, 10), rate_per_s=16.0, violations=10.0))
    assert wrapper.reason == "violations" and wrapper.counterfactual.calls == 9
    modelled = FallbackLearner(FixedPool("learner", 12), FixedPool("ensure", 12),
                               FallbackSettings(window_ticks=6, hold_ticks=6))
    assert not any(run(modelled, range(1, 10), rate_per_s=16.0, violations=10.0))


def test_a_twin_asked_for_but_not_attached_falls_back_on_the_model_and_says_so(caplog):
    wrapper = FallbackLearner(FixedPool("learner", 12), FixedPool("ensure", 12),
                              FallbackSettings(window_ticks=6, hold_ticks=6, counterfactual="twin"))
    with caplog.at_level("WARNING"):
        assert not any(run(wrapper, range(1, 10), rate_per_s=16.0, violations=10.0))
    assert sum("no twin" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(ValueError, match="counterfactual"):
        FallbackSettings(counterfactual="oracle")
