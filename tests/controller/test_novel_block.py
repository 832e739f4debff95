"""The two-block state: functions the fit was made on and every other function keep separate weights."""

from __future__ import annotations

import numpy as np
import pytest

from controller.assemble import PolicySpec, RunSeeds, build_policy, build_workload, measure_slos
from controller.checkpoint import load_checkpoint, save_checkpoint
from controller.settings import load_settings
from controller.warm_fit import fit_warm_start, plays_key
from policies.agent import AgentSettings
from policies.imitation import fit_linear_policy

TINY = {"workload.functions": 4, "workload.minutes": 2, "reward.slo_probe_invocations": 200, "output.plots": False,
        "reward.kind": "operator"}
BLOCKED = {"scheme": "portfolio", "warm_start": "fitted", "novel_block": True}


def _settings(params, **extra):
    return load_settings(overrides={**TINY, "policy.params": {"nac-linear": params}, **extra})


def _fitted(params=BLOCKED, cache=None):
    settings = _settings(params)
    workload = build_workload(settings)
    policy = build_policy(settings, PolicySpec("nac-linear"))
    fit_warm_start(settings, "nac-linear", policy, workload, measure_slos(settings, workload),
                   RunSeeds.from_seed(settings.seed), cache=cache)
    return settings, workload, policy


def test_the_state_doubles_and_only_the_block_that_applies_is_filled():
    settings = _settings(BLOCKED)
    policy = build_policy(settings, PolicySpec("nac-linear"))
    agent = policy.agent
    assert agent.state_dim(policy.features) == 2 * agent.base_state_dim(policy.features)
    assert policy.learner.state_dim == agent.state_dim(policy.features)

    class _Functions:
        names = ("a", "b", "c")

    # Before a fit every function uses the first block; after it, only the functions it was made on.
    assert not policy._novel_rows(_Functions.names).any()
    policy.know(["a", "c"])
    assert policy._novel_rows(_Functions.names).tolist() == [False, True, False]


def test_the_fit_marks_the_training_functions_known_and_fits_the_second_block_more_weakly(tmp_path):
    settings, workload, policy = _fitted(cache=tmp_path)
    assert policy.known and policy.known <= set(workload.names)
    d = policy.agent.base_state_dim(policy.features)
    theta = policy.learner.core.theta.reshape(policy.agent.n_actions, 2 * d)
    known, novel = theta[:, :d], theta[:, d:]
    assert np.abs(known).sum() > 0 and np.abs(novel).sum() > 0
    # The same labels, two penalties: the blocks differ (0.001 against 0.1 on the same rows).
    assert not np.allclose(known, novel)
    # A single-block policy fitted on the same plays (kept in the cache under the same key) has the
    # first block's weights: the split changes nothing for the functions the fit was made on.
    single_settings = _settings({k: v for k, v in BLOCKED.items() if k != "novel_block"})
    assert plays_key(single_settings, "nac-linear", RunSeeds.from_seed(0)) == plays_key(
        settings, "nac-linear", RunSeeds.from_seed(0))
    _, _, single = _fitted({k: v for k, v in BLOCKED.items() if k != "novel_block"}, cache=tmp_path)
    single_theta = single.learner.core.theta.reshape(policy.agent.n_actions, d)
    assert np.allclose(single_theta, known)


def test_a_known_function_is_decided_by_the_first_block_and_a_new_one_by_the_second(tmp_path):
    _, _, policy = _fitted(cache=tmp_path)
    d = policy.agent.base_state_dim(policy.features)
    theta = policy.learner.core.theta.reshape(policy.agent.n_actions, 2 * d)
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, size=(5, d)) / np.sqrt(d)
    first = np.hstack([x, np.zeros_like(x)])
    second = np.hstack([np.zeros_like(x), x])
    assert np.allclose(np.log(policy.learner.probabilities(first)).argmax(1), (x @ theta[:, :d].T).argmax(1))
    assert np.allclose(np.log(policy.learner.probabilities(second)).argmax(1), (x @ theta[:, d:].T).argmax(1))


def test_the_known_functions_travel_with_the_checkpoint(tmp_path):
    settings, _, policy = _fitted(cache=tmp_path)
    path = tmp_path / "blocked.ckpt.npz"
    save_checkpoint(path, policy, tick=1, time_s=10.0)
    fresh = build_policy(settings, PolicySpec("nac-linear"))
    assert not fresh.known
    load_checkpoint(path, fresh)
    assert fresh.known == policy.known
    single = build_policy(_settings({k: v for k, v in BLOCKED.items() if k != "novel_block"}), PolicySpec("nac-linear"))
    with pytest.raises(Exception, match="state_dim"):
        load_checkpoint(path, single)


