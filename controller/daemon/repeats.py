"""Saying a cause once, then summarising it: the daemon's log under a fault that lasts.

A platform that stays down fails every tick in the same way; one line per tick would bury the log
(8,640 a day at 10 s) and hide the line that matters, the first. :class:`RepeatLog` says when a
cause should be logged: the first time it is seen, then once every ``every_s`` with how many times
it happened since, and how long it lasted when it ends. Time is passed in.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class Seen:
    """How often one cause has happened."""

    first_s: float
    """When it was first seen (this time), monotonic s."""
    logged_s: float
    """When it was last logged."""
    total: int = 1
    """Times seen since it started."""
    unlogged: int = 0
    """Times seen since it was last logged."""


@dataclass(frozen=True)
class Say:
    """What to log about a cause now."""

    first: bool
    """True: the cause is new; False: a summary of repeats."""
    count: int
    """Times it happened since it was last logged (1 when new)."""
    total: int
    """Times since it started."""
    for_s: float
    """How long since it started, s."""


@dataclass
class RepeatLog:
    """Decides when to log a cause that keeps happening (see the module docstring)."""

    every_s: float
    """Summarise a cause that keeps happening this often, s."""
    _seen: dict[Hashable, Seen] = field(default_factory=dict)

    def note(self, key: Hashable, now_s: float) -> Say | None:
        """The cause ``key`` happened at ``now_s``: what to log about it, or None for nothing."""
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = Seen(first_s=now_s, logged_s=now_s)
            return Say(first=True, count=1, total=1, for_s=0.0)
        seen.total += 1
        seen.unlogged += 1
        if now_s - seen.logged_s < self.every_s:
            return None
        say = Say(first=False, count=seen.unlogged, total=seen.total, for_s=now_s - seen.first_s)
        seen.logged_s, seen.unlogged = now_s, 0
        return say

    def end(self, key: Hashable) -> Seen | None:
        """The cause ``key`` is over: how often it happened (None if it was not current)."""
        return self._seen.pop(key, None)

    def keep_only(self, keys: set[Hashable]) -> dict[Hashable, Seen]:
        """End every cause but ``keys``; the ended ones with their counts."""
        ended = {key: seen for key, seen in self._seen.items() if key not in keys}
        for key in ended:
            del self._seen[key]
        return ended

    @property
    def current(self) -> tuple[Hashable, ...]:
        """The causes still going on."""
        return tuple(self._seen)


__all__ = ["RepeatLog", "Say", "Seen"]
