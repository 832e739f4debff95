"""The cold-start ledger: the cluster's cold starts against the followed mixture's and ENSURE's level's in the twins."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from policies.staffing import action_index
from benchmark_scripts import ROOT, load, script

SCRIPT = script("twin_cold_starts")
ledger = load("twin_cold_starts")

LEVELS = ("platform", "c=1.06", "kpa=0.7")


def test_a_ticks_values_are_read_back_exactly_from_the_running_averages() -> None:
    rng = np.random.default_rng(3)
    w = 1.0 - np.exp(-10.0 / 3600.0)
    average = np.zeros((3, 4))
    for _ in range(50):
        values = rng.poisson(0.5, size=(3, 4)).astype(float)
        after = average + w * (values - average)
        np.testing.assert_allclose(ledger.tick_values(average, after, w), values, atol=1e-9)
        average = after
    with pytest.raises(ValueError, match="weight 0"):
        ledger.tick_values(average, average, 0.0)


def test_actions_become_the_twins_level_indices_at_either_share_factor() -> None:
    actions = np.array([action_index("kpa=0.7", 2.0), action_index("platform", 1.0), action_index("c=1.06", 2.0)])
    assert ledger.followed_levels(actions, LEVELS).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="hist"):
        ledger.followed_levels(np.array([action_index("hist", 1.0)]), LEVELS)


def test_the_ledger_counts_the_mixture_against_ensures_level_by_part_and_by_level() -> None:
    book = ledger.Ledger(LEVELS, part_s=600.0)
    # Two functions; per tick (levels x functions) cold starts in the twins.
    ticks = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 3.0]])
    book.add(0.0, 5.0, ticks, None)  # before the first decision: only the cluster's count
    book.add(10.0, 4.0, ticks, np.array([2, 0]))  # function 0 on kpa=0.7 (2 vs 0), 1 on the platform (0 vs 1)
    book.add(700.0, 1.0, ticks, np.array([1, 1]))  # both on ENSURE's level, in the second part
    assert book.real == 10.0
    assert book.mixture == 2.0 + 0.0 + 0.0 + 1.0 and book.ensure == 2.0
    assert book.by_level.tolist() == [-1.0, 0.0, 2.0]
    assert book.followed_ticks.tolist() == [1.0, 2.0, 1.0]
    assert book.parts == {0: [2.0, 1.0], 1: [1.0, 1.0]}
    text = "\n".join(book.lines("run 1"))
    assert "cluster 10 cold starts" in text and "0-10: 2 / 1, 10-20: 1 / 1" in text and "kpa=0.7 +2 (1)" in text


@pytest.mark.parametrize("args, message", [
    (["x.yaml", "--minutes", "0"], "--minutes 0.0: must be > 0"),
    (["x.yaml", "--warm-start", "twins"], "needs --param twin_features=true"),
    (["x.yaml", "--param", "twin_features=false"], "needs --param twin_features=true"),
])
def test_a_bad_option_is_one_line(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), *args], check=False, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr
