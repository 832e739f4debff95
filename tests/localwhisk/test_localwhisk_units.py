"""localwhisk's parts on their own: settings, limits, cgroup detection and conversion, throttle, stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from localwhisk.actions import Action, parse_put
from localwhisk.cgroups import V1Driver, V2Driver, detect, shares_to_weight
from localwhisk.config import (
    ActionLimitRanges,
    ConfigError,
    LimitRange,
    PlatformConfig,
    Subject,
    ThrottleConfig,
)
from localwhisk.errors import ApiError
from localwhisk.outcomes import SUCCESS, Outcome, activation_record, brief
from localwhisk.scheduler import default_shares
from localwhisk.store import ActionStore, ActivationStore
from localwhisk.throttle import Throttle

CODE = "def main(args):\n    return {}\n"


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(2, 1), (1024, 39), (262_144, 10_000), (1, 1), (10**9, 10_000)],
    ids=["minimum", "one-core", "maximum", "below-minimum-clamped", "above-maximum-clamped"],
)
def test_cpu_shares_map_onto_cgroup_v2_weights_range_onto_range(shares: int, weight: int) -> None:
    assert shares_to_weight(shares) == weight


@pytest.mark.parametrize(
    ("memory_mb", "user_memory_mb", "shares"),
    [(256, 4096, 64), (128, 4096, 32), (512, 2048, 256), (256, 256, 1024), (128, 1 << 20, 2)],
    ids=["default-action", "small-action", "small-invoker", "one-container-fills-memory", "floor-of-two"],
)
def test_default_shares_are_openwhisks_memory_proportional_split(memory_mb: int, user_memory_mb: int, shares: int) -> None:
    assert default_shares(memory_mb, user_memory_mb) == shares


def _fake_v1(root: Path) -> tuple[Path, Path]:
    cpu, memory = root / "cpu", root / "memory"
    for hierarchy, knob in ((cpu, "cpu.shares"), (memory, "memory.limit_in_bytes")):
        (hierarchy / "own").mkdir(parents=True)
        (hierarchy / "own" / knob).write_text("1024\n")
    # A real cgroupfs creates the knob files in a new directory; pre-create them for the fake.
    for hierarchy, knob in ((cpu, "cpu.shares"), (memory, "memory.limit_in_bytes")):
        (hierarchy / "own" / "localwhisk").mkdir()
        (hierarchy / "own" / "localwhisk" / knob).write_text("0\n")
    mountinfo = root / "mountinfo"
    mountinfo.write_text(
        f"32 31 0:29 / {cpu} rw,relatime - cgroup cgroup rw,cpu\n"
        f"35 31 0:32 / {memory} rw,relatime - cgroup cgroup rw,memory\n"
        f"41 31 0:38 / {root / 'unified'} rw,relatime - cgroup2 cgroup2 rw\n"
    )
    proc_cgroup = root / "cgroup"
    proc_cgroup.write_text("4:memory:/own\n1:cpu:/own\n0::/\n")
    return mountinfo, proc_cgroup


def test_detection_puts_the_parent_under_the_platforms_own_v1_cgroups(tmp_path: Path) -> None:
    mountinfo, proc_cgroup = _fake_v1(tmp_path)
    driver = detect("localwhisk", mountinfo, proc_cgroup)
    assert isinstance(driver, V1Driver)
    assert driver.status.cpu_dir == str(tmp_path / "cpu" / "own" / "localwhisk")
    assert driver.status.memory_dir == str(tmp_path / "memory" / "own" / "localwhisk")
    assert driver.status.cpu_control and driver.status.memory_control


def test_detection_without_any_cgroup_mount_falls_back_and_says_why(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n")
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("0::/\n")
    driver = detect("localwhisk", mountinfo, proc_cgroup)
    assert driver.status.mode == "none" and not driver.status.cpu_control
    assert "no cgroup hierarchy" in driver.status.reason


def test_detection_of_the_unified_hierarchy_enables_cpu_for_children(tmp_path: Path) -> None:
    unified = tmp_path / "unified"
    (unified / "svc").mkdir(parents=True)
    (unified / "svc" / "cgroup.controllers").write_text("cpu memory pids\n")
    (unified / "svc" / "cgroup.subtree_control").write_text("\n")
    (unified / "svc" / "localwhisk").mkdir()
    (tmp_path / "mountinfo").write_text(f"41 31 0:38 / {unified} rw,relatime - cgroup2 cgroup2 rw\n")
    (tmp_path / "cgroup").write_text("0::/svc\n")
    driver = detect("localwhisk", tmp_path / "mountinfo", tmp_path / "cgroup")
    assert isinstance(driver, V2Driver) and driver.status.mode == "v2"
    assert (unified / "svc" / "localwhisk" / "cgroup.subtree_control").read_text() == "+cpu +memory"
    container = unified / "svc" / "localwhisk" / "c1"
    cgroup = driver.create("c1", shares=1024, memory_bytes=128 << 20)
    assert (container / "cpu.weight").read_text() == "39"
    assert (container / "memory.max").read_text() == str(128 << 20)
    cgroup.set_shares(262_144)
    assert (container / "cpu.weight").read_text() == "10000"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"port": 70000}, "PlatformConfig.port"),
        ({"user_memory_mb": 64}, "PlatformConfig.user_memory_mb"),
        ({"idle_timeout_s": -1.0}, "PlatformConfig.idle_timeout_s"),
        ({"cgroups": "maybe"}, "PlatformConfig.cgroups"),
        ({"cgroup_parent": "../escape"}, "PlatformConfig.cgroup_parent"),
    ],
    ids=["port", "user-memory", "idle-timeout", "cgroups-mode", "cgroup-parent"],
)
def test_invalid_settings_are_refused_naming_the_field(tmp_path: Path, overrides: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        PlatformConfig(subject=Subject.parse("u:k"), state_dir=tmp_path, **overrides)


@pytest.mark.parametrize("auth", ["", "nocolon", "a:b:c", "a :b"], ids=["empty", "no-colon", "three-parts", "space"])
def test_malformed_api_keys_are_refused_without_echoing_them(auth: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Subject.parse(auth)
    assert auth == "" or auth not in str(raised.value)


def test_the_subject_never_shows_its_key() -> None:
    assert "secret" not in repr(Subject.parse("user:secret"))


def test_a_concurrency_range_above_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        ActionLimitRanges(concurrency=LimitRange(1, 4, 1, ""))


def test_an_update_keeps_what_it_does_not_change_and_bumps_the_version() -> None:
    ranges = ActionLimitRanges()
    first = parse_put(
        {"exec": {"kind": "python:3", "code": CODE}, "limits": {"memory": 512}, "parameters": [{"key": "a", "value": 1}]},
        "guest", "act", ranges, now_ms=1, existing=None,
    )
    second = parse_put({"limits": {"timeout": 1000}}, "guest", "act", ranges, now_ms=2, existing=first)
    assert (second.version, second.revision) == ("0.0.2", 2)
    assert (second.limits.memory_mb, second.limits.timeout_ms) == (512, 1000)
    assert second.parameters == (("a", 1),) and second.code == CODE


def test_the_throttle_window_moves_with_the_time_it_is_given() -> None:
    throttle = Throttle(ThrottleConfig(invocations_per_minute=2, concurrent_invocations=10))
    throttle.admit("ns", now=0.0)
    throttle.admit("ns", now=30.0)
    with pytest.raises(ApiError) as refused:
        throttle.admit("ns", now=59.0)
    assert refused.value.status == 429
    throttle.admit("ns", now=60.5)  # the arrival at 0 s has left the window


def test_the_throttle_counts_in_flight_until_released() -> None:
    throttle = Throttle(ThrottleConfig(invocations_per_minute=100, concurrent_invocations=1))
    throttle.admit("ns", now=0.0)
    with pytest.raises(ApiError):
        throttle.admit("ns", now=0.0)
    throttle.release("ns")
    throttle.admit("ns", now=0.0)
    throttle.admit("other", now=0.0)  # namespaces are counted apart


def _record(activation_id: str, start: int, name: str = "f", namespace: str = "guest") -> dict:
    action = Action(namespace, name, "0.0.1", "python:3", CODE, "main", (), (), parse_put(
        {"exec": {"kind": "python:3", "code": CODE}}, namespace, name, ActionLimitRanges(), 0, None
    ).limits, 0, 1)
    return activation_record(activation_id, action, namespace, start, Outcome(SUCCESS, {}, 0, 5))


def test_the_activation_store_lists_newest_first_filtered_and_bounded() -> None:
    store = ActivationStore(capacity=3)
    for i, (name, start) in enumerate([("f", 10), ("g", 20), ("f", 30), ("f", 30)]):
        store.add(_record(f"id{i}", start, name))
    assert len(store) == 3  # the oldest (id0) was dropped
    assert [r["activationId"] for r in store.list("guest")] == ["id3", "id2", "id1"]
    assert [r["activationId"] for r in store.list("guest", name="f")] == ["id3", "id2"]
    assert [r["activationId"] for r in store.list("guest", since_ms=25, limit=1)] == ["id3"]
    assert store.list("other") == [] and store.get("other", "id3") is None


def test_a_brief_record_has_no_response_or_logs() -> None:
    record = _record("x", 1)
    assert "response" not in brief(record) and "logs" not in brief(record) and brief(record)["activationId"] == "x"


def test_saved_actions_with_unusual_names_load_back(tmp_path: Path) -> None:
    action = parse_put({"exec": {"kind": "python:3", "code": CODE}}, "guest", "my action@v1.2", ActionLimitRanges(), 5, None)
    ActionStore(tmp_path).put(action)
    loaded = ActionStore(tmp_path).get("guest", "my action@v1.2")
    assert loaded == action


# --- the child-process helpers the live tests and benchmarks share (localwhisk.testing) ---


def test_wait_until_returns_the_first_truthy_value():
    from localwhisk.testing import wait_until

    answers = iter([None, 0, "ready"])
    assert wait_until("three tries", lambda: next(answers), timeout_s=5, poll_s=0.001) == "ready"


def test_wait_until_names_what_it_waited_for_when_time_runs_out():
    from localwhisk.testing import NotReady, wait_until

    with pytest.raises(NotReady, match="never: not within 0.01 s"):
        wait_until("never", lambda: False, timeout_s=0.01, poll_s=0.001)


def test_wait_until_stops_as_soon_as_the_process_it_waits_for_has_exited():
    import subprocess
    import sys

    from localwhisk.testing import NotReady, wait_until

    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait(timeout=30)
    with pytest.raises(NotReady, match="exited with status 3"):
        wait_until("a dead server", lambda: False, timeout_s=60, process=process)


def test_http_get_reports_status_zero_when_nothing_listens():
    from localwhisk.testing import free_port, http_get

    assert http_get(f"http://127.0.0.1:{free_port()}/ping", timeout_s=2) == (0, b"")
