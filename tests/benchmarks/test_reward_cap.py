"""reward_cap.py: how much late work falls in the function-ticks the operator reward's cap flattens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from benchmark_scripts import ROOT, script

SCENARIO = """\
scenario:
  version: 1
  name: tiny
  description: the 4 busiest functions for 10 minutes, on one small invoker so that work is late
  train: {start_minute: 480, minutes: 2}
  evaluate: {start_minute: 600, minutes: 10}
cluster: {invokers: 1, cores: 1}
workload: {functions: 4, select: busiest, profiles: benchmark}
reward: {slo_probe_invocations: 200, kind: operator}
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script("reward_cap")), *args], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


def test_a_higher_cap_flattens_fewer_ticks_and_less_late_work(tiny: Path) -> None:
    done = run(str(tiny), "--points", "ensure c=0.5", "--alphas", "0.1,0.9", "--caps", "0.01,1,1e9", "--seeds", "1")
    assert done.returncode == 0, done.stderr
    rows = [line.strip("|").split("|") for line in done.stdout.splitlines() if line.startswith("| ensure")]
    assert len(rows) == 6  # two α, three caps
    table = {(float(a), float(c)): (float(t.strip(" %")), float(w.strip(" %"))) for _, a, c, t, w in rows}
    for alpha in (0.1, 0.9):
        low, mid, high = (table[(alpha, cap)] for cap in (0.01, 1.0, 1e9))
        assert low[0] >= mid[0] >= high[0] == 0.0 and low[1] >= mid[1] >= high[1] == 0.0
        assert low[1] > 50.0  # the small invoker makes late work, nearly all of it in ticks past a tiny cap
    # Late work weighs less at α 0.9, so fewer ticks reach a cap that late work alone would reach.
    assert table[(0.9, 1.0)][0] <= table[(0.1, 1.0)][0]


def test_usage_problems_are_one_line(tiny: Path) -> None:
    for args, words in (((str(tiny), "--points", "kpa target=9"), "no baseline point's label"),
                        ((str(tiny), "--alphas", "0.1,x"), "not a comma-separated list"),
                        ((str(tiny), "--alphas", "1.5"), "must be in [0, 1]"),
                        ((str(tiny), "--caps", "0"), "must be > 0"),
                        ((str(tiny), "--seeds", "a-b"), "--seeds"),
                        ((str(tiny.parent / "none.yaml"),), "none.yaml")):
        done = run(*args)
        assert done.returncode != 0
        assert words in done.stderr and "Traceback" not in done.stderr
