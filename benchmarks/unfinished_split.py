"""Unfinished work at the end of a judged window, split into what waits in a queue and what is running.

    python benchmarks/unfinished_split.py SCENARIO.yaml --checkpoints RUN/checkpoints --points TEXT [TEXT ...]
        [--seeds 10-14] [--quick] [--families ...] [--learner-scheme ...] [--learner-warm-start ...]
        [--learner-param KEY=VALUE ...]

The suite's cells count an invocation as unfinished when it has arrived and neither completed nor been
dropped when the window ends: queued (no container free for it) or in flight (running on one). The two
mean different things to an operator: a queue is capacity the manager did not provide; work in flight
is only cut off by the window's end. The cells record their sum (``controller.runner``); this script
judges the chosen points again, exactly as ``mfrm bench`` judges them (the same points from the same
options, the same cell runner, the learner from its trained checkpoint in ``--checkpoints`` or trained
there if missing), and prints each run's two parts. ``--points`` keeps the points whose label contains
any of the texts, e.g. ``"kpa target=0.4" "nac-linear alpha=0.1"``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import click

from controller.backends.sim import SimBackend
from controller.bench.cells import Cell, run_cell, train_cell
from controller.bench.execute import loop_notes_silenced
from controller.bench.scenarios import ScenarioError, load_scenario
from controller.bench.suite import LEARNER_SCHEME, suite_points
from controller.commands.bench import parse_seeds
from controller.commands.options import parse_set

#: The gauges of the last run's final accounting (``SimBackend.totals``), summed over functions.
LAST: dict[str, float] = {}


def watch_totals() -> None:
    """Record, every time a run reads its cluster's totals, the queued and in-flight counts."""
    original = SimBackend.totals

    def totals(self: SimBackend) -> Any:
        result = original(self)
        LAST["queued"] = float(result.functions.queued.sum())
        LAST["in_flight"] = float(result.functions.in_flight.sum())
        return result

    SimBackend.totals = totals  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--checkpoints", type=Path, required=True,
                        help="a bench's checkpoints folder (RUN/checkpoints): learners are judged from it")
    parser.add_argument("--points", nargs="+", required=True, metavar="TEXT",
                        help="keep the points whose label contains any of these texts")
    parser.add_argument("--seeds", default="0-4", help="a range a-b or a list a,b,c [default: 0-4]")
    parser.add_argument("--quick", action="store_true", help="the scenario's quick windows (mfrm bench --quick)")
    parser.add_argument("--families", help="as mfrm bench's --families [default: every family]")
    parser.add_argument("--learner-scheme", default=LEARNER_SCHEME, help=f"as mfrm bench's [default: {LEARNER_SCHEME}]")
    parser.add_argument("--learner-warm-start", default="none", help="as mfrm bench's [default: none]")
    parser.add_argument("--learner-param", action="append", default=[], metavar="KEY=VALUE",
                        help="as mfrm bench's (repeatable)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as error:
        sys.exit(str(error))
    if not args.checkpoints.is_dir():
        sys.exit(f"--checkpoints {args.checkpoints}: no such folder")
    try:
        seeds = parse_seeds(args.seeds)
        points = suite_points([f.strip() for f in args.families.split(",")] if args.families else None,
                              args.learner_scheme, args.learner_warm_start,
                              parse_set(args.learner_param, "--learner-param"))
    except click.ClickException as error:  # the bench's own parsers name the option at fault
        sys.exit(error.format_message())
    except ValueError as error:  # an unknown family, warm start or learner parameter
        sys.exit(f"--families, --learner-scheme, --learner-warm-start or --learner-param: {error}")
    chosen = [p for p in points if any(text in p.label for text in args.points)]
    if not chosen:
        sys.exit(f"--points {' '.join(args.points)}: no point's label contains any of these")
    watch_totals()
    print("| point | seed | unfinished | queued | in flight |")
    print("|---|---|---|---|---|")
    for point in chosen:
        for seed in seeds:
            cell = Cell(scenario, point, seed, quick=args.quick)
            with loop_notes_silenced():
                checkpoint = train_cell(cell, args.checkpoints)["checkpoint"] if point.needs_training else None
                row, _ = run_cell(cell, checkpoint)
            print(f"| {point.label} | {seed} | {row['unfinished']:.0f} | {LAST['queued']:.0f} | {LAST['in_flight']:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
