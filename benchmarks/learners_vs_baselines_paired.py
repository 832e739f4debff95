"""Pool finished runs of ``learners_vs_baselines.py`` and compare the learned policies with each baseline, seed by seed.

Reads ``seed*/<policy>.csv`` under every folder given (a seed must not appear in two folders for
the same policy), prints per policy the mean ± standard deviation of SLO violations and CPU
utilisation over all seeds, then for every (learner, baseline) pair the paired difference over the
seeds both ran: mean ± sd of Δ violations and Δ utilisation (learner − baseline, percentage
points), on how many seeds the learner had fewer violations, and on how many it was better on
both numbers (fewer violations and at least the utilisation). Rows of ``--untrained`` runs may be
given with ``--ablation FOLDER``; they are listed under ``<policy> (untrained)``.

    python benchmarks/learners_vs_baselines_paired.py runs/learners/f12-v3 runs/learners/f12-v3-more \\
        --ablation runs/learners/f12-v3-untrained runs/learners/f12-v3-more-untrained
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

BASELINES = ("openwhisk-default", "ensure", "kpa", "hpa")
LEARNED = ("nac-linear", "nac-nn")


def read(folders: list[Path], suffix: str = "") -> dict[str, dict[int, tuple[float, float]]]:
    """{policy: {seed: (violations %, utilisation %)}} from every ``seed*/<policy>.csv`` of ``folders``."""
    table: dict[str, dict[int, tuple[float, float]]] = {}
    for folder in folders:
        if not folder.is_dir():
            raise SystemExit(f"{folder}: not a folder of learners_vs_baselines.py results")
        for path in sorted(folder.glob("seed*/*.csv")):
            if path.name.endswith(".diagnostics.csv"):
                continue
            with path.open(newline="", encoding="utf-8") as handle:
                for line, row in enumerate(csv.DictReader(handle), start=2):
                    try:
                        policy, seed = row["policy"] + suffix, int(row["seed"])
                        value = (100 * float(row["slo_violation_rate"]), 100 * float(row["cpu_utilisation"]))
                    except (KeyError, ValueError) as exc:
                        raise SystemExit(f"{path}:{line}: not a result row ({exc})") from exc
                    seeds = table.setdefault(policy, {})
                    if seed in seeds:
                        raise SystemExit(f"{path}: seed {seed} of {policy} appears in two folders")
                    seeds[seed] = value
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="Output folders of learners_vs_baselines.py.")
    parser.add_argument("--ablation", nargs="*", type=Path, default=[], help="Folders of --untrained runs.")
    args = parser.parse_args(argv)
    table = read(args.folders)
    table.update(read(args.ablation, " (untrained)"))
    if not table:
        print("no result rows found", file=sys.stderr)
        return 1
    print(f"{'policy':<26} {'seeds':>5} {'SLO viol. %':>16} {'CPU util. %':>18}")
    for policy in sorted(table, key=lambda p: (p not in BASELINES, p)):
        values = np.array(list(table[policy].values()))
        sd = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(2)
        print(f"{policy:<26} {len(values):>5} {values[:, 0].mean():>8.2f} ± {sd[0]:<5.2f} "
              f"{values[:, 1].mean():>9.1f} ± {sd[1]:<6.1f}")
    print()
    print(f"{'learner':<26} {'baseline':<18} {'seeds':>5} {'Δ viol. (points)':>18} {'fewer viol.':>11} "
          f"{'Δ util. (points)':>18} {'both better':>11}")
    learners = [p for p in table if p.split(" ")[0] in LEARNED]
    for learner in sorted(learners):
        for baseline in BASELINES:
            seeds = sorted(set(table[learner]) & set(table.get(baseline, {})))
            if not seeds:
                continue
            dv = np.array([table[learner][s][0] - table[baseline][s][0] for s in seeds])
            du = np.array([table[learner][s][1] - table[baseline][s][1] for s in seeds])
            sdv, sdu = (dv.std(ddof=1), du.std(ddof=1)) if len(seeds) > 1 else (0.0, 0.0)
            print(f"{learner:<26} {baseline:<18} {len(seeds):>5} {dv.mean():>+9.2f} ± {sdv:<6.2f} "
                  f"{int((dv < 0).sum()):>5} of {len(seeds):<2} {du.mean():>+9.1f} ± {sdu:<6.1f} "
                  f"{int(((dv < 0) & (du >= 0)).sum()):>5} of {len(seeds):<2}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
