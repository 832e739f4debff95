"""The replayer: records, open-loop pacing on a virtual clock, bounded backlog, stopping, and the CLI."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fake_clock import VirtualClock
from fakes.openwhisk import AUTH
from fault_proxy import RoomyFakeOpenWhisk

from controller.clients.openwhisk import NO_RETRY, OpenWhiskClient
from controller.commands.replay import replay_command
from controller.replay import OpenWhiskInvoker
from workload import records as rec
from workload.replayer import InvokeResult, ReplayConfig, Replayer, arrivals_of

TRACE = Path(__file__).resolve().parents[2] / "data" / "azure-functions-2019-sample"
CODE = "def main(args):\n    return {}\n"


def cold_record(**overrides):
    record = {
        "activationId": "c" * 32, "name": "f", "start": 1000, "end": 1350, "duration": 350, "statusCode": 0,
        "annotations": [{"key": "waitTime", "value": 12}, {"key": "initTime", "value": 300}],
    }
    record.update(overrides)
    return record


# --- records ----------------------------------------------------------------------------------


def test_latency_is_wait_plus_duration_which_already_holds_the_init():
    row = rec.from_activation("f", 1.0, 2.0, 2.5, 200, cold_record())
    assert (row.wait_ms, row.init_ms, row.duration_ms, row.latency_ms) == (12, 300, 350, 362)
    assert row.cold and row.status == rec.SUCCESS and row.client_latency_ms == pytest.approx(500)


@pytest.mark.parametrize("code, status", [(1, rec.APPLICATION_ERROR), (2, rec.DEVELOPER_ERROR), (3, rec.INTERNAL_ERROR)],
                         ids=["application", "developer", "internal"])
def test_the_status_follows_the_records_status_code(code, status):
    assert rec.from_activation("f", 0, 0, 0, 502, cold_record(statusCode=code)).status == status


def test_a_warm_record_has_zero_init_and_is_not_cold():
    warm = cold_record(annotations=[{"key": "waitTime", "value": 2}], duration=20)
    row = rec.from_activation("f", 0, 0, 0, 200, warm)
    assert not row.cold and row.init_ms == 0 and row.latency_ms == 22


def test_rows_are_on_disk_as_soon_as_they_are_written_and_read_back_equal(tmp_path):
    path = tmp_path / "records.csv"
    rows = [rec.from_activation("f", 0.5, 1.0, 1.2, 200, cold_record()),
            rec.without_activation("g", 0.7, 1.1, 1.1, rec.THROTTLED, 429, "slow down")]
    writer = rec.RecordWriter(path)
    for row in rows:
        writer.write(row)
    back = rec.read_records(path)  # before close: a crash now would keep both rows
    writer.close()
    assert back[0] == rows[0]
    assert back[1].status == rec.THROTTLED and math.isnan(back[1].latency_ms)


def test_a_bad_value_in_a_records_file_is_named_with_its_line_and_column(tmp_path):
    path = tmp_path / "records.csv"
    with rec.RecordWriter(path) as writer:
        writer.write(rec.from_activation("f", 0, 0, 0, 200, cold_record()))
    path.write_text(path.read_text().replace(",200,", ",two hundred,"))
    with pytest.raises(ValueError, match=r"records.csv:2: column 'http_status'"):
        rec.read_records(path)


def test_the_summary_counts_outcomes_and_takes_percentiles_of_successes_only():
    rows = [rec.from_activation("f", 0, 0, 0, 200, cold_record(duration=d)) for d in (100, 200, 300)]
    rows.append(rec.from_activation("f", 0, 0, 0, 502, cold_record(statusCode=1, duration=900)))
    rows.append(rec.without_activation("f", 0, math.nan, math.nan, rec.DROPPED, 0))
    rows.append(rec.without_activation("f", 0, 0, math.nan, rec.TIMEOUT, 0))
    (summary,) = rec.summarise_records(rows)
    assert (summary.invocations, summary.succeeded, summary.failed, summary.not_run, summary.unknown, summary.cold) == (
        6, 3, 1, 1, 1, 4)
    assert summary.p50_latency_ms == 212


# --- replayer ---------------------------------------------------------------------------------


@pytest.fixture
def whisk():
    with RoomyFakeOpenWhisk() as fake:
        client = OpenWhiskClient(fake.url, AUTH, retry=NO_RETRY, pool_size=8)
        for name in ("f0", "f1"):
            client.put_action(name, {"exec": {"kind": "python:3", "code": CODE}})
        yield fake, client


def test_a_replay_on_a_virtual_clock_sends_every_arrival_on_time_and_records_it(whisk, tmp_path):
    fake, client = whisk
    times = np.sort(np.random.default_rng(3).uniform(0.0, 5.0, 40))
    arrivals = [(float(t), i % 2) for i, t in enumerate(times)]
    vc = VirtualClock()
    with rec.RecordWriter(tmp_path / "r.csv") as writer:
        replayer = Replayer(OpenWhiskInvoker(client), ["f0", "f1"], writer, ReplayConfig(speedup=50.0, concurrency=4),
                            clock=vc.clock, sleep=vc.sleep)
        result = replayer.run(arrivals)
    rows = rec.read_records(tmp_path / "r.csv")
    assert (result.sent, result.recorded, result.dropped, result.stopped) == (40, 40, 0, False)
    assert len(fake.calls_to("POST", r"/actions/f[01]$")) == 40
    assert all(r.status == rec.SUCCESS for r in rows)
    assert sum(r.cold for r in rows) == 2
    # Open loop: nothing leaves before its time (trace time / speed-up).
    assert all(r.sent_s >= r.scheduled_s / 50.0 - 1e-9 for r in rows)
    assert vc.now == pytest.approx(times[-1] / 50.0, abs=0.01)


def test_invocations_of_an_undeployed_action_are_recorded_as_not_found(whisk, tmp_path):
    _, client = whisk
    vc = VirtualClock()
    with rec.RecordWriter(tmp_path / "r.csv") as writer:
        Replayer(OpenWhiskInvoker(client), ["nope"], writer, clock=vc.clock, sleep=vc.sleep).run([(0.0, 0)])
    (row,) = rec.read_records(tmp_path / "r.csv")
    assert (row.status, row.http_status) == (rec.NOT_FOUND, 404)


def test_a_failing_action_is_recorded_with_its_activation_as_an_application_error(whisk, tmp_path):
    _, client = whisk

    class FailingInvoker(OpenWhiskInvoker):
        def invoke(self, function):
            from controller.clients.openwhisk import ApplicationError

            try:
                self.client.invoke(function, {"fail": True}, blocking=True)
            except ApplicationError as error:
                return InvokeResult(502, activation=error.activation, status=rec.APPLICATION_ERROR, error=error.detail)
            raise AssertionError("the fake should have failed the action")

    vc = VirtualClock()
    with rec.RecordWriter(tmp_path / "r.csv") as writer:
        Replayer(FailingInvoker(client), ["f0"], writer, clock=vc.clock, sleep=vc.sleep).run([(0.0, 0)])
    (row,) = rec.read_records(tmp_path / "r.csv")
    assert row.status == rec.APPLICATION_ERROR and row.http_status == 502 and row.activation_id


class BlockingInvoker:
    """Holds every invocation until released; counts calls."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.calls = 0

    def invoke(self, function: str) -> InvokeResult:
        self.calls += 1
        self.started.release()
        self.release.wait(5.0)
        return InvokeResult(200, activation=cold_record(name=function))


