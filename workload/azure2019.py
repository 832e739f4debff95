"""Reader for the Azure Functions Trace 2019 (Shahrad et al., "Serverless in the Wild", ATC 2020).

Two layouts are supported, told apart by file names and headers (see ``docs/workload.md``):

* the original full-day files of the public dataset, one set per day NN = 01..14:
  ``invocations_per_function_md.anon.dNN.csv`` (HashOwner, HashApp, HashFunction, Trigger, 1..1440),
  ``function_durations_percentiles.anon.dNN.csv`` and ``app_memory_percentiles.anon.dNN.csv``
  (memory per *application*);
* the shipped excerpt ``invocations.csv`` / ``durations.csv`` / ``memory.csv`` (the In-Vitro sampler's
  output): minute columns 480..959 only, and memory per *function* (HashFunction prepended, each app's
  memory divided evenly among its functions).

Per-minute counts are streamed row by row; only the rows a caller selects are kept, as one int32
matrix. A full day (~46k functions x 1,440 minutes) is therefore read without holding every count,
let alone every arrival time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from workload.errors import CheckedCsv, TraceFormatError

KEY_COLUMNS = ("HashOwner", "HashApp", "HashFunction")
"""Columns that identify a function in every 2019 file."""

INVOCATION_KEY_COLUMNS = (*KEY_COLUMNS, "Trigger")
"""Leading columns of an invocations file; every other column is a minute label."""

DURATION_VALUE_COLUMNS = (
    "Average",
    "Count",
    "Minimum",
    "Maximum",
    "percentile_Average_0",
    "percentile_Average_1",
    "percentile_Average_25",
    "percentile_Average_50",
    "percentile_Average_75",
    "percentile_Average_99",
    "percentile_Average_100",
)
"""Value columns of a durations file (milliseconds, except ``Count``)."""

MEMORY_VALUE_COLUMNS = (
    "SampleCount",
    "AverageAllocatedMb",
    "AverageAllocatedMb_pct1",
    "AverageAllocatedMb_pct5",
    "AverageAllocatedMb_pct25",
    "AverageAllocatedMb_pct50",
    "AverageAllocatedMb_pct75",
    "AverageAllocatedMb_pct95",
    "AverageAllocatedMb_pct99",
    "AverageAllocatedMb_pct100",
)
"""Value columns of a memory file (MB, except ``SampleCount``)."""

EXCERPT_NAMES = ("invocations.csv", "durations.csv", "memory.csv")
"""File names of the In-Vitro excerpt layout."""

ORIGINAL_PATTERNS = (
    "invocations_per_function_md.anon.d{day:02d}.csv",
    "function_durations_percentiles.anon.d{day:02d}.csv",
    "app_memory_percentiles.anon.d{day:02d}.csv",
)
"""File names of one day of the original dataset."""

_ORIGINAL_DAY = re.compile(r"^invocations_per_function_md\.anon\.d(\d\d)\.csv$")


@dataclass(frozen=True, slots=True)
class FunctionKey:
    """Identity of one function in the 2019 trace (hashes are anonymised, 64 hex characters)."""

    owner: str
    """``HashOwner``: the subscription that owns the app."""
    app: str
    """``HashApp``: the application; its functions share memory in Azure."""
    function: str
    """``HashFunction``: the function, unique within its app."""

    @property
    def trace_id(self) -> str:
        """``owner/app/function``: a stable text form for logs and result files."""
        return f"{self.owner}/{self.app}/{self.function}"


@dataclass(frozen=True, slots=True, eq=False)
class InvocationRow:
    """One function's row of an invocations file, as offered to a selection predicate."""

    key: FunctionKey
    """Which function."""
    trigger: str
    """Azure trigger type (http, timer, queue, event, storage, orchestration, others)."""
    counts: np.ndarray
    """Invocations per minute, int32, one entry per minute column."""
    line: int
    """1-based line of the row in its file."""


Selector = Callable[[InvocationRow], bool]
"""Decides, from one parsed row, whether the reader keeps that function's counts."""


def select_functions(hashes: Collection[str]) -> Selector:
    """A selector keeping the functions whose ``HashFunction`` is in ``hashes``."""
    wanted = frozenset(hashes)
    return lambda row: row.key.function in wanted


