"""How far past the baselines any policy over the portfolio's actions could get: a hindsight bound.

    python benchmarks/portfolio_oracle.py SCENARIO.yaml [--quick] [--seeds 0-2] [--member hybrid-histogram]
        [--prices 0,1e-4,1e-3,3e-3,1e-2] [--against RESULTS.csv]

A learner of the portfolio scheme chooses, per function, one of the scheme's pool levels (the platform,
ENSURE's constants, a KPA member). Whatever it learns, it cannot do better than choosing for every
function the level that turned out best for that function on the very window it is judged on. This
script plays every level with every function on the scenario's evaluation window (each seed, frozen
and greedy, exactly as ``controller.warm_fit`` plays a training window) and, for each price λ of a
GB-s in violations, picks per function the level whose violations + λ·memory was lowest — with every
level allowed (``free``) or only those with no more cold starts for the function than ENSURE c = 1.06
(``ensure``). The sums over functions are the hindsight points. ``--member`` adds a whole baseline's
run (default settings) as one more level, to ask what a portfolio that could also follow that baseline
would reach.

With ``--against`` (a bench's results.csv of the same scenario, windows and seeds) it prints the suite's
acceptance rows for the hindsight points: if no hindsight point is beyond every baseline's frontier,
no learner over these actions can be. The bound is optimistic in one way (per-function hindsight on the
judged window) and approximate in another: functions are played together at one level, so a mixture's
contention for memory and cores is not the sum of its parts (exact where the cluster is not contended).
Use it on tuning copies (``scenarios/tuning/``) to decide what to build; on a shipped scenario it reads
the evaluation window.

``benchmarks/hindsight_staffing.py --with-kpa`` bounds the same choice from the *baselines'* runs
(ENSURE at each constant, the KPA at each target); this script plays the levels through the learner's
own action scheme — what its actions do, including an idle function that follows a member — adds the
cold-start rule of ``fit_cold_starts``, and takes any registered baseline as a further member.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from controller.assemble import PolicySpec, RunSeeds, build_policy, build_workload, measure_slos
from controller.bench.analysis import acceptance_rows, acceptance_table, read_rows, summarise
from controller.bench.scenarios import ScenarioError, load_scenario
from controller.report import function_metrics
from controller.runner import run_policy
from controller.warm_fit import LevelPlays, cheapest_levels
from policies.registry import available
from policies.staffing import action_index

#: Per-function columns summed over the chosen levels.
COLUMNS = ("invocations", "violations", "memory_gb_s", "cold_starts", "completed", "unfinished", "dropped")


def level_table(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """(F,) arrays of the per-function totals of one run's function rows."""
    invocations = np.array([r["invocations"] for r in rows], dtype=float)
    completed = np.array([r["completed"] for r in rows], dtype=float)
    return {
        "invocations": invocations,
        "violations": np.nan_to_num(np.array([r["slo_violation_rate"] for r in rows], dtype=float) * invocations),
        "memory_gb_s": np.array([r["memory_gb_s"] for r in rows], dtype=float),
        "cold_starts": np.nan_to_num(np.array([r["cold_start_rate"] for r in rows], dtype=float) * completed),
        "completed": completed,
        "unfinished": np.array([r.get("unfinished", 0.0) for r in rows], dtype=float),
        "dropped": np.array([r.get("dropped", 0.0) for r in rows], dtype=float),
    }


def hindsight_point(levels: tuple[str, ...], tables: list[dict[str, np.ndarray]], price: float,
                    rule: str, choose_on: list[dict[str, np.ndarray]] | None = None
                    ) -> tuple[dict[str, float], dict[str, int]]:
    """The totals of choosing per function its cheapest level at ``price`` under the cold-start ``rule``
    (``controller.warm_fit.cheapest_levels``), as a result row's cost columns, and how many functions
    chose each level. The choice is made on ``choose_on`` (other plays of the same functions) when
    given, on ``tables`` themselves otherwise; the totals are always ``tables``'."""
    stacked = {c: np.vstack([t[c] for t in tables]) for c in COLUMNS}
    chooser = stacked if choose_on is None else {c: np.vstack([t[c] for t in choose_on]) for c in COLUMNS}
    plays = LevelPlays(levels=levels, violations=chooser["violations"], memory=chooser["memory_gb_s"],
                       cold_starts=chooser["cold_starts"], invocations=chooser["invocations"][0], ticks=1,
                       x=np.zeros((0, 1)), function=np.zeros(0, dtype=np.int64))
    best = cheapest_levels(plays, price, rule)
    f = np.arange(len(best))
    total = {c: float(stacked[c][best, f].sum()) for c in COLUMNS}
    row = {
        "slo_violation_rate": total["violations"] / max(total["invocations"], 1.0),
        "memory_gb_s": total["memory_gb_s"],
        "cold_start_rate": total["cold_starts"] / max(total["completed"], 1.0),
        "unfinished": total["unfinished"],
        "dropped": total["dropped"],
    }
    return row, {level: int((best == i).sum()) for i, level in enumerate(levels)}


