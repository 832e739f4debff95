"""What outlives a platform, and what an action can see of it: workers die with a SIGKILLed platform,
the next platform removes whatever was left, two platforms never share a state directory, and an
action's environment holds neither the key nor anything else of the platform's."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from raw_http import ANSWER_WAIT_S, process_state

from localwhisk.cgroups import detect
from localwhisk.config import PlatformConfig, Subject
from localwhisk.leftovers import LOCK_FILE, StateDirBusy
from localwhisk.server import LocalWhisk
from localwhisk.testing import TEST_AUTH, WhiskClient, free_port, http_get, running_platform, wait_until

ENVIRONMENT = "import os\n\ndef main(args):\n    return dict(os.environ)\n"
SLEEPS = "import time\n\ndef main(args):\n    time.sleep(args.get('s', 600))\n    return {}\n"
ECHO = "def main(args):\n    return {'echo': args}\n"


def cgroup_parent_name() -> str:
    """A cgroup parent of this test's own, so that other platforms on the machine are never touched."""
    return f"lwtest-{os.getpid()}"


# --- the environment of an action ---------------------------------------------------------


def test_actions_see_neither_the_platform_key_nor_its_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALWHISK_AUTH", TEST_AUTH)
    monkeypatch.setenv("MFRM_LOCAL__AUTH", TEST_AUTH)
    monkeypatch.setenv("SOME_OPERATOR_SETTING", "not for actions")
    with running_platform(tmp_path, cgroups="off") as (_, client):
        client.put_action("environment", ENVIRONMENT)
        status, seen = client.invoke("environment", blocking=True, result=True)
    assert status == 200
    key = TEST_AUTH.split(":", 1)[1]
    assert not any(key in value for value in seen.values())
    assert not {"LOCALWHISK_AUTH", "MFRM_LOCAL__AUTH", "SOME_OPERATOR_SETTING"} & set(seen)
    assert seen["PATH"] == os.environ["PATH"]
    assert {"__OW_API_HOST", "__OW_NAMESPACE", "__OW_ACTIVATION_ID", "__OW_DEADLINE"} <= set(seen)


def test_a_variable_named_to_pass_reaches_actions_unless_it_holds_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPLOADER_DEST_DIR", str(tmp_path / "bucket"))
    monkeypatch.setenv("COPY_OF_THE_KEY", "x" + TEST_AUTH.split(":", 1)[1])
    with running_platform(tmp_path, cgroups="off", pass_env=("UPLOADER_DEST_DIR", "COPY_OF_THE_KEY")) as (_, client):
        client.put_action("environment", ENVIRONMENT)
        _, seen = client.invoke("environment", blocking=True, result=True)
    assert seen["UPLOADER_DEST_DIR"] == str(tmp_path / "bucket")
    assert "COPY_OF_THE_KEY" not in seen


# --- one platform per state directory -----------------------------------------------------


def test_a_second_platform_on_the_same_state_directory_is_refused(tmp_path: Path) -> None:
    with running_platform(tmp_path, cgroups="off"):
        config = PlatformConfig(subject=Subject.parse(TEST_AUTH), state_dir=tmp_path, port=0, cgroups="off")
        with pytest.raises(StateDirBusy, match=f"in use by another localwhisk \\(pid {os.getpid()}\\)"):
            LocalWhisk(config)


# --- a SIGKILLed platform -----------------------------------------------------------------


