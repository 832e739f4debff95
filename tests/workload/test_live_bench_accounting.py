"""What a live run held, read back exactly: the container event log of the recorded localwhisk and
the costs of a replay built from it (``benchmarks/recorded_localwhisk.py``, ``benchmarks/live_common.py``)."""

from __future__ import annotations

import csv
import importlib
import io
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
recorded = importlib.import_module("recorded_localwhisk")
live = importlib.import_module("live_common")

ACTIONS = ["graph-bfs-000", "base64-001"]


def write_log(path: Path, lines: list[tuple[float, str, str, float, int]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(recorded.EVENT_FIELDS)
        writer.writerows(lines)
    return path


class FakeCgroup:
    def __init__(self) -> None:
        self.cpu_dir = Path("/nowhere/cpu")
        self.calls: list[str] = []

    def add_process(self, pid: int) -> None:
        self.calls.append(f"add {pid}")

    def set_shares(self, shares: int) -> None:
        self.calls.append(f"shares {shares}")

    def remove(self) -> None:
        self.calls.append("remove")


class FakeDriver:
    status = "fake status"

    def __init__(self) -> None:
        self.made: list[tuple[str, int, int]] = []
        self.cgroup = FakeCgroup()

    def create(self, name: str, shares: int, memory_bytes: int) -> FakeCgroup:
        self.made.append((name, shares, memory_bytes))
        return self.cgroup

    def container_dirs(self, prefix: str) -> list[Path]:
        return []

    def close(self) -> None:
        pass


def test_the_recording_driver_logs_a_containers_creation_shares_and_removal_once_each() -> None:
    times = iter([100.0, 101.5, 103.25])
    handle = io.StringIO()
    inner = FakeDriver()
    driver = recorded.RecordingCgroups(inner, recorded.EventLog(handle, clock=lambda: next(times)))
    cgroup = driver.create("ab12cd-00001-base64-001", 64, 256 * 1024 * 1024)
    cgroup.add_process(42)
    cgroup.set_shares(512)
    cgroup.remove()
    cgroup.remove()  # a second clean-up is passed on but not logged again
    assert inner.made == [("ab12cd-00001-base64-001", 64, 256 * 1024 * 1024)]
    assert inner.cgroup.calls == ["add 42", "shares 512", "remove", "remove"]
    assert cgroup.cpu_dir == Path("/nowhere/cpu")  # the worker reads its directories through the wrapper
    assert driver.status == "fake status"
    rows = list(csv.reader(io.StringIO(handle.getvalue())))
    assert rows == [list(recorded.EVENT_FIELDS),
                    ["100.000000", "create", "ab12cd-00001-base64-001", "256", "64"],
                    ["101.500000", "shares", "ab12cd-00001-base64-001", "256", "512"],
                    ["103.250000", "remove", "ab12cd-00001-base64-001", "256", "512"]]


def test_lifetimes_are_read_back_per_action_and_containers_of_other_actions_are_left_out(tmp_path: Path) -> None:
    log = write_log(tmp_path / "c.csv", [
        (10.0, "create", "ab-00001-graph-bfs-000", 256, 64),
        (11.0, "create", "ab-00002-hello", 256, 64),
        (12.0, "create", "ab-00003-base64-001", 512, 64),
        (15.0, "shares", "ab-00003-base64-001", 512, 1024),
        (20.0, "remove", "ab-00001-graph-bfs-000", 256, 64),
    ])
    lifetimes = recorded.read_lifetimes(log, ACTIONS)
    assert [(x.action, x.memory_mb, x.start_s, x.end_s) for x in lifetimes] == [
        ("graph-bfs-000", 256, 10.0, 20.0), ("base64-001", 512, 12.0, float("inf"))]
    assert lifetimes[1].shares == ((12.0, 64), (15.0, 1024))


def test_an_action_name_with_characters_localwhisk_replaces_is_still_found(tmp_path: Path) -> None:
    log = write_log(tmp_path / "c.csv", [(1.0, "create", "ab-00001-my_action_v2", 256, 64),
                                         (2.0, "remove", "ab-00001-my_action_v2", 256, 64)])
    assert recorded.action_slug("my action/v2") == "my_action_v2"
    assert [x.action for x in recorded.read_lifetimes(log, ["my action/v2"])] == ["my action/v2"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([(1.0, "remove", "ab-00001-base64-001", 256, 64)], "line 2: container ab-00001-base64-001 remove before"),
        ([(1.0, "create", "ab-00001-base64-001", 256, 64), (2.0, "burst", "ab-00001-base64-001", 256, 64)],
         "line 3: unknown event 'burst'"),
        ([("soon", "create", "ab-00001-base64-001", 256, 64)], "line 2: t_s, memory_mb and cpu_shares must be numbers"),
    ],
    ids=["removed-before-created", "unknown-event", "time-not-a-number"],
)
def test_a_malformed_event_log_is_refused_naming_the_line(tmp_path: Path, lines: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        recorded.read_lifetimes(write_log(tmp_path / "c.csv", lines), ACTIONS)


def test_container_time_is_each_life_clipped_to_the_window_and_one_still_alive_counts_to_its_end() -> None:
    lifetimes = [
        recorded.Lifetime("a-1-graph-bfs-000", "graph-bfs-000", 256, 5.0, 15.0),    # starts before: 5 s inside
        recorded.Lifetime("a-2-graph-bfs-000", "graph-bfs-000", 256, 12.0, 14.0),   # inside: 2 s
        recorded.Lifetime("a-3-base64-001", "base64-001", 512, 18.0, float("inf")),  # alive at the end: 2 s
        recorded.Lifetime("a-4-base64-001", "base64-001", 512, 1.0, 9.0),           # gone before the window
    ]
    held = recorded.container_usage(lifetimes, ACTIONS, 10.0, 20.0)
    assert held["graph-bfs-000"] == recorded.HeldUsage(container_s=7.0, memory_mb_s=7.0 * 256, containers_started=1)
    assert held["base64-001"] == recorded.HeldUsage(container_s=2.0, memory_mb_s=2.0 * 512, containers_started=1)


def test_shares_are_integrated_piecewise_over_the_part_of_a_life_inside_the_window() -> None:
    life = recorded.Lifetime("a-1-x", "x", 256, 0.0, 30.0, shares=((0.0, 1024), (10.0, 512), (20.0, 2048)))
    # [5, 25): 5 s at 1 core, 10 s at 0.5, 5 s at 2
    assert life.shares_core_s(5.0, 25.0) == pytest.approx(5.0 + 5.0 + 10.0)


def test_busy_time_is_the_activations_clipped_to_the_window() -> None:
    busy = recorded.busy_seconds([("base64-001", 9.0, 11.0), ("base64-001", 12.0, 12.5), ("other", 12.0, 19.0)],
                                 ACTIONS, 10.0, 20.0)
    assert busy == {"graph-bfs-000": 0.0, "base64-001": 1.5}


def write_records(path: Path, rows: list[dict[str, object]]) -> Path:
    fields = ["function", "activation_id", "scheduled_s", "sent_s", "received_s", "start_ms", "end_ms", "wait_ms",
              "init_ms", "duration_ms", "latency_ms", "client_latency_ms", "cold", "status", "outcome",
              "http_status", "error"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def activation(function: str, scheduled: float, start: float, run: float, init: float = 0.0,
               status: str = "success", origin: float = 1000.0) -> dict[str, object]:
    wait = 0.002
    return {"function": function, "scheduled_s": scheduled, "sent_s": scheduled,
            "start_ms": 1000 * (origin + start), "end_ms": 1000 * (origin + start + init + run),
            "wait_ms": 1000 * wait, "init_ms": 1000 * init if init else "", "duration_ms": 1000 * (init + run),
            "latency_ms": 1000 * (wait + init + run), "cold": init > 0, "status": status}


def test_a_live_runs_costs_are_its_activations_and_the_exact_integrals_of_its_containers(tmp_path: Path) -> None:
    origin = 1000.0
    rows = live.read_replay_rows(write_records(tmp_path / "records.csv", [
        activation("base64-001", 1.0, 1.002, 0.5, init=0.25),  # cold: its container starts at 1.002
        activation("base64-001", 4.0, 4.002, 0.5),             # warm
        activation("base64-001", 9.5, 9.502, 1.0),             # ends after the 10-s window: unfinished
        activation("graph-bfs-000", 2.0, 2.002, 0.1, status="developer_error"),
        {"function": "graph-bfs-000", "scheduled_s": 3.0, "status": "throttled"},
        activation("base64-001", 11.0, 11.002, 0.1),           # arrives after the window: not counted
    ]))
    assert live.replay_origin_s(rows) == pytest.approx(origin)
    lifetimes = [recorded.Lifetime("a-1-base64-001", "base64-001", 256, origin + 1.002, origin + 12.0),
                 # a container a pool started with no activation (pre-warmed): its init is the median cold one
                 recorded.Lifetime("a-2-graph-bfs-000", "graph-bfs-000", 512, origin + 0.0, origin + 8.0)]
    activations, usage = live.live_costs(ACTIONS, rows, lifetimes, np.array([0.3, 0.7]), origin, 10.0)
    assert activations.function_index.tolist() == [1, 1]
    assert activations.latency_s == pytest.approx([0.752, 0.502])
    assert activations.cold.tolist() == [True, False]
    assert usage.arrivals.tolist() == [2.0, 3.0]
    assert usage.unfinished.tolist() == [0.0, 1.0]
    assert usage.dropped.tolist() == [2.0, 0.0]
    assert usage.container_s == pytest.approx([8.0, 10.0 - 1.002])
    assert usage.memory_mb_s == pytest.approx([8.0 * 512, (10.0 - 1.002) * 256])
    # graph-bfs: 8 s held, busy 0.1 s, no cold activation to take an init from; base64: busy 0.75 +
    # 0.5 + 0.498 (clipped) s, no pre-warm
    assert usage.idle_memory_mb_s == pytest.approx([512 * (8.0 - 0.1), 256 * (10.0 - 1.002 - 0.75 - 0.5 - 0.498)])
    assert usage.cpu_used_core_s.tolist() == [0.3, 0.7]
    assert usage.cpu_alloc_core_s == pytest.approx([0.0, 0.0])  # lifetimes without shares history allocate none


def test_a_pool_sampler_interpolates_each_actions_cpu_counter_at_the_windows_ends() -> None:
    sampler = live.PoolSampler("http://127.0.0.1:9")
    sampler.rows = [(0.0, "a", 1.0), (10.0, "a", 3.0), (20.0, "a", 7.0), (0.0, "b", 5.0)]
    used = sampler.cpu_used(["a", "b"], 5.0, 15.0)
    assert used[0] == pytest.approx(5.0 - 2.0)
    assert np.isnan(used[1])  # one reading cannot give a difference


def test_only_warm_successful_activations_with_nothing_else_running_are_lone() -> None:
    rows = live.ReplayRows(
        function=np.array(["a", "b", "a", "a", "b", "a"], dtype=object),
        status=np.array(["success"] * 5 + ["developer_error"], dtype=object),
        scheduled_s=np.zeros(6), sent_s=np.zeros(6),
        # a@[0,1) alone; b@[2,4) overlaps a@[3,5); a@[6,7) cold; b@[8,9) alone; a@[10,11) failed
        start_s=np.array([0.0, 2.0, 3.0, 6.0, 8.0, 10.0]),
        end_s=np.array([1.0, 4.0, 5.0, 7.0, 9.0, 11.0]),
        wait_s=np.array([0.01, 0.0, 0.0, 0.0, 0.02, 0.0]),
        init_s=np.array([0.0, 0.0, 0.0, 0.5, 0.0, 0.0]),
        latency_s=np.array([1.01, 2.0, 2.0, 1.0, 1.02, 1.0]),
        cold=np.array([False, False, False, True, False, False]),
    )
    lone = live.lone_run_times(rows)
    assert set(lone) == {"a", "b"}
    assert lone["a"] == pytest.approx([1.0])
    assert lone["b"] == pytest.approx([1.0])


def test_a_rotation_runs_each_label_in_turn_per_round_and_keeps_finished_runs(tmp_path, monkeypatch) -> None:
    made = []

    def fake_run_live(run, plan, solo, folder, cpu_weight):
        made.append(folder.relative_to(tmp_path).as_posix())
        return {"label": run.label}

    monkeypatch.setattr(live, "run_live", fake_run_live)
    finished = tmp_path / "live" / "b" / "run0"
    finished.mkdir(parents=True)
    (finished / "result.json").write_text("{}")
    runs = {"a": live.PolicyRun("a", "ensure"), "b": live.PolicyRun("b", "openwhisk-default")}
    plan = live.ReplayPlan(12, "busiest", 480, 5, 0.25, 0, 10.0)
    done = list(live.run_rotation(runs, plan, tmp_path / "solo.json", tmp_path, repeats=2))
    assert made == ["live/a/run0", "live/a/run1", "live/b/run1"]
    assert [(label, k) for label, k, _ in done] == [("a", 0), ("a", 1), ("b", 1)]
