"""Routing: one HTTP request in, one response out, with OpenWhisk's paths, statuses and bodies.

Transport-free (:class:`Request` and :class:`Response` are plain values), so the whole API can be
exercised without a socket; :mod:`localwhisk.server` puts it on HTTP.

Paths (``{ns}`` is a namespace or ``_`` for the caller's own):

* ``GET /``, ``GET /api/v1`` — info (no auth); ``GET /ping``; ``GET /metrics`` (Prometheus, no auth)
* ``GET /api/v1/namespaces``; ``GET /api/v1/namespaces/{ns}/limits``
* ``GET /api/v1/namespaces/{ns}/actions[?limit=&skip=]``
* ``PUT|GET|DELETE|POST /api/v1/namespaces/{ns}/actions/{name}`` (``PUT ?overwrite=``,
  ``GET ?code=``, ``POST ?blocking=&result=&timeout=``)
* ``GET /api/v1/namespaces/{ns}/activations[?name=&limit=&skip=&since=&upto=&docs=]``
* ``GET /api/v1/namespaces/{ns}/activations/{id}[/result|/logs]``
* ``GET /resources/v1/status``; ``GET /resources/v1/namespaces/{ns}/actions``;
  ``GET|PUT /resources/v1/namespaces/{ns}/actions/{name}`` (and ``/resources/v1/actions[/{name}]``
  for the caller's namespace)
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from localwhisk import __version__
from localwhisk.actions import check_entity_name
from localwhisk.engine import Platform
from localwhisk.errors import ApiError, bad_request, forbidden, not_found, unauthorized
from localwhisk.outcomes import HTTP_STATUS, brief

log = logging.getLogger(__name__)

JSON = "application/json"
#: Largest action document accepted (``PUT .../actions/{name}``), bytes: OpenWhisk's limit on an
#: action's code is 48 MB.
MAX_ACTION_BYTES = 48 * 1024 * 1024
#: Largest body of every other request (invocation payloads, resource targets), bytes: OpenWhisk's
#: payload limit, 1 MB.
MAX_PAYLOAD_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Request:
    """One HTTP request, decoded."""

    method: str
    """Upper-case HTTP method."""
    path: str
    """Path without the query string, still percent-encoded."""
    query: Mapping[str, str]
    """Query parameters (the last value of a repeated one)."""
    headers: Mapping[str, str]
    """Headers with lower-case names."""
    body: bytes = b""
    """Raw body."""


@dataclass(frozen=True)
class Response:
    """One HTTP response: JSON unless ``content_type`` says otherwise."""

    status: int
    """HTTP status."""
    body: Any
    """JSON-able value, or bytes when ``content_type`` is not JSON."""
    content_type: str = JSON
    """Media type of the body."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers."""

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, separators=(",", ":")).encode()


Handler = Callable[["Api", Request, dict[str, str]], Response]


@dataclass(frozen=True)
class Route:
    """What one method on one path runs, and what it asks of a request before its body is read."""

    handler: Handler
    """The method of :class:`Api` that answers."""
    needs_auth: bool = True
    """Whether the caller must present the platform's key."""
    max_body_bytes: int = MAX_PAYLOAD_BYTES
    """Largest body accepted, bytes; a larger one is refused (413) without being read."""


def error_response(status: int, message: str) -> Response:
    """OpenWhisk's error answer: ``{"error": message, "code": <transaction id>}``, the id also in
    ``X-Request-ID``."""
    tid = secrets.token_hex(16)
    return Response(status, {"error": message, "code": tid}, headers={"X-Request-ID": tid})


def _bool(query: Mapping[str, str], key: str, default: bool) -> bool:
    value = query.get(key)
    if value is None or value == "":
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_request(f"query parameter {key} must be true or false, got {value!r}")


