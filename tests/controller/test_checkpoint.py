"""Checkpoints: exact resume, atomic replacement under a kill, refusal of what does not fit."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import make_snapshot

from controller.checkpoint import (
    FORMAT_VERSION,
    Checkpointer,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from policies.registry import make

ROOT = Path(__file__).resolve().parents[2]
MU = np.full(10, 0.1)
N = 16

POLICIES = [
    ("nac-linear", {"mode": "natural"}),
    ("nac-linear", {"mode": "kl"}),
    ("nac-nn", {}),
]
POLICY_IDS = ["linear-natural", "linear-kl", "nn"]


def snapshot(t: int, n: int = N):
    rng = np.random.default_rng(t)
    return make_snapshot(
        tuple(f"f{i}" for i in range(n)),
        time_s=10.0 * t,
        arrivals=rng.poisson(20, n).astype(float),
        completions=rng.poisson(20, n).astype(float),
        p99_latency_s=rng.uniform(0.2, 3.0, n),
        containers=rng.integers(0, 6, n).astype(float),
        cpu_shares=np.full(n, 256.0),
        cpu_used_core_s=rng.uniform(0, 10, n),
        cpu_alloc_core_s=np.full(n, 10.0),
        mean_exec_s=rng.uniform(0.5, 3.0, n),  # sized work: the staffing band (smoothed load) applies
    )


def rewards_for(t: int) -> np.ndarray:
    return np.random.default_rng(1000 + t).uniform(0, 1, N)


def drive(policy, ticks: range) -> list[tuple[list[int], dict]]:
    """Run the loop's order (decide, then feedback with the previous tick's reward) over ``ticks``."""
    out = []
    for t in ticks:
        snap = snapshot(t)
        decisions = policy.decide(snap, MU)
        diagnostics = dict(policy.feedback(snap, MU, rewards_for(t)))
        out.append((decisions.action.tolist(), decisions.containers.tolist(), diagnostics))
    return out


@pytest.mark.parametrize(("name", "params"), POLICIES, ids=POLICY_IDS)
def test_a_resumed_policy_decides_and_learns_exactly_like_the_uninterrupted_one(
    name, params, tmp_path: Path
) -> None:
    original = make(name, seed=3, **params)
    drive(original, range(1, 4))
    path = save_checkpoint(tmp_path / "p.ckpt.npz", original, tick=3, time_s=30.0)

    resumed = make(name, seed=99, **params)  # another seed: everything that matters comes from the file
    loaded = load_checkpoint(path, resumed)
    assert loaded.header["tick"] == 3 and loaded.header["seed"] == 3

    assert drive(resumed, range(4, 8)) == drive(original, range(4, 8))


@pytest.mark.parametrize("name", ["nac-linear", "nac-nn"])
def test_a_kl_learner_given_a_whole_number_coefficient_resumes_from_its_checkpoint(name, tmp_path: Path) -> None:
    # A coefficient written as 100 (from YAML or the command line) must not read as a counter when
    # the trained checkpoint, whose coefficient is a float, is loaded into a fresh policy.
    params = {"kl_coef_init": 100, "kl_adapt_factor": 1}
    if name == "nac-linear":
        params["mode"] = "kl"
    original = make(name, seed=3, **params)
    drive(original, range(1, 4))
    path = save_checkpoint(tmp_path / "p.ckpt.npz", original, tick=3, time_s=30.0)
    resumed = make(name, seed=3, **params)
    load_checkpoint(path, resumed)
    assert resumed.learner.kl_coef == 100.0
    assert drive(resumed, range(4, 6)) == drive(original, range(4, 6))


def test_a_resumed_policy_staffs_for_the_same_smoothed_load(tmp_path: Path) -> None:
    # The smoothed load is part of the state: without it the first targets after a restart would
    # follow the tick's load alone. A quiet tick after a burst shows the difference.
    original = make("nac-linear", seed=3)
    drive(original, range(1, 4))
    path = save_checkpoint(tmp_path / "p.ckpt.npz", original, tick=3, time_s=30.0)
    resumed = make("nac-linear", seed=3)
    load_checkpoint(path, resumed)
    fresh = make("nac-linear", seed=3)
    quiet = replace(snapshot(4), functions=replace(snapshot(4).functions, arrivals=np.zeros(N)))
    assert np.array_equal(original._staffing_load(quiet), resumed._staffing_load(quiet))
    assert np.all(resumed._staffing_load(quiet) > 0) and np.all(fresh._staffing_load(quiet) == 0)


def test_the_header_records_version_settings_seed_and_array_shapes(tmp_path: Path) -> None:
    policy = make("nac-linear", seed=5, mode="kl", learning_rate=1e-3)
    drive(policy, range(1, 3))
    header, state = read_checkpoint(save_checkpoint(tmp_path / "c.npz", policy, tick=2, time_s=20.0))
    assert header["format_version"] == FORMAT_VERSION
    assert header["policy"] == "nac-linear" and header["seed"] == 5
    assert header["settings"]["learner"]["learning_rate"] == 1e-3
    assert header["signature"]["state_dim"] == 21 and header["signature"]["n_actions"] == 9
    assert header["arrays"]["learner/theta"]["shape"] == [9, 21]
    np.testing.assert_array_equal(state["learner/theta"], policy.learner.theta)


KILL_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from controller.checkpoint import save_checkpoint
    from policies.nac_linear import nac_linear  # not the registry: spares the child a torch import

    path, kill_at = sys.argv[1], sys.argv[2]
    policy = nac_linear(seed=1)
    save_checkpoint(path, policy, tick=1, time_s=10.0)
    policy.learner.core.theta = policy.learner.core.theta + 1.0

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(os, kill_at, die)
    save_checkpoint(path, policy, tick=2, time_s=20.0)
    print("the second save finished, which it must not")
    """
)


