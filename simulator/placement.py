"""OpenWhisk's invoker selection: a home invoker by hash, then probing with a step coprime with N.

OpenWhisk's sharding load balancer hashes the action's name to a home invoker and, when the home
has no room, tries ``home + step``, ``home + 2 step``, ... (mod N). The step is chosen, again by the
hash, among numbers coprime with N, so the probe visits every invoker exactly once. Using the same
function on the same invoker keeps its warm containers together.

The hash here is FNV-1a (64-bit) of the UTF-8 name: stable across processes and Python versions
(Python's own ``hash`` of a string is salted per process) and cheap. OpenWhisk itself uses Java's
``String.hashCode``; only stability and spread matter for the model.
"""

from __future__ import annotations

import math

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


def stable_hash(name: str) -> int:
    """A 64-bit FNV-1a hash of ``name`` (UTF-8), the same in every process."""
    h = _FNV_OFFSET
    for byte in name.encode("utf-8"):
        h ^= byte
        h = (h * _FNV_PRIME) & _MASK64
    return h


def coprime_steps(n_invokers: int) -> tuple[int, ...]:
    """Every step in [1, N) coprime with N (just (1,) for N <= 2): each visits all N invokers."""
    if n_invokers < 1:
        raise ValueError(f"n_invokers must be >= 1, got {n_invokers}")
    steps = tuple(s for s in range(1, n_invokers) if math.gcd(s, n_invokers) == 1)
    return steps or (1,)


def home_and_step(name: str, n_invokers: int) -> tuple[int, int]:
    """The home invoker of function ``name`` and its probing step, both from :func:`stable_hash`."""
    h = stable_hash(name)
    steps = coprime_steps(n_invokers)
    return h % n_invokers, steps[h % len(steps)]


def probe_order(name: str, n_invokers: int) -> list[int]:
    """The invokers in the order placement tries them for ``name``: home, home + step, ... (mod N)."""
    home, step = home_and_step(name, n_invokers)
    return [(home + j * step) % n_invokers for j in range(n_invokers)]


__all__ = ["coprime_steps", "home_and_step", "probe_order", "stable_hash"]
