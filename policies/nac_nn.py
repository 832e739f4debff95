"""NAC-NN: the shared mean-field policy and soft-Q critic as small MLPs (PyTorch, CPU).

The paper's serverless NAC-NN (Appendix E): actor and critic networks with one hidden layer of 64
units; the natural-gradient step approximated by gradient descent with an adaptive KL penalty
(PPO-like); learning rate 3e-4 for both; γ = 0.99; minibatches of 5, 5 epochs. It is the step of
:class:`policies.nac_linear.LinearKLLearner` with the linear maps replaced by MLPs, built from the
shared pieces of :mod:`policies.kl_step` and run by the driver of :mod:`policies.agent`:

* critic: q̂(s, ·) = MLP_ψ(x(s)) ∈ R^A, fitted to Algorithm 2's target r − λ log π(a|s) + γ q̂(s′, a′)
  (the shifted soft Q), the target frozen for the whole update;
* advantage: Algorithm 3's Â(s, a) = q̂(s, a) − E_{a′∼π_old} q̂(s, a′) from the critic just fitted,
  with the entropy term −λ log π of the regularised objective (``soft_advantage``);
* actor: logits = MLP_θ(x(s)); minimise −E[ρ Â] + β E[KL(π_old ‖ π_θ)], ρ = π_θ(a|s)/π_old(a|s),
  then adapt β towards the KL target.

Reproducibility: the weights are initialised from a ``torch.Generator`` seeded by the policy's
seed (the global torch RNG is never touched), minibatches are shuffled by the learner's own numpy
generator, and ``torch.set_num_threads(threads)`` (1 by default) is applied at construction:
the controller runs on one core, batches of 10,000 x 21 gain nothing from a thread pool, and a
fixed thread count fixes the order of floating-point reductions, so equal seeds give equal runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.optim.adam import adam as adam_step

from policies.agent import (
    AgentSettings,
    SharedPolicyAgent,
    Transitions,
    field_names,
    split_params,
    with_fallback,
)
from policies.fallback import FallbackSettings
from policies.imitation import IMITATION_STEPS, check_costs, cost_rows, imitation_rows
from policies.kl_step import (
    KL_STEP_DIAGNOSTICS,
    KLStepSettings,
    adapt_kl_coef,
    explained_variance,
    minibatch_slices,
    soft_advantage,
)
from policies.registry import register
from policies.serverless_features import N_ACTIONS, ActionSettings, FeatureSettings
from policies.staffing import StaffingSettings

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}
#: The input weight of a hidden tanh unit that passes an entry of x(s) (in [0, 1]) to the logits
#: (``add_logits``): tanh(g·v)/g is within 0.4% of v for v <= 1.
TANH_PASS_GAIN = 0.1

#: Adam's step size when the actor is fitted to labelled states (a fitted warm start): larger than the
#: learning's 3e-4, which would need thousands of full-batch steps to fit a network from scratch.
IMITATION_NN_LR = 1e-2
#: Most labelled states the actor is fitted to (a uniform subsample beyond): a full-batch step costs
#: ~0.3 s per 200,000 rows on one core, and 20,000 rows keep the fit to seconds.
IMITATION_NN_MAX_ROWS = 20_000

#: Gain of the orthogonal initialisation of each network's output layer. Actor: π₀ nearly uniform,
#: as θ₀ = 0 makes it for the linear policy. Critic: q̂₀ nearly equal across actions (see
#: ``TorchKLLearner.__init__``).
ACTOR_OUT_GAIN = 0.01
CRITIC_OUT_GAIN = 0.01


@dataclass(frozen=True)
class NetworkSettings:
    """Shape of the networks and how torch runs them."""

    hidden: int = 64
    """Units of the one hidden layer of actor and critic: the paper's 64."""
    activation: str = "relu"
    """Hidden-layer nonlinearity, ``relu`` or ``tanh``. The paper does not name one; ReLU because
    tanh costs ~25x more per element in torch's CPU kernels (measured: 200 µs vs 8 µs for a
    1225 x 64 minibatch), which alone would take NAC-NN's update at 10,000 functions over budget."""
    threads: int = 1
    """``torch.set_num_threads`` applied when the policy is built (a process-wide setting): one core
    is what the controller has, and a fixed count keeps reductions in a fixed order."""
    deterministic: bool = True
    """Call ``torch.use_deterministic_algorithms(True, warn_only=True)`` (process-wide): costs
    nothing on CPU for these layers, and makes any future non-deterministic op visible."""

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ValueError(f"NetworkSettings.hidden={self.hidden}: must be >= 1")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"NetworkSettings.activation={self.activation!r}: must be one of {sorted(_ACTIVATIONS)}"
            )
        if self.threads < 1:
            raise ValueError(f"NetworkSettings.threads={self.threads}: must be >= 1")


