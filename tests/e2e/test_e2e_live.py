"""End to end on real processes: localwhisk, Prometheus, the daemon (NAC-Linear, ``local`` backend), the replayer.

One run for the whole module (about 1.5 minutes):

1. the local platform (``python -m localwhisk``, own state directory, ephemeral port, cgroups on);
2. a real Prometheus (Debian's ``prometheus``; temporary config and storage, 127.0.0.1, ephemeral
   port) scraping both the platform's and the daemon's ``/metrics`` every second;
3. the daemon, ``mfrm run --backend local`` with ``nac-linear`` ticking every 2 s, managing the 12
   actions the replayer creates;
4. ``mfrm replay --deploy``: 12 functions of the shipped trace sample (seed 3: about 840 invocations,
   a light load for 2 cores), 2 trace minutes at speed-up 2.

Then the tests check, each on its own: Prometheus holds the daemon's ``mfrm_*`` series and the
platform's ``openwhisk_action_*`` series (its HTTP API); the daemon changed warm pools and CPU
shares (its metrics in Prometheus, its log, the platform's resource API agree); the cgroup files
on disk hold the shares it set; every process stopped cleanly. Waiting is bounded polling; every
process runs in its own process group, stopped (SIGTERM, then SIGKILL) by the fixture's exit stack
even when something fails. Prometheus missing is a failure with the install command, never a skip.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from localwhisk.testing import free_port, http_get, stop_process_group, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TRACE = ROOT / "data" / "azure-functions-2019-sample"
AUTH = "0c6b1f8e-2d4a-4f3b-9e5c-7a8b9c0d1e2f:e2e-key-not-secret"
INSTALL_PROMETHEUS = "apt-get update && apt-get install -y prometheus"
SEED, FUNCTIONS, START, MINUTES, SPEEDUP = 3, 12, 480, 2, 2
TICK_S = 2.0
#: Every benchmark's SLO for this run, ms. The SLO only shapes the reward here (what this test
#: checks is the plumbing), so one generous value stands in for a solo measurement.
SLO_MS = 500.0
#: Series each source must have delivered to Prometheus (the job label tells the source apart).
SERIES = (
    ("mfrm_ticks_total", "mfrm"),
    ("mfrm_decision_target_containers", "mfrm"),
    ("mfrm_decision_cpu_shares", "mfrm"),
    ("mfrm_latency_p99_seconds", "mfrm"),
    ("openwhisk_action_activations_total", "localwhisk"),
    ("openwhisk_action_coldStarts_total", "localwhisk"),
    ("openwhisk_action_duration_seconds_count", "localwhisk"),
    ("localwhisk_container_cpu_shares", "localwhisk"),
)
#: Every PromQL query the checks use, asked once after the replay.
QUERIES = tuple(f'{series}{{job="{job}"}}' for series, job in SERIES) + (
    'sum(openwhisk_action_activations_total{job="localwhisk"})',
    'mfrm_ticks_total{job="mfrm"}',
    'sum by (resource) (mfrm_decision_changes_total{job="mfrm"})',
)
CHANGE_LINE = re.compile(r"controller\.loop: (?P<name>\S+): (?P<change>.*?) \(")


# --------------------------------------------------------------------------------------------
# processes and polling
# --------------------------------------------------------------------------------------------


@dataclass
class Child:
    """A started process, in its own process group, with its output in a log file."""

    name: str
    process: subprocess.Popen
    log: Path

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM the group, SIGKILL it after ``grace_s``; the exit status."""
        return stop_process_group(self.process, grace_s)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def spawn(stack: contextlib.ExitStack, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Child:
    with log.open("wb") as handle:
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
    child = Child(name, process, log)
    stack.callback(child.stop)
    return child


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------


@dataclass
class LiveRun:
    """What the run left to check."""

    prometheus: dict[str, list[dict[str, Any]]]
    """Answers of Prometheus' HTTP API to each of ``QUERIES``, asked after the replay."""
    pools: list[dict[str, Any]]
    """The platform's pools, read after the daemon stopped (nothing changes them any more)."""
    status: dict[str, Any]
    """The platform's ``/resources/v1/status``."""
    daemon_log: str
    """The daemon's whole log."""
    records: list[dict[str, str]]
    """The replayer's records."""
    names: list[str]
    """The managed actions."""
    exits: dict[str, int]
    """Exit status of each stopped process."""
    cgroup_dirs: list[Path]
    """The containers' cpu cgroup directories seen while the platform ran."""
    cpu_shares_on_disk: dict[str, int]
    """``cpu.shares`` of each running container's cgroup (by container name), read after the daemon stopped."""


def action_names() -> list[str]:
    """The actions ``mfrm replay`` creates for these settings (the same builder as every command)."""
    from controller.assemble import build_workload
    from controller.settings import load_settings

    settings = load_settings(overrides={"workload.trace_dir": str(TRACE), "workload.functions": FUNCTIONS,
                                        "workload.start_minute": START, "workload.minutes": MINUTES, "seed": SEED})
    return list(build_workload(settings).names)


def prometheus_query(base: str) -> Callable[[str], list[dict[str, Any]]]:
    def query(expr: str) -> list[dict[str, Any]]:
        status, body = http_get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert status == 200, f"Prometheus query {expr!r}: HTTP {status} {body[:300]!r}"
        return json.loads(body)["data"]["result"]

    return query


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[LiveRun]:
    prometheus_bin = shutil.which("prometheus")
    if prometheus_bin is None:
        pytest.fail(f"prometheus is not installed (this test needs a real server): {INSTALL_PROMETHEUS}")
    tmp = tmp_path_factory.mktemp("e2e")
    names = action_names()
    exits: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        # 1. the platform
        lw_port = free_port()
        lw_url = f"http://127.0.0.1:{lw_port}"
        platform = spawn(stack, "localwhisk", [sys.executable, "-m", "localwhisk", "--port", str(lw_port), "--auth", AUTH,
                                               "--state-dir", str(tmp / "lw-state"), "--cgroups", "auto"], tmp / "localwhisk.log")
        wait_until("localwhisk /ping", lambda: http_get(lw_url + "/ping")[0] == 200, 60, platform.process)
        # 2. Prometheus, scraping the platform and the daemon every second
        daemon_port, prom_port = free_port(), free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: localwhisk\n    static_configs: [{{targets: ['127.0.0.1:{lw_port}']}}]\n"
            f"  - job_name: mfrm\n    static_configs: [{{targets: ['127.0.0.1:{daemon_port}']}}]\n"
        )
        prometheus = spawn(stack, "prometheus", [
            prometheus_bin, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=1h"], tmp / "prometheus.log")
        prom_url = f"http://127.0.0.1:{prom_port}"
        wait_until("prometheus /-/ready", lambda: http_get(prom_url + "/-/ready")[0] == 200, 60, prometheus.process)
        query = prometheus_query(prom_url)
        # 3. the daemon
        slo_file = tmp / "slo.json"
        slo_file.write_text(json.dumps({"functions": [
            {"function": n.rsplit("-", 1)[0], "slo_ms": SLO_MS} for n in names]}))
        daemon = spawn(stack, "daemon", [
            sys.executable, "-m", "controller", "run", "--backend", "local", "--metrics-port", str(daemon_port),
            "--set", "policy.name=nac-linear", "--set", f"loop.tick_s={TICK_S}", "--set", f"seed={SEED}",
            "--set", "daemon.metrics_host=127.0.0.1", "--set", "daemon.resume=false",
            "--set", f"output.out_dir={tmp / 'daemon-out'}", "--set", f"local.api_host={lw_url}",
            "--set", f"local.slo_file={slo_file}", "--set", f"local.functions={json.dumps(names)}",
        ], tmp / "daemon.log", env={"MFRM_LOCAL__AUTH": AUTH})
        wait_until("daemon /healthz", lambda: http_get(f"http://127.0.0.1:{daemon_port}/healthz")[0] == 200, 120, daemon.process)
        # 4. the replay (the platform's cgroup directories are noted while containers exist)
        cgroup_dirs: set[Path] = set()
        replay_log = tmp / "replay.log"
        with replay_log.open("wb") as handle:
            replay = subprocess.Popen([
                sys.executable, "-m", "controller", "replay", "--api-host", lw_url, "--auth", AUTH, "--trace", str(TRACE),
                "--functions", str(FUNCTIONS), "--start-minute", str(START), "--minutes", str(MINUTES),
                "--speedup", str(SPEEDUP), "--seed", str(SEED), "--concurrency", "16", "--deploy",
                "--out", str(tmp / "replay")], stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        stack.callback(Child("replay", replay, replay_log).stop)

        def replay_done() -> bool:
            status, body = http_get(lw_url + "/resources/v1/namespaces/_/actions", AUTH)
            if status == 200:
                cgroup_dirs.update(Path(i["cgroup"]["cpu"]) for p in json.loads(body) for i in p["instances"]
                                   if i["cgroup"]["cpu"])
            return replay.poll() is not None

        wait_until("mfrm replay", replay_done, 60 * MINUTES / SPEEDUP + 120, poll_s=1.0)
        exits["replay"] = replay.returncode
        assert replay.returncode == 0, f"mfrm replay failed ({replay.returncode}):\n{replay_log.read_text()[-3000:]}"
        replay_ended = time.time()

        def scraped_since_the_replay_ended(job: str, series: str) -> bool:
            # A scrape that started after the replay's last activation completed holds every count.
            answer = query(f'min(timestamp({series}{{job="{job}"}}))')
            return bool(answer) and float(answer[0]["value"][1]) > replay_ended + 1.0

        wait_until("Prometheus has scraped the platform and the daemon since the replay ended",
                   lambda: scraped_since_the_replay_ended("localwhisk", "openwhisk_action_activations_total")
                   and scraped_since_the_replay_ended("mfrm", "mfrm_decision_changes_total"), 30, poll_s=1.0)
        answers = {q: query(q) for q in QUERIES}
        # 5. stop the daemon first: from then on nothing changes the pools
        exits["daemon"] = daemon.stop()
        _, pools_body = http_get(lw_url + "/resources/v1/namespaces/_/actions", AUTH)
        _, status = http_get(lw_url + "/resources/v1/status", AUTH)
        pools = json.loads(pools_body)
        on_disk = {i["name"]: int((Path(i["cgroup"]["cpu"]) / "cpu.shares").read_text())
                   for p in pools for i in p["instances"] if i["cgroup"]["cpu"]}
        exits["localwhisk"] = platform.stop()
        exits["prometheus"] = prometheus.stop()
    with (tmp / "replay" / "records.csv").open(newline="") as handle:
        records = list(csv.DictReader(handle))
    yield LiveRun(answers, pools, json.loads(status), daemon.text(), records, names, exits, sorted(cgroup_dirs), on_disk)


# --------------------------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------------------------


def last_changes(daemon_log: str) -> dict[str, dict[str, int]]:
    """Per function, the last containers and shares the daemon logged as applied."""
    last: dict[str, dict[str, int]] = {}
    for match in CHANGE_LINE.finditer(daemon_log):
        for part in match["change"].split(", "):
            what, _, arrow = part.partition(" ")
            if what in ("containers", "shares") and " -> " in arrow:
                target = arrow.split(" -> ")[1]
                # "platform": the function was handed back to the platform (on demand, -1).
                last.setdefault(match["name"], {})[what] = -1 if target == "platform" else int(target)
    return last


def value(answer: list[dict[str, Any]]) -> float:
    """The value of a one-sample answer of the Prometheus API."""
    assert len(answer) == 1, answer
    return float(answer[0]["value"][1])


@pytest.mark.parametrize("series, job", SERIES, ids=[s for s, _ in SERIES])
def test_prometheus_holds_the_series_of_the_daemon_and_of_the_platform(live, series, job):
    assert live.prometheus[f'{series}{{job="{job}"}}'], f"Prometheus has no {series} scraped from {job}"


def test_the_platform_series_in_prometheus_count_the_replayed_activations(live):
    succeeded = sum(1 for r in live.records if r["status"] == "success")
    counted = value(live.prometheus['sum(openwhisk_action_activations_total{job="localwhisk"})'])
    assert succeeded > 100
    # Every completed activation is counted (failed ones too), so never fewer than the successes.
    assert counted >= succeeded


def test_the_daemon_ticked_without_failures_and_decided_for_every_function(live):
    ticks = {r["metric"]["result"]: float(r["value"][1]) for r in live.prometheus['mfrm_ticks_total{job="mfrm"}']}
    assert ticks.get("ok", 0) >= 0.5 * (60 * MINUTES / SPEEDUP) / TICK_S
    assert ticks.get("failed", 0) == 0
    # Every function has a container decision; one the policy left to the platform as idle (-1)
    # has no shares decision, so the shares series cover the rest.
    targets = {r["metric"]["function"]: float(r["value"][1])
               for r in live.prometheus['mfrm_decision_target_containers{job="mfrm"}']}
    assert set(targets) == set(live.names)
    with_shares = {r["metric"]["function"] for r in live.prometheus['mfrm_decision_cpu_shares{job="mfrm"}']}
    assert with_shares and with_shares <= set(live.names)
    assert {name for name, target in targets.items() if target >= 0} <= with_shares


@pytest.mark.parametrize("resource", ["containers", "cpu_shares"], ids=["warm-pools", "cpu-shares"])
def test_the_daemon_changed_warm_pools_and_cpu_shares(live, resource):
    by_resource = {r["metric"]["resource"]: float(r["value"][1])
                   for r in live.prometheus['sum by (resource) (mfrm_decision_changes_total{job="mfrm"})']}
    assert by_resource.get(resource, 0) > 0


def test_the_platform_holds_the_pools_and_shares_the_daemon_applied_last(live):
    applied = last_changes(live.daemon_log)
    pools = {p["action"]: p for p in live.pools}
    assert any("shares" in c for c in applied.values()) and any("containers" in c for c in applied.values())
    for name, change in applied.items():
        if "shares" in change:
            # The backend sends no shares the platform already holds, so a target equal to the
            # platform's default leaves the pool's shares "default", at that same value.
            assert pools[name]["cpuShares"] == change["shares"], name
            assert pools[name]["cpuSharesSource"] in ("set", "default"), name
        if "containers" in change:
            assert pools[name]["containers"] == change["containers"], name


def test_the_cgroup_files_on_disk_hold_the_shares_the_daemon_set(live):
    assert live.status["cgroups"]["cpuControl"], f"no CPU control on this machine: {live.status['cgroups']}"
    managed = [p for p in live.pools if p["cpuSharesSource"] == "set" and p["instances"]]
    assert managed, "no container runs with shares the daemon set"
    for pool in managed:
        for instance in pool["instances"]:
            assert live.cpu_shares_on_disk[instance["name"]] == pool["cpuShares"] == instance["cpuShares"], instance


def test_every_process_stopped_cleanly_and_the_platform_removed_its_cgroups(live):
    assert live.exits == {"replay": 0, "daemon": 0, "localwhisk": 0, "prometheus": 0}
    assert "stopped after" in live.daemon_log
    assert live.cgroup_dirs and not [d for d in live.cgroup_dirs if d.exists()]