def test_arrivals_beyond_the_backlog_are_dropped_not_delayed(tmp_path):
    invoker = BlockingInvoker()
    vc = VirtualClock()

    def arrivals():
        yield (0.0, 0)
        invoker.started.acquire(timeout=5.0)  # the one worker is now busy with the first
        yield from [(0.0, 0)] * 4  # one waits in the backlog of 1, the others find it full
        invoker.release.set()

    with rec.RecordWriter(tmp_path / "r.csv") as writer:
        replayer = Replayer(invoker, ["f"], writer, ReplayConfig(concurrency=1, max_backlog=1), clock=vc.clock, sleep=vc.sleep)
        result = replayer.run(arrivals())
    assert (result.sent, result.dropped) == (2, 3)
    rows = rec.read_records(tmp_path / "r.csv")
    assert sorted(r.status for r in rows) == [rec.DROPPED] * 3 + [rec.SUCCESS] * 2


def test_a_stop_sends_nothing_more_and_keeps_every_row(tmp_path):
    vc = VirtualClock()
    third_call = threading.Event()

    class StoppingInvoker:
        calls = 0

        def invoke(self, function: str) -> InvokeResult:
            StoppingInvoker.calls += 1
            if StoppingInvoker.calls == 3:
                replayer.stop()
                third_call.set()
            return InvokeResult(200, activation=cold_record(name=function))

    def arrivals():
        for t in range(100):
            if t == 3:
                third_call.wait(5.0)  # the stop comes while the 4th arrival is due
            yield (float(t), 0)

    with rec.RecordWriter(tmp_path / "r.csv") as writer:
        replayer = Replayer(StoppingInvoker(), ["f"], writer, ReplayConfig(concurrency=1), clock=vc.clock, sleep=vc.sleep)
        result = replayer.run(arrivals())
    assert result.stopped and (result.scheduled, result.sent, result.recorded) == (3, 3, 3)
    assert len(rec.read_records(tmp_path / "r.csv")) == 3


