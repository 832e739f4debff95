"""What the settings model says about itself: keys, defaults, bounds, descriptions, live keys, backends.

Everything here is read from the fields of :class:`~controller.settings.model.Settings`, so help texts,
the user guide's reference and the daemon's reload never repeat a default, a bound or a list by hand.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Iterator
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from controller.settings.base import LIVE
from controller.settings.model import Settings
from controller.settings.run_groups import DaemonSettings


def _group_model(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _leaves(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """(dotted key, field) of every setting below ``model``, in field order."""
    for name, info in model.model_fields.items():
        group = _group_model(info)
        if group is not None:
            yield from _leaves(group, f"{prefix}{name}.")
        else:
            yield prefix + name, info


def field_at(loc: tuple[Any, ...] | str) -> FieldInfo | None:
    """The field at a dotted key or a location tuple (``"loop.tick_s"``, ``("loop", "tick_s")``); None
    when there is none (an unknown key, or a part inside a mapping value)."""
    parts = tuple(loc.split(".")) if isinstance(loc, str) else loc
    model: Any = Settings
    info = None
    for part in parts:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        info = fields[part]
        model = info.annotation
    return info


def _field(key: str) -> FieldInfo:
    info = field_at(key) if key else None
    if info is None:
        raise KeyError(f"no setting {key!r}")
    return info


def allowed_range(info: FieldInfo | None) -> str:
    """The bounds of a field in words, e.g. ``0.1 <= value <= 3600``; empty when unbounded."""
    if info is None:
        return ""
    low = high = ""
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"{item.ge} <= "
        elif isinstance(item, annotated_types.Gt):
            low = f"{item.gt} < "
        elif isinstance(item, annotated_types.Le):
            high = f" <= {item.le}"
        elif isinstance(item, annotated_types.Lt):
            high = f" < {item.lt}"
    return f"{low}value{high}" if (low or high) else ""


def _choices(info: FieldInfo) -> tuple[str, ...]:
    """The values of a ``Literal`` field, in order; empty for any other field."""
    if typing.get_origin(info.annotation) is not typing.Literal:
        return ()
    return tuple(str(choice) for choice in typing.get_args(info.annotation))


def default_of(key: str) -> Any:
    """The default of the setting at the dotted ``key`` (a group's key gives the group's defaults).

    Raises ``KeyError`` for a key that is not a setting.
    """
    return _field(key).get_default(call_default_factory=True)


def describe(key: str) -> str:
    """The description of the setting at the dotted ``key`` on one line (its docstring; for a group,
    the group's). Raises ``KeyError`` for a key that is not a setting."""
    info = _field(key)
    group = _group_model(info)
    text = info.description or (group.__doc__ if group is not None else "") or ""
    return " ".join(text.split())


@functools.cache
def live_keys() -> tuple[str, ...]:
    """Dotted keys the daemon applies from a reloaded config file without a restart, in field order
    (the fields typed ``Live[...]``)."""
    return tuple(key for key, info in _leaves(Settings) if LIVE in info.metadata)


def is_live(key: str) -> bool:
    """Whether a change at the dotted ``key`` (a setting, or an entry inside one) applies live."""
    return any(key == live or key.startswith(live + ".") for live in live_keys())


def backend_names() -> tuple[str, ...]:
    """The backends ``daemon.backend`` accepts, in order (``sim`` first, the default)."""
    return _choices(DaemonSettings.model_fields["backend"])


def settings_reference() -> list[tuple[str, str, str, str]]:
    """Every setting as (dotted key, default, allowed range or values, description), in field order.

    The allowed values of a choice read ``a or b``; a string default is quoted; a tuple is shown as a
    list (as it is written in YAML).
    """
    rows: list[tuple[str, str, str, str]] = []
    for key, info in _leaves(Settings):
        default = info.get_default(call_default_factory=True)
        if isinstance(default, tuple):
            default = list(default)
        shown = repr(default) if isinstance(default, str) else str(default)
        allowed = allowed_range(info) or " or ".join(_choices(info))
        rows.append((key, shown, allowed, describe(key)))
    return rows


__all__ = [
    "allowed_range",
    "backend_names",
    "default_of",
    "describe",
    "field_at",
    "is_live",
    "live_keys",
    "settings_reference",
]