def test_the_second_block_is_fitted_more_weakly_then_sharpened_to_the_labels_and_the_first_is_not():
    from policies.imitation import likeliest_temperature

    settings = _settings(BLOCKED)
    policy = build_policy(settings, PolicySpec("nac-linear"))
    d = policy.agent.base_state_dim(policy.features)
    a = policy.agent.n_actions
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(600, d)) / np.sqrt(d)
    labels = np.where(x[:, 1] > x[:, 2], 0, 3).astype(np.int64)
    policy._imitate_blocks(x, labels)
    zeros = np.zeros_like(x)

    def log_probs(block):
        placed = np.hstack([x, zeros]) if block == 0 else np.hstack([zeros, x])
        return np.log(np.clip(policy.learner.probabilities(placed), 1e-300, None))

    # The second block's firmness is already the likeliest: fitting it again changes nothing.
    assert likeliest_temperature(log_probs(1), labels) == pytest.approx(1.0, abs=1e-3)
    # Its penalty (0.1) is the stronger: unsharpened, the same fit would be less sure of the labels.
    weak, _ = fit_linear_policy(x, labels, a, np.random.default_rng(1), l2=policy.learner.novel_fit_l2)
    z = x @ weak.T
    unsharpened = (z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True))
    assert log_probs(1)[np.arange(600), labels].mean() > unsharpened[np.arange(600), labels].mean()
    # Without fit_temperature the first block is the plain fit: a different firmness than the likeliest.
    assert likeliest_temperature(log_probs(0), labels) != pytest.approx(1.0, abs=1e-3)
    assert policy.agent.novel_fit_l2 is None and policy.learner.novel_fit_l2 == 0.1


@pytest.mark.parametrize("params, message", [
    ({"scheme": "portfolio", "novel_block": True}, "warm_start=fitted"),
    ({**BLOCKED, "fit_target": "cost"}, "fit_target=label"),
    ({**BLOCKED, "novel_fit_l2": -1.0}, "novel_fit_l2"),
    ({**BLOCKED, "novel_fit_l2": True}, "novel_fit_l2"),
])
def test_bad_two_block_settings_are_refused_naming_the_setting(params, message):
    with pytest.raises(ValueError, match=message):
        AgentSettings(**params)


def test_the_network_learner_keeps_one_actor_per_block_and_its_first_is_a_single_block_learners(tmp_path):
    import torch

    single = build_policy(load_settings(overrides={**TINY, "policy.params": {"nac-nn": {
        k: v for k, v in BLOCKED.items() if k != "novel_block"}}}), PolicySpec("nac-nn"))
    settings = load_settings(overrides={**TINY, "policy.params": {"nac-nn": BLOCKED}})
    blocked = build_policy(settings, PolicySpec("nac-nn"))
    d = single.learner.state_dim
    assert blocked.learner.state_dim == 2 * d and blocked.learner.x_blocks == 2
    first = blocked.learner.actor.nets[0]
    for a, b in zip(first.parameters(), single.learner.actor.parameters(), strict=True):
        assert torch.equal(a, b)
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 0.3, size=(6, d))
    zeros = np.zeros_like(x)
    # A state in the first block is decided by the first network, one in the second by the second.
    assert np.allclose(blocked.learner.probabilities(np.hstack([x, zeros])), single.learner.probabilities(x))
    with torch.no_grad():
        second = torch.softmax(blocked.learner.actor.nets[1](torch.from_numpy(x.astype(np.float32))), dim=1).numpy()
    assert np.allclose(blocked.learner.probabilities(np.hstack([zeros, x])), second, atol=1e-6)
    # Fitted: both blocks move away from uniform, apart; the checkpoint keeps the known functions.
    workload = build_workload(settings)
    fit_warm_start(settings, "nac-nn", blocked, workload, measure_slos(settings, workload),
                   RunSeeds.from_seed(settings.seed), cache=tmp_path)
    assert blocked.known
    p_first = blocked.learner.probabilities(np.hstack([x, zeros]))
    p_second = blocked.learner.probabilities(np.hstack([zeros, x]))
    assert p_first.max() > 2.0 / p_first.shape[1] and not np.allclose(p_first, p_second)
    path = tmp_path / "blocked-nn.ckpt.npz"
    save_checkpoint(path, blocked, tick=1, time_s=10.0)
    fresh = build_policy(settings, PolicySpec("nac-nn"))
    load_checkpoint(path, fresh)
    assert fresh.known == blocked.known
    assert np.allclose(fresh.learner.probabilities(np.hstack([zeros, x])), p_second)


