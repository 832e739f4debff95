"""``localwhisk --auth UUID:KEY --state-dir DIR``: run the platform until SIGTERM or SIGINT.

Every option reads ``LOCALWHISK_<OPTION>`` from the environment when it is not on the command line
(``LOCALWHISK_AUTH``, ``LOCALWHISK_PORT``...), so a container image or a unit file need not put the
key on the command line. Defaults are those of :mod:`localwhisk.config`'s dataclasses. A bad value
gives one line naming the option (or the variable it came from) and exit status 2; a platform that
cannot start (address in use, state directory held by another instance) gives one line and status 1.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from localwhisk import __version__
from localwhisk.config import (
    CGROUP_MODES,
    CONTAINER_RUNTIMES,
    ActionLimitRanges,
    ConfigError,
    LimitRange,
    PlatformConfig,
    Subject,
    ThrottleConfig,
)

log = logging.getLogger("localwhisk")

ENV_PREFIX = "LOCALWHISK_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def field_default(owner: type, name: str) -> Any:
    """The default of dataclass ``owner``'s field ``name``: where every option's default comes from."""
    field = next(f for f in dataclasses.fields(owner) if f.name == name)
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise LookupError(f"{owner.__name__}.{name} has no default")


def envvar(option: str) -> str:
    """``--user-memory-mb`` -> ``LOCALWHISK_USER_MEMORY_MB``."""
    return ENV_PREFIX + option.lstrip("-").upper().replace("-", "_")


class EnvOption(click.Option):
    """An option whose environment variable is ``LOCALWHISK_<OPTION>``, shown in ``--help``, and
    named in the error when the bad value came from it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.envvar = envvar(self.opts[0])
        self.show_envvar = True

    def consume_value(self, ctx: click.Context, opts: Any) -> Any:
        value, source = super().consume_value(ctx, opts)
        ctx.meta[f"localwhisk.source.{self.name}"] = source
        return value, source

    def get_error_hint(self, ctx: click.Context | None) -> str:
        # The parameter's own hint ('--port'); click's Option would add the variable even when the
        # value came from the command line.
        hint = click.Parameter.get_error_hint(self, ctx)
        if ctx is not None and ctx.meta.get(f"localwhisk.source.{self.name}") is ParameterSource.ENVIRONMENT:
            return f"{hint} (from {self.envvar})"
        return hint


#: (dataclass, field) -> the option that sets it, so that a value the dataclass refuses is reported
#: under the name the user typed.
OPTION_OF: dict[tuple[str, str], str] = {("Subject", "auth"): "--auth"}


def setting(option: str, owner: type, name: str, help_text: str, **kwargs: Any) -> Callable[[Any], Any]:
    """A click option for field ``name`` of ``owner``, with that field's default."""
    OPTION_OF[(owner.__name__, name)] = option
    return click.option(option, cls=EnvOption, default=field_default(owner, name), show_default=True, help=help_text, **kwargs)


_MEMORY = ActionLimitRanges().memory_mb


@click.command(name="localwhisk", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="localwhisk")
@setting("--host", PlatformConfig, "host", "Address to listen on. Keep loopback unless you mean it: the platform runs whatever code it is sent.")
@setting("--port", PlatformConfig, "port", "TCP port; 0 picks a free one.", type=int)
@click.option("--auth", cls=EnvOption, metavar="UUID:KEY",
              help="The one API key (HTTP basic auth user:password). Required; prefer the variable to the command line, which other users can read.")
@setting("--namespace", Subject, "namespace", "Namespace the key owns; '_' in a path means this one.")
@click.option("--state-dir", cls=EnvOption, type=click.Path(file_okay=False, path_type=Path),
              help="Directory of saved actions, container working directories and logs. Required; one platform per directory.")
@setting("--user-memory-mb", PlatformConfig, "user_memory_mb", "Memory all containers together may reserve, MB.", type=int)
@setting("--idle-timeout-s", PlatformConfig, "idle_timeout_s", "An on-demand container idle this long is removed, s.", type=float)
@setting("--pause-grace-s", PlatformConfig, "pause_grace_s", "An idle container is paused (SIGSTOP) this long after its last activation, s.", type=float)
@click.option("--max-memory-mb", cls=EnvOption, type=int, default=_MEMORY.maximum, show_default=True,
              help=f"Largest memory limit an action may ask for, MB (at least the default action memory, {_MEMORY.default}).")
@setting("--invocations-per-minute", ThrottleConfig, "invocations_per_minute", "Invocations admitted per minute; beyond, 429.", type=int)
@setting("--concurrent-invocations", ThrottleConfig, "concurrent_invocations", "Invocations queued or running at once; beyond, 429.", type=int)
@setting("--containers", PlatformConfig, "containers",
         "What an action container is. 'process': a worker process in cgroups of its own; 'docker': a Docker "
         "container, named, limited and paused as OpenWhisk's invoker makes them.", type=click.Choice(CONTAINER_RUNTIMES))
@setting("--docker-host", PlatformConfig, "docker_host",
         "Engine that runs the containers with --containers docker: a unix:// socket on this machine.")
@setting("--docker-image", PlatformConfig, "docker_image",
         "Image of the containers with --containers docker (python3 on its PATH; made by scripts/localwhisk-image.sh).")
