"""Features, the game sampler and the NAC / DL-NAC drivers on the paper's toy games."""

from __future__ import annotations

import numpy as np
import pytest

from mfg.dp import Discounted, FiniteHorizon, best_response, exploitability, mean_field_flow
from mfg.features import TabularFeatures, TimeTabularFeatures
from mfg.games import make_game
from mfg.learning import (
    learning_setting,
    preset,
    roughness,
    run_dlnac,
    run_nac,
    two_group_mu0,
    upward_variation,
)
from mfg.sampler import GameSampler
from policies.nac import NACHyperparameters, NaturalActorCritic

SIS_SETTING = FiniteHorizon(horizon=50, mu0=np.array([0.4, 0.6]))


def uniform_learner(dim: int, n_actions: int) -> NaturalActorCritic:
    return NaturalActorCritic(NACHyperparameters(n_features=dim, n_actions=n_actions, gamma=1.0, q_max=100.0))


@pytest.mark.parametrize(
    "features",
    [TabularFeatures(3, 2), TimeTabularFeatures(4, 3, 2)],
    ids=["tabular", "time-augmented"],
)
def test_every_state_action_pair_gets_its_own_unit_feature(
    features: TabularFeatures | TimeTabularFeatures,
) -> None:
    times, states = np.divmod(np.arange(features.n_epochs * 3), 3)
    phi = features(times, states).dense()
    np.testing.assert_allclose(np.linalg.norm(phi, axis=2), 1.0)
    flat = phi.reshape(-1, features.dim)
    assert np.linalg.matrix_rank(flat) == features.dim


def test_time_features_refuse_epochs_past_the_horizon() -> None:
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        TimeTabularFeatures(4, 3, 2)(np.array([5]), np.array([0]))


def test_the_sampled_flow_matches_the_exact_flow_of_the_same_policy() -> None:
    game = make_game("sis")
    features = TimeTabularFeatures(50, 2, 2)
    learner = uniform_learner(features.dim, 2)
    sampler = GameSampler(game, SIS_SETTING, features, 4000, np.random.default_rng(0), mode="population")
    episode = sampler.episode(learner, np.zeros((51, 2)))
    exact = mean_field_flow(game, np.full((51, 2, 2), 0.5), SIS_SETTING)
    # 4,000 agents: the standard error of a share is at most 0.008.
    np.testing.assert_allclose(episode.flow, exact, atol=0.04)


def test_learner_rewards_are_the_game_rewards_rescaled_into_the_unit_interval() -> None:
    game = make_game("sis")
    features = TimeTabularFeatures(50, 2, 2)
    sampler = GameSampler(game, SIS_SETTING, features, 200, np.random.default_rng(1))
    episode = sampler.episode(uniform_learner(features.dim, 2), np.tile([0.4, 0.6], (51, 1)))
    raw = game.reward(np.array([0.4, 0.6]))[episode.states, episode.actions]
    np.testing.assert_allclose(episode.rewards, (raw + 1.5) / 1.5)
    assert episode.rewards.min() >= 0.0 and episode.rewards.max() <= 1.0


