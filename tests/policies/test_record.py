"""Each pool level's recent record for each function (policies.record)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import make_snapshot

from policies.record import PLATFORM_KEEP_S, RECORD_TAU_S, LevelRecord, demand, record_names

TICK = 10.0
LEVELS = ("platform", "c=1.06", "kpa:0.7", "hist")
IDLE_LOAD = 1e-3


def snap(t: int, arrivals, *, mean_exec_s=0.5, queued=None, valid=None, memory_mb=256.0):
    n = len(arrivals)
    return make_snapshot(tuple(f"f{i}" for i in range(n)), time_s=t * TICK, tick_s=TICK,
                         arrivals=np.asarray(arrivals, dtype=float), completions=np.asarray(arrivals, dtype=float),
                         mean_exec_s=np.full(n, mean_exec_s), queued=np.zeros(n) if queued is None else queued,
                         memory_mb=np.full(n, memory_mb), valid=np.ones(n, dtype=bool) if valid is None else valid)


def load_of(s) -> np.ndarray:
    return np.asarray(s.functions.arrivals) / s.tick_s * np.asarray(s.functions.mean_exec_s)


def test_demand_is_the_containers_the_work_needed_and_at_least_one_when_anything_arrived():
    s = snap(1, [0.0, 1.0, 100.0, 0.0], queued=np.array([0.0, 0.0, 0.0, 3.0]))
    assert demand(s, load_of(s)).tolist() == [0.0, 1.0, 5.0, 3.0]  # 100 × 0.5 s / 10 s = 5 busy


def test_a_level_that_held_too_few_containers_misses_arrivals_and_one_that_held_too_many_holds_idle_memory():
    record = LevelRecord(LEVELS)
    # One function busy every tick with R = 2; the levels hold 0, 2, 1 and 5 containers.
    pools = np.array([[0.0], [2.0], [1.0], [5.0]])
    for t in range(1, 2001):
        s = snap(t, [40.0])
        x = record.features(s, pools, load_of(s), IDLE_LOAD)
    miss = x[0, 0::2]
    idle = x[0, 1::2]
    # The platform is modelled, not read from the pools: busy every tick, it keeps the need (2).
    assert miss[0] == pytest.approx(0.0) and idle[0] == pytest.approx(0.0)
    assert miss[1] == pytest.approx(0.0) and idle[1] == pytest.approx(0.0)
    assert miss[2] == pytest.approx(0.5, rel=1e-6)  # 1 of the 2 needed: half the arrivals unserved
    # 3 idle containers of 256 MB on a 2048-MB invoker, after 2000 ticks (5.6 time constants) of averaging.
    settled = 1.0 - math.exp(-1999 * TICK / RECORD_TAU_S)
    assert idle[3] == pytest.approx(3 * 256 / 2048 * settled, rel=1e-6) and miss[3] == 0.0
    assert record_names(LEVELS)[:2] == ("miss_rate:platform", "idle:platform")


def test_the_modelled_platform_keeps_a_function_warm_for_ten_minutes_after_its_need():
    record = LevelRecord(("platform",))
    ticks_kept = int(PLATFORM_KEEP_S / TICK)
    need = []
    for t in range(1, 3 * ticks_kept):
        s = snap(t, [1.0 if t == 1 else 0.0])
        record.observe(s, np.zeros((1, 1)), load_of(s), IDLE_LOAD)
        need.append(record.pools[0, 0])
    assert need[0] == 1.0 and need[ticks_kept - 1] == 1.0 and need[ticks_kept] == 0.0
    # An arrival inside the ten minutes finds the platform warm; one after it does not.
    early, late = LevelRecord(("platform",)), LevelRecord(("platform",))
    for record_, gap in ((early, ticks_kept - 1), (late, ticks_kept + 5)):
        for t in range(1, gap + 2):
            s = snap(t, [1.0 if t in (1, gap + 1) else 0.0])
            x = record_.features(s, np.zeros((1, 1)), load_of(s), IDLE_LOAD)
    assert x[0, 0] == 1.0  # late: its one scored arrival was missed
    early_rate = early.miss[0, 0] / early.arrivals[0]
    assert early_rate == 0.0


def test_a_staffing_constant_leaves_an_idle_function_to_the_platform():
    record = LevelRecord(("platform", "c=1.06"))
    s = snap(1, [1.0, 0.0])
    record.observe(s, np.array([[9.0, 9.0], [3.0, 3.0]]), load_of(s), IDLE_LOAD)
    # Function 0 arrived (R = 0.05): its constant holds its own pool; function 1 is idle: the platform's 0.
    assert record.pools[:, 0].tolist() == [1.0, 3.0]
    assert record.pools[:, 1].tolist() == [0.0, 0.0]


def test_a_snapshot_is_folded_in_once_rows_grow_and_unobserved_rows_keep_their_record():
    record = LevelRecord(LEVELS)
    pools = np.zeros((4, 1))
    s1, s2 = snap(1, [5.0]), snap(2, [5.0])
    record.observe(s1, pools, load_of(s1), IDLE_LOAD)
    record.observe(s2, pools, load_of(s2), IDLE_LOAD)
    before = record.miss.copy()
    record.observe(s2, pools, load_of(s2), IDLE_LOAD)
    np.testing.assert_array_equal(record.miss, before)
    # Every level held 0 but the platform, which the model keeps at the last tick's need.
    assert before[0, 0] == 0.0 and (before[1:] > 0).all()
    s3 = snap(3, [5.0, 5.0], valid=np.array([False, True]))
    x = record.features(s3, np.zeros((4, 2)), load_of(s3), IDLE_LOAD)
    np.testing.assert_array_equal(record.miss[:, 0], before[:, 0])  # unobserved: unchanged
    assert x.shape == (2, 8) and (x[1] == 0).all()  # the new row is not scored before its second tick
    with pytest.raises(ValueError, match=r"pools has shape \(3, 2\), expected \(4, 2\)"):
        record.observe(snap(4, [1.0, 1.0]), np.zeros((3, 2)), np.zeros(2), IDLE_LOAD)


def test_record_features_lengthen_a_staffed_state_and_keep_it_in_the_unit_ball():
    from learner_fixtures import MU, busy_tick

    from policies.registry import make

    for scheme, hist in (("staffing", False), ("portfolio", False), ("portfolio", True)):
        plain = make("nac-linear", seed=1, scheme=scheme, **({"histogram_member": True} if hist else {}))
        told = make("nac-linear", seed=1, scheme=scheme, record_features=True,
                    **({"histogram_member": True} if hist else {}))
        for t in (3, 4):
            x_plain, _ = plain._state(busy_tick(t), MU)
            x, _ = told._state(busy_tick(t), MU)
        assert x.shape[1] == x_plain.shape[1] + 2 * len(told.agent.levels)
        assert told.agent.state_dim(told.features) == x.shape[1]
        assert (np.linalg.norm(x, axis=1) <= 1 + 1e-12).all()
    with pytest.raises(ValueError, match="record_features needs scheme"):
        make("nac-linear", seed=1, record_features=True)
