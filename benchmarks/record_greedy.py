"""What the pool levels' records know: every function follows the level with the best recent record.

    python benchmarks/record_greedy.py SCENARIO.yaml --weight W [--hold-ticks K] [--quick] [--seeds 0-2]
        [--against RESULTS.csv]

``record_features`` gives the learner, per function and pool level, what that level would have cost
the function over the last hour (``policies/record.py``: the share of its arrivals that found no warm
container, and the idle memory held, in invoker memories). If those estimates were good, the simplest
use of them — each function follows, every tick, the level whose record costs least,
``miss_rate + W · idle`` — would come close to the portfolio's hindsight bound
(``benchmarks/portfolio_oracle.py``); if it lands on the baselines' frontier, the records do not carry
what a policy reading them would need, whatever it learns. A function with no arrival recorded yet
follows the histogram member.

No learning: the portfolio learner with the histogram member and the records is built fresh (KPA
warm start, frozen, greedy), judged as ``benchmarks/warm_start_point.py`` judges a warm start, with
its chosen actions replaced by the records' choice (its rows keep the warm-start point's label). ``W`` prices an invoker's memory held idle for an
hour in missed arrivals (a share of the function's arrivals); sweep it for this rule's frontier.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

from policies.agent import SharedPolicyAgent
from policies.staffing import action_index

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("warm_start_point", HERE / "warm_start_point.py")
warm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(warm)


def record_choice(agent: SharedPolicyAgent, weight: float) -> np.ndarray:
    """The action of each function's cheapest level by its record (the histogram member's where the
    function has no arrival recorded)."""
    record = agent.record
    if record is None:
        raise ValueError("record_greedy needs record_features=true")
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(record.arrivals > 0, record.miss / np.where(record.arrivals > 0, record.arrivals, 1.0), 0.0)
    best = np.argmin(rate + weight * record.idle, axis=0)
    actions = np.array([action_index(level, 1.0) for level in record.levels], dtype=np.int64)
    return np.where(record.arrivals > 0, actions[best], action_index("hist", 1.0))


def follow_records(weight: float) -> None:
    """Make every portfolio agent of this process take the records' choice instead of its own (held for
    ``decision_ticks`` once made, as ``--hold-ticks`` asks)."""
    warm.override_choices(lambda agent, snapshot: record_choice(agent, weight))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    warm.add_rule_arguments(parser)
    parser.add_argument("--weight", type=float, required=True,
                        help="W: the price of one invoker's memory held idle, in missed arrivals' share")
    parser.add_argument("--hold-ticks", type=int, default=1,
                        help="ticks each function keeps the level chosen for it before the records choose again "
                             "(the learner's decision_ticks) [default: 1, every tick]")
    args = parser.parse_args()
    if not args.weight >= 0:
        sys.exit(f"--weight {args.weight}: must be >= 0")
    if args.hold_ticks < 1:
        sys.exit(f"--hold-ticks {args.hold_ticks}: must be >= 1")
    follow_records(args.weight)
    warm.judge_rule(args, "histogram_member=true", "record_features=true", f"decision_ticks={args.hold_ticks}")


if __name__ == "__main__":
    main()
