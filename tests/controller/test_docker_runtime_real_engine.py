"""The Docker runtime driver against a real Docker engine (Debian's docker.io 20.10, Engine API 1.41).

The engine is started by ``scripts/docker-engine.sh`` (``.ci/run`` runs it before pytest), which writes
where it answers to ``/var/lib/mfrm-docker-engine/env`` (``TEST_DOCKER_STATE_DIR`` moves the folder):
its unix socket, a loopback TCP port with mutual TLS, the client certificates, and a busybox image.
Without it these tests fail, saying to run the script; they are never skipped.

Containers are named the way OpenWhisk names them, run ``sleep`` with ``--network none``, carry a label
with this process's id, and are removed after each test (leftovers of a killed run are removed at the
start of the next). Other containers on the engine are left alone: every assertion looks only at the
containers the test created.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import certifi
import docker
import docker.errors
import docker.tls
import pytest
from fakes.docker_engine import FakeDockerEngine

from controller.backends.docker_runtime import DockerRuntime, engine_client
from controller.backends.openwhisk import from_settings
from controller.backends.runtime import ContainerInfo, RuntimeRejected, RuntimeUnavailable
from controller.settings import load_settings

STATE_DIR = Path(os.environ.get("TEST_DOCKER_STATE_DIR", "/var/lib/mfrm-docker-engine"))
START_THE_ENGINE = "run `scripts/docker-engine.sh` as root first (it starts the test Docker engine)"
LABEL = "mfrm-test.docker-runtime.pid"
"""Label on every container these tests create: the id of the pytest process that created it."""
TIMEOUT_S = 15.0
"""One Engine API call, s: generous, the engine shares 2 cores with the rest of the suite."""
_MB = 1024 * 1024


@dataclass(frozen=True)
class Engine:
    """Where the script's engine answers (its env file)."""

    socket_url: str
    tls_url: str
    tls_dir: Path
    """Client folder in mfrm's ``docker_tls_dir`` layout: ``ca.pem``, ``cert.pem``, ``key.pem``."""
    wrong_ca_tls_dir: Path
    """The same client certificate, with a ``ca.pem`` of a CA that did not sign the engine's certificate."""
    image: str


def read_engine_env(path: Path) -> Engine:
    if not path.is_file():
        pytest.fail(f"no Docker engine for the tests: {path} is missing; {START_THE_ENGINE}", pytrace=False)
    values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    try:
        return Engine(values["TEST_DOCKER_SOCKET"], values["TEST_DOCKER_TLS_URL"], Path(values["TEST_DOCKER_TLS_DIR"]),
                      Path(values["TEST_DOCKER_WRONG_CA_TLS_DIR"]), values["TEST_DOCKER_IMAGE"])
    except KeyError as missing:
        pytest.fail(f"{path} has no {missing.args[0]}: written by another version of the script; {START_THE_ENGINE}",
                    pytrace=False)


def client_tls(folder: Path, *, with_certificate: bool = True) -> docker.tls.TLSConfig:
    cert = (str(folder / "cert.pem"), str(folder / "key.pem")) if with_certificate else None
    return docker.tls.TLSConfig(client_cert=cert, ca_cert=str(folder / "ca.pem"), verify=True)


@pytest.fixture(scope="module")
def engine() -> Engine:
    found = read_engine_env(STATE_DIR / "env")
    try:
        with docker.APIClient(base_url=found.socket_url, version="auto", timeout=TIMEOUT_S) as api:
            api.inspect_image(found.image)
    except docker.errors.ImageNotFound:
        pytest.fail(f"the Docker engine at {found.socket_url} has no image {found.image}; {START_THE_ENGINE}", pytrace=False)
    except docker.errors.DockerException as error:
        pytest.fail(f"no Docker engine answers at {found.socket_url} ({error}); {START_THE_ENGINE}", pytrace=False)
    return found


