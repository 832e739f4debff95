"""Hand-built snapshots for the baseline tests: a few functions, a small cluster, time passed in."""

from __future__ import annotations

from typing import Any

import numpy as np

from policies.types import ClusterSnapshot, FunctionStats, InvokerStats

MU = np.array([1.0])
"""A population estimate; the baselines ignore it but the protocol passes one."""


def invokers(
    count: int = 2,
    cores: float = 8.0,
    memory_mb: float = 2048.0,
    utilisation: float = 0.2,
    tick_s: float = 10.0,
    valid: bool = True,
) -> InvokerStats:
    """``count`` identical invokers whose CPU was ``utilisation`` busy over a tick of ``tick_s``."""
    return InvokerStats(
        names=tuple(f"invoker{i}" for i in range(count)),
        cores=np.full(count, cores),
        memory_mb=np.full(count, memory_mb),
        memory_used_mb=np.zeros(count),
        cpu_used_core_s=np.full(count, utilisation * cores * tick_s),
        cpu_shares_allocated=np.zeros(count),
        valid=np.full(count, valid),
    )


def snapshot(
    time_s: float,
    names: tuple[str, ...] = ("f0",),
    tick_s: float = 10.0,
    cluster: InvokerStats | None = None,
    **columns: Any,
) -> ClusterSnapshot:
    """A snapshot at ``time_s`` for ``names``; scalar column values are broadcast to every function."""
    n = len(names)
    full = {key: np.broadcast_to(np.asarray(value), (n,)).copy() for key, value in columns.items()}
    full.setdefault("memory_mb", np.full(n, 256.0))
    return ClusterSnapshot(
        time_s=time_s,
        tick_s=tick_s,
        functions=FunctionStats.empty_like(names, **full),
        invokers=cluster if cluster is not None else invokers(tick_s=tick_s),
    )
