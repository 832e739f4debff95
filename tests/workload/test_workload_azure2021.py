"""The 2021 per-invocation trace reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workload.arrivals import TraceArrivalStream
from workload.azure2021 import read_trace_2021
from workload.errors import TraceFormatError

SAMPLE = (
    Path(__file__).resolve().parents[2]
    / "data"
    / "azure-functions-2021-sample"
    / "AzureFunctionsInvocationTraceForTwoWeeksJan2021.csv"
)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_start_times_are_end_minus_duration_and_sorted(tmp_path):
    path = write(
        tmp_path / "t.csv",
        [
            "app,func,end_timestamp,duration",
            "A,f,10.0,2.0",  # starts at 8
            "A,g,5.0,4.5",  # starts at 0.5
            "B,f,9.0,0.0",  # starts at 9; same func id as A/f but another app: another function
        ],
    )
    trace = read_trace_2021(path)
    np.testing.assert_allclose(trace.start_s, [0.5, 8.0, 9.0])
    np.testing.assert_allclose(trace.duration_s, [4.5, 2.0, 0.0])
    assert trace.functions == (("A", "f"), ("A", "g"), ("B", "f"))
    np.testing.assert_array_equal(trace.fn, [1, 0, 2])


def test_the_shipped_sample_parses_sorted_with_998_invocations_of_49_functions():
    trace = read_trace_2021(SAMPLE)
    assert trace.n_invocations == 998 and len(trace.functions) == 49
    assert np.all(np.diff(trace.start_s) >= 0)
    assert trace.start_s[0] == pytest.approx(0.0015, abs=1e-4)
    assert trace.start_s[-1] == pytest.approx(6464.8, abs=0.1)


def test_per_minute_counts_add_up_to_the_invocations():
    trace = read_trace_2021(SAMPLE)
    first, counts = trace.counts_per_minute()
    assert first == 0
    assert counts.sum() == trace.n_invocations
    assert counts.shape == (49, 108)  # 6464.8 s is in minute 107


def test_the_trace_replays_its_own_arrival_times_in_windows():
    trace = read_trace_2021(SAMPLE)
    stream = TraceArrivalStream(trace)
    parts = [w.times_s for w in stream.windows(37.0)]
    np.testing.assert_array_equal(np.concatenate(parts), trace.start_s)
    assert stream.total_invocations() == 998
    times, fn = stream.window(0.0, 60.0)
    np.testing.assert_array_equal(stream.window_durations(0.0, 60.0), trace.duration_s[: times.size])
    np.testing.assert_array_equal(fn, trace.fn[: times.size])


@pytest.mark.parametrize(
    ("lines", "line", "column", "problem"),
    [
        pytest.param(
            ["app,func,end_timestamp", "A,f,1"], 1, "duration", "missing column", id="missing-column"
        ),
        pytest.param(
            ["app,func,end_timestamp,duration", "A,f,1,0.5", "A,f,2"],
            3,
            "duration",
            "ragged",
            id="ragged-row",
        ),
        pytest.param(
            ["app,func,end_timestamp,duration", "A,f,1,zero"], 2, "duration", "not a number", id="non-numeric"
        ),
        pytest.param(
            ["app,func,end_timestamp,duration", "A,f,-1,0"], 2, "end_timestamp", "negative", id="negative"
        ),
        pytest.param(
            ["app,func,end_timestamp,duration", ",f,1,0"], 2, "app", "empty identifier", id="empty-app"
        ),
    ],
)
def test_a_bad_2021_file_is_refused_naming_file_line_and_column(tmp_path, lines, line, column, problem):
    path = write(tmp_path / "t.csv", lines)
    with pytest.raises(TraceFormatError) as caught:
        read_trace_2021(path)
    assert (caught.value.path, caught.value.line, caught.value.column) == (str(path), line, column)
    assert problem in str(caught.value)
