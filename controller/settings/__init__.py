"""Every setting of a run, of the daemon and of the replayer, in one typed, grouped object.

Sources, highest precedence first:

1. command-line overrides (``load_settings(overrides={"loop.tick_s": 5})``, ``mfrm ... --set loop.tick_s=5``);
2. environment variables with prefix ``MFRM_`` and ``__`` between levels (``MFRM_LOOP__TICK_S=5``);
3. a YAML file (``--config FILE``) with the same nesting (``loop: {tick_s: 5}``);
4. the defaults of the fields.

Every field carries its meaning, unit and the reason for its default (as its docstring, which
pydantic also uses as the field's description for ``docs/user-guide.md`` and ``--help``), and its
bounds. A value outside them, a NaN or an infinity stops the run at start with a
:class:`SettingsError` naming the key, the value, where it came from (file and line, environment
variable or command line) and the allowed range. Secrets (``SecretStr``) and the user and password of
any URL print as ``**********`` in :meth:`Settings.logged`.

The modules, by concern:

* :mod:`~controller.settings.base`: what every group shares (configuration, ``Live`` marker, error);
* :mod:`~controller.settings.run_groups`: cluster, workload, loop, guard, estimator, reward, policy,
  output, daemon;
* :mod:`~controller.settings.backend_groups`: the ``local`` and ``openwhisk`` backends, ``replay``;
* :mod:`~controller.settings.model`: the root :class:`Settings` and its sources;
* :mod:`~controller.settings.reference`: keys, defaults, descriptions, live keys and backends, read
  from the fields;
* :mod:`~controller.settings.loading`: :func:`load_settings` and the readable errors.
"""

from controller.settings.backend_groups import (
    OPENWHISK_MAX_FUNCTIONS,
    LocalSettings,
    OpenWhiskSettings,
    ReplaySettings,
)
from controller.settings.base import Live, SettingsError, SettingsGroup
from controller.settings.loading import load_settings
from controller.settings.model import ENV_NESTED_DELIMITER, ENV_PREFIX, Settings
from controller.settings.reference import (
    allowed_range,
    backend_names,
    default_of,
    describe,
    field_at,
    is_live,
    live_keys,
    settings_reference,
)
from controller.settings.run_groups import (
    DEFAULT_COMPARE_POLICIES,
    BackendName,
    ClusterSettings,
    DaemonSettings,
    EstimatorSettings,
    GuardSettings,
    LoopSettings,
    OutputSettings,
    PolicySettings,
    RewardSettings,
    WorkloadSettings,
)
from controller.settings.urls import mask_credentials

__all__ = [
    "DEFAULT_COMPARE_POLICIES",
    "ENV_NESTED_DELIMITER",
    "ENV_PREFIX",
    "OPENWHISK_MAX_FUNCTIONS",
    "BackendName",
    "ClusterSettings",
    "DaemonSettings",
    "EstimatorSettings",
    "GuardSettings",
    "Live",
    "LocalSettings",
    "LoopSettings",
    "OpenWhiskSettings",
    "OutputSettings",
    "PolicySettings",
    "ReplaySettings",
    "RewardSettings",
    "Settings",
    "SettingsError",
    "SettingsGroup",
    "WorkloadSettings",
    "allowed_range",
    "backend_names",
    "default_of",
    "describe",
    "field_at",
    "is_live",
    "live_keys",
    "load_settings",
    "mask_credentials",
    "settings_reference",
]
