"""A fake OpenWhisk controller with the shapes of ``apiv1swagger.json`` (plus localwhisk's resource API).

Actions are stored as sent; an invocation completes at once with a record whose timing follows a
per-action model (:class:`ActionModel`): the first invocation after a (re)deploy or an
:meth:`FakeOpenWhisk.evict` is a cold start (``initTime`` annotation, and ``duration`` includes the
init, as OpenWhisk's ContainerProxy reports it). Times come from ``clock_ms`` so tests control them.
A payload ``{"fail": true}`` makes the action fail (502 with the record, statusCode 1).

The resource API (``/resources/v1/...``) mirrors the local platform's: per-action target
containers and CPU shares, and ``current`` counts, ``queued`` and ``cpuSeconds`` that tests set.
"""

from __future__ import annotations

import base64
import itertools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from fakes.server import Call, FakeServer, Reply, json_reply

AUTH = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:fake-key-not-a-secret"
NAMESPACE = "guest"


@dataclass
class ActionModel:
    """How the fake times one action's activations, ms."""

    duration_ms: int = 20
    init_ms: int = 300
    wait_ms: int = 3


@dataclass
class Pool:
    """The resource view of one action (localwhisk's ``GET /resources/v1/...`` shape)."""

    containers: int = -1
    cpu_shares: int = 256
    shares_set: bool = False
    memory_mb: int = 256
    queued: int = 0
    current: dict[str, int] = field(default_factory=lambda: {"starting": 0, "idle": 0, "paused": 0, "busy": 0, "stopping": 0, "total": 0})
    cpu_seconds: float = 0.0

    def to_json(self, name: str) -> dict[str, Any]:
        return {
            "namespace": NAMESPACE, "action": name, "containers": self.containers, "cpuShares": self.cpu_shares,
            "cpuSharesSource": "set" if self.shares_set else "default", "memoryMB": self.memory_mb,
            "queued": self.queued, "current": dict(self.current), "cpuSeconds": self.cpu_seconds,
            "lastInitError": "", "instances": [],
        }


def _error(status: int, message: str) -> Reply:
    return json_reply(status, {"error": message, "code": "4f0b9c3e2d1a8b7c6d5e4f3a2b1c0d9e"})


