"""NAC-Linear: the shared log-linear policy of the serverless mean-field game, with two policy steps.

Both learners use φ(s, a) = e_a ⊗ x(s), so θ and the critic's ψ are vectors of length A·d, viewed as
(A, d) matrices for the logits ``x @ Θᵀ`` (π(·|s) = softmax(Θ x(s))). The step is chosen by ``mode``
(Mao et al., NeurIPS 2022):

* ``natural`` (:class:`NaturalLinearLearner`): Algorithm 1 as written, through the linear NAC core of
  :mod:`policies.nac` -- projected TD(0) critic on the shifted soft Q (Algorithm 2), the fit of the
  compatible-function-approximation loss (Algorithm 3) by SGD or its exact Fisher-solve minimiser,
  and θ ← (1 − ηλ)θ + ηŵ (Algorithm 1, line 5).
* ``kl`` (:class:`LinearKLLearner`): the paper's serverless implementation (Appendix E) -- the
  natural-gradient step approximated by Adam on the KL-penalised surrogate of
  :mod:`policies.kl_step`. The critic still fits Algorithm 2's shifted soft Q and the advantage is
  Algorithm 3's; only the policy step differs. NAC-NN (:mod:`policies.nac_nn`) is the same step with
  MLPs.

Either learner runs inside the shared-policy driver of :mod:`policies.agent`; the factory registered
as ``nac-linear`` builds the pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from policies.agent import (
    AGENT_DIAGNOSTICS,
    AgentSettings,
    SharedLearner,
    SharedPolicyAgent,
    Transitions,
    field_names,
    split_params,
    with_fallback,
)
from policies.fallback import FallbackSettings
from policies.imitation import IMITATION_L2, check_costs, fit_linear_policy, fit_linear_policy_to_costs
from policies.kl_step import (
    KL_STEP_DIAGNOSTICS,
    Adam,
    KLStepSettings,
    adapt_kl_coef,
    clip_grad_norm,
    explained_variance,
    log_softmax_columns,
    minibatch_slices,
    soft_advantage,
    softmax_rows,
)
from policies.nac import STATE_VERSION as NAC_STATE_VERSION
from policies.nac import (
    UPDATE_DIAGNOSTICS,
    BlockFeatures,
    NACHyperparameters,
    NaturalActorCritic,
    TransitionBatch,
)
from policies.registry import register
from policies.serverless_features import N_ACTIONS, ActionSettings, FeatureSettings
from policies.staffing import StaffingSettings

LINEAR_MODES = ("natural", "kl")
"""The values of the factory's ``mode``: Algorithm 1's natural step, or the KL-penalised one."""

#: Every key ``feedback`` of a ``nac-linear`` policy may return, whatever its mode: the driver's,
#: then the NAC core's (``natural``), then the KL step's (``kl``). The two learners' keys are
#: disjoint, so a policy of one mode never returns the other's.
NAC_LINEAR_DIAGNOSTICS: tuple[str, ...] = (*AGENT_DIAGNOSTICS, *UPDATE_DIAGNOSTICS, *KL_STEP_DIAGNOSTICS)


def linear_kl_actor_grad(
    theta_a_d: np.ndarray,
    x_m_d: np.ndarray,
    action_m: np.ndarray,
    advantage_m: np.ndarray,
    p_old_a_m: np.ndarray,
    logp_old_a_m: np.ndarray,
    kl_coef: float,
) -> tuple[np.ndarray, float]:
    """Gradient (A, d) and value of the KL-penalised surrogate for the linear softmax policy.

    L(Θ) = −mean[ρ Â] + β mean[KL(π_old(·|s) ‖ π_Θ(·|s))], ρ = π_Θ(a|s) / π_old(a|s), logits Θ x(s).
    With respect to the logits l: ∂ρ/∂l_b = ρ(1{b = a} − π_b) and ∂KL/∂l_b = π_b − π_old_b.
    Probabilities are action-major (A, m); ``logp_old`` is passed in because it is the same for
    every epoch.
    """
    m = len(action_m)
    cols = np.arange(m)
    logp_a_m = log_softmax_columns(theta_a_d @ x_m_d.T)
    p_a_m = np.exp(logp_a_m)
    weighted_m = np.exp(logp_a_m[action_m, cols] - logp_old_a_m[action_m, cols]) * advantage_m
    g_a_m = p_a_m * (weighted_m + kl_coef)
    g_a_m[action_m, cols] -= weighted_m
    g_a_m -= kl_coef * p_old_a_m
    kl = float(np.einsum("am,am->", p_old_a_m, logp_old_a_m - logp_a_m)) / m
    loss = -float(weighted_m.mean()) + kl_coef * kl
    return (g_a_m @ x_m_d) / m, loss


#: The second block's penalty (``AgentSettings.novel_fit_l2`` unset): chosen on unseen-functions-tune, where
#: the fit alone at 0.1 was beyond the baselines' frontier at all four α and at 0.001 or 0.01 at none
#: (docs/evaluation.md, "A stronger penalty on the fit").
NOVEL_FIT_L2 = 0.1


def _checked_weights(weights: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``weights`` as a float array of the policy's shape (A, d), or an error naming both shapes."""
    w = np.asarray(weights, dtype=float)
    if w.shape != shape:
        raise ValueError(f"logit weights of shape {w.shape}: the policy's are {shape}")
    return w


