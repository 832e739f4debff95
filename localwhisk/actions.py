"""Action documents: what ``PUT .../actions/{name}`` accepts, validated against the limit ranges.

An action is a value (:class:`Action`); an update builds a new one with a higher ``revision`` so that
containers started for an old revision can be told apart and retired.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from localwhisk.config import ActionLimitRanges, LimitRange
from localwhisk.errors import bad_request

# OpenWhisk's entity-name rule: word characters, inner spaces, @ . -; at most 256 characters.
_ENTITY_NAME = re.compile(r"^(?:\w|\w[\w@ .-]*[\w@.-])$")
MAX_NAME_LENGTH = 256
#: Kinds accepted: every Python kind runs on the platform's own interpreter.
PYTHON_KIND_PREFIX = "python:"


def check_entity_name(name: str, what: str = "action") -> None:
    """Reject names OpenWhisk would reject (HTTP 400)."""
    if len(name) > MAX_NAME_LENGTH or not _ENTITY_NAME.match(name):
        raise bad_request(f"{what} name {name!r} is not a valid OpenWhisk entity name")


@dataclass(frozen=True)
class ActionLimits:
    """The limits of one action, as OpenWhisk's ``ActionLimits``."""

    timeout_ms: int
    """Longest run of one activation, ms; past it the container is killed (developer error)."""
    memory_mb: int
    """Memory of one container, MB: the cgroup limit and the reservation against user memory."""
    logs_mb: int
    """Log volume one activation may keep, MB; longer logs are truncated."""
    concurrency: int
    """Activations one container runs at once (always 1 here)."""

    def to_json(self) -> dict[str, int]:
        return {"timeout": self.timeout_ms, "memory": self.memory_mb, "logs": self.logs_mb, "concurrency": self.concurrency}

    @classmethod
    def defaults(cls, ranges: ActionLimitRanges) -> ActionLimits:
        return cls(
            timeout_ms=ranges.timeout_ms.default,
            memory_mb=ranges.memory_mb.default,
            logs_mb=ranges.logs_mb.default,
            concurrency=ranges.concurrency.default,
        )


@dataclass(frozen=True)
class Action:
    """One deployed action."""

    namespace: str
    """Namespace that owns it."""
    name: str
    """Its name within the namespace."""
    version: str
    """Semantic version, bumped in the patch part by every update (OpenWhisk's rule)."""
    kind: str
    """Runtime kind as given (``python:3``, ``python:3.11``, ``python:default``)."""
    code: str
    """Source text of the action (``exec.code``)."""
    entry: str
    """Function called with the parameters (``exec.main``), ``main`` by default."""
    parameters: tuple[tuple[str, Any], ...]
    """Default parameters, overridden by an invocation's payload."""
    annotations: tuple[tuple[str, Any], ...]
    """Annotations as given by the user, plus ``exec``."""
    limits: ActionLimits
    """Validated limits."""
    updated_ms: int
    """Last change, ms since the epoch."""
    revision: int
    """Counts updates from 1; containers remember the revision they were started for."""

    @property
    def path(self) -> str:
        """``namespace/name``: OpenWhisk's ``path`` annotation of activations."""
        return f"{self.namespace}/{self.name}"

    def to_json(self, include_code: bool = True) -> dict[str, Any]:
        exec_doc: dict[str, Any] = {"kind": self.kind, "binary": False}
        if include_code:
            exec_doc["code"] = self.code
        if self.entry != "main":
            exec_doc["main"] = self.entry
        return {
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
            "publish": False,
            "exec": exec_doc,
            "annotations": [{"key": k, "value": v} for k, v in self.annotations],
            "parameters": [{"key": k, "value": v} for k, v in self.parameters],
            "limits": self.limits.to_json(),
            "updated": self.updated_ms,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], revision: int = 1) -> Action:
        """Rebuild a saved action (the inverse of ``to_json``); trusts the document."""
        limits = doc["limits"]
        return cls(
            namespace=doc["namespace"],
            name=doc["name"],
            version=doc["version"],
            kind=doc["exec"]["kind"],
            code=doc["exec"]["code"],
            entry=doc["exec"].get("main", "main"),
            parameters=tuple((kv["key"], kv["value"]) for kv in doc.get("parameters", [])),
            annotations=tuple((kv["key"], kv["value"]) for kv in doc.get("annotations", [])),
            limits=ActionLimits(limits["timeout"], limits["memory"], limits["logs"], limits["concurrency"]),
            updated_ms=int(doc.get("updated", 0)),
            revision=revision,
        )


