"""NAC and DL-NAC on a toy mean-field game: learning curves of exact exploitability vs samples.

* :func:`run_nac` -- Algorithm 1 of the paper, single loop on two timescales: every iteration samples
  one episode of N agents under π_t in the environment induced by the mean-field estimate μ_t, makes
  one NAC update (critic, actor, θ ← (1 − ηλ)θ + ηŵ) and moves the estimate a small step toward the
  sampled Γ₂(π_t, μ_t): μ ← (1 − β)μ + β Γ̂₂ with β ≪ η.
* :func:`run_dlnac` -- the double-loop baseline (the paper's DL-NAC): μ is frozen while NAC runs for
  ``inner_iterations`` on the induced MDP, then jumps to Γ̂₂(π, μ) (β = 1); repeat.

Both spend N·(T+1) samples per iteration and evaluate the current policy every ``eval_every``
iterations with the exact model (``mfg.dp.exploitability``, the game's own units; the learner never
sees it), so their curves line up on one axis of samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from mfg.dp import FiniteHorizon, exploitability
from mfg.features import TimeTabularFeatures
from mfg.model import MeanFieldGame
from mfg.sampler import GameSampler
from policies.nac import NACHyperparameters, NaturalActorCritic, mean_field_step

ALGORITHMS: tuple[str, ...] = ("nac", "dlnac")


@dataclass(frozen=True)
class LearningConfig:
    """How a learning run spends its samples; the learner's own knobs are in ``hp``."""

    iterations: int = 400
    """Algorithm 1's T: NAC updates (one episode each). Both algorithms get the same number."""
    n_agents: int = 100
    """Agents simulated per episode; one iteration uses n_agents · (horizon + 1) transitions."""
    mean_field_lr: float = 0.02
    """β of NAC's mean-field step."""
    inner_iterations: int = 40
    """DL-NAC: NAC updates on each frozen μ before the jump."""
    eval_every: int = 10
    """Iterations between exact evaluations (the first is before any update)."""
    evaluate_regularised: bool = True
    """Also report the exploitability at the learner's λ (converted to game units)."""
    hp: NACHyperparameters = field(default_factory=lambda: NACHyperparameters(n_features=1, n_actions=2))
    """Learner hyperparameters; ``n_features``/``n_actions`` are filled in from the game."""

    def __post_init__(self) -> None:
        for key in ("iterations", "n_agents", "inner_iterations", "eval_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"LearningConfig.{key}={getattr(self, key)!r} must be >= 1")
        if not 0.0 < self.mean_field_lr <= 1.0:
            raise ValueError(f"LearningConfig.mean_field_lr={self.mean_field_lr!r} must be in (0, 1]")


@dataclass(frozen=True, eq=False)
class Curve:
    """Exploitability of one run at its evaluation points."""

    algorithm: str
    """``nac`` or ``dlnac``."""
    seed: int
    """The run's seed."""
    iterations: np.ndarray
    """(E,) updates made before each evaluation."""
    samples: np.ndarray
    """(E,) transitions sampled before each evaluation."""
    exploitability: np.ndarray
    """(E,) unregularised exploitability (λ = 0), game units."""
    exploitability_reg: np.ndarray
    """(E,) exploitability at the learner's λ in game units (NaN when not evaluated)."""
    diagnostics: dict[str, np.ndarray]
    """Learner diagnostics at each evaluation point (the last update's values)."""


@dataclass
class _Run:
    """The mutable pieces of one run, built from (game, setting, config, seed)."""

    game: MeanFieldGame
    setting: FiniteHorizon
    config: LearningConfig
    features: TimeTabularFeatures
    learner: NaturalActorCritic
    sampler: GameSampler
    mean_field: np.ndarray
    lam_game: float


def _setup(game: MeanFieldGame, setting: FiniteHorizon, config: LearningConfig, seed: int) -> _Run:
    # One seeding block: the learner and the sampler get independent streams of one SeedSequence.
    learner_seq, sampler_seq = np.random.SeedSequence(seed).spawn(2)
    features = TimeTabularFeatures(setting.horizon, game.n_states, game.n_actions)
    hp = replace(config.hp, n_features=features.dim, n_actions=game.n_actions, seed=seed)
    learner = NaturalActorCritic(hp, np.random.default_rng(learner_seq))
    sampler = GameSampler(game, setting, features, config.n_agents, np.random.default_rng(sampler_seq))
    # μ₀ of Algorithm 1: the flow that stays at the initial distribution.
    mean_field = np.tile(sampler.mu0, (setting.horizon + 1, 1))
    return _Run(
        game, setting, config, features, learner, sampler, mean_field, hp.entropy_reg * sampler.reward_width
    )


def _run(
    algorithm: Literal["nac", "dlnac"],
    game: MeanFieldGame,
    setting: FiniteHorizon,
    config: LearningConfig,
    seed: int,
    progress: Callable[[int], None] | None,
) -> Curve:
    run = _setup(game, setting, config, seed)
    per_iteration = config.n_agents * (setting.horizon + 1)
    iters, samples, expl, expl_reg = [], [], [], []
    diag_rows: list[dict[str, float]] = []
    last: dict[str, float] = {}

    def evaluate(t: int) -> None:
        policy = run.features.policy_array(run.learner)
        iters.append(t)
        samples.append(t * per_iteration)
        expl.append(exploitability(game, policy, setting, 0.0))
        expl_reg.append(
            exploitability(game, policy, setting, run.lam_game) if config.evaluate_regularised else np.nan
        )
        diag_rows.append(dict(last))

    evaluate(0)
    for t in range(config.iterations):
        episode = run.sampler.episode(run.learner, run.mean_field)
        last = run.learner.update(run.sampler.transitions(episode))
        if algorithm == "nac":
            run.mean_field = mean_field_step(run.mean_field, episode.flow, config.mean_field_lr)
        elif (t + 1) % config.inner_iterations == 0:
            # DL-NAC's outer step: Γ₂ of the policy learned on the frozen μ, one full jump. The
            # estimate comes from a fresh episode under that policy (its samples are counted).
            episode = run.sampler.episode(run.learner, run.mean_field)
            run.mean_field = episode.flow
        if (t + 1) % config.eval_every == 0 or t + 1 == config.iterations:
            evaluate(t + 1)
        if progress is not None:
            progress(1)
    keys = sorted({k for row in diag_rows for k in row})
    diagnostics = {k: np.array([row.get(k, np.nan) for row in diag_rows]) for k in keys}
    return Curve(
        algorithm=algorithm,
        seed=seed,
        iterations=np.array(iters),
        samples=np.array(samples),
        exploitability=np.array(expl),
        exploitability_reg=np.array(expl_reg),
        diagnostics=diagnostics,
    )


def run_nac(
    game: MeanFieldGame,
    setting: FiniteHorizon,
    config: LearningConfig,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> Curve:
    """Algorithm 1 (single loop) for ``config.iterations`` iterations; see the module docstring."""
    return _run("nac", game, setting, config, seed, progress)


def run_dlnac(
    game: MeanFieldGame,
    setting: FiniteHorizon,
    config: LearningConfig,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> Curve:
    """DL-NAC (double loop) for ``config.iterations`` NAC updates in total; see the module docstring."""
    return _run("dlnac", game, setting, config, seed, progress)


def run_algorithm(
    algorithm: str,
    game: MeanFieldGame,
    setting: FiniteHorizon,
    config: LearningConfig,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> Curve:
    """``run_nac`` or ``run_dlnac`` by name."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    return _run(algorithm, game, setting, config, seed, progress)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- presets


def two_group_mu0(
    positions: np.ndarray, shares: tuple[float, float] = (0.8, 0.2), margin: int = 2, width: float = 1.0
) -> np.ndarray:
    """A population in two unequal groups near opposite ends of a 1-D grid (the LQ learning start).

    Group k holds ``shares[k]`` of the mass, spread as a Gaussian of standard deviation ``width``
    (grid cells) around the cell ``margin`` cells in from the left (k = 0) or right (k = 1) end.
    On the 25-cell LQ grid that is 80% around x = −10 and 20% around x = +10: the mean starts at
    −6, off-centre, and moves as the groups move toward it (the minority has farther to go and its
    speed is capped), so the mean-field flow is not at its fixed point at the start.
    """
    positions = np.asarray(positions, dtype=float)
    if positions.size < 2 * margin + 2:
        raise ValueError(f"two_group_mu0: a grid of {positions.size} cells has no room for margin={margin}")
    out = np.zeros_like(positions)
    for share, centre in zip(shares, (positions[margin], positions[-1 - margin]), strict=True):
        bump = np.exp(-0.5 * ((positions - centre) / width) ** 2)
        out += share * bump / bump.sum()
    return out / out.sum()


def learning_setting(game: MeanFieldGame) -> FiniteHorizon:
    """The finite-horizon setting ``mfrm mfg run`` learns and evaluates in.

    The game's default horizon, and its own μ₀ -- except on the linear-quadratic game, whose
    uniform default is symmetric: the population mean then sits at the grid centre for any
    mirror-symmetric policy, so the constant flow μ₀ that both learners start from is already the
    equilibrium's mean and the mean-field update has nothing to do (NAC and DL-NAC ended equal).
    LQ learns from :func:`two_group_mu0` instead.
    """
    horizon = game.default_horizon  # type: ignore[attr-defined]
    if game.spec.name == "lq":
        return FiniteHorizon(horizon=horizon, mu0=two_group_mu0(game.positions))  # type: ignore[attr-defined]
    return FiniteHorizon(horizon=horizon)


def _finite_horizon_hp(**overrides: float) -> NACHyperparameters:
    """Learner settings shared by the finite-horizon toy games (tabular time-augmented features).

    γ = 1 with terminal rows (no discount over a finite horizon). The critic sweeps backward in time
    (one epoch of N agents per minibatch, rows in reverse epoch order, see ``GameSampler.transitions``)
    with per-coordinate normalised steps and the last iterate, warm-started: a one-hot critic then
    tracks q of the moving policy within a few iterations. The radii are loose (they only guard
    against divergence): ‖ψ‖ ≤ √d · (T + 1) for rewards in [0, 1].
    """
    base = {
        "n_features": 1,
        "n_actions": 2,
        "gamma": 1.0,
        "critic_normalise": True,
        "critic_average": False,
        "critic_shuffle": False,
        "critic_radius": 1e4,
        "actor_radius": 1e4,
        "actor_solver": "fisher",
    }
    base.update(overrides)
    return NACHyperparameters(**base)  # type: ignore[arg-type]


#: Tuned defaults per game (docs/mfg-learning.md explains each departure from the paper's values).
GAME_PRESETS: dict[str, LearningConfig] = {
    "sis": LearningConfig(
        iterations=600,
        n_agents=300,
        mean_field_lr=0.02,
        inner_iterations=50,
        eval_every=10,
        hp=_finite_horizon_hp(entropy_reg=0.03, policy_lr=0.5, critic_lr=0.3, critic_minibatch=300),
    ),
    "lq": LearningConfig(
        iterations=200,
        n_agents=3000,
        mean_field_lr=0.05,
        inner_iterations=40,
        eval_every=10,
        hp=_finite_horizon_hp(entropy_reg=0.001, policy_lr=20.0, critic_lr=0.3, critic_minibatch=1000),
    ),
}


def preset(game_name: str, **overrides: object) -> LearningConfig:
    """The tuned :class:`LearningConfig` of a game, with any field replaced.

    The critic's minibatch follows ``n_agents`` (one epoch of agents per backward-sweep step).
    """
    if game_name not in GAME_PRESETS:
        raise ValueError(f"no learning preset for game {game_name!r}; presets: {', '.join(GAME_PRESETS)}")
    config = replace(GAME_PRESETS[game_name], **overrides)  # type: ignore[arg-type]
    return replace(config, hp=replace(config.hp, critic_minibatch=config.n_agents))


# --------------------------------------------------------------------------- curve summaries


def upward_variation(curve: np.ndarray) -> float:
    """Σ max(0, y_{k+1} − y_k) of log10(curve): how much a curve climbs, in decades.

    A monotone decreasing curve scores 0; each zig-zag adds the height of its rise.
    """
    y = np.log10(np.maximum(np.asarray(curve, dtype=float), 1e-12))
    return float(np.sum(np.maximum(np.diff(y), 0.0)))


def roughness(curve: np.ndarray) -> float:
    """Mean |second difference| of log10(curve): 0 for a straight line on a log plot, large for zig-zags."""
    y = np.log10(np.maximum(np.asarray(curve, dtype=float), 1e-12))
    if y.size < 3:
        return 0.0
    return float(np.mean(np.abs(np.diff(y, n=2))))