@contextlib.contextmanager
def platform_process(state_dir: Path, log_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], WhiskClient]]:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LOCALWHISK_")}
    argv = [sys.executable, "-m", "localwhisk", "--port", str(port), "--auth", TEST_AUTH, "--state-dir", str(state_dir),
            "--cgroup-parent", cgroup_parent_name(), "--pause-grace-s", "0.05"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    client = WhiskClient(f"http://127.0.0.1:{port}")
    try:
        wait_until("localwhisk /ping", lambda: http_get(f"http://127.0.0.1:{port}/ping")[0] == 200, ANSWER_WAIT_S, process)
        yield process, client
    finally:
        client.close()
        if process.poll() is None:
            process.kill()
        process.wait()


def pool_pids(client: WhiskClient, name: str, state: str) -> list[int]:
    _, view = client.resources(name)
    return [c["pid"] for c in view["instances"] if c["state"] == state]


def test_workers_die_with_a_sigkilled_platform_and_the_next_one_removes_their_cgroups(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    pids: list[int] = []
    driver = detect(cgroup_parent_name())
    try:
        with platform_process(state_dir, tmp_path / "platform.log") as (process, client):
            client.put_action("pinned", ECHO)
            client.put_action("busy", SLEEPS)
            client.resources("pinned", containers=2)
            client.invoke("busy", {"s": 600})
            paused = wait_until("two paused workers", lambda: len(pool_pids(client, "pinned", "paused")) == 2
                                and pool_pids(client, "pinned", "paused"), ANSWER_WAIT_S, process)
            busy = wait_until("one busy worker", lambda: pool_pids(client, "busy", "busy"), ANSWER_WAIT_S, process)
            pids = [*paused, *busy]
            assert [process_state(pid) for pid in paused] == ["T", "T"]
            assert process_state(busy[0]) in ("S", "R")
            instance = json.loads((state_dir / LOCK_FILE).read_text())["instance"]
            process.send_signal(signal.SIGKILL)
            process.wait()
        wait_until("every worker of the killed platform gone",
                   lambda: all(process_state(pid) is None for pid in pids), ANSWER_WAIT_S)
        if driver.status.cpu_control:
            assert driver.container_dirs(f"{instance}-"), "a SIGKILLed platform cannot remove its cgroups"
        with running_platform(state_dir, cgroup_parent=cgroup_parent_name()):
            assert driver.container_dirs(f"{instance}-") == []
    finally:
        # Only if the test failed: this test's own workers, then its cgroups (by the clean-up under test).
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with running_platform(state_dir, cgroup_parent=cgroup_parent_name()):
            pass
        driver.close()


# --- what a previous platform left ----------------------------------------------------------


def start_stray_worker(workdir: Path) -> subprocess.Popen[bytes]:
    """A worker as an older platform started it: no parent-death signal, waiting on its pipe."""
    workdir.mkdir(parents=True)
    return subprocess.Popen([sys.executable, "-m", "localwhisk.worker"], cwd=workdir, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)


def test_a_platform_removes_the_workers_and_cgroups_its_predecessor_left_and_nothing_else(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / LOCK_FILE).write_text(json.dumps({"instance": "abc123", "pid": 1}))
    stray = start_stray_worker(state_dir / "containers" / "abc123-00001-f")
    elsewhere = start_stray_worker(tmp_path / "other-state" / "containers" / "abc123-00001-f")
    driver = detect(cgroup_parent_name())
    parents = [Path(d) for d in {driver.status.cpu_dir, driver.status.memory_dir} if d]
    stale = [parent / "abc123-00002-g" for parent in parents]
    kept = [parent / "fed987-00001-g" for parent in parents]  # another instance's
    try:
        wait_until("the stray workers running", lambda: all(
            p.poll() is None and process_state(p.pid) in ("S", "R") for p in (stray, elsewhere)), ANSWER_WAIT_S)
        for directory in stale + kept:
            directory.mkdir()
        with running_platform(state_dir, cgroup_parent=cgroup_parent_name()):
            assert stray.wait(timeout=ANSWER_WAIT_S) == -signal.SIGKILL
            assert elsewhere.poll() is None  # a worker of another state directory is not this platform's
            assert [d for d in stale if d.exists()] == []
            assert [d for d in kept if not d.exists()] == []  # another instance's cgroups stay
    finally:
        for process in (stray, elsewhere):
            if process.poll() is None:
                process.kill()
            process.wait()
        for directory in stale + kept:
            with contextlib.suppress(OSError):
                directory.rmdir()
        driver.close()
