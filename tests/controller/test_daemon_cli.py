"""``mfrm run`` as a command: bad settings exit 2 naming key, value and range; ``--once`` exits 0 or 1."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner
from test_daemon_clock import FakeClock
from test_daemon_faults import FaultyBackend

from controller import assemble as assemble_module
from controller.commands.run import run_command
from controller.version import __version__

#: A small simulated cluster: three functions on three invokers, SLOs measured with few probes.
SMALL_SIM = "cluster: {invokers: 3}\nworkload: {functions: 3, minutes: 2}\nreward: {slo_probe_invocations: 200}\n"


def _config(tmp_path, text: str):
    path = tmp_path / "mfrm.yaml"
    path.write_text(text + f"output: {{out_dir: {tmp_path / 'out'}}}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "args", "said"),
    [
        ("loop:\n  tick_s: -1\n", [], ["loop.tick_s = -1", "mfrm.yaml:2", "allowed: 0.1 <= value <= 3600"]),
        ("loop:\n\ttick_s: 5\n", [], ["mfrm.yaml:2: not valid YAML"]),
        ("daemon:\n  metrics_prot: 9000\n", [], ["daemon.metrics_prot: unknown setting"]),
        ("", ["--interval", "-1"], ["daemon.interval_s = -1.0", "command line", "allowed: 0.01 <= value <= 3600"]),
        ("", ["--set", "daemon.shutdown_timeout_s=0"], ["daemon.shutdown_timeout_s = 0",
                                                          "allowed: 0 < value <= 3600"]),
        ("policy: {name: no-such-policy}\n", [], ["unknown policy 'no-such-policy'"]),
        ("policy: {name: nac-linear, params: {nac-linear: {scheme: portfolio, twin_features: true}}}\n", [],
         ["policy.params.nac-linear.twin_features", "the daemon has none"]),
    ],
    ids=["value-out-of-range", "not-yaml", "misspelt-key", "bad-flag", "bad-set", "unknown-policy",
         "twins-in-the-daemon"],
)
def test_bad_settings_at_start_exit_2_naming_what_is_wrong(tmp_path, text, args, said):
    result = CliRunner().invoke(run_command, ["--config", str(_config(tmp_path, text)), "--once", *args])
    assert result.exit_code == 2, result.output
    for fragment in said:
        assert fragment in result.output


def test_a_missing_config_file_exits_2(tmp_path):
    result = CliRunner().invoke(run_command, ["--config", str(tmp_path / "nope.yaml"), "--once"])
    assert result.exit_code == 2
    assert "cannot read settings file" in result.output


def test_once_on_the_simulated_cluster_logs_version_and_masked_settings_and_exits_0(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        result = CliRunner().invoke(run_command, ["--config", str(_config(tmp_path, SMALL_SIM)), "--once"])
    assert result.exit_code == 0, result.output
    assert f"mfrm {__version__} daemon: backend=sim policy=openwhisk-default" in caplog.text
    # One line per setting that differs from its default, not one line of every setting.
    assert "setting workload.functions = 3" in caplog.text
    assert "effective settings" not in caplog.text
    # The default policy set each function's shares, and said why.
    assert "shares 512 -> 512 (openwhisk-default: 1024 MB of 2048 MB -> 512 shares)" in caplog.text
    assert "one tick finished" in caplog.text


def test_once_in_dry_run_decides_but_changes_nothing(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        result = CliRunner().invoke(run_command, ["--config", str(_config(tmp_path, SMALL_SIM)), "--once",
                                                  "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "dry_run=True" in caplog.text
    assert "openwhisk-default: 1024 MB of 2048 MB" not in caplog.text


def failing_backend(settings):
    """A backend factory (``module:function``, as BACKEND_FACTORIES names them) whose platform answers 500."""
    return FaultyBackend(FakeClock(), faults={0: "http_500"})


def test_once_exits_1_when_the_tick_fails(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(assemble_module.BACKEND_FACTORIES, "local", "test_daemon_cli:failing_backend")
    with caplog.at_level(logging.INFO):
        result = CliRunner().invoke(run_command, ["--config", str(_config(tmp_path, "")), "--once",
                                                  "--backend", "local"])
    assert result.exit_code == 1
    assert "tick failed (server_error" in caplog.text


def test_a_backend_missing_from_this_build_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(assemble_module.BACKEND_FACTORIES, "local", "controller.backends.no_such_backend:from_settings")
    result = CliRunner().invoke(run_command, ["--config", str(_config(tmp_path, "")), "--once", "--backend", "local"])
    assert result.exit_code == 2  # a setting that cannot be used, like every other
    assert "daemon.backend='local' is not available in this build" in result.output
