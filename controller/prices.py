"""The operator reward's price of a GB-s of memory in SLO violations, for pricing whole pool levels.

The operator reward's cost per tick is (1 − α)·late/V + α·idle·memory/M (late invocations over the
population's average work V per function and tick; idle container-MB over one invoker's user memory
M). Over a window the late count is the violations and the idle MB-ticks are memory GB-s × 1024 /
tick_s, so a function's cost at a pool level is proportional to

    violations + λ · memory GB-s,   λ = α / (1 − α) · V · 1024 / (M · tick_s).

The fitted warm start labels functions by it (``controller.warm_fit``) and the level twins price the
levels' outcomes by it (``controller.level_twins``).

The price sees a cold start only when it makes an invocation late, and the levels that scale to zero
win on memory with cold starts an operator also pays for. The learner's cold-start rule
(``AgentSettings.fit_cold_starts``) says how both count them: ``free`` (not at all), ``ensure`` (a
level with more cold starts for the function than ENSURE's level, c = 1.06, is not a candidate) or
``priced`` (each cold start costs as much as one violation: violations + cold starts + λ · memory GB-s).
"""

from __future__ import annotations

import math

import numpy as np

from controller.settings import Settings

#: The learner's cold-start rules (``AgentSettings.fit_cold_starts``).
COLD_START_RULES: tuple[str, ...] = ("free", "ensure", "priced")
#: The level whose cold starts bound the others' under the ``ensure`` rule.
ENSURE_LEVEL = "c=1.06"


def level_price(settings: Settings, invocations_per_function_tick: float) -> float:
    """λ for this run's α, cluster and tick, with V = ``invocations_per_function_tick`` (at least 1);
    infinite at α = 1 (memory is all that counts)."""
    alpha = float(settings.reward.alpha)
    if alpha >= 1.0:
        return math.inf
    return (alpha / (1.0 - alpha) * max(invocations_per_function_tick, 1.0) * 1024.0
            / (settings.cluster.user_memory_mb * settings.loop.tick_s))


def level_costs(violations: np.ndarray, memory_gb_s: np.ndarray, cold_starts: np.ndarray, price: float,
                rule: str) -> np.ndarray:
    """Each level's cost for each function (arrays levels × functions): violations + ``price`` · memory
    GB-s (memory alone at an infinite price), plus the cold starts under the ``priced`` rule. Not the
    ``ensure`` rule's exclusions (:func:`cold_start_allowed`)."""
    if rule not in COLD_START_RULES:
        raise ValueError(f"cold-start rule {rule!r}: must be one of {', '.join(COLD_START_RULES)}")
    if math.isinf(price):
        return np.array(memory_gb_s, dtype=float, copy=True)
    cost = violations + price * memory_gb_s
    return cost + cold_starts if rule == "priced" else cost


def cold_start_allowed(cold_starts: np.ndarray, levels: tuple[str, ...] | list[str], rule: str) -> np.ndarray:
    """(levels, N) the levels ``rule`` lets each function take: every one but under ``ensure``, which
    keeps those with no more cold starts (``cold_starts``, levels × N) than :data:`ENSURE_LEVEL`'s."""
    if rule != "ensure":
        return np.ones(np.shape(cold_starts), dtype=bool)
    bound = cold_starts[list(levels).index(ENSURE_LEVEL)]
    return cold_starts <= bound[None, :] + 1e-12


__all__ = ["COLD_START_RULES", "ENSURE_LEVEL", "cold_start_allowed", "level_costs", "level_price"]
