"""The ``openwhisk`` backend: a real OpenWhisk deployment, observed over REST (and Prometheus) and
acted on through the container runtime of its invokers.

Observe (one tick ending at ``now``):

* **completions, latency, cold starts, SLO violations** from the activations API
  (:class:`controller.backends.activations.ActivationWindow`): every activation that appeared since the last tick is counted once
  (deduplicated by id, so activations stored late are not lost); its latency is
  ``waitTime + duration`` — OpenWhisk's ``duration`` already includes ``initTime`` on a cold start
  (ContainerProxy reports the init-plus-run interval), so adding ``initTime`` again would count it
  twice. Or, with :class:`PrometheusLatency`, from the user-events metrics through PromQL.
* **containers, busy containers, CPU shares, CPU used** from the invokers' container runtime: the
  Docker Engine API of each invoker host (:mod:`controller.backends.docker_runtime`) or the
  Kubernetes API (:mod:`controller.backends.kube_runtime`). Containers are attributed to actions by
  the names OpenWhisk gives them (see :func:`controller.backends.runtime.action_key`).
* What cannot be observed stays NaN (``queued``: OpenWhisk's queues are not exposed; CPU used on
  Kubernetes). Never zeros: when the latency source (activations API or Prometheus) or the action
  list cannot be read, ``observe`` raises :class:`controller.clients.errors.ObservationError` with
  the client's kind (the tick fails); a function without data (no series in Prometheus, garbled
  records, containers not countable because an invoker's runtime did not answer) is ``valid=False``
  and listed with its cause in :attr:`OpenWhiskBackend.problems`. A tick covers the time since the
  last good observation (``tick_s``).

Act: CPU shares per container through the runtime (re-applied every tick to containers created since,
which start with OpenWhisk's default shares). Warm pools: stock OpenWhisk has no per-action
container count; :class:`WarmPoolMode` says which knob, if any, is turned, and any decision the
backend cannot carry out comes back as ``ActionFailure(REJECTED, "... not supported by stock
OpenWhisk ...")``. ``docs/backends.md`` lists the knobs and their caveats.

Consistency (see ``controller.backends.base``): the activation store may lag the invocations by a
few seconds (an activation counts in the tick it is first seen); container lists are read once per
tick and may miss containers created or removed within it; a shares change applies at once to
running containers.

Built from the ``openwhisk`` settings group by :func:`from_settings` (``mfrm run --backend
openwhisk``), which checks what the backend needs, picks the runtime and adapts the PromQL reader
(:func:`promql_query`).
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from controller.backends.activations import ActivationWindow, fill_activation_columns, summarise
from controller.backends.base import ActionFailure, FailureKind
from controller.backends.runtime import (
    ContainerRuntime,
    RuntimeRejected,
    RuntimeUnavailable,
    RuntimeView,
    action_key,
)
from controller.clients.errors import ObservationError, ObservationKind, ObservationProblem
from controller.clients.openwhisk import (
    OWN_NAMESPACE,
    NotFound,
    OpenWhiskClient,
    OpenWhiskError,
    RequestRejected,
    RetryPolicy,
    Unauthorized,
)
from controller.clients.prometheus import PrometheusReader, PromQLError, counter_increase, histogram_quantile
from controller.settings import OpenWhiskSettings, Settings, SettingsError
from policies.types import (
    KEEP_SHARES,
    SHARES_PER_CORE,
    UNMANAGED,
    ClusterSnapshot,
    Decisions,
    FunctionStats,
    InvokerStats,
)


class PromQuery(Protocol):
    """The PromQL reader's instant query: ``query(expr, time) -> [(labels, value)]``."""

    def __call__(self, expr: str, time: float) -> list[tuple[Mapping[str, str], float]]: ...


@dataclass(frozen=True)
class PromLatencyStats:
    """One function's tick as the user-events metrics tell it."""

    completions: float
    """Activations completed, over the tick (see :class:`PrometheusLatency` for how a reading is
    spread over a tick)."""
    cold_starts: float
    """Of those, cold starts."""
    p50_s: float
    """Median latency, s (NaN when none completed)."""
    p99_s: float
    """99th-percentile latency, s (NaN when none completed)."""
    mean_exec_s: float
    """Mean run time without init, s (NaN when none completed)."""


#: The counters and histograms of OpenWhisk's user-events service the reader uses.
_ACTIVATIONS = "openwhisk_action_activations_total"
_COLD_STARTS = "openwhisk_action_coldStarts_total"
_HISTOGRAMS = ("openwhisk_action_waitTime_seconds", "openwhisk_action_initTime_seconds",
               "openwhisk_action_duration_seconds")