def test_a_network_update_on_known_functions_leaves_the_second_blocks_networks_alone():
    import torch

    from policies.agent import Transitions

    settings = load_settings(overrides={**TINY, "policy.params": {"nac-nn": BLOCKED}})
    policy = build_policy(settings, PolicySpec("nac-nn"))
    d = policy.learner.state_dim // 2
    before = [p.detach().clone() for p in policy.learner.actor.nets[1].parameters()]
    first_before = [p.detach().clone() for p in policy.learner.actor.nets[0].parameters()]
    rng = np.random.default_rng(2)
    n, a = 64, policy.agent.n_actions
    zeros = np.zeros((n, d))
    probs = np.full((n, a), 1.0 / a)
    policy.learner.update(Transitions(
        x=np.hstack([rng.uniform(0, 0.2, (n, d)), zeros]), x_next=np.hstack([rng.uniform(0, 0.2, (n, d)), zeros]),
        action=rng.integers(0, a, n), reward=rng.uniform(0, 1, n), probs=probs, probs_next=probs,
        action_next=rng.integers(0, a, n)))
    assert all(torch.equal(p, q) for p, q in zip(policy.learner.actor.nets[1].parameters(), before, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(policy.learner.actor.nets[0].parameters(), first_before,
                                                     strict=True))


@pytest.mark.parametrize("shared", [False, True], ids=["every-column-varies", "bias-and-mu-shared-per-block"])
def test_the_block_by_block_fisher_solve_equals_the_whole_matrix_solve(shared: bool):
    from policies.nac import FACTOR_MIN_ROWS, KroneckerRows, _block_solve, _FisherPart

    rng = np.random.default_rng(5)
    n, a, size = (4 * FACTOR_MIN_ROWS if shared else 300), 4, 6
    x = rng.normal(size=(n, 2 * size))
    second = rng.random(n) < 0.3
    x[second, :size] = 0.0
    x[~second, size:] = 0.0
    if shared:
        # One tick's bias and μ: the same in every row of a block, so each block's system is factored.
        x[~second, 0], x[~second, 3], x[second, size], x[second, size + 3] = 1.0, 0.4, 1.0, 0.4
        for rows_of_block, part in ((~second, slice(0, size)), (second, slice(size, 2 * size))):
            assert _FisherPart.of(KroneckerRows(rng.normal(size=(int(rows_of_block.sum()), a)),
                                                x[rows_of_block, part]), n).lift is not None
    weights = rng.normal(size=(n, a))
    rows = KroneckerRows(weights, x)
    rhs = rng.normal(size=a * 2 * size)
    fisher = rows.gram() / n
    ridge = 1e-3 * np.trace(fisher) / fisher.shape[0]
    whole = np.linalg.solve(fisher + ridge * np.eye(fisher.shape[0]), rhs)
    assert np.allclose(_block_solve(rows, rhs, n, 2, 1e-3), whole, rtol=1e-9, atol=1e-9)
    # Only the first block filled: the second's system is ρI.
    only_first = KroneckerRows(weights[~second], x[~second])
    m = only_first.shape[0]
    fisher = only_first.gram() / m
    ridge = 1e-3 * np.trace(fisher) / fisher.shape[0]
    whole = np.linalg.solve(fisher + ridge * np.eye(fisher.shape[0]), rhs)
    solved = _block_solve(only_first, rhs, m, 2, 1e-3)
    assert np.allclose(solved, whole, rtol=1e-9, atol=1e-9)
    assert np.allclose(solved.reshape(a, 2, size)[:, 1, :], rhs.reshape(a, 2, size)[:, 1, :] / ridge)
    # A row that fills both blocks: not of that form, the caller solves the whole matrix.
    x[0, :] = 1.0
    assert _block_solve(KroneckerRows(weights, x), rhs, n, 2, 1e-3) is None


def test_a_two_block_learners_update_matches_a_single_block_learner_on_the_functions_it_knows():
    # Every function known: the second block stays as it was and the first learns as a single block does
    # whose Fisher ridge is half as large (ρ is relative to the mean diagonal over twice the coordinates,
    # half of them zero).
    settings = _settings(BLOCKED)
    single_settings = _settings({**{k: v for k, v in BLOCKED.items() if k != "novel_block"}, "fisher_ridge": 5e-4})
    blocked = build_policy(settings, PolicySpec("nac-linear"))
    single = build_policy(single_settings, PolicySpec("nac-linear"))
    d = single.learner.state_dim
    rng = np.random.default_rng(2)
    from policies.agent import Transitions

    n, a = 64, single.agent.n_actions
    x, x_next = rng.uniform(0, 0.2, size=(n, d)), rng.uniform(0, 0.2, size=(n, d))
    probs = np.full((n, a), 1.0 / a)
    batch = {"action": rng.integers(0, a, n), "reward": rng.uniform(0, 1, n), "probs": probs, "probs_next": probs,
             "action_next": rng.integers(0, a, n)}
    zeros = np.zeros_like(x)
    single.learner.update(Transitions(x=x, x_next=x_next, **batch))
    blocked.learner.update(Transitions(x=np.hstack([x, zeros]), x_next=np.hstack([x_next, zeros]), **batch))
    theta_single = single.learner.core.theta.reshape(a, d)
    theta_blocked = blocked.learner.core.theta.reshape(a, 2 * d)
    assert np.allclose(theta_blocked[:, :d], theta_single, rtol=1e-8, atol=1e-10)
    assert np.allclose(theta_blocked[:, d:], 0.0)
    assert np.abs(theta_single).sum() > 0
