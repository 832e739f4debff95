"""A user's bad settings input gives one readable SettingsError naming the file and offset or line, the
variable or the key; never a traceback, never a secret."""

from __future__ import annotations

import math
import os
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from controller.settings import Settings, SettingsError, load_settings

PASSWORD = "hunter2-secret"


@pytest.fixture(autouse=True)
def no_mfrm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own MFRM_* variables never leak into these tests."""
    for name in [n for n in os.environ if n.upper().startswith("MFRM_")]:
        monkeypatch.delenv(name)


def _write(tmp_path: Path, content: str | bytes, name: str = "settings.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _refused(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(SettingsError) as raised:
        load_settings(*args, **kwargs)
    return str(raised.value)


# --- the file ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("content, offset, byte", [
    (b"\xff\xfeseed: 1\n", 0, "0xff"),
    (b"seed: 1\nloop:\n  tick_s: 5\xe9\n", 25, "0xe9"),
], ids=["a utf-16 byte order mark", "a latin-1 letter in a value"])
def test_a_file_that_is_not_utf8_is_named_with_the_offset_of_the_bad_byte(tmp_path, content, offset, byte):
    path = _write(tmp_path, content)
    message = _refused(path)
    assert message == f"{path}: not UTF-8 text (byte {byte} at offset {offset})"


@pytest.mark.parametrize("content", ["", "\n\n", "# every setting is commented out\n# seed: 3\n", "---\n"],
                         ids=["empty", "blank lines", "comments only", "an empty document"])
def test_an_empty_file_is_refused_when_empty_is_not_allowed(tmp_path, content):
    path = _write(tmp_path, content)
    assert _refused(path, allow_empty=False) == f"{path} is empty"


@pytest.mark.parametrize("content", ["", "# nothing yet\n"], ids=["empty", "comments only"])
def test_an_empty_file_at_start_gives_the_defaults(tmp_path, content):
    assert load_settings(_write(tmp_path, content)) == load_settings()


def test_a_file_with_settings_loads_when_empty_is_not_allowed(tmp_path):
    assert load_settings(_write(tmp_path, "seed: 4\n"), allow_empty=False).seed == 4


def test_a_folder_given_as_the_file_is_refused_with_its_path(tmp_path):
    assert _refused(tmp_path) == f"cannot read settings file {tmp_path}: Is a directory"


def test_a_file_whose_top_level_is_a_list_is_refused(tmp_path):
    path = _write(tmp_path, "- seed\n- 3\n")
    assert _refused(path) == f"{path}: the top level must be a mapping of groups, got list"


# --- the environment --------------------------------------------------------------------------------

@pytest.mark.parametrize("variable, value, key, column", [
    ("MFRM_GUARD", '{"max_containers": ', "guard", 20),
    ("MFRM_POLICY__COMPARE", "[ensure, kpa]", "policy.compare", 2),
    ("MFRM_OPENWHISK__SLO_S", "{primes: 0.3}", "openwhisk.slo_s", 2),
    ("MFRM_DAEMON__BACKOFF_S", "1,2,5", "daemon.backoff_s", 2),
], ids=["a whole group", "a list setting", "a mapping setting", "a tuple setting"])
def test_a_variable_whose_json_does_not_parse_is_named(monkeypatch, variable, value, key, column):
    monkeypatch.setenv(variable, value)
    message = _refused()
    assert message.startswith(f"environment variable {variable} ({key}): not valid JSON (")
    assert message.endswith(f" at column {column})")
    assert "\n" not in message


def test_a_multi_line_json_variable_is_named_with_line_and_column(monkeypatch):
    monkeypatch.setenv("MFRM_GUARD", '{\n  "max_containers": 3,\n  "min_shares" 4\n}')
    assert _refused().endswith("(Expecting ':' delimiter at line 3 column 16)")


def test_a_variable_whose_json_parses_is_read(monkeypatch):
    monkeypatch.setenv("MFRM_GUARD", '{"max_containers": 9}')
    monkeypatch.setenv("MFRM_POLICY__COMPARE", '["ensure", "kpa"]')
    s = load_settings()
    assert (s.guard.max_containers, s.policy.compare) == (9, ("ensure", "kpa"))


def test_a_group_error_names_every_source_that_set_part_of_the_group(tmp_path, monkeypatch):
    monkeypatch.setenv("MFRM_GUARD__MIN_CONTAINERS", "9")
    path = _write(tmp_path, "guard:\n  max_containers: 3\n")
    message = _refused(path)
    assert f"guard (from environment variable MFRM_GUARD__MIN_CONTAINERS, {path}:1)" in message


# --- NaN and infinity ---------------------------------------------------------------------------------

def _float_kind(annotation: Any) -> str | None:
    """How a float sits in a field's type: "scalar", "tuple" or "mapping"; None without a float."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is float:
        return "scalar"
    if origin is tuple and float in args:
        return "tuple"
    if origin is dict and args[-1] is float:
        return "mapping"
    if args and any(arg is float for arg in args):  # float | None
        return "scalar"
    return None


