"""A small reader of the Prometheus HTTP API: instant and range queries, bounded in time, typed errors.

The ``openwhisk`` backend reads OpenWhisk's user-events metrics (latency, cold starts, activation
counts) through it. The reader only fetches and parses; what a missing series means is the
backend's business (no data, hence no decision — never zero load).

Answers it understands (Prometheus HTTP API v1, ``/api/v1/query`` and ``/api/v1/query_range``)::

    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {...}, "value": [t, "1.5"]}]}}
    {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {...}, "values": [[t, "1"], ...]}]}}
    {"status": "success", "data": {"resultType": "scalar", "result": [t, "1"]}}
    {"status": "error", "errorType": "bad_data", "error": "parse error ..."}

Every failure is a :class:`PromQLError` subclass whose ``observation_kind`` is one of the bounded
kinds of :class:`controller.clients.errors.ObservationKind` (``kind`` is its label), so the daemon
counts it without guessing:

==========================  ================  ==============================================
error                        ``kind``          when
==========================  ================  ==============================================
:class:`PromQLUnavailable`   ``unreachable``   no connection (refused, unresolvable, dropped)
:class:`PromQLTimeout`       ``timeout``       no answer within ``timeout_s``, or a query timeout
:class:`PromQLThrottled`     ``throttled``     HTTP 429
:class:`PromQLUnauthorized`  ``unauthorized``  HTTP 401 or 403 (a proxy in front of Prometheus)
:class:`PromQLServerError`   ``server_error``  HTTP 5xx (503 too: an answer came), ``unavailable``,
                                               ``internal``, ``canceled``
:class:`PromQLQueryError`    ``rejected``      the query itself is wrong (``bad_data``, ``execution``, 4xx)
:class:`PromQLBadResponse`   ``malformed``     not JSON, or not the API's shape
==========================  ================  ==============================================

Time bound: ``timeout_s`` is both the connect timeout and the read timeout of the HTTP request
(``requests`` applies the read timeout to each wait for bytes, so a server that trickles bytes
can exceed it) and is sent to Prometheus as the query's own ``timeout`` so that a heavy query is
cancelled server-side too. Inside a tick's deadline
(:func:`controller.clients.errors.deadline_scope`) the time-out is shortened to what is left of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests
import urllib3

from controller.clients.errors import ObservationKind, bounded_timeout, remaining_s, transport_cause


class PromQLError(Exception):
    """A query did not give a usable answer; ``observation_kind`` says why (``kind`` is its label)."""

    observation_kind = ObservationKind.SERVER_ERROR

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        """The URL queried (without the query string)."""
        self.status = status
        """The HTTP status, when an answer came."""

    @property
    def kind(self) -> str:
        """The bounded metric label of :attr:`observation_kind`."""
        return self.observation_kind.value


class PromQLUnavailable(PromQLError):
    """Prometheus could not be reached, or reported itself unavailable."""

    observation_kind = ObservationKind.UNREACHABLE


class PromQLTimeout(PromQLError):
    """No answer within the timeout, or the query timed out inside Prometheus."""

    observation_kind = ObservationKind.TIMEOUT


class PromQLThrottled(PromQLError):
    """Prometheus (or a proxy in front of it) answered 429 Too Many Requests."""

    observation_kind = ObservationKind.THROTTLED


class PromQLUnauthorized(PromQLError):
    """A proxy in front of Prometheus refused the credentials (HTTP 401 or 403)."""

    observation_kind = ObservationKind.UNAUTHORIZED


class PromQLServerError(PromQLError):
    """A server-side failure other than unavailability or a timeout."""

    observation_kind = ObservationKind.SERVER_ERROR


class PromQLQueryError(PromQLError):
    """The query was refused as wrong (syntax, types, matching); retrying will not help."""

    observation_kind = ObservationKind.REJECTED


class PromQLBadResponse(PromQLError):
    """The answer was not the Prometheus API's JSON shape."""

    observation_kind = ObservationKind.MALFORMED


@dataclass(frozen=True)
class Sample:
    """One series of an instant query (or a scalar, with no labels)."""

    labels: Mapping[str, str]
    """The series' labels (``__name__`` included when Prometheus returns it)."""
    time_s: float
    """Evaluation time, Unix s."""
    value: float
    """The value (NaN and ±Inf as Prometheus sends them)."""


@dataclass(frozen=True, eq=False)
class Series:
    """One series of a range query."""

    labels: Mapping[str, str]
    """The series' labels."""
    times_s: np.ndarray
    """Evaluation times, Unix s, increasing; shape (points,)."""
    values: np.ndarray
    """Values at those times; shape (points,)."""


