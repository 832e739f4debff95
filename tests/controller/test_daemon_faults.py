"""Faults the daemon meets: observations that fail with each kind, rows without data, a slow platform, a
bad config file. The daemon keeps running, decides nothing on missing data, says why once (then
summarises), counts the kind, turns /healthz 503 when blind too long, and recovers when the fault
ends. Fake time and a fault-injecting fake backend: nothing sleeps."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from conftest import make_snapshot
from prometheus_client import CollectorRegistry
from test_daemon_clock import FakeClock

from controller.backends.base import ActionFailure
from controller.clients.errors import ObservationError, ObservationKind, ObservationProblem
from controller.daemon import ConfigWatcher, Daemon, build_daemon
from controller.settings import load_settings
from policies.types import KEEP_SHARES, Decisions

NAMES = ("a", "b", "c")
URL = "http://127.0.0.1:3233/api/v1/namespaces/_/activations"

#: What a real backend raises for each fault (the kinds its clients type where the failure happens).
RAISED = {
    "http_401": ObservationError(ObservationKind.UNAUTHORIZED, "activations",
                                 f"GET {URL}: HTTP 401: The supplied authentication is invalid"),
    "http_429": ObservationError(ObservationKind.THROTTLED, "activations", f"GET {URL}: HTTP 429: Too many requests"),
    "http_500": ObservationError(ObservationKind.SERVER_ERROR, "activations", f"GET {URL}: HTTP 500: db down"),
    "http_503": ObservationError(ObservationKind.SERVER_ERROR, "pools", f"GET {URL}: HTTP 503: overloaded"),
    "no_answer": ObservationError(ObservationKind.TIMEOUT, "activations", f"GET {URL}: no answer within 5 s"),
    "refused": ObservationError(ObservationKind.UNREACHABLE, "activations",
                                f"GET {URL}: cannot connect: [Errno 111] Connection refused"),
    "garbled": ObservationError(ObservationKind.MALFORMED, "pools", f"GET {URL}: expected a JSON array, got str"),
    "prometheus_down": ObservationError(ObservationKind.UNREACHABLE, "prometheus",
                                        "http://127.0.0.1:9090/api/v1/query: cannot connect"),
}


@dataclass
class FaultyBackend:
    """Answers like a healthy cluster except on the observations listed in ``faults`` (0-based)."""

    clock: FakeClock
    faults: dict[int, str] = field(default_factory=dict)
    slow_s: float = 2.5
    observed: int = 0
    applied_at: list[float] = field(default_factory=list)
    problems: tuple[ObservationProblem, ...] = ()
    name: str = "faulty"
    function_names: tuple[str, ...] = NAMES

    def observe(self, now: float):
        fault = self.faults.get(self.observed)
        self.observed += 1
        self.problems = ()
        if fault in RAISED:
            raise RAISED[fault]
        if fault == "slow":
            self.clock.advance(self.slow_s)
        valid = np.ones(3, dtype=bool)
        if fault == "rows_missing":
            valid[:] = False
            self.problems = (ObservationProblem(None, "prometheus", "no series of openwhisk_action_activations_total",
                                                NAMES),)
        if fault == "one_row_garbled":
            valid[1] = False
            self.problems = (ObservationProblem(ObservationKind.MALFORMED, "activations",
                                                "activation 'x': duration='forever' is not a time in ms", ("b",)),)
        p99 = np.where(valid, 0.5, np.nan)
        return make_snapshot(NAMES, time_s=now, valid=valid, p99_latency_s=p99, arrivals=np.full(3, 4.0),
                             completions=np.full(3, 4.0), containers=np.full(3, 1.0))

    def apply(self, decisions: Decisions, now: float) -> list[ActionFailure]:
        self.applied_at.append(now)
        return []


@dataclass
class AlternatingPolicy:
    """Asks for 1 then 2 then 1 ... containers, so that every tick with data changes something."""

    decided: int = 0
    name: str = "alternating"

    def decide(self, snapshot, mu):
        n = len(snapshot.functions)
        self.decided += 1
        valid = snapshot.functions.valid.copy()
        return Decisions(containers=np.full(n, 1 + self.decided % 2), cpu_shares=np.full(n, KEEP_SHARES),
                         valid=valid, reasons=tuple("alternating" if v else "no data" for v in valid))

    def feedback(self, snapshot, mu, rewards):
        return {}


def _daemon(clock: FakeClock, backend, *, config=None, **overrides) -> tuple[Daemon, CollectorRegistry]:
    """A daemon on fake time (the backend, not a worker thread, moves it); with ``config``, its file
    is watched with the same overrides as at start."""
    overrides = {"daemon.backend": "openwhisk", "daemon.backoff_s": [2.0, 4.0], **overrides}
    if config is None:
        overrides.setdefault("daemon.interval_s", 1.0)
    settings = load_settings(config, overrides)
    watcher = ConfigWatcher(config, overrides) if config is not None else None
    registry = CollectorRegistry()
    daemon = build_daemon(settings, backend=backend, policy=AlternatingPolicy(), registry=registry,
                          clock=clock, watcher=watcher, deadline_threads=False)
    return daemon, registry


FAULTS = [
    # (fault, error kind or None, no-decision reason, what the log says)
    ("http_401", "unauthorized", "tick_failed", "HTTP 401: The supplied authentication is invalid"),
    ("http_429", "throttled", "tick_failed", "HTTP 429"),
    ("http_500", "server_error", "tick_failed", "HTTP 500"),
    ("http_503", "server_error", "tick_failed", "pools: GET"),
    ("no_answer", "timeout", "tick_failed", "no answer within 5 s"),
    ("refused", "unreachable", "tick_failed", "Connection refused"),
    ("garbled", "malformed", "tick_failed", "expected a JSON array"),
    ("prometheus_down", "unreachable", "tick_failed", "prometheus: http://127.0.0.1:9090"),
    ("rows_missing", None, "no_data", "no data for 3 of 3 functions (a, b, c): prometheus: no series"),
]
FAULT_IDS = [f[0] for f in FAULTS]


@pytest.mark.parametrize(("fault", "kind", "reason", "said"), FAULTS, ids=FAULT_IDS)
def test_a_fault_gives_no_decision_says_why_once_and_the_daemon_recovers_at_the_next_tick(
        caplog, fault, kind, reason, said):
    clock = FakeClock()
    backend = FaultyBackend(clock, faults={1: fault, 2: fault})
    daemon, registry = _daemon(clock, backend)
    with caplog.at_level(logging.INFO, logger="controller"):
        daemon.driver.run(daemon.tick, max_ticks=6)

    # Ticks 0, 3, 4, 5 had data and acted; the two faulty ones acted on nothing.
    assert len(backend.applied_at) == 4
    assert backend.observed == 6
    get = registry.get_sample_value
    assert get("mfrm_no_decisions_total", {"reason": reason}) == 2 * len(NAMES)
    assert caplog.text.count(said) == 1  # said once, with its cause; the repeat is not
    if kind is not None:
        assert get("mfrm_backend_errors_total", {"kind": kind}) == 2
        assert get("mfrm_backend_errors_total", {"kind": "internal"}) == 0
        assert get("mfrm_ticks_total", {"result": "failed"}) == 2
        assert f"tick failed ({kind}, 1 in a row), no decision this tick" in caplog.text
        assert "recovered: tick 1 finished after 2 failed tick(s)" in caplog.text
    else:
        assert get("mfrm_ticks_total", {"result": "failed"}) == 0
        assert "data is back for all 3 functions" in caplog.text
    assert get("mfrm_ticks_total", {"result": "ok"}) == 6 - (2 if kind else 0)
    assert daemon.saw_cluster and daemon.health.check(clock.monotonic())[0]


def test_rows_lost_to_an_error_are_counted_by_kind_and_the_others_are_decided(caplog):
    clock = FakeClock()
    backend = FaultyBackend(clock, faults={1: "one_row_garbled", 2: "one_row_garbled"})
    daemon, registry = _daemon(clock, backend)
    with caplog.at_level(logging.INFO, logger="controller"):
        daemon.driver.run(daemon.tick, max_ticks=4)
    get = registry.get_sample_value
    assert get("mfrm_backend_errors_total", {"kind": "malformed"}) == 2
    assert get("mfrm_no_decisions_total", {"reason": "no_data"}) == 2
    assert get("mfrm_ticks_total", {"result": "ok"}) == 4
    assert caplog.text.count("no data for 1 of 3 functions (b): malformed: activations: activation 'x'") == 1
    assert "data is back for all 3 functions" in caplog.text
    assert daemon.health.check(clock.monotonic())[0]


def test_a_cause_that_lasts_is_summarised_every_log_repeat_s_with_its_count(caplog):
    clock = FakeClock()
    backend = FaultyBackend(clock, faults={i: "refused" for i in range(1, 40)})
    daemon, registry = _daemon(clock, backend, **{"daemon.backoff_s": [1.0], "daemon.log_repeat_s": 10.0})
    with caplog.at_level(logging.INFO, logger="controller"):
        daemon.driver.run(daemon.tick, max_ticks=31)  # one good tick, then 30 failures one second apart
    assert registry.get_sample_value("mfrm_backend_errors_total", {"kind": "unreachable"}) == 30
    assert caplog.text.count("tick failed (unreachable") == 1
    summaries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("still failing (unreachable)")]
    assert len(summaries) == 2  # at 10 s and 20 s of the outage
    assert "10 more failed tick(s) in the last 10 s, 11 in a row" in summaries[0]


def test_failed_ticks_are_retried_along_the_backoff_sequence():
    clock = FakeClock()
    backend = FaultyBackend(clock, faults={1: "http_500", 2: "http_500", 3: "http_500"})
    daemon, _ = _daemon(clock, backend)
    attempts: list[float] = []
    tick = daemon.tick

    def recording(elapsed_s: float) -> bool:
        attempts.append(elapsed_s)
        return tick(elapsed_s)

    daemon.driver.run(recording, max_ticks=6)
    # interval 1 s, backoff (2, 4): good, fail -> 2 s, fail -> 4 s, fail -> 4 s, good -> 1 s
    assert np.diff(attempts) == pytest.approx([1.0, 2.0, 4.0, 4.0, 1.0])


def test_a_tick_past_its_deadline_is_counted_and_logged_and_missed_slots_are_skipped(caplog):
    clock = FakeClock()
    backend = FaultyBackend(clock, faults={1: "slow", 3: "slow"}, slow_s=2.5)
    daemon, registry = _daemon(clock, backend)
    with caplog.at_level(logging.INFO, logger="controller"):
        daemon.driver.run(daemon.tick, max_ticks=5)
    assert daemon.driver.stats.skipped_slots == 4
    get = registry.get_sample_value
    assert get("mfrm_tick_overruns_total") == 2
    assert get("mfrm_ticks_total", {"result": "ok"}) == 5
    assert get("mfrm_tick_duration_seconds_bucket", {"le": "1.0"}) == 3
    assert caplog.text.count("past its deadline of 1 s (daemon.tick_deadline_s)") == 1


def test_a_long_outage_turns_health_blind_with_the_cause_and_the_first_good_tick_turns_it_back():
    clock = FakeClock()
    backend = FaultyBackend(clock, faults={i: "http_401" for i in range(1, 6)})
    daemon, registry = _daemon(clock, backend, **{"daemon.blind_after_s": 12.0})
    daemon.driver.run(daemon.tick, max_ticks=4)  # one good tick at 1001 s, then failures at 1002, 1004, 1008 s
    ok, why = daemon.health.check(clock.monotonic())
    assert ok, why  # 7 s blind: not yet past the limit, although three ticks failed
    clock.advance(6.0)  # the next try is due at 1012 s: 2 s late is not stuck, but 13 s without an observation is blind
    ok, why = daemon.health.check(clock.monotonic())
    assert not ok
    assert why == ("blind: last observation of the cluster 13.0 s ago (limit 12 s): unauthorized: activations: "
                   "GET http://127.0.0.1:3233/api/v1/namespaces/_/activations: HTTP 401: The supplied authentication is invalid")
    daemon.driver.run(daemon.tick, max_ticks=3)  # two more failures, then the platform is back
    ok, why = daemon.health.check(clock.monotonic())
    assert ok, why
    assert registry.get_sample_value("mfrm_last_full_observation_timestamp_seconds") > 0


def test_ticks_that_see_no_function_at_all_are_blind_even_though_they_finish():
    clock = FakeClock()
    backend = FaultyBackend(clock, faults={i: "rows_missing" for i in range(20)})
    daemon, registry = _daemon(clock, backend, **{"daemon.blind_after_s": 5.0})
    daemon.driver.run(daemon.tick, max_ticks=6)
    assert registry.get_sample_value("mfrm_ticks_total", {"result": "ok"}) == 6
    ok, why = daemon.health.check(clock.monotonic())
    assert not ok and "blind" in why and "no series of openwhisk_action_activations_total" in why
    assert registry.get_sample_value("mfrm_last_full_observation_timestamp_seconds") == 0


@pytest.mark.parametrize(("fault", "ok"), [(None, True), ("http_401", False), ("rows_missing", False)],
                         ids=["observed", "failed", "saw-nothing"])
def test_run_once_is_true_only_when_the_cluster_was_observed_and_says_why_not(fault, ok):
    clock = FakeClock()
    backend = FaultyBackend(clock, faults={0: fault} if fault else {})
    daemon, _ = _daemon(clock, backend)
    assert daemon.run_once() is ok
    if fault == "http_401":
        assert daemon.last_cause.startswith("unauthorized: activations: GET http://127.0.0.1:3233")
    if fault == "rows_missing":
        assert daemon.last_cause.startswith("no function had data: no data for 3 of 3 functions")


def _write(path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def test_a_bad_config_file_while_running_is_reported_and_ignored_until_it_is_fixed(tmp_path, caplog):
    config = tmp_path / "mfrm.yaml"
    _write(config, "guard:\n  max_containers: 10\n")
    clock = FakeClock()
    backend = FaultyBackend(clock)
    daemon, registry = _daemon(clock, backend, config=config, **{"daemon.interval_s": 1.0})
    get = registry.get_sample_value
    with caplog.at_level(logging.INFO, logger="controller"):
        assert daemon.tick(1.0)
        _write(config, "guard:\n  max_containers: -5\n")
        assert daemon.tick(2.0), "a bad file must not stop the ticks"
        assert get("mfrm_config_last_reload_successful") == 0
        assert get("mfrm_config_reloads_total", {"result": "failure"}) == 1
        assert "guard.max_containers = -5" in caplog.text
        assert "mfrm.yaml:2" in caplog.text and "allowed: 1 <= value <= 100000" in caplog.text
        assert daemon.loop.bounds.max_containers == 10  # the settings in use did not change
        assert daemon.tick(3.0)
        assert get("mfrm_config_reloads_total", {"result": "failure"}) == 1  # not re-read until it changes

        _write(config, "guard:\n  max_containers: 7\npolicy:\n  name: ensure\n")
        assert daemon.tick(4.0)
    assert get("mfrm_config_last_reload_successful") == 1
    assert daemon.loop.bounds.max_containers == 7
    assert "take effect only after a restart: policy.name" in caplog.text
    assert daemon.settings.policy.name == "openwhisk-default"


def test_a_reloaded_interval_changes_the_schedule_the_health_limits_and_the_deadline(tmp_path):
    config = tmp_path / "mfrm.yaml"
    _write(config, "daemon:\n  interval_s: 1.0\n")
    clock = FakeClock()
    daemon, _ = _daemon(clock, FaultyBackend(clock), config=config)
    _write(config, "daemon:\n  interval_s: 5.0\n  blind_after_s: 60\n  log_repeat_s: 30\n")
    assert daemon.tick(1.0)
    assert daemon.driver.interval_s == 5.0
    assert daemon.health.stale_after_s == 15.0
    assert daemon.health.blind_after_s == 60.0
    assert daemon.deadline_s == 5.0  # unset: the interval


def test_an_unexpected_error_is_logged_with_its_traceback_and_counted_as_internal(caplog):
    class Broken(FaultyBackend):
        def observe(self, now):
            raise KeyError("a bug in the backend")

    clock = FakeClock()
    daemon, registry = _daemon(clock, Broken(clock))
    with caplog.at_level(logging.WARNING, logger="controller"):
        assert not daemon.tick(1.0)
    assert registry.get_sample_value("mfrm_backend_errors_total", {"kind": "internal"}) == 1
    assert any(r.exc_info for r in caplog.records)
    assert not math.isnan(registry.get_sample_value("mfrm_tick_duration_seconds_count"))
