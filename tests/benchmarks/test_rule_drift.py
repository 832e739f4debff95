"""rule_drift.py: how far a twins-started learner's θ moved from the rule, read from its checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from controller.checkpoint import Checkpointer
from policies.agent import AgentStep
from policies.registry import make
from benchmark_scripts import ROOT, load, script

SCRIPT = script("rule_drift")
drift = load("rule_drift")

TWINS = {"scheme": "portfolio", "warm_start": "twins", "twin_features": True, "histogram_member": True,
         "policy_lr": 0.1}


def with_batch(policy, rows: int, distinct: bool = True, seed: int = 0):
    """``policy`` holding one tick's batch of ``rows`` states (as a checkpoint taken mid-run holds it):
    the bias entry as the agent sets it, the other entries drawn in [0, 0.2], or one state repeated."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.2, size=(rows if distinct else 1, policy.learner.state_dim))
    x = np.repeat(x, 1 if distinct else rows, axis=0)
    x[:, 0] = policy._bias_entry()
    probs = policy.learner.probabilities(x)
    policy._latest = AgentStep(0.0, tuple(f"f{i}" for i in range(rows)), x, np.ones(rows, dtype=bool),
                               probs.argmax(axis=1), probs)
    return policy


def saved(policy, path: Path, record: bool = True, alpha: float | None = None) -> Path:
    """``policy`` checkpointed at ``path`` with the run record training writes beside it (its reward's α
    with ``alpha``)."""
    Checkpointer(path).save(policy, 0, 0.0)
    if record:
        run = {"policy_settings": policy.settings_record}
        if alpha is not None:
            run["settings"] = {"reward": {"alpha": alpha}}
        Path(str(path).removesuffix(".npz") + ".run.json").write_text(json.dumps(run))
    return path


def test_a_fresh_learner_is_the_rule_itself(tmp_path: Path) -> None:
    result = drift.drift(saved(make("nac-linear", **TWINS), tmp_path / "fresh.ckpt.npz"))
    assert result.updates == 0
    assert result.sharpness == pytest.approx(1.0)
    assert result.decay == pytest.approx(1.0)
    assert all(value == pytest.approx(0.0, abs=1e-12) for value in result.moved.values())


def test_sharpness_decay_and_evidence_are_read_from_theta_and_w(tmp_path: Path) -> None:
    policy = make("nac-linear", **TWINS)
    core = policy.learner.core
    groups = drift.column_groups(policy)
    theta = core.theta.reshape(policy.learner.n_actions, policy.learner.state_dim)
    start = theta.copy()
    theta[:, groups["twins"]] *= 0.5
    theta[:, groups["local"].start] += 3.0
    core.w_hat = 0.25 * core.hp.entropy_reg * start.reshape(-1)
    core.updates = 100
    result = drift.drift(saved(policy, tmp_path / "moved.ckpt.npz"))
    assert result.sharpness == pytest.approx(0.5)
    assert result.settles_at == pytest.approx(0.25)
    assert result.decay == pytest.approx((1 - 0.1 * core.hp.entropy_reg) ** 100)
    assert result.moved["local"] == pytest.approx(3.0 * np.sqrt(policy.learner.n_actions))
    assert result.moved["mu"] == pytest.approx(0.0)
    assert result.moved["twins"] == pytest.approx(0.5 * np.linalg.norm(start[:, groups["twins"]]))


def test_a_batch_of_many_distinct_states_carries_the_rule_and_one_state_repeated_does_not(tmp_path: Path) -> None:
    many = drift.drift(saved(with_batch(make("nac-linear", **TWINS), 4000), tmp_path / "many.ckpt.npz"))
    one = drift.drift(saved(with_batch(make("nac-linear", **TWINS), 100, distinct=False), tmp_path / "one.ckpt.npz"))
    assert many.shift_kept > 0.75  # the Fisher ridge keeps a little back even here
    assert abs(one.shift_kept) < 0.05
    # Untrained: the policy's mass per level is where it started, and sums to 1.
    np.testing.assert_allclose(many.end_mass, many.start_mass)
    assert many.start_mass.sum() == pytest.approx(1.0)


