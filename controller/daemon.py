"""``mfrm run``: the control loop as a long-running daemon, with metrics, health, signals and faults.

The pieces, each small and separately tested:

* :class:`controller.loop.ControlLoop` does one tick given ``now`` (it never reads a clock);
* :class:`controller.clock.IntervalDriver` calls :meth:`Daemon.tick` on a monotonic grid and backs
  off after failures;
* :class:`Daemon` turns one tick into "ok or why not": it reloads a changed config file, maps wall
  time to the loop's time, runs the loop, classifies a failure into a bounded error kind, logs why
  nothing was decided, and feeds the exporter and the health state;
* :class:`controller.metrics.MetricsExporter` and :class:`EndpointServer` serve ``/metrics`` and
  ``/healthz`` from a thread;
* :func:`run_command` reads the settings (file, environment, flags), builds all of the above,
  installs the signal handlers and exits with 0 (stopped cleanly or ``--once`` succeeded), 1
  (``--once`` failed, or the shutdown took longer than ``daemon.shutdown_timeout_s``) or 2 (bad
  settings, or a checkpoint that does not fit the policy).

Fault behaviour (docs/daemon.md has the table): a failed observation is a failed tick — no
decision, counted in ``mfrm_backend_errors_total{kind}`` and ``mfrm_no_decisions_total{reason=
"tick_failed"}``, logged with its cause — and the daemon keeps ticking along the backoff sequence;
rows the backend could not observe get no decision (``reason="no_data"``) while the others go on.
The first good tick after failures is logged as a recovery.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from controller.backends.base import Backend
from controller.clock import BackoffPolicy, Clock, IntervalDriver, RealClock, TimeScale
from controller.estimator import PopulationEstimator
from controller.guard import GuardBounds
from controller.loop import ControlLoop, LoopCounters, TickReport
from controller.metrics import MetricsExporter, error_kind
from controller.settings import Settings, SettingsError, load_settings
from controller.version import __version__
from policies.types import Policy

log = logging.getLogger(__name__)

#: Exit status of ``mfrm run`` for settings that cannot be used (bad file, value out of range,
#: a checkpoint that does not fit): the conventional status of a usage error.
EXIT_BAD_CONFIG = 2
#: Exit status when ``--once`` failed, or a shutdown did not finish in time.
EXIT_FAILED = 1

#: Backends other than ``sim``: module and factory ``from_settings(settings) -> Backend``. Each is
#: imported only when chosen, so the daemon does not load a cluster client it does not use.
BACKEND_FACTORIES: dict[str, str] = {
    "local": "controller.backends.local:from_settings",
    "openwhisk": "controller.backends.openwhisk:from_settings",
}

#: Settings that take effect while the daemon runs; any other change waits for a restart.
LIVE_SETTINGS_PREFIXES: tuple[str, ...] = ("guard.", "reward.alpha", "loop.tick_s", "daemon.interval_s",
                                           "daemon.health_stale_intervals", "daemon.backoff_s")

#: Most function names a "no data" log line lists (the count is always complete).
_MAX_NAMES_IN_LOG = 10


# --------------------------------------------------------------------------------------------
# health
# --------------------------------------------------------------------------------------------


class HealthState:
    """When the last tick finished, shared between the loop's thread and the HTTP thread."""

    def __init__(self, started_s: float, stale_after_s: float) -> None:
        self._lock = threading.Lock()
        self._started_s = started_s
        self._finished_s: float | None = None
        self._last_error = ""
        self._stopping = False
        self.stale_after_s = stale_after_s
        """A tick finished longer ago than this (s, monotonic) makes the daemon unhealthy."""

    def finished(self, now_s: float) -> None:
        """A tick completed at monotonic time ``now_s``."""
        with self._lock:
            self._finished_s = now_s
            self._last_error = ""

    def failed(self, reason: str) -> None:
        """A tick failed; ``reason`` is shown by ``/healthz`` until a tick finishes."""
        with self._lock:
            self._last_error = reason

    def stopping(self) -> None:
        """A shutdown started: the daemon no longer ticks."""
        with self._lock:
            self._stopping = True

    def check(self, now_s: float) -> tuple[bool, str]:
        """(healthy, why) at monotonic time ``now_s``: healthy when a tick finished within
        ``stale_after_s`` (or the daemon started that recently and has not finished one yet)."""
        with self._lock:
            if self._stopping:
                return False, "shutting down"
            error = f"; last tick failed: {self._last_error}" if self._last_error else ""
            if self._finished_s is None:
                age = now_s - self._started_s
                if age <= self.stale_after_s:
                    return True, f"starting: no tick finished yet ({age:.1f} s since start){error}"
                return False, f"no tick finished in {age:.1f} s since start (limit {self.stale_after_s:g} s){error}"
            age = now_s - self._finished_s
            if age <= self.stale_after_s:
                return True, f"last tick finished {age:.1f} s ago{error}"
            return False, f"last tick finished {age:.1f} s ago (limit {self.stale_after_s:g} s){error}"


