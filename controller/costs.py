"""What a run cost the operator and how well it served: the evaluation metrics, defined once.

Every report (``mfrm simulate``/``compare``/``demo``, ``mfrm bench``) computes its numbers here, from
plain arrays any backend can produce:

* :class:`Activations`: the completed invocations of the window (function, latency, cold start);
* :class:`Usage`: per function, exact integrals of what was held over the window — memory, memory
  held idle, containers, CPU used — and the work left undone at its end;
* :class:`GuardCuts`: how often, and by how many containers, the guard cut the policy's decisions.

Definitions (per function; "overall" pools every function's invocations and sums its integrals):

==========================  ===================================================================
``invocations``             arrivals in the window
``completed``               invocations that finished in the window
``unfinished``              invocations still queued or executing at the window's end
``dropped``                 invocations the platform refused or dropped (throttled included)
``slo_violation_rate``      (completed slower than the SLO + unfinished + dropped) / invocations:
                            work not done within the window counts against the SLO, so a
                            policy cannot look good by leaving work undone
``completed_slo_violation_rate``  completed slower than the SLO / completed
``p50_latency_s``,          end-to-end latency (arrival to end) of the completed invocations
``p99_latency_s``
``p99_over_slo``            99th percentile of latency / SLO over completed invocations (pooled:
                            each invocation against its own function's SLO)
``cold_start_rate``         completed invocations that began on a freshly started container /
                            completed; overall also ``cold_start_rate_p75``, the 75th percentile
                            of the per-function rates (functions that completed something)
``memory_gb_s``             memory held by the function's containers from the start of each
                            one's cold start to its removal, GB-s (exact, not sampled)
``idle_memory_gb_s``        the part of ``memory_gb_s`` held while executing nothing
``container_s``             containers held, container-seconds (same exact integral)
``cpu_core_s``              CPU the containers used, core-seconds
``guard_cut_decisions``     decisions the guard changed (bounds, step limits, cluster memory)
``guard_cut_containers``    containers the guard took off (or added to) those decisions, summed
``paper_cpu_utilisation``   the paper's "resource utilisation": CPU used / CPU allocated, with
                            allocated = containers x shares / 1024. Shares are weights the
                            policy sets, so a policy asking for small shares raises it without
                            saving anything: reported, labelled, never used to rank policies
``mean_reward``             the mean of the finite per-tick rewards (the learners' objective)
==========================  ===================================================================

Costs are what the operator pays: memory (GB-s) is set by the containers a policy keeps, never by
the CPU shares it asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

MB_PER_GB = 1024.0


def _as(values: Any, dtype: Any, n: int | None, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 1 or (n is not None and array.shape != (n,)):
        raise ValueError(f"{name} must have shape ({n if n is not None else 'A'},), got {array.shape}")
    array = array.copy()
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Activations:
    """The invocations completed in the window, one entry each."""

    function_index: np.ndarray
    """Function of each completed invocation (index into the run's functions), shape (A,)."""
    latency_s: np.ndarray
    """End-to-end latency, arrival to end, s, shape (A,)."""
    cold: np.ndarray
    """Whether it began on a container cold-started for it, shape (A,)."""

    def __post_init__(self) -> None:
        index = _as(self.function_index, np.int64, None, "Activations.function_index")
        n = index.size
        object.__setattr__(self, "function_index", index)
        object.__setattr__(self, "latency_s", _as(self.latency_s, float, n, "Activations.latency_s"))
        object.__setattr__(self, "cold", _as(self.cold, bool, n, "Activations.cold"))
        if np.any(self.latency_s < 0) or not np.all(np.isfinite(self.latency_s)):
            raise ValueError("Activations.latency_s must be finite and >= 0")


@dataclass(frozen=True, eq=False)
class Usage:
    """Per-function amounts over the window, each of shape (n,); integrals are exact, not sampled."""

    arrivals: np.ndarray
    """Invocations that arrived in the window."""
    unfinished: np.ndarray
    """Invocations still queued or executing at the window's end."""
    dropped: np.ndarray
    """Invocations refused, throttled or dropped by the platform."""
    memory_mb_s: np.ndarray
    """Memory held by the function's containers, MB-s."""
    idle_memory_mb_s: np.ndarray
    """Part of ``memory_mb_s`` held while executing nothing, MB-s."""
    container_s: np.ndarray
    """Containers held, container-seconds."""
    cpu_used_core_s: np.ndarray
    """CPU used, core-seconds."""
    cpu_alloc_core_s: np.ndarray
    """CPU "allocated" by the paper's convention (containers x shares / 1024, integrated), core-s."""

    def __post_init__(self) -> None:
        n = np.asarray(self.arrivals).shape[0] if np.ndim(self.arrivals) == 1 else None
        for f in fields(self):
            value = _as(getattr(self, f.name), float, n, f"Usage.{f.name}")
            if np.any(value < 0):
                raise ValueError(f"Usage.{f.name} must be >= 0")
            object.__setattr__(self, f.name, value)

    def __len__(self) -> int:
        return int(self.arrivals.size)


@dataclass(frozen=True, eq=False)
class GuardCuts:
    """Per function, what the guard did to the policy's decisions over the window."""

    decisions: np.ndarray
    """Decisions the guard changed, shape (n,)."""
    containers: np.ndarray
    """Containers taken off (or added to) those decisions, summed over the window, shape (n,)."""

    @classmethod
    def none(cls, n: int) -> GuardCuts:
        """No cut at all (a backend or run without a guard record)."""
        return cls(np.zeros(n), np.zeros(n))


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else float("nan")


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def _row(latency: np.ndarray, slo: np.ndarray, cold: np.ndarray, arrivals: float, unfinished: float,
         dropped: float, memory_mb_s: float, idle_mb_s: float, container_s: float, cpu_used: float,
         cpu_alloc: float, cut_decisions: float, cut_containers: float, rewards: np.ndarray) -> dict[str, float]:
    over = float(np.sum(latency > slo))
    completed = float(latency.size)
    finite = rewards[np.isfinite(rewards)]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = latency / slo
    return {
        "invocations": float(arrivals),
        "completed": completed,
        "unfinished": float(unfinished),
        "dropped": float(dropped),
        "slo_violation_rate": _ratio(over + unfinished + dropped, arrivals),
        "completed_slo_violation_rate": over / completed if completed else float("nan"),
        "p50_latency_s": _percentile(latency, 50),
        "p99_latency_s": _percentile(latency, 99),
        "p99_over_slo": _percentile(ratio[np.isfinite(ratio)], 99),
        "cold_start_rate": float(np.mean(cold)) if cold.size else float("nan"),
        "memory_gb_s": memory_mb_s / MB_PER_GB,
        "idle_memory_gb_s": idle_mb_s / MB_PER_GB,
        "container_s": float(container_s),
        "cpu_core_s": float(cpu_used),
        "guard_cut_decisions": float(cut_decisions),
        "guard_cut_containers": float(cut_containers),
        "paper_cpu_utilisation": _ratio(cpu_used, cpu_alloc),
        "mean_reward": float(finite.mean()) if finite.size else float("nan"),
    }


def function_costs(names: Sequence[str], slo_s: np.ndarray, activations: Activations, usage: Usage,
                   cuts: GuardCuts, rewards: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per function (see the module docstring); ``rewards`` has shape (ticks, n)."""
    n = len(names)
    if len(usage) != n or np.shape(slo_s) != (n,):
        raise ValueError(f"{n} names, but usage for {len(usage)} and SLOs of shape {np.shape(slo_s)}")
    if activations.function_index.size and not 0 <= activations.function_index.min() <= activations.function_index.max() < n:
        raise ValueError(f"Activations.function_index must lie in [0, {n})")
    rewards = np.full((0, n), np.nan) if rewards is None else np.asarray(rewards, dtype=float)
    rows = []
    for i, name in enumerate(names):
        mine = activations.function_index == i
        latency = activations.latency_s[mine]
        row: dict[str, Any] = {"function": name}
        row.update(_row(latency, np.full(latency.shape, float(slo_s[i])), activations.cold[mine],
                        usage.arrivals[i], usage.unfinished[i], usage.dropped[i], usage.memory_mb_s[i],
                        usage.idle_memory_mb_s[i], usage.container_s[i], usage.cpu_used_core_s[i],
                        usage.cpu_alloc_core_s[i], cuts.decisions[i], cuts.containers[i], rewards[:, i]))
        rows.append(row)
    return rows


def overall_costs(slo_s: np.ndarray, activations: Activations, usage: Usage, cuts: GuardCuts,
                  rewards: np.ndarray | None = None) -> dict[str, Any]:
    """The metrics pooled over every function and invocation of a run (see the module docstring)."""
    index = activations.function_index
    slo = np.asarray(slo_s, dtype=float)[index] if index.size else np.zeros(0)
    rewards = np.zeros(0) if rewards is None else np.asarray(rewards, dtype=float).ravel()
    row = _row(activations.latency_s, slo, activations.cold, float(usage.arrivals.sum()),
               float(usage.unfinished.sum()), float(usage.dropped.sum()), float(usage.memory_mb_s.sum()),
               float(usage.idle_memory_mb_s.sum()), float(usage.container_s.sum()),
               float(usage.cpu_used_core_s.sum()), float(usage.cpu_alloc_core_s.sum()),
               float(cuts.decisions.sum()), float(cuts.containers.sum()), rewards)
    completed = np.bincount(index, minlength=len(usage)) if index.size else np.zeros(len(usage))
    colds = np.bincount(index, weights=activations.cold.astype(float), minlength=len(usage)) if index.size \
        else np.zeros(len(usage))
    served = completed > 0
    per_function = colds[served] / completed[served]
    row["cold_start_rate_p75"] = float(np.percentile(per_function, 75)) if per_function.size else float("nan")
    return row


#: Metric columns in table and CSV order (after ``policy`` and, per function, ``function``), with
#: the short header a table shows. ``cold_start_rate_p75`` exists only in the overall rows.
COST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("invocations", "invocations"),
    ("completed", "done"),
    ("unfinished", "unfinished"),
    ("dropped", "dropped"),
    ("slo_violation_rate", "SLO viol."),
    ("completed_slo_violation_rate", "viol. of done"),
    ("p50_latency_s", "p50 s"),
    ("p99_latency_s", "p99 s"),
    ("p99_over_slo", "p99/SLO"),
    ("cold_start_rate", "cold"),
    ("cold_start_rate_p75", "cold p75"),
    ("memory_gb_s", "mem GB-s"),
    ("idle_memory_gb_s", "idle GB-s"),
    ("container_s", "container-s"),
    ("cpu_core_s", "CPU core-s"),
    ("guard_cut_decisions", "guard cuts"),
    ("guard_cut_containers", "containers cut"),
    ("paper_cpu_utilisation", "paper util."),
    ("mean_reward", "reward"),
)

#: The columns a summary table shows (the CSVs have every column).
TABLE_COLUMNS: tuple[str, ...] = (
    "invocations", "unfinished", "slo_violation_rate", "p99_over_slo", "cold_start_rate", "memory_gb_s",
    "idle_memory_gb_s", "cpu_core_s", "guard_cut_decisions", "paper_cpu_utilisation",
)


__all__ = [
    "COST_COLUMNS",
    "MB_PER_GB",
    "TABLE_COLUMNS",
    "Activations",
    "GuardCuts",
    "Usage",
    "function_costs",
    "overall_costs",
]
