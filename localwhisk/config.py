"""The platform's settings: one frozen, validated object built once at start.

Defaults follow a stock OpenWhisk deployment where one exists (action limits, 10-minute idle
eviction, 50 ms pause grace, 60 s maximum blocking wait) and say so; the rest are sized for a small
machine. Invalid values are rejected at construction with the field, the value and the allowed range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_UUID_KEY = re.compile(r"^([^:\s]+):([^:\s]+)$")
_NAMESPACE = re.compile(r"^[\w][\w@.-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Values of ``PlatformConfig.cgroups``.
CGROUP_MODES = ("auto", "off")
#: Values of ``PlatformConfig.containers``.
CONTAINER_RUNTIMES = ("process", "docker")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")


class ConfigError(ValueError):
    """A setting is out of range or malformed; the message names the setting and the value.

    ``owner`` and ``key`` name the dataclass and the field at fault when there is one, so that a
    command line can name its own option or environment variable instead.
    """

    def __init__(self, message: str, key: str | None = None, owner: str = "PlatformConfig") -> None:
        super().__init__(f"{owner}.{key} {message}" if key else message)
        self.owner = owner
        """Dataclass holding the field at fault (``PlatformConfig``, ``ThrottleConfig``)."""
        self.key = key
        """Field at fault, or None when the message is not about one field."""
        self.detail = message
        """The message without the field's name."""


@dataclass(frozen=True)
class LimitRange:
    """Allowed range and default of one action limit (OpenWhisk's ``min``/``max``/``std``)."""

    minimum: int
    """Smallest accepted value, in ``unit``."""
    maximum: int
    """Largest accepted value, in ``unit``."""
    default: int
    """Value used when an action does not set the limit, in ``unit``."""
    unit: str
    """Unit for messages: ``MB``, ``ms`` or empty."""

    def __post_init__(self) -> None:
        if not (self.minimum <= self.default <= self.maximum):
            raise ConfigError(
                f"limit range needs minimum <= default <= maximum, got {self.minimum}, {self.default}, {self.maximum}"
            )


@dataclass(frozen=True)
class ActionLimitRanges:
    """Ranges of the per-action limits; the defaults are OpenWhisk's out-of-the-box values."""

    memory_mb: LimitRange = LimitRange(128, 512, 256, "MB")
    """Container memory, MB. OpenWhisk: 128..512, default 256."""
    timeout_ms: LimitRange = LimitRange(100, 300_000, 60_000, "ms")
    """Run time allowed to one activation, ms. OpenWhisk: 100 ms..5 min, default 60 s."""
    logs_mb: LimitRange = LimitRange(0, 10, 10, "MB")
    """Log volume one activation may write, MB. OpenWhisk: 0..10, default 10."""
    concurrency: LimitRange = LimitRange(1, 1, 1, "")
    """Activations one container runs at once. OpenWhisk ships 1..1; localwhisk runs one at a time
    in each container, so it accepts only 1 (a wider range would be a promise it does not keep)."""

    def __post_init__(self) -> None:
        if self.concurrency.maximum != 1:
            raise ConfigError(
                f"concurrency limit maximum must be 1 (one activation per container), got {self.concurrency.maximum}"
            )


@dataclass(frozen=True)
class ThrottleConfig:
    """Per-namespace admission limits; over them an invocation gets HTTP 429."""

    invocations_per_minute: int = 60_000
    """Invocations admitted per namespace in any 60 s window. OpenWhisk's default is 60, which a
    trace replay exceeds at once; deployments raise it, and so does this default."""
    concurrent_invocations: int = 1_000
    """Invocations of a namespace queued or running at once. OpenWhisk's default is 30; raised for
    the same reason."""

    def __post_init__(self) -> None:
        for name in ("invocations_per_minute", "concurrent_invocations"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"must be >= 1, got {value}", name, owner="ThrottleConfig")


