"""The linear natural actor-critic of the paper (Mao et al., NeurIPS 2022), as an importable core.

Algorithm 1 (single loop, two timescales) with its two oracles from the supplement, App. C:

* critic, Algorithm 2 -- projected TD(0) on the shifted soft Q-function
  q(s, a) = r(s, a) − λ log π(a|s) + γ E[q(s', a')], linear in the features, q̂ = φᵀψ̄:
  ψ ← Proj_B[ψ + α_k (r − λ log π(a|s) + γ ψᵀφ(s', a') − ψᵀφ(s, a)) φ(s, a)], output the average ψ̄;
* actor, Algorithm 3 -- projected SGD on the compatible-function-approximation loss
  L(w) = E[(wᵀ∇log π(a|s) − Â(s, a))²], ∇log π(a|s) = φ(s, a) − E_{a'∼π} φ(s, a'):
  w ← Proj_R[w − 2ᾱ (wᵀ∇log π − Â) ∇log π], output the average ŵ. Or, as the paper's own experiments
  did (App. D: "use the collected empirical trajectory to estimate the policy gradient and the Fisher
  information matrix"), the exact minimiser of the sampled loss: a Fisher-matrix solve;
* policy (Algorithm 1, line 5): θ ← (1 − ηλ) θ + η ŵ.

Which advantage Â the actor fits: the proof of Lemma 8 (App. B.2) substitutes g_t = ŵ_t − λθ_t and
compares φᵀŵ_t with the *soft* Q^{π,λ}, so ŵ fits the advantage of Q = q + λ log π. With log-linear
policies the two are one exact shift apart -- the advantage of λ log π(a|s) is λθᵀ∇log π(a|s) -- so
ŵ = w_q + λθ, and the policy step θ ← (1 − ηλ)θ + ηŵ equals θ ← θ + η w_q: a plain natural-gradient
step on the entropy-regularised objective, whose gradient is E[∇log π · q] (``natural_gradient``
below; the tests check both identities). Fitting the shifted q's advantage and then shrinking by
(1 − ηλ) as well would count the regulariser twice.

The mean-field step μ ← (1 − β)μ + βΓ₂(π, μ) (Algorithm 1, line 6) belongs to whoever observes the
population; :func:`mean_field_step` is that line as a pure function.

The core knows nothing about games or clusters: it consumes batches of feature tensors. Shapes are in
the names: N rows (agents, or transitions), A actions, d features. A batch's features are either a
dense array ``(N, A, d)`` with ‖φ(s, a)‖₂ ≤ 1, or one of two structured types that are never
expanded to (N, A, d):

* :class:`OneHotFeatures` -- each φ(s, a) a basis vector, given by its index (tabular and
  time-augmented tabular features in ``mfg/features.py``), which keeps a 2,000-feature tabular game
  as cheap as a 64-feature dense one;
* :class:`BlockFeatures` -- φ(s, a) = e_a ⊗ x(s), a state vector x(s) in the block of the action
  (the serverless agents' features, d = A·d_x): θ viewed as an (A, d_x) matrix Θ gives the scores
  x Θᵀ, and every row the learner needs (φ(s, a), ∇log π(a|s) = (e_a − π(·|s)) ⊗ x(s)) is a
  Kronecker product of an A-vector and x(s), so the TD step, the compatible fit and the Fisher
  matrix work on x (N, d_x) and (N, A) weights only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg as scipy_linalg
import scipy.sparse.linalg as sparse_linalg
from scipy import sparse

#: Bumped when the meaning or layout of :meth:`NaturalActorCritic.state_dict` changes.
STATE_VERSION = 1

#: Every key :meth:`NaturalActorCritic.update` returns: the critic's RMS TD error before and after
#: its epochs, the share of its steps that hit the radius B and ‖ψ̄‖; the actor's compatible-fit loss,
#: the RMS of Â, ‖ŵ‖ and whether ŵ was projected onto radius R; ‖θ‖ after the step and the mean
#: entropy (nats) of π before it; the batch's size and mean reward.
UPDATE_DIAGNOSTICS: tuple[str, ...] = (
    "critic/td_error_rms",
    "critic/td_error_rms_after",
    "critic/projected_fraction",
    "critic/psi_norm",
    "actor/loss",
    "actor/advantage_rms",
    "actor/w_norm",
    "actor/projected",
    "policy/theta_norm",
    "policy/entropy",
    "batch/size",
    "batch/mean_reward",
)


@dataclass(frozen=True, eq=False)
class OneHotFeatures:
    """Features that are standard basis vectors: φ(s, a) = e_{index[n, a]} in R^dim (‖φ‖₂ = 1)."""

    index: np.ndarray
    """(N, A) int: which feature is on for row n and action a."""
    dim: int
    """d, the length of every feature vector."""

    def __post_init__(self) -> None:
        index = np.asarray(self.index)
        if index.ndim != 2 or not np.issubdtype(index.dtype, np.integer):
            raise ValueError(
                f"OneHotFeatures.index must be an (N, A) integer array, got {index.dtype} {index.shape}"
            )
        if index.size and (index.min() < 0 or index.max() >= self.dim):
            raise ValueError(
                f"OneHotFeatures.index has entries outside [0, {self.dim}): min {index.min()}, max {index.max()}"
            )
        object.__setattr__(self, "index", index)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.index.shape[0], self.index.shape[1], self.dim)

    def __getitem__(self, rows: Any) -> OneHotFeatures:
        return OneHotFeatures(self.index[rows], self.dim)

    def dense(self) -> np.ndarray:
        """The same features as an (N, A, d) float array (for tests and small cases)."""
        out = np.zeros(self.shape)
        n, a = np.indices(self.index.shape)
        out[n, a, self.index] = 1.0
        return out


@dataclass(frozen=True, eq=False)
class BlockFeatures:
    """φ(s, a) = e_a ⊗ x(s) in R^{A·d_x}: x(s) in the entries a·d_x .. (a+1)·d_x − 1, zeros elsewhere.

    ‖φ(s, a)‖₂ = ‖x(s)‖₂, so x's rows must have norm ≤ 1 for the paper's ‖φ‖ ≤ 1. A parameter
    vector v of length A·d_x is read as the (A, d_x) matrix whose row a is the block of action a.
    """

    x: np.ndarray
    """(N, d_x) float: the state vector of every row."""
    n_actions: int
    """A, the number of blocks (actions)."""

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype=float)
        if x.ndim != 2:
            raise ValueError(f"BlockFeatures.x must be an (N, d_x) array, got shape {x.shape}")
        if self.n_actions < 1:
            raise ValueError(f"BlockFeatures.n_actions={self.n_actions!r} must be >= 1")
        object.__setattr__(self, "x", x)

    @property
    def state_dim(self) -> int:
        """d_x, the length of x(s)."""
        return self.x.shape[1]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.x.shape[0], self.n_actions, self.n_actions * self.x.shape[1])

    def __getitem__(self, rows: Any) -> BlockFeatures:
        return BlockFeatures(self.x[rows], self.n_actions)

    def blocks(self, v: np.ndarray) -> np.ndarray:
        """A parameter vector (A·d_x,) as its (A, d_x) matrix of per-action blocks (a view)."""
        return v.reshape(self.n_actions, self.state_dim)

    def dense(self) -> np.ndarray:
        """The same features as an (N, A, A·d_x) float array (for tests and small cases)."""
        n, d_x = self.x.shape
        out = np.zeros((n, self.n_actions, self.n_actions, d_x))
        idx = np.arange(self.n_actions)
        out[:, idx, idx, :] = self.x[:, None, :]
        return out.reshape(self.shape)


Features = np.ndarray | OneHotFeatures | BlockFeatures


@dataclass(frozen=True)
class NACHyperparameters:
    """Every knob of the learner. Defaults are the paper's where it gives one (Mao et al., NeurIPS 2022)."""

    n_features: int
    """d, the feature dimension; θ, ψ and w all have this length."""
    n_actions: int
    """A, the number of actions every feature batch must have."""
    gamma: float = 0.99
    """Discount γ of the critic's target. 1.0 is allowed for finite horizons, where the batch marks
    the last epoch's transitions ``terminal`` (no bootstrap). 0.99 is the paper's serverless value."""
    entropy_reg: float = 0.01
    """λ, the entropy regularisation, in the learner's reward units (rewards in [0, 1]). It keeps
    every action's probability above exp(−2R/λ)/A (Lemma 2), which the theory needs; small, so the
    regularised equilibrium stays close to the unregularised one."""
    policy_lr: float = 0.05
    """η, the policy step of Algorithm 1 (θ ← (1 − ηλ)θ + ηŵ); the paper's SIS value. Needs 0 < ηλ < 1."""
    critic_lr: float = 0.001
    """α, the critic's constant step (``critic_schedule="constant"``), applied to the minibatch-mean TD
    direction; the paper's experiments use 0.001."""
    critic_schedule: Literal["constant", "paper"] = "constant"
    """``constant``: α every step, as in the experiments. ``paper``: α_k = 1/(ω(k+1)(1−γ)) of
    Proposition 1 (needs γ < 1), k counting the steps of one :meth:`NaturalActorCritic.update`."""
    critic_omega: float = 1.0
    """ω of the paper schedule: a lower bound on the smallest eigenvalue of E[φφᵀ]."""
    critic_radius: float = 100.0
    """B, radius of the ball ψ is projected on. Must exceed ‖ψ*‖: for one-hot features that is about
    √d · Q_max; 100 covers rewards in [0, 1] over ~10 effective steps with d ≤ 100."""
    critic_epochs: int = 1
    """Passes of TD(0) over each batch."""
    critic_minibatch: int = 0
    """Transitions per TD step; 0 means the whole batch (one step per epoch)."""
    critic_shuffle: bool = True
    """Visit minibatches in a fresh random order each epoch. False keeps the batch's own order in
    contiguous minibatches: a finite-horizon sampler that hands its rows in reverse epoch order with
    one epoch per minibatch then gets a backward sweep, each epoch bootstrapping from the just-updated
    next one, so a value travels the whole horizon in one pass instead of one epoch per pass."""
    critic_normalise: bool = False
    """Divide each coordinate's TD step by the minibatch mean of φ_j² (a diagonal step size). For
    one-hot features this makes α the fraction by which a visited cell moves toward its sampled
    target (α = 1: the sample mean), whatever the cell's visit frequency; it is the 1/ω scaling of
    the paper's α_k applied per coordinate, which orthonormal features make exact. Off: plain
    Algorithm 2 with a scalar step."""
    critic_average: bool = True
    """Output the averaged iterate ψ̄ (Algorithm 2, line 7); False outputs the last iterate, which a
    backward sweep needs (there each epoch's cells change at one step only, so an average over the
    sweep would mix old and new values)."""
    critic_warm_start: bool = True
    """Continue the TD chain from the previous update's last iterate instead of ψ₀ = 0. The policy
    moves by O(η) per update, so the old estimate is close; restarting would throw that away and
    leave a finite-horizon critic only a few backups deep."""
    actor_solver: Literal["fisher", "sgd"] = "fisher"
    """``sgd``: Algorithm 3 as written. ``fisher``: the exact minimiser of the same sampled loss,
    ŵ = (F + ρI)⁻¹ E[∇log π · Â] with the empirical Fisher matrix F, projected on the R-ball; what
    the paper's experiments did (App. D), and what SGD converges to."""
    actor_lr: float | None = None
    """ᾱ of Algorithm 3; None means the paper's R / (Q_max √K), K the number of SGD steps."""
    actor_radius: float = 100.0
    """R, radius of the ball ŵ is projected on; ‖θ‖ ≤ R/λ follows (Lemma 2)."""
    actor_epochs: int = 1
    """Passes of SGD over each batch (``actor_solver="sgd"``)."""
    actor_minibatch: int = 0
    """Samples per SGD step; 0 means the whole batch."""
    fisher_rows: int = 2048
    """Most transitions the Fisher matrix F of the ``fisher`` solver is estimated on: a larger batch
    contributes a uniform sample of this many rows (drawn by the learner's generator), while the
    gradient side E[∇log π · Â] uses every row. F is an expectation the sample estimates without
    bias; its cost grows with the rows times (A·d)², and 2048 rows keep an update for 10,000 functions
    of the staffing scheme (A·d = 288) within its 20 ms. 0 uses every row."""
    fisher_ridge: float = 1e-3
    """ρ relative to the mean diagonal of F: keeps the solve defined where features were never
    visited (their weight stays 0) while barely shrinking visited directions."""
    exact_shift: bool = False
    """Add the soft advantage's shift λθ to ŵ exactly instead of fitting it with the rest: ŵ = λθ + the fit of
    q̂'s own advantage. With a batch that determines ŵ the two agree (see the module docstring); with one that
    does not (fewer distinct rows than A·d), the fit recovers λθ only in the span of the batch's rows, so the
    fitted shift lets θ ← (1 − ηλ)θ + ηŵ shrink θ by (1 − ηλ) in every direction the batch says nothing about."""
    state_critic: bool = False
    """Learn the state value v̂(s) = E_π q(s, ·) instead of q̂(s, a), and fit the actor to the TD residual
    δ = r − λ log π(a|s) + γ v̂(s') − v̂(s), a one-sample estimate of q's advantage at the taken action. Needs
    block features φ(s, a) = e_a ⊗ x(s); v̂ = x(s)ᵀv is linear in x with one weight per entry, shared by every
    action, learned by the same projected TD(0) (step, epochs, radius and averaging as for ψ). Why: a linear
    q̂ with one block per action bootstraps each block from itself wherever the policy takes the same action
    again at s', so whatever the rewards of the states an action happens to be chosen in owe to things x does
    not show is multiplied by up to 1/(1 − γ) in that action's weights. v̂ bootstraps from the next state's
    value, which is one function for every action."""
    q_max: float | None = None
    """Bound on |q| used by the paper's actor step; None means (1 + γλ log A)/(1 − γ) (Lemma 3)."""
    seed: int = 0
    """Seed of the learner's own generator (action sampling, minibatch order)."""

    def __post_init__(self) -> None:
        def bad(key: str, rule: str) -> ValueError:
            return ValueError(f"NACHyperparameters.{key}={getattr(self, key)!r}: {rule}")

        if self.n_features < 1:
            raise bad("n_features", "must be >= 1")
        if self.n_actions < 2:
            raise bad("n_actions", "must be >= 2")
        if not 0.0 <= self.gamma <= 1.0:
            raise bad("gamma", "must be in [0, 1]")
        if self.entropy_reg < 0:
            raise bad("entropy_reg", "must be >= 0")
        if self.policy_lr <= 0 or not self.policy_lr * self.entropy_reg < 1.0:
            raise bad(
                "policy_lr", f"must be > 0 with policy_lr * entropy_reg < 1 (entropy_reg={self.entropy_reg})"
            )
        if self.critic_lr <= 0:
            raise bad("critic_lr", "must be > 0")
        if self.critic_schedule not in ("constant", "paper"):
            raise bad("critic_schedule", "must be 'constant' or 'paper'")
        if self.critic_schedule == "paper" and (self.gamma >= 1.0 or self.critic_omega <= 0):
            raise bad("critic_schedule", "'paper' needs gamma < 1 and critic_omega > 0")
        if self.actor_solver not in ("fisher", "sgd"):
            raise bad("actor_solver", "must be 'fisher' or 'sgd'")
        for key in ("critic_radius", "actor_radius"):
            if getattr(self, key) <= 0:
                raise bad(key, "must be > 0")
        for key in ("critic_epochs", "actor_epochs"):
            if getattr(self, key) < 1:
                raise bad(key, "must be >= 1")
        for key in ("critic_minibatch", "actor_minibatch"):
            if getattr(self, key) < 0:
                raise bad(key, "must be >= 0 (0 = whole batch)")
        if self.actor_lr is not None and self.actor_lr <= 0:
            raise bad("actor_lr", "must be > 0 or None")
        if self.fisher_ridge <= 0:
            raise bad("fisher_ridge", "must be > 0")
        if self.fisher_rows < 0:
            raise bad("fisher_rows", "must be >= 0 (0: every row)")
        if self.state_critic and self.n_features % self.n_actions:
            raise bad("state_critic", f"needs block features: n_features={self.n_features} is not a multiple of n_actions={self.n_actions}")
        if self.actor_solver == "sgd" and self.actor_lr is None and self.q_max is None and self.gamma >= 1.0:
            raise bad("q_max", "is needed for the paper's actor step when gamma = 1")

    def resolved_q_max(self) -> float:
        """Q_max of Lemma 3 (or the given bound)."""
        if self.q_max is not None:
            return self.q_max
        return (1.0 + self.gamma * self.entropy_reg * math.log(self.n_actions)) / (1.0 - self.gamma)


@dataclass(frozen=True, eq=False)
class TransitionBatch:
    """N transitions (s, a, r, s', a') sampled under the current policy (Algorithm 2, line 4)."""

    features: Features
    """φ(s, ·), (N, A, d)."""
    actions: np.ndarray
    """a, (N,) int."""
    rewards: np.ndarray
    """r, (N,) float, in the learner's units (the theory assumes [0, 1])."""
    next_features: Features
    """φ(s', ·), (N, A, d); ignored on terminal rows."""
    next_actions: np.ndarray
    """a' drawn from π(·|s'), (N,) int; ignored on terminal rows."""
    terminal: np.ndarray | None = None
    """(N,) bool: s' ends the episode (finite horizon), so the target has no γ q̂(s', a') term.
    None means no row is terminal."""

    def __post_init__(self) -> None:
        n = _n_rows(self.features)
        for key in ("actions", "rewards", "next_actions", "terminal"):
            value = getattr(self, key)
            if value is None:
                continue
            value = np.asarray(value)
            if value.shape != (n,):
                raise ValueError(f"TransitionBatch.{key} has shape {value.shape}; features have {n} rows")
            object.__setattr__(self, key, value)
        if _n_rows(self.next_features) != n:
            raise ValueError(
                f"TransitionBatch.next_features has {_n_rows(self.next_features)} rows, features {n}"
            )
        if not np.all(np.isfinite(self.rewards)):
            raise ValueError("TransitionBatch.rewards has non-finite entries")

    def __len__(self) -> int:
        return _n_rows(self.features)