@dataclass(frozen=True, eq=False)
class InvocationCounts:
    """Per-minute invocation counts of the selected functions of one invocations file."""

    path: str
    """File the counts were read from."""
    keys: tuple[FunctionKey, ...]
    """The kept functions, in file order."""
    triggers: tuple[str, ...]
    """Trigger of each kept function."""
    first_minute: int
    """Minute label of column 0 (1 for an original day file, 480 for the excerpt)."""
    counts: np.ndarray = field(repr=False)
    """Invocations per minute, int32, shape (functions, minutes)."""
    rows_in_file: int = 0
    """Functions in the file before selection."""
    functions_per_app: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    """Functions of each (owner, app) over the whole file; divides per-app memory among functions."""

    @property
    def n_functions(self) -> int:
        """Kept functions."""
        return int(self.counts.shape[0])

    @property
    def n_minutes(self) -> int:
        """Minute columns."""
        return int(self.counts.shape[1])

    @property
    def end_minute(self) -> int:
        """One past the last minute label (exclusive end)."""
        return self.first_minute + self.n_minutes

    @property
    def minutes(self) -> np.ndarray:
        """Minute labels of the columns."""
        return np.arange(self.first_minute, self.end_minute)

    def total_invocations(self) -> int:
        """All invocations of the kept functions over all minutes."""
        return int(self.counts.sum(dtype=np.int64))


@dataclass(frozen=True)
class DurationStats:
    """Execution-time statistics of one function over one day, ms.

    The percentiles are of per-30-s *averages* (the dataset's aggregation), so the tails are thinner
    than those of single invocations; they exclude cold-start time.
    """

    average_ms: float
    """Mean execution time."""
    count: int
    """Executions the statistics are computed from."""
    minimum_ms: float
    """Smallest execution time."""
    maximum_ms: float
    """Largest execution time."""
    p0_ms: float
    """0th percentile."""
    p1_ms: float
    """1st percentile."""
    p25_ms: float
    """25th percentile."""
    p50_ms: float
    """Median."""
    p75_ms: float
    """75th percentile."""
    p99_ms: float
    """99th percentile."""
    p100_ms: float
    """100th percentile."""


@dataclass(frozen=True)
class MemoryStats:
    """Allocated-memory statistics, MB, for one function (per-app rows are divided among functions)."""

    sample_count: int
    """Memory samples behind the statistics."""
    average_mb: float
    """Mean allocated memory."""
    pct1_mb: float
    """1st percentile."""
    pct5_mb: float
    """5th percentile."""
    pct25_mb: float
    """25th percentile."""
    pct50_mb: float
    """Median."""
    pct75_mb: float
    """75th percentile."""
    pct95_mb: float
    """95th percentile."""
    pct99_mb: float
    """99th percentile."""
    pct100_mb: float
    """Maximum."""

    def divided(self, n: int) -> MemoryStats:
        """These statistics shared evenly by ``n`` functions (the excerpt's per-function convention)."""
        return MemoryStats(
            sample_count=self.sample_count,
            average_mb=self.average_mb / n,
            pct1_mb=self.pct1_mb / n,
            pct5_mb=self.pct5_mb / n,
            pct25_mb=self.pct25_mb / n,
            pct50_mb=self.pct50_mb / n,
            pct75_mb=self.pct75_mb / n,
            pct95_mb=self.pct95_mb / n,
            pct99_mb=self.pct99_mb / n,
            pct100_mb=self.pct100_mb / n,
        )


@dataclass(frozen=True)
class MemoryTable:
    """A memory file: rows keyed per function (excerpt) or per app (original)."""

    path: str
    """File the rows were read from."""
    per_function: bool
    """True when rows are per function (header starts with HashFunction), False when per app."""
    rows: dict[tuple[str, ...], MemoryStats] = field(repr=False)
    """(owner, app, function) -> stats when per function; (owner, app) -> stats when per app."""

    def for_function(self, key: FunctionKey, functions_in_app: int) -> MemoryStats | None:
        """Per-function memory of ``key``; an app row is divided by ``functions_in_app``."""
        if self.per_function:
            return self.rows.get((key.owner, key.app, key.function))
        stats = self.rows.get((key.owner, key.app))
        if stats is None:
            return None
        return stats.divided(max(functions_in_app, 1))


def _minute_columns(table: CheckedCsv) -> tuple[int, int]:
    """Position of the first minute column and the first minute label; checks labels are consecutive."""
    positions = [table.index[name] for name in INVOCATION_KEY_COLUMNS]
    first_position = max(positions) + 1
    if sorted(positions) != list(range(first_position - len(positions), first_position)):
        raise TraceFormatError(
            table.path,
            1,
            INVOCATION_KEY_COLUMNS[0],
            f"the key columns {', '.join(INVOCATION_KEY_COLUMNS)} must be adjacent and precede the minutes",
        )
    if first_position == len(table.header):
        raise TraceFormatError(table.path, 1, "", "no minute columns after Trigger")
    labels: list[int] = []
    for position in range(first_position, len(table.header)):
        name = table.header[position]
        if not name.isdigit():
            raise TraceFormatError(table.path, 1, name, "expected a minute number as column name")
        label = int(name)
        if labels and label != labels[-1] + 1:
            raise TraceFormatError(
                table.path,
                1,
                name,
                f"minute columns must be consecutive; {labels[-1]} is followed by {label}",
            )
        labels.append(label)
    return first_position, labels[0]


