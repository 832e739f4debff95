"""The control loop against a fake backend and fake time: order, isolation, rewards, hooks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FakeBackend, FixedPolicy, make_invokers, make_snapshot

from controller.backends.base import FailureKind
from controller.estimator import PopulationEstimator
from controller.guard import GuardBounds
from controller.loop import ControlLoop, TickReport, tick_times

NAMES = ("a", "b", "c")
BOUNDS = GuardBounds(max_containers=10, respect_capacity=False)


def holding(containers: float = 2.0, names: tuple[str, ...] = NAMES):
    """Snapshots of a platform that holds ``containers`` per function (what FixedPolicy asks by default)."""
    return lambda now: make_snapshot(names, time_s=now, containers=np.full(len(names), containers))


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


def test_an_unchanged_policy_writes_to_the_backend_only_once_while_the_platform_holds_its_targets():
    backend = FakeBackend(snapshots=holding(2.0))
    loop = _loop(backend, FixedPolicy(containers=2))
    loop.run(tick_times(0.0, 10.0, 5))
    assert len(backend.applied) == 1
    assert loop.counters.changes_applied == 3
    assert loop.counters.unchanged == 3 * 4
    assert loop.counters.reapplied == 0


def test_invalid_rows_get_no_decision_applied():
    backend = FakeBackend(snapshots=lambda now: make_snapshot(NAMES, time_s=now, valid=np.array([True, False, True])))
    loop = _loop(backend, FixedPolicy(containers=2))
    loop.step(10.0)
    assert list(backend.applied[0].valid) == [True, False, True]


def test_a_failed_action_only_warns_counts_its_kind_and_is_retried_next_tick(caplog):
    backend = FakeBackend(snapshots=holding(2.0), fail={"b": FailureKind.UNAVAILABLE})
    loop = _loop(backend, FixedPolicy(containers=2))
    with caplog.at_level("WARNING", logger="controller.loop"):
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
        names = NAMES if now > 15 else NAMES[:2]
        return make_snapshot(names, time_s=now, containers=np.full(len(names), 2.0))

    backend = FakeBackend(snapshots=snapshots)
    loop = _loop(backend, FixedPolicy(containers=2))
    loop.run([10.0, 20.0])
    assert list(backend.applied[1].valid) == [False, False, True]


def test_tick_times_are_the_ends_of_consecutive_ticks():
    assert list(tick_times(60.0, 10.0, 3)) == [70.0, 80.0, 90.0]


def test_targets_the_platform_does_not_hold_are_written_again_and_counted_apart_from_changes(caplog):
    # The platform shows no containers whatever it is told (it lost them): the loop writes the
    # targets in force again at once, then after pauses of 1, 2, ... ticks.
    backend = FakeBackend(snapshots=holding(0.0))
    loop = _loop(backend, FixedPolicy(containers=2))
    with caplog.at_level("INFO", logger="controller.loop"):
        loop.run(tick_times(0.0, 10.0, 6))
    written_at = [now for name, now in backend.calls if name == "apply"]
    assert written_at == [10.0, 20.0, 40.0]
    assert loop.counters.changes_applied == 3
    assert loop.counters.reapplied == 6
    assert loop.counters.unchanged == 3 * 5
    assert "a: re-applied containers 2 (observed containers 0)" in caplog.text


def test_a_dry_run_writes_nothing_again_either():
    backend = FakeBackend(snapshots=holding(0.0))
    loop = _loop(backend, FixedPolicy(containers=2), dry_run=True)
    loop.run(tick_times(0.0, 10.0, 3))
    assert backend.applied == [] and loop.counters.reapplied == 0


def test_the_reward_and_the_estimator_use_the_time_the_counts_cover():
    # A tick that covers 30 s (the first good observation after a gap): invoker CPU 24 core-s on
    # 8 cores is 10% of 30 s, not 30% of a nominal 10 s.
    def snapshots(now):
        invokers = make_invokers(1, cpu_used_core_s=np.array([24.0]))
        return make_snapshot(NAMES, time_s=now, tick_s=30.0, invokers=invokers, containers=np.full(3, 2.0),
                             memory_mb=np.full(3, 256.0), completions=np.full(3, 4.0), p99_latency_s=np.full(3, 0.1),
                             cpu_used_core_s=np.full(3, 15.0), cpu_alloc_core_s=np.full(3, 15.0))

    loop = ControlLoop(backend=FakeBackend(snapshots=snapshots), policy=FixedPolicy(),
                       estimator=PopulationEstimator(bins=10, beta=1.0), bounds=BOUNDS, reward_charge_memory=True)
    report = loop.step(10.0)
    assert int(np.argmax(report.mu)) == 1  # 10% utilisation: the second of 10 bins
    # Memory reserves 2 x 256 MB x (8 cores / 2048 MB) = 2 cores, 60 core-s over 30 s: u = 15/15 x 15/60.
    assert report.rewards[0] == pytest.approx(0.7 + 0.3 * 0.25)
