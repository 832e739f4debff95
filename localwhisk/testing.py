"""Helpers for programs and tests that run a localwhisk (in process or as a child) and talk to it over HTTP.

    with running_platform(tmp_path) as (whisk, client):
        client.put_action("hello", "def main(args):\\n    return {'ok': True}\\n")
        status, record = client.invoke("hello", {}, blocking=True)

The platform listens on 127.0.0.1 with an ephemeral port; the client uses the standard library only.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from localwhisk.clock import Clock
from localwhisk.config import PlatformConfig, Subject
from localwhisk.server import LocalWhisk

#: Credentials of test platforms (not a secret: loopback only, gone with the test).
TEST_AUTH = "7f3c2a10-5d1e-4b8a-9c6f-0a1b2c3d4e5f:test-key-not-secret"


class WhiskClient:
    """A small OpenWhisk REST client (one keep-alive connection, not thread-safe)."""

    def __init__(self, url: str, auth: str = TEST_AUTH, namespace: str = "_", timeout_s: float = 120.0) -> None:
        host_port = url.split("://", 1)[-1].rstrip("/")
        host, _, port = host_port.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.timeout_s = timeout_s
        self.namespace = namespace
        self.auth_header: str | None = "Basic " + base64.b64encode(auth.encode()).decode()
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        connection.connect()
        assert connection.sock is not None
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        """One request; returns (status, decoded JSON body or text)."""
        headers = {"Content-Type": "application/json"}
        if self.auth_header is not None:
            headers["Authorization"] = self.auth_header
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = self._connect()
            try:
                self._connection.request(method, path, body=payload, headers=headers)
                response = self._connection.getresponse()
                data = response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self._connection.close()
                self._connection = None
                if attempt == 2:
                    raise
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(data) if data else None
        return response.status, data.decode()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # --- OpenWhisk calls -------------------------------------------------------------------

    def action_path(self, name: str) -> str:
        return f"/api/v1/namespaces/{quote(self.namespace, safe='')}/actions/{quote(name, safe='')}"

    def put_action(self, name: str, code: str | None = None, overwrite: bool = False, **fields: Any) -> tuple[int, Any]:
        body = dict(fields)
        if code is not None:
            body["exec"] = {"kind": "python:3", "code": code}
        return self.request("PUT", self.action_path(name) + f"?overwrite={str(overwrite).lower()}", body)

    def invoke(
        self, name: str, params: dict[str, Any] | None = None, blocking: bool = False, result: bool = False,
        timeout_ms: int | None = None,
    ) -> tuple[int, Any]:
        query = {"blocking": str(blocking).lower(), "result": str(result).lower()}
        if timeout_ms is not None:
            query["timeout"] = str(timeout_ms)
        return self.request("POST", self.action_path(name) + "?" + urlencode(query), params or {})

    def activation(self, activation_id: str, part: str = "") -> tuple[int, Any]:
        suffix = f"/{part}" if part else ""
        return self.request("GET", f"/api/v1/namespaces/{quote(self.namespace, safe='')}/activations/{activation_id}{suffix}")

    def activations(self, **query: Any) -> tuple[int, Any]:
        suffix = ("?" + urlencode(query)) if query else ""
        return self.request("GET", f"/api/v1/namespaces/{quote(self.namespace, safe='')}/activations{suffix}")

    def resources(self, name: str, containers: int | None = None, cpu_shares: int | None = None) -> tuple[int, Any]:
        path = f"/resources/v1/namespaces/{quote(self.namespace, safe='')}/actions/{quote(name, safe='')}"
        if containers is None and cpu_shares is None:
            return self.request("GET", path)
        body: dict[str, int] = {}
        if containers is not None:
            body["containers"] = containers
        if cpu_shares is not None:
            body["cpuShares"] = cpu_shares
        return self.request("PUT", path, body)


def annotation(record: dict[str, Any], key: str) -> Any:
    """The value of an activation's annotation, or None."""
    return next((a["value"] for a in record.get("annotations", []) if a["key"] == key), None)


