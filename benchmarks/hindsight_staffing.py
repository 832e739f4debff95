"""How far beyond ENSURE's frontier any choice of a staffing constant per function could reach.

    python benchmarks/hindsight_staffing.py SCENARIO.yaml [--part evaluate] [--seeds 0-2] [--out DIR]
        [--choose-on same|train] [--quick] [--with-kpa] [--against RESULTS.csv]

The learners' staffing scheme chooses, per function, a staffing constant c (or the platform). The
best that such a choice could do is bounded by an oracle that knows each function's outcome at each
c in advance. This script measures it: ENSURE is run at every constant of the suite's sweep (plus the
platform alone, ``openwhisk-default``), each function's SLO violations (unfinished and dropped
invocations counted as violations) and memory held are read per run, and for a grid of prices λ
every function takes the choice minimising violations + λ x memory GB-s. Each λ gives one point of
the oracle's frontier; the script then reports, at each oracle point, how many fewer violations it
has than ENSURE's frontier at the same memory — and, with ``--against`` a bench's ``results.csv`` of the
same windows (``--quick`` for a ``mfrm bench --quick``), than the frontier of every baseline of the
suite (the one a learner is judged against), seed by seed. ``--with-kpa`` adds the KPA at each target of
its sweep to every function's choices (what the ``portfolio`` action scheme can choose) and reports both
choice sets from the same runs.

The oracle is a bound, not a policy: it chooses with hindsight, on the very window it is scored on,
and it assumes functions do not interact (true where the cluster's memory and cores are not
contended: each function's outcome at c then depends on c alone). A learner of the staffing scheme
can only beat ENSURE's frontier by as much as this oracle does, unless it changes c over time to
better effect than any constant.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from controller.assemble import build_workload, measure_slos
from controller.bench.execute import loop_notes_silenced
from controller.bench.scenarios import ScenarioError, load_scenario
from controller.report import function_metrics
from controller.runner import run_policy

#: ENSURE's constants in the suite's sweep (controller.bench.suite).
CONSTANTS: tuple[float, ...] = (0.0, 0.5, 1.06, 1.5, 2.0, 2.5, 3.0, 4.0)
#: The KPA's target utilisations in the suite's sweep (``--with-kpa``: the portfolio scheme's choice).
KPA_TARGETS: tuple[float, ...] = (0.4, 0.55, 0.7, 0.85, 1.0)


def per_function(scenario: Path, part: str, seed: int, quick: bool = False, with_kpa: bool = False
                 ) -> tuple[list[str], dict[str, np.ndarray], np.ndarray]:
    """Violations and memory GB-s per function (columns) at every choice (rows: the platform, then each c,
    then with ``with_kpa`` each KPA target), and the invocations per function; ``names`` in the table: the
    functions, in column order."""
    base = load_scenario(scenario)
    choices = ["platform", *[f"c={c:g}" for c in CONSTANTS], *[f"kpa={t:g}" for t in (KPA_TARGETS if with_kpa else ())]]
    violations, memory = [], []
    invocations = None
    for choice in choices:
        if choice == "platform":
            settings = base.settings(part, quick, {"seed": seed, "output.plots": False})
            policy = "openwhisk-default"
        elif choice.startswith("kpa="):
            settings = base.settings(part, quick, {"seed": seed, "output.plots": False,
                                                   "policy.params": {"kpa": {"target_utilisation": float(choice[4:])}}})
            policy = "kpa"
        else:
            c = float(choice[2:])
            settings = base.settings(part, quick, {"seed": seed, "output.plots": False,
                                                   "policy.params": {"ensure": {"staffing_c": c}}})
            policy = "ensure"
        workload = build_workload(settings)
        with loop_notes_silenced():
            rows = function_metrics(run_policy(settings, workload, measure_slos(settings, workload), policy,
                                               save_learner=False))
        n = np.array([r["invocations"] for r in rows], dtype=float)
        invocations = n
        names = [str(r["function"]) for r in rows]
        violations.append(np.array([r["slo_violation_rate"] for r in rows], dtype=float) * n)
        memory.append(np.array([r["memory_gb_s"] for r in rows], dtype=float))
        print(f"  seed {seed} {choice:>9}: {np.nansum(violations[-1]) / n.sum():7.2%} violations, "
              f"{np.nansum(memory[-1]):10.0f} GB-s", file=sys.stderr)
    return choices, {"violations": np.nan_to_num(np.array(violations)), "memory": np.array(memory),
                     "names": np.array(names)}, invocations


def oracle_frontier(violations: np.ndarray, memory: np.ndarray, invocations: np.ndarray,
                    prices: np.ndarray, chosen_on: tuple[np.ndarray, np.ndarray] | None = None,
                    allowed: np.ndarray | None = None) -> list[tuple[float, float, float]]:
    """(λ, violation rate, memory GB-s) of the per-function choice minimising violations + λ·memory:
    on these very runs (hindsight), or on ``chosen_on`` (other runs' violations and memory of the same
    functions, e.g. the training window) and then scored on these; among the rows ``allowed`` (all)."""
    rows = np.arange(len(violations)) if allowed is None else np.asarray(allowed)
    points = []
    for price in prices:
        v, m = chosen_on if chosen_on is not None else (violations, memory)
        pick = rows[np.argmin((v + price * m)[rows], axis=0)]
        cols = np.arange(violations.shape[1])
        points.append((float(price), float(violations[pick, cols].sum() / invocations.sum()),
                       float(memory[pick, cols].sum())))
    return points


def frontier_at(memory: np.ndarray, rate: np.ndarray, at: float) -> float:
    """ENSURE's frontier (its non-dominated points joined by straight lines) at memory ``at``."""
    order = np.argsort(memory)
    xs, ys = memory[order], rate[order]
    keep = [i for i in range(len(xs)) if not np.any((xs <= xs[i]) & (ys < ys[i]))]
    xs, ys = xs[keep], ys[keep]
    if at < xs[0]:
        return float("nan")
    return float(np.interp(at, xs, ys))


