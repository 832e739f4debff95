"""Action containers as Docker containers (``--containers docker``), made as OpenWhisk's Docker
container factory makes them, on an engine of this machine.

Each container

* is named as OpenWhisk's invoker names it, ``wsk<invoker>_<n>_<namespace>_<action>`` with namespace
  and action reduced to letters, digits and ``_`` (apache/openwhisk ``ContainerProxy.containerName``
  and ``ContainerFactory.containerNamePrefix``): invoker 0, ``n`` counting from 1. A name already
  taken on the engine (by another platform's container) is skipped for the next number;
* is created from ``PlatformConfig.docker_image`` with the action's memory as its memory limit and
  as its memory-plus-swap limit (no swap, as OpenWhisk's ``--memory`` and ``--memory-swap``),
  OpenWhisk's default CPU shares ``max(1024 // (user_memory // memory), 2)`` (``--cpu-shares``), no
  network (``--network none``), the platform's user and group, labels that name the platform, and
  two mounts: its working directory ``<state-dir>/containers/<name>/`` read-write at ``/lw`` and the
  ``localwhisk`` package read-only under ``/opt/localwhisk``;
* runs ``python3 -m localwhisk.worker``, which connects to the platform over a unix socket in its
  working directory and speaks the protocol of :mod:`localwhisk.worker`: the action's code arrives
  in its ``init`` message, so the image holds only the interpreter (and the modules actions import).
  Its output goes to ``container.log`` in its working directory;
* is paused when idle past the pause grace (``docker pause``: the cgroup freezer, as OpenWhisk's
  invoker does), unpaused for its next activation, given new shares by the resource API (``docker
  update --cpu-shares``), and removed (``docker rm -f``) on eviction, when its action goes, and
  when the platform stops.

The scheduler asks for pause, unpause, update and removal while it holds its lock; here they are
queued per container and carried out in order by a few engine threads, so the lock is never held
over a round trip to the engine, and the container's next request first waits for them
(:meth:`DockerWorker.settle`): the unpause of a paused container counts in the activation's wait.

Containers carry the platform's state directory as a label. The next platform on that directory
removes every container a killed one left; those left running end by themselves before that (their
worker reads the end of its socket and exits), paused ones stay until then.

Engine API version: the engine's unversioned ``GET /version`` gives the range it speaks, and the
client speaks the newest version both know (:func:`negotiate_api_version`), from 1.41 (Docker 20.10,
the engine this is tested on) to 1.44 (the newest the docker SDK 7.1 knows); every call used here
is the same across that range.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from localwhisk.cgroups import CgroupStatus, process_cgroup_dirs
from localwhisk.config import PlatformConfig
from localwhisk.containers import EngineError, ReplyReader, WorkerDied, process_cpu_seconds

log = logging.getLogger(__name__)

#: Oldest Engine API version spoken: Docker 20.10's, the engine this mode is tested on.
OLDEST_API_VERSION = "1.41"
#: Newest Engine API version spoken: the newest the docker SDK 7.1 knows.
NEWEST_API_VERSION = "1.44"
#: Longest one Engine API call may take, s. Creating a container on two busy cores can take seconds.
ENGINE_TIMEOUT_S = 30.0
#: Longest a started container may take to connect back, s: the engine starts the process, then
#: Python starts; both can be slow on a loaded machine, and a container that exits is noticed first.
CONNECT_TIMEOUT_S = 60.0
#: How often a container that has not connected yet is checked for having exited, s.
CONNECT_CHECK_S = 0.5
#: Threads that carry out queued engine calls (pause, unpause, update, remove) for all containers.
ENGINE_THREADS = 4
#: Names tried for one container before giving up, when the engine already has containers by them.
NAME_ATTEMPTS = 50
#: OpenWhisk's container name prefix for invoker 0 (``wsk`` + unique name + instance number).
INVOKER_PREFIX = "wsk0"
#: Labels on every container: the platform's state directory (what the next platform removes), the
#: platform instance, and the action it runs.
LABEL_STATE_DIR = "org.localwhisk.state-dir"
LABEL_INSTANCE = "org.localwhisk.instance"
LABEL_ACTION = "org.localwhisk.action"
#: Inside a container: its working directory, the socket there, its log, and where the package is.
CONTAINER_WORKDIR = "/lw"
SOCKET_NAME = "worker.sock"
LOG_NAME = "container.log"
PACKAGE_ROOT = "/opt/localwhisk"
#: The ``localwhisk`` package on this machine, mounted read-only into every container.
_PACKAGE_DIR = Path(__file__).resolve().parent
#: Variables of the platform's environment every container keeps: locale and time zone. Paths of
#: this machine (PATH, HOME, TMPDIR, PYTHONHOME, PYTHONPATH) mean nothing in the image.
CONTAINER_ENV = ("LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ")
_MB = 1024 * 1024


def sanitize(part: str) -> str:
    """OpenWhisk's filter for the namespace and action parts of a container name: letters, digits and
    ``_``. ASCII only: OpenWhisk's entity names are ASCII, and so are Docker's container names."""
    return "".join(c for c in part if c.isascii() and (c.isalnum() or c == "_"))


def container_name(number: int, namespace: str, action: str) -> str:
    """``wsk0_<number>_<namespace>_<action>``, as OpenWhisk's invoker 0 names its ``number``-th container."""
    return f"{INVOKER_PREFIX}_{number}_{sanitize(namespace)}_{sanitize(action)}"


