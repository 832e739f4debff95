"""Fault injection on a real platform: localwhisk, behind a proxy of our own on 127.0.0.1 that slows,
hangs, trickles, fails (500, 503, 429, 401), refuses or garbles, observed by the daemon's real
``local`` backend on the daemon's real clock.

For every fault the daemon makes no decision on the rows it could not observe, logs the cause once,
counts the kind the client typed, turns ``/healthz`` 503 once blind past ``daemon.blind_after_s``,
and observes again at the first tick after the fault ends. The clock is the daemon's real one, with
a shift the test adds to stand for time spent blind (so the test never waits for the limit).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import FixedPolicy
from fakes.fault_proxy import Fault, FaultProxy
from prometheus_client import CollectorRegistry

from controller.backends.local import from_settings as local_backend
from controller.checkpoint import read_checkpoint
from controller.clock import RealClock
from controller.daemon import Daemon, DeadlineBackend, EndpointServer, build_daemon
from controller.settings import load_settings
from localwhisk.config import PlatformConfig, Subject
from localwhisk.server import LocalWhisk
from localwhisk.testing import TEST_AUTH, WhiskClient, free_port, running_platform, wait_until
from policies.types import KEEP_SHARES, UNMANAGED, Decisions

NAMES = ("hello", "echo")
CODE = "def main(args):\n    return {'ok': True}\n"
BLIND_AFTER_S = 3.0
DEADLINE_S = 1.0


class ShiftedClock(RealClock):
    """The daemon's real clock, plus a shift the test adds to stand for time spent waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.shift_s = 0.0

    def monotonic(self) -> float:
        return super().monotonic() + self.shift_s


@dataclass
class RecordingPolicy:
    """Decides "leave it to the platform" for every row with data (nothing is sent) and records which rows."""

    name: str = "recording"
    decided: list[tuple[bool, ...]] = field(default_factory=list)

    def decide(self, snapshot, mu):
        valid = snapshot.functions.valid.copy()
        self.decided.append(tuple(bool(v) for v in valid))
        n = len(valid)
        return Decisions(containers=np.full(n, UNMANAGED), cpu_shares=np.full(n, KEEP_SHARES), valid=valid,
                         reasons=("recording",) * n)

    def feedback(self, snapshot, mu, rewards):
        return {}


@dataclass
class Platform:
    """localwhisk with the benchmark-named actions, its client, the proxy in front and the SLO file."""

    whisk: object
    client: object
    proxy: FaultProxy
    slo_file: Path

    def invoke(self, name: str, times: int) -> None:
        for _ in range(times):
            status, _ = self.client.invoke(name, {}, blocking=True)
            assert status == 200


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Platform]:
    state = tmp_path_factory.mktemp("localwhisk")
    with running_platform(state / "state", cgroups="off") as (whisk, client):
        for name in NAMES:
            status, body = client.put_action(name, CODE)
            assert status == 200, body
        slo_file = state / "slo.json"
        slo_file.write_text(json.dumps({"functions": [{"function": name, "slo_ms": 500.0} for name in NAMES]}))
        with FaultProxy(whisk.url, hold_s=30.0) as proxy:
            yield Platform(whisk, client, proxy, slo_file)


@pytest.fixture
def proxy(platform) -> Iterator[FaultProxy]:
    platform.proxy.set("pass")
    yield platform.proxy
    platform.proxy.set("pass")


def daemon_settings(platform: Platform, tmp_path: Path, **overrides):
    return load_settings(overrides={
        "daemon.backend": "local", "daemon.interval_s": 1.0, "daemon.tick_deadline_s": DEADLINE_S,
        "daemon.blind_after_s": BLIND_AFTER_S, "daemon.backoff_s": [1.0], "daemon.metrics_host": "127.0.0.1",
        "local.api_host": platform.proxy.url, "local.auth": TEST_AUTH, "local.slo_file": str(platform.slo_file),
        "local.functions": list(NAMES), "local.max_attempts": 1, "output.out_dir": str(tmp_path / "out"),
        **overrides,
    })


def build(platform: Platform, tmp_path: Path) -> tuple[Daemon, CollectorRegistry, RecordingPolicy, ShiftedClock]:
    settings = daemon_settings(platform, tmp_path)
    clock, registry, policy = ShiftedClock(), CollectorRegistry(), RecordingPolicy()
    daemon = build_daemon(settings, backend=local_backend(settings), policy=policy, registry=registry, clock=clock)
    assert isinstance(daemon.loop.backend, DeadlineBackend)
    return daemon, registry, policy, clock


FAULTS = [
    # (fault, kind the daemon counts, what the log says)
    (Fault("status", status=500), "server_error", "HTTP 500: injected 500"),
    (Fault("status", status=503), "server_error", "HTTP 503: injected 503"),
    (Fault("status", status=429), "throttled", "HTTP 429: injected 429"),
    (Fault("status", status=401), "unauthorized", "HTTP 401: injected 401"),
    (Fault("malformed"), "malformed", "body is not JSON"),
    (Fault("refuse"), "unreachable", "cannot connect"),
    (Fault("hang"), "timeout", "timeout"),
    (Fault("slow", delay_s=3 * DEADLINE_S), "timeout", "timeout"),
    (Fault("trickle", delay_s=0.2), "timeout", "did not return by the tick's deadline"),
]


