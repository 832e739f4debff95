"""Hybrid histogram (Shahrad et al. 2020): pre-warm at the 5th percentile of idle times, keep until the 99th."""

from __future__ import annotations

import numpy as np
import pytest
from baseline_fixtures import MU, snapshot

from policies.baselines.hybrid_histogram import (
    FROM_FIXED,
    FROM_HISTOGRAM,
    FROM_OUT_OF_RANGE,
    HybridHistogramPolicy,
)
from policies.types import Decisions

PERIOD_S = 1800.0  # one invocation every 30 minutes
TICK_S = 10.0


def _periodic(periods: int) -> tuple[HybridHistogramPolicy, float]:
    """Replay ``periods`` + 1 invocations, PERIOD_S apart; return the policy and the last arrival time."""
    policy = HybridHistogramPolicy()
    last = 0.0
    for k in range(periods + 1):
        last = PERIOD_S * (k + 1)
        policy.decide(snapshot(last, arrivals=1.0, completions=1.0, mean_exec_s=0.2), MU)
    return policy, last


def _quiet_until(policy: HybridHistogramPolicy, start_s: float, until_s: float) -> Decisions:
    """Quiet ticks from ``start_s`` to ``until_s``; the decision of the last one."""
    decisions = Decisions.none(1)
    time_s = start_s
    while time_s < until_s - 1e-9:
        time_s += TICK_S
        decisions = policy.decide(snapshot(time_s), MU)
    return decisions


def test_a_periodic_function_gets_a_window_around_its_period_from_the_histogram() -> None:
    policy, _ = _periodic(periods=12)
    windows = policy.windows()
    # Idle time 1790 s lands in the 29th minute bin [1740 s, 1800 s): head 1740 s, tail 1800 s.
    assert windows.source[0] == FROM_HISTOGRAM
    assert windows.prewarm_s[0] == pytest.approx(0.9 * 1740.0)
    assert windows.keep_until_s[0] == pytest.approx(1.1 * 1800.0)


@pytest.mark.parametrize(
    ("idle_s", "expected"),
    [(10.0, 0), (1560.0, 0), (1570.0, 1), (1980.0, 1), (1990.0, 0)],
    ids=["unloaded-after-the-call", "before-prewarm", "prewarmed", "end-of-keep-alive", "after-keep-alive"],
)
def test_a_periodic_function_is_unloaded_between_calls_and_prewarmed_before_the_next(
    idle_s: float, expected: int
) -> None:
    policy, last = _periodic(periods=12)
    decisions = _quiet_until(policy, last, last + idle_s)
    assert decisions.containers[0] == expected, decisions.reasons[0]


@pytest.mark.parametrize(
    ("idle_s", "expected"), [(600.0, 1), (610.0, 0)], ids=["within-ten-minutes", "after-ten-minutes"]
)
def test_too_few_samples_fall_back_to_a_fixed_ten_minute_keep_alive(idle_s: float, expected: int) -> None:
    policy, last = _periodic(periods=3)
    assert policy.windows().source[0] == FROM_FIXED
    assert _quiet_until(policy, last, last + idle_s).containers[0] == expected


def test_idle_times_spread_evenly_over_the_range_are_not_representative() -> None:
    policy = HybridHistogramPolicy()
    policy.decide(snapshot(10.0), MU)
    spread = np.arange(0.0, 4 * 3600.0, 60.0) + 30.0  # one idle time in every bin: CV 0
    for value in spread:
        policy.record_idle_times(np.array([0]), np.array([value]))
    windows = policy.windows()
    assert policy.samples[0] == 240
    assert windows.source[0] == FROM_FIXED
    assert windows.keep_until_s[0] == 600.0


def test_mostly_out_of_range_idle_times_use_the_median_forecast_with_a_15_percent_margin() -> None:
    policy = HybridHistogramPolicy()
    policy.decide(snapshot(10.0), MU)
    for value in [20000.0, 21600.0, 23000.0, 60.0]:
        policy.record_idle_times(np.array([0]), np.array([value]))
    windows = policy.windows()
    assert windows.source[0] == FROM_OUT_OF_RANGE
    assert windows.prewarm_s[0] == pytest.approx(0.85 * 21600.0)
    assert windows.keep_until_s[0] == pytest.approx(1.15 * 21600.0)


def test_a_busy_function_keeps_enough_containers_for_its_concurrency() -> None:
    policy = HybridHistogramPolicy()
    decisions = policy.decide(
        snapshot(10.0, arrivals=50.0, completions=50.0, mean_exec_s=0.5, in_flight=1.0), MU
    )
    assert decisions.containers[0] == 3  # 5/s x 0.5 s = 2.5 concurrent


def test_a_function_never_invoked_has_no_container() -> None:
    decisions = HybridHistogramPolicy().decide(snapshot(10.0), MU)
    assert decisions.valid[0]
    assert decisions.containers[0] == 0


def test_an_idle_time_spanning_an_unobserved_tick_is_not_recorded() -> None:
    policy = HybridHistogramPolicy()
    policy.decide(snapshot(10.0, arrivals=1.0), MU)
    policy.decide(snapshot(20.0, valid=np.array([False])), MU)
    policy.decide(snapshot(30.0, arrivals=1.0), MU)
    assert policy.samples[0] == 0
    policy.decide(snapshot(40.0, arrivals=1.0), MU)
    assert policy.samples[0] == 1
    assert policy.counts[0, 0] == 1


