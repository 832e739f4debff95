"""End to end on a real Docker engine: the daemon's ``openwhisk`` backend with ``runtime: docker``
drives localwhisk's action containers, which are real Docker containers.

What is real: the Docker engine (Debian's docker.io 20.10, Engine API 1.41, cgroup v1), its
containers and their cgroups; localwhisk in Docker mode (``--containers docker``), which names,
limits, pauses and removes containers as OpenWhisk's invoker does and speaks OpenWhisk's REST API;
the daemon (``mfrm run --backend openwhisk``), which reads activations over that API and containers
and their shares over the Engine API, and changes shares with ``docker update``. What is not: no
OpenWhisk controller or invoker (localwhisk stands in for both).

One run for the module (well under a minute once the image exists):

1. localwhisk in Docker mode on 127.0.0.1 with 1024 MB of user memory: its containers start with
   OpenWhisk's default shares for that, 256 for a 256 MB action and 128 for a 128 MB one;
2. two actions, A (256 MB) and B (128 MB), named after this process so that no other container on
   the shared engine is taken for theirs;
3. the daemon with ``openwhisk-default`` (OpenWhisk's own rule) told that an invoker has 2048 MB of
   user memory (OpenWhisk's shipped default), so it wants 128 and 64 shares: every decision is a
   change the platform did not make;
4. blocking invocations of A and B over the REST API until the engine shows the daemon's shares on
   every container of both; then a second container of A, started by the platform with its own
   default, until the daemon has given it its shares too.

Then the tests check, each on its own, what the daemon saw, what the engine and the kernel hold, what
came back over the REST API, and that everything stopped and left no container behind. Waiting is
bounded polling; every process runs in its own process group and is stopped by the fixture's exit
stack even when something fails. No Docker engine (or no image) is a failure naming the script to
run, never a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from prometheus_client.parser import text_string_to_metric_families

from localwhisk.docker_containers import LABEL_ACTION, LABEL_STATE_DIR
from localwhisk.testing import (
    NoDockerEngine,
    WhiskClient,
    docker_engine_for_tests,
    free_port,
    http_get,
    stop_process_group,
    wait_until,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
AUTH = "5a1d0c2e-7b3f-4e8a-9d6c-1f2e3d4c5b6a:e2e-docker-key-not-secret"
TAG = str(os.getpid())
A, B = f"e2e-docker-a-{TAG}", f"e2e-docker-b-{TAG}"
MEMORY_MB = {A: 256, B: 128}
PLATFORM_USER_MEMORY_MB = 1024
"""The platform's user memory: its own default shares are 1024 // (1024 // memory). Room for the
two containers of A and one of B."""
DAEMON_USER_MEMORY_MB = 2048
"""What the daemon's ``openwhisk-default`` is told an invoker has: it wants 1024 // (2048 // memory)."""
PLATFORM_SHARES = {name: 1024 // (PLATFORM_USER_MEMORY_MB // m) for name, m in MEMORY_MB.items()}
DAEMON_SHARES = {name: 1024 // (DAEMON_USER_MEMORY_MB // m) for name, m in MEMORY_MB.items()}
TICK_S = 2.0
TICK_DEADLINE_S = 10.0
"""The daemon's deadline for one tick, s. A host's one-shot stats calls, made at once, still wait for
the engine's next one-second collection on Docker 20.10, so a tick takes over a second of the 2-s
interval; on a loaded machine more, hence the margin."""
WAIT_S = 120.0
"""Longest wait for the daemon to start or for its shares to reach the containers, s (a loaded
machine; on an idle one either takes a few seconds)."""
ACTION = "def main(args):\n    return {'seen': args.get('i')}\n"


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int | None:
        return stop_process_group(self.process, 30.0)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def spawn(stack: contextlib.ExitStack, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Child:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALWHISK_", "MFRM_"))}
    with log.open("wb") as handle:
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                                   env=environment | (env or {}), start_new_session=True)
    child = Child(name, process, log)
    stack.callback(child.stop)
    return child


@dataclass
class DockerRun:
    """What the run left to check."""

    invocations: list[tuple[str, int, int, dict[str, Any]]]
    """Every blocking invocation: action, the parameter ``i`` sent, HTTP status, body (the record)."""
    listed: dict[str, set[str]]
    """Activation ids ``GET .../activations?name=`` listed per action after the run."""
    metrics: dict[tuple[str, str], float]
    """The daemon's ``mfrm_*`` samples after the run, by (name, function label)."""
    daemon_log: str
    containers: list[dict[str, Any]]
    """The engine's containers of the platform (``docker inspect``), read before it stopped."""
    cgroup_shares: dict[str, int]
    """``cpu.shares`` in each of those containers' cgroup (by container name), read then too."""
    pools: dict[str, dict[str, Any]]
    """The platform's own view of each pool (its resource API), read then too."""
    left: list[str]
    """Names of the platform's containers still on the engine after it stopped."""
    exits: dict[str, int | None]


def metric_samples(text: str) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("function", "")): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def cgroup_cpu_shares(pid: int) -> int:
    """``cpu.shares`` of process ``pid``'s cpu cgroup (cgroup v1, as on this project's machines)."""
    mounts = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        fs_type, _, options = tail.split(" ")[:3]
        if fs_type == "cgroup" and "cpu" in options.split(","):
            mounts["cpu"] = Path(fields.split(" ")[4])
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(",") and "cpu" in mounts:
            return int((mounts["cpu"] / path.lstrip("/") / "cpu.shares").read_text())
    raise AssertionError(f"no cgroup v1 cpu hierarchy holds PID {pid}")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRun]:
    try:
        engine = docker_engine_for_tests()
    except NoDockerEngine as error:
        pytest.fail(str(error), pytrace=False)
    socket_url = engine["TEST_DOCKER_SOCKET"]
    tmp = tmp_path_factory.mktemp("e2e-docker")
    state_dir = tmp / "lw-state"
    label = f"{LABEL_STATE_DIR}={os.path.realpath(state_dir)}"
    api = docker.APIClient(base_url=socket_url, version="auto", timeout=30)

    def ours() -> list[dict[str, Any]]:
        found = []
        for listed in api.containers(all=True, filters={"label": label}):
            with contextlib.suppress(docker.errors.NotFound):  # removed since it was listed
                found.append(api.inspect_container(listed["Id"]))
        return found

    invocations: list[tuple[str, int, int, dict[str, Any]]] = []
    exits: dict[str, int | None] = {}
    try:
        with contextlib.ExitStack() as stack:
            # 1. the platform, its containers on the engine
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            platform = spawn(stack, "localwhisk", [
                sys.executable, "-m", "localwhisk", "--port", str(port), "--auth", AUTH, "--state-dir", str(state_dir),
                "--containers", "docker", "--docker-host", socket_url,
                "--user-memory-mb", str(PLATFORM_USER_MEMORY_MB)], tmp / "localwhisk.log")
            wait_until("localwhisk /ping", lambda: http_get(url + "/ping")[0] == 200, 60, platform.process)
            client = WhiskClient(url, AUTH)
            stack.callback(client.close)
            # 2. the actions
            for name, memory in MEMORY_MB.items():
                status, body = client.put_action(name, ACTION, limits={"memory": memory})
                assert status == 200, body
            # 3. the daemon
            metrics_port = free_port()
            daemon = spawn(stack, "daemon", [
                sys.executable, "-m", "controller", "run", "--backend", "openwhisk", "--policy", "openwhisk-default",
                "--metrics-port", str(metrics_port), "--set", "daemon.metrics_host=127.0.0.1",
                "--set", f"loop.tick_s={TICK_S}", "--set", f"daemon.tick_deadline_s={TICK_DEADLINE_S}",
                "--set", "daemon.resume=false", "--set", f"output.out_dir={tmp / 'daemon-out'}",
                "--set", f"openwhisk.api_host={url}", "--set", "openwhisk.runtime=docker",
                "--set", f"openwhisk.docker_hosts={json.dumps({'invoker0': socket_url})}",
                "--set", f"openwhisk.functions={json.dumps([A, B])}", "--set", "openwhisk.default_slo_s=5",
                "--set", f"openwhisk.invoker_memory_mb={PLATFORM_USER_MEMORY_MB}", "--set", "openwhisk.invoker_cores=2",
                "--set", f"policy.params={json.dumps({'openwhisk-default': {'user_memory_mb': DAEMON_USER_MEMORY_MB}})}",
            ], tmp / "daemon.log", env={"MFRM_OPENWHISK__AUTH": AUTH})
            metrics_url = f"http://127.0.0.1:{metrics_port}"
            wait_until("daemon /healthz", lambda: http_get(metrics_url + "/healthz")[0] == 200, WAIT_S, daemon.process)

            # 4. invocations until the engine shows the daemon's shares on every container
            def shares_reached(containers_of_a: int) -> bool:
                for name in (A, B):
                    i = len(invocations)
                    status, body = client.invoke(name, {"i": i}, blocking=True)
                    invocations.append((name, i, status, body))
                found = ours()
                by_action = {name: [c for c in found if c["Config"]["Labels"][LABEL_ACTION] == f"/guest/{name}"]
                             for name in (A, B)}
                return len(by_action[A]) == containers_of_a and bool(by_action[B]) and all(
                    c["HostConfig"]["CpuShares"] == DAEMON_SHARES[name] for name, cs in by_action.items() for c in cs)

            wait_until("the daemon's shares on every container", lambda: shares_reached(1), WAIT_S, daemon.process,
                       poll_s=0.05)
            # A second container of A, started by the platform with its own default shares.
            status, body = client.resources(A, containers=2)
            assert status == 200, body
            wait_until("the daemon's shares on A's second container", lambda: shares_reached(2), WAIT_S,
                       daemon.process, poll_s=0.05)
            _, text = http_get(metrics_url + "/metrics")
            samples = metric_samples(text.decode())
            exits["daemon"] = daemon.stop()
            containers = ours()
            cgroup_shares = {c["Name"].lstrip("/"): cgroup_cpu_shares(c["State"]["Pid"]) for c in containers}
            pools = {name: client.resources(name)[1] for name in (A, B)}
            listed = {name: {r["activationId"] for r in client.activations(name=name, limit=200)[1]} for name in (A, B)}
            client.close()
            exits["localwhisk"] = platform.stop()
            left = [c["Name"] for c in ours()]
            daemon_log = daemon.text()
    finally:
        for container in ours():  # only if the platform failed to: this run's containers, by label
            with contextlib.suppress(docker.errors.NotFound):
                api.remove_container(container["Id"], force=True)
        api.close()
    yield DockerRun(invocations, listed, samples, daemon_log, containers, cgroup_shares, pools, left, exits)