def _api_version(text: object) -> tuple[int, int]:
    major, minor = str(text).split(".")
    return int(major), int(minor)


def negotiate_api_version(engine: Mapping[str, Any]) -> str:
    """The Engine API version to speak to an engine, from its ``GET /version`` answer: the newer of
    what both speak, ``min(ApiVersion, NEWEST_API_VERSION)``, if the engine still accepts it (its
    ``MinAPIVersion``) and it is not below ``OLDEST_API_VERSION``. Raises :class:`EngineError`
    naming both ranges otherwise."""
    try:
        newest = _api_version(engine["ApiVersion"])
        oldest = _api_version(engine.get("MinAPIVersion") or "1.0")
    except (KeyError, TypeError, ValueError):
        raise EngineError(f"the engine's GET /version gave no usable ApiVersion/MinAPIVersion: {dict(engine)!r:.200}") from None
    chosen = min(newest, _api_version(NEWEST_API_VERSION))
    theirs = f"the engine (Docker {engine.get('Version', '?')}) speaks Engine API {oldest[0]}.{oldest[1]} to {newest[0]}.{newest[1]}"
    ours = f"localwhisk speaks {OLDEST_API_VERSION} to {NEWEST_API_VERSION}"
    if chosen < _api_version(OLDEST_API_VERSION) or oldest > chosen:
        raise EngineError(f"{theirs}; {ours}")
    return f"{chosen[0]}.{chosen[1]}"


def _one_line(error: object) -> str:
    return " ".join(str(error).split())


def _engine_errors() -> tuple[type[BaseException], ...]:
    """What a call to the engine raises when it refuses or does not answer."""
    return docker.errors.DockerException, requests.exceptions.RequestException


def connect_engine(base_url: str, timeout_s: float = ENGINE_TIMEOUT_S) -> tuple[docker.APIClient, Mapping[str, Any]]:
    """A client of the engine at ``base_url`` at the negotiated API version, and its ``GET /version``
    answer; :class:`EngineError` when nothing answers or no version fits."""
    probe = docker.APIClient(base_url=base_url, version=NEWEST_API_VERSION, timeout=timeout_s)
    try:
        engine = probe.version(api_version=False)
    except _engine_errors() as error:
        raise EngineError(f"no Docker engine answers at {base_url} ({_one_line(error)})") from None
    finally:
        probe.close()
    version = negotiate_api_version(engine if isinstance(engine, Mapping) else {})
    return docker.APIClient(base_url=base_url, version=version, timeout=timeout_s), engine


