"""The environment the learners sample from: a toy game simulated with its exact model.

The sampler *is* the environment, so it reads the model (P and r); the learner only ever receives
what one agent could observe -- transitions (s, a, r, s', a') as feature batches -- and the mean-field
update receives the empirical state distribution of the simulated agents (its estimate of
Γ₂(π, μ)). The mean field enters the simulation only through P and r, as in App. D ("the mean-field
states are not directly observed by the learning agent").

Finite horizon (epochs 0..T): each :meth:`GameSampler.episode` runs ``n_agents`` independent agents
from μ₀ for T+1 decisions, in the environment induced by a mean-field *flow* μ_t (the current
estimate, or -- with ``mode="population"`` -- the agents' own empirical distribution, a finite
population playing the game). Rewards handed to the learner are rescaled into [0, 1] with the game's
``reward_range`` (the theory's assumption, App. A Lemma 3); exploitability is always computed by
``mfg.dp`` in the game's own units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from mfg.dp import FiniteHorizon, Setting, initial_distribution
from mfg.features import TabularFeatures, TimeTabularFeatures
from mfg.model import MeanFieldGame
from policies.nac import NaturalActorCritic, TransitionBatch, sample_from


@dataclass(frozen=True, eq=False)
class Episode:
    """One finite-horizon episode of N agents; arrays are indexed [t, agent] for t = 0..T."""

    states: np.ndarray
    """(T+1, N) int."""
    actions: np.ndarray
    """(T+1, N) int, drawn from the learner's π_t(·|s)."""
    rewards: np.ndarray
    """(T+1, N) float, in the learner's units ([0, 1] when rescaled)."""
    flow: np.ndarray
    """(T+1, S) empirical state distribution of the agents at each epoch: the sampled Γ₂(π, μ)."""

    @property
    def n_transitions(self) -> int:
        return int(self.states.size)


def reward_scale(game: MeanFieldGame, rescale: bool) -> tuple[float, float]:
    """(offset, width) with learner reward = (r − offset) / width; (0, 1) when not rescaling."""
    if not rescale:
        return 0.0, 1.0
    low, high = game.reward_range
    if not high > low:
        raise ValueError(
            f"game {game.spec.name!r}: reward_range {(low, high)} is empty; cannot rescale into [0, 1]"
        )
    return float(low), float(high - low)


class GameSampler:
    """Simulates a finite-horizon game for a learner; owns its generator (states, transitions)."""

    def __init__(
        self,
        game: MeanFieldGame,
        setting: Setting,
        features: TimeTabularFeatures | TabularFeatures,
        n_agents: int,
        rng: np.random.Generator,
        *,
        rescale_rewards: bool = True,
        mode: Literal["estimate", "population"] = "estimate",
    ) -> None:
        if not isinstance(setting, FiniteHorizon):
            raise TypeError(
                f"GameSampler simulates finite-horizon games only; got {type(setting).__name__} "
                "(use mfg.dp.FiniteHorizon)"
            )
        if n_agents < 1:
            raise ValueError(f"GameSampler: n_agents={n_agents} must be >= 1")
        if mode not in ("estimate", "population"):
            raise ValueError(f"GameSampler: mode={mode!r} must be 'estimate' or 'population'")
        self.game = game
        self.setting = setting
        self.features = features
        self.n_agents = n_agents
        self.rng = rng
        self.mode = mode
        self.mu0 = initial_distribution(game, setting)
        self.horizon = setting.horizon
        self.reward_offset, self.reward_width = reward_scale(game, rescale_rewards)
        times = np.repeat(np.arange(self.horizon + 1), n_agents)
        self._times = times

    def policy_table(self, learner: NaturalActorCritic) -> np.ndarray:
        """π_t(·|s) for every epoch and state, (T+1, S, A): one batched call to the learner."""
        table = self.features.policy_array(learner)
        if table.ndim == 2:
            table = np.broadcast_to(table, (self.horizon + 1,) + table.shape)
        return table

    def episode(self, learner: NaturalActorCritic, mean_field: np.ndarray) -> Episode:
        """Run N agents for epochs 0..T under the learner's current policy.

        ``mean_field`` is the flow (T+1, S) that induces the environment (mode ``estimate``); in
        mode ``population`` it is ignored and each epoch's P and r use the agents' own distribution.
        """
        T, N, S = self.horizon, self.n_agents, self.game.n_states
        mean_field = np.asarray(mean_field, dtype=float)
        if mean_field.shape != (T + 1, S):
            raise ValueError(
                f"GameSampler.episode: mean_field has shape {mean_field.shape}, expected {(T + 1, S)}"
            )
        pi = self.policy_table(learner)
        states = np.empty((T + 1, N), dtype=np.intp)
        actions = np.empty((T + 1, N), dtype=np.intp)
        rewards = np.empty((T + 1, N))
        flow = np.empty((T + 1, S))
        states[0] = sample_from(np.broadcast_to(self.mu0, (N, S)), self.rng)
        if self.mode == "estimate":
            P_all = self.game.transition(mean_field)  # (T+1, S, A, S)
            r_all = self.game.reward(mean_field)  # (T+1, S, A)
        for t in range(T + 1):
            s = states[t]
            flow[t] = np.bincount(s, minlength=S) / N
            if self.mode == "estimate":
                P_t, r_t = P_all[t], r_all[t]
            else:
                P_t, r_t = self.game.transition(flow[t]), self.game.reward(flow[t])
            a = sample_from(pi[t, s], self.rng)
            actions[t] = a
            rewards[t] = r_t[s, a]
            if t < T:
                states[t + 1] = sample_from(P_t[s, a], self.rng)
        rewards = (rewards - self.reward_offset) / self.reward_width
        return Episode(states=states, actions=actions, rewards=rewards, flow=flow)

    def transitions(
        self, episode: Episode, order: Literal["forward", "backward"] = "backward"
    ) -> TransitionBatch:
        """The episode as (s, a, r, s', a') rows, grouped by epoch; the last epoch's rows are terminal.

        ``backward`` lists epoch T first and epoch 0 last, each epoch a contiguous block of N rows:
        with ``critic_minibatch = N`` and ``critic_shuffle = False`` the critic then sweeps backward
        in time (see ``NACHyperparameters.critic_shuffle``). ``forward`` is epoch 0 first.
        """
        T, N = self.horizon, self.n_agents
        epochs = np.arange(T + 1)
        if order == "backward":
            epochs = epochs[::-1]
        elif order != "forward":
            raise ValueError(f"GameSampler.transitions: order={order!r} must be 'forward' or 'backward'")
        rows = (epochs[:, None] * N + np.arange(N)[None, :]).reshape(-1)
        # Agent i's next row in epoch-major (forward) layout is exactly N rows later; the last
        # epoch's rows point at themselves and are marked terminal, so they never bootstrap.
        terminal = rows >= T * N
        next_rows = np.where(terminal, rows, rows + N)
        states = episode.states.reshape(-1)
        actions = episode.actions.reshape(-1)
        times = self._times
        return TransitionBatch(
            features=self.features(times[rows], states[rows]),
            actions=actions[rows],
            rewards=episode.rewards.reshape(-1)[rows],
            next_features=self.features(times[next_rows], states[next_rows]),
            next_actions=actions[next_rows],
            terminal=terminal,
        )
