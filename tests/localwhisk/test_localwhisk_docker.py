"""localwhisk with ``--containers docker`` against a real Docker engine (Debian's docker.io 20.10).

The engine is started by ``scripts/docker-engine.sh`` and the containers' image made by
``scripts/localwhisk-image.sh`` (``.ci/run`` runs both before pytest); without either these tests
fail, saying which script to run. They are never skipped.

The engine is shared with other tests: every container a platform here makes carries its state
directory as a label, and the tests look only at, and remove only, containers with their own labels
(action names carry this process's id so that no other test's container can be mistaken for one).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from localwhisk.cli import main
from localwhisk.clock import ManualClock
from localwhisk.containers import EngineError
from localwhisk.docker_containers import (
    LABEL_ACTION,
    LABEL_STATE_DIR,
    container_name,
    negotiate_api_version,
)
from localwhisk.scheduler import PoolView
from localwhisk.server import LocalWhisk
from localwhisk.testing import (
    TEST_AUTH,
    NoDockerEngine,
    WhiskClient,
    docker_engine_for_tests,
    free_port,
    http_get,
    running_platform,
    wait_until,
)

ECHO = "def main(args):\n    return {'echo': args}\n"
ENVIRONMENT = "import os\ndef main(args):\n    return {'env': dict(os.environ), 'cwd': os.getcwd()}\n"
#: Touches every page of 256 MB: more than a 128 MB container may hold.
HOG = "def main(args):\n    block = b'x' * (256 * 1024 * 1024)\n    return {'size': len(block)}\n"
WAIT_S = 60.0
"""Longest wait for a container to start, stop or change, s: the engine shares 2 cores with the suite."""
USER_MEMORY_MB = 1024
"""User memory of the test platforms: 256 MB actions get 1024 // 4 = 256 shares, 128 MB ones 128."""
_MB = 1024 * 1024
TAG = str(os.getpid())
"""Part of every action name here, so that the engine's other containers never match."""
TEST_LABEL = "mfrm-test.localwhisk-docker.pid"
"""Label on the containers these tests make themselves (not through a platform)."""


def unique(name: str) -> str:
    return f"{name}-{TAG}"


@pytest.fixture(scope="module")
def engine() -> dict[str, str]:
    try:
        return docker_engine_for_tests()
    except NoDockerEngine as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def api(engine: dict[str, str]) -> Iterator[docker.APIClient]:
    """The tests' own client, to read what the platform made (not the platform's client)."""
    with docker.APIClient(base_url=engine["TEST_DOCKER_SOCKET"], version="auto", timeout=30) as client:
        for leftover in client.containers(all=True, filters={"label": TEST_LABEL}):
            if not Path(f"/proc/{leftover['Labels'][TEST_LABEL]}").exists():  # its pytest run is gone
                client.remove_container(leftover["Id"], force=True)
        yield client


def containers_of(api: docker.APIClient, state_dir: Path, action: str | None = None) -> list[dict[str, Any]]:
    """The engine's containers (inspected) of the platform on ``state_dir``, of one action if given."""
    label = f"{LABEL_STATE_DIR}={os.path.realpath(state_dir)}"
    found = []
    for listed in api.containers(all=True, filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound):  # removed since it was listed
            found.append(api.inspect_container(listed["Id"]))
    return [c for c in found if action is None or c["Config"]["Labels"][LABEL_ACTION] == f"/guest/{action}"]


@contextlib.contextmanager
def docker_platform(state_dir: Path, api: docker.APIClient, **overrides: Any) -> Iterator[tuple[LocalWhisk, WhiskClient]]:
    """A platform in Docker mode; whatever happens, no container of its state directory is left."""
    settings = {"containers": "docker", "user_memory_mb": USER_MEMORY_MB, "janitor_interval_s": 60.0} | overrides
    try:
        with running_platform(state_dir, **settings) as running:
            yield running
    finally:
        remove_containers_of(api, state_dir)


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, api: docker.APIClient,
             clock: ManualClock) -> Iterator[tuple[LocalWhisk, WhiskClient]]:
    """One platform for the tests that only add actions; its janitor waits for the tests' ticks."""
    with docker_platform(tmp_path_factory.mktemp("docker"), api, clock=clock, idle_timeout_s=5.0) as running:
        yield running


def pool(whisk: LocalWhisk, name: str) -> PoolView:
    return whisk.platform.resources("guest", name)


