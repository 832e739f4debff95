"""The NAC core (policies/nac.py): critic fixed point, actor = natural gradient, projections, seeding."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from policies.nac import (
    FACTOR_MIN_ROWS,
    BlockFeatures,
    KroneckerRows,
    NACHyperparameters,
    NaturalActorCritic,
    OneHotFeatures,
    SparseRows,
    TransitionBatch,
    _factor_constant_columns,
    _FisherPart,
    compatible_fit,
    grad_log_pi,
    log_softmax,
    mean_field_step,
    natural_gradient,
    projected_td0,
    sample_from,
    taken_features,
)

GAMMA = 0.9
LAM = 0.1


def small_mdp() -> dict[str, np.ndarray]:
    """2 states, 2 actions, probabilities in quarters so that exact batches have integer counts."""
    P = np.array([[[0.75, 0.25], [0.25, 0.75]], [[0.5, 0.5], [1.0, 0.0]]])  # P[s, a, s']
    r = np.array([[1.0, 0.0], [0.25, 0.5]])
    pi = np.array([[0.5, 0.5], [0.25, 0.75]])
    return {"P": P, "r": r, "pi": pi}


def exact_shifted_q(P: np.ndarray, r: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """q = r − λ log π + γ P (π · q), solved as a linear system over (s, a)."""
    S, A = r.shape
    next_sa = np.einsum("sax,xb->saxb", P, pi).reshape(S * A, S * A)
    offset = (r - LAM * np.log(pi)).reshape(-1)
    return np.linalg.solve(np.eye(S * A) - GAMMA * next_sa, offset).reshape(S, A)


def enumerated_batch(P: np.ndarray, r: np.ndarray, pi: np.ndarray, scale: int = 64) -> TransitionBatch:
    """Every (s, a, s', a') repeated in proportion to d(s) π(a|s) P(s'|s, a) π(a'|s'), d uniform."""
    S, A = r.shape
    rows = []
    for s, a, x, b in itertools.product(range(S), range(A), range(S), range(A)):
        count = scale * 0.5 * pi[s, a] * P[s, a, x] * pi[x, b]
        assert abs(count - round(count)) < 1e-9
        rows += [(s, a, x, b)] * round(count)
    s, a, x, b = (np.array(col) for col in zip(*rows))
    table = np.eye(S * A).reshape(S, A, S * A)
    return TransitionBatch(
        features=table[s], actions=a, rewards=r[s, a], next_features=table[x], next_actions=b
    )


def hp(**overrides: object) -> NACHyperparameters:
    base = {
        "n_features": 4,
        "n_actions": 2,
        "gamma": GAMMA,
        "entropy_reg": LAM,
        "critic_radius": 1e3,
        "actor_radius": 1e3,
    }
    base.update(overrides)
    return NACHyperparameters(**base)  # type: ignore[arg-type]


def td_pieces(batch: TransitionBatch, pi_na: np.ndarray) -> tuple:
    n = len(batch)
    log_pi = np.log(pi_na[np.arange(n), batch.actions])
    return (
        taken_features(batch.features, batch.actions),
        taken_features(batch.next_features, batch.next_actions),
        batch.rewards - LAM * log_pi,
    )


def test_td0_with_tabular_features_converges_to_the_exact_shifted_soft_q() -> None:
    m = small_mdp()
    batch = enumerated_batch(m["P"], m["r"], m["pi"])
    s_of_row = batch.features.argmax(axis=2)[:, 0] // 2
    phi_sa, phi_next, offset = td_pieces(batch, m["pi"][s_of_row])
    settings = hp(critic_lr=1.0, critic_normalise=True, critic_epochs=400, critic_average=False)
    result = projected_td0(phi_sa, phi_next, offset, GAMMA, np.zeros(4), settings, np.random.default_rng(0))
    np.testing.assert_allclose(
        result.psi_bar.reshape(2, 2), exact_shifted_q(m["P"], m["r"], m["pi"]), atol=1e-6
    )


def test_td0_with_dense_features_solves_the_projected_bellman_equation() -> None:
    rng = np.random.default_rng(3)
    n, d = 200, 3
    phi_sa = rng.normal(size=(n, d))
    phi_sa /= np.linalg.norm(phi_sa, axis=1, keepdims=True)
    phi_next = rng.normal(size=(n, d))
    phi_next /= np.linalg.norm(phi_next, axis=1, keepdims=True)
    offset = rng.uniform(size=n)
    # The fixed point of mean-path TD(0): Σ φ (offset + γ φ'ᵀψ − φᵀψ) = 0 (LSTD).
    lstd = np.linalg.solve(phi_sa.T @ (phi_sa - GAMMA * phi_next), phi_sa.T @ offset)
    settings = hp(n_features=d, critic_lr=1.0, critic_epochs=3000, critic_average=False)
    result = projected_td0(phi_sa, phi_next, offset, GAMMA, np.zeros(d), settings, np.random.default_rng(0))
    np.testing.assert_allclose(result.psi_bar, lstd, atol=1e-6)


def policy_case() -> dict[str, object]:
    """3 states, 2 actions, 3 dense features with ‖φ‖ ≤ 1 and a non-uniform policy; rows enumerate
    (s, a) with counts ∝ d(s) π(a|s) so the sampled loss is the exact one."""
    rng = np.random.default_rng(7)
    phi_sad = rng.uniform(-1, 1, size=(3, 2, 3))
    phi_sad /= 1.5 * np.linalg.norm(phi_sad, axis=2, keepdims=True)
    # θ chosen so that π(·|s) is in eighths for every s: solve for logit gaps.
    gaps = np.log(np.array([3.0, 1.0 / 7.0, 5.0 / 3.0]))  # π(0|s)/π(1|s) = 3, 1/7, 5/3
    diff = phi_sad[:, 0] - phi_sad[:, 1]
    theta = np.linalg.solve(diff, gaps)
    pi = np.exp(log_softmax(phi_sad @ theta))
    q = rng.uniform(0, 5, size=(3, 2))
    counts = np.rint(8 * pi).astype(int)
    assert np.allclose(counts / 8, pi)
    rows = [(s, a) for s in range(3) for a in range(2) for _ in range(counts[s, a])]
    s_idx, a_idx = (np.array(col) for col in zip(*rows))
    return {"phi": phi_sad, "theta": theta, "pi": pi, "q": q, "s": s_idx, "a": a_idx}


@pytest.mark.parametrize("solver", ["fisher", "sgd"], ids=["fisher-solve", "projected-sgd-algorithm-3"])
def test_the_actor_returns_the_natural_gradient_direction(solver: str) -> None:
    case = policy_case()
    phi, pi, q, s, a = case["phi"], case["pi"], case["q"], case["s"], case["a"]
    advantage = q[s, a] - np.sum(pi[s] * q[s], axis=1)
    grad = grad_log_pi(phi[s], pi[s], a)
    settings = hp(
        n_features=3,
        actor_solver=solver,
        fisher_ridge=1e-12,
        actor_lr=0.5,
        actor_epochs=20000,
        actor_radius=1e3,
    )
    fitted = compatible_fit(grad, advantage, settings, np.random.default_rng(0))
    reference = natural_gradient(phi, pi, np.full(3, 1 / 3), q)
    # Algorithm 3 returns the average of K iterates, which keeps an O(1/K) share of the transient.
    tolerance = 1e-9 if solver == "fisher" else 1e-2
    assert np.linalg.norm(fitted.w_hat - reference) <= tolerance * np.linalg.norm(reference)


def test_fitting_the_soft_q_advantage_is_the_shifted_fit_plus_lambda_theta() -> None:
    # ŵ (soft Q) = w (shifted q) + λθ for log-linear policies: θ ← (1 − ηλ)θ + ηŵ is θ + η F⁻¹∇J_λ.
    case = policy_case()
    phi, pi, q, theta = case["phi"], case["pi"], case["q"], case["theta"]
    weights = np.full(3, 1 / 3)
    shifted = natural_gradient(phi, pi, weights, q)
    soft = natural_gradient(phi, pi, weights, q + LAM * np.log(pi))
    np.testing.assert_allclose(soft, shifted + LAM * theta, atol=1e-10)


def test_one_hot_and_dense_features_give_the_same_update() -> None:
    rng = np.random.default_rng(11)
    index = rng.integers(0, 12, size=(50, 3))
    index_next = rng.integers(0, 12, size=(50, 3))
    onehot, onehot_next = OneHotFeatures(index, 12), OneHotFeatures(index_next, 12)
    args = {
        "actions": rng.integers(0, 3, 50),
        "rewards": rng.uniform(size=50),
        "next_actions": rng.integers(0, 3, 50),
        "terminal": rng.uniform(size=50) < 0.2,
    }
    settings = hp(
        n_features=12, n_actions=3, critic_lr=0.5, critic_epochs=3, critic_minibatch=10, critic_shuffle=False
    )
    sparse_learner, dense_learner = NaturalActorCritic(settings), NaturalActorCritic(settings)
    for _ in range(3):
        d1 = sparse_learner.update(TransitionBatch(features=onehot, next_features=onehot_next, **args))
        d2 = dense_learner.update(
            TransitionBatch(features=onehot.dense(), next_features=onehot_next.dense(), **args)
        )
    np.testing.assert_allclose(sparse_learner.theta, dense_learner.theta, atol=1e-8)
    np.testing.assert_allclose(sparse_learner.psi_bar, dense_learner.psi_bar, atol=1e-10)
    assert d1.keys() == d2.keys()


def random_batch(
    rng: np.random.Generator, n: int = 64, d: int = 8, A: int = 3, reward_scale: float = 1.0
) -> TransitionBatch:
    phi = rng.normal(size=(n, A, d))
    phi /= np.linalg.norm(phi, axis=2, keepdims=True)
    nxt = rng.normal(size=(n, A, d))
    nxt /= np.linalg.norm(nxt, axis=2, keepdims=True)
    return TransitionBatch(
        features=phi,
        actions=rng.integers(0, A, n),
        rewards=reward_scale * rng.uniform(size=n),
        next_features=nxt,
        next_actions=rng.integers(0, A, n),
    )


@pytest.mark.parametrize(
    "critic_radius, actor_radius, solver",
    [(0.5, 0.2, "fisher"), (2.0, 1.0, "sgd"), (0.01, 0.05, "fisher")],
    ids=["small-balls-fisher", "medium-balls-sgd", "tiny-balls"],
)
def test_projections_keep_psi_w_and_theta_inside_their_balls(
    critic_radius: float, actor_radius: float, solver: str
) -> None:
    rng = np.random.default_rng(5)
    settings = NACHyperparameters(
        n_features=8,
        n_actions=3,
        gamma=0.99,
        entropy_reg=0.1,
        policy_lr=1.0,
        critic_lr=0.5,
        critic_epochs=5,
        critic_radius=critic_radius,
        actor_radius=actor_radius,
        actor_solver=solver,
        actor_lr=1.0,
        actor_epochs=5,
    )
    learner = NaturalActorCritic(settings)
    for _ in range(30):
        learner.update(random_batch(rng, reward_scale=50.0))
        assert np.linalg.norm(learner.psi) <= critic_radius * (1 + 1e-12)
        assert np.linalg.norm(learner.psi_bar) <= critic_radius * (1 + 1e-12)
        assert np.linalg.norm(learner.w_hat) <= actor_radius * (1 + 1e-12)
        # Lemma 2: ‖θ‖ ≤ R/λ follows from θ ← (1 − ηλ)θ + ηŵ.
        assert np.linalg.norm(learner.theta) <= actor_radius / settings.entropy_reg * (1 + 1e-12)


def test_learners_with_the_same_seed_make_identical_updates_and_decisions() -> None:
    settings = hp(
        n_features=8,
        n_actions=3,
        critic_minibatch=16,
        actor_solver="sgd",
        actor_minibatch=8,
        actor_lr=0.1,
        seed=4,
    )
    a, b = NaturalActorCritic(settings), NaturalActorCritic(settings)
    c = NaturalActorCritic(replace(settings, seed=5))
    for k in range(5):
        batch = random_batch(np.random.default_rng(k))
        a.update(batch), b.update(batch), c.update(batch)
    phi = random_batch(np.random.default_rng(99), n=500).features
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.act(phi), b.act(phi))
    assert not np.array_equal(a.theta, c.theta)