def test_the_twins_block_is_the_last_entries_one_per_level() -> None:
    policy = make("nac-linear", **TWINS)
    groups = drift.column_groups(policy)
    assert groups["twins"].stop == policy.learner.state_dim
    assert groups["twins"].stop - groups["twins"].start == len(policy.agent.levels)
    mask = drift.rule_mask(policy)
    assert mask.sum(axis=0).tolist() == [2] * len(policy.agent.levels)  # one action per share factor
    assert mask.sum(axis=1).tolist() == [1] * policy.learner.n_actions


def test_checkpoints_it_cannot_read_are_refused_in_one_line(tmp_path: Path) -> None:
    bare = saved(make("nac-linear", **TWINS), tmp_path / "bare.ckpt.npz", record=False)
    other = saved(make("nac-linear", **{**TWINS, "warm_start": "ensure", "twin_features": False}),
                  tmp_path / "ensure" / "other.ckpt.npz")
    for path, words in ((bare, "no bare.ckpt.run.json beside it"), (other, "did not start as the twins' rule"),
                        (tmp_path / "missing", "no such file or folder")):
        done = subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode != 0
        assert words in done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_folder_prints_one_row_of_means(tmp_path: Path) -> None:
    for seed in range(2):
        saved(make("nac-linear", **TWINS, seed=seed), tmp_path / "scenario" / f"s{seed}.ckpt.npz")
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(f"| {tmp_path}")]
    assert len(rows) == 1 and "| 2 | 0 | 1.000 | 1.000 |" in rows[0]
    assert "nan" in rows[0]  # saved before a tick: no batch to read what it carries from


def test_levels_prints_each_levels_mass_before_and_after(tmp_path: Path) -> None:
    policy = with_batch(make("nac-linear", **TWINS), 50)
    saved(policy, tmp_path / "scenario" / "a.ckpt.npz", alpha=0.3)
    saved(policy, tmp_path / "scenario" / "b.ckpt.npz", alpha=0.7)
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--levels"], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if line.startswith("| checkpoints | α |"))
    assert header.count("|") == len(policy.agent.levels) + 3
    rows = [line for line in done.stdout.splitlines() if line.startswith(f"| {tmp_path}") and "→" in line]
    assert [row.split("|")[2].strip() for row in rows] == ["0.3", "0.7"]  # one row per α
    assert all(row.count("→") == len(policy.agent.levels) for row in rows)


def test_critic_reads_each_levels_advantage_and_who_ranks_it_first(tmp_path: Path) -> None:
    policy = with_batch(make("nac-linear", **TWINS), 200)
    levels = policy.agent.levels
    mask = drift.rule_mask(policy)
    psi = policy.learner.core.psi_bar.reshape(policy.learner.n_actions, policy.learner.state_dim)
    psi[mask[:, 2], 0] = 2.0 / policy._bias_entry()  # level 2's actions: q̂ higher by 2 in every state
    result = drift.drift(saved(policy, tmp_path / "scenario" / "a.ckpt.npz", alpha=0.5))
    expected = np.where(np.arange(len(levels)) == 2, 2.0, 0.0) - 2.0 / len(levels)
    np.testing.assert_allclose(result.critic_advantage, expected, atol=1e-9)
    np.testing.assert_allclose(result.critic_bias_part, expected, atol=1e-9)
    assert result.critic_first[2] == 1.0
    x = policy._latest.x
    twins = drift.column_groups(policy)["twins"]
    np.testing.assert_allclose(result.twins_first, np.bincount(x[:, twins].argmin(axis=1), minlength=len(levels)) / 200)
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--critic"], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines()
            if line.startswith(f"| {tmp_path}") and line.count(" / ") == len(levels)]
    assert len(rows) == 1 and rows[0].split("|")[2].strip() == "0.5"
    assert rows[0].split("|")[5].strip() == f"1.00 / {result.twins_first[2]:.2f}"

    state_critic = with_batch(make("nac-linear", **TWINS, state_critic=True), 20)
    assert np.all(np.isnan(drift.drift(saved(state_critic, tmp_path / "sc.ckpt.npz")).critic_advantage))
