"""The helpers the baselines share: sliding windows of per-function samples, and count rounding."""

from __future__ import annotations

import numpy as np
import pytest

from policies.baselines._common import TimedColumns, ceil_count, column_nanmax, column_nanmean


def test_a_window_holds_the_ticks_that_ended_within_it_and_pads_new_functions_with_no_data() -> None:
    history = TimedColumns(span_s=60.0)
    history.append(10.0, np.array([1.0]))
    history.append(20.0, np.array([2.0, 5.0]))
    history.append(70.0, np.array([3.0, 6.0]))
    window = history.window(70.0, 60.0, 2)
    assert window.tolist()[0] == [2.0, 5.0]  # the tick ending at 10 s is exactly 60 s old: out
    assert window.tolist()[1] == [3.0, 6.0]
    assert history.times_s == [20.0, 70.0]
    padded = history.window(70.0, 60.0, 3)
    assert np.isnan(padded[:, 2]).all()


def test_a_window_shorter_than_a_tick_still_sees_the_tick_that_just_ended() -> None:
    history = TimedColumns(span_s=0.0)
    history.append(10.0, np.array([4.0]))
    assert history.window(10.0, 0.0, 1).tolist() == [[4.0]]
    history.append(20.0, np.array([7.0]))
    assert history.window(20.0, 6.0, 1).tolist() == [[7.0]]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(14.0 / 0.7, 20), (20.001, 21), (0.0, 0), (1e-12, 0), (0.3, 1)],
    ids=["float-noise-above-an-integer", "real-excess", "zero", "noise-above-zero", "fraction"],
)
def test_counts_round_up_but_not_on_float_noise(value: float, expected: int) -> None:
    assert ceil_count(np.array([value])).tolist() == [expected]


def test_column_statistics_ignore_missing_samples_and_report_no_data_for_empty_columns() -> None:
    samples = np.array([[1.0, np.nan], [3.0, np.nan]])
    assert column_nanmean(samples)[0] == 2.0
    assert column_nanmax(samples)[0] == 3.0
    assert np.isnan(column_nanmean(samples)[1])
    assert np.isnan(column_nanmax(samples)[1])
