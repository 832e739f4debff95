"""Live configuration: noticing that the ``--config`` file changed, and which changes apply at once.

The keys that take effect while the daemon runs are marked on the settings model itself
(``controller.settings.live_keys``); every other change is reported and waits for a restart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.settings import Settings, is_live, live_keys, load_settings


@dataclass
class ConfigWatcher:
    """Notices when the ``--config`` file changed and loads it with the same overrides as at start."""

    path: Path
    """The settings file."""
    overrides: Mapping[str, Any]
    """The command line's overrides (they keep winning over the file, as at start)."""
    _fingerprint: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self._fingerprint = self._read_fingerprint()

    def _read_fingerprint(self) -> str:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError as error:
            return f"unreadable: {error.strerror}"

    def poll(self, force: bool = False) -> Settings | None:
        """New settings when the file's content changed (or ``force``); None when unchanged.

        Raises :class:`SettingsError` (naming key, value and range) when the new content is bad;
        the file is then not read again until it changes once more.
        """
        fingerprint = self._read_fingerprint()
        if fingerprint == self._fingerprint and not force:
            return None
        self._fingerprint = fingerprint
        return load_settings(self.path, self.overrides, allow_empty=False)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and key != "params":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def settings_changes(old: Settings, new: Settings) -> tuple[list[str], list[str]]:
    """Dotted keys that differ between ``old`` and ``new``: (live ones, ones that need a restart)."""
    a, b = _flatten(old.logged()), _flatten(new.logged())
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    live = [k for k in changed if is_live(k)]
    return live, [k for k in changed if k not in live]


def with_live_changes(current: Settings, new: Settings) -> Settings:
    """``current`` with the values of ``new`` for every live key (``controller.settings.live_keys``);
    every other key keeps its current value until a restart."""
    updates: dict[str, dict[str, Any]] = {}
    for key in live_keys():
        group, _, name = key.partition(".")
        updates.setdefault(group, {})[name] = getattr(getattr(new, group), name)
    return current.model_copy(
        update={group: getattr(current, group).model_copy(update=values) for group, values in updates.items()}
    )


def interval_of(settings: Settings) -> float:
    """Wall-clock seconds between ticks: ``daemon.interval_s``, or ``loop.tick_s`` when unset."""
    return settings.daemon.interval_s if settings.daemon.interval_s is not None else settings.loop.tick_s


def tick_deadline_of(settings: Settings) -> float:
    """Longest a tick may take, s: ``daemon.tick_deadline_s``, or the interval when unset (a tick
    then ends before the next one is due)."""
    deadline = settings.daemon.tick_deadline_s
    return deadline if deadline is not None else interval_of(settings)


__all__ = ["ConfigWatcher", "interval_of", "settings_changes", "tick_deadline_of", "with_live_changes"]
