"""``mfrm mfg``: the paper's mean-field games from the command line.

Sub-commands: ``run`` (mfg/runner.py: NAC and DL-NAC learning curves, the paper's Figures 1 and 2)
and ``exploitability`` (mfg/evaluate_cli.py: exact exploitability of a policy array).
"""

from __future__ import annotations

import click

from mfg.evaluate_cli import exploitability_command
from mfg.runner import run_command


@click.group(name="mfg")
def mfg_group() -> None:
    """Mean-field games: learn with NAC / DL-NAC, and evaluate policies exactly."""


mfg_group.add_command(run_command)
mfg_group.add_command(exploitability_command)
