"""The ``replay`` group: what ``mfrm replay`` is configured with, its defaults, bounds and URL rules."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from controller.settings import ReplaySettings, SettingsError, default_of, load_settings

AUTH = "00000000-0000-0000-0000-000000000000:replay-test-key-never-logged"


@pytest.fixture(autouse=True)
def no_mfrm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own MFRM_* variables never leak into these tests."""
    for name in [n for n in os.environ if n.upper().startswith("MFRM_")]:
        monkeypatch.delenv(name)


def test_the_defaults_replay_in_real_time_with_64_outstanding_and_no_api_host():
    group = load_settings().replay
    assert group == ReplaySettings()
    assert (group.api_host, group.auth, group.namespace, group.verify_tls) == (None, None, "_", True)
    assert (group.speedup, group.concurrency, group.max_backlog) == (1.0, 64, 10_000)
    assert (group.drain_timeout_s, group.deploy, group.request_timeout_s) == (30.0, False, 70.0)
    assert group.max_failure_fraction == 0.05


def test_the_request_timeout_outlasts_openwhisks_60_second_blocking_wait():
    assert default_of("replay.request_timeout_s") > 60


def test_the_key_comes_from_its_own_variable_and_is_never_logged(monkeypatch):
    monkeypatch.setenv("MFRM_REPLAY__AUTH", AUTH)
    s = load_settings()
    assert s.replay.auth is not None and s.replay.auth.get_secret_value() == AUTH
    assert s.logged()["replay"]["auth"] == "**********"
    assert AUTH.split(":")[1] not in str(s.logged())


def test_the_group_loads_from_a_file_with_the_other_groups(tmp_path: Path):
    path = tmp_path / "replay.yaml"
    path.write_text("seed: 3\nworkload:\n  functions: 4\nreplay:\n  api_host: https://whisk.example:31001\n"
                    "  verify_tls: false\n  speedup: 60\n  concurrency: 8\n  deploy: true\n")
    s = load_settings(path)
    assert (s.seed, s.workload.functions) == (3, 4)
    assert s.replay.api_host == "https://whisk.example:31001"
    group = s.replay
    assert (group.verify_tls, group.speedup, group.concurrency, group.deploy) == (False, 60.0, 8, True)


@pytest.mark.parametrize("key, value, allowed", [
    ("speedup", 0, "0 < value <= 10000"),
    ("speedup", -2.0, "0 < value <= 10000"),
    ("concurrency", 0, "1 <= value <= 10000"),
    ("max_backlog", -1, "0 <= value <= 10000000"),
    ("drain_timeout_s", -0.5, "0 <= value <= 3600"),
    ("request_timeout_s", 0, "0 < value <= 3600"),
    ("max_failure_fraction", 1.5, "0 <= value <= 1"),
    ("max_failure_fraction", -0.1, "0 <= value <= 1"),
], ids=["no speed", "negative speed", "no worker", "negative backlog", "negative drain", "no time-out",
        "share above one", "negative share"])
def test_a_value_out_of_bounds_is_refused_with_the_range(key: str, value: Any, allowed: str):
    with pytest.raises(SettingsError) as raised:
        load_settings(overrides={f"replay.{key}": value})
    assert f"replay.{key} = {value!r} (from command line)" in str(raised.value)
    assert f"allowed: {allowed}" in str(raised.value)


@pytest.mark.parametrize("key, value", [
    ("drain_timeout_s", 0), ("max_backlog", 0), ("max_failure_fraction", 0), ("max_failure_fraction", 1),
    ("concurrency", 1),
], ids=lambda v: str(v))
def test_the_edges_of_the_ranges_are_allowed(key: str, value: Any):
    assert getattr(load_settings(overrides={f"replay.{key}": value}).replay, key) == value


@pytest.mark.parametrize("url, said", [
    ("127.0.0.1:3233", "replay.api_host='127.0.0.1:3233': give an http:// or https:// URL with a host"),
    ("ftp://whisk.example", "give an http:// or https:// URL with a host"),
    ("http://", "give an http:// or https:// URL with a host"),
    ("http://[::1", "replay.api_host='http://[::1': not a URL"),
    ("http://guest:hunter2@127.0.0.1:3233", "replay.api_host: no user or password in the URL"),
], ids=["no scheme", "not http", "no host", "broken brackets", "credentials"])
def test_the_api_host_must_be_an_http_url_without_credentials(url: str, said: str):
    with pytest.raises(SettingsError) as raised:
        load_settings(overrides={"replay.api_host": url})
    assert said in str(raised.value)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:3233", "https://whisk.example:31001/",
                                 "http://[::1]:3233"])
def test_an_http_url_with_a_host_is_accepted(url: str):
    assert load_settings(overrides={"replay.api_host": url}).replay.api_host == url