class EndpointServer:
    """``/metrics`` (Prometheus text or OpenMetrics, by the Accept header) and ``/healthz`` in a thread."""

    def __init__(self, registry: CollectorRegistry, health: HealthState, clock: Clock, host: str, port: int) -> None:
        def handler_factory(*args: Any) -> http.server.BaseHTTPRequestHandler:
            return _Handler(registry, health, clock, *args)

        self._server = http.server.ThreadingHTTPServer((host, port), handler_factory)
        self._server.daemon_threads = True
        # A short poll keeps shutdown quick (it is part of the bounded exit).
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="mfrm-endpoints", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The bound port (the chosen one when 0 was asked for)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


class _Handler(http.server.BaseHTTPRequestHandler):
    def __init__(self, registry: CollectorRegistry, health: HealthState, clock: Clock, *args: Any) -> None:
        self._registry = registry
        self._health = health
        self._clock = clock
        super().__init__(*args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, content_type, encoder(self._registry))
        elif path == "/healthz":
            ok, why = self._health.check(self._clock.monotonic())
            self._send(200 if ok else 503, "text/plain; charset=utf-8", f"{'ok' if ok else 'unhealthy'}: {why}\n".encode())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


# --------------------------------------------------------------------------------------------
# config reload
# --------------------------------------------------------------------------------------------


@dataclass
class ConfigWatcher:
    """Notices when the ``--config`` file changed and loads it with the same overrides as at start."""

    path: Path
    """The settings file."""
    overrides: Mapping[str, Any]
    """The command line's overrides (they keep winning over the file, as at start)."""
    _fingerprint: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self._fingerprint = self._read_fingerprint()

    def _read_fingerprint(self) -> str:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError as error:
            return f"unreadable: {error.strerror}"

    def poll(self, force: bool = False) -> Settings | None:
        """New settings when the file's content changed (or ``force``); None when unchanged.

        Raises :class:`SettingsError` (naming key, value and range) when the new content is bad;
        the file is then not read again until it changes once more.
        """
        fingerprint = self._read_fingerprint()
        if fingerprint == self._fingerprint and not force:
            return None
        self._fingerprint = fingerprint
        return load_settings(self.path, self.overrides)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and key != "params":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def settings_changes(old: Settings, new: Settings) -> tuple[list[str], list[str]]:
    """Dotted keys that differ between ``old`` and ``new``: (live ones, ones that need a restart)."""
    a, b = _flatten(old.logged()), _flatten(new.logged())
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    live = [k for k in changed if k.startswith(LIVE_SETTINGS_PREFIXES)]
    return live, [k for k in changed if k not in live]


def interval_of(settings: Settings) -> float:
    """Wall-clock seconds between ticks: ``daemon.interval_s``, or ``loop.tick_s`` when unset."""
    return settings.daemon.interval_s if settings.daemon.interval_s is not None else settings.loop.tick_s


