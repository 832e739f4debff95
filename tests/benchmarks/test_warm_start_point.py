"""The warm-start point: a learner built fresh, never trained, judged frozen and greedy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from controller.bench.cells import Cell, run_cell
from controller.bench.scenarios import load_scenario
from benchmark_scripts import ROOT, load, script

SCRIPT = script("warm_start_point")
warm = load("warm_start_point")

SCENARIO = """\
scenario:
  version: 1
  name: tiny
  description: the 4 busiest functions for 10 minutes
  train: {start_minute: 480, minutes: 2}
  evaluate: {start_minute: 600, minutes: 10}
cluster: {invokers: 2}
workload: {functions: 4, select: busiest, profiles: benchmark}
reward: {slo_probe_invocations: 200, kind: operator}
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


def test_the_warm_start_point_plays_the_warm_start_action_for_every_function(tiny, monkeypatch):
    from policies.agent import WARM_START_ACTIONS, SharedPolicyAgent

    chosen = []
    decide = SharedPolicyAgent.decide

    def recording(self, snapshot, mu):
        decisions = decide(self, snapshot, mu)
        chosen.extend(a for a in decisions.action.tolist() if a >= 0)
        assert self.agent.greedy and self.agent.frozen
        return decisions

    monkeypatch.setattr(SharedPolicyAgent, "decide", recording)
    point = warm.warm_start_point("nac-linear", "portfolio", "kpa")
    row, _ = run_cell(Cell(scenario=load_scenario(tiny), point=point, seed=3))
    assert chosen and set(chosen) == {WARM_START_ACTIONS["kpa"]}
    assert row["family"] == "nac-linear-warm-start" and row["memory_gb_s"] > 0


def test_a_missing_results_file_or_a_kpa_warm_start_outside_the_portfolio_is_one_line(tiny, tmp_path):
    for extra, message in ((["--against", str(tmp_path / "none.csv")], "no such file"),
                           (["--scheme", "staffing"], "needs --scheme portfolio"),
                           (["--seeds", "x"], "--seeds 'x'"),
                           (["--param", "colour=1"], "unknown parameter 'colour'"),
                           (["--scheme", "staffing", "--warm-start", "fitted", "--param", "histogram_member=true"],
                            "histogram_member needs scheme=portfolio")):
        done = subprocess.run([sys.executable, str(SCRIPT), str(tiny), *extra], capture_output=True, text=True,
                              cwd=ROOT)
        assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr


def test_a_fitted_warm_start_point_is_fitted_on_the_training_window_then_judged(tiny, monkeypatch):
    fits = []
    real = warm.fit_warm_start

    def recording(settings, name, policy, workload, slo_s, seeds, cache=None):
        fits.append(settings.workload.start_minute)
        return real(settings, name, policy, workload, slo_s, seeds, cache=cache)

    monkeypatch.setattr(warm, "fit_warm_start", recording)
    point = warm.warm_start_point("nac-linear", "staffing", "fitted")
    cell = Cell(scenario=load_scenario(tiny), point=point, seed=2)
    row, _ = run_cell(cell, warm.fitted_checkpoint(cell, tiny.parent))
    assert fits == [480]  # the scenario's training window, not the judged one (600)
    assert row["point"] == "nac-linear warm start fitted [staffing]" and row["memory_gb_s"] > 0
    at = warm.warm_start_point("nac-linear", "staffing", "fitted", 0.7)
    assert at.overrides["reward.alpha"] == 0.7 and at.label == "nac-linear alpha=0.7 warm start fitted [staffing]"
