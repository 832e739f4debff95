"""The simulate / compare / demo commands end to end on tiny runs, and the sim backend."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from controller.backends.base import FailureKind
from controller.backends.sim import SimBackend
from controller.cli import main
from controller.experiments import build_workload, measure_slos, run_policy
from controller.settings import load_settings
from policies.types import KEEP_SHARES, UNMANAGED, Decisions
from simulator import Cluster, ClusterConfig
from workload.arrivals import ArrivalStream

# Small enough to run in about a second: 3 functions, 2 trace minutes, few SLO probes.
TINY = ["--functions", "3", "--minutes", "2", "--set", "reward.slo_probe_invocations=200", "--no-plots"]


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_simulate_writes_csvs_plots_and_the_run_record(tmp_path):
    args = [a for a in TINY if a != "--no-plots"]
    result = _invoke("simulate", "--policy", "ensure", "--seed", "3", "--out", str(tmp_path), *args)
    assert result.exit_code == 0, result.output
    overall = _rows(tmp_path / "overall.csv")
    assert [row["policy"] for row in overall] == ["ensure"]
    assert float(overall[0]["invocations"]) > 0
    assert len(_rows(tmp_path / "functions.csv")) == 3
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["seed"] == 3 and meta["settings"]["workload"]["functions"] == 3
    assert "numpy" in meta["versions"] and len(meta["functions"]) == 3
    assert (tmp_path / "latency_cdf.png").stat().st_size > 0
    assert (tmp_path / "timeseries.png").stat().st_size > 0
    assert "ensure" in result.output and "overall.csv" in result.output


def test_the_same_seed_gives_the_same_numbers_and_another_seed_does_not(tmp_path):
    outputs = []
    for run, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        out = tmp_path / run
        assert _invoke("simulate", "--seed", seed, "--out", str(out), *TINY).exit_code == 0
        outputs.append((out / "functions.csv").read_text())
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]


def test_compare_runs_every_policy_in_worker_processes_on_the_same_arrivals(tmp_path):
    result = _invoke("compare", "--policies", "openwhisk-default,ensure", "--workers", "2",
                     "--out", str(tmp_path), *TINY)
    assert result.exit_code == 0, result.output
    overall = _rows(tmp_path / "overall.csv")
    assert [row["policy"] for row in overall] == ["openwhisk-default", "ensure"]
    per_function = _rows(tmp_path / "functions.csv")
    assert len(per_function) == 6


def test_every_policy_sees_the_same_arrivals():
    settings = load_settings(overrides={"workload.functions": 3, "workload.minutes": 2,
                                        "reward.slo_probe_invocations": 200})
    workload = build_workload(settings)
    slo = measure_slos(settings, workload)
    a = run_policy(settings, workload, slo, "openwhisk-default")
    b = run_policy(settings, workload, slo, "ensure")
    assert np.array_equal(a.arrivals, b.arrivals)
    assert a.arrivals.sum() == sum(int(f.counts_per_minute.sum()) for f in workload.functions)


@pytest.mark.parametrize(
    "args, message",
    [
        (["simulate", "--trace", "/nonexistent/trace"], "trace folder not found"),
        (["simulate", "--set", "loop.tick_s=0"], "loop.tick_s = 0 (from command line)"),
        (["simulate", "--set", "nonsense"], "expected KEY=VALUE"),
        (["simulate", "--policy", "no-such-policy"], "unknown policy no-such-policy; known policies:"),
    ],
    ids=["a missing trace folder", "a value out of range", "a malformed override", "an unknown policy"],
)
def test_bad_input_stops_with_a_clear_message(args, message):
    result = CliRunner().invoke(main, [*args, *TINY])
    assert result.exit_code != 0
    assert message in result.output


def _tiny_backend():
    settings = load_settings(overrides={"workload.functions": 2, "workload.minutes": 1})
    workload = build_workload(settings)
    cluster = Cluster(ClusterConfig(invokers=2), [f.profile for f in workload.functions], seed=0)
    arrivals = ArrivalStream(workload.functions, workload.start_minute, workload.end_minute, seed=0)
    return SimBackend(cluster, arrivals, workload.names, 10.0), workload


def test_sim_backend_snapshots_count_the_windows_arrivals_and_are_all_valid():
    backend, workload = _tiny_backend()
    total = 0
    for now in (20.0, 40.0, 60.0):
        snapshot = backend.observe(now)
        assert snapshot.functions.valid.all() and snapshot.invokers.valid.all()
        assert snapshot.tick_s == pytest.approx(20.0)
        total += snapshot.functions.arrivals.sum()
    assert total == sum(int(f.counts_per_minute.sum()) for f in workload.functions)
    with pytest.raises(ValueError, match="not after"):
        backend.observe(60.0)


def test_sim_backend_reports_a_refused_change_and_applies_the_others():
    backend, _ = _tiny_backend()
    backend.observe(10.0)
    decisions = Decisions(containers=np.array([2, 3]), cpu_shares=np.array([1, 256]),
                          valid=np.array([True, True]), reasons=("x", "y"))
    failures = backend.apply(decisions, 10.0)
    assert [(f.function, f.kind) for f in failures] == [(backend.function_names[0], FailureKind.REJECTED)]
    snapshot = backend.observe(20.0)
    assert snapshot.functions.cpu_shares[1] == 256
    assert snapshot.functions.containers[1] == 3


def test_sim_backend_does_not_repeat_a_target_it_already_set():
    backend, _ = _tiny_backend()
    backend.observe(10.0)
    same = Decisions(containers=np.array([UNMANAGED, 1]), cpu_shares=np.array([KEEP_SHARES, KEEP_SHARES]),
                     valid=np.array([True, True]), reasons=("x", "y"))
    assert backend.apply(same, 10.0) == []
    calls = []
    backend.cluster.set_pool = lambda fn, k: calls.append((fn, k))
    backend.apply(same, 10.0)
    assert calls == []
