"""The paper's two toy mean-field games as exact models: SIS epidemics and linear-quadratic.

Both follow the supplement's Appendix D (Mao et al., NeurIPS 2022). Every parameter is a field of a
frozen dataclass, so a variant is ``SISGame(recovery_prob=0.2)`` or ``make_game("sis",
recovery_prob=0.2)``. Models are vectorised: ``transition`` and ``reward`` accept one distribution
(S,) or a stack (..., S) (see :mod:`mfg.model`).

Rewards are in each game's own units (SIS: costs in [-1.5, 0]); ``reward_range`` gives exact bounds
for rescaling into [0, 1] where the theory needs rewards there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtr

from mfg.model import GameSpec, MeanFieldGame

#: Tolerance on the sum of a user-given initial distribution (float rounding of typed decimals).
DISTRIBUTION_SUM_TOL = 1e-9


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _checked_mu0(name: str, values: Any, n_states: int) -> np.ndarray:
    mu0 = np.array(values, dtype=float, copy=True).reshape(-1)
    if mu0.shape != (n_states,):
        raise ValueError(f"{name}: mu0 has {mu0.size} entries; the game has {n_states} states")
    if not np.all(np.isfinite(mu0)):
        raise ValueError(f"{name}: mu0 has a non-finite entry: {mu0.tolist()}")
    if np.any(mu0 < 0):
        raise ValueError(f"{name}: mu0 has a negative entry: {mu0.tolist()}")
    if abs(mu0.sum() - 1.0) > DISTRIBUTION_SUM_TOL:
        raise ValueError(f"{name}: mu0 sums to {mu0.sum():.12g}, not 1")
    return _read_only(mu0)


def _check_probability(name: str, key: str, value: float) -> None:
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name}: {key}={value!r} is not a probability in [0, 1]")


@dataclass(frozen=True, eq=False)
class SISGame(MeanFieldGame):
    """SIS epidemics (supplement App. D, after Cui & Koeppl 2021).

    States (S, I) = (susceptible, infected); actions (D, U) = (social distancing, go out), in that
    order in every array. A susceptible agent who goes out is infected with probability
    ``infection_factor * mu(I)``; one who distances is never infected; an infected agent recovers
    with probability ``recovery_prob`` whatever it does.
    r(s, a) = -infected_cost * 1{s = I} - distancing_cost * 1{a = D}.
    """

    infection_factor: float = 0.81
    """P(I | S, U, mu) / mu(I); the paper's 0.9**2. Must keep the probability <= 1, so in [0, 1]."""
    recovery_prob: float = 0.3
    """P(S | I, any action) per step; the paper's 0.3."""
    infected_cost: float = 1.0
    """Cost per step of being infected, reward units; the paper's 1."""
    distancing_cost: float = 0.5
    """Cost per step of choosing D, reward units; the paper's 0.5."""
    mu0: np.ndarray = field(default_factory=lambda: np.array([0.4, 0.6]))
    """Initial distribution (S, I) (the paper's rho); (0.4, 0.6) as in Cui & Koeppl 2021, whose
    SIS setting the paper adopts: a population mostly infected, so distancing matters early."""
    default_horizon: int = 50
    """Finite horizon T (decision epochs 0..T) used when none is given; Cui & Koeppl's 50."""

    spec = GameSpec(name="sis", state_names=("S", "I"), action_names=("D", "U"))

    def __post_init__(self) -> None:
        _check_probability("sis", "infection_factor", self.infection_factor)
        _check_probability("sis", "recovery_prob", self.recovery_prob)
        object.__setattr__(self, "mu0", _checked_mu0("sis", self.mu0, 2))
        rewards = np.array(
            [
                [-self.distancing_cost, 0.0],
                [-self.infected_cost - self.distancing_cost, -self.infected_cost],
            ]
        )
        object.__setattr__(self, "_rewards", _read_only(rewards))

    def transition(self, mu: np.ndarray) -> np.ndarray:
        mu = np.asarray(mu, dtype=float)
        infection = self.infection_factor * mu[..., 1]
        P = np.zeros(mu.shape[:-1] + (2, 2, 2))
        P[..., 0, 0, 0] = 1.0
        P[..., 0, 1, 0] = 1.0 - infection
        P[..., 0, 1, 1] = infection
        P[..., 1, :, 0] = self.recovery_prob
        P[..., 1, :, 1] = 1.0 - self.recovery_prob
        return P

    def reward(self, mu: np.ndarray) -> np.ndarray:
        mu = np.asarray(mu, dtype=float)
        return np.broadcast_to(self._rewards, mu.shape[:-1] + (2, 2)).copy()

    def push_forward(self, mu: np.ndarray, policy: np.ndarray) -> np.ndarray:
        # Closed form of mu P_pi(mu) for two states: only S -> I under U depends on mu.
        mu_s, mu_i = float(mu[0]), float(mu[1])
        infected = mu_s * float(policy[0, 1]) * self.infection_factor * mu_i
        recovered = mu_i * self.recovery_prob
        return np.array([mu_s - infected + recovered, mu_i + infected - recovered])

    def flow(self, mu0: np.ndarray, policy: np.ndarray) -> np.ndarray:
        # Scalar recursion in Python floats: for two states this is several times faster than
        # one numpy call per epoch, and the exact evaluation's 1 ms budget is spent mostly here.
        go_out = policy[:-1, 0, 1].tolist()
        beta, rec = self.infection_factor, self.recovery_prob
        mu_s, mu_i = float(mu0[0]), float(mu0[1])
        rows = [(mu_s, mu_i)]
        for u in go_out:
            infected = mu_s * u * beta * mu_i
            recovered = mu_i * rec
            mu_s, mu_i = mu_s - infected + recovered, mu_i + infected - recovered
            rows.append((mu_s, mu_i))
        return np.array(rows)

    @property
    def reward_range(self) -> tuple[float, float]:
        return float(self._rewards.min()), float(self._rewards.max())


