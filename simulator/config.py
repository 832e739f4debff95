"""Shape of the simulated cluster: how many invokers, how big each is, and OpenWhisk's timers.

Defaults are the paper's testbed (the paper's serverless experiment, Appendix E): 21 invokers with
8 cores each, and OpenWhisk's stock invoker settings (2048 MB of user memory for action containers,
containers evicted after 10 minutes idle, least recently used first when memory is short).

Two keep-alive platforms operators compare against are options here: fixed keep-alive
(``idle_timeout_s``, any length, ``math.inf`` for never) and FaasCache's Greedy-Dual keep-alive
(``eviction="greedy-dual"``); ``idle_memory_fraction`` caps the memory idle containers may hold,
which traces each variant's cost / cold-start frontier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Eviction rules for idle containers of unmanaged functions (``ClusterConfig.eviction``).
EVICTION_RULES = ("lru", "greedy-dual")

#: Docker's accepted range for ``--cpu-shares`` (and the range OpenWhisk and Kubernetes map into).
MIN_CPU_SHARES = 2
MAX_CPU_SHARES = 262144


@dataclass(frozen=True)
class ClusterConfig:
    """Static description of a simulated OpenWhisk cluster; validated on construction."""

    invokers: int = 21
    """Number of invokers (worker nodes). 21 is the paper's testbed (22 VMs, one of them the master)."""
    cores: float = 8.0
    """CPU cores per invoker; containers share them by weighted processor sharing. 8 as in the paper."""
    user_memory_mb: int = 2048
    """Memory per invoker for action containers, MB (OpenWhisk's ``userMemory``; 2048 is its stock
    default). Placement admits a container only where its memory fits."""
    idle_timeout_s: float | None = None
    """Seconds an unused container of an unmanaged function stays (paused) before it is evicted;
    any length > 0, ``math.inf`` for never. Left unset it is the eviction rule's own: 600 s for
    ``lru`` (OpenWhisk's default ``idleContainer`` timeout, 10 minutes) and ``math.inf`` for
    ``greedy-dual`` (FaasCache keeps a container until memory is needed). The constructed config
    always holds the resolved number, so ``dataclasses.replace(config, eviction=...)`` keeps it."""
    eviction: str = "lru"
    """Which idle container of an unmanaged function an invoker evicts when it needs memory for a
    new container or its idle containers exceed ``idle_memory_fraction``: ``"lru"``, the least
    recently used (OpenWhisk's container pool, the default), or ``"greedy-dual"``, the lowest
    priority clock + frequency x cold-start time / memory (FaasCache, Fuerst & Sharma, ASPLOS 2021;
    see docs/simulator.md for exactly what is modelled)."""
    idle_memory_fraction: float = 1.0
    """The most memory idle containers of unmanaged functions may hold on an invoker, as a fraction
    of its user memory, in [0, 1]; above it, idle containers are evicted by ``eviction`` until they
    fit. 1.0 (no cap beyond the invoker's memory) is OpenWhisk's behaviour; smaller values trade
    cold starts for idle memory and give each keep-alive rule its frontier. Managed pools are not
    counted and never evicted."""
    keep_records: bool = True
    """Whether finished activation records are kept for :meth:`Cluster.drain_records`. Turn off for
    long replays that only read per-tick statistics: records are then dropped once a tick used them."""

    def __post_init__(self) -> None:
        if not isinstance(self.invokers, int) or isinstance(self.invokers, bool) or self.invokers < 1:
            raise ValueError(f"ClusterConfig.invokers must be an int >= 1, got {self.invokers!r}")
        if not (isinstance(self.cores, (int, float)) and math.isfinite(self.cores) and self.cores > 0):
            raise ValueError(f"ClusterConfig.cores must be a finite number > 0, got {self.cores!r}")
        if (
            not isinstance(self.user_memory_mb, int)
            or isinstance(self.user_memory_mb, bool)
            or self.user_memory_mb < 1
        ):
            raise ValueError(f"ClusterConfig.user_memory_mb must be an int >= 1, got {self.user_memory_mb!r}")
        if self.eviction not in EVICTION_RULES:
            raise ValueError(
                f"ClusterConfig.eviction must be one of {', '.join(EVICTION_RULES)}, got {self.eviction!r}"
            )
        if self.idle_timeout_s is None:
            object.__setattr__(self, "idle_timeout_s", 600.0 if self.eviction == "lru" else math.inf)
        if not (
            isinstance(self.idle_timeout_s, (int, float))
            and not isinstance(self.idle_timeout_s, bool)
            and self.idle_timeout_s > 0
        ):
            raise ValueError(
                f"ClusterConfig.idle_timeout_s must be > 0 (inf for never), got {self.idle_timeout_s!r}"
            )
        if not (
            isinstance(self.idle_memory_fraction, (int, float))
            and not isinstance(self.idle_memory_fraction, bool)
            and 0.0 <= self.idle_memory_fraction <= 1.0
        ):
            raise ValueError(
                f"ClusterConfig.idle_memory_fraction must be a number in [0, 1], got {self.idle_memory_fraction!r}"
            )
        if not isinstance(self.keep_records, bool):
            raise TypeError(f"ClusterConfig.keep_records must be a bool, got {self.keep_records!r}")


def default_cpu_shares(memory_mb: int, user_memory_mb: int) -> int:
    """OpenWhisk's CPU shares for a new container: max(floor(1024 / (userMemory // memory)), 2).

    OpenWhisk gives every container a slice of one core's 1024 shares proportional to its memory
    (256 MB of 2048 MB -> 1024 / 8 = 128). ``memory_mb`` must fit in ``user_memory_mb``.
    """
    slots = user_memory_mb // memory_mb
    if slots < 1:
        raise ValueError(
            f"memory {memory_mb} MB does not fit in an invoker's user memory of {user_memory_mb} MB"
        )
    return max(1024 // slots, MIN_CPU_SHARES)


__all__ = ["EVICTION_RULES", "MAX_CPU_SHARES", "MIN_CPU_SHARES", "ClusterConfig", "default_cpu_shares"]