def iter_invocation_rows(path: str | PathLike[str]) -> tuple[int, Iterator[InvocationRow]]:
    """Stream an invocations file: the first minute label and an iterator of validated rows."""
    table = CheckedCsv(path, INVOCATION_KEY_COLUMNS)
    first_position, first_minute = _minute_columns(table)
    owner_at, app_at, function_at, trigger_at = (table.index[name] for name in INVOCATION_KEY_COLUMNS)
    width = len(table.header)

    def rows() -> Iterator[InvocationRow]:
        for row in table.rows():
            key = FunctionKey(row[owner_at], row[app_at], row[function_at])
            for name, value in zip(KEY_COLUMNS, (key.owner, key.app, key.function), strict=True):
                if not value:
                    raise TraceFormatError(table.path, table.line, name, "empty identifier")
            counts = table.counts(row, first_position, width)
            yield InvocationRow(key=key, trigger=row[trigger_at], counts=counts, line=table.line)

    return first_minute, rows()


def read_invocations(path: str | PathLike[str], select: Selector | None = None) -> InvocationCounts:
    """Read an invocations file in one pass, keeping only the rows ``select`` accepts (all if None).

    Every row is validated, kept or not: a bad file is refused as a whole.
    """
    first_minute, rows = iter_invocation_rows(path)
    keys: list[FunctionKey] = []
    triggers: list[str] = []
    kept: list[np.ndarray] = []
    per_app: dict[tuple[str, str], int] = {}
    n_rows = 0
    n_minutes = 0
    for row in rows:
        n_rows += 1
        n_minutes = row.counts.size
        app = (row.key.owner, row.key.app)
        per_app[app] = per_app.get(app, 0) + 1
        if select is None or select(row):
            keys.append(row.key)
            triggers.append(row.trigger)
            kept.append(row.counts)
    counts = np.stack(kept) if kept else np.zeros((0, n_minutes), dtype=np.int32)
    return InvocationCounts(
        path=str(path),
        keys=tuple(keys),
        triggers=tuple(triggers),
        first_minute=first_minute,
        counts=counts,
        rows_in_file=n_rows,
        functions_per_app=per_app,
    )


def read_durations(
    path: str | PathLike[str], keys: Collection[FunctionKey] | None = None
) -> dict[FunctionKey, DurationStats]:
    """Read a durations file; keep the rows of ``keys`` only (all if None). Every row is validated."""
    table = CheckedCsv(path, (*KEY_COLUMNS, *DURATION_VALUE_COLUMNS))
    at = [table.index[name] for name in KEY_COLUMNS]
    wanted = None if keys is None else frozenset(keys)
    result: dict[FunctionKey, DurationStats] = {}
    first_line: dict[FunctionKey, int] = {}
    for row in table.rows():
        key = FunctionKey(row[at[0]], row[at[1]], row[at[2]])
        stats = DurationStats(
            average_ms=table.number(row, "Average"),
            count=table.count(row, "Count"),
            minimum_ms=table.number(row, "Minimum"),
            maximum_ms=table.number(row, "Maximum"),
            p0_ms=table.number(row, "percentile_Average_0"),
            p1_ms=table.number(row, "percentile_Average_1"),
            p25_ms=table.number(row, "percentile_Average_25"),
            p50_ms=table.number(row, "percentile_Average_50"),
            p75_ms=table.number(row, "percentile_Average_75"),
            p99_ms=table.number(row, "percentile_Average_99"),
            p100_ms=table.number(row, "percentile_Average_100"),
        )
        if key in first_line:
            raise TraceFormatError(
                table.path,
                table.line,
                "HashFunction",
                f"duplicate function; first seen on line {first_line[key]}",
            )
        first_line[key] = table.line
        if wanted is None or key in wanted:
            result[key] = stats
    return result


