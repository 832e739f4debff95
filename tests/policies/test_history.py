"""A function's longer arrival history as features (policies.history)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_snapshot

from policies.history import GAPS_TRUSTED, HISTORY_FEATURES, HORIZON_MIN, ArrivalHistory

TICK = 10.0


def run(history: ArrivalHistory, periods_s: list[float | None], ticks: int, jitter: np.ndarray | None = None):
    """Feed ``ticks`` snapshots of functions each invoked once every ``periods_s[i]`` seconds (None: never),
    optionally shifting each arrival by ``jitter`` ticks; returns the last tick's features."""
    names = tuple(f"f{i}" for i in range(len(periods_s)))
    next_due = [0.0 if p is not None else math.inf for p in periods_s]
    k = 0
    x = None
    for t in range(1, ticks + 1):
        now = t * TICK
        arrivals = np.zeros(len(names))
        for i, p in enumerate(periods_s):
            if now >= next_due[i]:
                arrivals[i] = 1.0
                step = p + (jitter[k % len(jitter)] * TICK if jitter is not None else 0.0)
                k += 1
                next_due[i] = now + max(step, TICK)
        x = history.features(make_snapshot(names, time_s=now, tick_s=TICK, arrivals=arrivals,
                                           valid=np.ones(len(names), dtype=bool)))
    return x


def test_the_features_say_how_long_how_often_and_how_regularly_a_function_is_idle():
    x = run(ArrivalHistory(), [300.0, 1800.0, TICK, None], ticks=6 * 360)  # 6 hours
    assert x.shape == (4, len(HISTORY_FEATURES)) and ((x >= 0) & (x <= 1)).all()
    five, thirty, busy, never = x
    # Typical gap: log(1 + minutes) over log(1 + 4 h); the 5-min function's gaps are 290 s.
    assert five[2] == pytest.approx(math.log1p(290 / 60) / math.log1p(HORIZON_MIN), abs=1e-9)
    assert thirty[2] == pytest.approx(math.log1p(1790 / 60) / math.log1p(HORIZON_MIN), abs=1e-9)
    assert busy[2] == 0.0 and busy[0] == 0.0  # busy every tick: no idle time now, no gap
    # A fixed period has no spread; every function invoked often enough is trusted.
    assert five[3] == pytest.approx(0.0, abs=1e-9) and thirty[3] == pytest.approx(0.0, abs=1e-9)
    assert five[4] == 1.0 and thirty[4] == 1.0
    # Busy over the last hour: one tick in 30, one in 180, every tick (an average that decays between
    # busy ticks, so within a factor of two of the share).
    assert 0.5 / 30 < five[1] < 2 / 30 and 0.5 / 180 < thirty[1] < 2 / 180
    assert busy[1] == pytest.approx(1 - math.exp(-6), abs=1e-9)  # from 0, six time constants ago
    # Never invoked: idle for ever, nothing else known.
    assert never.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_irregular_gaps_spread_and_a_new_function_is_not_yet_trusted():
    jitter = np.array([0.0, 40.0, 3.0, 80.0, 10.0, 0.0, 60.0])  # ticks added to a 5-minute period
    (regular,) = run(ArrivalHistory(), [300.0], ticks=4 * 360, jitter=np.array([0.0]))
    (noisy,) = run(ArrivalHistory(), [300.0], ticks=4 * 360, jitter=jitter)
    assert regular[3] == pytest.approx(0.0, abs=1e-9) and noisy[3] > 0.1
    young = run(ArrivalHistory(), [300.0], ticks=3 * 30 + 1)  # four arrivals: three gaps
    assert young[0, 4] == pytest.approx(3 / GAPS_TRUSTED)


def test_idle_time_grows_on_a_log_scale_to_the_horizon():
    history = ArrivalHistory()
    names = ("f",)
    history.features(make_snapshot(names, time_s=TICK, arrivals=np.ones(1), valid=np.ones(1, dtype=bool)))
    for minutes, expected in ((60, math.log1p(60) / math.log1p(HORIZON_MIN)), (600, 1.0)):
        x = history.features(make_snapshot(names, time_s=TICK + minutes * 60, arrivals=np.zeros(1),
                                           valid=np.ones(1, dtype=bool)))
        assert x[0, 0] == pytest.approx(expected)


def test_a_snapshot_is_folded_in_once_and_an_unobserved_row_keeps_its_history():
    history = ArrivalHistory()
    names = ("f", "g")
    for t in (TICK, 2 * TICK, 40 * TICK):
        snap = make_snapshot(names, time_s=t, arrivals=np.ones(2), valid=np.ones(2, dtype=bool))
        first = history.features(snap)
        again = history.features(snap)
        np.testing.assert_array_equal(first, again)
    before = history.features(make_snapshot(names, time_s=40 * TICK, arrivals=np.ones(2), valid=np.ones(2, dtype=bool)))
    after = history.features(make_snapshot(names, time_s=41 * TICK, arrivals=np.array([0.0, 1.0]),
                                           valid=np.array([False, True])))
    assert after[0, 1] == before[0, 1] and after[0, 2] == before[0, 2]  # f unseen: its averages stand
    assert history.gaps.tolist() == [2.0, 3.0]


def test_history_features_lengthen_a_staffed_state_and_keep_it_in_the_unit_ball():
    from learner_fixtures import MU, busy_tick

    from policies.registry import make

    for scheme in ("staffing", "portfolio"):
        plain = make("nac-linear", seed=1, scheme=scheme)
        told = make("nac-linear", seed=1, scheme=scheme, history_features=True)
        x_plain, _ = plain._state(busy_tick(3), MU)
        x, _ = told._state(busy_tick(3), MU)
        assert x.shape[1] == x_plain.shape[1] + len(HISTORY_FEATURES)
        assert told.agent.state_dim(told.features) == x.shape[1]
        assert (np.linalg.norm(x, axis=1) <= 1 + 1e-12).all()
    with pytest.raises(ValueError, match="history_features needs scheme"):
        make("nac-linear", seed=1, history_features=True)