def container_environment(source: Mapping[str, str], pass_env: tuple[str, ...], secret: str) -> dict[str, str]:
    """The environment of every container: ``CONTAINER_ENV`` and ``pass_env`` from ``source`` (the
    platform's environment) minus any variable whose value contains ``secret`` (the API key), the
    import path of the mounted package, and unbuffered output."""
    env = {}
    for name in CONTAINER_ENV + pass_env:
        value = source.get(name)
        if value is None:
            continue
        if len(secret) >= 8 and secret in value:
            log.warning("not passing %s to actions: its value contains the platform's API key", name)
            continue
        env[name] = value
    env["PYTHONPATH"] = PACKAGE_ROOT
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _listen(directory: Path) -> socket.socket:
    """A unix socket listening at ``directory/SOCKET_NAME``. Bound through ``/proc/self/fd`` so that
    the address fits the 108 bytes of a socket path however deep the state directory is."""
    path = directory / SOCKET_NAME
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a container of an earlier platform that had this name
    directory_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(f"/proc/self/fd/{directory_fd}/{SOCKET_NAME}")
        listener.listen(1)
    except OSError:
        listener.close()
        raise
    finally:
        os.close(directory_fd)
    return listener


class DockerWorker:
    """One action container on the Docker engine (see the module docstring)."""

    def __init__(self, factory: DockerContainers, name: str, namespace: str, action: str, shares: int,
                 memory_mb: int) -> None:
        self.name = name
        self._factory = factory
        self._api = factory.api
        self._namespace = namespace
        self._action = action
        self._memory_mb = memory_mb
        self._shares = shares
        self._created_shares = shares
        self._lock = threading.Lock()
        self._id: str | None = None
        self._pid: int | None = None
        self._killed = False
        self._removed = False
        self._broken = ""
        self._socket: socket.socket | None = None
        self._replies = ReplyReader(name)
        self._last_cpu_s = 0.0
        self._cpu_dir = self._memory_dir = ""
        self._ops: deque[tuple[str, Callable[[str], None]]] = deque()
        self._draining = False
        self._settled = threading.Event()
        self._settled.set()

    @property
    def workdir(self) -> Path:
        return self._factory.containers_dir / self.name

    @property
    def container_id(self) -> str | None:
        """The engine's id of the container, once created."""
        return self._id

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def cpu_dir(self) -> str:
        return self._cpu_dir

    @property
    def memory_dir(self) -> str:
        return self._memory_dir

    # --- start -----------------------------------------------------------------------------

    def start(self) -> None:
        """Create and start the container and wait for its worker to connect; :class:`EngineError`
        (an ``OSError``) when the engine refuses or the container ends first."""
        listener = self._create()
        try:
            container_id = self._id
            assert container_id is not None
            try:
                self._api.start(container_id)
                state = self._api.inspect_container(container_id).get("State") or {}
            except _engine_errors() as error:
                raise EngineError(f"the engine did not start container {self.name}: {_one_line(error)}") from None
            self._pid = int(state.get("Pid") or 0) or None
            connection = self._await_connection(listener, container_id)
        except BaseException:
            self._remove_container()
            raise
        finally:
            listener.close()
            with contextlib.suppress(OSError):
                (self.workdir / SOCKET_NAME).unlink()
        self._socket = connection
        if self._pid is not None:
            cpu_dir, memory_dir = process_cgroup_dirs(self._pid)
            self._cpu_dir, self._memory_dir = str(cpu_dir or ""), str(memory_dir or "")
        with self._lock:
            changed = self._shares != self._created_shares
        if changed:  # new shares were asked for while the container was starting
            self._queue("update", self._update)

    def _create(self) -> socket.socket:
        """Create the container under the first free name; returns the socket it will connect to."""
        for _ in range(NAME_ATTEMPTS):
            self.workdir.mkdir(parents=True, exist_ok=True)
            listener = _listen(self.workdir)
            with self._lock:
                shares = self._created_shares = self._shares
            try:
                created = self._api.create_container(
                    self._factory.image,
                    command=["python3", "-m", "localwhisk.worker", "--connect", f"{CONTAINER_WORKDIR}/{SOCKET_NAME}",
                             "--log", f"{CONTAINER_WORKDIR}/{LOG_NAME}"],
                    name=self.name,
                    user=f"{os.getuid()}:{os.getgid()}",
                    working_dir=CONTAINER_WORKDIR,
                    environment=self._factory.environment,
                    labels=self._factory.labels(self._namespace, self._action),
                    host_config=self._api.create_host_config(
                        network_mode="none",
                        mem_limit=self._memory_mb * _MB,
                        memswap_limit=self._memory_mb * _MB,
                        cpu_shares=shares,
                        binds={
                            str(self.workdir): {"bind": CONTAINER_WORKDIR, "mode": "rw"},
                            str(_PACKAGE_DIR): {"bind": f"{PACKAGE_ROOT}/localwhisk", "mode": "ro"},
                        },
                    ),
                )
            except docker.errors.APIError as error:
                listener.close()
                self._abandon_workdir()
                if error.status_code == 409:  # the name is in use on the engine
                    self.name = self._factory.new_name(self._namespace, self._action)
                    self._replies.name = self.name
                    continue
                raise EngineError(f"the engine did not create container {self.name}: {_one_line(error.explanation)}") from None
            except _engine_errors() as error:
                listener.close()
                self._abandon_workdir()
                raise EngineError(f"the engine did not create container {self.name}: {_one_line(error)}") from None
            with self._lock:
                self._id = created["Id"]
                killed = self._killed
            if killed:
                listener.close()
                self._remove_container()
                raise EngineError(f"container {self.name} was removed while starting")
            return listener
        raise EngineError(f"no free container name for {self._action} after {NAME_ATTEMPTS} attempts")

    def _abandon_workdir(self) -> None:
        with contextlib.suppress(OSError):
            (self.workdir / SOCKET_NAME).unlink()
        with contextlib.suppress(OSError):
            self.workdir.rmdir()  # only when empty: a directory with a log stays

    def _await_connection(self, listener: socket.socket, container_id: str) -> socket.socket:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EngineError(f"container {self.name} did not connect within {CONNECT_TIMEOUT_S:g} s")
            ready, _, _ = select.select([listener], [], [], min(left, CONNECT_CHECK_S))
            if ready:
                connection, _ = listener.accept()
                return connection
            if self._killed:
                raise EngineError(f"container {self.name} was removed while starting")
            try:
                state = self._api.inspect_container(container_id).get("State") or {}
            except _engine_errors() as error:
                raise EngineError(f"the engine lost container {self.name} while it started: {_one_line(error)}") from None
            if not state.get("Running"):
                raise EngineError(f"container {self.name} exited with code {state.get('ExitCode')} before its worker "
                                  f"connected: {self._output_tail(container_id)}")

    def _output_tail(self, container_id: str) -> str:
        """The last lines the container wrote before its worker took over its output, or its log."""
        text = ""
        with contextlib.suppress(*_engine_errors()):
            text = self._api.logs(container_id, stdout=True, stderr=True, tail=5).decode(errors="replace")
        if not text.strip():
            with contextlib.suppress(OSError):
                text = "\n".join((self.workdir / LOG_NAME).read_text(errors="replace").splitlines()[-5:])
        return " | ".join(line for line in text.splitlines() if line.strip()) or "no output"

    # --- the worker's protocol -------------------------------------------------------------

    def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self.settle()
        if self._broken:
            raise WorkerDied(f"container {self.name} {self._broken}")
        connection = self._socket
        if connection is None:
            raise WorkerDied(f"container {self.name} was never started")
        return self._replies.exchange(connection.sendall, connection.fileno(), message, timeout_s,
                                      lambda: "closed its connection (its process exited or it was removed)")

    # --- engine calls, queued in order -----------------------------------------------------

    def settle(self) -> None:
        # Every queued call ends within the engine time-out, so this wait is bounded.
        self._settled.wait(ENGINE_TIMEOUT_S * (len(self._ops) + 2))

    def pause(self) -> None:
        self._queue("pause", self._api.pause)

    def resume(self) -> None:
        self._queue("unpause", self._unpause)

    def set_shares(self, shares: int) -> None:
        with self._lock:
            self._shares = shares
        self._queue("update", self._update)

    def kill(self) -> None:
        with self._lock:
            self._killed = True
        self._queue("remove", lambda _: self._remove_container())

    def _unpause(self, container_id: str) -> None:
        try:
            self._api.unpause(container_id)
        except _engine_errors() as error:
            self._broken = f"could not be unpaused: {_one_line(error)}"
            raise

    def _update(self, container_id: str) -> None:
        with self._lock:
            shares = self._shares
        self._api.update_container(container_id, cpu_shares=shares)

    def _queue(self, what: str, call: Callable[[str], None]) -> None:
        with self._lock:
            self._ops.append((what, call))
            self._settled.clear()
            if self._draining:
                return
            self._draining = True
        try:
            self._factory.executor.submit(self._drain)
        except RuntimeError:  # the platform is closing: carry it out here
            self._drain()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._ops:
                    self._draining = False
                    self._settled.set()
                    return
                what, call = self._ops.popleft()
                container_id = self._id
            if container_id is None or self._removed:
                continue  # not created yet (its start uses the latest shares) or gone
            try:
                call(container_id)
            except docker.errors.NotFound:
                pass  # removed meanwhile
            except _engine_errors() as error:
                log.warning("container %s: the engine refused %s: %s", self.name, what, _one_line(error))

    # --- the end ---------------------------------------------------------------------------

    def _remove_container(self) -> None:
        with self._lock:
            container_id = self._id
            if container_id is None or self._removed:
                return
        self.cpu_seconds()  # the last reading while the process exists
        try:
            self._api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            if error.status_code != 409:  # 409: a removal already in progress
                log.warning("could not remove container %s: %s", self.name, _one_line(error.explanation))
                return
        except _engine_errors() as error:
            log.warning("could not remove container %s: %s", self.name, _one_line(error))
            return
        self._removed = True

    def close(self) -> None:
        """Remove the container (waiting for what was queued first) and close the connection."""
        with self._lock:
            self._killed = True
        self.settle()
        self._remove_container()
        if self._socket is not None:
            self._socket.close()

    def cpu_seconds(self) -> float:
        if self._pid is not None and not self._removed:
            used = process_cpu_seconds(self._pid)
            if used is not None:
                self._last_cpu_s = used
        return self._last_cpu_s


