"""The container image, built and run with a real Docker engine, and the wheel index its build uses.

The image tests run the image named by ``MFRM_TEST_IMAGE`` the way docs/operator-guide.md tells an
operator to: read-only root filesystem, ``/tmp`` as tmpfs, the state volume, every capability
dropped, no new privileges; here also without any network (``--network none``: the daemon's
``/healthz`` is asked from inside the container). ``.ci/image`` builds the image
(scripts/build-image.sh) and runs this module with that variable set; without it (the plain test
suite, before any image exists) those tests are skipped. The wheel-index tests always run: they
start scripts/serve-wheels.py on loopback and read it as pip would.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.settings import DaemonSettings

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = os.environ.get("MFRM_TEST_IMAGE", "")
NAME_PREFIX = "mfrm-ci-test-"  # every container and volume this module makes; it removes them itself
METRICS_PORT = DaemonSettings.model_fields["metrics_port"].default
SHUTDOWN_TIMEOUT_S = DaemonSettings.model_fields["shutdown_timeout_s"].default
# The daemon starts in a few seconds with a warm numba cache; in a fresh container the cache (/tmp)
# is empty, so the simulator core compiles first, on 2 shared cores. A fail-safe, not a measurement.
START_TIMEOUT_S = 300.0
DOCKER_TIMEOUT_S = 120.0  # one docker CLI call (create, inspect, exec) on a loaded machine

needs_image = pytest.mark.skipif(
    not IMAGE, reason="needs a built image: .ci/image builds one and names it in MFRM_TEST_IMAGE")


# --- the wheel index ------------------------------------------------------------------------------

@dataclass
class WheelIndex:
    url: str
    files: dict[str, bytes]
    process: subprocess.Popen[str]


@pytest.fixture
def wheel_index(tmp_path: Path) -> Iterator[WheelIndex]:
    """scripts/serve-wheels.py on a free loopback port, serving three small made-up files."""
    files = {
        "Typing_Extensions-4.16.0-py3-none-any.whl": b"wheel one",
        "zope.interface-7.0-cp311-cp311-manylinux_2_17_x86_64.whl": b"wheel two",
        "vaderSentiment-3.3.2.tar.gz": b"an sdist",
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "requirements.txt").write_text("not a distribution\n")
    server = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "serve-wheels.py"), str(tmp_path), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = server.stdout.readline()  # the line comes once the server listens (or EOF if it failed)
        match = re.search(r"(http://127\.0\.0\.1:\d+/simple/)$", ready.strip())
        assert match, f"serve-wheels did not report an address: {ready!r}"
        yield WheelIndex(match.group(1), files, server)
    finally:
        server.terminate()
        server.wait(timeout=30)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def links(page: bytes) -> list[str]:
    return re.findall(r'href="([^"]+)"', page.decode())


def test_the_index_lists_each_project_once_under_its_normalized_name(wheel_index: WheelIndex) -> None:
    status, page = get(wheel_index.url)
    assert status == 200
    assert links(page) == ["/simple/typing-extensions/", "/simple/vadersentiment/", "/simple/zope-interface/"]


@pytest.mark.parametrize("asked", ["typing-extensions", "Typing_Extensions", "typing.extensions"],
                         ids=["normalized", "as-in-the-file", "dotted"])
def test_a_project_page_links_its_file_with_the_sha256_pip_checks(wheel_index: WheelIndex, asked: str) -> None:
    status, page = get(f"{wheel_index.url}{asked}/")
    assert status == 200
    (link,) = links(page)
    name = "Typing_Extensions-4.16.0-py3-none-any.whl"
    expected = hashlib.sha256(wheel_index.files[name]).hexdigest()
    assert link == f"/files/{name}#sha256={expected}"


def test_the_linked_file_is_served_byte_for_byte(wheel_index: WheelIndex) -> None:
    _, page = get(f"{wheel_index.url}vadersentiment/")
    (link,) = links(page)
    base = wheel_index.url.removesuffix("/simple/")
    status, content = get(base + link.split("#")[0])
    assert (status, content) == (200, b"an sdist")


@pytest.mark.parametrize("path", ["simple/pip/", "files/requirements.txt", "files/..%2Frequirements.txt", "other"],
                         ids=["unknown-project", "not-a-distribution", "path-outside", "other-path"])
def test_anything_not_in_the_wheelhouse_is_not_found(wheel_index: WheelIndex, path: str) -> None:
    status, _ = get(wheel_index.url.removesuffix("simple/") + path)
    assert status == 404


def test_sigterm_stops_the_index_with_status_0(wheel_index: WheelIndex) -> None:
    wheel_index.process.terminate()
    assert wheel_index.process.wait(timeout=30) == 0


def test_a_folder_without_distributions_is_refused_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "serve-wheels.py"), str(tmp_path)],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"serve-wheels: error: {tmp_path} holds no .whl, .tar.gz or .zip file"


# --- the image, run -------------------------------------------------------------------------------

def docker(*args: str, check: bool = True, timeout: float = DOCKER_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], check=False, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} exited with {result.returncode}: {result.stderr.strip()}")
    return result


def unique_name() -> str:
    return f"{NAME_PREFIX}{uuid.uuid4().hex[:12]}"


def hardened_run(volume: str, *options: str) -> list[str]:
    """``docker run`` as the operator guide gives it: read-only root, /tmp as tmpfs, the state volume,
    no capability, no privilege escalation, and here no network at all."""
    return ["run", "--read-only", "--tmpfs", "/tmp", "--volume", f"{volume}:/var/lib/mfrm",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--network", "none", *options]


@pytest.fixture
def state_volume() -> Iterator[str]:
    """A named volume for /var/lib/mfrm, as an operator would create one; removed afterwards."""
    name = unique_name()
    docker("volume", "create", name)
    try:
        yield name
    finally:
        docker("volume", "rm", "--force", name, check=False)


@pytest.fixture
def container_names() -> Iterator[Callable[[], str]]:
    """Hands out container names and removes those containers (running or not) afterwards."""
    made: list[str] = []

    def make() -> str:
        made.append(unique_name())
        return made[-1]

    yield make
    for name in made:
        docker("rm", "--force", "--volumes", name, check=False)


HTTP_PROBE = (
    "import sys, urllib.request, urllib.error\n"
    f"url = 'http://127.0.0.1:{METRICS_PORT}' + sys.argv[1]\n"
    "try:\n"
    "    answer = urllib.request.urlopen(url, timeout=5)\n"
    "    print(answer.status); print(answer.read().decode())\n"
    "except urllib.error.HTTPError as error:\n"
    "    print(error.code); print(error.read().decode())\n"
    "except OSError as error:\n"
    "    print(0); print(error)\n"
)


def ask_inside(container: str, path: str) -> tuple[int, str]:
    """GET ``path`` of the daemon from inside its container (it has no network outside)."""
    result = docker("exec", container, "python", "-c", HTTP_PROBE, path)
    status, _, body = result.stdout.partition("\n")
    return int(status), body


def wait_for(condition: Callable[[], object], container: str, timeout_s: float, what: str) -> object:
    """Poll ``condition`` until it is truthy; fail if the container exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        try:  # paces the poll, and notices an early exit
            subprocess.run(["docker", "wait", container], check=False, capture_output=True, timeout=0.5)
        except subprocess.TimeoutExpired:
            continue
        logs = docker("logs", container, check=False)
        pytest.fail(f"the container exited while waiting for {what}:\n{logs.stdout}{logs.stderr}")
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def ticks_completed(container: str) -> int:
    """``mfrm_ticks_completed`` on the daemon's /metrics (0 while it does not answer yet)."""
    status, metrics = ask_inside(container, "/metrics")
    found = re.search(r"^mfrm_ticks_completed (\S+)$", metrics, flags=re.MULTILINE) if status == 200 else None
    return int(float(found.group(1))) if found else 0


