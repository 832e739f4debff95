"""localwhisk's command line: options, their variables and defaults, and one-line errors for bad values."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from localwhisk.cli import command, envvar, field_default, main
from localwhisk.config import ActionLimitRanges, PlatformConfig, Subject, ThrottleConfig

#: Every option localwhisk has ever had; scripts and unit files use these names.
ORIGINAL_OPTIONS = [
    "--host", "--port", "--auth", "--namespace", "--state-dir", "--user-memory-mb", "--idle-timeout-s",
    "--pause-grace-s", "--max-memory-mb", "--invocations-per-minute", "--concurrent-invocations", "--cgroups",
    "--cgroup-parent", "--log-level",
]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("LOCALWHISK_"):
            monkeypatch.delenv(name)
    return monkeypatch


def options() -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and p.name not in ("help", "version")]


def test_every_option_has_help_its_variable_and_a_default_shown(clean_environment: pytest.MonkeyPatch) -> None:
    text = command.get_help(click.Context(command, info_name="localwhisk"))
    flat = " ".join(text.split())
    for option in options():
        name = option.opts[0]
        assert option.help, f"{name} has no help"
        assert envvar(name) in flat, f"{name}: {envvar(name)} is not shown"
        if option.name not in ("auth", "state_dir"):  # the two required options have no default
            assert option.show_default, f"{name} hides its default"


@pytest.mark.parametrize(
    ("option", "default"),
    [
        ("--host", field_default(PlatformConfig, "host")),
        ("--port", field_default(PlatformConfig, "port")),
        ("--namespace", field_default(Subject, "namespace")),
        ("--user-memory-mb", field_default(PlatformConfig, "user_memory_mb")),
        ("--idle-timeout-s", field_default(PlatformConfig, "idle_timeout_s")),
        ("--pause-grace-s", field_default(PlatformConfig, "pause_grace_s")),
        ("--max-memory-mb", ActionLimitRanges().memory_mb.maximum),
        ("--invocations-per-minute", ThrottleConfig().invocations_per_minute),
        ("--concurrent-invocations", ThrottleConfig().concurrent_invocations),
        ("--cgroups", field_default(PlatformConfig, "cgroups")),
        ("--cgroup-parent", field_default(PlatformConfig, "cgroup_parent")),
        ("--request-timeout-s", field_default(PlatformConfig, "request_timeout_s")),
    ],
    ids=lambda v: str(v),
)
def test_option_defaults_are_the_configuration_defaults(option: str, default: object) -> None:
    assert next(o for o in options() if option in o.opts).default == default


def test_every_original_option_name_is_still_accepted(tmp_path: Path, clean_environment: pytest.MonkeyPatch) -> None:
    argv = ["--host", "127.0.0.1", "--port", "0", "--auth", "u:k", "--namespace", "guest", "--state-dir", str(tmp_path),
            "--user-memory-mb", "2048", "--idle-timeout-s", "5", "--pause-grace-s", "0.1", "--max-memory-mb", "512",
            "--invocations-per-minute", "10", "--concurrent-invocations", "5", "--cgroups", "off",
            "--cgroup-parent", "lw", "--log-level", "DEBUG"]
    assert sorted(a for a in argv if a.startswith("--")) == sorted(ORIGINAL_OPTIONS)
    context = command.make_context("localwhisk", argv)
    assert context.params["user_memory_mb"] == 2048 and context.params["cgroups"] == "off"


def test_options_read_their_variables(tmp_path: Path, clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("LOCALWHISK_PORT", "4321")
    clean_environment.setenv("LOCALWHISK_PASS_ENV", "UPLOADER_DEST_DIR TZ")
    context = command.make_context("localwhisk", ["--auth", "u:k", "--state-dir", str(tmp_path)])
    assert context.params["port"] == 4321
    assert context.params["pass_env"] == ("UPLOADER_DEST_DIR", "TZ")


@pytest.mark.parametrize(
    ("argv", "environment", "named"),
    [
        (["--port", "abc"], {}, "'--port'"),
        ([], {"LOCALWHISK_PORT": "abc"}, "LOCALWHISK_PORT"),
        (["--port", "70000"], {}, "'--port'"),
        ([], {"LOCALWHISK_PORT": "70000"}, "LOCALWHISK_PORT"),
        ([], {"LOCALWHISK_USER_MEMORY_MB": "1e3"}, "LOCALWHISK_USER_MEMORY_MB"),
        (["--idle-timeout-s", "nan"], {}, "'--idle-timeout-s'"),
        (["--max-memory-mb", "64"], {}, "'--max-memory-mb'"),
        ([], {"LOCALWHISK_CONCURRENT_INVOCATIONS": "-3"}, "LOCALWHISK_CONCURRENT_INVOCATIONS"),
        (["--cgroups", "maybe"], {}, "'--cgroups'"),
        (["--namespace", "../x"], {}, "'--namespace'"),
        ([], {"LOCALWHISK_PASS_ENV": "LOCALWHISK_AUTH"}, "LOCALWHISK_PASS_ENV"),
        (["--auth", "no-colon"], {}, "'--auth'"),
        (["--no-such-option"], {}, "--no-such-option"),
    ],
    ids=["port-text", "port-text-from-variable", "port-range", "port-range-from-variable", "memory-float-from-variable",
         "idle-nan", "max-memory-below-default", "concurrency-negative-from-variable", "cgroups-mode", "namespace",
         "pass-env-own-settings", "malformed-key", "unknown-option"],
)
def test_a_bad_value_is_one_line_naming_its_option_or_variable_with_status_2(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    argv: list[str], environment: dict[str, str], named: str,
) -> None:
    for name, value in environment.items():
        clean_environment.setenv(name, value)
    base = [] if "--auth" in argv else ["--auth", "u:k"]
    with pytest.raises(SystemExit) as exited:
        main(base + ["--state-dir", str(tmp_path / "state")] + argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("localwhisk: ")
    assert named in err
    assert not (tmp_path / "state").exists()  # refused before anything was created


@pytest.mark.parametrize("missing", ["--auth", "--state-dir"])
def test_a_missing_required_option_names_it_and_its_variable(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], missing: str
) -> None:
    argv = {"--auth": ["--auth", "u:k"], "--state-dir": ["--state-dir", str(tmp_path)]}
    with pytest.raises(SystemExit) as exited:
        main([a for option, args in argv.items() if option != missing for a in args])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"localwhisk: {missing} is required (or {envvar(missing)})\n"


@pytest.mark.parametrize("launcher", ["module", "console-script"])
def test_both_entry_points_answer_help_and_refuse_a_bad_variable_without_a_traceback(tmp_path: Path, launcher: str) -> None:
    if launcher == "module":
        prefix = [sys.executable, "-m", "localwhisk"]
    else:
        script = shutil.which("localwhisk")
        if script is None:
            pytest.skip("the localwhisk console script is not installed (pip install -e .)")
        prefix = [script]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LOCALWHISK_")}
    shown = subprocess.run([*prefix, "--help"], capture_output=True, text=True, env=environment, timeout=120, check=False)
    assert shown.returncode == 0 and "LOCALWHISK_AUTH" in shown.stdout
    refused = subprocess.run(
        [*prefix, "--auth", "u:k", "--state-dir", str(tmp_path)], capture_output=True, text=True,
        env=environment | {"LOCALWHISK_PORT": "abc"}, timeout=120, check=False,
    )
    assert refused.returncode == 2
    assert refused.stderr == "localwhisk: Invalid value for '--port' (from LOCALWHISK_PORT): 'abc' is not a valid integer.\n"
