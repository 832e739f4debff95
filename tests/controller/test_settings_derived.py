"""What is read from the settings model instead of being repeated: live keys, backends, defaults,
descriptions, and the package's public names."""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path

import pytest
import yaml

import controller.settings as settings_package
from controller.settings import (
    DaemonSettings,
    GuardSettings,
    Settings,
    backend_names,
    default_of,
    describe,
    field_at,
    is_live,
    live_keys,
    load_settings,
    settings_reference,
)
from policies import registry

PACKAGE = Path(settings_package.__file__).resolve().parent


@pytest.fixture(autouse=True)
def no_mfrm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own MFRM_* variables never leak into these tests."""
    for name in [n for n in os.environ if n.upper().startswith("MFRM_")]:
        monkeypatch.delenv(name)


def test_the_live_keys_are_every_guard_field_the_reward_alpha_the_tick_and_the_daemons_clock_in_field_order():
    guard = [f"guard.{name}" for name in GuardSettings.model_fields]
    assert live_keys() == ("loop.tick_s", *guard, "reward.alpha", "daemon.interval_s",
                           "daemon.health_stale_intervals", "daemon.blind_after_s", "daemon.tick_deadline_s",
                           "daemon.log_repeat_s", "daemon.backoff_s")


@pytest.mark.parametrize("key, live", [
    ("guard.max_shares", True),
    ("daemon.backoff_s", True),
    ("reward.alpha", True),
    ("reward.slo_margin", False),
    ("daemon.backend", False),
    ("loop.checkpoint_every_ticks", False),
    ("guard", False),
    ("openwhisk.slo_s.primes", False),
    ("no.such.key", False),
], ids=lambda v: str(v))
def test_is_live_answers_for_settings_groups_entries_and_unknown_keys(key: str, live: bool) -> None:
    assert is_live(key) is live


def test_an_entry_inside_a_live_setting_is_live() -> None:
    assert is_live("daemon.backoff_s.0")


def test_the_backend_names_are_the_literal_of_daemon_backend_with_sim_first() -> None:
    assert backend_names() == typing.get_args(DaemonSettings.model_fields["backend"].annotation)
    assert backend_names() == ("sim", "local", "openwhisk")
    assert backend_names()[0] == DaemonSettings().backend


@pytest.mark.parametrize("key", [key for key, *_ in settings_reference()])
def test_default_of_every_key_is_the_value_a_default_settings_object_holds(key: str) -> None:
    value = load_settings()
    for part in key.split("."):
        value = getattr(value, part)
    assert default_of(key) == value


def test_default_of_a_group_is_the_groups_defaults() -> None:
    assert default_of("guard") == GuardSettings()


@pytest.mark.parametrize("function", [default_of, describe], ids=["default_of", "describe"])
@pytest.mark.parametrize("key", ["guard.max_contianers", "nope", "", "openwhisk.slo_s.primes"])
def test_an_unknown_key_is_a_key_error_naming_it(function, key: str) -> None:
    with pytest.raises(KeyError, match=re.escape(repr(key))):
        function(key)


def test_field_at_finds_a_field_by_dotted_key_or_location_and_nothing_inside_a_mapping() -> None:
    tick = Settings.model_fields["loop"].annotation.model_fields["tick_s"]
    assert field_at("loop.tick_s") is field_at(("loop", "tick_s")) is tick
    assert field_at("openwhisk.slo_s.primes") is None
    assert field_at("loop.tick") is None


def test_describe_gives_the_fields_docstring_on_one_line() -> None:
    text = describe("loop.tick_s")
    assert text.startswith("Length of one observe–decide–act pass, s.")
    assert "\n" not in text and "  " not in text


def test_describe_of_a_group_gives_the_groups_docstring() -> None:
    assert describe("guard") == "Bounds every decision is clamped to before it reaches the cluster."


def test_the_reference_rows_use_default_of_and_describe() -> None:
    for key, default, _, meaning in settings_reference():
        assert meaning == describe(key)
        value = default_of(key)
        shown = list(value) if isinstance(value, tuple) else value
        assert default == (repr(shown) if isinstance(shown, str) else str(shown))


def test_the_reference_shows_choices_joined_by_or() -> None:
    rows = {key: allowed for key, _, allowed, _ in settings_reference()}
    assert rows["daemon.backend"] == "sim or local or openwhisk"


def test_the_policy_params_example_is_accepted_by_the_policies_it_names() -> None:
    example = re.search(r"e\.g\. ``(\{.*?\})``", describe("policy.params"))
    assert example is not None
    for name, params in yaml.safe_load(example.group(1)).items():
        assert registry.make(name, **params).name == name


# Every name ``controller.settings`` exported as a single module, which callers still import from it.
FORMER_NAMES = [
    "DEFAULT_COMPARE_POLICIES", "OPENWHISK_MAX_FUNCTIONS", "ClusterSettings", "DaemonSettings",
    "EstimatorSettings", "GuardSettings", "LocalSettings", "LoopSettings", "OpenWhiskSettings",
    "OutputSettings", "PolicySettings", "RewardSettings", "Settings", "SettingsError", "WorkloadSettings",
    "allowed_range", "load_settings", "settings_reference", "ENV_PREFIX", "ENV_NESTED_DELIMITER",
]
NEW_NAMES = ["ReplaySettings", "live_keys", "is_live", "backend_names", "default_of", "describe",
             "field_at", "mask_credentials", "BackendName", "Live", "SettingsGroup"]


@pytest.mark.parametrize("name", FORMER_NAMES + NEW_NAMES)
def test_every_public_name_is_importable_from_the_package(name: str) -> None:
    assert name in settings_package.__all__
    assert getattr(settings_package, name) is not None


def test_every_group_of_the_root_is_exported_by_the_package() -> None:
    fields = Settings.model_fields.values()
    groups = {info.annotation.__name__ for info in fields if hasattr(info.annotation, "model_fields")}
    assert groups <= set(settings_package.__all__)


HISTORY = re.compile(r"\bissue\s*#?\d|added (by|for|later)|lands with|not built yet|DESIGN\.md",
                     re.IGNORECASE)


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_the_settings_sources_carry_no_project_history(path: Path) -> None:
    hits = [f"{path.name}:{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1)
            if HISTORY.search(line)]
    assert hits == []


def test_the_history_check_itself_catches_an_issue_number() -> None:
    assert HISTORY.search("# added by the daemon's engineer, issue 5")
    assert not HISTORY.search("a tissue of 5 lies")
