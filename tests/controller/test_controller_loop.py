"""The control loop against a fake backend and fake time: order, isolation, rewards, hooks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FakeBackend, FixedPolicy, make_snapshot

from controller.backends.base import FailureKind
from controller.estimator import PopulationEstimator
from controller.guard import GuardBounds
from controller.loop import ControlLoop, TickReport, tick_times

NAMES = ("a", "b", "c")
BOUNDS = GuardBounds(max_containers=10, respect_capacity=False)


def _loop(backend, policy, **kwargs) -> ControlLoop:
    return ControlLoop(backend=backend, policy=policy, estimator=PopulationEstimator(bins=4, beta=0.5),
                       bounds=BOUNDS, **kwargs)


def test_one_tick_observes_then_decides_then_applies_then_learns():
    calls: list = []
    backend = FakeBackend(calls=calls)
    policy = FixedPolicy(calls=calls)
    _loop(backend, policy).step(10.0)
    assert [name for name, _ in calls] == ["observe", "decide", "apply", "feedback"]
    assert all(now == 10.0 for _, now in calls)


def test_time_must_increase_between_ticks():
    loop = _loop(FakeBackend(), FixedPolicy())
    loop.step(10.0)
    with pytest.raises(ValueError, match="must increase"):
        loop.step(10.0)


def test_an_unchanged_policy_writes_to_the_backend_only_once():
    backend = FakeBackend()
    loop = _loop(backend, FixedPolicy(containers=2))
    loop.run(tick_times(0.0, 10.0, 5))
    assert len(backend.applied) == 1
    assert loop.counters.changes_applied == 3
    assert loop.counters.unchanged == 3 * 4


def test_invalid_rows_get_no_decision_applied():
    backend = FakeBackend(snapshots=lambda now: make_snapshot(NAMES, time_s=now, valid=np.array([True, False, True])))
    loop = _loop(backend, FixedPolicy(containers=2))
    loop.step(10.0)
    assert list(backend.applied[0].valid) == [True, False, True]


def test_a_failed_action_only_warns_counts_its_kind_and_is_retried_next_tick(caplog):
    backend = FakeBackend(fail={"b": FailureKind.UNAVAILABLE})
    loop = _loop(backend, FixedPolicy(containers=2))
    report = loop.step(10.0)
    assert [f.function for f in report.failures] == ["b"]
    assert "b: action failed (unavailable)" in caplog.text
    loop.step(20.0)
    assert list(backend.applied[1].valid) == [False, True, False]
    assert loop.counters.failures[FailureKind.UNAVAILABLE] == 2
    assert loop.counters.changes_applied == 2


def test_the_guard_limits_what_reaches_the_backend():
    backend = FakeBackend()
    loop = _loop(backend, FixedPolicy(containers=50))
    loop.step(10.0)
    assert list(backend.applied[0].containers) == [10, 10, 10]
    assert loop.counters.clamped == 3


def test_the_first_feedback_has_no_reward_and_later_ones_reward_the_previous_decision():
    # Every tick: 4 completions within the SLO, half of the allocated CPU used.
    def snapshots(now):
        return make_snapshot(NAMES, time_s=now, completions=np.full(3, 4.0), p99_latency_s=np.full(3, 0.5),
                             cpu_used_core_s=np.full(3, 1.0), cpu_alloc_core_s=np.full(3, 2.0),
                             valid=np.array([True, True, now < 15]))

    policy = FixedPolicy()
    reports: list[TickReport] = []
    _loop(FakeBackend(snapshots=snapshots), policy).run([10.0, 20.0, 30.0], on_tick=reports.append)
    assert np.all(np.isnan(policy.feedback_rewards[0]))
    assert policy.feedback_rewards[1][:2] == pytest.approx([0.85, 0.85])
    # "c" has no data at 20 s: no reward then, and no decision at 20 s means no reward at 30 s.
    assert np.isnan(policy.feedback_rewards[1][2]) and np.isnan(policy.feedback_rewards[2][2])
    assert reports[0].rewards[:2] == pytest.approx([0.85, 0.85])
    assert reports[1].diagnostics == {"seen": 2.0}


def test_a_policy_that_returns_the_wrong_number_of_decisions_stops_the_loop():
    class Short(FixedPolicy):
        def decide(self, snapshot, mu):
            return super().decide(make_snapshot(("x",)), mu)

    with pytest.raises(ValueError, match="1 decisions for 3 functions"):
        _loop(FakeBackend(), Short()).step(10.0)


def test_sinks_get_every_tick_and_checkpoints_come_every_n_ticks():
    class Sink:
        def __init__(self):
            self.ticks = []

        def on_tick(self, report):
            self.ticks.append(report.tick)

    class Saver:
        def __init__(self):
            self.saved = []

        def save(self, policy, tick, now):
            self.saved.append((tick, now))

    sink, saver = Sink(), Saver()
    loop = _loop(FakeBackend(), FixedPolicy(), sinks=[sink], checkpointer=saver, checkpoint_every_ticks=2)
    loop.run(tick_times(100.0, 5.0, 5))
    assert sink.ticks == [0, 1, 2, 3, 4]
    assert saver.saved == [(2, 110.0), (4, 120.0)]
    assert loop.counters.checkpoints == 2


def test_dry_run_decides_but_applies_nothing():
    backend = FakeBackend()
    loop = _loop(backend, FixedPolicy(containers=3), dry_run=True)
    report = loop.step(10.0)
    assert backend.applied == []
    assert report.guarded.decisions.valid.all()
    assert loop.counters.changes_applied == 0


def test_dry_run_feeds_the_learner_no_rewards_for_decisions_that_were_never_applied():
    backend = FakeBackend()
    loop = _loop(backend, FixedPolicy(containers=3), dry_run=True)
    loop.step(10.0)
    report = loop.step(20.0)
    assert np.isfinite(report.rewards).any()
    assert np.isnan(report.feedback_rewards).all()


def test_functions_that_appear_later_are_managed_too():
    def snapshots(now):
        return make_snapshot(NAMES if now > 15 else NAMES[:2], time_s=now)

    backend = FakeBackend(snapshots=snapshots)
    loop = _loop(backend, FixedPolicy(containers=2))
    loop.run([10.0, 20.0])
    assert list(backend.applied[1].valid) == [False, False, True]


def test_tick_times_are_the_ends_of_consecutive_ticks():
    assert list(tick_times(60.0, 10.0, 3)) == [70.0, 80.0, 90.0]
