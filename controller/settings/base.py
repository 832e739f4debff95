"""What every settings group shares: its pydantic configuration, the live-reload marker and the error type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict

#: The model configuration of every group and of the root: immutable once loaded, unknown keys refused
#: (a typo must not silently fall back to a default), each field's docstring kept as its description,
#: and no NaN or infinity in any float (a bound such as ``<= 3600`` says nothing about NaN, which
#: compares false with everything and would pass the range checks written as negations).
GROUP_CONFIG = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)


class SettingsError(ValueError):
    """Invalid settings: the message names each bad key, its value, its source and what is allowed."""


class SettingsGroup(BaseModel):
    """A group of settings (one YAML mapping, one ``MFRM_<GROUP>__`` family of variables)."""

    model_config = GROUP_CONFIG


@dataclass(frozen=True)
class LiveReload:
    """Marks a field the daemon applies from a reloaded config file without a restart.

    Only fields read afresh on every tick qualify; anything used to build a component at start
    (the backend, the policy, the metrics server) needs a restart.
    """


LIVE = LiveReload()

T = TypeVar("T")

#: ``Live[float]``: the field's type, marked as applied live on a config reload.
Live = Annotated[T, LIVE]


__all__ = ["GROUP_CONFIG", "LIVE", "Live", "LiveReload", "SettingsError", "SettingsGroup"]