def wait_for_pool(whisk: LocalWhisk, name: str, **counts: int) -> None:
    """Until the pool of ``name`` has exactly these counts, none starting or stopping."""
    wanted = {"starting": 0, "stopping": 0} | counts

    def done(views: list[PoolView]) -> bool:
        view = next((v for v in views if v.action == name), None)
        return view is not None and all(view.counts[k] == v for k, v in wanted.items())

    assert whisk.platform.scheduler.wait_for(done, WAIT_S), f"{name}: {pool(whisk, name).counts}, wanted {wanted}"


def invoke(client: WhiskClient, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    status, record = client.invoke(name, params or {}, blocking=True)
    assert status == 200, (status, record)
    return record


# --- what a container is on the engine -------------------------------------------------------


def test_a_container_is_named_as_openwhisk_names_it_with_its_memory_limit_and_openwhisks_default_shares(
    platform: tuple[LocalWhisk, WhiskClient], api: docker.APIClient
) -> None:
    whisk, client = platform
    name = unique("image-inference.v2")
    client.put_action(name, ECHO, limits={"memory": 128})
    invoke(client, name)
    [container] = containers_of(api, whisk.config.state_dir, name)
    assert re.fullmatch(rf"/wsk0_\d+_guest_imageinferencev2{TAG}", container["Name"])
    host = container["HostConfig"]
    assert (host["Memory"], host["MemorySwap"]) == (128 * _MB, 128 * _MB)  # no swap, as OpenWhisk
    assert host["CpuShares"] == 1024 // (USER_MEMORY_MB // 128) == 128
    assert host["NetworkMode"] == "none"
    assert container["Config"]["Image"] == whisk.config.docker_image
    [instance] = pool(whisk, name).containers
    assert f"/{instance.name}" == container["Name"]
    assert instance.pid == container["State"]["Pid"]


def test_the_container_name_keeps_letters_digits_and_underscores_of_namespace_and_action() -> None:
    assert container_name(7, "guest", "image-inference.v2") == "wsk0_7_guest_imageinferencev2"
    assert container_name(1, "my_ns@org.com", "a b_c-d") == "wsk0_1_my_nsorgcom_ab_cd"
    assert container_name(2, "guest", "café") == "wsk0_2_guest_caf"  # Docker names are ASCII


def test_an_action_in_a_container_sees_its_working_directory_and_never_the_platforms_key_or_paths(
    platform: tuple[LocalWhisk, WhiskClient]
) -> None:
    _, client = platform
    name = unique("environment")
    client.put_action(name, ENVIRONMENT)
    result = invoke(client, name)["response"]["result"]
    assert result["cwd"] == "/lw"
    environment = result["env"]
    assert not [k for k, v in environment.items() if k.startswith("LOCALWHISK_") or TEST_AUTH.split(":")[1] in v]
    assert environment["PYTHONPATH"] == "/opt/localwhisk"
    assert environment["__OW_ACTION_NAME"] == f"/guest/{name}"
    assert "pyenv" not in environment.get("PATH", "")  # the image's PATH, not this machine's


# --- pause, resume, shares, eviction --------------------------------------------------------


def test_an_idle_container_is_paused_by_the_engine_and_unpaused_for_its_next_activation(
    platform: tuple[LocalWhisk, WhiskClient], api: docker.APIClient, clock: ManualClock
) -> None:
    whisk, client = platform
    name = unique("pausing")
    client.put_action(name, ECHO)
    invoke(client, name)
    clock.advance(whisk.config.pause_grace_s * 2)
    whisk.platform.tick()
    whisk.platform.settle()
    [container] = containers_of(api, whisk.config.state_dir, name)
    assert container["State"]["Status"] == "paused"
    assert [c.state for c in pool(whisk, name).containers] == ["paused"]
    record = invoke(client, name, {"again": True})
    assert record["response"]["result"] == {"echo": {"again": True}}
    assert not any(a["key"] == "initTime" for a in record["annotations"])  # the same, warm container
    [after] = containers_of(api, whisk.config.state_dir, name)
    assert (after["Id"], after["State"]["Status"]) == (container["Id"], "running")


def test_cpu_shares_set_through_the_resource_api_reach_the_engine_and_the_containers_cgroup(
    platform: tuple[LocalWhisk, WhiskClient], api: docker.APIClient, clock: ManualClock
) -> None:
    whisk, client = platform
    name = unique("weighted")
    client.put_action(name, ECHO)
    invoke(client, name)
    clock.advance(whisk.config.pause_grace_s * 2)
    whisk.platform.tick()  # paused: the change must reach a paused container too
    status, _ = client.resources(name, cpu_shares=300)
    assert status == 200
    client.resources(name, containers=2)  # a second container, started with the new shares
    wait_for_pool(whisk, name, total=2)
    whisk.platform.settle()
    containers = containers_of(api, whisk.config.state_dir, name)
    assert [c["HostConfig"]["CpuShares"] for c in containers] == [300, 300]
    for instance in pool(whisk, name).containers:
        assert instance.cpu_cgroup, instance
        assert int((Path(instance.cpu_cgroup) / "cpu.shares").read_text()) == 300
    client.resources(name, containers=-1)


def test_an_idle_container_leaves_the_engine_after_the_idle_timeout(
    platform: tuple[LocalWhisk, WhiskClient], api: docker.APIClient, clock: ManualClock
) -> None:
    whisk, client = platform
    name = unique("evicted")
    client.put_action(name, ECHO)
    invoke(client, name)
    assert len(containers_of(api, whisk.config.state_dir, name)) == 1
    clock.advance(whisk.config.idle_timeout_s + 1)
    whisk.platform.tick()
    wait_for_pool(whisk, name, total=0)
    assert containers_of(api, whisk.config.state_dir, name) == []


def test_a_container_past_its_memory_limit_is_killed_by_the_engine_and_the_next_activation_starts_another(
    platform: tuple[LocalWhisk, WhiskClient], api: docker.APIClient
) -> None:
    whisk, client = platform
    name = unique("hog")
    client.put_action(name, HOG, limits={"memory": 128})
    status, record = client.invoke(name, {}, blocking=True)
    assert status == 502
    assert "exited unexpectedly" in record["response"]["result"]["error"]
    wait_for_pool(whisk, name, total=0)
    assert containers_of(api, whisk.config.state_dir, name) == []


# --- the platform's life ---------------------------------------------------------------------


def remove_containers_of(api: docker.APIClient, state_dir: Path) -> None:
    for container in containers_of(api, state_dir):
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(container["Id"], force=True)


def test_stopping_the_platform_removes_every_container_it_made(tmp_path: Path, api: docker.APIClient) -> None:
    name = unique("pinned")
    try:
        with running_platform(tmp_path, containers="docker", user_memory_mb=USER_MEMORY_MB) as (whisk, client):
            client.put_action(name, ECHO)
            client.resources(name, containers=2)
            wait_for_pool(whisk, name, total=2)  # idle or already paused
            assert len(containers_of(api, tmp_path, name)) == 2
        assert containers_of(api, tmp_path) == []
    finally:
        remove_containers_of(api, tmp_path)


def test_a_name_taken_on_the_engine_is_skipped_for_the_next_number(
    tmp_path: Path, api: docker.APIClient, engine: dict[str, str]
) -> None:
    name = unique("taken")
    squatter = api.create_container(engine["TEST_DOCKER_IMAGE"], command=["sleep", "600"],
                                    name=container_name(1, "guest", name), labels={TEST_LABEL: TAG},
                                    host_config=api.create_host_config(network_mode="none"))
    try:
        with docker_platform(tmp_path, api) as (whisk, client):
            client.put_action(name, ECHO)
            invoke(client, name)
            [container] = containers_of(api, tmp_path, name)
            assert container["Name"] == "/" + container_name(2, "guest", name)
            assert [c.name for c in pool(whisk, name).containers] == [container_name(2, "guest", name)]
    finally:
        api.remove_container(squatter["Id"], force=True)


def test_a_sigkilled_platforms_containers_are_removed_by_the_next_platform_on_its_state_directory_and_no_other(
    tmp_path: Path, api: docker.APIClient, engine: dict[str, str]
) -> None:
    state_dir = tmp_path / "state"
    name = unique("orphan")
    other = api.create_container(engine["TEST_DOCKER_IMAGE"], command=["sleep", "600"],
                                 labels={TEST_LABEL: TAG, LABEL_STATE_DIR: str(tmp_path / "another-platform")},
                                 host_config=api.create_host_config(network_mode="none"))
    port = free_port()
    argv = [sys.executable, "-m", "localwhisk", "--port", str(port), "--auth", TEST_AUTH, "--state-dir", str(state_dir),
            "--containers", "docker", "--user-memory-mb", str(USER_MEMORY_MB)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LOCALWHISK_")}
    with (tmp_path / "platform.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    try:
        wait_until("localwhisk /ping", lambda: http_get(f"http://127.0.0.1:{port}/ping")[0] == 200, WAIT_S, process)
        client = WhiskClient(f"http://127.0.0.1:{port}")
        client.put_action(name, ECHO)
        client.resources(name, containers=2)
        wait_until("two paused containers", lambda: [c["State"]["Status"] for c in containers_of(api, state_dir)]
                   == ["paused", "paused"], WAIT_S, process)
        process.send_signal(signal.SIGKILL)
        process.wait()
        client.close()
        assert len(containers_of(api, state_dir)) == 2, "a SIGKILLed platform cannot remove its containers"
        with docker_platform(state_dir, api):
            assert containers_of(api, state_dir) == []
        assert api.inspect_container(other["Id"])["Config"]["Labels"][TEST_LABEL] == TAG  # not ours to remove
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        remove_containers_of(api, state_dir)
        api.remove_container(other["Id"], force=True)


# --- refusals ----------------------------------------------------------------------------------


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
            environment: dict[str, str] | None = None) -> tuple[int, str]:
    for variable in [v for v in os.environ if v.startswith("LOCALWHISK_")]:
        monkeypatch.delenv(variable)
    for variable, value in (environment or {}).items():
        monkeypatch.setenv(variable, value)
    mode = [] if "LOCALWHISK_CONTAINERS" in (environment or {}) else ["--containers", "docker"]
    with pytest.raises(SystemExit) as exited:
        main(["--auth", "u:k", "--port", "0", *mode, *argv])
    return int(exited.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "environment", "status", "says"),
    [
        (["--docker-image", "localwhisk/no-such-image:0"], {}, 1,
         "has no image localwhisk/no-such-image:0: make it with scripts/localwhisk-image.sh"),
        (["--docker-host", "unix:///nonexistent/docker.sock"], {}, 1, "no Docker engine answers at unix:///nonexistent/docker.sock"),
        ([], {"LOCALWHISK_DOCKER_HOST": "tcp://127.0.0.1:2375"}, 2, "Invalid value for '--docker-host' (from LOCALWHISK_DOCKER_HOST)"),
        (["--docker-image", "Not An Image"], {}, 2, "Invalid value for '--docker-image'"),
        ([], {"LOCALWHISK_CONTAINERS": "vm"}, 2, "LOCALWHISK_CONTAINERS"),
    ],
    ids=["image-missing", "engine-missing", "remote-engine", "malformed-image", "unknown-runtime"],
)
def test_docker_mode_that_cannot_run_stops_with_one_line_saying_why(
    tmp_path: Path, engine: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    argv: list[str], environment: dict[str, str], status: int, says: str,
) -> None:
    code, err = run_cli(["--state-dir", str(tmp_path / "state"), *argv], capsys, monkeypatch, environment)
    assert code == status
    assert err.count("\n") == 1 and err.startswith("localwhisk: ") and says in err, err


def test_a_platform_that_cannot_reach_its_engine_releases_its_state_directory(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no Docker engine answers"), \
            running_platform(tmp_path, containers="docker", docker_host="unix:///nonexistent/docker.sock"):
        pass
    with running_platform(tmp_path, cgroups="off"):  # the directory is free again
        pass


@pytest.mark.parametrize(
    ("engine_version", "spoken"),
    [
        ({"Version": "20.10.24", "ApiVersion": "1.41", "MinAPIVersion": "1.12"}, "1.41"),
        ({"Version": "27.5.1", "ApiVersion": "1.47", "MinAPIVersion": "1.24"}, "1.44"),
        ({"Version": "29.0.0", "ApiVersion": "1.52", "MinAPIVersion": "1.44"}, "1.44"),
        ({"Version": "old", "ApiVersion": "1.41"}, "1.41"),
        ({"Version": "19.03", "ApiVersion": "1.40", "MinAPIVersion": "1.12"}, None),
        ({"Version": "future", "ApiVersion": "1.60", "MinAPIVersion": "1.45"}, None),
        ({"Version": "garbage", "ApiVersion": "one"}, None),
    ],
    ids=["20.10", "27", "29", "no-minimum", "too-old", "too-new", "garbage"],
)
def test_the_engine_api_version_is_the_newest_both_sides_speak(engine_version: dict[str, str], spoken: str | None) -> None:
    if spoken is None:
        with pytest.raises(EngineError):
            negotiate_api_version(engine_version)
    else:
        assert negotiate_api_version(engine_version) == spoken


def test_the_test_engine_is_spoken_to_at_its_own_api_version_and_the_status_says_docker(
    platform: tuple[LocalWhisk, WhiskClient]
) -> None:
    whisk, client = platform
    assert whisk.platform.containers.api.api_version == "1.41"  # Docker 20.10 speaks no newer
    _, status = client.request("GET", "/resources/v1/status")
    assert status["containerRuntime"] == "docker"
    assert status["cgroups"] | {"reason": ""} == {"mode": "docker", "cpuControl": True, "memoryControl": True,
                                                   "cpuDir": "", "memoryDir": "", "reason": ""}