@pytest.fixture(scope="module")
def api(engine: Engine) -> Iterator[docker.APIClient]:
    """The tests' own client, to create, pause and inspect containers (not the driver under test)."""
    with docker.APIClient(base_url=engine.socket_url, version="auto", timeout=TIMEOUT_S) as client:
        for leftover in client.containers(all=True, filters={"label": LABEL}):
            pid = leftover["Labels"][LABEL]
            if not Path(f"/proc/{pid}").exists():  # its pytest run is gone
                client.remove_container(leftover["Id"], force=True)
        yield client


_numbers = itertools.count(1)


@pytest.fixture
def start(api: docker.APIClient, engine: Engine) -> Iterator[Callable[..., str]]:
    """``start(name_part, shares=, memory_mb=, paused=)`` runs a container and returns its id.

    ``name_part`` is what follows ``wsk0_<n>_`` (``guest_primes``, ``prewarm_nodejs``), or a full name
    when it has no ``_``-separated OpenWhisk shape to follow (``postgres``); ``<n>`` is unique per run.
    """
    created: list[str] = []

    def run(name_part: str, *, shares: int = 0, memory_mb: int = 256, paused: bool = False, openwhisk: bool = True) -> str:
        unique = f"{os.getpid()}{next(_numbers):03d}"
        name = f"wsk0_{unique}_{name_part}" if openwhisk else f"{name_part}_{unique}"
        host_config = api.create_host_config(network_mode="none", mem_limit=memory_mb * _MB, cpu_shares=shares or None)
        container = api.create_container(engine.image, command=["sleep", "600"], name=name, host_config=host_config,
                                         labels={LABEL: str(os.getpid())})
        created.append(container["Id"])
        api.start(container["Id"])
        if paused:
            api.pause(container["Id"])
        return str(container["Id"])

    yield run
    for container_id in created:
        try:
            api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass  # the test removed it


def cgroup_cpu(pid: int) -> tuple[str, int]:
    """The CPU weight the kernel gives the process: ``("cpu.shares", n)`` on cgroup v1 (this machine's),
    ``("cpu.weight", n)`` on cgroup v2, read from its cgroup's file under the cgroup mounts."""
    mounts = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, _, options = tail.split(" ")[:3]
        mount_point = fields.split(" ")[4]
        if fstype == "cgroup" and "cpu" in options.split(","):
            mounts["v1"] = Path(mount_point)
        elif fstype == "cgroup2" and mount_point == "/sys/fs/cgroup":
            mounts["v2"] = Path(mount_point)
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(",") and "v1" in mounts:
            return "cpu.shares", int((mounts["v1"] / path.lstrip("/") / "cpu.shares").read_text())
        if controllers == "" and "v2" in mounts and "v1" not in mounts:
            return "cpu.weight", int((mounts["v2"] / path.lstrip("/") / "cpu.weight").read_text())
    raise AssertionError(f"no CPU cgroup found for PID {pid}")


def kernel_value(shares: int, file: str) -> int:
    """What Docker (runc) writes for ``shares``: the shares themselves on v1, a weight on v2."""
    return shares if file == "cpu.shares" else 1 + ((shares - 2) * 9999) // 262142


def mine(runtime: DockerRuntime, *ids: str) -> dict[str, ContainerInfo]:
    view = runtime.read()
    assert view.failed == {}, view.failed
    return {c.ref: c for c in view.containers if c.ref in ids}


@pytest.fixture
def local(engine: Engine) -> Iterator[DockerRuntime]:
    runtime = DockerRuntime({"invoker0": engine.socket_url}, timeout_s=TIMEOUT_S)
    yield runtime
    runtime.close()


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- finding containers -------------------------------------------------------------------------


