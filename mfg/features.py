"""Feature maps φ(s, a) for the toy games, in the form the NAC core consumes (``policies.nac``).

Both maps are one-hot, so ‖φ(s, a)‖₂ = 1 (the paper's ‖φ‖ ≤ 1) and the log-linear policy class
contains every policy: the approximation error ε_approx of Theorem 1 is zero and what remains is
the critic's and the actor's sampling error.

* :class:`TabularFeatures` -- φ(s, a) = e_{(s, a)}, d = S·A: one stationary policy (discounted games).
* :class:`TimeTabularFeatures` -- φ(t, s, a) = e_{(t, s, a)}, d = (T+1)·S·A: a finite-horizon policy
  π_t may depend on the epoch t, which the finite-horizon equilibrium needs (SIS's agents distance
  early and go out near the end).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.nac import NaturalActorCritic, OneHotFeatures


@dataclass(frozen=True)
class TabularFeatures:
    """φ(s, a) = e_{s·A + a}; the epoch is ignored."""

    n_states: int
    """S."""
    n_actions: int
    """A."""

    @property
    def dim(self) -> int:
        return self.n_states * self.n_actions

    @property
    def n_epochs(self) -> int:
        """Rows of the policy array: one stationary policy."""
        return 1

    def __call__(self, times: np.ndarray, states: np.ndarray) -> OneHotFeatures:
        """Features of N (t, s) pairs, (N, A, d); ``times`` is unused."""
        states = np.asarray(states, dtype=np.intp).reshape(-1)
        index = states[:, None] * self.n_actions + np.arange(self.n_actions)[None, :]
        return OneHotFeatures(index, self.dim)

    def policy_array(self, learner: NaturalActorCritic) -> np.ndarray:
        """The learner's policy as an (S, A) array (the discounted setting's policy)."""
        states = np.arange(self.n_states)
        return learner.probabilities(self(np.zeros_like(states), states))


@dataclass(frozen=True)
class TimeTabularFeatures:
    """φ(t, s, a) = e_{(t·S + s)·A + a} for epochs t = 0..horizon."""

    horizon: int
    """Last decision epoch T."""
    n_states: int
    """S."""
    n_actions: int
    """A."""

    @property
    def dim(self) -> int:
        return (self.horizon + 1) * self.n_states * self.n_actions

    @property
    def n_epochs(self) -> int:
        return self.horizon + 1

    def __call__(self, times: np.ndarray, states: np.ndarray) -> OneHotFeatures:
        """Features of N (t, s) pairs, (N, A, d)."""
        times = np.asarray(times, dtype=np.intp).reshape(-1)
        states = np.asarray(states, dtype=np.intp).reshape(-1)
        if times.shape != states.shape:
            raise ValueError(f"TimeTabularFeatures: {times.shape[0]} epochs for {states.shape[0]} states")
        if times.size and (times.min() < 0 or times.max() > self.horizon):
            raise ValueError(
                f"TimeTabularFeatures: epochs must be in [0, {self.horizon}], got {times.min()}..{times.max()}"
            )
        cell = times * self.n_states + states
        index = cell[:, None] * self.n_actions + np.arange(self.n_actions)[None, :]
        return OneHotFeatures(index, self.dim)

    def policy_array(self, learner: NaturalActorCritic) -> np.ndarray:
        """The learner's policy as a (T+1, S, A) array (the finite-horizon setting's policy)."""
        times, states = np.divmod(np.arange(self.n_epochs * self.n_states), self.n_states)
        probs = learner.probabilities(self(times, states))
        return probs.reshape(self.n_epochs, self.n_states, self.n_actions)