def test_ctrl_c_while_sending_stops_the_replay_and_keeps_the_rows(tmp_path):
    vc = VirtualClock()

    def arrivals():
        yield (0.0, 0)
        yield (1.0, 0)
        raise KeyboardInterrupt

    class Instant:
        def invoke(self, function: str) -> InvokeResult:
            return InvokeResult(200, activation=cold_record(name=function))

    with rec.RecordWriter(tmp_path / "r.csv") as writer:
        result = Replayer(Instant(), ["f"], writer, clock=vc.clock, sleep=vc.sleep).run(arrivals())
    # Each of the two has its row: answered, or cancelled while it waited for a worker.
    rows = rec.read_records(tmp_path / "r.csv")
    assert result.stopped and result.recorded == result.scheduled == len(rows) == 2
    assert {r.status for r in rows} <= {rec.SUCCESS, rec.CANCELLED}
    assert result.sent == sum(r.status == rec.SUCCESS for r in rows)


def test_arrivals_of_a_stream_come_in_time_order_with_their_function_index():
    from workload.arrivals import ArrivalStream

    stream = ArrivalStream.from_counts(np.array([[3, 1], [0, 2]]), seed=1)
    got = list(arrivals_of(stream))
    assert len(got) == 6 and [t for t, _ in got] == sorted(t for t, _ in got)
    assert sorted(fn for _, fn in got) == [0, 0, 0, 0, 1, 1]


@pytest.mark.parametrize(
    "config", [{"speedup": 0}, {"concurrency": 0}, {"max_backlog": -1}], ids=["speedup", "concurrency", "backlog"]
)
def test_invalid_replay_settings_are_refused_with_the_name(config):
    with pytest.raises(ValueError, match=next(iter(config))):
        ReplayConfig(**config)


# --- the command ------------------------------------------------------------------------------


def _same_workload_as_simulate(**overrides):
    """The functions and arrivals ``mfrm simulate`` builds for these settings."""
    from controller.assemble import build_arrivals, build_workload
    from controller.settings import load_settings

    settings = load_settings(overrides={"workload.trace_dir": str(TRACE), **overrides})
    workload = build_workload(settings)
    return workload, build_arrivals(settings, workload)


def test_mfrm_replay_deploys_replays_and_writes_records_summary_and_plots(tmp_path):
    out = tmp_path / "out"
    with RoomyFakeOpenWhisk() as fake:
        result = CliRunner().invoke(replay_command, [
            "--api-host", fake.url, "--auth", AUTH, "--trace", str(TRACE), "--functions", "3", "--minutes", "1",
            "--speedup", "600", "--concurrency", "8", "--seed", "0", "--deploy", "--out", str(out),
        ])
        assert result.exit_code == 0, result.output
        invoked = len(fake.calls_to("POST", r"/actions/"))
        deployed = sorted(fake.actions)
    # The same seed picks the same functions, with the same arrivals, as `mfrm simulate` does.
    workload, stream = _same_workload_as_simulate(**{"workload.functions": 3, "workload.minutes": 1, "seed": 0})
    assert deployed == sorted(workload.names)
    rows = rec.read_records(out / "records.csv")
    assert len(rows) == invoked == stream.total_invocations() > 0
    assert all(r.status == rec.SUCCESS for r in rows)
    assert {p.name for p in out.iterdir()} == {"records.csv", "summary.csv", "latency_cdf.png", "throughput.png"}
    assert "replay summary" in result.output


@pytest.mark.parametrize("seed", [0, 7])
def test_replay_and_simulate_pick_the_same_functions_and_arrivals_for_a_seed(tmp_path, seed):
    from controller.commands.replay import REPLAY_OVERRIDES

    out = tmp_path / "out"
    with RoomyFakeOpenWhisk() as fake:
        result = CliRunner().invoke(replay_command, [
            "--api-host", fake.url, "--auth", AUTH, "--trace", str(TRACE), "--functions", "4", "--minutes", "1",
            "--speedup", "600", "--concurrency", "8", "--seed", str(seed), "--deploy", "--out", str(out),
        ])
        assert result.exit_code == 0, result.output
        deployed = sorted(fake.actions)
    workload, stream = _same_workload_as_simulate(**{"workload.functions": 4, "workload.minutes": 1, "seed": seed})
    assert deployed == sorted(workload.names)
    # Every arrival of the simulator's stream was sent, function by function.
    _, fns = stream.window(0.0, stream.duration_s)
    expected = sorted(workload.names[i] for i in fns)
    assert sorted(r.function for r in rec.read_records(out / "records.csv")) == expected
    assert REPLAY_OVERRIDES["workload.minutes"] == 5  # the command's own default window, overridden above


def test_mfrm_replay_refuses_to_mix_two_runs_in_one_folder(tmp_path):
    (tmp_path / "records.csv").write_text("function\nx\n")
    result = CliRunner().invoke(replay_command, [
        "--api-host", "http://127.0.0.1:1", "--auth", AUTH, "--trace", str(TRACE), "--out", str(tmp_path)])
    assert result.exit_code != 0 and "already holds" in result.output
