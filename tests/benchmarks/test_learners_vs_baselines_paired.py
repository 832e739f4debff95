"""The pooling script behind the issue-4 tables: paired differences, counts, and refusals."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from benchmark_scripts import load

paired = load("learners_vs_baselines_paired")


def write(folder: Path, seed: int, policy: str, violations: float, utilisation: float) -> None:
    path = folder / f"seed{seed}" / f"{policy}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["seed", "policy", "slo_violation_rate", "cpu_utilisation"])
        writer.writeheader()
        writer.writerow({"seed": seed, "policy": policy, "slo_violation_rate": violations,
                         "cpu_utilisation": utilisation})


def test_seeds_from_several_folders_are_paired_per_seed(tmp_path: Path, capsys) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    # seed 0: learner better on both; seed 1: fewer violations but lower utilisation.
    write(a, 0, "ensure", 0.02, 0.5)
    write(a, 0, "nac-nn", 0.01, 3.0)
    write(b, 1, "ensure", 0.02, 0.6)
    write(b, 1, "nac-nn", 0.01, 0.4)
    (a / "seed0" / "nac-nn.ckpt.diagnostics.csv").write_text("tick,loss\n1,2\n")  # not a result: skipped
    assert paired.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("nac-nn") and "ensure" in row)
    assert "-1.00 ±" in line and "2 of 2" in line and "1 of 2" in line
    table = paired.read([a, b])
    assert table["nac-nn"] == {0: (1.0, 300.0), 1: (1.0, 40.0)}


def test_a_seed_in_two_folders_and_a_broken_row_are_refused_by_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, 0, "ensure", 0.02, 0.5)
    write(b, 0, "ensure", 0.03, 0.5)
    with pytest.raises(SystemExit, match="seed 0 of ensure appears in two folders"):
        paired.read([a, b])
    write(b, 0, "ensure", "n/a", 0.5)
    with pytest.raises(SystemExit, match=r"ensure\.csv:2: not a result row"):
        paired.read([b])
    with pytest.raises(SystemExit, match="not a folder"):
        paired.read([tmp_path / "missing"])
