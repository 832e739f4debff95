"""The simulate / compare / demo commands end to end on tiny runs, and the sim backend."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from controller.assemble import PolicySpec, RunSeeds, build_policy, build_workload, measure_slos
from controller.backends.base import FailureKind
from controller.backends.sim import SimBackend
from controller.checkpoint import Checkpointer
from controller.commands.main import main
from controller.runner import run_policy
from controller.settings import load_settings
from policies.types import KEEP_SHARES, UNMANAGED, Decisions
from simulator import Cluster, ClusterConfig
from workload.arrivals import ArrivalStream, scale_minute_counts

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
        (["simulate", "--policy", "no-such-policy"], "unknown policy 'no-such-policy'; known policies:"),
        (["simulate", "--policy", "ensure", "--set", "policy.params={ensure: {cc: 1}}"],
         "policy.params.ensure: policy 'ensure': unknown parameter(s) cc"),
        (["simulate", "--set", "seed=[1"], "the value is not valid YAML"),
        (["compare", "--policies", "ensure,nope"], "unknown policy 'nope'"),
        (["demo", "--set", "cluster.invokers=0"], "cluster.invokers = 0"),
        (["train", "--policy", "nac-linear", "--set", "loop.tick_s=-1"], "loop.tick_s = -1"),
        (["run", "--once", "--set", "daemon.metrics_port=70000"], "daemon.metrics_port = 70000"),
        (["replay", "--set", "replay.speedup=0"], "replay.speedup = 0"),
        (["replay", "--speedup", "2"], "replay.api_host is not set"),
        (["simulate", "--start-minute", "2000"], "workload.start_minute = 2000"),
        (["simulate", "--trace", "data/azure-functions-2021-sample"], "are not within the trace's minutes [0, 108)"),
    ],
    ids=["a missing trace folder", "a value out of range", "a malformed override", "an unknown policy",
         "a parameter the policy does not take", "broken yaml in --set", "compare: an unknown policy",
         "demo: a value out of range", "train: a value out of range", "run: a value out of range",
         "replay: a value out of range", "replay: no api host", "a minute outside the day",
         "a window outside the 2021 trace"],
)
def test_bad_input_stops_with_one_line_and_exit_status_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    extra = TINY if args[0] in ("simulate", "compare", "demo") else ["--set", f"output.out_dir={tmp_path}"]
    if args[0] == "train":
        extra = ["--out", str(tmp_path / "t.ckpt.npz")]
    result = CliRunner().invoke(main, [*args, *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_shipped_2021_trace_runs_from_the_command_line(tmp_path):
    trace = Path(__file__).resolve().parents[2] / "data" / "azure-functions-2021-sample"
    result = _invoke("simulate", "--trace", str(trace), "--start-minute", "0",
                     "--minutes", "20", "--functions", "6", "--out", str(tmp_path), *TINY[4:])
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "functions.csv")
    assert len(rows) == 6 and sum(float(r["invocations"]) for r in rows) > 0


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


# --------------------------------------------------------------------------- load knob, selection, seeds


def _workload(**extra):
    overrides = {"workload.functions": 4, "workload.minutes": 5, "reward.slo_probe_invocations": 200, **extra}
    return build_workload(load_settings(overrides=overrides))


@pytest.mark.parametrize("factor", [0.3, 1.0, 2.5], ids=["a fraction", "one", "more than two"])
def test_scaled_counts_keep_their_expected_value_and_whole_multiples(factor):
    counts = np.random.default_rng(0).integers(0, 50, size=(20, 300))
    scaled = scale_minute_counts(counts, 480, factor, seed=7)
    assert np.all(scaled >= np.floor(counts * factor)) and np.all(scaled <= np.ceil(counts * factor))
    assert scaled.sum() == pytest.approx(counts.sum() * factor, rel=0.01)


def test_a_minute_scales_to_the_same_counts_whatever_window_it_is_replayed_in():
    counts = np.random.default_rng(1).integers(0, 9, size=(5, 60))
    whole = scale_minute_counts(counts, 480, 1.7, seed=3)
    part = scale_minute_counts(counts[:, 20:40], 500, 1.7, seed=3)
    np.testing.assert_array_equal(whole[:, 20:40], part)


def test_rate_scale_multiplies_the_workload_and_every_policy_replays_the_same_counts():
    plain, scaled = _workload(), _workload(**{"workload.rate_scale": 3.0})
    assert scaled.total_invocations() == pytest.approx(3 * plain.total_invocations(), rel=0.05)
    again = _workload(**{"workload.rate_scale": 3.0})
    for a, b in zip(scaled.functions, again.functions):
        np.testing.assert_array_equal(a.counts_per_minute, b.counts_per_minute)


def test_busiest_selection_takes_the_functions_with_the_most_invocations():
    from controller.assemble import SAMPLE_TRACE, busiest_trace_ids
    from workload.azure2019 import load_trace

    trace = load_trace(SAMPLE_TRACE)
    totals = trace.invocations.counts.sum(axis=1)
    ids = busiest_trace_ids(trace, 4)
    picked = [totals[[k.trace_id for k in trace.invocations.keys].index(i)] for i in ids]
    assert picked == sorted(totals, reverse=True)[:4]
    assert [f.trace_id for f in _workload(**{"workload.select": "busiest"}).functions] == ids


def test_a_training_window_and_an_evaluation_window_see_the_same_functions():
    train = _workload(**{"workload.start_minute": 480})
    evaluate = _workload(**{"workload.start_minute": 720})
    assert [(f.trace_id, f.profile.name) for f in train.functions] == [
        (f.trace_id, f.profile.name) for f in evaluate.functions
    ]
    assert evaluate.start_minute == 720 and evaluate.functions[0].first_minute == 720


def test_learned_policies_get_their_own_stable_seed_from_the_run_seed():
    seeds = RunSeeds.from_seed(3)
    assert seeds.policy_seed("nac-nn") == RunSeeds.from_seed(3).policy_seed("nac-nn")
    assert seeds.policy_seed("nac-nn") != seeds.policy_seed("nac-linear")
    assert seeds.policy_seed("nac-nn") != RunSeeds.from_seed(4).policy_seed("nac-nn")
    # The seeds that existed before the policies' child was added are unchanged.
    children = np.random.SeedSequence(3).spawn(4)
    assert seeds.arrivals == int(children[1].generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    settings = load_settings(overrides={"seed": 3})
    assert build_policy(settings, "nac-linear").seed == seeds.policy_seed("nac-linear")


class _Stop(Exception):
    pass


class _StopAt:
    """A metrics sink that interrupts the run at a given tick, like a Ctrl-C would."""

    def __init__(self, tick):
        self.tick = tick

    def on_tick(self, report):
        if report.tick + 1 == self.tick:
            raise _Stop


def test_a_learned_policy_is_checkpointed_when_its_run_is_interrupted(tmp_path):
    from controller.checkpoint import read_checkpoint

    settings = load_settings(overrides={"workload.functions": 3, "workload.minutes": 2,
                                        "reward.slo_probe_invocations": 200})
    workload = build_workload(settings)
    slo = measure_slos(settings, workload)
    policy = build_policy(settings, "nac-linear")
    with pytest.raises(_Stop):
        run_policy(settings, workload, slo, "nac-linear", policy=policy, sinks=[_StopAt(4)],
                   checkpointer=Checkpointer.in_directory(tmp_path, "nac-linear"))
    header, state = read_checkpoint(tmp_path / "nac-linear.ckpt.npz")
    assert header["tick"] == 4
    np.testing.assert_array_equal(state["learner/theta"], policy.learner.core.theta)


def test_run_policy_uses_a_prebuilt_policy_and_reports_its_cost_per_tick(tmp_path):
    settings = load_settings(overrides={"workload.functions": 3, "workload.minutes": 1,
                                        "reward.slo_probe_invocations": 200})
    workload = build_workload(settings)
    slo = measure_slos(settings, workload)
    policy = build_policy(settings, PolicySpec("nac-linear", frozen=True))
    result = run_policy(settings, workload, slo, "nac-linear", policy=policy,
                        checkpointer=Checkpointer.in_directory(tmp_path, "nac-linear"))
    assert result.policy == "nac-linear" and result.decide_ms > 0
    assert policy.agent.frozen


def test_on_the_simulated_cluster_smaller_shares_cost_the_same_memory_and_only_move_the_papers_metric():
    from conftest import FixedPolicy

    from controller.report import overall_metrics

    settings = load_settings(overrides={"workload.functions": 3, "workload.minutes": 3,
                                        "reward.slo_probe_invocations": 200})
    workload = build_workload(settings)
    slo = measure_slos(settings, workload)
    wide = overall_metrics(run_policy(settings, workload, slo, "fixed", policy=FixedPolicy(containers=3, shares=1024)))
    narrow = overall_metrics(run_policy(settings, workload, slo, "fixed", policy=FixedPolicy(containers=3, shares=128)))
    assert narrow["memory_gb_s"] == pytest.approx(wide["memory_gb_s"], rel=1e-9)
    assert narrow["container_s"] == pytest.approx(wide["container_s"], rel=1e-9)
    assert narrow["paper_cpu_utilisation"] > 4 * wide["paper_cpu_utilisation"]


# --- the demo's learners ---------------------------------------------------------------------------


def test_the_demo_plays_the_evaluation_window_of_the_scenario_its_checkpoints_were_trained_on():
    from controller.bench.scenarios import SCENARIO_DIR, load_scenario
    from controller.commands.experiments import DEMO_OVERRIDES

    scenario = load_scenario(SCENARIO_DIR / "paper-12.yaml")
    evaluate = scenario.settings("evaluate", False)
    demo = load_settings(None, DEMO_OVERRIDES)
    assert demo.cluster == evaluate.cluster
    assert demo.workload == evaluate.workload
    train = scenario.settings("train", False)
    # The windows do not overlap: the demo is judged on minutes the checkpoints never saw.
    assert train.workload.start_minute + train.workload.minutes <= demo.workload.start_minute


@pytest.mark.parametrize("policy", ["nac-linear", "nac-nn"])
def test_the_shipped_checkpoint_of_each_learner_loads_with_the_demos_settings(policy):
    from controller.commands.experiments import DEMO_CHECKPOINTS, DEMO_OVERRIDES

    path = DEMO_CHECKPOINTS / f"{policy}.ckpt.npz"
    assert path.is_file(), f"{path} is not shipped (scripts/train-checkpoints.sh makes it)"
    settings = load_settings(None, DEMO_OVERRIDES)
    built = build_policy(settings, PolicySpec(policy, path, frozen=True, greedy=True))
    trained = build_policy(settings, PolicySpec(policy))
    # Loaded, not fresh: its weights are not a fresh learner's.
    loaded, fresh = built.state_dict(), trained.state_dict()
    differ = [k for k in loaded if k.startswith("learner/") and not np.array_equal(loaded[k], fresh[k])]
    assert differ, "the checkpoint's weights equal a fresh learner's"
    # The record beside it says how it was made, with no path of the machine that made it.
    record = json.loads(path.with_name(f"{policy}.ckpt.run.json").read_text())
    assert record["command"].startswith(f"mfrm train --policy {policy} --scenario scenarios/paper-12.yaml")
    root = str(Path(__file__).resolve().parents[2])
    assert root not in json.dumps(record) and not str(record.get("trace_dir", "")).startswith("/")


def test_a_learner_without_a_checkpoint_in_the_demos_folder_starts_from_scratch_and_says_so(tmp_path, caplog):
    from controller.commands.experiments import demo_specs

    (tmp_path / "nac-linear.ckpt.npz").write_bytes(b"")
    with caplog.at_level("WARNING"):
        specs = demo_specs(["ensure", "nac-linear", "nac-nn"], tmp_path)
    by_name = {s.name: s for s in specs}
    assert by_name["ensure"].checkpoint is None
    assert by_name["nac-linear"].checkpoint == tmp_path / "nac-linear.ckpt.npz"
    assert by_name["nac-linear"].frozen and by_name["nac-linear"].greedy
    assert by_name["nac-nn"].checkpoint is None and not by_name["nac-nn"].frozen
    assert "nac-nn: no checkpoint at" in caplog.text
    assert all(s.checkpoint is None for s in demo_specs(["nac-linear"], None))


def test_a_demo_whose_checkpoint_does_not_fit_the_learner_is_refused_naming_the_file(tmp_path):
    from controller.commands.experiments import DEMO_CHECKPOINTS

    # The shipped checkpoints were trained with the staffing scheme; the moves scheme has other shapes.
    (tmp_path / "nac-linear.ckpt.npz").write_bytes((DEMO_CHECKPOINTS / "nac-linear.ckpt.npz").read_bytes())
    result = CliRunner().invoke(main, ["demo", "--checkpoints", str(tmp_path), "--set", "policy.compare=[nac-linear]",
                                       "--set", "policy.params.nac-linear.scheme=moves", "--out", str(tmp_path / "o"),
                                       *TINY])
    assert result.exit_code != 0
    assert "nac-linear.ckpt.npz" in result.output and "Traceback" not in result.output


def test_the_shipped_checkpoints_load_into_the_demos_learners_without_a_setting_that_differs():
    from controller.assemble import PolicySpec, build_policy
    from controller.checkpoint import load_checkpoint
    from controller.commands.experiments import DEMO_CHECKPOINTS, DEMO_OVERRIDES
    from controller.settings import load_settings

    settings = load_settings(overrides=DEMO_OVERRIDES)
    for name in ("nac-linear", "nac-nn"):
        policy = build_policy(settings, PolicySpec(name))
        loaded = load_checkpoint(DEMO_CHECKPOINTS / f"{name}.ckpt.npz", policy)
        # A difference means a settings field was added or changed without re-making the checkpoints
        # (scripts/train-checkpoints.sh): the demo would warn on every run.
        assert loaded.settings_differences == (), name