@dataclass(frozen=True)
class Subject:
    """The one authenticated user: OpenWhisk's ``uuid:key`` and the namespace it owns."""

    uuid: str
    """First half of the API key (the user name of HTTP basic auth)."""
    key: str
    """Second half of the API key (the password of HTTP basic auth); never logged."""
    namespace: str = "guest"
    """Namespace the subject owns; ``_`` in a path means this one. OpenWhisk's default user is guest."""

    @classmethod
    def parse(cls, auth: str, namespace: str = "guest") -> Subject:
        """Build from ``"uuid:key"`` (the format of ``wsk property set --auth``)."""
        match = _UUID_KEY.match(auth or "")
        if not match:
            raise ConfigError("must look like UUID:KEY (two non-empty parts without spaces), got a malformed value",
                              "auth", owner="Subject")
        if not _NAMESPACE.match(namespace):
            raise ConfigError(f"must be a valid OpenWhisk namespace name, got {namespace!r}", "namespace", owner="Subject")
        return cls(uuid=match.group(1), key=match.group(2), namespace=namespace)

    def __repr__(self) -> str:
        return f"Subject(uuid={self.uuid!r}, key='***', namespace={self.namespace!r})"


@dataclass(frozen=True)
class PlatformConfig:
    """Everything the platform needs to start."""

    subject: Subject
    """Who may call the API (HTTP basic auth) and the namespace they own."""
    state_dir: Path
    """Where actions are saved (so a restart keeps them) and containers keep their working
    directories and logs."""
    host: str = "127.0.0.1"
    """Address to listen on. Loopback by default: the platform runs arbitrary code on request."""
    port: int = 3233
    """TCP port; 0 picks a free one (tests). 3233 is the port of OpenWhisk's standalone server."""
    limits: ActionLimitRanges = field(default_factory=ActionLimitRanges)
    """Allowed ranges and defaults of the action limits."""
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    """Per-namespace admission limits (HTTP 429 beyond them)."""
    user_memory_mb: int = 4096
    """Memory all containers together may reserve, MB (OpenWhisk's invoker ``userMemory``). A new
    container that does not fit evicts idle unpinned containers or waits. 4 GiB is 16 containers of
    256 MB: ample for 12 functions on a 2-core machine."""
    idle_timeout_s: float = 600.0
    """An unmanaged container idle this long is removed, s. OpenWhisk's default: 10 minutes."""
    pause_grace_s: float = 0.05
    """An idle container is paused (SIGSTOP) this long after its last activation, s. OpenWhisk's
    default pause grace is 50 ms."""
    janitor_interval_s: float = 0.05
    """How often the background pass pauses, evicts and reconciles pools, s; matches the pause grace."""
    max_blocking_wait_s: float = 60.0
    """Longest a blocking invocation holds its HTTP request before answering 202, s. OpenWhisk: 60 s."""
    max_http_handlers: int = 128
    """Requests answered at once, each on a thread of its own; a complete, authenticated request
    beyond this gets 503 at once. Bounds threads: a blocking invocation holds its thread for up to
    ``max_blocking_wait_s``. Connections that are idle or still sending hold no thread."""
    max_connections: int = 1024
    """Open HTTP connections, idle or active; a connection beyond this is answered 503 and closed.
    One file descriptor each; 1024 is the usual soft limit on open files for a whole process,
    and an idle connection costs only its socket and a few KB."""
    request_timeout_s: float = 30.0
    """Longest a client may take to send one request (request line, headers and body) once it has
    started it, s; past it the connection is closed (408 if the headers had arrived). Bounds how
    long a slow client holds its connection; 30 s moves the largest action (48 MB) at 1.6 MB/s."""
    keepalive_timeout_s: float = 120.0
    """An idle keep-alive connection is closed after this long without a new request, s. Long
    enough for a daemon ticking every minute to keep its connection."""
    pass_env: tuple[str, ...] = ()
    """Names of the platform's environment variables passed on to actions, beyond the few the
    runtime needs (``PATH``, ``HOME``, locale, ``TZ``, ``TMPDIR``, ``PYTHONPATH``). Empty by default:
    actions never see the platform's environment, which holds its API key."""
    max_stored_activations: int = 100_000
    """Activation records kept in memory; the oldest are dropped beyond this (about 1 KB each)."""
    cgroups: str = "auto"
    """``auto``: use cgroups where writable (v1 or v2) and run without them otherwise; ``off``:
    never touch cgroups (no CPU control; memory limit by RLIMIT_AS)."""
    cgroup_parent: str = "localwhisk"
    """Name of the cgroup created under the platform's own cgroup in each hierarchy; containers are
    its children."""
    drain_timeout_s: float = 10.0
    """On shutdown, how long running activations may finish before their containers are killed, s."""
    containers: str = "process"
    """What an action container is. ``process``: a worker process on this machine in cgroups of its
    own (``cgroups``, ``cgroup_parent``); nothing but Python is needed. ``docker``: a Docker container
    on the engine at ``docker_host``, from ``docker_image``, named, limited, paused and removed as
    OpenWhisk's Docker container factory does it (the cgroup options then do not apply: the engine
    makes the cgroups). Process is the default because it needs no engine."""
    docker_host: str = "unix:///var/run/docker.sock"
    """Engine API of the Docker engine that runs the containers when ``containers`` is ``docker``:
    a ``unix://`` socket, because each container mounts its working directory from the state
    directory and so must run on this machine. Docker's own default socket."""
    docker_image: str = "localwhisk/action-python:3.11"
    """Image of every container when ``containers`` is ``docker``: it needs ``python3`` (3.11 or
    newer) on its PATH and the modules the actions import. ``scripts/localwhisk-image.sh`` makes this
    one (Debian bookworm's python3, standard library only); nothing is pulled."""

    def __post_init__(self) -> None:
        checks: list[tuple[str, float, float, float]] = [
            ("port", self.port, 0, 65535),
            # A container of the largest memory an action may ask for must fit at least once.
            ("user_memory_mb", self.user_memory_mb, self.limits.memory_mb.maximum, 1 << 30),
            ("idle_timeout_s", self.idle_timeout_s, 0.0, float("inf")),
            ("pause_grace_s", self.pause_grace_s, 0.0, float("inf")),
            ("janitor_interval_s", self.janitor_interval_s, 0.001, 60.0),
            ("max_blocking_wait_s", self.max_blocking_wait_s, 0.0, 3600.0),
            ("max_http_handlers", self.max_http_handlers, 1, 100_000),
            ("max_connections", self.max_connections, 1, 1_000_000),
            ("request_timeout_s", self.request_timeout_s, 0.001, 3600.0),
            ("keepalive_timeout_s", self.keepalive_timeout_s, 0.001, 86_400.0),
            ("max_stored_activations", self.max_stored_activations, 1, 100_000_000),
            ("drain_timeout_s", self.drain_timeout_s, 0.0, 3600.0),
        ]
        for name, value, low, high in checks:
            if not (low <= value <= high):
                raise ConfigError(f"must be in [{low}, {high}], got {value}", name)
        if self.cgroups not in CGROUP_MODES:
            raise ConfigError(f"must be 'auto' or 'off', got {self.cgroups!r}", "cgroups")
        if self.containers not in CONTAINER_RUNTIMES:
            raise ConfigError(f"must be 'process' or 'docker', got {self.containers!r}", "containers")
        socket_path = self.docker_host.removeprefix("unix://")
        if not self.docker_host.startswith("unix://") or not socket_path.startswith("/"):
            raise ConfigError(
                f"must be a unix:// socket with an absolute path (containers mount the state directory, so the "
                f"engine must run on this machine), got {self.docker_host!r}", "docker_host")
        if not _IMAGE.match(self.docker_image):
            raise ConfigError(f"must be an image reference such as name:tag, got {self.docker_image!r}", "docker_image")
        if not _NAMESPACE.match(self.cgroup_parent):
            raise ConfigError(f"must be a plain directory name, got {self.cgroup_parent!r}", "cgroup_parent")
        for name in self.pass_env:
            if not _ENV_NAME.match(name):
                raise ConfigError(f"must hold environment variable names, got {name!r}", "pass_env")
            if name.startswith("LOCALWHISK_"):
                raise ConfigError(f"must not pass the platform's own settings to actions, got {name!r}", "pass_env")
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        object.__setattr__(self, "pass_env", tuple(self.pass_env))
