"""A small client for the OpenWhisk REST API (Swagger spec ``apiv1swagger.json``, base path ``/api/v1``).

What it covers: actions (list, get, create/update, delete, invoke blocking or not) and activations
(list, get), plus :meth:`OpenWhiskClient.request` for any other path on the same host (the local
platform's resource API lives beside ``/api/v1``).

Failure handling, in one place so every caller gets the same behaviour:

* every HTTP failure becomes a typed :class:`OpenWhiskError` subclass (:class:`Unauthorized`,
  :class:`NotFound`, :class:`Throttled`, :class:`ApplicationError`, :class:`ServerError`,
  :class:`Timeout`, :class:`Unavailable`, :class:`RequestRejected`, :class:`MalformedResponse`)
  that names the method, the URL and what the server said;
* 429, 503 and connection failures are retried with capped exponential backoff and jitter
  (:class:`RetryPolicy`); no other 4xx is ever retried (the request itself is wrong);
* an invocation (POST) is retried only when it surely did not reach the platform or was refused
  before running (429, 503, a refused connection); a read time-out or a dropped connection after
  sending is not retried, because the action may have run and a retry would run it twice;
* the delay goes through the injected ``sleep`` and the jitter comes from the injected
  ``numpy.random.Generator``, so tests run without waiting and see the exact delays;
* every error carries its :class:`controller.clients.errors.ObservationKind` (``kind`` is its metric
  label), decided here, where the answer was seen;
* inside a tick's deadline (:func:`controller.clients.errors.deadline_scope`) every time-out is
  shortened to what is left of it, no retry waits past it, and a request that would start after it
  fails at once with :class:`Timeout`;
* a user and password in ``api_host`` are dropped: the key travels as ``auth`` (a URL's credentials
  would be overridden by it anyway), and URLs in messages never carry them.

``requests.Session`` is used from several threads by the replayer; its connection pool is sized
with ``pool_size`` so that concurrent invocations do not open and drop connections.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import requests
import urllib3
from requests.adapters import HTTPAdapter

from controller.clients.errors import (
    ObservationKind,
    bounded_timeout,
    kind_of_status,
    remaining_s,
    transport_cause,
)

#: The namespace OpenWhisk resolves to the caller's own.
OWN_NAMESPACE = "_"


# --- errors -------------------------------------------------------------------------------------


class OpenWhiskError(Exception):
    """A request to the OpenWhisk API failed; the message names the request and the server's answer."""

    def __init__(self, method: str, url: str, status: int | None, detail: str, body: Any = None) -> None:
        self.method = method
        """HTTP method of the failed request."""
        self.url = url
        """URL of the failed request."""
        self.status = status
        """HTTP status, or None when no response arrived."""
        self.detail = detail
        """What went wrong: the server's ``error`` field, or the transport failure."""
        self.body = body
        """Decoded response body, when there was one (for 502: the activation record)."""
        where = f"{method} {url}"
        super().__init__(f"{where}: HTTP {status}: {detail}" if status is not None else f"{where}: {detail}")

    @property
    def observation_kind(self) -> ObservationKind:
        """Why the request failed, as a bounded kind (see :mod:`controller.clients.errors`)."""
        return kind_of_status(self.status) if self.status is not None else ObservationKind.UNREACHABLE

    @property
    def kind(self) -> str:
        """The metric label of :attr:`observation_kind`."""
        return self.observation_kind.value


class Unauthorized(OpenWhiskError):
    """401 or 403: the key is wrong, or the namespace is not the caller's."""


class NotFound(OpenWhiskError):
    """404: no such action, activation or route."""


class Throttled(OpenWhiskError):
    """429: over the namespace's per-minute or concurrent-invocation limit (after the retries)."""


class ApplicationError(OpenWhiskError):
    """502 on a blocking invocation: the action ran and failed; ``activation`` is its record."""

    @property
    def activation(self) -> dict[str, Any] | None:
        return self.body if isinstance(self.body, dict) else None


class ServerError(OpenWhiskError):
    """500 or another 5xx that is not 502/503: the platform failed."""


class Timeout(OpenWhiskError):
    """No answer within the read time-out (or 408 from the platform), or the tick's deadline passed."""

    @property
    def observation_kind(self) -> ObservationKind:
        return ObservationKind.TIMEOUT


class Unavailable(OpenWhiskError):
    """503 or no connection (after the retries): the platform could not be reached."""


class RequestRejected(OpenWhiskError):
    """Another 4xx (400, 409, 413, ...): the request is invalid; never retried."""


