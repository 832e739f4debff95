"""NAC-Linear on the serverless mean-field game, and the agent driver NAC-NN shares.

Every function is an agent; all agents share one policy (the paper's mean-field parameter sharing):
each tick :class:`SharedPolicyAgent` builds the state vectors of all functions
(:mod:`policies.serverless_features`), asks the shared learner for π(·|s) of every function at
once, draws one action per function, and remembers (s, a, π(·|s)). On the next tick's ``feedback``
it pairs that with the reward each function earned and with the new state and action (s′, a′), so
one tick of N functions yields up to N transitions (s, a, r, s′, a′) for the one shared critic and
actor. Transitions with no reward (NaN) or no usable next state are skipped, never read as zero.

The learner behind the driver is one of two (``mode``):

* ``natural``: Algorithm 1 of the paper as written, through the linear NAC core of
  :mod:`policies.nac` (projected TD(0) critic on the shifted soft Q, Algorithm 2; the fit of the
  compatible-function-approximation loss, Algorithm 3, by SGD or its exact Fisher-solve minimiser;
  θ ← (1 − ηλ)θ + ηŵ).
* ``kl``: the paper's serverless implementation (Appendix E): the natural-gradient step is
  approximated by gradient descent with an adaptive KL penalty (PPO-like), learning rate 3e-4,
  γ = 0.99, minibatches of 5, 5 epochs. The critic still fits the shifted soft Q of Algorithm 2 and the
  advantage is Algorithm 3's Â = q̂(s, a) − E_{a′∼π} q̂(s, a′); only the policy step differs. NAC-NN
  (:mod:`policies.nac_nn`) is the same step with MLPs.

Both linear learners use φ(s, a) = e_a ⊗ x(s), so θ and the critic's ψ are vectors of length A·d,
viewed as (A, d) matrices for the logits ``x @ Θᵀ``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

import numpy as np

from policies.nac import STATE_VERSION as NAC_STATE_VERSION
from policies.nac import BlockFeatures, NACHyperparameters, NaturalActorCritic, TransitionBatch
from policies.registry import register
from policies.serverless_features import (
    N_ACTIONS,
    ActionSettings,
    FeatureSettings,
    actions_to_decisions,
    greedy_actions,
    offered_load,
    sample_actions,
    smooth_load,
    state_features,
)
from policies.types import ClusterSnapshot, Decisions

#: Bumped whenever the meaning or layout of a learner's state changes; checkpoints carry it.
STATE_VERSION = 3


@dataclass(frozen=True, eq=False)
class Transitions:
    """A batch of M transitions (s, a, r, s′, a′) of the shared policy, gathered over functions."""

    x: np.ndarray
    """(M, d) state vectors x(s)."""
    action: np.ndarray
    """(M,) action taken in s, int."""
    reward: np.ndarray
    """(M,) reward earned for it, in [0, 1], finite."""
    x_next: np.ndarray
    """(M, d) state vectors x(s′) one tick later."""
    action_next: np.ndarray
    """(M,) action taken in s′ (Algorithm 2's a_{k+1}), int."""
    probs: np.ndarray
    """(M, A) π(·|s) of the policy that chose ``action`` (the behaviour policy)."""
    probs_next: np.ndarray
    """(M, A) π(·|s′) of the policy that chose ``action_next``."""

    def __len__(self) -> int:
        return len(self.action)


class SharedLearner(Protocol):
    """What the driver needs from a learner: a batched policy, an update, and its state."""

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """π(·|s) for every row of ``x`` (N, d): an (N, A) array whose rows sum to 1."""
        ...

    def update(self, batch: Transitions) -> dict[str, float]:
        """Learn from one tick's transitions; returns diagnostics."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: arrays (numpy or torch) and JSON-able values."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...

    def signature(self) -> dict[str, Any]:
        """The shapes a checkpoint must agree with (feature dimension, actions, network sizes)."""
        ...


# --------------------------------------------------------------------------- the KL-penalised step


@dataclass(frozen=True)
class KLStepSettings:
    """Hyperparameters of the KL-penalised policy step (the paper's Appendix E) and its critic."""

    learning_rate: float = 3e-4
    """Adam step size of both actor and critic. 3e-4: the paper's value for NAC-Linear and NAC-NN."""
    gamma: float = 0.99
    """Discount γ per tick. The paper's 0.99: a horizon of ~100 ticks (~17 min at 10 s), longer than
    the 10-minute keep-alive whose cold starts a decision can cause."""
    entropy_reg: float = 0.01
    """Entropy regularisation λ of the game: the critic's target is r − λ log π(a|s) + γ q̂(s′, a′)
    (Algorithm 2). Small against rewards in [0, 1]: enough to keep every move tried."""
    minibatch_size: int = 5
    """Transitions per gradient step: the paper's 5 (with its 12 functions, 2-3 steps a tick)."""
    max_minibatches_per_epoch: int = 8
    """At most this many gradient steps per epoch; above minibatch_size x this many transitions the
    minibatches grow instead. Keeps an update at 10,000 functions a bounded number of vector steps
    (the paper's 12 functions never reach the cap, so its setting is unchanged)."""
    epochs: int = 5
    """Passes over a tick's transitions per update: the paper's 5."""
    kl_target: float = 0.01
    """Target mean KL(π_old ‖ π_new) per update; the penalty coefficient adapts towards it."""
    kl_coef_init: float = 1.0
    """Initial KL penalty coefficient β (Schulman et al. 2017, adaptive KL variant, start at 1)."""
    kl_adapt_factor: float = 2.0
    """β is multiplied by this when KL > 1.5·target and divided by it when KL < target/1.5 (the
    PPO paper's rule)."""
    max_grad_norm: float = 0.5
    """Gradient norm clip per step: a single tick of extreme latencies must not throw θ far."""
    normalise_advantages: bool = True
    """Scale Â to zero mean and unit variance over the tick's batch (not per minibatch of 5, whose
    statistics would be noise), so the step size does not depend on the reward scale."""

    def __post_init__(self) -> None:
        checks = (
            ("learning_rate", 0 < self.learning_rate <= 1, "in (0, 1]"),
            ("gamma", 0 <= self.gamma < 1, "in [0, 1)"),
            ("entropy_reg", self.entropy_reg >= 0, ">= 0"),
            ("minibatch_size", self.minibatch_size >= 1, ">= 1"),
            ("max_minibatches_per_epoch", self.max_minibatches_per_epoch >= 1, ">= 1"),
            ("epochs", self.epochs >= 1, ">= 1"),
            ("kl_target", self.kl_target > 0, "> 0"),
            ("kl_coef_init", self.kl_coef_init > 0, "> 0"),
            ("kl_adapt_factor", self.kl_adapt_factor > 1, "> 1"),
            ("max_grad_norm", self.max_grad_norm > 0, "> 0"),
        )
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"KLStepSettings.{name}={getattr(self, name)}: must be {allowed}")


def minibatch_slices(n: int, settings: KLStepSettings) -> list[slice]:
    """Near-equal contiguous minibatches of one epoch over ``n`` shuffled transitions.

    The caller permutes the batch once per epoch and slices it (one gather per epoch, not one per
    minibatch).
    """
    count = min(max(1, math.ceil(n / settings.minibatch_size)), settings.max_minibatches_per_epoch)
    edges = np.linspace(0, n, count + 1).round().astype(int)
    return [slice(int(lo), int(hi)) for lo, hi in itertools.pairwise(edges) if hi > lo]


def adapt_kl_coef(coef: float, kl: float, settings: KLStepSettings) -> float:
    """The PPO paper's adaptive rule: grow β when the step overshot the KL target, shrink it when it undershot."""
    if not math.isfinite(kl):
        return coef
    if kl > 1.5 * settings.kl_target:
        coef *= settings.kl_adapt_factor
    elif kl < settings.kl_target / 1.5:
        coef /= settings.kl_adapt_factor
    # Bounded so that a long run of tiny or huge steps cannot drive β to 0 or overflow.
    return float(min(max(coef, 1e-6), 1e6))


def soft_advantage(
    q_a_n: np.ndarray, p_a_n: np.ndarray, logp_a_n: np.ndarray, action_n: np.ndarray, entropy_reg: float
) -> np.ndarray:
    """Â(s, a) = [q̂(s, a) − λ log π(a|s)] − Σ_b π(b|s) [q̂(s, b) − λ log π(b|s)], action-major inputs (A, N).

    The natural gradient of the λ-regularised objective for a softmax policy. Algorithm 1 gets the
    −λ log π part from its θ ← (1 − ηλ)θ + ηŵ (for a softmax policy λθ is λ log π up to a per-state
    constant); the KL-penalised step has no such decay, so without this term its policy is pulled
    only by q̂ and turns deterministic faster than the regularised equilibrium softmax(q/λ) is.
    Works on numpy arrays and on torch tensors alike.
    """
    soft_a_n = q_a_n - entropy_reg * logp_a_n
    cols = np.arange(soft_a_n.shape[1])
    return soft_a_n[action_n, cols] - (p_a_n * soft_a_n).sum(0)


def explained_variance(prediction: np.ndarray, target: np.ndarray) -> float:
    """1 − Var(target − prediction) / Var(target); NaN when the target does not vary."""
    var = float(np.var(target))
    return float("nan") if var == 0 else 1.0 - float(np.var(target - prediction)) / var


def log_softmax_columns(logits_a_n: np.ndarray) -> np.ndarray:
    """log π for logits laid out action-major, (A, N) -> (A, N), stable for large logits.

    Action-major because the reductions then run over A rows of length N (vectorised) rather
    than over N rows of length 9, which numpy does several times slower.
    """
    z = logits_a_n - logits_a_n.max(axis=0)
    z -= np.log(np.exp(z).sum(axis=0))
    return z


def softmax_rows(x: np.ndarray, weights_a_d: np.ndarray) -> np.ndarray:
    """π(·|s) = softmax(Θ x(s)) for every row of ``x`` (N, d): an (N, A) array."""
    return np.exp(log_softmax_columns(weights_a_d @ x.T)).T


@dataclass
class Adam:
    """Adam (Kingma & Ba 2015) on one flat parameter vector, with its moments as explicit state."""

    size: int
    """Number of parameters."""
    learning_rate: float
    """Step size."""
    beta1: float = 0.9
    """Decay of the first moment (the usual default)."""
    beta2: float = 0.999
    """Decay of the second moment (the usual default)."""
    eps: float = 1e-8
    """Added to the root of the second moment (the usual default)."""
    m: np.ndarray = field(init=False)
    """First-moment estimate."""
    v: np.ndarray = field(init=False)
    """Second-moment estimate."""
    steps: int = field(init=False, default=0)
    """Steps taken (for the bias correction)."""

    def __post_init__(self) -> None:
        self.m = np.zeros(self.size)
        self.v = np.zeros(self.size)

    def step(self, params: np.ndarray, grad: np.ndarray) -> None:
        """Move ``params`` in place against ``grad``."""
        self.steps += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        m_hat = self.m / (1 - self.beta1**self.steps)
        v_hat = self.v / (1 - self.beta2**self.steps)
        params -= self.learning_rate * m_hat / (np.sqrt(v_hat) + self.eps)


def _clip(grad: np.ndarray, max_norm: float) -> np.ndarray:
    norm = float(np.linalg.norm(grad))
    return grad * (max_norm / norm) if norm > max_norm else grad


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


@dataclass
class LinearKLLearner:
    """NAC-Linear with the paper's serverless step: linear soft-Q critic, KL-penalised linear actor."""

    state_dim: int
    """Length d of x(s)."""
    settings: KLStepSettings
    """Hyperparameters."""
    rng: np.random.Generator
    """Shuffles the minibatches; owned by this learner."""
    n_actions: int = N_ACTIONS
    """A, the number of discrete moves."""
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
        self.kl_coef = self.settings.kl_coef_init

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return softmax_rows(x, self.theta)

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
                    self.psi.reshape(-1), _clip((g_a_m @ x_m_d).reshape(-1), s.max_grad_norm)
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
                self.actor_opt.step(self.theta.reshape(-1), _clip(grad_a_d.reshape(-1), s.max_grad_norm))
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


# --------------------------------------------------------------------------- the driver


@dataclass(frozen=True, eq=False)
class _Step:
    """What the driver knew and did at one tick."""

    time_s: float
    """The snapshot's time, s."""
    names: tuple[str, ...]
    """The snapshot's function names (the rows of the arrays below)."""
    x: np.ndarray
    """(N, d) state vectors."""
    usable: np.ndarray
    """(N,) rows with complete data (the only rows decided and learned from)."""
    actions: np.ndarray
    """(N,) the action drawn for every row."""
    probs: np.ndarray
    """(N, A) π(·|s) the actions were drawn from."""
    restored: bool = False
    """Read from a checkpoint: pair it only with a later tick of the same functions."""
    acted: np.ndarray | None = None
    """(N,) rows whose move was applied (False where the function was left to the platform as
    idle); None until ``decide`` has mapped the actions. Only these rows start a transition."""

    def precedes(self, snapshot: ClusterSnapshot) -> bool:
        """Whether ``snapshot`` can be the tick after this one (always true within one run)."""
        if not self.restored:
            return True
        names = snapshot.functions.names
        return snapshot.time_s > self.time_s and tuple(names[: len(self.names)]) == self.names


#: State keys of the decision whose reward is still due; their shapes follow the number of
#: functions, so checkpoints do not compare them (see controller/checkpoint.py).
PENDING_PREFIX = "pending/"


@dataclass(frozen=True)
class AgentSettings:
    """How the driver uses its learner."""

    frozen: bool = False
    """No learning: ``feedback`` does nothing; decisions only (evaluation, or a trained policy in production)."""
    greedy: bool = False
    """Choose the most probable move instead of sampling one. Sampling (the default) is what the
    learner's theory assumes; greedy is for evaluating a frozen policy without exploration noise."""
    label: str = "nac"
    """Prefix of every decision's reason string."""
    reward_centering: float = 0.01
    """Step size of the running mean r̄ of the reward that is subtracted from every reward before
    the learner sees it (reward centring, Naik et al. 2024); 0 turns it off. A constant shift of r
    shifts every soft Q-value by the same c/(1 − γ), so π's target softmax(q/λ) is unchanged; but
    a critic that starts at q̂ = 0 under values of r/(1 − γ) ≈ 80 rises fastest for the moves it
    samples most, which then look best: centred, the values are O(1) and that bias is gone.
    0.01 per tick averages over ~100 ticks (17 minutes): long against one burst, short against
    the diurnal swing of the trace."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.reward_centering) and 0 <= self.reward_centering <= 1):
            raise ValueError(f"AgentSettings.reward_centering={self.reward_centering}: must be in [0, 1]")


class SharedPolicyAgent:
    """The :class:`~policies.types.Policy` of a learned mean-field agent: one shared learner, all functions.

    Keeps the last two ticks' (s, a, π(·|s)) so that ``feedback`` can be called before or after
    ``decide`` of the same tick: either way the reward of tick t's decision is paired with tick
    t + 1's state and action.
    """

    def __init__(
        self,
        name: str,
        learner: SharedLearner,
        *,
        features: FeatureSettings,
        actions: ActionSettings,
        agent: AgentSettings,
        seed: int,
        settings_record: Mapping[str, Any],
    ) -> None:
        self.name = name
        self.learner = learner
        self.features = features
        self.actions = actions
        self.agent = agent
        self.seed = seed
        self.settings_record = dict(settings_record)
        self.rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
        self._before: _Step | None = None
        self._latest: _Step | None = None
        self._prepared: _Step | None = None
        self._fed_time: float | None = None
        self.reward_mean = 0.0
        """The running mean r̄ subtracted from rewards (``AgentSettings.reward_centering``)."""
        self.reward_batches = 0
        """Batches folded into ``reward_mean`` (the first one sets it)."""
        self.load: np.ndarray | None = None
        """Smoothed offered load per function the staffing band follows (``smooth_load``)."""
        self.load_time: float | None = None
        """Snapshot time ``load`` was last advanced at (once per tick, however often decide runs)."""

    def _observe(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> _Step:
        feats = state_features(snapshot, mu, self.features)
        probs = self.learner.probabilities(feats.x)
        chosen = greedy_actions(probs) if self.agent.greedy else sample_actions(probs, self.rng)
        return _Step(float(snapshot.time_s), snapshot.functions.names, feats.x, feats.usable, chosen, probs)

    def decide(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> Decisions:
        step = self._prepared
        if step is None or step.time_s != snapshot.time_s or len(step.actions) != len(snapshot.functions):
            step = self._observe(snapshot, mu)
        self._prepared = None
        if self._latest is None or self._latest.time_s != step.time_s:
            self._before, self._latest = self._latest, step
        decisions = actions_to_decisions(
            snapshot.functions,
            step.actions,
            step.usable,
            self.actions,
            self.agent.label,
            snapshot.tick_s,
            load=self._staffing_load(snapshot),
        )
        if self._latest is not None and self._latest.time_s == step.time_s and self._latest.acted is None:
            self._latest = replace(self._latest, acted=np.asarray(decisions.action) >= 0)
        return decisions

    def _staffing_load(self, snapshot: ClusterSnapshot) -> np.ndarray:
        """max(tick's offered load, its smoothed value): what the staffing band staffs for."""
        tick_load = offered_load(snapshot.functions, snapshot.tick_s)
        if self.load_time != snapshot.time_s or self.load is None or len(self.load) != len(tick_load):
            self.load = smooth_load(self.load, tick_load, snapshot.tick_s, self.actions)
            self.load_time = float(snapshot.time_s)
        return np.maximum(tick_load, self.load)

    def feedback(self, snapshot: ClusterSnapshot, mu: np.ndarray, rewards: np.ndarray) -> Mapping[str, float]:
        if self.agent.frozen:
            return {}
        rewards = np.asarray(rewards, dtype=float)
        n = len(snapshot.functions)
        if rewards.shape != (n,):
            raise ValueError(f"{self.name}.feedback: rewards has shape {rewards.shape}, expected ({n},)")
        if self._fed_time == snapshot.time_s:
            return {"transitions": 0.0}
        if self._latest is not None and self._latest.time_s == snapshot.time_s:
            previous, current = self._before, self._latest  # decide ran first this tick
        else:
            previous, current = self._latest, self._observe(snapshot, mu)
            self._prepared = current  # decide of this tick reuses these actions
        self._fed_time = snapshot.time_s
        if previous is None or not previous.precedes(snapshot):
            return {"transitions": 0.0}
        batch, skipped_reward, skipped_next = _transitions(previous, current, rewards)
        out: dict[str, float] = {
            "transitions": float(len(batch)),
            "skipped_no_reward": float(skipped_reward),
            "skipped_no_next_state": float(skipped_next),
        }
        if len(batch) == 0:
            return out
        out["mean_reward"] = float(np.mean(batch.reward))
        out["reward_centre"] = self._centre(out["mean_reward"])
        if self.agent.reward_centering:
            batch = replace(batch, reward=batch.reward - out["reward_centre"])
        out.update(self.learner.update(batch))
        return out

    def _centre(self, batch_mean: float) -> float:
        """Fold one batch's mean reward into r̄ and return r̄ (0 with centring off)."""
        rate = self.agent.reward_centering
        if rate == 0:
            return 0.0
        self.reward_mean = batch_mean if self.reward_batches == 0 else self.reward_mean + rate * (
            batch_mean - self.reward_mean
        )
        self.reward_batches += 1
        return self.reward_mean

    # ---- checkpoints (controller/checkpoint.py stores these)

    def state_dict(self) -> dict[str, Any]:
        """Learner state under ``learner/``, the driver's generator, and the decision whose reward is due.

        With the pending decision a resumed run learns from the first tick after the checkpoint
        exactly as the uninterrupted run would have.
        """
        state = {f"learner/{key}": value for key, value in self.learner.state_dict().items()}
        state["agent/rng"] = self.rng.bit_generator.state
        state["agent/reward_mean"] = self.reward_mean
        state["agent/reward_batches"] = self.reward_batches
        if self.load is not None:
            state[f"{PENDING_PREFIX}load"] = self.load.copy()
            state[f"{PENDING_PREFIX}load_time"] = self.load_time
        step = self._latest
        if step is not None:
            state.update(
                {
                    f"{PENDING_PREFIX}time_s": step.time_s,
                    f"{PENDING_PREFIX}names": list(step.names),
                    f"{PENDING_PREFIX}x": step.x.copy(),
                    f"{PENDING_PREFIX}usable": step.usable.copy(),
                    f"{PENDING_PREFIX}actions": step.actions.copy(),
                    f"{PENDING_PREFIX}probs": step.probs.copy(),
                }
            )
            if step.acted is not None:
                state[f"{PENDING_PREFIX}acted"] = step.acted.copy()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`. The pending decision is paired only with a later tick of the
        same functions (a resumed run against another workload starts learning one tick later)."""
        self.learner.load_state_dict(
            {k[len("learner/") :]: v for k, v in state.items() if k.startswith("learner/")}
        )
        self.rng.bit_generator.state = state["agent/rng"]
        self.reward_mean = float(state["agent/reward_mean"])
        self.reward_batches = int(state["agent/reward_batches"])
        self._before = self._prepared = None
        self._fed_time = None
        self._latest = None
        self.load = self.load_time = None
        if f"{PENDING_PREFIX}load" in state:
            self.load = np.array(state[f"{PENDING_PREFIX}load"], dtype=float)
            self.load_time = float(state[f"{PENDING_PREFIX}load_time"])
        if f"{PENDING_PREFIX}x" in state:
            self._latest = _Step(
                time_s=float(state[f"{PENDING_PREFIX}time_s"]),
                names=tuple(state[f"{PENDING_PREFIX}names"]),
                x=np.array(state[f"{PENDING_PREFIX}x"], dtype=float),
                usable=np.array(state[f"{PENDING_PREFIX}usable"], dtype=bool),
                actions=np.array(state[f"{PENDING_PREFIX}actions"], dtype=np.int64),
                probs=np.array(state[f"{PENDING_PREFIX}probs"], dtype=float),
                restored=True,
                acted=(
                    np.array(state[f"{PENDING_PREFIX}acted"], dtype=bool)
                    if f"{PENDING_PREFIX}acted" in state
                    else None
                ),
            )

    def checkpoint_signature(self) -> dict[str, Any]:
        """What a checkpoint must match to be loaded into this policy."""
        return {
            "policy": self.name,
            "state_version": STATE_VERSION,
            "mu_bins": self.features.mu_bins,
            **self.learner.signature(),
        }


def _transitions(previous: _Step, current: _Step, rewards: np.ndarray) -> tuple[Transitions, int, int]:
    """Pair tick t's (s, a) with tick t + 1's reward and (s′, a′), row by row (functions keep their index)."""
    m = min(len(previous.actions), len(current.actions))
    had_decision = previous.usable[:m] if previous.acted is None else previous.usable[:m] & previous.acted[:m]
    has_reward = had_decision & np.isfinite(rewards[:m])
    ok = has_reward & current.usable[:m]
    idx = np.flatnonzero(ok)
    batch = Transitions(
        x=previous.x[idx],
        action=previous.actions[idx],
        reward=rewards[idx],
        x_next=current.x[idx],
        action_next=current.actions[idx],
        probs=previous.probs[idx],
        probs_next=current.probs[idx],
    )
    return batch, int(had_decision.sum() - has_reward.sum()), int(has_reward.sum() - ok.sum())


def field_names(cls: type, exclude: tuple[str, ...] = ()) -> frozenset[str]:
    """The field names of dataclass ``cls`` a caller may set (minus ``exclude``)."""
    return frozenset(f.name for f in fields(cls)) - set(exclude)


def split_params(
    params: Mapping[str, Any], groups: Mapping[str, frozenset[str]]
) -> dict[str, dict[str, Any]]:
    """Route flat keyword parameters to the settings group that has a field of that name."""
    owner = {name: group for group, names in groups.items() for name in names}
    routed: dict[str, dict[str, Any]] = {group: {} for group in groups}
    for key, value in params.items():
        if key not in owner:
            raise TypeError(f"unknown parameter {key!r}; known parameters: {', '.join(sorted(owner))}")
        routed[owner[key]][key] = value
    return routed


# --------------------------------------------------------------------------- NAC-Linear

LINEAR_MODES = ("natural", "kl")
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

    def __init__(self, core: NaturalActorCritic, state_dim: int) -> None:
        self.core = core
        self.state_dim = state_dim
        self.n_actions = core.hp.n_actions

    @classmethod
    def create(
        cls, state_dim: int, params: Mapping[str, Any], rng: np.random.Generator
    ) -> NaturalLinearLearner:
        hp = NACHyperparameters(n_features=N_ACTIONS * state_dim, n_actions=N_ACTIONS, **params)
        return cls(NaturalActorCritic(hp, rng), state_dim)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        # θᵀφ(s, a) = Θ[a] · x(s) with Θ = θ viewed as (A, d): the core's softmax, never materialising φ.
        return softmax_rows(x, self.core.theta.reshape(self.n_actions, self.state_dim))

    def update(self, batch: Transitions) -> dict[str, float]:
        return self.core.update(
            TransitionBatch(
                features=BlockFeatures(batch.x, N_ACTIONS),
                actions=batch.action,
                rewards=batch.reward,
                next_features=BlockFeatures(batch.x_next, N_ACTIONS),
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


def _linear_record(mode: str, params: Mapping[str, Any], state_dim: int) -> dict[str, Any]:
    if mode == "kl":
        return asdict(KLStepSettings(**params))
    return asdict(NACHyperparameters(n_features=N_ACTIONS * state_dim, n_actions=N_ACTIONS, **params))


def build_linear_learner(
    mode: str, state_dim: int, params: Mapping[str, Any], rng: np.random.Generator
) -> SharedLearner:
    """The linear learner of ``mode`` with its own hyperparameters from ``params``."""
    if mode == "kl":
        return LinearKLLearner(state_dim=state_dim, settings=KLStepSettings(**params), rng=rng)
    if mode == "natural":
        return NaturalLinearLearner.create(state_dim, params, rng)
    raise ValueError(f"nac-linear mode={mode!r}: must be one of {LINEAR_MODES}")


@register("nac-linear")
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
            "learner": learner_fields,
        },
    )
    features = FeatureSettings(**routed["features"])
    actions = ActionSettings(**routed["actions"])
    agent = AgentSettings(**routed["agent"])
    if mode == "natural":
        routed["learner"] = {**SERVERLESS_NAC_DEFAULTS, **routed["learner"]}
    learner_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    learner = build_linear_learner(mode, features.state_dim, routed["learner"], learner_rng)
    record = {
        "mode": mode,
        "features": asdict(features),
        "actions": asdict(actions),
        "agent": asdict(agent),
        "learner": _linear_record(mode, routed["learner"], features.state_dim),
    }
    return SharedPolicyAgent(
        "nac-linear",
        learner,
        features=features,
        actions=actions,
        agent=agent,
        seed=seed,
        settings_record=record,
    )