def play(settings: Any, workload: Any, slo_s: np.ndarray, seeds: RunSeeds, level: str) -> list[dict[str, Any]]:
    """Function rows of one run with every function at portfolio ``level``, through a frozen, greedy
    learner (as ``controller.warm_fit.play_levels`` plays it)."""
    player = build_policy(settings, PolicySpec("nac-linear", frozen=True, greedy=True))
    player.learner.prefer(action_index(level, 1.0), 50.0, player._bias_entry())
    return function_metrics(run_policy(settings, workload, slo_s, PolicySpec("nac-linear", frozen=True, greedy=True),
                                       policy=player, seeds=seeds, save_learner=False))


def parse_list(text: str, what: str, kind: type) -> list[Any]:
    try:
        if kind is int and "-" in text:
            lo, hi = (int(v) for v in text.split("-"))
            return list(range(lo, hi + 1))
        return [kind(v) for v in text.split(",")]
    except ValueError:
        sys.exit(f"{what} {text!r}: expected {'a range a-b or ' if kind is int else ''}a comma-separated list")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--quick", action="store_true", help="the scenario's quick windows (mfrm bench --quick)")
    parser.add_argument("--seeds", default="0-2", help="a range a-b or a list a,b,c [default: 0-2]")
    parser.add_argument("--member", action="append", default=[], metavar="POLICY",
                        help="a baseline (registered policy, default settings) added as one more level (repeatable)")
    parser.add_argument("--prices", default="0,1e-4,1e-3,3e-3,1e-2,3e-2",
                        help="prices λ of a GB-s in violations, one hindsight point each [default: 0,1e-4,1e-3,3e-3,1e-2,3e-2]")
    parser.add_argument("--choose-on", choices=("same", "next-seed", "window-before"), default="same",
                        help="where each function's level is chosen: on the judged plays themselves (the "
                             "bound), or also on the next seed's plays of the same functions, window and "
                             "arrivals (the seeds cycle; rows 'next seed'), which shows how much of the bound "
                             "is the plays' own noise, or also on plays of the same functions in the window of "
                             "the same length just before the judged one (rows 'window before'): what a "
                             "choice made from a function's own recent past, with every level's outcome known, "
                             "would give [default: same]")
    parser.add_argument("--against", type=Path, metavar="RESULTS.csv",
                        help="a bench's results.csv of the same scenario, windows and seeds: the acceptance rows")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    seeds = parse_list(args.seeds, "--seeds", int)
    prices = parse_list(args.prices, "--prices", float)
    if args.choose_on == "next-seed" and len(seeds) < 2:
        sys.exit(f"--choose-on next-seed: needs two or more seeds (--seeds {args.seeds})")
    if any(not p >= 0 for p in prices):
        sys.exit(f"--prices {args.prices!r}: every price must be >= 0")
    unknown = [m for m in args.member if m not in available()]
    if unknown:
        sys.exit(f"--member {unknown[0]!r}: not a registered policy (one of {', '.join(available())})")
    if args.against is not None and not args.against.is_file():
        sys.exit(f"--against {args.against}: no such file")
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as error:
        sys.exit(str(error))
    learner = {"reward.kind": "operator", "policy.name": "nac-linear",
               "policy.params": {"nac-linear": {"scheme": "portfolio"}}}
    rows: list[dict[str, Any]] = []
    played = []
    for seed in seeds:
        settings = scenario.settings("evaluate", args.quick, {**learner, "seed": seed})
        workload = build_workload(settings)
        slo_s = measure_slos(settings, workload)
        run_seeds = RunSeeds.from_seed(settings.seed)
        levels = tuple(build_policy(settings, PolicySpec("nac-linear")).agent.levels)
        tables = []
        for level in levels:
            tables.append(level_table(play(settings, workload, slo_s, run_seeds, level)))
            print(f"seed {seed}: played {level}", file=sys.stderr, flush=True)
        for member in args.member:
            member_settings = scenario.settings("evaluate", args.quick, {"seed": seed, "policy.name": member})
            tables.append(level_table(function_metrics(run_policy(
                member_settings, workload, slo_s, PolicySpec(member), seeds=run_seeds, save_learner=False))))
            levels = (*levels, member)
        before = None
        if args.choose_on == "window-before":
            start, minutes = settings.workload.start_minute, settings.workload.minutes
            if start < minutes:
                sys.exit(f"--choose-on window-before: the judged window starts at minute {start}, "
                         f"less than its length ({minutes}) after midnight")
            earlier = scenario.settings("evaluate", args.quick, {**learner, "seed": seed,
                                                                  "workload.start_minute": start - minutes})
            earlier_workload = build_workload(earlier)
            if [f.name for f in earlier_workload.functions] != [f.name for f in workload.functions]:
                sys.exit(f"--choose-on window-before: {args.scenario} selects other functions in the window "
                         "before the judged one")
            earlier_slo = measure_slos(earlier, earlier_workload)
            before = [level_table(play(earlier, earlier_workload, earlier_slo, run_seeds, level))
                      for level in levels[: len(levels) - len(args.member)]]
            for member in args.member:
                member_settings = scenario.settings("evaluate", args.quick, {
                    "seed": seed, "policy.name": member, "workload.start_minute": start - minutes})
                before.append(level_table(function_metrics(run_policy(
                    member_settings, earlier_workload, earlier_slo, PolicySpec(member), seeds=run_seeds,
                    save_learner=False))))
            print(f"seed {seed}: played the window before", file=sys.stderr, flush=True)
        played.append((seed, workload, levels, tables, before))
    if args.choose_on == "next-seed" and len({tuple(f.name for f in w.functions) for _, w, *_ in played}) > 1:
        sys.exit(f"--choose-on next-seed: {args.scenario} draws other functions per seed; the choice needs "
                 "the same functions in every seed")
    for i, (seed, workload, levels, tables, before) in enumerate(played):
        own = len(levels) - len(args.member)
        other = {"same": None, "next-seed": played[(i + 1) % len(played)][3], "window-before": before}[args.choose_on]
        choosers = [None] if other is None else [None, other]
        sets = [(levels[:own], tables[:own], None if c is None else c[:own], "") for c in choosers]
        if args.member:
            sets += [(levels, tables, c, "".join(f" +{m}" for m in args.member)) for c in choosers]
        for some, their_tables, choose_on, added in sets:
            for price in prices:
                for rule in ("free", "ensure"):
                    row, chosen = hindsight_point(some, their_tables, price, rule, choose_on)
                    chooser_name = "hindsight" if choose_on is None else args.choose_on.replace("-", " ")
                    label = f"{chooser_name} {rule} λ={price:g}{added}"
                    rows.append({"scenario": scenario.name, "family": "portfolio-hindsight", "point": label,
                                 "policy": "portfolio-hindsight", "knob": "", "value": repr(price),
                                 "default": "false", "seed": seed, "functions": len(workload.functions), **row})
                    print(f"seed {seed} {label}: {100 * row['slo_violation_rate']:.2f}% violations, "
                          f"{row['memory_gb_s']:,.0f} GB-s, cold starts {100 * row['cold_start_rate']:.2f}%; "
                          f"levels {', '.join(f'{k} {v}' for k, v in chosen.items() if v)}", flush=True)
    if args.against is not None:
        baselines = [r for r in read_rows(args.against) if r["scenario"] == scenario.name
                     and not r["family"].startswith("nac-") and int(r["seed"]) in seeds]
        if not baselines:
            sys.exit(f"{args.against}: no baseline rows of scenario {scenario.name!r} at seeds {args.seeds}")
        print()
        print(acceptance_table(acceptance_rows(summarise([*baselines, *rows]), ["portfolio-hindsight"])))


if __name__ == "__main__":
    main()
