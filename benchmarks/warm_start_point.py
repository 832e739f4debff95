"""Where a warm-started learner starts: its warm-start heuristic played through its own action scheme.

    python benchmarks/warm_start_point.py SCENARIO.yaml [--policy nac-linear] [--scheme portfolio]
        [--warm-start kpa|ensure|twins|fitted] [--alphas 0.1,0.3] [--plays DIR] [--quick] [--seeds 0-4]
        [--param KEY=VALUE ...] [--against RESULTS.csv]

A learner that starts from a heuristic (``warm_start``) and is judged beyond the baselines' frontier
may owe part of that to where it started: the heuristic as its action scheme plays it is not always
the baseline of the same name (the portfolio's KPA member, for one, leaves a function of unknown work
size to the platform). This script builds the learner fresh from the scenario's settings with the
given scheme and warm start, never runs a learning episode, and judges it frozen and greedy on the
scenario's evaluation window and the seeds, as ``mfrm bench`` judges (the suite's ``warm-start``
point mode, through the bench's own cell runner): with ``ensure`` or ``kpa`` every function takes the
warm-start action; with ``twins`` (and ``--param twin_features=true``) every function takes the level
its twins price lowest (the rule the policy starts as, drawn greedily); with ``fitted`` the fit is made first, on the seed's training window exactly as
training makes it (``controller.warm_fit``), and the fitted policy is judged. It prints the point per seed and, with ``--against``
a bench's ``results.csv`` of the same scenario and windows, the suite's acceptance row for it: where
it lies against every baseline's frontier. What learning added is the trained point's row minus this
one.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from controller.assemble import PolicySpec, RunSeeds, build_policy, build_workload, measure_slos
from controller.bench.analysis import acceptance_rows, acceptance_table, read_rows, summarise
from controller.bench.cells import Cell, run_cell
from controller.bench.execute import loop_notes_silenced
from controller.bench.scenarios import ScenarioError, load_scenario
from controller.bench.suite import Point
from controller.checkpoint import Checkpointer
from controller.warm_fit import fit_warm_start
from policies.agent import AgentStep, SharedPolicyAgent


def warm_start_point(policy: str, scheme: str, warm_start: str, alpha: float | None = None,
                     fit_cold_starts: str = "free", extra: dict[str, Any] | None = None) -> Point:
    """The suite point of ``policy`` built fresh with ``scheme`` and ``warm_start``, judged frozen and greedy;
    with ``alpha``, the reward's α (what a fitted warm start prices the levels by); ``fit_cold_starts``: a
    fitted warm start's cold-start rule (``AgentSettings.fit_cold_starts``); ``extra``: more of the
    learner's parameters (e.g. ``cost_features``)."""
    params: dict[str, Any] = {"scheme": scheme, "warm_start": warm_start, **(extra or {})}
    if fit_cold_starts != "free":
        params["fit_cold_starts"] = fit_cold_starts
    overrides: dict = {"reward.kind": "operator", "policy.params": {policy: params}}
    more = "".join(f" {k}={v}" for k, v in sorted((extra or {}).items()))
    rule = {"free": "", "ensure": " cold<=ensure"}.get(fit_cold_starts, f" cold {fit_cold_starts}")
    label = f"{policy} warm start {warm_start}{rule}{more} [{scheme}]"
    if alpha is not None:
        overrides["reward.alpha"] = alpha
        label = f"{policy} alpha={alpha:g} {label[len(policy) + 1:]}"
    return Point(family=f"{policy}-warm-start", label=label, policy=policy, mode="warm-start", default=True,
                 value=alpha, overrides=overrides)


def fitted_checkpoint(cell: Cell, directory: Path, plays: Path | None = None) -> str:
    """Fit the cell's learner on its training window (as training does before its first episode) and save
    it, untrained otherwise; the checkpoint's path. ``plays``: a folder of kept plays to reuse (a bench's
    ``checkpoints/<scenario>/warm-fit-plays``) and to add to."""
    settings = cell.settings("train")
    policy = build_policy(settings, PolicySpec(cell.point.policy))
    workload = build_workload(settings)
    fit_warm_start(settings, cell.point.policy, policy, workload, measure_slos(settings, workload),
                   RunSeeds.from_seed(settings.seed).episode(settings.seed, 0), cache=plays)
    return str(Checkpointer(directory / "fitted.ckpt.npz").save(policy, 0, 0.0))


def override_choices(choose: Callable[[SharedPolicyAgent, Any], np.ndarray | None]) -> None:
    """Make every shared-policy agent of this process take ``choose(agent, snapshot)``'s actions instead
    of its own whenever it draws them (not inside a held choice, ``decision_ticks``, which keeps the
    overriding choice); where ``choose`` returns None the agent keeps its own. For the rules that ask what
    some estimate is worth with no learning (``record_greedy.py``, ``twin_greedy.py``)."""
    observe = SharedPolicyAgent._observe

    def observed(self: SharedPolicyAgent, snapshot: Any, mu: np.ndarray) -> AgentStep:
        step = observe(self, snapshot, mu)
        if not step.decided:
            return step
        chosen = choose(self, snapshot)
        if chosen is None:
            return step
        step = replace(step, actions=chosen)
        self._held = step
        return step

    SharedPolicyAgent._observe = observed  # type: ignore[method-assign]


def add_rule_arguments(parser: argparse.ArgumentParser) -> None:
    """The scenario and the judging options of a no-learning rule run through :func:`judge_rule`."""
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--quick", action="store_true", help="the scenario's quick windows (mfrm bench --quick)")
    parser.add_argument("--seeds", default="0-2", help="a range a-b or a list a,b,c [default: 0-2]")
    parser.add_argument("--against", type=Path, metavar="RESULTS.csv",
                        help="a bench's results.csv of the same scenario, windows and seeds: the acceptance row")


