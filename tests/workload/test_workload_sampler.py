"""The function sampler: reproducible picks spread over rate classes, profiles, action names."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from workload.arrivals import ArrivalStream
from workload.azure2019 import AzureTrace2019, load_trace
from workload.azure2021 import read_trace_2021
from workload.profiles import BENCHMARK_PROFILES
from workload.sampler import (
    OPENWHISK_NAME,
    check_action_name,
    rate_class_of,
    sample_workload,
    sample_workload_2021,
    spread_over_classes,
)

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def trace() -> AzureTrace2019:
    return load_trace(DATA / "azure-functions-2019-sample")


def test_the_same_seed_picks_the_same_workload(trace):
    a = sample_workload(trace, 30, seed=4)
    b = sample_workload(trace, 30, seed=4)
    assert [(f.name, f.trace_id) for f in a.functions] == [(f.name, f.trace_id) for f in b.functions]


def test_a_different_seed_picks_a_different_workload(trace):
    a = sample_workload(trace, 30, seed=4)
    b = sample_workload(trace, 30, seed=5)
    assert [f.trace_id for f in a.functions] != [f.trace_id for f in b.functions]


def test_picks_are_spread_evenly_over_the_rate_classes(trace):
    workload = sample_workload(trace, 12, seed=0)
    assert Counter(f.rate_class for f in workload.functions) == {"low": 4, "medium": 4, "high": 4}
    for f in workload.functions:
        assert rate_class_of(f.mean_rate_per_minute) == f.rate_class


def test_a_short_class_gives_its_shortfall_to_the_others(trace):
    # The excerpt has 9 high-rate functions: asking for 15 per class moves 6 picks elsewhere.
    workload = sample_workload(trace, 45, seed=0)
    classes = Counter(f.rate_class for f in workload.functions)
    assert classes["high"] == 9 and classes["low"] + classes["medium"] == 36
    assert len({f.trace_id for f in workload.functions}) == 45


def test_spreading_more_picks_than_functions_is_refused():
    with pytest.raises(ValueError, match="cannot pick 4"):
        spread_over_classes(np.array([0.5, 2.0, 90.0]), 4, np.random.default_rng(0))


def test_the_first_12_functions_get_the_12_different_benchmarks(trace):
    workload = sample_workload(trace, 30, seed=8)
    first = [f.profile.name for f in workload.functions[:12]]
    assert sorted(first) == sorted(BENCHMARK_PROFILES)
    uses = Counter(f.profile.name for f in workload.functions)
    assert set(uses.values()) == {2, 3}


def test_action_names_are_unique_and_valid_for_openwhisk(trace):
    for profiles in ("benchmark", "trace"):
        workload = sample_workload(trace, 120, seed=1, profiles=profiles)
        names = workload.names
        assert len(set(names)) == len(names)
        assert all(OPENWHISK_NAME.match(name) for name in names)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("-leading-dash", id="leading-dash"),
        pytest.param("trailing ", id="trailing-space"),
        pytest.param("slash/inside", id="slash"),
        pytest.param("x" * 257, id="too-long"),
    ],
)
def test_an_invalid_action_name_is_refused(name):
    with pytest.raises(ValueError, match="OpenWhisk action name"):
        check_action_name(name)


def test_named_functions_are_kept_in_the_given_order_by_hash_or_prefix(trace):
    keys = trace.invocations.keys
    workload = sample_workload(trace, seed=0, functions=[keys[7].function, keys[2].function[:10]])
    assert [f.trace_id for f in workload.functions] == [keys[7].trace_id, keys[2].trace_id]
    np.testing.assert_array_equal(workload.functions[0].counts_per_minute, trace.invocations.counts[7])


def test_an_unknown_function_name_is_refused(trace):
    with pytest.raises(ValueError, match="matches 0 trace functions"):
        sample_workload(trace, seed=0, functions=["0123456789abcdef"])


def test_trace_profiles_use_the_functions_own_percentiles(trace):
    workload = sample_workload(trace, 6, seed=2, profiles="trace")
    for f in workload.functions:
        key = next(k for k in trace.invocations.keys if k.trace_id == f.trace_id)
        durations = trace.durations[key]
        assert f.profile.exec_median_s == pytest.approx(max(durations.p50_ms / 1000, 0.001))
        assert f.profile.memory_mb % 128 == 0 and f.profile.memory_mb >= 128


def test_a_minute_range_slices_the_counts(trace):
    workload = sample_workload(trace, 5, seed=0, start_minute=600, end_minute=660)
    assert (workload.start_minute, workload.end_minute) == (600, 660)
    assert all(f.counts_per_minute.shape == (60,) and f.first_minute == 600 for f in workload.functions)
    stream = ArrivalStream(workload.functions, workload.start_minute, workload.end_minute, seed=0)
    assert stream.total_invocations() == workload.total_invocations()


def test_the_whole_excerpt_as_a_workload_keeps_every_invocation(trace):
    workload = sample_workload(trace, 400, seed=0)
    assert workload.total_invocations() == 1_072_903
    assert not workload.functions[0].counts_per_minute.flags.writeable


def test_a_2021_trace_becomes_a_workload_with_its_own_durations():
    trace = read_trace_2021(
        DATA / "azure-functions-2021-sample" / "AzureFunctionsInvocationTraceForTwoWeeksJan2021.csv"
    )
    workload = sample_workload_2021(trace, seed=0, profiles="trace")
    assert len(workload.functions) == 49 and workload.total_invocations() == 998
    first = workload.functions[0]
    own = trace.duration_s[trace.fn == 0]
    assert first.profile.exec_median_s == pytest.approx(max(float(np.median(own)), 0.001))
