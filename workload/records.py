"""Per-activation records of a replay, in the spirit of FaaSProfiler's: one CSV row per invocation.

A row says which function was invoked, when the trace wanted it and when it was sent, what the
platform answered (activation id, status) and the platform's own timing of it, taken from the
activation record: ``waitTime`` (annotation: from the controller's receipt to the start in a
container), ``initTime`` (annotation, cold starts only) and ``duration``. In OpenWhisk ``duration``
already covers ``initTime`` on a cold start (the activation's interval starts at the init), so

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

# Outcome of one invocation (``ActivationRecord.status``).
SUCCESS = "success"
APPLICATION_ERROR = "application_error"
DEVELOPER_ERROR = "developer_error"
INTERNAL_ERROR = "internal_error"
ACCEPTED = "accepted"
"""The platform answered 202 to a blocking call (it outlived the blocking wait): no timing known."""
THROTTLED = "throttled"
TIMEOUT = "timeout"
UNAVAILABLE = "unavailable"
NOT_FOUND = "not_found"
ERROR = "error"
"""Any other failure of the request (see ``error``)."""
DROPPED = "dropped"
"""Not sent: the replayer's backlog of waiting invocations was full (the client could not keep up)."""

#: ``statusCode`` of an activation record -> status.
STATUS_BY_CODE = {0: SUCCESS, 1: APPLICATION_ERROR, 2: DEVELOPER_ERROR, 3: INTERNAL_ERROR}


@dataclass(frozen=True)
class ActivationRecord:
    """One invocation of the replay."""

    function: str
    """Action name."""
    activation_id: str
    """OpenWhisk activation id; empty when the platform gave none."""
    scheduled_s: float
    """Arrival time in the trace, s from the replay's start (trace clock, before the speed-up)."""
    sent_s: float
    """When the request was sent, s from the replay's start (replayer clock)."""
    received_s: float
    """When the answer came back, s from the replay's start (replayer clock); NaN if never sent."""
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
    """received − sent, ms, as the replayer measured it; NaN if never sent."""
    cold: bool
    """Whether the activation was a cold start (it has an ``initTime``)."""
    status: str
    """Outcome: one of the status names of this module."""
    http_status: int
    """HTTP status of the answer; 0 when none came."""
    error: str = ""
    """Why it failed, for the statuses that are not ``success``."""


FIELDS = tuple(f.name for f in fields(ActivationRecord))
_FLOATS = {f.name for f in fields(ActivationRecord) if f.type == "float"}


def _annotation(record: Mapping[str, Any], key: str) -> Any:
    for item in record.get("annotations") or ():
        if isinstance(item, Mapping) and item.get("key") == key:
            return item.get("value")
    return None


def from_activation(
    function: str,
    scheduled_s: float,
    sent_s: float,
    received_s: float,
    http_status: int,
    activation: Mapping[str, Any],
    error: str = "",
) -> ActivationRecord:
    """The row of an invocation that came back with its activation record."""
    wait = _annotation(activation, "waitTime")
    init = _annotation(activation, "initTime")
    duration = activation.get("duration")
    wait_ms = float(wait) if wait is not None else math.nan
    duration_ms = float(duration) if duration is not None else math.nan
    code = activation.get("statusCode", (activation.get("response") or {}).get("statusCode"))
    return ActivationRecord(
        function=function,
        activation_id=str(activation.get("activationId", "")),
        scheduled_s=scheduled_s,
        sent_s=sent_s,
        received_s=received_s,
        start_ms=float(activation.get("start", math.nan)),
        end_ms=float(activation.get("end", math.nan)),
        wait_ms=wait_ms,
        init_ms=float(init) if init is not None else 0.0,
        duration_ms=duration_ms,
        latency_ms=wait_ms + duration_ms,
        client_latency_ms=(received_s - sent_s) * 1000.0,
        cold=init is not None,
        status=STATUS_BY_CODE.get(int(code), ERROR) if code is not None else ERROR,
        http_status=http_status,
        error=error,
    )


def without_activation(
    function: str, scheduled_s: float, sent_s: float, received_s: float, status: str, http_status: int,
    error: str = "", activation_id: str = "",
) -> ActivationRecord:
    """The row of an invocation without an activation record (failed, throttled, dropped, 202)."""
    nan = math.nan
    return ActivationRecord(
        function, activation_id, scheduled_s, sent_s, received_s, nan, nan, nan, nan, nan, nan,
        (received_s - sent_s) * 1000.0, False, status, http_status, error,
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
        """Rows that arrived after :meth:`close` (invocations that outlived the replay's drain)."""
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
            out.append(ActivationRecord(**values))
    return out


@dataclass(frozen=True)
class FunctionSummary:
    """One function's replay in numbers."""

    function: str
    invocations: int
    """Rows of the function, whatever their outcome."""
    succeeded: int
    failed: int
    """Rows whose status is neither success nor dropped."""
    dropped: int
    cold: int
    p50_latency_ms: float
    """Median platform latency of the successful activations, ms; NaN if none."""
    p99_latency_ms: float
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
        dropped = sum(r.status == DROPPED for r in rows)
        out.append(
            FunctionSummary(
                function=function,
                invocations=len(rows),
                succeeded=len(ok),
                failed=len(rows) - len(ok) - dropped,
                dropped=dropped,
                cold=sum(r.cold for r in rows),
                p50_latency_ms=float(np.percentile(latency, 50)) if latency.size else math.nan,
                p99_latency_ms=float(np.percentile(latency, 99)) if latency.size else math.nan,
                p99_client_latency_ms=float(np.percentile(client, 99)) if client.size else math.nan,
            )
        )
    return out


__all__ = [
    "ACCEPTED",
    "APPLICATION_ERROR",
    "DEVELOPER_ERROR",
    "DROPPED",
    "ERROR",
    "FIELDS",
    "INTERNAL_ERROR",
    "NOT_FOUND",
    "STATUS_BY_CODE",
    "SUCCESS",
    "THROTTLED",
    "TIMEOUT",
    "UNAVAILABLE",
    "ActivationRecord",
    "FunctionSummary",
    "RecordWriter",
    "from_activation",
    "read_records",
    "summarise_records",
    "without_activation",
]
