"""The twins' choice: each function's level of least violations + P · memory in its level twins."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np

from policies.staffing import action_index
from workload.profiles import FunctionProfile
from benchmark_scripts import ROOT, load, script

SCRIPT = script("twin_greedy")
greedy = load("twin_greedy")


def _twins() -> SimpleNamespace:
    levels = ("platform", "c=1.06", "kpa=0.7", "hist")
    # Three functions: 0 is served best by the platform unless memory is dear, 1 by the KPA member, 2 is new.
    violations = np.array([[0.0, 2.0, 0.0], [1.0, 2.0, 0.0], [3.0, 0.5, 0.0], [2.0, 2.0, 0.0]])
    memory = np.array([[50.0, 50.0, 0.0], [10.0, 30.0, 0.0], [1.0, 1.0, 0.0], [5.0, 5.0, 0.0]])
    cold = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [5.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    return SimpleNamespace(levels=levels, violations=violations, memory_gb_s=memory, cold_starts=cold,
                           seen=np.array([True, True, False]))


def test_each_function_follows_its_cheapest_level_in_the_twins_and_a_new_one_the_histogram() -> None:
    twins = _twins()
    cheap = greedy.twin_choice(twins, 0.0, "free").tolist()
    dear = greedy.twin_choice(twins, 1.0, "free").tolist()
    assert cheap == [action_index("platform", 1.0), action_index("kpa=0.7", 1.0), action_index("hist", 1.0)]
    assert dear == [action_index("kpa=0.7", 1.0), action_index("kpa=0.7", 1.0), action_index("hist", 1.0)]
    # Under the cold-start rule function 0 may not take the KPA member (5 cold starts against c=1.06's 1).
    ruled = greedy.twin_choice(twins, 1.0, "ensure").tolist()
    assert ruled[0] == action_index("hist", 1.0) and ruled[1] == action_index("kpa=0.7", 1.0)


def test_believed_profiles_are_off_by_a_factor_per_function_and_keep_the_memory() -> None:
    true = [FunctionProfile(name=f"f{i}", memory_mb=256, exec_median_s=0.1, exec_p99_s=0.3, init_s=0.6)
            for i in range(50)]
    assert greedy.believed_profiles(true, 0.0, np.random.default_rng(0)) == true
    off = greedy.believed_profiles(true, 0.5, np.random.default_rng(0))
    assert off == greedy.believed_profiles(true, 0.5, np.random.default_rng(0))
    assert all(p.memory_mb == 256 and abs(p.exec_p99_s / p.exec_median_s - 3.0) < 1e-9 for p in off)
    ratios = np.log([p.exec_median_s / 0.1 for p in off])
    assert 0.3 < ratios.std() < 0.7 and len({p.init_s for p in off}) == 50


def test_a_negative_price_is_one_line() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "x.yaml", "--price", "-1"], check=False, capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode != 0 and "--price -1.0: must be >= 0" in done.stderr and "Traceback" not in done.stderr
