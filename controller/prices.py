"""The operator reward's price of a GB-s of memory in SLO violations, for pricing whole pool levels.

The operator reward's cost per tick is (1 − α)·late/V + α·idle·memory/M (late invocations over the
population's average work V per function and tick; idle container-MB over one invoker's user memory
M). Over a window the late count is the violations and the idle MB-ticks are memory GB-s × 1024 /
tick_s, so a function's cost at a pool level is proportional to

    violations + λ · memory GB-s,   λ = α / (1 − α) · V · 1024 / (M · tick_s).

The fitted warm start labels functions by it (``controller.warm_fit``) and the level twins price the
levels' outcomes by it (``controller.level_twins``).
"""

from __future__ import annotations

import math

from controller.settings import Settings


def level_price(settings: Settings, invocations_per_function_tick: float) -> float:
    """λ for this run's α, cluster and tick, with V = ``invocations_per_function_tick`` (at least 1);
    infinite at α = 1 (memory is all that counts)."""
    alpha = float(settings.reward.alpha)
    if alpha >= 1.0:
        return math.inf
    return (alpha / (1.0 - alpha) * max(invocations_per_function_tick, 1.0) * 1024.0
            / (settings.cluster.user_memory_mb * settings.loop.tick_s))


__all__ = ["level_price"]
