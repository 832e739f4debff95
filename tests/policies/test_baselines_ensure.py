"""ENSURE: square-root staffing of warm containers, and CPU steps on latency degradation."""

from __future__ import annotations

import math

import pytest
from baseline_fixtures import MU, invokers, snapshot

from policies.baselines.ensure import (
    EnsureConfig,
    EnsurePolicy,
    halfin_whitt_delay_probability,
    staffing_c_for_delay,
)
from policies.types import KEEP_SHARES, UNMANAGED

# offered load R -> ceil(R + 1.06 sqrt(R))
STAFFING = [(0.25, 1), (1.0, 3), (4.0, 7), (9.0, 13), (16.0, 21), (100.0, 111)]


@pytest.mark.parametrize("tick_s", [10.0, 5.0], ids=["10s-ticks", "5s-ticks"])
@pytest.mark.parametrize(("load", "expected"), STAFFING, ids=[f"R={r:g}" for r, _ in STAFFING])
def test_ensure_keeps_ceil_r_plus_c_sqrt_r_warm_containers_for_offered_load_r(
    load: float, expected: int, tick_s: float
) -> None:
    exec_s = 0.5
    arrivals = load / exec_s * tick_s  # R = arrival rate x mean execution time
    tick = snapshot(tick_s, tick_s=tick_s, arrivals=arrivals, completions=arrivals, mean_exec_s=exec_s)
    decisions = EnsurePolicy().decide(tick, MU)
    assert decisions.containers[0] == expected
    assert decisions.reasons[0].startswith(f"ensure: R={load:.2f} -> {expected} containers")


def test_the_default_staffing_constant_means_a_one_in_five_chance_of_waiting() -> None:
    assert halfin_whitt_delay_probability(EnsureConfig().staffing_c) == pytest.approx(0.20, abs=0.002)
    assert staffing_c_for_delay(0.20) == pytest.approx(1.06, abs=0.005)
    assert staffing_c_for_delay(0.05) > staffing_c_for_delay(0.20)


def test_ensure_follows_a_burst_at_once_and_releases_containers_over_its_smoothing_time() -> None:
    policy = EnsurePolicy()
    busy = {"arrivals": 180.0, "completions": 180.0, "mean_exec_s": 0.5}  # R = 9
    assert policy.decide(snapshot(10.0, **busy), MU).containers[0] == 13
    quiet = policy.decide(snapshot(20.0), MU).containers[0]
    smoothed = 9.0 * math.exp(-10.0 / 30.0)
    assert quiet == math.ceil(smoothed + 1.06 * math.sqrt(smoothed))
    assert 1 < quiet < 13
    decisions = None
    for tick in range(3, 50):  # 470 s of silence: R decays far below the idle load
        decisions = policy.decide(snapshot(10.0 * tick), MU)
    assert decisions is not None
    assert decisions.containers[0] == UNMANAGED
    assert decisions.reasons[0].startswith("ensure: idle")


def test_without_any_execution_time_the_containers_are_left_to_the_platform() -> None:
    decisions = EnsurePolicy().decide(snapshot(10.0, arrivals=5.0), MU)
    assert decisions.valid[0]
    assert decisions.containers[0] == UNMANAGED
    assert "no execution time yet" in decisions.reasons[0]


def _degradation_run(slowdown: float, utilisation: float, shares: float) -> tuple[int, str]:
    """A function whose uncontended time is 1 s, then 3 completions ``slowdown`` slower."""
    policy = EnsurePolicy()
    calm = {
        "arrivals": 10.0,
        "completions": 5.0,
        "mean_exec_s": 1.0,
        "recent_exec_s": 1.0,
        "cpu_shares": shares,
    }
    first = policy.decide(snapshot(10.0, cluster=invokers(utilisation=0.2), **calm), MU)
    assert first.cpu_shares[0] == KEEP_SHARES
    slow = 1.0 + slowdown
    tick = snapshot(
        20.0,
        cluster=invokers(utilisation=utilisation),
        arrivals=10.0,
        completions=3.0,
        mean_exec_s=slow,
        recent_exec_s=slow,
        cpu_shares=shares,
    )
    decisions = policy.decide(tick, MU)
    return int(decisions.cpu_shares[0]), decisions.reasons[0]


STEPS = [
    (0.10, 0.2, 128, 256),
    (0.09, 0.2, 128, KEEP_SHARES),
    (0.50, 0.2, 384, 512),
    (0.10, 0.2, 1024, KEEP_SHARES),
    (0.30, 0.95, 384, 256),
    (0.00, 0.95, 384, 256),
    (0.30, 0.95, 128, KEEP_SHARES),
    (0.30, 0.85, 384, 512),
]
STEP_IDS = [
    "10%-slower-steps-up",
    "9%-slower-keeps",
    "50%-slower-steps-up-one-step-only",
    "at-one-core-keeps",
    "node-full-steps-back-even-when-slow",
    "node-full-steps-back",
    "node-full-at-openwhisk-floor-keeps",
    "85%-busy-node-still-has-cpu",
]


@pytest.mark.parametrize(("slowdown", "utilisation", "shares", "expected"), STEPS, ids=STEP_IDS)
def test_ensure_steps_cpu_up_on_a_ten_percent_degradation_and_back_when_the_node_is_full(
    slowdown: float, utilisation: float, shares: float, expected: int
) -> None:
    got, reason = _degradation_run(slowdown, utilisation, shares)
    assert got == expected, reason


def test_a_stale_degradation_without_new_completions_is_not_acted_on_again() -> None:
    policy = EnsurePolicy()
    policy.decide(snapshot(10.0, arrivals=10.0, completions=5.0, mean_exec_s=1.0, recent_exec_s=1.0), MU)
    stale = snapshot(20.0, arrivals=10.0, completions=0.0, recent_exec_s=1.5, cpu_shares=128.0)
    assert policy.decide(stale, MU).cpu_shares[0] == KEEP_SHARES


def test_the_uncontended_time_is_the_lowest_well_sampled_mean() -> None:
    policy = EnsurePolicy()
    for tick, (mean, completions) in enumerate([(1.2, 5.0), (0.8, 2.0), (1.0, 3.0), (1.4, 9.0)], start=1):
        policy.decide(snapshot(10.0 * tick, arrivals=5.0, completions=completions, mean_exec_s=mean), MU)
    assert policy.uncontended_exec_s[0] == pytest.approx(1.0)  # 0.8 came from only 2 completions


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("staffing_c", -1.0),
        ("degradation_threshold", -0.1),
        ("no_free_cpu_utilisation", 1.5),
        ("cpu_step_shares", 0),
    ],
    ids=["negative-c", "negative-threshold", "utilisation-above-one", "zero-step"],
)
def test_an_out_of_range_hyperparameter_is_rejected_with_its_key_and_value(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"EnsureConfig\.{key} = {value!r} is outside the allowed range"):
        EnsureConfig(**{key: value})