def judge_rule(args: argparse.Namespace, *params: str) -> None:
    """Judge, as :func:`main` judges a warm start, the portfolio learner built fresh with the KPA warm start
    and ``params`` (``KEY=VALUE``) whose choices a rule has replaced (:func:`override_choices`), on the
    scenario and seeds of ``args`` (:func:`add_rule_arguments`)."""
    sys.argv = [sys.argv[0], str(args.scenario), "--warm-start", "kpa",
                *(arg for param in params for arg in ("--param", param)), "--seeds", args.seeds,
                *(["--quick"] if args.quick else []), *(["--against", str(args.against)] if args.against else [])]
    main()


def parse_seeds(text: str) -> list[int]:
    """``a-b`` or ``a,b,c`` as a list of seeds."""
    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-"))
            return list(range(lo, hi + 1))
        return [int(v) for v in text.split(",")]
    except ValueError:
        sys.exit(f"--seeds {text!r}: expected a range a-b or a list a,b,c of integers")


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a mapping, each value read as a YAML scalar (``true``, ``0.5``, ``kl``)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            sys.exit(f"--param {pair!r}: expected KEY=VALUE, e.g. --param cost_features=true")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            sys.exit(f"--param {pair!r}: the value is not a YAML scalar")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--policy", default="nac-linear", choices=("nac-linear", "nac-nn"),
                        help="the learner [default: nac-linear]")
    parser.add_argument("--scheme", default="portfolio", choices=("staffing", "portfolio"),
                        help="its action scheme [default: portfolio]")
    parser.add_argument("--warm-start", default="kpa", choices=("ensure", "kpa", "twins", "fitted"),
                        help="the heuristic it starts from [default: kpa]")
    parser.add_argument("--quick", action="store_true", help="the scenario's quick windows (mfrm bench --quick)")
    parser.add_argument("--seeds", default="0-4", help="a range a-b or a list a,b,c [default: 0-4]")
    parser.add_argument("--alphas", help="comma-separated reward weights α, one point each (a fitted warm start "
                                         "prices the levels by α) [default: the scenario's α]")
    parser.add_argument("--fit-cold-starts", choices=("free", "ensure", "priced"), default="free",
                        help="with --warm-start fitted or twins: choose each function's level among every level "
                             "(free) or only among those with no more cold starts than ENSURE's c=1.06 (ensure), or "
                             "count a cold start as a violation (priced) [default: free]")
    parser.add_argument("--plays", type=Path, metavar="DIR",
                        help="with --warm-start fitted: a folder of kept plays of the training windows to reuse, "
                             "e.g. a bench's checkpoints/<scenario>/warm-fit-plays [default: play them]")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="one more of the learner's parameters (repeatable), e.g. cost_features=true")
    parser.add_argument("--against", type=Path, metavar="RESULTS.csv",
                        help="a bench's results.csv of the same scenario and windows: print the acceptance row "
                             "of the point against its baselines' frontier")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    seeds = parse_seeds(args.seeds)
    extra = parse_params(args.param)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as error:
        sys.exit(str(error))
    if args.against is not None and not args.against.is_file():
        sys.exit(f"--against {args.against}: no such file")
    if args.warm_start == "kpa" and args.scheme != "portfolio":
        sys.exit("--warm-start kpa needs --scheme portfolio (the KPA's rule is one of its actions)")
    try:
        alphas = [float(a) for a in args.alphas.split(",")] if args.alphas else [None]
    except ValueError:
        sys.exit(f"--alphas {args.alphas!r}: expected comma-separated numbers")
    if any(a is not None and not 0 <= a <= 1 for a in alphas):
        sys.exit(f"--alphas {args.alphas!r}: each α must be in [0, 1]")
    from policies.registry import make

    try:  # every parameter checked before any play or run
        make(args.policy, scheme=args.scheme, warm_start=args.warm_start, fit_cold_starts=args.fit_cold_starts,
             **extra)
    except (TypeError, ValueError) as error:
        sys.exit(f"{args.policy} with --scheme {args.scheme}, --warm-start {args.warm_start} and --param: {error}")
    rows = []
    for alpha in alphas:
        point = warm_start_point(args.policy, args.scheme, args.warm_start, alpha, args.fit_cold_starts, extra)
        mine = []
        for seed in seeds:
            cell = Cell(scenario=scenario, point=point, seed=seed, quick=args.quick)
            with loop_notes_silenced(), tempfile.TemporaryDirectory() as scratch:
                checkpoint = fitted_checkpoint(cell, Path(scratch), args.plays) if args.warm_start == "fitted" else None
                row, _ = run_cell(cell, checkpoint)
            mine.append(row)
            print(f"{scenario.name} {point.label} seed {seed}: {100 * row['slo_violation_rate']:.2f}% violations, "
                  f"{row['memory_gb_s']:,.0f} GB-s, cold starts {100 * row['cold_start_rate']:.3f}%", flush=True)
        n = len(mine)
        print(f"{point.label}: mean {100 * sum(r['slo_violation_rate'] for r in mine) / n:.2f}% violations, "
              f"{sum(r['memory_gb_s'] for r in mine) / n:,.0f} GB-s over {n} seeds")
        rows.extend(mine)
    if args.against is not None:
        baselines = [r for r in read_rows(args.against)
                     if r["scenario"] == scenario.name and not r["family"].startswith("nac-")
                     and int(r["seed"]) in seeds]
        if not baselines:
            sys.exit(f"{args.against}: no baseline rows of scenario {scenario.name!r} at seeds {args.seeds}")
        print()
        print(acceptance_table(acceptance_rows(summarise([*baselines, *rows]), [f"{args.policy}-warm-start"])))


if __name__ == "__main__":
    main()
