"""A fitted warm start: the shared policy fitted to each function's best pool level on the training window.

The staffing and portfolio schemes give every function a choice of pool level (the platform, an
ENSURE staffing constant, a KPA member). Which level serves a function best depends on the function —
its load, its burstiness, what a container of it costs, its SLO's slack — and learning that from the
reward alone is slow: the per-tick difference between levels is small against the reward's noise.
But on the simulated cluster every level can simply be *played*: training replays the training
window once per level with every function at that level, reads what each function's violations and
memory came to, and labels the function with the level its own reward prices lowest. The shared
policy is then fitted to those labels in every state the functions were in (``policies.imitation``):
a policy over the functions' *features*, not their names, so it applies to functions it never saw.
The natural actor-critic learns from that θ₀ as it does from any other.

The price: the operator reward's cost per tick is (1 − α)·late/V + α·idle·memory/M (late invocations
over the population's average work V per function and tick; idle container-MB over one invoker's
user memory M). Over a window the late count is the violations (plus what is left queued) and the
idle MB-ticks are memory GB-s × 1024 / tick_s (less the busy part, the same at every level), so a
function's cost at a level is proportional to

    violations + λ · memory GB-s,   λ = α / (1 − α) · V · 1024 / (M · tick_s),

with V the training window's invocations per function and tick. Each function takes the level that
minimises it (with ``fit_cold_starts: ensure``, among the levels that had no more cold starts for it
than ENSURE's c = 1.06: the price sees no cold start that does not make an invocation late, and the
levels that scale to zero win on memory with them); the share factor of every label is 1 (OpenWhisk's shares), the CPU level the learner
then adjusts. With ``fit_target: cost`` the policy is fitted instead to every level's cost for each
function, as its regret against the cheapest (``level_regrets``): the policy of least expected cost, which
a function whose levels nearly tie hardly moves. With ``fit_target: twins`` (and the level twins'
entries in the state, ``controller.level_twins``) each state is labelled with the level its twins
price lowest in that state: the fit imitates the rule "follow the twins" in the states it was played in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.assemble import PolicySpec, RunSeeds, build_policy
from controller.prices import COLD_START_RULES, ENSURE_LEVEL, cold_start_allowed, level_costs, level_price
from controller.report import function_metrics
from controller.runner import run_policy
from controller.settings import Settings
from policies.agent import AgentSettings
from policies.fallback import FallbackSettings
from policies.serverless_features import ActionSettings, FeatureSettings
from policies.staffing import StaffingSettings, action_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmFit:
    """What a fitted warm start chose and how well the policy follows it."""

    price: float
    """λ, violations per GB-s of memory, from the reward's α."""
    labels: dict[str, int]
    """Functions labelled with each pool level."""
    states: int
    """Labelled states the policy was fitted to (before any subsample)."""
    accuracy: float
    """Share of the fitted states whose most probable action is the label."""
    cold_starts: str = "free"
    """The labels' cold-start rule (``AgentSettings.fit_cold_starts``)."""
    target: str = "label"
    """What the policy was fitted to (``AgentSettings.fit_target``): the labels or every level's regret."""

    def record(self) -> dict[str, Any]:
        """JSON-able summary (the training's ``run.json``)."""
        return {"price_violations_per_gb_s": self.price, "labels": dict(self.labels), "states": self.states,
                "accuracy": self.accuracy, "cold_starts": self.cold_starts, "target": self.target}


