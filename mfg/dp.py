"""Exact evaluation of policies in a mean-field game by dynamic programming with the model.

This is the paper's exploitability (supplement App. D):

    E(pi) = max_pi' V^{pi', lam}_{mu_pi}(rho) - V^{pi, lam}_{mu_pi}(rho),

where mu_pi is the mean field the policy generates and V is the entropy-regularised ("soft") value
in the game's own reward units:

    Q^{pi,lam}_mu(s, a) = r(s, a, mu) + gamma E_{s' ~ P(.|s,a,mu)} V^{pi,lam}_mu(s'),
    V^{pi,lam}_mu(s)    = E_{a ~ pi(.|s)} [Q^{pi,lam}_mu(s, a) - lam log pi(a|s)]       (0 log 0 = 0).

Two settings:

* :class:`FiniteHorizon` -- decision epochs t = 0..T, policies pi_t (shape (T+1, S, A)), the mean
  field is the flow mu_{t+1} = Gamma_2(pi_t, mu_t) from mu_0, no discount, Q_T = r_T.
* :class:`Discounted` -- the paper's stationary setting: one policy (S, A), the mean field is the
  stationary point mu = Gamma_2(pi, mu) reached by the population dynamics started at rho, values
  discounted by gamma and read at rho.

The best response Gamma_1^lam(mu) is the Boltzmann policy of the soft-optimal Q (pi ~ exp(Q*/lam))
for lam > 0, and the greedy policy (ties split evenly) for lam = 0. Everything is vectorised over
states and actions; the only Python loops run over decision epochs or solver iterations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import xlogy

from mfg.model import MeanFieldGame

#: A policy row may miss 1 by this much (float32 softmax outputs miss by ~1e-7); it is never
#: renormalised, so the values computed are those of the array as given.
POLICY_SUM_TOL = 1e-6
#: Same for a distribution (mu0, rho) given by a user.
DISTRIBUTION_SUM_TOL = 1e-9
#: Relative gap under which two Q values count as tied for the lam = 0 best response; it only
#: absorbs float rounding, so symmetric games give symmetric greedy policies.
TIE_RTOL = 1e-12
#: Stationary mean field: stop when ||mu - Gamma_2(pi, mu)||_1 is below this.
STATIONARY_TOL = 1e-14
#: Stationary best response / policy value: stop when successive values differ by at most this
#: (relative to max(1, |V|)).
VALUE_TOL = 1e-12


class PolicyArrayError(ValueError):
    """A policy array that is not a valid policy of the game in this setting; the message says why."""


class DistributionError(ValueError):
    """An initial distribution (mu0 / rho) that is not a distribution over the game's states."""


class ConvergenceError(RuntimeError):
    """An iterative solve that did not reach its tolerance; the message gives the residual."""


@dataclass(frozen=True, eq=False)
class FiniteHorizon:
    """Decision epochs t = 0..horizon, undiscounted; the mean field is the flow from mu0."""

    horizon: int = 50
    """Last decision epoch T (so T + 1 rewards are collected); Cui & Koeppl's SIS uses 50."""
    mu0: np.ndarray | None = None
    """Initial distribution of the flow and of V(mu0); None means the game's own ``mu0``."""

    def __post_init__(self) -> None:
        if (
            isinstance(self.horizon, bool)
            or not isinstance(self.horizon, (int, np.integer))
            or self.horizon < 0
        ):
            raise ValueError(f"FiniteHorizon.horizon={self.horizon!r} must be an integer >= 0")
        if self.mu0 is not None:
            object.__setattr__(self, "mu0", _frozen_float_array(self.mu0))


@dataclass(frozen=True, eq=False)
class Discounted:
    """Infinite horizon with discount gamma; the mean field is stationary (the paper's setting)."""

    gamma: float = 0.9
    """Discount factor in [0, 1); 0.9 keeps the effective horizon (10 steps) short enough that
    exact solves and learning curves are cheap."""
    rho: np.ndarray | None = None
    """Initial distribution: where V(rho) is read and where the population dynamics start when
    looking for the stationary mean field; None means the game's own ``mu0``."""

    def __post_init__(self) -> None:
        if not (0.0 <= float(self.gamma) < 1.0):
            raise ValueError(f"Discounted.gamma={self.gamma!r} must be in [0, 1)")
        if self.rho is not None:
            object.__setattr__(self, "rho", _frozen_float_array(self.rho))