@dataclass(frozen=True)
class _Reading:
    """One function's cumulative counters as Prometheus holds them at one instant."""

    stamp_s: float
    """Time of the last scrape they come from (PromQL ``timestamp()``), Unix s."""
    activations: float
    cold_starts: float
    buckets: Mapping[str, Mapping[float, float]]
    """Cumulative bucket counts of each histogram of ``_HISTOGRAMS``, by upper bound."""
    duration_sum_s: float


class PrometheusLatency:
    """Completions and latency quantiles from OpenWhisk's user-events metrics, through PromQL.

    The user-events service exports, per action (labels ``namespace``, ``action``), the counters
    ``openwhisk_action_activations_total`` and ``openwhisk_action_coldStarts_total`` and the
    histograms ``openwhisk_action_waitTime_seconds``, ``openwhisk_action_initTime_seconds`` (cold
    starts only) and ``openwhisk_action_duration_seconds`` (the run alone, without init).

    Each tick reads the cumulative values (and the time of the scrape they come from) and takes
    the difference with the function's previous reading itself, rather than asking PromQL for
    ``increase(x[tick])``: a range as short as the tick holds fewer than two samples whenever
    Prometheus scrapes about as often as the daemon ticks, and ``increase`` then returns nothing,
    which is no answer, not zero traffic. The difference covers the time between the two scrapes;
    its counts are spread over the tick in proportion (``tick / (scrape now − scrape before)``), so
    a tick whose scrape interval drifted does not carry a lump of two intervals. A counter that
    went down was reset (the exporter restarted): what it holds now is new.

    No data is never zero traffic. A function gets no row (its cause in the second result of
    :meth:`read`) when Prometheus has no series of it (never invoked since the exporter started,
    or its target is not scraped), when no scrape happened since its previous reading, on the
    first tick for a series the look-back did not see (it began at an unknown time), and on the
    tick its series reappears after a gap (that reading only starts counting again). A series that
    appears after the first tick counts everything it holds: it appeared since the previous reading.

    A latency quantile is estimated as the sum of the quantiles of wait, init (over every
    activation, warm ones as 0) and run: the metrics have no histogram of the sum, and a sum of
    quantiles is an upper bound for parts that rise together, i.e. conservative; the activations
    API gives the exact value.
    """

    def __init__(self, query: PromQuery, namespace: str, first_lookback_s: float = 120.0) -> None:
        self.query = query
        """``query(expr, run time) -> [(labels, value)]``, see :func:`promql_query`."""
        self.namespace = namespace
        """The actions' namespace as the metrics label it."""
        self.first_lookback_s = float(first_lookback_s)
        """How far before the first tick its counters are first read, s, so that the first tick has an
        earlier scrape to difference with even when it comes at once (``mfrm run --once``)."""
        self._last: dict[str, _Reading] = {}
        self._present: set[str] = set()
        self._primed = False

    def _read_all(self, at: float) -> dict[str, _Reading]:
        """Every action's counters at run time ``at``."""
        sel = f'namespace="{self.namespace}"'

        def by_action(expr: str) -> dict[str, float]:
            return {labels.get("action", ""): float(value) for labels, value in self.query(expr, at)}

        activations = by_action(f"sum by (action) ({_ACTIVATIONS}{{{sel}}})")
        stamps = by_action(f"max by (action) (timestamp({_ACTIVATIONS}{{{sel}}}))")
        cold = by_action(f"sum by (action) ({_COLD_STARTS}{{{sel}}})")
        buckets: dict[str, dict[str, dict[float, float]]] = {}
        for metric in _HISTOGRAMS:
            for labels, value in self.query(f"sum by (action, le) ({metric}_bucket{{{sel}}})", at):
                le = _bound(labels.get("le"))
                if le is not None:
                    buckets.setdefault(labels.get("action", ""), {}).setdefault(metric, {})[le] = float(value)
        duration_sum = by_action(f"sum by (action) (openwhisk_action_duration_seconds_sum{{{sel}}})")
        return {
            action: _Reading(stamps.get(action, math.nan), count, cold.get(action, 0.0), buckets.get(action, {}),
                             duration_sum.get(action, 0.0))
            for action, count in activations.items()
        }

    def read(self, now: float, tick_s: float) -> tuple[dict[str, PromLatencyStats], dict[str, str]]:
        """(stats of every action with data this tick, why every other action seen has none).

        ``now`` and ``tick_s`` are the loop's (run time, s); the first call also reads the counters
        ``first_lookback_s`` earlier, so that the first tick has something to difference with (its
        counts are then the rate over that span, spread over the tick). Raises a
        :class:`controller.clients.prometheus.PromQLError` when a query fails.
        """
        first = not self._primed
        if first:
            before = self._read_all(now - max(tick_s, self.first_lookback_s))
            self._last.update(before)
            self._present = set(before)
            self._primed = True
        current = self._read_all(now)
        stats: dict[str, PromLatencyStats] = {}
        why: dict[str, str] = {}
        for action, reading in current.items():
            last = self._last.get(action)
            if last is None and first:
                # Its series began at an unknown time within the look-back: what it holds is no rate.
                self._last[action] = reading
                why[action] = "its counters are read for the first time; counting starts next tick"
                continue
            if last is None:
                # A new series since the previous tick: every activation it holds happened since.
                last = _Reading(reading.stamp_s - tick_s, 0.0, 0.0, {}, 0.0)
            elif action not in self._present:
                self._last[action] = reading
                why[action] = "its series came back after a gap in Prometheus; counting resumes next tick"
                continue
            span = reading.stamp_s - last.stamp_s
            if not span > 0:
                why[action] = ("no new scrape of its counters since the last tick (Prometheus scrapes less often "
                               "than the daemon ticks?)")
                continue
            stats[action] = _difference(last, reading, tick_s / span)
            self._last[action] = reading
        self._present = set(current)
        return stats, why


