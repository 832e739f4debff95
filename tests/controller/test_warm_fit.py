"""A fitted warm start: every pool level played on the training window, the policy fitted to each
function's cheapest level."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from controller.assemble import PolicySpec, RunSeeds, build_policy, build_workload, measure_slos
from controller.settings import load_settings
from controller.training import side_path, train_policy
from controller.warm_fit import fit_warm_start, level_price
from policies.staffing import POOL_LEVELS, action_index

TINY = {"workload.functions": 4, "workload.minutes": 2, "reward.slo_probe_invocations": 200, "output.plots": False,
        "reward.kind": "operator"}


def _settings(**extra):
    return load_settings(overrides={**TINY, **extra})


def test_the_price_of_memory_follows_the_rewards_alpha():
    settings = _settings(**{"reward.alpha": 0.5, "cluster.user_memory_mb": 2048, "loop.tick_s": 10.0})
    # α/(1 − α) · V · 1024 / (M · tick): with V = 20 invocations per function and tick, 1.
    assert level_price(settings, 20.0) == pytest.approx(1.0)
    assert level_price(_settings(**{"reward.alpha": 0.1}), 20.0) < level_price(settings, 20.0)
    assert math.isinf(level_price(_settings(**{"reward.alpha": 1.0}), 20.0))


def test_the_fitted_policy_plays_each_functions_cheapest_level():
    settings = _settings(**{"policy.params": {"nac-linear": {"scheme": "staffing", "warm_start": "fitted"}}})
    workload = build_workload(settings)
    slo_s = measure_slos(settings, workload)
    policy = build_policy(settings, PolicySpec("nac-linear"))
    played = []
    fit = fit_warm_start(settings, "nac-linear", policy, workload, slo_s, RunSeeds.from_seed(settings.seed),
                         on_level=played.append)
    assert played == list(POOL_LEVELS)
    assert sum(fit.labels.values()) == 4 and set(fit.labels) <= set(POOL_LEVELS)
    assert fit.states > 0 and 0.0 <= fit.accuracy <= 1.0 and fit.price > 0
    # The policy is no longer uniform: it prefers the labelled levels (at OpenWhisk's shares).
    x = np.eye(policy.learner.state_dim)[:1] * 0.2
    probs = policy.learner.probabilities(x)
    assert probs.max() > 2.0 / probs.shape[1]
    labelled = {action_index(level, 1.0) for level in fit.labels}
    assert int(np.argmax(probs[0])) in labelled


def test_a_fitted_warm_start_needs_the_operators_reward():
    settings = _settings(**{"reward.kind": "paper", "policy.params": {"nac-linear": {"scheme": "staffing",
                                                                                    "warm_start": "fitted"}}})
    workload = build_workload(settings)
    policy = build_policy(settings, PolicySpec("nac-linear"))
    with pytest.raises(ValueError, match="reward.kind: operator"):
        fit_warm_start(settings, "nac-linear", policy, workload, measure_slos(settings, workload),
                       RunSeeds.from_seed(settings.seed))


def test_training_with_a_fitted_warm_start_fits_first_and_records_the_fit(tmp_path):
    settings = _settings(**{"policy.params": {"nac-linear": {"scheme": "portfolio", "warm_start": "fitted"}}})
    out = tmp_path / "fitted.ckpt.npz"
    train_policy(settings, "nac-linear", out)
    record = json.loads(side_path(out, ".run.json").read_text(encoding="utf-8"))
    fit = record["warm_start_fit"]
    assert fit is not None and sum(fit["labels"].values()) == 4 and fit["states"] > 0
    plain = tmp_path / "plain.ckpt.npz"
    train_policy(_settings(**{"policy.params": {"nac-linear": {"scheme": "portfolio"}}}), "nac-linear", plain)
    assert json.loads(side_path(plain, ".run.json").read_text(encoding="utf-8"))["warm_start_fit"] is None


def test_the_plays_are_kept_and_reused_at_another_alpha_and_by_the_other_learner(tmp_path):
    params = {"scheme": "staffing", "warm_start": "fitted"}
    first = _settings(**{"reward.alpha": 0.3, "policy.params": {"nac-linear": params, "nac-nn": params}})
    workload = build_workload(first)
    slo_s = measure_slos(first, workload)
    seeds = RunSeeds.from_seed(first.seed)
    played = []
    fit = fit_warm_start(first, "nac-linear", build_policy(first, PolicySpec("nac-linear")), workload, slo_s, seeds,
                         on_level=played.append, cache=tmp_path)
    assert len(played) == len(POOL_LEVELS) and len(list(tmp_path.glob("plays-*.npz"))) == 1
    other = _settings(**{"reward.alpha": 0.7, "policy.params": {"nac-linear": params, "nac-nn": params}})
    for name in ("nac-linear", "nac-nn"):
        again = fit_warm_start(other, name, build_policy(other, PolicySpec(name)), workload, slo_s, seeds,
                               on_level=played.append, cache=tmp_path)
        assert again.states == fit.states and again.price > fit.price
    ruled = {**params, "fit_cold_starts": "ensure", "policy_lr": 0.01, "critic_lr": 0.01}
    other = _settings(**{"reward.alpha": 0.3, "policy.params": {"nac-linear": ruled, "nac-nn": params}})
    again = fit_warm_start(other, "nac-linear", build_policy(other, PolicySpec("nac-linear")), workload, slo_s, seeds,
                           on_level=played.append, cache=tmp_path)
    assert again.states == fit.states and again.cold_starts == "ensure"
    # Nothing played again: the cold-start rule only picks among the plays, and a frozen, greedy player
    # never reads the learner's step sizes.
    assert len(played) == len(POOL_LEVELS)
    fit_warm_start(first, "nac-linear", build_policy(first, PolicySpec("nac-linear")), workload, slo_s,
                   RunSeeds.from_seed(first.seed + 1), on_level=played.append, cache=tmp_path)
    assert len(played) == 2 * len(POOL_LEVELS)  # other seeds: other plays


def _two_function_plays():
    """Four levels played for two functions (violations, memory GB-s, cold starts per level and function)."""
    from controller.warm_fit import LevelPlays

    return LevelPlays(levels=("platform", "c=0", "c=1.06", "c=3"),
                      violations=np.array([[1.0, 5.0], [4.0, 1.0], [6.0, 6.0], [2.0, 2.0]]),
                      memory=np.array([[10.0, 10.0], [10.0, 10.0], [30.0, 30.0], [90.0, 90.0]]),
                      cold_starts=np.array([[50.0, 3.0], [40.0, 2.0], [5.0, 2.0], [1.0, 1.0]]),
                      invocations=np.array([100.0, 100.0]), ticks=6, x=np.zeros((0, 3)),
                      function=np.zeros(0, dtype=np.int64))


def test_under_the_ensure_cold_start_rule_no_label_has_more_cold_starts_than_ensures_level():
    from controller.warm_fit import cheapest_levels

    # Function 0: the platform is cheapest but cold-starts more than c=1.06; function 1: c=0 is cheapest
    # and cold-starts no more than c=1.06.
    plays = _two_function_plays()
    assert cheapest_levels(plays, 0.1).tolist() == [0, 1]
    assert cheapest_levels(plays, 0.1, "ensure").tolist() == [2, 1]  # c=3 has fewer cold starts but costs more
    assert cheapest_levels(plays, math.inf, "ensure").tolist() == [2, 1]  # memory alone: the platform is barred
    with pytest.raises(ValueError, match="must be one of free, ensure"):
        cheapest_levels(plays, 0.1, "none")


def test_regrets_are_zero_at_the_cheapest_allowed_level_and_an_excluded_level_costs_more_than_any():
    from controller.warm_fit import level_regrets

    plays = _two_function_plays()
    free = level_regrets(plays, 0.1)
    assert free.shape == (2, 4) and free.min(axis=1).tolist() == [0.0, 0.0]
    assert free.mean() == pytest.approx(1.0)  # in units of the mean regret
    # Costs v + 0.1 m: function 0 (2, 5, 9, 11), function 1 (6, 2, 9, 11); regrets over their mean 4.875.
    np.testing.assert_allclose(free * 4.875, [[0, 3, 7, 9], [4, 0, 7, 9]])
    ruled = level_regrets(plays, 0.1, "ensure")
    # Allowed (no more cold starts than c=1.06): function 0 c=1.06 and c=3 (regrets 0, 2), function 1
    # c=0, c=1.06, c=3 (0, 7, 9); their mean is 3.6, and an excluded level costs its function's worst
    # allowed regret plus one: 2/3.6 + 1 for function 0, 9/3.6 + 1 for function 1.
    assert ruled[0, 2] == 0.0 and ruled[1, 1] == 0.0  # c=1.06 for function 0 now; c=0 still for 1
    np.testing.assert_allclose(ruled * 3.6, [[5.6, 5.6, 0, 2], [12.6, 0, 7, 9]])


def test_a_cost_fit_makes_each_function_most_likely_to_take_its_cheapest_level(tmp_path):
    params = {"scheme": "staffing", "warm_start": "fitted", "fit_target": "cost"}
    settings = _settings(**{"policy.params": {"nac-linear": params, "nac-nn": params}})
    workload = build_workload(settings)
    slo_s = measure_slos(settings, workload)
    for name in ("nac-linear", "nac-nn"):
        policy = build_policy(settings, PolicySpec(name))
        fit = fit_warm_start(settings, name, policy, workload, slo_s, RunSeeds.from_seed(settings.seed), cache=tmp_path)
        assert fit.target == "cost" and fit.record()["target"] == "cost" and 0 < fit.accuracy <= 1
        assert not np.allclose(policy.learner.probabilities(np.ones((1, policy.agent.state_dim(policy.features)))
                                                            / 10), 1 / policy.agent.n_actions)


def test_plays_kept_by_an_earlier_version_are_played_again(tmp_path):
    from controller.warm_fit import LevelPlays

    old = tmp_path / "plays-old.npz"
    np.savez(old, levels=np.array(["platform"]), violations=np.zeros((1, 2)), memory=np.zeros((1, 2)),
             invocations=np.zeros(2), ticks=np.array(6), x=np.zeros((0, 3)), function=np.zeros(0, dtype=np.int64))
    assert LevelPlays.load(old) is None


def test_the_plays_key_follows_what_a_player_reads_and_ignores_what_only_the_update_reads():
    from controller.warm_fit import plays_key

    seeds = RunSeeds.from_seed(0)
    base = {"scheme": "portfolio", "warm_start": "fitted"}

    def key(**params):
        return plays_key(_settings(**{"policy.params": {"nac-linear": {**base, **params}}}), "nac-linear", seeds)

    assert key() == key(policy_lr=0.01, entropy_reg=0.1, critic_epochs=3, fit_cold_starts="ensure", mode="kl",
                        fit_target="cost")
    for changed in ({"rate_max_per_s": 10.0}, {"decision_ticks": 6}, {"cost_features": True}, {"load_floor": 0.5},
                    {"history_features": True}):
        assert key(**changed) != key(), changed  # features, the agent, the actions: the plays differ
    assert plays_key(_settings(**{"policy.params": {"nac-linear": base}, "cluster.invokers": 3}), "nac-linear",
                     seeds) != key()
    # Each learner given only its own parameters (as the bench gives them): the same plays.
    assert plays_key(_settings(**{"policy.params": {"nac-nn": {**base, "kl_coef_init": 1000.0}}}), "nac-nn",
                     seeds) == key(policy_lr=0.01)
    assert plays_key(_settings(**{"policy.params": {"nac-nn": {**base, "history_features": True}}}), "nac-nn",
                     seeds) != key()


def test_the_plays_key_ignores_alpha_unless_twin_features_put_its_price_into_the_states():
    from controller.warm_fit import plays_key

    seeds = RunSeeds.from_seed(0)

    def key(alpha, **params):
        return plays_key(_settings(**{"reward.alpha": alpha, "policy.params": {"nac-linear": {
            "scheme": "portfolio", "warm_start": "fitted", **params}}}), "nac-linear", seeds)

    assert key(0.1) == key(0.7)
    assert key(0.1, twin_features=True) != key(0.7, twin_features=True)
    assert key(0.1, twin_features=True) != key(0.1)


def test_twin_labels_take_the_states_least_regret_and_the_window_label_among_ties():
    from controller.warm_fit import twin_labels

    # Three states, two other columns, then three levels' regrets.
    x = np.array([[0.5, 0.1, 0.3, 0.0, 0.2],   # level 1 lowest
                  [0.5, 0.1, 0.0, 0.0, 0.2],   # levels 0 and 1 tie; the window says 1
                  [0.5, 0.1, 0.0, 0.0, 0.0]])  # all tie (not seen yet); the window says 2
    assert twin_labels(x, 3, np.array([2, 1, 2])).tolist() == [1, 1, 2]
    assert twin_labels(x, 3, np.array([0, 2, 0])).tolist() == [1, 0, 0]


def test_a_twin_fit_needs_the_twins_entries():
    from policies.agent import AgentSettings

    with pytest.raises(ValueError, match="fit_target=twins needs twin_features"):
        AgentSettings(scheme="portfolio", warm_start="fitted", fit_target="twins")


def test_a_twin_fit_follows_the_twins_in_the_states_it_was_played_in(tmp_path):
    params = {"scheme": "portfolio", "warm_start": "fitted", "histogram_member": True, "twin_features": True,
              "fit_target": "twins", "fit_cold_starts": "ensure"}
    settings = _settings(**{"workload.minutes": 20, "policy.params": {"nac-linear": params}})
    workload = build_workload(settings)
    slo_s = measure_slos(settings, workload)
    policy = build_policy(settings, PolicySpec("nac-linear"))
    fit = fit_warm_start(settings, "nac-linear", policy, workload, slo_s, RunSeeds.from_seed(settings.seed),
                         cache=tmp_path)
    assert fit.target == "twins" and fit.cold_starts == "ensure"
    from controller.warm_fit import LevelPlays

    plays = LevelPlays.load(next(tmp_path.glob("plays-*.npz")))
    levels = policy.agent.levels
    regret = plays.x[:, -len(levels):]
    varied = regret.max(axis=1) > 0  # states where the twins tell the levels apart
    assert varied.any()
    likeliest = np.argmax(policy.learner.probabilities(plays.x), axis=1)
    actions = np.array([action_index(level, 1.0) for level in levels])
    # The fitted policy takes a level of least regret in most states where the twins tell them apart.
    lowest = regret <= regret.min(axis=1, keepdims=True) + 1e-12
    took = np.array([lowest[i, list(actions).index(a)] if a in actions else False
                     for i, a in enumerate(likeliest)])
    assert took[varied].mean() > 0.8
