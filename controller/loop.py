"""The control loop: one observe → estimate → decide → guard → act → learn → export pass per tick.

docs/architecture.md, "The control loop". Each step is its own function or object; :class:`ControlLoop` only
sequences them and carries the state that lives between ticks (μ, the targets in force, the
reconciliation's pacing, the previous decisions whose reward is due). ``now`` is always passed in, so the same loop runs faster
than real time on the simulator and tests move time by hand.

Order inside one tick ``t`` and what the policy sees:

1. ``snapshot_t = backend.observe(now)``
2. ``mu_t = estimator.update(snapshot_t.invokers)``
3. ``decisions_t = policy.decide(snapshot_t, mu_t)``
4. ``guarded = guard(decisions_t, snapshot_t, applied, bounds, pacing)``: the changes that pass,
   and the targets in force written again where the observed state differs from them
   (level-triggered: what was sent before does not matter, what is observed does)
5. ``failures = backend.apply(guarded.to_apply, now)``
6. ``policy.feedback(snapshot_t, mu_t, r_{t-1})`` where ``r_{t-1}`` is the reward, measured in
   ``snapshot_t``, of the decisions of tick ``t − 1`` (NaN where there was none, or no data).
   A learner therefore already knows its next action ``a_t`` when it learns from
   ``(s_{t−1}, a_{t−1}, r_{t−1}, s_t, a_t)``, the sample Algorithm 2 of the paper needs.
7. every :class:`MetricsSink` gets the :class:`TickReport`; every ``checkpoint_every_ticks`` ticks
   the :class:`Checkpointer` saves the policy.

The reward belongs to the policy's decision even when the guard changed or skipped it: the guard
is part of the environment the policy learns in.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from controller.backends.base import ActionFailure, Backend, FailureKind
from controller.checkpoint import Checkpointer
from controller.estimator import PopulationEstimator
from controller.guard import AppliedTargets, GuardBounds, GuardResult, ReconcileState, guard
from policies.reward import DEFAULT_ALPHA, OPERATOR_COST_CAP, operator_reward, reward
from policies.types import KEEP_SHARES, UNMANAGED, ClusterSnapshot, Decisions, Policy

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TickReport:
    """Everything one tick saw and did; what sinks export and reports are built from."""

    tick: int
    """Index of the tick, from 0."""
    time_s: float
    """The tick's ``now``, s."""
    snapshot: ClusterSnapshot
    """What the backend observed."""
    mu: np.ndarray
    """The mean-field estimate after this tick's observation, shape (bins,)."""
    decisions: Decisions
    """The policy's decisions, before the guard."""
    guarded: GuardResult
    """What the guard let through and what it did to the rest."""
    failures: tuple[ActionFailure, ...]
    """Changes the backend could not make."""
    rewards: np.ndarray
    """Reward of every function for this tick (NaN: invalid row or no outcome), the run's score."""
    feedback_rewards: np.ndarray
    """Rewards given to the policy: ``rewards`` where the previous tick decided, else NaN."""
    diagnostics: Mapping[str, float]
    """What ``policy.feedback`` returned (learner losses, KL, ...); empty for baselines."""


class MetricsSink(Protocol):
    """Receives every tick's report: the run recorder, later the Prometheus exporter."""

    def on_tick(self, report: TickReport) -> None: ...


@dataclass
class LoopCounters:
    """Running totals since the loop started (exported as ``*_total`` counters later)."""

    ticks: int = 0
    """Ticks completed."""
    changes_applied: int = 0
    """Function target changes accepted by the backend."""
    blocked_invalid: int = 0
    """Decisions dropped for rows without data."""
    clamped: int = 0
    """Decisions changed by the guard's bounds, step limits or capacity."""
    unchanged: int = 0
    """Decisions skipped as equal to the current targets."""
    reapplied: int = 0
    """Targets in force written again because the observed state differed from them (a platform
    that restarted, a container the platform created with its own defaults)."""
    failures: collections.Counter[FailureKind] = field(default_factory=collections.Counter)
    """Failed changes per kind."""
    checkpoints: int = 0
    """Checkpoints saved."""
    decide_s: float = 0.0
    """Wall time spent in ``policy.decide``, s (the policy's cost, reported beside results)."""
    feedback_s: float = 0.0
    """Wall time spent in ``policy.feedback`` (a learner's update), s."""


