"""Faults the daemon meets: the platform answering 500, 429, slowly or not at all, Prometheus down, a bad
config file. The daemon keeps running, decides nothing on missing data, says why in logs and metrics,
and recovers when the fault ends. Fake time and a fault-injecting fake backend: nothing sleeps."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import requests
from conftest import make_snapshot
from prometheus_client import CollectorRegistry
from test_daemon_clock import FakeClock

from controller.backends.base import ActionFailure
from controller.daemon import ConfigWatcher, Daemon, build_daemon
from controller.clients.prometheus import PromQLUnavailable
from controller.settings import load_settings
from policies.types import KEEP_SHARES, Decisions

NAMES = ("a", "b", "c")


def _http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response.url = "http://openwhisk.test/api/v1/namespaces/_/activations"
    return requests.HTTPError(f"{status} Server Error for url: {response.url}", response=response)


@dataclass
class FaultyBackend:
    """Answers like a healthy cluster except on the observations listed in ``faults`` (0-based)."""

    clock: FakeClock
    faults: dict[int, str] = field(default_factory=dict)
    slow_s: float = 2.5
    observed: int = 0
    applied_at: list[float] = field(default_factory=list)
    name: str = "faulty"
    function_names: tuple[str, ...] = NAMES

    def observe(self, now: float):
        fault = self.faults.get(self.observed)
        self.observed += 1
        if fault == "http_500":
            raise _http_error(500)
        if fault == "http_429":
            raise _http_error(429)
        if fault == "no_answer":
            raise requests.ReadTimeout("HTTPSConnectionPool(host='openwhisk.test'): Read timed out. (read timeout=5)")
        if fault == "refused":
            raise requests.ConnectionError("Failed to establish a new connection: [Errno 111] Connection refused")
        if fault == "prometheus_unreachable":
            raise PromQLUnavailable("http://prometheus.test/api/v1/query: cannot connect", url="http://prometheus.test")
        if fault == "slow":
            self.clock.advance(self.slow_s)
        valid = np.zeros(3, dtype=bool) if fault == "prometheus_rows_missing" else np.ones(3, dtype=bool)
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
    """A daemon on fake time; with ``config``, its file is watched with the same overrides as at start."""
    overrides = {"daemon.backend": "openwhisk", "daemon.backoff_s": [2.0, 4.0], **overrides}
    if config is None:
        overrides.setdefault("daemon.interval_s", 1.0)
    settings = load_settings(config, overrides)
    watcher = ConfigWatcher(config, overrides) if config is not None else None
    registry = CollectorRegistry()
    daemon = build_daemon(settings, backend=backend, policy=AlternatingPolicy(), registry=registry,
                          clock=clock, watcher=watcher)
    return daemon, registry


FAULTS = [
    # (fault, error kind or None, no-decision reason, what the log says)
    ("http_500", "server_error", "tick_failed", "500 Server Error"),
    ("http_429", "throttled", "tick_failed", "429"),
    ("no_answer", "timeout", "tick_failed", "Read timed out"),
    ("refused", "unavailable", "tick_failed", "Connection refused"),
    ("prometheus_unreachable", "unavailable", "tick_failed", "prometheus.test"),
    ("prometheus_rows_missing", None, "no_data", "no data for 3 of 3 functions"),
]
FAULT_IDS = [f[0] for f in FAULTS]


@pytest.mark.parametrize(("fault", "kind", "reason", "said"), FAULTS, ids=FAULT_IDS)
def test_a_fault_gives_no_decision_says_why_and_the_daemon_recovers_when_it_ends(caplog, fault, kind, reason, said):
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
    if kind is not None:
        assert get("mfrm_backend_errors_total", {"kind": kind}) == 2
        assert get("mfrm_ticks_total", {"result": "failed"}) == 2
        assert "no decision this tick" in caplog.text
        assert "recovered: tick 1 finished after 2 failed tick(s)" in caplog.text
    else:
        assert get("mfrm_ticks_total", {"result": "failed"}) == 0
        assert "data is back for all 3 functions" in caplog.text
    assert said in caplog.text
    assert get("mfrm_ticks_total", {"result": "ok"}) == 6 - (2 if kind else 0)
    assert daemon.health.check(clock.monotonic())[0]


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


def test_a_slow_platform_skips_slots_but_every_tick_that_finishes_counts():
    clock = FakeClock()
    backend = FaultyBackend(clock, faults={1: "slow"}, slow_s=2.5)
    daemon, registry = _daemon(clock, backend)
    daemon.driver.run(daemon.tick, max_ticks=4)
    assert daemon.driver.stats.skipped_slots == 2
    assert registry.get_sample_value("mfrm_ticks_total", {"result": "ok"}) == 4
    assert registry.get_sample_value("mfrm_tick_duration_seconds_sum") >= 2.5
    assert registry.get_sample_value("mfrm_tick_duration_seconds_bucket", {"le": "5.0"}) == 4


def test_a_long_outage_turns_health_unhealthy_with_the_reason_and_recovery_turns_it_back():
    clock = FakeClock()
    backend = FaultyBackend(clock, faults={i: "refused" for i in range(1, 5)})
    daemon, _ = _daemon(clock, backend)
    daemon.driver.run(daemon.tick, max_ticks=3)  # one good tick, then two failures 2 s apart
    clock.advance(daemon.driver.stats.last_wait_s)  # the 4 s backoff passes: 6 s since the good tick
    ok, why = daemon.health.check(clock.monotonic())
    assert not ok
    assert "limit 3 s" in why and "last tick failed: unavailable" in why
    daemon.driver.run(daemon.tick, max_ticks=3)  # two more failures, then the platform is back
    ok, why = daemon.health.check(clock.monotonic())
    assert ok, why


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


def test_a_reloaded_interval_changes_the_schedule_and_the_health_limit(tmp_path):
    config = tmp_path / "mfrm.yaml"
    _write(config, "daemon:\n  interval_s: 1.0\n")
    clock = FakeClock()
    daemon, _ = _daemon(clock, FaultyBackend(clock), config=config)
    _write(config, "daemon:\n  interval_s: 5.0\n")
    assert daemon.tick(1.0)
    assert daemon.driver.interval_s == 5.0
    assert daemon.health.stale_after_s == 15.0


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
