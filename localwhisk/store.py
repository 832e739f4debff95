"""Where actions and activation records live.

Actions are saved as one JSON file each under ``<state_dir>/actions/<namespace>/`` (written atomically)
so that a restarted platform still has them. Activation records are kept in memory only, the newest
``capacity`` of them: they are the platform's answer to ``GET .../activations``, not an archive.
"""

from __future__ import annotations

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


class ActivationStore:
    """The newest ``capacity`` activation records, by id; thread-safe."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._records: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records[record["activationId"]] = record
            while len(self._records) > self._capacity:
                self._records.popitem(last=False)

    def get(self, namespace: str, activation_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._records.get(activation_id)
        if record is None or record["namespace"] != namespace:
            return None
        return record

    def list(
        self,
        namespace: str,
        name: str | None = None,
        limit: int | None = None,
        skip: int = 0,
        since_ms: int | None = None,
        upto_ms: int | None = None,
    ) -> list[dict[str, Any]]:
        """Records of ``namespace`` newest first, filtered as OpenWhisk's activations list is."""
        with self._lock:
            records = list(self._records.values())
        # Keep the arrival order as the tie-break: records with equal start times list newest first.
        selected = [
            (i, r)
            for i, r in enumerate(records)
            if r["namespace"] == namespace
            and (name is None or r["name"] == name)
            and (since_ms is None or r["start"] >= since_ms)
            and (upto_ms is None or r["start"] <= upto_ms)
        ]
        selected.sort(key=lambda pair: (pair[1]["start"], pair[0]), reverse=True)
        return [r for _, r in selected[skip : skip + clamp_list_limit(limit)]]

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)
