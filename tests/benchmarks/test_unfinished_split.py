"""unfinished_split.py: a judged run's unfinished work, split into queued and in flight."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "unfinished_split.py"

SCENARIO = """\
scenario:
  version: 1
  name: tiny
  description: the 4 busiest functions for 10 minutes, on one small invoker so that work is left over
  train: {start_minute: 480, minutes: 2}
  evaluate: {start_minute: 600, minutes: 10}
cluster: {invokers: 1, cores: 1}
workload: {functions: 4, select: busiest, profiles: benchmark}
reward: {slo_probe_invocations: 200, kind: operator}
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    (tmp_path / "checkpoints").mkdir()
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT)


def test_the_two_parts_add_up_to_the_cells_unfinished_count(tiny: Path) -> None:
    done = run(str(tiny), "--checkpoints", str(tiny.parent / "checkpoints"), "--points", "kpa target=0.4",
               "ensure c=0.5", "--seeds", "1,2", "--families", "kpa,ensure")
    assert done.returncode == 0, done.stderr
    rows = [line.strip("|").split("|") for line in done.stdout.splitlines()
            if line.startswith("| kpa") or line.startswith("| ensure")]
    assert len(rows) == 4  # two points, two seeds
    for _, seed, unfinished, queued, in_flight in rows:
        assert int(unfinished) == int(queued) + int(in_flight)
    assert sum(int(row[2]) for row in rows) > 0  # the small invoker does leave work over


def test_usage_problems_are_one_line(tiny: Path) -> None:
    checkpoints = str(tiny.parent / "checkpoints")
    for args, words in (((str(tiny), "--checkpoints", str(tiny.parent / "none"), "--points", "kpa"), "no such folder"),
                        ((str(tiny), "--checkpoints", checkpoints, "--points", "no such point", "--families", "kpa"),
                         "no point's label contains"),
                        ((str(tiny), "--checkpoints", checkpoints, "--points", "kpa", "--families", "nothing"),
                         "unknown family")):
        done = run(*args)
        assert done.returncode != 0
        assert words in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