def test_openwhisk_containers_are_found_with_memory_and_shares_and_stem_cells_and_foreign_ones_are_not(
        start, local: DockerRuntime) -> None:
    primes = start("guest_primes", shares=256, memory_mb=256)
    inference = start("guest_imageinference003", shares=512, memory_mb=128)
    stem_cell = start("prewarm_nodejs", shares=256)
    foreign = start("postgres", openwhisk=False)
    found = mine(local, primes, inference, stem_cell, foreign)
    assert set(found) == {primes, inference}
    assert (found[primes].invoker, found[primes].key, found[primes].memory_mb, found[primes].cpu_shares,
            found[primes].busy) == ("invoker0", "guest_primes", 256.0, 256.0, True)
    assert (found[inference].key, found[inference].memory_mb, found[inference].cpu_shares) == (
        "guest_imageinference003", 128.0, 512.0)
    assert all(c.cpu_total_s is not None and c.cpu_total_s >= 0.0 for c in found.values())


def test_a_container_started_without_shares_is_read_as_dockers_default_1024(start, local: DockerRuntime) -> None:
    plain = start("guest_primes")
    assert mine(local, plain)[plain].cpu_shares == 1024.0


def test_the_docker_20_10_engine_is_spoken_to_at_api_1_41_negotiated_once(engine: Engine, start,
                                                                          local: DockerRuntime) -> None:
    primes = start("guest_primes")
    assert local.api_versions == {}
    assert primes in mine(local, primes)
    assert local.api_versions == {"invoker0": "1.41"}
    with pytest.raises(docker.errors.APIError, match="client version 1.44 is too new. Maximum supported API version "
                                                     "is 1.41"):
        engine_client(engine.socket_url, "1.44", timeout_s=TIMEOUT_S).containers()  # why it is negotiated


def test_the_fake_engine_refuses_a_version_with_the_real_engines_words(engine: Engine) -> None:
    asked = []
    with FakeDockerEngine(api_version="1.41", min_api_version="1.12") as fake:
        for url in (engine.socket_url, fake.url):
            with pytest.raises(docker.errors.APIError) as refused:
                engine_client(url, "1.43", timeout_s=TIMEOUT_S).containers()
            asked.append((refused.value.status_code, refused.value.explanation))
    assert asked[0] == asked[1] == (400, "client version 1.43 is too new. Maximum supported API version is 1.41")


# --- changing shares ----------------------------------------------------------------------------


def test_shares_change_live_in_the_engine_and_in_the_containers_cgroup(api, start, local: DockerRuntime) -> None:
    primes = start("guest_primes", shares=256)
    pid = api.inspect_container(primes)["State"]["Pid"]
    file, before = cgroup_cpu(pid)
    assert before == kernel_value(256, file)
    local.set_shares(mine(local, primes)[primes], 640)
    after = api.inspect_container(primes)
    assert after["HostConfig"]["CpuShares"] == 640
    assert cgroup_cpu(pid) == (file, kernel_value(640, file))
    assert after["State"]["Running"] and after["State"]["Pid"] == pid  # changed live, not restarted
    assert mine(local, primes)[primes].cpu_shares == 640.0


def test_a_paused_container_is_idle_and_its_shares_can_be_changed(api, start, local: DockerRuntime) -> None:
    idle = start("guest_primes", shares=256, paused=True)
    seen = mine(local, idle)[idle]
    assert seen.busy is False
    local.set_shares(seen, 768)
    after = api.inspect_container(idle)
    assert after["State"]["Paused"] is True
    assert after["HostConfig"]["CpuShares"] == 768
    file, value = cgroup_cpu(after["State"]["Pid"])
    assert value == kernel_value(768, file)
    assert mine(local, idle)[idle].cpu_shares == 768.0


def test_a_value_the_engine_refuses_with_http_500_is_rejected_not_an_outage(api, start, local: DockerRuntime) -> None:
    primes = start("guest_primes", shares=256)
    seen = mine(local, primes)[primes]
    with pytest.raises(RuntimeRejected, match=r"answered 500: .*minimum allowed cpu-shares is 2"):
        local.set_shares(seen, 1)
    assert api.inspect_container(primes)["HostConfig"]["CpuShares"] == 256  # the engine kept its value
    assert mine(local, primes)[primes].cpu_shares == 256.0  # and the host is still read: no outage


