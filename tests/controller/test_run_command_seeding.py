"""``mfrm run`` builds its policy through the same assembly as every command: seeded from ``seed``."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FakeBackend, make_snapshot

import controller.commands.run as run_module
from controller.assemble import RunSeeds
from controller.estimator import PopulationEstimator
from controller.loop import ControlLoop


class _Built(Exception):
    """Stops the command once its policy and backend are built."""


def _policy_of(monkeypatch, tmp_path, seed: int):
    """The policy ``mfrm run --once --set policy.name=nac-linear --set seed=SEED`` would run."""
    captured = {}

    def build_daemon(settings, *, backend, policy, registry, clock, watcher=None):
        captured["policy"] = policy
        raise _Built

    monkeypatch.setattr(run_module, "build_daemon", build_daemon)
    monkeypatch.setattr(run_module, "build_backend", lambda settings: FakeBackend())
    result = CliRunner().invoke(run_module.run_command, [
        "--once", "--set", "policy.name=nac-linear", "--set", f"seed={seed}",
        "--set", f"output.out_dir={tmp_path}"])
    assert isinstance(result.exception, _Built), result.output
    return captured["policy"]


def _busy(now: float):
    n = 40
    rng = np.random.default_rng(1)
    return make_snapshot(tuple(f"f{i}" for i in range(n)), time_s=now,
                         arrivals=rng.poisson(30, n).astype(float), completions=rng.poisson(30, n).astype(float),
                         containers=np.full(n, 4.0), busy_containers=np.full(n, 3.0), cpu_shares=np.full(n, 512.0),
                         mean_exec_s=np.full(n, 0.5), recent_exec_s=np.full(n, 0.5), p99_latency_s=np.full(n, 0.8),
                         cpu_used_core_s=np.full(n, 10.0), cpu_alloc_core_s=np.full(n, 20.0))


def _two_ticks(policy) -> list[np.ndarray]:
    loop = ControlLoop(backend=FakeBackend(snapshots=_busy), policy=policy, estimator=PopulationEstimator(bins=10))
    return [loop.step(10.0).decisions.action, loop.step(20.0).decisions.action]


@pytest.mark.parametrize("seed", [0, 7])
def test_mfrm_run_seeds_its_learner_from_the_settings_seed(monkeypatch, tmp_path, seed):
    policy = _policy_of(monkeypatch, tmp_path, seed)
    assert policy.seed == RunSeeds.from_seed(seed).policy_seed("nac-linear")


def test_two_seeds_give_different_learner_decisions_on_the_same_cluster(monkeypatch, tmp_path):
    zero = _two_ticks(_policy_of(monkeypatch, tmp_path, 0))
    seven = _two_ticks(_policy_of(monkeypatch, tmp_path / "7", 7))
    again = _two_ticks(_policy_of(monkeypatch, tmp_path / "0b", 0))
    assert any(not np.array_equal(a, b) for a, b in zip(zero, seven))
    assert all(np.array_equal(a, b) for a, b in zip(zero, again))  # and one seed gives the same ones
