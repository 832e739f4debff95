"""The per-function choice bound: the oracle's choice, the frontiers it is measured against."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from benchmark_scripts import load

hindsight = load("hindsight_staffing")
baseline_frontiers, frontier_at, oracle_frontier = (hindsight.baseline_frontiers, hindsight.frontier_at,
                                                    hindsight.oracle_frontier)


def test_each_function_takes_its_cheapest_choice_at_the_price():
    # Two functions, three choices (rows). At a low price violations decide, at a high one memory.
    violations = np.array([[10.0, 0.0], [2.0, 5.0], [0.0, 9.0]])
    memory = np.array([[1.0, 9.0], [5.0, 2.0], [9.0, 1.0]])
    invocations = np.array([100.0, 100.0])
    (_, rate_low, memory_low), (_, rate_high, memory_high) = oracle_frontier(
        violations, memory, invocations, np.array([1e-3, 100.0]))
    assert (rate_low, memory_low) == (0.0, 18.0)  # row 2 for the first, row 0 for the second
    assert (rate_high, memory_high) == pytest.approx((19.0 / 200, 2.0))


def test_a_choice_is_made_among_the_allowed_rows_only():
    violations = np.array([[10.0, 0.0], [2.0, 5.0], [0.0, 9.0]])
    memory = np.array([[1.0, 9.0], [5.0, 2.0], [9.0, 1.0]])
    [(_, rate, held)] = oracle_frontier(violations, memory, np.array([100.0, 100.0]), np.array([1e-3]),
                                        allowed=np.array([0, 1]))
    assert (rate, held) == (0.01, 14.0)  # row 1 for the first (row 2 is not allowed), row 0 for the second


def test_a_choice_made_on_other_runs_is_scored_on_these():
    violations = np.array([[10.0], [0.0]])
    memory = np.array([[1.0], [5.0]])
    # On the training runs choice 0 had no violations, so it is taken and scored with these runs' 10.
    [(_, rate, held)] = oracle_frontier(violations, memory, np.array([100.0]), np.array([1e-3]),
                                        chosen_on=(np.array([[0.0], [0.0]]), memory))
    assert (rate, held) == (0.1, 1.0)


def test_the_frontier_joins_the_undominated_points_and_is_undefined_left_of_them():
    memory = np.array([10.0, 20.0, 30.0, 25.0])
    rate = np.array([0.5, 0.1, 0.05, 0.2])  # (25, 0.2) is dominated by (20, 0.1)
    assert frontier_at(memory, rate, 15.0) == pytest.approx(0.3)
    assert frontier_at(memory, rate, 27.5) == pytest.approx(0.0625)
    assert np.isnan(frontier_at(memory, rate, 5.0))


def test_the_suite_frontier_reads_only_the_baselines_of_the_scenario(tmp_path):
    path = tmp_path / "results.csv"
    rows = [("s", "ensure", 0, 100.0, 0.1), ("s", "kpa", 0, 80.0, 0.2), ("s", "nac-linear", 0, 50.0, 0.0),
            ("other", "ensure", 0, 1.0, 0.0), ("s", "ensure", 1, 90.0, 0.3)]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["scenario", "family", "seed", "memory_gb_s", "slo_violation_rate"])
        writer.writerows(rows)
    frontiers = baseline_frontiers(path, "s")
    assert sorted(frontiers) == [0, 1]
    assert frontiers[0][0].tolist() == [100.0, 80.0] and frontiers[0][1].tolist() == [0.1, 0.2]
    with pytest.raises(SystemExit, match="no baseline rows"):
        baseline_frontiers(path, "missing")