@pytest.mark.parametrize("kill_at", ["fsync", "replace"], ids=["killed-before-fsync", "killed-before-rename"])
def test_a_process_killed_during_a_save_leaves_the_previous_checkpoint_intact(
    kill_at: str, tmp_path: Path
) -> None:
    script = tmp_path / "child.py"
    script.write_text(KILL_CHILD)
    path = tmp_path / "p.ckpt.npz"
    result = subprocess.run(
        [sys.executable, str(script), str(path), kill_at],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert "must not" not in result.stdout

    header, state = read_checkpoint(path)
    assert header["tick"] == 1
    assert not np.any(state["learner/theta"])
    policy = make("nac-linear", seed=1)
    load_checkpoint(path, policy)

    # The torn temporary is left behind by the kill; the next save removes it.
    assert list(tmp_path.glob(".p.ckpt.npz.tmp-*"))
    save_checkpoint(path, policy, tick=3, time_s=30.0)
    assert not list(tmp_path.glob(".p.ckpt.npz.tmp-*"))
    assert read_checkpoint(path)[0]["tick"] == 3


def test_a_failure_between_write_and_rename_keeps_the_old_file_and_removes_the_temporary(
    tmp_path, monkeypatch
) -> None:
    policy = make("nac-linear", seed=1, mode="kl")
    path = save_checkpoint(tmp_path / "p.npz", policy, tick=1, time_s=10.0)

    def refuse(src, dst):
        raise OSError("disk full (injected)")

    monkeypatch.setattr("controller.checkpoint.os.replace", refuse)
    with pytest.raises(OSError, match="injected"):
        save_checkpoint(path, policy, tick=2, time_s=20.0)
    assert read_checkpoint(path)[0]["tick"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]


REFUSALS = [
    (
        ("nac-linear", {"mu_bins": 10}),
        ("nac-linear", {"mu_bins": 12}),
        ["mu_bins: checkpoint 10, this policy 12", "state_dim: checkpoint 21, this policy 23"],
    ),
    (("nac-nn", {"hidden": 64}), ("nac-nn", {"hidden": 32}), ["hidden: checkpoint 64, this policy 32"]),
    (
        ("nac-linear", {"mode": "kl"}),
        ("nac-linear", {"mode": "natural"}),
        ["learner: checkpoint 'linear-kl', this policy 'linear-natural'"],
    ),
    (("nac-linear", {}), ("nac-nn", {}), ["policy: checkpoint 'nac-linear', this policy 'nac-nn'"]),
]


@pytest.mark.parametrize(
    ("saved", "target", "messages"),
    REFUSALS,
    ids=["feature-dimension", "network-size", "learner-mode", "other-policy"],
)
def test_a_checkpoint_of_different_shapes_is_refused_naming_what_differs(
    saved, target, messages, tmp_path
) -> None:
    source = make(saved[0], seed=1, **saved[1])
    drive(source, range(1, 3))
    path = save_checkpoint(tmp_path / "c.npz", source, tick=2, time_s=20.0)
    policy = make(target[0], seed=2, **target[1])
    before = {
        k: (v.detach().numpy().copy() if hasattr(v, "detach") else np.array(v, copy=True))
        for k, v in policy.state_dict().items()
        if hasattr(v, "shape")
    }
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path, policy)
    for message in messages:
        assert message in str(refused.value)
    after = policy.state_dict()
    for key, value in before.items():
        now = after[key].detach().numpy() if hasattr(after[key], "detach") else after[key]
        np.testing.assert_array_equal(now, value, err_msg=f"{key} changed by a refused load")


