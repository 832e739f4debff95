"""Where a learner's cold starts come from, against what its level twins said they would be.

    python benchmarks/twin_cold_starts.py SCENARIO.yaml --param twin_features=true [--warm-start twins]
        [--fit-cold-starts ensure] [--alphas 0.1] [--quick] [--seeds 0-2] [--minutes 10] [--param KEY=VALUE ...]

The ``ensure`` cold-start rule lets a function take a level only if that level's twin has had no more
cold starts for it over the last hour than ENSURE's level's twin (``controller.level_twins``). Whether
the cluster then has no more cold starts than ENSURE turns on two things this script separates, run by
run, for the learner ``benchmarks/warm_start_point.py`` judges (built fresh, frozen, greedy, with the
same options):

* the twins' accuracy: the cluster's own cold starts against the *mixture*'s in the twins (each tick,
  every function's cold starts in the twin of the level the policy had it follow);
* the rule's bound: the mixture's cold starts in the twins against ENSURE's level's twin, in parts of
  ``--minutes`` from the start of the window, and by the level followed (the mixture's cold starts
  beyond ENSURE's twin's for the function, summed over the ticks it followed that level).

The twins' per-tick cold starts are read back exactly from their hourly averages (an average a moved
to a' by a tick's value v with weight w gives v = a + (a' − a) / w).
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller import level_twins
from controller.prices import ENSURE_LEVEL
from policies.agent import SharedPolicyAgent
from policies.staffing import PORTFOLIO_HISTOGRAM_ACTIONS, PORTFOLIO_HISTOGRAM_LEVELS

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("warm_start_point", HERE / "warm_start_point.py")
warm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(warm)


def tick_values(before: np.ndarray, after: np.ndarray, weight: float) -> np.ndarray:
    """The values one tick folded into running averages that went from ``before`` to ``after`` with
    ``weight`` (0 < weight <= 1)."""
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"tick_values: weight {weight!r} must be in (0, 1]")
    return before + (after - before) / weight


def followed_levels(actions: np.ndarray, levels: tuple[str, ...]) -> np.ndarray:
    """Each function's level (its index in ``levels``) from the portfolio actions it was given."""
    rows = PORTFOLIO_HISTOGRAM_ACTIONS[np.asarray(actions, dtype=np.int64).ravel(), 0]
    names = [PORTFOLIO_HISTOGRAM_LEVELS[int(p)] for p in rows]
    missing = sorted(set(names) - set(levels))
    if missing:
        raise ValueError(f"followed_levels: actions of levels {', '.join(missing)} that the twins do not run")
    return np.array([levels.index(name) for name in names], dtype=np.int64)