Setting = FiniteHorizon | Discounted


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Everything :func:`evaluate` computes for one policy, in the game's reward units."""

    exploitability: float
    """V^{BR}(rho) - V^{pi}(rho) under the policy's own mean field; >= 0 up to float rounding."""
    policy_value: float
    """V^{pi, lam}_{mu_pi}(rho)."""
    best_response_value: float
    """max_pi' V^{pi', lam}_{mu_pi}(rho)."""
    mean_field: np.ndarray
    """mu_pi: the flow (T+1, S) or the stationary distribution (S,)."""
    best_response: np.ndarray
    """Gamma_1^lam(mu_pi), same shape as the policy array of the setting."""


def _frozen_float_array(values: object) -> np.ndarray:
    array = np.array(values, dtype=float, copy=True)
    array.setflags(write=False)
    return array


def initial_distribution(game: MeanFieldGame, setting: Setting) -> np.ndarray:
    """The setting's mu0 / rho (or the game's mu0), checked to be a distribution over its states."""
    given = setting.mu0 if isinstance(setting, FiniteHorizon) else setting.rho
    name = "mu0" if isinstance(setting, FiniteHorizon) else "rho"
    if given is None:
        return np.asarray(game.mu0, dtype=float)
    mu = np.asarray(given, dtype=float)
    S = game.n_states
    if mu.shape != (S,):
        raise DistributionError(f"{name} has shape {mu.shape}; game {game.spec.name!r} has {S} states")
    if not np.all(np.isfinite(mu)):
        raise DistributionError(f"{name} has a non-finite entry: {mu.tolist()}")
    if np.any(mu < 0):
        raise DistributionError(f"{name} has a negative entry: {mu.tolist()}")
    if abs(mu.sum() - 1.0) > DISTRIBUTION_SUM_TOL:
        raise DistributionError(f"{name} sums to {mu.sum():.12g}, not 1 (tolerance {DISTRIBUTION_SUM_TOL:g})")
    return mu


def as_policy_array(policy: object, game: MeanFieldGame, setting: Setting) -> np.ndarray:
    """Check a policy array and return it as float64 (T+1, S, A) (finite horizon) or (S, A).

    A stationary (S, A) array is broadcast over the epochs of a finite horizon; a time-varying
    (T+1, S, A) array is refused in the discounted setting. Wrong shape, non-finite or negative
    entries and rows that do not sum to 1 (within ``POLICY_SUM_TOL``) raise
    :class:`PolicyArrayError` naming the first offending epoch, state and action; nothing is fixed.
    """
    S, A = game.n_states, game.n_actions
    pi = np.asarray(policy, dtype=float)
    actions = ", ".join(game.spec.action_names)
    if isinstance(setting, FiniteHorizon):
        T1 = setting.horizon + 1
        if pi.shape != (S, A) and pi.shape != (T1, S, A):
            raise PolicyArrayError(
                f"policy has shape {pi.shape}; game {game.spec.name!r} with horizon {setting.horizon} needs "
                f"(T+1, S, A) = {(T1, S, A)} or stationary (S, A) = {(S, A)} (actions in order: {actions})"
            )
    elif pi.shape != (S, A):
        raise PolicyArrayError(
            f"policy has shape {pi.shape}; game {game.spec.name!r} in the discounted setting needs a "
            f"stationary (S, A) = {(S, A)} array (actions in order: {actions})"
        )
    grid = pi.reshape(-1, S, A)

    def where(t: int, s: int) -> str:
        epoch = f"t={t}, " if pi.ndim == 3 else ""
        return f"{epoch}s={s} ({game.spec.state_names[s]})"

    finite = np.isfinite(grid)
    if not finite.all():
        t, s, a = np.argwhere(~finite)[0]
        count = int((~finite).sum())
        raise PolicyArrayError(
            f"policy has {count} non-finite entr{'y' if count == 1 else 'ies'}; first at {where(t, s)}, "
            f"a={a} ({game.spec.action_names[a]}): {float(grid[t, s, a])}"
        )
    if (grid < 0).any():
        t, s, a = np.argwhere(grid < 0)[0]
        count = int((grid < 0).sum())
        raise PolicyArrayError(
            f"policy has {count} negative entr{'y' if count == 1 else 'ies'}; first at {where(t, s)}, "
            f"a={a} ({game.spec.action_names[a]}): {float(grid[t, s, a]):.12g}"
        )
    sums = grid.sum(axis=-1)
    bad = np.abs(sums - 1.0) > POLICY_SUM_TOL
    if bad.any():
        t, s = np.argwhere(bad)[0]
        count = int(bad.sum())
        raise PolicyArrayError(
            f"policy rows must sum to 1 (tolerance {POLICY_SUM_TOL:g}); {count} {'does' if count == 1 else 'do'} not, first at "
            f"{where(t, s)}: sum {float(sums[t, s]):.12g}"
        )
    if isinstance(setting, FiniteHorizon) and pi.shape == (S, A):
        # Checked as given (one row per state, so one bad entry is reported once), then used at every epoch.
        pi = np.broadcast_to(pi, (setting.horizon + 1, S, A))
    return pi


