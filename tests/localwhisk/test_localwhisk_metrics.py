"""localwhisk's /metrics: Prometheus text that parses and carries OpenWhisk's user-events names."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from localwhisk.clock import ManualClock
from localwhisk.config import ThrottleConfig
from localwhisk.testing import WhiskClient, running_platform

OK = "def main(args):\n    return {'fine': True}\n"
FAILS = "def main(args):\n    return {'error': 'nope'}\n"


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _scrape(client: WhiskClient) -> tuple[dict[tuple[str, frozenset], float], set[str]]:
    status, text = client.request("GET", "/metrics")
    assert status == 200
    families = {family.name for family in text_string_to_metric_families(text)}
    return _samples(text), families


def test_metrics_parse_and_count_activations_cold_starts_and_outcomes(tmp_path: Path) -> None:
    with running_platform(tmp_path, clock=ManualClock()) as (_, client):
        client.put_action("counted", OK)
        client.put_action("failing", FAILS)
        for _ in range(3):
            assert client.invoke("counted", blocking=True)[0] == 200
        assert client.invoke("failing", blocking=True)[0] == 502
        client.resources("counted", cpu_shares=700)
        samples, families = _scrape(client)

    ids = {("namespace", "guest"), ("initiator", "guest"), ("action", "counted")}
    activations = ids | {("kind", "python:3"), ("memory", "256")}
    assert samples[("openwhisk_action_activations_total", frozenset(activations))] == 3
    assert samples[("openwhisk_action_coldStarts_total", frozenset(ids))] == 1
    assert samples[("openwhisk_action_status", frozenset(ids | {("status", "success")}))] == 3
    failing = {("namespace", "guest"), ("initiator", "guest"), ("action", "failing"), ("status", "application_error")}
    assert samples[("openwhisk_action_status", frozenset(failing))] == 1
    assert samples[("openwhisk_action_waitTime_seconds_count", frozenset(ids))] == 3
    assert samples[("openwhisk_action_initTime_seconds_count", frozenset(ids))] == 1
    assert samples[("openwhisk_action_duration_seconds_count", frozenset(ids))] == 3
    assert samples[("openwhisk_action_memory", frozenset(ids))] == 256
    pool = frozenset({("namespace", "guest"), ("action", "counted")})
    assert samples[("localwhisk_container_cpu_shares", pool)] == 700
    assert samples[("localwhisk_target_containers", pool)] == -1
    assert samples[("localwhisk_containers", pool | {("state", "idle")})] + samples[
        ("localwhisk_containers", pool | {("state", "paused")})
    ] == 1
    assert {
        "openwhisk_action_activations",
        "openwhisk_action_coldStarts",
        "openwhisk_action_waitTime_seconds",
        "openwhisk_action_initTime_seconds",
        "openwhisk_action_duration_seconds",
        "openwhisk_action_response_size_bytes",
        "openwhisk_action_status",
        "localwhisk_action_cpu_seconds",
        "localwhisk_cpu_control",
    } <= families


def test_two_platforms_in_one_process_keep_separate_counts(tmp_path: Path) -> None:
    with running_platform(tmp_path / "a", clock=ManualClock()) as (_, first):
        first.put_action("counted", OK)
        first.invoke("counted", blocking=True)
        with running_platform(tmp_path / "b", clock=ManualClock()) as (_, second):
            samples, _ = _scrape(second)
    assert not any(name == "openwhisk_action_activations_total" for name, _ in samples)


def test_throttled_invocations_are_counted(tmp_path: Path) -> None:
    with running_platform(tmp_path, clock=ManualClock(), throttle=ThrottleConfig(invocations_per_minute=1)) as (_, client):
        client.put_action("counted", OK)
        client.invoke("counted", blocking=True)
        assert client.invoke("counted", blocking=True)[0] == 429
        samples, _ = _scrape(client)
    key = ("openwhisk_action_limit_timed_total", frozenset({("namespace", "guest"), ("initiator", "guest")}))
    assert samples[key] == 1
