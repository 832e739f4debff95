"""The daemon: one control loop on a real clock, its faults, config reloads, signals and the last checkpoint.

The pieces, each small and separately tested:

* :class:`controller.loop.ControlLoop` does one tick given ``now`` (it never reads a clock);
* :class:`controller.clock.IntervalDriver` calls :meth:`Daemon.tick` on a monotonic grid and backs
  off after failures;
* :class:`Daemon` turns one tick into "ok or why not": it reloads a changed config file, maps wall
  time to the loop's time, runs the loop, classifies a failure into a bounded error kind, logs why
  nothing was decided, and feeds the exporter and the health state;
* :class:`controller.metrics.MetricsExporter` and :class:`controller.daemon.health.EndpointServer`
  serve ``/metrics`` and ``/healthz`` from a thread;
* :func:`build_daemon` assembles them from settings (through ``controller.assemble``);
  :func:`install_signal_handlers` makes SIGTERM/SIGINT a bounded, checkpointed exit and SIGHUP a
  config reload.

Fault behaviour (docs/daemon.md and docs/reliability.md have the tables): an observation that fails
fails the tick — no decision anywhere, counted in ``mfrm_backend_errors_total{kind}`` (the kind the
client typed where it failed) and ``mfrm_no_decisions_total{reason="tick_failed"}``, logged once with
its cause and then summarised every ``daemon.log_repeat_s`` — and the daemon keeps ticking along
the backoff sequence; rows the backend could not observe get no decision (``reason="no_data"``)
while the others go on, logged the same way with the cause the backend recorded. Every backend call
is held to the tick's deadline (:mod:`controller.daemon.deadline`); a tick past it is counted in
``mfrm_tick_overruns_total``. ``/healthz`` turns 503 once no tick has observed the cluster for
``daemon.blind_after_s``. The first good tick after failures is logged as a recovery.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from prometheus_client import CollectorRegistry

from controller.assemble import build_loop
from controller.backends.base import Backend
from controller.checkpoint import Checkpointer
from controller.clients.errors import ObservationProblem, problems_of
from controller.clock import BackoffPolicy, Clock, IntervalDriver, TimeScale
from controller.daemon.deadline import DeadlineBackend, Interrupted
from controller.daemon.health import HealthState
from controller.daemon.reload import (
    ConfigWatcher,
    interval_of,
    settings_changes,
    tick_deadline_of,
    with_live_changes,
)
from controller.daemon.repeats import RepeatLog
from controller.guard import GuardBounds
from controller.loop import ControlLoop, LoopCounters, TickReport
from controller.metrics import MetricsExporter, error_kind
from controller.settings import Settings, SettingsError
from controller.version import __version__
from policies.types import Policy, is_learner

log = logging.getLogger(__name__)

#: Exit status when ``--once`` failed, or a shutdown did not finish in time.
EXIT_FAILED = 1

#: Most function names a "no data" log line lists (the count is always complete).
MAX_NAMES_IN_LOG = 10


class Daemon:
    """One control loop on a real clock: the tick, its faults, reloads, and the final checkpoint."""

    def __init__(
        self,
        loop: ControlLoop,
        exporter: MetricsExporter,
        clock: Clock,
        settings: Settings,
        *,
        sim_time: bool = False,
        checkpointer: Checkpointer | None = None,
        watcher: ConfigWatcher | None = None,
    ) -> None:
        """``sim_time``: the backend is the simulator, whose ticks each cover ``loop.tick_s`` of
        simulated time however long the wall interval is (the loop's clock is scaled). A backend
        wrapped in :class:`DeadlineBackend` is held to each tick's deadline."""
        self.loop = loop
        self.exporter = exporter
        self.clock = clock
        self.settings = settings
        self.sim_time = sim_time
        self.checkpointer = checkpointer
        self.watcher = watcher
        interval = interval_of(settings)
        d = settings.daemon
        self.time_scale = TimeScale(scale=self._scale(settings))
        self.health = HealthState(clock.monotonic(), d.health_stale_intervals * interval, d.blind_after_s)
        self.driver = IntervalDriver(clock, interval, BackoffPolicy(d.backoff_s))
        self.deadline_s = tick_deadline_of(settings)
        """Longest a tick may take, s (``daemon.tick_deadline_s``, or the interval)."""
        self.failures_in_a_row = 0
        self.saw_cluster = False
        """Whether the last tick observed the cluster (its observation succeeded and some function had data)."""
        self.last_cause = ""
        """Why the last tick failed or saw nothing (empty after one that saw the cluster)."""
        self._failures = RepeatLog(d.log_repeat_s)
        self._rows = RepeatLog(d.log_repeat_s)
        self._overruns = RepeatLog(d.log_repeat_s)
        self._reload_requested = False
        self._last_loop_time = 0.0

    def _scale(self, settings: Settings) -> float:
        return settings.loop.tick_s / interval_of(settings) if self.sim_time else 1.0

    # ---- one tick

    def tick(self, elapsed_s: float) -> bool:
        """Run one tick ``elapsed_s`` wall seconds after the start; True when it finished."""
        started = self.clock.monotonic()
        self._reload(elapsed_s)
        now = self.time_scale.loop_time(elapsed_s)
        backend = self.loop.backend
        if isinstance(backend, DeadlineBackend):
            backend.deadline_at_s = started + self.deadline_s
        try:
            report = self.loop.step(now)
        except Interrupted as error:
            # SIGTERM while the platform hangs: the tick is abandoned, the exit goes on without it.
            log.warning("%s: the tick is abandoned; the final checkpoint follows", error)
            self.saw_cluster = False
            self.last_cause = str(error)
            return False
        except Exception as error:  # noqa: BLE001 (every failure is classified, counted, logged, retried)
            self._failed(error, started)
            return False
        self._last_loop_time = now
        finished = self.clock.monotonic()
        self._timed(started, finished, report.tick)
        self.health.ended(finished, self.driver.interval_s)
        if self.failures_in_a_row:
            ended = self._failures.keep_only(set())
            since = min((seen.first_s for seen in ended.values()), default=finished)
            log.warning("recovered: tick %d finished after %d failed tick(s) over %.1f s", report.tick,
                        self.failures_in_a_row, finished - since)
            self.failures_in_a_row = 0
        problems = problems_of(backend)
        self.exporter.on_observation_problems(problems)
        partial = self._log_missing(report, problems, finished)
        fns = report.snapshot.functions
        self.saw_cluster = bool(fns.valid.any()) or len(fns) == 0
        if self.saw_cluster:
            self.last_cause = ""
            self.health.observed(finished, partial)
            self.exporter.on_full_observation()
        else:
            self.last_cause = f"no function had data: {partial}"
            self.health.saw_nothing(self.last_cause)
        log.debug(
            "tick %d (loop time %.1f s) in %.1f ms: %d/%d functions decided, %d change(s), %d failure(s)",
            report.tick, now, 1000 * (finished - started), int(report.decisions.valid.sum()),
            len(report.decisions), int(report.guarded.decisions.valid.sum()), len(report.failures),
        )
        return True

    def _timed(self, started: float, finished: float, tick: int | None) -> None:
        """Record how long a tick took, and count and log it when it ran past its deadline."""
        took = finished - started
        self.exporter.observe_tick_duration(took)
        if took <= self.deadline_s:
            return
        self.exporter.on_overrun()
        say = self._overruns.note("overrun", finished)
        which = "a failed tick" if tick is None else f"tick {tick}"
        if say is not None and say.first:
            log.warning("%s took %.2f s, past its deadline of %g s (daemon.tick_deadline_s): counted in "
                        "mfrm_tick_overruns_total; later overruns are summarised", which, took, self.deadline_s)
        elif say is not None:
            log.warning("%d more tick(s) ran past the %g s deadline in the last %.0f s (%d in all; %s took %.2f s)",
                        say.count, self.deadline_s, self.settings.daemon.log_repeat_s, say.total, which, took)

    def _failed(self, error: Exception, started: float) -> None:
        kind = error_kind(error)
        self.failures_in_a_row += 1
        self.saw_cluster = False
        self.exporter.on_tick_failed(kind)
        finished = self.clock.monotonic()
        self._timed(started, finished, None)
        reason = f"{kind}: {error}"
        self.last_cause = reason
        self.health.failed(reason)
        wait = max(self.driver.interval_s, self.driver.backoff.delay_s(self.failures_in_a_row))
        self.health.ended(finished, wait)
        key = (kind, getattr(error, "source", type(error).__name__))
        self._failures.keep_only({key})  # a new cause ends the one before
        say = self._failures.note(key, finished)
        if say is not None and say.first:
            log.warning(
                "tick failed (%s, %d in a row), no decision this tick; next try in %.3g s: %s",
                kind, self.failures_in_a_row, wait, error,
                exc_info=kind == "internal",  # an unexpected error is a bug: keep its traceback
            )
        elif say is not None:
            log.warning("still failing (%s): %d more failed tick(s) in the last %.0f s, %d in a row, for %.0f s: %s",
                        kind, say.count, self.settings.daemon.log_repeat_s, self.failures_in_a_row, say.for_s, error)
        else:
            log.debug("tick failed again (%s, %d in a row): %s", kind, self.failures_in_a_row, error)

    def _log_missing(self, report: TickReport, problems: tuple[ObservationProblem, ...], now_s: float) -> str:
        """Say which functions got no data and why, once per cause and then every ``daemon.log_repeat_s``;
        and when data is back. Returns one line summing up the missing functions (empty if none)."""
        fns = report.snapshot.functions
        n = len(fns)
        missing = [name for name, ok in zip(fns.names, fns.valid) if not ok]
        groups: dict[tuple[str | None, str, tuple[str, ...]], str] = {}
        explained: set[str] = set()
        for p in problems:
            names = tuple(name for name in p.functions if name in missing) if p.functions else ()
            if p.functions and not names:
                continue
            groups[(p.label, p.source, names)] = p.cause
            explained.update(names)
        unexplained = tuple(name for name in missing if name not in explained)
        if unexplained:
            groups[(None, "backend", unexplained)] = "no data (the backend gave no cause)"
        for (kind, source, names), cause in groups.items():
            say = self._rows.note((kind, source, names), now_s)
            what = f"{source}: {cause}" if kind is None else f"{kind}: {source}: {cause}"
            if say is None:
                continue
            if not names:
                log.warning("%s%s", what, "" if say.first else f" ({say.count} more time(s) in {say.for_s:.0f} s)")
            elif say.first:
                log.warning("no data for %d of %d functions (%s): %s; no decision for them until it is back",
                            len(names), n, _shown(names), what)
            else:
                log.warning("still no data for %d of %d functions (%s) for %.0f s (%d tick(s)): %s",
                            len(names), n, _shown(names), say.for_s, say.total, what)
        ended = self._rows.keep_only(set(groups))
        back = [name for (_, _, names) in ended for name in names if name not in missing]
        if back and not missing:
            log.warning("data is back for all %d functions", n)
        elif back:
            log.warning("data is back for %d function(s) (%s)", len(back), _shown(tuple(back)))
        if not missing:
            return ""
        return f"no data for {len(missing)} of {n} functions: " + "; ".join(
            f"{_shown(names or ('-',))}: {cause}" for (_, _, names), cause in groups.items() if names)

    # ---- reload

    def request_reload(self) -> None:
        """Re-read the config file before the next tick even if it looks unchanged (SIGHUP)."""
        self._reload_requested = True

    def _reload(self, elapsed_s: float) -> None:
        if self.watcher is None:
            return
        force, self._reload_requested = self._reload_requested, False
        try:
            new = self.watcher.poll(force=force)
        except SettingsError as error:
            self.exporter.on_config_reload(False)
            log.error("config file %s changed but is not valid; keeping the settings in use:\n%s",
                      self.watcher.path, error)
            return
        if new is None:
            return
        self.exporter.on_config_reload(True)
        live, restart = settings_changes(self.settings, new)
        if restart:
            log.warning("config reloaded; these changes take effect only after a restart: %s", ", ".join(restart))
        if live:
            log.warning("config reloaded; applied now: %s", ", ".join(live))
        self._apply_live(new, elapsed_s)

    def _apply_live(self, new: Settings, elapsed_s: float) -> None:
        self.loop.bounds = GuardBounds.from_settings(new.guard)
        self.loop.reward_alpha = new.reward.alpha
        interval = interval_of(new)
        self.driver.interval_s = interval
        self.driver.backoff = BackoffPolicy(new.daemon.backoff_s)
        self.health.stale_after_s = new.daemon.health_stale_intervals * interval
        self.health.blind_after_s = new.daemon.blind_after_s
        self.deadline_s = tick_deadline_of(new)
        for repeats in (self._failures, self._rows, self._overruns):
            repeats.every_s = new.daemon.log_repeat_s
        scale = self._scale(new)
        if scale != self.time_scale.scale:
            self.time_scale = self.time_scale.rescaled(elapsed_s, scale)
        # Only the live keys change in what the daemon uses; the rest waits for a restart.
        self.settings = with_live_changes(self.settings, new)

    # ---- whole runs

    def run_once(self) -> bool:
        """One tick now (as if one interval had passed), then the exit checkpoint; True when it
        finished and observed the cluster (:attr:`last_cause` says why not)."""
        ok = self.tick(self.driver.interval_s)
        self.final_checkpoint()
        return ok and self.saw_cluster

    def run(self, max_ticks: int | None = None) -> None:
        """Tick until a stop is requested (signal) or ``max_ticks`` ran, then the exit checkpoint."""
        self.driver.run(self.tick, max_ticks=max_ticks)
        self.health.stopping()
        self.final_checkpoint()

    def final_checkpoint(self) -> None:
        """Save the policy once more unless its last checkpoint already holds the last tick."""
        c = self.checkpointer
        ticks = self.loop.counters.ticks
        if c is None or c.last_tick == ticks:
            return
        c.save(self.loop.policy, ticks, self._last_loop_time)


def _shown(names: tuple[str, ...]) -> str:
    """At most :data:`MAX_NAMES_IN_LOG` names, comma-separated."""
    return ", ".join(names[:MAX_NAMES_IN_LOG]) + (" ..." if len(names) > MAX_NAMES_IN_LOG else "")


def daemon_checkpointer(settings: Settings, policy_name: str) -> Checkpointer:
    """The daemon's checkpointer of ``policy_name``: in ``daemon.checkpoint_dir``, else in
    ``checkpoints`` under ``output.out_dir``."""
    directory = settings.daemon.checkpoint_dir or settings.output.out_dir / "checkpoints"
    return Checkpointer.in_directory(directory, policy_name)


def resume(loop: ControlLoop, checkpointer: Checkpointer) -> int | None:
    """Load the policy's checkpoint if there is one; the tick it was saved at.

    The loop's tick count continues from there, so checkpoints and ``mfrm_ticks_completed`` keep
    counting across restarts. Raises ``CheckpointError`` when the file does not fit the policy.
    """
    if not checkpointer.path.is_file():
        log.info("no checkpoint at %s: the policy starts fresh", checkpointer.path)
        return None
    loaded = checkpointer.load(loop.policy)
    tick = int(loaded.header.get("tick", 0))
    loop.counters = LoopCounters(ticks=tick)
    log.warning("resumed %s from checkpoint %s at tick %d", loop.policy.name, checkpointer.path, tick)
    return tick


def build_daemon(settings: Settings, *, backend: Backend, policy: Policy, registry: CollectorRegistry,
                 clock: Clock, watcher: ConfigWatcher | None = None, deadline_threads: bool = True) -> Daemon:
    """A daemon for ``backend`` and ``policy`` under ``settings`` (resumed from its checkpoint when
    ``daemon.resume`` and one exists; no checkpoints at all in dry run).

    Every backend but the simulator is wrapped in :class:`DeadlineBackend`, whose calls run in a
    worker thread held to the tick's deadline; ``deadline_threads=False`` calls it directly (tests
    on fake time, where only the backend moves the clock)."""
    functions = getattr(backend, "function_names", None)
    exporter = MetricsExporter(registry, max_functions=settings.daemon.max_metric_functions,
                               functions=functions, diagnostics=getattr(policy, "diagnostics", ()))
    exporter.set_info(version=__version__, backend=settings.daemon.backend, policy=policy.name,
                      dry_run=settings.daemon.dry_run)
    checkpointer = None
    if not settings.daemon.dry_run and is_learner(policy):
        checkpointer = daemon_checkpointer(settings, policy.name)
        checkpointer.on_save = lambda path, tick: exporter.on_checkpoint()
    sim = settings.daemon.backend == "sim"
    if not sim and deadline_threads:
        # A real platform can hang; the simulator, in process, cannot.
        backend = DeadlineBackend(backend, clock)
    loop = build_loop(settings, backend, policy, sinks=[exporter], checkpointer=checkpointer,
                      dry_run=settings.daemon.dry_run)
    if checkpointer is not None and settings.daemon.resume:
        resume(loop, checkpointer)
    return Daemon(loop, exporter, clock, settings, sim_time=sim, checkpointer=checkpointer, watcher=watcher)


def _exit_now(status: int, message: str) -> None:
    log.error("%s", message)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(status)


def install_signal_handlers(daemon: Daemon, shutdown_timeout_s: float) -> None:
    """SIGTERM/SIGINT: finish the tick, checkpoint, exit (forced after ``shutdown_timeout_s``);
    a second one exits at once. SIGHUP: reload the config file. Main thread only."""

    def stop(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if daemon.clock.stop_requested:
            _exit_now(128 + signum, f"second {name}: exiting at once, without a final checkpoint")
        log.warning("%s: finishing the current tick, then checkpoint and exit (at most %g s)", name,
                    shutdown_timeout_s)
        daemon.health.stopping()
        daemon.clock.request_stop()
        watchdog = threading.Timer(
            shutdown_timeout_s, _exit_now,
            args=(EXIT_FAILED, f"shutdown did not finish within {shutdown_timeout_s:g} s: exiting without it"),
        )
        watchdog.daemon = True
        watchdog.start()

    def reload(signum: int, frame: Any) -> None:
        log.info("SIGHUP: the config file is re-read before the next tick")
        daemon.request_reload()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, reload)


__all__ = ["EXIT_FAILED", "Daemon", "build_daemon", "daemon_checkpointer", "install_signal_handlers", "resume"]