def _bound(raw: str | None) -> float | None:
    try:
        return float(raw) if raw is not None else None  # "+Inf" parses as inf
    except ValueError:
        return None


def _difference(last: _Reading, now: _Reading, scale: float) -> PromLatencyStats:
    """What happened between two readings of one action, its counts scaled by ``scale``."""
    done = counter_increase(last.activations, now.activations)
    cold = counter_increase(last.cold_starts, now.cold_starts)
    deltas = {}
    for metric in _HISTOGRAMS:
        before, after = last.buckets.get(metric, {}), now.buckets.get(metric, {})
        reset = any(after.get(le, 0.0) < count for le, count in before.items())
        deltas[metric] = {le: count if reset else count - before.get(le, 0.0) for le, count in after.items()}
    runs = deltas["openwhisk_action_duration_seconds"].get(math.inf, 0.0)
    if not (done > 0 and runs > 0):
        return PromLatencyStats(done * scale, cold * scale, math.nan, math.nan, math.nan)
    # Warm activations have no init: they sit at 0 in the init histogram over every activation.
    cold_inits = deltas["openwhisk_action_initTime_seconds"]
    warm = max(done - cold_inits.get(math.inf, 0.0), 0.0)
    inits = {0.0: warm, **{le: count + warm for le, count in cold_inits.items()}}
    inits.setdefault(math.inf, done)

    def latency(q: float) -> float:
        return (histogram_quantile(q, deltas["openwhisk_action_waitTime_seconds"]) + histogram_quantile(q, inits)
                + histogram_quantile(q, deltas["openwhisk_action_duration_seconds"]))

    run_s = counter_increase(last.duration_sum_s, now.duration_sum_s)
    return PromLatencyStats(done * scale, cold * scale, latency(0.5), latency(0.99), run_s / runs)


# --- warm pools ---------------------------------------------------------------------------------


class WarmPoolMode(enum.Enum):
    """What the backend does with a container target (``Decisions.containers``)."""

    REJECT = "reject"
    """Turn nothing: every managed target (k >= 0) is reported REJECTED. Stock OpenWhisk has no API
    that keeps k containers of one action warm. The default, so nothing is changed behind the
    operator's back."""
    INSTANCES_LIMIT = "instances-limit"
    """Set the action's ``limits.instances`` to k (OpenWhisk with the new scheduler, 2023+): a cap on
    the action's containers, not a floor; k = 0 is rejected. Updating an action makes a new
    revision, whose first invocations start cold."""


_NOT_STOCK = "not supported by stock OpenWhisk"


# --- the backend --------------------------------------------------------------------------------


