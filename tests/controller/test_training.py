"""``mfrm train`` and learned policies in ``mfrm compare``: checkpoints, resume, frozen evaluation, seeds."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from controller.assemble import PolicySpec, build_policy, build_workload, cluster_config, measure_slos
from controller.checkpoint import read_checkpoint
from controller.commands.main import main
from controller.settings import load_settings
from controller.training import side_path, train_policy

# 3 functions, 1 trace minute (6 ticks), few SLO probes: a training run takes well under a second.
TINY = {"workload.functions": 3, "workload.minutes": 1, "reward.slo_probe_invocations": 200,
        "output.plots": False}
TINY_ARGS = ["--functions", "3", "--minutes", "1", "--set", "reward.slo_probe_invocations=200", "--no-plots"]


def _settings(**extra):
    return load_settings(overrides={**TINY, **extra})


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _learner_arrays(path):
    """The learned parameters of a checkpoint: every array but the pending decision."""
    _, state = read_checkpoint(path)
    return {k: np.asarray(v) for k, v in state.items() if k.startswith("learner/") and isinstance(v, np.ndarray)}


def _snapshot_and_mu(settings):
    """One observed tick of the tiny workload and a valid μ, to ask two policies for decisions."""
    from controller.backends.sim import SimBackend
    from simulator import Cluster
    from workload.arrivals import ArrivalStream

    workload = build_workload(settings)
    slo = measure_slos(settings, workload)
    cluster = Cluster(cluster_config(settings), [f.profile for f in workload.functions], slo, seed=1)
    arrivals = ArrivalStream(workload.functions, workload.start_minute, workload.end_minute, seed=1)
    backend = SimBackend(cluster, arrivals, workload.names, 10.0)
    mu = np.full(settings.estimator.bins, 1.0 / settings.estimator.bins)
    return backend.observe(10.0), mu


def test_training_writes_a_checkpoint_a_row_per_tick_and_the_run_record(tmp_path):
    out = tmp_path / "nac-linear.ckpt.npz"
    # Every function managed (no idle hand-off), so each of the 3 forms a transition every tick.
    settings = _settings(**{"policy.params": {"nac-linear": {"idle_load": 0.0}}})
    result = train_policy(settings, "nac-linear", out)
    header, _ = read_checkpoint(out)
    assert header["policy"] == "nac-linear" and header["tick"] == 6
    with open(side_path(out, ".diagnostics.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["tick"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert float(rows[-1]["transitions"]) == 3.0 and rows[-1]["policy/entropy"] != ""
    meta = json.loads(side_path(out, ".run.json").read_text())
    assert meta["ticks_after"] == 6 and meta["resumed_from"] is None and meta["update_ms"] > 0
    assert len(result.rows) == 6


@pytest.mark.parametrize("name", ["nac-linear", "nac-nn"], ids=["linear", "neural"])
def test_a_policy_loaded_from_its_checkpoint_decides_exactly_like_the_trained_one(tmp_path, name):
    settings = _settings()
    trained = train_policy(settings, name, tmp_path / f"{name}.ckpt.npz").policy
    resumed = build_policy(settings, PolicySpec(name, checkpoint=tmp_path / f"{name}.ckpt.npz"))
    snapshot, mu = _snapshot_and_mu(settings)
    for _ in range(3):  # the driver's generator was restored too: the same draws, tick after tick
        a, b = trained.decide(snapshot, mu), resumed.decide(snapshot, mu)
        np.testing.assert_array_equal(a.action, b.action)
        np.testing.assert_array_equal(a.containers, b.containers)
        np.testing.assert_array_equal(a.cpu_shares, b.cpu_shares)


def test_resume_continues_the_tick_count_and_the_learning_from_the_checkpoint(tmp_path):
    out = tmp_path / "nac-linear.ckpt.npz"
    assert _invoke("train", "--policy", "nac-linear", "--out", str(out), *TINY_ARGS).exit_code == 0
    first = _learner_arrays(out)
    result = _invoke("train", "--policy", "nac-linear", "--resume", "--out", str(out), *TINY_ARGS)
    assert result.exit_code == 0, result.output
    assert "ticks 6 -> 12" in result.output
    header, _ = read_checkpoint(out)
    assert header["tick"] == 12
    assert not np.array_equal(first["learner/theta"], _learner_arrays(out)["learner/theta"])
    meta = json.loads(side_path(out, ".run.json").read_text())
    assert meta["resumed_from"]["tick"] == 6


def test_resume_refuses_a_checkpoint_of_another_policy_with_the_reason(tmp_path):
    out = tmp_path / "model.ckpt.npz"
    assert _invoke("train", "--policy", "nac-nn", "--out", str(out), *TINY_ARGS).exit_code == 0
    result = CliRunner().invoke(main, ["train", "--policy", "nac-linear", "--resume", "--out", str(out), *TINY_ARGS])
    assert result.exit_code != 0
    assert "does not fit policy 'nac-linear'" in result.output


def test_the_same_seed_trains_the_same_policy_and_another_seed_does_not(tmp_path):
    runs = {}
    for label, seed in (("a", 4), ("b", 4), ("c", 5)):
        out = tmp_path / label / "nac-linear.ckpt.npz"
        train_policy(_settings(seed=seed), "nac-linear", out)
        runs[label] = (side_path(out, ".diagnostics.csv").read_text(), _learner_arrays(out))
    assert runs["a"][0] == runs["b"][0]
    for key, value in runs["a"][1].items():
        np.testing.assert_array_equal(value, runs["b"][1][key])
    assert runs["a"][0] != runs["c"][0]


@pytest.mark.parametrize(
    "flags, learns",
    [(["--frozen"], False), ([], True)],
    ids=["frozen keeps the parameters", "online evaluation keeps learning"],
)
def test_compare_evaluates_a_checkpoint_frozen_or_learning_online(tmp_path, flags, learns):
    ckpt = tmp_path / "train" / "nac-linear.ckpt.npz"
    train_policy(_settings(), "nac-linear", ckpt)
    out = tmp_path / "compare"
    result = _invoke("compare", "--policies", "openwhisk-default", "--checkpoint", f"nac-linear={ckpt}",
                     "--workers", "1", "--out", str(out), *flags, *TINY_ARGS)
    assert result.exit_code == 0, result.output
    with open(out / "overall.csv", newline="") as handle:
        assert [row["policy"] for row in csv.DictReader(handle)] == ["openwhisk-default", "nac-linear"]
    before, after = _learner_arrays(ckpt), _learner_arrays(out / "checkpoints" / "nac-linear.ckpt.npz")
    changed = any(not np.array_equal(before[k], after[k]) for k in before)
    assert changed == learns
    meta = json.loads((out / "run.json").read_text())
    assert meta["learned"][0]["checkpoint"] == str(ckpt) and meta["learned"][0]["frozen"] == (not learns)


def test_compare_refuses_a_checkpoint_of_another_policy_before_running_anything(tmp_path):
    ckpt = tmp_path / "nn.ckpt.npz"
    train_policy(_settings(), "nac-nn", ckpt)
    result = CliRunner().invoke(main, ["compare", "--policies", "ensure", "--checkpoint", f"nac-linear={ckpt}",
                                       "--out", str(tmp_path / "out"), *TINY_ARGS])
    assert result.exit_code != 0
    assert "does not fit policy 'nac-linear'" in result.output
    assert not (tmp_path / "out" / "overall.csv").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "--checkpoint", "ensure=x.npz"], "'ensure' is not a learned policy"),
        (["compare", "--checkpoint", "nac-nn=/nonexistent.ckpt.npz"], "checkpoint file not found"),
        (["compare", "--checkpoint", "nac-nn"], "expected NAME=PATH"),
        (["train", "--policy", "ensure"], "'ensure' is not one of"),
        (["train", "--policy", "nac-linear", "--set", "policy.params={nac-linear: {idle_lod: 0.1}}"],
         "policy.params.nac-linear: unknown parameter 'idle_lod'"),
        (["train", "--policy", "nac-nn", "--set", "policy.params={nac-nn: {load_ceiling: 0.5}}"],
         "policy.params.nac-nn: ActionSettings.load_ceiling=0.5"),
        (["compare", "--policies", "ensure,nac-linear", "--set", "policy.params={nac-linear: {staffing_c: -1}}"],
         "policy.params.nac-linear: ActionSettings.staffing_c=-1"),
    ],
    ids=["a baseline given a checkpoint", "a missing checkpoint file", "no path", "training a baseline",
         "a parameter the learner does not take", "an invalid learner parameter", "an invalid parameter in compare"],
)
def test_bad_learned_policy_input_stops_with_a_clear_message(args, message):
    result = CliRunner().invoke(main, [*args, *TINY_ARGS])
    assert result.exit_code != 0
    assert message in result.output


def test_train_on_a_scenario_uses_its_training_window_and_half_of_its_functions(tmp_path):
    from click.testing import CliRunner

    from controller.commands.train import train_command

    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "scenario:\n  version: 1\n  name: s\n  description: tiny\n"
        "  train: {start_minute: 500, minutes: 1}\n  evaluate: {start_minute: 502, minutes: 1}\n"
        "  split: {seed: 7}\n"
        "cluster: {invokers: 3}\nworkload: {functions: 6}\nreward: {slo_probe_invocations: 200}\n", encoding="utf-8")
    out = tmp_path / "l.ckpt.npz"
    result = CliRunner().invoke(train_command, ["--policy", "nac-linear", "--scenario", str(scenario), "--out", str(out),
                                                "--no-plots"])
    assert result.exit_code == 0, result.output
    logged = json.loads(side_path(out, ".run.json").read_text())["settings"]
    assert logged["workload"]["start_minute"] == 500 and logged["workload"]["minutes"] == 1
    assert logged["workload"]["split_part"] == "train" and logged["workload"]["split_seed"] == 7
    refused = CliRunner().invoke(train_command, ["--policy", "nac-linear", "--scenario", str(scenario), "--config",
                                                 str(scenario), "--out", str(tmp_path / "m.ckpt.npz")])
    assert refused.exit_code == 2 and "--scenario and --config" in refused.output