def _mlp(
    state_dim: int, hidden: int, activation: str, out: int, out_gain: float, generator: torch.Generator
) -> nn.Sequential:
    """d → hidden → out, orthogonal weights and zero biases (the usual policy-gradient start).

    A small output gain (0.01 for the actor) makes π₀ nearly uniform, as Algorithm 1's θ₀ = 0 does.
    """
    # nn.Linear draws a default initialisation from the global generator; fork it so building a
    # policy never shifts anyone else's random stream (the draws are overwritten just below).
    with torch.random.fork_rng(devices=[]):
        net = nn.Sequential(nn.Linear(state_dim, hidden), _ACTIVATIONS[activation](), nn.Linear(hidden, out))
    for layer, gain in ((net[0], 2.0**0.5), (net[2], out_gain)):
        nn.init.orthogonal_(layer.weight, gain=gain, generator=generator)
        nn.init.zeros_(layer.bias)
    return net


#: The second block's penalty (``AgentSettings.novel_fit_l2`` unset), on every weight of its actor: chosen on
#: unseen-functions-tune among 0.001, 0.003, 0.01 and 0.1 (docs/evaluation.md, "New functions apart").
NOVEL_FIT_L2 = 0.01


class _Blocks(nn.Module):
    """One network per equal block of x(s), for states that each fill one block (``AgentSettings.
    novel_block``): a state's output is the network of the block it fills (the first when it fills
    none). A network is fitted and learns only from the states of its block, as a linear policy's
    weights of one block do."""

    def __init__(self, nets: Sequence[nn.Sequential], size: int) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, blocks = x.shape[0], len(self.nets)
        x_nbk = x.reshape(n, blocks, self.size)
        filled = (x_nbk != 0).any(dim=2)
        block = torch.zeros(n, dtype=torch.int64)
        for b in range(blocks - 1, 0, -1):
            block = torch.where(filled[:, b], b, block)
        out: torch.Tensor | None = None
        for b, net in enumerate(self.nets):
            rows = torch.nonzero(block == b).squeeze(1)
            if rows.numel() == 0:
                continue
            y = net(x_nbk[rows, b, :])
            out = (y.new_zeros((n, y.shape[1])) if out is None else out).index_copy(0, rows, y)
        return out if out is not None else self.nets[0](x_nbk[:, 0, :])


def _last_layers(net: nn.Module) -> list[nn.Linear]:
    """The output layer of ``net``, or of each block's network."""
    return [sub[-1] for sub in net.nets] if isinstance(net, _Blocks) else [net[-1]]


