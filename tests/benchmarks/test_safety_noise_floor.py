"""The safety check's noise floor: ENSURE against itself on the same arrivals."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("safety_noise_floor", ROOT / "benchmarks" / "safety_noise_floor.py")
floor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(floor)

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