class OpenWhiskBackend:
    """A real OpenWhisk deployment behind the backend contract (see the module docstring)."""

    name = "openwhisk"

    def __init__(
        self,
        client: OpenWhiskClient,
        function_names: Sequence[str],
        slo_s: Sequence[float],
        *,
        epoch_origin_ms: float,
        namespace: str,
        runtime: ContainerRuntime | None = None,
        prometheus: PrometheusLatency | None = None,
        warm_pool: WarmPoolMode = WarmPoolMode.REJECT,
        invoker_cores: float = 8.0,
        invoker_memory_mb: float = 2048.0,
        lookback_s: float = 120.0,
    ) -> None:
        if len(slo_s) != len(function_names):
            raise ValueError(f"openwhisk backend: {len(function_names)} functions but {len(slo_s)} SLOs")
        self.client = client
        self.function_names = tuple(function_names)
        """Actions managed, in the snapshot's order."""
        self.slo_s = np.asarray(slo_s, dtype=float)
        """SLO per function, s."""
        self.namespace = namespace
        """The actions' namespace, as it appears in container names (not ``_``)."""
        self.runtime = runtime
        """Container runtime of the invokers; None: no containers observed, no shares set."""
        self.prometheus = prometheus
        """Latency from user-events metrics instead of the activations API, if set."""
        self.warm_pool = warm_pool
        self.invoker_cores = float(invoker_cores)
        """CPU cores of one invoker (not exposed by OpenWhisk's API)."""
        self.invoker_memory_mb = float(invoker_memory_mb)
        """User memory of one invoker, MB (``whisk.containerPool.userMemory``)."""
        self.activations = ActivationWindow(client, epoch_origin_ms, lookback_s)
        kube = runtime.kubernetes if runtime is not None else False
        self._keys = [action_key(namespace, n, kubernetes=kube) for n in self.function_names]
        counts: dict[str, int] = {}
        for key in self._keys:
            counts[key] = counts.get(key, 0) + 1
        self._ambiguous = {key for key, c in counts.items() if c > 1}
        """Keys shared by several managed actions (names differing only in '-' or '.'): their
        containers cannot be told apart, so they are never observed or changed."""
        n = len(self.function_names)
        self._last_now = 0.0
        self._observed = False
        self._memory_mb: np.ndarray | None = None
        self._recent: list[deque[float]] = [deque(maxlen=3) for _ in range(n)]
        self._cpu_seen: dict[str, float] = {}
        self._shares_target = np.full(n, KEEP_SHARES, dtype=np.int64)
        """The shares in force per function, as the loop last asked: every container of the action
        whose observed shares differ gets them whenever the action is written (a desired state,
        compared with each container's observed shares; not a record of what was sent)."""
        self._view: RuntimeView | None = None
        self.problems: tuple[ObservationProblem, ...] = ()
        """What the last observation lost: functions without data and why (``controller.clients.errors``)."""

    # --- observe --------------------------------------------------------------------------------

    def observe(self, now: float) -> ClusterSnapshot:
        """The tick since the last good observation. Raises ``ObservationError`` when the latency
        source (activations API or Prometheus) or the action list cannot be read; rows that could
        not be observed are invalid and listed with their cause in :attr:`problems`."""
        if now <= self._last_now:
            raise ValueError(f"openwhisk backend: now={now} s is not after the last observation at {self._last_now} s")
        self.problems = ()
        tick_s = now - self._last_now
        first = not self._observed
        if self._memory_mb is None:
            self._memory_mb = self._action_memory()
        n = len(self.function_names)
        cols = {k: np.full(n, np.nan) for k in (
            "arrivals", "completions", "in_flight", "queued", "p50_latency_s", "p99_latency_s", "mean_exec_s",
            "recent_exec_s", "cold_starts", "slo_violations", "containers", "busy_containers", "cpu_shares",
            "cpu_used_core_s", "cpu_alloc_core_s", "memory_mb")}
        valid = np.ones(n, dtype=bool)
        problems: list[ObservationProblem] = []
        self._observe_latency(now, tick_s, cols, valid, problems)
        # Only now is the tick good: the next one covers the time since this one.
        self._last_now, self._observed = now, True
        invokers = self._observe_runtime(tick_s, first, cols, valid, problems)
        names = self.function_names
        if self._memory_mb is not None:
            cols["memory_mb"] = np.where(np.isnan(cols["memory_mb"]), self._memory_mb, cols["memory_mb"])
        self.problems = tuple(problems)
        functions = FunctionStats(names=names, slo_s=self.slo_s, valid=valid, **cols)
        return ClusterSnapshot(time_s=now, tick_s=tick_s, functions=functions, invokers=invokers)

    def _observe_latency(self, now: float, tick_s: float, cols: dict[str, np.ndarray], valid: np.ndarray,
                         problems: list[ObservationProblem]) -> None:
        if self.prometheus is not None:
            try:
                stats, why = self.prometheus.read(now, tick_s)
            except PromQLError as error:
                raise ObservationError.from_error("prometheus", error) from None
            absent: dict[str, list[str]] = {}
            for i, name in enumerate(self.function_names):
                s = stats.get(name)
                if s is None:
                    valid[i] = False
                    cause = why.get(name, f"Prometheus has no series of {_ACTIVATIONS} for it (never invoked since "
                                          "the user-events service started, or not scraped)")
                    absent.setdefault(cause, []).append(name)
                    continue
                if s.completions > 0 and not np.isfinite(s.p99_s):
                    valid[i] = False
                    absent.setdefault("its latency histograms are missing from Prometheus", []).append(name)
                    continue
                cols["completions"][i] = cols["arrivals"][i] = s.completions
                cols["cold_starts"][i] = s.cold_starts
                if s.completions > 0:
                    cols["p50_latency_s"][i], cols["p99_latency_s"][i] = s.p50_s, s.p99_s
                    cols["mean_exec_s"][i] = s.mean_exec_s
            problems.extend(ObservationProblem(None, "prometheus", cause, tuple(names)) for cause, names in absent.items())
            return
        try:
            fresh = self.activations.read(now)
        except OpenWhiskError as error:
            raise ObservationError.from_error("activations", error) from None
        for i, name in enumerate(self.function_names):
            try:
                tick = summarise(fresh.get(name, ()))
            except ValueError as error:
                valid[i] = False
                problems.append(ObservationProblem(ObservationKind.MALFORMED, "activations", str(error), (name,)))
                continue
            fill_activation_columns(cols, i, tick, self.slo_s[i], self._recent[i])
            # The activations API lists started activations only: arrivals that still wait are not
            # visible, so arrivals are estimated by the completions of the tick.
            cols["arrivals"][i] = cols["completions"][i]
        if self.activations.unusable:
            problems.append(ObservationProblem(
                ObservationKind.MALFORMED, "activations",
                f"{self.activations.unusable} activation record(s) without an id or an action name were left out", ()))

    def _observe_runtime(self, tick_s: float, first: bool, cols: dict[str, np.ndarray], valid: np.ndarray,
                         problems: list[ObservationProblem]) -> InvokerStats:
        if self.runtime is None:
            self._view = None
            return InvokerStats(names=(), cores=[], memory_mb=[], memory_used_mb=[], cpu_used_core_s=[],
                                cpu_shares_allocated=[], valid=[])
        try:
            view = self.runtime.read()
        except RuntimeUnavailable as error:
            # Kubernetes knows no invokers in advance: the failure is then the whole runtime's.
            view = RuntimeView((), {inv: str(error) for inv in self.runtime.invokers} or {self.runtime.name: str(error)})
        self._view = view
        invoker_names = list(self.runtime.invokers)
        for c in view.containers:
            if c.invoker not in invoker_names:
                invoker_names.append(c.invoker)
        index = {key: i for i, key in enumerate(self._keys) if key not in self._ambiguous}
        m = len(invoker_names)
        inv_row = {name: j for j, name in enumerate(invoker_names)}
        inv_mem, inv_shares, inv_cpu = np.zeros(m), np.zeros(m), np.zeros(m)
        inv_cpu_known = np.ones(m, dtype=bool)
        counts = np.zeros(len(self.function_names))
        busy = np.zeros(len(self.function_names))
        busy_known = np.ones(len(self.function_names), dtype=bool)
        shares_sum = np.zeros(len(self.function_names))
        cpu = np.zeros(len(self.function_names))
        cpu_known = np.ones(len(self.function_names), dtype=bool)
        seen: dict[str, float] = {}
        for c in view.containers:
            j = inv_row[c.invoker]
            inv_mem[j] += c.memory_mb
            inv_shares[j] += 0.0 if math.isnan(c.cpu_shares) else c.cpu_shares
            delta = None
            if c.cpu_total_s is not None:
                seen[c.ref] = c.cpu_total_s
                if not first:
                    delta = c.cpu_total_s - self._cpu_seen.get(c.ref, 0.0)
                    inv_cpu[j] += max(delta, 0.0)
            else:
                inv_cpu_known[j] = False
                if c.ref in self._cpu_seen:  # kept: its next reading is a delta from this one, not a lifetime
                    seen[c.ref] = self._cpu_seen[c.ref]
            i = index.get(c.key)
            if i is None:
                continue
            counts[i] += 1
            cols["memory_mb"][i] = c.memory_mb
            shares_sum[i] += c.cpu_shares
            if c.busy is None:
                busy_known[i] = False
            else:
                busy[i] += c.busy
            if delta is None:
                cpu_known[i] = False
            else:
                cpu[i] += max(delta, 0.0)
        if view.failed:  # the containers of an unread host keep their last readings for the next tick
            seen = {**self._cpu_seen, **seen}
        self._cpu_seen = seen
        # Functions are observable only if every invoker was read and their key is unambiguous:
        # a partial count would read as fewer containers.
        complete = not view.failed
        if not complete:
            valid[:] = False
            down = "; ".join(f"{invoker}: {why}" for invoker, why in sorted(view.failed.items()))
            problems.append(ObservationProblem(ObservationKind.UNREACHABLE, "runtime",
                                               f"containers not counted: {down}", self.function_names))
        ambiguous = [name for name, key in zip(self.function_names, self._keys) if key in self._ambiguous]
        if ambiguous:
            valid[[i for i, key in enumerate(self._keys) if key in self._ambiguous]] = False
            problems.append(ObservationProblem(None, "runtime", "container names cannot tell these actions apart",
                                               tuple(ambiguous)))
        for i in index.values():
            if not complete:
                continue
            cols["containers"][i] = counts[i]
            cols["busy_containers"][i] = busy[i] if busy_known[i] else np.nan
            cols["in_flight"][i] = cols["busy_containers"][i]
            if counts[i]:
                cols["cpu_shares"][i] = shares_sum[i] / counts[i]
            cols["cpu_used_core_s"][i] = cpu[i] if (cpu_known[i] and not first) else np.nan
            # Allocation at the snapshot instant held over the tick (the runtime is read once a tick).
            cols["cpu_alloc_core_s"][i] = shares_sum[i] / SHARES_PER_CORE * tick_s if not math.isnan(shares_sum[i]) else np.nan
        inv_valid = np.array([name not in view.failed for name in invoker_names], dtype=bool)
        return InvokerStats(
            names=tuple(invoker_names),
            cores=np.full(m, self.invoker_cores),
            memory_mb=np.full(m, self.invoker_memory_mb),
            memory_used_mb=inv_mem,
            cpu_used_core_s=np.where(inv_cpu_known & (not first), inv_cpu, np.nan),
            cpu_shares_allocated=inv_shares,
            valid=inv_valid,
        )

    def _action_memory(self) -> np.ndarray:
        """Memory limit of each managed action, MB (NaN where not deployed); raises ``ObservationError``
        when the actions cannot be listed."""
        memory = np.full(len(self.function_names), np.nan)
        actions: list[dict[str, Any]] = []
        page = 200
        try:
            while True:
                batch = self.client.list_actions(limit=page, skip=len(actions))
                actions.extend(batch)
                if len(batch) < page:
                    break
        except OpenWhiskError as error:
            raise ObservationError.from_error("actions", error) from None
        by_name = {a.get("name"): a for a in actions}
        for i, name in enumerate(self.function_names):
            limits = (by_name.get(name) or {}).get("limits")
            limit = limits.get("memory") if isinstance(limits, dict) else None
            if isinstance(limit, (int, float)) and not isinstance(limit, bool):
                memory[i] = float(limit)
        return memory

    # --- act ------------------------------------------------------------------------------------

    def apply(self, decisions: Decisions, now: float) -> list[ActionFailure]:
        failures: list[ActionFailure] = []
        for i in np.flatnonzero(decisions.valid):
            if i >= len(self.function_names):
                failures.append(ActionFailure(f"#{i}", FailureKind.UNKNOWN_FUNCTION, f"no function at index {i}"))
                continue
            name = self.function_names[i]
            failure = self._apply_pool(i, name, int(decisions.containers[i]))
            if failure is not None:
                failures.append(failure)
            shares = int(decisions.cpu_shares[i])
            if shares != KEEP_SHARES:
                self._shares_target[i] = shares
            failure = self._apply_shares(i, name)
            if failure is not None:
                failures.append(failure)
        return failures

    def _apply_pool(self, i: int, name: str, target: int) -> ActionFailure | None:
        """Hold the action to ``target`` through the knob of :attr:`warm_pool`. The action's
        ``limits.instances`` is read first and written only when it differs (an update makes a new
        revision, whose first invocations start cold): idempotent against what the platform holds,
        so a platform that lost the limit gets it again."""
        if target == UNMANAGED:
            return None
        if self.warm_pool is WarmPoolMode.REJECT or target == 0:
            what = "scale to zero" if target == 0 else f"keeping {target} warm containers"
            return ActionFailure(name, FailureKind.REJECTED, f"{what} is {_NOT_STOCK} (no per-action container count)")
        try:
            action = self.client.get_action(name)
            limits = dict(action.get("limits") or {})
            if limits.get("instances") == target:
                return None
            limits["instances"] = target
            self.client.put_action(name, {"limits": limits}, overwrite=True)
        except NotFound as error:
            return ActionFailure(name, FailureKind.UNKNOWN_FUNCTION, str(error))
        except (RequestRejected, Unauthorized) as error:
            return ActionFailure(name, FailureKind.REJECTED, f"limits.instances={target}: {error}")
        except OpenWhiskError as error:
            return ActionFailure(name, FailureKind.UNAVAILABLE, str(error))
        return None

    def _apply_shares(self, i: int, name: str) -> ActionFailure | None:
        target = int(self._shares_target[i])
        if target == KEEP_SHARES:
            return None
        if self.runtime is None:
            return ActionFailure(name, FailureKind.REJECTED,
                                 f"CPU shares are {_NOT_STOCK} without access to the invokers' Docker hosts or Kubernetes API")
        key = self._keys[i]
        if key in self._ambiguous:
            return ActionFailure(name, FailureKind.REJECTED,
                                 f"container name part {key!r} is shared with another managed action: its containers cannot be told apart")
        view = self._view
        if view is None:
            try:
                view = self.runtime.read()
            except RuntimeUnavailable as error:
                return ActionFailure(name, FailureKind.UNAVAILABLE, str(error))
        problems: list[str] = []
        kind = None
        for c in view.containers:
            if c.key != key or c.cpu_shares == target:
                continue
            try:
                self.runtime.set_shares(c, target)
            except RuntimeRejected as error:
                kind = FailureKind.REJECTED
                problems.append(str(error))
            except RuntimeUnavailable as error:
                kind = kind or FailureKind.UNAVAILABLE
                problems.append(str(error))
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return ActionFailure(name, kind or FailureKind.INTERNAL, problems[0] + more)
        return None


