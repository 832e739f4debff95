"""Reference equilibria of a mean-field game, solved to machine precision with the exact model.

An (entropy-regularised) mean-field Nash equilibrium is a pair pi* = Gamma_1^lam(mu*),
mu* = Gamma_2(pi*, mu*) (the paper's Section 2). We solve for the mean field alone:

    F(mu) = Gamma_2(Gamma_1^lam(mu)) - mu = 0,

where in the finite-horizon setting mu is the whole flow (mu_1..mu_T; mu_0 is given) and Gamma_2 is
the flow of the best response from mu_0, and in the discounted setting mu is one distribution and
Gamma_2 one step of the population dynamics. For lam > 0, Gamma_1^lam is a smooth (Boltzmann) map,
so F is smooth and MINPACK's hybrid Powell method (``scipy.optimize.root(method="hybr")``, a
trust-region Newton scheme with a finite-difference Jacobian) converges to rounding level. The
unknowns are the simplex coordinates (each distribution's last entry is 1 minus the others).

Newton only converges from nearby, so lam is lowered along a geometric path from a large value
(where Gamma_1^lam is nearly uniform and the solve is easy) to the target, each solve warm-started
at the previous one (homotopy continuation). lam = 0 has no smooth fixed-point map (the best
response jumps), so it is approached the same way down to ``lam_floor`` and the policy with the
smallest unregularised exploitability along the path is returned; see docs/mfg-exact.md for what
that reaches on each game.

The result is always re-evaluated with :func:`mfg.dp.evaluate` (an independent check of the solve):
its exploitability is the one reported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import root

from mfg.dp import (
    FiniteHorizon,
    Setting,
    discounted_best_response,
    evaluate,
    finite_best_response,
    game_models,
    initial_distribution,
)
from mfg.model import MeanFieldGame


@dataclass(frozen=True, eq=False)
class EquilibriumResult:
    """A reference equilibrium and how good it is."""

    policy: np.ndarray
    """pi*: (T+1, S, A) finite horizon, (S, A) discounted."""
    mean_field: np.ndarray
    """mu_{pi*} as :func:`mfg.dp.mean_field_flow` computes it: (T+1, S) or (S,)."""
    exploitability: float
    """E(pi*) at the requested lam, in the game's reward units (from :func:`mfg.dp.evaluate`)."""
    lam: float
    """The entropy weight the equilibrium was requested for (and its exploitability measured at)."""
    solved_lam: float
    """The entropy weight of the fixed point returned: lam itself when lam > 0; for lam = 0 the
    point of the continuation path whose policy was least exploitable."""
    iterations: int
    """Evaluations of F = Gamma_2 o Gamma_1 - id over the whole continuation path."""
    residual: float
    """max |F(mu*)| at the returned point (0 up to rounding when the solve converged)."""
    converged: bool
    """lam > 0: the continuation reached lam and solved F there to ``accept_residual``; False when
    it stopped at a singular point of the path (``solved_lam`` says where). lam = 0: the
    exploitability is at most ``SolverOptions.unregularised_tol``."""


@dataclass(frozen=True)
class SolverOptions:
    """Knobs of :func:`solve_equilibrium`; the defaults reach 1e-12 residuals on SIS and LQ."""

    lam_start: float | None = None
    """First lam of the continuation path; None means the game's reward span (max r - min r), at
    which the Boltzmann response is close to uniform and F is nearly constant."""
    lam_factor: float = 0.3
    """Ratio between successive lam on the path; smaller is faster but risks losing Newton's basin."""
    lam_floor: float = 1e-10
    """Smallest lam tried when lam = 0 is requested (the path stops here, or earlier once a
    policy on it has zero unregularised exploitability to rounding, ``zero_exploitability``)."""
    zero_exploitability: float = 1e-13
    """lam = 0 only: an exploitability at or below this is rounding noise; the path stops there."""
    unregularised_tol: float = 1e-6
    """lam = 0 only: the result counts as converged when its exploitability is at most this (the
    acceptance level of the reference equilibria); lam = 0 has no fixed-point residual to test."""
    accept_residual: float = 1e-10
    """A solve on the path counts as converged when max |F| is at most this; the next lam starts
    from it. Otherwise the step in log(lam) is halved."""
    max_ratio: float = 0.99
    """The continuation gives up when the lam ratio it needs exceeds this: the path has reached a
    singular point of F (a fold or branch point of the equilibrium set) that a step of 1% in lam
    cannot pass."""
    xtol: float = 1e-14
    """Relative step tolerance of the hybrid Powell solve."""


def _best_response(game: MeanFieldGame, mf: np.ndarray, setting: Setting, lam: float) -> np.ndarray:
    P, r = game_models(game, mf)
    if isinstance(setting, FiniteHorizon):
        return finite_best_response(P, r, lam)[0]
    return discounted_best_response(P, r, lam, setting.gamma)[0]


