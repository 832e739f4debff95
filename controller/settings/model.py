"""The root settings object: every group under one key, read from overrides, the environment and a file."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any

from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from controller.settings.backend_groups import LocalSettings, OpenWhiskSettings, ReplaySettings
from controller.settings.base import GROUP_CONFIG
from controller.settings.run_groups import (
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
from controller.settings.urls import mask_credentials_in

#: Prefix of every environment variable the settings read (``MFRM_SEED``).
ENV_PREFIX = "MFRM_"
#: Separator between levels in a variable's name (``MFRM_LOOP__TICK_S`` is ``loop.tick_s``).
ENV_NESTED_DELIMITER = "__"

# The parsed config file while :func:`settings_from` builds a Settings (empty: no file).
_FILE_DATA: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "mfrm_settings_file", default=None
)


class _FileSource(PydanticBaseSettingsSource):
    """The config file's settings, parsed beforehand (the lowest-precedence source above the defaults)."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class Settings(BaseSettings):
    """Everything a run needs; build it with :func:`controller.settings.load_settings`."""

    model_config = SettingsConfigDict(
        **GROUP_CONFIG,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
    )

    seed: int = Field(0, ge=0, le=2**63 - 1)
    """Seed of the run: arrivals, simulator and policies all derive their generators from it, so
    the same seed gives the same numbers and every policy of a comparison sees the same arrivals."""
    cluster: ClusterSettings = ClusterSettings()
    workload: WorkloadSettings = WorkloadSettings()
    loop: LoopSettings = LoopSettings()
    guard: GuardSettings = GuardSettings()
    estimator: EstimatorSettings = EstimatorSettings()
    reward: RewardSettings = RewardSettings()
    policy: PolicySettings = PolicySettings()
    output: OutputSettings = OutputSettings()
    daemon: DaemonSettings = DaemonSettings()
    local: LocalSettings = LocalSettings()
    openwhisk: OpenWhiskSettings = OpenWhiskSettings()
    replay: ReplaySettings = ReplaySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest first: keyword arguments (the command line's overrides), MFRM_* variables, the file.
        return (init_settings, env_settings, _FileSource(settings_cls, _FILE_DATA.get() or {}))

    def logged(self) -> dict[str, Any]:
        """The settings as plain JSON-able data for logs and saved runs: secrets (``SecretStr``) and
        the user and password of every URL masked as ``**********``."""
        return mask_credentials_in(self.model_dump(mode="json"))


def settings_from(file_data: Mapping[str, Any], overrides: Mapping[str, Any]) -> Settings:
    """Settings from a parsed config file, the environment and nested ``overrides`` (highest).

    Raises pydantic's ``ValidationError`` (and pydantic-settings' error for an undecodable variable);
    :func:`controller.settings.load_settings` turns both into a :class:`SettingsError`.
    """
    token = _FILE_DATA.set(file_data)
    try:
        return Settings(**overrides)
    finally:
        _FILE_DATA.reset(token)


__all__ = ["ENV_NESTED_DELIMITER", "ENV_PREFIX", "Settings", "settings_from"]