def test_a_container_removed_since_it_was_read_is_not_an_error(api, start, local: DockerRuntime) -> None:
    primes = start("guest_primes")
    seen = mine(local, primes)[primes]
    api.remove_container(primes, force=True)
    local.set_shares(seen, 512)  # gone: nothing to change, nothing to report


# --- reading several containers, and paused ones ------------------------------------------------

REQUEST_LINE = '%s://%s:%s "%s %s %s" %s %s'
"""urllib3's DEBUG line for every request it makes: how these tests see which Engine API calls the
driver made (scheme, host, port, method, path and query, HTTP version, status, length)."""


def engine_requests(caplog: pytest.LogCaptureFixture) -> list[str]:
    """``"GET /v1.41/containers/<id>/stats?..."`` for every request logged while ``caplog`` listened."""
    return [f"{r.args[3]} {r.args[4]}" for r in caplog.records
            if r.name == "urllib3.connectionpool" and r.msg == REQUEST_LINE and isinstance(r.args, tuple)]


def asked(requests_made: list[str], container_id: str, what: str) -> bool:
    """Whether a ``GET`` of the container's ``json`` (inspect) or ``stats`` is among the requests."""
    return any(r.startswith("GET ") and f"/containers/{container_id}/{what}" in r for r in requests_made)


def test_a_paused_container_is_read_without_a_stats_call_and_keeps_its_last_reading(
        api, start, local: DockerRuntime, caplog: pytest.LogCaptureFixture) -> None:
    primes = start("guest_primes")
    paused_from_the_start = start("guest_primes", paused=True)
    first = mine(local, primes, paused_from_the_start)
    ran_s = first[primes].cpu_total_s
    assert ran_s is not None and ran_s >= 0.0
    assert first[paused_from_the_start].cpu_total_s == 0.0  # never read running: nothing used since seen
    api.pause(primes)
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        later = mine(local, primes, paused_from_the_start)
    made = engine_requests(caplog)
    assert asked(made, primes, "json") and asked(made, paused_from_the_start, "json")  # the calls are seen
    assert not asked(made, primes, "stats") and not asked(made, paused_from_the_start, "stats")
    assert (later[primes].busy, later[primes].cpu_total_s) == (False, ran_s)
    assert (later[paused_from_the_start].busy, later[paused_from_the_start].cpu_total_s) == (False, 0.0)


def test_twelve_running_and_two_paused_containers_are_all_read_over_tls_each_running_one_with_its_cpu(
        engine: Engine, start, caplog: pytest.LogCaptureFixture) -> None:
    running = [start(f"guest_action{n}") for n in range(12)]
    paused = [start("guest_primes", paused=True) for _ in range(2)]
    # Over TCP, as a remote invoker is read, one pool of connections serves the host (the SDK's
    # unix-socket adapter keeps a pool per URL instead, so its size never limits calls made at once).
    remote = DockerRuntime({"invoker0": engine.tls_url}, timeout_s=TIMEOUT_S, tls=client_tls(engine.tls_dir))
    try:
        with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
            found = mine(remote, *running, *paused)
    finally:
        remote.close()
    assert set(found) == set(running) | set(paused)
    readings = [(found[c].busy, found[c].cpu_total_s) for c in running]
    assert all(busy and cpu is not None and cpu >= 0.0 for busy, cpu in readings), readings
    assert [(found[c].busy, found[c].cpu_total_s) for c in paused] == [(False, 0.0)] * 2
    made = engine_requests(caplog)
    assert all(asked(made, c, "stats") for c in running)
    assert not any(asked(made, c, "stats") for c in paused)
    # Twelve calls at once exceed requests' default pool of 10 connections; the driver's pool holds them.
    assert not [r.getMessage() for r in caplog.records if "Connection pool is full" in r.getMessage()]


# --- an engine that cannot be reached -----------------------------------------------------------


