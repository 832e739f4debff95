"""Where actions and activation records live.

Actions are saved as one JSON file each under ``<state_dir>/actions/<namespace>/`` (written atomically)
so that a restarted platform still has them. Activation records are kept in memory only, the newest
``capacity`` of them: they are the platform's answer to ``GET .../activations``, not an archive.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from localwhisk.actions import Action

log = logging.getLogger(__name__)

#: OpenWhisk's list limits: 30 by default, at most 200; a limit of 0 means the maximum.
DEFAULT_LIST_LIMIT = 30
MAX_LIST_LIMIT = 200


def clamp_list_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIST_LIMIT
    if limit == 0:
        return MAX_LIST_LIMIT
    return min(limit, MAX_LIST_LIMIT)


class ActionStore:
    """Thread-safe map of (namespace, name) to :class:`Action`, mirrored to disk."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root) / "actions"
        self._root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._actions: dict[tuple[str, str], Action] = {}
        self._load()

    def _file(self, namespace: str, name: str) -> Path:
        return self._root / quote(namespace, safe="") / (quote(name, safe="") + ".json")

    def _load(self) -> None:
        for path in sorted(self._root.glob("*/*.json")):
            try:
                doc = json.loads(path.read_text())
                action = Action.from_json(doc, revision=int(doc.get("_revision", 1)))
            except (OSError, ValueError, KeyError, TypeError) as error:
                log.warning("skipping unreadable saved action %s: %s", path, error)
                continue
            if (unquote(path.parent.name), unquote(path.stem)) != (action.namespace, action.name):
                log.warning("skipping saved action %s: its file name does not match %s", path, action.path)
                continue
            self._actions[(action.namespace, action.name)] = action

    def get(self, namespace: str, name: str) -> Action | None:
        with self._lock:
            return self._actions.get((namespace, name))

    def put(self, action: Action) -> None:
        path = self._file(action.namespace, action.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = action.to_json() | {"_revision": action.revision}
        tmp = path.with_suffix(".tmp")
        with self._lock:
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)
            self._actions[(action.namespace, action.name)] = action

    def delete(self, namespace: str, name: str) -> Action | None:
        with self._lock:
            action = self._actions.pop((namespace, name), None)
            if action is not None:
                self._file(namespace, name).unlink(missing_ok=True)
            return action

    def list(self, namespace: str, limit: int | None = None, skip: int = 0) -> list[Action]:
        """Actions of ``namespace``, most recently updated first (OpenWhisk's order)."""
        with self._lock:
            found = [a for (ns, _), a in self._actions.items() if ns == namespace]
        found.sort(key=lambda a: (-a.updated_ms, a.name))
        return found[skip : skip + clamp_list_limit(limit)]

    def all(self) -> list[Action]:
        with self._lock:
            return list(self._actions.values())


#: Larger than any sequence number: ``(t, _LAST)`` sorts after every key with start ``t``.
_LAST = float("inf")