# --------------------------------------------------------------------------- feature algebra


def _n_rows(phi: Features) -> int:
    return phi.shape[0]


def scores(phi: Features, v: np.ndarray) -> np.ndarray:
    """vᵀφ(s, a) for every row and action: (N, A)."""
    if isinstance(phi, OneHotFeatures):
        return v[phi.index]
    if isinstance(phi, BlockFeatures):
        # vᵀ(e_a ⊗ x) = V[a] · x with V = v as (A, d_x): one (N, d_x) @ (d_x, A) product.
        return phi.x @ phi.blocks(v).T
    # einsum streams the (N, A, d) tensor once; matmul on the 3-d array was ~2x slower here.
    return np.einsum("nad,d->na", phi, v)


def log_softmax(logits_na: np.ndarray) -> np.ndarray:
    """log π(a|s) from logits θᵀφ(s, a), (N, A), stable for large logits."""
    shifted = logits_na - logits_na.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


@dataclass(frozen=True, eq=False)
class SparseRows:
    """An (N, d) matrix with K stored entries per row: row n is Σ_k vals[n, k] e_{cols[n, k]}.

    The one-hot path's φ(s, a) (K = 1) and ∇log π(a|s) (K = A). Much cheaper than a general sparse
    matrix for the many small products of a TD sweep; duplicate columns in a row add up.
    """

    cols: np.ndarray
    """(N, K) int column indices."""
    vals: np.ndarray
    """(N, K) float values."""
    dim: int
    """d."""

    @property
    def shape(self) -> tuple[int, int]:
        return (self.cols.shape[0], self.dim)

    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        return np.einsum("nk,nk->n", self.vals, v[self.cols])

    def rmatvec(self, c: np.ndarray) -> np.ndarray:
        """Xᵀc, (d,)."""
        return np.bincount(self.cols.ravel(), weights=(self.vals * c[:, None]).ravel(), minlength=self.dim)

    def col_square_sum(self) -> np.ndarray:
        """Σ_n X[n, j]², (d,), exact when a row has no duplicate columns (true for one-hot φ)."""
        return np.bincount(self.cols.ravel(), weights=(self.vals**2).ravel(), minlength=self.dim)

    def rows(self, sel: np.ndarray | slice) -> SparseRows:
        return SparseRows(self.cols[sel], self.vals[sel], self.dim)

    def gram(self) -> sparse.csc_matrix:
        """XᵀX as a sparse (d, d) matrix."""
        n, k = self.cols.shape
        matrix = sparse.csr_matrix(
            (self.vals.ravel(), self.cols.ravel(), np.arange(0, n * k + 1, k)), shape=self.shape
        )
        return sparse.csc_matrix(matrix.T @ matrix)


