"""Per-activation records of a replay, in the spirit of FaaSProfiler's: one CSV row per arrival.

A row says which function was invoked, when the trace wanted it and when it was sent, what is known
of its fate (``outcome``: it ran, it did not run, or nobody can tell) and, in ``status``, why. When
the platform answered with the activation record, the row carries the platform's own timing of it:
``waitTime`` (annotation: from the controller's receipt to the start in a container), ``initTime``
(annotation, cold starts only) and ``duration``. In OpenWhisk ``duration`` already covers
``initTime`` on a cold start (the activation's interval starts at the init), so

    latency_ms = wait_ms + duration_ms        (= wait + init + run on a cold start)

``client_latency_ms`` is the same invocation seen from the replayer (send to answer), which adds the
network and the controller's own time.

:class:`RecordWriter` appends and flushes every row, so a run that crashes keeps every row written.
"""

from __future__ import annotations

import csv
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import IO, Any, Self

import numpy as np

# --- what is known of an invocation (``ActivationRecord.outcome``) ------------------------------

RAN = "ran"
"""The platform created an activation for it: it ran, or is running (its activation id is known)."""
NOT_RUN = "not_run"
"""It did not run: it was never sent, or the platform refused it before creating an activation."""
UNKNOWN = "unknown"
"""Nobody can tell from the client whether it ran: the request left, and no usable answer came."""

OUTCOMES: tuple[str, ...] = (RAN, NOT_RUN, UNKNOWN)

# --- why (``ActivationRecord.status``); each status belongs to exactly one outcome --------------

# ran: the answer carried the activation record, or at least its id.
SUCCESS = "success"
"""The activation record says it succeeded (``statusCode`` 0)."""
APPLICATION_ERROR = "application_error"
"""The action ran and returned an error (``statusCode`` 1)."""
DEVELOPER_ERROR = "developer_error"
"""The action could not be initialised or run as written (``statusCode`` 2)."""
INTERNAL_ERROR = "internal_error"
"""The platform failed while running it (``statusCode`` 3)."""
ACCEPTED = "accepted"
"""The platform gave an activation id without the record: a 202 to a blocking call that outlived
the platform's blocking wait, or a failure answer that names the activation it had created."""

# not run: the request never left, or the platform said no before creating an activation.
THROTTLED = "throttled"
"""429 without an activation: the platform's throttle refused it before running it."""
NOT_FOUND = "not_found"
"""404: no such action (or namespace)."""
REJECTED = "rejected"
"""Any other 4xx (400, 401, 403, 409, 413, ...): the platform refused the request as it was."""
REFUSED = "refused"
"""The connection could not be opened (refused, connect time-out, TLS handshake): nothing was sent."""
DROPPED = "dropped"
"""Never sent: the replayer's backlog of waiting arrivals was full (the client could not keep up)."""
CANCELLED = "cancelled"
"""Never sent: it was waiting for a free worker when the replay was stopped."""

# unknown: the request left, and what came back (if anything) does not say whether it ran.
TIMEOUT = "timeout"
"""No answer within the read time-out (``replay.request_timeout_s``), or 408/504."""
LOST = "lost"
"""The connection broke after the request was sent (reset, closed before or during the answer)."""
MALFORMED = "malformed"
"""An answer the replayer cannot read: not JSON, no activation id, or a record with bad fields."""
UNAVAILABLE = "unavailable"
"""503 without an activation: something on the way was unavailable, maybe after passing it on."""
SERVER_ERROR = "server_error"
"""500, 502 or another 5xx without an activation record (a gateway's error page, say)."""
UNFINISHED = "unfinished"
"""Still waiting for its answer when the drain after a stop ran out."""
ERROR = "error"
"""The invoker failed in a way it does not know how to class (see ``error``)."""

#: The outcome each status stands for.
OUTCOME_OF: Mapping[str, str] = {
    **dict.fromkeys((SUCCESS, APPLICATION_ERROR, DEVELOPER_ERROR, INTERNAL_ERROR, ACCEPTED), RAN),
    **dict.fromkeys((THROTTLED, NOT_FOUND, REJECTED, REFUSED, DROPPED, CANCELLED), NOT_RUN),
    **dict.fromkeys((TIMEOUT, LOST, MALFORMED, UNAVAILABLE, SERVER_ERROR, UNFINISHED, ERROR), UNKNOWN),
}
STATUSES: tuple[str, ...] = tuple(OUTCOME_OF)

#: ``statusCode`` of an activation record -> status.
STATUS_BY_CODE = {0: SUCCESS, 1: APPLICATION_ERROR, 2: DEVELOPER_ERROR, 3: INTERNAL_ERROR}