def read_memory(path: str | PathLike[str]) -> MemoryTable:
    """Read a memory file, per function (header starts with HashFunction) or per app (original)."""
    probe = CheckedCsv(path, ("HashOwner", "HashApp"))
    per_function = "HashFunction" in probe.index
    probe.close()
    key_columns = KEY_COLUMNS if per_function else KEY_COLUMNS[:2]
    table = CheckedCsv(path, (*key_columns, *MEMORY_VALUE_COLUMNS))
    at = [table.index[name] for name in key_columns]
    rows: dict[tuple[str, ...], MemoryStats] = {}
    first_line: dict[tuple[str, ...], int] = {}
    for row in table.rows():
        key = tuple(row[position] for position in at)
        stats = MemoryStats(
            sample_count=table.count(row, "SampleCount"),
            average_mb=table.number(row, "AverageAllocatedMb"),
            pct1_mb=table.number(row, "AverageAllocatedMb_pct1"),
            pct5_mb=table.number(row, "AverageAllocatedMb_pct5"),
            pct25_mb=table.number(row, "AverageAllocatedMb_pct25"),
            pct50_mb=table.number(row, "AverageAllocatedMb_pct50"),
            pct75_mb=table.number(row, "AverageAllocatedMb_pct75"),
            pct95_mb=table.number(row, "AverageAllocatedMb_pct95"),
            pct99_mb=table.number(row, "AverageAllocatedMb_pct99"),
            pct100_mb=table.number(row, "AverageAllocatedMb_pct100"),
        )
        if key in first_line:
            raise TraceFormatError(
                table.path,
                table.line,
                key_columns[-1],
                f"duplicate key; first seen on line {first_line[key]}",
            )
        first_line[key] = table.line
        rows[key] = stats
    return MemoryTable(path=str(path), per_function=per_function, rows=rows)


@dataclass(frozen=True)
class TraceFiles:
    """The three files of one 2019 trace day."""

    invocations: Path
    """Per-minute invocation counts per function."""
    durations: Path
    """Execution-time percentiles per function."""
    memory: Path
    """Allocated-memory percentiles per app (original) or per function (excerpt)."""
    day: int | None
    """Day 1..14 of the original dataset; None for the excerpt (its day is not recorded)."""


def available_days(directory: str | PathLike[str]) -> list[int]:
    """Days of the original layout whose invocations file is in ``directory``."""
    found = []
    for entry in Path(directory).iterdir():
        match = _ORIGINAL_DAY.match(entry.name)
        if match:
            found.append(int(match.group(1)))
    return sorted(found)


def find_trace_files(directory: str | PathLike[str], day: int | None = None) -> TraceFiles:
    """The files of one trace day in ``directory``: the excerpt names, or the ``dNN`` originals.

    ``day`` picks one of the original days; it may be omitted when the directory holds the excerpt
    or exactly one original day.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise TraceFormatError(folder, 0, "", "not a directory")
    days = available_days(folder)
    excerpt = [folder / name for name in EXCERPT_NAMES]
    if day is None and not days:
        missing = [path.name for path in excerpt if not path.is_file()]
        if missing:
            raise TraceFormatError(
                folder,
                0,
                "",
                f"neither the excerpt files ({', '.join(EXCERPT_NAMES)}: missing "
                f"{', '.join(missing)}) nor original invocations_per_function_md.anon.dNN.csv files",
            )
        return TraceFiles(*excerpt, day=None)
    if day is None:
        if len(days) > 1:
            raise TraceFormatError(folder, 0, "", f"holds days {days}; choose one with day=")
        day = days[0]
    paths = [folder / pattern.format(day=day) for pattern in ORIGINAL_PATTERNS]
    for path in paths:
        if not path.is_file():
            raise TraceFormatError(path, 0, "", f"file of day {day} not found (days present: {days})")
    return TraceFiles(*paths, day=day)


@dataclass(frozen=True)
class AzureTrace2019:
    """One day of the 2019 trace: counts of the selected functions and their durations and memory."""

    files: TraceFiles
    """Where the data came from."""
    invocations: InvocationCounts
    """Per-minute counts of the selected functions."""
    durations: dict[FunctionKey, DurationStats] = field(repr=False)
    """Duration statistics of the selected functions that have a durations row."""
    memory: dict[FunctionKey, MemoryStats] = field(repr=False)
    """Per-function memory statistics of the selected functions that have a memory row."""


def load_trace(
    directory: str | PathLike[str], day: int | None = None, select: Selector | None = None
) -> AzureTrace2019:
    """Read one trace day from ``directory``, keeping the functions ``select`` accepts (all if None)."""
    files = find_trace_files(directory, day)
    invocations = read_invocations(files.invocations, select)
    durations = read_durations(files.durations, invocations.keys)
    table = read_memory(files.memory)
    memory: dict[FunctionKey, MemoryStats] = {}
    for key in invocations.keys:
        stats = table.for_function(key, invocations.functions_per_app.get((key.owner, key.app), 1))
        if stats is not None:
            memory[key] = stats
    return AzureTrace2019(files=files, invocations=invocations, durations=durations, memory=memory)
