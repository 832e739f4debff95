"""Fitting a policy's logits to chosen actions: the supervised step of a fitted warm start.

A warm start fitted to per-function choices (``AgentSettings.warm_start = fitted``,
``controller.warm_fit``) gives the shared policy labelled states — every state x(s) a function was
in, labelled with the action chosen for that function — and asks the learner for the policy that
predicts them: maximum likelihood of the labels under the policy's own form, softmax(Θ x(s)) for
the linear learners (a multinomial logistic regression), the actor network for NAC-NN. The learner
then starts its natural actor-critic from that θ₀, as it would from θ₀ = 0 or from a single
preferred action.
"""

from __future__ import annotations

import math

import numpy as np

from policies.kl_step import Adam

#: Steps of the fit. Full-batch Adam on a convex loss: 300 steps bring the linear fit within 1% of its
#: optimum's accuracy on the shipped scenarios' labels.
IMITATION_STEPS = 300
#: Adam's step size for the linear fit, in units of the rescaled features (below).
IMITATION_LR = 0.5
#: L2 penalty on the logit weights: keeps Θ finite where the labels are separable.
IMITATION_L2 = 1e-3
#: Most labelled states the fit uses (a uniform subsample beyond): 200,000 rows of 40 features fit
#: in a few seconds and are far more than the ~d·A weights need.
IMITATION_MAX_ROWS = 200_000


def imitation_rows(x: np.ndarray, actions: np.ndarray, rng: np.random.Generator,
                   max_rows: int = IMITATION_MAX_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``actions`` checked (same length, actions >= 0) and subsampled to ``max_rows``."""
    x = np.asarray(x, dtype=float)
    actions = np.asarray(actions, dtype=np.int64)
    if x.ndim != 2 or actions.shape != (len(x),):
        raise ValueError(f"imitation needs states (N, d) and one action per state; got {x.shape} and {actions.shape}")
    if len(x) == 0:
        raise ValueError("imitation needs at least one labelled state")
    if np.any(actions < 0):
        raise ValueError("imitation labels must be actions >= 0")
    if len(x) > max_rows:
        keep = rng.choice(len(x), size=max_rows, replace=False)
        x, actions = x[keep], actions[keep]
    return x, actions


def fit_linear_policy(x: np.ndarray, actions: np.ndarray, n_actions: int, rng: np.random.Generator,
                      steps: int = IMITATION_STEPS) -> tuple[np.ndarray, float]:
    """Θ (A, d) maximising the mean log-likelihood of ``actions`` under softmax(Θ x(s)), with an L2
    penalty, and the share of states whose most probable action is the label.

    The features are rescaled by sqrt(d) for the fit (x(s) is scaled so that ‖x‖ <= 1, which makes
    single entries small) and Θ is scaled back, so the returned Θ applies to x(s) as given.
    """
    x, actions = imitation_rows(x, actions, rng)
    if np.any(actions >= n_actions):
        raise ValueError(f"imitation labels must be actions < {n_actions}")
    n, d = x.shape
    scale = math.sqrt(d)
    xs = x * scale
    onehot = np.zeros((n, n_actions))
    onehot[np.arange(n), actions] = 1.0
    theta = np.zeros((n_actions, d))
    opt = Adam(theta.size, IMITATION_LR)
    for _ in range(steps):
        logits = xs @ theta.T
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        grad = (p - onehot).T @ xs / n + IMITATION_L2 * theta
        opt.step(theta.reshape(-1), grad.reshape(-1))
    accuracy = float(np.mean(np.argmax(xs @ theta.T, axis=1) == actions))
    return theta * scale, accuracy


__all__ = [
    "IMITATION_L2",
    "IMITATION_LR",
    "IMITATION_MAX_ROWS",
    "IMITATION_STEPS",
    "fit_linear_policy",
    "imitation_rows",
]
