"""One simulated twin of the cluster per pool level: what each level would be doing for each function.

A pool level that suits one function over an hour can be wrong for the next, and a function's features
say which only through what a fit learned on other functions (docs/evaluation.md: that did not carry to
functions it never saw). The portfolio's plays on the training window say it directly for the
functions played, and the choice stays right an hour later: a function's level chosen on the plays of
the hour before the judged one is nearly as good as the hindsight choice
(``benchmarks/portfolio_oracle.py --choose-on window-before``). Twins give the daemon those plays as it
runs, for every function it serves, new or not.

Each twin is the simulated cluster (the functions' profiles, the cluster's shape, the guard) played by
the portfolio at one level for every function, fed each tick the arrivals each function had in the
tick just observed, spread uniformly over the tick (``HeuristicTwin``'s construction, one per level).
Per function and level the twin's SLO violations and memory GB-s per tick are averaged with a time
constant of one hour (``TAU_S``), and priced as the fitted warm start prices a level for the reward's α
(``controller.warm_fit``: violations + λ · memory GB-s, λ from α, the population's invocations per
function and tick, an invoker's memory and the tick). The state gets one entry per level, its
*regret* (c_l − c_min) / (c_l + c_min), in [0, 1): 0 for the level the twins price lowest, near 1 for
one that costs many times more; 0 for every level before the function's first arrival. The entry
means the same for every function, so a policy that learns to prefer levels of low regret on one
sample of functions does so on any other.

The learner's cold-start rule (``AgentSettings.fit_cold_starts``, the rule its fitted warm start labels
by; ``controller.prices``) applies to the twins' averages: under ``priced`` a level's cost counts its
cold starts as violations; under ``ensure`` a level that has averaged more cold starts for a function
than ENSURE's level (c = 1.06) is not a candidate: its regret is 1, and the least regret is taken among
the others (ENSURE's level is always one).

The twins know the functions' profiles (memory, execution-time distribution, cold-start time), as the
simulator does: they exist where the cluster is simulated (the bench, ``mfrm train``, ``mfrm
simulate``). Their own draws are seeded apart from the cluster's. A twin ignores what a *mixture* of
levels does to placement and contention (each twin runs one level for everyone).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from controller.prices import COLD_START_RULES, ENSURE_LEVEL, cold_start_allowed, level_costs, level_price

#: Time constant of the twins' averages, s.
TAU_S = 3600.0
#: Offset of the twins' seeds from the run's, so that they draw apart from the cluster they shadow.
SEED_OFFSET = 7919


class LevelTwins:
    """The twins of one run and each function's running outcome in each (``features`` per snapshot).

    The arrivals a run sees do not depend on its policy, so runs of the same window, seeds and cluster
    (a level's plays, the same training window at another α) feed the twins the same ticks. What the
    twins came to after each tick is kept in a memo of this process, keyed by everything they depend
    on and the arrivals so far; a later run that feeds the same ticks reads it instead of simulating
    again, and simulates (catching up from its first tick) only where its arrivals differ. The arrival
    times inside a tick are drawn from a generator seeded by the tick's index, so a catch-up draws what
    a run without the memo would have.
    """

    def __init__(self, settings: Any, workload: Any, slo_s: np.ndarray, seeds: Any, name: str,
                 levels: Sequence[str], profiles: Sequence[Any] | None = None, cold_starts: str = "free") -> None:
        self.levels = tuple(levels)
        if cold_starts not in COLD_START_RULES:
            raise ValueError(f"LevelTwins: cold-start rule {cold_starts!r} must be one of {', '.join(COLD_START_RULES)}")
        if cold_starts == "ensure" and ENSURE_LEVEL not in self.levels:
            raise ValueError(f"LevelTwins: the ensure cold-start rule needs the level {ENSURE_LEVEL} among "
                             f"{', '.join(self.levels)}")
        self.cold_start_rule = cold_starts
        self.names = tuple(workload.names)
        self.settings = settings
        self.profiles = list(profiles) if profiles is not None else [fn.profile for fn in workload.functions]
        if len(self.profiles) != len(self.names):
            raise ValueError(f"LevelTwins: {len(self.profiles)} profiles for {len(self.names)} functions")
        self._slo_s, self._seeds, self._name = np.asarray(slo_s, dtype=float), seeds, name
        self._key = _memo_key(settings, name, self.names, self.profiles, self._slo_s, seeds, self.levels)
        self._chain = self._key
        self._ticks: list[tuple[float, float, np.ndarray]] = []
        """Every tick fed so far: (end time, length, arrival counts)."""
        self._loops: list[Any] | None = None
        self._sim = _State.empty(len(self.levels), len(self.names))
        """The state the simulated loops have reached (after ``_sim_ticks`` ticks)."""
        self._sim_ticks = 0
        self.state = _State.empty(len(self.levels), len(self.names))
        """The running outcome after the last tick fed."""
        self.time_s: float | None = None

    @property
    def arrivals(self) -> np.ndarray:
        """Average arrivals per tick, per function (every twin gets the same)."""
        return self.state.arrivals

    @property
    def violations(self) -> np.ndarray:
        """Average SLO violations per tick, per level and function."""
        return self.state.violations

    @property
    def memory_gb_s(self) -> np.ndarray:
        """Average memory held per tick, GB-s, per level and function."""
        return self.state.memory_gb_s

    @property
    def cold_starts(self) -> np.ndarray:
        """Average cold starts per tick, per level and function."""
        return self.state.cold_starts

    @property
    def seen(self) -> np.ndarray:
        """Functions that have had an arrival."""
        return self.state.seen

    def advance(self, snapshot: Any) -> None:
        """Feed every twin the arrivals of the tick ``snapshot`` ends and fold in what it did with them
        (once per snapshot time; a snapshot of other functions is refused)."""
        f = snapshot.functions
        now = float(snapshot.time_s)
        if self.time_s is not None and now <= self.time_s:
            return
        if tuple(f.names) != self.names:
            raise ValueError(f"LevelTwins: the snapshot's {len(f.names)} functions are not the "
                             f"{len(self.names)} the twins were built for")
        counts = np.maximum(np.rint(np.nan_to_num(np.asarray(f.arrivals, dtype=float))), 0).astype(np.int64)
        tick_s = float(snapshot.tick_s)
        self._ticks.append((now, tick_s, counts))
        self._chain = hashlib.sha256(f"{self._chain}|{now!r}|{tick_s!r}|".encode() + counts.tobytes()).hexdigest()
        memo = _MEMO.setdefault(self._key, {})
        _MEMO.move_to_end(self._key)
        while len(_MEMO) > MEMO_RUNS:
            _forget_oldest()
        kept = memo.get(self._chain)
        if kept is None:
            self._simulate(len(self._ticks))
            kept = self._sim.copy()
            _remember(self._key, self._chain, kept)
        self.state = kept.copy()
        self.time_s = now

    def _simulate(self, ticks: int) -> None:
        """Run the twins through the first ``ticks`` ticks fed (from where they are)."""
        if self._loops is None:
            self._loops = self._build_loops()
        w_cache: dict[float, float] = {}
        for index in range(self._sim_ticks, ticks):
            now, tick_s, counts = self._ticks[index]
            start = now - tick_s if index == 0 else self._ticks[index - 1][0]
            rng = np.random.default_rng([self._seeds.arrivals + SEED_OFFSET, index])
            times = rng.uniform(start, now, int(counts.sum()))
            fn = np.repeat(np.arange(len(counts)), counts)
            order = np.argsort(times, kind="stable")
            w = w_cache.setdefault(tick_s, 1.0 - math.exp(-tick_s / TAU_S))
            sim = self._sim
            sim.arrivals += w * (counts - sim.arrivals)
            sim.seen |= counts > 0
            for j, (arrivals, loop) in enumerate(self._loops):
                arrivals.put(times[order], fn[order])
                out = loop.step(now).snapshot.functions
                held = np.nan_to_num(np.asarray(out.containers, float) * np.asarray(out.memory_mb, float)) / 1024.0
                sim.violations[j] += w * (np.nan_to_num(np.asarray(out.slo_violations, float)) - sim.violations[j])
                sim.memory_gb_s[j] += w * (held * tick_s - sim.memory_gb_s[j])
                sim.cold_starts[j] += w * (np.nan_to_num(np.asarray(out.cold_starts, float)) - sim.cold_starts[j])
        self._sim_ticks = ticks

    def _build_loops(self) -> list[tuple[Any, Any]]:
        from controller.assemble import InjectedArrivals, PolicySpec, build_loop, build_policy, cluster_config
        from controller.backends.sim import SimBackend
        from policies.staffing import action_index
        from simulator import Cluster

        player_settings = _player_settings(self.settings, self._name)
        loops = []
        for level in self.levels:
            cluster = Cluster(cluster_config(self.settings), self.profiles, self._slo_s,
                              seed=self._seeds.cluster + SEED_OFFSET)
            arrivals = InjectedArrivals()
            backend = SimBackend(cluster, arrivals, self.names, self.settings.loop.tick_s, keep_records=False)
            player = build_policy(player_settings, PolicySpec(self._name, frozen=True, greedy=True))
            player.learner.prefer(action_index(level, 1.0), 50.0, player._bias_entry())
            loops.append((arrivals, build_loop(player_settings, backend, player)))
        return loops

    def price(self) -> float:
        """λ: the reward's price of a GB-s in violations, as the fitted warm start prices the levels."""
        return level_price(self.settings, float(self.arrivals.mean()) if self.arrivals.size else 0.0)

    def costs(self) -> np.ndarray:
        """(levels, N) each level's running cost per tick for each function at :meth:`price`; infinite for
        a level the cold-start rule excludes."""
        cost = level_costs(self.violations, self.memory_gb_s, self.cold_starts, self.price(), self.cold_start_rule)
        return np.where(cold_start_allowed(self.cold_starts, self.levels, self.cold_start_rule), cost, np.inf)

    def features(self, snapshot: Any) -> np.ndarray:
        """(N, levels) each level's regret for each function, advancing the twins by ``snapshot`` first."""
        self.advance(snapshot)
        return regrets(self.costs(), self.seen)


@dataclass
class _State:
    arrivals: np.ndarray
    violations: np.ndarray
    memory_gb_s: np.ndarray
    cold_starts: np.ndarray
    seen: np.ndarray

    @classmethod
    def empty(cls, levels: int, n: int) -> _State:
        return cls(np.zeros(n), np.zeros((levels, n)), np.zeros((levels, n)), np.zeros((levels, n)),
                   np.zeros(n, dtype=bool))

    @property
    def nbytes(self) -> int:
        return (self.arrivals.nbytes + self.violations.nbytes + self.memory_gb_s.nbytes + self.cold_starts.nbytes
                + self.seen.nbytes)

    def copy(self) -> _State:
        return _State(self.arrivals.copy(), self.violations.copy(), self.memory_gb_s.copy(), self.cold_starts.copy(),
                      self.seen.copy())


#: Runs (distinct keys) whose twins' states the memo keeps, the most recently used.
MEMO_RUNS = 6
#: Bytes of state the memo keeps at most, over every run: past it the older runs are forgotten, and a run
#: that alone would pass it keeps its first ticks only (a later run of the same arrivals simulates the
#: rest again, as a fresh run would).
MEMO_BYTES = 1 << 29
_MEMO: OrderedDict[str, dict[str, _State]] = OrderedDict()
_MEMO_SIZE: dict[str, int] = {}


def _forget_oldest() -> None:
    key, _ = _MEMO.popitem(last=False)
    _MEMO_SIZE.pop(key, None)


def _remember(key: str, chain: str, state: _State) -> None:
    """Keep ``state`` under ``key`` (the run most recently used) and ``chain``, forgetting older runs to
    make room; not at all if it would not fit with this run's own states alone."""
    need = state.nbytes
    while sum(_MEMO_SIZE.values()) + need > MEMO_BYTES and len(_MEMO) > 1 and next(iter(_MEMO)) != key:
        _forget_oldest()
    if sum(_MEMO_SIZE.values()) + need <= MEMO_BYTES:
        _MEMO[key][chain] = state
        _MEMO_SIZE[key] = _MEMO_SIZE.get(key, 0) + need


def clear_memo() -> None:
    """Forget every run's twins (a later run simulates its own)."""
    _MEMO.clear()
    _MEMO_SIZE.clear()


def memo_bytes() -> int:
    """Bytes of state the memo holds now."""
    return sum(_MEMO_SIZE.values())


def _memo_key(settings: Any, name: str, names: tuple[str, ...], profiles: list[Any], slo_s: np.ndarray,
              seeds: Any, levels: tuple[str, ...]) -> str:
    """Everything the twins' outcome depends on but the arrivals: the run's settings (but the reward's α
    and the learner's cold-start rule, which only price the outcome, and the output options), the learner, the functions, their profiles
    and SLOs, the seeds and the levels."""
    logged = settings.logged()
    logged.pop("output", None)
    logged["reward"] = {k: v for k, v in logged.get("reward", {}).items() if k != "alpha"}
    mine = logged.get("policy", {}).get("params", {}).get(name)
    if isinstance(mine, dict):
        mine.pop("fit_cold_starts", None)
    text = json.dumps([logged, name, names, [repr(p) for p in profiles], repr(seeds), levels], sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode() + slo_s.tobytes()).hexdigest()


def regrets(costs: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(N, levels): (c_l − c_min) / (c_l + c_min) per function (1 for an infinite cost, the least taken
    over the finite ones), 0 where all costs are 0 or the function has not been seen."""
    finite = np.isfinite(costs)
    best = np.where(finite, costs, np.inf).min(axis=0)
    best = np.where(np.isfinite(best), best, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(costs + best > 0, (costs - best) / (costs + best), 0.0)
    out = np.where(finite, out, 1.0)
    return np.where(seen[None, :], np.clip(out, 0.0, 1.0), 0.0).T


def _player_settings(settings: Any, name: str) -> Any:
    """``settings`` for a twin's player: it acts at one level whatever its state, so the learner's
    optional features are off (no twins of its own, no history or records to keep)."""
    params = {key: dict(value) for key, value in settings.policy.params.items()}
    mine = params.setdefault(name, {})
    for feature in ("twin_features", "history_features", "record_features", "cost_features"):
        mine[feature] = False
    if mine.get("fit_target") == "twins":
        mine["fit_target"] = "label"  # a player is never fitted; without twins it cannot name this target
    if mine.get("warm_start") == "twins":
        mine["warm_start"] = "none"  # a player's actions are set for it; without twins it cannot start as them
    return settings.model_copy(update={"policy": settings.policy.model_copy(update={"params": params})})


def wants_twins(policy: Any) -> Any:
    """The portfolio agent inside ``policy`` (through a recorder's ``inner`` or a fallback's ``learner``)
    whose ``twin_features`` is on, or None."""
    seen = set()
    while policy is not None and id(policy) not in seen:
        seen.add(id(policy))
        agent = getattr(policy, "__dict__", {}).get("agent")
        if agent is not None and getattr(agent, "twin_features", False):
            return policy
        inner = policy.__dict__.get("inner") if hasattr(policy, "__dict__") else None
        policy = inner if inner is not None else getattr(policy, "__dict__", {}).get("learner")
    return None


def attach_level_twins(policy: Any, settings: Any, workload: Any, slo_s: np.ndarray, seeds: Any) -> None:
    """Give the agent inside ``policy`` that asks for them (``twin_features``) the twins of this simulated
    cluster; any other policy is left as it is."""
    agent = wants_twins(policy)
    if agent is None:
        return
    agent.level_twins = LevelTwins(settings, workload, slo_s, seeds, agent.name, agent.agent.levels,
                                   cold_starts=agent.agent.fit_cold_starts)


__all__ = ["COLD_START_RULES", "ENSURE_LEVEL", "MEMO_BYTES", "MEMO_RUNS", "SEED_OFFSET", "TAU_S", "LevelTwins", "attach_level_twins",
           "clear_memo", "cold_start_allowed", "memo_bytes", "regrets", "wants_twins"]