@setting("--cgroups", PlatformConfig, "cgroups", "'auto': cgroups where writable (v1 or v2), else none; 'off': never touch cgroups.",
         type=click.Choice(CGROUP_MODES))
@setting("--cgroup-parent", PlatformConfig, "cgroup_parent", "Cgroup created under the platform's own, parent of every container's.")
@setting("--max-http-handlers", PlatformConfig, "max_http_handlers", "Requests answered at once (threads); beyond, 503.", type=int)
@setting("--max-connections", PlatformConfig, "max_connections", "Open HTTP connections, idle ones included; beyond, 503.", type=int)
@setting("--request-timeout-s", PlatformConfig, "request_timeout_s",
         "Time a client has to send a whole request once it has started it, s; past it the connection is closed.", type=float)
@setting("--keepalive-timeout-s", PlatformConfig, "keepalive_timeout_s", "An idle keep-alive connection is closed after this long, s.", type=float)
@setting("--drain-timeout-s", PlatformConfig, "drain_timeout_s", "On shutdown, time running activations get to finish, s.", type=float)
@setting("--max-stored-activations", PlatformConfig, "max_stored_activations", "Activation records kept in memory (about 1 KB each).", type=int)
@setting("--pass-env", PlatformConfig, "pass_env",
         "Name of a variable of the platform's environment to pass on to actions (repeat it; the variable takes names "
         "separated by spaces). Actions otherwise get only PATH, HOME, locale, TZ, TMPDIR and PYTHONPATH.", multiple=True)
@click.option("--log-level", cls=EnvOption, type=click.Choice(LOG_LEVELS, case_sensitive=False), default="INFO",
              show_default=True, help="Level of the platform's log (standard error).")
def command(**options: Any) -> None:
    """An OpenWhisk-compatible serverless platform on one machine."""
    level = options.pop("log_level").upper()
    config = config_from_options(options)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(config)


def _missing(option: str) -> click.UsageError:
    return click.UsageError(f"{option} is required (or {envvar(option)})")


def config_from_options(options: dict[str, Any]) -> PlatformConfig:
    """The platform's configuration from parsed options; a refused value raises ``click.BadParameter``
    naming its option."""
    if not options["auth"]:
        raise _missing("--auth")
    if not options["state_dir"]:
        raise _missing("--state-dir")
    maximum = options["max_memory_mb"]
    try:
        limits = ActionLimitRanges(memory_mb=LimitRange(_MEMORY.minimum, maximum, _MEMORY.default, "MB"))
    except ConfigError:
        raise click.BadParameter(
            f"must be at least the default action memory, {_MEMORY.default} MB; got {maximum}", param_hint=_hint("--max-memory-mb")
        ) from None
    fields = {f.name for f in dataclasses.fields(PlatformConfig)}
    try:
        return PlatformConfig(
            subject=Subject.parse(options["auth"], options["namespace"]),
            limits=limits,
            throttle=ThrottleConfig(options["invocations_per_minute"], options["concurrent_invocations"]),
            **{k: v for k, v in options.items() if k in fields},
        )
    except ConfigError as error:
        option = OPTION_OF.get((error.owner, error.key or ""))
        if option is None:
            raise click.UsageError(str(error)) from None
        raise click.BadParameter(error.detail, param_hint=_hint(option)) from None


def _hint(option: str) -> str:
    """How an option is named in an error: with its variable when the value came from there."""
    ctx = click.get_current_context(silent=True)
    name = option.lstrip("-").replace("-", "_")
    if ctx is not None and ctx.get_parameter_source(name) is ParameterSource.ENVIRONMENT:
        return f"'{option}' (from {envvar(option)})"
    return f"'{option}'"


def non_default_settings(config: PlatformConfig) -> str:
    """``name=value`` of every setting that differs from its default (the key is never shown)."""
    changed = [
        f"{f.name}={getattr(config, f.name)!r}"
        for f in dataclasses.fields(PlatformConfig)
        if f.name not in ("subject", "state_dir") and getattr(config, f.name) != field_default(PlatformConfig, f.name)
    ]
    return ", ".join(changed) or "none"


def serve(config: PlatformConfig) -> None:
    """Start the platform, wait for SIGTERM or SIGINT, stop it gracefully."""
    from localwhisk.containers import EngineError
    from localwhisk.leftovers import StateDirBusy
    from localwhisk.server import LocalWhisk

    log.info(
        "localwhisk %s: state directory %s, namespace %s, settings other than the defaults: %s",
        __version__, config.state_dir, config.subject.namespace, non_default_settings(config),
    )
    try:
        whisk = LocalWhisk(config).start()
    except (StateDirBusy, EngineError) as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"cannot listen on {config.host}:{config.port}: {error.strerror or error}") from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        log.info("shutting down: draining for at most %.0f s", config.drain_timeout_s)
        whisk.stop()
        log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``localwhisk`` and ``python -m localwhisk``: errors are one line on standard
    error, status 2 for a bad command line or variable, 1 for a platform that cannot start."""
    try:
        status = command.main(args=argv, prog_name="localwhisk", standalone_mode=False)
    except click.UsageError as error:
        print(f"localwhisk: {error.format_message()}", file=sys.stderr)
        raise SystemExit(2) from None
    except click.ClickException as error:
        print(f"localwhisk: {error.format_message()}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except click.Abort:
        raise SystemExit(130) from None
    if isinstance(status, int) and status:
        raise SystemExit(status)
