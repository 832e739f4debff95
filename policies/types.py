"""Value types shared by every decision maker: what the cluster looked like, and what to do about it.

A tick's observation is one frozen :class:`ClusterSnapshot` built by a backend. Its per-function and
per-invoker data are *columns* (numpy arrays of one length), not lists of objects, so that one
decision for 10,000 functions is a handful of vector operations. :meth:`FunctionStats.row` gives a
readable per-function view for logs and tests.

Conventions every producer and consumer keeps:

* Function order is stable for a whole run; a function seen for the first time is appended at the
  end. Policies may therefore keep per-function state in arrays indexed like the snapshot and grow
  them when the snapshot grows.
* "No data" is explicit: ``valid[i]`` is False when the backend could not observe function ``i``
  this tick (scrape failed, metric missing, stale). Latency columns are NaN when nothing completed.
  A policy gives no decision for an invalid row (no data, no decision: a failed scrape is never
  zero load).
* Units are in the names: ``_s`` seconds, ``_mb`` megabytes, ``_core_s`` core-seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: Container target meaning "leave it to the platform": OpenWhisk's own on-demand creation and
#: 10-minute idle eviction. Any value >= 0 means the function's pool is managed (see Decisions).
UNMANAGED = -1
#: CPU-share target meaning "do not touch the shares".
KEEP_SHARES = -1
#: One core's worth of CPU shares (Docker and Kubernetes both map 1 core to 1024 shares).
SHARES_PER_CORE = 1024


def _frozen_array(values: Any, dtype: Any) -> np.ndarray:
    array = np.array(values, dtype=dtype, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class FunctionStats:
    """Per-function columns for one tick of length ``tick_s``; every array has shape (n_functions,)."""

    names: tuple[str, ...]
    """Function (OpenWhisk action) names, in the run's stable order."""
    memory_mb: np.ndarray
    """Memory limit of one container of the function, MB (OpenWhisk's action limit)."""
    slo_s: np.ndarray
    """Latency objective, s: the function's p99 latency running alone plus 15% (the paper's rule)."""
    arrivals: np.ndarray
    """Invocations that arrived during the tick (count)."""
    completions: np.ndarray
    """Invocations that finished during the tick (count)."""
    in_flight: np.ndarray
    """Invocations executing in a container at the snapshot instant (count)."""
    queued: np.ndarray
    """Invocations waiting for a free container at the snapshot instant (count)."""
    p50_latency_s: np.ndarray
    """Median end-to-end latency (wait + init + execution) of the tick's completions, s; NaN if none."""
    p99_latency_s: np.ndarray
    """99th-percentile end-to-end latency of the tick's completions, s; NaN if none."""
    mean_exec_s: np.ndarray
    """Mean execution time (OpenWhisk's ``duration``, no wait, no init) of the tick's completions, s; NaN if none."""
    recent_exec_s: np.ndarray
    """Mean execution time of the function's last 3 completions (whenever they were), s; NaN before 3.
    ENSURE's CPU scaling compares this against the function's uncontended execution time."""
    cold_starts: np.ndarray
    """Invocations during the tick that waited for a container to be initialised (count)."""
    slo_violations: np.ndarray
    """Completions during the tick whose latency exceeded ``slo_s`` (count)."""
    containers: np.ndarray
    """Containers of the function at the snapshot instant: starting, busy or idle (count)."""
    busy_containers: np.ndarray
    """Containers executing an invocation at the snapshot instant (count)."""
    cpu_shares: np.ndarray
    """CPU shares set per container of the function (Docker ``--cpu-shares`` units)."""
    cpu_used_core_s: np.ndarray
    """CPU the function's containers consumed during the tick, core-seconds."""
    cpu_alloc_core_s: np.ndarray
    """CPU allocated to the function during the tick, core-seconds: the time integral of
    containers x shares / 1024 (Kubernetes' mapping of a CPU request to shares)."""
    valid: np.ndarray
    """False where the backend could not observe the function this tick (no data, no decision)."""

    def __post_init__(self) -> None:
        n = len(self.names)
        for f in fields(self):
            if f.name == "names":
                continue
            value = getattr(self, f.name)
            dtype = bool if f.name == "valid" else float
            array = _frozen_array(value, dtype)
            if array.shape != (n,):
                raise ValueError(f"FunctionStats.{f.name} has shape {array.shape}, expected ({n},)")
            object.__setattr__(self, f.name, array)

    def __len__(self) -> int:
        return len(self.names)

    def row(self, i: int) -> dict[str, Any]:
        """One function's values as a plain dict (for logs, tests and tables)."""
        out: dict[str, Any] = {"name": self.names[i]}
        for f in fields(self):
            if f.name != "names":
                out[f.name] = getattr(self, f.name)[i].item()
        return out

    @classmethod
    def empty_like(cls, names: tuple[str, ...], **columns: Any) -> FunctionStats:
        """A table for ``names`` with every column zero (latencies NaN, valid True) except ``columns``."""
        n = len(names)
        nan_columns = {"p50_latency_s", "p99_latency_s", "mean_exec_s", "recent_exec_s"}
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "names":
                continue
            if f.name == "valid":
                values[f.name] = np.ones(n, dtype=bool)
            elif f.name in nan_columns:
                values[f.name] = np.full(n, np.nan)
            else:
                values[f.name] = np.zeros(n)
        values.update(columns)
        return cls(names=tuple(names), **values)