def _pad(values: np.ndarray, n: int, fill: object) -> np.ndarray:
    """``values`` extended to length ``n`` (functions that appeared since) with ``fill``."""
    if len(values) >= n:
        return values[:n]
    return np.concatenate([values, np.full(n - len(values), fill, dtype=values.dtype)])


def _describe_change(name: str, observed_k: float, managed_before: bool, after_k: int, observed_s: float,
                     after_s: int, reason: str) -> str:
    """One log line per real change, from what the cluster shows now to the new target, e.g.
    ``f: containers 3 -> 5 (ensure: R=3.2 -> 5 containers)`` or ``f: containers 4 -> platform`` (the
    pool is handed back to the platform's own keep-alive). The "from" side is the observed value,
    the one a learner's reason also starts from."""
    parts = []
    shown_k = "?" if not np.isfinite(observed_k) else str(int(round(observed_k)))
    if after_k == UNMANAGED:
        if managed_before:
            parts.append(f"containers {shown_k} -> platform")
    else:
        parts.append(f"containers {shown_k} -> {after_k}")
    if after_s != KEEP_SHARES:
        shown_s = "default" if not np.isfinite(observed_s) or observed_s <= 0 else str(int(round(observed_s)))
        parts.append(f"shares {shown_s} -> {after_s}")
    return f"{name}: " + ", ".join(parts or ["targets re-applied"]) + (f" ({reason})" if reason else "")


def _describe_reapply(name: str, observed_k: float, target_k: int, observed_s: float, target_s: int) -> str:
    """One log line per function whose targets in force are written again, e.g. ``f: re-applied
    containers 2, shares 512 (observed containers 0, shares 256)``; no arrow, since nothing changed
    its mind: the platform no longer held what was decided."""
    def shown(value: float) -> str:
        return str(round(value)) if np.isfinite(value) else "?"

    wanted, seen = [], []
    if target_k != UNMANAGED:
        wanted.append(f"containers {target_k}")
        seen.append(f"containers {shown(observed_k)}")
    if target_s != KEEP_SHARES:
        wanted.append(f"shares {target_s}")
        seen.append(f"shares {shown(observed_s)}")
    return f"{name}: re-applied " + ", ".join(wanted) + " (observed " + ", ".join(seen) + ")"


def invoker_memory_mb(snapshot: ClusterSnapshot) -> float:
    """The user memory of a typical invoker (the median of the known ones; 2048 MB, OpenWhisk's
    default, when none is known): the scale the operator reward prices idle memory against."""
    memory = np.asarray(snapshot.invokers.memory_mb, dtype=float)
    memory = memory[np.isfinite(memory) & (memory > 0)]
    return float(np.median(memory)) if memory.size else 2048.0


def cores_per_mb(snapshot: ClusterSnapshot) -> float:
    """Invoker cores per MB of invoker (user) memory over all invokers; 0 without memory.

    All invokers count, as for the guard's capacity: a failed scrape does not remove capacity.
    """
    memory = float(np.sum(snapshot.invokers.memory_mb))
    return float(np.sum(snapshot.invokers.cores)) / memory if memory > 0 else 0.0


