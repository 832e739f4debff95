"""``mfrm bench --ray``: the suite's cells as Ray tasks on a real Ray cluster started on loopback.

The module's head is started the way an operator starts one (``ray start --head``), bound to
127.0.0.1, in its own session and working directory; it is stopped by its process id, and every
process it started is killed by its own descriptor if it outlives it, whatever the tests did.
Drivers run in subprocesses, as the command does, so this test process never holds Ray's state.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from controller.bench.execute import RAY_AUTH_MODE_VARIABLE, RAY_LOOPBACK_VARIABLE, RAY_TOKEN_VARIABLE
from controller.bench.suite import suite_points
from controller.commands.bench import bench_command

#: A scenario small enough for a test: 3 functions, windows of 2 minutes, 200 probes per SLO.
TINY = """\
scenario:
  version: 1
  name: {name}
  description: three functions, two-minute windows
  train: {{start_minute: 480, minutes: 2}}
  evaluate: {{start_minute: 482, minutes: 2}}
cluster: {{invokers: 3}}
workload: {{functions: 3{extra}}}
reward: {{slo_probe_invocations: 200}}
"""

#: A baseline swept over its knob and two points of the learner whose numbers go through torch: one
#: judged online (no training), one trained first (its checkpoints).
FAMILIES = "ensure,nac-nn-online,nac-nn-no-mu"

#: How long Ray's own processes may take to end once asked, s (they end in about 2 s).
STOP_TIMEOUT_S = 60.0
#: How long a driver may take to start or join a cluster and run its calls before it gives up and ends
#: with its stack on stderr, s (about 10 s here): a guard against a hang, far above any normal run.
DRIVER_TIMEOUT_S = 300.0


# --- processes: found through /proc, waited for and killed through their descriptors ---------------


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended while we looked
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def descendants(root: int) -> list[int]:
    """Every process under ``root`` (Ray's workers start their own sessions but keep their parent)."""
    children, out, todo = _children(), [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    # /proc/net/tcp{,6} print each 32-bit word of the address in host (little-endian) order.
    return ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))