class FakeOpenWhisk(FakeServer):
    """OpenWhisk's REST API, in memory."""

    def __init__(self, clock_ms: Callable[[], int] | None = None, auth: str = AUTH, user_memory_mb: int = 2048) -> None:
        super().__init__()
        counter = itertools.count(1_700_000_000_000, 7)
        self.clock_ms = clock_ms or (lambda: next(counter))
        self.auth_header = "Basic " + base64.b64encode(auth.encode()).decode()
        self.actions: dict[str, dict[str, Any]] = {}
        self.models: dict[str, ActionModel] = {}
        self.pools: dict[str, Pool] = {}
        self.activations: list[dict[str, Any]] = []
        self.user_memory_mb = user_memory_mb
        self._warm: set[str] = set()
        self._ids = itertools.count(1)
        self._state = threading.Lock()

    # --- test controls --------------------------------------------------------------------------

    def evict(self, name: str) -> None:
        """The next invocation of ``name`` is a cold start."""
        self._warm.discard(name)

    def add_activation(self, record: dict[str, Any]) -> None:
        with self._state:
            self.activations.append(record)

    # --- routing --------------------------------------------------------------------------------

    def route(self, call: Call) -> Reply:
        path = call.path
        needs_auth = path.startswith(("/api/v1/namespaces", "/resources/v1"))
        if needs_auth and call.headers.get("authorization") != self.auth_header:
            return _error(401, "The supplied authentication is invalid")
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/(actions|activations)(?:/([^/]+))?/?", path)
        if m:
            namespace, kind, name = unquote(m.group(1)), m.group(2), m.group(3) and unquote(m.group(3))
            if namespace not in ("_", NAMESPACE):
                return _error(403, "The supplied authentication is not authorized to access 'other'.")
            if kind == "actions":
                return self._actions(call, name)
            return self._activations(call, name)
        m = re.fullmatch(r"/resources/v1/namespaces/([^/]+)/actions(?:/([^/]+))?/?", path)
        if m:
            return self._resources(call, m.group(2) and unquote(m.group(2)))
        if path == "/resources/v1/status":
            reserved = sum(p.current["total"] * p.memory_mb for p in self.pools.values())
            return json_reply(200, {"instance": "fake", "userMemoryMB": self.user_memory_mb, "reservedMemoryMB": reserved,
                                    "containers": sum(p.current["total"] for p in self.pools.values()), "actions": len(self.pools)})
        return _error(404, "The requested resource does not exist.")

    def _actions(self, call: Call, name: str | None) -> Reply:
        if name is None:
            if call.method != "GET":
                return _error(405, "method not allowed")
            return json_reply(200, [self._meta(a) for a in self.actions.values()])
        if call.method == "PUT":
            overwrite = call.query.get("overwrite", "false") == "true"
            if name in self.actions and not overwrite:
                return _error(409, "resource already exists")
            body = call.body if isinstance(call.body, dict) else None
            if body is None:
                return _error(400, "The request content was malformed:\nexpected a JSON object")
            previous = self.actions.get(name)
            limits = {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
            if previous:
                limits.update(previous["limits"])
            limits.update(body.get("limits") or {})
            exec_doc = body.get("exec") or (previous or {}).get("exec")
            if exec_doc is None:
                return _error(400, "exec undefined")
            action = {
                "namespace": NAMESPACE, "name": name,
                "version": f"0.0.{int(previous['version'].split('.')[-1]) + 1}" if previous else "0.0.1",
                "publish": False, "exec": {**exec_doc, "binary": False},
                "annotations": body.get("annotations", (previous or {}).get("annotations", [])),
                "parameters": body.get("parameters", (previous or {}).get("parameters", [])),
                "limits": limits, "updated": self.clock_ms(),
            }
            self.actions[name] = action
            self.models.setdefault(name, ActionModel())
            self.pools.setdefault(name, Pool(memory_mb=limits["memory"], cpu_shares=max(1024 // max(self.user_memory_mb // limits["memory"], 1), 2)))
            self._warm.discard(name)  # a new revision starts cold, as in OpenWhisk
            return json_reply(200, action)
        action = self.actions.get(name)
        if action is None:
            return _error(404, "The requested resource does not exist.")
        if call.method == "GET":
            if call.query.get("code", "true") == "false":
                return json_reply(200, {**action, "exec": {k: v for k, v in action["exec"].items() if k != "code"}})
            return json_reply(200, action)
        if call.method == "DELETE":
            del self.actions[name]
            self.pools.pop(name, None)
            return json_reply(200, self._meta(action))
        if call.method == "POST":
            return self._invoke(call, name, action)
        return _error(405, "method not allowed")

    @staticmethod
    def _meta(action: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in action.items() if k != "parameters"}
        meta["exec"] = {"kind": action["exec"]["kind"], "binary": False}
        return meta

    def _invoke(self, call: Call, name: str, action: dict[str, Any]) -> Reply:
        payload = call.body if isinstance(call.body, dict) else {}
        model = self.models[name]
        with self._state:
            activation_id = f"{next(self._ids):032x}"
            cold = name not in self._warm
            self._warm.add(name)
            arrival = self.clock_ms()
            start = arrival + model.wait_ms
            duration = model.duration_ms + (model.init_ms if cold else 0)
            failed = bool(payload.get("fail"))
            annotations = [
                {"key": "path", "value": f"{NAMESPACE}/{name}"},
                {"key": "waitTime", "value": model.wait_ms},
                {"key": "kind", "value": action["exec"]["kind"]},
                {"key": "timeout", "value": False},
                {"key": "limits", "value": action["limits"]},
            ]
            if cold:
                annotations.append({"key": "initTime", "value": model.init_ms})
            result = {"error": "the action failed"} if failed else {"ok": True, "echo": payload}
            record = {
                "namespace": NAMESPACE, "name": name, "version": action["version"], "publish": False,
                "subject": NAMESPACE, "activationId": activation_id, "start": start, "end": start + duration,
                "duration": duration, "statusCode": 1 if failed else 0,
                "response": {"status": "application error" if failed else "success", "statusCode": 1 if failed else 0,
                             "success": not failed, "result": result, "size": 20},
                "logs": [], "annotations": annotations,
            }
            self.activations.append(record)
        headers = {"x-openwhisk-activation-id": activation_id}
        if call.query.get("blocking") != "true":
            return json_reply(202, {"activationId": activation_id}, headers)
        if call.query.get("result") == "true":
            return json_reply(502 if failed else 200, result, headers)
        return json_reply(502 if failed else 200, record, headers)

    def _activations(self, call: Call, activation_id: str | None) -> Reply:
        if call.method != "GET":
            return _error(405, "method not allowed")
        with self._state:
            records = list(self.activations)
        if activation_id is not None:
            found = next((r for r in records if r["activationId"] == activation_id), None)
            return json_reply(200, found) if found else _error(404, "The requested resource does not exist.")
        q = call.query
        name = q.get("name")
        since, upto = int(q.get("since", 0)), int(q.get("upto", 1 << 62))
        limit = int(q.get("limit", 30)) or 200
        skip = int(q.get("skip", 0))
        chosen = [r for r in records if (name is None or r["name"] == name) and since <= r["start"] <= upto]
        chosen.sort(key=lambda r: r["start"], reverse=True)
        page = chosen[skip : skip + limit]
        if q.get("docs") != "true":
            page = [{k: v for k, v in r.items() if k not in ("response", "logs", "subject")} for r in page]
        return json_reply(200, page)

    def _resources(self, call: Call, name: str | None) -> Reply:
        if name is None:
            return json_reply(200, [p.to_json(n) for n, p in sorted(self.pools.items())])
        pool = self.pools.get(name)
        if pool is None:
            return _error(404, "The requested resource does not exist.")
        if call.method == "PUT":
            body = call.body if isinstance(call.body, dict) else {}
            containers, shares = body.get("containers"), body.get("cpuShares")
            if containers is not None and containers < -1:
                return _error(400, f"containers must be -1 (on demand), 0 (scale to zero) or k >= 1, got {containers}")
            if shares is not None and shares != -1 and not 2 <= shares <= 262144:
                return _error(400, f"cpuShares must be in [2, 262144] (or -1 to keep), got {shares}")
            if containers is not None:
                pool.containers = containers
            if shares is not None and shares != -1:
                pool.cpu_shares, pool.shares_set = shares, True
        return json_reply(200, pool.to_json(name))