@pytest.mark.parametrize("where", ["socket-file-missing", "closed-loopback-port"])
def test_an_unreachable_engine_is_unavailable(tmp_path: Path, where: str) -> None:
    url = f"unix://{tmp_path / 'docker.sock'}" if where == "socket-file-missing" else f"tcp://127.0.0.1:{free_loopback_port()}"
    runtime = DockerRuntime({"invoker0": url}, timeout_s=TIMEOUT_S)
    view = runtime.read()
    assert view.containers == () and list(view.failed) == ["invoker0"]
    assert url in view.failed["invoker0"]
    container = ContainerInfo("invoker0", "guest_primes", "0" * 64, 256.0, 256.0, True, 0.0)
    with pytest.raises(RuntimeUnavailable, match="invoker0"):
        runtime.set_shares(container, 512)
    assert runtime.api_versions == {}


# --- TLS ----------------------------------------------------------------------------------------


@pytest.fixture
def ca_bundle_variables(monkeypatch: pytest.MonkeyPatch) -> str:
    """``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE`` set to a public bundle, as on these machines: it
    does not know the engine's CA, and requests would let it replace the CA given to the client."""
    bundle = certifi.where()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    monkeypatch.setenv("CURL_CA_BUNDLE", bundle)
    return bundle


def test_over_tls_the_engine_is_checked_against_the_ca_given_even_with_the_ca_bundle_variables_set(
        engine: Engine, api, start, ca_bundle_variables: str) -> None:
    primes = start("guest_primes", shares=256)
    runtime = DockerRuntime({"invoker0": engine.tls_url}, timeout_s=TIMEOUT_S, tls=client_tls(engine.tls_dir))
    seen = mine(runtime, primes)[primes]
    runtime.set_shares(seen, 384)
    assert api.inspect_container(primes)["HostConfig"]["CpuShares"] == 384
    assert runtime.api_versions == {"invoker0": "1.41"}


def test_the_settings_tls_folder_reaches_the_engine_with_the_ca_bundle_variables_set(
        engine: Engine, start, ca_bundle_variables: str, monkeypatch: pytest.MonkeyPatch) -> None:
    primes = start("guest_primes")
    for name in [n for n in os.environ if n.startswith("MFRM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MFRM_OPENWHISK__AUTH", "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:key")
    settings = load_settings(overrides={"daemon.backend": "openwhisk", "openwhisk": {
        "api_host": "http://127.0.0.1:9", "namespace": "guest", "functions": ["primes"], "default_slo_s": 1.0,
        "runtime": "docker", "docker_hosts": {"invoker0": engine.tls_url}, "docker_tls_dir": str(engine.tls_dir),
        "runtime_timeout_s": TIMEOUT_S}})
    runtime = from_settings(settings, epoch_origin_ms=0).runtime  # the namespace is given: OpenWhisk is not asked
    assert isinstance(runtime, DockerRuntime)
    assert primes in mine(runtime, primes)


def test_an_engine_certificate_the_given_ca_did_not_sign_is_refused_even_if_the_environment_trusts_it(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(engine.tls_dir / "ca.pem"))  # the engine's own CA
    monkeypatch.setenv("CURL_CA_BUNDLE", str(engine.tls_dir / "ca.pem"))
    runtime = DockerRuntime({"invoker0": engine.tls_url}, timeout_s=TIMEOUT_S, tls=client_tls(engine.wrong_ca_tls_dir))
    view = runtime.read()
    assert view.containers == ()
    assert "CERTIFICATE_VERIFY_FAILED" in view.failed["invoker0"]
    container = ContainerInfo("invoker0", "guest_primes", "0" * 64, 256.0, 256.0, True, 0.0)
    with pytest.raises(RuntimeUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        runtime.set_shares(container, 512)


def test_the_engine_refuses_a_client_without_a_certificate(engine: Engine) -> None:
    runtime = DockerRuntime({"invoker0": engine.tls_url}, timeout_s=TIMEOUT_S,
                            tls=client_tls(engine.tls_dir, with_certificate=False))
    assert list(runtime.read().failed) == ["invoker0"]
