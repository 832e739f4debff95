"""How far training moved a learner that started as the twins' rule, and what moved it.

    python benchmarks/rule_drift.py PATH [PATH ...] [--levels]

Each PATH is a NAC-Linear checkpoint of the natural step (``*.ckpt.npz``, with the ``.run.json`` that
training writes beside it) or a folder searched for them, e.g. a bench's ``RUN/checkpoints``. The learner
must have started as the twins' rule (``warm_start: twins``). For each checkpoint the learner is built
twice from the settings its run recorded: fresh (θ₀, the rule) and with the checkpoint loaded (θ). The
rule's logits are −k times each level's regret entry, so θ₀'s weights in the twins' entries have one
contrast per level: its actions' weight on the level's entry against every other action's. Printed, per
folder of checkpoints (mean over them):

* ``sharpness``: θ's contrast as a fraction of θ₀'s, and beside it ``decay``, the fraction the natural
  step's regularisation alone leaves after the U updates the checkpoint made, (1 − ηλ)^U (the step is
  θ ← (1 − ηλ)θ + ηŵ);
* ``settles at``: the sharpness the last update's evidence supports, as the same fraction: the step's
  fixed point is θ = ŵ/λ, so this is ŵ's contrast over λ times θ₀'s (1: the rewards bear out the rule as
  sharp as it started; 0: they say nothing along it, and the decay alone moves it; with ``exact_shift``
  ŵ holds λθ itself, so this is the current sharpness plus what the rewards add);
* ``shift kept``: how much of the rule one tick's batch can carry. The soft advantage's shift is
  λθᵀ∇log π, so fitting it should give back λθ; it is fitted here alone, on the states of the batch
  the checkpoint holds (one tick: one row per usable function) with actions drawn from θ, and the fit's
  contrast is shown as a fraction of λθ's (1: the batch carries the rule; 0: the fit loses it, and the
  step θ ← (1 − ηλ)θ + ηŵ then shrinks it; ``exact_shift`` adds λθ to ŵ instead of fitting it);
* ``moved``: ‖θ − θ₀‖ over the game's local entries, μ's bins, the scheme's entries and the twins'
  entries (the bias entry, where the share preference sits, is left out).

With ``--levels``, a second table: each level's mean probability over the same batch states under θ₀
and under θ (where training moved the policy's mass), one row per folder and reward weight α.

With ``--critic``, what the critic says of each level on the same states, one row per folder and α (a
learner with ``state_critic`` has no value per action and is left out): each level's advantage, its q̂
(the mean over the level's actions of φ(s, a)ᵀψ̄) less the mean over the levels, averaged over the
states, with the part its actions' bias weights alone make of it in brackets (the advantage of a level
whatever the state); and the share of the states where the critic ranks the level first against the
share where the twins' regret entries do (the level with the least regret).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from policies.agent import SharedPolicyAgent
from policies.nac import KroneckerRows, compatible_fit, sample_from
from policies.nac_linear import NaturalLinearLearner
from policies.registry import make
from policies.staffing import SHARE_FACTORS, action_index

#: Settings groups of a run's record that the learner's factory does not take back (derived from the others).
_DERIVED = {"learner": ("n_features", "n_actions", "seed")}


@dataclass(frozen=True)
class Drift:
    """One checkpoint's distance from the rule it started as."""

    updates: int
    sharpness: float
    decay: float
    settles_at: float
    shift_kept: float
    moved: dict[str, float]
    levels: tuple[str, ...]
    alpha: float | None
    """The reward's α the run trained with (None if its record does not say)."""
    start_mass: np.ndarray
    """Each level's mean probability under θ₀ over the batch states (NaN without usable states)."""
    end_mass: np.ndarray
    """The same under θ."""
    critic_advantage: np.ndarray
    """Each level's q̂ less the levels' mean, averaged over the batch states (NaN: no states, or a state critic)."""
    critic_bias_part: np.ndarray
    """The part of that the bias weights of the level's actions make."""
    critic_first: np.ndarray
    """The share of the batch states where the critic ranks the level first."""
    twins_first: np.ndarray
    """The share where the twins' regret entries do."""


def rebuild(record: dict[str, Any]) -> SharedPolicyAgent:
    """The learner a run's ``policy_settings`` record describes, built fresh."""
    params: dict[str, Any] = {}
    for group, value in record.items():
        if isinstance(value, dict):
            params.update({k: v for k, v in value.items() if k not in _DERIVED.get(group, ())})
        else:
            params[group] = value
    return make("nac-linear", **params)


def natural(agent: SharedPolicyAgent) -> NaturalLinearLearner:
    """The agent's learner, which must be NAC-Linear's natural step."""
    if not isinstance(agent.learner, NaturalLinearLearner):
        raise TypeError(f"{type(agent.learner).__name__} is not NAC-Linear's natural step")
    return agent.learner