@pytest.mark.parametrize(("fault", "kind", "said"), FAULTS, ids=[f"{f.kind}-{f.status}" if f.kind == "status" else f.kind
                                                                  for f, _, _ in FAULTS])
def test_a_platform_fault_gives_no_decision_a_typed_cause_a_blind_503_and_recovery_at_the_next_tick(
        platform, proxy, tmp_path, caplog, fault, kind, said):
    daemon, registry, policy, clock = build(platform, tmp_path)
    get = registry.get_sample_value
    platform.invoke("hello", 3)
    with caplog.at_level(logging.INFO, logger="controller"):
        assert daemon.tick(1.0)
        assert policy.decided == [(True, True)]
        proxy.set(fault)
        assert not daemon.tick(2.0)
        assert not daemon.tick(3.0)
        assert policy.decided == [(True, True)]  # nothing decided while the platform could not be read
        assert get("mfrm_backend_errors_total", {"kind": kind}) == 2
        assert get("mfrm_backend_errors_total", {"kind": "internal"}) == 0
        assert get("mfrm_no_decisions_total", {"reason": "tick_failed"}) == 2 * len(NAMES)
        assert caplog.text.count(f"tick failed ({kind}, 1 in a row)") == 1
        assert said in caplog.text
        assert platform.proxy.url.split("://")[1] in caplog.text or kind == "timeout"
        clock.shift_s += BLIND_AFTER_S  # ticks went on failing for as long as the limit
        ok, why = daemon.health.check(clock.monotonic())
        assert not ok and why.startswith("blind:") and f"{kind}: " in why

        proxy.set("pass")
        assert daemon.loop.backend.wait_idle(30.0)  # a request left behind ends once the fault does
        platform.invoke("hello", 2)
        assert daemon.tick(4.0), caplog.text[-2000:]
    assert policy.decided[-1] == (True, True)
    snapshot_completions = daemon.loop.backend.inner.activations  # the window read by the good tick
    assert snapshot_completions.unusable == 0
    assert "recovered: tick 1 finished after 2 failed tick(s)" in caplog.text
    assert daemon.health.check(clock.monotonic())[0]


def test_after_a_fault_the_first_good_tick_counts_what_ran_during_it_once(platform, proxy, tmp_path):
    daemon, registry, _, _ = build(platform, tmp_path)
    platform.invoke("hello", 3)
    assert daemon.tick(1.0)
    proxy.set(Fault("status", status=500))
    platform.invoke("hello", 4)
    assert not daemon.tick(2.0)
    proxy.set("pass")
    platform.invoke("echo", 2)
    assert daemon.tick(3.0)
    assert registry.get_sample_value("mfrm_invocations_total", {"function": "hello"}) == 7
    assert registry.get_sample_value("mfrm_invocations_total", {"function": "echo"}) == 2


def test_a_garbled_record_of_one_function_leaves_only_its_row_without_a_decision(platform, proxy, tmp_path, caplog):
    daemon, registry, policy, clock = build(platform, tmp_path)

    def garble_echo(path: str, body: bytes) -> bytes:
        if "/activations" not in path:
            return body
        records = json.loads(body)
        for record in records:
            if record.get("name") == "echo":
                record["duration"] = "forever"
        return json.dumps(records).encode()

    proxy.set(Fault("rewrite", rewrite=garble_echo))
    platform.invoke("hello", 2)
    platform.invoke("echo", 2)
    with caplog.at_level(logging.INFO, logger="controller"):
        assert daemon.tick(1.0)
    assert policy.decided == [(True, False)]
    assert registry.get_sample_value("mfrm_backend_errors_total", {"kind": "malformed"}) == 1
    assert registry.get_sample_value("mfrm_no_decisions_total", {"reason": "no_data"}) == 1
    assert "no data for 1 of 2 functions (echo): malformed: activations: activation" in caplog.text
    assert "duration='forever'" in caplog.text
    ok, why = daemon.health.check(clock.monotonic())
    assert ok and "no data for 1 of 2 functions: echo: activation" in why


def test_healthz_over_http_is_503_with_the_cause_while_the_daemon_is_blind(platform, proxy, tmp_path):
    daemon, registry, _, clock = build(platform, tmp_path)
    server = EndpointServer(registry, daemon.health, clock, "127.0.0.1", 0)
    try:
        assert daemon.tick(1.0)
        proxy.set(Fault("status", status=401))
        assert not daemon.tick(2.0)
        clock.shift_s += BLIND_AFTER_S
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10)
            pytest.fail("/healthz answered 200 while blind")
        except urllib.error.HTTPError as error:
            assert error.code == 503
            body = error.read().decode()
        assert body.startswith("unhealthy: blind: last observation of the cluster")
        assert "unauthorized: pools: GET http://127.0.0.1" in body and "HTTP 401" in body
    finally:
        server.close()


