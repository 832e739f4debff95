"""How an observation of a cluster fails, in bounded kinds, and what an observation lost.

A request to a platform (the OpenWhisk API, localwhisk's resource API, Prometheus) fails in one of a
few ways an operator can act on; each is a :class:`ObservationKind`, a bounded metric label
(``mfrm_backend_errors_total{kind}``) decided where the failure happens, by the client that saw it:

==================  ==============================================================  =======================
kind                what happened                                                   what to check
==================  ==============================================================  =======================
``unauthorized``    401 or 403: the key is wrong, or not the namespace's            the key (``*.auth``)
``throttled``       429: over a rate or concurrency limit                           the platform's limits
``server_error``    a 5xx answer: the platform (or a gateway before it) failed      the platform's health
``timeout``         no answer within the time-out, or the tick's deadline passed    load, network, time-outs
``unreachable``     no connection: refused, unresolvable, reset before an answer    host, port, network
``malformed``       an answer that is not what the API promises (not JSON, fields)  a proxy, the API version
``rejected``        another 4xx, or a query refused as wrong: the request is wrong  URL, namespace, query
==================  ==============================================================  =======================

Two records carry a kind through the backends to the daemon:

* :class:`ObservationError` — the cluster could not be observed at all (the tick fails, nothing is
  decided anywhere); raised by a backend's ``observe``;
* :class:`ObservationProblem` — part of an observation was lost (some rows are invalid); a backend
  lists them in its ``problems`` attribute after each ``observe`` (see :func:`problems_of`).

This module also holds the tick's deadline (:func:`deadline_scope`, :func:`remaining_s`): the
daemon sets it around a tick, and every client shortens its time-outs to what is left of it, so
that the requests of one tick end by its deadline.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


class ObservationKind(enum.Enum):
    """Why an observation failed (a bounded metric label; the table above says what each means)."""

    UNAUTHORIZED = "unauthorized"
    """401 or 403: the key is wrong, or it does not own the namespace."""
    THROTTLED = "throttled"
    """429: over the platform's (or a proxy's) rate or concurrency limit."""
    SERVER_ERROR = "server_error"
    """A 5xx answer: the platform or a gateway in front of it failed."""
    TIMEOUT = "timeout"
    """No answer within the time-out, or the tick's deadline passed first."""
    UNREACHABLE = "unreachable"
    """No connection: refused, unresolvable, or dropped before an answer."""
    MALFORMED = "malformed"
    """An answer that is not the shape the API promises."""
    REJECTED = "rejected"
    """Another 4xx, or a query refused as wrong: the request itself is wrong."""


#: Every kind's label, in the order of :class:`ObservationKind`.
OBSERVATION_KINDS: tuple[str, ...] = tuple(kind.value for kind in ObservationKind)


def kind_of_status(status: int) -> ObservationKind:
    """The kind of a failed HTTP answer with ``status``."""
    if status in (401, 403):
        return ObservationKind.UNAUTHORIZED
    if status == 429:
        return ObservationKind.THROTTLED
    if status == 408:
        return ObservationKind.TIMEOUT
    if status >= 500:
        return ObservationKind.SERVER_ERROR
    return ObservationKind.REJECTED


class ObservationError(Exception):
    """A backend could not observe the cluster at all: the tick fails and nothing is decided.

    ``kind`` is the label the daemon counts (:data:`OBSERVATION_KINDS`), ``source`` names what could
    not be read (``activations``, ``pools``, ``prometheus``, ...), ``cause`` is the client's message
    (URLs without credentials).
    """

    def __init__(self, kind: ObservationKind, source: str, cause: str) -> None:
        super().__init__(f"{source}: {cause}")
        self.observation_kind = kind
        """Why, as a bounded kind."""
        self.kind = kind.value
        """The metric label (``controller.metrics.error_kind`` takes it at its word)."""
        self.source = source
        """What could not be read."""
        self.cause = cause
        """The failure as the client described it."""

    @classmethod
    def from_error(cls, source: str, error: BaseException) -> ObservationError:
        """Wrap a client's typed error (one with an :class:`ObservationKind` ``observation_kind``)."""
        kind = getattr(error, "observation_kind", None)
        if not isinstance(kind, ObservationKind):
            raise TypeError(f"{type(error).__name__} carries no observation kind") from error
        return cls(kind, source, str(error))


@dataclass(frozen=True)
class ObservationProblem:
    """Part of one observation that was lost: the rows of ``functions`` are invalid this tick, because of ``cause``."""

    kind: ObservationKind | None
    """Why, as a bounded kind; None when nothing failed and the data is simply absent (no series yet,
    no new sample since the last tick), which is no data but not an error."""
    source: str
    """What could not be read for them (``activations``, ``pools``, ``prometheus``, ``runtime``, ...)."""
    cause: str
    """One line for the log: what went wrong, URLs without credentials."""
    functions: tuple[str, ...]
    """The functions whose rows this made invalid."""

    @property
    def label(self) -> str | None:
        """The metric label of ``kind`` (None for absent data)."""
        return None if self.kind is None else self.kind.value


def problems_of(backend: Any) -> tuple[ObservationProblem, ...]:
    """The problems of ``backend``'s last observation (its ``problems`` attribute; none when it has none)."""
    problems = getattr(backend, "problems", ())
    return tuple(p for p in problems if isinstance(p, ObservationProblem))


def transport_cause(error: BaseException) -> str:
    """The innermost reason of an HTTP client's transport failure, without urllib3's pool and
    connection wrappers: "Failed to establish a new connection: [Errno 111] Connection refused"
    rather than "HTTPConnectionPool(host=..., port=...): Max retries exceeded with url: ... (Caused by ...)"."""
    inner: object = error.args[0] if error.args else error
    inner = getattr(inner, "reason", None) or inner
    text = str(inner)
    if text.startswith(("HTTPConnection(", "HTTPSConnection(", "<urllib3")):
        text = text.split(": ", 1)[-1]
    return text


# --- the tick's deadline --------------------------------------------------------------------------


@dataclass(frozen=True)
class Deadline:
    """An instant on a monotonic clock by which the current tick's requests must have ended."""

    at_s: float
    """The instant, s on ``clock``."""
    clock: Callable[[], float]
    """The monotonic clock it is measured on (the daemon's)."""

    def remaining_s(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at_s - self.clock()


_DEADLINE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("mfrm_tick_deadline", default=None)


@contextlib.contextmanager
def deadline_scope(deadline: Deadline | None) -> Iterator[None]:
    """Requests made inside (in this thread or context) end by ``deadline`` (None: no deadline)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining_s() -> float:
    """Seconds left until the current deadline; infinity without one."""
    deadline = _DEADLINE.get()
    return math.inf if deadline is None else deadline.remaining_s()


def bounded_timeout(timeout_s: float) -> float:
    """``timeout_s`` shortened to what is left of the current deadline (never below 1 ms, so that a
    request made at the deadline fails at once instead of waiting without a bound)."""
    return max(min(timeout_s, remaining_s()), 0.001)


__all__ = [
    "OBSERVATION_KINDS",
    "Deadline",
    "ObservationError",
    "ObservationKind",
    "ObservationProblem",
    "bounded_timeout",
    "deadline_scope",
    "kind_of_status",
    "problems_of",
    "remaining_s",
    "transport_cause",
]