class DockerContainers:
    """The containers of one platform on a Docker engine of this machine (see the module docstring)."""

    def __init__(self, config: PlatformConfig, instance_id: str) -> None:
        """Connects to ``config.docker_host`` and checks that it holds ``config.docker_image``;
        :class:`EngineError` otherwise."""
        self.image = config.docker_image
        """Image of every container."""
        self.state_dir = Path(os.path.realpath(config.state_dir))
        """The platform's state directory (the label by which leftovers are found)."""
        self.containers_dir = self.state_dir / "containers"
        """Parent of the containers' working directories."""
        self.instance = instance_id
        """The platform instance's id (a label of every container)."""
        self.host = config.docker_host
        """The engine's ``unix://`` URL."""
        self.api, self.engine = connect_engine(config.docker_host)
        """The Engine API client, at the negotiated version; the engine's ``GET /version`` answer."""
        try:
            self.api.inspect_image(self.image)
            info = self.api.info()
        except docker.errors.ImageNotFound:
            self.api.close()
            raise EngineError(f"the Docker engine at {self.host} has no image {self.image}: make it with "
                              "scripts/localwhisk-image.sh (nothing is pulled)") from None
        except _engine_errors() as error:
            self.api.close()
            raise EngineError(f"the Docker engine at {self.host} did not answer: {_one_line(error)}") from None
        self.environment = container_environment(os.environ, config.pass_env, config.subject.key)
        """Environment of every container."""
        self.executor = ThreadPoolExecutor(max_workers=ENGINE_THREADS, thread_name_prefix="localwhisk-engine")
        """Threads that carry out the containers' queued engine calls."""
        self._numbers = itertools.count(1)
        self._cgroups = f"cgroup v{info.get('CgroupVersion', '?')}, {info.get('CgroupDriver', '?')} driver"
        cpu, memory = bool(info.get("CPUShares")), bool(info.get("MemoryLimit"))
        missing = [what for what, ok in (("CPU shares", cpu), ("memory limits", memory)) if not ok]
        self.status = CgroupStatus("docker", cpu, memory, "", "",
                                   f"the engine does not support {' or '.join(missing)}" if missing else "")

    def new_name(self, namespace: str, action: str) -> str:
        return container_name(next(self._numbers), namespace, action)

    def labels(self, namespace: str, action: str) -> dict[str, str]:
        return {LABEL_STATE_DIR: str(self.state_dir), LABEL_INSTANCE: self.instance, LABEL_ACTION: f"/{namespace}/{action}"}

    def create(self, name: str, namespace: str, action: str, shares: int, memory_mb: int) -> DockerWorker:
        return DockerWorker(self, name, namespace, action, shares, memory_mb)

    def _ours(self, label: str) -> list[dict[str, Any]]:
        return list(self.api.containers(all=True, filters={"label": label}))

    def remove_leftovers(self, previous_instance: str | None) -> None:
        """Remove every container labelled with this state directory: this platform holds the
        directory's lock, so they are a gone platform's."""
        try:
            leftovers = self._ours(f"{LABEL_STATE_DIR}={self.state_dir}")
            for container in leftovers:
                with contextlib.suppress(docker.errors.NotFound):
                    self.api.remove_container(container["Id"], force=True)
        except _engine_errors() as error:
            raise EngineError(f"could not remove the containers a previous localwhisk on {self.state_dir} left on "
                              f"{self.host}: {_one_line(error)}") from None
        if leftovers:
            names = ", ".join(sorted((c.get("Names") or ["?"])[0].lstrip("/") for c in leftovers))
            log.warning("removed %d container(s) a previous localwhisk (instance %s) left on %s: %s",
                        len(leftovers), previous_instance or "unknown", self.host, names)

    def describe(self) -> str:
        return (f"Docker containers from {self.image} on {self.host} (Docker {self.engine.get('Version', '?')}, "
                f"Engine API {self.api.api_version}, {self._cgroups})"
                f"{f'; note: {self.status.reason}' if self.status.reason else ''}")

    def close(self) -> None:
        """Wait for the queued engine calls, remove any container of this instance still there (a
        removal that failed earlier), close the client."""
        self.executor.shutdown(wait=True)
        try:
            for container in self._ours(f"{LABEL_INSTANCE}={self.instance}"):
                if container.get("Labels", {}).get(LABEL_STATE_DIR) == str(self.state_dir):
                    with contextlib.suppress(docker.errors.NotFound):
                        self.api.remove_container(container["Id"], force=True)
        except _engine_errors() as error:
            log.warning("could not check %s for containers of this platform left behind: %s", self.host, _one_line(error))
        self.api.close()
