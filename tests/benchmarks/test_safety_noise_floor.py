"""The safety check's noise floor: ENSURE against itself on the same arrivals."""

from __future__ import annotations

import subprocess
import sys

import pytest
from benchmark_scripts import load, script

floor = load("safety_noise_floor")

SCENARIO = """\
scenario:
  version: 1
  name: tiny
  description: the 4 busiest functions for 20 minutes
  train: {start_minute: 480, minutes: 2}
  evaluate: {start_minute: 600, minutes: 20}
cluster: {invokers: 2}
workload: {functions: 4, select: busiest, profiles: benchmark}
reward: {slo_probe_invocations: 200}
"""


def test_ensure_against_an_identical_run_never_fails_and_every_window_is_counted(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    windows, failed, worst = floor.failing_windows(path, "evaluate", False, seed=1, offset=0)
    assert (windows, failed, worst) == (2, 0, 0.0)
    windows, failed, worst = floor.failing_windows(path, "evaluate", False, seed=1)
    assert windows == 2 and 0 <= failed <= 2 and (worst > floor.FACTOR) == (failed > 0)


@pytest.fixture
def ensure_runs(monkeypatch):
    """(ENSURE's constant, simulator seeds) of every run the script makes, in order."""
    seen = []
    real = floor.run_policy

    def recording(settings, workload, slo_s, policy, seeds, save_learner):
        seen.append((settings.policy.params["ensure"]["staffing_c"], seeds))
        return real(settings, workload, slo_s, policy, seeds=seeds, save_learner=save_learner)

    monkeypatch.setattr(floor, "run_policy", recording)
    return seen


def test_the_generous_second_run_shares_the_seed_and_has_more_headroom(tmp_path, ensure_runs):
    path = tmp_path / "tiny.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    windows, failed, worst = floor.failing_windows(path, "evaluate", False, seed=1, other="generous")
    assert [c for c, _ in ensure_runs] == [floor.ENSURE_C, floor.ENSURE_C + floor.GENEROUS_EXTRA]
    assert ensure_runs[0][1] == ensure_runs[1][1]  # common random numbers: the same simulator seed
    assert windows == 2 and 0 <= failed <= 2 and (worst > floor.FACTOR) == (failed > 0)


def test_the_second_runs_headroom_is_the_extra_asked_for(tmp_path, ensure_runs):
    path = tmp_path / "tiny.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    floor.failing_windows(path, "evaluate", False, seed=1, other="generous", extra=-0.05)
    assert [c for c, _ in ensure_runs] == [floor.ENSURE_C, floor.ENSURE_C - 0.05]


def test_an_extra_without_generous_or_of_zero_is_refused_in_one_line(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    for extra_args, needle in ((["--extra", "0.02"], "--other generous only"),
                               (["--other", "generous", "--extra", "0"], "non-zero"),
                               (["--other", "generous", "--extra", "-2"], "at least 0")):
        done = subprocess.run([sys.executable, str(script("safety_noise_floor")), str(path), *extra_args],
                              capture_output=True, text=True)
        assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr
