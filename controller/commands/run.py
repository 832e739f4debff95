"""``mfrm run``: the control loop as a daemon on a real clock, with ``/metrics`` and ``/healthz``.

Reads the settings (file, environment, flags), builds the backend and the policy through
``controller.assemble`` and the daemon through ``controller.daemon``, installs the signal handlers
and exits with 0 (stopped cleanly, or ``--once`` observed the cluster), 1 (``--once`` could not
observe it, with the cause on stderr, or the shutdown took longer than
``daemon.shutdown_timeout_s``) or 2 (bad settings, a backend that cannot start with them, or a
checkpoint that does not fit the policy).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from prometheus_client import CollectorRegistry

from controller.assemble import AssemblyError, PolicySpec, build_backend, build_policy
from controller.checkpoint import CheckpointError
from controller.clock import RealClock
from controller.commands.options import (
    SettingOption,
    UsageProblem,
    config_options,
    configure_logging,
    load,
    overrides_from,
    setting_options,
)
from controller.daemon import (
    EXIT_FAILED,
    ConfigWatcher,
    EndpointServer,
    build_daemon,
    install_signal_handlers,
    interval_of,
)
from controller.level_twins import wants_twins
from controller.settings import Settings, SettingsError, default_of
from controller.version import __version__

log = logging.getLogger(__name__)

#: Flags of ``mfrm run``, each the override of one settings key.
RUN_FLAGS: tuple[SettingOption, ...] = (
    SettingOption("--backend", "daemon.backend", "Cluster to drive."),
    SettingOption("--policy", "policy.name", "Registered policy that decides."),
    SettingOption("--interval", "daemon.interval_s", "Seconds between ticks (unset: loop.tick_s).", float),
    SettingOption("--metrics-port", "daemon.metrics_port", "Port of /metrics and /healthz; 0 picks one.", int),
    SettingOption("--seed", "seed", "Seed of the policy's and the simulated cluster's draws.", int),
)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and key != "params":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_settings(settings: Settings) -> list[str]:
    """``key = value`` for every setting that differs from its default (secrets masked), sorted."""
    lines = []
    for key, value in sorted(_flatten(settings.logged()).items()):
        try:
            default = default_of(key)
        except KeyError:
            default = None
        if isinstance(default, tuple):
            default = list(default)
        if isinstance(default, Path):
            default = str(default)
        if value != default:
            lines.append(f"{key} = {json.dumps(value, default=str)}")
    return lines


@click.command("run")
@click.option("--once", is_flag=True, default=False,
              help="Run one tick and exit: 0 if it observed the cluster, 1 (with the cause) if not.")
@click.option("--dry-run", is_flag=True, default=False, help="Observe, decide and log; never change the cluster.")
@click.option("-v", "--verbose", is_flag=True, default=False, help="Log every tick (DEBUG).")
@setting_options(RUN_FLAGS)
@config_options
def run_command(config: Path | None, once: bool, dry_run: bool, sets: tuple[str, ...], verbose: bool,
                **options: Any) -> None:
    """Run the control loop as a daemon on a real clock, with /metrics and /healthz.

    The config file is re-read when it changes (and on SIGHUP); docs/daemon.md lists what takes
    effect at once.
    """
    configure_logging(logging.DEBUG if verbose else logging.INFO)
    overrides = overrides_from(options, RUN_FLAGS, sets)
    if dry_run:
        overrides["daemon.dry_run"] = True
    settings = load(config, overrides)
    d = settings.daemon
    log.info("mfrm %s daemon: backend=%s policy=%s seed=%d interval=%g s dry_run=%s once=%s", __version__,
             d.backend, settings.policy.name, settings.seed, interval_of(settings), d.dry_run, once)
    for line in changed_settings(settings):
        log.info("setting %s", line)
    log.debug("effective settings: %s", json.dumps(settings.logged(), sort_keys=True))
    if settings.loop.checkpoint_every_ticks == 0:
        log.info("loop.checkpoint_every_ticks is 0: a learning policy is saved only at exit")
    try:
        policy = build_policy(settings, PolicySpec(settings.policy.name))
    except (AssemblyError, CheckpointError) as error:
        raise UsageProblem(str(error)) from None
    if wants_twins(policy) is not None:
        raise UsageProblem(f"policy.params.{settings.policy.name}.twin_features: the level twins know the functions' "
                           "profiles and run only beside the embedded simulated cluster of mfrm simulate, train and "
                           "bench; the daemon has none (set it to false)")
    started = time.perf_counter()
    try:
        backend = build_backend(settings)
    except AssemblyError as error:
        raise UsageProblem(str(error)) from None
    except (SettingsError, ValueError) as error:  # a backend's own check of its settings group
        raise UsageProblem(f"backend {d.backend!r}: {error}") from None
    log.info("backend %s ready in %.1f s", d.backend, time.perf_counter() - started)
    clock = RealClock()
    watcher = ConfigWatcher(config, overrides) if config is not None and d.reload_config and not once else None
    registry = CollectorRegistry()
    try:
        daemon = build_daemon(settings, backend=backend, policy=policy, registry=registry, clock=clock,
                              watcher=watcher)
    except CheckpointError as error:
        raise UsageProblem(f"{error}\n(move the file away, or set daemon.resume=false to start fresh)") from None
    if once:
        ok = daemon.run_once()
        if ok:
            log.info("one tick finished: the cluster was observed")
        else:
            # The pre-flight's answer: say why on stderr, whatever the log level.
            log.error("one tick: the cluster could not be observed: %s", daemon.last_cause)
            click.echo(f"mfrm run --once: could not observe the cluster: {daemon.last_cause}", err=True)
        sys.exit(0 if ok else EXIT_FAILED)
    try:
        server = EndpointServer(registry, daemon.health, clock, d.metrics_host, d.metrics_port)
    except OSError as error:
        raise UsageProblem(f"cannot serve metrics on {d.metrics_host}:{d.metrics_port}: {error.strerror} "
                           "(daemon.metrics_port / --metrics-port)") from None
    log.info("serving /metrics and /healthz on http://%s:%d", d.metrics_host, server.port)
    install_signal_handlers(daemon, d.shutdown_timeout_s)
    try:
        daemon.run()
    finally:
        server.close()
    stats = daemon.driver.stats
    log.info("stopped after %d tick(s) (%d failed, %d slot(s) skipped); last tick %d", stats.ticks, stats.failed,
             stats.skipped_slots, daemon.loop.counters.ticks)


__all__ = ["RUN_FLAGS", "changed_settings", "run_command"]