@dataclass(frozen=True, eq=False)
class InvokerStats:
    """Per-invoker columns for one tick; every array has shape (n_invokers,)."""

    names: tuple[str, ...]
    """Invoker (worker node) names."""
    cores: np.ndarray
    """CPU cores of the invoker."""
    memory_mb: np.ndarray
    """User memory for action containers, MB (OpenWhisk's ``userMemory``)."""
    memory_used_mb: np.ndarray
    """Memory reserved by the invoker's containers at the snapshot instant, MB."""
    cpu_used_core_s: np.ndarray
    """CPU consumed by all containers of the invoker during the tick, core-seconds."""
    cpu_shares_allocated: np.ndarray
    """Sum of the CPU shares of the invoker's containers at the snapshot instant."""
    valid: np.ndarray
    """False where the invoker could not be observed this tick."""

    def __post_init__(self) -> None:
        n = len(self.names)
        for f in fields(self):
            if f.name == "names":
                continue
            array = _frozen_array(getattr(self, f.name), bool if f.name == "valid" else float)
            if array.shape != (n,):
                raise ValueError(f"InvokerStats.{f.name} has shape {array.shape}, expected ({n},)")
            object.__setattr__(self, f.name, array)

    def __len__(self) -> int:
        return len(self.names)

    def utilisation(self, tick_s: float) -> np.ndarray:
        """CPU utilisation of each invoker over the tick, in [0, 1]; NaN where invalid."""
        util = self.cpu_used_core_s / np.maximum(self.cores * tick_s, 1e-12)
        return np.where(self.valid, np.clip(util, 0.0, 1.0), np.nan)


@dataclass(frozen=True, eq=False)
class ClusterSnapshot:
    """Everything a backend observed in one tick: built once, never mutated."""

    time_s: float
    """End of the tick, s since the start of the run (the loop's ``now``)."""
    tick_s: float
    """Length of the tick the counters cover, s."""
    functions: FunctionStats
    """Per-function observations."""
    invokers: InvokerStats
    """Per-invoker observations."""


class LazyReasons(Sequence[str]):
    """One reason per function, each written only when it is read.

    Writing 10,000 reason strings costs a decision more than choosing the pools does, and a daemon
    reads only the few it logs or explains; ``row(i)`` writes row ``i`` on demand (once). ``row`` must
    read arrays that nobody changes afterwards. Compares equal to any sequence of the same strings.
    """

    __slots__ = ("_n", "_row", "_written")

    def __init__(self, n: int, row: Callable[[int], str]) -> None:
        self._n = int(n)
        self._row = row
        self._written: dict[int, str] = {}

    def __len__(self) -> int:
        return self._n

    def _one(self, i: int) -> str:
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"reason {i} of {self._n}")
        text = self._written.get(i)
        if text is None:
            text = self._written[i] = self._row(i)
        return text

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self._one(i) for i in range(*index.indices(self._n)))
        return self._one(int(index))

    def __iter__(self) -> Iterator[str]:
        return (self._one(i) for i in range(self._n))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(other) == self._n and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LazyReasons({self._n} rows)"


def constant_reasons(valid: np.ndarray, reason: str, absent: str) -> LazyReasons:
    """``reason`` for every row with ``valid`` True, ``absent`` elsewhere, without writing a string per row."""
    ok = np.asarray(valid, dtype=bool).copy()
    return LazyReasons(len(ok), lambda i: reason if ok[i] else absent)