class _Recorder:
    """A frozen, greedy copy of the learner playing one pool level, keeping every state it decided in."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.states: list[tuple[np.ndarray, np.ndarray]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def decide(self, snapshot: Any, mu: np.ndarray) -> Any:
        x, usable = self.inner.base_state(snapshot, mu)
        decisions = self.inner.decide(snapshot, mu)
        kept = usable & (np.asarray(decisions.action) >= 0)
        self.states.append((x[kept].copy(), np.flatnonzero(kept)))
        return decisions


@dataclass(frozen=True)
class LevelPlays:
    """Every pool level played over a training window: what each function's run came to at each level,
    and the states the functions were in."""

    levels: tuple[str, ...]
    """The pool levels, in play order."""
    violations: np.ndarray
    """(L, F) SLO violations (unfinished and dropped counted) per level and function."""
    memory: np.ndarray
    """(L, F) memory held, GB-s, per level and function."""
    cold_starts: np.ndarray
    """(L, F) cold starts per level and function (count)."""
    invocations: np.ndarray
    """(F,) invocations per function in the window (the same at every level)."""
    ticks: int
    """Decisions per play (ticks of the window)."""
    x: np.ndarray
    """(R, d) every state a function was decided for, over all plays."""
    function: np.ndarray
    """(R,) the function of each state."""

    def save(self, path: Path) -> None:
        """Write to ``path`` (an ``.npz``) atomically: a file under that name is always complete."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.partial-{os.getpid()}-{time.time_ns()}.npz")
        np.savez(partial, levels=np.array(self.levels), violations=self.violations, memory=self.memory,
                 cold_starts=self.cold_starts, invocations=self.invocations, ticks=np.array(self.ticks), x=self.x,
                 function=self.function)
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> LevelPlays | None:
        """What :meth:`save` wrote; None for a file that lacks a field (kept by an earlier version)."""
        with np.load(path) as data:
            if "cold_starts" not in data.files:
                return None
            return cls(levels=tuple(str(v) for v in data["levels"]), violations=data["violations"],
                       memory=data["memory"], cold_starts=data["cold_starts"], invocations=data["invocations"],
                       ticks=int(data["ticks"]), x=data["x"], function=data["function"])


#: How a fitted warm start treats cold starts (``AgentSettings.fit_cold_starts``, ``controller.prices``):
#: ``free`` (the labels price violations and memory only), ``ensure`` (a function's label is chosen
#: among the levels that had no more cold starts for it than ENSURE's level, c = 1.06, on the training
#: window) or ``priced`` (a cold start costs as much as a violation).
FIT_COLD_STARTS: tuple[str, ...] = COLD_START_RULES


def cheapest_levels(plays: LevelPlays, price: float, cold_starts: str = "free") -> np.ndarray:
    """(F,) index into ``plays.levels`` of each function's cheapest level: violations + ``price`` x memory
    (memory alone at an infinite price), among the levels ``cold_starts`` allows (every level under
    ``free``; under ``ensure`` those with no more cold starts than :data:`ENSURE_LEVEL` for that function,
    which always includes it)."""
    if cold_starts not in FIT_COLD_STARTS:
        raise ValueError(f"fit_cold_starts={cold_starts!r}: must be one of {', '.join(FIT_COLD_STARTS)}")
    cost = level_costs(plays.violations, plays.memory, plays.cold_starts, price, cold_starts)
    cost = np.where(cold_start_allowed(plays.cold_starts, plays.levels, cold_starts), cost, np.inf)
    return np.argmin(cost, axis=0)


def level_regrets(plays: LevelPlays, price: float, cold_starts: str = "free") -> np.ndarray:
    """(F, L) each level's cost (as :func:`cheapest_levels` prices it) for each function less that of its
    cheapest allowed level, over the mean such regret of every allowed (function, level) — so a fit sees
    costs of order 1 whatever the window's size. A level ``cold_starts`` excludes costs the function more
    than any level it allows: that level's largest regret plus one (the mean). Not more: a bar as high as
    the window's worst regret makes the one level every function allows (ENSURE's) the fit's choice for
    all of them, since a function whose label is missed pays that bar."""
    cost = level_costs(plays.violations, plays.memory, plays.cold_starts, price, cold_starts)
    allowed = cold_start_allowed(plays.cold_starts, plays.levels, cold_starts)
    best = np.where(allowed, cost, np.inf).min(axis=0)
    regret = np.where(allowed, cost - best[None, :], 0.0)
    scale = float(regret[allowed].mean()) if allowed.any() else 0.0
    regret = regret / scale if scale > 0 else regret
    worst = regret.max(axis=0, keepdims=True)
    return np.where(allowed, regret, worst + 1.0).T


