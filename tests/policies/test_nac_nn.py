"""NAC-NN: seeded runs repeat exactly, updates report the standard diagnostics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_snapshot

from policies.nac_nn import NetworkSettings, nac_nn

MU = np.full(10, 0.1)
N = 24


def snapshot(t: int):
    rng = np.random.default_rng(t)
    names = tuple(f"f{i}" for i in range(N))
    return make_snapshot(
        names,
        time_s=10.0 * t,
        arrivals=rng.poisson(30, N).astype(float),
        completions=rng.poisson(30, N).astype(float),
        p99_latency_s=rng.uniform(0.2, 3.0, N),
        containers=rng.integers(0, 6, N).astype(float),
        cpu_shares=rng.choice([0.0, 256.0, 512.0], N),
        cpu_used_core_s=rng.uniform(0, 10, N),
        cpu_alloc_core_s=np.full(N, 10.0),
    )


def run(seed: int, ticks: int = 4, **params):
    """Actions of every tick and the last diagnostics of a policy driven over the same snapshots."""
    policy = nac_nn(seed=seed, **params)
    rewards = np.full(N, np.nan)
    actions, diagnostics = [], {}
    for t in range(1, ticks + 1):
        snap = snapshot(t)
        decisions = policy.decide(snap, MU)
        diagnostics = policy.feedback(snap, MU, rewards)
        actions.append(decisions.action.copy())
        rewards = np.random.default_rng(100 + t).uniform(0, 1, N)
    return policy, np.array(actions), diagnostics


def test_two_runs_with_the_same_seed_are_identical_to_the_bit() -> None:
    first, actions_1, diag_1 = run(seed=7)
    second, actions_2, diag_2 = run(seed=7)
    np.testing.assert_array_equal(actions_1, actions_2)
    assert diag_1 == diag_2
    state_1, state_2 = first.state_dict(), second.state_dict()
    for key, value in state_1.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, state_2[key]), key
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, state_2[key], err_msg=key)
        else:
            assert value == state_2[key], key


def test_a_different_seed_gives_different_weights_and_actions() -> None:
    first, actions_1, _ = run(seed=7, ticks=2)
    second, actions_2, _ = run(seed=8, ticks=2)
    assert not torch.equal(
        first.state_dict()["learner/actor.0.weight"], second.state_dict()["learner/actor.0.weight"]
    )
    assert not np.array_equal(actions_1, actions_2)


def test_building_a_policy_leaves_the_global_torch_generator_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    nac_nn(seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_every_update_reports_the_standard_diagnostics() -> None:
    _, _, diagnostics = run(seed=1, ticks=3)
    for key in (
        "losses/critic",
        "losses/actor",
        "approx_kl",
        "entropy",
        "explained_variance",
        "mean_reward",
        "kl_coef",
    ):
        assert math.isfinite(diagnostics[key]), key
    assert diagnostics["transitions"] == N
    assert 0.0 <= diagnostics["entropy"] <= math.log(9) + 1e-6
    assert diagnostics["approx_kl"] >= 0.0


def test_the_networks_have_one_hidden_layer_of_the_configured_width() -> None:
    policy = nac_nn(hidden=32)
    shapes = {k: tuple(v.shape) for k, v in policy.state_dict().items() if k.endswith("weight")}
    assert shapes == {
        "learner/actor.0.weight": (32, 21),
        "learner/actor.2.weight": (9, 32),
        "learner/critic.0.weight": (32, 21),
        "learner/critic.2.weight": (9, 32),
    }
    assert nac_nn().state_dict()["learner/actor.0.weight"].shape == (64, 21)


def test_the_initial_policy_is_nearly_uniform_like_theta_zero() -> None:
    policy = nac_nn(seed=0)
    x = np.random.default_rng(0).random((100, 21)) / np.sqrt(12)
    probs = policy.learner.probabilities(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs, 1 / 9, atol=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden": 0}, "hidden=0"),
        ({"activation": "gelu"}, "activation='gelu'"),
        ({"threads": 0}, "threads=0"),
    ],
    ids=["no-hidden-units", "unknown-activation", "no-threads"],
)
def test_invalid_network_settings_are_rejected_naming_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NetworkSettings(**kwargs)


@pytest.mark.parametrize("max_norm", [1e-3, 1e3], ids=["clipping", "not-clipping"])
def test_the_learners_step_is_torchs_clip_and_adam_to_the_bit(max_norm: float) -> None:
    from policies.nac_nn import _clipped_adam_step, _drop_grads

    def build() -> tuple[torch.nn.Module, torch.optim.Adam]:
        torch.manual_seed(4)
        net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3),
                                  torch.nn.Linear(3, 3))
        return net, torch.optim.Adam(net.parameters(), lr=1e-2, foreach=True)

    ours, ours_opt = build()
    theirs, theirs_opt = build()
    x = torch.randn(64, 5)
    for step in range(6):
        # The last layer gets no gradient on the first steps: its Adam state is created later, on its first.
        for net, opt in ((ours, ours_opt), (theirs, theirs_opt)):
            out = net[2](net[1](net[0](x)))
            loss = out.pow(2).mean() + (net[3](out).pow(3).mean() if step >= 3 else 0.0)
            _drop_grads(opt) if net is ours else opt.zero_grad()
            loss.backward()
            if net is ours:
                _clipped_adam_step(opt, max_norm)
            else:
                torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)
                opt.step()
    assert ours[3].weight.grad is not None  # the late layer did learn
    for mine, theirs_param in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(mine, theirs_param)
        assert torch.equal(mine.grad, theirs_param.grad)
    for mine, theirs_param in zip(ours.parameters(), theirs.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(ours_opt.state[mine][key], theirs_opt.state[theirs_param][key])
    # The comparison is not of two networks standing still.
    assert not torch.equal(ours[0].weight, build()[0][0].weight)