def test_a_restored_state_continues_exactly() -> None:
    settings = hp(n_features=8, n_actions=3)
    original = NaturalActorCritic(settings)
    original.update(random_batch(np.random.default_rng(0)))
    copy = NaturalActorCritic(settings)
    copy.load_state_dict(original.state_dict())
    batch = random_batch(np.random.default_rng(1))
    original.update(batch), copy.update(batch)
    np.testing.assert_array_equal(original.theta, copy.theta)
    phi = batch.features
    np.testing.assert_array_equal(original.act(phi), copy.act(phi))


def test_terminal_rows_do_not_bootstrap() -> None:
    # One state, one terminal transition with reward 1: q̂ must converge to r − λ log π, not grow.
    phi = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    batch = TransitionBatch(
        features=phi,
        actions=np.array([0]),
        rewards=np.array([1.0]),
        next_features=phi,
        next_actions=np.array([0]),
        terminal=np.array([True]),
    )
    learner = NaturalActorCritic(
        hp(n_features=2, gamma=1.0, critic_lr=1.0, critic_epochs=50, critic_average=False, q_max=10.0)
    )
    learner.update(batch)
    assert learner.psi_bar[0] == pytest.approx(1.0 + LAM * np.log(2.0))


@pytest.mark.parametrize(
    "field, value",
    [
        ("gamma", 1.5),
        ("policy_lr", 0.0),
        ("critic_schedule", "fast"),
        ("actor_solver", "adam"),
        ("critic_radius", 0.0),
    ],
    ids=["gamma-above-one", "zero-policy-step", "unknown-schedule", "unknown-solver", "empty-critic-ball"],
)
def test_invalid_hyperparameters_are_refused_with_the_field_name(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        hp(**{field: value})


def test_a_batch_of_the_wrong_width_is_refused_with_both_shapes() -> None:
    learner = NaturalActorCritic(hp(n_features=8, n_actions=3))
    with pytest.raises(ValueError, match=r"\(N, A=3, d=8\)"):
        learner.probabilities(np.zeros((4, 3, 7)))


def test_sampled_actions_follow_the_policy() -> None:
    probs = np.tile([0.1, 0.6, 0.3], (60_000, 1))
    counts = np.bincount(sample_from(probs, np.random.default_rng(0)), minlength=3) / 60_000
    np.testing.assert_allclose(counts, [0.1, 0.6, 0.3], atol=0.01)


def test_mean_field_step_moves_a_beta_fraction_toward_the_observation() -> None:
    np.testing.assert_allclose(
        mean_field_step(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.25), [0.75, 0.25]
    )
    with pytest.raises(ValueError, match="beta"):
        mean_field_step(np.array([1.0]), np.array([1.0]), 0.0)


def test_sparse_rows_match_their_dense_matrix() -> None:
    rng = np.random.default_rng(2)
    rows = SparseRows(rng.integers(0, 6, size=(10, 3)), rng.normal(size=(10, 3)), 6)
    dense = np.zeros((10, 6))
    np.add.at(dense, (np.repeat(np.arange(10), 3), rows.cols.ravel()), rows.vals.ravel())
    v, c = rng.normal(size=6), rng.normal(size=10)
    np.testing.assert_allclose(rows @ v, dense @ v)
    np.testing.assert_allclose(rows.rmatvec(c), dense.T @ c)
    np.testing.assert_allclose(rows.gram().toarray(), dense.T @ dense)


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """n random rows with norms spread over (0, 1], as the serverless state vectors have."""
    x = rng.normal(size=(n, d))
    return x * (rng.uniform(0.2, 1.0, size=(n, 1)) / np.linalg.norm(x, axis=1, keepdims=True))


def test_block_features_put_the_state_in_the_block_of_the_action() -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    phi = BlockFeatures(x, 3).dense()
    assert phi.shape == (2, 3, 6)
    np.testing.assert_array_equal(phi[1, 2], [0.0, 0.0, 0.0, 0.0, 3.0, 4.0])
    np.testing.assert_array_equal(phi[0, 0], [1.0, 2.0, 0.0, 0.0, 0.0, 0.0])


def test_block_features_refuse_anything_but_a_matrix_of_states() -> None:
    with pytest.raises(ValueError, match=r"BlockFeatures.x must be an \(N, d_x\) array"):
        BlockFeatures(np.zeros((4, 3, 2)), 3)


def test_kronecker_rows_match_their_dense_matrix() -> None:
    rng = np.random.default_rng(8)
    rows = KroneckerRows(rng.normal(size=(40, 4)), rng.normal(size=(40, 5)))
    dense = np.einsum("na,nj->naj", rows.weights, rows.x).reshape(40, 20)
    v, c = rng.normal(size=20), rng.normal(size=40)
    np.testing.assert_allclose(rows @ v, dense @ v, rtol=1e-12)
    np.testing.assert_allclose(rows.rmatvec(c), dense.T @ c, rtol=1e-12)
    np.testing.assert_allclose(rows.col_square_sum(), np.sum(dense**2, axis=0), rtol=1e-12)
    np.testing.assert_allclose(rows.gram(), dense.T @ dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rows.rows(slice(3, 9)) @ v, dense[3:9] @ v, rtol=1e-12)
    np.testing.assert_allclose(rows.scaled(c) @ v, c * (dense @ v), rtol=1e-12)


def tick_states(rng: np.random.Generator, n: int, d_x: int, shared: dict[int, float]) -> np.ndarray:
    """States of one tick: columns ``shared`` (index → value) hold one value in every row, as the bias
    and μ's bins do; the rest vary."""
    x = rng.normal(size=(n, d_x))
    for column, value in shared.items():
        x[:, column] = value
    return x


@pytest.mark.parametrize("shared", [{0: 1.0, 3: 0.25, 4: 0.0}, {1: 0.0, 2: 0.0}, {0: 1.0, 1: -2.0, 5: 0.5}],
                         ids=["bias-mu-and-a-zero", "zeros-only", "three-constants"])
def test_kronecker_rows_with_constant_columns_factor_them_out_and_match_their_dense_matrix(
    shared: dict[int, float],
) -> None:
    rng = np.random.default_rng(9)
    n, n_actions, d_x = FACTOR_MIN_ROWS + 17, 4, 6
    x = tick_states(rng, n, d_x, shared)
    rows = KroneckerRows(rng.normal(size=(n, n_actions)), x).factored()
    assert rows.lift is not None
    # A column of ones only when some constant is non-zero; every varying column stays.
    assert rows.u.shape[1] == d_x - len(shared) + (1 if any(shared.values()) else 0)
    np.testing.assert_allclose(rows.u @ rows.lift.T, x, rtol=0, atol=0)
    dense = np.einsum("na,nj->naj", rows.weights, x).reshape(n, n_actions * d_x)
    v, c = rng.normal(size=n_actions * d_x), rng.normal(size=n)
    np.testing.assert_allclose(rows @ v, dense @ v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rows.rmatvec(c), dense.T @ c, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rows.gram(), dense.T @ dense, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(rows.rows(slice(3, 300)) @ v, dense[3:300] @ v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rows.scaled(c).rmatvec(c), dense.T @ (c * c), rtol=1e-12, atol=1e-12)
    core, _ = rows.factored_gram()
    assert core.shape == (n_actions * rows.u.shape[1],) * 2


def test_constant_columns_are_factored_only_where_it_pays() -> None:
    rng = np.random.default_rng(10)
    few = tick_states(rng, FACTOR_MIN_ROWS - 1, 6, {0: 1.0, 1: 0.5})
    assert _factor_constant_columns(few)[1] is None
    one_constant = tick_states(rng, FACTOR_MIN_ROWS, 6, {0: 1.0})
    assert _factor_constant_columns(one_constant)[1] is None
    assert _factor_constant_columns(np.zeros((FACTOR_MIN_ROWS, 6)))[1] is None
    assert _factor_constant_columns(tick_states(rng, FACTOR_MIN_ROWS, 6, {0: 1.0, 1: 0.5}))[1] is not None


def test_taken_actions_of_factored_rows_score_as_their_dense_rows() -> None:
    rng = np.random.default_rng(11)
    n, n_actions, d_x = FACTOR_MIN_ROWS * 2, 5, 7
    phi = BlockFeatures(tick_states(rng, n, d_x, {0: 1.0, 4: 0.1, 5: 0.3}), n_actions)
    actions = rng.integers(0, n_actions, n)
    actions[actions == 3] = 2  # an action no row took: its block of Xᵀc is zero
    taken = taken_features(phi, actions)
    assert taken.lift is not None and taken.actions is not None and taken.by_action is not None
    dense = phi.dense()[np.arange(n), actions]
    v, c = rng.normal(size=n_actions * d_x), rng.normal(size=n)
    np.testing.assert_allclose(taken @ v, dense @ v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(taken.rmatvec(c), dense.T @ c, rtol=1e-12, atol=1e-12)
    part = taken.rows(np.arange(5, n, 3))
    np.testing.assert_allclose(part @ v, dense[5::3] @ v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(part.rmatvec(c[5::3]), dense[5::3].T @ c[5::3], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(taken.scaled(c).rmatvec(c), dense.T @ (c * c), rtol=1e-12, atol=1e-12)
    # ∇log π reuses the taken rows' factoring of the same x.
    probs = np.exp(log_softmax(rng.normal(size=(n, n_actions))))
    grad = grad_log_pi(phi, probs, actions, taken)
    assert grad.u is taken.u
    dense_grad = dense - np.einsum("na,nad->nd", probs, phi.dense())
    np.testing.assert_allclose(grad @ v, dense_grad @ v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("in_range", [True, False], ids=["rhs-of-the-rows", "any-rhs"])
def test_the_factored_fisher_system_has_the_dense_solution_and_trace(in_range: bool) -> None:
    rng = np.random.default_rng(12)
    n, n_actions, d_x = FACTOR_MIN_ROWS + 40, 4, 8
    rows = KroneckerRows(rng.normal(size=(n, n_actions)), tick_states(rng, n, d_x, {0: 1.0, 2: 0.2, 6: 0.0}))
    part = _FisherPart.of(rows, n)
    assert part.lift is not None
    dense = np.einsum("na,nj->naj", rows.weights, rows.x).reshape(n, n_actions * d_x)
    fisher = dense.T @ dense / n
    assert part.trace() == pytest.approx(np.trace(fisher), rel=1e-12)
    # An update's rhs lies in the rows' span; any other vector is solved as exactly.
    rhs = dense.T @ rng.normal(size=n) / n if in_range else rng.normal(size=n_actions * d_x)
    for ridge in (1e-3, 1e-1, 10.0):
        expected = np.linalg.solve(fisher + ridge * np.eye(fisher.shape[0]), rhs)
        np.testing.assert_allclose(part.solve(ridge, rhs), expected, rtol=1e-8, atol=1e-10 * np.abs(expected).max())


BLOCK_CASES = {
    "defaults-fisher": {},
    "serverless-five-td-epochs": {"critic_lr": 0.5, "critic_epochs": 5, "critic_radius": 400.0},
    "normalised-minibatched-critic-with-terminals": {
        "critic_lr": 0.5,
        "critic_epochs": 3,
        "critic_minibatch": 25,
        "critic_normalise": True,
        "critic_average": False,
    },
    "sgd-actor": {"actor_solver": "sgd", "actor_lr": 0.3, "actor_epochs": 4, "actor_minibatch": 20},
    "tiny-balls": {"critic_radius": 0.05, "actor_radius": 0.02},
}


@pytest.mark.parametrize("overrides", list(BLOCK_CASES.values()), ids=list(BLOCK_CASES))
def test_block_features_give_the_same_probabilities_updates_and_diagnostics_as_dense_ones(
    overrides: dict[str, object],
) -> None:
    rng = np.random.default_rng(21)
    n, n_actions, d_x = 100, 4, 5
    settings = NACHyperparameters(
        n_features=n_actions * d_x, n_actions=n_actions, gamma=0.95, policy_lr=2.0, seed=3, **overrides
    )
    block_learner, dense_learner = NaturalActorCritic(settings), NaturalActorCritic(settings)
    # A non-uniform policy and a non-zero critic from the start, so every piece has work to do.
    theta0, psi0 = rng.normal(size=n_actions * d_x), rng.normal(size=n_actions * d_x)
    for learner in (block_learner, dense_learner):
        learner.theta, learner.psi = theta0.copy(), psi0.copy()
    for k in range(4):
        x, x_next = unit_rows(rng, n, d_x), unit_rows(rng, n, d_x)
        args = {
            "actions": rng.integers(0, n_actions, n),
            "rewards": rng.uniform(size=n),
            "next_actions": rng.integers(0, n_actions, n),
            "terminal": (rng.uniform(size=n) < 0.2) if k % 2 else None,
        }
        block, block_next = BlockFeatures(x, n_actions), BlockFeatures(x_next, n_actions)
        np.testing.assert_allclose(
            block_learner.probabilities(block), dense_learner.probabilities(block.dense()), atol=1e-10
        )
        d_block = block_learner.update(TransitionBatch(features=block, next_features=block_next, **args))
        d_dense = dense_learner.update(
            TransitionBatch(features=block.dense(), next_features=block_next.dense(), **args)
        )
        assert d_block.keys() == d_dense.keys()
        for key in d_block:
            assert d_block[key] == pytest.approx(d_dense[key], abs=1e-10), key
        for name in ("theta", "psi", "psi_bar", "w_hat"):
            np.testing.assert_allclose(getattr(block_learner, name), getattr(dense_learner, name), atol=1e-10)
    # The updates moved the policy: the agreement is not that of two learners standing still.
    assert np.linalg.norm(block_learner.theta - theta0) > 1e-2


def test_the_block_feature_natural_gradient_reference_matches_the_dense_one() -> None:
    rng = np.random.default_rng(4)
    block = BlockFeatures(unit_rows(rng, 6, 3), 3)
    probs = rng.dirichlet(np.ones(3), size=6)
    weights, q = rng.dirichlet(np.ones(6)), rng.uniform(size=(6, 3))
    np.testing.assert_allclose(
        natural_gradient(block, probs, weights, q, ridge=1e-6),
        natural_gradient(block.dense(), probs, weights, q, ridge=1e-6),
        atol=1e-12,
    )


def test_a_large_batch_estimates_the_fisher_matrix_on_a_sample_of_its_rows_and_a_small_one_on_all() -> None:
    rng = np.random.default_rng(11)
    n, n_actions, d_x = 6000, 4, 5
    probs = rng.dirichlet(np.ones(n_actions), size=n)
    taken = np.array([rng.choice(n_actions, p=p) for p in probs])
    grad = KroneckerRows(np.eye(n_actions)[taken] - probs, rng.normal(size=(n, d_x)))
    advantage = rng.normal(size=n)
    every = compatible_fit(grad, advantage, hp(n_features=n_actions * d_x, fisher_rows=0), np.random.default_rng(0))
    sampled = compatible_fit(grad, advantage, hp(n_features=n_actions * d_x, fisher_rows=1500),
                             np.random.default_rng(0))
    # A sample of 1500 rows estimates F closely: the direction moves little, but it does move.
    assert 0 < np.linalg.norm(sampled.w_hat - every.w_hat) < 0.2 * np.linalg.norm(every.w_hat)
    small = grad.rows(slice(0, 1000))
    assert np.array_equal(
        compatible_fit(small, advantage[:1000], hp(n_features=n_actions * d_x, fisher_rows=1500),
                       np.random.default_rng(0)).w_hat,
        compatible_fit(small, advantage[:1000], hp(n_features=n_actions * d_x, fisher_rows=0),
                       np.random.default_rng(0)).w_hat)
    with pytest.raises(ValueError, match="fisher_rows"):
        hp(n_features=3, fisher_rows=-1)


def test_a_learner_on_one_ticks_states_learns_as_on_dense_features() -> None:
    # Enough rows, and the bias and μ shared by every row: the block learner factors them out of its
    # critic products and its Fisher system; the dense learner forms every product in full.
    rng = np.random.default_rng(22)
    n, n_actions, d_x = FACTOR_MIN_ROWS + 60, 4, 7
    settings = NACHyperparameters(
        n_features=n_actions * d_x, n_actions=n_actions, gamma=0.95, policy_lr=2.0, seed=3,
        critic_lr=0.5, critic_epochs=5, critic_radius=400.0, fisher_rows=FACTOR_MIN_ROWS + 10,
    )
    block_learner, dense_learner = NaturalActorCritic(settings), NaturalActorCritic(settings)
    theta0, psi0 = rng.normal(size=n_actions * d_x), rng.normal(size=n_actions * d_x)
    for learner in (block_learner, dense_learner):
        learner.theta, learner.psi = theta0.copy(), psi0.copy()
    for tick in range(3):
        mu = rng.dirichlet(np.ones(2))
        shared = {0: 1.0, 5: mu[0], 6: mu[1]}
        x, x_next = tick_states(rng, n, d_x, shared), tick_states(rng, n, d_x, {0: 1.0, 5: mu[1], 6: mu[0]})
        args = {"actions": rng.integers(0, n_actions, n), "rewards": rng.uniform(size=n),
                "next_actions": rng.integers(0, n_actions, n)}
        block, block_next = BlockFeatures(x, n_actions), BlockFeatures(x_next, n_actions)
        assert taken_features(block, args["actions"]).lift is not None
        d_block = block_learner.update(TransitionBatch(features=block, next_features=block_next, **args))
        d_dense = dense_learner.update(TransitionBatch(features=block.dense(), next_features=block_next.dense(), **args))
        for key in d_block:
            assert d_block[key] == pytest.approx(d_dense[key], rel=1e-8, abs=1e-10), (tick, key)
        for name in ("theta", "psi", "psi_bar", "w_hat"):
            np.testing.assert_allclose(getattr(block_learner, name), getattr(dense_learner, name), rtol=1e-8, atol=1e-10)
    assert np.linalg.norm(block_learner.theta - theta0) > 1e-2


def test_the_factored_fisher_system_falls_back_to_lu_when_cholesky_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # A ridge lost in S's rounding leaves the system not positive definite in floating point; then LU
    # solves it, to the same answer where both can.
    from policies import nac

    rng = np.random.default_rng(13)
    n, n_actions, d_x = FACTOR_MIN_ROWS + 4, 4, 8
    rows = KroneckerRows(rng.normal(size=(n, n_actions)), tick_states(rng, n, d_x, {0: 1.0, 2: 0.2}))
    part = _FisherPart.of(rows, n)
    rhs = rows.rmatvec(rng.normal(size=n)) / n
    ridge = 1e-3 * part.trace() / rhs.size
    expected = part.solve(ridge, rhs)

    def refuse(*args: object, **kwargs: object) -> None:
        raise np.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(nac.scipy_linalg, "cho_factor", refuse)
    np.testing.assert_allclose(part.solve(ridge, rhs), expected, rtol=1e-10, atol=1e-12)


def _block_batch(rng: np.random.Generator, x: np.ndarray, x_next: np.ndarray, n_actions: int) -> TransitionBatch:
    n = x.shape[0]
    return TransitionBatch(features=BlockFeatures(x, n_actions), actions=rng.integers(0, n_actions, n),
                           rewards=rng.uniform(size=n), next_features=BlockFeatures(x_next, n_actions),
                           next_actions=rng.integers(0, n_actions, n))


def test_the_exact_shift_is_the_fitted_one_when_the_batch_determines_w() -> None:
    rng = np.random.default_rng(21)
    n_actions, d_x = 3, 4
    theta = rng.normal(size=n_actions * d_x)
    batches = [_block_batch(rng, rng.uniform(size=(400, d_x)) / 2, rng.uniform(size=(400, d_x)) / 2, n_actions)
               for _ in range(3)]
    settings = hp(n_features=n_actions * d_x, n_actions=n_actions, critic_lr=0.5, critic_epochs=3, fisher_ridge=1e-12)
    fitted, exact = NaturalActorCritic(settings), NaturalActorCritic(replace(settings, exact_shift=True))
    for learner in (fitted, exact):
        learner.theta = theta.copy()
        for batch in batches:
            learner.update(batch)
    # θ is determined up to a vector added to every action's block, which leaves π unchanged: the fitted
    # shift shrinks that part too (the batch says nothing about it), so the policies are compared.
    def centred(v: np.ndarray) -> np.ndarray:
        block = v.reshape(n_actions, d_x)
        return block - block.mean(axis=0)

    np.testing.assert_allclose(centred(exact.theta), centred(fitted.theta), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(centred(exact.w_hat), centred(fitted.w_hat), rtol=1e-7, atol=1e-9)
    assert not np.allclose(exact.theta, fitted.theta)


def test_the_fitted_shift_shrinks_theta_where_the_batch_says_nothing_and_the_exact_one_does_not() -> None:
    rng = np.random.default_rng(22)
    n_actions, d_x = 3, 4
    # Every state has x's last entry 0: the batch carries no evidence about θ's weights on it.
    x = np.column_stack([rng.uniform(size=(200, d_x - 1)) / 2, np.zeros(200)])
    batch = _block_batch(rng, x, x[::-1].copy(), n_actions)
    theta = rng.normal(size=n_actions * d_x)
    settings = hp(n_features=n_actions * d_x, n_actions=n_actions, critic_lr=0.5, policy_lr=0.5)
    fitted, exact = NaturalActorCritic(settings), NaturalActorCritic(replace(settings, exact_shift=True))
    for learner in (fitted, exact):
        learner.theta = theta.copy()
        learner.update(batch)
    unseen = np.arange(n_actions) * d_x + d_x - 1
    np.testing.assert_allclose(fitted.theta[unseen], (1 - 0.5 * settings.entropy_reg) * theta[unseen], rtol=1e-9)
    np.testing.assert_allclose(exact.theta[unseen], theta[unseen], rtol=1e-9)
    assert not np.allclose(exact.theta, theta)  # it still learns where the batch has evidence


def test_the_state_critic_converges_to_the_exact_soft_state_value() -> None:
    m = small_mdp()
    S, A = m["r"].shape
    tabular = enumerated_batch(m["P"], m["r"], m["pi"])
    # The same transitions with block features: x(s) is the state's one-hot vector.
    states = tabular.features.argmax(axis=2)[:, 0] // A
    next_states = tabular.next_features.argmax(axis=2)[:, 0] // A
    batch = TransitionBatch(BlockFeatures(np.eye(S)[states], A), tabular.actions, tabular.rewards,
                            BlockFeatures(np.eye(S)[next_states], A), tabular.next_actions)
    learner = NaturalActorCritic(hp(state_critic=True, critic_lr=0.5, critic_epochs=2000, critic_average=False))
    learner.theta = np.log(m["pi"]).T.reshape(-1)  # action a's block holds log π(a|s) at entry s
    np.testing.assert_allclose(learner.probabilities(batch.features), m["pi"][states], rtol=1e-12)
    learner.update(batch)
    q = exact_shifted_q(m["P"], m["r"], m["pi"])
    np.testing.assert_allclose(learner.v, np.sum(m["pi"] * q, axis=1), rtol=1e-6)
    assert np.all(learner.psi == 0)


def test_the_state_critic_does_not_multiply_what_the_features_miss_by_the_horizon() -> None:
    """Two states the features cannot tell apart, each kept for long, one rewarded; the policy nearly always
    takes action 0 in the rewarded one and action 1 in the other, and the actions change nothing. Each of the
    action critic's blocks bootstraps from itself, so the state's value is read into the action's weight over
    the horizon; the state critic's residual carries only the tick's own reward difference."""
    rng = np.random.default_rng(5)
    n, gamma = 4000, 0.95
    state = rng.integers(0, 2, n)
    next_state = np.where(rng.random(n) < 0.995, state, 1 - state)

    def draw(s: np.ndarray) -> np.ndarray:
        return np.where(rng.random(s.shape[0]) < 0.99, s, 1 - s)  # action = state, 99% of the time

    actions, next_actions = draw(state), draw(next_state)
    x = np.ones((n, 1)) / 2
    batch = TransitionBatch(BlockFeatures(x, 2), actions, (state == 0).astype(float), BlockFeatures(x, 2),
                            next_actions)
    contrast = {}
    for state_critic in (False, True):
        learner = NaturalActorCritic(hp(n_features=2, gamma=gamma, entropy_reg=1e-6, state_critic=state_critic,
                                        critic_lr=1.0, critic_epochs=3000, critic_average=False, exact_shift=True))
        learner.update(batch)
        contrast[state_critic] = learner.w_hat[0] - learner.w_hat[1]
    # After action 0 the tick's reward is higher by 0.98 on average, which the fit on ∇log π = ±x/2 reads as
    # a contrast of 0.98 / 0.5; an action repeats with probability ~0.98, so the action critic's fixed point
    # is that over 1 − γ(2·0.98 − 1), about ten times as much.
    assert 1.5 < contrast[True] < 2.5
    assert contrast[False] > 5 * contrast[True]


def test_the_state_critic_is_saved_and_restored_and_refuses_features_without_blocks() -> None:
    rng = np.random.default_rng(6)
    n_actions, d_x = 3, 4
    batch = _block_batch(rng, rng.uniform(size=(50, d_x)) / 2, rng.uniform(size=(50, d_x)) / 2, n_actions)
    settings = hp(n_features=n_actions * d_x, n_actions=n_actions, state_critic=True, critic_lr=0.5)
    learner = NaturalActorCritic(settings)
    learner.update(batch)
    assert learner.v.shape == (d_x,) and np.linalg.norm(learner.v_bar) > 0
    copy = NaturalActorCritic(settings)
    copy.load_state_dict(learner.state_dict())
    np.testing.assert_array_equal(copy.v_bar, learner.v_bar)
    np.testing.assert_array_equal(copy.v, learner.v)
    assert "v" not in NaturalActorCritic(replace(settings, state_critic=False)).state_dict()
    without = NaturalActorCritic(replace(settings, state_critic=False)).state_dict()
    with pytest.raises(ValueError, match="saved without state_critic"):
        copy.load_state_dict(without)
    wrong = {**learner.state_dict(), "v": np.zeros(d_x + 1)}
    with pytest.raises(ValueError, match="'v' has shape"):
        copy.load_state_dict(wrong)
    dense = TransitionBatch(batch.features.dense(), batch.actions, batch.rewards, batch.next_features.dense(),
                            batch.next_actions)
    with pytest.raises(ValueError, match="block features"):
        learner.update(dense)
    with pytest.raises(ValueError, match="state_critic"):
        hp(n_features=7, n_actions=3, state_critic=True)