def rewrite_header(path: Path, **changes) -> None:
    with np.load(path, allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    header = json.loads(entries["__header__"].tobytes())
    header.update(changes)
    entries["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez(handle, **entries)


def test_a_checkpoint_of_another_format_version_is_refused(tmp_path: Path) -> None:
    policy = make("nac-linear", seed=1)
    path = save_checkpoint(tmp_path / "c.npz", policy, tick=1, time_s=10.0)
    rewrite_header(path, format_version=FORMAT_VERSION + 1, mfrm_version="9.9.9")
    with pytest.raises(
        CheckpointError,
        match=rf"format version {FORMAT_VERSION + 1}.*mfrm 9.9.9.*reads format version {FORMAT_VERSION}",
    ):
        load_checkpoint(path, policy)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a zip at all", "not a readable mfrm checkpoint: not a numpy .npz archive"), (None, "does not exist")],
    ids=["garbage-file", "missing-file"],
)
def test_a_file_that_is_not_a_checkpoint_is_refused_clearly(content, message, tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as refused:
        load_checkpoint(path, make("nac-linear"))
    assert "pickle" not in str(refused.value) and "\n" not in str(refused.value)


def test_a_checkpoint_path_that_is_a_directory_is_one_clear_line(tmp_path: Path) -> None:
    folder = tmp_path / "c.npz"
    folder.mkdir()
    with pytest.raises(CheckpointError, match=r"c\.npz is a directory, not a checkpoint file$"):
        load_checkpoint(folder, make("nac-linear"))


def test_an_archive_holding_pickled_objects_is_refused_without_suggesting_to_unpickle_it(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    np.savez(path, __header__=np.frombuffer(b"{}", dtype=np.uint8), evil=np.array([{"run": "code"}], dtype=object))
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path, make("nac-linear"))
    assert "pickled objects, which are never loaded" in str(refused.value)
    assert "allow_pickle" not in str(refused.value)


def _saved(tmp_path: Path) -> Path:
    policy = make("nac-linear", seed=1, mode="kl")
    drive(policy, range(1, 3))
    return save_checkpoint(tmp_path / "c.npz", policy, tick=2, time_s=20.0)


def rewrite_entries(path: Path, **entries_changed) -> None:
    with np.load(path, allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    entries.update(entries_changed)
    with open(path, "wb") as handle:
        np.savez(handle, **entries)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "minus-inf"])
def test_weights_that_are_not_finite_are_refused_naming_the_array_and_the_first_bad_index(bad, tmp_path: Path) -> None:
    path = _saved(tmp_path)
    _, state = read_checkpoint(path)
    theta = np.array(state["learner/theta"], copy=True)
    theta[3, 7] = theta[5, 1] = bad
    rewrite_entries(path, **{"learner/theta": theta})
    policy = make("nac-linear", seed=2, mode="kl")
    before = np.array(policy.learner.theta, copy=True)
    with pytest.raises(CheckpointError, match=rf"array learner/theta holds {bad} at index \[3, 7\]"):
        load_checkpoint(path, policy)
    np.testing.assert_array_equal(policy.learner.theta, before)


def test_an_unknown_value_in_a_pending_observation_loads_but_an_infinity_does_not(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    _, state = read_checkpoint(path)
    load = np.array(state["pending/load"], copy=True)
    load[0] = np.nan  # a function without data that tick: its smoothed load is unknown
    rewrite_entries(path, **{"pending/load": load})
    load_checkpoint(path, make("nac-linear", seed=2, mode="kl"))
    load[0] = np.inf
    rewrite_entries(path, **{"pending/load": load})
    with pytest.raises(CheckpointError, match=r"array pending/load holds inf at index \[0\]"):
        load_checkpoint(path, make("nac-linear", seed=2, mode="kl"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tick": -3}, "tick=-3 is not a count of ticks"),
        ({"tick": 2.5}, "tick=2.5 is not a count of ticks"),
        ({"tick": "2"}, "tick='2' is not a count of ticks"),
        ({"time_s": float("nan")}, "time_s=nan is not a finite number"),
        ({"values": []}, "malformed header: values is a list, not an object"),
        ({"arrays": None}, "malformed header: arrays is missing, not an object"),
        ({"signature": "linear"}, "malformed header: signature is a str, not an object"),
    ],
    ids=["negative-tick", "fractional-tick", "tick-as-text", "nan-time", "values-a-list", "arrays-missing",
         "signature-a-string"],
)
def test_a_header_that_no_save_could_write_is_refused_in_one_line(changes, message, tmp_path: Path) -> None:
    path = _saved(tmp_path)
    rewrite_header(path, **changes)
    with pytest.raises(CheckpointError, match=re.escape(message)) as refused:
        load_checkpoint(path, make("nac-linear", seed=2, mode="kl"))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"not json", "malformed header: not UTF-8 JSON"),
        (b"\xff\xfe", "malformed header: not UTF-8 JSON"),
        (b"[1, 2]", "malformed header: a JSON list, not an object"),
    ],
    ids=["not-json", "not-utf8", "a-list"],
)
def test_a_header_that_is_not_a_json_object_is_refused_in_one_line(header, message, tmp_path: Path) -> None:
    path = _saved(tmp_path)
    rewrite_entries(path, __header__=np.frombuffer(header, dtype=np.uint8))
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_checkpoint(path, make("nac-linear", seed=2, mode="kl"))