class MalformedResponse(OpenWhiskError):
    """A 2xx whose body is not the JSON the API promises."""

    @property
    def observation_kind(self) -> ObservationKind:
        return ObservationKind.MALFORMED


class WindowTooLarge(OpenWhiskError):
    """An activation window holds more activations than one read may page through: a partial
    window is never taken for a complete one (shorten the look-back, or raise the bound)."""

    @property
    def observation_kind(self) -> ObservationKind:
        return ObservationKind.REJECTED


_BY_STATUS: dict[int, type[OpenWhiskError]] = {
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    408: Timeout,
    429: Throttled,
    502: ApplicationError,
    503: Unavailable,
}


def error_for_status(status: int) -> type[OpenWhiskError]:
    """The error class of a failed HTTP status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else RequestRejected


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before repeating a failed request."""

    max_attempts: int = 4
    """Tries in all, the first included. 4 rides out a few seconds of throttling or a controller
    restart without hiding a platform that stays down."""
    base_delay_s: float = 0.25
    """Delay before the second try, s; doubles for every further try."""
    max_delay_s: float = 8.0
    """Cap on one delay, s: 8 s keeps a retried call within one 10-s control tick."""
    jitter: float = 0.5
    """Fraction of each delay drawn at random (0 = none, 1 = "full jitter"), so that many clients
    throttled together do not come back together."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if not (0.0 <= self.base_delay_s <= self.max_delay_s):
            raise ValueError(
                f"RetryPolicy needs 0 <= base_delay_s <= max_delay_s, got {self.base_delay_s}, {self.max_delay_s}"
            )
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"RetryPolicy.jitter must be in [0, 1], got {self.jitter}")

    def delay_s(self, retry: int, rng: np.random.Generator) -> float:
        """Delay before retry number ``retry`` (1 = the first repeat), s: capped exponential with jitter."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** (retry - 1))
        return ceiling * (1.0 - self.jitter * float(rng.random()))


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class Invocation:
    """The answer to an invocation."""

    activation_id: str
    """Activation id the platform assigned."""
    status: int
    """HTTP status: 200 (blocking, done), 202 (accepted; blocking ones that outlived the wait too)."""
    record: dict[str, Any] | None = field(default=None, repr=False)
    """The activation record of a blocking invocation that finished, else None."""


