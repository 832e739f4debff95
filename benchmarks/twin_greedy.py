"""What a function's own recent past says, when every pool level's outcome is simulated: each function
follows the level whose twin served it best over the last hour.

    python benchmarks/twin_greedy.py SCENARIO.yaml --price P [--cold-starts free|ensure|priced]
        [--profile-error E] [--quick] [--seeds 0-2] [--against RESULTS.csv]

``benchmarks/portfolio_oracle.py --choose-on window-before`` shows how far past the baselines a choice
per function would get if every level's outcome for the function over the hour before were known. A
daemon can estimate those outcomes as it runs: one simulated twin of the cluster per pool level
(``controller.level_twins``, which ``twin_features`` puts in a learner's state: the functions' profiles,
fed each tick the arrivals every function had, spread over the tick), each played by the portfolio at
that level for every function. Per function and level the twin's SLO violations, memory GB-s and cold
starts are averaged with a time constant of one hour. Every tick each function follows the level of least
``violations + P · memory GB-s`` (with ``--cold-starts ensure`` only among the levels with no more cold
starts than ENSURE's ``c=1.06`` level, as ``fit_cold_starts: ensure`` labels; with ``priced`` plus the
cold starts); a function with no
arrival yet follows the histogram member.

No learning: the portfolio learner with the histogram member is built fresh (KPA warm start, frozen,
greedy), judged as ``benchmarks/warm_start_point.py`` judges a warm start, with its chosen actions
replaced by the twins' choice. The twins draw their own execution times (another simulator seed than
the judged cluster's). They know the functions' profiles, as the simulator that judges them does: on
a real cluster their outcomes are only as good as the profiles, so read a result of this script as
what such estimates are worth where they are right.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from controller import runner
from controller.level_twins import SEED_OFFSET, LevelTwins
from controller.prices import COLD_START_RULES, cold_start_allowed, level_costs
from policies.agent import SharedPolicyAgent
from policies.staffing import action_index

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("warm_start_point", HERE / "warm_start_point.py")
warm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(warm)


def believed_profiles(profiles: list[Any], error: float, rng: np.random.Generator) -> list[Any]:
    """``profiles`` as an estimate might have them: per function, the execution times (median and p99)
    times one factor and the cold-start time times another, each exp(error · z) with z standard normal
    (0: the true profiles). Memory is the action's limit, which the platform states exactly."""
    if error == 0.0:
        return list(profiles)
    z = rng.standard_normal((len(profiles), 2))
    return [replace(p, exec_median_s=p.exec_median_s * math.exp(error * a), exec_p99_s=p.exec_p99_s * math.exp(error * a),
                    init_s=p.init_s * math.exp(error * b)) for p, (a, b) in zip(profiles, z)]


def twin_choice(twins: LevelTwins, price: float, cold_starts: str) -> np.ndarray:
    """Each function's action: the level of least violations + price · memory GB-s in the twins (with
    ``cold_starts == "ensure"`` only among levels with no more cold starts than ``c=1.06``'s; with
    ``priced`` the cold starts added to the violations), the
    histogram member's where the function has had no arrival."""
    cost = level_costs(twins.violations, twins.memory_gb_s, twins.cold_starts, price, cold_starts)
    cost = np.where(cold_start_allowed(twins.cold_starts, twins.levels, cold_starts), cost, np.inf)
    actions = np.array([action_index(level, 1.0) for level in twins.levels], dtype=np.int64)
    return np.where(twins.seen, actions[np.argmin(cost, axis=0)], action_index("hist", 1.0))


def follow_twins(price: float, cold_starts: str, profile_error: float = 0.0) -> None:
    """Give every portfolio agent this process runs its level twins, and make it take their choice."""
    attach = runner.attach_twin

    def attach_levels(policy: Any, settings: Any, workload: Any, slo_s: np.ndarray, seeds: Any) -> None:
        attach(policy, settings, workload, slo_s, seeds)
        if isinstance(policy, SharedPolicyAgent) and policy.agent.scheme == "portfolio":
            profiles = believed_profiles([fn.profile for fn in workload.functions], profile_error,
                                         np.random.default_rng(seeds.workload + SEED_OFFSET))
            policy._choice_twins = LevelTwins(settings, workload, slo_s, seeds, policy.name, policy.agent.levels,
                                              profiles=profiles)

    runner.attach_twin = attach_levels

    def choose(agent: SharedPolicyAgent, snapshot: Any) -> np.ndarray | None:
        twins = getattr(agent, "_choice_twins", None)
        if twins is None:
            return None
        twins.advance(snapshot)
        return twin_choice(twins, price, cold_starts)

    warm.override_choices(choose)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    warm.add_rule_arguments(parser)
    parser.add_argument("--price", type=float, required=True, help="P: the price of one GB-s in SLO violations")
    parser.add_argument("--cold-starts", choices=COLD_START_RULES, default="ensure",
                        help="choose among every level (free), only those with no more cold starts than "
                             "ENSURE's c=1.06 level in the twins (ensure), or count a cold start as a "
                             "violation (priced) [default: ensure]")
    parser.add_argument("--profile-error", type=float, default=0.0, metavar="E",
                        help="simulate each function with its execution and cold-start times off by random "
                             "factors exp(E·z), z standard normal, per function (0: the true profiles) [default: 0]")
    args = parser.parse_args()
    if not args.price >= 0:
        sys.exit(f"--price {args.price}: must be >= 0")
    if not args.profile_error >= 0:
        sys.exit(f"--profile-error {args.profile_error}: must be >= 0")
    follow_twins(args.price, args.cold_starts, args.profile_error)
    warm.judge_rule(args, "histogram_member=true")


if __name__ == "__main__":
    main()