@dataclass(frozen=True, eq=False)
class Decisions:
    """What a policy wants for every function of a snapshot; arrays of shape (n_functions,).

    ``containers[i]``:
      * ``UNMANAGED`` (-1): the platform's own behaviour (on-demand cold starts, idle eviction);
      * ``k >= 1``: keep exactly ``k`` containers for the function (start missing ones now, remove
        idle surplus); invocations that find all ``k`` busy wait in the function's queue;
      * ``0``: scale to zero: an invocation cold-starts one container, removed once idle.
    ``cpu_shares[i]``: CPU shares per container, or ``KEEP_SHARES`` (-1) for unchanged.
    ``valid[i]`` False means *no decision* for function ``i`` (e.g. no data): the loop leaves it alone.
    """

    containers: np.ndarray
    """Target containers per function (see class docstring), int."""
    cpu_shares: np.ndarray
    """Target CPU shares per container, int, or KEEP_SHARES."""
    valid: np.ndarray
    """Whether a decision was made for the function."""
    reasons: Sequence[str]
    """Why, one short phrase per function (e.g. "ensure: R=3.2 -> 6 containers", "no data"): a tuple, or
    :class:`LazyReasons` that writes each phrase when it is read."""
    action: np.ndarray | None = None
    """The discrete action index per function for learners (0..8), else None."""

    def __post_init__(self) -> None:
        n = len(self.reasons)
        for name, dtype in (("containers", np.int64), ("cpu_shares", np.int64), ("valid", bool)):
            array = _frozen_array(getattr(self, name), dtype)
            if array.shape != (n,):
                raise ValueError(f"Decisions.{name} has shape {array.shape}, expected ({n},)")
            object.__setattr__(self, name, array)
        if self.action is not None:
            object.__setattr__(self, "action", _frozen_array(self.action, np.int64))

    def __len__(self) -> int:
        return len(self.reasons)

    @classmethod
    def none(cls, n: int, reason: str = "no data") -> Decisions:
        """No decision for any of ``n`` functions."""
        return cls(
            containers=np.full(n, UNMANAGED),
            cpu_shares=np.full(n, KEEP_SHARES),
            valid=np.zeros(n, dtype=bool),
            reasons=(reason,) * n,
        )


@runtime_checkable
class Policy(Protocol):
    """The one protocol shared by the learners and every baseline.

    ``decide`` is called once per tick with the tick's snapshot and the population estimate ``mu``
    (a histogram over invoker-utilisation bins, summing to 1). ``feedback`` is called on the next
    tick with that tick's snapshot and the reward each function earned for the previous decision
    (NaN where there was no decision or no data); learners update there and return diagnostics,
    baselines return an empty mapping. Neither reads a clock: time is ``snapshot.time_s``.
    """

    name: str

    def decide(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> Decisions: ...

    def feedback(self, snapshot: ClusterSnapshot, mu: np.ndarray, rewards: np.ndarray) -> Mapping[str, float]: ...


@runtime_checkable
class Learner(Policy, Protocol):
    """A :class:`Policy` that learns from ``feedback`` and can be checkpointed and resumed.

    What the loop, the checkpointer and the exporters rely on beyond the policy protocol:

    * ``seed``: the seed its generators were derived from (saved with every checkpoint and result);
    * ``diagnostics``: every key ``feedback`` may return, in every mode the policy's factory can
      build, so that an exporter can declare its series before the first update; a tick returns a
      subset (none when frozen, only the counts when no transition formed);
    * ``settings_record``: its hyperparameters as a JSON-able mapping (saved with every checkpoint,
      compared on load);
    * ``state_dict`` / ``load_state_dict``: everything needed to continue exactly, as arrays (numpy
      or torch) and JSON-able values under string keys, and its inverse;
    * ``checkpoint_signature``: the values (policy name, state version, shapes) a checkpoint must
      match to be loaded into this policy.

    Whether an object is a learner is asked with :func:`is_learner`, never by probing for one method.
    """

    seed: int
    diagnostics: tuple[str, ...]
    settings_record: Mapping[str, Any]

    def state_dict(self) -> Mapping[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def checkpoint_signature(self) -> Mapping[str, Any]: ...


def is_learner(policy: object) -> bool:
    """Whether ``policy`` satisfies :class:`Learner` (has every attribute and method it names)."""
    return isinstance(policy, Learner)


@dataclass
class StatelessFeedback:
    """Mixin for policies that do not learn: ``feedback`` does nothing and reports nothing."""

    def feedback(self, snapshot: ClusterSnapshot, mu: np.ndarray, rewards: np.ndarray) -> Mapping[str, float]:
        return {}


__all__ = [
    "KEEP_SHARES",
    "SHARES_PER_CORE",
    "UNMANAGED",
    "ClusterSnapshot",
    "Decisions",
    "FunctionStats",
    "InvokerStats",
    "LazyReasons",
    "Learner",
    "Policy",
    "StatelessFeedback",
    "constant_reasons",
    "is_learner",
]
