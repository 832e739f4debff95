"""The exact model of a finite mean-field game: states, actions, initial distribution, P and r.

A game is known to the evaluators in this package (dynamic programming, exploitability) and to the
sampler that simulates it; learners in ``policies/`` only ever see sampled transitions.

Shapes (S states, A actions):

* ``mu``: distribution over states, shape (S,), non-negative, sums to 1.
* ``transition(mu)``: P[s, a, s'] = P(s' | s, a, mu), shape (S, A, S); rows sum to 1.
* ``reward(mu)``: r[s, a] = r(s, a, mu), shape (S, A), in the game's own units (the paper's SIS
  rewards are costs in [-1.5, 0]; see ``reward_range`` for rescaling into [0, 1]).
* Both also accept a stack of distributions, shape (..., S), and then return (..., S, A, S) and
  (..., S, A): the exact evaluators build a whole mean-field flow's models in one call.
* ``push_forward(mu, policy)``: one step of the population dynamics, Gamma_2(pi, mu) = mu P_pi(mu),
  shape (S,) for a policy of shape (S, A); ``flow(mu0, policy)`` chains it over a horizon. Games may
  override both with closed forms for speed (the exact evaluators call them in their only
  sequential forward loop).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GameSpec:
    """Names and sizes of a game; actions are listed in the order every policy array uses."""

    name: str
    """Short name used on the command line (``sis``, ``lq``)."""
    state_names: tuple[str, ...]
    """Human-readable state labels, index order."""
    action_names: tuple[str, ...]
    """Human-readable action labels, index order (a policy array's last axis)."""

    @property
    def n_states(self) -> int:
        return len(self.state_names)

    @property
    def n_actions(self) -> int:
        return len(self.action_names)


class MeanFieldGame(ABC):
    """A stationary mean-field game: P and r depend on the state distribution ``mu`` only."""

    spec: GameSpec
    mu0: np.ndarray
    """Initial state distribution (the paper's rho), shape (S,)."""
    default_horizon: int
    """Finite horizon T (decision epochs 0..T) used when a caller gives none."""

    @abstractmethod
    def transition(self, mu: np.ndarray) -> np.ndarray:
        """P(s' | s, a, mu), shape (S, A, S)."""

    @abstractmethod
    def reward(self, mu: np.ndarray) -> np.ndarray:
        """r(s, a, mu), shape (S, A), in the game's own units."""

    def push_forward(self, mu: np.ndarray, policy: np.ndarray) -> np.ndarray:
        """Gamma_2(pi, mu): the next state distribution, sum_{s,a} mu(s) pi(a|s) P(. | s, a, mu)."""
        joint = mu[:, None] * policy
        return joint.reshape(-1) @ self.transition(mu).reshape(joint.size, -1)

    def flow(self, mu0: np.ndarray, policy: np.ndarray) -> np.ndarray:
        """The mean-field flow mu_{t+1} = Gamma_2(pi_t, mu_t) from mu0 for a policy of shape (T+1, S, A).

        Returns shape (T+1, S); the last decision epoch's policy does not move the flow.
        """
        flow = np.empty((policy.shape[0], mu0.shape[0]))
        flow[0] = mu0
        for t in range(policy.shape[0] - 1):
            flow[t + 1] = self.push_forward(flow[t], policy[t])
        return flow

    @property
    def reward_range(self) -> tuple[float, float]:
        """Lower and upper bound of r over all (s, a, mu); used to rescale rewards into [0, 1]."""
        raise NotImplementedError

    @property
    def n_states(self) -> int:
        return self.spec.n_states

    @property
    def n_actions(self) -> int:
        return self.spec.n_actions
