"""Properties of the guard under any mix of NaN, infinite and negative observations (hypothesis).

For every generated tick (observations, decisions, targets in force, bounds, pacing):

* nothing is written for a function whose row is invalid or whose observed pool is unknown;
* a function without a decision keeps its targets in force: a write for it restates them exactly;
* a container target that passes is never below the smallest of what was decided, the reference
  it moves from and the function's upper bound, and never negative unless it hands the pool back;
* shares that pass lie within their bounds; re-applies respect the bound per tick.
"""

from __future__ import annotations

import numpy as np
from conftest import make_invokers, make_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.guard import AppliedTargets, GuardBounds, ReconcileState, container_bounds, guard
from policies.types import KEEP_SHARES, UNMANAGED, Decisions

#: Examples per property; each is a whole tick of up to 6 functions and 3 invokers.
EXAMPLES = 400

MESSY = st.one_of(
    st.just(float("nan")), st.just(float("inf")), st.just(float("-inf")),
    st.floats(min_value=-50.0, max_value=-0.01), st.integers(min_value=0, max_value=40).map(float),
    st.floats(min_value=0.0, max_value=4000.0),
)
TARGETS = st.one_of(st.just(UNMANAGED), st.integers(min_value=0, max_value=60))
SHARES = st.one_of(st.just(KEEP_SHARES), st.integers(min_value=2, max_value=6000))


@st.composite
def ticks(draw):
    n = draw(st.integers(min_value=1, max_value=6))
    m = draw(st.integers(min_value=1, max_value=3))
    column = st.lists(MESSY, min_size=n, max_size=n)
    invokers = make_invokers(
        m,
        memory_mb=np.array(draw(st.lists(st.one_of(MESSY, st.just(2048.0)), min_size=m, max_size=m))),
        memory_used_mb=np.array(draw(st.lists(MESSY, min_size=m, max_size=m))),
        cores=np.array(draw(st.lists(MESSY, min_size=m, max_size=m))),
        valid=np.array(draw(st.lists(st.booleans(), min_size=m, max_size=m))),
    )
    snapshot = make_snapshot(
        tuple(f"f{i}" for i in range(n)),
        invokers=invokers,
        containers=np.array(draw(column)),
        busy_containers=np.array(draw(column)),
        queued=np.array(draw(column)),
        cpu_shares=np.array(draw(column)),
        memory_mb=np.array(draw(st.lists(st.one_of(MESSY, st.just(256.0)), min_size=n, max_size=n))),
        valid=np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
    )
    decisions = Decisions(
        containers=np.array(draw(st.lists(TARGETS, min_size=n, max_size=n))),
        cpu_shares=np.array(draw(st.lists(SHARES, min_size=n, max_size=n))),
        valid=np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        reasons=("p",) * n,
    )
    applied = AppliedTargets(np.array(draw(st.lists(TARGETS, min_size=n, max_size=n)), dtype=np.int64),
                             np.array(draw(st.lists(SHARES, min_size=n, max_size=n)), dtype=np.int64))
    pacing = ReconcileState(np.array(draw(st.lists(st.integers(0, 8), min_size=n, max_size=n)), dtype=np.int64),
                            np.array(draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n)), dtype=np.int64))
    bounds = GuardBounds(
        min_containers=draw(st.integers(0, 3)),
        max_containers=draw(st.one_of(st.none(), st.integers(3, 80))),
        min_shares=draw(st.integers(2, 128)),
        max_shares=draw(st.one_of(st.none(), st.integers(128, 8192))),
        max_container_change_per_tick=draw(st.one_of(st.none(), st.integers(1, 20))),
        max_shares_change_per_tick=draw(st.integers(1, 2048)),
        respect_capacity=draw(st.booleans()),
        max_reapply_per_tick=draw(st.integers(0, 4)),
    )
    return snapshot, decisions, applied, pacing, bounds


def _known_pool(snapshot) -> np.ndarray:
    containers = snapshot.functions.containers
    with np.errstate(invalid="ignore"):
        return np.isfinite(containers) & (containers >= 0)


@settings(max_examples=EXAMPLES, deadline=None)
@given(ticks())
def test_nothing_is_written_for_a_row_without_data_or_with_an_unknown_pool(tick):
    snapshot, decisions, applied, pacing, bounds = tick
    result = guard(decisions, snapshot, applied, bounds, pacing)
    written = result.to_apply.valid
    assert not np.any(written & ~snapshot.functions.valid)
    assert not np.any(written & ~_known_pool(snapshot))
    blocked = decisions.valid & ~(snapshot.functions.valid & _known_pool(snapshot))
    assert result.blocked_invalid == int(blocked.sum())


@settings(max_examples=EXAMPLES, deadline=None)
@given(ticks())
def test_a_function_without_a_decision_keeps_its_targets_in_force(tick):
    snapshot, decisions, applied, pacing, bounds = tick
    result = guard(decisions, snapshot, applied, bounds, pacing)
    undecided = ~result.decisions.valid
    restated = result.to_apply.valid & undecided
    assert np.array_equal(result.to_apply.containers[restated], applied.containers[restated])
    assert np.array_equal(result.to_apply.cpu_shares[restated], applied.cpu_shares[restated])
    after = applied.with_applied(result.to_apply, np.zeros(len(decisions), dtype=bool))
    assert np.array_equal(after.containers[undecided], applied.containers[undecided])
    assert np.array_equal(after.cpu_shares[undecided], applied.cpu_shares[undecided])
    # Only what the guard let through, or what it writes again, reaches the backend.
    assert not np.any(result.reapply & result.decisions.valid)
    assert np.array_equal(result.to_apply.valid, result.decisions.valid | result.reapply)
    assert result.reapplied <= bounds.max_reapply_per_tick


@settings(max_examples=EXAMPLES, deadline=None)
@given(ticks())
def test_no_target_goes_below_what_was_decided_without_a_decision_to_do_so(tick):
    snapshot, decisions, applied, pacing, bounds = tick
    result = guard(decisions, snapshot, applied, bounds, pacing)
    passed = result.decisions.valid
    asked = decisions.containers
    got = result.decisions.containers
    hi = container_bounds(snapshot, bounds)
    observed = np.rint(np.where(_known_pool(snapshot), snapshot.functions.containers, 0.0)).astype(np.int64)
    reference = np.where(applied.containers >= 0, applied.containers, observed)
    for i in np.flatnonzero(passed):
        if asked[i] == UNMANAGED:
            assert got[i] == UNMANAGED  # handing back is the policy's decision, passed as made
            continue
        assert got[i] >= 0
        assert got[i] >= min(int(asked[i]), int(reference[i]), int(hi[i]))
        assert got[i] <= max(int(hi[i]), bounds.min_containers)
    shares = result.decisions.cpu_shares
    for i in np.flatnonzero(passed & (shares != KEEP_SHARES)):
        assert bounds.min_shares <= shares[i]
        if bounds.max_shares is not None:
            assert shares[i] <= max(bounds.max_shares, bounds.min_shares)
