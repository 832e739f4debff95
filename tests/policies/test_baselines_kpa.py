"""Knative's KPA: 70% of one request per container, 60 s stable / 6 s panic windows, 200% panic."""

from __future__ import annotations

import pytest
from baseline_fixtures import MU, snapshot

from policies.baselines.kpa import KpaConfig, KpaPolicy
from policies.types import Decisions

PANIC_EDGE = [(14.0, 20, True), (13.3, 19, False)]


@pytest.mark.parametrize("tick_s", [10.0, 2.0], ids=["10s-ticks", "2s-ticks"])
@pytest.mark.parametrize(
    ("concurrency", "desired", "panics"), PANIC_EDGE, ids=["200%-panics", "190%-stays-stable"]
)
def test_panic_mode_starts_when_the_panic_count_reaches_200_percent_of_the_current_count(
    concurrency: float, desired: int, panics: bool, tick_s: float
) -> None:
    policy = KpaPolicy()
    decisions = policy.decide(snapshot(tick_s, tick_s=tick_s, containers=10.0, in_flight=concurrency), MU)
    assert decisions.containers[0] == desired  # ceil(concurrency / 0.7)
    assert policy.panicking()[0] == panics
    assert decisions.reasons[0].startswith("kpa panic" if panics else "kpa stable")


def _panic_then_quiet(until_s: float) -> tuple[Decisions, KpaPolicy]:
    """Panic at t = 10 s (10 containers, 14 in flight), then no load at all."""
    policy = KpaPolicy()
    decisions = policy.decide(snapshot(10.0, containers=10.0, in_flight=14.0), MU)
    assert decisions.containers[0] == 20
    time_s = 10.0
    while time_s < until_s:
        time_s += 10.0
        decisions = policy.decide(snapshot(time_s, containers=20.0), MU)
    return decisions, policy


@pytest.mark.parametrize("until_s", [20.0, 40.0, 60.0], ids=["10s-later", "30s-later", "50s-later"])
def test_the_kpa_never_scales_down_while_in_panic(until_s: float) -> None:
    decisions, policy = _panic_then_quiet(until_s)
    assert policy.panicking()[0]
    assert decisions.containers[0] == 20


def test_panic_ends_a_stable_window_after_the_condition_last_held_and_scaling_down_resumes() -> None:
    decisions, policy = _panic_then_quiet(70.0)
    assert not policy.panicking()[0]
    assert decisions.containers[0] == 10  # the stable count 0, limited by the scale-down rate of 2


def test_panic_is_extended_while_the_condition_keeps_holding() -> None:
    policy = KpaPolicy()
    policy.decide(snapshot(10.0, containers=10.0, in_flight=14.0), MU)
    policy.decide(snapshot(50.0, containers=20.0, in_flight=28.0), MU)  # 40 desired: 200% again
    decisions = policy.decide(snapshot(100.0, containers=40.0), MU)  # 50 s after the last trigger
    assert policy.panicking()[0]
    assert decisions.containers[0] == 40


def test_stable_mode_sizes_for_the_sixty_second_average_concurrency() -> None:
    policy = KpaPolicy()
    for tick, concurrency in enumerate([7.0, 7.0, 0.0, 0.0, 0.0, 0.0, 0.0], start=1):
        decisions = policy.decide(snapshot(10.0 * tick, containers=10.0, in_flight=concurrency), MU)
    # The window (10 s, 70 s] holds one 7 and five 0s: mean 7/6, ceil((7/6) / 0.7) = 2, but the
    # scale-down rate of 2 keeps at least 10 / 2 = 5.
    assert decisions.containers[0] == 5
    assert decisions.reasons[0].startswith("kpa stable: concurrency 1.17")


def test_concurrency_comes_from_littles_law_when_nothing_is_in_flight_at_the_instant() -> None:
    tick = snapshot(10.0, containers=5.0, arrivals=70.0, completions=70.0, mean_exec_s=0.5)
    assert KpaPolicy().decide(tick, MU).containers[0] == 5  # 7/s x 0.5 s = 3.5 in flight, / 0.7


@pytest.mark.parametrize(("time_s", "expected"), [(90.0, 1), (100.0, 0)], ids=["in-grace", "after-grace"])
def test_a_quiet_function_scales_to_zero_only_after_the_grace_period(time_s: float, expected: int) -> None:
    policy = KpaPolicy()
    policy.decide(snapshot(10.0, containers=1.0, in_flight=0.5), MU)
    decisions = None
    for tick_end in range(20, int(time_s) + 1, 10):
        decisions = policy.decide(snapshot(float(tick_end), containers=1.0), MU)
    # Quiet over a whole stable window from t = 70 s, then 30 s of grace.
    assert decisions is not None
    assert decisions.containers[0] == expected


def test_min_scale_keeps_a_container_for_a_quiet_function() -> None:
    policy = KpaPolicy(KpaConfig(min_scale=1))
    decisions = None
    for tick in range(1, 20):
        decisions = policy.decide(snapshot(10.0 * tick, containers=1.0), MU)
    assert decisions is not None
    assert decisions.containers[0] == 1


def test_an_inconsistent_window_configuration_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"KpaConfig\.panic_window_s = 90\.0 is outside the allowed range"):
        KpaConfig(panic_window_s=90.0)


def test_a_kpa_that_does_not_explain_decides_the_same_counts() -> None:
    import numpy as np

    rng = np.random.default_rng(2)
    names = tuple(f"f{i}" for i in range(30))
    told, silent = KpaPolicy(), KpaPolicy(explain=False)
    for t in range(1, 200):
        arrivals = rng.poisson(rng.choice([0.0, 0.5, 20.0], size=30))
        snap = snapshot(10.0 * t, names, arrivals=arrivals, completions=arrivals, mean_exec_s=0.3,
                        containers=rng.integers(0, 5, 30), in_flight=rng.integers(0, 3, 30))
        a, b = told.decide(snap, MU), silent.decide(snap, MU)
        np.testing.assert_array_equal(a.containers, b.containers)
    assert a.reasons[0].startswith("kpa ") and set(b.reasons) <= {"kpa", "no data"}