def test_a_header_stored_as_other_numbers_than_bytes_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    rewrite_entries(path, __header__=np.zeros(4))
    with pytest.raises(CheckpointError, match="malformed header: __header__ is a float64 array"):
        load_checkpoint(path, make("nac-linear", seed=2, mode="kl"))


def test_an_array_that_disagrees_with_the_header_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    rewrite_entries(path, **{"learner/theta": np.zeros((2, 2))})
    with pytest.raises(CheckpointError, match=r"array learner/theta has shape \(2, 2\), the header says \[9, 21\]"):
        load_checkpoint(path, make("nac-linear", seed=2, mode="kl"))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("learner/updates", -3, "value learner/updates=-3 is not a count"),
        ("learner/updates", 3.5, "value learner/updates=3.5 is not a count"),
        ("agent/reward_batches", "7", "value agent/reward_batches='7' is not a count"),
        ("learner/kl_coef", float("nan"), "value learner/kl_coef=nan is not a finite number"),
        ("agent/reward_mean", float("inf"), "value agent/reward_mean=inf is not a finite number"),
    ],
    ids=["negative-counter", "fractional-counter", "counter-as-text", "nan-coefficient", "infinite-mean"],
)
def test_counters_that_are_not_counts_and_values_that_are_not_finite_are_refused(key, value, message, tmp_path) -> None:
    path = _saved(tmp_path)
    header, _ = read_checkpoint(path)
    values = dict(header["values"], **{key: value})
    rewrite_header(path, values=values)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_checkpoint(path, make("nac-linear", seed=2, mode="kl"))