def action_of(container: dict[str, Any]) -> str:
    return container["Config"]["Labels"][LABEL_ACTION].rsplit("/", 1)[1]


# --------------------------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------------------------


def test_the_daemon_found_each_actions_containers_through_the_engine_api(run: DockerRun) -> None:
    from controller.backends.runtime import action_key, container_action_key

    for name in (A, B):
        assert run.metrics[("mfrm_containers", name)] >= 1, f"the daemon counted no container of {name}"
    assert "containers not counted" not in run.daemon_log
    # The names the platform gave are the names the backend attributes to the actions.
    for container in run.containers:
        assert container_action_key(container["Name"]) == action_key("guest", action_of(container))


def test_the_daemons_shares_are_on_the_real_containers_in_the_engine_and_in_the_kernel(run: DockerRun) -> None:
    assert {action_of(c) for c in run.containers} == {A, B}
    for container in run.containers:
        wanted = DAEMON_SHARES[action_of(container)]
        assert container["HostConfig"]["CpuShares"] == wanted, container["Name"]
        assert run.cgroup_shares[container["Name"].lstrip("/")] == wanted, container["Name"]
    for name in (A, B):
        assert run.metrics[("mfrm_decision_cpu_shares", name)] == DAEMON_SHARES[name]
        # "shares 256 -> 128" when the daemon saw the platform's shares first, "default -> 128" when
        # the action had no container yet.
        assert re.search(rf"{name}: shares (default|{PLATFORM_SHARES[name]}) -> {DAEMON_SHARES[name]} ", run.daemon_log)