def test_after_a_platform_restart_the_observed_state_returns_to_the_targets_within_one_tick(tmp_path):
    config = PlatformConfig(subject=Subject.parse(TEST_AUTH), state_dir=tmp_path / "state", port=free_port(),
                            cgroups="off")
    whisk = LocalWhisk(config).start()
    try:
        client = WhiskClient(whisk.url)
        for name in NAMES:
            assert client.put_action(name, CODE)[0] == 200
        slo_file = tmp_path / "slo.json"
        slo_file.write_text(json.dumps({"functions": [{"function": name, "slo_ms": 500.0} for name in NAMES]}))
        platform = Platform(whisk, client, FaultProxy(whisk.url), slo_file)
        settings = daemon_settings(platform, tmp_path, **{"local.api_host": whisk.url})
        daemon = build_daemon(settings, backend=local_backend(settings), policy=FixedPolicy(containers=2, shares=512),
                              registry=CollectorRegistry(), clock=ShiftedClock())

        def held() -> list[tuple[int, int]]:
            return [(pool["containers"], pool["cpuShares"]) for pool in (client.resources(n)[1] for n in NAMES)]

        assert daemon.tick(1.0)
        assert held() == [(2, 512), (2, 512)]
        whisk.stop()  # the platform restarts: its actions are kept, its pools start again from its defaults
        whisk = LocalWhisk(config).start()
        client.close()
        assert held() != [(2, 512), (2, 512)]
        assert daemon.tick(2.0)
        assert held() == [(2, 512), (2, 512)]
    finally:
        whisk.stop()


# --- the command line: the pre-flight and a SIGTERM while the platform hangs -------------------------


def _run(platform: Platform, tmp_path: Path, *args: str, **popen) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFRM_")}
    env["MFRM_LOCAL__AUTH"] = TEST_AUTH
    argv = [sys.executable, "-m", "controller", "run", "--backend", "local", "--metrics-port", "0",
            "--set", f"local.api_host={platform.proxy.url}", "--set", f"local.slo_file={platform.slo_file}",
            "--set", f"local.functions={json.dumps(list(NAMES))}", "--set", "local.max_attempts=1",
            "--set", "daemon.metrics_host=127.0.0.1", "--set", f"output.out_dir={tmp_path / 'out'}", *args]
    return subprocess.Popen(argv, env=env, cwd=tmp_path, **popen)


@pytest.mark.parametrize(
    ("fault", "said"),
    [(None, None), (Fault("status", status=401), "unauthorized: pools: GET"),
     (Fault("refuse"), "unreachable: pools: GET"), (Fault("hang"), "timeout: ")],
    ids=["healthy", "wrong-key", "platform-down", "platform-hangs"],
)
def test_run_once_exits_non_zero_with_the_cause_when_it_cannot_observe(platform, proxy, tmp_path, fault, said):
    if fault is not None:
        proxy.set(fault)
    process = _run(platform, tmp_path, "--once", "--dry-run", "--set", "daemon.tick_deadline_s=2",
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = process.communicate(timeout=120)  # a harness bound only
    if fault is None:
        assert process.returncode == 0, err[-2000:]
        return
    assert process.returncode == 1, err[-2000:]
    line = next(line for line in err.splitlines() if line.startswith("mfrm run --once: could not observe the cluster"))
    assert said in line
    assert "Traceback" not in err


def test_sigterm_while_a_request_hangs_exits_within_the_shutdown_timeout_with_a_final_checkpoint(
        platform, proxy, tmp_path):
    log = tmp_path / "daemon.log"
    checkpoint = tmp_path / "out" / "checkpoints" / "nac-linear.ckpt.npz"
    # A deadline far beyond the shutdown time-out: only the stop can end the wait for the platform.
    process = _run(platform, tmp_path, "--interval", "0.5", "--set", "policy.name=nac-linear",
                   "--set", "daemon.tick_deadline_s=600", "--set", "local.read_timeout_s=300",
                   "--set", "daemon.shutdown_timeout_s=5", "-v", stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    try:
        wait_until("two good ticks", lambda: log.read_text(errors="replace").count("controller.daemon.service: tick ")
                   >= 2, 120, process, poll_s=0.1)
        proxy.set("hang")
        assert proxy.hanging.wait(30), "the daemon never reached the hanging platform"
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=60)  # a harness bound only: the daemon's own bound is 5 s
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    text = log.read_text(errors="replace")
    # 0, not the watchdog's 1: the exit finished within daemon.shutdown_timeout_s, measured by the
    # daemon itself, with its final checkpoint.
    assert status == 0, text[-3000:]
    assert "shutdown did not finish" not in text
    assert "the tick is abandoned; the final checkpoint follows" in text
    ticks = [int(line.split(" tick ", 1)[1].split(" ")[0]) + 1 for line in text.splitlines()
             if "controller.daemon.service: tick " in line]
    assert int(read_checkpoint(checkpoint)[0]["tick"]) == max(ticks)