def _next_mean_field(
    game: MeanFieldGame, pi: np.ndarray, mf: np.ndarray, mu0: np.ndarray, setting: Setting
) -> np.ndarray:
    if isinstance(setting, FiniteHorizon):
        return game.flow(mu0, pi)
    return game.push_forward(mf, pi)


class _FixedPoint:
    """F in simplex coordinates for one lam, counting its evaluations."""

    def __init__(self, game: MeanFieldGame, setting: Setting, mu0: np.ndarray) -> None:
        self.game, self.setting, self.mu0 = game, setting, mu0
        self.evaluations = 0

    def full(self, x: np.ndarray) -> np.ndarray:
        S = self.game.n_states
        if isinstance(self.setting, FiniteHorizon):
            body = x.reshape(self.setting.horizon, S - 1)
            body = np.hstack([body, 1.0 - body.sum(axis=1, keepdims=True)])
            return np.vstack([self.mu0, body])
        return np.append(x, 1.0 - x.sum())

    def reduce(self, mf: np.ndarray) -> np.ndarray:
        if isinstance(self.setting, FiniteHorizon):
            return mf[1:, :-1].reshape(-1).copy()
        return mf[:-1].copy()

    def __call__(self, x: np.ndarray, lam: float) -> np.ndarray:
        self.evaluations += 1
        mf = self.full(x)
        pi = _best_response(self.game, mf, self.setting, lam)
        return self.reduce(_next_mean_field(self.game, pi, mf, self.mu0, self.setting)) - x


def _solve(F: _FixedPoint, x: np.ndarray, lam: float, xtol: float) -> tuple[np.ndarray, float]:
    """One hybrid Powell solve of F(., lam) = 0 from x; returns the point and max |F| there."""
    if x.size == 0:
        return x, 0.0
    solution = root(F, x, args=(lam,), method="hybr", options={"xtol": xtol})
    point = solution.x if np.all(np.isfinite(solution.x)) else x
    return point, float(np.abs(F(point, lam)).max())


def _result(
    game: MeanFieldGame,
    setting: Setting,
    lam: float,
    F: _FixedPoint,
    x: np.ndarray,
    solved_lam: float,
    residual: float,
) -> EquilibriumResult:
    policy = _best_response(game, F.full(x), setting, solved_lam)
    report = evaluate(game, policy, setting, lam)
    return EquilibriumResult(
        policy=policy,
        mean_field=report.mean_field,
        exploitability=report.exploitability,
        lam=lam,
        solved_lam=solved_lam,
        iterations=F.evaluations,
        residual=residual,
        converged=False,
    )


def solve_equilibrium(
    game: MeanFieldGame, setting: Setting, lam: float, options: SolverOptions = SolverOptions()
) -> EquilibriumResult:
    """The reference (lam-regularised) mean-field equilibrium of ``game`` in ``setting``.

    For lam = 0 the returned policy is the best along the continuation path (see module doc); its
    ``exploitability`` is measured at lam = 0.
    """
    lam = float(lam)
    if not (lam >= 0 and np.isfinite(lam)):
        raise ValueError(f"lam={lam!r} must be a finite number >= 0")
    mu0 = initial_distribution(game, setting)
    low, high = game.reward_range
    start = options.lam_start if options.lam_start is not None else max(high - low, 1e-3)
    F = _FixedPoint(game, setting, mu0)
    uniform = np.full((game.n_states, game.n_actions), 1.0 / game.n_actions)
    if isinstance(setting, FiniteHorizon):
        x = F.reduce(game.flow(mu0, np.broadcast_to(uniform, (setting.horizon + 1,) + uniform.shape)))
    else:
        x = F.reduce(mu0)
    best: EquilibriumResult | None = None
    target = lam if lam > 0 else options.lam_floor
    current = max(start, target)
    x, residual = _solve(F, x, current, options.xtol)
    ratio = options.lam_factor
    while True:
        if lam == 0 or current == target:
            candidate = _result(game, setting, lam, F, x, current, residual)
            if best is None or lam > 0 or candidate.exploitability < best.exploitability:
                best = candidate
        if current == target or (lam == 0 and best.exploitability <= options.zero_exploitability):
            break
        trial = max(target, current * ratio)
        x_trial, trial_residual = _solve(F, x, trial, options.xtol)
        if trial_residual <= options.accept_residual:
            current, x, residual = trial, x_trial, trial_residual
            ratio = options.lam_factor
            continue
        # Lost Newton's basin: retry with a smaller step in log(lam) from the last solved point.
        ratio = float(np.sqrt(ratio))
        if ratio > options.max_ratio:
            if lam > 0:
                best = _result(game, setting, lam, F, x_trial, trial, trial_residual)
            break
    # Every exit of the loop above has set best: lam = 0 records the first point, lam > 0 leaves
    # either at the target or after recording the failed trial.
    assert best is not None
    if lam > 0:
        converged = best.solved_lam == lam and best.residual <= options.accept_residual
    else:
        converged = best.exploitability <= options.unregularised_tol
    return replace(best, iterations=F.evaluations, converged=converged)
