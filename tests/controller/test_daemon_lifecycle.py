"""The daemon's life in process: dry run, one tick, stop with a final checkpoint, resume where it stopped."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from test_daemon_clock import FakeClock
from test_daemon_faults import NAMES, AlternatingPolicy, FaultyBackend

from controller.checkpoint import CheckpointError, read_checkpoint
from controller.daemon import build_daemon
from controller.settings import load_settings
from workload.arrivals import RepeatingArrivals


@dataclass
class CountingPolicy(AlternatingPolicy):
    """A policy with learnable state: how many feedbacks it has had."""

    learned: int = 0
    version: int = 1
    name: str = "counting"
    seed: int = 0
    diagnostics: tuple[str, ...] = ("transitions",)
    settings_record: dict = field(default_factory=dict)

    def feedback(self, snapshot, mu, rewards):
        self.learned += 1
        return {"transitions": 1.0}

    def state_dict(self):
        return {"learned": np.array([self.learned])}

    def load_state_dict(self, state):
        self.learned = int(np.asarray(state["learned"])[0])

    def checkpoint_signature(self):
        return {"policy": self.name, "version": self.version}


def _build(tmp_path, clock, policy, **overrides):
    settings = load_settings(overrides={"daemon.backend": "openwhisk", "daemon.interval_s": 1.0,
                                        "daemon.checkpoint_dir": str(tmp_path / "ckpt"),
                                        "loop.checkpoint_every_ticks": 4, **overrides})
    registry = CollectorRegistry()
    backend = FaultyBackend(clock)
    return build_daemon(settings, backend=backend, policy=policy, registry=registry, clock=clock), backend, registry


def test_dry_run_decides_and_exports_but_never_acts_nor_checkpoints(tmp_path):
    clock = FakeClock()
    daemon, backend, registry = _build(tmp_path, clock, CountingPolicy(), **{"daemon.dry_run": True})
    daemon.run(max_ticks=5)
    assert backend.applied_at == []
    assert registry.get_sample_value("mfrm_dry_run") == 1
    assert registry.get_sample_value("mfrm_decision_target_containers", {"function": NAMES[0]}) in (1, 2)
    assert not (tmp_path / "ckpt").exists()


def test_a_stop_finishes_the_tick_then_saves_a_final_checkpoint_of_the_last_tick(tmp_path):
    clock = FakeClock()
    policy = CountingPolicy()
    daemon, _, registry = _build(tmp_path, clock, policy)
    tick = daemon.tick

    def tick_then_stop_at_the_sixth(elapsed_s):
        ok = tick(elapsed_s)
        if daemon.loop.counters.ticks == 6:
            clock.request_stop()  # what SIGTERM does
        return ok

    daemon.driver.run(tick_then_stop_at_the_sixth)
    daemon.health.stopping()
    daemon.final_checkpoint()
    header, state = read_checkpoint(tmp_path / "ckpt" / "counting.ckpt.npz")
    assert header["tick"] == 6  # the periodic one was at 4; the final one holds the last tick
    assert int(state["learned"][0]) == policy.learned == 6
    assert registry.get_sample_value("mfrm_checkpoints_total") == 2


def test_a_restart_resumes_the_policy_and_keeps_counting_ticks(tmp_path):
    clock = FakeClock()
    first, _, _ = _build(tmp_path, clock, CountingPolicy())
    first.run(max_ticks=9)  # periodic checkpoints at 4 and 8, the final one at 9
    resumed_policy = CountingPolicy()
    second, _, registry = _build(tmp_path, FakeClock(), resumed_policy)
    assert resumed_policy.learned == 9
    assert second.loop.counters.ticks == 9
    second.run(max_ticks=3)  # ticks 10, 11, 12: a periodic checkpoint at 12, no extra final one
    header, _ = read_checkpoint(tmp_path / "ckpt" / "counting.ckpt.npz")
    assert header["tick"] == 12
    assert registry.get_sample_value("mfrm_ticks_completed") == 12
    assert registry.get_sample_value("mfrm_checkpoints_total") == 1


def test_a_checkpoint_that_does_not_fit_the_policy_stops_the_start(tmp_path):
    clock = FakeClock()
    _build(tmp_path, clock, CountingPolicy())[0].run(max_ticks=1)
    with pytest.raises(CheckpointError, match="does not fit"):
        _build(tmp_path, FakeClock(), CountingPolicy(version=2))


def test_resume_can_be_turned_off(tmp_path):
    clock = FakeClock()
    _build(tmp_path, clock, CountingPolicy())[0].run(max_ticks=3)
    fresh = CountingPolicy()
    daemon, _, _ = _build(tmp_path, FakeClock(), fresh, **{"daemon.resume": False})
    assert (fresh.learned, daemon.loop.counters.ticks) == (0, 0)


@pytest.mark.parametrize(("fault", "finished"), [(None, True), ("http_500", False)], ids=["good", "failed"])
def test_once_runs_one_tick_and_reports_whether_it_finished(tmp_path, fault, finished):
    clock = FakeClock()
    daemon, backend, _ = _build(tmp_path, clock, CountingPolicy())
    backend.faults = {0: fault} if fault else {}
    assert daemon.run_once() is finished
    assert backend.observed == 1


@dataclass
class _Stream:
    """An arrival stream of 60 s with arrivals at 10 s and 50 s (function 0 and 1)."""

    duration_s: float = 60.0
    times: np.ndarray = field(default_factory=lambda: np.array([10.0, 50.0]))

    def window(self, t0, t1):
        keep = (self.times >= t0) & (self.times < t1)
        return self.times[keep], np.flatnonzero(keep).astype(np.int32)


@pytest.mark.parametrize(
    ("t0", "t1", "expected"),
    [(0, 60, [10, 50]), (40, 80, [50, 70]), (110, 190, [110, 130, 170]), (200, 205, [])],
    ids=["first-cycle", "across-the-seam", "two-seams", "nothing-in-the-window"],
)
def test_repeating_arrivals_replay_the_trace_end_to_end(t0, t1, expected):
    times, fns = RepeatingArrivals(_Stream()).window(t0, t1)
    np.testing.assert_allclose(times, expected)
    assert len(fns) == len(times)
