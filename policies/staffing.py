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

The ``portfolio`` scheme adds pool levels that follow another heuristic's rule: Knative's pod
autoscaler (KPA) at the target utilisations of ``KPA_TARGETS``, each run as its own member
(:class:`KpaMembers`) on the same observations every tick, whichever rule a function follows. ENSURE
sizes a pool by its offered load; the KPA by its observed concurrency over a 60-s window with a
6-s panic window, which follows bursts ENSURE's smoothed load lags behind. Neither is best
everywhere: on a memory-contended cluster the KPA's points lie well below ENSURE's, on the paper's
cluster ENSURE's below the KPA's. A learner of this scheme chooses, per function and state, whose
rule sizes its pool. With ``AgentSettings.histogram_member`` it has one more member: the
hybrid-histogram keep-alive policy (Shahrad et al., ATC 2020), which unloads a function between
invocations and loads it again where its idle-time histogram says the next one will come — the rule
for rare, periodic functions, which neither ENSURE nor the KPA has.

A function whose smoothed load is below ``idle_load`` (``ActionSettings.idle_load``, shared with
the moves scheme) is left to the platform (as ENSURE does: staffing a zero load would keep a
container forever) unless it follows a member, whose pool it then gets (the KPA scales an idle
function to zero after its grace period, the histogram outside its window; the platform keeps it
warm for its 10-minute keep-alive).
A function whose work has no known size yet (arrivals before any completion) goes to the platform
whatever the action. Neither forms a learning transition under the staffing scheme; under the
portfolio an idle function of known size does (its choice decides the memory it holds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from policies.types import KEEP_SHARES, SHARES_PER_CORE, UNMANAGED, ClusterSnapshot, Decisions, LazyReasons

#: Staffing constants a pool level can take: the knob values of ENSURE's sweep in the suite.
STAFFING_LEVELS: tuple[float, ...] = (0.0, 0.5, 1.06, 2.0, 3.0)
#: Multipliers of OpenWhisk's CPU shares for the function's memory.
SHARE_FACTORS: tuple[float, ...] = (1.0, 2.0)
#: Pool levels: the platform, then each staffing constant.
POOL_LEVELS: tuple[str, ...] = ("platform", *(f"c={c:g}" for c in STAFFING_LEVELS))
#: Target utilisations of the KPA members a ``portfolio`` pool level can follow: the ends and the
#: default of the suite's KPA sweep.
KPA_TARGETS: tuple[float, ...] = (0.4, 0.7, 1.0)
#: Pool levels of the ``portfolio`` scheme: the staffing scheme's, then each KPA member.
PORTFOLIO_LEVELS: tuple[str, ...] = (*POOL_LEVELS, *(f"kpa={t:g}" for t in KPA_TARGETS))
#: The pool level that follows the hybrid-histogram keep-alive policy (``AgentSettings.histogram_member``).
HISTOGRAM_LEVEL = "hist"
#: Pool levels of the ``portfolio`` scheme with the histogram member: the portfolio's, then the hybrid
#: histogram's (appended, so every other level keeps its action index).
PORTFOLIO_HISTOGRAM_LEVELS: tuple[str, ...] = (*PORTFOLIO_LEVELS, HISTOGRAM_LEVEL)


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
    """The action of pool level ``pool`` (``"platform"``, ``"c=1.06"`` or, in the portfolio scheme,
    ``"kpa=0.7"`` and, with its histogram member, ``"hist"``) and a share factor. An action has the
    same index in every scheme that has its level."""
    p, s = PORTFOLIO_HISTOGRAM_LEVELS.index(pool), SHARE_FACTORS.index(share_factor)
    return int(p * len(SHARE_FACTORS) + s)


#: The action that makes this scheme ENSURE's pool rule at its default constant (c = 1.06) with
#: OpenWhisk's shares: where a learner starts from when it is warm-started from ENSURE.
ENSURE_ACTION = action_index("c=1.06", 1.0)


def openwhisk_shares(memory_mb: np.ndarray, user_memory_mb: float) -> np.ndarray:
    """OpenWhisk's shares for a container: 1024 split by how many of its memory fit an invoker, >= 2."""
    memory = np.maximum(np.asarray(memory_mb, dtype=float), 1e-9)
    slots = np.maximum(np.floor(user_memory_mb / memory), 1.0)
    return np.maximum(np.floor(SHARES_PER_CORE / slots), 2).astype(np.int64)


#: Actions of the portfolio scheme: row a is (pool level index, share factor index); the first
#: ``N_STAFFING_ACTIONS`` rows are the staffing scheme's.
PORTFOLIO_ACTIONS: np.ndarray = np.array(
    [(p, s) for p in range(len(PORTFOLIO_LEVELS)) for s in range(len(SHARE_FACTORS))], dtype=np.int64)
PORTFOLIO_ACTIONS.setflags(write=False)
N_PORTFOLIO_ACTIONS = len(PORTFOLIO_ACTIONS)
#: Actions of the portfolio scheme with its histogram member: the portfolio's, then the hybrid
#: histogram's level at each share factor.
PORTFOLIO_HISTOGRAM_ACTIONS: np.ndarray = np.array(
    [(p, s) for p in range(len(PORTFOLIO_HISTOGRAM_LEVELS)) for s in range(len(SHARE_FACTORS))], dtype=np.int64)
PORTFOLIO_HISTOGRAM_ACTIONS.setflags(write=False)
N_PORTFOLIO_HISTOGRAM_ACTIONS = len(PORTFOLIO_HISTOGRAM_ACTIONS)


class KpaMembers:
    """The KPA at every target of :data:`KPA_TARGETS` (and, with ``histogram``, the hybrid-histogram
    keep-alive policy after them), each with its own state, deciding every tick.

    Each member observes every snapshot (the KPA's stable and panic windows, the histogram's idle
    times stay current whichever rule a function follows) and sizes from the pool the function
    actually has, as the member would in control of it from that tick on.
    """

    def __init__(self, targets: tuple[float, ...] = KPA_TARGETS, histogram: bool = False) -> None:
        from policies.baselines.hybrid_histogram import HybridHistogramConfig, HybridHistogramPolicy
        from policies.baselines.kpa import KpaConfig, KpaPolicy

        # Only the members' counts are read: no reason per function (most of their time at scale).
        self.members: list = [KpaPolicy(KpaConfig(target_utilisation=t), explain=False) for t in targets]
        if histogram:
            self.members.append(HybridHistogramPolicy(HybridHistogramConfig(), explain=False))
        self._time: float | None = None
        self._counts: np.ndarray | None = None

    def counts(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> np.ndarray:
        """(members, N) containers each member asks for this tick (computed once per snapshot time);
        -1 where a member made no decision."""
        n = len(snapshot.functions)
        if self._time != snapshot.time_s or self._counts is None or self._counts.shape[1] != n:
            rows = []
            for member in self.members:
                d = member.decide(snapshot, mu)
                rows.append(np.where(d.valid, d.containers, UNMANAGED))
            self._counts = np.array(rows, dtype=np.int64).reshape(len(self.members), n)
            self._time = float(snapshot.time_s)
        return self._counts


def scheme_actions(scheme: str) -> np.ndarray:
    """The action table of ``scheme`` (``staffing`` or ``portfolio``)."""
    return PORTFOLIO_ACTIONS if scheme == "portfolio" else STAFFING_ACTIONS


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


def level_pools(snapshot: ClusterSnapshot, load: np.ndarray, levels: tuple[str, ...],
                followed: np.ndarray | None = None) -> np.ndarray:
    """(L, N) containers each pool level of ``levels`` would hold this tick: the platform its current
    pool (what its keep-alive holds), a staffing constant c ``max(1, ⌈R + c·√R⌉)``, a KPA member the
    member's pool (``followed``; the current pool where the member made no decision)."""
    f = snapshot.functions
    current = np.where(np.isfinite(f.containers), np.maximum(f.containers, 0.0), 0.0)
    r = np.where(np.isfinite(load), np.maximum(load, 0.0), 0.0)
    rows = []
    for level in levels:
        if level == "platform":
            rows.append(current)
        elif level.startswith("c="):
            c = float(level[2:])
            rows.append(np.maximum(1.0, np.ceil(r + c * np.sqrt(r) - 1e-9)))
        else:
            if followed is None:
                raise ValueError(f"pool level {level!r} follows a member: pass the members' pools")
            row = len(KPA_TARGETS) if level == HISTOGRAM_LEVEL else KPA_TARGETS.index(float(level[4:]))
            theirs = np.asarray(followed, dtype=float)[row]
            rows.append(np.where(theirs >= 0, theirs, current))
    return np.array(rows).reshape(len(levels), len(f))


def wait_probability(pool: np.ndarray, load: np.ndarray) -> np.ndarray:
    """The Halfin–Whitt approximation of the chance that an arrival finds all ``pool`` containers busy
    at offered load ``load`` (busy containers): 1 / (1 + β·Φ(β)/φ(β)) with β = (pool − R)/√R, 1 where
    β <= 0 (the pool is at or under its load), 0 where nothing arrives."""
    r = np.maximum(np.asarray(load, dtype=float), 0.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        beta = (np.asarray(pool, dtype=float) - r) / np.sqrt(r)
        ratio = ndtr(beta) / (np.exp(-0.5 * beta * beta) / math.sqrt(2.0 * math.pi))
        p = 1.0 / (1.0 + beta * ratio)
    p = np.where(beta > 0, np.where(np.isfinite(p), p, 0.0), 1.0)
    return np.where(r > 0, p, 0.0)


def cost_features(snapshot: ClusterSnapshot, load: np.ndarray, levels: tuple[str, ...],
                  followed: np.ndarray | None = None) -> np.ndarray:
    """(N, 2L) what each pool level of ``levels`` would cost the function this tick, by a queueing
    model, in the operator reward's two currencies (``AgentSettings.cost_features``), all in [0, 1]:

    * ``idle`` per level: the memory its idle containers would hold, max(pool − R, 0) × the function's
      memory, in units of one invoker's user memory (clipped at 1);
    * ``wait`` per level: the Halfin–Whitt chance that an arrival waits (:func:`wait_probability`)
      times the function's share of work w / (w + w̄), w its arrivals in the tick and w̄ the
      population's mean (at least 1): a wait of a busy function costs more of the reward's late term.

    The operator reward is linear in idle memory and in late invocations, but a level's idle memory is
    a product of its pool and the function's memory, and its late work a non-linear function of pool
    and load: no linear function of the other features gives either. With these, the linear critic
    can price every level in every state from the first update and learn the corrections.
    """
    f = snapshot.functions
    n = len(f)
    r = np.where(np.isfinite(load), np.maximum(load, 0.0), 0.0)
    pools = level_pools(snapshot, r, levels, followed)
    memories = snapshot.invokers.memory_mb[snapshot.invokers.valid & (snapshot.invokers.memory_mb > 0)]
    user_memory = float(np.median(memories)) if memories.size else 2048.0
    memory = np.where(np.isfinite(f.memory_mb), np.maximum(f.memory_mb, 0.0), 0.0)
    idle = np.clip(np.maximum(pools - r, 0.0) * memory / user_memory, 0.0, 1.0)
    arrivals = np.where(np.isfinite(f.arrivals), np.maximum(f.arrivals, 0.0), 0.0)
    mean_work = max(1.0, float(arrivals.mean())) if n else 1.0
    wait = wait_probability(pools, r) * (arrivals / (arrivals + mean_work))
    return np.hstack([idle.T, wait.T]).reshape(n, 2 * len(levels))


def staffing_decisions(snapshot: ClusterSnapshot, actions: np.ndarray, usable: np.ndarray, load: np.ndarray,
                       settings: StaffingSettings, label: str, idle_load: float = 1e-3,
                       followed: np.ndarray | None = None) -> Decisions:
    """Targets for every function from its action and its offered load ``load`` (busy containers).

    ``followed``: the portfolio scheme's (members, N) pools of its members (:meth:`KpaMembers.counts`);
    with it the actions are the portfolio's (with the histogram member's when it has that row), without
    it the staffing scheme's. A function that follows
    a member gets the member's pool (0 where the KPA scales it to zero; the platform where the member
    made no decision), whatever its load: the KPA scales an idle function to zero itself. Any other function
    whose load is under ``idle_load`` busy containers goes to the platform whatever its action.
    ``Decisions.action`` is the action where it was applied and -1 where no transition forms: for a
    function of unknown work size, and under the staffing scheme for an idle one (its action changes
    nothing there; under the portfolio it chooses between the platform's keep-alive and a member's
    scale to zero).
    """
    f = snapshot.functions
    n = len(f)
    actions = np.asarray(actions, dtype=np.int64)
    if actions.shape != (n,) or np.shape(usable) != (n,) or np.shape(load) != (n,):
        raise ValueError(f"actions, usable and load must all have shape ({n},)")
    n_members = 0 if followed is None else np.shape(followed)[0]
    table = {0: STAFFING_ACTIONS, len(KPA_TARGETS): PORTFOLIO_ACTIONS,
             len(KPA_TARGETS) + 1: PORTFOLIO_HISTOGRAM_ACTIONS}.get(n_members)
    if followed is not None and (table is None or np.shape(followed) != (n_members, n)):
        raise ValueError(f"followed must have shape ({len(KPA_TARGETS)}, {n}) or ({len(KPA_TARGETS) + 1}, {n})")
    safe = np.where(usable, actions, ENSURE_ACTION)
    if np.any((safe < 0) | (safe >= len(table))):
        raise ValueError(f"staffing actions must be in [0, {len(table)})")
    load = np.where(np.isfinite(load), np.maximum(load, 0.0), 0.0)
    sized = np.isfinite(f.mean_exec_s) | np.isfinite(f.recent_exec_s) | ~(np.nan_to_num(f.arrivals, nan=1.0) > 0)
    idle = (load < idle_load) | ~sized
    pool, share = table[safe, 0], table[safe, 1]
    n_staffing = len(POOL_LEVELS)
    levels = np.array([math.nan, *STAFFING_LEVELS, *([math.nan] * max(n_members, len(KPA_TARGETS)))])[pool]
    with np.errstate(invalid="ignore"):
        counts = np.maximum(1, np.ceil(load + np.nan_to_num(levels) * np.sqrt(load) - 1e-9)).astype(np.int64)
    member = pool >= n_staffing
    unset = np.zeros(n, dtype=bool)
    if followed is not None and member.any():
        rows = np.where(member, pool - n_staffing, 0)
        theirs = np.asarray(followed, dtype=np.int64)[rows, np.arange(n)]
        unset = member & (theirs == UNMANAGED)
        counts = np.where(member, np.maximum(theirs, 0), counts)  # the KPA's own scale to zero stands
    # A function that follows a KPA member gets the member's pool whatever its load: the KPA scales an
    # idle function to zero itself, where the platform would keep its containers for its keep-alive.
    following = member & sized if followed is not None else np.zeros(n, dtype=bool)
    to_platform = usable & ((idle & ~following) | (pool == 0) | unset)
    managed = usable & ~to_platform
    # Under the portfolio an idle function's choice matters (the member's scale to zero, or the
    # platform's keep-alive), so every function of known work size forms a transition.
    decided = usable & (sized if followed is not None else ~idle)
    memories = snapshot.invokers.memory_mb[snapshot.invokers.valid & (snapshot.invokers.memory_mb > 0)]
    user_memory = float(np.median(memories)) if memories.size else 2048.0
    shares = np.clip(np.round(openwhisk_shares(f.memory_mb, user_memory) * np.array(SHARE_FACTORS)[share]),
                     settings.share_floor, settings.share_ceiling).astype(np.int64)
    factors = np.array(SHARE_FACTORS)[share]
    columns = (np.asarray(usable, dtype=bool).copy(), idle, sized, load, pool, levels, counts, factors, shares, unset,
               following)

    def reason(i: int) -> str:
        ok, rest, sized_i, r, p_i, c_i, k_i, x_i, s_i, none_i, follow_i = (column[i].item() for column in columns)
        if not ok:
            return "no data"
        if rest and not follow_i:
            return f"{label}: {f'idle (R={r:.3g})' if sized_i else 'work size unknown'}, containers left to the platform"
        if p_i == 0:
            return f"{label}: R={r:.2f}, containers left to the platform (chosen), shares {s_i}"
        if p_i >= n_staffing:
            if none_i:
                return (f"{label}: R={r:.2f}, follows {PORTFOLIO_HISTOGRAM_LEVELS[p_i]}, which made no decision: "
                        "containers left to the platform")
            return (f"{label}: R={r:.2f}, follows {PORTFOLIO_HISTOGRAM_LEVELS[p_i]} -> {k_i} containers, shares "
                    f"x{x_i:g} = {s_i}")
        return f"{label}: R={r:.2f}, c={c_i:g} -> {k_i} containers, shares x{x_i:g} = {s_i}"

    return Decisions(
        containers=np.where(managed, counts, UNMANAGED),
        cpu_shares=np.where(managed, shares, KEEP_SHARES),
        valid=np.asarray(usable, dtype=bool).copy(),
        reasons=LazyReasons(n, reason),
        action=np.where(decided, safe, -1),
    )


__all__ = [
    "ENSURE_ACTION",
    "HISTOGRAM_LEVEL",
    "KPA_TARGETS",
    "N_PORTFOLIO_ACTIONS",
    "N_PORTFOLIO_HISTOGRAM_ACTIONS",
    "N_STAFFING_ACTIONS",
    "POOL_LEVELS",
    "PORTFOLIO_ACTIONS",
    "PORTFOLIO_HISTOGRAM_ACTIONS",
    "PORTFOLIO_HISTOGRAM_LEVELS",
    "PORTFOLIO_LEVELS",
    "SHARE_FACTORS",
    "STAFFING_ACTIONS",
    "STAFFING_FEATURES",
    "STAFFING_LEVELS",
    "KpaMembers",
    "StaffingSettings",
    "action_index",
    "cost_features",
    "level_pools",
    "openwhisk_shares",
    "scheme_actions",
    "staffing_decisions",
    "staffing_features",
    "wait_probability",
]
