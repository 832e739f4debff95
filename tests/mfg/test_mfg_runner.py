"""``mfrm mfg run``: the files it writes and how it refuses bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from click.testing import CliRunner

from mfg.runner import run_command


def test_a_small_run_writes_curves_settings_and_the_figure(tmp_path: Path) -> None:
    out = tmp_path / "sis"
    result = CliRunner().invoke(
        run_command,
        [
            "--game",
            "sis",
            "--algo",
            "nac,dlnac",
            "--iterations",
            "20",
            "--seeds",
            "2",
            "--out",
            str(out),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    figure = out / "exploitability.png"
    assert result.output.strip().splitlines()[-1] == str(figure)
    assert figure.stat().st_size > 10_000
    with (out / "curves.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["algorithm"], r["seed"]) for r in rows} == {
        ("nac", "0"),
        ("nac", "1"),
        ("dlnac", "0"),
        ("dlnac", "1"),
    }
    assert {r["iteration"] for r in rows} == {"0", "10", "20"}
    record = json.loads((out / "run.json").read_text())
    assert record["seeds"] == [0, 1]
    assert record["setting"] == {"kind": "finite_horizon", "horizon": 50, "mu0": [0.4, 0.6]}
    assert record["config"]["iterations"] == 20
    assert record["config"]["hp"]["entropy_reg"] > 0
    assert set(record["summary"]) == {"nac", "dlnac"}
    assert "numpy" in record["versions"]


def test_an_unknown_algorithm_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    result = CliRunner().invoke(run_command, ["--algo", "nac,ppo", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "ppo" in result.output and "nac, dlnac" in result.output
