"""The Prometheus latency source against a real Prometheus (Debian's ``prometheus``) scraping a real
localwhisk, with the daemon's real ``openwhisk`` backend; a proxy of our own in front of
Prometheus' API injects its faults (down, 500, 401, hanging, garbled).

Checked: with Prometheus scraping as often as the daemon ticks (the ratio the operator guide
recommends), the daemon sees the invocations, each once; a function without series is "no data",
never "0 invocations"; each fault of Prometheus fails the tick with its kind, turns ``/healthz``
503 once blind past the limit, and the first tick after it observes again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes.fault_proxy import Fault, FaultProxy
from prometheus_client import CollectorRegistry
from test_faults_local import RecordingPolicy, ShiftedClock

from controller.backends.openwhisk import from_settings as openwhisk_backend
from controller.daemon import Daemon, build_daemon
from controller.settings import load_settings
from localwhisk.testing import (
    TEST_AUTH,
    free_port,
    http_get,
    running_platform,
    stop_process_group,
    wait_until,
)

INSTALL_PROMETHEUS = "apt-get update && apt-get install -y prometheus"
NAMES = ("hello", "echo", "idle")
CODE = "def main(args):\n    return {'ok': True}\n"
SCRAPE_S = 0.5
TICK_S = 0.5  # as often as Prometheus scrapes, the ratio the operator guide recommends (10 s and 10 s), 20x faster
BLIND_AFTER_S = 3.0


@dataclass
class Setup:
    client: object
    whisk_url: str
    prometheus_url: str
    proxy: FaultProxy


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Iterator[Setup]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(f"prometheus is not installed (this test needs a real server): {INSTALL_PROMETHEUS}")
    tmp = tmp_path_factory.mktemp("prometheus")
    with contextlib.ExitStack() as stack:
        whisk, client = stack.enter_context(running_platform(tmp / "localwhisk", cgroups="off"))
        for name in NAMES:
            status, body = client.put_action(name, CODE)
            assert status == 200, body
        client.invoke("echo", {}, blocking=True)  # echo has series from the start; idle never will
        port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            f"global: {{scrape_interval: {SCRAPE_S * 1000:.0f}ms, scrape_timeout: {SCRAPE_S * 1000:.0f}ms}}\n"
            "scrape_configs:\n"
            f"  - job_name: localwhisk\n    static_configs: [{{targets: ['127.0.0.1:{whisk.port}']}}]\n")
        with (tmp / "prometheus.log").open("wb") as log:
            process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        stack.callback(stop_process_group, process)
        url = f"http://127.0.0.1:{port}"
        wait_until("prometheus ready", lambda: http_get(url + "/-/ready")[0] == 200, 60, process)
        query = url + "/api/v1/query?" + urllib.parse.urlencode({"query": 'openwhisk_action_activations_total{action="echo"}'})
        wait_until("a scrape of localwhisk", lambda: json.loads(http_get(query)[1] or b"{}").get("data", {}).get("result"),
                   60, process)
        proxy = stack.enter_context(FaultProxy(url, hold_s=30.0))
        yield Setup(client, whisk.url, url, proxy)


@pytest.fixture
def proxy(setup) -> Iterator[FaultProxy]:
    setup.proxy.set("pass")
    yield setup.proxy
    setup.proxy.set("pass")


def build(setup: Setup, tmp_path: Path) -> tuple[Daemon, CollectorRegistry, RecordingPolicy, ShiftedClock]:
    settings = load_settings(overrides={
        "daemon.backend": "openwhisk", "daemon.interval_s": TICK_S, "daemon.tick_deadline_s": 2.0,
        "daemon.blind_after_s": BLIND_AFTER_S, "daemon.backoff_s": [TICK_S], "daemon.health_stale_intervals": 100,
        "openwhisk.api_host": setup.whisk_url, "openwhisk.auth": TEST_AUTH, "openwhisk.functions": list(NAMES),
        "openwhisk.default_slo_s": 1.0, "openwhisk.namespace": "guest", "openwhisk.latency_source": "prometheus",
        "openwhisk.prometheus_url": setup.proxy.url, "openwhisk.prometheus_timeout_s": 1.0, "openwhisk.lookback_s": 2.0,
        "openwhisk.max_attempts": 1, "output.out_dir": str(tmp_path / "out"),
    })
    clock, registry, policy = ShiftedClock(), CollectorRegistry(), RecordingPolicy()
    daemon = build_daemon(settings, backend=openwhisk_backend(settings), policy=policy, registry=registry,
                          clock=clock)
    return daemon, registry, policy, clock


def test_scraped_as_often_as_it_ticks_the_daemon_sees_every_invocation_and_no_series_is_no_data(
        setup, proxy, tmp_path, record_property):
    daemon, registry, policy, _ = build(setup, tmp_path)
    sent = 0
    done = threading.Event()

    def load() -> None:
        nonlocal sent
        for _ in range(240):
            status, _ = setup.client.invoke("hello", {}, blocking=True)
            sent += status == 200
        done.set()

    daemon.driver.run(daemon.tick, max_ticks=2)
    assert daemon.saw_cluster
    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    while not done.is_set():
        daemon.driver.run(daemon.tick, max_ticks=1)
    daemon.driver.run(daemon.tick, max_ticks=3)  # the last scrapes reach the daemon
    worker.join(timeout=60)
    seen = registry.get_sample_value("mfrm_invocations_total", {"function": "hello"})
    record_property("sent", sent)
    record_property("seen", seen)
    record_property("ticks", len(policy.decided))
    assert sent == 240
    # Each tick counts the rate between its two scrapes over its own length, so the sum is close to what
    # ran, not exact: a tick that met no new scrape has no data, a late tick stretches the last rate.
    assert 0.85 * sent <= seen <= 1.15 * sent, (seen, sent)
    assert registry.get_sample_value("mfrm_invocations_total", {"function": "echo"}) == 0  # series, no traffic
    assert all(not decided[2] for decided in policy.decided)  # idle: no series, so never a decision
    assert registry.get_sample_value("mfrm_no_decisions_total", {"reason": "no_data"}) >= len(policy.decided)
    assert any("no series of openwhisk_action_activations_total" in p.cause and "idle" in p.functions
               for p in daemon.loop.backend.problems)


FAULTS = [
    (Fault("refuse"), "unreachable", "cannot connect"),
    (Fault("status", status=500), "server_error", "HTTP 500"),
    (Fault("status", status=401), "unauthorized", "HTTP 401"),
    (Fault("hang"), "timeout", "timeout"),
    (Fault("malformed"), "malformed", "not a Prometheus API answer"),
]


@pytest.mark.parametrize(("fault", "kind", "said"), FAULTS, ids=["down", "500", "401", "hang", "garbled"])
def test_a_prometheus_fault_fails_the_tick_with_its_kind_and_the_next_tick_after_it_observes(
        setup, proxy, tmp_path, caplog, fault, kind, said):
    daemon, registry, policy, clock = build(setup, tmp_path)
    with caplog.at_level(logging.INFO, logger="controller"):
        daemon.driver.run(daemon.tick, max_ticks=2)  # on the real clock: Prometheus scrapes in between
        assert daemon.saw_cluster and policy.decided[-1][1]  # echo has series from the start
        decided = len(policy.decided)
        proxy.set(fault)
        daemon.driver.run(daemon.tick, max_ticks=2)
        assert daemon.driver.stats.failed == 2 and len(policy.decided) == decided
        assert registry.get_sample_value("mfrm_backend_errors_total", {"kind": kind}) == 2
        assert caplog.text.count(f"tick failed ({kind}, 1 in a row)") == 1 and said in caplog.text
        clock.shift_s += BLIND_AFTER_S
        ok, why = daemon.health.check(clock.monotonic())
        clock.shift_s -= BLIND_AFTER_S
        assert not ok and why.startswith("blind:") and f"{kind}: prometheus" in why
        proxy.set("pass")
        assert daemon.loop.backend.wait_idle(30.0)
        daemon.driver.run(daemon.tick, max_ticks=1)
    assert daemon.saw_cluster and policy.decided[-1][1]
    assert "recovered: tick 2 finished after 2 failed tick(s)" in caplog.text
    assert daemon.health.check(clock.monotonic())[0]


def test_run_once_with_prometheus_down_is_false_and_names_the_cause(setup, proxy, tmp_path):
    proxy.set(Fault("refuse"))
    daemon, _, policy, _ = build(setup, tmp_path)
    assert daemon.run_once() is False
    assert daemon.last_cause.startswith("unreachable: prometheus: http://127.0.0.1:")
    assert "cannot connect" in daemon.last_cause and policy.decided == []