def _number(raw: Any, url: str) -> float:
    # Prometheus sends sample values as strings ("1.5", "NaN", "+Inf") to keep full precision.
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise PromQLBadResponse(f"{url}: sample value {raw!r} is not a number", url=url) from None


def _point(raw: Any, url: str) -> tuple[float, float]:
    if not isinstance(raw, Sequence) or isinstance(raw, str) or len(raw) != 2:
        raise PromQLBadResponse(f"{url}: a sample must be [time, \"value\"], got {raw!r}", url=url)
    return _number(raw[0], url), _number(raw[1], url)


def _labels(item: Any, url: str) -> dict[str, str]:
    if not isinstance(item, Mapping) or not isinstance(item.get("metric", {}), Mapping):
        raise PromQLBadResponse(f"{url}: a result entry must be an object with a 'metric' object, got {item!r}",
                                url=url)
    return {str(k): str(v) for k, v in item.get("metric", {}).items()}


def parse_instant(data: Mapping[str, Any], url: str = "") -> list[Sample]:
    """The samples of an instant query's ``data`` (vector or scalar)."""
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        t, v = _point(result, url)
        return [Sample({}, t, v)]
    if kind != "vector" or not isinstance(result, list):
        raise PromQLBadResponse(f"{url}: expected a vector or scalar result, got resultType={kind!r}", url=url)
    samples = []
    for item in result:
        labels = _labels(item, url)
        t, v = _point(item.get("value"), url)
        samples.append(Sample(labels, t, v))
    return samples


def parse_range(data: Mapping[str, Any], url: str = "") -> list[Series]:
    """The series of a range query's ``data`` (matrix)."""
    kind, result = data.get("resultType"), data.get("result")
    if kind != "matrix" or not isinstance(result, list):
        raise PromQLBadResponse(f"{url}: expected a matrix result, got resultType={kind!r}", url=url)
    series = []
    for item in result:
        labels = _labels(item, url)
        values = item.get("values")
        if not isinstance(values, list):
            raise PromQLBadResponse(f"{url}: a matrix entry needs a 'values' list, got {values!r}", url=url)
        points = [_point(p, url) for p in values]
        times = np.array([p[0] for p in points], dtype=float)
        vals = np.array([p[1] for p in points], dtype=float)
        times.setflags(write=False)
        vals.setflags(write=False)
        series.append(Series(labels, times, vals))
    return series


def by_label(samples: Sequence[Sample], label: str) -> dict[str, float]:
    """``{value of label: sample value}``; a series without the label, or two with the same value,
    is a :class:`PromQLBadResponse` (the query should have aggregated by that label)."""
    out: dict[str, float] = {}
    for sample in samples:
        key = sample.labels.get(label)
        if key is None:
            raise PromQLBadResponse(f"a series has no label {label!r}: {dict(sample.labels)}", url="")
        if key in out:
            raise PromQLBadResponse(f"two series share {label}={key!r}; aggregate the query by {label}", url="")
        out[key] = sample.value
    return out