@dataclass(frozen=True, eq=False)
class KroneckerRows:
    """An (N, A·d_x) matrix whose row n is weights[n] ⊗ x[n]: entry a·d_x + j is weights[n, a]·x[n, j].

    The block-feature path's φ(s, a) (weights e_a) and ∇log π(a|s) (weights e_a − π(·|s)). Every
    product goes through x (N, d_x) — or, once :meth:`factored`, through its varying columns u — and the
    weights (N, A), never through the (N, A·d_x) matrix.
    """

    weights: np.ndarray
    """(N, A) float: the action-side factor of every row."""
    x: np.ndarray
    """(N, d_x) float: the state-side factor of every row."""
    actions: np.ndarray | None = None
    """(N,) int when ``weights`` is one-hot at these actions (φ(s, a) of taken actions), else None."""
    u: np.ndarray | None = None
    """(N, d_u) x's varying columns and a column of ones, with x_n = L u_n (:meth:`factored`); None: x alone."""
    lift: np.ndarray | None = None
    """L, (d_x, d_u), with ``u``."""
    by_action: _ByAction | None = None
    """Factored one-hot rows grouped by their action (:meth:`factored`), for :meth:`rmatvec`."""

    def factored(self) -> KroneckerRows:
        """The same rows with x's constant columns factored out (:func:`_factor_constant_columns`), so
        products run over u's d_u columns instead of x's d_x; the rows themselves unless that applies.

        Factored one-hot rows (φ(s, a) of taken actions) also take per-row products: a score is
        u_n · (Ψ L)[a_n] and Xᵀc sums c_n u_n over the rows of each action, which costs a fraction of
        the products over all A actions that the general rows need."""
        if self.lift is not None:
            return self
        u, lift = _factor_constant_columns(self.x)
        if lift is None:
            return self
        by_action = None if self.actions is None else _ByAction.of(self.actions, u)
        return KroneckerRows(self.weights, self.x, self.actions, u, lift, by_action)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.x.shape[0], self.weights.shape[1] * self.x.shape[1])

    def _blocks(self, v: np.ndarray) -> np.ndarray:
        return v.reshape(self.weights.shape[1], self.x.shape[1])

    def __matmul__(self, v: np.ndarray) -> np.ndarray:
        blocks = self._blocks(v)
        if self.lift is not None and self.actions is not None:
            return np.einsum("nd,nd->n", self.u, (blocks @ self.lift).take(self.actions, axis=0))
        scores_na = self.x @ blocks.T if self.lift is None else self.u @ (blocks @ self.lift).T
        if self.actions is not None:
            # One-hot weights: the weighted sum over actions is the taken action's score (the same number).
            return scores_na[np.arange(self.actions.shape[0]), self.actions]
        return np.einsum("na,na->n", self.weights, scores_na)

    def rmatvec(self, c: np.ndarray) -> np.ndarray:
        """Xᵀc, (A·d_x,): block a is Σ_n c_n weights[n, a] x[n]."""
        if self.lift is None:
            return ((self.weights * c[:, None]).T @ self.x).reshape(-1)
        if self.by_action is not None:
            return (self.by_action.sums(c, self.weights.shape[1]) @ self.lift.T).reshape(-1)
        return (((self.weights * c[:, None]).T @ self.u) @ self.lift.T).reshape(-1)

    def col_square_sum(self) -> np.ndarray:
        """Σ_n X[n, j]², (A·d_x,): block a is Σ_n weights[n, a]² x[n]² (exact)."""
        return ((self.weights**2).T @ (self.x**2)).reshape(-1)

    def rows(self, sel: np.ndarray | slice) -> KroneckerRows:
        def part(rows: np.ndarray | None) -> np.ndarray | None:
            return None if rows is None else rows[sel]

        return KroneckerRows(self.weights[sel], self.x[sel], part(self.actions), part(self.u), self.lift)

    def scaled(self, c: np.ndarray) -> KroneckerRows:
        """diag(c) X: every row multiplied by its entry of c."""
        return KroneckerRows(self.weights * c[:, None], self.x, None, self.u, self.lift)

    def gram(self) -> np.ndarray:
        """XᵀX as a dense (A·d_x, A·d_x) matrix (:meth:`factored_gram` put back together)."""
        core, lift = self.factored_gram()
        if lift is None:
            return core
        n_actions = self.weights.shape[1]
        blocks = lift @ core.reshape(n_actions, lift.shape[1], n_actions, lift.shape[1]).transpose(0, 2, 1, 3) @ lift.T
        return blocks.transpose(0, 2, 1, 3).reshape(n_actions * self.x.shape[1], n_actions * self.x.shape[1])

    def factored_gram(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(S, L) with XᵀX = (I_A ⊗ L) S (I_A ⊗ L)ᵀ: S = Σ_n (w_n w_nᵀ) ⊗ (u_n u_nᵀ), (A·d_u, A·d_u).

        Block (a, b) of XᵀX is Σ_n w_na w_nb x_n x_nᵀ. Columns of x that hold one value in every row
        (the bias; μ's bins in a batch of one tick) factor out of that sum: x_n = L u_n with u_n the
        varying columns and a 1 (:func:`_factor_constant_columns`), so only u's pairs enter the
        product. L is None when nothing is factored (S is then XᵀX itself, u = x).

        The product is one GEMM of the A(A+1)/2 distinct weight products (per row) with the
        d_u(d_u+1)/2 distinct entries of u_n u_nᵀ, N·A²·d_u²/4 multiply-adds, about half the
        N·(A·d_u)²/2 of forming the rows and their syrk; the symmetric halves are then mirrored.
        """
        n_actions = self.weights.shape[1]
        u, lift = (self.u, self.lift) if self.lift is not None else _factor_constant_columns(self.x)
        d_u = u.shape[1]
        a_i, a_j = np.triu_indices(n_actions)
        u_i, u_j = np.triu_indices(d_u)
        upper = _upper_products(self.weights) @ _upper_products(u).T  # (A-pairs, d_u-pairs)
        sym = np.empty((a_i.size, d_u, d_u))
        sym[:, u_i, u_j] = upper
        sym[:, u_j, u_i] = upper
        full = np.empty((n_actions, n_actions, d_u, d_u))
        full[a_i, a_j] = sym
        full[a_j, a_i] = sym
        return full.transpose(0, 2, 1, 3).reshape(n_actions * d_u, n_actions * d_u), lift


@dataclass(frozen=True, eq=False)
class _ByAction:
    """Rows of u grouped by their action: ``u[order]``, and where each action's group starts."""

    order: np.ndarray
    """(N,) the rows sorted by action (stable)."""
    sorted_u: np.ndarray
    """(N, d_u) ``u[order]``."""
    starts: np.ndarray
    """First position of each action present, in ``order``."""
    present: np.ndarray
    """The actions present, one per start."""

    @classmethod
    def of(cls, actions: np.ndarray, u: np.ndarray) -> _ByAction:
        order = np.argsort(actions, kind="stable")
        ranked = actions[order]
        starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]]) if ranked.size else np.zeros(0, np.intp)
        return cls(order, u.take(order, axis=0), starts, ranked[starts])

    def sums(self, c: np.ndarray, n_actions: int) -> np.ndarray:
        """(A, d_u): row a is Σ over the rows of action a of c_n u_n."""
        out = np.zeros((n_actions, self.sorted_u.shape[1]))
        if self.starts.size:
            out[self.present] = np.add.reduceat(self.sorted_u * c.take(self.order)[:, None], self.starts, axis=0)
        return out


