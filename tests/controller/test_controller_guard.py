"""The guard: no decision on invalid rows, bounds, step limits, capacity, unchanged targets skipped."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_invokers, make_snapshot

from controller.guard import AppliedTargets, GuardBounds, guard
from policies.types import KEEP_SHARES, UNMANAGED, Decisions

NAMES = ("a", "b", "c")


def _decisions(containers, shares=None, valid=None):
    n = len(containers)
    return Decisions(
        containers=np.array(containers),
        cpu_shares=np.array(shares if shares is not None else [KEEP_SHARES] * n),
        valid=np.array(valid if valid is not None else [True] * n),
        reasons=("test",) * n,
    )


def _applied(containers, shares):
    return AppliedTargets(np.array(containers, dtype=np.int64), np.array(shares, dtype=np.int64))


ROOMY = GuardBounds(min_containers=0, max_containers=10, min_shares=64, max_shares=2048,
                    max_container_change_per_tick=100, max_shares_change_per_tick=10_000, respect_capacity=False)


@pytest.mark.parametrize(
    "wanted, current, bounds, expected",
    [
        ([50, 1, 3], [UNMANAGED] * 3, ROOMY, [10, 1, 3]),
        ([0, 0, 0], [UNMANAGED] * 3, GuardBounds(min_containers=2, max_containers=8, respect_capacity=False), [2, 2, 2]),
        ([20, 0, 5], [4, 8, 5], GuardBounds(max_container_change_per_tick=3, respect_capacity=False), [7, 5, 5]),
        ([UNMANAGED] * 3, [4, 8, 5], GuardBounds(max_container_change_per_tick=1, respect_capacity=False), [UNMANAGED] * 3),
    ],
    ids=[
        "targets above the maximum are clamped to it",
        "targets below the minimum are raised to it",
        "changes are limited per tick against the last applied target",
        "handing a function back to the platform is never limited",
    ],
)
def test_container_targets_are_clamped(wanted, current, bounds, expected):
    result = guard(_decisions(wanted), make_snapshot(NAMES), _applied(current, [KEEP_SHARES] * 3), bounds)
    assert list(result.decisions.containers) == expected


def test_without_an_applied_target_the_step_limit_starts_from_the_observed_containers():
    snapshot = make_snapshot(NAMES, containers=np.array([3, 0, 0]))
    bounds = GuardBounds(max_container_change_per_tick=2, respect_capacity=False)
    result = guard(_decisions([10, 10, 1]), snapshot, AppliedTargets.initial(3), bounds)
    assert list(result.decisions.containers) == [5, 2, 1]
    assert result.clamped == 2
    assert "containers 10 -> 5" in result.notes[0]


@pytest.mark.parametrize(
    "wanted, current, bounds, expected",
    [
        ([4096, 10, KEEP_SHARES], [KEEP_SHARES] * 3, ROOMY, [2048, 64, KEEP_SHARES]),
        ([2048, 128, 512], [512, 512, KEEP_SHARES], GuardBounds(max_shares_change_per_tick=256), [768, 256, 512]),
    ],
    ids=["shares are clamped to their range", "shares move at most one step per tick"],
)
def test_cpu_shares_are_clamped(wanted, current, bounds, expected):
    result = guard(_decisions([1, 1, 1], wanted), make_snapshot(NAMES), _applied([1, 1, 1], current), bounds)
    assert list(result.decisions.cpu_shares) == expected


def test_a_decision_on_an_invalid_row_never_passes():
    snapshot = make_snapshot(NAMES, valid=np.array([True, False, True]))
    result = guard(_decisions([2, 2, 2]), snapshot, AppliedTargets.initial(3), ROOMY)
    assert list(result.decisions.valid) == [True, False, True]
    assert result.blocked_invalid == 1
    assert "no data" in result.notes[1]


def test_a_decision_the_policy_did_not_make_does_not_pass():
    result = guard(_decisions([2, 2, 2], valid=[False, True, True]), make_snapshot(NAMES), AppliedTargets.initial(3), ROOMY)
    assert list(result.decisions.valid) == [False, True, True]
    assert result.blocked_invalid == 0


def test_targets_equal_to_the_applied_ones_are_skipped():
    applied = _applied([2, 3, UNMANAGED], [256, KEEP_SHARES, KEEP_SHARES])
    decisions = _decisions([2, 4, UNMANAGED], [256, KEEP_SHARES, KEEP_SHARES])
    result = guard(decisions, make_snapshot(NAMES), applied, ROOMY)
    assert list(result.decisions.valid) == [False, True, False]
    assert result.unchanged == 2


def test_a_shares_change_alone_passes_and_unchanged_shares_become_keep():
    applied = _applied([2, 2, 2], [256, 256, 256])
    result = guard(_decisions([2, 3, 2], [512, 256, 256]), make_snapshot(NAMES), applied, ROOMY)
    assert list(result.decisions.valid) == [True, True, False]
    assert list(result.decisions.cpu_shares) == [512, KEEP_SHARES, KEEP_SHARES]


def test_container_increases_are_trimmed_to_the_cluster_memory():
    # One invoker of 2048 MB holds 8 containers of 256 MB; "a" already holds 4 of them.
    snapshot = make_snapshot(NAMES, invokers=make_invokers(1))
    applied = _applied([4, 0, 0], [KEEP_SHARES] * 3)
    bounds = GuardBounds(max_containers=100, max_container_change_per_tick=100, respect_capacity=True)
    result = guard(_decisions([4, 8, 8]), snapshot, applied, bounds)
    containers = result.decisions.containers
    assert containers[0] == 4
    assert containers.sum() * 256 <= 2048
    assert containers[1] == containers[2] == 2
    assert "cluster memory" in result.notes[1]


def test_memory_the_rounding_leaves_goes_to_the_largest_remainders():
    # 8 slots of 256 MB; "a" holds 5, so 3 are left and each function asks for 2 more (6 asked):
    # scaled by 1/2 each gets 1 — and the 3 slots are all used, none is lost to rounding down.
    snapshot = make_snapshot(NAMES, invokers=make_invokers(1))
    applied = _applied([5, 0, 0], [KEEP_SHARES] * 3)
    bounds = GuardBounds(max_containers=100, max_container_change_per_tick=100, respect_capacity=True)
    result = guard(_decisions([7, 2, 2]), snapshot, applied, bounds)
    assert list(result.decisions.containers) == [6, 1, 1]
    # Now only 1 slot for three asks of 1 each (scaled by 1/3, all round to 0): one of them gets it.
    applied = _applied([7, 0, 0], [KEEP_SHARES] * 3)
    result = guard(_decisions([8, 1, 1]), snapshot, applied, bounds)
    assert list(result.decisions.containers) == [8, 0, 0]
    assert result.decisions.containers.sum() * 256 <= 2048


@pytest.mark.parametrize("seed", range(20))
def test_the_capacity_trim_never_exceeds_the_memory_nor_any_ask(seed):
    rng = np.random.default_rng(seed)
    snapshot = make_snapshot(NAMES, invokers=make_invokers(1))
    held = rng.integers(0, 4, size=3)
    asked = held + rng.integers(0, 6, size=3)
    applied = _applied(held.tolist(), [KEEP_SHARES] * 3)
    bounds = GuardBounds(max_containers=100, max_container_change_per_tick=100, respect_capacity=True)
    got = guard(_decisions(asked.tolist()), snapshot, applied, bounds).decisions.containers
    assert np.all(got >= held) and np.all(got <= asked)
    assert got.sum() * 256 <= max(2048, held.sum() * 256)
    # Nothing is trimmed when everything fits; when something is, the memory left is under one container.
    if asked.sum() * 256 <= 2048:
        assert list(got) == list(asked)
    else:
        assert 2048 - got.sum() * 256 < 256


def test_decisions_of_a_different_length_than_the_snapshot_are_refused():
    with pytest.raises(ValueError, match="2 decisions for a snapshot of 3"):
        guard(_decisions([1, 1]), make_snapshot(NAMES), AppliedTargets.initial(3), ROOMY)


def test_applied_targets_keep_their_previous_values_where_the_action_failed():
    applied = _applied([1, 1], [128, 128])
    decisions = _decisions([5, 5], [256, KEEP_SHARES])
    after = applied.with_applied(decisions, failed=np.array([False, True]))
    assert list(after.containers) == [5, 1]
    assert list(after.cpu_shares) == [256, 128]


def test_applied_targets_grow_with_new_functions_as_unmanaged():
    grown = _applied([3], [128]).grown(3)
    assert list(grown.containers) == [3, UNMANAGED, UNMANAGED]
    assert list(grown.cpu_shares) == [128, KEEP_SHARES, KEEP_SHARES]


def test_unset_bounds_follow_the_cluster_not_a_workload():
    # Two invokers of 2048 MB: 16 containers of a 256-MB function fit, 4 of a 1024-MB one.
    snap = make_snapshot(("small", "big"), memory_mb=np.array([256.0, 1024.0]),
                         invokers=make_invokers(2, cores=8.0, memory_mb=2048.0))
    result = guard(_decisions([500, 500], [100_000, 100_000]), snap, AppliedTargets.initial(2),
                   GuardBounds(respect_capacity=False, max_shares_change_per_tick=1_000_000))
    assert result.decisions.containers.tolist() == [16, 4]
    assert result.decisions.cpu_shares.tolist() == [8192, 8192]  # every core of the largest invoker
    assert "bounds [0, 16]" in result.notes[0] and "bounds [0, 4]" in result.notes[1]


def test_a_large_pool_may_double_in_one_tick_and_a_small_one_move_by_sixteen():
    snap = make_snapshot(("large", "small"), memory_mb=np.array([128.0, 128.0]),
                         invokers=make_invokers(40, cores=8.0, memory_mb=16_384.0))
    result = guard(_decisions([1000, 1000]), snap, _applied([150, 2], [KEEP_SHARES, KEEP_SHARES]),
                   GuardBounds(respect_capacity=False))
    assert result.decisions.containers.tolist() == [300, 18]


def test_a_function_needing_hundreds_of_containers_reaches_them_in_a_few_ticks():
    snap = make_snapshot(("heavy",), memory_mb=np.array([256.0]), invokers=make_invokers(21, memory_mb=2048.0))
    applied, pools = AppliedTargets.initial(1), []
    for _ in range(6):
        result = guard(_decisions([160]), snap, applied, GuardBounds())
        applied = applied.with_applied(result.decisions, np.array([False]))
        pools.append(int(applied.containers[0]))
    assert pools[:4] == [16, 32, 64, 128] and pools[4] == 160  # 168 fit the cluster at 256 MB
