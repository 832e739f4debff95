"""The factoring benchmark: both paths learn the same θ, the threshold is restored, bad sizes are refused."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np

from policies import nac

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_nac_factoring.py"
_spec = importlib.util.spec_from_file_location("bench_nac_factoring", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
# The script limits BLAS to one thread in the environment of the process that runs it; imported here it
# must not leave that setting to the subprocesses of later tests.
with mock.patch.dict(os.environ):
    _spec.loader.exec_module(bench)


def test_the_direct_and_the_factored_path_learn_the_same_policy_and_the_threshold_is_put_back():
    threshold = nac.FACTOR_MIN_ROWS
    _, direct = bench.measure(64, factored=False, repeats=1)
    _, factored = bench.measure(64, factored=True, repeats=1)
    assert nac.FACTOR_MIN_ROWS == threshold
    assert np.abs(direct).max() > 0  # the update moved θ
    np.testing.assert_allclose(factored, direct, rtol=0, atol=1e-9 * np.abs(direct).max())


def test_the_table_has_a_row_per_size_and_bad_sizes_are_named():
    done = subprocess.run([sys.executable, str(SCRIPT), "--sizes", "32,64", "--repeats", "1"],
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["32", "64"]
    bad = subprocess.run([sys.executable, str(SCRIPT), "--sizes", "64,many"], capture_output=True, text=True,
                         check=False, timeout=300)
    assert bad.returncode == 2 and "--sizes '64,many'" in bad.stderr
