"""One platform per state directory, and what a platform that did not stop cleanly left behind.

A platform claims its state directory with an exclusive ``flock`` on ``<state_dir>/localwhisk.lock``,
held for its whole life, and writes its instance id into that file; a second platform on the same
directory is refused. The kernel drops the lock when the process dies however it dies, so the next
platform to take it knows that the instance the file names is gone, and removes what it left:

* worker processes still running with their working directory under ``<state_dir>/containers/``
  (a worker normally dies with its platform: see ``--parent-pid`` in :mod:`localwhisk.worker`);
* the container cgroups named after the previous instance (``<instance>-<n>-<action>``) in the
  cgroup parent, and the processes still inside them.

Nothing here touches a process or a cgroup of another live platform: processes are chosen by their
working directory inside this state directory and their command line, cgroups by the previous
instance's id.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import select
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from localwhisk.cgroups import CgroupDriver, remove_directory

log = logging.getLogger(__name__)

#: The lock file's name inside the state directory.
LOCK_FILE = "localwhisk.lock"
#: What identifies a worker's command line (``python -m localwhisk.worker``).
WORKER_MODULE = b"localwhisk.worker"


class StateDirBusy(RuntimeError):
    """Another live platform holds the state directory."""


@dataclass
class StateDirClaim:
    """The held lock of one state directory."""

    path: Path
    """The lock file."""
    fd: int
    """Its open descriptor; closing it releases the lock."""
    previous_instance: str | None
    """Instance id the file named when the lock was taken: a platform that is gone. None for a
    directory never used before."""

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def claim_state_dir(state_dir: Path, instance_id: str) -> StateDirClaim:
    """Take the state directory's lock for ``instance_id``; :class:`StateDirBusy` if a live platform
    holds it."""
    path = Path(state_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_claim(fd).get("pid", "?")
        os.close(fd)
        raise StateDirBusy(f"state directory {state_dir} is in use by another localwhisk (pid {holder})") from None
    previous = _read_claim(fd).get("instance")
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"instance": instance_id, "pid": os.getpid()}).encode(), 0)
    return StateDirClaim(path, fd, str(previous) if previous else None)


def _read_claim(fd: int) -> dict[str, object]:
    try:
        doc = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def worker_pids(containers_dir: Path, proc: Path = Path("/proc")) -> list[int]:
    """Processes running ``localwhisk.worker`` with their working directory under ``containers_dir``."""
    root = os.path.realpath(containers_dir)
    found = []
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if (cwd == root or cwd.startswith(root + os.sep)) and WORKER_MODULE in cmdline.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_and_wait(pids: list[int], timeout_s: float) -> list[int]:
    """SIGKILL ``pids`` (stopped ones too) and wait until they have exited, at most ``timeout_s``
    (monotonic seconds) in all; returns those still running then. Works for processes that are not
    this one's children (a pidfd becomes readable when its process exits)."""
    waiting: dict[int, int] = {}
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except (ProcessLookupError, OSError):
            continue  # already gone
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            os.close(fd)
            continue
        waiting[fd] = pid
    deadline = time.monotonic() + timeout_s
    try:
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(list(waiting), [], [], left)
            for fd in ready:
                waiting.pop(fd)
                os.close(fd)
        return sorted(waiting.values())
    finally:
        for fd in waiting:
            os.close(fd)


def remove_leftovers(state_dir: Path, previous_instance: str | None, cgroups: CgroupDriver, timeout_s: float = 10.0) -> None:
    """Kill the workers and remove the cgroups a previous platform on ``state_dir`` left (see the
    module docstring); logs what it removed and what it could not."""
    directories = cgroups.container_dirs(f"{previous_instance}-") if previous_instance else []
    pids = set(worker_pids(Path(state_dir) / "containers"))
    for directory in directories:
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
    if not pids and not directories:
        return
    survivors = kill_and_wait(sorted(pids), timeout_s)
    for directory in directories:
        remove_directory(directory)
    left = [d for d in directories if d.exists()]
    log.warning(
        "removed what a previous localwhisk (instance %s) left: %d worker process(es), %d cgroup(s)%s",
        previous_instance or "unknown", len(pids) - len(survivors), len(directories) - len(left),
        f"; still there: processes {survivors}, cgroups {[str(d) for d in left]}" if survivors or left else "",
    )
