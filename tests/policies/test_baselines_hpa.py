"""Kubernetes' HPA: ceil(current x metric / target), tolerance 0.1, 300 s scale-down stabilisation."""

from __future__ import annotations

import pytest
from baseline_fixtures import MU, snapshot

from policies.baselines.hpa import HpaConfig, HpaPolicy
from policies.types import ClusterSnapshot

TARGET = 0.7


def _tick(time_s: float, containers: int, ratio: float, tick_s: float = 10.0) -> ClusterSnapshot:
    """A tick whose CPU utilisation is ``ratio`` x the 70% target, at 128 shares per container."""
    allocated = containers * 128 / 1024 * tick_s
    return snapshot(
        time_s,
        tick_s=tick_s,
        containers=float(containers),
        cpu_shares=128.0,
        cpu_alloc_core_s=allocated,
        cpu_used_core_s=ratio * TARGET * allocated,
        arrivals=10.0,
    )


TOLERANCE = [(1.09, 4), (1.11, 5), (0.91, 4), (2.0, 8), (0.5, 2)]


@pytest.mark.parametrize(("ratio", "expected"), TOLERANCE, ids=[f"ratio-{r:g}" for r, _ in TOLERANCE])
def test_the_hpa_holds_inside_its_tolerance_and_scales_to_ceil_current_times_ratio_outside(
    ratio: float, expected: int
) -> None:
    decisions = HpaPolicy().decide(_tick(10.0, containers=4, ratio=ratio), MU)
    assert decisions.containers[0] == expected, decisions.reasons[0]


def _high_then_low(until_s: float) -> int:
    """10 containers at the target until t = 100 s, then at half of it until ``until_s``."""
    policy = HpaPolicy()
    for time_s in range(10, 101, 10):
        assert policy.decide(_tick(float(time_s), containers=10, ratio=1.0), MU).containers[0] == 10
    desired = 10
    for time_s in range(110, int(until_s) + 1, 10):
        desired = int(policy.decide(_tick(float(time_s), containers=10, ratio=0.5), MU).containers[0])
    return desired


@pytest.mark.parametrize(
    ("until_s", "expected"),
    [(110.0, 10), (390.0, 10), (400.0, 5)],
    ids=["10s-after-the-last-high", "290s-after-waits", "300s-after-scales-down"],
)
def test_the_hpa_waits_its_300s_stabilisation_window_before_scaling_down(
    until_s: float, expected: int
) -> None:
    assert _high_then_low(until_s) == expected


def test_a_scale_up_is_immediate_but_limited_to_doubling_or_four_more() -> None:
    decisions = HpaPolicy().decide(_tick(10.0, containers=2, ratio=5.0), MU)
    assert decisions.containers[0] == 6  # wants 10; max(2 x 2, 2 + 4) = 6


@pytest.mark.parametrize(
    ("containers", "ratio", "expected", "max_replicas"),
    [(3, 0.01, 1, None), (0, 1.0, 1, None), (90, 2.0, 100, 100), (90, 2.0, 180, None)],
    ids=["idle-keeps-min-replicas", "no-containers-starts-min-replicas", "clamped-to-max-replicas",
         "no-cap-of-its-own-by-default"],
)
def test_the_count_stays_within_min_and_max_replicas(containers: int, ratio: float, expected: int,
                                                     max_replicas: int | None) -> None:
    policy = HpaPolicy(HpaConfig(max_replicas=max_replicas))
    assert policy.decide(_tick(10.0, containers=containers, ratio=ratio), MU).containers[0] == expected


def test_the_stabilisation_window_is_measured_in_seconds_not_ticks() -> None:
    policy = HpaPolicy()
    policy.decide(_tick(2.0, containers=10, ratio=1.0, tick_s=2.0), MU)
    time_s = 2.0
    desired = 10
    while time_s < 302.0:
        time_s += 2.0
        desired = int(policy.decide(_tick(time_s, containers=10, ratio=0.5, tick_s=2.0), MU).containers[0])
        if time_s < 302.0:
            assert desired == 10, f"scaled down at {time_s}s"
    assert desired == 5


def test_a_tolerance_above_one_is_rejected() -> None:
    with pytest.raises(
        ValueError, match=r"HpaConfig\.tolerance = 1\.5 is outside the allowed range \[0\.0, 1\.0\]"
    ):
        HpaConfig(tolerance=1.5)


def test_without_a_stabilisation_window_the_hpa_scales_down_at_once() -> None:
    policy = HpaPolicy(HpaConfig(scale_down_stabilisation_s=0.0))
    policy.decide(_tick(10.0, containers=10, ratio=1.0), MU)
    assert policy.decide(_tick(20.0, containers=10, ratio=0.5), MU).containers[0] == 5
