"""Properties of the learners' features, actions and reward under any mix of NaN, infinite and
negative observations (hypothesis).

* a row is usable only when every number the learner reads is known (finite, >= 0, an SLO > 0, a
  p99 whenever something completed); its feature vector is finite with a norm <= 1, and an
  unusable row's is zero;
* the moves of a learner become decisions only on such rows, whatever the caller says is usable,
  and a decided pool is never below the policy's minimum;
* the offered load is unknown (NaN), never zero, where the arrivals or an execution time are
  unknown or garbled, and an unknown load leaves the smoothed load where it was;
* the reward is a number in [0, 1] only where every number it reads is known, NaN elsewhere.
"""

from __future__ import annotations

import numpy as np
from conftest import make_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.reward import reward
from policies.serverless_features import (
    N_ACTIONS,
    ActionSettings,
    FeatureSettings,
    actions_to_decisions,
    observed_rows,
    offered_load,
    smooth_load,
    state_features,
)
from policies.types import KEEP_SHARES, UNMANAGED

#: Examples per property; each is one tick of up to 8 functions.
EXAMPLES = 400

MESSY = st.one_of(
    st.just(float("nan")), st.just(float("inf")), st.just(float("-inf")),
    st.floats(min_value=-50.0, max_value=-0.01), st.integers(min_value=0, max_value=40).map(float),
    st.floats(min_value=0.0, max_value=4000.0),
)
#: Mostly healthy columns with an occasional bad value, so that usable rows are common too.
MOSTLY = st.one_of(st.integers(min_value=0, max_value=40).map(float), st.floats(0.0, 50.0), MESSY)

#: Every column of a snapshot a learner or the reward may read.
COLUMNS = ("arrivals", "completions", "in_flight", "queued", "p50_latency_s", "p99_latency_s", "mean_exec_s",
           "recent_exec_s", "cold_starts", "slo_violations", "containers", "busy_containers", "cpu_shares",
           "cpu_used_core_s", "cpu_alloc_core_s", "memory_mb", "slo_s")

FEATURES = FeatureSettings()
ACTIONS = ActionSettings()


@st.composite
def snapshots(draw):
    n = draw(st.integers(min_value=1, max_value=8))
    columns = {name: np.array(draw(st.lists(MOSTLY, min_size=n, max_size=n))) for name in COLUMNS}
    valid = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    tick_s = draw(st.floats(min_value=0.5, max_value=120.0))
    return make_snapshot(tuple(f"f{i}" for i in range(n)), tick_s=tick_s, valid=valid, **columns)


def _number(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values >= 0)


def _every_read_number_known(fs) -> np.ndarray:
    """The definition the features must follow, spelled out column by column."""
    ok = fs.valid.copy()
    for name in ("arrivals", "completions", "containers", "busy_containers", "queued", "cold_starts",
                 "cpu_shares", "cpu_used_core_s", "cpu_alloc_core_s"):
        ok &= _number(getattr(fs, name))
    with np.errstate(invalid="ignore"):
        ok &= np.isfinite(fs.slo_s) & (fs.slo_s > 0)
        done = fs.completions > 0
    ok &= np.where(done, _number(fs.p99_latency_s), _number(fs.p99_latency_s) | np.isnan(fs.p99_latency_s))
    for name in ("mean_exec_s", "recent_exec_s"):
        values = getattr(fs, name)
        ok &= np.isnan(values) | _number(values)
    return ok


@settings(max_examples=EXAMPLES, deadline=None)
@given(snapshots())
def test_a_row_is_usable_only_when_every_number_the_learner_reads_is_known(snapshot):
    fs = snapshot.functions
    usable = observed_rows(fs)
    assert np.array_equal(usable, _every_read_number_known(fs))
    feats = state_features(snapshot, np.full(FEATURES.mu_bins, 1.0 / FEATURES.mu_bins), FEATURES)
    assert np.array_equal(feats.usable, usable)
    assert np.all(np.isfinite(feats.x))
    assert np.all(np.linalg.norm(feats.x, axis=1) <= 1.0 + 1e-9)
    assert not np.any(feats.x[~usable])


@settings(max_examples=EXAMPLES, deadline=None)
@given(snapshots(), st.data())
def test_moves_become_decisions_only_on_rows_whose_numbers_are_known(snapshot, data):
    fs = snapshot.functions
    n = len(fs)
    actions = np.array(data.draw(st.lists(st.integers(0, N_ACTIONS - 1), min_size=n, max_size=n)))
    claimed = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))  # a careless caller
    decisions = actions_to_decisions(fs, actions, claimed, ACTIONS, "p", snapshot.tick_s)
    known = observed_rows(fs)
    assert not np.any(decisions.valid & ~known)
    assert np.all(decisions.action[~decisions.valid] == -1)
    assert np.all(decisions.containers[~decisions.valid] == UNMANAGED)
    assert np.all(decisions.cpu_shares[~decisions.valid] == KEEP_SHARES)
    managed = decisions.valid & (decisions.containers != UNMANAGED)
    assert np.all(decisions.containers[managed] >= ACTIONS.min_containers)
    assert np.all(decisions.containers[managed] <= ACTIONS.max_containers)
    shares = decisions.cpu_shares[managed]
    assert np.all((shares >= ACTIONS.min_shares) & (shares <= ACTIONS.max_shares))


@settings(max_examples=EXAMPLES, deadline=None)
@given(snapshots(), st.data())
def test_an_unknown_offered_load_is_nan_and_leaves_the_smoothed_load_alone(snapshot, data):
    fs = snapshot.functions
    load = offered_load(fs, snapshot.tick_s)
    with np.errstate(invalid="ignore"):
        garbled = ~(np.isnan(fs.mean_exec_s) | _number(fs.mean_exec_s)) | ~(
            np.isnan(fs.recent_exec_s) | _number(fs.recent_exec_s))
    unknown = ~_number(fs.arrivals) | garbled
    assert np.array_equal(np.isnan(load), unknown)
    assert np.all(load[~unknown] >= 0) and np.all(np.isfinite(load[~unknown]))
    previous = np.array(data.draw(st.lists(st.floats(0.0, 100.0), min_size=len(fs), max_size=len(fs))))
    smoothed = smooth_load(previous, load, snapshot.tick_s, ACTIONS)
    assert np.array_equal(smoothed[unknown], previous[unknown])
    assert np.all(np.isfinite(smoothed))


@settings(max_examples=EXAMPLES, deadline=None)
@given(snapshots(), st.floats(0.0, 1.0), st.booleans())
def test_the_reward_is_a_number_only_where_every_number_it_reads_is_known(snapshot, alpha, charge):
    fs = snapshot.functions
    cores_per_mb = 8.0 / 2048.0 if charge else 0.0
    r = reward(fs, alpha, cores_per_mb=cores_per_mb, tick_s=snapshot.tick_s)
    finite = np.isfinite(r)
    assert np.all((r[finite] >= 0.0) & (r[finite] <= 1.0 + 1e-12))
    with np.errstate(invalid="ignore"):
        done = fs.completions > 0
        read_q = np.where(done, _number(fs.p99_latency_s) & np.isfinite(fs.slo_s) & (fs.slo_s > 0),
                          _number(fs.arrivals) & _number(fs.queued) & _number(fs.in_flight))
        read = fs.valid & _number(fs.completions) & read_q & _number(fs.cpu_used_core_s) & _number(fs.cpu_alloc_core_s)
        if charge:
            read &= _number(fs.containers) & np.isfinite(fs.memory_mb) & (fs.memory_mb > 0)
    assert not np.any(finite & ~read)
