"""``/healthz`` and ``/metrics``: health semantics on fake time, served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter
from test_daemon_clock import FakeClock

from controller.daemon import EndpointServer, HealthState


def _health() -> HealthState:
    return HealthState(started_s=100.0, stale_after_s=30.0, blind_after_s=120.0)


@pytest.mark.parametrize(
    ("events", "now", "healthy", "why"),
    [
        ([], 105.0, True, "starting: no observation yet (5.0 s since start)"),
        ([], 131.0, False, "stuck: no tick has ended since start (31.0 s after one was due, limit 30 s)"),
        ([("ended", 110.0, 10.0), ("observed", 110.0)], 150.0, True, "last observation of the cluster 40.0 s ago"),
        ([("ended", 110.0, 10.0), ("observed", 110.0)], 150.5, False, "stuck: no tick has ended since 40.5 s ago"),
        ([("ended", 110.0, 60.0), ("failed", "unreachable: cannot connect")], 190.0, True,
         "starting: no observation yet (90.0 s since start): unreachable: cannot connect"),
        ([("ended", 110.0, 10.0), ("observed", 110.0), ("ended", 220.0, 10.0), ("failed", "unauthorized: HTTP 401")],
         231.0, False, "blind: last observation of the cluster 121.0 s ago (limit 120 s): unauthorized: HTTP 401"),
        ([("ended", 225.0, 10.0), ("saw_nothing", "no function had data: prometheus: no series")], 225.0, False,
         "blind: no observation of the cluster in 125.0 s since start (limit 120 s): no function had data"),
        ([("ended", 110.0, 10.0), ("observed", 110.0), ("ended", 120.0, 10.0), ("failed", "timeout: no answer")],
         125.0, True, "last observation of the cluster 15.0 s ago; last tick failed: timeout: no answer"),
        ([("ended", 110.0, 10.0), ("observed", 110.0, "no data for 1 of 3 functions: a: malformed")], 111.0, True,
         "no data for 1 of 3 functions: a: malformed"),
    ],
    ids=["starting-within-grace", "never-ticked", "observed-recently", "loop-stuck", "backoff-is-not-stuck",
         "blind-after-the-limit-with-the-cause", "ticks-that-see-nothing-are-blind", "one-failure-is-not-yet-unhealthy",
         "partial-data-is-healthy-and-says-why"],
)
def test_health_turns_503_when_the_loop_is_stuck_or_has_been_blind_too_long(events, now, healthy, why):
    health = _health()
    for name, *args in events:
        getattr(health, name)(*args)
    ok, reason = health.check(now)
    assert ok is healthy
    assert why in reason


def test_an_observation_clears_the_last_failure_and_the_blind_cause():
    health = _health()
    health.failed("unreachable: refused")
    health.ended(5.0, 1.0)
    health.observed(5.0)
    assert "failed" not in health.check(6.0)[1] and "refused" not in health.check(6.0)[1]


def test_a_daemon_that_is_shutting_down_is_unhealthy():
    health = _health()
    health.ended(101.0, 10.0)
    health.observed(101.0)
    health.stopping()
    assert health.check(102.0) == (False, "shutting down")


def _get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


@pytest.fixture
def served():
    clock = FakeClock(start_s=100.0)
    registry = CollectorRegistry()
    Counter("mfrm_ticks_total", "ticks", registry=registry).inc(3)
    health = _health()
    server = EndpointServer(registry, health, clock, "127.0.0.1", 0)
    yield clock, health, f"http://127.0.0.1:{server.port}"
    server.close()


def test_healthz_answers_200_then_503_with_the_cause_once_the_daemon_is_blind(served):
    clock, health, url = served
    health.ended(101.0, 10.0)
    health.observed(101.0)
    status, _, body = _get(url + "/healthz")
    assert (status, body.startswith("ok: last observation of the cluster")) == (200, True)
    for t in range(111, 240, 10):  # ticks go on, every one failing
        health.ended(float(t), 10.0)
        health.failed("unauthorized: activations: GET http://127.0.0.1:3233/api/v1/...: HTTP 401")
    clock.advance(130.0)
    status, _, body = _get(url + "/healthz")
    assert status == 503
    assert body.startswith("unhealthy: blind: last observation of the cluster 129.0 s ago (limit 120 s): unauthorized")


def test_livez_asks_only_whether_the_loop_runs_so_a_liveness_probe_does_not_restart_a_blind_daemon(served):
    clock, health, url = served
    health.ended(101.0, 10.0)
    health.failed("unreachable: pools: cannot connect")
    clock.advance(125.0)  # blind past the limit, but the loop...
    health.ended(clock.monotonic(), 10.0)  # ...still ends its ticks
    assert _get(url + "/healthz")[0] == 503
    status, _, body = _get(url + "/livez")
    assert (status, body) == (200, "ok: alive: last tick ended 0.0 s ago\n")
    clock.advance(45.0)  # now no tick ends any more: stuck
    status, _, body = _get(url + "/livez")
    assert status == 503 and body.startswith("unhealthy: stuck: no tick has ended since 45.0 s ago")


def test_metrics_are_served_in_the_prometheus_text_format_or_openmetrics_on_request(served):
    _, _, url = served
    status, content_type, body = _get(url + "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert "mfrm_ticks_total 3.0" in body
    status, content_type, body = _get(url + "/metrics", accept="application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")


def test_other_paths_are_not_found(served):
    _, _, url = served
    assert _get(url + "/")[0] == 404