def baseline_frontiers(path: Path, scenario: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per seed, (memory GB-s, violation rate) of every baseline point of scenario ``scenario`` in a bench's
    ``results.csv`` (the families whose name does not start with ``nac-``)."""
    points: dict[int, tuple[list[float], list[float]]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["scenario"] != scenario or row["family"].startswith("nac-"):
                continue
            memory, rate = points.setdefault(int(row["seed"]), ([], []))
            memory.append(float(row["memory_gb_s"]))
            rate.append(float(row["slo_violation_rate"]))
    if not points:
        sys.exit(f"{path}: no baseline rows of scenario {scenario!r}")
    return {seed: (np.array(m), np.array(r)) for seed, (m, r) in points.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--part", choices=("train", "evaluate"), default="evaluate")
    parser.add_argument("--seeds", default="0-2", help="a range a-b or a list a,b,c [default: 0-2]")
    parser.add_argument("--out", type=Path, default=Path("runs/hindsight"))
    parser.add_argument("--choose-on", choices=("same", "train"), default="same",
                        help="pick each function's choice on the scored window itself (same: the hindsight "
                             "bound) or on the scenario's training window, the same seed (train: what a "
                             "per-function constant learned from the training window gives)")
    parser.add_argument("--quick", action="store_true",
                        help="the scenario's quick windows (those of mfrm bench --quick) instead of its full ones")
    parser.add_argument("--with-kpa", action="store_true",
                        help="let each function choose the KPA at a target of its sweep too (the portfolio "
                             "scheme's choice) [default: the platform or an ENSURE constant]")
    parser.add_argument("--against", type=Path, default=None, metavar="RESULTS.csv",
                        help="a bench's results.csv of the same windows: also compare with the frontier of every "
                             "baseline in it, seed by seed [default: ENSURE's frontier only]")
    args = parser.parse_args()
    if "-" in args.seeds:
        lo, hi = (int(v) for v in args.seeds.split("-"))
        seeds = list(range(lo, hi + 1))
    else:
        seeds = [int(v) for v in args.seeds.split(",")]
    prices = np.geomspace(1e-4, 10.0, 60)
    try:
        scenario_name = load_scenario(args.scenario).name
    except ScenarioError as error:
        sys.exit(str(error))
    if args.against is not None and not args.against.is_file():
        sys.exit(f"--against {args.against}: no such file (a bench's results.csv)")
    suite = baseline_frontiers(args.against, scenario_name) if args.against else None
    # With the KPA's targets, both choice sets are scored from the same runs.
    choice_sets = [("platform+ensure", np.arange(1 + len(CONSTANTS)))]
    if args.with_kpa:
        choice_sets.append(("platform+ensure+kpa", np.arange(1 + len(CONSTANTS) + len(KPA_TARGETS))))
    rows = []
    for seed in seeds:
        _, table, invocations = per_function(args.scenario, args.part, seed, args.quick, args.with_kpa)
        v, m = table["violations"], table["memory"]
        chosen_on = None
        if args.choose_on == "train":
            _, train, _ = per_function(args.scenario, "train", seed, args.quick, args.with_kpa)
            if list(train["names"]) != list(table["names"]):
                sys.exit(f"{args.scenario}: the training window has other functions than the {args.part} window; "
                         "--choose-on train needs the same ones")
            chosen_on = (train["violations"], train["memory"])
        ensure_rows = slice(1, 1 + len(CONSTANTS))
        ensure_rate = v[ensure_rows].sum(axis=1) / invocations.sum()
        ensure_memory = m[ensure_rows].sum(axis=1)
        for choice_set, allowed in choice_sets:
            for price, rate, memory in oracle_frontier(v, m, invocations, prices, chosen_on, allowed):
                reference = frontier_at(ensure_memory, ensure_rate, memory)
                row = {"seed": seed, "choices": choice_set, "price": price, "oracle_violation_rate": rate,
                       "oracle_memory_gb_s": memory,
                       "ensure_frontier_violation_rate": reference,
                       "fewer_violations": 1 - rate / reference if reference > 0 else float("nan")}
                if suite is not None:
                    if seed not in suite:
                        sys.exit(f"{args.against}: no baseline rows of scenario {scenario_name!r} for seed {seed}")
                    best = frontier_at(*suite[seed], memory)
                    row["suite_frontier_violation_rate"] = best
                    row["fewer_violations_than_suite"] = 1 - rate / best if best > 0 else float("nan")
                rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = (("" if args.choose_on == "same" else "-chosen-on-train") + ("-with-kpa" if args.with_kpa else "")
              + ("-quick" if args.quick else ""))
    path = args.out / f"{args.scenario.stem}-{args.part}{suffix}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    who = "the hindsight oracle" if args.choose_on == "same" else "the choice made on the training window"
    print(f"{args.scenario.name} ({args.part}, seeds {seeds}); rows in {path}")
    for choice_set, _ in choice_sets:
        mine = [r for r in rows if r["choices"] == choice_set]
        for key, against in (("fewer_violations", "ENSURE's frontier"),
                             ("fewer_violations_than_suite", f"every baseline of {args.against}")):
            if key not in mine[0]:
                continue
            gains = np.array([r[key] for r in mine], dtype=float)
            gains = gains[np.isfinite(gains)]
            if not gains.size:
                print(f"  {choice_set}: no point of {who} lies within the memory range of {against}")
                continue
            print(f"  {choice_set}: {who} has at most {100 * gains.max():.1f}% fewer violations than {against} "
                  f"at the same memory (median over its points {100 * np.median(gains):.1f}%; "
                  f"{np.mean(gains >= 0.2):.0%} of them >= 20%)")


if __name__ == "__main__":
    main()
