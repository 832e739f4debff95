"""Fitting a policy's logits to chosen actions: the supervised step of a fitted warm start.

A warm start fitted to per-function choices (``AgentSettings.warm_start = fitted``,
``controller.warm_fit``) gives the shared policy labelled states — every state x(s) a function was
in, labelled with the action chosen for that function — and asks the learner for the policy that
predicts them: maximum likelihood of the labels under the policy's own form, softmax(Θ x(s)) for
the linear learners (a multinomial logistic regression), the actor network for NAC-NN. The learner
then starts its natural actor-critic from that θ₀, as it would from θ₀ = 0 or from a single
preferred action. Instead of labels the fit can be given every action's cost in every state
(``AgentSettings.fit_target = cost``): the policy then minimises its expected cost, so a state where
the actions nearly tie hardly moves it and one where the choice matters does.
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
#: Default L2 penalty on the logit weights (``AgentSettings.fit_l2`` sets another): keeps Θ finite where
#: the labels are separable.
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


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``logits`` (N, A), shifted by each row's largest entry."""
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def fit_linear_policy(x: np.ndarray, actions: np.ndarray, n_actions: int, rng: np.random.Generator,
                      steps: int = IMITATION_STEPS, l2: float = IMITATION_L2) -> tuple[np.ndarray, float]:
    """Θ (A, d) maximising the mean log-likelihood of ``actions`` under softmax(Θ x(s)), with the L2
    penalty ``l2``/2 · ‖Θ‖² (on the rescaled features), and the share of states whose most probable action
    is the label.

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
        p = _softmax(xs @ theta.T)
        grad = (p - onehot).T @ xs / n + l2 * theta
        opt.step(theta.reshape(-1), grad.reshape(-1))
    accuracy = float(np.mean(np.argmax(xs @ theta.T, axis=1) == actions))
    return theta * scale, accuracy


def check_costs(costs: np.ndarray, n_actions: int) -> np.ndarray:
    """``costs`` as an (N, ``n_actions``) array, or a ValueError that says its shape."""
    costs = np.asarray(costs, dtype=float)
    if costs.ndim != 2 or costs.shape[1] != n_actions:
        raise ValueError(f"a cost fit needs one cost per action ({n_actions}); got shape {costs.shape}")
    return costs


def cost_rows(x: np.ndarray, costs: np.ndarray, rng: np.random.Generator,
              max_rows: int = IMITATION_MAX_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``costs`` checked (one finite cost per state and action) and subsampled to ``max_rows``."""
    x = np.asarray(x, dtype=float)
    costs = np.asarray(costs, dtype=float)
    if x.ndim != 2 or costs.ndim != 2 or len(costs) != len(x):
        raise ValueError(f"a cost fit needs states (N, d) and costs (N, A); got {x.shape} and {costs.shape}")
    if len(x) == 0:
        raise ValueError("a cost fit needs at least one state")
    if not np.isfinite(costs).all():
        raise ValueError("a cost fit needs a finite cost for every state and action")
    if len(x) > max_rows:
        keep = rng.choice(len(x), size=max_rows, replace=False)
        x, costs = x[keep], costs[keep]
    return x, costs


def fit_linear_policy_to_costs(x: np.ndarray, costs: np.ndarray, rng: np.random.Generator,
                               steps: int = IMITATION_STEPS, l2: float = IMITATION_L2) -> tuple[np.ndarray, float]:
    """Θ (A, d) minimising the mean expected cost Σₐ softmax(Θ x(s))ₐ · cost(s, a) over the states, with
    the L2 penalty of :func:`fit_linear_policy`, and the share of states whose most probable action is
    their cheapest. Where a label fit treats a near-tie as firmly as a choice that matters, this one
    moves the policy in proportion to what the choice costs. Started from Θ = 0 (the uniform policy),
    as a natural actor-critic's θ₀; the features are rescaled as in :func:`fit_linear_policy`."""
    x, costs = cost_rows(x, costs, rng)
    n, d = x.shape
    scale = math.sqrt(d)
    xs = x * scale
    theta = np.zeros((costs.shape[1], d))
    opt = Adam(theta.size, IMITATION_LR)
    for _ in range(steps):
        p = _softmax(xs @ theta.T)
        # d/dlogits of Σₐ pₐ cₐ is p ⊙ (c − Σₐ pₐ cₐ).
        g_logits = p * (costs - (p * costs).sum(axis=1, keepdims=True))
        grad = g_logits.T @ xs / n + l2 * theta
        opt.step(theta.reshape(-1), grad.reshape(-1))
    accuracy = float(np.mean(np.argmax(xs @ theta.T, axis=1) == np.argmin(costs, axis=1)))
    return theta * scale, accuracy


def likeliest_temperature(log_probs: np.ndarray, actions: np.ndarray, largest: float = 100.0) -> float:
    """The factor s >= 0 that makes ``actions`` likeliest under softmax(s · log π), π the fitted policy's
    probabilities (N, A) in the labelled states: a temperature fitted to the labels.

    A penalised fit sets both which action the policy prefers and how firmly; this keeps the first and
    fits the second. The mean log-likelihood is concave in s (the logits are linear in it), so Newton's
    method from s = 1 finds it; ``largest`` bounds it where the labels are separable along the fit.
    """
    z = np.asarray(log_probs, dtype=float)
    z = z - z.max(axis=1, keepdims=True)
    picked = z[np.arange(len(z)), np.asarray(actions, dtype=np.int64)]
    scale = 1.0
    for _ in range(50):
        p = _softmax(scale * z)
        mean_z = (p * z).sum(axis=1)
        slope = float(np.mean(picked - mean_z))
        curvature = float(np.mean((p * z * z).sum(axis=1) - mean_z**2))
        if curvature <= 1e-12:
            return largest if slope > 0 else scale
        step = slope / curvature
        scale = float(np.clip(scale + step, scale / 4, min(4 * scale, largest)))
        if abs(step) < 1e-6 * max(scale, 1.0) or scale >= largest:
            break
    return scale


__all__ = [
    "IMITATION_L2",
    "IMITATION_LR",
    "IMITATION_MAX_ROWS",
    "IMITATION_STEPS",
    "check_costs",
    "cost_rows",
    "fit_linear_policy",
    "fit_linear_policy_to_costs",
    "imitation_rows",
    "likeliest_temperature",
]
