"""The 2019 trace reader: the shipped excerpt, the original full-day layout, and refusal of bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workload.azure2019 import (
    DURATION_VALUE_COLUMNS,
    MEMORY_VALUE_COLUMNS,
    FunctionKey,
    find_trace_files,
    load_trace,
    read_durations,
    read_invocations,
    read_memory,
    select_functions,
)
from workload.errors import TraceFormatError

EXCERPT = Path(__file__).resolve().parents[2] / "data" / "azure-functions-2019-sample"

KEY_HEADER = "HashOwner,HashApp,HashFunction,Trigger"


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def invocation_lines(minutes: range, rows: list[tuple[str, str, str, str, list[int]]]) -> list[str]:
    header = KEY_HEADER + "," + ",".join(str(m) for m in minutes)
    return [header] + [",".join([o, a, f, t, *map(str, counts)]) for o, a, f, t, counts in rows]


def full_day(tmp_path: Path, day: int = 3) -> Path:
    """A tiny original-layout day: 3 functions in 2 apps, minutes 1..1440, per-app memory."""
    folder = tmp_path / "azure2019"
    folder.mkdir()
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, size=(3, 1440))
    functions = [("o1", "appA", "f1", "http"), ("o1", "appA", "f2", "timer"), ("o2", "appB", "f3", "queue")]
    write(
        folder / f"invocations_per_function_md.anon.d{day:02d}.csv",
        invocation_lines(range(1, 1441), [(*fn, list(c)) for fn, c in zip(functions, counts, strict=True)]),
    )
    write(
        folder / f"function_durations_percentiles.anon.d{day:02d}.csv",
        [
            "HashOwner,HashApp,HashFunction," + ",".join(DURATION_VALUE_COLUMNS),
            "o1,appA,f1,100,50,1.0,900.0,1,2,50,80,120,400,900",
            "o1,appA,f2,5,10,0.0,20.0,0,0,1,0,2,9,20",
            "o2,appB,f3,1000,7,800.0,1500.0,800,800,900,1000,1100,1490,1500",
        ],
    )
    write(
        folder / f"app_memory_percentiles.anon.d{day:02d}.csv",
        [
            "HashOwner,HashApp," + ",".join(MEMORY_VALUE_COLUMNS),
            "o1,appA,100,200,150,160,180,200,220,240,300,320",
            "o2,appB,40,90,80,80,85,90,95,100,110,120",
        ],
    )
    return folder


def test_the_shipped_excerpt_parses_to_400_functions_over_minutes_480_to_959():
    trace = load_trace(EXCERPT)
    inv = trace.invocations
    assert trace.files.day is None
    assert inv.n_functions == 400
    assert (inv.first_minute, inv.end_minute - 1) == (480, 959)
    assert inv.counts.dtype == np.int32 and inv.counts.shape == (400, 480)
    assert inv.total_invocations() == 1_072_903
    assert len(trace.durations) == 400 and len(trace.memory) == 400


def test_the_excerpt_memory_file_is_read_as_per_function():
    table = read_memory(EXCERPT / "memory.csv")
    assert table.per_function
    assert len(table.rows) == 400


def test_a_selector_keeps_only_the_chosen_functions_and_still_counts_all_rows():
    everything = read_invocations(EXCERPT / "invocations.csv")
    chosen = {everything.keys[3].function, everything.keys[250].function}
    some = read_invocations(EXCERPT / "invocations.csv", select_functions(chosen))
    assert some.rows_in_file == 400
    assert [k.function for k in some.keys] == [everything.keys[3].function, everything.keys[250].function]
    np.testing.assert_array_equal(some.counts, everything.counts[[3, 250]])


def test_a_predicate_can_select_on_the_counts_of_a_row():
    busy = read_invocations(EXCERPT / "invocations.csv", lambda row: int(row.counts.sum()) >= 480 * 60)
    assert busy.n_functions == 9  # the excerpt's functions averaging >= 1 invocation per second
    assert (busy.counts.sum(axis=1) >= 480 * 60).all()


def test_the_original_layout_is_found_by_day_and_parsed_with_minutes_1_to_1440(tmp_path):
    folder = full_day(tmp_path, day=3)
    trace = load_trace(folder, day=3)
    assert trace.files.day == 3
    assert (trace.invocations.first_minute, trace.invocations.n_minutes) == (1, 1440)
    assert trace.invocations.n_functions == 3
    duration = trace.durations[FunctionKey("o1", "appA", "f1")]
    assert (duration.p50_ms, duration.p99_ms, duration.count) == (80.0, 400.0, 50)


def test_original_per_app_memory_is_divided_among_the_apps_functions(tmp_path):
    trace = load_trace(full_day(tmp_path))
    assert trace.memory[FunctionKey("o1", "appA", "f1")].pct99_mb == pytest.approx(300 / 2)
    assert trace.memory[FunctionKey("o2", "appB", "f3")].pct99_mb == pytest.approx(110)


def test_a_directory_with_several_days_needs_a_day(tmp_path):
    folder = full_day(tmp_path, day=3)
    for path in list(folder.iterdir()):
        (folder / path.name.replace("d03", "d04")).write_bytes(path.read_bytes())
    with pytest.raises(TraceFormatError, match=r"days \[3, 4\]"):
        find_trace_files(folder)
    assert find_trace_files(folder, day=4).day == 4


def test_a_directory_with_neither_layout_is_refused(tmp_path):
    with pytest.raises(TraceFormatError, match="neither the excerpt files"):
        find_trace_files(tmp_path)


GOOD_ROW = ("o", "a", "f", "http")

BAD_INVOCATIONS = [
    pytest.param(
        ["HashOwner,HashApp,Trigger,1,2", "o,a,http,1,2"],
        1,
        "HashFunction",
        "missing column",
        id="missing-column",
    ),
    pytest.param(
        invocation_lines(range(1, 4), [(*GOOD_ROW, [1, 2, 3])]) + ["o,a,g,http,1,2"],
        3,
        "3",
        "ragged row",
        id="ragged-row-short",
    ),
    pytest.param(
        invocation_lines(range(1, 3), [(*GOOD_ROW, [1, 2])]) + ["o,a,g,http,1,2,9"],
        3,
        "#7",
        "ragged row",
        id="ragged-row-long",
    ),
    pytest.param(
        [*invocation_lines(range(7, 10), [(*GOOD_ROW, [1, 2, 3])]), "o,a,g,http,4,x5,6"],
        3,
        "8",
        "not a whole number",
        id="non-numeric-count",
    ),
    pytest.param(
        [*invocation_lines(range(1, 4), [(*GOOD_ROW, [1, 2, 3])]), "o,a,g,http,4,5,1.5"],
        3,
        "3",
        "not a whole number",
        id="fractional-count",
    ),
    pytest.param(
        invocation_lines(range(1, 4), [(*GOOD_ROW, [1, 2, 3]), ("o", "a", "g", "http", [0, -1, 0])]),
        3,
        "2",
        "negative",
        id="negative-count",
    ),
    pytest.param([KEY_HEADER + ",1,3", "o,a,f,http,1,2"], 1, "3", "consecutive", id="gap-in-minutes"),
    pytest.param([KEY_HEADER + ",1,x", "o,a,f,http,1,2"], 1, "x", "minute number", id="non-minute-column"),
    pytest.param([KEY_HEADER + ",1"], 1, "", "no data rows", id="header-only"),
]


@pytest.mark.parametrize(("lines", "line", "column", "problem"), BAD_INVOCATIONS)
def test_a_bad_invocations_file_is_refused_naming_file_line_and_column(
    tmp_path, lines, line, column, problem
):
    path = write(tmp_path / "invocations.csv", lines)
    with pytest.raises(TraceFormatError) as caught:
        read_invocations(path)
    error = caught.value
    assert (error.path, error.line, error.column) == (str(path), line, column)
    assert problem in str(error)
    assert str(path) in str(error) and f":{line}" in str(error)


def test_an_empty_file_is_refused(tmp_path):
    path = tmp_path / "invocations.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(TraceFormatError, match="empty") as caught:
        read_invocations(path)
    assert caught.value.path == str(path)


DURATION_HEADER = "HashOwner,HashApp,HashFunction," + ",".join(DURATION_VALUE_COLUMNS)

BAD_DURATIONS = [
    pytest.param(
        [DURATION_HEADER.replace(",percentile_Average_99", ""), "o,a,f,1,1,1,1,1,1,1,1,1,1"],
        1,
        "percentile_Average_99",
        "missing column",
        id="missing-column",
    ),
    pytest.param(
        [DURATION_HEADER, "o,a,f,1,1,1,1,1,1,1,1,1,1,1", "o,a,g,1,1,1,1,1,1,1,1,1,1"],
        3,
        "percentile_Average_100",
        "ragged row",
        id="ragged-row",
    ),
    pytest.param(
        [DURATION_HEADER, "o,a,f,1,1,1,1,1,1,1,abc,1,1,1"],
        2,
        "percentile_Average_50",
        "not a number",
        id="non-numeric",
    ),
    pytest.param(
        [DURATION_HEADER, "o,a,f,1,1,1,1,1,1,1,1,1,-4,1"],
        2,
        "percentile_Average_99",
        "negative",
        id="negative",
    ),
    pytest.param(
        [DURATION_HEADER, "o,a,f,1,2.5,1,1,1,1,1,1,1,1,1"], 2, "Count", "whole number", id="fractional-count"
    ),
    pytest.param(
        [DURATION_HEADER, "o,a,f,1,1,1,1,1,1,1,1,1,1,1", "o,a,f,1,1,1,1,1,1,1,1,1,1,1"],
        3,
        "HashFunction",
        "duplicate",
        id="duplicate-function",
    ),
]


@pytest.mark.parametrize(("lines", "line", "column", "problem"), BAD_DURATIONS)
def test_a_bad_durations_file_is_refused_naming_file_line_and_column(tmp_path, lines, line, column, problem):
    path = write(tmp_path / "durations.csv", lines)
    with pytest.raises(TraceFormatError) as caught:
        read_durations(path)
    assert (caught.value.path, caught.value.line, caught.value.column) == (str(path), line, column)
    assert problem in str(caught.value)


MEMORY_HEADER = "HashOwner,HashApp," + ",".join(MEMORY_VALUE_COLUMNS)


@pytest.mark.parametrize(
    ("lines", "line", "column", "problem"),
    [
        pytest.param(
            [MEMORY_HEADER.replace(",AverageAllocatedMb_pct99", ""), "o,a,1,1,1,1,1,1,1,1,1"],
            1,
            "AverageAllocatedMb_pct99",
            "missing column",
            id="missing-column",
        ),
        pytest.param(
            [MEMORY_HEADER, "o,a,1,1,1,1,1,1,1,1,1,nan"],
            2,
            "AverageAllocatedMb_pct100",
            "finite",
            id="not-finite",
        ),
        pytest.param(
            [MEMORY_HEADER, "o,a,1,1,1,1,-1,1,1,1,1,1"],
            2,
            "AverageAllocatedMb_pct25",
            "negative",
            id="negative",
        ),
    ],
)
def test_a_bad_memory_file_is_refused_naming_file_line_and_column(tmp_path, lines, line, column, problem):
    path = write(tmp_path / "memory.csv", lines)
    with pytest.raises(TraceFormatError) as caught:
        read_memory(path)
    assert (caught.value.path, caught.value.line, caught.value.column) == (str(path), line, column)
    assert problem in str(caught.value)
