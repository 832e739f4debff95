"""The ``sim`` backend: the embedded simulated OpenWhisk cluster, fed by an arrival stream.

It owns one ``simulator.Cluster`` and one ``workload.arrivals.ArrivalStream`` and is the only code
that calls them during a run. Per tick:

* ``observe(now)``: the arrivals of [previous now, now) are fed to the cluster while it advances to
  ``now``; the cluster's tick statistics become the snapshot; the activation records that finished
  are drained into the run's record list (so memory grows with completed activations only).
* ``apply(decisions, now)``: ``set_pool`` / ``set_cpu_shares`` for the targets the cluster does not
  hold now (compared with the cluster's own pool targets and shares, never with what was sent
  before, so applying twice changes nothing); a call the simulator refuses comes back as an
  :class:`ActionFailure` (``REJECTED`` for a refused value, ``UNKNOWN_FUNCTION`` for a bad index),
  and the other functions carry on.

Consistency (see ``controller.backends.base``): the simulated cluster is always reachable and
applies a change at once (a new container still takes its cold-start time to become warm); the
function set is fixed for a run. Time 0 is the start of the stream's first trace minute.

The SLO of every function is its p99 latency running alone in the simulated cluster plus a margin
(the paper's rule, 15%), measured once per (profile, cluster config, seed, probes) by
:func:`solo_slo_s` and cached in the process.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from controller.backends.base import ActionFailure, FailureKind
from policies.types import KEEP_SHARES, ClusterSnapshot, Decisions, FunctionStats, InvokerStats
from simulator import RECORD_DTYPE, Cluster, ClusterConfig, TickStats, measure_solo_p99
from workload.profiles import FunctionProfile


@functools.lru_cache(maxsize=4096)
def _solo_p99_s(profile: FunctionProfile, config: ClusterConfig, seed: int, probes: int) -> float:
    return float(measure_solo_p99(profile, config, seed=seed, n=probes))


def solo_slo_s(profiles: Sequence[FunctionProfile], config: ClusterConfig, *, margin: float = 0.15,
               seed: int = 0, probes: int = 2000) -> np.ndarray:
    """SLO per profile, s: its p99 latency alone in the simulator x (1 + ``margin``) (paper, App. E)."""
    return np.array([_solo_p99_s(p, config, seed, probes) * (1.0 + margin) for p in profiles], dtype=float)


_FUNCTION_COLUMNS = tuple(n for n in FunctionStats.__dataclass_fields__ if n not in ("names", "valid"))
_INVOKER_COLUMNS = tuple(n for n in InvokerStats.__dataclass_fields__ if n not in ("names", "valid"))


def snapshot_from_tick(stats: TickStats, names: Sequence[str], now: float) -> ClusterSnapshot:
    """The snapshot of one simulator tick: its columns, every row valid (the simulator sees all)."""
    fns, invs = stats.functions, stats.invokers
    n, m = len(names), len(invs.cores)
    functions = FunctionStats(
        names=tuple(names), valid=np.ones(n, dtype=bool), **{c: getattr(fns, c) for c in _FUNCTION_COLUMNS}
    )
    invokers = InvokerStats(
        names=tuple(f"invoker{i}" for i in range(m)),
        valid=np.ones(m, dtype=bool),
        **{c: getattr(invs, c) for c in _INVOKER_COLUMNS},
    )
    return ClusterSnapshot(time_s=now, tick_s=stats.tick_s, functions=functions, invokers=invokers)


class SimBackend:
    """A simulated cluster and its workload, behind the backend contract."""

    name = "sim"

    def __init__(self, cluster: Cluster, arrivals: Any, function_names: Sequence[str], tick_s: float, *,
                 keep_records: bool = True) -> None:
        self.cluster = cluster
        """The simulated cluster (owned: nothing else may drive it during a run)."""
        self.arrivals = arrivals
        """The arrival stream: ``window(t0_s, t1_s) -> (times_s, fn)``."""
        self.function_names = tuple(function_names)
        """Function names in the cluster's order (the snapshot's order)."""
        self.tick_s = float(tick_s)
        """Nominal tick length, s; the snapshot's ``tick_s`` is the time since the last observation."""
        self.keep_records = keep_records
        """Keep every finished activation's record for :meth:`records` (a batch run's report); off
        for a daemon, whose records would grow without bound."""
        self._time_s = 0.0
        self._records: list[np.ndarray] = []

    @property
    def time_s(self) -> float:
        """How far the cluster has been simulated, s."""
        return self._time_s

    def observe(self, now: float) -> ClusterSnapshot:
        """Advance the cluster to ``now`` with the window's arrivals; the snapshot of that tick."""
        if now <= self._time_s:
            raise ValueError(f"sim backend: now={now} s is not after the last observation at {self._time_s} s")
        times_s, fn = self.arrivals.window(self._time_s, now)
        self.cluster.advance(now, times_s, fn)
        self._time_s = now
        stats = self.cluster.tick_stats()
        records = self.cluster.drain_records()
        if len(records) and self.keep_records:
            self._records.append(records)
        return snapshot_from_tick(stats, self.function_names, now)

    def apply(self, decisions: Decisions, now: float) -> list[ActionFailure]:
        """Set the pools and shares the cluster does not hold; one failure record per function the
        simulator refused."""
        failures: list[ActionFailure] = []
        rows = np.flatnonzero(decisions.valid)
        if not rows.size:
            return failures
        held_pools, held_shares = self.cluster.pool_targets, self.cluster.cpu_shares
        for i in rows:
            name = self.function_names[i] if i < len(self.function_names) else f"#{i}"
            try:
                if i >= len(held_pools):
                    raise IndexError(f"no function at index {i}")
                target = int(decisions.containers[i])
                if target != held_pools[i]:
                    self.cluster.set_pool(int(i), target)
                shares = int(decisions.cpu_shares[i])
                if shares != KEEP_SHARES and shares != held_shares[i]:
                    self.cluster.set_cpu_shares(int(i), shares)
            except IndexError as error:
                failures.append(ActionFailure(name, FailureKind.UNKNOWN_FUNCTION, str(error)))
            except ValueError as error:
                failures.append(ActionFailure(name, FailureKind.REJECTED, str(error)))
        return failures

    def totals(self) -> Any:
        """The cluster's exact accounting since time 0 (``simulator.Totals``)."""
        return self.cluster.totals()

    def records(self) -> np.ndarray:
        """Every activation record drained so far, in completion order (one structured array)."""
        if not self._records:
            return np.zeros(0, dtype=RECORD_DTYPE)
        if len(self._records) > 1:
            self._records = [np.concatenate(self._records)]
        return self._records[0]


__all__ = ["SimBackend", "snapshot_from_tick", "solo_slo_s"]