def discretised_normal(half_width: int) -> np.ndarray:
    """Weights of eps in {-half_width..half_width} approximating N(0, 1).

    Each integer k gets the normal mass of [k - 1/2, k + 1/2]; the two tails beyond +-(half_width
    + 1/2) are folded into the end points so the weights sum to 1 and keep mean 0 (symmetric).
    """
    edges = np.arange(-half_width, half_width + 2) - 0.5
    cdf = ndtr(edges)
    cdf[0], cdf[-1] = 0.0, 1.0
    weights = np.diff(cdf)
    return weights / weights.sum()


@dataclass(frozen=True, eq=False)
class LinearQuadraticGame(MeanFieldGame):
    """Discrete 1-D linear-quadratic mean-field game (supplement App. D).

    States are grid positions x_i = i - (n_states - 1) / 2 (so -12..12 for 25 states), actions are
    a in {-max_action..max_action} in increasing order (-3..3 by default). Dynamics
    x' = x + a dt + sigma eps sqrt(dt), eps in {-noise_half_width..noise_half_width} with
    :func:`discretised_normal` weights; x' is rounded to the nearest grid point (a no-op for the
    defaults, where every move is an integer) and clipped to the grid ends, so an agent pushed past
    an end stays there. Reward (no terminal cost):
    r = (-a^2 / 2 + q a (mean(mu) - x) - kappa / 2 (mean(mu) - x)^2) dt.
    """

    n_states: int = 25
    """Grid size |S|; the paper's 25."""
    max_action: int = 3
    """Largest speed |a|; the action set is {-max_action..max_action} (7 actions, the paper's)."""
    noise_half_width: int = 3
    """eps takes values {-noise_half_width..noise_half_width}; the paper's {-3..3}."""
    dt: float = 1.0
    """Time step Delta; the paper's 1."""
    sigma: float = 1.0
    """Noise scale; the paper's 1."""
    q: float = 0.01
    """Cross term weight of a (mean - x): rewards moving toward the mean; the paper's 0.01."""
    kappa: float = 0.5
    """Weight of the squared distance to the population mean; the paper's 0.5."""
    mu0: np.ndarray | None = None
    """Initial distribution over the grid; None means uniform. Uniform is the least informative
    start: its mean is the grid centre, so the flow's mean only moves if the policy is asymmetric,
    and every state carries mass, so the exploitability weighs the policy everywhere."""
    default_horizon: int = 10
    """Finite horizon T used when none is given; 10 is the exact-evaluation speed target's setting."""

    def __post_init__(self) -> None:
        for key in ("n_states", "max_action", "noise_half_width"):
            value = getattr(self, key)
            if not isinstance(value, (int, np.integer)) or value < (2 if key == "n_states" else 0):
                raise ValueError(f"lq: {key}={value!r} must be an integer >= {2 if key == 'n_states' else 0}")
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ValueError(f"lq: dt={self.dt!r} must be a positive finite number")
        if not (self.sigma >= 0 and math.isfinite(self.sigma)):
            raise ValueError(f"lq: sigma={self.sigma!r} must be a non-negative finite number")
        if not (self.kappa >= 0 and math.isfinite(self.kappa)):
            raise ValueError(f"lq: kappa={self.kappa!r} must be non-negative (the cost of distance)")
        if not math.isfinite(self.q):
            raise ValueError(f"lq: q={self.q!r} must be finite")
        n = self.n_states
        mu0 = np.full(n, 1.0 / n) if self.mu0 is None else self.mu0
        object.__setattr__(self, "mu0", _checked_mu0("lq", mu0, n))
        positions = np.arange(n) - (n - 1) / 2.0
        actions = np.arange(-self.max_action, self.max_action + 1, dtype=float)
        noise = np.arange(-self.noise_half_width, self.noise_half_width + 1, dtype=float)
        weights = discretised_normal(self.noise_half_width)
        # target[s, a, k]: grid index reached from s with action a and noise value k.
        moved = (
            positions[:, None, None]
            + actions[None, :, None] * self.dt
            + self.sigma * noise[None, None, :] * math.sqrt(self.dt)
        )
        target = np.clip(np.rint(moved - positions[0]), 0, n - 1).astype(np.intp)
        P = np.zeros((n, actions.size, n))
        s_idx, a_idx, _ = np.indices(target.shape)
        np.add.at(P, (s_idx, a_idx, target), np.broadcast_to(weights, target.shape))
        spec = GameSpec(
            name="lq",
            state_names=tuple(f"{x:g}" for x in positions),
            action_names=tuple(f"{a:+g}" if a else "0" for a in actions),
        )
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "positions", _read_only(positions))
        object.__setattr__(self, "actions", _read_only(actions))
        object.__setattr__(self, "_P", _read_only(P))
        object.__setattr__(self, "_P_flat", _read_only(P.reshape(n * actions.size, n)))

    def transition(self, mu: np.ndarray) -> np.ndarray:
        # The dynamics do not depend on the population: mu only enters the reward.
        mu = np.asarray(mu, dtype=float)
        return np.broadcast_to(self._P, mu.shape[:-1] + self._P.shape).copy()

    def reward(self, mu: np.ndarray) -> np.ndarray:
        mu = np.asarray(mu, dtype=float)
        gap = (mu @ self.positions)[..., None] - self.positions  # (..., S): mean(mu) - x
        a = self.actions
        r = -0.5 * a**2 + self.q * a * gap[..., None] - 0.5 * self.kappa * gap[..., None] ** 2
        return r * self.dt

    def push_forward(self, mu: np.ndarray, policy: np.ndarray) -> np.ndarray:
        return (mu[:, None] * policy).reshape(-1) @ self._P_flat

    def flow(self, mu0: np.ndarray, policy: np.ndarray) -> np.ndarray:
        # P does not depend on mu, so each epoch's kernel P_pi_t is known up front; the loop is
        # one (S,) @ (S, S) product per epoch.
        P_pi = np.einsum("tsa,saj->tsj", policy[:-1], self._P)
        flow = np.empty((policy.shape[0], mu0.shape[0]))
        flow[0] = mu0
        for t in range(policy.shape[0] - 1):
            flow[t + 1] = flow[t] @ P_pi[t]
        return flow

    @property
    def reward_range(self) -> tuple[float, float]:
        # r/dt = -a^2/2 + q a d - kappa d^2 / 2 with d = mean - x in [-L, L] and |a| <= A. It is
        # concave in a and in d separately (kappa >= 0), so its minimum is at a corner of the box;
        # its maximum is at a corner, at a per-edge optimum, or at the interior point (0, 0).
        A, L = float(self.max_action), float(self.positions[-1] - self.positions[0])

        def f(a: float, d: float) -> float:
            return (-0.5 * a * a + self.q * a * d - 0.5 * self.kappa * d * d) * self.dt

        corners = [f(a, d) for a in (-A, A) for d in (-L, L)]
        candidates = corners + [f(0.0, 0.0)]
        for d in (-L, L):
            candidates.append(f(float(np.clip(self.q * d, -A, A)), d))
        if self.kappa > 0:
            for a in (-A, A):
                candidates.append(f(a, float(np.clip(self.q * a / self.kappa, -L, L))))
        return min(corners), max(candidates)


_GAMES: dict[str, type[MeanFieldGame]] = {"sis": SISGame, "lq": LinearQuadraticGame}

#: Names accepted by :func:`make_game`.
GAME_NAMES: tuple[str, ...] = tuple(_GAMES)


def make_game(name: str, **params: Any) -> MeanFieldGame:
    """Build a game by its short name (``sis``, ``lq``) with any of its dataclass fields overridden."""
    try:
        cls = _GAMES[name]
    except KeyError:
        raise ValueError(f"unknown game {name!r}; known games: {', '.join(GAME_NAMES)}") from None
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            f"game {name!r} has no parameter {', '.join(unknown)}; its parameters: {', '.join(sorted(known))}"
        )
    return cls(**params)