def counter_increase(previous: float, current: float) -> float:
    """How much a counter grew between two readings; a counter that went down was reset (its
    process restarted), so everything it holds now is new (Prometheus' own rule for ``increase``)."""
    return current - previous if current >= previous else current


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float:
    """The ``q``-quantile of a histogram given as ``{upper bound: cumulative count}`` (``le`` with
    ``inf`` last), interpolated linearly inside the bucket that holds it, as PromQL's
    ``histogram_quantile`` does: the first bucket starts at 0, and a quantile in the ``+Inf``
    bucket is the highest finite bound. NaN when the histogram is empty or has no ``+Inf`` bucket."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf:
        return math.nan
    counts = [buckets[b] for b in bounds]
    # Cumulative counts cannot fall; a reading taken mid-scrape can make them, so keep the running maximum.
    counts = list(np.maximum.accumulate(counts))
    total = counts[-1]
    if not total > 0:
        return math.nan
    rank = q * total
    for i, (bound, count) in enumerate(zip(bounds, counts)):
        if count >= rank:
            if bound == math.inf:
                return bounds[-2] if len(bounds) > 1 else math.nan
            lower = bounds[i - 1] if i > 0 else 0.0
            below = counts[i - 1] if i > 0 else 0.0
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
    return bounds[-2] if len(bounds) > 1 else math.nan


_ERROR_TYPES: dict[str, type[PromQLError]] = {
    "bad_data": PromQLQueryError,
    "execution": PromQLQueryError,
    "timeout": PromQLTimeout,
    "unavailable": PromQLServerError,  # an answer came: the server is reachable, not ready
    "canceled": PromQLServerError,
    "internal": PromQLServerError,
}


def _http_error(status: int, body: Any, url: str) -> PromQLError:
    """The typed error of a non-success answer (the API's ``errorType`` first, then the status)."""
    error_type = body.get("errorType") if isinstance(body, Mapping) else None
    detail = body.get("error") if isinstance(body, Mapping) else None
    message = f"{url}: HTTP {status}" + (f", {error_type}: {detail}" if error_type else "")
    if status == 429:
        return PromQLThrottled(message, url=url, status=status)
    if status in (401, 403):
        return PromQLUnauthorized(message, url=url, status=status)
    if error_type in _ERROR_TYPES:
        return _ERROR_TYPES[error_type](message, url=url, status=status)
    if status >= 500:
        return PromQLServerError(message, url=url, status=status)
    return PromQLQueryError(message, url=url, status=status)


@dataclass
class PrometheusReader:
    """Queries one Prometheus server (``base_url``, e.g. ``http://prometheus:9090``)."""

    base_url: str
    """Scheme, host, port and any path prefix of the server (``--web.route-prefix``)."""
    timeout_s: float = 5.0
    """Longest wait for a connection and for each read, s; also the query's server-side timeout.
    5 s keeps a tick of 10 s alive when Prometheus hangs."""
    session: requests.Session = field(default_factory=requests.Session)
    """HTTP session (connection reuse; tests and deployments may add auth or TLS settings to it)."""

    def __post_init__(self) -> None:
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise ValueError(f"PrometheusReader.timeout_s must be a finite number > 0, got {self.timeout_s}")
        self.base_url = self.base_url.rstrip("/")

    def instant(self, query: str, at_s: float | None = None) -> list[Sample]:
        """Evaluate ``query`` at Unix time ``at_s`` (None: Prometheus' now)."""
        params: dict[str, Any] = {"query": query}
        if at_s is not None:
            params["time"] = f"{at_s:.3f}"
        url, data = self._get("/api/v1/query", params)
        return parse_instant(data, url)

    def range(self, query: str, start_s: float, end_s: float, step_s: float) -> list[Series]:
        """Evaluate ``query`` every ``step_s`` from ``start_s`` to ``end_s`` (Unix s)."""
        if not end_s >= start_s:
            raise ValueError(f"range query: end {end_s} is before start {start_s}")
        if not step_s > 0:
            raise ValueError(f"range query: step must be > 0 s, got {step_s}")
        params = {"query": query, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": f"{step_s:g}"}
        url, data = self._get("/api/v1/query_range", params)
        return parse_range(data, url)

    def _get(self, path: str, params: dict[str, Any]) -> tuple[str, Mapping[str, Any]]:
        url = self.base_url + path
        if remaining_s() <= 0:
            raise PromQLTimeout(f"{url}: the tick's deadline passed before the query was sent", url=url)
        timeout_s = bounded_timeout(self.timeout_s)
        params = {**params, "timeout": f"{timeout_s:.3f}"}  # seconds; Prometheus takes a plain float
        try:
            response = self.session.get(url, params=params, timeout=(timeout_s, timeout_s))
        except requests.Timeout:
            raise PromQLTimeout(f"{url}: no answer within {timeout_s:.3g} s", url=url) from None
        except requests.ConnectionError as error:
            if error.args and isinstance(error.args[0], urllib3.exceptions.ReadTimeoutError):
                # requests reports a time-out while reading the body as a connection error.
                raise PromQLTimeout(f"{url}: the answer did not arrive within {timeout_s:.3g} s", url=url) from None
            raise PromQLUnavailable(f"{url}: cannot connect: {transport_cause(error)}", url=url) from None
        except requests.RequestException as error:
            raise PromQLServerError(f"{url}: request failed: {transport_cause(error)}", url=url) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            raise _http_error(response.status_code, body, url)
        if isinstance(body, Mapping) and body.get("status") == "error":
            # An error body with status 200 (some proxies do this): classified by its errorType.
            raise _http_error(200, body, url)
        if not isinstance(body, Mapping) or body.get("status") != "success" or not isinstance(body.get("data"), Mapping):
            snippet = response.text[:200]
            raise PromQLBadResponse(f"{url}: not a Prometheus API answer: {snippet!r}", url=url,
                                    status=response.status_code)
        return url, body["data"]


__all__ = [
    "PromQLBadResponse",
    "PromQLError",
    "PromQLQueryError",
    "PromQLServerError",
    "PromQLThrottled",
    "PromQLTimeout",
    "PromQLUnauthorized",
    "PromQLUnavailable",
    "PrometheusReader",
    "Sample",
    "Series",
    "by_label",
    "counter_increase",
    "histogram_quantile",
    "parse_instant",
    "parse_range",
]
