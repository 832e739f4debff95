"""The staffing action scheme: per function, how much headroom above its load, and how much CPU.

The learners' moves of ``policies.serverless_features`` step a pool up or down by a share of its
size. This scheme instead lets the shared policy choose, per function and tick, *how* the pool
follows its load — the choice every square-root-staffing heuristic makes once for all functions:

* a pool level: ``platform`` (the function is left to the platform's own on-demand containers and
  keep-alive) or a staffing constant c of ``STAFFING_LEVELS``, the target then being
  ``max(1, ⌈R + c·√R⌉)`` containers for the function's offered load R (arrival rate × mean
  execution time, in busy containers; the driver's smoothed value);
* a CPU level: OpenWhisk's shares for the function's memory times a factor of ``SHARE_FACTORS``.

So every ENSURE point of the evaluation suite's sweep is one fixed action of this scheme, and what
the learner can add is choosing differently per function and per state: little headroom where a
queue costs little (long SLO slack, cheap cold starts, smooth arrivals), more where it costs much,
the platform's keep-alive for functions too rare to keep warm, and more CPU only where cores are
contended (μ, the population state, says where).

A function whose smoothed load is below ``idle_load`` (``ActionSettings.idle_load``, shared with
the moves scheme) is left to the platform whatever the action
(as ENSURE does: staffing a zero load would keep a container forever), and one whose work has no
known size yet (arrivals before any completion) too; neither forms a learning transition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from policies.types import KEEP_SHARES, SHARES_PER_CORE, UNMANAGED, ClusterSnapshot, Decisions

#: Staffing constants a pool level can take: the knob values of ENSURE's sweep in the suite.
STAFFING_LEVELS: tuple[float, ...] = (0.0, 0.5, 1.06, 2.0, 3.0)
#: Multipliers of OpenWhisk's CPU shares for the function's memory.
SHARE_FACTORS: tuple[float, ...] = (1.0, 2.0)
#: Pool levels: the platform, then each staffing constant.
POOL_LEVELS: tuple[str, ...] = ("platform", *(f"c={c:g}" for c in STAFFING_LEVELS))


@dataclass(frozen=True)
class StaffingSettings:
    """The staffing scheme's constants."""

    share_floor: int = 2
    """Fewest CPU shares per container (Docker's minimum), so that factor 1 is OpenWhisk's own shares
    for every memory size (the moves scheme's ``min_shares`` is a different, higher floor)."""
    share_ceiling: int = 8192
    """Most CPU shares per container: every core of an 8-core invoker; the guard holds it to the
    cluster's largest invoker in any case."""

    def __post_init__(self) -> None:
        if not 2 <= self.share_floor <= self.share_ceiling:
            raise ValueError(f"StaffingSettings: need 2 <= share_floor ({self.share_floor}) <= share_ceiling "
                             f"({self.share_ceiling})")


#: Actions of the scheme: row a is (pool level index, share factor index).
STAFFING_ACTIONS: np.ndarray = np.array(
    [(p, s) for p in range(len(POOL_LEVELS)) for s in range(len(SHARE_FACTORS))], dtype=np.int64)
STAFFING_ACTIONS.setflags(write=False)
N_STAFFING_ACTIONS = len(STAFFING_ACTIONS)


def action_index(pool: str, share_factor: float = 1.0) -> int:
    """The action of pool level ``pool`` (``"platform"`` or ``"c=1.06"``) and a share factor."""
    p, s = POOL_LEVELS.index(pool), SHARE_FACTORS.index(share_factor)
    return int(np.flatnonzero((STAFFING_ACTIONS[:, 0] == p) & (STAFFING_ACTIONS[:, 1] == s))[0])


#: The action that makes this scheme ENSURE's pool rule at its default constant (c = 1.06) with
#: OpenWhisk's shares: where a learner starts from when it is warm-started from ENSURE.
ENSURE_ACTION = action_index("c=1.06", 1.0)


def openwhisk_shares(memory_mb: np.ndarray, user_memory_mb: float) -> np.ndarray:
    """OpenWhisk's shares for a container: 1024 split by how many of its memory fit an invoker, >= 2."""
    memory = np.maximum(np.asarray(memory_mb, dtype=float), 1e-9)
    slots = np.maximum(np.floor(user_memory_mb / memory), 1.0)
    return np.maximum(np.floor(SHARES_PER_CORE / slots), 2).astype(np.int64)


#: Names of the features the staffing scheme adds to the state vector (all in [0, 1]).
STAFFING_FEATURES: tuple[str, ...] = ("load", "memory", "slack")


