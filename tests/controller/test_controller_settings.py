"""Settings: YAML < environment < command line; bad values named with key, value, source and range."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from controller.settings import (
    Settings,
    SettingsError,
    allowed_range,
    live_keys,
    load_settings,
    settings_reference,
)
from policies import registry


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.upper().startswith("MFRM_"):
            monkeypatch.delenv(name)


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_papers_cluster_and_reward():
    s = load_settings()
    assert (s.cluster.invokers, s.cluster.cores, s.cluster.user_memory_mb) == (21, 8.0, 2048)
    assert s.reward.alpha == 0.3 and s.reward.slo_margin == 0.15
    assert s.loop.tick_s == 10.0


@pytest.mark.parametrize(
    "yaml_tick, env_tick, cli_tick, expected",
    [
        (5, None, None, 5.0),
        (5, "7", None, 7.0),
        (5, "7", 2, 2.0),
        (None, "7", None, 7.0),
    ],
    ids=[
        "the file overrides the default",
        "the environment overrides the file",
        "the command line overrides the environment",
        "the environment alone overrides the default",
    ],
)
def test_sources_apply_in_rising_precedence(tmp_path, monkeypatch, yaml_tick, env_tick, cli_tick, expected):
    path = _yaml(tmp_path, f"loop:\n  tick_s: {yaml_tick}\n  checkpoint_every_ticks: 4\n") if yaml_tick else None
    if env_tick is not None:
        monkeypatch.setenv("MFRM_LOOP__TICK_S", env_tick)
    overrides = {"loop.tick_s": cli_tick} if cli_tick is not None else {}
    s = load_settings(path, overrides)
    assert s.loop.tick_s == expected
    # Sources merge per key, not per group: the file's other loop key survives.
    assert s.loop.checkpoint_every_ticks == (4 if path else 0)


@pytest.mark.parametrize(
    "source, expected_parts",
    [
        ("file", ["loop.tick_s = -1", "settings.yaml:3", "0.1 <= value <= 3600"]),
        ("env", ["estimator.beta = '2'", "environment variable MFRM_ESTIMATOR__BETA", "0 < value <= 1"]),
        ("cli", ["reward.alpha = 1.5", "command line", "0 <= value <= 1"]),
    ],
    ids=["from the yaml file with its line", "from the environment", "from the command line"],
)
def test_a_bad_value_is_refused_naming_key_value_source_and_range(tmp_path, monkeypatch, source, expected_parts):
    path = overrides = None
    if source == "file":
        path = _yaml(tmp_path, "seed: 1\nloop:\n  tick_s: -1\n")
    elif source == "env":
        monkeypatch.setenv("MFRM_ESTIMATOR__BETA", "2")
    else:
        overrides = {"reward.alpha": 1.5}
    with pytest.raises(SettingsError) as caught:
        load_settings(path, overrides)
    for part in expected_parts:
        assert part in str(caught.value)


def test_an_unknown_key_is_refused_by_name(tmp_path):
    with pytest.raises(SettingsError, match=r"guard\.max_contianers: unknown setting"):
        load_settings(_yaml(tmp_path, "guard:\n  max_contianers: 3\n"))


def test_inconsistent_bounds_are_refused():
    with pytest.raises(SettingsError, match="min_containers=9 is above guard.max_containers=4"):
        load_settings(overrides={"guard.min_containers": 9, "guard.max_containers": 4})


def test_a_file_that_is_not_yaml_is_refused_with_its_line(tmp_path):
    with pytest.raises(SettingsError, match=r"settings.yaml:2: not valid YAML"):
        load_settings(_yaml(tmp_path, "loop:\n\ttick_s: 5\n"))


def test_a_missing_file_is_refused_with_its_path(tmp_path):
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load_settings(tmp_path / "nope.yaml")


def test_every_field_has_a_description():
    def walk(model, prefix=""):
        for name, info in model.model_fields.items():
            sub = info.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                yield from walk(sub, prefix + name + ".")
            else:
                yield prefix + name, info

    missing = [key for key, info in walk(Settings) if not info.description]
    assert missing == []


def test_allowed_range_describes_bounds_in_words():
    assert allowed_range(Settings.model_fields["seed"]) == f"0 <= value <= {2**63 - 1}"


def test_secrets_are_masked_when_settings_are_logged():
    class WithSecret(Settings):
        api_key: SecretStr = SecretStr("hunter2")

    logged = WithSecret().logged()
    assert logged["api_key"] == "**********"
    assert "hunter2" not in str(logged)


def test_settings_are_frozen():
    s = load_settings()
    with pytest.raises(ValidationError, match="frozen"):
        s.loop.tick_s = 3


GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"


def _guide_table() -> list[str]:
    """The rows of the user guide's settings reference, as written."""
    lines = GUIDE.read_text(encoding="utf-8").splitlines()
    start = lines.index("| key | default | allowed | meaning |") + 2
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start:end]


def _reference_table() -> list[str]:
    """The rows the guide must hold, rendered from ``settings_reference()``."""
    return [f"| `{key}` | `{default}` | {allowed or '–'} | {meaning} |"
            for key, default, allowed, meaning in settings_reference()]


def test_the_user_guide_lists_every_setting_once_in_field_order_as_the_model_describes_it():
    guide, expected = _guide_table(), _reference_table()
    keys = [row.split("`")[1] for row in guide]
    assert sorted(k for k in set(keys) if keys.count(k) > 1) == [], "keys listed more than once"
    assert guide == expected, "regenerate the table in docs/user-guide.md:\n" + "\n".join(expected)


def test_the_user_guide_names_the_live_keys_in_order():
    lines = GUIDE.read_text(encoding="utf-8").splitlines()
    line = next(line for line in lines if "`loop.tick_s`, `guard." in line)
    assert line.endswith(": " + ", ".join(f"`{key}`" for key in live_keys()) + ".")


def test_the_user_guide_example_file_loads_and_its_policy_params_are_accepted(tmp_path):
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("## Settings"):]
    start = section.index("```yaml\n") + len("```yaml\n")
    example = section[start:section.index("```\n", start)]
    s = load_settings(_yaml(tmp_path, example))
    assert s.policy.params == {"ensure": {"staffing_c": 1.5}}
    for name, params in s.policy.params.items():
        assert registry.make(name, **params).name == name