def state(container: str) -> dict:
    return json.loads(docker("inspect", "--format", "{{json .State}}", container).stdout)


@needs_image
def test_the_image_runs_mfrm_run_as_the_numeric_unprivileged_user_and_carries_its_version() -> None:
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", IMAGE).stdout)
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["mfrm", "run"]
    assert config["Labels"]["org.opencontainers.image.version"] == VERSION
    assert f"{METRICS_PORT}/tcp" in config["ExposedPorts"]


@needs_image
def test_in_a_hardened_container_only_tmp_and_the_state_volume_are_writable(state_volume: str) -> None:
    probe = (
        "import json, os, tempfile\n"
        "def writable(folder):\n"
        "    try:\n"
        "        with tempfile.TemporaryFile(dir=folder): return True\n"
        "    except OSError: return False\n"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'cwd': os.getcwd(),\n"
        "    'writable': {f: writable(f) for f in ['/', '/app', '/opt/mfrm', '/etc', '/tmp', '/var/lib/mfrm']}}))\n"
    )
    result = docker(*hardened_run(state_volume, "--rm", "--entrypoint", "python", IMAGE, "-c", probe))
    seen = json.loads(result.stdout)
    assert (seen["uid"], seen["gid"]) == (10001, 10001)
    assert seen["cwd"] == "/var/lib/mfrm"
    assert seen["writable"] == {"/": False, "/app": False, "/opt/mfrm": False, "/etc": False,
                                "/tmp": True, "/var/lib/mfrm": True}


