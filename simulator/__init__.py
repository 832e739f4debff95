"""The embedded simulated OpenWhisk cluster: invokers, containers, cold starts, CPU-share
contention and idle eviction; seeded, deterministic and fast (numba event core).

Public API: :class:`ClusterConfig`, :class:`Cluster`, :class:`TickStats` (with
:class:`FunctionTick` and :class:`InvokerTick`), :class:`Totals` (with :class:`FunctionTotals` and
:class:`InvokerTotals`), :data:`RECORD_DTYPE`, :func:`measure_solo_p99`.
See ``docs/simulator.md``.
"""

from simulator.cluster import (
    RECORD_DTYPE,
    UNMANAGED,
    Cluster,
    FunctionTick,
    FunctionTotals,
    InvokerTick,
    InvokerTotals,
    TickStats,
    Totals,
    measure_solo_p99,
)
from simulator.config import EVICTION_RULES, ClusterConfig, default_cpu_shares

__all__ = [
    "EVICTION_RULES",
    "RECORD_DTYPE",
    "UNMANAGED",
    "Cluster",
    "ClusterConfig",
    "FunctionTick",
    "FunctionTotals",
    "InvokerTick",
    "InvokerTotals",
    "TickStats",
    "Totals",
    "default_cpu_shares",
    "measure_solo_p99",
]