def _check_mean_field(game: MeanFieldGame, mf: np.ndarray, setting: Setting) -> np.ndarray:
    mf = np.asarray(mf, dtype=float)
    S = game.n_states
    expected = (setting.horizon + 1, S) if isinstance(setting, FiniteHorizon) else (S,)
    if mf.shape != expected:
        raise ValueError(f"mean field has shape {mf.shape}; this setting needs {expected}")
    return mf


def mean_field_flow(game: MeanFieldGame, policy: object, setting: Setting) -> np.ndarray:
    """mu_pi: the flow (T+1, S) from mu0, or the stationary distribution (S,) reached from rho."""
    pi = as_policy_array(policy, game, setting)
    mu0 = initial_distribution(game, setting)
    if isinstance(setting, FiniteHorizon):
        return game.flow(mu0, pi)
    return stationary_mean_field(game, pi, mu0)


def stationary_mean_field(
    game: MeanFieldGame,
    policy: np.ndarray,
    rho: np.ndarray,
    *,
    tol: float = STATIONARY_TOL,
    warm_steps: int = 200,
    max_newton_steps: int = 50,
    max_steps: int = 200_000,
) -> np.ndarray:
    """The fixed point mu = Gamma_2(pi, mu) that the population dynamics started at rho converge to.

    Where several fixed points exist (SIS has the disease-free mu(I) = 0 besides the endemic one),
    the one reached from rho is the one a population following pi settles in, and the one a
    learner's slow mean-field updates track. Method: ``warm_steps`` plain steps of Gamma_2 from rho
    pick the basin (stopping early once an increment is below tol); then Newton's method on
    F(mu) = Gamma_2(pi, mu) - mu in the simplex's coordinates (the last entry is 1 - the others),
    with a central-difference Jacobian, which is exact to rounding for games whose Gamma_2 is at
    most quadratic in mu (SIS, LQ). It stops when a Newton step is below tol in l1 (Newton's step
    estimates the distance to the root, which a small residual does not where the Jacobian is
    nearly singular) and the residual is within 100 tol. If Newton fails (singular Jacobian, a step that leaves the simplex, no
    convergence), plain iteration continues up to ``max_steps`` and :class:`ConvergenceError` is
    raised if even that misses ``tol``.
    """
    mu = np.array(rho, dtype=float)
    for _ in range(warm_steps):
        nxt = game.push_forward(mu, policy)
        converged = np.abs(nxt - mu).sum() <= tol
        mu = nxt
        if converged:
            break
    # A small increment is not a small error when Gamma_2 contracts slowly (rate near 1, e.g. SIS
    # near its epidemic threshold), so the point is always polished by Newton, whose last step
    # measures the distance to the root.
    newton = _newton_stationary(game, policy, mu, tol, max_newton_steps)
    if newton is not None:
        return newton
    residual = np.inf
    for _ in range(max_steps):
        nxt = game.push_forward(mu, policy)
        residual = np.abs(nxt - mu).sum()
        mu = nxt
        if residual <= tol:
            return mu
    raise ConvergenceError(
        f"stationary mean field not found: ||Gamma_2(pi, mu) - mu||_1 = {residual:.3e} > {tol:g} "
        f"after {warm_steps} + {max_steps} steps and a failed Newton solve"
    )


def _newton_stationary(
    game: MeanFieldGame, policy: np.ndarray, mu: np.ndarray, tol: float, max_steps: int
) -> np.ndarray | None:
    """Newton on F(x) = Gamma_2(pi, mu(x)) - mu(x), x = mu[:-1]; None if it fails (see caller)."""
    S = mu.size
    if S == 1:
        return np.ones(1)

    def full(x: np.ndarray) -> np.ndarray:
        return np.append(x, 1.0 - x.sum())

    def residual(x: np.ndarray) -> np.ndarray:
        m = full(x)
        return (game.push_forward(m, policy) - m)[:-1]

    x = mu[:-1].copy()
    h = 1e-6
    eye = np.eye(S - 1) * h
    for _ in range(max_steps):
        F = residual(x)
        J = np.column_stack([(residual(x + e) - residual(x - e)) / (2 * h) for e in eye])
        try:
            step = np.linalg.solve(J, -F)
        except np.linalg.LinAlgError:
            return None
        x = x + step
        if not np.all(np.isfinite(x)) or full(x).min() < -1e-9:
            return None
        if np.abs(step).sum() <= tol:
            m = full(x)
            if np.abs(game.push_forward(m, policy) - m).sum() > 100 * tol:
                return None
            return m
    return None


