"""Arrival streams generated from per-minute counts: exact counts, uniform times, slicing-invariance."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

from workload.arrivals import ArrivalStream

#: Significance level of the uniformity KS tests: a correct generator fails one with probability 0.1%.
KS_ALPHA = 1e-3

MODES = [pytest.param("poisson", id="poisson"), pytest.param("equidistant", id="equidistant")]


def counts_matrix(seed: int = 0, functions: int = 20, minutes: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rates = rng.choice([0, 1, 5, 40, 300], size=functions)
    return rng.poisson(rates[:, None], size=(functions, minutes))


def everything(stream: ArrivalStream) -> tuple[np.ndarray, np.ndarray]:
    return stream.window(0.0, stream.duration_s)


@dataclass(frozen=True)
class FakeFunction:
    counts_per_minute: np.ndarray
    first_minute: int


@pytest.mark.parametrize("mode", MODES)
def test_the_same_seed_gives_the_same_arrivals(mode):
    a = everything(ArrivalStream.from_counts(counts_matrix(), mode=mode, seed=11))
    b = everything(ArrivalStream.from_counts(counts_matrix(), mode=mode, seed=11))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("mode", MODES)
def test_a_different_seed_gives_different_arrivals(mode):
    a = everything(ArrivalStream.from_counts(counts_matrix(), mode=mode, seed=11))
    b = everything(ArrivalStream.from_counts(counts_matrix(), mode=mode, seed=12))
    assert a[0].size == b[0].size
    assert not np.array_equal(a[0], b[0])


@pytest.mark.parametrize("mode", MODES)
def test_every_minute_keeps_each_functions_trace_count_exactly(mode):
    counts = counts_matrix(seed=3)
    times, fn = everything(ArrivalStream.from_counts(counts, mode=mode, seed=5))
    minute = (times // 60).astype(int)
    regenerated = np.zeros_like(counts)
    np.add.at(regenerated, (fn, minute), 1)
    np.testing.assert_array_equal(regenerated, counts)
    assert times.dtype == np.float64 and fn.dtype == np.int32
    assert np.all(np.diff(times) >= 0)


def test_poisson_times_are_uniform_within_the_minute_by_a_ks_test():
    # One function with 4,000 arrivals in each of 3 minutes: KS at alpha = 1e-3 per minute.
    stream = ArrivalStream.from_counts(np.full((1, 3), 4000), mode="poisson", seed=2)
    for index in range(3):
        times, _ = stream.minute(index)
        fractions = times / 60.0 - index
        result = stats.kstest(fractions, "uniform")
        assert result.pvalue > KS_ALPHA, f"minute {index}: KS p = {result.pvalue:.2e}"


def test_poisson_times_of_a_minute_are_not_biased_toward_its_start():
    # A guard that the KS test above can fail: the first half-minute holds about half the arrivals.
    times, _ = ArrivalStream.from_counts(np.full((1, 1), 10_000), mode="poisson", seed=4).minute(0)
    share = np.mean(times < 30.0)
    assert abs(share - 0.5) < 4 * np.sqrt(0.25 / 10_000)


def test_equidistant_arrivals_of_a_function_are_evenly_spaced():
    times, fn = ArrivalStream.from_counts(np.array([[6], [4]]), mode="equidistant", seed=1).minute(0)
    for f, count in ((0, 6), (1, 4)):
        own = times[fn == f]
        assert own.size == count
        np.testing.assert_allclose(np.diff(own), 60.0 / count)
        assert 0.0 <= own[0] < 60.0 / count


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cuts_seed", [0, 1, 2], ids=["cuts-a", "cuts-b", "cuts-c"])
def test_slicing_into_windows_does_not_change_the_stream(mode, cuts_seed):
    counts = counts_matrix(seed=8)
    whole = everything(ArrivalStream.from_counts(counts, mode=mode, seed=21))
    sliced_stream = ArrivalStream.from_counts(counts, mode=mode, seed=21, cache_minutes=2)
    duration = sliced_stream.duration_s
    rng = np.random.default_rng(cuts_seed)
    cuts = np.concatenate([[0.0], np.sort(rng.uniform(0, duration, 40)), [60.0, 600.0, duration]])
    cuts = np.unique(cuts)
    parts = [sliced_stream.window(t0, t1) for t0, t1 in itertools.pairwise(cuts)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole[0])
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole[1])


def test_reading_forward_generates_each_minute_once():
    stream = ArrivalStream.from_counts(counts_matrix(minutes=12), seed=0, cache_minutes=2)
    for _ in stream.windows(7.0):
        pass
    assert stream.minutes_generated == 12


def test_fixed_length_windows_tile_the_stream_and_cover_every_invocation():
    counts = counts_matrix(seed=9, minutes=10)
    stream = ArrivalStream.from_counts(counts, seed=0)
    windows = list(stream.windows(45.0))
    assert windows[0].start_s == 0.0 and windows[-1].end_s == stream.duration_s
    assert all(a.end_s == b.start_s for a, b in itertools.pairwise(windows))
    assert sum(w.times_s.size for w in windows) == stream.total_invocations() == counts.sum()
    assert all(((w.times_s >= w.start_s) & (w.times_s < w.end_s)).all() for w in windows)


def test_a_minute_gets_the_same_arrivals_whatever_the_streams_start_minute():
    counts = counts_matrix(seed=6, minutes=20)
    functions = [FakeFunction(row, 100) for row in counts]
    early = ArrivalStream(functions, 100, 120, seed=3)
    late = ArrivalStream(functions, 110, 120, seed=3)
    t_early, f_early = early.minute(12)
    t_late, f_late = late.minute(2)
    np.testing.assert_allclose(t_early - 600.0, t_late)
    np.testing.assert_array_equal(f_early, f_late)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(99, 110, id="before-the-counts"),
        pytest.param(105, 121, id="after-the-counts"),
        pytest.param(110, 110, id="empty"),
    ],
)
def test_a_minute_range_outside_the_counts_is_refused(start, end):
    functions = [FakeFunction(np.ones(20, dtype=np.int32), 100)]
    with pytest.raises(ValueError, match="minutes"):
        ArrivalStream(functions, start, end)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        ArrivalStream.from_counts(np.ones((1, 1)), mode="clumpy")  # type: ignore[arg-type]


def test_bursty_arrivals_keep_every_count_and_bunch_them_into_short_bursts():
    counts = np.array([[120, 0, 7, 60], [3, 40, 40, 1]])
    stream = ArrivalStream(
        [FakeFunction(row, 0) for row in counts], mode="bursty", seed=5, burst_count=3, burst_width_s=2.0)
    times, fn = stream.window(0.0, stream.duration_s)
    assert np.bincount(fn, minlength=2).tolist() == counts.sum(axis=1).tolist()
    for minute in range(counts.shape[1]):
        for i in range(counts.shape[0]):
            mine = np.sort(times[(fn == i) & (times >= 60 * minute) & (times < 60 * minute + 60)])
            assert mine.size == counts[i, minute]
            # At most 3 bursts of 2 s: 3 intervals of 2 s cover every arrival (a greedy cover is minimal).
            covers, end = 0, -np.inf
            for t in mine:
                if t > end:
                    covers, end = covers + 1, t + 2.0
            assert covers <= 3
    poisson_times, poisson_fn = ArrivalStream([FakeFunction(row, 0) for row in counts], seed=5).window(0.0, 240.0)
    # Within the first minute (120 arrivals of function 0), gaps vary far more than a Poisson process's.
    gaps = np.diff(np.sort(times[(fn == 0) & (times < 60)]))
    poisson_gaps = np.diff(np.sort(poisson_times[(poisson_fn == 0) & (poisson_times < 60)]))
    assert gaps.std() / gaps.mean() > 3 * poisson_gaps.std() / poisson_gaps.mean()


@pytest.mark.parametrize(("burst_count", "burst_width_s"), [(0, 1.0), (2, 0.0), (2, 61.0)])
def test_invalid_burst_settings_are_refused(burst_count, burst_width_s):
    with pytest.raises(ValueError, match="burst"):
        ArrivalStream([FakeFunction(np.array([1]), 0)], mode="bursty", burst_count=burst_count, burst_width_s=burst_width_s)


def test_a_rate_scale_that_would_overflow_a_minutes_int32_count_names_the_function_and_minute():
    from workload.arrivals import MAX_MINUTE_COUNT, CountOverflow, scale_minute_counts

    counts = np.array([[1, 2, 3], [4, 3_000_000, 6]])
    with pytest.raises(CountOverflow, match=r"function b, trace minute 481: 3000000 invocations x rate scale 1000") as info:
        scale_minute_counts(counts, 480, 1000.0, seed=0, names=["a", "b"])
    assert (info.value.row, info.value.minute) == (1, 481)
    # Up to the limit the counts are kept exactly, never wrapped round.
    at_limit = scale_minute_counts(np.array([[MAX_MINUTE_COUNT, 0]]), 0, 1.0, seed=0)
    assert at_limit.astype(np.int32)[0, 0] == MAX_MINUTE_COUNT
