"""What every baseline promises: found by name, no decision without data, a growing function set."""

from __future__ import annotations

import numpy as np
import pytest
from baseline_fixtures import MU, snapshot

from policies import registry
from policies.types import KEEP_SHARES, UNMANAGED, Decisions, Policy

BASELINES = ["openwhisk-default", "ensure", "kpa", "hpa", "hybrid-histogram"]

# One busy tick's worth of observations, the same for every function.
BUSY = {
    "arrivals": 20.0,
    "completions": 20.0,
    "in_flight": 2.0,
    "mean_exec_s": 0.5,
    "recent_exec_s": 0.5,
    "p50_latency_s": 0.6,
    "p99_latency_s": 0.9,
    "containers": 2.0,
    "busy_containers": 2.0,
    "cpu_shares": 128.0,
    "cpu_used_core_s": 2.0,
    "cpu_alloc_core_s": 2.5,
}


@pytest.mark.parametrize("name", BASELINES, ids=BASELINES)
def test_every_baseline_is_found_by_name_and_satisfies_the_policy_protocol(name: str) -> None:
    policy = registry.make(name)
    assert isinstance(policy, Policy)
    assert policy.name == name
    assert name in registry.available()


@pytest.mark.parametrize("name", BASELINES, ids=BASELINES)
def test_an_unknown_parameter_is_rejected_naming_the_policy_and_the_accepted_keys(name: str) -> None:
    with pytest.raises(ValueError, match=rf"policy '{name}': unknown parameter\(s\) bogus_knob; accepted: "):
        registry.make(name, bogus_knob=1)


@pytest.mark.parametrize("name", BASELINES, ids=BASELINES)
def test_an_unobserved_row_gets_no_decision_while_its_neighbours_do(name: str) -> None:
    policy = registry.make(name)
    valid = np.array([True, False, True])
    decisions = Decisions.none(0)
    for tick in range(1, 4):
        decisions = policy.decide(snapshot(10.0 * tick, names=("a", "b", "c"), valid=valid, **BUSY), MU)
    assert decisions.valid.tolist() == [True, False, True]
    assert decisions.reasons[1] == "no data"
    assert decisions.containers[1] == UNMANAGED
    assert decisions.cpu_shares[1] == KEEP_SHARES
    assert decisions.reasons[0].startswith(name)


@pytest.mark.parametrize("name", BASELINES, ids=BASELINES)
def test_functions_appearing_later_are_decided_for_without_disturbing_the_old_ones(name: str) -> None:
    grown = registry.make(name)
    alone = registry.make(name)
    for tick in range(1, 4):
        grown.decide(snapshot(10.0 * tick, names=("a",), **BUSY), MU)
        alone.decide(snapshot(10.0 * tick, names=("a",), **BUSY), MU)
    names = ("a", "b", "c")
    for tick in range(4, 7):
        decisions = grown.decide(snapshot(10.0 * tick, names=names, **BUSY), MU)
        reference = alone.decide(snapshot(10.0 * tick, names=("a",), **BUSY), MU)
    assert len(decisions) == 3
    assert decisions.valid.all()
    assert decisions.containers[0] == reference.containers[0]
    assert decisions.cpu_shares[0] == reference.cpu_shares[0]


@pytest.mark.parametrize("name", BASELINES, ids=BASELINES)
def test_a_baseline_learns_nothing_from_feedback(name: str) -> None:
    policy = registry.make(name)
    tick = snapshot(10.0, **BUSY)
    policy.decide(tick, MU)
    assert policy.feedback(tick, MU, np.array([0.5])) == {}


@pytest.mark.parametrize("name", BASELINES, ids=BASELINES)
def test_decisions_do_not_depend_on_the_tick_length_being_ten_seconds(name: str) -> None:
    policy = registry.make(name)
    per_second = {key: value for key, value in BUSY.items()}
    per_second.update(arrivals=4.0, completions=4.0, cpu_used_core_s=0.4, cpu_alloc_core_s=0.5)
    decisions = Decisions.none(1)
    for tick in range(1, 6):
        decisions = policy.decide(snapshot(2.0 * tick, tick_s=2.0, **per_second), MU)
    reference = registry.make(name)
    for tick in range(1, 6):
        expected = reference.decide(snapshot(10.0 * tick, **BUSY), MU)
    assert decisions.valid.all()
    assert decisions.containers.tolist() == expected.containers.tolist()
