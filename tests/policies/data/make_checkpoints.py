"""Writes the learner checkpoints that ``test_learned_policies.py`` loads, and what must follow them.

    python tests/policies/data/make_checkpoints.py

For every learned policy and mode: build it with seed 3, drive it over ticks 1-4 of
``learner_fixtures.busy_tick`` (decide, then feedback with ``busy_rewards``), save a checkpoint
``<name>-<mode>.ckpt.npz`` with ``controller.checkpoint.save_checkpoint``, then run tick 5 and record
its actions and diagnostics in ``expected.json``. A policy restored from the file must repeat tick 5
exactly: that is how the test knows the checkpoint format, the state keys and the learners'
behaviour are what these files were written with. Regenerate them only together with a deliberate
change of a learner's state (and its ``STATE_VERSION``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent)]  # learner_fixtures, conftest

from learner_fixtures import LEARNER_MODES, MU, busy_rewards, busy_tick

from controller.checkpoint import save_checkpoint
from policies.registry import make

SEED = 3
SAVED_AT_TICK = 4


def case_name(name: str, params: dict) -> str:
    """``nac-linear-kl``, ``nac-nn``: the policy name and its mode, if it has one."""
    return name + (f"-{params['mode']}" if "mode" in params else "")


def main() -> None:
    expected = {}
    for name, modes in LEARNER_MODES.items():
        for params in modes:
            policy = make(name, seed=SEED, **params)
            for t in range(1, SAVED_AT_TICK + 1):
                policy.decide(busy_tick(t), MU)
                policy.feedback(busy_tick(t), MU, busy_rewards(t))
            case = case_name(name, params)
            save_checkpoint(HERE / f"{case}.ckpt.npz", policy, tick=SAVED_AT_TICK, time_s=10.0 * SAVED_AT_TICK)
            t = SAVED_AT_TICK + 1
            decisions = policy.decide(busy_tick(t), MU)
            diagnostics = policy.feedback(busy_tick(t), MU, busy_rewards(t))
            expected[case] = {
                "actions": decisions.action.tolist(),
                "diagnostics": {key: float(value) for key, value in diagnostics.items()},
            }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