def docker_default_shares(memory_mb: float, user_memory_mb: float) -> int:
    """OpenWhisk's CPU shares for a container: 1024 split by memory, at least 2 (ContainerPoolConfig.cpuShare)."""
    return max(int(SHARES_PER_CORE // max(user_memory_mb // memory_mb, 1)), 2)


def memory_for_shares(shares: int, user_memory_mb: float) -> float:
    """The smallest action memory, MB, whose default shares are at least ``shares`` (the memory knob)."""
    if shares <= 0:
        raise ValueError(f"shares must be > 0, got {shares}")
    return user_memory_mb / max(SHARES_PER_CORE // shares, 1)


# --- from settings ------------------------------------------------------------------------------


def promql_query(reader: PrometheusReader, epoch_origin_s: float) -> PromQuery:
    """The PromQL reader as :class:`PrometheusLatency` asks it: ``time`` is run time (s since the run's
    time 0, the loop's ``now``), Prometheus evaluates at Unix time, and each sample becomes
    ``(labels, value)``. The one place where the two meet."""

    def query(expr: str, time: float) -> list[tuple[Mapping[str, str], float]]:
        return [(sample.labels, sample.value) for sample in reader.instant(expr, epoch_origin_s + time)]

    return query


def own_namespace(client: OpenWhiskClient) -> str:
    """The real name of the key's namespace (``GET /api/v1/namespaces`` lists the key's namespaces).

    Raises :class:`SettingsError` naming ``openwhisk.namespace`` when it cannot be told: the API cannot
    be read (a wrong key shows here first), or the key has several namespaces.
    """
    try:
        _, body = client.request("GET", "/api/v1/namespaces")
    except OpenWhiskError as error:
        raise SettingsError(
            f"openwhisk.namespace is '_' and its real name (needed for container names and metric labels) "
            f"could not be looked up: {error}. Check openwhisk.api_host and openwhisk.auth, or set "
            "openwhisk.namespace to the name (e.g. guest)"
        ) from None
    names = body if isinstance(body, list) and all(isinstance(n, str) for n in body) else []
    if len(names) != 1:
        raise SettingsError(
            f"openwhisk.namespace is '_' but the key's namespaces are {names}: set openwhisk.namespace to the "
            "one that owns openwhisk.functions"
        )
    return names[0]


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _docker_runtime(ow: OpenWhiskSettings) -> ContainerRuntime:
    """:class:`controller.backends.docker_runtime.DockerRuntime` for ``ow.docker_hosts``, with the client
    certificate of ``ow.docker_tls_dir`` for ``tcp://`` and ``https://`` engines, which are checked
    against its ``ca.pem`` whatever ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` say (docker imported
    here). Each engine's API version is negotiated at first contact, not here."""
    import docker.errors
    import docker.tls

    from controller.backends.docker_runtime import DockerRuntime

    tls: docker.tls.TLSConfig | None = None
    if ow.docker_tls_dir is not None:
        folder = ow.docker_tls_dir
        try:
            tls = docker.tls.TLSConfig(client_cert=(str(folder / "cert.pem"), str(folder / "key.pem")),
                                       ca_cert=str(folder / "ca.pem"), verify=True)
        except docker.errors.TLSParameterError as error:
            raise SettingsError(f"openwhisk.docker_tls_dir={folder}: {error} (ca.pem, cert.pem and key.pem "
                                "are needed)") from None
    return DockerRuntime(ow.docker_hosts, timeout_s=ow.runtime_timeout_s, tls=tls)


def kubernetes_api_client(kubeconfig: Path | None) -> Any:
    """A Kubernetes ``ApiClient``: from ``kubeconfig`` when given; else the pod's service account when
    running in Kubernetes; else ``$KUBECONFIG`` or ``~/.kube/config``. The kubernetes package is imported
    here, so that other runtimes never load it. Raises :class:`SettingsError` saying what was tried."""
    import yaml
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    configuration = k8s.Configuration()
    tried = []
    if kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
            return k8s.ApiClient(configuration)
        except ConfigException as error:
            tried.append(f"in-cluster service account: {error}")
    try:
        # persist_config=False: never write refreshed tokens back (the root filesystem is read-only).
        k8s_config.load_kube_config(config_file=str(kubeconfig) if kubeconfig is not None else None,
                                    client_configuration=configuration, persist_config=False)
    except (ConfigException, OSError, yaml.YAMLError) as error:
        where = f"openwhisk.kubeconfig={kubeconfig}" if kubeconfig is not None else "$KUBECONFIG or ~/.kube/config"
        tried.append(f"{where}: {' '.join(str(error).split())}")
        raise SettingsError("openwhisk.runtime=kubernetes but no Kubernetes API configuration could be loaded ("
                            + "; ".join(tried) + "): run in a pod with a service account, or set "
                            "openwhisk.kubeconfig") from None
    return k8s.ApiClient(configuration)


def _start_problems(ow: OpenWhiskSettings) -> list[str]:
    """What this backend needs that the settings lack (the group itself checks only its consistency)."""
    problems = []
    if ow.api_host is None:
        problems.append("openwhisk.api_host is not set: the URL of OpenWhisk's API, e.g. "
                        "http://owdev-controller.openwhisk.svc.cluster.local:8080")
    if ow.auth is None:
        problems.append("openwhisk.auth is not set: give the API key uuid:key as MFRM_OPENWHISK__AUTH")
    elif ":" not in ow.auth.get_secret_value().strip(":"):
        problems.append("openwhisk.auth is not an API key of the form uuid:key")
    if not ow.functions:
        problems.append("openwhisk.functions is empty: list the actions to manage (with their openwhisk.slo_s)")
    if ow.latency_source == "prometheus" and ow.prometheus_url is None:
        problems.append("openwhisk.prometheus_url is not set but openwhisk.latency_source is prometheus")
    if ow.runtime == "docker":
        if not ow.docker_hosts:
            problems.append("openwhisk.docker_hosts is empty but openwhisk.runtime is docker: map each invoker "
                            "to its Docker Engine URL")
        for invoker, url in ow.docker_hosts.items():
            split = urlsplit(url)
            plain = split.scheme == "http" or (split.scheme == "tcp" and ow.docker_tls_dir is None)
            if plain and split.hostname not in _LOOPBACK:
                problems.append(f"openwhisk.docker_hosts.{invoker}={url}: plain TCP to a Docker engine lets anyone "
                                "on the network be root on that host; set openwhisk.docker_tls_dir (mutual TLS)")
    return problems


def from_settings(settings: Settings, *, epoch_origin_ms: float | None = None) -> OpenWhiskBackend:
    """The backend of ``settings.openwhisk`` (``mfrm run --backend openwhisk``; see
    :class:`controller.settings.OpenWhiskSettings` and docs/backends.md).

    Builds the API client, the PromQL reader (``latency_source=prometheus``), the container runtime
    (``runtime=docker`` or ``kubernetes``; their client libraries are imported only then) and the
    backend. What it needs and lacks is reported at once, as one :class:`SettingsError` naming every
    key at fault. ``epoch_origin_ms`` is the platform time (ms since the epoch) of the run's time 0;
    default now, so activations from before the daemon started are not observed.
    """
    ow = settings.openwhisk
    problems = _start_problems(ow)
    if problems:
        raise SettingsError("the openwhisk backend cannot start:\n  " + "\n  ".join(problems))
    assert ow.api_host is not None and ow.auth is not None  # checked above
    origin_ms = time.time() * 1000.0 if epoch_origin_ms is None else float(epoch_origin_ms)
    runtime: ContainerRuntime | None = None
    if ow.runtime == "docker":
        runtime = _docker_runtime(ow)
    elif ow.runtime == "kubernetes":
        from controller.backends.kube_runtime import KubeRuntime

        runtime = KubeRuntime(kubernetes_api_client(ow.kubeconfig), ow.kubernetes_namespace,
                             timeout_s=ow.runtime_timeout_s)
    client = OpenWhiskClient(
        ow.api_host, ow.auth.get_secret_value(), namespace=ow.namespace, connect_timeout_s=ow.connect_timeout_s,
        read_timeout_s=ow.read_timeout_s, retry=RetryPolicy(max_attempts=ow.max_attempts),
        rng=np.random.default_rng(settings.seed), verify_tls=ow.verify_tls,
    )
    namespace = ow.namespace
    if namespace == OWN_NAMESPACE and (runtime is not None or ow.latency_source == "prometheus"):
        namespace = own_namespace(client)
    prometheus = None
    if ow.latency_source == "prometheus":
        assert ow.prometheus_url is not None  # checked above
        reader = PrometheusReader(ow.prometheus_url, timeout_s=ow.prometheus_timeout_s)
        prometheus = PrometheusLatency(promql_query(reader, origin_ms / 1000.0), namespace,
                                       first_lookback_s=ow.lookback_s)
    slo_s = [ow.slo_s.get(name, ow.default_slo_s) for name in ow.functions]
    return OpenWhiskBackend(
        client, ow.functions, slo_s, epoch_origin_ms=origin_ms, namespace=namespace, runtime=runtime,
        prometheus=prometheus, warm_pool=WarmPoolMode(ow.warm_pool), invoker_cores=ow.invoker_cores,
        invoker_memory_mb=ow.invoker_memory_mb, lookback_s=ow.lookback_s,
    )


__all__ = [
    "OpenWhiskBackend",
    "PromQuery",
    "PrometheusLatency",
    "WarmPoolMode",
    "docker_default_shares",
    "from_settings",
    "kubernetes_api_client",
    "memory_for_shares",
    "own_namespace",
    "promql_query",
]
