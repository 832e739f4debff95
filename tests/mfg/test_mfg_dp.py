"""Exact dynamic programming: values, best responses, mean fields and exploitability.

The finite-horizon results are checked against code paths that share nothing with ``mfg.dp``: a
pure-Python SIS model written from the paper's formulas (forward simulation for a policy's value,
scalar backward induction for the best response), brute-force enumeration of every deterministic
policy on short horizons, and a seeded Monte Carlo population.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from mfg.dp import (
    Discounted,
    DistributionError,
    FiniteHorizon,
    PolicyArrayError,
    as_policy_array,
    best_response,
    evaluate,
    exploitability,
    mean_field_flow,
    policy_value,
    stationary_mean_field,
)
from mfg.games import LinearQuadraticGame, SISGame, make_game

RNG_SEED = 7

DISTANCE = np.array([[1.0, 0.0], [1.0, 0.0]])
GO_OUT = np.array([[0.0, 1.0], [0.0, 1.0]])
UNIFORM_SIS = np.full((2, 2), 0.5)

# Unregularised exploitability on SIS, T = 50, mu0 = (0.4, 0.6) (Cui & Koeppl's setting), pinned
# from mfg.dp and reproduced below by the independent pure-Python path.
GOLDEN_SIS_T50 = {
    "uniform": (UNIFORM_SIS, 5.466873913228518),
    "always-D": (DISTANCE, 23.219927536037478),
    "always-U": (GO_OUT, 6.0511279129961295),
}


def small_lq() -> LinearQuadraticGame:
    return LinearQuadraticGame(n_states=4, max_action=1, noise_half_width=1)


# ----------------------------------------------------------------------------------------------
# Independent SIS reference: the paper's formulas in plain Python floats, no numpy, no mfg code.
def sis_reference(policy_u: list[list[float]], mu0_infected: float, lam: float) -> tuple[float, float]:
    """(V^pi(mu0), V^BR(mu0)) for SIS given pi_t(U | s) per epoch: policy_u[t] = [p_U(S), p_U(I)]."""
    T1 = len(policy_u)
    infected = [mu0_infected]
    for t in range(T1 - 1):
        i = infected[-1]
        infected.append(i + (1 - i) * policy_u[t][0] * 0.81 * i - 0.3 * i)

    def reward(s: int, a: int) -> float:  # a: 0 = D, 1 = U
        return -1.0 * (s == 1) - 0.5 * (a == 0)

    def entropy_term(p: float) -> float:
        return sum(-lam * q * math.log(q) for q in (p, 1 - p) if q > 0)

    value_pi = 0.0
    for t in range(T1):  # forward: the agent's own distribution is the population's
        dist = (1 - infected[t], infected[t])
        for s in (0, 1):
            p_u = policy_u[t][s]
            value_pi += dist[s] * ((1 - p_u) * reward(s, 0) + p_u * reward(s, 1) + entropy_term(p_u))

    V = [0.0, 0.0]
    for t in range(T1 - 1, -1, -1):  # backward, scalar, with a hand-written soft max
        cont = [0.0, 0.0] if t == T1 - 1 else V
        p_inf = 0.81 * infected[t]
        Q = {
            (0, 0): reward(0, 0) + cont[0],
            (0, 1): reward(0, 1) + (1 - p_inf) * cont[0] + p_inf * cont[1],
            (1, 0): reward(1, 0) + 0.3 * cont[0] + 0.7 * cont[1],
            (1, 1): reward(1, 1) + 0.3 * cont[0] + 0.7 * cont[1],
        }
        new = []
        for s in (0, 1):
            q0, q1 = Q[(s, 0)], Q[(s, 1)]
            if lam == 0:
                new.append(max(q0, q1))
            else:
                m = max(q0, q1)
                new.append(m + lam * math.log(math.exp((q0 - m) / lam) + math.exp((q1 - m) / lam)))
        V = new
    return value_pi, (1 - mu0_infected) * V[0] + mu0_infected * V[1]


def as_u_lists(policy: np.ndarray, horizon: int) -> list[list[float]]:
    full = np.broadcast_to(policy, (horizon + 1, 2, 2))
    return [[float(full[t, 0, 1]), float(full[t, 1, 1])] for t in range(horizon + 1)]


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(GOLDEN_SIS_T50), ids=list(GOLDEN_SIS_T50))
def test_sis_golden_exploitability_is_pinned_and_matches_the_independent_path(name: str) -> None:
    policy, golden = GOLDEN_SIS_T50[name]
    game, setting = SISGame(), FiniteHorizon(horizon=50, mu0=np.array([0.4, 0.6]))
    value = exploitability(game, policy, setting, lam=0.0)
    assert value == pytest.approx(golden, abs=1e-9)
    v_pi, v_br = sis_reference(as_u_lists(policy, 50), 0.6, 0.0)
    assert value == pytest.approx(v_br - v_pi, abs=1e-10)


def test_uniform_sis_exploitability_is_the_published_5_47() -> None:
    value = exploitability(SISGame(), UNIFORM_SIS, FiniteHorizon(horizon=50), lam=0.0)
    assert round(value, 2) == 5.47


@pytest.mark.parametrize("lam", [0.0, 0.05, 1.0], ids=["lam0", "lam0.05", "lam1"])
def test_sis_values_of_random_time_varying_policies_match_the_independent_path(lam: float) -> None:
    game, horizon = SISGame(), 20
    rng = np.random.default_rng(RNG_SEED)
    for _ in range(10):
        policy = rng.dirichlet(np.ones(2), size=(horizon + 1, 2))
        report = evaluate(game, policy, FiniteHorizon(horizon=horizon), lam)
        v_pi, v_br = sis_reference(as_u_lists(policy, horizon), 0.6, lam)
        assert report.policy_value == pytest.approx(v_pi, abs=1e-11)
        assert report.best_response_value == pytest.approx(v_br, abs=1e-11)


def forward_values_of_deterministic_policies(P: np.ndarray, r: np.ndarray, mu0: np.ndarray) -> np.ndarray:
    """Value at mu0 of every deterministic Markov policy, by pushing the agent's distribution forward.

    P (T+1, S, A, S) and r (T+1, S, A) are the environment of a fixed mean-field flow.
    """
    T1, S, A = r.shape
    per_epoch = np.array(list(itertools.product(range(A), repeat=S)))  # (A^S, S) action per state
    choices = np.array(list(itertools.product(range(len(per_epoch)), repeat=T1)))  # (N, T1)
    actions = per_epoch[choices]  # (N, T1, S)
    states = np.arange(S)
    dist = np.broadcast_to(mu0, (len(actions), S)).copy()
    total = np.zeros(len(actions))
    for t in range(T1):
        a_t = actions[:, t, :]
        total += (dist * r[t][states, a_t]).sum(axis=1)
        dist = np.einsum("ns,nsj->nj", dist, P[t][states, a_t])
    return total


@pytest.mark.parametrize(
    ("game", "horizon"),
    [(SISGame(), 3), (small_lq(), 1)],
    ids=["sis-T3-256-policies", "lq4-T1-6561-policies"],
)
def test_best_response_equals_the_best_of_all_deterministic_policies_enumerated(game, horizon: int) -> None:
    rng = np.random.default_rng(RNG_SEED)
    setting = FiniteHorizon(horizon=horizon)
    for _ in range(3):
        policy = rng.dirichlet(np.ones(game.n_actions), size=(horizon + 1, game.n_states))
        mf = mean_field_flow(game, policy, setting)
        brute = forward_values_of_deterministic_policies(game.transition(mf), game.reward(mf), game.mu0)
        _, V_br = best_response(game, mf, setting, lam=0.0)
        assert brute.max() == pytest.approx(game.mu0 @ V_br[0], abs=1e-10)


@pytest.mark.parametrize(("game", "horizon"), [(SISGame(), 4), (LinearQuadraticGame(), 6)], ids=["sis", "lq"])
@pytest.mark.parametrize("lam", [0.0, 0.3], ids=["lam0", "lam0.3"])
def test_policy_value_matches_forward_simulation_of_the_exact_distribution(
    game, horizon: int, lam: float
) -> None:
    # Evaluate policy pi2 in the mean field of another policy pi1: the agent's own state
    # distribution then differs from the population's and must be pushed forward separately.
    rng = np.random.default_rng(RNG_SEED)
    setting = FiniteHorizon(horizon=horizon)
    pi1, pi2 = (rng.dirichlet(np.ones(game.n_actions), size=(horizon + 1, game.n_states)) for _ in range(2))
    mf = mean_field_flow(game, pi1, setting)
    V, Q = policy_value(game, pi2, mf, setting, lam)
    P, r = game.transition(mf), game.reward(mf)
    dist, total = game.mu0.copy(), 0.0
    for t in range(horizon + 1):
        total += dist @ (pi2[t] * (r[t] - lam * np.log(pi2[t]))).sum(axis=1)
        dist = np.einsum("s,sa,saj->j", dist, pi2[t], P[t])
    assert game.mu0 @ V[0] == pytest.approx(total, abs=1e-10 * max(1.0, abs(total)))
    np.testing.assert_allclose(V, (pi2 * (Q - lam * np.log(pi2))).sum(axis=-1), atol=1e-10)


def test_sis_flow_and_value_match_a_large_monte_carlo_population() -> None:
    # 200,000 agents, seeded: the empirical infected fraction tracks the mean-field flow to
    # O(1/sqrt(N)) ~ 0.002, and the average return estimates V^pi(mu0) with standard error ~ 0.01.
    game, horizon, n = SISGame(), 10, 200_000
    rng = np.random.default_rng(RNG_SEED)
    policy = rng.dirichlet(np.ones(2), size=(horizon + 1, 2))
    report = evaluate(game, policy, FiniteHorizon(horizon=horizon))
    infected = rng.random(n) < 0.6
    returns = np.zeros(n)
    for t in range(horizon + 1):
        frac = infected.mean()
        assert frac == pytest.approx(report.mean_field[t, 1], abs=0.01)
        go_out = rng.random(n) < policy[t, infected.astype(int), 1]
        returns += -1.0 * infected - 0.5 * ~go_out
        catch = ~infected & go_out & (rng.random(n) < 0.81 * frac)
        recover = infected & (rng.random(n) < 0.3)
        infected = (infected & ~recover) | catch
    standard_error = returns.std() / math.sqrt(n)
    assert abs(returns.mean() - report.policy_value) < 5 * standard_error


@pytest.mark.parametrize(
    "setting", [FiniteHorizon(horizon=8), Discounted(gamma=0.9)], ids=["finite", "discounted"]
)
@pytest.mark.parametrize("game", [SISGame(), LinearQuadraticGame()], ids=["sis", "lq"])
@pytest.mark.parametrize("lam", [0.0, 0.1], ids=["lam0", "lam0.1"])
def test_best_response_is_at_least_as_good_as_every_policy_tried(game, setting, lam: float) -> None:
    rng = np.random.default_rng(RNG_SEED)
    S, A = game.n_states, game.n_actions
    shape = (setting.horizon + 1, S, A) if isinstance(setting, FiniteHorizon) else (S, A)
    mf = mean_field_flow(game, np.full((S, A), 1.0 / A), setting)
    _, V_br = best_response(game, mf, setting, lam)
    tried = [rng.dirichlet(np.full(A, alpha), size=shape[:-1]) for alpha in (0.2, 1.0, 5.0) for _ in range(5)]
    tried += [np.eye(A)[rng.integers(0, A, size=shape[:-1])] for _ in range(10)]
    tried += [np.broadcast_to(np.eye(A)[a], shape) for a in range(A)]
    for policy in tried:
        V, _ = policy_value(game, policy, mf, setting, lam)
        # Every state (not only at rho) and every epoch: the best response dominates pointwise.
        assert np.all(V_br >= V - 1e-9 * max(1.0, np.abs(V).max()))


@pytest.mark.parametrize(
    "setting", [FiniteHorizon(horizon=8), Discounted(gamma=0.9)], ids=["finite", "discounted"]
)
@pytest.mark.parametrize("game", [SISGame(), LinearQuadraticGame()], ids=["sis", "lq"])
@pytest.mark.parametrize("lam", [0.0, 0.1], ids=["lam0", "lam0.1"])
def test_best_response_policy_is_worth_the_value_best_response_returns(game, setting, lam: float) -> None:
    rng = np.random.default_rng(RNG_SEED)
    policy = rng.dirichlet(np.ones(game.n_actions), size=game.n_states)
    mf = mean_field_flow(game, policy, setting)
    br, V_br = best_response(game, mf, setting, lam)
    V, _ = policy_value(game, br, mf, setting, lam)
    np.testing.assert_allclose(V, V_br, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize(
    "setting", [FiniteHorizon(horizon=8), Discounted(gamma=0.9)], ids=["finite", "discounted"]
)
@pytest.mark.parametrize("game", [SISGame(), LinearQuadraticGame()], ids=["sis", "lq"])
def test_exploitability_of_random_policies_is_non_negative(game, setting) -> None:
    rng = np.random.default_rng(RNG_SEED)
    for lam in (0.0, 0.2):
        for _ in range(5):
            policy = rng.dirichlet(np.full(game.n_actions, 0.5), size=game.n_states)
            assert exploitability(game, policy, setting, lam) >= -1e-12


def test_discounted_best_response_matches_plain_value_iteration() -> None:
    game, gamma = LinearQuadraticGame(), 0.9
    mf = np.random.default_rng(RNG_SEED).dirichlet(np.ones(25))
    P, r = game.transition(mf), game.reward(mf)
    for lam in (0.0, 0.5):
        V = np.zeros(25)
        for _ in range(600):  # gamma^600 ~ 1e-28: converged far below the check
            Q = r + gamma * (P @ V)
            V = Q.max(axis=1) if lam == 0 else lam * np.log(np.exp(Q / lam).sum(axis=1))
        _, V_br = best_response(game, mf, Discounted(gamma=gamma), lam)
        np.testing.assert_allclose(V_br, V, rtol=1e-11)


@pytest.mark.parametrize("horizon", [0, 1, 10, 50], ids=["T0", "T1", "T10", "T50"])
@pytest.mark.parametrize("game", [SISGame(), LinearQuadraticGame()], ids=["sis", "lq"])
def test_flow_of_a_policy_is_a_distribution_at_every_epoch(game, horizon: int) -> None:
    rng = np.random.default_rng(RNG_SEED)
    policy = rng.dirichlet(np.ones(game.n_actions), size=(horizon + 1, game.n_states))
    flow = mean_field_flow(game, policy, FiniteHorizon(horizon=horizon))
    assert flow.shape == (horizon + 1, game.n_states)
    np.testing.assert_array_equal(flow[0], game.mu0)
    assert flow.min() >= 0
    np.testing.assert_allclose(flow.sum(axis=1), 1.0, atol=1e-13)


@pytest.mark.parametrize(
    "setting", [FiniteHorizon(horizon=10), Discounted(gamma=0.9)], ids=["finite", "discounted"]
)
@pytest.mark.parametrize("game", [SISGame(), LinearQuadraticGame()], ids=["sis", "lq"])
def test_regularised_values_reduce_to_unregularised_ones_as_lam_goes_to_zero(game, setting) -> None:
    rng = np.random.default_rng(RNG_SEED)
    policy = rng.dirichlet(np.ones(game.n_actions), size=game.n_states)
    mf = mean_field_flow(game, policy, setting)
    V0, Q0 = policy_value(game, policy, mf, setting, 0.0)
    _, B0 = best_response(game, mf, setting, 0.0)
    # Entropy is at most log|A| per step; the effective number of steps bounds the gap.
    steps = setting.horizon + 1 if isinstance(setting, FiniteHorizon) else 1 / (1 - setting.gamma)
    for lam in (1e-2, 1e-4, 1e-8):
        V, Q = policy_value(game, policy, mf, setting, lam)
        _, B = best_response(game, mf, setting, lam)
        bound = lam * math.log(game.n_actions) * steps + 1e-10
        assert np.all(V >= V0 - 1e-10) and np.all(V - V0 <= bound)
        assert np.all(B >= B0 - 1e-10) and np.all(B - B0 <= bound)
        assert np.abs(Q - Q0).max() <= bound * (1 + 1e-9)


@pytest.mark.parametrize("go_out_when_susceptible", [0.2, 0.37, 0.5, 1.0], ids=["0.2", "0.37", "0.5", "1.0"])
def test_sis_stationary_mean_field_is_the_closed_form_fixed_point_reached_from_rho(
    go_out_when_susceptible: float,
) -> None:
    # mu(I) = mu(S) u 0.81 mu(I) + 0.7 mu(I) has the roots 0 and 1 - 0.3 / (0.81 u); the endemic
    # one is the population's limit whenever it is positive.
    policy = np.array([[1 - go_out_when_susceptible, go_out_when_susceptible], [0.5, 0.5]])
    mu = mean_field_flow(SISGame(), policy, Discounted(gamma=0.9))
    expected_infected = max(0.0, 1 - 0.3 / (0.81 * go_out_when_susceptible))
    assert mu[1] == pytest.approx(expected_infected, abs=1e-12)
    assert mu.sum() == pytest.approx(1.0, abs=1e-15)


def test_lq_stationary_mean_field_is_the_unique_invariant_distribution() -> None:
    game = LinearQuadraticGame()
    policy = np.random.default_rng(RNG_SEED).dirichlet(np.ones(7), size=25)
    mu = stationary_mean_field(game, policy, game.mu0)
    P_pi = np.einsum("sa,saj->sj", policy, game.transition(game.mu0))
    system = np.vstack([(P_pi.T - np.eye(25))[:-1], np.ones(25)])
    expected = np.linalg.solve(system, np.eye(25)[-1])
    np.testing.assert_allclose(mu, expected, atol=1e-12)


@pytest.mark.parametrize(
    ("policy", "setting", "message"),
    [
        (
            np.full((3, 2), 0.5),
            FiniteHorizon(horizon=5),
            r"shape \(3, 2\).*\(6, 2, 2\).*actions in order: D, U",
        ),
        (np.full((6, 2, 2), 0.5), Discounted(), r"discounted setting needs a stationary"),
        (np.array([[0.5, 0.4], [0.5, 0.5]]), FiniteHorizon(horizon=5), r"sum to 1.*1 does not, first at s=0 \(S\): sum 0.9"),
        (np.array([[0.5, 0.5], [1.2, -0.2]]), Discounted(), r"negative.*s=1 \(I\), a=1 \(U\)"),
        (np.array([[0.5, 0.5], [np.nan, 0.5]]), Discounted(), r"non-finite.*s=1 \(I\), a=0 \(D\)"),
        (np.array([[0.5, 0.5], [np.inf, 0.5]]), Discounted(), r"non-finite"),
    ],
    ids=["wrong-shape", "time-varying-discounted", "row-sum", "negative", "nan", "inf"],
)
def test_malformed_policy_arrays_are_refused_with_the_place_at_fault(policy, setting, message: str) -> None:
    with pytest.raises(PolicyArrayError, match=message):
        as_policy_array(policy, SISGame(), setting)


def test_a_stationary_policy_with_one_bad_entry_is_reported_once_not_once_per_epoch() -> None:
    policy = np.array([[0.5, 0.5], [np.nan, 0.5]])
    with pytest.raises(PolicyArrayError, match=r"policy has 1 non-finite entry; first at s=1 \(I\)"):
        as_policy_array(policy, SISGame(), FiniteHorizon(horizon=50))


def test_row_sum_error_names_the_epoch_of_a_time_varying_policy() -> None:
    policy = np.full((6, 2, 2), 0.5)
    policy[4, 1] = [0.7, 0.7]
    with pytest.raises(PolicyArrayError, match=r"t=4, s=1 \(I\): sum 1.4"):
        as_policy_array(policy, SISGame(), FiniteHorizon(horizon=5))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (FiniteHorizon(horizon=5, mu0=np.array([0.5, 0.6])), "mu0 sums to 1.1"),
        (FiniteHorizon(horizon=5, mu0=np.array([1.0])), "mu0 has shape"),
        (Discounted(rho=np.array([1.5, -0.5])), "rho has a negative entry"),
    ],
    ids=["sum", "length", "negative"],
)
def test_malformed_initial_distributions_are_refused(setting, message: str) -> None:
    with pytest.raises(DistributionError, match=message):
        exploitability(SISGame(), UNIFORM_SIS, setting)


def test_stationary_policy_is_broadcast_over_the_horizon_without_changing_values() -> None:
    game, setting = make_game("lq"), FiniteHorizon(horizon=10)
    policy = np.random.default_rng(RNG_SEED).dirichlet(np.ones(7), size=25)
    broadcast = as_policy_array(policy, game, setting)
    assert broadcast.shape == (11, 25, 7)
    assert exploitability(game, policy, setting) == exploitability(game, np.array(broadcast), setting)