def annotation(record: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The value of an activation or action annotation (``[{key, value}]``), or ``default``."""
    for item in record.get("annotations") or ():
        if isinstance(item, Mapping) and item.get("key") == key:
            return item.get("value")
    return default


# --- the client ---------------------------------------------------------------------------------


class OpenWhiskClient:
    """OpenWhisk REST API client for one API host and one set of credentials."""

    def __init__(
        self,
        api_host: str,
        auth: str,
        *,
        namespace: str = OWN_NAMESPACE,
        connect_timeout_s: float = 3.05,
        read_timeout_s: float = 70.0,
        retry: RetryPolicy = RetryPolicy(),
        rng: np.random.Generator | None = None,
        sleep: Callable[[float], None] = time.sleep,
        pool_size: int = 16,
        verify_tls: bool = True,
        session: requests.Session | None = None,
    ) -> None:
        """``auth`` is ``uuid:key``; ``read_timeout_s`` defaults above OpenWhisk's 60-s blocking wait so
        that a blocking call ends with the platform's 202, not with our time-out."""
        uuid, sep, key = auth.partition(":")
        if not sep or not uuid or not key:
            raise ValueError("auth must be 'uuid:key' (the two parts of an OpenWhisk API key)")
        base = api_host.rstrip("/")
        if "://" not in base:
            base = "https://" + base
        self.base_url = _without_credentials(base)
        """Scheme, host and port of the API, without a trailing slash, a user or a password."""
        self.namespace = namespace
        """Namespace of every call (``_``: the key's own)."""
        self.timeout = (connect_timeout_s, read_timeout_s)
        """(connect, read) time-outs, s."""
        self.retry = retry
        """Retry policy of 429/503/connection failures."""
        self._rng = rng if rng is not None else np.random.default_rng(0)
        self._sleep = sleep
        self._session = session if session is not None else requests.Session()
        self._session.auth = (uuid, key)
        self._session.verify = verify_tls
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def __repr__(self) -> str:  # the key never appears in logs
        return f"OpenWhiskClient({self.base_url!r}, namespace={self.namespace!r}, auth=***)"

    def close(self) -> None:
        self._session.close()

    # --- transport ------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool | None = None,
        read_timeout_s: float | None = None,
    ) -> tuple[int, Any]:
        """One call with retries; returns (status, decoded JSON body) of a 2xx, else raises.

        ``path`` is absolute on the host (``/api/v1/...``). ``idempotent`` (default: every method but
        POST) allows retrying after a read time-out or a dropped connection.
        """
        if idempotent is None:
            idempotent = method.upper() != "POST"
        url = self.base_url + path
        timeout = self.timeout if read_timeout_s is None else (self.timeout[0], read_timeout_s)
        attempt = 0
        while True:
            attempt += 1
            if remaining_s() <= 0:
                raise Timeout(method, url, None, "the tick's deadline passed before the request was sent")
            try:
                return self._once(method, url, params, body, (bounded_timeout(timeout[0]), bounded_timeout(timeout[1])))
            except OpenWhiskError as error:
                if attempt >= self.retry.max_attempts or not _retryable(error, idempotent):
                    raise
                delay = self.retry.delay_s(attempt, self._rng)
                if delay >= remaining_s():
                    raise  # the retry could not end before the tick's deadline
                self._sleep(delay)

    def _once(self, method: str, url: str, params: Any, body: Any, timeout: tuple[float, float]) -> tuple[int, Any]:
        try:
            response = self._session.request(
                method, url, params=_query(params), json=body, timeout=timeout, allow_redirects=False
            )
        except requests.exceptions.ConnectTimeout as error:
            raise _NotSent(method, url, None, f"no connection within {timeout[0]:.3g} s") from error
        except requests.exceptions.ReadTimeout as error:
            raise Timeout(method, url, None, f"no answer within {timeout[1]:.3g} s") from error
        except requests.exceptions.ConnectionError as error:
            if _never_connected(error):
                raise _NotSent(method, url, None, f"cannot connect: {transport_cause(error)}") from error
            if error.args and isinstance(error.args[0], urllib3.exceptions.ReadTimeoutError):
                # requests reports a time-out while reading the body as a connection error.
                raise Timeout(method, url, None, f"the answer did not arrive within {timeout[1]:.3g} s") from error
            raise Unavailable(method, url, None, f"connection failed: {transport_cause(error)}") from error
        except requests.exceptions.RequestException as error:
            raise Unavailable(method, url, None, f"request failed: {transport_cause(error)}") from error
        status = response.status_code
        decoded, decode_error = _decode(response)
        if 200 <= status < 300:
            if decode_error is not None:
                raise MalformedResponse(method, url, status, decode_error, response.text[:200])
            return status, decoded
        detail = decoded.get("error") if isinstance(decoded, dict) and "error" in decoded else response.text[:200]
        raise error_for_status(status)(method, url, status, str(detail) or response.reason, decoded)

    # --- paths ----------------------------------------------------------------------------------

    def _ns(self) -> str:
        return f"/api/v1/namespaces/{quote(self.namespace, safe='')}"

    def _action(self, name: str) -> str:
        return f"{self._ns()}/actions/{quote(name, safe='')}"

    # --- actions --------------------------------------------------------------------------------

    def list_actions(self, limit: int = 0, skip: int = 0) -> list[dict[str, Any]]:
        """Actions of the namespace (``limit`` 0 = the platform's maximum page, 200)."""
        _, body = self.request("GET", f"{self._ns()}/actions", params={"limit": limit, "skip": skip})
        return _expect_list(body, "GET", f"{self._ns()}/actions")

    def get_action(self, name: str, code: bool = False) -> dict[str, Any]:
        """One action (without its code unless ``code``)."""
        _, body = self.request("GET", self._action(name), params={"code": _flag(code)})
        return _expect_dict(body, "GET", self._action(name))

    def put_action(self, name: str, action: Mapping[str, Any], overwrite: bool = True) -> dict[str, Any]:
        """Create (or with ``overwrite`` update) an action from an ``ActionPut`` body."""
        _, body = self.request(
            "PUT", self._action(name), params={"overwrite": _flag(overwrite)}, body=dict(action), idempotent=True
        )
        return _expect_dict(body, "PUT", self._action(name))

    def delete_action(self, name: str) -> dict[str, Any]:
        """Delete an action; returns what the platform answers (the deleted action)."""
        _, body = self.request("DELETE", self._action(name))
        return body if isinstance(body, dict) else {}

    def invoke(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        blocking: bool = False,
        timeout_ms: int | None = None,
    ) -> Invocation:
        """Invoke an action. Blocking: waits up to ``timeout_ms`` (platform default 60 s) for the record.

        A blocking invocation whose action fails raises :class:`ApplicationError` carrying the record.
        """
        query: dict[str, Any] = {"blocking": _flag(blocking), "result": "false"}
        if timeout_ms is not None:
            query["timeout"] = int(timeout_ms)
        path = self._action(name)
        status, body = self.request("POST", path, params=query, body=dict(params or {}))
        if not isinstance(body, dict) or not isinstance(body.get("activationId"), str):
            raise MalformedResponse("POST", self.base_url + path, status, "the answer has no activationId", body)
        record = body if status == 200 and "response" in body else None
        return Invocation(activation_id=body["activationId"], status=status, record=record)

    # --- activations ----------------------------------------------------------------------------

    def list_activations(
        self,
        *,
        name: str | None = None,
        limit: int = 200,
        skip: int = 0,
        since_ms: int | None = None,
        upto_ms: int | None = None,
        docs: bool = False,
    ) -> list[dict[str, Any]]:
        """One page of activations, most recent first (``ActivationBrief``; full records with ``docs``)."""
        query: dict[str, Any] = {"limit": limit, "skip": skip, "docs": _flag(docs)}
        if name is not None:
            query["name"] = name
        if since_ms is not None:
            query["since"] = int(since_ms)
        if upto_ms is not None:
            query["upto"] = int(upto_ms)
        _, body = self.request("GET", f"{self._ns()}/activations", params=query)
        return _expect_list(body, "GET", f"{self._ns()}/activations")

    def iter_activations(
        self, *, since_ms: int, upto_ms: int, name: str | None = None, page: int = 200, max_pages: int = 500
    ) -> list[dict[str, Any]]:
        """Every activation that started in [since_ms, upto_ms], paging with ``skip``.

        A fixed ``upto`` keeps pages stable while new activations arrive. ``max_pages`` bounds the
        work of one call (500 pages = 100,000 activations: 120 s at over 800 activations/s); hitting it
        raises :class:`WindowTooLarge`, so a partial window is never taken for a complete one.
        """
        records: list[dict[str, Any]] = []
        for index in range(max_pages):
            batch = self.list_activations(name=name, limit=page, skip=index * page, since_ms=since_ms, upto_ms=upto_ms)
            records.extend(batch)
            if len(batch) < page:
                return records
        raise WindowTooLarge(
            "GET", f"{self.base_url}{self._ns()}/activations", None,
            f"more than {max_pages * page} activations in [{since_ms}, {upto_ms}] ms: window not read completely "
            "(shorten the look-back)",
        )

    def get_activation(self, activation_id: str) -> dict[str, Any]:
        """One full activation record."""
        path = f"{self._ns()}/activations/{quote(activation_id, safe='')}"
        _, body = self.request("GET", path)
        return _expect_dict(body, "GET", path)


