"""localwhisk's warm pools, cgroups and resource API against the real cgroup hierarchy.

Tests that need writable cgroups skip with the reason the platform itself gives when the machine has
none (this project's machines run as root with a writable cgroup v1 ``cpu`` hierarchy).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from localwhisk.cgroups import detect
from localwhisk.clock import ManualClock
from localwhisk.engine import Platform
from localwhisk.scheduler import PoolView
from localwhisk.server import LocalWhisk
from localwhisk.testing import WhiskClient, annotation, running_platform

ECHO = "def main(args):\n    return {'echo': args}\n"
WAIT_S = 30.0

_probe = detect("localwhisk")
CGROUPS = _probe.status
_probe.close()
needs_cpu_cgroups = pytest.mark.skipif(
    not CGROUPS.cpu_control, reason=f"cgroup CPU control is not available here: {CGROUPS.reason}"
)


def _pool(views: list[PoolView], name: str) -> PoolView | None:
    return next((v for v in views if v.action == name), None)


def _settled(platform: Platform, name: str, **counts: int) -> bool:
    """Wait until the pool of ``name`` has exactly these container counts (and none stopping)."""
    wanted = counts | {"stopping": 0, "starting": counts.get("starting", 0)}

    def done(views: list[PoolView]) -> bool:
        pool = _pool(views, name)
        return pool is not None and all(pool.counts[k] == v for k, v in wanted.items())

    return platform.scheduler.wait_for(done, WAIT_S)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def running(tmp_path: Path, clock: ManualClock) -> Iterator[tuple[LocalWhisk, WhiskClient]]:
    # A janitor that never runs on its own: the tests call tick() after moving the clock.
    with running_platform(tmp_path, clock=clock, idle_timeout_s=5.0, pause_grace_s=0.05, janitor_interval_s=60.0) as r:
        yield r


@needs_cpu_cgroups
def test_the_resource_api_pins_the_pool_and_writes_cpu_shares_to_the_cgroup(
    running: tuple[LocalWhisk, WhiskClient],
) -> None:
    whisk, client = running
    client.put_action("pinned", ECHO)
    status, view = client.resources("pinned", containers=2, cpu_shares=512)
    assert status == 200 and view["containers"] == 2 and view["cpuShares"] == 512
    assert _settled(whisk.platform, "pinned", idle=2, total=2)

    status, view = client.resources("pinned")
    files = [Path(c["cgroup"]["cpu"]) / "cpu.shares" for c in view["instances"]]
    assert [f.read_text().strip() for f in files] == ["512", "512"]
    if CGROUPS.memory_control:
        limits = [(Path(c["cgroup"]["memory"]) / "memory.limit_in_bytes").read_text().strip() for c in view["instances"]]
        assert limits == [str(256 * 1024 * 1024)] * 2
    for container in view["instances"]:
        assert str(container["pid"]) in (Path(container["cgroup"]["cpu"]) / "cgroup.procs").read_text().split()

    status, view = client.resources("pinned", cpu_shares=300)
    assert [f.read_text().strip() for f in files] == ["300", "300"]

    # The pool was started in advance: an invocation finds a warm container (no initTime).
    status, record = client.invoke("pinned", {"x": 1}, blocking=True)
    assert status == 200 and annotation(record, "initTime") is None

    client.resources("pinned", containers=1)
    assert _settled(whisk.platform, "pinned", total=1)
    assert sum(f.parent.exists() for f in files) == 1  # the surplus container's cgroup is gone


@needs_cpu_cgroups
def test_container_cgroups_are_removed_on_shutdown(tmp_path: Path) -> None:
    with running_platform(tmp_path, clock=ManualClock()) as (_, client):
        client.put_action("short-lived", ECHO)
        client.invoke("short-lived", blocking=True)
        directory = Path(client.resources("short-lived")[1]["instances"][0]["cgroup"]["cpu"])
        assert directory.is_dir()
    assert not directory.exists()


def test_idle_containers_are_paused_after_the_grace_and_evicted_after_the_idle_timeout(
    running: tuple[LocalWhisk, WhiskClient], clock: ManualClock
) -> None:
    whisk, client = running
    client.put_action("evicted", ECHO)
    assert client.invoke("evicted", blocking=True)[0] == 200
    pid = client.resources("evicted")[1]["instances"][0]["pid"]

    clock.advance(0.1)
    whisk.platform.tick()
    view = client.resources("evicted")[1]
    assert view["current"]["paused"] == 1
    # SIGSTOP is delivered asynchronously: wait (as the worker's parent) for the stop to be reported.
    assert os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOWAIT) is not None
    assert _process_state(pid) == "T"

    clock.advance(4.0)  # 4.1 s idle: still under the 5 s timeout
    whisk.platform.tick()
    assert client.resources("evicted")[1]["current"]["total"] == 1

    clock.advance(1.0)
    whisk.platform.tick()
    assert _settled(whisk.platform, "evicted", total=0)
    assert _process_state(pid) is None

    # The next invocation is a cold start again.
    status, record = client.invoke("evicted", blocking=True)
    assert status == 200 and annotation(record, "initTime") is not None


def test_a_paused_container_is_resumed_for_the_next_activation(
    running: tuple[LocalWhisk, WhiskClient], clock: ManualClock
) -> None:
    whisk, client = running
    client.put_action("resumed", ECHO)
    client.invoke("resumed", blocking=True)
    clock.advance(1.0)
    whisk.platform.tick()
    assert client.resources("resumed")[1]["current"]["paused"] == 1
    status, record = client.invoke("resumed", {"again": True}, blocking=True)
    assert status == 200 and annotation(record, "initTime") is None


def test_a_pinned_pool_is_not_evicted_when_idle(running: tuple[LocalWhisk, WhiskClient], clock: ManualClock) -> None:
    whisk, client = running
    client.put_action("kept-warm", ECHO)
    client.resources("kept-warm", containers=1)
    assert _settled(whisk.platform, "kept-warm", idle=1, total=1)
    clock.advance(3600.0)
    whisk.platform.tick()
    assert client.resources("kept-warm")[1]["current"]["total"] == 1


def test_scale_to_zero_removes_the_container_as_soon_as_it_is_idle(running: tuple[LocalWhisk, WhiskClient]) -> None:
    whisk, client = running
    client.put_action("zero", ECHO)
    client.resources("zero", containers=0)
    status, record = client.invoke("zero", blocking=True)
    assert status == 200 and annotation(record, "initTime") is not None
    assert _settled(whisk.platform, "zero", total=0)


def test_a_pinned_pool_makes_activations_wait_instead_of_cold_starting(
    running: tuple[LocalWhisk, WhiskClient],
) -> None:
    whisk, client = running
    client.put_action("one-at-a-time", "import time\n\ndef main(args):\n    time.sleep(0.2)\n    return {}\n")
    client.resources("one-at-a-time", containers=1)
    assert _settled(whisk.platform, "one-at-a-time", idle=1, total=1)
    ids = [client.invoke("one-at-a-time")[1]["activationId"] for _ in range(3)]
    records = [whisk.platform.wait_activation(i, WAIT_S) for i in ids]
    assert all(r is not None and annotation(r, "initTime") is None for r in records)
    assert annotation(records[-1], "waitTime") >= 300  # it queued behind the two others (0.2 s each)
    assert client.resources("one-at-a-time")[1]["current"]["total"] == 1


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"containers": 10**12}, "containers must be -1 (on demand) or an integer in [0, 16]"),
        ({"containers": 17}, "containers must be -1 (on demand) or an integer in [0, 16]"),
        ({"containers": -2}, "containers must be -1 (on demand) or an integer in [0, 16]"),
        ({"containers": 1.5}, "containers must be -1 (on demand) or an integer in [0, 16]"),
        ({"containers": "3"}, "containers must be -1 (on demand) or an integer in [0, 16]"),
        ({"containers": True}, "containers must be -1 (on demand) or an integer in [0, 16]"),
        ({"cpuShares": 1}, "cpuShares must be -1 (unchanged) or an integer in [2, 262144]"),
        ({"cpuShares": 262_145}, "cpuShares must be -1 (unchanged) or an integer in [2, 262144]"),
        ({"cpuShares": -5}, "cpuShares must be -1 (unchanged) or an integer in [2, 262144]"),
        ({"cpuShares": 512.0}, "cpuShares must be -1 (unchanged) or an integer in [2, 262144]"),
        ({"replicas": 2}, "unknown fields ['replicas']"),
    ],
    ids=["a-trillion", "beyond-user-memory", "below-minus-one", "fraction", "string", "boolean", "shares-too-low",
         "shares-too-high", "shares-negative", "shares-float", "unknown-field"],
)
def test_invalid_resource_requests_are_refused_naming_the_field_and_its_range(
    running: tuple[LocalWhisk, WhiskClient], body: dict, says: str
) -> None:
    _, client = running
    client.put_action("sized", ECHO)
    answer, error = client.request("PUT", "/resources/v1/namespaces/_/actions/sized", body)
    assert answer == 400 and says in error["error"]
    view = client.resources("sized")[1]
    assert (view["containers"], view["cpuSharesSource"]) == (-1, "default")  # nothing was applied


@pytest.mark.parametrize(("memory_mb", "most"), [(128, 8), (512, 2)], ids=["small-action", "large-action"])
def test_the_largest_pool_accepted_is_what_user_memory_holds_at_the_actions_memory(
    tmp_path: Path, memory_mb: int, most: int
) -> None:
    with running_platform(tmp_path, clock=ManualClock(), cgroups="off", user_memory_mb=1024) as (whisk, client):
        client.put_action("bounded", ECHO, limits={"memory": memory_mb})
        status, error = client.resources("bounded", containers=most + 1)
        assert status == 400 and f"[0, {most}]" in error["error"] and f"{memory_mb} MB" in error["error"]
        status, view = client.resources("bounded", containers=most, cpu_shares=262_144)
        assert status == 200 and (view["containers"], view["cpuShares"]) == (most, 262_144)
        assert _settled(whisk.platform, "bounded", idle=most, total=most)
        client.resources("bounded", containers=-1)


def test_resources_of_an_unknown_action_are_404(running: tuple[LocalWhisk, WhiskClient]) -> None:
    _, client = running
    assert client.resources("nobody", containers=1)[0] == 404
    assert client.request("GET", "/resources/v1/actions/nobody")[0] == 404


def test_keep_shares_leaves_the_shares_unchanged(running: tuple[LocalWhisk, WhiskClient]) -> None:
    _, client = running
    client.put_action("kept-shares", ECHO)
    client.resources("kept-shares", cpu_shares=256)
    status, view = client.resources("kept-shares", containers=-1, cpu_shares=-1)
    assert status == 200 and view["cpuShares"] == 256


def test_default_shares_follow_openwhisk_memory_proportional_rule(running: tuple[LocalWhisk, WhiskClient]) -> None:
    _, client = running
    client.put_action("small", ECHO, limits={"memory": 128})
    client.put_action("large", ECHO, limits={"memory": 512})
    # 1024 shares split by user memory (4096 MB): 1024 / (4096 // memory).
    assert client.resources("small")[1]["cpuShares"] == 32
    assert client.resources("large")[1]["cpuShares"] == 128


def test_the_status_endpoint_says_whether_cpu_is_controlled(running: tuple[LocalWhisk, WhiskClient]) -> None:
    _, client = running
    status, body = client.request("GET", "/resources/v1/status")
    assert status == 200
    assert body["cgroups"]["cpuControl"] is CGROUPS.cpu_control
    assert body["cgroups"]["mode"] == CGROUPS.mode


def test_without_cgroups_the_platform_still_runs_and_says_so(tmp_path: Path) -> None:
    with running_platform(tmp_path, clock=ManualClock(), cgroups="off") as (_, client):
        _, body = client.request("GET", "/resources/v1/status")
        assert body["cgroups"]["mode"] == "none" and body["cgroups"]["cpuControl"] is False
        assert "off by configuration" in body["cgroups"]["reason"]
        client.put_action("plain", ECHO)
        assert client.invoke("plain", {"a": 1}, blocking=True, result=True) == (200, {"echo": {"a": 1}})


def test_memory_beyond_the_limit_ends_the_activation_as_a_developer_error(tmp_path: Path) -> None:
    hog = "def main(args):\n    block = bytearray(400 * 1024 * 1024)\n    return {'n': len(block)}\n"
    with running_platform(tmp_path, clock=ManualClock()) as (_, client):
        client.put_action("hog", hog, limits={"memory": 128})
        status, record = client.invoke("hog", blocking=True)
    assert status == 502 and record["response"]["status"] == "action developer error"


def test_deleting_an_action_removes_its_containers(running: tuple[LocalWhisk, WhiskClient]) -> None:
    whisk, client = running
    client.put_action("doomed", ECHO)
    client.invoke("doomed", blocking=True)
    pid = client.resources("doomed")[1]["instances"][0]["pid"]
    client.request("DELETE", client.action_path("doomed"))
    assert whisk.platform.scheduler.wait_for(lambda views: _pool(views, "doomed") is None, WAIT_S)
    assert _eventually_gone(whisk.platform, pid)


def _eventually_gone(platform: Platform, pid: int) -> bool:
    # Removal kills at once; reaping happens on the container's thread, signalled by wait_for.
    return platform.scheduler.wait_for(lambda views: _process_state(pid) is None, WAIT_S)


def _process_state(pid: int) -> str | None:
    """The state letter of a live process (R, S, T...), None once it is gone or a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if state in ("Z", "X") else state