def _random_ticks(seed: int, n: int = 40, ticks: int = 400):
    """Snapshots of ``n`` functions with random, mostly sparse arrivals (some periodic, some rare)."""
    rng = np.random.default_rng(seed)
    names = tuple(f"f{i}" for i in range(n))
    rate = rng.choice([0.002, 0.02, 0.2, 1.0], size=n)
    for t in range(1, ticks + 1):
        arrivals = (rng.random(n) < rate).astype(float)
        yield snapshot(t * TICK_S, names, arrivals=arrivals, completions=arrivals, mean_exec_s=0.2,
                       valid=rng.random(n) > 0.02)


def test_windows_kept_between_ticks_are_those_computed_afresh_and_a_silent_policy_decides_alike() -> None:
    kept, silent = HybridHistogramPolicy(), HybridHistogramPolicy(explain=False)
    for snap in _random_ticks(seed=4):
        told, quiet = kept.decide(snap, MU), silent.decide(snap, MU)
        np.testing.assert_array_equal(told.containers, quiet.containers)
        np.testing.assert_array_equal(told.valid, quiet.valid)
        fresh = kept._compute_windows(np.arange(len(kept.samples)))
        windows = kept.windows()
        np.testing.assert_array_equal(windows.prewarm_s, fresh.prewarm_s)
        np.testing.assert_array_equal(windows.keep_until_s, fresh.keep_until_s)
        assert windows.source.tolist() == fresh.source.tolist()
    assert (kept.samples > 0).sum() > 20 and any(r.startswith("hybrid-histogram: idle") for r in told.reasons)
    assert set(quiet.reasons) <= {"hybrid-histogram", "no data"}


class _EveryWindowEveryTick(HybridHistogramPolicy):
    """Brings every function's window up to date each tick, busy or not."""

    def windows(self, needed=None):
        return super().windows()


def test_windows_left_stale_for_busy_functions_change_no_decision() -> None:
    """A busy function's window is computed only when it next goes idle; every decision and every
    window read afterwards is the one a policy computing them all each tick makes."""
    lazy, eager = HybridHistogramPolicy(), _EveryWindowEveryTick()
    rng = np.random.default_rng(9)
    skipped = 0
    for snap in _random_ticks(seed=5):
        n = len(snap.functions)
        busy = np.where(rng.random(n) < 0.4, rng.integers(1, 4, n), 0).astype(float)
        snap = snapshot(snap.time_s, snap.functions.names, arrivals=snap.functions.arrivals,
                        completions=snap.functions.completions, mean_exec_s=0.2, in_flight=busy,
                        valid=snap.functions.valid)
        mine, theirs = lazy.decide(snap, MU), eager.decide(snap, MU)
        np.testing.assert_array_equal(mine.containers, theirs.containers)
        assert list(mine.reasons) == list(theirs.reasons)
        skipped += int(lazy._stale.sum())
    assert skipped > 0  # some windows were left for later
    late, fresh = lazy.windows(), eager.windows()
    np.testing.assert_array_equal(late.prewarm_s, fresh.prewarm_s)
    np.testing.assert_array_equal(late.keep_until_s, fresh.keep_until_s)
    assert late.source.tolist() == fresh.source.tolist()


def test_windows_match_the_percentiles_of_each_histogram_read_directly():
    """Head and tail bins, the coefficient of variation and the windows, against a row-by-row reading
    of the counts as shares of their total (as the paper states them), for histograms of every shape:
    empty, one bin, two bins, skewed, spread over the range, too few samples."""
    rng = np.random.default_rng(11)
    policy = HybridHistogramPolicy()
    cfg = policy.config
    n = 300
    policy._grow(n)
    shapes = rng.integers(0, 6, n)  # 4: too few samples to trust; 5: never invoked
    for k in range(60):
        rows = np.flatnonzero((rng.random(n) < 0.8) & (shapes < 5) & ((shapes != 4) | (k < 5)))
        idle = np.where(shapes[rows] == 0, 0.0,
               np.where(shapes[rows] == 1, rng.choice([120.0, 7200.0], rows.size),
               np.where(shapes[rows] == 2, rng.exponential(600.0, rows.size),
               np.where(shapes[rows] == 3, rng.uniform(0, cfg.range_s, rows.size), 600.0))))
        policy.record_idle_times(rows, idle)
    counts = policy.counts
    np.testing.assert_array_equal(policy._square_sum, (counts * counts).sum(axis=1))
    windows = policy.windows()
    for i in range(n):
        row = counts[i].astype(float)
        total = row.sum()
        if total == 0:
            assert windows.source[i] == FROM_FIXED
            continue
        share = np.cumsum(row) / total
        head = next(b for b in range(cfg.bins) if share[b] >= cfg.head_percentile - 1e-9)
        tail = next(b for b in range(cfg.bins) if share[b] >= cfg.tail_percentile - 1e-9)
        cv = row.std() / row.mean()
        if policy.samples[i] >= cfg.min_samples and cv > cfg.cv_threshold:
            assert windows.source[i] == FROM_HISTOGRAM
            assert windows.prewarm_s[i] == pytest.approx((1 - cfg.prewarm_margin) * head * cfg.bin_s)
            assert windows.keep_until_s[i] == pytest.approx((1 + cfg.keep_alive_margin) * (tail + 1) * cfg.bin_s)
        else:
            assert windows.source[i] == FROM_FIXED
    assert {FROM_HISTOGRAM, FROM_FIXED} <= set(windows.source.tolist())
