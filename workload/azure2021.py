"""Reader for the Azure Functions Invocation Trace 2021 (Zhang et al., SOSP 2021).

One row per invocation: ``app, func, end_timestamp, duration`` (seconds from the trace start). The
start of an invocation, its arrival, is ``end_timestamp - duration``. ``func`` is unique only within
its app, so a function is the pair (app, func).
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike

import numpy as np

from workload.errors import CheckedCsv, TraceFormatError

COLUMNS = ("app", "func", "end_timestamp", "duration")
"""Required columns of a 2021 trace file."""

MAX_TIMESTAMP_S = 366 * 86_400.0
"""Latest ``end_timestamp`` accepted, s from the trace start: a year. The published trace spans two
weeks; the per-minute count matrix of a longer span grows with it (functions x minutes) and of a
mistyped timestamp (a Unix time, say) would not fit in memory."""


@dataclass(frozen=True, eq=False)
class InvocationTrace2021:
    """Every invocation of a 2021 trace file, sorted by start time."""

    path: str
    """File the rows were read from."""
    functions: tuple[tuple[str, str], ...]
    """(app, func) of each function, in order of first appearance in the file."""
    start_s: np.ndarray
    """Start (arrival) time of each invocation, float64 s from the trace start, ascending."""
    duration_s: np.ndarray
    """Duration of each invocation, float64 s (same order as ``start_s``)."""
    fn: np.ndarray
    """Index into ``functions`` of each invocation, int32 (same order as ``start_s``)."""

    @property
    def n_invocations(self) -> int:
        """Rows in the trace."""
        return int(self.start_s.size)

    def function_name(self, index: int) -> str:
        """``app/func`` of a function index."""
        app, func = self.functions[index]
        return f"{app}/{func}"

    def counts_per_minute(self, origin_s: float = 0.0) -> tuple[int, np.ndarray]:
        """Invocations per function and minute, for the per-minute tools (sampler, ArrivalStream).

        Returns the first minute index (``floor((start - origin_s) / 60)`` of the earliest start) and
        an int32 matrix of shape (functions, minutes).
        """
        if self.start_s.size == 0:
            return 0, np.zeros((len(self.functions), 0), dtype=np.int32)
        minute = np.floor((self.start_s - origin_s) / 60.0).astype(np.int64)
        first = int(minute.min())
        n_minutes = int(minute.max()) - first + 1
        counts = np.zeros((len(self.functions), n_minutes), dtype=np.int32)
        np.add.at(counts, (self.fn, minute - first), 1)
        return first, counts


def read_trace_2021(path: str | PathLike[str]) -> InvocationTrace2021:
    """Read a 2021 invocation trace; refuse missing columns, ragged rows, bad or negative numbers."""
    table = CheckedCsv(path, COLUMNS)
    app_at, func_at = table.index["app"], table.index["func"]
    index: dict[tuple[str, str], int] = {}
    fn: list[int] = []
    end: list[float] = []
    duration: list[float] = []
    for row in table.rows():
        pair = (row[app_at], row[func_at])
        for name, value in zip(("app", "func"), pair, strict=True):
            if not value:
                raise TraceFormatError(table.path, table.line, name, "empty identifier")
        end_s = table.number(row, "end_timestamp")
        if end_s > MAX_TIMESTAMP_S:
            raise TraceFormatError(table.path, table.line, "end_timestamp",
                                   f"{end_s:g} s is more than a year ({MAX_TIMESTAMP_S:g} s) after the trace start")
        duration_s = table.number(row, "duration")
        fn.append(index.setdefault(pair, len(index)))
        end.append(end_s)
        duration.append(duration_s)
    end_array = np.asarray(end, dtype=np.float64)
    duration_array = np.asarray(duration, dtype=np.float64)
    start = end_array - duration_array
    # A stable sort keeps file order among equal start times, so the result is reproducible.
    order = np.argsort(start, kind="stable")
    return InvocationTrace2021(
        path=str(path),
        functions=tuple(index),
        start_s=start[order],
        duration_s=duration_array[order],
        fn=np.asarray(fn, dtype=np.int32)[order],
    )
