"""How often the online safety check fails for ENSURE against itself: the check's noise floor.

    python benchmarks/safety_noise_floor.py SCENARIO.yaml [...] [--part evaluate] [--quick] [--seeds 0-4]
        [--other seed|generous [--extra E]]

The suite's online safety check counts a 10-minute window as safe when a learner's SLO violations are
at most 1.1 x those of ENSURE c=1.06 on the same arrivals (same seed). This script runs ENSURE c=1.06
per seed on the same arrivals and compares it with a second run, counting the windows in which the
second run has more than 1.1 x the first's violations:

* ``--other seed``: ENSURE c=1.06 again with another simulator seed (execution times and placement
  draw differently; the arrivals are the seed's). A policy *identical* to ENSURE fails the check in
  those windows.
* ``--other generous``: ENSURE at c = 1.06 + 0.1 on the *same* simulator seed (``--extra`` sets the
  0.1, and may be negative). Every invocation's execution time is the same draw in both runs (the
  simulator draws work from the seed and the arrivals alone), and for the load it sees each decision
  of the second run is a little larger (smaller) than ENSURE's. Any window it fails is lost to how a
  small change of pools cascades through placement and contention, not to the work's draws.

Either way the count is what the check charges a policy for the cluster's own spread: where it is
high, the check measures the cluster, not the learner.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from controller.assemble import RunSeeds, build_workload, measure_slos
from controller.bench.cells import window_rows
from controller.bench.execute import loop_notes_silenced
from controller.bench.scenarios import ScenarioError, load_scenario
from controller.runner import run_policy

#: The factor of the suite's safety check (controller.bench.analysis.safety_rows).
FACTOR = 1.1


#: ENSURE's constant in the suite's safety check, and the extra headroom of ``--other generous``.
ENSURE_C, GENEROUS_EXTRA = 1.06, 0.1
#: What the second run of each seed is (``--other``).
OTHERS: tuple[str, ...] = ("seed", "generous")


def failing_windows(scenario: Path, part: str, quick: bool, seed: int, other: str = "seed",
                    offset: int = 7919, extra: float = GENEROUS_EXTRA) -> tuple[int, int, float]:
    """(windows, windows where the second run (``other``: ENSURE with its simulator seed moved by ``offset``,
    or ENSURE with ``extra`` more headroom on the same seed) exceeds FACTOR x ENSURE, worst ratio)."""
    base = load_scenario(scenario)
    settings = base.settings(part, quick, {"seed": seed, "output.plots": False,
                                           "policy.params": {"ensure": {"staffing_c": ENSURE_C}}})
    workload = build_workload(settings)
    slo_s = measure_slos(settings, workload)
    seeds = RunSeeds.from_seed(seed)
    if other == "seed":
        second_settings, second_seeds = settings, dataclasses.replace(seeds, cluster=seeds.cluster + offset)
    else:
        second_settings = base.settings(part, quick, {"seed": seed, "output.plots": False, "policy.params": {
            "ensure": {"staffing_c": ENSURE_C + extra}}})
        second_seeds = seeds
    with loop_notes_silenced():
        runs = [window_rows(run_policy(st, workload, slo_s, "ensure", seeds=sd, save_learner=False), [])
                for st, sd in ((settings, seeds), (second_settings, second_seeds))]
    failed, worst = 0, 0.0
    for mine, theirs in zip(runs[1], runs[0]):
        if mine["violations"] > FACTOR * theirs["violations"]:
            failed += 1
            worst = max(worst, mine["violations"] / max(theirs["violations"], 1))
    return len(runs[0]), failed, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="+", type=Path)
    parser.add_argument("--part", choices=("train", "evaluate"), default="evaluate")
    parser.add_argument("--quick", action="store_true", help="the scenarios' quick windows (mfrm bench --quick)")
    parser.add_argument("--seeds", default="0-4", help="a range a-b or a list a,b,c [default: 0-4]")
    parser.add_argument("--other", choices=OTHERS, default="seed",
                        help="the second run: ENSURE with another simulator seed, or ENSURE with --extra more "
                             "headroom on the same seed [default: seed]")
    parser.add_argument("--extra", type=float, default=GENEROUS_EXTRA,
                        help="with --other generous: what the second run adds to ENSURE's constant; may be "
                             f"negative (less headroom) [default: {GENEROUS_EXTRA:g}]")
    args = parser.parse_args()
    if args.other != "generous" and args.extra != GENEROUS_EXTRA:
        parser.error("--extra applies to --other generous only")
    if args.other == "generous" and (args.extra == 0 or ENSURE_C + args.extra < 0):
        parser.error(f"--extra must be non-zero and leave ENSURE's constant ({ENSURE_C:g} + extra) at least 0")
    logging.disable(logging.WARNING)
    if "-" in args.seeds:
        lo, hi = (int(v) for v in args.seeds.split("-"))
        seeds = list(range(lo, hi + 1))
    else:
        seeds = [int(v) for v in args.seeds.split(",")]
    for scenario in args.scenarios:
        try:
            load_scenario(scenario)
        except ScenarioError as error:
            sys.exit(str(error))
    against = ("ENSURE (another simulator seed) fails against ENSURE" if args.other == "seed"
               else f"ENSURE c={ENSURE_C + args.extra:g} (same seed) fails against ENSURE c={ENSURE_C:g}")
    print(f"| scenario | seeds | windows | {against} | worst ratio |")
    print("|---|---|---|---|---|")
    for scenario in args.scenarios:
        total = failed = 0
        worst = 0.0
        for seed in seeds:
            n, f, w = failing_windows(scenario, args.part, args.quick, seed, args.other, extra=args.extra)
            total, failed, worst = total + n, failed + f, max(worst, w)
        name = load_scenario(scenario).name
        print(f"| {name} | {len(seeds)} | {total} | {failed} ({failed / max(total, 1):.0%}) | "
              f"{'–' if not failed else f'{worst:.2f}'} |", flush=True)


if __name__ == "__main__":
    main()