class _NotSent(Unavailable):
    """The connection could not be opened: the request surely never reached the platform."""


def _retryable(error: OpenWhiskError, idempotent: bool) -> bool:
    if isinstance(error, (Throttled, _NotSent)):
        return True
    if isinstance(error, Unavailable):
        # 503 is the platform refusing before doing anything; a broken connection is not.
        return error.status == 503 or idempotent
    if isinstance(error, Timeout):
        return idempotent and error.status is None
    return False


def _never_connected(error: requests.exceptions.ConnectionError) -> bool:
    """Whether urllib3 failed to open the connection (refused, unresolvable): nothing was sent."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _without_credentials(url: str) -> str:
    """``url`` without a user or password in its authority part."""
    try:
        split = urlsplit(url)
    except ValueError:
        return url
    if "@" not in split.netloc:
        return url
    return split._replace(netloc=split.netloc.rpartition("@")[2]).geturl()


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _query(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    if params is None:
        return None
    return {k: (_flag(v) if isinstance(v, bool) else str(v)) for k, v in params.items() if v is not None}


def _decode(response: requests.Response) -> tuple[Any, str | None]:
    if not response.content:
        return None, "empty body"
    try:
        return json.loads(response.content), None
    except (ValueError, UnicodeDecodeError) as error:
        return None, f"body is not JSON ({error}): {response.text[:80]!r}"


def _expect_list(body: Any, method: str, path: str) -> list[dict[str, Any]]:
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise MalformedResponse(method, path, 200, "expected a JSON array of objects", body)
    return body


def _expect_dict(body: Any, method: str, path: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise MalformedResponse(method, path, 200, "expected a JSON object", body)
    return body


__all__ = [
    "NO_RETRY",
    "OWN_NAMESPACE",
    "ApplicationError",
    "Invocation",
    "MalformedResponse",
    "NotFound",
    "OpenWhiskClient",
    "OpenWhiskError",
    "RequestRejected",
    "RetryPolicy",
    "ServerError",
    "Throttled",
    "Timeout",
    "Unauthorized",
    "Unavailable",
    "WindowTooLarge",
    "annotation",
    "error_for_status",
]