def twin_labels(x: np.ndarray, levels: int, window_label: np.ndarray) -> np.ndarray:
    """(R,) index of the level each state's twin entries (the last ``levels`` columns of ``x``, each
    level's regret) price lowest: ``window_label`` (the function's label over the window) where it is
    among the lowest, else the first lowest."""
    regret = x[:, -levels:]
    lowest = regret <= regret.min(axis=1, keepdims=True) + 1e-12
    rows = np.arange(len(x))
    return np.where(lowest[rows, window_label], window_label, np.argmax(lowest, axis=1))


def _learner_only_params() -> frozenset[str]:
    """The parameters that only the learners' update reads: their hyperparameter and network settings
    (never a feature, action, agent, staffing or fallback setting, which every player reads)."""
    from policies.agent import field_names
    from policies.kl_step import KLStepSettings
    from policies.nac import NACHyperparameters
    from policies.nac_nn import NetworkSettings

    shared = set()
    for cls in (FeatureSettings, ActionSettings, AgentSettings, StaffingSettings, FallbackSettings):
        shared |= field_names(cls)
    return (field_names(NACHyperparameters) | field_names(KLStepSettings) | field_names(NetworkSettings)
            | {"mode"}) - shared


def plays_key(settings: Settings, name: str, seeds: RunSeeds) -> str:
    """A digest of everything the plays depend on: the run's settings but the reward's α (which only
    prices them, unless the learner's ``twin_features`` put α's price into the states), the learner's cold-start rule (which only picks among them), its hyperparameters and
    the output options, and the seeds. Not the learner: a frozen, greedy player of one
    level acts and observes alike whichever learner it is built as (their features are in the settings),
    so NAC-Linear and NAC-NN trained on the same window share the plays. ``name`` is checked, not keyed:
    it must be a learner of a staffed scheme."""
    if not name:
        raise ValueError("plays_key needs the learner's name")
    logged = settings.logged()
    params_of_name = logged.get("policy", {}).get("params", {}).get(name)
    if not (isinstance(params_of_name, dict) and params_of_name.get("twin_features")):
        # (With twin features α does reach the plays: the states they record hold the levels' regrets at α's price.)
        logged["reward"] = {k: v for k, v in logged["reward"].items() if k != "alpha"}
    # The cold-start rule and the fit's target only pick among the plays' levels, as α only prices them; the learner's own
    # hyperparameters (its step, critic, network) never reach a frozen, greedy player of one level, and the two-block
    # state only splits what the plays record (one function's features) after them.
    # Only the player's own parameters reach it, so they are keyed under one name for every learner, and
    # the other learners' are dropped: NAC-Linear and NAC-NN given the same scheme and features share plays.
    from policies.registry import learned_policies

    all_params = logged.get("policy", {}).get("params", {})
    params = all_params.get(name)
    if isinstance(params, dict):
        for key in ("fit_cold_starts", "fit_target", "novel_block", "novel_fit_l2", *_learner_only_params()):
            params.pop(key, None)
    if isinstance(all_params, dict):
        for learner in learned_policies():
            all_params.pop(learner, None)
        all_params["(the learner)"] = params
    logged.pop("output", None)
    parts = {"settings": logged, "seeds": repr(seeds)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def play_levels(settings: Settings, name: str, policy: Any, workload: Any, slo_s: np.ndarray, seeds: RunSeeds,
                on_level: Callable[[str], None] | None = None) -> LevelPlays:
    """Play every pool level of ``policy``'s scheme over the window of ``settings`` with ``seeds``: each
    function at that level, through a frozen, greedy copy of the learner; ``on_level`` hears each level
    before it is played."""
    levels = policy.agent.levels
    violations, memory, cold, xs, functions = [], [], [], [], []
    invocations = np.zeros(0)
    ticks = 1
    for level in levels:
        if on_level is not None:
            on_level(level)
        player = build_policy(settings, PolicySpec(name, frozen=True, greedy=True))
        player.learner.prefer(action_index(level, 1.0), 50.0, player._bias_entry())
        recorder = _Recorder(player)
        rows = function_metrics(run_policy(settings, workload, slo_s, PolicySpec(name, frozen=True, greedy=True),
                                           policy=recorder, seeds=seeds, save_learner=False))
        invocations = np.array([r["invocations"] for r in rows], dtype=float)
        ticks = max(len(recorder.states), 1)
        violations.append(np.nan_to_num(np.array([r["slo_violation_rate"] for r in rows], dtype=float) * invocations))
        memory.append(np.array([r["memory_gb_s"] for r in rows], dtype=float))
        cold.append(np.nan_to_num(np.array([r["cold_start_rate"] * r["completed"] for r in rows], dtype=float)))
        for x, rows_ in recorder.states:
            xs.append(x)
            functions.append(rows_)
    d = policy.agent.base_state_dim(policy.features)
    return LevelPlays(levels=tuple(levels), violations=np.array(violations), memory=np.array(memory),
                      cold_starts=np.array(cold), invocations=invocations, ticks=ticks,
                      x=np.vstack(xs) if xs else np.zeros((0, d)),
                      function=np.concatenate(functions) if functions else np.zeros(0, dtype=np.int64))


def fit_warm_start(settings: Settings, name: str, policy: Any, workload: Any, slo_s: np.ndarray, seeds: RunSeeds,
                   on_level: Callable[[str], None] | None = None, cache: Path | None = None) -> WarmFit:
    """Play every pool level of ``policy``'s scheme on the training window (``seeds``: the first
    episode's), label each function with its cheapest level at the reward's price, fit ``policy`` to
    the labels (``SharedPolicyAgent.imitate``). ``on_level`` hears each level before it is played.
    ``cache``: a folder where the plays are kept under :func:`plays_key` and reused — learners trained
    on the same window at other α (or again) then skip them."""
    if settings.reward.kind != "operator":
        raise ValueError("warm_start=fitted prices levels with the operator reward (reward.kind: operator); "
                         f"this run's reward.kind is {settings.reward.kind!r}")
    path = cache / f"plays-{plays_key(settings, name, seeds)}.npz" if cache is not None else None
    plays = None
    if path is not None and path.is_file():
        plays = LevelPlays.load(path)
        if plays is not None and plays.levels != tuple(policy.agent.levels):
            plays = None
    if plays is None:
        plays = play_levels(settings, name, policy, workload, slo_s, seeds, on_level)
        if path is not None:
            plays.save(path)
    n_functions = len(plays.invocations)
    price = level_price(settings, float(plays.invocations.sum()) / max(n_functions, 1) / plays.ticks)
    best = cheapest_levels(plays, price, policy.agent.fit_cold_starts)
    labels_by_function = np.array([action_index(plays.levels[b], 1.0) for b in best], dtype=np.int64)
    if not len(plays.x):
        raise ValueError("warm_start=fitted: no function was decided for in the training window (no state to fit)")
    if policy.agent.novel_block:
        names = tuple(workload.names)
        policy.know([names[i] for i in np.unique(plays.function) if i < len(names)])
    if policy.agent.fit_target == "cost":
        regrets = level_regrets(plays, price, policy.agent.fit_cold_starts)
        per_action = np.full((n_functions, policy.agent.n_actions), float(regrets.max(initial=0.0)) + 1.0)
        for j, level in enumerate(plays.levels):
            per_action[:, action_index(level, 1.0)] = regrets[:, j]
        accuracy = policy.imitate_costs(plays.x, per_action[plays.function])
    elif policy.agent.fit_target == "twins":
        chosen = twin_labels(plays.x, len(plays.levels), best[plays.function])
        accuracy = policy.imitate(plays.x, np.array([action_index(level, 1.0) for level in plays.levels])[chosen])
    else:
        accuracy = policy.imitate(plays.x, labels_by_function[plays.function])
    fit = WarmFit(price=price, labels=dict(Counter(plays.levels[b] for b in best)), states=len(plays.x),
                  accuracy=accuracy, cold_starts=policy.agent.fit_cold_starts, target=policy.agent.fit_target)
    log.info("fitted warm start: λ = %.3g violations per GB-s; labels %s; %d states, %.0f%% fitted",
             price, fit.labels, fit.states, 100 * accuracy)
    return fit


__all__ = ["ENSURE_LEVEL", "FIT_COLD_STARTS", "LevelPlays", "WarmFit", "cheapest_levels", "fit_warm_start",
           "level_price", "level_regrets", "play_levels", "plays_key", "twin_labels"]
