"""One Linux cgroup per container: real CPU shares and a memory limit.

Three drivers behind one interface:

* :class:`V1Driver` — cgroup v1: ``cpu.shares`` in the ``cpu`` hierarchy, ``memory.limit_in_bytes`` in
  the ``memory`` hierarchy (each used only where writable).
* :class:`V2Driver` — the unified hierarchy: ``cpu.weight`` (shares converted as Kubernetes and
  systemd do) and ``memory.max``.
* :class:`NoCgroups` — nothing is written; no CPU control; the worker caps its own address space.

Every driver creates its cgroups under the platform's *own* cgroup of each hierarchy (read from
``/proc/self/cgroup``), in a directory named by ``PlatformConfig.cgroup_parent``: a platform started
inside a container or a delegated subtree stays inside it. Container cgroups are removed when their
container goes; the parent is removed on shutdown if no other platform still uses it.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

#: cgroup v1 ``cpu.shares`` bounds (kernel constants MIN_SHARES and MAX_SHARES).
MIN_SHARES = 2
MAX_SHARES = 262_144
#: cgroup v2 ``cpu.weight`` bounds.
MIN_WEIGHT = 1
MAX_WEIGHT = 10_000


def shares_to_weight(shares: int) -> int:
    """Map v1 shares onto v2 weight linearly, range onto range (2 -> 1, 262144 -> 10000, 1024 -> 39),
    the conversion Kubernetes and systemd use, so relative weights between containers are kept."""
    shares = min(max(int(shares), MIN_SHARES), MAX_SHARES)
    return MIN_WEIGHT + ((shares - MIN_SHARES) * (MAX_WEIGHT - MIN_WEIGHT)) // (MAX_SHARES - MIN_SHARES)


def clamp_shares(shares: int) -> int:
    return min(max(int(shares), MIN_SHARES), MAX_SHARES)


@dataclass(frozen=True)
class CgroupStatus:
    """What the platform can control; served by ``GET /resources/v1/status`` and logged at start."""

    mode: str
    """``v1``, ``v2`` or ``none``."""
    cpu_control: bool
    """Whether CPU shares are really applied to containers."""
    memory_control: bool
    """Whether the memory limit is a cgroup limit (else the worker's RLIMIT_AS)."""
    cpu_dir: str
    """Parent directory of the containers' CPU cgroups, or empty."""
    memory_dir: str
    """Parent directory of the containers' memory cgroups, or empty."""
    reason: str
    """Why control is missing or partial, empty when complete."""

    def to_json(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "cpuControl": self.cpu_control,
            "memoryControl": self.memory_control,
            "cpuDir": self.cpu_dir,
            "memoryDir": self.memory_dir,
            "reason": self.reason,
        }


class ContainerCgroup(Protocol):
    """The cgroup(s) of one container."""

    def add_process(self, pid: int) -> None: ...

    def set_shares(self, shares: int) -> None: ...

    def remove(self) -> None: ...


class CgroupDriver(Protocol):
    status: CgroupStatus

    def create(self, name: str, shares: int, memory_bytes: int) -> ContainerCgroup: ...

    def container_dirs(self, prefix: str) -> list[Path]:
        """Existing container cgroup directories whose name starts with ``prefix``, in every
        hierarchy the driver uses (to find what a previous instance left)."""
        ...

    def close(self) -> None: ...


def _children(parents: tuple[Path | None, ...], prefix: str) -> list[Path]:
    found = []
    for parent in parents:
        if parent is None:
            continue
        try:
            found += sorted(p for p in parent.iterdir() if p.is_dir() and p.name.startswith(prefix))
        except OSError:
            continue
    return found


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def remove_directory(path: Path) -> None:
    """``rmdir`` a cgroup; quiet when it is gone already or still busy (a process inside)."""
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as error:
        # EBUSY: a process is still inside (or, for the parent, another platform's containers).
        if error.errno not in (errno.EBUSY, errno.ENOTEMPTY):
            log.warning("could not remove cgroup %s: %s", path, error)


class _NullCgroup:
    def add_process(self, pid: int) -> None:
        return None

    def set_shares(self, shares: int) -> None:
        return None

    def remove(self) -> None:
        return None


class NoCgroups:
    """Runs without cgroups: no CPU control, memory capped by the worker's RLIMIT_AS."""

    def __init__(self, reason: str) -> None:
        self.status = CgroupStatus("none", False, False, "", "", reason)

    def create(self, name: str, shares: int, memory_bytes: int) -> ContainerCgroup:
        return _NullCgroup()

    def container_dirs(self, prefix: str) -> list[Path]:
        return []

    def close(self) -> None:
        return None


class _V1Cgroup:
    def __init__(self, cpu_dir: Path | None, memory_dir: Path | None) -> None:
        self.cpu_dir = cpu_dir
        self.memory_dir = memory_dir

    def add_process(self, pid: int) -> None:
        for directory in (self.cpu_dir, self.memory_dir):
            if directory is not None:
                _write(directory / "cgroup.procs", str(pid))

    def set_shares(self, shares: int) -> None:
        if self.cpu_dir is not None:
            _write(self.cpu_dir / "cpu.shares", str(clamp_shares(shares)))

    def remove(self) -> None:
        for directory in (self.cpu_dir, self.memory_dir):
            if directory is not None:
                remove_directory(directory)


class V1Driver:
    """cgroup v1: ``cpu`` and ``memory`` hierarchies, each optional."""

    def __init__(self, cpu_parent: Path | None, memory_parent: Path | None, reason: str = "") -> None:
        self._cpu_parent = cpu_parent
        self._memory_parent = memory_parent
        self.status = CgroupStatus(
            "v1",
            cpu_parent is not None,
            memory_parent is not None,
            str(cpu_parent or ""),
            str(memory_parent or ""),
            reason,
        )

    def create(self, name: str, shares: int, memory_bytes: int) -> ContainerCgroup:
        cpu_dir = memory_dir = None
        if self._cpu_parent is not None:
            cpu_dir = self._cpu_parent / name
            cpu_dir.mkdir()
            _write(cpu_dir / "cpu.shares", str(clamp_shares(shares)))
        if self._memory_parent is not None:
            memory_dir = self._memory_parent / name
            memory_dir.mkdir()
            _write(memory_dir / "memory.limit_in_bytes", str(memory_bytes))
        return _V1Cgroup(cpu_dir, memory_dir)

    def container_dirs(self, prefix: str) -> list[Path]:
        return _children((self._cpu_parent, self._memory_parent), prefix)

    def close(self) -> None:
        for parent in (self._cpu_parent, self._memory_parent):
            if parent is not None:
                remove_directory(parent)


class _V2Cgroup:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def add_process(self, pid: int) -> None:
        _write(self.directory / "cgroup.procs", str(pid))

    def set_shares(self, shares: int) -> None:
        _write(self.directory / "cpu.weight", str(shares_to_weight(shares)))

    def remove(self) -> None:
        remove_directory(self.directory)


class V2Driver:
    """The unified hierarchy: ``cpu.weight`` and ``memory.max`` in one directory per container."""

    def __init__(self, parent: Path, memory_control: bool, reason: str = "") -> None:
        self._parent = parent
        self._memory = memory_control
        self.status = CgroupStatus("v2", True, memory_control, str(parent), str(parent) if memory_control else "", reason)

    def create(self, name: str, shares: int, memory_bytes: int) -> ContainerCgroup:
        directory = self._parent / name
        directory.mkdir()
        _write(directory / "cpu.weight", str(shares_to_weight(shares)))
        if self._memory:
            _write(directory / "memory.max", str(memory_bytes))
        return _V2Cgroup(directory)

    def container_dirs(self, prefix: str) -> list[Path]:
        return _children((self._parent,), prefix)

    def close(self) -> None:
        remove_directory(self._parent)


# --- detection -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mount:
    root: str
    mount_point: Path
    fs_type: str
    options: frozenset[str]


def _mounts(mountinfo: str) -> list[_Mount]:
    found = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        left_fields, right_fields = left.split(), right.split()
        if len(left_fields) < 5 or len(right_fields) < 3 or right_fields[0] not in ("cgroup", "cgroup2"):
            continue
        found.append(
            _Mount(left_fields[3], Path(left_fields[4]), right_fields[0], frozenset(right_fields[2].split(",")))
        )
    return found


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """Controller name (``cpu``, ``memory``; ``""`` for v2) -> the process's cgroup path."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _under(mount: _Mount, own: str) -> Path:
    relative = own
    if mount.root != "/" and own.startswith(mount.root):
        relative = own[len(mount.root) :]
    return mount.mount_point / relative.lstrip("/")


def _prepare_v1(mount: _Mount, own: str, parent_name: str, probe_file: str) -> tuple[Path | None, str]:
    parent = _under(mount, own) / parent_name
    try:
        parent.mkdir(exist_ok=True)
        if not (parent / probe_file).exists():
            return None, f"{parent / probe_file} is missing"
        if not os.access(parent / probe_file, os.W_OK) or not os.access(parent, os.W_OK):
            return None, f"{parent} is not writable"
    except OSError as error:
        return None, f"cannot create {parent}: {error.strerror}"
    return parent, ""


def detect(
    parent_name: str,
    mountinfo_path: Path = Path("/proc/self/mountinfo"),
    proc_cgroup_path: Path = Path("/proc/self/cgroup"),
) -> CgroupDriver:
    """The best driver this machine allows; never raises (falls back to :class:`NoCgroups`)."""
    try:
        mounts = _mounts(mountinfo_path.read_text())
        own = _own_paths(proc_cgroup_path.read_text())
    except OSError as error:
        return NoCgroups(f"cannot read the cgroup layout: {error}")
    v1 = {opt: m for m in mounts if m.fs_type == "cgroup" for opt in m.options}
    if "cpu" in v1 or "memory" in v1:
        cpu_parent = memory_parent = None
        reasons = []
        if "cpu" in v1:
            cpu_parent, why = _prepare_v1(v1["cpu"], own.get("cpu", "/"), parent_name, "cpu.shares")
            if why:
                reasons.append(why)
        else:
            reasons.append("no cgroup v1 cpu hierarchy is mounted")
        if "memory" in v1:
            memory_parent, why = _prepare_v1(v1["memory"], own.get("memory", "/"), parent_name, "memory.limit_in_bytes")
            if why:
                reasons.append(why)
        else:
            reasons.append("no cgroup v1 memory hierarchy is mounted")
        if cpu_parent is None and memory_parent is None:
            return NoCgroups("; ".join(reasons))
        return V1Driver(cpu_parent, memory_parent, "; ".join(reasons))
    unified = next((m for m in mounts if m.fs_type == "cgroup2"), None)
    if unified is None:
        return NoCgroups("no cgroup hierarchy is mounted")
    return _prepare_v2(unified, own.get("", "/"), parent_name)


def _prepare_v2(mount: _Mount, own: str, parent_name: str) -> CgroupDriver:
    base = _under(mount, own)
    parent = base / parent_name
    try:
        available = set((base / "cgroup.controllers").read_text().split())
        if "cpu" not in available:
            return NoCgroups(f"the cpu controller is not available in {base}")
        wanted = ["cpu"] + (["memory"] if "memory" in available else [])
        enabled = set((base / "cgroup.subtree_control").read_text().split())
        for controller in wanted:
            if controller not in enabled:
                _write(base / "cgroup.subtree_control", f"+{controller}")
        parent.mkdir(exist_ok=True)
        _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
    except OSError as error:
        return NoCgroups(f"cannot prepare {parent} for cpu control (cgroup v2): {error.strerror or error}")
    memory = "memory" in wanted
    return V2Driver(parent, memory, "" if memory else f"the memory controller is not available in {base}")


def process_cgroup_dirs(
    pid: int, mountinfo_path: Path = Path("/proc/self/mountinfo"), proc: Path = Path("/proc")
) -> tuple[Path | None, Path | None]:
    """The cpu and the memory cgroup directories of process ``pid`` as this process sees them (a
    container's, made by its engine); on cgroup v2 both are its one directory. None where unknown."""
    try:
        mounts = _mounts(mountinfo_path.read_text())
        paths = _own_paths((proc / str(pid) / "cgroup").read_text())
    except OSError:
        return None, None
    v1 = {opt: m for m in mounts if m.fs_type == "cgroup" for opt in m.options}
    if "cpu" in v1 or "memory" in v1:
        found = [
            _under(v1[controller], paths[controller]) if controller in v1 and controller in paths else None
            for controller in ("cpu", "memory")
        ]
        return found[0], found[1]
    unified = next((m for m in mounts if m.fs_type == "cgroup2"), None)
    if unified is None or "" not in paths:
        return None, None
    directory = _under(unified, paths[""])
    return directory, directory