def _key_values(body: Mapping[str, Any], field_name: str) -> tuple[tuple[str, Any], ...] | None:
    value = body.get(field_name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad_request(f"{field_name} must be a list of {{key, value}} objects, got {type(value).__name__}")
    pairs = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise bad_request(f"{field_name}[{i}] must be an object with a string 'key', got {item!r}")
        pairs.append((item["key"], item.get("value")))
    return tuple(pairs)


def _check_limit(name: str, value: Any, allowed: LimitRange) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"limits.{name} must be an integer, got {value!r}")
    unit = f" {allowed.unit}" if allowed.unit else ""
    if value < allowed.minimum:
        raise bad_request(f"{name} {value}{unit} below allowed threshold of {allowed.minimum}{unit}")
    if value > allowed.maximum:
        raise bad_request(f"{name} {value}{unit} exceeds allowed threshold of {allowed.maximum}{unit}")
    return value


def parse_limits(raw: Any, ranges: ActionLimitRanges, base: ActionLimits) -> ActionLimits:
    """Validate ``limits`` of a PUT body; fields not given keep ``base``'s values."""
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise bad_request(f"limits must be an object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"timeout", "memory", "logs", "concurrency", "instances"})
    if unknown:
        raise bad_request(f"limits has unknown fields {unknown}; allowed: timeout, memory, logs, concurrency")
    if "instances" in raw:
        raise bad_request("limits.instances is not supported by localwhisk; use the resource API to size pools")
    limits = base
    if "timeout" in raw:
        limits = replace(limits, timeout_ms=_check_limit("timeout", raw["timeout"], ranges.timeout_ms))
    if "memory" in raw:
        limits = replace(limits, memory_mb=_check_limit("memory", raw["memory"], ranges.memory_mb))
    if "logs" in raw:
        limits = replace(limits, logs_mb=_check_limit("logs", raw["logs"], ranges.logs_mb))
    if "concurrency" in raw:
        limits = replace(limits, concurrency=_check_limit("concurrency", raw["concurrency"], ranges.concurrency))
    return limits


def _bump_patch(version: str) -> str:
    parts = version.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return f"{parts[0]}.{parts[1]}.{int(parts[2]) + 1}"
    return "0.0.1"


def parse_put(
    body: Any,
    namespace: str,
    name: str,
    ranges: ActionLimitRanges,
    now_ms: int,
    existing: Action | None,
) -> Action:
    """Build the action a PUT asks for: a new one, or ``existing`` updated (fields absent keep theirs)."""
    check_entity_name(name)
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object (an OpenWhisk ActionPut)")
    exec_doc = body.get("exec")
    if exec_doc is None and existing is None:
        raise bad_request("exec is required to create an action")
    kind, code, entry = (existing.kind, existing.code, existing.entry) if existing else ("", "", "main")
    if exec_doc is not None:
        if not isinstance(exec_doc, dict):
            raise bad_request(f"exec must be an object, got {type(exec_doc).__name__}")
        kind = exec_doc.get("kind")
        if not isinstance(kind, str) or not kind.startswith(PYTHON_KIND_PREFIX):
            raise bad_request(f"kind {kind!r} is not supported by localwhisk; use a python kind such as 'python:3'")
        if exec_doc.get("binary"):
            raise bad_request("binary (zip) actions are not supported by localwhisk; send the source as exec.code")
        code = exec_doc.get("code")
        if not isinstance(code, str) or not code.strip():
            raise bad_request("exec.code must be a non-empty string of Python source")
        entry = exec_doc.get("main", "main")
        if not isinstance(entry, str) or not entry.isidentifier():
            raise bad_request(f"exec.main must be a Python identifier, got {entry!r}")
    base_limits = existing.limits if existing else ActionLimits.defaults(ranges)
    limits = parse_limits(body.get("limits"), ranges, base_limits)
    parameters = _key_values(body, "parameters")
    annotations = _key_values(body, "annotations")
    if parameters is None:
        parameters = existing.parameters if existing else ()
    if annotations is None:
        annotations = existing.annotations if existing else ()
    annotations = tuple((k, v) for k, v in annotations if k != "exec") + (("exec", "python"),)
    return Action(
        namespace=namespace,
        name=name,
        version=_bump_patch(existing.version) if existing else "0.0.1",
        kind=kind,
        code=code,
        entry=entry,
        parameters=parameters,
        annotations=annotations,
        limits=limits,
        updated_ms=now_ms,
        revision=existing.revision + 1 if existing else 1,
    )