def test_a_generator_state_with_a_negative_integer_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    header, _ = read_checkpoint(path)
    rng = json.loads(json.dumps(header["values"]["agent/rng"]))
    rng["state"]["inc"] = -1
    rewrite_header(path, values=dict(header["values"], **{"agent/rng": rng}))
    with pytest.raises(CheckpointError, match=re.escape("value agent/rng.state.inc=-1 is not a count")):
        load_checkpoint(path, make("nac-linear", seed=2, mode="kl"))


def test_the_stored_checkpoints_of_every_learner_pass_the_checks() -> None:
    for path in sorted((ROOT / "tests" / "policies" / "data").glob("*.ckpt.npz")):
        header, _ = read_checkpoint(path)
        assert header["tick"] >= 0, path


def test_changed_hyperparameters_are_reported_but_do_not_block_fine_tuning(tmp_path: Path) -> None:
    path = save_checkpoint(
        tmp_path / "c.npz", make("nac-linear", mode="kl", learning_rate=3e-4), tick=1, time_s=10.0
    )
    loaded = load_checkpoint(path, make("nac-linear", mode="kl", learning_rate=1e-4))
    assert loaded.settings_differences == ("learner.learning_rate: checkpoint 0.0003, this policy 0.0001",)


def test_a_pending_decision_is_not_paired_with_a_tick_of_other_functions(tmp_path: Path) -> None:
    original = make("nac-linear", seed=3, mode="kl")
    drive(original, range(1, 3))
    path = save_checkpoint(tmp_path / "c.npz", original, tick=2, time_s=20.0)
    resumed = make("nac-linear", seed=3, mode="kl")
    load_checkpoint(path, resumed)
    other = make_snapshot(tuple(f"g{i}" for i in range(N)), time_s=30.0)
    resumed.decide(other, MU)
    assert resumed.feedback(other, MU, np.full(N, 0.5)) == {"transitions": 0.0}


def test_the_checkpointer_names_its_file_after_the_policy_and_counts_ticks_across_runs(tmp_path: Path) -> None:
    saved: list[tuple[Path, int]] = []
    checkpointer = Checkpointer.in_directory(tmp_path / "ckpt", "nac-linear", tick_offset=100,
                                             on_save=lambda path, tick: saved.append((path, tick)))
    learner = make("nac-linear", seed=4)
    path = checkpointer.save(learner, tick=10, now=100.0)
    assert path == tmp_path / "ckpt" / "nac-linear.ckpt.npz"
    assert saved == [(path, 110)]
    assert checkpointer.saved == 1 and checkpointer.last_tick == 110
    fresh = Checkpointer(path)
    assert fresh.load(make("nac-linear")).header["tick"] == 110
    assert fresh.last_tick == 110


def test_a_checkpoint_of_an_earlier_driver_version_is_refused_naming_the_version(tmp_path, monkeypatch) -> None:
    # Version 1 had no reward centre in its state, version 2 moved pools without the staffing
    # band (its policy learned for other moves); loading either must be refused, not fail on a key.
    import policies.agent as driver_module

    old = make("nac-linear", seed=1)
    current = driver_module.STATE_VERSION
    for version in range(1, current):
        monkeypatch.setattr(driver_module, "STATE_VERSION", version)
        path = save_checkpoint(tmp_path / f"v{version}.npz", old, tick=1, time_s=10.0)
        monkeypatch.undo()
        with pytest.raises(CheckpointError, match=f"state_version: checkpoint {version}, this policy {current}"):
            load_checkpoint(path, make("nac-linear", seed=1))