FACTOR_MIN_ROWS = 256
"""From this many rows on, x's constant columns are factored out of Kronecker rows' products
(:meth:`KroneckerRows.factored`, :meth:`KroneckerRows.factored_gram`) and the Fisher system is solved in
the smaller space. The factored path is faster at every batch size (``benchmarks/bench_nac_factoring.py``:
0.3–0.7 of the direct path's time from 64 to 2,048 rows), but its results differ from the direct path's
in the last bits; below this
size, where the cost does not matter on a cluster (one update per 10-s tick), batches keep the direct
path so that runs on small clusters reproduce their recorded results to the bit."""


def _factor_constant_columns(x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(u, L) with x_n = L u_n for every row: u the columns of x that vary over rows and a column of
    ones, L (d_x, d_u) putting them back (a varying column copied, a constant one its value times the
    ones; without a non-zero constant there is no column of ones). L has full column rank. (x, None)
    when fewer than two columns are constant (nothing to gain), x has fewer than
    :data:`FACTOR_MIN_ROWS` rows, or x is all zeros."""
    if x.shape[0] < FACTOR_MIN_ROWS:
        return x, None
    constant = np.all(x == x[0], axis=0)
    if constant.sum() < 2:
        return x, None
    varying = np.flatnonzero(~constant)
    ones = bool(np.any(x[0, constant] != 0.0))
    if varying.size == 0 and not ones:
        return x, None
    # np.take keeps u C-ordered (x[:, varying] would not); the ones take the place of a copied column.
    u = np.take(x, np.append(varying, 0) if ones else varying, axis=1)
    lift = np.zeros((x.shape[1], u.shape[1]))
    lift[varying, np.arange(varying.size)] = 1.0
    if ones:
        u[:, -1] = 1.0
        lift[constant, -1] = x[0, constant]
    return u, lift


@dataclass(frozen=True, eq=False)
class _FisherPart:
    """F = XᵀX / m of one sample of Kronecker rows, kept as :meth:`KroneckerRows.factored_gram` gives it:
    its trace and the solve of (F + ρI) w = r, without forming F when x's constant columns were factored."""

    core: np.ndarray
    """S / m, (A·d_u, A·d_u)."""
    lift: np.ndarray | None
    """L, (d_x, d_u); None: ``core`` is F."""
    n_actions: int

    @classmethod
    def of(cls, sample: KroneckerRows, m: int) -> _FisherPart:
        core, lift = sample.factored_gram()
        return cls(core / m, lift, sample.weights.shape[1])

    def trace(self) -> float:
        if self.lift is None:
            return float(np.trace(self.core))
        # tr(L S_aa Lᵀ) = ⟨S_aa, LᵀL⟩ for every action's diagonal block.
        d_u = self.lift.shape[1]
        diagonal = self.core.reshape(self.n_actions, d_u, self.n_actions, d_u)[np.arange(self.n_actions), :, np.arange(self.n_actions), :]
        return float(np.sum(diagonal * (self.lift.T @ self.lift)))

    def solve(self, ridge: float, rhs: np.ndarray) -> np.ndarray:
        """w with (F + ρI) w = ``rhs``, ρ = ``ridge`` > 0.

        Factored (F = M S Mᵀ, M = I_A ⊗ L of full column rank): split rhs = M r + p with Mᵀp = 0 (r the
        least-squares coefficients, G r = Mᵀ rhs for G = MᵀM = I_A ⊗ LᵀL); then w = M y + p / ρ, where
        (ρG + G S G) y = Mᵀ rhs — a symmetric positive-definite system of A·d_u unknowns instead of A·d_x.
        The rhs of an update lies in M's range (p is rounding), as every row's x has the constant values.
        """
        if self.lift is None:
            return np.linalg.solve(self.core + ridge * np.eye(self.core.shape[0]), rhs)
        lift, n_actions = self.lift, self.n_actions
        d_u = lift.shape[1]
        h = lift.T @ lift
        projected = (rhs.reshape(n_actions, -1) @ lift)  # Mᵀ rhs, (A, d_u)
        blocks = self.core.reshape(n_actions, d_u, n_actions, d_u).transpose(0, 2, 1, 3)
        system = (h @ blocks @ h).transpose(0, 2, 1, 3).reshape(n_actions * d_u, n_actions * d_u)
        system += ridge * np.kron(np.eye(n_actions), h)
        try:
            y = scipy_linalg.cho_solve(scipy_linalg.cho_factor(system, lower=True), projected.reshape(-1))
        except np.linalg.LinAlgError:
            # A ridge so small against S that rounding leaves the system not positive definite: LU, as
            # the unfactored path solves.
            y = np.linalg.solve(system, projected.reshape(-1))
        coefficients = np.linalg.solve(h, projected.T).T  # r, (A, d_u)
        w = y.reshape(n_actions, d_u) @ lift.T + (rhs.reshape(n_actions, -1) - coefficients @ lift.T) / ridge
        return w.reshape(-1)


def _upper_products(m: np.ndarray) -> np.ndarray:
    """(K(K+1)/2, N): the products m[:, i] · m[:, j], i ≤ j, in ``np.triu_indices(K)`` order.

    Built in the transposed layout one i at a time (each a contiguous (K − i, N) slab); a fancy-index
    gather of all pairs was ~8x slower on (10,000, 19).
    """
    m_t = np.ascontiguousarray(m.T)
    k = m_t.shape[0]
    out = np.empty((k * (k + 1) // 2, m_t.shape[1]))
    start = 0
    for i in range(k):
        np.multiply(m_t[i : i + 1], m_t[i:], out=out[start : start + k - i])
        start += k - i
    return out


Rows = np.ndarray | SparseRows | KroneckerRows


def _rmatvec(x: Rows, c: np.ndarray) -> np.ndarray:
    return x.T @ c if isinstance(x, np.ndarray) else x.rmatvec(c)


def _col_square_sum(x: Rows) -> np.ndarray:
    return np.einsum("nd,nd->d", x, x) if isinstance(x, np.ndarray) else x.col_square_sum()


def _rows(x: Rows, sel: np.ndarray | slice) -> Rows:
    if _is_whole(sel):
        return x
    return x[sel] if isinstance(x, np.ndarray) else x.rows(sel)


def _scale_rows(x: Rows, c: np.ndarray) -> Rows:
    """diag(c) X (e.g. zeroing the next-state features of terminal rows)."""
    if isinstance(x, SparseRows):
        return SparseRows(x.cols, x.vals * c[:, None], x.dim)
    if isinstance(x, KroneckerRows):
        return x.scaled(c)
    return x * c[:, None]


def _one_hot(actions_n: np.ndarray, n_actions: int) -> np.ndarray:
    out = np.zeros((actions_n.shape[0], n_actions))
    out[np.arange(actions_n.shape[0]), actions_n] = 1.0
    return out


def _is_whole(sel: np.ndarray | slice) -> bool:
    return isinstance(sel, slice) and sel == slice(None)


def taken_features(phi: Features, actions_n: np.ndarray) -> Rows:
    """φ(s, a) of the taken actions as an (N, d) matrix (sparse rows for one-hot features)."""
    n = _n_rows(phi)
    if isinstance(phi, OneHotFeatures):
        return SparseRows(phi.index[np.arange(n), actions_n][:, None], np.ones((n, 1)), phi.dim)
    if isinstance(phi, BlockFeatures):
        return KroneckerRows(_one_hot(actions_n, phi.n_actions), phi.x, actions_n).factored()
    n_actions, dim = phi.shape[1], phi.shape[2]
    # Row gather on the flattened (N·A, d) view: one contiguous copy per row, ~5x faster here than
    # the two-array fancy index phi[arange, actions].
    return np.take(phi.reshape(n * n_actions, dim), np.arange(n) * n_actions + actions_n, axis=0)


def grad_log_pi(
    phi: Features, probs_na: np.ndarray, actions_n: np.ndarray, phi_sa: Rows | None = None
) -> Rows:
    """∇_θ log π(a|s) = φ(s, a) − Σ_a' π(a'|s) φ(s, a'), (N, d).

    Sparse rows for one-hot features; for block features the row is (e_a − π(·|s)) ⊗ x(s). ``phi_sa``,
    φ(s, a) of the same rows as :func:`taken_features` gave it, saves work: dense rows are not gathered
    again, and block features keep its factoring of x.
    """
    n = probs_na.shape[0]
    if isinstance(phi, (OneHotFeatures, BlockFeatures)):
        weights = -probs_na.copy()
        weights[np.arange(n), actions_n] += 1.0
        if isinstance(phi, BlockFeatures):
            if isinstance(phi_sa, KroneckerRows) and phi_sa.x is phi.x:
                return KroneckerRows(weights, phi.x, None, phi_sa.u, phi_sa.lift)  # the same x, factored once
            return KroneckerRows(weights, phi.x).factored()
        return SparseRows(phi.index, weights, phi.dim)
    taken = taken_features(phi, actions_n) if phi_sa is None else phi_sa
    return taken - np.einsum("na,nad->nd", probs_na, phi)


def _project(v: np.ndarray, radius: float) -> tuple[np.ndarray, bool]:
    """Euclidean projection on the ball of the given radius (Algorithm 2 line 6, Algorithm 3 line 6)."""
    norm = float(np.linalg.norm(v))
    if norm <= radius:
        return v, False
    return v * (radius / norm), True


def _minibatches(
    n: int, size: int, epochs: int, shuffle: bool, rng: np.random.Generator
) -> list[np.ndarray | slice]:
    if size == 0 or size >= n:
        return [slice(None)] * epochs
    if not shuffle:
        return [slice(start, start + size) for start in range(0, n, size)] * epochs
    out: list[np.ndarray | slice] = []
    for _ in range(epochs):
        order = rng.permutation(n)
        out.extend(order[start : start + size] for start in range(0, n, size))
    return out


# --------------------------------------------------------------------------- the oracles as pure functions


@dataclass(frozen=True)
class CriticResult:
    """What Algorithm 2 returns, plus the chain state a warm start continues from."""

    psi_bar: np.ndarray
    """(d,) averaged iterate: q̂(s, a) = φ(s, a)ᵀψ̄."""
    psi_last: np.ndarray
    """(d,) last iterate."""
    td_error_rms: float
    """Root-mean-square TD error over the batch at the first iterate."""
    td_error_rms_after: float
    """Same, at the averaged iterate."""
    projected_fraction: float
    """Share of the steps whose iterate left the B-ball and was projected back."""


def projected_td0(
    phi_sa: Rows,
    phi_next_sa: Rows,
    target_offset_n: np.ndarray,
    gamma: float,
    psi0: np.ndarray,
    hp: NACHyperparameters,
    rng: np.random.Generator,
) -> CriticResult:
    """Algorithm 2 on one batch, minibatched: each step moves ψ along the minibatch mean of δφ(s, a).

    ``target_offset_n`` is r − λ log π(a|s); ``phi_next_sa`` is φ(s', a'), with zero rows where s' is
    terminal. The average is over the iterates after each step (ψ_1..ψ_K): with a warm start ψ_0 is
    the previous update's estimate, not the zero vector the paper's average includes.
    """
    n = target_offset_n.shape[0]

    def td_errors(psi: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        return target_offset_n[rows] + gamma * (_rows(phi_next_sa, rows) @ psi) - _rows(phi_sa, rows) @ psi

    psi = psi0.copy()
    first = td_errors(psi, slice(None))
    psi_sum = np.zeros_like(psi)
    projected = 0
    steps = _minibatches(n, hp.critic_minibatch, hp.critic_epochs, hp.critic_shuffle, rng)
    for k, rows in enumerate(steps):
        delta = first if (k == 0 and _is_whole(rows)) else td_errors(psi, rows)
        alpha = (
            hp.critic_lr
            if hp.critic_schedule == "constant"
            else 1.0 / (hp.critic_omega * (k + 1) * (1.0 - gamma))
        )
        phi_rows = _rows(phi_sa, rows)
        direction = _rmatvec(phi_rows, delta)
        if hp.critic_normalise:
            second_moment = _col_square_sum(phi_rows)
            direction = np.divide(
                direction, second_moment, out=np.zeros_like(direction), where=second_moment > 0
            )
        else:
            direction = direction / phi_rows.shape[0]
        psi = psi + alpha * direction
        psi, was_projected = _project(psi, hp.critic_radius)
        projected += was_projected
        psi_sum += psi
    psi_bar = psi_sum / len(steps) if hp.critic_average else psi
    after = td_errors(psi_bar, slice(None))
    return CriticResult(
        psi_bar=psi_bar,
        psi_last=psi,
        td_error_rms=float(np.sqrt(np.mean(first**2))),
        td_error_rms_after=float(np.sqrt(np.mean(after**2))),
        projected_fraction=projected / len(steps),
    )


@dataclass(frozen=True)
class ActorResult:
    """What Algorithm 3 (or its exact Fisher-solve counterpart) returns."""

    w_hat: np.ndarray
    """(d,) the natural-gradient estimate ŵ, ‖ŵ‖ ≤ R."""
    loss: float
    """Sampled compatible loss mean (ŵᵀ∇log π − Â)²."""
    projected: bool
    """Whether the result was projected on the R-ball (Fisher solve) or any SGD step was."""


def compatible_fit(
    grad_nd: Rows,
    advantage_n: np.ndarray,
    hp: NACHyperparameters,
    rng: np.random.Generator,
    x_blocks: int = 1,
) -> ActorResult:
    """Minimise the sampled L(w) = mean (wᵀ∇log π(a|s) − Â(s, a))² over the R-ball (Algorithm 3).

    ``x_blocks`` > 1: x(s) is that many equal blocks and every state fills at most one; the Fisher
    matrix is then block-diagonal by x's block and is solved block by block (:func:`_block_solve`)."""
    n = advantage_n.shape[0]
    if hp.actor_solver == "fisher":
        rhs = _rmatvec(grad_nd, advantage_n) / n
        if isinstance(grad_nd, SparseRows):
            fisher = grad_nd.gram() / n
            ridge = hp.fisher_ridge * max(float(fisher.diagonal().mean()), 1e-12)
            w = sparse_linalg.spsolve(fisher + ridge * sparse.identity(fisher.shape[0], format="csc"), rhs)
        else:
            sample = grad_nd
            if 0 < hp.fisher_rows < n:
                sample = _rows(grad_nd, np.sort(rng.choice(n, hp.fisher_rows, replace=False)))
            m = sample.shape[0]
            w = _block_solve(sample, rhs, m, x_blocks, hp.fisher_ridge) if x_blocks > 1 else None
            if w is None and isinstance(sample, KroneckerRows):
                fisher = _FisherPart.of(sample, m)
                ridge = hp.fisher_ridge * max(fisher.trace() / rhs.shape[0], 1e-12)
                w = fisher.solve(ridge, rhs)
            elif w is None:
                fisher = sample.T @ sample / m
                ridge = hp.fisher_ridge * max(float(np.trace(fisher)) / fisher.shape[0], 1e-12)
                w = np.linalg.solve(fisher + ridge * np.eye(fisher.shape[0]), rhs)
        w, projected = _project(np.asarray(w, dtype=float), hp.actor_radius)
    else:
        steps = _minibatches(n, hp.actor_minibatch, hp.actor_epochs, True, rng)
        step = (
            hp.actor_lr
            if hp.actor_lr is not None
            else hp.actor_radius / (hp.resolved_q_max() * math.sqrt(len(steps)))
        )
        w_k = np.zeros(grad_nd.shape[1])
        w_sum = np.zeros_like(w_k)
        projected = False
        for rows in steps:
            # Algorithm 3 averages w̄_0..w̄_{K-1}: the iterate is added before it moves.
            w_sum += w_k
            g = _rows(grad_nd, rows)
            residual = g @ w_k - advantage_n[rows]
            w_k = w_k - 2.0 * step * _rmatvec(g, residual) / g.shape[0]
            w_k, was_projected = _project(w_k, hp.actor_radius)
            projected = projected or was_projected
        w = w_sum / len(steps)
    loss = float(np.mean((grad_nd @ w - advantage_n) ** 2))
    return ActorResult(w_hat=w, loss=loss, projected=bool(projected))


def _block_solve(sample: Rows, rhs: np.ndarray, m: int, blocks: int, fisher_ridge: float) -> np.ndarray | None:
    """(F + ρI)⁻¹ rhs for F = XᵀX / m, X = ``sample``'s rows weights ⊗ x, when x is ``blocks`` equal
    blocks and every row fills at most one: entry (a, j) of F pairs x's columns j and j' of one row, so
    columns of different blocks never meet and F is one (A·d_x/blocks)² system per block, at a fraction
    of the whole matrix's cost and with its solution (ρ is ``fisher_ridge`` times the whole matrix's mean
    diagonal). A block no sampled row fills has F = 0 there: its solution is rhs/ρ. None when ``sample`` is not of that
    form (a row filling two blocks, or not a Kronecker product): the caller solves the whole."""
    if not isinstance(sample, KroneckerRows) or sample.x.shape[1] % blocks:
        return None
    n_actions, d_x = sample.weights.shape[1], sample.x.shape[1]
    size = d_x // blocks
    x_nbk = sample.x.reshape(-1, blocks, size)
    filled = np.any(x_nbk != 0.0, axis=2)
    if np.any(filled.sum(axis=1) > 1):
        return None
    parts: list[_FisherPart | None] = []
    for b in range(blocks):
        rows = np.flatnonzero(filled[:, b])
        parts.append(_FisherPart.of(KroneckerRows(sample.weights[rows], x_nbk[rows, b, :]), m) if rows.size else None)
    trace = sum(part.trace() for part in parts if part is not None)
    ridge = fisher_ridge * max(trace / (n_actions * d_x), 1e-12)
    rhs_abk = rhs.reshape(n_actions, blocks, size)
    w_abk = np.empty_like(rhs_abk)
    for b, fisher in enumerate(parts):
        part = rhs_abk[:, b, :].reshape(-1)
        solved = part / ridge if fisher is None else fisher.solve(ridge, part)
        w_abk[:, b, :] = solved.reshape(n_actions, size)
    return w_abk.reshape(-1)


def natural_gradient(
    phi: Features, probs_na: np.ndarray, weights_n: np.ndarray, q_na: np.ndarray, ridge: float = 0.0
) -> np.ndarray:
    """F⁻¹∇J for the entropy-regularised objective, from exact per-state quantities (a reference).

    ``weights_n`` is the state weight d(s) of each row, ``q_na`` the shifted soft q(s, ·). The
    gradient of J_λ is Σ_s d(s) Σ_a π(a|s) ∇log π(a|s) q(s, a) and the Fisher matrix
    Σ_s d(s) Σ_a π(a|s) ∇log π ∇log πᵀ, both summed over every action.
    """
    dense = phi if isinstance(phi, np.ndarray) else phi.dense()
    mean_phi = np.einsum("na,nad->nd", probs_na, dense)
    grad_nad = dense - mean_phi[:, None, :]
    wpi = weights_n[:, None] * probs_na
    fisher = np.einsum("na,nad,nae->de", wpi, grad_nad, grad_nad)
    gradient = np.einsum("na,nad,na->d", wpi, grad_nad, q_na)
    return np.linalg.lstsq(fisher + ridge * np.eye(fisher.shape[0]), gradient, rcond=None)[0]


def mean_field_step(mu: np.ndarray, observed: np.ndarray, beta: float) -> np.ndarray:
    """Algorithm 1, line 6: μ ← (1 − β)μ + β Γ₂(π, μ), with Γ₂ as observed (any shape, e.g. a flow)."""
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"mean_field_step: beta={beta!r} must be in (0, 1]")
    return (1.0 - beta) * np.asarray(mu, dtype=float) + beta * np.asarray(observed, dtype=float)


# --------------------------------------------------------------------------- the learner


class NaturalActorCritic:
    """Algorithm 1's policy side: a log-linear policy π_θ(a|s) ∝ exp(θᵀφ(s, a)), θ₀ = 0, its critic
    and its actor. One object serves a whole population: every call takes a batch of N rows."""

    def __init__(self, hp: NACHyperparameters, rng: np.random.Generator | None = None, x_blocks: int = 1) -> None:
        self.hp = hp
        self.x_blocks = int(x_blocks)
        """Equal blocks of x(s) of which every state fills at most one (1: no such structure); the Fisher
        solve then splits into one system per block (:func:`compatible_fit`)."""
        self.rng = rng if rng is not None else np.random.default_rng(hp.seed)
        d = hp.n_features
        self.theta = np.zeros(d)
        """θ, the policy parameters."""
        self.psi = np.zeros(d)
        """ψ, the critic's TD chain (last iterate)."""
        self.psi_bar = np.zeros(d)
        """ψ̄, the critic's last averaged estimate: q̂ = φᵀψ̄."""
        self.w_hat = np.zeros(d)
        """ŵ of the last update."""
        d_x = d // hp.n_actions if hp.state_critic else 0
        self.v = np.zeros(d_x)
        """``state_critic``: the state value's TD chain (last iterate), one weight per entry of x(s)."""
        self.v_bar = np.zeros(d_x)
        """``state_critic``: its last averaged estimate, v̂(s) = x(s)ᵀv̄."""
        self.updates = 0
        """Number of :meth:`update` calls so far (the t of Algorithm 1)."""

    # ---- acting

    def _check(self, phi: Features, name: str) -> None:
        shape = phi.shape
        if len(shape) != 3 or shape[1] != self.hp.n_actions or shape[2] != self.hp.n_features:
            raise ValueError(
                f"{name} has shape {tuple(shape)}; this learner needs (N, A={self.hp.n_actions}, d={self.hp.n_features})"
            )

    def log_probabilities(self, phi: Features) -> np.ndarray:
        """log π(·|s) for every row, (N, A)."""
        self._check(phi, "features")
        return log_softmax(scores(phi, self.theta))

    def probabilities(self, phi: Features) -> np.ndarray:
        """π(·|s) for every row, (N, A); rows sum to 1."""
        return np.exp(self.log_probabilities(phi))

    def act(self, phi: Features) -> np.ndarray:
        """One action per row drawn from π(·|s) with the learner's generator, (N,) int."""
        return sample_from(self.probabilities(phi), self.rng)

    # ---- learning

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """One iteration of Algorithm 1 on transitions sampled under the current policy.

        Returns diagnostics: critic TD error, actor loss, norms, entropy, projection counts.
        """
        hp = self.hp
        self._check(batch.features, "batch.features")
        self._check(batch.next_features, "batch.next_features")
        n = len(batch)
        actions = batch.actions.astype(np.intp, copy=False)
        next_actions = batch.next_actions.astype(np.intp, copy=False)
        log_pi_na = self.log_probabilities(batch.features)
        pi_na = np.exp(log_pi_na)
        log_pi_taken = log_pi_na[np.arange(n), actions]

        # Algorithm 2: critic on the shifted soft Q, target r − λ log π(a|s) + γ q̂(s', a').
        phi_sa = taken_features(batch.features, actions)
        offset = batch.rewards - hp.entropy_reg * log_pi_taken
        # Algorithm 3: Â from the soft Q̂ = q̂ + λ log π (see the module docstring); with ``exact_shift`` only
        # q̂'s advantage is fitted, and that of λ log π, which is λθᵀ∇log π, is added to ŵ as λθ.
        if hp.state_critic:
            critic, advantage = self._state_critic(batch, offset)
            if not hp.exact_shift:
                advantage = advantage + hp.entropy_reg * (log_pi_taken - np.sum(pi_na * log_pi_na, axis=1))
        else:
            phi_next_sa = taken_features(batch.next_features, next_actions)
            if batch.terminal is not None and batch.terminal.any():
                keep = (~batch.terminal.astype(bool)).astype(float)
                phi_next_sa = _scale_rows(phi_next_sa, keep)
            psi0 = self.psi if hp.critic_warm_start else np.zeros_like(self.psi)
            critic = projected_td0(phi_sa, phi_next_sa, offset, hp.gamma, psi0, hp, self.rng)
            self.psi, self.psi_bar = critic.psi_last, critic.psi_bar
            q_na = scores(batch.features, self.psi_bar)
            fitted_na = q_na if hp.exact_shift else q_na + hp.entropy_reg * log_pi_na
            advantage = fitted_na[np.arange(n), actions] - np.sum(pi_na * fitted_na, axis=1)
        grad = grad_log_pi(batch.features, pi_na, actions, phi_sa)
        actor = compatible_fit(grad, advantage, hp, self.rng, self.x_blocks)
        self.w_hat = actor.w_hat + hp.entropy_reg * self.theta if hp.exact_shift else actor.w_hat

        # Algorithm 1, line 5.
        self.theta = (1.0 - hp.policy_lr * hp.entropy_reg) * self.theta + hp.policy_lr * self.w_hat
        self.updates += 1
        entropy = -np.sum(pi_na * log_pi_na, axis=1)
        return {
            "critic/td_error_rms": critic.td_error_rms,
            "critic/td_error_rms_after": critic.td_error_rms_after,
            "critic/projected_fraction": critic.projected_fraction,
            "critic/psi_norm": float(np.linalg.norm(self.v_bar if hp.state_critic else self.psi_bar)),
            "actor/loss": actor.loss,
            "actor/advantage_rms": float(np.sqrt(np.mean(advantage**2))),
            "actor/w_norm": float(np.linalg.norm(self.w_hat)),
            "actor/projected": float(actor.projected),
            "policy/theta_norm": float(np.linalg.norm(self.theta)),
            "policy/entropy": float(entropy.mean()),
            "batch/size": float(n),
            "batch/mean_reward": float(np.mean(batch.rewards)),
        }

    def _state_critic(self, batch: TransitionBatch, offset: np.ndarray) -> tuple[CriticResult, np.ndarray]:
        """``state_critic``: TD(0) on v̂(s) = x(s)ᵀv with target r − λ log π(a|s) + γ v̂(s'), and the TD
        residual of the averaged estimate at every row, q's advantage at the taken action in one sample."""
        hp = self.hp
        if not isinstance(batch.features, BlockFeatures) or not isinstance(batch.next_features, BlockFeatures):
            raise ValueError("state_critic needs block features φ(s, a) = e_a ⊗ x(s) (BlockFeatures) for s and s'")
        x, x_next = batch.features.x, batch.next_features.x
        if batch.terminal is not None and batch.terminal.any():
            x_next = x_next * (~batch.terminal.astype(bool))[:, None]
        v0 = self.v if hp.critic_warm_start else np.zeros_like(self.v)
        critic = projected_td0(x, x_next, offset, hp.gamma, v0, hp, self.rng)
        self.v, self.v_bar = critic.psi_last, critic.psi_bar
        return critic, offset + hp.gamma * (x_next @ self.v_bar) - x @ self.v_bar

    # ---- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (arrays, counters, generator state, settings)."""
        state = {
            "state_version": STATE_VERSION,
            "hyperparameters": asdict(self.hp),
            "theta": self.theta.copy(),
            "psi": self.psi.copy(),
            "psi_bar": self.psi_bar.copy(),
            "w_hat": self.w_hat.copy(),
            "updates": self.updates,
            "rng": self.rng.bit_generator.state,
        }
        if self.hp.state_critic:
            state.update(v=self.v.copy(), v_bar=self.v_bar.copy())
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; refuses a state of another version or feature dimension."""
        if state.get("state_version") != STATE_VERSION:
            raise ValueError(
                f"learner state_version {state.get('state_version')!r}; this code reads {STATE_VERSION}"
            )
        d = self.hp.n_features
        for key in ("theta", "psi", "psi_bar", "w_hat"):
            value = np.asarray(state[key], dtype=float)
            if value.shape != (d,):
                raise ValueError(f"learner state {key!r} has shape {value.shape}; this learner has d={d}")
            setattr(self, key, value.copy())
        if self.hp.state_critic:
            for key in ("v", "v_bar"):
                if key not in state:
                    raise ValueError(f"learner state has no {key!r}: it was saved without state_critic")
                value = np.asarray(state[key], dtype=float)
                if value.shape != self.v.shape:
                    raise ValueError(f"learner state {key!r} has shape {value.shape}; this learner's state critic has {self.v.shape}")
                setattr(self, key, value.copy())
        self.updates = int(state["updates"])
        self.rng.bit_generator.state = state["rng"]


def sample_from(probs_na: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row drawn from the row's distribution (inverse CDF, one uniform per row)."""
    cdf = np.cumsum(probs_na, axis=1)
    u = rng.random(probs_na.shape[0]) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=1), probs_na.shape[1] - 1)