def _int(query: Mapping[str, str], key: str, default: int | None, minimum: int = 0) -> int | None:
    value = query.get(key)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise bad_request(f"query parameter {key} must be an integer, got {value!r}") from None
    if number < minimum:
        raise bad_request(f"query parameter {key} must be >= {minimum}, got {number}")
    return number


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _json_body(request: Request, required: bool) -> Any:
    if not request.body.strip():
        if required:
            raise bad_request("the request needs a JSON body")
        return None
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise bad_request(f"the request body is not UTF-8 text: byte {error.start} is invalid") from None
    try:
        # NaN and Infinity are not JSON (RFC 8259); OpenWhisk's parser refuses them too.
        return json.loads(text, parse_constant=_no_constants)
    except ValueError as error:
        raise bad_request(f"the request body is not valid JSON: {error}") from None
    except RecursionError:
        raise bad_request("the request body is not valid JSON: it is nested too deeply") from None


class Api:
    """The REST API of one platform."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.api_host = ""
        subject = platform.config.subject
        self._expected = f"{subject.uuid}:{subject.key}".encode()
        self._routes: list[tuple[re.Pattern[str], dict[str, Route]]] = []
        ns = r"(?P<ns>[^/]+)"
        name = r"(?P<name>[^/]+)"
        public = {"needs_auth": False}
        self._route(r"/?", {"GET": Route(Api._info, **public)})
        self._route(r"/api/v1/?", {"GET": Route(Api._info, **public)})
        self._route(r"/ping", {"GET": Route(Api._ping, **public)})
        self._route(r"/metrics", {"GET": Route(Api._metrics, **public)})
        self._route(r"/api/v1/namespaces/?", {"GET": Route(Api._namespaces)})
        self._route(rf"/api/v1/namespaces/{ns}/limits", {"GET": Route(Api._limits)})
        self._route(rf"/api/v1/namespaces/{ns}/actions/?", {"GET": Route(Api._list_actions)})
        self._route(
            rf"/api/v1/namespaces/{ns}/actions/{name}",
            {
                "GET": Route(Api._get_action),
                "PUT": Route(Api._put_action, max_body_bytes=MAX_ACTION_BYTES),
                "DELETE": Route(Api._delete_action),
                "POST": Route(Api._invoke),
            },
        )
        packaged = {m: Route(Api._packages_unsupported) for m in ("GET", "PUT", "DELETE", "POST")}
        self._route(rf"/api/v1/namespaces/{ns}/actions/[^/]+/[^/]+", packaged)
        self._route(rf"/api/v1/namespaces/{ns}/activations/?", {"GET": Route(Api._list_activations)})
        self._route(rf"/api/v1/namespaces/{ns}/activations/(?P<id>[^/]+)", {"GET": Route(Api._get_activation)})
        self._route(
            rf"/api/v1/namespaces/{ns}/activations/(?P<id>[^/]+)/(?P<part>result|logs)",
            {"GET": Route(Api._get_activation_part)},
        )
        self._route(r"/resources/v1/status", {"GET": Route(Api._status)})
        self._route(rf"/resources/v1/namespaces/{ns}/actions/?", {"GET": Route(Api._list_resources)})
        self._route(r"/resources/v1/actions/?", {"GET": Route(Api._list_resources)})
        pool = {"GET": Route(Api._get_resources), "PUT": Route(Api._put_resources)}
        self._route(rf"/resources/v1/namespaces/{ns}/actions/{name}", pool)
        self._route(rf"/resources/v1/actions/{name}", pool)

    def _route(self, pattern: str, methods: dict[str, Route]) -> None:
        self._routes.append((re.compile(f"^{pattern}$"), methods))

    # --- dispatch --------------------------------------------------------------------------

    def admit(self, method: str, path: str, headers: Mapping[str, str]) -> int:
        """Check a request from its request line and headers alone, before its body is read: the
        route, the method, the credentials and the namespace. Returns the largest body the route
        accepts, bytes; raises :class:`ApiError` (404, 405, 401, 403) otherwise."""
        route, _ = self._resolve(method, path, headers)
        return route.max_body_bytes

    def handle(self, request: Request) -> Response:
        """Answer one request; never raises."""
        try:
            route, params = self._resolve(request.method, request.path, request.headers)
            response = route.handler(self, request, params)
        except ApiError as error:
            return error_response(error.status, error.message)
        except Exception:
            log.exception("internal error on %s %s", request.method, request.path)
            return error_response(500, "An internal error occurred; see the platform's log.")
        headers = dict(response.headers)
        headers["X-Request-ID"] = secrets.token_hex(16)
        return Response(response.status, response.body, response.content_type, headers)

    def _resolve(self, method: str, path: str, headers: Mapping[str, str]) -> tuple[Route, dict[str, str]]:
        for pattern, methods in self._routes:
            match = pattern.match(path)
            if match is None:
                continue
            if method not in methods:
                raise ApiError(405, f"method {method} is not allowed on {path}")
            route = methods[method]
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            if route.needs_auth:
                self._authenticate(headers)
                if "ns" in params:
                    params["ns"] = self._namespace(params["ns"])
                else:
                    params["ns"] = self.platform.config.subject.namespace
            if "name" in params:
                check_entity_name(params["name"])
            return route, params
        raise not_found()

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        header = headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic" or not token:
            raise unauthorized()
        try:
            supplied = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise unauthorized() from None
        if not hmac.compare_digest(supplied, self._expected):
            raise unauthorized()

    def _namespace(self, namespace: str) -> str:
        own = self.platform.config.subject.namespace
        if namespace in ("_", own):
            return own
        raise forbidden(namespace)

    # --- system ----------------------------------------------------------------------------

    def _info(self, request: Request, params: dict[str, str]) -> Response:
        limits = self.platform.config.limits
        throttle = self.platform.config.throttle
        return Response(
            200,
            {
                "description": "localwhisk: an OpenWhisk-compatible serverless platform on one machine",
                "api_paths": ["/api/v1"],
                "build": __version__,
                "limits": {
                    "actions_per_minute": throttle.invocations_per_minute,
                    "triggers_per_minute": 0,
                    "concurrent_actions": throttle.concurrent_invocations,
                    "min_action_duration": limits.timeout_ms.minimum,
                    "max_action_duration": limits.timeout_ms.maximum,
                    "min_action_memory": limits.memory_mb.minimum * 1024 * 1024,
                    "max_action_memory": limits.memory_mb.maximum * 1024 * 1024,
                    "min_action_logs": limits.logs_mb.minimum * 1024 * 1024,
                    "max_action_logs": limits.logs_mb.maximum * 1024 * 1024,
                    "sequence_length": 0,
                },
                "runtimes": {"python": [{"kind": "python:3", "default": True, "deprecated": False}]},
            },
        )

    def _ping(self, request: Request, params: dict[str, str]) -> Response:
        return Response(200, b"pong", "text/plain")

    def _metrics(self, request: Request, params: dict[str, str]) -> Response:
        return Response(200, self.platform.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")

    def _namespaces(self, request: Request, params: dict[str, str]) -> Response:
        return Response(200, [params["ns"]])

    def _limits(self, request: Request, params: dict[str, str]) -> Response:
        config = self.platform.config
        return Response(
            200,
            {
                "invocationsPerMinute": config.throttle.invocations_per_minute,
                "concurrentInvocations": config.throttle.concurrent_invocations,
                "firesPerMinute": 0,
                "minActionMemory": config.limits.memory_mb.minimum,
                "maxActionMemory": config.limits.memory_mb.maximum,
                "minActionTimeout": config.limits.timeout_ms.minimum,
                "maxActionTimeout": config.limits.timeout_ms.maximum,
                "minActionLogs": config.limits.logs_mb.minimum,
                "maxActionLogs": config.limits.logs_mb.maximum,
                "minActionConcurrency": config.limits.concurrency.minimum,
                "maxActionConcurrency": config.limits.concurrency.maximum,
            },
        )

    # --- actions ---------------------------------------------------------------------------

    def _list_actions(self, request: Request, params: dict[str, str]) -> Response:
        limit = _int(request.query, "limit", None)
        skip = _int(request.query, "skip", 0) or 0
        actions = self.platform.actions.list(params["ns"], limit, skip)
        return Response(200, [a.to_json(include_code=False) for a in actions])

    def _get_action(self, request: Request, params: dict[str, str]) -> Response:
        action = self.platform.get_action(params["ns"], params["name"])
        return Response(200, action.to_json(include_code=_bool(request.query, "code", True)))

    def _put_action(self, request: Request, params: dict[str, str]) -> Response:
        overwrite = _bool(request.query, "overwrite", False)
        body = _json_body(request, required=True)
        action = self.platform.put_action(params["ns"], params["name"], body, overwrite)
        return Response(200, action.to_json())

    def _delete_action(self, request: Request, params: dict[str, str]) -> Response:
        action = self.platform.delete_action(params["ns"], params["name"])
        return Response(200, action.to_json(include_code=False))

    def _packages_unsupported(self, request: Request, params: dict[str, str]) -> Response:
        raise not_found("packages are not supported by localwhisk; deploy actions in the default package")

    def _invoke(self, request: Request, params: dict[str, str]) -> Response:
        blocking = _bool(request.query, "blocking", False)
        result_only = _bool(request.query, "result", False)
        max_wait_ms = int(self.platform.config.max_blocking_wait_s * 1000)
        timeout_ms = _int(request.query, "timeout", max_wait_ms, minimum=1)
        assert timeout_ms is not None
        if timeout_ms > max_wait_ms:
            raise bad_request(f"query parameter timeout must be at most {max_wait_ms} ms, got {timeout_ms}")
        payload = _json_body(request, required=False)
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise bad_request(f"the invocation payload must be a JSON object, got {type(payload).__name__}")
        job = self.platform.invoke(params["ns"], params["name"], payload, api_host=self.api_host)
        headers = {"x-openwhisk-activation-id": job.activation_id}
        accepted = Response(202, {"activationId": job.activation_id}, headers=headers)
        if not blocking or not job.done.wait(timeout_ms / 1000):
            return accepted
        record = job.record
        assert record is not None
        status = HTTP_STATUS[record["statusCode"]]
        return Response(status, record["response"]["result"] if result_only else record, headers=headers)

    # --- activations -----------------------------------------------------------------------

    def _list_activations(self, request: Request, params: dict[str, str]) -> Response:
        q = request.query
        name = q.get("name") or None
        if name is not None:
            name = name.rsplit("/", 1)[-1]
        records = self.platform.activations.list(
            params["ns"],
            name=name,
            limit=_int(q, "limit", None),
            skip=_int(q, "skip", 0) or 0,
            since_ms=_int(q, "since", None),
            upto_ms=_int(q, "upto", None),
        )
        docs = _bool(q, "docs", False)
        return Response(200, records if docs else [brief(r) for r in records])

    def _activation(self, params: dict[str, str]) -> dict[str, Any]:
        record = self.platform.activations.get(params["ns"], params["id"])
        if record is None:
            raise not_found()
        return record

    def _get_activation(self, request: Request, params: dict[str, str]) -> Response:
        return Response(200, self._activation(params))

    def _get_activation_part(self, request: Request, params: dict[str, str]) -> Response:
        record = self._activation(params)
        if params["part"] == "logs":
            return Response(200, {"logs": record["logs"]})
        return Response(200, record["response"])

    # --- resources -------------------------------------------------------------------------

    def _status(self, request: Request, params: dict[str, str]) -> Response:
        return Response(200, self.platform.status())

    def _list_resources(self, request: Request, params: dict[str, str]) -> Response:
        return Response(200, [v.to_json() for v in self.platform.all_resources(params["ns"])])

    def _get_resources(self, request: Request, params: dict[str, str]) -> Response:
        return Response(200, self.platform.resources(params["ns"], params["name"]).to_json())

    def _put_resources(self, request: Request, params: dict[str, str]) -> Response:
        body = _json_body(request, required=True)
        if not isinstance(body, dict):
            raise bad_request("the body must be a JSON object like {\"containers\": k, \"cpuShares\": s}")
        unknown = sorted(set(body) - {"containers", "cpuShares"})
        if unknown:
            raise bad_request(f"unknown fields {unknown}; allowed: containers, cpuShares")
        view = self.platform.set_resources(params["ns"], params["name"], body.get("containers"), body.get("cpuShares"))
        return Response(200, view.to_json())
