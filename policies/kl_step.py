"""The KL-penalised policy step shared by NAC-Linear's ``kl`` mode and NAC-NN, without the networks.

Mao et al. (NeurIPS 2022), Appendix E, implement the natural-gradient step of Algorithm 1 for the
serverless game by gradient descent on a surrogate with an adaptive KL penalty: learning rate 3e-4,
γ = 0.99, minibatches of 5, 5 epochs. Around that step the two learners share:

* the critic's target, Algorithm 2's shifted soft Q: r − λ log π(a|s) + γ q̂(s′, a′), frozen for one
  update (computed by each learner; its settings live in :class:`KLStepSettings`);
* the advantage, Algorithm 3's Â(s, a) = q̂(s, a) − E_{a′∼π} q̂(s, a′) with the entropy term of the
  λ-regularised objective (:func:`soft_advantage`);
* the actor's surrogate −E[ρ Â] + β E[KL(π_old ‖ π_θ)], ρ = π_θ(a|s) / π_old(a|s), and the adaptive
  β of Schulman et al. 2017 (PPO, adaptive-KL variant; :func:`adapt_kl_coef`);
* how one tick's transitions are cut into minibatches (:func:`minibatch_slices`), the diagnostics
  both return (:data:`KL_STEP_DIAGNOSTICS`), and the numpy helpers the linear learner needs: a
  column-wise log-softmax, Adam (Kingma & Ba 2015) with explicit state, gradient-norm clipping.

Shapes are in the names: N or M transitions, A actions, d state entries; ``_a_n`` arrays are
action-major (A, N).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

#: Every key the update of a KL-step learner returns (NAC-Linear ``kl`` mode and NAC-NN), in the
#: cleanrl naming: the critic's and the actor's mean minibatch loss, the KL between the policy before
#: and after the update, the new policy's mean entropy (nats), the share of the critic target's
#: variance the fitted q̂ explains, and the penalty coefficient β the update used.
KL_STEP_DIAGNOSTICS: tuple[str, ...] = (
    "losses/critic",
    "losses/actor",
    "approx_kl",
    "entropy",
    "explained_variance",
    "kl_coef",
)


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
    PPO paper's rule). 1 holds β at ``kl_coef_init`` (the paper's fixed-coefficient variant): where
    every update moves the policy far less than the target, the adaptive rule halves β down to its
    floor and the penalty no longer anchors the policy to where it started."""
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
            ("kl_adapt_factor", self.kl_adapt_factor >= 1, ">= 1"),
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


def clip_grad_norm(grad: np.ndarray, max_norm: float) -> np.ndarray:
    """``grad`` scaled down to Euclidean norm ``max_norm`` if it is longer (unchanged otherwise)."""
    norm = float(np.linalg.norm(grad))
    return grad * (max_norm / norm) if norm > max_norm else grad
