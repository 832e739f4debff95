"""``python -m localwhisk --port P --auth UUID:KEY --state-dir DIR``: run the platform until SIGTERM/SIGINT.

Every option has an environment default (``LOCALWHISK_<OPTION>``, e.g. ``LOCALWHISK_AUTH``), so a
container image or a unit file need not put the key on the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from localwhisk import __version__
from localwhisk.config import (
    ActionLimitRanges,
    ConfigError,
    LimitRange,
    PlatformConfig,
    Subject,
    ThrottleConfig,
)
from localwhisk.server import LocalWhisk

log = logging.getLogger("localwhisk")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"LOCALWHISK_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    defaults = PlatformConfig.__dataclass_fields__
    limits = ActionLimitRanges()
    throttle = ThrottleConfig()
    p = argparse.ArgumentParser(prog="localwhisk", description="An OpenWhisk-compatible serverless platform on one machine.")
    p.add_argument("--version", action="version", version=f"localwhisk {__version__}")
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(_env("PORT", "3233") or 3233), help="TCP port, 0 for any (default: 3233)")
    p.add_argument("--auth", default=_env("AUTH"), help="API key UUID:KEY (or LOCALWHISK_AUTH)")
    p.add_argument("--namespace", default=_env("NAMESPACE", "guest"), help="namespace of the key (default: guest)")
    p.add_argument("--state-dir", default=_env("STATE_DIR"), help="where actions and container logs are kept (required)")
    p.add_argument("--user-memory-mb", type=int, default=int(_env("USER_MEMORY_MB", str(defaults["user_memory_mb"].default)) or 0))
    p.add_argument("--idle-timeout-s", type=float, default=float(_env("IDLE_TIMEOUT_S", str(defaults["idle_timeout_s"].default)) or 0))
    p.add_argument("--pause-grace-s", type=float, default=float(_env("PAUSE_GRACE_S", str(defaults["pause_grace_s"].default)) or 0))
    p.add_argument("--max-memory-mb", type=int, default=int(_env("MAX_MEMORY_MB", str(limits.memory_mb.maximum)) or 0),
                   help=f"largest action memory limit accepted, MB (default: {limits.memory_mb.maximum}, OpenWhisk's)")
    p.add_argument("--invocations-per-minute", type=int,
                   default=int(_env("INVOCATIONS_PER_MINUTE", str(throttle.invocations_per_minute)) or 0))
    p.add_argument("--concurrent-invocations", type=int,
                   default=int(_env("CONCURRENT_INVOCATIONS", str(throttle.concurrent_invocations)) or 0))
    p.add_argument("--cgroups", choices=("auto", "off"), default=_env("CGROUPS", "auto"))
    p.add_argument("--cgroup-parent", default=_env("CGROUP_PARENT", "localwhisk"))
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"), choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def config_from_args(args: argparse.Namespace) -> PlatformConfig:
    if not args.auth:
        raise ConfigError("--auth UUID:KEY (or LOCALWHISK_AUTH) is required")
    if not args.state_dir:
        raise ConfigError("--state-dir DIR (or LOCALWHISK_STATE_DIR) is required")
    default_ranges = ActionLimitRanges()
    memory = default_ranges.memory_mb
    if args.max_memory_mb < memory.default:
        raise ConfigError(f"--max-memory-mb must be >= the default action memory {memory.default}, got {args.max_memory_mb}")
    return PlatformConfig(
        subject=Subject.parse(args.auth, args.namespace),
        state_dir=Path(args.state_dir),
        host=args.host,
        port=args.port,
        limits=ActionLimitRanges(memory_mb=LimitRange(memory.minimum, args.max_memory_mb, memory.default, "MB")),
        throttle=ThrottleConfig(args.invocations_per_minute, args.concurrent_invocations),
        user_memory_mb=args.user_memory_mb,
        idle_timeout_s=args.idle_timeout_s,
        pause_grace_s=args.pause_grace_s,
        cgroups=args.cgroups,
        cgroup_parent=args.cgroup_parent,
    )


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
    except ConfigError as error:
        print(f"localwhisk: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    log.info("effective configuration: %r", config)
    whisk = LocalWhisk(config)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    whisk.start()
    try:
        stop.wait()
    finally:
        log.info("shutting down: draining for at most %.0f s", config.drain_timeout_s)
        whisk.stop()
        log.info("stopped")