@dataclass
class Ledger:
    """One run's cold starts: the cluster's, the followed mixture's and ENSURE's level's in the twins."""

    levels: tuple[str, ...]
    part_s: float
    start_s: float | None = None
    real: float = 0.0
    mixture: float = 0.0
    ensure: float = 0.0
    by_level: np.ndarray = field(default_factory=lambda: np.zeros(0))
    followed_ticks: np.ndarray = field(default_factory=lambda: np.zeros(0))
    parts: dict[int, list[float]] = field(default_factory=dict)
    """Part of the window → [mixture, ENSURE's level] cold starts in the twins."""

    def __post_init__(self) -> None:
        self.by_level = np.zeros(len(self.levels))
        self.followed_ticks = np.zeros(len(self.levels))

    def add(self, time_s: float, real: float, twin_ticks: np.ndarray, followed: np.ndarray | None) -> None:
        """Fold in one tick: the cluster's cold starts (all functions), the twins' (levels × functions)
        and the level each function followed over the tick (None before the first decision: the
        cluster's count is kept, the twins' comparison starts at the next tick)."""
        if self.start_s is None:
            self.start_s = time_s
        self.real += real
        if followed is None:
            return
        columns = np.arange(twin_ticks.shape[1])
        mine = twin_ticks[followed, columns]
        ensure = twin_ticks[self.levels.index(ENSURE_LEVEL)]
        self.mixture += float(mine.sum())
        self.ensure += float(ensure.sum())
        np.add.at(self.by_level, followed, mine - ensure)
        np.add.at(self.followed_ticks, followed, 1.0)
        part = self.parts.setdefault(int((time_s - self.start_s) // self.part_s), [0.0, 0.0])
        part[0] += float(mine.sum())
        part[1] += float(ensure.sum())

    def lines(self, label: str) -> list[str]:
        minutes = self.part_s / 60.0
        out = [f"{label}: cluster {self.real:,.0f} cold starts; twins: the mixture followed {self.mixture:,.0f}, "
               f"ENSURE's level {self.ensure:,.0f}"]
        out.append(f"  by {minutes:g} minutes from the start (mixture / ENSURE's level): " + ", ".join(
            f"{int(k * minutes)}-{int((k + 1) * minutes)}: {v[0]:,.0f} / {v[1]:,.0f}" for k, v in sorted(self.parts.items())))
        out.append("  beyond ENSURE's level, by the level followed (function-ticks): " + ", ".join(
            f"{name} {extra:+,.0f} ({ticks:,.0f})" for name, extra, ticks in zip(self.levels, self.by_level,
                                                                               self.followed_ticks) if ticks))
        return out


def watch(part_s: float) -> list[Ledger]:
    """Keep a :class:`Ledger` for every level twins this process advances, fed by the agent that reads them."""
    ledgers: list[Ledger] = []
    advance = level_twins.LevelTwins.advance

    def advanced(self: level_twins.LevelTwins, snapshot: Any) -> None:
        now = float(snapshot.time_s)
        if self.time_s is not None and now <= self.time_s:
            advance(self, snapshot)
            return
        before = self.state.cold_starts.copy()
        advance(self, snapshot)
        weight = 1.0 - np.exp(-float(snapshot.tick_s) / level_twins.TAU_S)
        ledger = self.__dict__.get("_ledger")
        if ledger is None:
            ledger = self._ledger = Ledger(self.levels, part_s)
            ledgers.append(ledger)
        real = float(np.nansum(np.asarray(snapshot.functions.cold_starts, dtype=float)))
        ledger.add(now, real, tick_values(before, self.state.cold_starts, weight), self.__dict__.get("_followed"))

    observe = SharedPolicyAgent._observe

    def observed(self: SharedPolicyAgent, snapshot: Any, mu: np.ndarray) -> Any:
        step = observe(self, snapshot, mu)
        twins = self.level_twins
        if twins is not None and hasattr(twins, "levels"):
            twins._followed = followed_levels(step.actions, twins.levels)
        return step

    level_twins.LevelTwins.advance = advanced  # type: ignore[method-assign]
    SharedPolicyAgent._observe = observed  # type: ignore[method-assign]
    return ledgers


def main() -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("-h", "--help", action="store_true")
    mine, rest = parser.parse_known_args()
    if mine.help:
        print(__doc__)
        print("--minutes M: the length of the parts of the window the cold starts are shown in [default: 10]; "
              "every other option is benchmarks/warm_start_point.py's (its --help). Runs are numbered in the "
              "order they are judged: each α in turn, its seeds in order.")
        return
    if not mine.minutes > 0:
        sys.exit(f"--minutes {mine.minutes}: must be > 0")
    if not any(arg.replace(" ", "").lower() == "twin_features=true" for arg in rest):
        sys.exit("twin_cold_starts.py: needs --param twin_features=true (the twins it compares the cluster with)")
    ledgers = watch(mine.minutes * 60.0)

    def report() -> None:
        for index, ledger in enumerate(ledgers):
            print("\n".join(ledger.lines(f"run {index + 1}")))

    atexit.register(report)
    sys.argv = [sys.argv[0], *rest]
    warm.main()


if __name__ == "__main__":
    main()