# --------------------------------------------------------------------------------------------
# the daemon
# --------------------------------------------------------------------------------------------


class _ReportingCheckpointer:
    """The loop's checkpointer, counting saves in the exporter and remembering the last tick saved."""

    def __init__(self, store: Any, exporter: MetricsExporter) -> None:
        self.store = store
        self.exporter = exporter
        self.last_tick: int | None = None

    def save(self, policy: Policy, tick: int, now: float) -> None:
        if self.store.save(policy, tick, now) is not None:
            self.exporter.on_checkpoint()
            self.last_tick = tick


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
        checkpointer: _ReportingCheckpointer | None = None,
        watcher: ConfigWatcher | None = None,
    ) -> None:
        """``sim_time``: the backend is the simulator, whose ticks each cover ``loop.tick_s`` of
        simulated time however long the wall interval is (the loop's clock is scaled)."""
        self.loop = loop
        self.exporter = exporter
        self.clock = clock
        self.settings = settings
        self.sim_time = sim_time
        self.checkpointer = checkpointer
        self.watcher = watcher
        interval = interval_of(settings)
        self.time_scale = TimeScale(scale=self._scale(settings))
        self.health = HealthState(clock.monotonic(), settings.daemon.health_stale_intervals * interval)
        self.driver = IntervalDriver(clock, interval, BackoffPolicy(settings.daemon.backoff_s))
        self.failures_in_a_row = 0
        self._reload_requested = False
        self._missing: tuple[str, ...] = ()
        self._last_loop_time = 0.0

    def _scale(self, settings: Settings) -> float:
        return settings.loop.tick_s / interval_of(settings) if self.sim_time else 1.0

    # ---- one tick

    def tick(self, elapsed_s: float) -> bool:
        """Run one tick ``elapsed_s`` wall seconds after the start; True when it finished."""
        started = self.clock.monotonic()
        self._reload(elapsed_s)
        now = self.time_scale.loop_time(elapsed_s)
        try:
            report = self.loop.step(now)
        except Exception as error:  # noqa: BLE001 (every failure is classified, counted, logged, retried)
            self._failed(error)
            self.exporter.observe_tick_duration(self.clock.monotonic() - started)
            return False
        self._last_loop_time = now
        finished = self.clock.monotonic()
        self.exporter.observe_tick_duration(finished - started)
        self.health.finished(finished)
        if self.failures_in_a_row:
            log.warning("recovered: tick %d finished after %d failed tick(s)", report.tick, self.failures_in_a_row)
            self.failures_in_a_row = 0
        self._log_missing(report)
        log.debug(
            "tick %d (loop time %.1f s) in %.1f ms: %d/%d functions decided, %d change(s), %d failure(s)",
            report.tick, now, 1000 * (finished - started), int(report.decisions.valid.sum()),
            len(report.decisions), int(report.guarded.decisions.valid.sum()), len(report.failures),
        )
        return True

    def _failed(self, error: Exception) -> None:
        kind = error_kind(error)
        self.failures_in_a_row += 1
        self.exporter.on_tick_failed(kind)
        reason = f"{kind}: {error}"
        self.health.failed(reason)
        wait = max(self.driver.interval_s, self.driver.backoff.delay_s(self.failures_in_a_row))
        log.warning(
            "tick failed (%s, %d in a row), no decision this tick; next try in %.3g s: %s",
            kind, self.failures_in_a_row, wait, error,
            exc_info=kind == "internal",  # an unexpected error is a bug: keep its traceback
        )

    def _log_missing(self, report: TickReport) -> None:
        """Say which functions got no decision for lack of data, when that set changes."""
        fns = report.snapshot.functions
        missing = tuple(name for name, ok in zip(fns.names, fns.valid) if not ok)
        if missing == self._missing:
            return
        if missing:
            shown = ", ".join(missing[:_MAX_NAMES_IN_LOG]) + (" ..." if len(missing) > _MAX_NAMES_IN_LOG else "")
            log.warning("no data for %d of %d functions (%s): no decision for them until it is back",
                        len(missing), len(fns), shown)
        else:
            log.warning("data is back for all %d functions", len(fns))
        self._missing = missing

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
        scale = self._scale(new)
        if scale != self.time_scale.scale:
            self.time_scale = self.time_scale.rescaled(elapsed_s, scale)
        # Only the live keys changed in what the daemon uses; the rest waits for a restart.
        self.settings = self.settings.model_copy(
            update={"guard": new.guard, "reward": self.settings.reward.model_copy(update={"alpha": new.reward.alpha}),
                    "loop": self.settings.loop.model_copy(update={"tick_s": new.loop.tick_s}),
                    "daemon": self.settings.daemon.model_copy(update={
                        "interval_s": new.daemon.interval_s,
                        "health_stale_intervals": new.daemon.health_stale_intervals,
                        "backoff_s": new.daemon.backoff_s})}
        )

    # ---- whole runs

    def run_once(self) -> bool:
        """One tick now (as if one interval had passed), then the exit checkpoint; True when it finished."""
        ok = self.tick(self.driver.interval_s)
        self.final_checkpoint()
        return ok

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