def listening_addresses(pids: Iterable[int]) -> dict[str, int]:
    """``"address:port" -> pid`` of every TCP socket in LISTEN state that one of ``pids`` holds."""
    listening: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                host, port = fields[1].split(":")
                listening[fields[9]] = f"{_address(host)}:{int(port, 16)}"
    found: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in listening:
                    found[listening[target[8:-1]]] = pid
        except OSError:  # ended while we looked
            continue
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rpartition(":")[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def open_handles(pids: Iterable[int]) -> dict[int, int]:
    """A pidfd per process still running: it names that very process even if its id is reused."""
    handles = {}
    for pid in pids:
        try:
            handles[pid] = os.pidfd_open(pid)
        except ProcessLookupError:
            pass
    return handles


def wait_ended(handles: dict[int, int], timeout_s: float) -> list[int]:
    """Wait until every process has ended or ``timeout_s`` passed; returns those still running."""
    remaining = dict(handles)
    while remaining:
        ready, _, _ = select.select(list(remaining.values()), [], [], timeout_s)
        if not ready:
            break
        remaining = {pid: fd for pid, fd in remaining.items() if fd not in ready}
    return sorted(remaining)


def kill_and_close(handles: dict[int, int], survivors: Iterable[int]) -> None:
    for pid in survivors:
        try:
            signal.pidfd_send_signal(handles[pid], signal.SIGKILL)
        except ProcessLookupError:
            pass
    for fd in handles.values():
        os.close(fd)


# --- the cluster -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """A Ray head this module started."""

    address: str
    """``127.0.0.1:port`` of its GCS, what ``--ray`` takes."""
    pid: int
    """The ``ray start --block`` process: its children are the head's processes."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: The token of this module's head: any process of the machine can reach loopback, only holders of
#: the token may submit tasks. Given in the environment, so nothing is written to ~/.ray.
TOKEN = secrets.token_hex(32)


def _environment(token: bool = True, **extra: str) -> dict[str, str]:
    """This process's environment with the head's token (when ``token``), without Ray's loopback
    switch (the code under test must set it) or any other authentication setting."""
    ours = (RAY_LOOPBACK_VARIABLE, RAY_AUTH_MODE_VARIABLE, RAY_TOKEN_VARIABLE, "RAY_AUTH_TOKEN_PATH")
    env = {k: v for k, v in os.environ.items() if k not in ours}
    if token:
        env.update({RAY_AUTH_MODE_VARIABLE: "token", RAY_TOKEN_VARIABLE: TOKEN})
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    # A short folder of its own: Ray's socket paths must stay under the 107 bytes a Unix socket allows,
    # and no other Ray on the machine shares its session files.
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    port = _free_port()
    process = subprocess.Popen(
        ["ray", "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", folder],
        cwd=folder, env=_environment(**{RAY_LOOPBACK_VARIABLE: "0"}), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = []
        for line in process.stdout:  # ends when Ray has started, or when ``ray start`` gave up
            output.append(line)
            if "Ray runtime started" in line:
                break
        else:
            raise RuntimeError("ray start failed:\n" + "".join(output))
        yield Head(f"127.0.0.1:{port}", process.pid)
    finally:
        handles = open_handles(descendants(process.pid))
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        kill_and_close(handles, wait_ended(handles, STOP_TIMEOUT_S))
        process.stdout.close()
        shutil.rmtree(folder, ignore_errors=True)


def _scenario(folder: Path, name: str = "tiny", extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(TINY.format(name=name, extra=extra), encoding="utf-8")
    return path


def _mfrm(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller", *args], check=False, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


# --- the tests -------------------------------------------------------------------------------------


def test_a_suite_run_as_ray_tasks_writes_the_same_results_csv_byte_for_byte_as_a_local_pool(tmp_path, head,
                                                                                          monkeypatch):
    # A settings variable that changes the numbers: Ray's workers have the head's environment, not
    # the command's, so the cells must carry it.
    monkeypatch.setenv("MFRM_REWARD__SLO_MARGIN", "0.3")
    scenario = _scenario(tmp_path)
    common = ["--families", FAMILIES, "--quick", "--seeds", "0,1"]

    local = CliRunner().invoke(bench_command, [str(scenario), *common, "--workers", "2",
                                               "--out", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    # Relative paths from another folder than the head's: a worker's working directory is the head's.
    ray = _mfrm("bench", scenario.name, *common, "--out", "on-ray", "--ray", head.address, cwd=tmp_path,
                env=_environment(MFRM_REWARD__SLO_MARGIN="0.3"))
    assert ray.returncode == 0, ray.stderr

    local_csv = (tmp_path / "local" / "results.csv").read_bytes()
    ray_csv = (tmp_path / "on-ray" / "results.csv").read_bytes()
    assert ray_csv == local_csv
    rows = local_csv.decode().splitlines()
    points = suite_points(FAMILIES.split(","))
    assert len(rows) == 1 + 2 * len(points)  # a header, and every point at both seeds
    assert sum(row.split(",")[1] == "nac-nn-online" for row in rows) == 2  # the learners' rows are there
    assert sum(row.split(",")[1] == "nac-nn-no-mu" for row in rows) == 2
    # The trained learner's checkpoints are under --out, not under the workers' working directory.
    assert len(list((tmp_path / "on-ray" / "checkpoints" / "tiny").glob("nac-nn-seed*.ckpt.npz"))) == 2


def test_a_cell_that_fails_in_a_ray_task_stops_the_suite_with_an_error_naming_the_cell(tmp_path, head):
    scenario = _scenario(tmp_path, "broken", extra=", trace_dir: no-such-trace")

    ray = _mfrm("bench", str(scenario), "--families", "ensure", "--quick", "--seeds", "3", "--out",
                str(tmp_path / "out"), "--ray", head.address, cwd=tmp_path, env=_environment())

    assert ray.returncode == 1
    assert "cell broken / ensure c=" in ray.stderr and "/ seed 3 failed while judging: AssemblyError: " \
        "workload.trace_dir: trace folder not found" in ray.stderr, ray.stderr


#: What the driver's report follows on its line: Ray prints notes of its own on the same stdout (a dead
#: worker's, for one), not always ending in a newline before the report is printed.
REPORT_MARK = "mfrm-driver-report "


#: A driver that joins (or starts) a cluster through the executor, runs its calls and prints a JSON
#: report; in ``listen`` mode it then waits for a line on stdin before it disconnects, while the test
#: looks at the processes. A hang ends it after ``argv[3]`` seconds with its stack on stderr.
DRIVER = """\
import faulthandler, json, os, sys
faulthandler.dump_traceback_later(float(sys.argv[3]), exit=True)
from controller.bench.execute import CallFailed, RayExecutor
MARK = @MARK@

def double(x):
    return 2 * x

def die(code):
    os._exit(code)

executor = RayExecutor(sys.argv[1], retries=0)
try:
    if sys.argv[2] == "crash":
        try:
            list(executor.run(die, [(3,)]))
        except CallFailed as failure:
            print("\\n" + MARK + json.dumps({"index": failure.index, "reason": failure.reason}), flush=True)
    else:
        answers = list(executor.run(double, [(1,), (2,)]))
        print("\\n" + MARK + json.dumps({"pid": os.getpid(), "answers": answers}), flush=True)
        faulthandler.cancel_dump_traceback_later()
        sys.stdin.readline()
finally:
    executor.close()
"""
DRIVER = DRIVER.replace("@MARK@", repr(REPORT_MARK))


def _driver(address: str, mode: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", DRIVER, address, mode, str(DRIVER_TIMEOUT_S)], cwd=cwd,
                            env=_environment(token=address != "local"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _report(driver: subprocess.Popen[str]) -> dict[str, Any]:
    """The driver's JSON report ({} if it ended without one): the object after the mark on its line.

    Ray's log forwarding writes to the same stdout from another thread and may land on the report's line
    after the object (before its newline), so the object is read up to its own end."""
    for line in driver.stdout:
        if REPORT_MARK in line:
            report, _ = json.JSONDecoder().raw_decode(line.split(REPORT_MARK, 1)[1])
            return report
    return {}


def _finish(driver: subprocess.Popen[str]) -> str:
    """Let the driver disconnect and end (killed if it does not); its stderr."""
    try:
        _, stderr = driver.communicate("\n", timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        driver.kill()
        _, stderr = driver.communicate()
    return stderr


def _port(address: str) -> str:
    return address.rpartition(":")[2]


def test_a_driver_joining_the_head_and_the_head_listen_on_loopback_only(tmp_path, head):
    driver = _driver(head.address, "listen", tmp_path)
    listening: dict[str, int] = {}
    try:
        report = _report(driver)
        if report:
            listening = listening_addresses([report["pid"], head.pid, *descendants(head.pid)])
    finally:
        stderr = _finish(driver)
    assert driver.returncode == 0 and sorted(report.get("answers", [])) == [[0, 2], [1, 4]], stderr
    assert _port(head.address) in {_port(a) for a in listening}  # the head's GCS: the scan sees Ray's sockets
    assert [a for a in listening if not is_loopback(a)] == []


def test_ray_local_starts_a_cluster_on_loopback_only_and_stops_every_process_it_started(tmp_path):
    token_file = Path.home() / ".ray" / "auth_token"
    token_file_before = token_file.is_file()
    driver = _driver("local", "listen", tmp_path)
    listening: dict[str, int] = {}
    handles: dict[int, int] = {}
    try:
        report = _report(driver)
        if report:
            started = descendants(driver.pid)
            handles = open_handles(started)
            listening = listening_addresses([driver.pid, *started])
    finally:
        stderr = _finish(driver)
        survivors = wait_ended(handles, STOP_TIMEOUT_S)
        kill_and_close(handles, survivors)
    assert driver.returncode == 0 and sorted(report.get("answers", [])) == [[0, 2], [1, 4]], stderr
    assert any(pid != driver.pid for pid in listening.values())  # Ray's own processes were seen
    assert [a for a in listening if not is_loopback(a)] == []
    assert survivors == []
    assert token_file_before or not token_file.is_file()  # its token was never written for later Rays to find


def test_a_worker_that_dies_in_a_ray_task_is_reported_with_its_call_not_waited_for(tmp_path, head):
    driver = _driver(head.address, "crash", tmp_path)
    try:
        report = _report(driver)
    finally:
        stderr = _finish(driver)
    assert driver.returncode == 0, stderr
    assert report.get("index") == 0 and report.get("reason", "").startswith("WorkerCrashedError"), (report, stderr)
