"""The batch commands write the same CSVs, byte for byte, as the pinned runs in ``tests/golden/pinned``.

Each case runs a real ``mfrm`` command in a fresh interpreter (as a user would) and compares every
CSV it writes with the file pinned before the controller was reorganised (see the README there).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden" / "pinned"
ROOT = Path(__file__).resolve().parents[1]

#: Settings whose defaults changed after the pins were made: set to the values the pinned runs had.
PINNED_SETTINGS: tuple[str, ...] = ()

CASES: dict[str, tuple[list[str], dict[str, str]]] = {
    # case -> (arguments after "mfrm", {pinned file: file the command writes, relative to its output})
    "demo": (
        ["demo", "--minutes", "20", "--seed", "0", "--no-plots", "--out", "{out}"],
        {"overall.csv": "overall.csv", "functions.csv": "functions.csv"},
    ),
    "simulate": (
        ["simulate", "--policy", "ensure", "--minutes", "10", "--seed", "3", "--functions", "8",
         "--rate-scale", "2", "--no-plots", "--out", "{out}"],
        {"overall.csv": "overall.csv", "functions.csv": "functions.csv"},
    ),
    "compare": (
        ["compare", "--policies", "openwhisk-default,kpa,hpa,nac-linear,nac-nn", "--minutes", "10", "--seed", "1",
         "--functions", "6", "--select", "busiest", "--no-plots", "--out", "{out}"],
        {"overall.csv": "overall.csv", "functions.csv": "functions.csv"},
    ),
    "train-nac-nn": (
        ["train", "--policy", "nac-nn", "--minutes", "10", "--seed", "2", "--functions", "6", "--no-plots",
         "--out", "{out}/nac-nn.ckpt.npz"],
        {"train/nac-nn.ckpt.diagnostics.csv": "nac-nn.ckpt.diagnostics.csv"},
    ),
    "train-nac-linear": (
        ["train", "--policy", "nac-linear", "--minutes", "10", "--seed", "2", "--functions", "6", "--no-plots",
         "--out", "{out}/nac-linear.ckpt.npz"],
        {"train/nac-linear.ckpt.diagnostics.csv": "nac-linear.ckpt.diagnostics.csv"},
    ),
}


def _folder(case: str) -> str:
    return case.split("-")[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_command_writes_the_pinned_csvs_byte_for_byte(case: str, tmp_path: Path) -> None:
    arguments, files = CASES[case]
    out = tmp_path / "out"
    command = [sys.executable, "-m", "controller", *(a.replace("{out}", str(out)) for a in arguments)]
    for setting in PINNED_SETTINGS:
        command += ["--set", setting]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for pinned, written in files.items():
        expected = (GOLDEN / (pinned if "/" in pinned else f"{_folder(case)}/{pinned}")).read_bytes()
        actual = (out / written).read_bytes()
        assert actual == expected, f"{case}: {written} differs from the pinned {pinned}"
