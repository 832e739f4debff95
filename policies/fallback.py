"""Safe online learning: a learner that hands control to a heuristic while it is measurably worse.

:class:`FallbackLearner` wraps a learned policy and a heuristic (ENSURE). Every tick both decide
(the heuristic's decisions are a shadow while the learner is in control, and the other way round),
and a running comparison says whether the learner is worse than the heuristic would have been:

* **Violations.** The learner's are counted (``FunctionStats.slo_violations`` of the ticks it
  controlled). The heuristic's are estimated: with a queueing model each side's expected violations
  are computed from the pool it chose — an arrival waits in an M/M/k queue with k containers and
  offered load R (Erlang C), and a wait beyond the SLO's slack over the mean execution time is a
  violation — and the heuristic's estimate is the learner's count plus the model's difference
  between the two pools (a difference estimator: what the model cannot explain, cold starts or
  contention, is common to both and cancels).
  With ``counterfactual = twin`` the run attaches a simulated twin of the cluster that runs the
  heuristic on the arrivals each function had (``controller.assemble.HeuristicTwin``), and the
  heuristic's count is the twin's: unlike the model it sees what one function's pool costs others.
* **Memory.** The learner's held memory (containers x memory) against the heuristic's targets x memory.

Over the last ``window_ticks`` of learner control, the learner falls back when its violations
exceed (1 + ``margin``) x the heuristic's estimate + ``min_violations`` (checked from the first tick,
so a starving policy is caught at once), or when it held more than (1 + ``margin``) x the
heuristic's memory without fewer violations (checked once the window is full). Falling back is logged and
reported (``fallback_active`` in the diagnostics, with the reason). After at least ``hold_ticks``
in fallback, it returns once the model says the learner's own (shadow) decisions of the last window
would have been no worse. While in fallback the learner makes no transitions: its decisions were
not applied, so no reward follows from them.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from scipy.special import gammaincc, gammaln

from policies.types import KEEP_SHARES, UNMANAGED, ClusterSnapshot, Decisions, LazyReasons, Policy

log = logging.getLogger(__name__)

#: How the heuristic's violations are estimated (``FallbackSettings.counterfactual``).
COUNTERFACTUALS: tuple[str, ...] = ("model", "twin")


class Counterfactual(Protocol):
    """The heuristic run elsewhere on the same arrivals (e.g. a simulated twin of the cluster)."""

    def heuristic_violations(self, snapshot: ClusterSnapshot) -> float:
        """Advance by the tick ``snapshot`` ends (its arrivals per function); the heuristic's SLO
        violations in that tick. Called once per tick, in order."""


#: Why the learner is in fallback (the ``reason`` of its diagnostics and of the daemon's metric).
FALLBACK_REASONS: tuple[str, ...] = ("violations", "memory")

#: Keys the wrapper adds to the learner's diagnostics.
FALLBACK_DIAGNOSTICS: tuple[str, ...] = (
    "fallback_active",
    "fallback_reason_violations",
    "fallback_reason_memory",
    "fallback_learner_violations",
    "fallback_heuristic_violations",
    "fallback_learner_memory_gb",
    "fallback_heuristic_memory_gb",
)


@dataclass(frozen=True)
class FallbackSettings:
    """When a learner hands control to its heuristic, and when it takes it back."""

    window_ticks: int = 60
    """Ticks compared (60 = 10 minutes at 10-s ticks): long enough that a few unlucky arrivals do
    not trip it, short enough that a bad policy is caught within one window."""
    margin: float = 0.1
    """How much worse than the heuristic the learner may be before it falls back: 10%."""
    min_violations: float = 5.0
    """Violations in a window the learner may exceed the heuristic's estimate by, on top of the
    margin, before it falls back: below that, a difference is noise."""
    hold_ticks: int = 60
    """Ticks in fallback before the learner may take control back (one window)."""
    counterfactual: str = "model"
    """How the heuristic's violations on the learner's arrivals are estimated. ``model``: the queueing
    model above, per function (it cannot see what one function's pool costs another on a contended
    cluster). ``twin``: the heuristic run on a simulated twin of the cluster, fed every tick the
    arrivals each function had (:class:`Counterfactual`); the run attaches one where it can build the
    cluster's twin (a simulated cluster's runs), and without one the model is used, said once."""
    heuristic_floor: bool = False
    """While the learner is in control, no function gets fewer containers or fewer CPU shares than the
    heuristic decides for it in the same tick (a function the learner leaves to the platform gets the
    heuristic's pool where the heuristic manages it). The learner can then only add headroom above the
    heuristic, so a smaller pool can never make it worse; what it learns is where extra containers or
    CPU pay for their memory. Its transitions keep the action it chose: to the learner the floor is part
    of the environment (actions below the floor act as the floor). False leaves the learner free to hold
    less than the heuristic, guarded by the fallback alone."""

    def __post_init__(self) -> None:
        if self.window_ticks < 1 or self.hold_ticks < 0:
            raise ValueError("FallbackSettings: window_ticks must be >= 1 and hold_ticks >= 0")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ValueError(f"FallbackSettings.margin={self.margin}: must be a finite number >= 0")
        if not (math.isfinite(self.min_violations) and self.min_violations >= 0):
            raise ValueError(f"FallbackSettings.min_violations={self.min_violations}: must be >= 0")
        if self.counterfactual not in COUNTERFACTUALS:
            raise ValueError(f"FallbackSettings.counterfactual={self.counterfactual!r}: must be one of "
                             f"{', '.join(COUNTERFACTUALS)}")


def erlang_c(servers: np.ndarray, load: np.ndarray) -> np.ndarray:
    """Probability that an arrival waits in an M/M/k queue with ``servers`` k and offered load R
    (busy servers): 1 where R >= k (the queue grows), vectorised over functions.

    Erlang B is a Poisson ratio, B = P(N = k) / P(N <= k) for N ~ Poisson(R) (in closed form, so its
    cost does not grow with the pool), then C = k B / (k - R (1 - B)).
    """
    k = np.floor(np.asarray(servers, dtype=float))
    r = np.maximum(np.asarray(load, dtype=float), 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        b = np.where(k >= 0, _poisson_pmf(k, r) / gammaincc(k + 1.0, r), 1.0)
        b = np.where(r > 0, b, 0.0)
        c = k * b / (k - r * (1.0 - b))
    return np.where((k <= 0) | (r >= k), 1.0, np.clip(np.nan_to_num(c, nan=1.0), 0.0, 1.0))


def _poisson_pmf(k: np.ndarray, r: np.ndarray) -> np.ndarray:
    """P(N = k) for N ~ Poisson(r), through logarithms (no overflow at large k or r)."""
    return np.exp(k * np.log(np.where(r > 0, r, 1.0)) - r - gammaln(k + 1.0))


def expected_violations(pool: np.ndarray, functions: Any, load: np.ndarray) -> np.ndarray:
    """Expected SLO violations of each function's tick with ``pool`` containers (UNMANAGED: the
    containers observed, which the platform grows on demand through cold starts): arrivals x
    P(wait) x P(the wait exceeds the SLO's slack over the mean execution time)."""
    arrivals = np.nan_to_num(np.asarray(functions.arrivals, dtype=float))
    exec_s = np.where(np.isfinite(functions.mean_exec_s), functions.mean_exec_s, functions.recent_exec_s)
    exec_s = np.where(np.isfinite(exec_s) & (exec_s > 0), exec_s, np.nan)
    slack = np.maximum(np.asarray(functions.slo_s, dtype=float) - np.nan_to_num(exec_s), 0.0)
    observed = np.nan_to_num(np.asarray(functions.containers, dtype=float))
    k = np.where(np.asarray(pool) == UNMANAGED, observed, np.asarray(pool, dtype=float))
    k = np.maximum(np.floor(k), 0.0)
    wait = erlang_c(k, load)
    with np.errstate(invalid="ignore", over="ignore"):
        beyond = np.exp(-np.maximum(k - load, 0.0) * slack / exec_s)
    p = np.where(np.isfinite(beyond), wait * beyond, wait)
    return np.where(np.isfinite(load), arrivals * p, 0.0)


def _memory_gb(pool: np.ndarray, functions: Any, tick_s: float) -> float:
    observed = np.nan_to_num(np.asarray(functions.containers, dtype=float))
    k = np.where(np.asarray(pool) == UNMANAGED, observed, np.asarray(pool, dtype=float))
    memory = np.nan_to_num(np.asarray(functions.memory_mb, dtype=float))
    return float(np.sum(np.maximum(k, 0.0) * memory)) * tick_s / 1024.0


def floored(mine: Decisions, theirs: Decisions, heuristic: str) -> Decisions:
    """``mine`` with every pool and every CPU share at least ``theirs`` (where ``theirs`` decided one).

    A pool: where the heuristic sets one, the larger of the two (a learner's ``UNMANAGED`` — the
    platform's on-demand containers — counts as none); where it leaves the function to the platform,
    the learner's. Shares likewise (``KEEP_SHARES`` counts as none). ``action`` stays the learner's.
    """
    theirs_ok, mine_ok = np.asarray(theirs.valid, dtype=bool), np.asarray(mine.valid, dtype=bool)
    only_theirs = theirs_ok & ~mine_ok  # the learner made no decision: the heuristic's stands
    theirs_c, theirs_s = np.asarray(theirs.containers), np.asarray(theirs.cpu_shares)
    mine_c = np.where(only_theirs, UNMANAGED, np.asarray(mine.containers))
    mine_s = np.where(only_theirs, KEEP_SHARES, np.asarray(mine.cpu_shares))
    set_c = theirs_ok & (theirs_c != UNMANAGED)
    set_s = theirs_ok & (theirs_s != KEEP_SHARES)
    containers = np.where(set_c, np.where(mine_c == UNMANAGED, theirs_c, np.maximum(mine_c, theirs_c)), mine_c)
    shares = np.where(set_s, np.where(mine_s == KEEP_SHARES, theirs_s, np.maximum(mine_s, theirs_s)), mine_s)
    lifted = (containers != mine_c) | (shares != mine_s)

    def reason(i: int) -> str:
        if only_theirs[i]:
            return f"{heuristic} (the learner made no decision): {theirs.reasons[i]}"
        if lifted[i]:
            return f"{mine.reasons[i]} (held up to {heuristic}'s {containers[i]} containers, {shares[i]} shares)"
        return mine.reasons[i]

    reasons = LazyReasons(len(containers), reason)
    action = None if mine.action is None else np.where(only_theirs, -1, mine.action)
    return Decisions(containers=containers.astype(np.int64), cpu_shares=shares.astype(np.int64),
                     valid=mine_ok | theirs_ok, reasons=reasons, action=action)


class FallbackLearner:
    """A learner with ENSURE (or another heuristic) as its safety net (see the module docstring)."""

    def __init__(self, learner: Any, heuristic: Policy, settings: FallbackSettings) -> None:
        self.learner = learner
        """The learned policy (a ``policies.types.Learner``)."""
        self.heuristic = heuristic
        """The policy that takes over while the learner is worse; it decides every tick (its state
        stays current) whoever is in control."""
        self.settings = settings
        """When to fall back and return."""
        self.name = learner.name
        self.seed = learner.seed
        self.diagnostics: tuple[str, ...] = (*learner.diagnostics, *FALLBACK_DIAGNOSTICS)
        self.active = False
        """Whether the heuristic is in control."""
        self.reason = ""
        """Why it is (one of :data:`FALLBACK_REASONS`), "" while the learner is in control."""
        self.ticks_in_fallback = 0
        self._window: deque[tuple[float, float, float, float, bool]] = deque(maxlen=settings.window_ticks)
        self._pending: tuple[np.ndarray, np.ndarray, bool] | None = None
        self._last_time: float | None = None
        self.counterfactual: Counterfactual | None = None
        """The heuristic's twin (``FallbackSettings.counterfactual = twin``), attached by the run."""
        self._said_no_twin = False

    @property
    def settings_record(self) -> Mapping[str, Any]:
        return {**dict(self.learner.settings_record), "fallback": asdict(self.settings)}

    # ---- deciding

    def decide(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> Decisions:
        mine = self.learner.decide(snapshot, mu)
        theirs = self.heuristic.decide(snapshot, mu)
        if self.settings.heuristic_floor:
            mine = floored(mine, theirs, self.heuristic.name)  # what the learner's control applies
        self._pending = (np.asarray(mine.containers).copy(), np.asarray(theirs.containers).copy(), self.active)
        if not self.active:
            return mine
        told, head = theirs.reasons, f"fallback to {self.heuristic.name} ({self.reason})"
        reasons = LazyReasons(len(told), lambda i: f"{head}: {told[i]}")
        return Decisions(containers=theirs.containers, cpu_shares=theirs.cpu_shares, valid=theirs.valid,
                         reasons=reasons, action=np.full(len(theirs), -1))

    # ---- learning and watching

    def feedback(self, snapshot: ClusterSnapshot, mu: np.ndarray, rewards: np.ndarray) -> Mapping[str, float]:
        if self._last_time == snapshot.time_s:
            return {"fallback_active": float(self.active)}
        self._last_time = snapshot.time_s
        pending, self._pending = self._pending, None
        was_active = pending[2] if pending is not None else self.active
        out: dict[str, float] = {}
        if was_active:
            # The heuristic's decision was applied: no reward follows from the learner's.
            self.learner.feedback(snapshot, mu, np.full(len(snapshot.functions), np.nan))
        else:
            out.update(self.learner.feedback(snapshot, mu, rewards))
        if pending is not None:
            self._watch(snapshot, pending)
        out.update(self._report())
        return out

    def _watch(self, snapshot: ClusterSnapshot, pending: tuple[np.ndarray, np.ndarray, bool]) -> None:
        learner_pool, heuristic_pool, was_active = pending
        f = snapshot.functions
        n = min(len(f), len(learner_pool), len(heuristic_pool))
        if n < len(f):
            return  # the function set changed between the two ticks: nothing comparable
        tick_s = float(snapshot.tick_s)
        exec_s = np.where(np.isfinite(f.mean_exec_s), f.mean_exec_s, f.recent_exec_s)
        load = np.nan_to_num(f.arrivals / tick_s * exec_s, nan=0.0)
        model_l = float(np.nansum(expected_violations(learner_pool, f, load)))
        model_h = float(np.nansum(expected_violations(heuristic_pool, f, load)))
        realized = float(np.nansum(np.where(f.valid, f.slo_violations, 0.0)))
        twin = self._twin_violations(snapshot)
        if twin is not None and math.isfinite(twin):
            # The twin ran the heuristic on these arrivals: its count replaces the model's difference.
            learner_violations = realized + model_l - model_h if was_active else realized
            heuristic_violations = realized if was_active else twin
        elif was_active:
            # The heuristic ran: the learner's shadow is judged by the model alone.
            learner_violations, heuristic_violations = realized + model_l - model_h, realized
        else:
            learner_violations, heuristic_violations = realized, max(realized + model_h - model_l, 0.0)
        memory_l = _memory_gb(learner_pool, f, tick_s)
        memory_h = _memory_gb(heuristic_pool, f, tick_s)
        self._window.append((learner_violations, heuristic_violations, memory_l, memory_h, was_active))
        self._decide_control()

    def _twin_violations(self, snapshot: ClusterSnapshot) -> float | None:
        if self.settings.counterfactual != "twin":
            return None
        if self.counterfactual is None:
            if not self._said_no_twin:
                log.warning("%s: no twin of this cluster to run %s on, so its violations are estimated by the "
                            "queueing model", self.name, self.heuristic.name)
                self._said_no_twin = True
            return None
        return float(self.counterfactual.heuristic_violations(snapshot))

    def _sums(self) -> tuple[float, float, float, float]:
        rows = np.array([row[:4] for row in self._window]) if self._window else np.zeros((0, 4))
        return tuple(float(v) for v in rows.sum(axis=0)) if len(rows) else (0.0, 0.0, 0.0, 0.0)  # type: ignore[return-value]

    def _worse(self) -> str:
        s = self.settings
        learner_v, heuristic_v, learner_m, heuristic_m = self._sums()
        if learner_v > (1.0 + s.margin) * heuristic_v + s.min_violations:
            return "violations"
        if learner_m > (1.0 + s.margin) * heuristic_m and learner_v >= heuristic_v:
            return "memory"
        return ""

    def _decide_control(self) -> None:
        s = self.settings
        worse = self._worse()
        if len(self._window) < s.window_ticks and worse != "violations":
            # Violations beyond the margin and ``min_violations`` are evidence at once (a learner that
            # starves its functions is caught within ticks, not after a window); held memory, which
            # a burst moves for a tick or two, only over a whole window.
            return
        if not self.active and worse:
            self.active, self.reason, self.ticks_in_fallback = True, worse, 0
            learner_v, heuristic_v, learner_m, heuristic_m = self._sums()
            log.warning("%s falls back to %s (%s): %.0f violations against ~%.0f, %.0f GB-s against ~%.0f over "
                        "the last %d ticks", self.name, self.heuristic.name, worse, learner_v, heuristic_v,
                        learner_m, heuristic_m, len(self._window))
        elif self.active:
            self.ticks_in_fallback += 1
            if self.ticks_in_fallback >= s.hold_ticks and not worse:
                log.warning("%s takes control back from %s after %d ticks: its own decisions would have been "
                            "no worse over the last %d", self.name, self.heuristic.name, self.ticks_in_fallback,
                            len(self._window))
                self.active, self.reason, self.ticks_in_fallback = False, "", 0

    def _report(self) -> dict[str, float]:
        learner_v, heuristic_v, learner_m, heuristic_m = self._sums()
        return {
            "fallback_active": float(self.active),
            "fallback_reason_violations": float(self.reason == "violations"),
            "fallback_reason_memory": float(self.reason == "memory"),
            "fallback_learner_violations": learner_v,
            "fallback_heuristic_violations": heuristic_v,
            "fallback_learner_memory_gb": learner_m,
            "fallback_heuristic_memory_gb": heuristic_m,
        }

    # ---- checkpoints

    def state_dict(self) -> dict[str, Any]:
        state = dict(self.learner.state_dict())
        state["fallback/active"] = self.active
        state["fallback/reason"] = self.reason
        state["fallback/ticks"] = self.ticks_in_fallback
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.learner.load_state_dict({k: v for k, v in state.items() if not k.startswith("fallback/")})
        self.active = bool(state.get("fallback/active", False))
        self.reason = str(state.get("fallback/reason", ""))
        self.ticks_in_fallback = int(state.get("fallback/ticks", 0))

    def checkpoint_signature(self) -> Mapping[str, Any]:
        return {**dict(self.learner.checkpoint_signature()), "fallback": self.heuristic.name}


__all__ = ["COUNTERFACTUALS", "FALLBACK_DIAGNOSTICS", "FALLBACK_REASONS", "Counterfactual", "FallbackLearner",
           "FallbackSettings", "erlang_c", "expected_violations", "floored"]