@dataclass
class ControlLoop:
    """Sequences the seven steps for one backend and one policy; holds only between-tick state."""

    backend: Backend
    """The cluster observed and acted on."""
    policy: Policy
    """The decision maker (a baseline or a learner)."""
    estimator: PopulationEstimator
    """Owner of μ."""
    bounds: GuardBounds = field(default_factory=GuardBounds)
    """The guard's limits."""
    reward_alpha: float = DEFAULT_ALPHA
    """α of the reward (see ``policies.reward``)."""
    reward_kind: str = "paper"
    """Which reward the learner gets: ``paper`` (``policies.reward.reward``) or ``operator``
    (``policies.reward.operator_reward``: latency against idle memory, priced per invoker's memory)."""
    reward_cost_cap: float = OPERATOR_COST_CAP
    """The operator reward's cost cap C (``controller.settings.RewardSettings.cost_cap``)."""
    reward_charge_memory: bool = False
    """Measure the reward's u against the CPU the containers' memory reserves as well
    (``controller.settings.RewardSettings.charge_memory``)."""
    sinks: list[MetricsSink] = field(default_factory=list)
    """Receivers of every tick's report."""
    checkpointer: Checkpointer | None = None
    """Saves the policy every ``checkpoint_every_ticks`` ticks; None never."""
    checkpoint_every_ticks: int = 0
    """Checkpoint period in ticks; 0 never."""
    dry_run: bool = False
    """Decide and guard but apply nothing (and do not record anything as applied); the learner is fed
    no rewards, since its decisions never reached the cluster."""
    counters: LoopCounters = field(default_factory=LoopCounters)
    """Running totals."""
    timer: Callable[[], float] = time.perf_counter
    """Clock of the policy's cost measurement only (``LoopCounters.decide_s``/``feedback_s``); it
    never decides anything."""
    _applied: AppliedTargets = field(default_factory=lambda: AppliedTargets.initial(0), init=False)
    _pacing: ReconcileState = field(default_factory=lambda: ReconcileState.initial(0), init=False)
    _previous: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool), init=False)
    _last_time: float = field(default=float("-inf"), init=False)
    _cuts_reported: set[str] = field(default_factory=set, init=False)

    def step(self, now: float) -> TickReport:
        """Run one tick ending at ``now`` (s); ``now`` must grow from call to call."""
        if now <= self._last_time:
            raise ValueError(f"control loop time must increase: got now={now} after {self._last_time}")
        self._last_time = now

        snapshot = self.backend.observe(now)
        n = len(snapshot.functions)
        mu = self.estimator.update(snapshot.invokers, snapshot.tick_s)
        started = self.timer()
        decisions = self.policy.decide(snapshot, mu)
        self.counters.decide_s += self.timer() - started
        if len(decisions) != n:
            raise ValueError(
                f"policy {self.policy.name!r} returned {len(decisions)} decisions for {n} functions"
            )
        guarded = guard(decisions, snapshot, self._applied, self.bounds, self._pacing)
        self._pacing = guarded.reconcile
        self._report_cuts(snapshot, decisions, guarded)
        failures = self._act(snapshot, guarded)
        rewards, feedback_rewards = self._rewards(snapshot)
        started = self.timer()
        diagnostics = dict(self.policy.feedback(snapshot, mu, feedback_rewards))
        self.counters.feedback_s += self.timer() - started
        self._previous = decisions.valid.copy()

        report = TickReport(
            tick=self.counters.ticks,
            time_s=now,
            snapshot=snapshot,
            mu=mu,
            decisions=decisions,
            guarded=guarded,
            failures=tuple(failures),
            rewards=rewards,
            feedback_rewards=feedback_rewards,
            diagnostics=diagnostics,
        )
        self._count(guarded, failures)
        self._export(report, now)
        return report

    def run(self, times: Iterable[float], on_tick: Callable[[TickReport], None] | None = None) -> LoopCounters:
        """``step`` at each of ``times`` (s, increasing); ``on_tick`` after each (e.g. a progress bar)."""
        for now in times:
            report = self.step(now)
            if on_tick is not None:
                on_tick(report)
        return self.counters

    # --- the steps that are not a single call ---

    def _report_cuts(self, snapshot: ClusterSnapshot, decisions: Decisions, guarded: GuardResult) -> None:
        """Log the first time the guard cuts a function's decision (every cut is counted in the
        results and in ``mfrm_guard_decisions_total``; the log says once which function and why)."""
        for i, note in enumerate(guarded.notes):
            if note and decisions.valid[i] and snapshot.functions.valid[i]:
                name = snapshot.functions.names[i]
                if name not in self._cuts_reported:
                    self._cuts_reported.add(name)
                    log.warning("%s: the guard cut the policy's decision: %s (said once per function; every cut "
                                "is counted)", name, note)

    def _act(self, snapshot: ClusterSnapshot, guarded: GuardResult) -> list[ActionFailure]:
        n = len(snapshot.functions)
        self._applied = self._applied.grown(n)
        to_apply = guarded.to_apply
        if self.dry_run or not to_apply.valid.any():
            return []
        failures = self.backend.apply(to_apply, snapshot.time_s)
        failed_names = {failure.function for failure in failures}
        for failure in failures:
            log.warning("%s: action failed (%s): %s", failure.function, failure.kind.value, failure.message)
        failed = np.array([name in failed_names for name in snapshot.functions.names], dtype=bool)
        before = self._applied
        self._applied = before.with_applied(to_apply, failed)
        changed = guarded.decisions.valid & ~failed
        self.counters.changes_applied += int(changed.sum())
        if log.isEnabledFor(logging.INFO):
            fns = snapshot.functions
            for i in np.flatnonzero(guarded.reapply & ~failed):
                log.info("%s", _describe_reapply(fns.names[i], float(fns.containers[i]), int(before.containers[i]),
                                                 float(fns.cpu_shares[i]), int(before.cpu_shares[i])))
            for i in np.flatnonzero(changed):
                log.info(
                    "%s",
                    _describe_change(
                        fns.names[i],
                        float(fns.containers[i]),
                        int(before.containers[i]) != UNMANAGED,
                        int(self._applied.containers[i]),
                        float(fns.cpu_shares[i]),
                        int(guarded.decisions.cpu_shares[i]),
                        to_apply.reasons[i],
                    ),
                )
        return failures

    def _rewards(self, snapshot: ClusterSnapshot) -> tuple[np.ndarray, np.ndarray]:
        n = len(snapshot.functions)
        if self.reward_kind == "operator":
            rewards = operator_reward(snapshot.functions, self.reward_alpha,
                                      memory_scale_mb=invoker_memory_mb(snapshot), cost_cap=self.reward_cost_cap)
        else:
            rewards = reward(
                snapshot.functions,
                self.reward_alpha,
                cores_per_mb=cores_per_mb(snapshot) if self.reward_charge_memory else 0.0,
                tick_s=snapshot.tick_s,
            )
        # In a dry run nothing was applied, so the reward does not follow from the policy's action:
        # the learner gets NaN (no transition) rather than learning from decisions that never happened.
        decided_before = _pad(self._previous, n, False) & (not self.dry_run)
        feedback = np.where(decided_before, rewards, np.nan)
        rewards.setflags(write=False)
        feedback.setflags(write=False)
        return rewards, feedback

    def _count(self, guarded: GuardResult, failures: list[ActionFailure]) -> None:
        c = self.counters
        c.ticks += 1
        c.blocked_invalid += guarded.blocked_invalid
        c.clamped += guarded.clamped
        c.unchanged += guarded.unchanged
        c.reapplied += guarded.reapplied
        c.failures.update(f.kind for f in failures)

    def _export(self, report: TickReport, now: float) -> None:
        for sink in self.sinks:
            sink.on_tick(report)
        if (
            self.checkpointer is not None
            and self.checkpoint_every_ticks > 0
            and self.counters.ticks % self.checkpoint_every_ticks == 0
        ):
            self.checkpointer.save(self.policy, self.counters.ticks, now)
            self.counters.checkpoints += 1


def tick_times(start_s: float, tick_s: float, ticks: int) -> np.ndarray:
    """The ``now`` of each tick: the end of each of ``ticks`` ticks of ``tick_s`` after ``start_s``."""
    return start_s + tick_s * np.arange(1, ticks + 1, dtype=float)


__all__ = ["ControlLoop", "LoopCounters", "MetricsSink", "TickReport", "tick_times"]
