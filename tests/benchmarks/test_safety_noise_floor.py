"""The safety check's noise floor: ENSURE against itself on the same arrivals."""

from __future__ import annotations

from benchmark_scripts import load

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


def test_the_generous_second_run_shares_the_seed_and_has_more_headroom(tmp_path, monkeypatch):
    path = tmp_path / "tiny.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    seen = []
    real = floor.run_policy

    def recording(settings, workload, slo_s, policy, seeds, save_learner):
        seen.append((settings.policy.params["ensure"]["staffing_c"], seeds))
        return real(settings, workload, slo_s, policy, seeds=seeds, save_learner=save_learner)

    monkeypatch.setattr(floor, "run_policy", recording)
    windows, failed, worst = floor.failing_windows(path, "evaluate", False, seed=1, other="generous")
    assert [c for c, _ in seen] == [floor.ENSURE_C, floor.ENSURE_C + floor.GENEROUS_EXTRA]
    assert seen[0][1] == seen[1][1]  # common random numbers: the same simulator seed
    assert windows == 2 and 0 <= failed <= 2 and (worst > floor.FACTOR) == (failed > 0)
