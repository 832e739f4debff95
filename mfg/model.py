"""The exact model of a finite mean-field game: states, actions, initial distribution, P and r.

A game is known to the evaluators in this package (dynamic programming, exploitability) and to the
sampler that simulates it; learners in ``policies/`` only ever see sampled transitions.

Shapes (S states, A actions):

* ``mu``: distribution over states, shape (S,), non-negative, sums to 1.
* ``transition(mu)``: P[s, a, s'] = P(s' | s, a, mu), shape (S, A, S); rows sum to 1.
* ``reward(mu)``: r[s, a] = r(s, a, mu), shape (S, A), in the game's own units (the paper's SIS
  rewards are costs in [-1.5, 0]; see ``reward_range`` for rescaling into [0, 1]).
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

    @abstractmethod
    def transition(self, mu: np.ndarray) -> np.ndarray:
        """P(s' | s, a, mu), shape (S, A, S)."""

    @abstractmethod
    def reward(self, mu: np.ndarray) -> np.ndarray:
        """r(s, a, mu), shape (S, A), in the game's own units."""

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
