"""The replayer under faults: every arrival recorded once with an honest status, no call multiplied.

Faults are injected by a proxy on loopback (``fault_proxy.FaultProxy``) in front of the OpenWhisk
fake, which counts the activations it ran. Pacing runs on a virtual clock; only the faults that are
about time (a slow or hung platform, the client's read time-out) take real time, a fraction of a
second each.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_clock import VirtualClock
from fakes.openwhisk import AUTH
from fault_proxy import PASS, Fault, FaultProxy, RoomyFakeOpenWhisk

from controller.clients.openwhisk import NO_RETRY, OpenWhiskClient
from controller.commands.replay import replay_command
from controller.replay import OpenWhiskInvoker
from workload import records as rec
from workload.replayer import InvokeResult, ReplayConfig, Replayer

ROOT = Path(__file__).resolve().parents[2]
TRACE = ROOT / "data" / "azure-functions-2019-sample"
CODE = "def main(args):\n    return {}\n"
READ_TIMEOUT_S = 1.0
"""The client's read time-out in these tests, s: what a hung call costs in real time. Long enough that a
call passed through on a loaded 2-core machine is never taken for a hung one."""


@pytest.fixture
def whisk():
    with RoomyFakeOpenWhisk() as fake:
        client = OpenWhiskClient(fake.url, AUTH, retry=NO_RETRY)
        client.put_action("f", {"exec": {"kind": "python:3", "code": CODE}})
        client.close()
        yield fake


def replay_through(proxy_url: str, n: int, tmp_path: Path, concurrency: int = 4) -> tuple[list[rec.ActivationRecord], object]:
    """``n`` arrivals of action ``f``, all due at once (virtual clock), through ``proxy_url``."""
    client = OpenWhiskClient(proxy_url, AUTH, retry=NO_RETRY, read_timeout_s=READ_TIMEOUT_S, pool_size=concurrency)
    vc = VirtualClock()
    try:
        with rec.RecordWriter(tmp_path / "records.csv") as writer:
            replayer = Replayer(OpenWhiskInvoker(client), ["f"], writer,
                                ReplayConfig(concurrency=concurrency, max_backlog=n), clock=vc.clock, sleep=vc.sleep)
            result = replayer.run([(i * 0.01, 0) for i in range(n)])
    finally:
        client.close()
    return rec.read_records(tmp_path / "records.csv"), result


# (fault, the status its row must have). Faults with forward=True reach the fake and run.
FAULTS = [
    (Fault("slow", forward=True, delay_s=0.05), rec.SUCCESS),
    (Fault("hang-before-running", forward=False, hold=True), rec.TIMEOUT),
    (Fault("hang-after-running", forward=True, hold=True), rec.TIMEOUT),
    (Fault("429-before-running", forward=False, status=429, body="error"), rec.THROTTLED),
    (Fault("503-before-running", forward=False, status=503, body="error"), rec.UNAVAILABLE),
    (Fault("429-after-running-naming-its-activation", forward=True, status=429, body="error+id"), rec.ACCEPTED),
    (Fault("503-after-running-naming-its-activation", forward=True, status=503, body="error+id"), rec.ACCEPTED),
    (Fault("503-after-running-with-the-record", forward=True, status=503), rec.SUCCESS),
    (Fault("503-after-running", forward=True, status=503, body="error"), rec.UNAVAILABLE),
    (Fault("429-after-running", forward=True, status=429, body="error"), rec.THROTTLED),
    (Fault("malformed-json", forward=True, body="truncated"), rec.MALFORMED),
    (Fault("malformed-record", forward=True, body="bad-record"), rec.MALFORMED),
    (Fault("gateway-error-page", forward=True, status=502, body="html"), rec.SERVER_ERROR),
    (Fault("gateway-time-out", forward=True, status=504, body="error"), rec.TIMEOUT),
    (Fault("dropped-before-answering", forward=True, drop="before"), rec.LOST),
    (Fault("dropped-mid-answer", forward=True, drop="during"), rec.LOST),
    (Fault("bad-request", forward=False, status=400, body="error"), rec.REJECTED),
]


@pytest.mark.parametrize("fault, status", FAULTS, ids=[f.name for f, _ in FAULTS])
def test_every_invocation_is_recorded_once_with_what_is_known_and_never_repeated(whisk, tmp_path, fault, status):
    n = 8
    # Every other call meets the fault; the rest pass, so a fault that leaked a worker would show
    # as later calls never answered (this replay has 4 workers and room for every arrival).
    with FaultProxy(whisk.url, lambda i: fault if i % 2 == 0 else PASS) as proxy:
        rows, result = replay_through(proxy.url, n, tmp_path)
        faults_met = list(proxy.faults)
    assert result.scheduled == result.sent == result.recorded == len(rows) == n
    # One request per arrival: the replayer never repeats a call, whatever the answer.
    assert len(faults_met) == n
    assert sorted(r.status for r in rows) == sorted([status] * (n // 2) + [rec.SUCCESS] * (n // 2))
    assert all(r.outcome == rec.OUTCOME_OF[r.status] for r in rows)
    # The fake ran exactly the calls that reached it, never more than the rows that may have run...
    ran = sum(f.forward for f in faults_met)
    assert whisk.executions == ran
    may_have_run = sum(r.outcome != rec.NOT_RUN for r in rows)
    if fault.forward and rec.OUTCOME_OF[status] == rec.NOT_RUN:
        # ...unless the platform itself said the call did not run (a 429 without an activation).
        assert whisk.executions == may_have_run + n // 2
    else:
        assert whisk.executions <= may_have_run
    # A row with an activation id names one the platform really created.
    created = {a["activationId"] for a in whisk.activations}
    assert {r.activation_id for r in rows if r.activation_id} <= created


def test_an_invoker_refuses_a_client_that_retries():
    with pytest.raises(ValueError, match="must not retry"):
        OpenWhiskInvoker(OpenWhiskClient("http://127.0.0.1:9", AUTH))


def test_a_refused_connection_did_not_run_and_is_not_retried(tmp_path):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rows, result = replay_through(f"http://127.0.0.1:{port}", 3, tmp_path)
    assert result.recorded == 3
    assert [(r.status, r.outcome) for r in rows] == [(rec.REFUSED, rec.NOT_RUN)] * 3
    assert all(not math.isnan(r.sent_s) and r.http_status == 0 for r in rows)


class SequencedWriter(rec.RecordWriter):
    """A RecordWriter that lets a test wait until a number of rows are written."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.changed = threading.Condition()

    def write(self, record: rec.ActivationRecord) -> None:
        super().write(record)
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, rows: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.written >= rows, timeout=30.0), f"{rows} rows never came"