@contextlib.contextmanager
def running_platform(
    state_dir: Path, clock: Clock | None = None, **overrides: Any
) -> Iterator[tuple[LocalWhisk, WhiskClient]]:
    """A started platform on 127.0.0.1:<ephemeral> and a client for it; stopped on exit."""
    config = PlatformConfig(subject=Subject.parse(TEST_AUTH), state_dir=Path(state_dir), port=0)
    config = replace(config, **overrides)
    whisk = LocalWhisk(config, clock=clock).start()
    client = WhiskClient(whisk.url)
    try:
        yield whisk, client
    finally:
        client.close()
        whisk.stop()


# --- the test suite's Docker engine (--containers docker) -----------------------------------

#: Where ``scripts/docker-engine.sh`` writes how to reach the test suite's engine (``KEY=VALUE``
#: lines); ``TEST_DOCKER_STATE_DIR`` moves the folder, as it moves the script's.
DOCKER_ENGINE_ENV = Path(os.environ.get("TEST_DOCKER_STATE_DIR", "/var/lib/mfrm-docker-engine")) / "env"
#: What to run when the engine or the image is missing.
MAKE_THE_ENGINE = "run `scripts/docker-engine.sh` as root first (it starts the test Docker engine)"
MAKE_THE_IMAGE = "run `scripts/localwhisk-image.sh` as root first (it makes the image of localwhisk's containers)"


class NoDockerEngine(RuntimeError):
    """The test engine or the image of localwhisk's containers is missing; the message says what to run."""


def docker_engine_for_tests(image: str = PlatformConfig.docker_image, env_file: Path = DOCKER_ENGINE_ENV) -> dict[str, str]:
    """The variables of the test engine's env file (``TEST_DOCKER_SOCKET``: its ``unix://`` URL, and
    the others ``scripts/docker-engine.sh`` writes), once the engine answers and holds ``image``;
    :class:`NoDockerEngine` naming the script to run otherwise."""
    import docker  # only Docker-mode tests need the SDK
    import docker.errors

    if not env_file.is_file():
        raise NoDockerEngine(f"no Docker engine for the tests: {env_file} is missing; {MAKE_THE_ENGINE}")
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and not line.startswith("#"))
    socket_url = values.get("TEST_DOCKER_SOCKET")
    if not socket_url:
        raise NoDockerEngine(f"{env_file} has no TEST_DOCKER_SOCKET; {MAKE_THE_ENGINE}")
    try:
        with docker.APIClient(base_url=socket_url, version="auto", timeout=30) as api:
            api.inspect_image(image)
    except docker.errors.ImageNotFound:
        raise NoDockerEngine(f"the Docker engine at {socket_url} has no image {image}; {MAKE_THE_IMAGE}") from None
    except docker.errors.DockerException as error:
        raise NoDockerEngine(f"no Docker engine answers at {socket_url} ({error}); {MAKE_THE_ENGINE}") from None
    return values


# --- child processes on loopback: shared by the live tests and benchmarks/live_compare.py ---


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (a child binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, auth: str | None = None, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """GET ``url`` (HTTP basic auth with ``uuid:key`` when given): (status, body); (0, b"") when
    nothing answers, so callers can poll a server that is still starting."""
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


class NotReady(RuntimeError):
    """A polled condition did not hold in time, or the process it waited for exited first."""


def wait_until(
    what: str,
    ready: Callable[[], Any],
    timeout_s: float,
    process: subprocess.Popen[Any] | None = None,
    poll_s: float = 0.25,
) -> Any:
    """Call ``ready()`` until it returns something truthy and return that; raise :class:`NotReady`
    naming ``what`` after ``timeout_s`` (monotonic seconds) or as soon as ``process`` has exited."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while True:
        value = ready()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise NotReady(f"{what}: the process exited with status {process.returncode} first")
        if time.monotonic() > deadline:
            raise NotReady(f"{what}: not within {timeout_s:g} s")
        pause.wait(poll_s)


def stop_process_group(process: subprocess.Popen[Any], grace_s: float = 20.0) -> int | None:
    """SIGTERM the process group of a child started with ``start_new_session=True``, SIGKILL it after
    ``grace_s`` seconds; its exit status."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    return process.returncode