@needs_image
def test_one_tick_on_the_embedded_simulated_cluster_exits_0(state_volume: str) -> None:
    result = docker(*hardened_run(state_volume, "--rm", IMAGE, "--once"), check=False, timeout=START_TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "backend=sim" in result.stderr
    assert "one tick finished" in result.stderr


@needs_image
def test_the_daemon_answers_healthz_and_stops_on_sigterm_within_its_shutdown_timeout_with_status_0(
        state_volume: str, container_names: Callable[[], str]) -> None:
    daemon = container_names()
    # A learning policy, so that the stop writes a checkpoint to the state volume; one tick a second.
    # The image's own HEALTHCHECK is polled every second instead of every 30 s.
    docker(*hardened_run(state_volume, "--detach", "--name", daemon, "--health-interval", "1s", IMAGE,
                         "--policy", "nac-linear", "--interval", "1"))

    # Healthy while it starts, so ask once ticks have finished: then 200 means they keep finishing.
    wait_for(lambda: ticks_completed(daemon) >= 2, daemon, START_TIMEOUT_S, "two finished ticks on /metrics")
    status, body = ask_inside(daemon, "/healthz")
    assert (status, body.split(":")[0]) == (200, "ok"), body
    wait_for(lambda: state(daemon).get("Health", {}).get("Status") == "healthy", daemon, START_TIMEOUT_S,
             "the image's HEALTHCHECK to report healthy")

    # docker stop sends SIGTERM and, if the container still runs after --time seconds, SIGKILL (137).
    docker("stop", "--time", f"{SHUTDOWN_TIMEOUT_S:.0f}", daemon, timeout=SHUTDOWN_TIMEOUT_S + DOCKER_TIMEOUT_S)
    stopped = state(daemon)
    logs = docker("logs", daemon).stderr
    assert (stopped["ExitCode"], stopped["OOMKilled"]) == (0, False), logs
    assert "SIGTERM: finishing the current tick" in logs
    assert re.search(r"stopped after \d+ tick\(s\)", logs), logs

    # The next container on the same volume resumes the policy from the checkpoint the stop wrote.
    resumed = docker(*hardened_run(state_volume, "--rm", IMAGE, "--policy", "nac-linear", "--once"),
                     check=False, timeout=START_TIMEOUT_S)
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"resumed nac-linear from checkpoint \S+ at tick [1-9]", resumed.stderr), resumed.stderr
