"""The daemon behind ``mfrm run``: the control loop on a real clock (:mod:`.service`), its endpoints
(:mod:`.health`) and its live configuration (:mod:`.reload`). A library: the command lives in
``controller.commands.run``."""

from controller.daemon.health import EndpointServer, HealthState
from controller.daemon.reload import ConfigWatcher, interval_of, settings_changes, with_live_changes
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
    "EndpointServer",
    "HealthState",
    "build_daemon",
    "daemon_checkpointer",
    "install_signal_handlers",
    "interval_of",
    "resume",
    "settings_changes",
    "with_live_changes",
]