class Scripted:
    """An invoker answering from a script of InvokeResults (or exceptions), one per call."""

    def __init__(self, answers: list[InvokeResult | Exception]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def invoke(self, function: str) -> InvokeResult:
        answer = self.answers[self.calls]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


def good_record(n: int) -> dict:
    return {"activationId": f"{n:032x}", "start": 1000, "end": 1020, "duration": 20, "statusCode": 0,
            "annotations": [{"key": "waitTime", "value": 2}]}


BAD_ANSWERS = [
    InvokeResult(200, activation={"activationId": "a" * 32, "duration": "slow", "statusCode": 0}),
    InvokeResult(200, activation={"activationId": "b" * 32, "statusCode": 0, "annotations": 7}),
    InvokeResult(200, activation={"activationId": "c" * 32, "statusCode": "zero"}),
    InvokeResult(200, activation={"statusCode": 0, "duration": 5}),
    InvokeResult(200, activation={"activationId": "d" * 32, "statusCode": 0, "start": None, "end": [1]}),
    InvokeResult(200, activation=["not", "a", "record"]),  # type: ignore[arg-type]
    InvokeResult(0, status="no-such-status"),
    RuntimeError("the invoker broke its contract"),
]


def test_malformed_answers_are_recorded_as_unknown_and_never_leak_a_worker(tmp_path):
    # One worker and no backlog: had any bad answer kept its worker, every later arrival would be dropped.
    answers = BAD_ANSWERS + [InvokeResult(200, activation=good_record(i)) for i in range(4)]
    invoker = Scripted(answers)
    vc = VirtualClock()
    with SequencedWriter(tmp_path / "r.csv") as writer:
        replayer = Replayer(invoker, ["f"], writer, ReplayConfig(concurrency=1, max_backlog=0),
                            clock=vc.clock, sleep=vc.sleep)

        def arrivals():
            for i in range(len(answers)):
                writer.wait_for(i)  # the previous arrival has its row: its worker is free again
                yield (float(i), 0)

        result = replayer.run(arrivals())
    rows = rec.read_records(tmp_path / "r.csv")
    assert (result.recorded, result.dropped) == (len(answers), 0)
    assert [r.outcome for r in rows] == [rec.UNKNOWN] * len(BAD_ANSWERS) + [rec.RAN] * 4
    assert [r.status for r in rows[: len(BAD_ANSWERS)]] == [rec.MALFORMED] * 6 + [rec.ERROR] * 2
    assert rows[0].activation_id == "a" * 32  # what is known is kept
    assert all(r.status == rec.SUCCESS for r in rows[len(BAD_ANSWERS):])


class Hanging:
    """An invoker whose calls of action ``hang`` do not return until released; the rest answer."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Semaphore(0)

    def invoke(self, function: str) -> InvokeResult:
        if function == "hang":
            self.started.release()
            self.release.wait(60.0)
        return InvokeResult(200, activation=good_record(1))


def test_a_stop_records_calls_in_flight_at_the_drain_deadline_as_unfinished_and_waiting_ones_as_cancelled(tmp_path):
    invoker = Hanging()
    vc = VirtualClock()
    with rec.RecordWriter(tmp_path / "r.csv") as writer:
        replayer = Replayer(invoker, ["hang", "ok"], writer, ReplayConfig(concurrency=2, drain_timeout_s=5.0),
                            clock=vc.clock, sleep=vc.sleep)

        def arrivals():
            yield (0.0, 0)
            yield (0.0, 0)
            assert invoker.started.acquire(timeout=30.0) and invoker.started.acquire(timeout=30.0)
            yield (1.0, 1)  # waits for a worker: both hang
            yield (2.0, 1)
            replayer.stop()
            yield (3.0, 1)  # never reached

        result = replayer.run(arrivals())
        stopped_at = vc.now
        invoker.release.set()  # the hung calls answer now, after their rows were written
        assert replayer.join(30.0)
    rows = rec.read_records(tmp_path / "r.csv")
    assert result.stopped and (result.scheduled, result.sent, result.cancelled, result.unfinished) == (4, 2, 2, 2)
    assert sorted(r.status for r in rows) == [rec.CANCELLED] * 2 + [rec.UNFINISHED] * 2
    assert len(rows) == result.recorded == 4  # the late answers were not written
    assert replayer.late == 2
    # The stop came at 2 s; the drain took its time-out of 5 s on the replayer's clock, no more.
    assert stopped_at == pytest.approx(2.0 + 5.0)
    unfinished = [r for r in rows if r.status == rec.UNFINISHED]
    assert all(r.outcome == rec.UNKNOWN and math.isnan(r.received_s) and r.sent_s == 0.0 for r in unfinished)


def test_an_answer_being_written_when_the_drain_runs_out_still_gets_its_row_before_the_run_returns(tmp_path):
    entered, release = threading.Event(), threading.Event()

    class SlowDisk(rec.RecordWriter):
        def write(self, record: rec.ActivationRecord) -> None:
            entered.set()
            assert release.wait(30.0)
            super().write(record)

    class ReleasingClock(VirtualClock):
        """Lets the row be written only once the drain's deadline (stop at 0 s + 5 s) has passed."""

        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            if self.now >= 5.0:
                release.set()

    class StopThenAnswer:
        def invoke(self, function: str) -> InvokeResult:
            replayer.stop()
            return InvokeResult(200, activation=good_record(1))

    vc = ReleasingClock()
    with SlowDisk(tmp_path / "r.csv") as writer:
        replayer = Replayer(StopThenAnswer(), ["f"], writer, ReplayConfig(concurrency=1, drain_timeout_s=5.0),
                            clock=vc.clock, sleep=vc.sleep)

        def arrivals():
            yield (0.0, 0)
            assert entered.wait(30.0)  # the answer is being written
            yield (1.0, 0)

        result = replayer.run(arrivals())
        assert writer.written == 1  # written before the run returned, not after (when it would be lost)
    assert (result.recorded, result.unfinished, writer.lost) == (1, 0, 0)
    assert [r.status for r in rec.read_records(tmp_path / "r.csv")] == [rec.SUCCESS]


def test_a_second_stop_ends_the_drain_at_once(tmp_path):
    invoker = Hanging()
    vc = VirtualClock()
    with rec.RecordWriter(tmp_path / "r.csv") as writer:
        replayer = Replayer(invoker, ["hang"], writer, ReplayConfig(concurrency=1, drain_timeout_s=600.0),
                            clock=vc.clock, sleep=vc.sleep)

        def arrivals():
            yield (0.0, 0)
            assert invoker.started.acquire(timeout=30.0)
            replayer.stop()
            replayer.stop()
            yield (1.0, 0)

        result = replayer.run(arrivals())
        invoker.release.set()
    assert result.unfinished == 1 and vc.now < 600.0


def test_a_row_that_cannot_be_written_ends_the_replay_with_the_writers_error(tmp_path):
    class FullDisk(rec.RecordWriter):
        def write(self, record: rec.ActivationRecord) -> None:
            raise OSError(28, "No space left on device")

    vc = VirtualClock()
    invoker = Scripted([InvokeResult(200, activation=good_record(i)) for i in range(50)])
    with FullDisk(tmp_path / "r.csv") as writer:
        replayer = Replayer(invoker, ["f"], writer, ReplayConfig(concurrency=1), clock=vc.clock, sleep=vc.sleep)
        with pytest.raises(OSError, match="No space left"):
            replayer.run([(float(i), 0) for i in range(50)])
    assert invoker.calls < 50


# --- the command: exit status and drain -------------------------------------------------------


def run_replay(api: str, out: Path, *extra: str):
    """``mfrm replay`` of 3 functions for one trace minute (seed 1: 78 invocations) in 0.1 s."""
    return CliRunner().invoke(replay_command, [
        "--api-host", api, "--auth", AUTH, "--trace", str(TRACE), "--functions", "3", "--minutes", "1",
        "--speedup", "600", "--concurrency", "8", "--seed", "1", "--deploy", "--out", str(out), *extra,
    ])


@pytest.mark.parametrize(
    "every, limit, exit_code",
    [(None, 0.05, 0), (1, 0.05, 1), (4, 0.5, 0), (4, 0.1, 1), (1, 1.0, 0)],
    ids=["all-succeed", "all-refused", "a-quarter-under-a-half", "a-quarter-over-a-tenth", "any-share-allowed"],
)
def test_the_exit_status_is_1_when_the_share_of_failed_or_unknown_invocations_passes_the_limit(
        tmp_path, every, limit, exit_code):
    refuse = Fault("429", forward=False, status=429, body="error")
    with RoomyFakeOpenWhisk() as fake, FaultProxy(
            fake.url, lambda i: refuse if every and i % every == 0 else PASS) as proxy:
        result = run_replay(proxy.url, tmp_path / "out", "--max-failure-fraction", str(limit))
    rows = rec.read_records(tmp_path / "out" / "records.csv")
    bad, total = rec.failure_share(rows)
    assert total > 0 and (bad / total > limit) == (exit_code == 1)
    assert result.exit_code == exit_code, result.output
    if exit_code:
        assert result.output.strip().splitlines()[-1].startswith("Error: ")
        assert "replay.max_failure_fraction" in result.output
    assert (tmp_path / "out" / "summary.csv").is_file()  # the report is written either way


def test_the_request_time_out_setting_bounds_each_blocking_call(tmp_path):
    hang = Fault("hang", forward=True, hold=True)
    with RoomyFakeOpenWhisk() as fake, FaultProxy(fake.url, lambda i: hang if i == 0 else PASS) as proxy:
        result = run_replay(proxy.url, tmp_path / "out", "--request-timeout", str(READ_TIMEOUT_S),
                            "--max-failure-fraction", "1")
        assert result.exit_code == 0, result.output
        assert proxy.holding == 1  # the platform never answered: the client gave up
    rows = rec.read_records(tmp_path / "out" / "records.csv")
    assert sum(r.status == rec.TIMEOUT for r in rows) == 1


def test_sigterm_ends_mfrm_replay_within_the_drain_with_hung_calls_recorded_as_unfinished(tmp_path):
    """The process exits while the platform still holds its calls: the drain time-out, not the
    platform, bounds the exit."""
    hang = Fault("hang", forward=True, hold=True)
    out = tmp_path / "out"
    with RoomyFakeOpenWhisk() as fake, FaultProxy(fake.url, lambda i: hang) as proxy:
        log = (tmp_path / "replay.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "controller", "replay", "--api-host", proxy.url, "--auth", AUTH,
             "--trace", str(TRACE), "--functions", "2", "--select", "busiest", "--minutes", "1", "--speedup", "1",
             "--concurrency", "2", "--drain-timeout", "0.5", "--request-timeout", "600", "--seed", "0",
             "--deploy", "--out", str(out)],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            assert proxy.received.wait(120.0), "no invocation reached the proxy"
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=120.0)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
        still_held = proxy.holding
        executions = fake.executions
    output = (tmp_path / "replay.log").read_text()
    assert still_held >= 1, output  # exited without waiting for the platform
    rows = rec.read_records(out / "records.csv")
    statuses = {r.status for r in rows}
    assert statuses <= {rec.UNFINISHED, rec.CANCELLED} and rec.UNFINISHED in statuses, output
    assert sum(r.status == rec.UNFINISHED for r in rows) == executions <= 2
    assert code == 1 and "Traceback" not in output and "replay.max_failure_fraction" in output, output