# --------------------------------------------------------------------------------------------
# building a daemon from settings
# --------------------------------------------------------------------------------------------


class RepeatingArrivals:
    """An arrival stream replayed end to end forever (the daemon runs longer than any trace excerpt).

    Cycle ``k`` is the inner stream shifted by ``k`` times its duration, so a window that spans
    the seam gets the end of one cycle and the start of the next.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        """A stream with ``duration_s`` and ``window(t0_s, t1_s)`` (``workload.arrivals.ArrivalStream``)."""
        self.period_s = float(inner.duration_s)
        """Length of one cycle, s."""

    def window(self, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Arrivals with ``t0_s <= time < t1_s``, s from the start of the first cycle."""
        times, fns = [], []
        cycle = max(0, math.floor(t0_s / self.period_s))
        while cycle * self.period_s < t1_s:
            offset = cycle * self.period_s
            t, f = self.inner.window(max(t0_s - offset, 0.0), min(t1_s - offset, self.period_s))
            times.append(t + offset)
            fns.append(f)
            cycle += 1
        if not times:
            return np.zeros(0, dtype=float), np.zeros(0, dtype=np.int32)
        return np.concatenate(times), np.concatenate(fns)


def build_sim_backend(settings: Settings) -> Backend:
    """The embedded simulated cluster of ``settings``, with its workload replayed forever."""
    from controller.backends.sim import SimBackend
    from controller.experiments import RunSeeds, build_workload, cluster_config, measure_slos
    from simulator import Cluster
    from workload.arrivals import ArrivalStream

    class _DaemonSimBackend(SimBackend):
        # A daemon runs for days: the per-activation records the batch reports need would grow
        # without bound, so they are dropped after every observation.
        def observe(self, now: float) -> Any:
            snapshot = super().observe(now)
            self._records.clear()
            return snapshot

    workload = build_workload(settings)
    slo_s = measure_slos(settings, workload)
    seeds = RunSeeds.from_seed(settings.seed)
    cluster = Cluster(cluster_config(settings), [f.profile for f in workload.functions], slo_s, seed=seeds.cluster)
    arrivals = ArrivalStream(workload.functions, workload.start_minute, workload.end_minute,
                             mode=settings.workload.arrivals, seed=seeds.arrivals)
    return _DaemonSimBackend(cluster, RepeatingArrivals(arrivals), workload.names, settings.loop.tick_s)


def build_backend(settings: Settings) -> Backend:
    """The backend ``settings.daemon.backend`` names."""
    name = settings.daemon.backend
    if name == "sim":
        return build_sim_backend(settings)
    module_name, attribute = BACKEND_FACTORIES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise click.ClickException(f"backend {name!r} is not available in this build (no module {module_name})") from None
    return getattr(module, attribute)(settings)


