"""localwhisk with a log of every container's life, and the exact memory integrals read from it.

    LOCALWHISK_AUTH=UUID:KEY python benchmarks/recorded_localwhisk.py --state-dir DIR --port P \\
        --events DIR/containers.csv [--cpu-weight 262144]

runs the same platform as ``python -m localwhisk`` (process containers, cgroup v1 or v2), with one
difference: its cgroup driver is wrapped by :class:`RecordingCgroups`, which appends a line to the
event log whenever a container's cgroup is made (the container starts), removed (it is gone: its
process was killed and reaped) or re-weighted (its CPU shares change). Each line has the wall
time, the same clock as the activation records' ``start``/``end`` (ms since the epoch).

The platform reserves a container's memory a few hundred microseconds before its cgroup is made (a
thread start) and releases it a few milliseconds before the cgroup goes (the kill and the reap),
so a lifetime read from the log is the platform's own to within a few milliseconds per container.
:func:`container_usage` integrates those lifetimes over a window exactly (no sampling); with the
activations' busy intervals (:func:`busy_seconds`) that gives memory held, and memory held while
executing nothing, as ``controller.costs.Usage`` wants them.

``--cpu-weight W`` runs the platform (its own process and every container under it) in a cgroup of
its own with ``cpu.shares`` W (cgroup v1). On a machine shared with other work, the platform's
whole cgroup otherwise weighs as much as one runnable process of anyone else's, so a CPU-bound
action gets a fraction of a core that depends on how many other processes run; a large weight
makes the platform behave like the dedicated invoker the simulator models while it is busy, and
costs the other work nothing while it is idle (CPU shares are weights, not reservations). The total
CPU the platform takes is set by the work it runs, whatever the weight. 1024 (the kernel's default)
leaves it as ``python -m localwhisk`` runs.

Stops on SIGTERM or SIGINT like ``localwhisk`` (drain, remove the containers and their cgroups),
then leaves and removes its own cgroup.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

#: Columns of the event log, in order.
EVENT_FIELDS = ("t_s", "event", "container", "memory_mb", "cpu_shares")
#: Event kinds: a container's cgroup was made, removed, or given new shares.
CREATE, REMOVE, SHARES = "create", "remove", "shares"
#: Where cgroup v1 mounts its ``cpu`` controller on this project's machines.
CPU_V1_ROOT = Path("/sys/fs/cgroup/cpu")
#: Characters localwhisk replaces when it names a container after its action.
_NOT_IN_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")
#: The kernel's default ``cpu.shares`` of a cgroup (a nice-0 process weighs the same).
DEFAULT_CPU_WEIGHT = 1024

log = logging.getLogger("recorded_localwhisk")


class EventLog:
    """An append-only CSV of container events, flushed line by line (a crash keeps every line)."""

    def __init__(self, handle: TextIO, clock: Callable[[], float] = time.time) -> None:
        self._handle = handle
        self._clock = clock
        self._lock = threading.Lock()
        self._writer = csv.writer(handle)
        if handle.tell() == 0:
            self._writer.writerow(EVENT_FIELDS)
            handle.flush()

    def write(self, event: str, container: str, memory_mb: float, cpu_shares: int) -> None:
        """One line, stamped with the wall clock now."""
        with self._lock:
            self._writer.writerow((f"{self._clock():.6f}", event, container, f"{memory_mb:g}", cpu_shares))
            self._handle.flush()


class RecordingCgroup:
    """One container's cgroup, passed through, with its removal and shares changes logged."""

    def __init__(self, inner: Any, name: str, memory_mb: float, shares: int, events: EventLog) -> None:
        self._inner = inner
        self._name = name
        self._memory_mb = memory_mb
        self._shares = shares
        self._events = events
        self._removed = False

    def __getattr__(self, attribute: str) -> Any:
        # The worker reads the directories (cpu_dir, memory_dir or directory) of the cgroup it got.
        return getattr(self._inner, attribute)

    def add_process(self, pid: int) -> None:
        self._inner.add_process(pid)

    def set_shares(self, shares: int) -> None:
        self._inner.set_shares(shares)
        self._shares = shares
        self._events.write(SHARES, self._name, self._memory_mb, shares)

    def remove(self) -> None:
        self._inner.remove()
        if not self._removed:
            self._removed = True
            self._events.write(REMOVE, self._name, self._memory_mb, self._shares)


class RecordingCgroups:
    """A cgroup driver that forwards to ``inner`` and logs each container's creation."""

    def __init__(self, inner: Any, events: EventLog) -> None:
        self._inner = inner
        self._events = events
        self.status = inner.status

    def create(self, name: str, shares: int, memory_bytes: int) -> RecordingCgroup:
        cgroup = self._inner.create(name, shares, memory_bytes)
        memory_mb = memory_bytes / (1024 * 1024)
        self._events.write(CREATE, name, memory_mb, shares)
        return RecordingCgroup(cgroup, name, memory_mb, shares, self._events)

    def container_dirs(self, prefix: str) -> list[Path]:
        return self._inner.container_dirs(prefix)

    def close(self) -> None:
        self._inner.close()


