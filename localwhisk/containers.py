"""A container: start it, talk to it, pause, resume, re-weight and kill it.

This module knows containers, not pools or activations (that is :mod:`localwhisk.scheduler`). The
scheduler drives every container through :class:`Worker` and makes them with a
:class:`ContainerFactory`; two kinds exist:

* :class:`WorkerProcess` (made by :class:`ProcessContainers`, ``--containers process``): a
  ``python -m localwhisk.worker`` child in its own session and its own cgroups, its working directory
  under the state directory, its output in a log file beside it;
* :class:`localwhisk.docker_containers.DockerWorker` (``--containers docker``): the same worker
  inside a Docker container.

Both speak the worker's protocol (JSON lines, see :mod:`localwhisk.worker`).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from localwhisk.cgroups import CgroupDriver, CgroupStatus, ContainerCgroup, clamp_shares
from localwhisk.config import PlatformConfig
from localwhisk.leftovers import remove_leftovers

log = logging.getLogger(__name__)

#: Root of the import path that holds the ``localwhisk`` package, handed to workers so that they
#: find it whether or not the package is installed.
_IMPORT_ROOT = str(Path(__file__).resolve().parent.parent)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")
#: Variables of the platform's environment every worker keeps: what the interpreter and common
#: libraries need to find programs and modules, a home, a locale, a time zone and a temporary
#: directory. Nothing else passes unless asked for (``PlatformConfig.pass_env``): the platform's
#: environment may hold its API key.
RUNTIME_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "PYTHONHOME", "PYTHONPATH")


def worker_environment(source: Mapping[str, str], pass_env: tuple[str, ...], secret: str) -> dict[str, str]:
    """The environment of every worker: ``RUNTIME_ENV`` and ``pass_env`` taken from ``source`` (the
    platform's environment), minus any variable whose value contains ``secret`` (the API key), plus
    the import path of ``localwhisk`` and unbuffered output."""
    env = {}
    for name in RUNTIME_ENV + pass_env:
        value = source.get(name)
        if value is None:
            continue
        # A key shorter than 8 characters would match ordinary values (a PATH) by chance.
        if len(secret) >= 8 and secret in value:
            log.warning("not passing %s to actions: its value contains the platform's API key", name)
            continue
        env[name] = value
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_IMPORT_ROOT, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerDied(Exception):
    """The worker closed its pipe or exited (crash, OOM kill, ``sys.exit`` in the action)."""


class WorkerTimeout(Exception):
    """The worker did not answer before the deadline."""


class EngineError(OSError):
    """The container engine refused a container or did not answer (``--containers docker``); the
    message names the container and gives the engine's reason."""


class Worker(Protocol):
    """One container as the scheduler drives it. ``pause``, ``resume``, ``kill`` and ``set_shares``
    are called with the scheduler's lock held and must not wait on anything slow: a worker whose
    engine needs a round trip for them queues them, in order, and :meth:`settle` waits for them."""

    name: str
    """The container's name (a Docker worker may take another number when its name is in use)."""

    @property
    def pid(self) -> int | None:
        """Process id of the worker, as this machine sees it; None before it runs."""
        ...

    @property
    def cpu_dir(self) -> str:
        """The container's cpu cgroup directory, or empty when unknown."""
        ...

    @property
    def memory_dir(self) -> str:
        """The container's memory cgroup directory, or empty when unknown."""
        ...

    def start(self) -> None:
        """Start the container; raises ``OSError`` when it cannot be started."""
        ...

    def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one request and wait for its reply (``WorkerDied``, ``WorkerTimeout``)."""
        ...

    def settle(self) -> None:
        """Wait until every pause, resume and shares change asked for so far has been carried out."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def kill(self) -> None:
        """Kill at once (safe to call more than once, before the start and on a paused container)."""
        ...

    def set_shares(self, shares: int) -> None:
        """Give the container ``shares`` CPU shares from now on."""
        ...

    def close(self) -> None:
        """Kill and remove the container; its working directory stays for its log."""
        ...

    def cpu_seconds(self) -> float:
        """CPU time the container's worker has used, s; the last known value once it has gone."""
        ...


class ContainerFactory(Protocol):
    """Makes the containers of one platform (``PlatformConfig.containers``)."""

    status: CgroupStatus
    """What the containers' CPU and memory control is; served by ``GET /resources/v1/status``."""

    def new_name(self, namespace: str, action: str) -> str:
        """A fresh container name for an action."""
        ...

    def create(self, name: str, namespace: str, action: str, shares: int, memory_mb: int) -> Worker:
        """A container for ``action`` of ``namespace``, not yet started; raises ``OSError``."""
        ...

    def remove_leftovers(self, previous_instance: str | None) -> None:
        """Remove what a platform that did not stop cleanly on the same state directory left."""
        ...

    def describe(self) -> str:
        """One line for the log at start: where containers run and what controls them."""
        ...

    def close(self) -> None:
        """Release what the factory holds, once every container has been closed."""
        ...


def process_cpu_seconds(pid: int) -> float | None:
    """CPU time process ``pid`` has used (user + system, all threads), s; None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        # After the ")" of the command name: field 3 is the state, utime and stime are 14 and 15.
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


class ReplyReader:
    """Reads the worker's reply lines from a file descriptor, keeping what follows a line for the next."""

    def __init__(self, name: str) -> None:
        self.name = name
        """The container's name, for messages."""
        self._buffer = b""

    def exchange(self, send: Callable[[bytes], None], fd: int, message: dict[str, Any], timeout_s: float,
                 gone: Callable[[], str]) -> dict[str, Any]:
        """Send ``message`` as one line with ``send``, read one reply line from ``fd`` within
        ``timeout_s``; ``gone()`` says how the worker ended when the line never comes."""
        try:
            send(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        except OSError as error:
            raise WorkerDied(f"container {self.name} is gone ({error})") from error
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerTimeout(f"container {self.name} did not answer in time")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError as error:
                raise WorkerDied(f"container {self.name} is gone ({error})") from error
            if not chunk:
                raise WorkerDied(f"container {self.name} {gone()}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            return json.loads(line)
        except RecursionError:
            raise ValueError(f"container {self.name} answered JSON nested too deeply to read") from None


class WorkerProcess:
    """One container's worker process."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        cgroup: ContainerCgroup,
        environment: Mapping[str, str],
        rlimit_as_bytes: int = 0,
        python: str = sys.executable,
    ) -> None:
        self.name = name
        self.workdir = Path(workdir)
        self.cgroup = cgroup
        self._environment = dict(environment)
        self._rlimit_as = rlimit_as_bytes
        self._python = python
        self._process: subprocess.Popen[bytes] | None = None
        self._replies = ReplyReader(name)
        self._last_cpu_s = 0.0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def cpu_dir(self) -> str:
        return str(getattr(self.cgroup, "cpu_dir", getattr(self.cgroup, "directory", "")) or "")

    @property
    def memory_dir(self) -> str:
        return str(getattr(self.cgroup, "memory_dir", getattr(self.cgroup, "directory", "")) or "")

    @property
    def log_path(self) -> Path:
        return self.workdir / "container.log"

    def start(self) -> None:
        """Start the process and move it into its cgroup (before it is sent any code)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The worker dies with the thread that starts it (PR_SET_PDEATHSIG): this is the container's
        # own thread, which outlives the process (it kills and reaps it before it ends).
        command = [self._python, "-m", "localwhisk.worker", "--parent-pid", str(os.getpid())]
        if self._rlimit_as > 0:
            command += ["--rlimit-as", str(self._rlimit_as)]
        with open(self.log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                cwd=self.workdir,
                env=self._environment,
                close_fds=True,
                # Own session: a Ctrl-C aimed at the platform does not reach the containers; the
                # platform stops them itself.
                start_new_session=True,
            )
        self.cgroup.add_process(self._process.pid)

    def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one request and wait for its reply line (at most ``timeout_s``)."""
        process = self._require()
        assert process.stdin is not None and process.stdout is not None
        stdin = process.stdin

        def send(line: bytes) -> None:
            stdin.write(line)
            stdin.flush()

        return self._replies.exchange(send, process.stdout.fileno(), message, timeout_s,
                                      lambda: f"exited with code {process.poll()}")

    def settle(self) -> None:
        """Signals and cgroup writes take effect at once: nothing is ever pending."""
        return

    def set_shares(self, shares: int) -> None:
        self.cgroup.set_shares(shares)

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): a paused container uses no CPU, as OpenWhisk's paused ones."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """Kill at once (safe to call more than once, and on a paused process)."""
        self._signal(signal.SIGKILL)

    def close(self, timeout_s: float = 5.0) -> None:
        """Kill, reap and remove the cgroup; the working directory stays for its log."""
        if self._process is None:
            self.cgroup.remove()
            return
        self.cpu_seconds()
        self.kill()
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        self.cgroup.remove()

    def cpu_seconds(self) -> float:
        """CPU time the process has used (user + system, all threads), s; the last known value once
        it has exited."""
        pid = self.pid
        if pid is not None:
            used = process_cpu_seconds(pid)
            if used is not None:
                self._last_cpu_s = used
        return self._last_cpu_s

    def _signal(self, signum: int) -> None:
        if self._process is None or self._process.returncode is not None:
            return
        try:
            os.kill(self._process.pid, signum)
        except ProcessLookupError:
            pass

    def _require(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise WorkerDied(f"container {self.name} was never started")
        return self._process


class ProcessContainers:
    """Containers as worker processes on this machine, each in cgroups of its own made by ``cgroups``
    (``--containers process``). Names are ``<instance>-<n>-<action>``: the instance id tells a later
    platform which cgroups a killed one left."""

    def __init__(self, config: PlatformConfig, cgroups: CgroupDriver, instance_id: str) -> None:
        self._config = config
        self._cgroups = cgroups
        self._instance = instance_id
        self._numbers = itertools.count(1)
        self.status = cgroups.status
        # Without a memory cgroup the worker caps its own address space.
        self._rlimit_as = cgroups.status.memory_control is False
        self._environment = worker_environment(os.environ, config.pass_env, config.subject.key)

    def new_name(self, namespace: str, action: str) -> str:
        return f"{self._instance}-{next(self._numbers):05d}-{_SLUG.sub('_', action)[:40]}"

    def create(self, name: str, namespace: str, action: str, shares: int, memory_mb: int) -> WorkerProcess:
        memory_bytes = memory_mb * 1024 * 1024
        cgroup = self._cgroups.create(name, clamp_shares(shares), memory_bytes)
        return WorkerProcess(name, self._config.state_dir / "containers" / name, cgroup, self._environment,
                             rlimit_as_bytes=memory_bytes if self._rlimit_as else 0)

    def remove_leftovers(self, previous_instance: str | None) -> None:
        remove_leftovers(self._config.state_dir, previous_instance, self._cgroups)

    def describe(self) -> str:
        status = self.status
        if not status.cpu_control:
            return f"worker processes WITHOUT CPU control (CPU shares are recorded but not enforced): {status.reason}"
        return (f"worker processes in cgroups {status.mode} (cpu: {status.cpu_dir}, memory: "
                f"{status.memory_dir or 'RLIMIT_AS'}){f'; note: {status.reason}' if status.reason else ''}")

    def close(self) -> None:
        self._cgroups.close()