@dataclass(frozen=True)
class ActivationRecord:
    """One arrival of the replay and what became of it."""

    function: str
    """Action name."""
    activation_id: str
    """OpenWhisk activation id; empty when the platform gave none."""
    scheduled_s: float
    """Arrival time in the trace, s from the replay's start (trace clock, before the speed-up)."""
    sent_s: float
    """When the request was sent, s from the replay's start (replayer clock); NaN if never sent."""
    received_s: float
    """When the answer (or the failure) came back, s from the replay's start (replayer clock); NaN
    if never sent or never answered."""
    start_ms: float
    """Activation start on the platform, ms since the epoch; NaN if unknown."""
    end_ms: float
    """Activation end on the platform, ms since the epoch; NaN if unknown."""
    wait_ms: float
    """``waitTime`` annotation, ms; NaN if unknown."""
    init_ms: float
    """``initTime`` annotation, ms; 0 on a warm start; NaN if unknown."""
    duration_ms: float
    """``duration``, ms (includes ``init_ms``); NaN if unknown."""
    latency_ms: float
    """wait_ms + duration_ms: the platform's end-to-end latency, ms; NaN if unknown."""
    client_latency_ms: float
    """received − sent, ms, as the replayer measured it; NaN if never sent or never answered."""
    cold: bool
    """Whether the activation was a cold start (it has an ``initTime``)."""
    status: str
    """Why: one of :data:`STATUSES`."""
    outcome: str
    """What is known: ``ran``, ``not_run`` or ``unknown`` (always ``OUTCOME_OF[status]``)."""
    http_status: int
    """HTTP status of the answer; 0 when none came."""
    error: str = ""
    """What went wrong, for the statuses that are not ``success``."""

    def __post_init__(self) -> None:
        expected = OUTCOME_OF.get(self.status)
        if expected is None:
            raise ValueError(f"unknown status {self.status!r}; one of {', '.join(STATUSES)}")
        if self.outcome != expected:
            raise ValueError(f"status {self.status!r} means outcome {expected!r}, not {self.outcome!r}")


FIELDS = tuple(f.name for f in fields(ActivationRecord))
_FLOATS = {f.name for f in fields(ActivationRecord) if f.type == "float"}


class MalformedActivation(ValueError):
    """An activation record whose fields are missing or not of the documented type."""


def _annotation(record: Mapping[str, Any], key: str) -> Any:
    annotations = record.get("annotations")
    if annotations is None:
        return None
    if not isinstance(annotations, list):
        raise MalformedActivation(f"'annotations' is not a list: {annotations!r:.80}")
    for item in annotations:
        if isinstance(item, Mapping) and item.get("key") == key:
            return item.get("value")
    return None


def _milliseconds(value: Any, name: str) -> float:
    """A JSON number of ms (finite, >= 0); None (absent) is NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedActivation(f"{name} is not a number: {value!r:.80}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise MalformedActivation(f"{name} is not a finite number >= 0: {value!r}")
    return number


def from_activation(
    function: str,
    scheduled_s: float,
    sent_s: float,
    received_s: float,
    http_status: int,
    activation: Mapping[str, Any],
    error: str = "",
) -> ActivationRecord:
    """The row of an invocation that came back with its activation record.

    Raises :class:`MalformedActivation` when the record is not what the API documents (no
    activation id, a status code outside 0–3, a time that is not a number), so that the caller
    records what it knows instead of a row of invented values."""
    if not isinstance(activation, Mapping):
        raise MalformedActivation(f"the activation record is not a JSON object: {activation!r:.80}")
    activation_id = activation.get("activationId")
    if not isinstance(activation_id, str) or not activation_id:
        raise MalformedActivation(f"no activationId: {activation_id!r:.80}")
    response = activation.get("response")
    if response is not None and not isinstance(response, Mapping):
        raise MalformedActivation(f"'response' is not an object: {response!r:.80}")
    code = activation.get("statusCode", (response or {}).get("statusCode"))
    if isinstance(code, bool) or code not in STATUS_BY_CODE:
        raise MalformedActivation(f"statusCode is not one of 0, 1, 2, 3: {code!r:.80}")
    wait_ms = _milliseconds(_annotation(activation, "waitTime"), "waitTime")
    init = _annotation(activation, "initTime")
    init_ms = _milliseconds(init, "initTime") if init is not None else 0.0
    duration_ms = _milliseconds(activation.get("duration"), "duration")
    return ActivationRecord(
        function=function,
        activation_id=activation_id,
        scheduled_s=scheduled_s,
        sent_s=sent_s,
        received_s=received_s,
        start_ms=_milliseconds(activation.get("start"), "start"),
        end_ms=_milliseconds(activation.get("end"), "end"),
        wait_ms=wait_ms,
        init_ms=init_ms,
        duration_ms=duration_ms,
        latency_ms=wait_ms + duration_ms,
        client_latency_ms=(received_s - sent_s) * 1000.0,
        cold=init is not None,
        status=STATUS_BY_CODE[code],
        outcome=RAN,
        http_status=http_status,
        error=error,
    )


def without_activation(
    function: str, scheduled_s: float, sent_s: float, received_s: float, status: str, http_status: int,
    error: str = "", activation_id: str = "",
) -> ActivationRecord:
    """The row of an arrival without an activation record (refused, lost, dropped, a 202, ...);
    ``sent_s`` or ``received_s`` NaN when it was never sent or never answered."""
    nan = math.nan
    return ActivationRecord(
        function, activation_id, scheduled_s, sent_s, received_s, nan, nan, nan, nan, nan, nan,
        (received_s - sent_s) * 1000.0, False, status, OUTCOME_OF.get(status, ""), http_status, error,
    )


class RecordWriter:
    """Appends records to a CSV file, one flushed row at a time; safe to call from several threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file: IO[str] | None = self.path.open("a", newline="")
        self._csv = csv.writer(self._file)
        self._lock = threading.Lock()
        self.written = 0
        """Rows written by this writer."""
        self.lost = 0
        """Rows that arrived after :meth:`close` and were not written."""
        if new:
            self._csv.writerow(FIELDS)
            self._file.flush()

    def write(self, record: ActivationRecord) -> None:
        with self._lock:
            if self._file is None:
                self.lost += 1
                return
            self._csv.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in astuple(record)])
            self._file.flush()
            self.written += 1

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: str | Path) -> list[ActivationRecord]:
    """Every row of a records CSV; the error names the file, line and column of a bad value."""
    path = Path(path)
    out = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in FIELDS if name not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}:1: missing columns {missing}")
        for row in reader:
            values: dict[str, Any] = {}
            for name in FIELDS:
                raw = row[name]
                try:
                    if name in _FLOATS:
                        values[name] = float(raw) if raw != "" else math.nan
                    elif name == "http_status":
                        values[name] = int(raw)
                    elif name == "cold":
                        values[name] = raw == "True"
                    else:
                        values[name] = raw
                except ValueError:
                    raise ValueError(f"{path}:{reader.line_num}: column {name!r}: bad value {raw!r}") from None
            try:
                out.append(ActivationRecord(**values))
            except ValueError as error:
                raise ValueError(f"{path}:{reader.line_num}: {error}") from None
    return out