def build_policy(settings: Settings) -> Policy:
    """The policy ``policy.name`` with its ``policy.params`` (as ``mfrm simulate`` builds it)."""
    from policies.registry import make

    name = settings.policy.name
    return make(name, **settings.policy.params.get(name, {}))


def checkpoint_dir(settings: Settings) -> Path:
    """Where the daemon keeps its checkpoints (``daemon.checkpoint_dir``, else under ``output.out_dir``)."""
    return settings.daemon.checkpoint_dir or settings.output.out_dir / "checkpoints"


def resume(loop: ControlLoop, store: Any) -> int | None:
    """Load the policy's checkpoint from ``store`` if there is one; the tick it was saved at.

    The loop's tick count continues from there, so checkpoints and ``mfrm_ticks_completed`` keep
    counting across restarts. Raises ``CheckpointError`` when the file does not fit the policy.
    """
    if not hasattr(loop.policy, "load_state_dict"):
        return None
    path = store.path_for(loop.policy.name)
    if not path.is_file():
        log.info("no checkpoint at %s: the policy starts fresh", path)
        return None
    loaded = store.load(loop.policy)
    tick = int(loaded.header.get("tick", 0))
    loop.counters = LoopCounters(ticks=tick)
    log.warning("resumed %s from checkpoint %s at tick %d", loop.policy.name, path, tick)
    return tick


def build_daemon(settings: Settings, *, backend: Backend, policy: Policy, registry: CollectorRegistry,
                 clock: Clock, watcher: ConfigWatcher | None = None) -> Daemon:
    """A daemon for ``backend`` and ``policy`` under ``settings`` (resumed from its checkpoint when
    ``daemon.resume`` and one exists; no checkpoints at all in dry run)."""
    from controller.checkpoint import CheckpointStore

    functions = getattr(backend, "function_names", None)
    exporter = MetricsExporter(registry, max_functions=settings.daemon.max_metric_functions,
                               functions=functions)
    exporter.set_info(version=__version__, backend=settings.daemon.backend, policy=policy.name,
                      dry_run=settings.daemon.dry_run)
    checkpointer = None
    if not settings.daemon.dry_run and hasattr(policy, "state_dict"):
        checkpointer = _ReportingCheckpointer(CheckpointStore(checkpoint_dir(settings)), exporter)
    loop = ControlLoop(
        backend=backend,
        policy=policy,
        estimator=PopulationEstimator(bins=settings.estimator.bins, beta=settings.estimator.beta),
        bounds=GuardBounds.from_settings(settings.guard),
        reward_alpha=settings.reward.alpha,
        reward_charge_memory=settings.reward.charge_memory,
        sinks=[exporter],
        checkpointer=checkpointer,
        checkpoint_every_ticks=settings.loop.checkpoint_every_ticks,
        dry_run=settings.daemon.dry_run,
    )
    if checkpointer is not None and settings.daemon.resume:
        checkpointer.last_tick = resume(loop, checkpointer.store)
    return Daemon(loop, exporter, clock, settings, sim_time=settings.daemon.backend == "sim",
                  checkpointer=checkpointer, watcher=watcher)


# --------------------------------------------------------------------------------------------
# signals and the command
# --------------------------------------------------------------------------------------------


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


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # numba's compiler logs at DEBUG; it says nothing about the daemon.
    logging.getLogger("numba").setLevel(logging.WARNING)


def _overrides(options: Mapping[str, Any], sets: Sequence[str]) -> dict[str, Any]:
    from controller.experiments import _parse_set

    mapping = {"interval": "daemon.interval_s", "backend": "daemon.backend", "metrics_port": "daemon.metrics_port"}
    overrides = {mapping[k]: v for k, v in options.items() if k in mapping and v is not None}
    if options.get("dry_run"):
        overrides["daemon.dry_run"] = True
    overrides.update(_parse_set(sets))
    return overrides


