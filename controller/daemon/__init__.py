"""The daemon behind ``mfrm run``: the control loop on a real clock (:mod:`.service`), its endpoints
and health (:mod:`.health`), its live configuration (:mod:`.reload`), the tick's deadline around the
backend (:mod:`.deadline`) and a log that says a lasting fault once (:mod:`.repeats`). A library: the
command lives in ``controller.commands.run``."""

from controller.daemon.deadline import DeadlineBackend, Interrupted
from controller.daemon.health import EndpointServer, HealthState
from controller.daemon.reload import (
    ConfigWatcher,
    interval_of,
    settings_changes,
    tick_deadline_of,
    with_live_changes,
)
from controller.daemon.repeats import RepeatLog
from controller.daemon.service import (
    EXIT_FAILED,
    Daemon,
    build_daemon,
    daemon_checkpointer,
    install_signal_handlers,
    resume,
)

__all__ = [
    "EXIT_FAILED",
    "ConfigWatcher",
    "Daemon",
    "DeadlineBackend",
    "EndpointServer",
    "HealthState",
    "Interrupted",
    "RepeatLog",
    "build_daemon",
    "daemon_checkpointer",
    "install_signal_handlers",
    "interval_of",
    "resume",
    "settings_changes",
    "tick_deadline_of",
    "with_live_changes",
]