def _float_fields(model: type[BaseModel] = Settings, prefix: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            found += _float_fields(info.annotation, f"{prefix}{name}.")
        elif (kind := _float_kind(info.annotation)) is not None:
            found.append((prefix + name, kind))
    return found


FLOAT_FIELDS = _float_fields()


def test_the_float_fields_found_include_every_slo_and_the_backoff():
    keys = dict(FLOAT_FIELDS)
    assert keys["openwhisk.slo_s"] == "mapping" and keys["openwhisk.default_slo_s"] == "scalar"
    assert keys["daemon.backoff_s"] == "tuple" and keys["loop.tick_s"] == "scalar"
    assert len(FLOAT_FIELDS) > 20


def _shaped(kind: str, number: float) -> Any:
    return {"scalar": number, "tuple": [number], "mapping": {"primes": number}}[kind]


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("key, kind", FLOAT_FIELDS, ids=[key for key, _ in FLOAT_FIELDS])
def test_no_float_setting_accepts_nan_or_infinity(key, kind, number):
    message = _refused(overrides={key: _shaped(kind, number)})
    assert key in message and "finite number" in message


@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf"])
def test_nan_written_in_yaml_is_refused_with_its_line(tmp_path, text):
    path = _write(tmp_path, f"seed: 1\nreward:\n  alpha: {text}\n")
    message = _refused(path)
    assert f"reward.alpha = {float(text.replace('.', ''))!r} (from {path}:3)" in message


def test_nan_in_a_variable_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("MFRM_LOOP__TICK_S", "nan")
    message = _refused()
    assert "loop.tick_s = 'nan' (from environment variable MFRM_LOOP__TICK_S): " in message
    assert "Input should be a finite number" in message


SLO_GROUP = {"functions": ["primes"]}


@pytest.mark.parametrize("group, said", [
    ({"slo_s": {"primes": 0}}, "openwhisk.slo_s: {'primes': 0.0}; allowed: 0 < value <= 3600"),
    ({"slo_s": {"primes": -0.5}}, "allowed: 0 < value <= 3600"),
    ({"slo_s": {"primes": math.nan}}, "openwhisk.slo_s.primes = nan"),
    ({"slo_s": {"primes": math.inf}}, "openwhisk.slo_s.primes = inf"),
    ({"default_slo_s": 0}, "openwhisk.default_slo_s = 0"),
    ({"default_slo_s": -1}, "openwhisk.default_slo_s = -1"),
    ({"default_slo_s": math.nan}, "openwhisk.default_slo_s = nan"),
], ids=["zero", "negative", "nan", "inf", "default zero", "default negative", "default nan"])
def test_every_slo_must_be_a_positive_finite_number(group, said):
    assert said in _refused(overrides={"openwhisk": {**SLO_GROUP, **group}})


# --- secrets and URLs ------------------------------------------------------------------------------

@pytest.mark.parametrize("key, url", [
    ("local.api_host", f"http://admin:{PASSWORD}@127.0.0.1:3233"),
    ("local.api_host", f"https://{PASSWORD}@127.0.0.1:3233/api"),
], ids=["user and password", "a token as the user"])
def test_credentials_in_a_url_are_masked_when_settings_are_logged(key, url):
    s = load_settings(overrides={key: url})
    assert s.local.api_host == url  # the backend still gets the URL as given
    logged = s.logged()
    assert PASSWORD not in str(logged)
    assert logged["local"]["api_host"].startswith(url.split("://")[0] + "://**********@127.0.0.1:3233")


def test_credentials_in_a_docker_host_url_are_masked_when_logged():
    hosts = {"invoker0": f"tcp://root:{PASSWORD}@10.0.0.5:2376"}
    s = load_settings(overrides={"openwhisk.docker_hosts": hosts})
    assert s.logged()["openwhisk"]["docker_hosts"] == {"invoker0": "tcp://**********@10.0.0.5:2376"}


def test_every_secret_is_masked_when_logged(monkeypatch):
    for group in ("LOCAL", "OPENWHISK", "REPLAY"):
        monkeypatch.setenv(f"MFRM_{group}__AUTH", f"uuid:{PASSWORD}")
    logged = load_settings().logged()
    assert [logged[g]["auth"] for g in ("local", "openwhisk", "replay")] == ["**********"] * 3
    assert PASSWORD not in str(logged)


def test_a_refused_url_is_not_repeated_with_its_password():
    message = _refused(overrides={"local.api_host": f"ftp://admin:{PASSWORD}@host"})
    assert "local.api_host='ftp://**********@host': give an http:// or https:// URL with a host" in message
    assert PASSWORD not in message


def test_a_refused_secret_is_not_repeated():
    message = _refused(overrides={"openwhisk.auth": ["uuid", PASSWORD]})
    assert "openwhisk.auth = '**********' (from command line)" in message
    assert PASSWORD not in message


# --- the command line ---------------------------------------------------------------------------------

def test_an_override_that_is_both_a_value_and_a_group_is_refused():
    with pytest.raises(SettingsError, match="override 'loop.tick_s.x': 'tick_s' is both a value and a group"):
        load_settings(overrides={"loop.tick_s": 5, "loop.tick_s.x": 1})


def test_a_number_in_exponent_notation_is_read_as_a_number_on_the_command_line():
    from controller.commands.options import parse_set

    assert parse_set(["a=6e-5", "b=1E3", "c=1.5e-3", "d=x1e3", "e=ensure"]) == {
        "a": 6e-5, "b": 1000.0, "c": 1.5e-3, "d": "x1e3", "e": "ensure"}
