"""Hand-made ticks for the learned policies: snapshots, a fixed μ, and the ways of driving a tick."""

from __future__ import annotations

from typing import Any

import numpy as np
from conftest import make_snapshot

from policies.serverless_features import HOLD_ACTION
from policies.types import ClusterSnapshot, Decisions, Policy

#: A uniform population estimate over the 10 utilisation bins the features expect.
MU = np.full(10, 0.1)

#: The modes every learned policy can be built in, as factory parameters. A learned policy missing
#: here is exercised in its default mode only.
LEARNER_MODES: dict[str, tuple[dict[str, Any], ...]] = {
    "nac-linear": ({"mode": "natural"}, {"mode": "kl"}),
    "nac-nn": ({},),
}


def modes_of(name: str) -> tuple[dict[str, Any], ...]:
    """The factory parameters of every mode of learned policy ``name``."""
    return LEARNER_MODES.get(name, ({},))


def tick(t: int, n: int = 3, **columns: Any) -> ClusterSnapshot:
    """Tick ``t`` (at 10·t s) of ``n`` functions ``f0``..: two containers of 256 shares, arrivals growing with t."""
    names = tuple(f"f{i}" for i in range(n))
    base = {
        "arrivals": np.arange(n, dtype=float) + 10.0 * t,
        "containers": np.full(n, 2.0),
        "cpu_shares": np.full(n, 256.0),
    }
    base.update(columns)
    return make_snapshot(names, time_s=10.0 * t, **base)


def run_tick(
    policy: Policy, snapshot: ClusterSnapshot, rewards: np.ndarray, feedback_first: bool = False
) -> tuple[Decisions, dict[str, float]]:
    """One tick of the loop: ``decide`` and ``feedback`` in either order; the decisions and diagnostics."""
    if feedback_first:
        diagnostics = policy.feedback(snapshot, MU, rewards)
        decisions = policy.decide(snapshot, MU)
    else:
        decisions = policy.decide(snapshot, MU)
        diagnostics = policy.feedback(snapshot, MU, rewards)
    return decisions, dict(diagnostics)


def bandit_rewards(decisions: Decisions) -> np.ndarray:
    """Reward 1 for the hold move and 0 otherwise: a contextual bandit every learner should solve."""
    return np.where(decisions.action == HOLD_ACTION, 1.0, 0.0)


def busy_tick(t: int, n: int = 6) -> ClusterSnapshot:
    """Tick ``t`` of ``n`` busy functions with every column drawn from a generator seeded by ``t``."""
    rng = np.random.default_rng(t)
    return make_snapshot(
        tuple(f"f{i}" for i in range(n)),
        time_s=10.0 * t,
        arrivals=rng.poisson(30, n).astype(float),
        completions=rng.poisson(30, n).astype(float),
        p99_latency_s=rng.uniform(0.2, 3.0, n),
        mean_exec_s=rng.uniform(0.05, 0.5, n),
        containers=rng.integers(1, 6, n).astype(float),
        busy_containers=rng.integers(0, 2, n).astype(float),
        cpu_shares=rng.choice([128.0, 256.0, 512.0], n),
        cpu_used_core_s=rng.uniform(0, 10, n),
        cpu_alloc_core_s=np.full(n, 10.0),
    )


def busy_rewards(t: int, n: int = 6) -> np.ndarray:
    """The rewards handed in at tick ``t``: uniform in [0, 1], one NaN (a function without data)."""
    rewards = np.random.default_rng(100 + t).uniform(0.0, 1.0, n)
    rewards[t % n] = np.nan
    return rewards
