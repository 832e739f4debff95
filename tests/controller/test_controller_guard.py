"""The guard: no decision on invalid rows or unknown values, bounds, step limits, capacity, unchanged
targets skipped, and the reconciliation of the targets in force with the observed state."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_invokers, make_snapshot

from controller.guard import AppliedTargets, GuardBounds, compare, guard
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


# --- no decision on an unknown value ------------------------------------------------------------


@pytest.mark.parametrize("observed", [np.nan, np.inf, -np.inf, -3.0], ids=["nan", "inf", "minus-inf", "negative"])
def test_an_unknown_observed_pool_blocks_the_decision_instead_of_scaling_to_zero(observed):
    # Nothing in force yet: the step limit would start from the observed pool, which is unknown.
    snapshot = make_snapshot(NAMES, containers=np.array([observed, 2.0, 2.0]))
    result = guard(_decisions([5, 5, 5]), snapshot, AppliedTargets.initial(3), GuardBounds())
    assert list(result.decisions.valid) == [False, True, True]
    assert list(result.to_apply.valid) == [False, True, True]
    assert result.blocked_invalid == 1
    assert "observed containers unknown" in result.notes[0]
    assert list(result.decisions.containers[1:]) == [5, 5]


def test_an_unknown_observed_pool_blocks_the_decision_even_with_a_target_in_force():
    snapshot = make_snapshot(NAMES, containers=np.array([np.nan, 4.0, 4.0]))
    result = guard(_decisions([6, 6, 6]), snapshot, _applied([4, 4, 4], [KEEP_SHARES] * 3), ROOMY)
    assert list(result.to_apply.valid) == [False, True, True]


def test_an_increase_of_a_function_whose_memory_is_unknown_is_held_at_its_pool():
    snapshot = make_snapshot(NAMES, memory_mb=np.array([np.nan, 256.0, 256.0]), containers=np.array([2.0, 2.0, 2.0]))
    bounds = GuardBounds(max_containers=100, max_container_change_per_tick=100, respect_capacity=True)
    result = guard(_decisions([6, 6, 1]), snapshot, AppliedTargets.initial(3), bounds)
    assert list(result.decisions.containers) == [2, 6, 1]
    assert "memory of a container unknown" in result.notes[0]


def test_memory_held_by_functions_of_unknown_pools_is_read_from_the_invokers():
    # One invoker of 2048 MB with 1536 MB in use. "a" (unknown pool) holds what the known pools do
    # not explain: 1536 - 2 x 256 = 1024 MB. So 2048 - 1536 = 512 MB is left: "b" gets 2 more.
    invokers = make_invokers(1, memory_used_mb=np.array([1536.0]))
    snapshot = make_snapshot(NAMES, containers=np.array([np.nan, 2.0, 0.0]), invokers=invokers)
    bounds = GuardBounds(max_containers=100, max_container_change_per_tick=100, respect_capacity=True)
    result = guard(_decisions([UNMANAGED, 8, UNMANAGED], valid=[False, True, False]), snapshot,
                   AppliedTargets.initial(3), bounds)
    assert result.decisions.containers[1] == 4
    # The invokers cannot say either: no increase passes.
    blind = make_snapshot(NAMES, containers=np.array([np.nan, 2.0, 0.0]),
                          invokers=make_invokers(1, memory_used_mb=np.array([np.nan])))
    result = guard(_decisions([UNMANAGED, 8, UNMANAGED], valid=[False, True, False]), blind,
                   AppliedTargets.initial(3), bounds)
    assert result.decisions.containers[1] == 2
    assert "cluster memory in use unknown" in result.notes[1]


def test_a_cluster_whose_memory_is_unknown_bounds_no_pool_to_zero():
    snapshot = make_snapshot(NAMES, containers=np.array([3.0, 3.0, 3.0]),
                             invokers=make_invokers(2, memory_mb=np.nan))
    result = guard(_decisions([3, 2, 5]), snapshot, AppliedTargets.initial(3), GuardBounds())
    # Decreases and holds pass as decided; an increase cannot be checked against the memory.
    assert list(result.decisions.containers) == [3, 2, 3]


def test_a_shares_decision_with_neither_shares_in_force_nor_observed_keeps_the_shares():
    snapshot = make_snapshot(NAMES, containers=np.array([1.0, 1.0, 1.0]), cpu_shares=np.array([np.nan, 256.0, np.nan]))
    applied = _applied([1, 1, 1], [KEEP_SHARES, KEEP_SHARES, 512])
    result = guard(_decisions([1, 1, 1], [4096, 4096, 4096]), snapshot, applied, GuardBounds())
    assert list(result.decisions.valid) == [False, True, True]
    assert list(result.decisions.cpu_shares[1:]) == [256 + 1024, 512 + 1024]
    assert "observed shares unknown" in result.notes[0]


def test_shares_of_a_pool_observed_empty_have_nothing_to_move_from():
    snapshot = make_snapshot(("f",), containers=np.array([0.0]), cpu_shares=np.array([np.nan]))
    result = guard(_decisions([1], [4096]), snapshot, AppliedTargets.initial(1), GuardBounds(max_shares=8192))
    assert result.decisions.cpu_shares.tolist() == [4096] and not result.notes[0]


# --- reconciliation: desired against observed ----------------------------------------------------


COMPARISONS = [
    # (target containers, target shares, observed columns, holds, differs)
    (2, 512, {"containers": 2, "cpu_shares": 512}, True, False),
    (2, 512, {"containers": 0, "cpu_shares": 256}, False, True),
    (2, KEEP_SHARES, {"containers": 0}, False, True),
    (UNMANAGED, 512, {"containers": 3, "cpu_shares": 256}, False, True),
    (UNMANAGED, 512, {"containers": 3, "cpu_shares": 512.3}, True, False),
    (5, KEEP_SHARES, {"containers": 7, "busy_containers": 6, "queued": 1}, False, False),
    (5, KEEP_SHARES, {"containers": 7, "busy_containers": 1}, False, True),
    (5, KEEP_SHARES, {"containers": 7, "busy_containers": 6, "queued": np.nan}, False, False),
    (0, KEEP_SHARES, {"containers": 1, "queued": 1}, False, False),
    (0, KEEP_SHARES, {"containers": 2}, False, True),
    (2, 512, {"containers": np.nan, "cpu_shares": np.nan}, False, False),
    (2, 512, {"containers": 2, "cpu_shares": 512, "valid": False}, False, False),
    (2, 512, {"containers": -1, "cpu_shares": np.inf}, False, False),
    (UNMANAGED, KEEP_SHARES, {"containers": 4, "cpu_shares": 256}, False, False),
]
COMPARISON_IDS = [
    "a pool and shares as decided hold",
    "a platform back at its defaults differs",
    "a pool the platform lost differs without shares in force",
    "shares the platform reset differ for an unmanaged pool",
    "shares reported as a mean within half a share hold",
    "a surplus that is still busy drains: in progress",
    "an idle surplus differs",
    "a surplus whose work is unknown is not judged",
    "a scale-to-zero pool serving its queue is in progress",
    "a scale-to-zero pool keeping idle containers differs",
    "an unknown pool and unknown shares are not judged",
    "an invalid row is not judged",
    "a negative pool and infinite shares are unknown",
    "nothing in force: nothing to compare",
]


@pytest.mark.parametrize("k, s, observed, holds, differs", COMPARISONS, ids=COMPARISON_IDS)
def test_the_observed_state_is_compared_with_the_targets_in_force(k, s, observed, holds, differs):
    valid = observed.pop("valid", True)
    columns = {key: np.array([value], dtype=float) for key, value in observed.items()}
    snapshot = make_snapshot(("f",), valid=np.array([valid]), **columns)
    comparison = compare(snapshot, _applied([k], [s]))
    assert (bool(comparison.holds[0]), bool(comparison.differs[0])) == (holds, differs)


@pytest.mark.parametrize(
    "invokers, differs",
    [
        (make_invokers(1, memory_used_mb=np.array([512.0])), True),
        (make_invokers(1, memory_used_mb=np.array([1900.0])), False),
        (make_invokers(2, memory_used_mb=np.array([1900.0, 2048.0]), valid=np.array([True, False])), False),
        (make_invokers(2, memory_used_mb=np.array([1000.0, 2048.0]), valid=np.array([True, False])), True),
    ],
    ids=["room for one more: the deficit differs", "no room: the platform starts the rest as memory frees",
         "no room where seen and an invoker unseen: not judged", "room on an invoker that was seen"],
)
def test_a_pool_short_of_its_target_differs_only_where_the_platform_has_room(invokers, differs):
    snapshot = make_snapshot(("f",), containers=np.array([3.0]), invokers=invokers)
    assert bool(compare(snapshot, _applied([5], [KEEP_SHARES])).differs[0]) is differs


def test_targets_the_platform_lost_are_written_again_with_every_target_in_force():
    snapshot = make_snapshot(NAMES, containers=np.array([0.0, 3.0, 3.0]), cpu_shares=np.array([256.0, 512.0, 512.0]))
    applied = _applied([3, 3, 3], [512, 512, 512])
    result = guard(_decisions([3, 3, 3], [512, 512, 512]), snapshot, applied, ROOMY)
    assert result.unchanged == 3 and result.reapplied == 1
    assert list(result.decisions.valid) == [False, False, False]  # no change of the policy's mind
    assert list(result.to_apply.valid) == [True, False, False]
    assert (result.to_apply.containers[0], result.to_apply.cpu_shares[0]) == (3, 512)
    assert "re-applied" in result.to_apply.reasons[0]


def test_a_function_without_a_decision_this_tick_is_reconciled_too():
    snapshot = make_snapshot(NAMES, containers=np.array([0.0, 3.0, 3.0]))
    result = guard(_decisions([3, 3, 3], valid=[False] * 3), snapshot, _applied([3, 3, 3], [KEEP_SHARES] * 3), ROOMY)
    assert list(result.to_apply.valid) == [True, False, False]
    assert result.to_apply.containers[0] == 3


def test_a_container_change_restates_the_shares_in_force():
    snapshot = make_snapshot(NAMES, containers=np.array([2.0, 2.0, 2.0]), cpu_shares=np.array([512.0] * 3))
    result = guard(_decisions([4, 2, 2], [512, 512, 512]), snapshot, _applied([2, 2, 2], [512, 512, 512]), ROOMY)
    assert list(result.decisions.cpu_shares) == [KEEP_SHARES] * 3  # the change, as exported
    assert (result.to_apply.containers[0], result.to_apply.cpu_shares[0]) == (4, 512)


def test_re_applies_are_bounded_per_tick_and_the_longest_waiting_go_first():
    n = 5
    names = tuple(f"f{i}" for i in range(n))
    snapshot = make_snapshot(names, containers=np.zeros(n))
    applied = _applied([2] * n, [KEEP_SHARES] * n)
    bounds = GuardBounds(respect_capacity=False, max_reapply_per_tick=2)
    pacing, written = None, []
    for _ in range(3):
        result = guard(_decisions([2] * n, valid=[False] * n), snapshot, applied, bounds, pacing)
        pacing = result.reconcile
        written.append(np.flatnonzero(result.reapply).tolist())
    assert written[0] == [0, 1]
    assert written[1] == [2, 3]  # the ones that waited; 0 and 1 pause after their write
    assert written[2] == [0, 4]  # 4 waited two ticks, then 0 and 1 one each: 0 before 1 (earlier function)
    assert result.deferred == n - 2


def test_no_re_applies_when_the_bound_is_zero():
    snapshot = make_snapshot(NAMES, containers=np.zeros(3))
    result = guard(_decisions([2] * 3, valid=[False] * 3), snapshot, _applied([2] * 3, [KEEP_SHARES] * 3),
                   GuardBounds(max_reapply_per_tick=0))
    assert not result.to_apply.valid.any() and result.deferred == 3


def test_a_platform_that_does_not_follow_is_written_again_after_growing_pauses():
    snapshot = make_snapshot(("f",), containers=np.zeros(1))
    applied = _applied([2], [KEEP_SHARES])
    pacing, ticks = None, []
    for t in range(80):
        result = guard(_decisions([2], valid=[False]), snapshot, applied, GuardBounds(), pacing)
        pacing = result.reconcile
        if result.reapplied:
            ticks.append(t)
    gaps = np.diff(ticks).tolist()
    assert ticks[0] == 0
    assert gaps[:6] == [2, 3, 5, 9, 17, 33] and set(gaps[6:]) <= {33}  # waits of 1, 2, 4, ... 32 ticks


def test_a_platform_that_holds_its_targets_again_restarts_the_pacing():
    lost = make_snapshot(("f",), containers=np.zeros(1))
    held = make_snapshot(("f",), containers=np.array([2.0]))
    applied = _applied([2], [KEEP_SHARES])
    pacing = None
    for snapshot in (lost, lost, lost, held):
        pacing = guard(_decisions([2], valid=[False]), snapshot, applied, GuardBounds(), pacing).reconcile
    assert pacing.writes.tolist() == [0] and pacing.wait.tolist() == [0]
    # Lost again: written again at once, not after the pause the earlier writes had earned.
    assert guard(_decisions([2], valid=[False]), lost, applied, GuardBounds(), pacing).reapplied == 1


def test_bounds_read_from_settings_keep_defaults_for_bounds_the_settings_do_not_name():
    class Partial:
        min_containers = 1

    assert GuardBounds.from_settings(Partial()) == GuardBounds(min_containers=1)
