"""A container's process: start it in its cgroup, talk to it, pause, resume and kill it.

This module knows processes and pipes, not pools or activations (that is :mod:`localwhisk.scheduler`).
One :class:`WorkerProcess` is one container: a ``python -m localwhisk.worker`` child in its own
session, its working directory under the state directory, its output in a log file beside it.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from localwhisk.cgroups import ContainerCgroup

log = logging.getLogger(__name__)

#: Root of the import path that holds the ``localwhisk`` package, handed to workers so that they
#: find it whether or not the package is installed.
_IMPORT_ROOT = str(Path(__file__).resolve().parent.parent)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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
        self._buffer = b""
        self._last_cpu_s = 0.0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

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
        assert process.stdin is not None
        try:
            process.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise WorkerDied(f"container {self.name} is gone ({error})") from error
        line = self._read_line(time.monotonic() + timeout_s)
        try:
            return json.loads(line)
        except RecursionError:
            raise ValueError(f"container {self.name} answered JSON nested too deeply to read") from None

    def _read_line(self, deadline: float) -> bytes:
        process = self._require()
        assert process.stdout is not None
        fd = process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerTimeout(f"container {self.name} did not answer in time")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkerDied(f"container {self.name} exited with code {process.poll()}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

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
        if pid is None:
            return self._last_cpu_s
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            # After the ")" of the command name: field 3 is the state, utime and stime are 14 and 15.
            self._last_cpu_s = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        except (OSError, IndexError, ValueError):
            pass
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