def staffing_features(snapshot: ClusterSnapshot, load: np.ndarray) -> np.ndarray:
    """(N, 3) features that say what a container is worth to each function, in [0, 1]:

    * ``load``: log(1 + R) / log(1 + 1000), R the smoothed offered load in busy containers (how many
      containers the function needs at all; a relative headroom matters less the larger R is);
    * ``memory``: log2(memory / 128 MB) / log2(8192 / 128) (what a container costs to keep warm);
    * ``slack``: (SLO − mean execution time) / SLO (how long an invocation may wait before it
      violates: a function with slack tolerates a short queue, one without needs a free container);
      0 while the execution time is unknown.
    """
    f = snapshot.functions
    r = np.where(np.isfinite(load), np.maximum(load, 0.0), 0.0)
    load_f = np.clip(np.log1p(r) / math.log1p(1000.0), 0.0, 1.0)
    memory = np.asarray(f.memory_mb, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        memory_f = np.clip(np.log2(np.maximum(memory, 1.0) / 128.0) / 6.0, 0.0, 1.0)
        exec_s = np.where(np.isfinite(f.mean_exec_s), f.mean_exec_s, f.recent_exec_s)
        slack = np.clip((f.slo_s - exec_s) / f.slo_s, 0.0, 1.0)
    return np.column_stack([load_f, np.nan_to_num(memory_f), np.where(np.isfinite(slack), slack, 0.0)])


def staffing_decisions(snapshot: ClusterSnapshot, actions: np.ndarray, usable: np.ndarray, load: np.ndarray,
                       settings: StaffingSettings, label: str, idle_load: float = 1e-3) -> Decisions:
    """Targets for every function from its action and its offered load ``load`` (busy containers).

    A function whose load is under ``idle_load`` busy containers goes to the platform whatever its
    action. ``Decisions.action`` is the action where it was applied and -1 where the function went to
    the platform for want of load or of a known work size (no transition forms there).
    """
    f = snapshot.functions
    n = len(f)
    actions = np.asarray(actions, dtype=np.int64)
    if actions.shape != (n,) or np.shape(usable) != (n,) or np.shape(load) != (n,):
        raise ValueError(f"actions, usable and load must all have shape ({n},)")
    safe = np.where(usable, actions, ENSURE_ACTION)
    if np.any((safe < 0) | (safe >= N_STAFFING_ACTIONS)):
        raise ValueError(f"staffing actions must be in [0, {N_STAFFING_ACTIONS})")
    load = np.where(np.isfinite(load), np.maximum(load, 0.0), 0.0)
    sized = np.isfinite(f.mean_exec_s) | np.isfinite(f.recent_exec_s) | ~(np.nan_to_num(f.arrivals, nan=1.0) > 0)
    idle = (load < idle_load) | ~sized
    pool, share = STAFFING_ACTIONS[safe, 0], STAFFING_ACTIONS[safe, 1]
    levels = np.array([math.nan, *STAFFING_LEVELS])[pool]
    with np.errstate(invalid="ignore"):
        counts = np.maximum(1, np.ceil(load + np.nan_to_num(levels) * np.sqrt(load) - 1e-9)).astype(np.int64)
    to_platform = usable & (idle | (pool == 0))
    managed = usable & ~to_platform
    memories = snapshot.invokers.memory_mb[snapshot.invokers.valid & (snapshot.invokers.memory_mb > 0)]
    user_memory = float(np.median(memories)) if memories.size else 2048.0
    shares = np.clip(np.round(openwhisk_shares(f.memory_mb, user_memory) * np.array(SHARE_FACTORS)[share]),
                     settings.share_floor, settings.share_ceiling).astype(np.int64)
    factors = np.array(SHARE_FACTORS)[share]
    reasons = tuple(
        "no data" if not ok
        else f"{label}: {f'idle (R={r:.3g})' if sized_i else 'work size unknown'}, containers left to the platform"
        if rest
        else f"{label}: R={r:.2f}, containers left to the platform (chosen), shares {s_i}" if p_i == 0
        else f"{label}: R={r:.2f}, c={c_i:g} -> {k_i} containers, shares x{x_i:g} = {s_i}"
        for ok, rest, sized_i, r, p_i, c_i, k_i, x_i, s_i in zip(
            np.asarray(usable, dtype=bool).tolist(), idle.tolist(), sized.tolist(), load.tolist(), pool.tolist(),
            levels.tolist(), counts.tolist(), factors.tolist(), shares.tolist())
    )
    return Decisions(
        containers=np.where(managed, counts, UNMANAGED),
        cpu_shares=np.where(managed, shares, KEEP_SHARES),
        valid=np.asarray(usable, dtype=bool).copy(),
        reasons=tuple(reasons),
        action=np.where(usable & ~idle, safe, -1),
    )


__all__ = [
    "ENSURE_ACTION",
    "N_STAFFING_ACTIONS",
    "POOL_LEVELS",
    "SHARE_FACTORS",
    "STAFFING_ACTIONS",
    "STAFFING_FEATURES",
    "STAFFING_LEVELS",
    "StaffingSettings",
    "action_index",
    "openwhisk_shares",
    "staffing_decisions",
    "staffing_features",
]