class TorchKLLearner:
    """Actor and critic MLPs with the KL-penalised step; batched over all functions of a tick."""

    diagnostics: ClassVar[tuple[str, ...]] = KL_STEP_DIAGNOSTICS
    """Every key :meth:`update` returns."""
    novel_fit_l2: ClassVar[float] = NOVEL_FIT_L2
    """The second block's fit penalty when unset (:data:`NOVEL_FIT_L2`)."""

    def __init__(
        self,
        state_dim: int,
        settings: KLStepSettings,
        network: NetworkSettings,
        seed: int,
        rng: np.random.Generator,
        n_actions: int = N_ACTIONS,
        x_blocks: int = 1,
    ) -> None:
        torch.set_num_threads(network.threads)
        if network.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.state_dim = state_dim
        self.settings = settings
        self.network = network
        self.n_actions = n_actions
        self.rng = rng
        generator = torch.Generator().manual_seed(seed)
        if state_dim % x_blocks:
            raise ValueError(f"x(s) of {state_dim} entries does not split into {x_blocks} equal blocks")
        self.x_blocks = x_blocks
        """Equal blocks of x(s), each with its own actor and critic networks (``AgentSettings.novel_block``)."""
        size = state_dim // x_blocks
        actors, critics = [], []
        for _ in range(x_blocks):
            # Each block's actor then critic: the first block's networks are a single-block learner's.
            actors.append(_mlp(size, network.hidden, network.activation, n_actions, ACTOR_OUT_GAIN, generator))
            critics.append(_mlp(size, network.hidden, network.activation, n_actions, CRITIC_OUT_GAIN, generator))
        self.actor: nn.Module = actors[0] if x_blocks == 1 else _Blocks(actors, size)
        # The critic's output gain is small for the same reason: the advantage compares q̂ across
        # actions, so q̂₀ must be (nearly) equal for all of them, as the linear critic's ψ₀ = 0 is. With
        # gain 1 the initial q̂ differed by O(1) between actions, far more than the rewards do (values
        # in [0, 1]), and the normalised advantage made the actor follow that random ranking: on a
        # bandit that pays 0.8 for 3 of the 9 moves and 0.6 for the rest, their probability fell from
        # 1/3 to 0.006 in 50 updates; with 0.01 it rose to 0.995 (docs/results-agents.md).
        self.critic: nn.Module = critics[0] if x_blocks == 1 else _Blocks(critics, size)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=settings.learning_rate, foreach=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=settings.learning_rate, foreach=True)
        self.kl_coef = float(settings.kl_coef_init)
        self.updates = 0

    def prefer(self, action: int, logit: float, bias_entry: float) -> None:
        # The actor's output layer bias: a constant preference in every state.
        with torch.no_grad():
            for layer in _last_layers(self.actor):
                layer.bias[action] += logit

    def sharpen(self, factor: float) -> None:
        # The actor's logits are its output layer's: scaling its weights and bias scales them.
        with torch.no_grad():
            for layer in _last_layers(self.actor):
                layer.weight *= factor
                layer.bias *= factor

    def add_logits(self, weights: np.ndarray) -> None:
        # A linear term of non-negative entries passes exactly through ReLU units (and, scaled down into
        # tanh's linear range, nearly through tanh units): the last hidden units, one per weighted entry,
        # are given over to it, each reading its entry alone and feeding the logits its column of weights.
        w = np.asarray(weights, dtype=float)
        if w.shape != (self.n_actions, self.state_dim):
            raise ValueError(f"logit weights of shape {w.shape}: the policy's are {(self.n_actions, self.state_dim)}")
        if self.x_blocks != 1:
            raise ValueError("add_logits: a policy with blocks of x(s) has one actor per block; not supported")
        columns = np.flatnonzero(np.any(w != 0, axis=0))
        first, last = self.actor[0], self.actor[-1]
        if len(columns) > first.out_features:
            raise ValueError(f"add_logits: {len(columns)} weighted entries of x(s) need as many hidden units; the "
                             f"actor has {first.out_features}")
        gain = 1.0 if self.network.activation == "relu" else TANH_PASS_GAIN
        with torch.no_grad():
            for k, column in enumerate(columns):
                unit = first.out_features - 1 - k
                first.weight[unit] = 0.0
                first.weight[unit, column] = gain
                first.bias[unit] = 0.0
                last.weight[:, unit] = torch.as_tensor(w[:, column] / gain, dtype=last.weight.dtype)

    def sharpen_block(self, block: int, factor: float) -> None:
        """:meth:`sharpen` for the states of one block of x(s) only."""
        with torch.no_grad():
            layer = _last_layers(self.actor)[block]
            layer.weight *= factor
            layer.bias *= factor

    def imitate_block(self, block: int, x: np.ndarray, actions: np.ndarray, rng: np.random.Generator,
                      l2: float | None = None) -> float:
        """:meth:`imitate` for one block's actor, ``x`` one block's entries (N, d / blocks)."""
        net = self.actor.nets[block] if isinstance(self.actor, _Blocks) else self.actor
        return _fit_actor(net, x, actions, rng, l2, self.n_actions)

    def _penalty(self, l2: float | None) -> Any:
        """``l2``/2 · the actor's squared weights (0 without ``l2``: the network's fit has no default penalty)."""
        return _penalty(self.actor, l2)

    def imitate(self, x: np.ndarray, actions: np.ndarray, rng: np.random.Generator, l2: float | None = None) -> float:
        return _fit_actor(self.actor, x, actions, rng, l2, self.n_actions)

    def imitate_costs(self, x: np.ndarray, costs: np.ndarray, rng: np.random.Generator,
                      l2: float | None = None) -> float:
        # The actor's expected cost Σₐ π(a|s)·cost(s, a), full batch, with a fresh Adam as above.
        x, costs = cost_rows(x, check_costs(costs, self.n_actions), rng, IMITATION_NN_MAX_ROWS)
        states = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        cost = torch.from_numpy(np.ascontiguousarray(costs, dtype=np.float32))
        opt = torch.optim.Adam(self.actor.parameters(), lr=IMITATION_NN_LR)
        for _ in range(IMITATION_STEPS):
            opt.zero_grad()
            loss = (torch.softmax(self.actor(states), dim=1) * cost).sum(dim=1).mean() + self._penalty(l2)
            loss.backward()
            opt.step()
        with torch.no_grad():
            return float((self.actor(states).argmax(dim=1) == cost.argmin(dim=1)).float().mean())

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits_n_a = self.actor(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
            # Softmax over dim 0 of the transposed view: torch reduces 9 rows of length N several
            # times faster than N rows of length 9 (the same holds for every softmax below).
            probs_a_n = torch.softmax(logits_n_a.T, dim=0)
        out = probs_a_n.numpy().T.astype(np.float64)
        out /= out.sum(axis=1, keepdims=True)
        return out

    def update(self, batch: Transitions) -> dict[str, float]:
        s = self.settings
        n = len(batch)
        x_n_d = torch.from_numpy(batch.x.astype(np.float32))
        x_next_n_d = torch.from_numpy(batch.x_next.astype(np.float32))
        a_n = torch.from_numpy(batch.action.astype(np.int64))
        a_next_n = torch.from_numpy(batch.action_next.astype(np.int64))
        p_old_a_n = torch.from_numpy(np.ascontiguousarray(batch.probs.T, dtype=np.float32))
        logp_old_a_n = torch.log(p_old_a_n.clamp_min(1e-30))
        cols = torch.arange(n)
        with torch.no_grad():
            # Algorithm 2's target, frozen for the update: r − λ log π(a|s) + γ q̂(s′, a′).
            q_next_n = self.critic(x_next_n_d)[cols, a_next_n]
            reward_n = torch.from_numpy(batch.reward.astype(np.float32))
            target_n = reward_n - s.entropy_reg * logp_old_a_n[a_n, cols] + s.gamma * q_next_n

        slices = minibatch_slices(n, s)
        critic_losses = []
        for _ in range(s.epochs):
            perm = torch.from_numpy(self.rng.permutation(n))
            x_e, a_e, target_e = x_n_d.index_select(0, perm), a_n[perm], target_n[perm]
            for sl in slices:
                a_m = a_e[sl]
                q_m = self.critic(x_e[sl]).gather(1, a_m[:, None])[:, 0]
                loss = torch.mean((q_m - target_e[sl]) ** 2)
                _drop_grads(self.critic_opt)
                loss.backward()
                _clipped_adam_step(self.critic_opt, s.max_grad_norm)
                critic_losses.append(loss.detach())

        with torch.no_grad():
            q_a_n = self.critic(x_n_d).T
            q_taken_n = q_a_n[a_n, cols]
            adv_n = soft_advantage(q_a_n, p_old_a_n, logp_old_a_n, a_n, s.entropy_reg)
            if s.normalise_advantages and n > 1:
                adv_n = (adv_n - adv_n.mean()) / (adv_n.std(unbiased=False) + 1e-8)

        actor_losses = []
        kl_coef = self.kl_coef
        for _ in range(s.epochs):
            perm = torch.from_numpy(self.rng.permutation(n))
            x_e, a_e, adv_e = x_n_d.index_select(0, perm), a_n[perm], adv_n[perm]
            p_old_e, logp_old_e = p_old_a_n.index_select(1, perm), logp_old_a_n.index_select(1, perm)
            for sl in slices:
                a_1_m = a_e[sl][None, :]
                p_old_a_m, logp_old_a_m = p_old_e[:, sl], logp_old_e[:, sl]
                logp_a_m = torch.log_softmax(self.actor(x_e[sl]).T, dim=0)
                ratio_m = torch.exp(logp_a_m.gather(0, a_1_m)[0] - logp_old_a_m.gather(0, a_1_m)[0])
                kl_m = torch.sum(p_old_a_m * (logp_old_a_m - logp_a_m), dim=0)
                loss = -torch.mean(ratio_m * adv_e[sl]) + kl_coef * torch.mean(kl_m)
                _drop_grads(self.actor_opt)
                loss.backward()
                _clipped_adam_step(self.actor_opt, s.max_grad_norm)
                actor_losses.append(loss.detach())

        with torch.no_grad():
            logp_new_a_n = torch.log_softmax(self.actor(x_n_d).T, dim=0)
            kl = torch.mean(torch.sum(p_old_a_n * (logp_old_a_n - logp_new_a_n), dim=0)).item()
            entropy = -torch.mean(torch.sum(torch.exp(logp_new_a_n) * logp_new_a_n, dim=0)).item()
        self.kl_coef = adapt_kl_coef(kl_coef, kl, s)
        self.updates += 1
        return {
            "losses/critic": float(np.mean(torch.stack(critic_losses).numpy().astype(float))),
            "losses/actor": float(np.mean(torch.stack(actor_losses).numpy().astype(float))),
            "approx_kl": float(kl),
            "entropy": float(entropy),
            "explained_variance": explained_variance(
                q_taken_n.numpy().astype(float), target_n.numpy().astype(float)
            ),
            "kl_coef": kl_coef,
        }

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for prefix, module in (("actor", self.actor), ("critic", self.critic)):
            for key, tensor in module.state_dict().items():
                state[f"{prefix}.{key}"] = tensor.detach().clone()
        for prefix, opt in (("actor_opt", self.actor_opt), ("critic_opt", self.critic_opt)):
            state.update(_flatten_adam(prefix, opt))
        state["kl_coef"] = self.kl_coef
        state["updates"] = self.updates
        state["rng"] = self.rng.bit_generator.state
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for prefix, module in (("actor", self.actor), ("critic", self.critic)):
            own = module.state_dict()
            module.load_state_dict(
                {key: torch.as_tensor(np.asarray(state[f"{prefix}.{key}"])) for key in own}
            )
        for prefix, opt in (("actor_opt", self.actor_opt), ("critic_opt", self.critic_opt)):
            _load_adam(prefix, opt, state)
        self.kl_coef = float(state["kl_coef"])
        self.updates = int(state["updates"])
        self.rng.bit_generator.state = state["rng"]

    def signature(self) -> dict[str, Any]:
        return {
            "learner": "mlp-kl",
            "state_dim": self.state_dim,
            "n_actions": self.n_actions,
            "hidden": self.network.hidden,
            "activation": self.network.activation,
            **({"x_blocks": self.x_blocks} if self.x_blocks > 1 else {}),
        }


def _drop_grads(opt: torch.optim.Optimizer) -> None:
    """``opt.zero_grad()`` (gradients set to None) without its per-call bookkeeping."""
    for group in opt.param_groups:
        for param in group["params"]:
            param.grad = None


def _clipped_adam_step(opt: torch.optim.Adam, max_norm: float) -> None:
    """``nn.utils.clip_grad_norm_(params, max_norm)`` then ``opt.step()``, to the bit, at about half their
    cost: an update at 10,000 functions takes 80 of these steps, and the wrappers' per-call bookkeeping
    (grouping tensors by device, profiler hooks, re-collecting Adam's state) was a tenth of it.

    The gradients' global norm is the 2-norm of their norms; they are scaled by max_norm / (norm + 10⁻⁶)
    when that is below 1 (torch multiplies by the coefficient clamped to 1, which changes nothing). The
    Adam step is torch's own multi-tensor Adam on the optimizer's state; a parameter's first step, when
    that state does not exist yet, goes through ``opt.step()``, which creates it.
    """
    (group,) = opt.param_groups
    params = [param for param in group["params"] if param.grad is not None]
    if not params:
        return
    grads = [param.grad for param in params]
    with torch.no_grad():
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
        coef = max_norm / (total + 1e-6)
        if coef.item() < 1.0:
            torch._foreach_mul_(grads, coef)
        states = [opt.state.get(param) for param in params]
        if group["amsgrad"] or group["fused"] or not group["foreach"] or not all(states):
            opt.step()
            return
        beta1, beta2 = group["betas"]
        adam_step(params, grads, [state["exp_avg"] for state in states], [state["exp_avg_sq"] for state in states], [],
                  [state["step"] for state in states], foreach=True, capturable=group["capturable"],
                  differentiable=group["differentiable"], fused=None, grad_scale=None, found_inf=None,
                  has_complex=any(torch.is_complex(param) for param in params),
                  decoupled_weight_decay=group["decoupled_weight_decay"], amsgrad=False, beta1=beta1, beta2=beta2,
                  lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"])


def _penalty(net: nn.Module, l2: float | None) -> Any:
    """``l2``/2 · ``net``'s squared weights (0 without ``l2``: the network's fit has no default penalty)."""
    if not l2:
        return 0.0
    return 0.5 * l2 * sum((p * p).sum() for p in net.parameters())


def _fit_actor(net: nn.Module, x: np.ndarray, actions: np.ndarray, rng: np.random.Generator, l2: float | None,
               n_actions: int) -> float:
    """Fit ``net``'s logits to ``actions`` in states ``x``: the cross-entropy, full batch, with its own Adam
    (a fresh one: the fit is a start, not a step of the KL-penalised learning that follows), and the
    penalty ``l2``; returns the share of states whose most probable action is the label."""
    x, actions = imitation_rows(x, actions, rng, IMITATION_NN_MAX_ROWS)
    if np.any(actions >= n_actions):
        raise ValueError(f"imitation labels must be actions < {n_actions}")
    states = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    labels = torch.from_numpy(actions)
    opt = torch.optim.Adam(net.parameters(), lr=IMITATION_NN_LR)
    for _ in range(IMITATION_STEPS):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(states), labels) + _penalty(net, l2)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((net(states).argmax(dim=1) == labels).float().mean())


def _flatten_adam(prefix: str, opt: torch.optim.Adam) -> dict[str, Any]:
    """Adam's per-parameter moments as flat tensors, its step counts as numbers (checkpoint-friendly).

    Torch creates the state of a parameter at its first step; before that the moments are written
    as zeros with step 0 (what Adam starts from), so a fresh and a trained policy store the same keys.
    """
    out: dict[str, Any] = {}
    saved = opt.state_dict()["state"]
    params = [p for group in opt.param_groups for p in group["params"]]
    for index, param in enumerate(params):
        per_param = saved.get(index)
        if per_param is None:
            per_param = {
                "step": 0.0,
                "exp_avg": torch.zeros_like(param),
                "exp_avg_sq": torch.zeros_like(param),
            }
        out[f"{prefix}.{index}.exp_avg"] = per_param["exp_avg"].detach().clone()
        out[f"{prefix}.{index}.exp_avg_sq"] = per_param["exp_avg_sq"].detach().clone()
        out[f"{prefix}.{index}.step"] = float(per_param["step"])
    return out


def _load_adam(prefix: str, opt: torch.optim.Adam, state: Mapping[str, Any]) -> None:
    current = opt.state_dict()
    restored: dict[int, dict[str, torch.Tensor]] = {}
    n_params = sum(len(group["params"]) for group in current["param_groups"])
    for index in range(n_params):
        step = float(state[f"{prefix}.{index}.step"])
        if step > 0:  # step 0 is Adam's fresh state, which torch represents by no entry
            restored[index] = {
                "step": torch.tensor(step),
                "exp_avg": torch.as_tensor(np.asarray(state[f"{prefix}.{index}.exp_avg"])).clone(),
                "exp_avg_sq": torch.as_tensor(np.asarray(state[f"{prefix}.{index}.exp_avg_sq"])).clone(),
            }
    opt.load_state_dict({"state": restored, "param_groups": current["param_groups"]})


@register("nac-nn", learns=True)
def nac_nn(*, seed: int = 0, **params: Any) -> SharedPolicyAgent:
    """NAC-NN: the shared policy as an MLP, KL-penalised step (the paper's Appendix E settings).

    ``params`` are the fields of :class:`~policies.serverless_features.FeatureSettings`,
    :class:`~policies.serverless_features.ActionSettings`, :class:`~policies.agent.AgentSettings`,
    :class:`~policies.kl_step.KLStepSettings` and :class:`NetworkSettings`. Its ``feedback`` returns
    the driver's :data:`~policies.agent.AGENT_DIAGNOSTICS` and the KL step's
    :data:`~policies.kl_step.KL_STEP_DIAGNOSTICS`.
    """
    params = {"label": "nac-nn", **params}
    routed = split_params(
        params,
        {
            "features": field_names(FeatureSettings),
            "actions": field_names(ActionSettings),
            "agent": field_names(AgentSettings),
            "staffing": field_names(StaffingSettings),
            "fallback": field_names(FallbackSettings),
            "learner": field_names(KLStepSettings),
            "network": field_names(NetworkSettings),
        },
    )
    features = FeatureSettings(**routed["features"])
    actions = ActionSettings(**routed["actions"])
    agent = AgentSettings(**routed["agent"])
    staffing = StaffingSettings(**routed["staffing"])
    kl = KLStepSettings(**routed["learner"])
    network = NetworkSettings(**routed["network"])
    learner_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    learner = TorchKLLearner(agent.state_dim(features), kl, network, seed, learner_rng, agent.n_actions,
                             x_blocks=2 if agent.novel_block else 1)
    record = {
        "features": asdict(features),
        "actions": asdict(actions),
        "agent": asdict(agent),
        "learner": asdict(kl),
        "network": asdict(network),
    }
    if agent.staffed:
        record["staffing"] = asdict(staffing)
    return with_fallback(SharedPolicyAgent(
        "nac-nn", learner, features=features, actions=actions, agent=agent, seed=seed, settings_record=record,
        staffing=staffing,
    ), routed["fallback"])
