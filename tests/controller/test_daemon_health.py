"""``/healthz`` and ``/metrics``: health semantics on fake time, served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter
from test_daemon_clock import FakeClock

from controller.daemon import EndpointServer, HealthState


@pytest.mark.parametrize(
    ("finished_at", "failed", "now", "healthy", "why"),
    [
        (None, None, 105.0, True, "starting: no tick finished yet"),
        (None, None, 131.0, False, "no tick finished in 31.0 s since start (limit 30 s)"),
        (120.0, None, 150.0, True, "last tick finished 30.0 s ago"),
        (120.0, None, 150.5, False, "last tick finished 30.5 s ago (limit 30 s)"),
        (120.0, "timeout: read timed out", 160.0, False, "last tick failed: timeout: read timed out"),
        (120.0, "timeout: read timed out", 125.0, True, "last tick failed: timeout"),
    ],
    ids=["starting-within-grace", "never-ticked", "fresh-tick", "stale-tick", "stale-with-failure",
         "one-failure-is-not-yet-unhealthy"],
)
def test_health_is_fresh_within_three_intervals_of_the_last_finished_tick(finished_at, failed, now, healthy, why):
    health = HealthState(started_s=100.0, stale_after_s=30.0)
    if finished_at is not None:
        health.finished(finished_at)
    if failed is not None:
        health.failed(failed)
    ok, reason = health.check(now)
    assert ok is healthy
    assert why in reason


def test_a_finished_tick_clears_the_last_failure():
    health = HealthState(started_s=0.0, stale_after_s=30.0)
    health.failed("unavailable: refused")
    health.finished(5.0)
    assert "failed" not in health.check(6.0)[1]


def test_a_daemon_that_is_shutting_down_is_unhealthy():
    health = HealthState(started_s=0.0, stale_after_s=30.0)
    health.finished(1.0)
    health.stopping()
    assert health.check(2.0) == (False, "shutting down")


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
    health = HealthState(started_s=100.0, stale_after_s=30.0)
    server = EndpointServer(registry, health, clock, "127.0.0.1", 0)
    yield clock, health, f"http://127.0.0.1:{server.port}"
    server.close()


def test_healthz_answers_200_then_503_with_the_reason_once_ticks_stop(served):
    clock, health, url = served
    health.finished(101.0)
    status, _, body = _get(url + "/healthz")
    assert (status, body.startswith("ok: last tick finished")) == (200, True)
    clock.advance(40.0)
    status, _, body = _get(url + "/healthz")
    assert status == 503
    assert "last tick finished 39.0 s ago (limit 30 s)" in body


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