@dataclass(frozen=True)
class FunctionSummary:
    """One function's replay in numbers."""

    function: str
    invocations: int
    """Rows of the function (arrivals the replay reached), whatever became of them."""
    succeeded: int
    """Rows whose status is ``success``."""
    failed: int
    """Rows that ran and did not succeed (an error status, or ``accepted`` without a record)."""
    not_run: int
    """Rows that did not run (refused by the platform, or never sent)."""
    unknown: int
    """Rows whose fate the client cannot tell."""
    cold: int
    """Cold starts among the rows with an activation record."""
    p50_latency_ms: float
    """Median platform latency of the successful activations, ms; NaN if none."""
    p99_latency_ms: float
    """99th percentile of the platform latency of the successful activations, ms; NaN if none."""
    p99_client_latency_ms: float
    """99th percentile of the client-side latency of the successful activations, ms; NaN if none."""


def summarise_records(records: Iterable[ActivationRecord]) -> list[FunctionSummary]:
    """Per-function counts and latency percentiles, functions in order of first appearance."""
    groups: dict[str, list[ActivationRecord]] = {}
    for record in records:
        groups.setdefault(record.function, []).append(record)
    out = []
    for function, rows in groups.items():
        ok = [r for r in rows if r.status == SUCCESS]
        latency = np.array([r.latency_ms for r in ok if not math.isnan(r.latency_ms)])
        client = np.array([r.client_latency_ms for r in ok if not math.isnan(r.client_latency_ms)])
        out.append(
            FunctionSummary(
                function=function,
                invocations=len(rows),
                succeeded=len(ok),
                failed=sum(r.outcome == RAN for r in rows) - len(ok),
                not_run=sum(r.outcome == NOT_RUN for r in rows),
                unknown=sum(r.outcome == UNKNOWN for r in rows),
                cold=sum(r.cold for r in rows),
                p50_latency_ms=float(np.percentile(latency, 50)) if latency.size else math.nan,
                p99_latency_ms=float(np.percentile(latency, 99)) if latency.size else math.nan,
                p99_client_latency_ms=float(np.percentile(client, 99)) if client.size else math.nan,
            )
        )
    return out


def failure_share(records: Iterable[ActivationRecord]) -> tuple[int, int]:
    """(rows that did not succeed — failed, not run or unknown —, all rows)."""
    total = bad = 0
    for record in records:
        total += 1
        bad += record.status != SUCCESS
    return bad, total


__all__ = [
    "ACCEPTED",
    "APPLICATION_ERROR",
    "CANCELLED",
    "DEVELOPER_ERROR",
    "DROPPED",
    "ERROR",
    "FIELDS",
    "INTERNAL_ERROR",
    "LOST",
    "MALFORMED",
    "NOT_FOUND",
    "NOT_RUN",
    "OUTCOMES",
    "OUTCOME_OF",
    "RAN",
    "REFUSED",
    "REJECTED",
    "SERVER_ERROR",
    "STATUSES",
    "STATUS_BY_CODE",
    "SUCCESS",
    "THROTTLED",
    "TIMEOUT",
    "UNAVAILABLE",
    "UNFINISHED",
    "UNKNOWN",
    "ActivationRecord",
    "FunctionSummary",
    "MalformedActivation",
    "RecordWriter",
    "failure_share",
    "from_activation",
    "read_records",
    "summarise_records",
    "without_activation",
]
