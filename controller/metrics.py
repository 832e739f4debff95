"""The Prometheus exporter: every tick's report as metrics, on an injected registry.

:class:`MetricsExporter` is a :class:`controller.loop.MetricsSink` (``on_tick``) plus a few calls
the daemon makes around the loop (a failed tick, a tick's duration, a checkpoint, a config reload).
It registers everything on the ``CollectorRegistry`` it is given, so tests use a fresh registry and
read values with ``get_sample_value``, and two exporters never collide.

Naming: every name starts with ``mfrm_``, carries its unit (``_seconds``, ``_ratio`` for values in
[0, 1]) and counters end in ``_total``. :data:`METRIC_NAMES` lists every family this module
exports (the Grafana dashboards are checked against it).

Labels are bounded, so the number of series cannot grow with traffic:

* ``function``: only names of the configured function set (when one is given) and at most
  ``max_functions`` of them, in the order first seen; the rest are left out of the per-function
  series (counted in ``mfrm_functions_unexported``, logged once) but still count in every
  aggregate. Never container or activation ids.
* ``kind`` (backend errors): :data:`ERROR_KINDS`; ``reason`` (no decision): :data:`NO_DECISION_REASONS`;
  ``name`` (learner diagnostics): the names the learner declares (``policies.types.Learner.diagnostics``),
  other keys are dropped (logged once); ``outcome`` (guard): :data:`GUARD_OUTCOMES`;
  ``bin``: the lower edge of each μ bin; ``resource``/``direction``: two and three fixed values.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controller.backends.base import FailureKind
from controller.clients.errors import OBSERVATION_KINDS, ObservationProblem
from controller.loop import TickReport
from policies.fallback import FALLBACK_REASONS
from policies.types import KEEP_SHARES, UNMANAGED

log = logging.getLogger(__name__)

#: Error kinds of ``mfrm_backend_errors_total{kind}``: the action failure kinds of
#: ``controller.backends.base.FailureKind`` plus what a failed observation can be
#: (``controller.clients.errors.ObservationKind``: unauthorized, throttled, server_error, timeout,
#: unreachable, malformed; ``rejected`` is in both).
ERROR_KINDS: tuple[str, ...] = tuple(dict.fromkeys((*(kind.value for kind in FailureKind), *OBSERVATION_KINDS)))

#: Why a function got no decision in a tick (``mfrm_no_decisions_total{reason}``):
#: ``no_data`` its row was not observed (scrape failed, metric missing, stale);
#: ``tick_failed`` the whole observation failed (every known function counts);
#: ``policy`` the row had data but the policy chose not to decide (e.g. warming up).
NO_DECISION_REASONS: tuple[str, ...] = ("no_data", "tick_failed", "policy")

#: What the guard did to the decisions of a tick (``mfrm_guard_decisions_total{outcome}``):
#: ``clamped`` passed after a bound, the per-tick step limit or the cluster's capacity changed it;
#: ``unchanged`` skipped as equal to the targets in force; ``blocked_invalid`` dropped because the
#: function's row had no data (or its observed pool was unknown); ``reapplied`` the targets in force
#: written again because the observed state differed from them (a function, not a decision).
GUARD_OUTCOMES: tuple[str, ...] = ("clamped", "unchanged", "blocked_invalid", "reapplied")

#: Tick duration buckets, s: a sim tick of a few functions takes milliseconds; a real backend's
#: observation is bounded by HTTP timeouts of seconds.
TICK_DURATION_BUCKETS_S: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                              2.5, 5.0, 10.0, 30.0, 60.0)

#: Every metric family the exporter exposes, as it appears in ``/metrics`` (a histogram adds
#: ``_bucket``, ``_sum`` and ``_count`` series to its family name).
METRIC_NAMES: tuple[str, ...] = (
    "mfrm_build_info",
    "mfrm_dry_run",
    "mfrm_ticks_total",
    "mfrm_tick_duration_seconds",
    "mfrm_ticks_completed",
    "mfrm_last_successful_tick_timestamp_seconds",
    "mfrm_last_full_observation_timestamp_seconds",
    "mfrm_tick_overruns_total",
    "mfrm_functions_observed",
    "mfrm_functions_unexported",
    "mfrm_decision_target_containers",
    "mfrm_decision_cpu_shares",
    "mfrm_decision_changes_total",
    "mfrm_no_decisions_total",
    "mfrm_containers",
    "mfrm_invocations_total",
    "mfrm_cold_starts_total",
    "mfrm_reward_ratio",
    "mfrm_reward_mean_ratio",
    "mfrm_mean_field_ratio",
    "mfrm_latency_p99_seconds",
    "mfrm_slo_seconds",
    "mfrm_slo_violations_total",
    "mfrm_learner_diagnostic",
    "mfrm_guard_decisions_total",
    "mfrm_fallback_active",
    "mfrm_backend_errors_total",
    "mfrm_checkpoints_total",
    "mfrm_config_reloads_total",
    "mfrm_config_last_reload_successful",
)


def error_kind(error: BaseException) -> str:
    """The bounded :data:`ERROR_KINDS` label of an exception raised by a backend or a reader.

    An exception that says its own kind (an attribute ``kind`` holding a ``FailureKind`` or one of
    the labels, as the OpenWhisk client's and the PromQL reader's errors and
    ``controller.clients.errors.ObservationError`` do) is taken at its word; HTTP and network errors
    of ``requests`` and the standard library are classified by type and status code; anything else
    is ``internal`` (a bug to report).
    """
    kind = getattr(error, "kind", None)
    if isinstance(kind, FailureKind):
        return kind.value
    if isinstance(kind, str) and kind in ERROR_KINDS:
        return kind
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(status, int):
        if status in (401, 403):
            return "unauthorized"
        if status == 429:
            return "throttled"
        if status >= 500:
            return "server_error"
        if status >= 400:
            return "rejected"
    try:
        import requests
    except ModuleNotFoundError:  # the exporter itself does not need requests
        requests = None  # type: ignore[assignment]
    if requests is not None:
        if isinstance(error, requests.Timeout):
            return "timeout"
        if isinstance(error, requests.ConnectionError):
            return "unreachable"
        if isinstance(error, requests.JSONDecodeError):
            return "malformed"
    if isinstance(error, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(error, ConnectionError):
        return "unreachable"
    return "internal"


def _bin_labels(bins: int) -> list[str]:
    # Lower edge of each equal bin of [0, 1], two decimals: sorts as text in bin order.
    return [f"{i / bins:.2f}" for i in range(bins)]


class MetricsExporter:
    """Turns tick reports into Prometheus metrics (see the module docstring for names and labels)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        max_functions: int = 200,
        functions: Collection[str] | None = None,
        diagnostics: Collection[str] = (),
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``functions``: the configured function set (None: any name, first come); ``diagnostics``:
        the learner's diagnostic names (``policies.types.Learner.diagnostics``; empty for a baseline);
        ``wall_clock``: the Unix time stamped on ``mfrm_last_successful_tick_timestamp_seconds``."""
        if max_functions < 1:
            raise ValueError(f"max_functions must be >= 1, got {max_functions}")
        self.max_functions = max_functions
        self.allowed = frozenset(functions) if functions is not None else None
        self.diagnostic_names = tuple(diagnostics)
        """Learner diagnostics exported, each as ``mfrm_learner_diagnostic{name}``."""
        self._wall_clock = wall_clock
        self._labelled: dict[str, bool] = {}
        self._unexported: set[str] = set()
        self._warned_diagnostics: set[str] = set()
        self._known_functions = 0

        def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
            return Gauge(name, doc, tuple(labels), registry=registry)

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(name, doc, tuple(labels), registry=registry)

        self.build_info = gauge("mfrm_build_info", "Always 1; labels: mfrm version, backend and policy.",
                                ("version", "backend", "policy"))
        self.dry_run = gauge("mfrm_dry_run", "1 when the daemon decides but never acts (--dry-run).")
        self.ticks = counter("mfrm_ticks_total", "Ticks run, by result (ok or failed).", ("result",))
        self.tick_duration = Histogram("mfrm_tick_duration_seconds", "Wall time of one tick, s.",
                                       buckets=TICK_DURATION_BUCKETS_S, registry=registry)
        self.ticks_completed = gauge("mfrm_ticks_completed",
                                     "Ticks the policy has finished, counted across restarts (the tick a checkpoint "
                                     "records; a resumed daemon continues from its checkpoint's count).")
        self.last_success = gauge("mfrm_last_successful_tick_timestamp_seconds",
                                  "Unix time at which the last tick finished successfully, s.")
        self.last_full_observation = gauge(
            "mfrm_last_full_observation_timestamp_seconds",
            "Unix time of the last tick that observed the cluster (its observation succeeded and at least "
            "one function had data), s; 0 until the first. Alert on time() - x.")
        self.overruns = counter("mfrm_tick_overruns_total",
                                "Ticks that ran past their deadline (daemon.tick_deadline_s), good or failed.")
        self.functions_observed = gauge("mfrm_functions_observed", "Functions in the last snapshot.")
        self.functions_unexported = gauge("mfrm_functions_unexported",
                                          "Functions left out of the per-function series (label cap or not configured).")
        self.target_containers = gauge("mfrm_decision_target_containers",
                                       "Containers the policy decided for the function (-1: left to the platform).",
                                       ("function",))
        self.target_shares = gauge("mfrm_decision_cpu_shares", "CPU shares per container the policy decided.",
                                   ("function",))
        self.changes = counter("mfrm_decision_changes_total",
                               "Target changes passed by the guard (applied, or would be in dry run), by resource "
                               "(containers, cpu_shares) and direction against the observed value (up, down, unmanaged).",
                               ("resource", "direction"))
        self.no_decisions = counter("mfrm_no_decisions_total", "Function-ticks without a decision, by reason.",
                                    ("reason",))
        self.containers = gauge("mfrm_containers", "Containers of the function observed in the last snapshot.",
                                ("function",))
        self.invocations = counter("mfrm_invocations_total", "Invocations that arrived (observed rows only).",
                                   ("function",))
        self.cold_starts = counter("mfrm_cold_starts_total", "Invocations that waited for a cold start.",
                                   ("function",))
        self.reward = gauge("mfrm_reward_ratio", "Reward of the function in the last tick, in [0, 1]; NaN: no outcome.",
                            ("function",))
        self.reward_mean = gauge("mfrm_reward_mean_ratio", "Mean reward over the functions with an outcome; NaN: none.")
        self.mean_field = gauge("mfrm_mean_field_ratio",
                                "Mean-field estimate: share of invokers whose CPU utilisation is in the bin "
                                "starting at the label's value.", ("bin",))
        self.latency_p99 = gauge("mfrm_latency_p99_seconds", "p99 latency of the function's completions in the "
                                 "last tick, s; NaN: none completed or no data.", ("function",))
        self.slo = gauge("mfrm_slo_seconds", "Latency objective of the function, s.", ("function",))
        self.slo_violations = counter("mfrm_slo_violations_total", "Completions slower than the function's SLO.",
                                      ("function",))
        self.diagnostics = gauge("mfrm_learner_diagnostic", "Learner diagnostics of the last update.", ("name",))
        self.fallback_active = gauge("mfrm_fallback_active",
                                     "1 while a learner has handed control to its heuristic, by why (violations: "
                                     "measurably more SLO violations than the heuristic would have had; memory: "
                                     "more memory without fewer violations); 0 otherwise.", ("reason",))
        self.guard_decisions = counter("mfrm_guard_decisions_total",
                                       "Decisions the guard changed or held back, by outcome (clamped: cut by a "
                                       "bound, step limit or capacity; unchanged: equal to the targets in force; "
                                       "blocked_invalid: the row had no data; reapplied: targets in force "
                                       "written again because the observed state differed).", ("outcome",))
        self.backend_errors = counter("mfrm_backend_errors_total",
                                      "Failed observations and actions, by kind.", ("kind",))
        self.checkpoints = counter("mfrm_checkpoints_total", "Checkpoints of the policy written.")
        self.config_reloads = counter("mfrm_config_reloads_total", "Config file reloads, by result.", ("result",))
        self.config_ok = gauge("mfrm_config_last_reload_successful",
                               "1 when the config in use is the file's current content, 0 when the last reload failed.")

        # Every bounded label value exists from the start, so rates and alerts see zeros, not gaps.
        for result in ("ok", "failed"):
            self.ticks.labels(result)
        for kind in ERROR_KINDS:
            self.backend_errors.labels(kind)
        for reason in NO_DECISION_REASONS:
            self.no_decisions.labels(reason)
        for resource in ("containers", "cpu_shares"):
            for direction in ("up", "down", "unmanaged"):
                self.changes.labels(resource, direction)
        for result in ("success", "failure"):
            self.config_reloads.labels(result)
        for outcome in GUARD_OUTCOMES:
            self.guard_decisions.labels(outcome)
        for reason in FALLBACK_REASONS:  # 0 unless a learner with a safety net hands over control
            self.fallback_active.labels(reason).set(0)
        for name in self.diagnostic_names:
            self.diagnostics.labels(name).set(float("nan"))
        self.config_ok.set(1)
        self.reward_mean.set(float("nan"))

    # ---- labels

    def _label(self, name: str) -> str | None:
        """``name`` if it may carry its own series, else None (logged once per name)."""
        known = self._labelled.get(name)
        if known is not None:
            return name if known else None
        allowed = (self.allowed is None or name in self.allowed) and (
            sum(self._labelled.values()) < self.max_functions
        )
        self._labelled[name] = allowed
        if not allowed:
            why = (
                "it is not in the configured function set"
                if self.allowed is not None and name not in self.allowed
                else f"the per-function metrics cap ({self.max_functions}) is reached"
            )
            log.warning("function %s is left out of the per-function metrics: %s", name, why)
            self._unexported.add(name)
            self.functions_unexported.set(len(self._unexported))
        return name if allowed else None

    # ---- the loop's sink

    def on_tick(self, report: TickReport) -> None:
        """Export one finished tick (``controller.loop.MetricsSink``)."""
        fns = report.snapshot.functions
        decisions = report.decisions
        guarded = report.guarded.decisions
        n = len(fns)
        self._known_functions = n
        self.ticks.labels("ok").inc()
        self.ticks_completed.set(report.tick + 1)
        self.last_success.set(self._wall_clock())
        self.functions_observed.set(n)

        guard = report.guarded
        for outcome, count in (("clamped", guard.clamped), ("unchanged", guard.unchanged),
                               ("blocked_invalid", guard.blocked_invalid), ("reapplied", guard.reapplied)):
            if count:
                self.guard_decisions.labels(outcome).inc(count)

        failed = {f.function for f in report.failures}
        for failure in report.failures:
            self.backend_errors.labels(failure.kind.value).inc()

        no_data = int(np.sum(~fns.valid))
        abstained = int(np.sum(fns.valid & ~decisions.valid))
        if no_data:
            self.no_decisions.labels("no_data").inc(no_data)
        if abstained:
            self.no_decisions.labels("policy").inc(abstained)

        for i in np.flatnonzero(guarded.valid):
            if fns.names[i] in failed:
                continue
            target = int(guarded.containers[i])
            if target == UNMANAGED:
                self.changes.labels("containers", "unmanaged").inc()
            elif target != fns.containers[i]:
                self.changes.labels("containers", "up" if target > fns.containers[i] else "down").inc()
            shares = int(guarded.cpu_shares[i])
            if shares != KEEP_SHARES and shares != fns.cpu_shares[i]:
                self.changes.labels("cpu_shares", "up" if shares > fns.cpu_shares[i] else "down").inc()

        rewards = report.rewards
        for i, name in enumerate(fns.names):
            label = self._label(name)
            if label is None:
                continue
            self.slo.labels(label).set(float(fns.slo_s[i]))
            self.reward.labels(label).set(float(rewards[i]) if i < len(rewards) else float("nan"))
            if decisions.valid[i]:
                self.target_containers.labels(label).set(int(decisions.containers[i]))
                if decisions.cpu_shares[i] != KEEP_SHARES:
                    self.target_shares.labels(label).set(int(decisions.cpu_shares[i]))
            if not fns.valid[i]:
                # No data is not zero load: the latency is unknown, counters do not move.
                self.latency_p99.labels(label).set(float("nan"))
                continue
            self.containers.labels(label).set(float(fns.containers[i]))
            self.latency_p99.labels(label).set(float(fns.p99_latency_s[i]))
            self.invocations.labels(label).inc(max(0.0, float(fns.arrivals[i])))
            self.cold_starts.labels(label).inc(max(0.0, float(fns.cold_starts[i])))
            self.slo_violations.labels(label).inc(max(0.0, float(fns.slo_violations[i])))

        finite = rewards[np.isfinite(rewards)]
        self.reward_mean.set(float(finite.mean()) if finite.size else float("nan"))
        for edge, share in zip(_bin_labels(len(report.mu)), report.mu):
            self.mean_field.labels(edge).set(float(share))
        self._export_diagnostics(report.diagnostics)

    def _export_diagnostics(self, diagnostics: Any) -> None:
        if "fallback_active" in diagnostics:
            for reason in FALLBACK_REASONS:
                self.fallback_active.labels(reason).set(float(diagnostics.get(f"fallback_reason_{reason}", 0.0)))
        for key, value in diagnostics.items():
            if key in self.diagnostic_names:
                self.diagnostics.labels(key).set(float(value))
            elif key not in self._warned_diagnostics:
                self._warned_diagnostics.add(key)
                log.info("learner diagnostic %r is not in the exported set; it is not exported", key)

    # ---- around the loop (called by the daemon)

    def on_tick_failed(self, kind: str) -> None:
        """A tick whose observation (or whole backend) failed: no function got a decision."""
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}; known kinds: {', '.join(ERROR_KINDS)}")
        self.ticks.labels("failed").inc()
        self.backend_errors.labels(kind).inc()
        # Every function known from earlier ticks lost its decision (at least one: the tick did).
        self.no_decisions.labels("tick_failed").inc(max(1, self._known_functions))

    def on_observation_problems(self, problems: Iterable[ObservationProblem]) -> None:
        """Count the errors behind rows an observation lost (one per problem and tick; absent data
        that is no error, ``kind`` None, is counted only as ``no_data`` by :meth:`on_tick`)."""
        for problem in problems:
            if problem.label is not None:
                self.backend_errors.labels(problem.label).inc()

    def on_full_observation(self) -> None:
        """A tick observed the cluster (see ``mfrm_last_full_observation_timestamp_seconds``)."""
        self.last_full_observation.set(self._wall_clock())

    def on_overrun(self) -> None:
        """A tick ran past its deadline."""
        self.overruns.inc()

    def observe_tick_duration(self, seconds: float) -> None:
        """Wall time one tick took, good or failed, s."""
        self.tick_duration.observe(max(0.0, seconds))

    def on_checkpoint(self) -> None:
        """A checkpoint was written."""
        self.checkpoints.inc()

    def on_config_reload(self, ok: bool) -> None:
        """The config file changed and was loaded (``ok``) or refused."""
        self.config_reloads.labels("success" if ok else "failure").inc()
        self.config_ok.set(1 if ok else 0)

    def set_info(self, *, version: str, backend: str, policy: str, dry_run: bool) -> None:
        """What runs: exported once at start."""
        self.build_info.labels(version, backend, policy).set(1)
        self.dry_run.set(1 if dry_run else 0)


__all__ = [
    "ERROR_KINDS",
    "GUARD_OUTCOMES",
    "METRIC_NAMES",
    "NO_DECISION_REASONS",
    "TICK_DURATION_BUCKETS_S",
    "MetricsExporter",
    "error_kind",
]