# --------------------------------------------------------------------------------------------
# reading the log back
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lifetime:
    """One container, from the log."""

    container: str
    """Its name, ``<instance>-<n>-<action slug>``."""
    action: str
    """The action it ran (found from the name's slug)."""
    memory_mb: float
    """Its memory limit, MB."""
    start_s: float
    """When its cgroup was made, s since the epoch."""
    end_s: float
    """When its cgroup was removed, s since the epoch; ``inf`` while it lives."""
    shares: tuple[tuple[float, int], ...] = ()
    """Its CPU shares over time: (from when, shares), the first at ``start_s``."""

    def shares_core_s(self, window_start_s: float, window_end_s: float) -> float:
        """The paper's CPU "allocation" of this container inside the window: shares / 1024 integrated
        over its life, core-s (shares are weights: this is a convention, not CPU it was given)."""
        total = 0.0
        for k, (since, shares) in enumerate(self.shares):
            until = self.shares[k + 1][0] if k + 1 < len(self.shares) else self.end_s
            total += overlap_s(since, until, window_start_s, window_end_s) * shares / DEFAULT_CPU_WEIGHT
        return total


def action_slug(action: str) -> str:
    """How localwhisk's process containers put an action's name into a container name: each run of
    characters other than ASCII letters, digits, ``_``, ``.`` and ``-`` becomes one ``_``, cut to 40
    characters."""
    return _NOT_IN_SLUG.sub("_", action)[:40]


def read_lifetimes(path: Path, actions: Sequence[str]) -> list[Lifetime]:
    """Every container of the log at ``path`` that ran one of ``actions``.

    A container name ends in its action's slug (:func:`action_slug`), after ``<instance>-<n>-``;
    containers of other actions are left out. Raises ``ValueError`` naming the line of a malformed
    line or of a removal without a creation.
    """
    by_slug = {action_slug(a): a for a in actions}
    opened: dict[str, tuple[str, float, float, list[tuple[float, int]]]] = {}
    lifetimes: list[Lifetime] = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != EVENT_FIELDS:
            raise ValueError(f"{path}: header must be {','.join(EVENT_FIELDS)}, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                t_s, memory_mb, shares = float(row["t_s"]), float(row["memory_mb"]), int(row["cpu_shares"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {line}: t_s, memory_mb and cpu_shares must be numbers, got {row}") from None
            name = row["container"]
            parts = name.split("-", 2)
            action = by_slug.get(parts[2]) if len(parts) == 3 else None
            if action is None:
                continue
            if row["event"] == CREATE:
                opened[name] = (action, memory_mb, t_s, [(t_s, shares)])
            elif row["event"] in (REMOVE, SHARES) and name not in opened:
                raise ValueError(f"{path}, line {line}: container {name} {row['event']} before it was created")
            elif row["event"] == REMOVE:
                owner, memory, start, history = opened.pop(name)
                lifetimes.append(Lifetime(name, owner, memory, start, t_s, tuple(history)))
            elif row["event"] == SHARES:
                opened[name][3].append((t_s, shares))
            else:
                raise ValueError(f"{path}, line {line}: unknown event {row['event']!r}")
    lifetimes.extend(Lifetime(name, a, m, s, math.inf, tuple(h)) for name, (a, m, s, h) in opened.items())
    return sorted(lifetimes, key=lambda life: (life.start_s, life.container))


def overlap_s(start_s: float, end_s: float, window_start_s: float, window_end_s: float) -> float:
    """Length of [start, end) ∩ [window_start, window_end), s (0 when they do not meet)."""
    return max(0.0, min(end_s, window_end_s) - max(start_s, window_start_s))


@dataclass(frozen=True)
class HeldUsage:
    """What one action's containers held over a window, exactly (from the lifetimes)."""

    container_s: float
    """Containers held, container-seconds."""
    memory_mb_s: float
    """Memory held, MB-s."""
    containers_started: int
    """Containers whose cgroup was made inside the window."""


def container_usage(lifetimes: Iterable[Lifetime], actions: Sequence[str], window_start_s: float,
                    window_end_s: float) -> dict[str, HeldUsage]:
    """Per action, the container-seconds and MB-s its containers held inside the window (each
    lifetime clipped to the window; one still alive counts to the window's end)."""
    if not window_end_s >= window_start_s:
        raise ValueError(f"window [{window_start_s}, {window_end_s}) ends before it starts")
    container_s = dict.fromkeys(actions, 0.0)
    memory_mb_s = dict.fromkeys(actions, 0.0)
    started = dict.fromkeys(actions, 0)
    for life in lifetimes:
        if life.action not in container_s:
            continue
        held = overlap_s(life.start_s, life.end_s, window_start_s, window_end_s)
        container_s[life.action] += held
        memory_mb_s[life.action] += held * life.memory_mb
        started[life.action] += int(window_start_s <= life.start_s < window_end_s)
    return {a: HeldUsage(container_s[a], memory_mb_s[a], started[a]) for a in actions}


