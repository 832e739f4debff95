"""What every ``mfrm`` command shares: settings from ``--config``/``--set``/flags, clean usage errors,
logging set-up, and options whose help shows the real default (read from the settings model).

A command's flags are overrides of settings keys (``--minutes`` is ``workload.minutes``), so a flag,
``--set workload.minutes=30``, ``MFRM_WORKLOAD__MINUTES=30`` and ``workload: {minutes: 30}`` in a
config file are four ways to say the same thing (highest precedence first).

Exit statuses: 2 for a usage error (bad settings, a file that is missing or unreadable, a name that
is not known, a checkpoint that does not fit), 1 for a run that failed.
"""

from __future__ import annotations

import copy
import logging
import re
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from controller.settings import Settings, SettingsError, default_of, field_at, load_settings

#: Exit status of a usage error (the conventional one, as click's own).
EXIT_USAGE = 2


class UsageProblem(click.ClickException):
    """A user's input that cannot be used: printed as one ``Error: ...`` line, exit status 2."""

    exit_code = EXIT_USAGE


#: A number in exponent notation without a dot (``6e-5``, ``1E3``), which YAML 1.1 reads as text.
_EXPONENT_NUMBER = re.compile(r"[-+]?\d+[eE][-+]?\d+")


def parse_set(values: Sequence[str], option: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` pairs of ``option``; values are read as YAML scalars (numbers, booleans, lists)."""
    import yaml

    overrides: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        try:
            value = yaml.safe_load(raw)
            # YAML 1.1 reads 6e-5 (no dot) as text; a user writing it means the number.
            if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
                value = float(value)
            overrides[key.strip()] = value
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise click.BadParameter(f"{item!r}: the value is not valid YAML ({problem})", param_hint=option) from None
    return overrides


def load(config: Path | None, overrides: Mapping[str, Any]) -> Settings:
    """Settings from the config file, the environment and ``overrides``; a usage error when invalid."""
    try:
        return load_settings(config, overrides)
    except SettingsError as error:
        raise UsageProblem(str(error)) from None


def configure_logging(level: int) -> None:
    """Log to stderr at ``level``; numba's compiler logs are never of interest to a user."""
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("numba").setLevel(logging.WARNING)


def command_line() -> str:
    """The command as typed (for the run's record)."""
    return " ".join(["mfrm", *sys.argv[1:]])


# --------------------------------------------------------------------------------------------
# options that override settings keys, with defaults read from the model
# --------------------------------------------------------------------------------------------


def choices_of(key: str) -> list[str]:
    """The allowed values of a ``Literal`` settings field, in declaration order (empty for others)."""
    info = field_at(key)
    choices = typing.get_args(info.annotation) if info is not None else ()
    return [str(c) for c in choices] if choices and all(isinstance(c, str) for c in choices) else []


def shown_default(key: str, base: Mapping[str, Any]) -> str:
    """The default of ``key`` as a command shows it: its value in ``base`` (the command's own
    overrides) when there, else the model's default."""
    value = base[key] if key in base else default_of(key)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class SettingOption:
    """A command-line flag that overrides one settings key."""

    flag: str
    """The flag, e.g. ``--minutes``."""
    key: str
    """The settings key it overrides, e.g. ``workload.minutes``."""
    help: str
    """What it means (the default is appended from the model)."""
    kind: Any = None
    """click type; None: a Choice for Literal fields, else a string."""
    default_text: str | None = None
    """The default as shown, when it cannot be read from the model (e.g. a shipped sample's path)."""

    @property
    def dest(self) -> str:
        """The click parameter name (``--start-minute`` -> ``start_minute``)."""
        return self.flag.lstrip("-").replace("-", "_")

    def decorator(self, base: Mapping[str, Any]) -> Callable[[Any], Any]:
        kind = self.kind
        if kind is None:
            choices = choices_of(self.key)
            kind = click.Choice(choices) if choices else str
        shown = self.default_text if self.default_text is not None else shown_default(self.key, base)
        return click.option(self.flag, self.dest, type=kind, default=None,
                            help=f"{self.help} [{self.key}; default: {shown}]")


#: Flags of the commands that run policies on the simulated cluster.
RUN_OPTIONS: tuple[SettingOption, ...] = (
    SettingOption("--trace", "workload.trace_dir", "Azure Functions trace: a 2019 folder, or the 2021 file or its folder.",
                  click.Path(path_type=Path), default_text="the shipped 2019 sample"),
    SettingOption("--functions", "workload.functions", "Functions sampled from the trace.", int),
    SettingOption("--minutes", "workload.minutes", "Trace minutes replayed.", int),
    SettingOption("--start-minute", "workload.start_minute", "First trace minute.", int),
    SettingOption("--profiles", "workload.profiles", "Benchmark profiles (the paper's 12) or the trace's own."),
    SettingOption("--select", "workload.select", "Pick functions spread over rate classes, or the busiest."),
    SettingOption("--rate-scale", "workload.rate_scale", "Multiply every per-minute invocation count (load knob).", float),
    SettingOption("--seed", "seed", "Seed of everything random.", int),
)


def setting_options(options: Sequence[SettingOption], base: Mapping[str, Any] = {}) -> Callable[[Any], Any]:
    """Decorator adding ``options`` to a command; ``base`` holds the command's own defaults."""

    def decorate(command: Any) -> Any:
        for option in reversed(options):
            command = option.decorator(base)(command)
        return command

    return decorate


def config_options(command: Any) -> Any:
    """``--config FILE`` and ``--set KEY=VALUE``."""
    command = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                           help="Override any setting, e.g. --set loop.tick_s=5 (repeatable).")(command)
    command = click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
                           help="YAML settings file (docs/user-guide.md lists every key).")(command)
    return command


def overrides_from(options: Mapping[str, Any], flags: Sequence[SettingOption], sets: Sequence[str],
                   base: Mapping[str, Any] = {}) -> dict[str, Any]:
    """The settings overrides of a command: its ``base``, then the flags given, then ``--set``. A new
    dict throughout: merging ``--set`` keys into nested values never changes ``base`` (a command's
    module-level defaults stay what they are for the next command in the same process)."""
    overrides = copy.deepcopy(dict(base))
    for flag in flags:
        value = options.get(flag.dest)
        if value is not None:
            overrides[flag.key] = value
    overrides.update(parse_set(sets))
    return overrides


def check_config_file(config: Path | None) -> None:
    """A usage error naming the file when ``--config`` is given but cannot be read."""
    if config is not None and not config.is_file():
        raise UsageProblem(f"--config {config}: no such file")


__all__ = [
    "EXIT_USAGE",
    "RUN_OPTIONS",
    "SettingOption",
    "UsageProblem",
    "check_config_file",
    "choices_of",
    "command_line",
    "config_options",
    "configure_logging",
    "load",
    "overrides_from",
    "parse_set",
    "setting_options",
    "shown_default",
]
