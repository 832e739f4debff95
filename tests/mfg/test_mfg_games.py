"""The SIS and linear-quadratic games match the paper's Appendix D, and their models are consistent."""

from __future__ import annotations

import numpy as np
import pytest

from mfg.games import GAME_NAMES, LinearQuadraticGame, SISGame, discretised_normal, make_game
from mfg.model import MeanFieldGame

RNG_SEED = 20220601


def random_distributions(n_states: int, count: int, seed: int = RNG_SEED) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(n_states), size=count)


@pytest.mark.parametrize("name", GAME_NAMES)
def test_transition_rows_are_distributions_for_any_mean_field(name: str) -> None:
    game = make_game(name)
    for mu in random_distributions(game.n_states, 20):
        P = game.transition(mu)
        assert P.shape == (game.n_states, game.n_actions, game.n_states)
        assert P.min() >= 0
        np.testing.assert_allclose(P.sum(axis=-1), 1.0, atol=1e-14)


@pytest.mark.parametrize("name", GAME_NAMES)
def test_stacked_mean_fields_give_the_same_models_as_one_at_a_time(name: str) -> None:
    game = make_game(name)
    stack = random_distributions(game.n_states, 6).reshape(2, 3, game.n_states)
    P, r = game.transition(stack), game.reward(stack)
    assert P.shape == (2, 3, game.n_states, game.n_actions, game.n_states)
    assert r.shape == (2, 3, game.n_states, game.n_actions)
    for i in range(2):
        for j in range(3):
            # Batched matrix products may sum in another order: equal up to rounding.
            np.testing.assert_allclose(P[i, j], game.transition(stack[i, j]), rtol=1e-14, atol=1e-15)
            np.testing.assert_allclose(r[i, j], game.reward(stack[i, j]), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", GAME_NAMES)
def test_fast_push_forward_and_flow_agree_with_the_generic_model_formula(name: str) -> None:
    game = make_game(name)
    rng = np.random.default_rng(RNG_SEED)
    policy = rng.dirichlet(np.ones(game.n_actions), size=(6, game.n_states))
    mu0 = random_distributions(game.n_states, 1)[0]
    generic_flow = MeanFieldGame.flow(game, mu0, policy)
    # The base class's flow calls the game's push_forward; check that one against the raw model too.
    for t in range(5):
        expected = np.einsum("s,sa,saj->j", generic_flow[t], policy[t], game.transition(generic_flow[t]))
        np.testing.assert_allclose(
            MeanFieldGame.push_forward(game, generic_flow[t], policy[t]), expected, atol=1e-15
        )
        np.testing.assert_allclose(game.push_forward(generic_flow[t], policy[t]), expected, atol=1e-15)
    np.testing.assert_allclose(game.flow(mu0, policy), generic_flow, atol=1e-14)


@pytest.mark.parametrize(
    ("state", "action", "mu_infected", "p_infected_next"),
    [
        (0, 0, 0.6, 0.0),  # susceptible who distances is never infected
        (0, 1, 0.6, 0.81 * 0.6),  # susceptible who goes out: 0.9^2 mu(I)
        (0, 1, 0.0, 0.0),
        (1, 0, 0.3, 0.7),  # infected recovers with 0.3 whatever it does
        (1, 1, 0.9, 0.7),
    ],
    ids=["S-distance", "S-go-out", "S-go-out-no-infected", "I-distance", "I-go-out"],
)
def test_sis_transitions_are_the_papers(
    state: int, action: int, mu_infected: float, p_infected_next: float
) -> None:
    P = SISGame().transition(np.array([1 - mu_infected, mu_infected]))
    assert P[state, action, 1] == pytest.approx(p_infected_next, abs=1e-15)


def test_sis_rewards_are_the_papers_costs_and_do_not_depend_on_the_mean_field() -> None:
    game = SISGame()
    expected = np.array([[-0.5, 0.0], [-1.5, -1.0]])  # rows S, I; columns D, U
    for mu in random_distributions(2, 5):
        np.testing.assert_array_equal(game.reward(mu), expected)
    assert game.reward_range == (-1.5, 0.0)
    assert game.spec.state_names == ("S", "I") and game.spec.action_names == ("D", "U")
    np.testing.assert_array_equal(game.mu0, [0.4, 0.6])


def test_discretised_normal_weights_sum_to_one_symmetric_and_close_to_unit_variance() -> None:
    w = discretised_normal(3)
    eps = np.arange(-3, 4)
    assert w.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(w, w[::-1], atol=1e-16)
    assert w @ eps == pytest.approx(0.0, abs=1e-15)
    # Binning adds ~1/12 of variance (Sheppard); folding the tails removes a little.
    assert w @ eps**2 == pytest.approx(1.0 + 1.0 / 12.0, abs=0.02)


def test_lq_interior_move_is_action_plus_discretised_normal_noise() -> None:
    game = LinearQuadraticGame()
    centre = 12  # position 0
    a_plus_one = 4  # actions -3..3
    P = game.transition(game.mu0)
    expected = np.zeros(25)
    expected[centre + 1 - 3 : centre + 1 + 4] = discretised_normal(3)
    np.testing.assert_allclose(P[centre, a_plus_one], expected, atol=1e-16)


@pytest.mark.parametrize(
    ("state", "action", "expected_end_mass"),
    [
        (24, 6, 1.0),  # at +12 pushing +3: every outcome is clipped to +12
        (0, 0, 1.0),  # at -12 pushing -3
        (24, 3, None),  # at +12 standing still: the upper half of the noise is clipped
    ],
    ids=["top-push-out", "bottom-push-out", "top-stand"],
)
def test_lq_moves_past_the_grid_ends_are_clipped_to_the_end(
    state: int, action: int, expected_end_mass: float | None
) -> None:
    game = LinearQuadraticGame()
    P = game.transition(game.mu0)[state, action]
    end = 24 if state == 24 else 0
    w = discretised_normal(3)
    mass = expected_end_mass if expected_end_mass is not None else w[3:].sum()
    assert P[end] == pytest.approx(mass, abs=1e-15)
    assert P.sum() == pytest.approx(1.0, abs=1e-15)


def test_lq_reward_is_the_papers_quadratic_in_action_and_distance_to_the_mean() -> None:
    game = LinearQuadraticGame()
    mu = np.zeros(25)
    mu[[14, 20]] = 0.5  # mean position (2 + 8) / 2 = 5
    r = game.reward(mu)
    x, a = -4.0, 2.0  # state index 8, action index 5
    expected = -0.5 * a * a + 0.01 * a * (5 - x) - 0.25 * (5 - x) ** 2
    assert r[8, 5] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", GAME_NAMES)
def test_reward_range_bounds_every_reward_and_is_attained(name: str) -> None:
    game = make_game(name)
    low, high = game.reward_range
    rewards = [game.reward(mu) for mu in random_distributions(game.n_states, 50)]
    S = game.n_states
    rewards += [game.reward(np.eye(S)[0]), game.reward(np.eye(S)[-1])]
    stacked = np.stack(rewards)
    assert stacked.min() >= low - 1e-12 and stacked.max() <= high + 1e-12
    assert stacked.min() == pytest.approx(low, abs=1e-12)
    assert stacked.max() == pytest.approx(high, abs=1e-12)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("sis", {"recovery_prob": 1.5}, "recovery_prob"),
        ("sis", {"infection_factor": -0.1}, "infection_factor"),
        ("sis", {"mu0": [0.5, 0.6]}, "sums to"),
        ("sis", {"mu0": [0.2, 0.3, 0.5]}, "2 states"),
        ("lq", {"n_states": 1}, "n_states"),
        ("lq", {"dt": 0.0}, "dt"),
        ("lq", {"kappa": -1.0}, "kappa"),
        ("sis", {"horizon": 3}, "no parameter horizon"),
        ("chess", {}, "unknown game"),
    ],
    ids=[
        "recovery>1",
        "infection<0",
        "mu0-sum",
        "mu0-length",
        "one-state",
        "zero-dt",
        "negative-kappa",
        "unknown-param",
        "unknown-game",
    ],
)
def test_invalid_game_parameters_are_refused_with_the_key(name: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_game(name, **params)


def test_every_parameter_is_settable_by_name() -> None:
    game = make_game("lq", n_states=9, max_action=1, noise_half_width=1, sigma=0.5, q=0.1, kappa=1.0)
    assert (game.n_states, game.n_actions) == (9, 3)
    np.testing.assert_allclose(game.transition(game.mu0).sum(axis=-1), 1.0, atol=1e-15)
    sis = make_game("sis", recovery_prob=0.2, infected_cost=2.0, mu0=[0.9, 0.1])
    assert sis.reward(sis.mu0)[1, 1] == -2.0