class _StartIndex:
    """Keys ``(start, sequence)`` of some records, sorted: a time range is two binary searches, and
    a page of it, read newest first, is a slice."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []

    def add(self, key: tuple[int, int]) -> None:
        # Records arrive nearly in start order, so the insertion point is near the end and the
        # list moves few entries.
        bisect.insort(self.keys, key)

    def remove(self, key: tuple[int, int]) -> None:
        i = bisect.bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i]

    def page(self, since_ms: int | None, upto_ms: int | None, skip: int, limit: int) -> list[tuple[int, int]]:
        """Keys with ``since_ms <= start <= upto_ms``, newest first, ``skip`` of them skipped, at
        most ``limit``: O(log n + limit)."""
        low = 0 if since_ms is None else bisect.bisect_left(self.keys, (since_ms, -1))
        high = len(self.keys) if upto_ms is None else bisect.bisect_right(self.keys, (upto_ms, _LAST))
        end = high - skip
        begin = max(low, end - limit)
        return self.keys[begin:end][::-1] if end > begin else []


def _discard(indexes: dict[Any, _StartIndex], labels: set[Any], dead: set[tuple[int, int]]) -> None:
    for label in labels:
        index = indexes[label]
        index.keys = [k for k in index.keys if k not in dead]
        if not index.keys:
            del indexes[label]


def _drop(indexes: dict[Any, _StartIndex], label: Any, key: tuple[int, int]) -> None:
    index = indexes.get(label)
    if index is not None:
        index.remove(key)
        if not index.keys:
            del indexes[label]


#: A full store drops the oldest 1/100 of its capacity at once (one record at a time below 100):
#: one pass over each index per batch instead of one per record, so adding costs O(log n) amortised.
EVICTION_BATCH_DIVISOR = 100


class ActivationStore:
    """At most ``capacity`` activation records, the newest added, by id; thread-safe.

    Records are indexed by start time, per namespace and per (namespace, action), so that a page of
    ``GET .../activations`` costs O(log n + page), whatever the store holds. Beyond ``capacity`` the
    oldest records *added* are dropped, ``capacity // 100`` more than needed at a time (see
    ``EVICTION_BATCH_DIVISOR``), so the store holds between 99 % and 100 % of its capacity once full.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._sequence = itertools.count()
        self._records: OrderedDict[str, tuple[tuple[int, int], dict[str, Any]]] = OrderedDict()
        self._by_key: dict[tuple[int, int], dict[str, Any]] = {}
        self._by_namespace: dict[str, _StartIndex] = {}
        self._by_name: dict[tuple[str, str], _StartIndex] = {}

    def add(self, record: dict[str, Any]) -> None:
        key = (int(record["start"]), next(self._sequence))
        namespace, name = record["namespace"], record["name"]
        with self._lock:
            previous = self._records.pop(record["activationId"], None)
            if previous is not None:
                self._unindex(*previous)
            self._records[record["activationId"]] = (key, record)
            self._by_key[key] = record
            self._by_namespace.setdefault(namespace, _StartIndex()).add(key)
            self._by_name.setdefault((namespace, name), _StartIndex()).add(key)
            if len(self._records) > self._capacity:
                self._evict(len(self._records) - self._capacity + self._capacity // EVICTION_BATCH_DIVISOR)

    def _evict(self, count: int) -> None:
        """Drop the ``count`` oldest records added, with one pass over each index they are in."""
        dead: set[tuple[int, int]] = set()
        namespaces: set[str] = set()
        names: set[tuple[str, str]] = set()
        for _ in range(count):
            _, (key, record) = self._records.popitem(last=False)
            del self._by_key[key]
            dead.add(key)
            namespaces.add(record["namespace"])
            names.add((record["namespace"], record["name"]))
        _discard(self._by_namespace, namespaces, dead)
        _discard(self._by_name, names, dead)

    def _unindex(self, key: tuple[int, int], record: dict[str, Any]) -> None:
        del self._by_key[key]
        namespace, name = record["namespace"], record["name"]
        _drop(self._by_namespace, namespace, key)
        _drop(self._by_name, (namespace, name), key)

    def get(self, namespace: str, activation_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._records.get(activation_id)
        if entry is None or entry[1]["namespace"] != namespace:
            return None
        return entry[1]

    def list(
        self,
        namespace: str,
        name: str | None = None,
        limit: int | None = None,
        skip: int = 0,
        since_ms: int | None = None,
        upto_ms: int | None = None,
    ) -> list[dict[str, Any]]:
        """Records of ``namespace`` newest first (by start; equal starts, the last added first),
        filtered as OpenWhisk's activations list is: ``since_ms <= start <= upto_ms``."""
        with self._lock:
            index = self._by_namespace.get(namespace) if name is None else self._by_name.get((namespace, name))
            if index is None:
                return []
            keys = index.page(since_ms, upto_ms, skip, clamp_list_limit(limit))
            return [self._by_key[k] for k in keys]

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)
