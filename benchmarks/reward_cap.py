"""How much of the late work the operator reward's cap leaves unpriced, on a scenario's judged window.

    python benchmarks/reward_cap.py SCENARIO.yaml [--points TEXT ...] [--alphas 0.1,0.7] [--caps 1,10]
        [--seeds 0-2] [--quick]

The operator reward prices a function's tick at r = 1 − min(cost, C)/C (``policies.reward.operator_reward``):
past the cap C every cost scores the same 0, so more late work in such a tick costs a learner nothing,
while the memory a cheaper level saves in every other tick still counts. This script runs the chosen
baseline points on the scenario's judged window, exactly as ``mfrm bench`` runs their cells, records
every tick's function statistics as the loop prices them, and prints for each point, α and cap:

* the share of the function-ticks whose cost reaches the cap;
* the share of all late work (SLO violations + work still queued at the tick's end, as the reward
  counts it) that falls in those ticks.

The costs are recomputed from the recorded statistics at each α, so one run serves every α and cap.
``--points`` keeps the points whose label contains any of the texts [default: "ensure c=1.06"].
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

import controller.loop
from controller.bench.cells import Cell, run_cell
from controller.bench.execute import loop_notes_silenced
from controller.bench.scenarios import ScenarioError, load_scenario
from controller.bench.suite import suite_points
from controller.commands.bench import parse_seeds
from policies.reward import operator_reward
from policies.types import FunctionStats

#: Every tick the loop priced since the last :func:`recorded` call: its function statistics and the
#: memory scale the reward divided by.
_TICKS: list[tuple[FunctionStats, float]] = []


def watch_prices() -> None:
    """Record every tick's statistics as the loop hands them to the operator reward."""
    original = controller.loop.operator_reward

    def priced(functions: FunctionStats, alpha: float, **kwargs: Any) -> np.ndarray:
        _TICKS.append((functions, float(kwargs["memory_scale_mb"])))
        return original(functions, alpha, **kwargs)

    controller.loop.operator_reward = priced  # type: ignore[assignment]


def recorded() -> list[tuple[FunctionStats, float]]:
    """The ticks recorded since the last call, and a fresh start."""
    ticks = list(_TICKS)
    _TICKS.clear()
    return ticks


def cap_bite(ticks: list[tuple[FunctionStats, float]], alpha: float, cap: float) -> tuple[float, float]:
    """(share of the function-ticks whose cost reaches ``cap``, share of the late work in them) at ``alpha``."""
    costs, late = [], []
    for functions, memory_scale_mb in ticks:
        # The uncapped cost: r = 1 − cost / C with a cap no cost reaches.
        unbounded = 1e12
        r = operator_reward(functions, alpha, memory_scale_mb=memory_scale_mb, cost_cap=unbounded)
        known = np.isfinite(r)
        costs.append(((1.0 - r) * unbounded)[known])
        late.append((np.asarray(functions.slo_violations, dtype=float) + np.asarray(functions.queued, dtype=float))[known])
    cost, work = np.concatenate(costs), np.concatenate(late)
    if cost.size == 0:
        return float("nan"), float("nan")
    at_cap = cost >= cap
    return float(at_cap.mean()), float(work[at_cap].sum() / work.sum()) if work.sum() > 0 else 0.0


def parse_numbers(text: str, option: str) -> list[float]:
    """``0.1,0.7`` as numbers; a bad list exits naming the option."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sys.exit(f"{option} {text}: not a comma-separated list of numbers")
    if not values:
        sys.exit(f"{option} {text}: empty")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--points", nargs="+", default=["ensure c=1.06"], metavar="TEXT",
                        help="keep the baseline points whose label contains any of these texts [default: ensure c=1.06]")
    parser.add_argument("--alphas", default="0.1,0.7", help="reward weights α to price at [default: 0.1,0.7]")
    parser.add_argument("--caps", default="1,10", help="cost caps C to compare [default: 1,10]")
    parser.add_argument("--seeds", default="0-2", help="a range a-b or a list a,b,c [default: 0-2]")
    parser.add_argument("--quick", action="store_true", help="the scenario's quick windows (mfrm bench --quick)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    alphas, caps = parse_numbers(args.alphas, "--alphas"), parse_numbers(args.caps, "--caps")
    if any(not 0.0 <= a <= 1.0 for a in alphas):
        sys.exit(f"--alphas {args.alphas}: every α must be in [0, 1]")
    if any(c <= 0 for c in caps):
        sys.exit(f"--caps {args.caps}: every cap must be > 0")
    try:
        scenario = load_scenario(args.scenario)
        seeds = parse_seeds(args.seeds)
    except ScenarioError as error:
        sys.exit(str(error))
    except click.ClickException as error:
        sys.exit(error.format_message())
    chosen = [p for p in suite_points()
              if not p.needs_training and any(text in p.label for text in args.points)]
    if not chosen:
        sys.exit(f"--points {' '.join(args.points)}: no baseline point's label contains any of these")
    watch_prices()
    print("| point | α | cap | function-ticks at the cap | late work in them |")
    print("|---|---|---|---|---|")
    for point in chosen:
        ticks: list[tuple[FunctionStats, float]] = []
        for seed in seeds:
            recorded()
            with loop_notes_silenced():
                run_cell(Cell(scenario, point, seed, quick=args.quick), None)
            ticks.extend(recorded())
        if not ticks:
            sys.exit(f"{args.scenario}: its runs priced no tick (is its reward.kind 'operator'?)")
        for alpha in alphas:
            for cap in caps:
                ticks_share, late_share = cap_bite(ticks, alpha, cap)
                print(f"| {point.label} | {alpha:g} | {cap:g} | {ticks_share:.2%} | {late_share:.1%} |", flush=True)


if __name__ == "__main__":
    main()