def rule_mask(agent: SharedPolicyAgent) -> np.ndarray:
    """(A, L): True where action a plays level l (each of the twins' entries, one per level)."""
    levels = agent.agent.levels
    mask = np.zeros((agent.agent.n_actions, len(levels)), dtype=bool)
    for a in range(agent.agent.n_actions):
        for index, level in enumerate(levels):
            mask[a, index] = any(action_index(level, s) == a for s in SHARE_FACTORS)
    return mask


def contrast(block: np.ndarray, mask: np.ndarray) -> float:
    """Mean over levels of (the level's actions' weight on its entry − every other action's)."""
    return float(np.mean([block[mask[:, j], j].mean() - block[~mask[:, j], j].mean() for j in range(mask.shape[1])]))


def column_groups(agent: SharedPolicyAgent) -> dict[str, slice]:
    """Where each group of x(s)'s entries sits (the bias, entry 0, in none)."""
    game = agent.features.state_dim
    local = game - agent.features.mu_bins
    d = agent.agent.base_state_dim(agent.features)
    twins = d - len(agent.agent.levels)
    return {"local": slice(1, local), "mu": slice(local, game), "scheme": slice(game, twins), "twins": slice(twins, d)}


def drift(path: Path) -> Drift:
    """Compare the checkpoint at ``path`` with the rule its learner started as."""
    run = Path(str(path).removesuffix(".npz") + ".run.json")
    if not run.is_file():
        raise CheckpointError(f"{path}: no {run.name} beside it (the settings its run recorded)")
    recorded = json.loads(run.read_text())
    record = recorded.get("policy_settings")
    alpha = recorded.get("settings", {}).get("reward", {}).get("alpha")
    if not isinstance(record, dict) or record.get("mode") != "natural":
        raise CheckpointError(f"{path}: not a NAC-Linear learner of the natural step (its run's policy_settings)")
    if record.get("agent", {}).get("warm_start") != "twins":
        raise CheckpointError(f"{path}: its learner did not start as the twins' rule (agent.warm_start)")
    fresh, trained = rebuild(record), rebuild(record)
    load_checkpoint(path, trained)
    core = natural(trained)
    shape = (core.n_actions, core.state_dim)
    theta0 = fresh.learner.core.theta.reshape(shape)
    theta, w_hat = core.core.theta.reshape(shape), core.core.w_hat.reshape(shape)
    groups, mask = column_groups(trained), rule_mask(trained)
    twins = groups["twins"]
    eta, lam, updates = core.core.hp.policy_lr, core.core.hp.entropy_reg, int(core.core.updates)
    start = contrast(theta0[:, twins], mask)
    now = contrast(theta[:, twins], mask)
    _, state = read_checkpoint(path)
    # The batch the checkpoint holds (the last tick's states); a learner saved before its first tick has none.
    x = state["pending/x"][state["pending/usable"]] if "pending/x" in state else np.zeros((0, core.state_dim))
    empty = np.full(len(trained.agent.levels), np.nan)
    critic = critic_levels(core, x, mask, twins) if len(x) and not core.core.hp.state_critic else (empty,) * 4
    return Drift(
        critic_advantage=critic[0], critic_bias_part=critic[1], critic_first=critic[2], twins_first=critic[3],
        levels=trained.agent.levels,
        alpha=None if alpha is None else float(alpha),
        start_mass=(fresh.learner.probabilities(x) @ mask).mean(axis=0) if len(x) else empty,
        end_mass=(trained.learner.probabilities(x) @ mask).mean(axis=0) if len(x) else empty,
        updates=updates,
        shift_kept=shift_kept(trained, x, mask, twins),
        sharpness=now / start,
        decay=(1.0 - eta * lam) ** updates,
        settles_at=contrast(w_hat[:, twins], mask) / (lam * start),
        moved={name: float(np.linalg.norm((theta - theta0)[:, cols])) for name, cols in groups.items()},
    )


