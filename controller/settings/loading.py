"""Loading settings: the YAML file, the environment and the command line's overrides, merged and
checked, with every mistake reported as one readable line naming the file and line, the variable or
the key."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError as SourceError

from controller.settings.base import SettingsError
from controller.settings.model import ENV_NESTED_DELIMITER, ENV_PREFIX, Settings, settings_from
from controller.settings.reference import allowed_range, field_at
from controller.settings.urls import MASK, mask_credentials


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"loop.tick_s": 5}`` → ``{"loop": {"tick_s": 5}}`` (nested mappings pass through)."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SettingsError(f"override {key!r}: {part!r} is both a value and a group")
        node[parts[-1]] = value
    return nested


def _read_yaml(path: Path, *, allow_empty: bool) -> tuple[dict[str, Any], yaml.Node | None]:
    """The file's mapping and its composed node tree (for line numbers)."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise SettingsError(f"cannot read settings file {path}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        byte = raw[error.start]
        raise SettingsError(f"{path}: not UTF-8 text (byte 0x{byte:02x} at offset {error.start})") from None
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise SettingsError(f"{where}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
    if data is None:
        if not allow_empty:
            raise SettingsError(f"{path} is empty")
        return {}, None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: the top level must be a mapping of groups, got {type(data).__name__}")
    return data, node


def _yaml_line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest key of ``loc`` present in a composed YAML document."""
    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            return line
        for key_node, value_node in node.value:
            if key_node.value == str(part):
                line = key_node.start_mark.line + 1
                node = value_node
                break
        else:
            return line
    return line


def _has(data: Mapping[str, Any], loc: tuple[Any, ...]) -> bool:
    """Whether ``data`` holds a value at ``loc`` or at a part of it (a whole group or mapping)."""
    node: Any = data
    for part in loc:
        if not isinstance(node, Mapping):
            return True
        if part not in node:
            return False
        node = node[part]
    return True


def _variable_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part) for part in loc).upper()


def _variables_for(loc: tuple[Any, ...], *, below: bool) -> list[str]:
    """The ``MFRM_`` variables (as spelt in the environment) that set ``loc``, a part of it, or with
    ``below`` also anything inside it."""
    wanted = {_variable_name(loc[:n]) for n in range(1, len(loc) + 1)}
    inside = _variable_name(loc) + ENV_NESTED_DELIMITER
    return sorted(name for name in os.environ
                  if name.upper() in wanted or (below and name.upper().startswith(inside)))


def _sources(loc: tuple[Any, ...], overrides: Mapping[str, Any], config_file: Path | None,
             file_data: Mapping[str, Any], file_node: yaml.Node | None, *, whole_group: bool) -> str:
    """Where the value at ``loc`` came from. For a single value, the source that won; for a whole
    group (an error about several of its keys), every source that set part of it."""
    found: list[str] = []
    if _has(overrides, loc):
        found.append("command line")
    names = _variables_for(loc, below=whole_group)
    if names:
        label = "environment variables" if len(names) > 1 else "environment variable"
        found.append(f"{label} {', '.join(names)}")
    if config_file is not None and _has(file_data, loc):
        line = _yaml_line(file_node, loc)
        found.append(f"{config_file}:{line}" if line else str(config_file))
    if not found:
        return "defaults"
    return ", ".join(found) if whole_group else found[0]


def _is_secret(loc: tuple[Any, ...]) -> bool:
    info = field_at(loc)
    return info is not None and SecretStr in (info.annotation, *getattr(info.annotation, "__args__", ()))


def _shown(loc: tuple[Any, ...], value: Any) -> str:
    """`` = value`` for the message, with secrets and URL credentials masked; empty for a whole group."""
    if isinstance(value, Mapping):
        return ""
    if _is_secret(loc):
        return f" = {MASK!r}"
    return f" = {mask_credentials(value)!r}" if isinstance(value, str) else f" = {value!r}"


def _friendly(error: ValidationError, overrides: Mapping[str, Any], config_file: Path | None,
              file_data: Mapping[str, Any], file_node: yaml.Node | None) -> SettingsError:
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(p) for p in loc) or "(settings)"
        value = item.get("input")
        whole_group = isinstance(value, Mapping)
        source = _sources(loc, overrides, config_file, file_data, file_node, whole_group=whole_group)
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown setting (from {source})")
            continue
        # A validator's own message already says what is wrong; pydantic's "Value error, " adds nothing.
        cause = item.get("ctx", {}).get("error")
        message = str(cause) if item["type"] == "value_error" and cause is not None else item["msg"]
        bounds = allowed_range(field_at(loc))
        allowed = f"; allowed: {bounds}" if bounds else ""
        lines.append(f"  {key}{_shown(loc, value)} (from {source}): {message}{allowed}")
    return SettingsError("invalid settings:\n" + "\n".join(lines))


def _undecodable_variable(error: SourceError) -> SettingsError:
    """An ``MFRM_`` variable pydantic-settings could not decode as JSON, named with the position."""
    cause = error.__cause__
    if isinstance(cause, json.JSONDecodeError):
        names = sorted(name for name, value in os.environ.items()
                       if name.upper().startswith(ENV_PREFIX) and value == cause.doc)
        where = f"line {cause.lineno} column {cause.colno}" if cause.lineno > 1 else f"column {cause.colno}"
        if names:
            key = names[0][len(ENV_PREFIX):].lower().replace(ENV_NESTED_DELIMITER, ".")
            return SettingsError(f"environment variable {names[0]} ({key}): not valid JSON "
                                 f"({cause.msg} at {where})")
    return SettingsError(f"environment: {error}" + (f" ({cause})" if cause is not None else ""))


def load_settings(config_file: Path | str | None = None, overrides: Mapping[str, Any] | None = None, *,
                  allow_empty: bool = True, other_sections: tuple[str, ...] = ()) -> Settings:
    """Settings from the YAML file, the environment and ``overrides`` (dotted keys), in that rising order.

    ``allow_empty=False`` refuses a file with no settings in it (empty, or only comments): a config
    reload uses it, since an empty file met mid-edit would otherwise reset every live setting to its
    default. ``other_sections`` are top-level keys of the file that belong to its reader, not to the
    settings (a scenario file's ``scenario``), and are left out. Raises :class:`SettingsError` with a
    readable message when anything is invalid.
    """
    path = Path(config_file) if config_file is not None else None
    file_data, file_node = _read_yaml(path, allow_empty=allow_empty) if path is not None else ({}, None)
    file_data = {key: value for key, value in file_data.items() if key not in other_sections}
    nested = _nest(dict(overrides or {}))
    try:
        return settings_from(file_data, nested)
    except ValidationError as error:
        raise _friendly(error, nested, path, file_data, file_node) from None
    except SourceError as error:
        raise _undecodable_variable(error) from None


__all__ = ["load_settings"]