def test_the_platform_does_not_know_of_the_daemons_change_as_openwhisks_invoker_does_not(run: DockerRun) -> None:
    for name in (A, B):
        assert (run.pools[name]["cpuShares"], run.pools[name]["cpuSharesSource"]) == (PLATFORM_SHARES[name], "default")
        assert PLATFORM_SHARES[name] != DAEMON_SHARES[name]


def test_a_container_the_platform_started_later_got_the_daemons_shares_at_a_later_tick(run: DockerRun) -> None:
    assert len([c for c in run.containers if action_of(c) == A]) == 2
    assert f"{A}: re-applied shares {DAEMON_SHARES[A]} (observed shares" in run.daemon_log


def test_activations_came_back_over_the_openwhisk_rest_api(run: DockerRun) -> None:
    assert {(name, status) for name, _, status, _ in run.invocations} == {(A, 200), (B, 200)}
    for name, i, _, record in run.invocations:
        assert (record["name"], record["response"]["result"]) == (name, {"seen": i})
    for name in (A, B):
        sent = {record["activationId"] for n, _, _, record in run.invocations if n == name}
        # The newest 200 (a page's most) of what was sent, and nothing else.
        assert run.listed[name] <= sent and len(run.listed[name]) == min(len(sent), 200)
        # The daemon read them through the same API.
        assert run.metrics[("mfrm_invocations_total", name)] > 0


def test_every_process_stopped_cleanly_and_no_container_is_left_on_the_engine(run: DockerRun) -> None:
    assert run.exits == {"daemon": 0, "localwhisk": 0}
    assert "stopped after" in run.daemon_log
    assert run.left == []
