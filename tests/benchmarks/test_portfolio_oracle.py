"""The portfolio's hindsight bound: per function the level that turned out cheapest on the judged window."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from benchmark_scripts import ROOT, load, script

SCRIPT = script("portfolio_oracle")
oracle = load("portfolio_oracle")

SCENARIO = """\
scenario:
  version: 1
  name: tiny
  description: the 4 busiest functions for 5 minutes
  train: {start_minute: 480, minutes: 2}
  evaluate: {start_minute: 600, minutes: 5}
cluster: {invokers: 2}
workload: {functions: 4, select: busiest, profiles: benchmark}
reward: {slo_probe_invocations: 200}
"""


def _table(violations, memory, cold, invocations=(100.0, 100.0)):
    n = len(violations)
    return {"invocations": np.array(invocations), "violations": np.array(violations, dtype=float),
            "memory_gb_s": np.array(memory, dtype=float), "cold_starts": np.array(cold, dtype=float),
            "completed": np.array(invocations), "unfinished": np.zeros(n), "dropped": np.zeros(n)}


def test_each_function_takes_its_cheapest_level_and_the_totals_add_up():
    levels = ("c=1.06", "kpa=1")
    tables = [_table([10, 4], [100, 50], [1, 1]), _table([2, 8], [120, 10], [5, 0])]
    row, chosen = oracle.hindsight_point(levels, tables, price=0.0, rule="free")
    # Violations alone: function 0 takes kpa=1 (2 < 10), function 1 c=1.06 (4 < 8).
    assert chosen == {"c=1.06": 1, "kpa=1": 1}
    assert row["slo_violation_rate"] == pytest.approx((2 + 4) / 200)
    assert row["memory_gb_s"] == pytest.approx(120 + 50)
    assert row["cold_start_rate"] == pytest.approx((5 + 1) / 200)
    # Under ENSURE's cold-start rule function 0 may not take kpa=1 (5 cold starts against 1).
    row, chosen = oracle.hindsight_point(levels, tables, price=0.0, rule="ensure")
    assert chosen == {"c=1.06": 2, "kpa=1": 0} and row["slo_violation_rate"] == pytest.approx(14 / 200)
    # Memory priced high: each takes its smaller pool.
    row, chosen = oracle.hindsight_point(levels, tables, price=1.0, rule="free")
    assert chosen == {"c=1.06": 1, "kpa=1": 1} and row["memory_gb_s"] == pytest.approx(100 + 10)


def test_the_script_plays_every_level_and_a_member_and_judges_them_against_a_results_file(tmp_path):
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    done = subprocess.run([sys.executable, str(SCRIPT), str(scenario), "--seeds", "0", "--prices", "0.01",
                           "--member", "hybrid-histogram"], capture_output=True, text=True, cwd=ROOT, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("seed 0 hindsight")]
    assert len(lines) == 4  # free and ensure, without and with the member
    assert any("+hybrid-histogram" in line for line in lines)
    played = [line for line in done.stderr.splitlines() if "played" in line]
    assert len(played) == 9  # the portfolio's levels


def test_bad_input_is_one_line(tmp_path):
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    for args, message in ((["--member", "ensur"], "--member 'ensur': not a registered policy"),
                          (["--prices", "a,b"], "--prices 'a,b'"),
                          (["--prices", "-1"], "every price must be >= 0"),
                          (["--against", str(tmp_path / "nope.csv")], "no such file")):
        done = subprocess.run([sys.executable, str(SCRIPT), str(scenario), *args], capture_output=True, text=True, check=False,
                              cwd=ROOT, timeout=300)
        assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