@dataclass
class LinearKLLearner:
    """NAC-Linear with the paper's serverless step: linear soft-Q critic, KL-penalised linear actor."""

    diagnostics: ClassVar[tuple[str, ...]] = KL_STEP_DIAGNOSTICS
    """Every key :meth:`update` returns."""

    state_dim: int
    """Length d of x(s)."""
    settings: KLStepSettings
    """Hyperparameters."""
    rng: np.random.Generator
    """Shuffles the minibatches; owned by this learner."""
    n_actions: int = N_ACTIONS
    """A, the number of discrete moves."""
    x_blocks: int = 1
    """Equal blocks of x(s) of which every state fills one (``AgentSettings.novel_block``)."""
    novel_fit_l2: float = field(init=False, default=NOVEL_FIT_L2)
    """The second block's fit penalty when unset (:data:`NOVEL_FIT_L2`)."""
    theta: np.ndarray = field(init=False)
    """Policy parameters (A, d), θ₀ = 0 (the uniform policy, as Algorithm 1 starts)."""
    psi: np.ndarray = field(init=False)
    """Critic parameters (A, d) of the shifted soft Q: q̂(s, a) = Ψ[a] · x(s)."""
    actor_opt: Adam = field(init=False)
    """Adam state of θ."""
    critic_opt: Adam = field(init=False)
    """Adam state of ψ."""
    kl_coef: float = field(init=False)
    """Current KL penalty coefficient β."""
    updates: int = field(init=False, default=0)
    """Updates done so far."""

    def __post_init__(self) -> None:
        shape = (self.n_actions, self.state_dim)
        self.theta = np.zeros(shape)
        self.psi = np.zeros(shape)
        self.actor_opt = Adam(self.theta.size, self.settings.learning_rate)
        self.critic_opt = Adam(self.psi.size, self.settings.learning_rate)
        self.kl_coef = float(self.settings.kl_coef_init)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return softmax_rows(x, self.theta)

    def prefer(self, action: int, logit: float, bias_entry: float) -> None:
        # x(s)'s first entry is the bias, the same in every state: a weight of logit / that entry on
        # it adds ``logit`` to the action's preference everywhere.
        self.theta[action, 0] += logit / bias_entry

    def imitate(self, x: np.ndarray, actions: np.ndarray, rng: np.random.Generator, l2: float | None = None) -> float:
        theta, accuracy = fit_linear_policy(x, actions, self.n_actions, rng, l2=IMITATION_L2 if l2 is None else l2)
        self.theta[:] = theta
        return accuracy

    def imitate_costs(self, x: np.ndarray, costs: np.ndarray, rng: np.random.Generator,
                      l2: float | None = None) -> float:
        theta, accuracy = fit_linear_policy_to_costs(x, check_costs(costs, self.n_actions), rng,
                                                     l2=IMITATION_L2 if l2 is None else l2)
        self.theta[:] = theta
        return accuracy

    def sharpen(self, factor: float) -> None:
        self.theta *= factor

    def add_logits(self, weights: np.ndarray) -> None:
        self.theta += _checked_weights(weights, self.theta.shape)

    def imitate_block(self, block: int, x: np.ndarray, actions: np.ndarray, rng: np.random.Generator,
                      l2: float | None = None) -> float:
        return _imitate_block(self.theta, self.x_blocks, block, x, actions, rng, l2)

    def sharpen_block(self, block: int, factor: float) -> None:
        _block_view(self.theta, self.x_blocks, block)[:] *= factor

    def update(self, batch: Transitions) -> dict[str, float]:
        s = self.settings
        n = len(batch)
        cols = np.arange(n)
        a_n = batch.action
        p_old_a_n = np.ascontiguousarray(batch.probs.T)
        logp_old_a_n = np.log(np.clip(p_old_a_n, 1e-300, None))
        # Algorithm 2's target, frozen for the whole update: r − λ log π(a|s) + γ q̂(s′, a′).
        q_next_n = (self.psi @ batch.x_next.T)[batch.action_next, cols]
        target_n = batch.reward - s.entropy_reg * logp_old_a_n[a_n, cols] + s.gamma * q_next_n
        slices = minibatch_slices(n, s)
        critic_losses = []
        for _ in range(s.epochs):
            perm = self.rng.permutation(n)
            # ndarray.take: the same gather as fancy indexing, ~3x faster for these shapes.
            x_e, a_e, target_e = batch.x.take(perm, axis=0), a_n.take(perm), target_n.take(perm)
            for sl in slices:
                x_m_d, a_m = x_e[sl], a_e[sl]
                m = np.arange(len(a_m))
                err_m = (self.psi @ x_m_d.T)[a_m, m] - target_e[sl]
                g_a_m = np.zeros((self.n_actions, len(a_m)))
                g_a_m[a_m, m] = 2.0 * err_m / len(a_m)
                self.critic_opt.step(
                    self.psi.reshape(-1), clip_grad_norm((g_a_m @ x_m_d).reshape(-1), s.max_grad_norm)
                )
                critic_losses.append(float(np.mean(err_m * err_m)))
        # Algorithm 3's advantage from the critic just fitted, with the entropy term of the
        # regularised objective (soft_advantage).
        q_a_n = self.psi @ batch.x.T
        q_taken_n = q_a_n[a_n, cols]
        adv_n = soft_advantage(q_a_n, p_old_a_n, logp_old_a_n, a_n, s.entropy_reg)
        if s.normalise_advantages and n > 1:
            adv_n = (adv_n - adv_n.mean()) / (adv_n.std() + 1e-8)
        actor_losses = []
        for _ in range(s.epochs):
            perm = self.rng.permutation(n)
            x_e, a_e, adv_e = batch.x.take(perm, axis=0), a_n.take(perm), adv_n.take(perm)
            p_old_e, logp_old_e = p_old_a_n.take(perm, axis=1), logp_old_a_n.take(perm, axis=1)
            for sl in slices:
                grad_a_d, loss = linear_kl_actor_grad(
                    self.theta, x_e[sl], a_e[sl], adv_e[sl], p_old_e[:, sl], logp_old_e[:, sl], self.kl_coef
                )
                self.actor_opt.step(self.theta.reshape(-1), clip_grad_norm(grad_a_d.reshape(-1), s.max_grad_norm))
                actor_losses.append(loss)
        logp_new_a_n = log_softmax_columns(self.theta @ batch.x.T)
        kl = float(np.einsum("an,an->", p_old_a_n, logp_old_a_n - logp_new_a_n)) / n
        used_coef = self.kl_coef
        self.kl_coef = adapt_kl_coef(self.kl_coef, kl, s)
        self.updates += 1
        entropy = -float(np.einsum("an,an->", np.exp(logp_new_a_n), logp_new_a_n)) / n
        return {
            "losses/critic": float(np.mean(critic_losses)),
            "losses/actor": float(np.mean(actor_losses)),
            "approx_kl": kl,
            "entropy": entropy,
            "explained_variance": explained_variance(q_taken_n, target_n),
            "kl_coef": used_coef,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "theta": self.theta.copy(),
            "psi": self.psi.copy(),
            "actor_adam_m": self.actor_opt.m.copy(),
            "actor_adam_v": self.actor_opt.v.copy(),
            "actor_adam_steps": self.actor_opt.steps,
            "critic_adam_m": self.critic_opt.m.copy(),
            "critic_adam_v": self.critic_opt.v.copy(),
            "critic_adam_steps": self.critic_opt.steps,
            "kl_coef": self.kl_coef,
            "updates": self.updates,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.theta = np.array(state["theta"], dtype=float).reshape(self.n_actions, self.state_dim)
        self.psi = np.array(state["psi"], dtype=float).reshape(self.n_actions, self.state_dim)
        for name, opt in (("actor", self.actor_opt), ("critic", self.critic_opt)):
            opt.m = np.array(state[f"{name}_adam_m"], dtype=float)
            opt.v = np.array(state[f"{name}_adam_v"], dtype=float)
            opt.steps = int(state[f"{name}_adam_steps"])
        self.kl_coef = float(state["kl_coef"])
        self.updates = int(state["updates"])
        self.rng.bit_generator.state = state["rng"]

    def signature(self) -> dict[str, Any]:
        return {"learner": "linear-kl", "state_dim": self.state_dim, "n_actions": self.n_actions}


#: Fields of the NAC core's hyperparameters that the serverless game fixes (not user parameters).
_DERIVED_NAC_FIELDS = ("n_features", "n_actions", "seed")
#: The serverless game's defaults for the NAC core where they differ from the core's own (which
#: are the paper's toy-game values, tuned for many cheap iterations):
#:
#: * ``critic_lr`` 0.5: the core steps along the batch-mean TD direction and ‖φ‖ is about 0.4 here
#:   (the bias entry alone is 1/√12), so 0.001 barely moves ψ per tick: on a bandit that rewards one
#:   move, the move's probability was still ≈ 1/9 after 30 ticks even with η = 1; with 0.5 and the
#:   other defaults it reached 0.72 after 60 ticks (docs/agents.md).
#: * ``critic_epochs`` 5: the paper's 5 epochs per update (Appendix E).
#: * ``critic_radius`` 400: B must exceed ‖ψ*‖; with γ = 0.99, |q| <= Q_max ≈ 102 (Lemma 3), and a
#:   state whose only large entry is the bias (1/√12) needs ‖ψ‖ ≈ 102·√12 ≈ 353.
SERVERLESS_NAC_DEFAULTS: Mapping[str, Any] = {"critic_lr": 0.5, "critic_epochs": 5, "critic_radius": 400.0}


class NaturalLinearLearner:
    """Algorithm 1 through the linear NAC core (:class:`policies.nac.NaturalActorCritic`).

    A thin adapter: the core owns θ, ψ and every step of the update; this class only translates
    the driver's state vectors into the core's features φ(s, a) = e_a ⊗ x(s) (dimension A·d) and
    computes π(·|s) for decisions through the equivalent logits Θ x(s), without building φ.
    """

    diagnostics: ClassVar[tuple[str, ...]] = UPDATE_DIAGNOSTICS
    """Every key :meth:`update` returns (the core's)."""

    def __init__(self, core: NaturalActorCritic, state_dim: int) -> None:
        self.core = core
        self.state_dim = state_dim
        self.n_actions = core.hp.n_actions

    @classmethod
    def create(
        cls, state_dim: int, params: Mapping[str, Any], rng: np.random.Generator, n_actions: int = N_ACTIONS,
        x_blocks: int = 1,
    ) -> NaturalLinearLearner:
        """``x_blocks``: equal blocks of x(s) of which every state fills one (``AgentSettings.novel_block``)."""
        hp = NACHyperparameters(n_features=n_actions * state_dim, n_actions=n_actions, **params)
        return cls(NaturalActorCritic(hp, rng, x_blocks), state_dim)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        # θᵀφ(s, a) = Θ[a] · x(s) with Θ = θ viewed as (A, d): the core's softmax, never materialising φ.
        return softmax_rows(x, self.core.theta.reshape(self.n_actions, self.state_dim))

    def prefer(self, action: int, logit: float, bias_entry: float) -> None:
        # θ viewed as (A, d): the bias entry of x(s) (see LinearKLLearner.prefer) of the action's block.
        self.core.theta.reshape(self.n_actions, self.state_dim)[action, 0] += logit / bias_entry

    def imitate(self, x: np.ndarray, actions: np.ndarray, rng: np.random.Generator, l2: float | None = None) -> float:
        # θᵀφ(s, a) = Θ[a] · x(s): the fitted Θ is θ viewed as (A, d).
        theta, accuracy = fit_linear_policy(x, actions, self.n_actions, rng, l2=IMITATION_L2 if l2 is None else l2)
        self.core.theta.reshape(self.n_actions, self.state_dim)[:] = theta
        return accuracy

    def imitate_costs(self, x: np.ndarray, costs: np.ndarray, rng: np.random.Generator,
                      l2: float | None = None) -> float:
        theta, accuracy = fit_linear_policy_to_costs(x, check_costs(costs, self.n_actions), rng,
                                                     l2=IMITATION_L2 if l2 is None else l2)
        self.core.theta.reshape(self.n_actions, self.state_dim)[:] = theta
        return accuracy

    def sharpen(self, factor: float) -> None:
        self.core.theta *= factor

    def add_logits(self, weights: np.ndarray) -> None:
        theta = self.core.theta.reshape(self.n_actions, self.state_dim)
        theta += _checked_weights(weights, theta.shape)

    novel_fit_l2: float = NOVEL_FIT_L2
    """The second block's fit penalty when unset (:data:`NOVEL_FIT_L2`)."""

    @property
    def x_blocks(self) -> int:
        """Equal blocks of x(s) of which every state fills one (``AgentSettings.novel_block``)."""
        return self.core.x_blocks

    def imitate_block(self, block: int, x: np.ndarray, actions: np.ndarray, rng: np.random.Generator,
                      l2: float | None = None) -> float:
        theta = self.core.theta.reshape(self.n_actions, self.state_dim)
        return _imitate_block(theta, self.x_blocks, block, x, actions, rng, l2)

    def sharpen_block(self, block: int, factor: float) -> None:
        _block_view(self.core.theta.reshape(self.n_actions, self.state_dim), self.x_blocks, block)[:] *= factor

    def update(self, batch: Transitions) -> dict[str, float]:
        return self.core.update(
            TransitionBatch(
                features=BlockFeatures(batch.x, self.n_actions),
                actions=batch.action,
                rewards=batch.reward,
                next_features=BlockFeatures(batch.x_next, self.n_actions),
                next_actions=batch.action_next,
            )
        )

    def state_dict(self) -> dict[str, Any]:
        return dict(self.core.state_dict())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.core.load_state_dict(state)

    def signature(self) -> dict[str, Any]:
        return {
            "learner": "linear-natural",
            "state_dim": self.state_dim,
            "n_actions": self.n_actions,
            "core_state_version": NAC_STATE_VERSION,
        }


def _linear_record(mode: str, params: Mapping[str, Any], state_dim: int, n_actions: int = N_ACTIONS) -> dict[str, Any]:
    if mode == "kl":
        return asdict(KLStepSettings(**params))
    return asdict(NACHyperparameters(n_features=n_actions * state_dim, n_actions=n_actions, **params))


def _block_view(theta: np.ndarray, blocks: int, block: int) -> np.ndarray:
    """The weights Θ (A, d) of block ``block`` of x(s) (of ``blocks`` equal ones), as a view."""
    size = theta.shape[1] // blocks
    return theta[:, block * size:(block + 1) * size]


def _imitate_block(theta: np.ndarray, blocks: int, block: int, x: np.ndarray, actions: np.ndarray,
                   rng: np.random.Generator, l2: float | None) -> float:
    """Fit one block's weights of Θ (A, d) in place to ``actions`` in states ``x`` (that block's entries)."""
    fitted, accuracy = fit_linear_policy(x, actions, theta.shape[0], rng, l2=IMITATION_L2 if l2 is None else l2)
    _block_view(theta, blocks, block)[:] = fitted
    return accuracy


def build_linear_learner(
    mode: str, state_dim: int, params: Mapping[str, Any], rng: np.random.Generator, n_actions: int = N_ACTIONS,
    x_blocks: int = 1,
) -> SharedLearner:
    """The linear learner of ``mode`` with its own hyperparameters from ``params``, over ``n_actions``;
    ``x_blocks``: equal blocks of x(s) of which every state fills one (the natural step solves its
    Fisher matrix block by block)."""
    if mode == "kl":
        return LinearKLLearner(state_dim=state_dim, settings=KLStepSettings(**params), rng=rng, n_actions=n_actions,
                               x_blocks=x_blocks)
    if mode == "natural":
        return NaturalLinearLearner.create(state_dim, params, rng, n_actions, x_blocks)
    raise ValueError(f"nac-linear mode={mode!r}: must be one of {LINEAR_MODES}")


@register("nac-linear", learns=True)
def nac_linear(*, seed: int = 0, mode: str = "natural", **params: Any) -> SharedPolicyAgent:
    """NAC-Linear: the shared log-linear policy of the paper, natural (Algorithm 1) or KL-penalised step.

    ``params`` are the fields of :class:`FeatureSettings`, :class:`ActionSettings`,
    :class:`AgentSettings` and of the learner's settings: :class:`KLStepSettings` for ``mode="kl"``,
    the NAC core's :class:`policies.nac.NACHyperparameters` for ``mode="natural"`` (without
    ``n_features``, ``n_actions`` and ``seed``, which the game and the policy's seed fix).
    """
    if mode not in LINEAR_MODES:
        raise ValueError(f"nac-linear mode={mode!r}: must be one of {LINEAR_MODES}")
    learner_fields = (
        field_names(KLStepSettings)
        if mode == "kl"
        else field_names(NACHyperparameters, exclude=_DERIVED_NAC_FIELDS)
    )
    routed = split_params(
        params,
        {
            "features": field_names(FeatureSettings),
            "actions": field_names(ActionSettings),
            "agent": field_names(AgentSettings),
            "staffing": field_names(StaffingSettings),
            "fallback": field_names(FallbackSettings),
            "learner": learner_fields,
        },
    )
    features = FeatureSettings(**routed["features"])
    actions = ActionSettings(**routed["actions"])
    agent = AgentSettings(**routed["agent"])
    staffing = StaffingSettings(**routed["staffing"])
    if mode == "natural":
        routed["learner"] = {**SERVERLESS_NAC_DEFAULTS, **routed["learner"]}
    learner_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    learner = build_linear_learner(mode, agent.state_dim(features), routed["learner"], learner_rng, agent.n_actions,
                                   x_blocks=2 if agent.novel_block else 1)
    record = {
        "mode": mode,
        "features": asdict(features),
        "actions": asdict(actions),
        "agent": asdict(agent),
        "learner": _linear_record(mode, routed["learner"], agent.state_dim(features), agent.n_actions),
    }
    if agent.staffed:
        record["staffing"] = asdict(staffing)
    return with_fallback(SharedPolicyAgent(
        "nac-linear",
        learner,
        features=features,
        actions=actions,
        agent=agent,
        seed=seed,
        settings_record=record,
        diagnostics=NAC_LINEAR_DIAGNOSTICS,
        staffing=staffing,
    ), routed["fallback"])