def game_models(game: MeanFieldGame, mf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The game's transition kernel P and reward r at mean field ``mf``, as float arrays."""
    return np.asarray(game.transition(mf), dtype=float), np.asarray(game.reward(mf), dtype=float)


def _soft_reward(pi: np.ndarray, r: np.ndarray, lam: float) -> np.ndarray:
    """E_{a~pi}[r - lam log pi], vectorised over all leading axes (0 log 0 = 0)."""
    out = (pi * r).sum(axis=-1)
    if lam:
        out -= lam * xlogy(pi, pi).sum(axis=-1)
    return out


def _check_lam(lam: float) -> float:
    lam = float(lam)
    if not (lam >= 0 and np.isfinite(lam)):
        raise ValueError(f"lam={lam!r} must be a finite number >= 0")
    return lam


def policy_value(
    game: MeanFieldGame, policy: object, mf: np.ndarray, setting: Setting, lam: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Soft values (V, Q) of a policy in the environment induced by a fixed mean field ``mf``.

    Finite horizon: V (T+1, S), Q (T+1, S, A) by backward induction, Q_T = r_T. Discounted: V (S,),
    Q (S, A) from the linear system (I - gamma P_pi) V = E_pi[r - lam log pi], solved exactly.
    """
    lam = _check_lam(lam)
    pi = as_policy_array(policy, game, setting)
    mf = _check_mean_field(game, mf, setting)
    P, r = game_models(game, mf)
    if isinstance(setting, FiniteHorizon):
        return _finite_policy_value(pi, P, r, lam)
    return _discounted_policy_value(pi, P, r, lam, setting.gamma)


def _finite_policy_value(
    pi: np.ndarray, P: np.ndarray, r: np.ndarray, lam: float
) -> tuple[np.ndarray, np.ndarray]:
    # V_t = E_pi[r_t - lam log pi_t] + P_pi_t V_{t+1}: the per-epoch kernels P_pi_t are built for all
    # t at once, so the backward loop is one matrix-vector product per epoch.
    T1, S, _ = pi.shape
    r_pi = _soft_reward(pi, r, lam)
    P_pi = np.einsum("tsa,tsaj->tsj", pi[:-1], P[:-1])
    V = np.empty((T1, S))
    V[-1] = r_pi[-1]
    for t in range(T1 - 2, -1, -1):
        V[t] = r_pi[t] + P_pi[t] @ V[t + 1]
    Q = r.copy()
    Q[:-1] += np.einsum("tsaj,tj->tsa", P[:-1], V[1:])
    return V, Q


def _discounted_policy_value(
    pi: np.ndarray, P: np.ndarray, r: np.ndarray, lam: float, gamma: float
) -> tuple[np.ndarray, np.ndarray]:
    S = pi.shape[0]
    P_pi = np.einsum("sa,saj->sj", pi, P)
    V = np.linalg.solve(np.eye(S) - gamma * P_pi, _soft_reward(pi, r, lam))
    Q = r + gamma * (P @ V)
    return V, Q


def _greedy(Q: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Gamma_1 at one Q: (policy, soft-optimal V) along the last axis.

    lam > 0: pi = softmax(Q / lam), V = lam logsumexp(Q / lam) = max_pi E_pi[Q - lam log pi].
    lam = 0: pi uniform over the argmax set (ties within TIE_RTOL), V = max Q.
    """
    m = Q.max(axis=-1, keepdims=True)
    if lam > 0:
        z = np.exp((Q - m) / lam)
        total = z.sum(axis=-1, keepdims=True)
        return z / total, (m + lam * np.log(total))[..., 0]
    best = Q >= m - TIE_RTOL * np.maximum(1.0, np.abs(m))
    return best / best.sum(axis=-1, keepdims=True), m[..., 0]


def best_response(
    game: MeanFieldGame, mf: np.ndarray, setting: Setting, lam: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Gamma_1^lam(mf): the soft best response to a fixed mean field and its soft-optimal value V.

    Finite horizon: backward induction, policy (T+1, S, A), V (T+1, S). Discounted: soft policy
    iteration (each step an exact linear solve; greedy/Boltzmann improvement), stopped when the
    value changes by at most VALUE_TOL (relative); policy (S, A), V (S,).
    """
    lam = _check_lam(lam)
    mf = _check_mean_field(game, mf, setting)
    P, r = game_models(game, mf)
    if isinstance(setting, FiniteHorizon):
        return finite_best_response(P, r, lam)
    return discounted_best_response(P, r, lam, setting.gamma)


def finite_best_response(P: np.ndarray, r: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """The λ-regularised best response of a finite-horizon model (P, r): (policy, value), by backward
    induction."""
    # The backward loop keeps only what the recursion needs (Q_t and its soft maximum V_t); the
    # policies of all epochs are formed afterwards in one vectorised call. This keeps the loop at
    # three numpy calls per epoch, which is what the 1 ms SIS budget allows.
    T1, S, _ = r.shape
    Q = r.copy()
    V = np.empty((T1, S))
    soft_max = _soft_max(lam)
    soft_max(Q[-1], V[-1])
    for t in range(T1 - 2, -1, -1):
        Q[t] += P[t] @ V[t + 1]
        soft_max(Q[t], V[t])
    return _greedy(Q, lam)[0], V


def _soft_max(lam: float):
    """V = max_a Q (lam = 0) or lam logsumexp(Q / lam), written into ``out``."""
    if lam == 0:
        return lambda Q, out: Q.max(axis=-1, out=out)

    def soft(Q: np.ndarray, out: np.ndarray) -> None:
        m = Q.max(axis=-1)
        out[...] = m + lam * np.log(np.exp((Q - m[..., None]) / lam).sum(axis=-1))

    return soft


def discounted_best_response(
    P: np.ndarray, r: np.ndarray, lam: float, gamma: float, max_iterations: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """The λ-regularised best response of a discounted model (P, r): (policy, value), by soft policy
    iteration."""
    # Policy iteration is Newton's method on the (soft) Bellman equation: it converges in a few
    # exact solves, where value iteration would need log(tol) / log(gamma) sweeps.
    pi, _ = _greedy(r, lam)
    V, Q = _discounted_policy_value(pi, P, r, lam, gamma)
    change = np.inf
    for _ in range(max_iterations):
        pi, _ = _greedy(Q, lam)
        V_new, Q = _discounted_policy_value(pi, P, r, lam, gamma)
        change = np.abs(V_new - V).max()
        V = V_new
        if change <= VALUE_TOL * max(1.0, np.abs(V).max()):
            return pi, V
    raise ConvergenceError(
        f"discounted best response: policy iteration changed V by {change:.3e} after {max_iterations} steps"
    )


def evaluate(game: MeanFieldGame, policy: object, setting: Setting, lam: float = 0.0) -> Evaluation:
    """Exploitability of ``policy`` and the two values it is the difference of (see module doc)."""
    lam = _check_lam(lam)
    pi = as_policy_array(policy, game, setting)
    mu0 = initial_distribution(game, setting)
    if isinstance(setting, FiniteHorizon):
        mf = game.flow(mu0, pi)
        P, r = game_models(game, mf)
        V_pi, _ = _finite_policy_value(pi, P, r, lam)
        br, V_br = finite_best_response(P, r, lam)
        v_pi, v_br = float(mu0 @ V_pi[0]), float(mu0 @ V_br[0])
    else:
        mf = stationary_mean_field(game, pi, mu0)
        P, r = game_models(game, mf)
        V_pi, _ = _discounted_policy_value(pi, P, r, lam, setting.gamma)
        br, V_br = discounted_best_response(P, r, lam, setting.gamma)
        v_pi, v_br = float(mu0 @ V_pi), float(mu0 @ V_br)
    return Evaluation(
        exploitability=v_br - v_pi,
        policy_value=v_pi,
        best_response_value=v_br,
        mean_field=mf,
        best_response=br,
    )


def exploitability(game: MeanFieldGame, policy: object, setting: Setting, lam: float = 0.0) -> float:
    """E(pi) = V^{BR, lam}_{mu_pi}(rho) - V^{pi, lam}_{mu_pi}(rho), in the game's own reward units.

    Non-negative in exact arithmetic; float rounding can make it about -1e-15 times the value scale,
    and it is returned as computed, never clipped.
    """
    return evaluate(game, policy, setting, lam).exploitability
