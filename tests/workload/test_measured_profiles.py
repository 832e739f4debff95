"""Profiles from a solo measurement on the platform (``workload.profiles.profile_from_solo``)."""

from __future__ import annotations

import numpy as np
import pytest

from workload.profiles import MIN_PAUSED_RUNS, profile_from_solo, profiles_from_solo


def solo_row(name: str = "primes", *, warm_ms: list[float] | None = None, paused_ms: list[float] | None = None,
             cold_init_ms: list[float] | None = None, warm_cpu_s: float = float("nan"),
             memory_mb: int = 256) -> dict[str, object]:
    return {
        "function": name,
        "memory_mb": memory_mb,
        "warm_cpu_s": warm_cpu_s,
        "samples": {
            "duration_ms": warm_ms if warm_ms is not None else [40.0] * 50,
            "paused_duration_ms": paused_ms if paused_ms is not None else [],
            "cold_init_ms": cold_init_ms if cold_init_ms is not None else [30.0, 34.0, 90.0],
        },
    }


def test_execution_percentiles_come_from_the_paused_runs_when_there_are_enough_of_them() -> None:
    paused = list(np.linspace(50.0, 150.0, MIN_PAUSED_RUNS))
    profile = profile_from_solo(solo_row(warm_ms=[40.0] * 50, paused_ms=paused))
    assert profile.exec_median_s == pytest.approx(0.1, abs=1e-4)
    assert profile.exec_p99_s == pytest.approx(float(np.percentile(paused, 99)) / 1000, abs=1e-4)
    assert f"{MIN_PAUSED_RUNS} paused" in profile.source


def test_too_few_paused_runs_leave_the_back_to_back_runs_in_charge() -> None:
    profile = profile_from_solo(solo_row(warm_ms=[40.0] * 50, paused_ms=[100.0] * (MIN_PAUSED_RUNS - 1)))
    assert (profile.exec_median_s, profile.exec_p99_s) == pytest.approx((0.04, 0.04))


def test_the_cold_start_is_the_median_init_time_and_memory_the_deployed_limit() -> None:
    profile = profile_from_solo(solo_row(cold_init_ms=[30.0, 34.0, 900.0], memory_mb=512))
    assert profile.init_s == pytest.approx(0.034)
    assert profile.memory_mb == 512


@pytest.mark.parametrize(
    ("warm_cpu_s", "cpu_fraction", "max_cores"),
    [
        pytest.param(0.040, 1.0, 1.0, id="cpu-bound"),
        pytest.param(0.010, 0.25, 1.0, id="mostly-waiting"),
        pytest.param(0.070, 1.0, 1.75, id="more-than-one-core"),
        pytest.param(float("nan"), 1.0, 1.0, id="cpu-unknown-counts-as-cpu-bound"),
    ],
)
def test_the_cpu_share_is_cpu_time_over_duration(warm_cpu_s: float, cpu_fraction: float, max_cores: float) -> None:
    profile = profile_from_solo(solo_row(warm_ms=[40.0] * 50, warm_cpu_s=warm_cpu_s))
    assert (profile.cpu_fraction, profile.max_cores) == pytest.approx((cpu_fraction, max_cores))


def test_a_sub_millisecond_function_is_floored_at_the_platforms_millisecond() -> None:
    profile = profile_from_solo(solo_row(warm_ms=[0.0] * 50))
    assert profile.exec_median_s == profile.exec_p99_s == 0.001


@pytest.mark.parametrize(
    ("row", "message"),
    [
        pytest.param(solo_row(warm_ms=[]), "'primes': needs samples.duration_ms", id="no-warm-runs"),
        pytest.param(solo_row(cold_init_ms=[]), "'primes': needs samples.duration_ms and samples.cold_init_ms",
                     id="no-cold-start"),
        pytest.param({k: v for k, v in solo_row().items() if k != "memory_mb"}, "'primes': needs memory_mb",
                     id="no-memory"),
    ],
)
def test_an_incomplete_measurement_is_refused_naming_the_function(row: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        profile_from_solo(row)


def test_a_whole_measurement_gives_one_profile_per_function_with_its_provenance() -> None:
    profiles = profiles_from_solo({"functions": [solo_row("primes"), solo_row("base64")]}, provenance="run 7")
    assert list(profiles) == ["primes", "base64"]
    assert profiles["base64"].name == "base64" and profiles["base64"].source.endswith("; run 7")


def test_a_measurement_without_functions_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty 'functions'"):
        profiles_from_solo({"functions": []})