@click.command("run")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML settings file; re-read when it changes (see docs/daemon.md).")
@click.option("--once", is_flag=True, default=False, help="Run one tick and exit: 0 if it finished, 1 if not.")
@click.option("--dry-run", is_flag=True, default=False, help="Observe, decide and log; never change the cluster.")
@click.option("--interval", type=float, help="Seconds between ticks [default: loop.tick_s].")
@click.option("--backend", type=click.Choice(["sim", "local", "openwhisk"]), help="Cluster to drive [default: sim].")
@click.option("--metrics-port", type=int, help="Port of /metrics and /healthz; 0 picks one [default: 9471].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any setting (repeatable).")
@click.option("-v", "--verbose", is_flag=True, default=False, help="Log every tick (DEBUG).")
def run_command(config: Path | None, once: bool, sets: tuple[str, ...], verbose: bool, **options: Any) -> None:
    """Run the control loop as a daemon on a real clock, with /metrics and /healthz."""
    _configure_logging(verbose)
    overrides = _overrides(options, sets)
    try:
        settings = load_settings(config, overrides)
    except SettingsError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    from controller.checkpoint import CheckpointError

    d = settings.daemon
    log.info("mfrm %s daemon: backend=%s policy=%s interval=%g s dry_run=%s once=%s", __version__, d.backend,
             settings.policy.name, interval_of(settings), d.dry_run, once)
    log.info("effective settings: %s", json.dumps(settings.logged(), sort_keys=True))
    if settings.loop.checkpoint_every_ticks == 0:
        log.info("loop.checkpoint_every_ticks is 0: a learning policy is saved only at exit")
    try:
        policy = build_policy(settings)
    except (KeyError, TypeError, ValueError) as error:
        click.echo(f"Error: policy {settings.policy.name!r}: {error}", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    started = time.perf_counter()
    try:
        backend = build_backend(settings)
    except ValueError as error:
        click.echo(f"Error: backend {d.backend!r}: {error}", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    log.info("backend %s ready in %.1f s", settings.daemon.backend, time.perf_counter() - started)
    clock = RealClock()
    watcher = ConfigWatcher(config, overrides) if config is not None and d.reload_config and not once else None
    registry = CollectorRegistry()
    try:
        daemon = build_daemon(settings, backend=backend, policy=policy, registry=registry, clock=clock,
                              watcher=watcher)
    except CheckpointError as error:
        click.echo(f"Error: {error}\n(move the file away, or set daemon.resume=false to start fresh)", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    if once:
        ok = daemon.run_once()
        log.info("one tick %s", "finished" if ok else "failed")
        sys.exit(0 if ok else EXIT_FAILED)
    try:
        server = EndpointServer(registry, daemon.health, clock, d.metrics_host, d.metrics_port)
    except OSError as error:
        click.echo(f"Error: cannot serve metrics on {d.metrics_host}:{d.metrics_port}: {error.strerror} "
                   "(daemon.metrics_port / --metrics-port)", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    log.info("serving /metrics and /healthz on http://%s:%d", d.metrics_host, server.port)
    install_signal_handlers(daemon, d.shutdown_timeout_s)
    try:
        daemon.run()
    finally:
        server.close()
    stats = daemon.driver.stats
    log.info("stopped after %d tick(s) (%d failed, %d slot(s) skipped); last tick %d", stats.ticks, stats.failed,
             stats.skipped_slots, daemon.loop.counters.ticks)


__all__ = [
    "BACKEND_FACTORIES",
    "EXIT_BAD_CONFIG",
    "EXIT_FAILED",
    "ConfigWatcher",
    "Daemon",
    "EndpointServer",
    "HealthState",
    "RepeatingArrivals",
    "build_backend",
    "build_daemon",
    "build_policy",
    "build_sim_backend",
    "checkpoint_dir",
    "install_signal_handlers",
    "interval_of",
    "resume",
    "run_command",
    "settings_changes",
]