def busy_seconds(intervals: Iterable[tuple[str, float, float]], actions: Sequence[str], window_start_s: float,
                 window_end_s: float) -> dict[str, float]:
    """Per action, container-seconds spent running activations inside the window.

    ``intervals`` are (action, start, end) of activations, s since the epoch: localwhisk runs one
    activation per container, and an activation's [start, end) covers its cold start's init too
    (OpenWhisk's ``duration`` includes ``initTime``), so these are the container-seconds that were
    not idle.
    """
    busy = dict.fromkeys(actions, 0.0)
    for action, start, end in intervals:
        if action in busy:
            busy[action] += overlap_s(start, end, window_start_s, window_end_s)
    return busy


# --------------------------------------------------------------------------------------------
# the platform's own cgroup
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def weighted_cgroup(weight: int, root: Path = CPU_V1_ROOT) -> Iterator[Path | None]:
    """This process in a fresh cgroup v1 ``cpu`` group with ``cpu.shares`` = ``weight``, for the
    duration; None (and nothing changed) for the default weight or where that is not possible.
    The group is named after this process and removed at the end (this process moves back first)."""
    if weight == DEFAULT_CPU_WEIGHT:
        yield None
        return
    own = _own_cpu_cgroup()
    if own is None or not (root / "cpu.shares").exists():
        log.warning("no cgroup v1 cpu hierarchy at %s: --cpu-weight %d is not applied", root, weight)
        yield None
        return
    parent = root / own.lstrip("/")
    group = parent / f"mfrm-bench-{os.getpid()}"
    try:
        group.mkdir()
        (group / "cpu.shares").write_text(str(weight))
        (group / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as error:
        log.warning("cannot make %s (%s): --cpu-weight %d is not applied", group, error.strerror, weight)
        with contextlib.suppress(OSError):
            group.rmdir()
        yield None
        return
    try:
        yield group
    finally:
        with contextlib.suppress(OSError):
            (parent / "cgroup.procs").write_text(str(os.getpid()))
        for _ in range(50):  # threads that just left may keep the group busy for a moment
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def _own_cpu_cgroup() -> str | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    return None


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def serve(args: argparse.Namespace, auth: str) -> None:
    """Start the recorded platform, wait for SIGTERM or SIGINT, stop it."""
    from localwhisk.cgroups import detect
    from localwhisk.config import PlatformConfig, Subject
    from localwhisk.server import LocalWhisk

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with weighted_cgroup(args.cpu_weight) as group, args.events.open("a", newline="") as handle:
        config = PlatformConfig(subject=Subject.parse(auth), state_dir=args.state_dir, port=args.port,
                                user_memory_mb=args.user_memory_mb, idle_timeout_s=args.idle_timeout_s)
        events = EventLog(handle)
        cgroups = RecordingCgroups(detect(config.cgroup_parent), events)
        whisk = LocalWhisk(config, cgroups=cgroups).start()
        log.info("recorded localwhisk on %s, events in %s, platform cgroup %s (cpu.shares %d)", whisk.url,
                 args.events, group or "unchanged", args.cpu_weight)
        try:
            stop.wait()
        finally:
            whisk.stop()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", type=Path, required=True, help="the platform's state directory")
    parser.add_argument("--port", type=int, default=3233, help="port on 127.0.0.1 (default 3233)")
    parser.add_argument("--events", type=Path, required=True, help="CSV the container events are appended to")
    parser.add_argument("--cpu-weight", type=int, default=DEFAULT_CPU_WEIGHT,
                        help="cpu.shares of the platform's own cgroup, 2-262144 (default 1024: no cgroup of its own)")
    parser.add_argument("--user-memory-mb", type=int, default=4096, help="localwhisk's --user-memory-mb (default 4096)")
    parser.add_argument("--idle-timeout-s", type=float, default=600.0, help="localwhisk's --idle-timeout-s (default 600)")
    args = parser.parse_args(argv)
    if not 2 <= args.cpu_weight <= 262144:
        parser.error(f"--cpu-weight must be in 2-262144, got {args.cpu_weight}")
    auth = environ.get("LOCALWHISK_AUTH", "")
    if not auth:
        parser.error("set LOCALWHISK_AUTH=UUID:KEY (the key is not taken on the command line)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    serve(args, auth)


if __name__ == "__main__":
    main()