def critic_levels(learner: NaturalLinearLearner, x: np.ndarray, mask: np.ndarray,
                  twins: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """On states ``x``: each level's mean advantage under the critic, the bias weights' part of it, and the
    shares of the states where the critic and the twins' regrets rank the level first."""
    psi = learner.core.psi_bar.reshape(learner.n_actions, learner.state_dim)
    levels = range(mask.shape[1])
    q = np.column_stack([(x @ psi[mask[:, j]].T).mean(axis=1) for j in levels])
    bias = np.array([psi[mask[:, j], 0].mean() * x[:, 0].mean() for j in levels])
    def first(scores: np.ndarray) -> np.ndarray:
        return np.bincount(scores.argmax(axis=1), minlength=mask.shape[1]) / len(scores)
    return ((q - q.mean(axis=1, keepdims=True)).mean(axis=0), bias - bias.mean(), first(q), first(-x[:, twins]))


def shift_kept(agent: SharedPolicyAgent, x: np.ndarray, mask: np.ndarray, twins: slice) -> float:
    """The fraction of λθ's contrast in the twins' entries that the compatible fit gives back from the
    shift's advantage λθᵀ∇log π alone, on states ``x`` (rows of x(s)) with actions drawn from θ."""
    learner = natural(agent)
    core = learner.core
    if x.shape[0] == 0:
        return float("nan")
    probs = learner.probabilities(x)
    actions = sample_from(probs, np.random.default_rng(0))
    weights = -probs
    weights[np.arange(len(actions)), actions] += 1.0
    rows = KroneckerRows(weights, x).factored()
    shift = core.hp.entropy_reg * core.theta
    fit = compatible_fit(rows, rows @ shift, core.hp, np.random.default_rng(1), core.x_blocks)
    shape = (learner.n_actions, learner.state_dim)
    return contrast(fit.w_hat.reshape(shape)[:, twins], mask) / contrast(shift.reshape(shape)[:, twins], mask)


def checkpoints(paths: list[Path]) -> list[Path]:
    """The checkpoint files named, and those under the folders named, in order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(path.rglob("*.ckpt.npz")))
        elif path.is_file():
            found.append(path)
        else:
            raise CheckpointError(f"{path}: no such file or folder")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parser.add_argument("--levels", action="store_true",
                        help="also each level's mean probability under θ₀ and θ over the batch states")
    parser.add_argument("--critic", action="store_true",
                        help="also each level's advantage under the critic and how often it and the twins rank it first")
    args = parser.parse_args()
    # A checkpoint older than a setting of the learner logs the difference as it loads; the setting's default
    # is what that run had, and the rebuilt learner has it.
    logging.disable(logging.WARNING)
    try:
        files = checkpoints(args.paths)
        if not files:
            sys.exit(f"{' '.join(map(str, args.paths))}: no *.ckpt.npz checkpoints")
        by_folder: dict[Path, list[Drift]] = defaultdict(list)
        for path in files:
            by_folder[path.parent].append(drift(path))
    except CheckpointError as error:
        sys.exit(str(error))
    print("| checkpoints | n | updates | sharpness | decay (1−ηλ)^U | settles at | shift kept | moved: local / μ / scheme / twins |")
    print("|---|---|---|---|---|---|---|---|")
    for folder, rows in by_folder.items():
        mean = {k: float(np.mean([r.moved[k] for r in rows])) for k in rows[0].moved}
        print(f"| {folder} | {len(rows)} | {np.mean([r.updates for r in rows]):.0f} "
              f"| {np.mean([r.sharpness for r in rows]):.3f} | {np.mean([r.decay for r in rows]):.3f} "
              f"| {np.mean([r.settles_at for r in rows]):.3f} | {np.nanmean([r.shift_kept for r in rows]):.3f} "
              f"| {mean['local']:.2f} / {mean['mu']:.2f} / {mean['scheme']:.2f} / {mean['twins']:.2f} |")

    if args.levels:
        per_alpha(by_folder, "each level's mass under θ₀ → θ",
                  lambda mine: zip(mean_of(mine, "start_mass"), mean_of(mine, "end_mass")),
                  lambda pair: f"{pair[0]:.2f} → {pair[1]:.2f}")
    if args.critic:
        per_alpha(by_folder, "each level's advantage under the critic (its bias weights' part)",
                  lambda mine: zip(mean_of(mine, "critic_advantage"), mean_of(mine, "critic_bias_part")),
                  lambda pair: f"{pair[0]:+.2f} ({pair[1]:+.2f})")
        per_alpha(by_folder, "share of the states where the critic / the twins rank the level first",
                  lambda mine: zip(mean_of(mine, "critic_first"), mean_of(mine, "twins_first")),
                  lambda pair: f"{pair[0]:.2f} / {pair[1]:.2f}")


def mean_of(rows: list[Drift], name: str) -> np.ndarray:
    """The mean over ``rows`` of one per-level field (NaN where none has it)."""
    values = np.array([getattr(r, name) for r in rows])
    return np.full(values.shape[1], np.nan) if np.all(np.isnan(values)) else np.nanmean(values, axis=0)


def per_alpha(by_folder: dict[Path, list[Drift]], title: str, cells: Any, show: Any) -> None:
    """A table of one row per folder and α, one column per level."""
    levels = next(iter(by_folder.values()))[0].levels
    print()
    print(f"{title}:")
    print()
    print("| checkpoints | α | " + " | ".join(levels) + " |")
    print("|---|---|" + "---|" * len(levels))
    for folder, rows in by_folder.items():
        for alpha in sorted({r.alpha for r in rows}, key=lambda a: (a is None, a or 0.0)):
            mine = [r for r in rows if r.alpha == alpha]
            label = "?" if alpha is None else f"{alpha:g}"
            print(f"| {folder} | {label} | " + " | ".join(show(cell) for cell in cells(mine)) + " |")


if __name__ == "__main__":
    main()