def test_transitions_run_backward_in_time_and_only_the_last_epoch_is_terminal() -> None:
    game = make_game("sis")
    setting = FiniteHorizon(horizon=3)
    features = TimeTabularFeatures(3, 2, 2)
    sampler = GameSampler(game, setting, features, 5, np.random.default_rng(2))
    episode = sampler.episode(uniform_learner(features.dim, 2), np.tile([0.4, 0.6], (4, 1)))
    batch = sampler.transitions(episode)
    epochs = batch.features.index[:, 0] // (2 * 2)
    np.testing.assert_array_equal(epochs, np.repeat([3, 2, 1, 0], 5))
    np.testing.assert_array_equal(batch.terminal, epochs == 3)
    next_epochs = batch.next_features.index[:, 0] // 4
    np.testing.assert_array_equal(next_epochs[~batch.terminal], epochs[~batch.terminal] + 1)
    # Agent i's next state is its own state one epoch later.
    next_states = (batch.next_features.index[:, 0] // 2) % 2
    np.testing.assert_array_equal(
        next_states[5:], np.concatenate([episode.states[3], episode.states[2], episode.states[1]])
    )


def test_the_sampler_refuses_a_discounted_setting_by_name() -> None:
    with pytest.raises(TypeError, match="Discounted"):
        GameSampler(make_game("sis"), Discounted(0.9), TabularFeatures(2, 2), 10, np.random.default_rng(0))


def short_sis_config():
    return preset("sis", n_agents=100, iterations=250, eval_every=50, evaluate_regularised=False)


def test_a_short_nac_run_cuts_sis_exploitability_by_more_than_three_quarters() -> None:
    game = make_game("sis")
    curve = run_nac(game, SIS_SETTING, short_sis_config(), seed=0)
    uniform = exploitability(game, np.full((51, 2, 2), 0.5), SIS_SETTING)
    assert curve.exploitability[0] == pytest.approx(uniform)
    assert curve.exploitability[-1] < 0.25 * uniform


def test_runs_with_the_same_seed_give_identical_curves_and_other_seeds_differ() -> None:
    game = make_game("sis")
    config = preset("sis", n_agents=20, iterations=30, eval_every=10)
    first, again, other = (run_nac(game, SIS_SETTING, config, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(first.exploitability, again.exploitability)
    assert not np.array_equal(first.exploitability, other.exploitability)


def test_nac_and_dlnac_report_on_the_same_sample_axis() -> None:
    game = make_game("sis")
    config = preset("sis", n_agents=20, iterations=40, eval_every=10, inner_iterations=20)
    nac, dlnac = run_nac(game, SIS_SETTING, config, 0), run_dlnac(game, SIS_SETTING, config, 0)
    np.testing.assert_array_equal(nac.samples, dlnac.samples)
    np.testing.assert_array_equal(nac.samples, np.arange(0, 41, 10) * 20 * 51)
    assert np.all(np.isfinite(dlnac.exploitability_reg)) and np.all(dlnac.exploitability_reg >= -1e-9)


@pytest.mark.parametrize(
    "curve, climbs, rough",
    [
        ([8.0, 4.0, 2.0, 1.0], False, False),
        ([8.0, 1.0, 8.0, 1.0, 8.0], True, True),
    ],
    ids=["geometric-decay-is-smooth", "zig-zag-is-rough"],
)
def test_smoothness_scores_separate_decay_from_zigzag(curve: list[float], climbs: bool, rough: bool) -> None:
    assert (upward_variation(np.array(curve)) > 0.5) is climbs
    assert (roughness(np.array(curve)) > 0.5) is rough


def test_the_lq_learning_start_is_two_unequal_groups_with_an_off_centre_mean() -> None:
    game = make_game("lq")
    mu0 = learning_setting(game).mu0
    assert mu0 is not None
    assert mu0.sum() == pytest.approx(1.0) and np.all(mu0 >= 0)
    assert mu0[game.positions < 0].sum() == pytest.approx(0.8, abs=1e-6)
    assert mu0 @ game.positions == pytest.approx(-6.0, abs=0.05)


def test_on_the_lq_learning_start_the_population_mean_moves_so_the_start_is_no_fixed_point() -> None:
    # Against the constant flow μ₀ that both learners start from, the best responders' own flow
    # drifts by more than a cell: the mean-field update has work to do (with the uniform μ₀ of the
    # game's default it stays at the centre).
    game = make_game("lq")
    setting = learning_setting(game)
    constant = np.tile(setting.mu0, (setting.horizon + 1, 1))
    policy, _ = best_response(game, constant, setting)
    means = mean_field_flow(game, policy, setting) @ game.positions
    assert np.ptp(means) > 1.0
    uniform_start = FiniteHorizon(setting.horizon)
    policy, _ = best_response(game, np.tile(game.mu0, (setting.horizon + 1, 1)), uniform_start)
    assert np.ptp(mean_field_flow(game, policy, uniform_start) @ game.positions) < 1e-9


@pytest.mark.parametrize("game_name", ["sis", "lq"], ids=["sis-keeps-its-own-mu0", "lq-learns-off-centre"])
def test_the_learning_setting_uses_the_games_horizon(game_name: str) -> None:
    game = make_game(game_name)
    setting = learning_setting(game)
    assert setting.horizon == game.default_horizon
    assert (setting.mu0 is None) is (game_name == "sis")


def test_two_groups_refuse_a_grid_too_short_for_the_margin() -> None:
    with pytest.raises(ValueError, match="margin=2"):
        two_group_mu0(np.arange(5.0))
