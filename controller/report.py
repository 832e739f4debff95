"""What a run produced, and the tables, CSVs and plots made from it.

A :class:`RunRecorder` is a :class:`~controller.loop.MetricsSink`: it keeps the per-tick columns a
report needs (containers, shares, CPU, invoker utilisation, rewards). Together with the simulator's
activation records it becomes a :class:`RunResult`, a plain picklable value that a worker process
returns to the parent. Everything below turns results into numbers, files and figures; nothing
here runs a simulation.

The metrics themselves are defined once, in :mod:`controller.costs` (what the operator pays and
how well the functions were served); this module feeds them the run's numbers.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller.costs import (
    COST_COLUMNS,
    TABLE_COLUMNS,
    Activations,
    GuardCuts,
    Usage,
    function_costs,
    overall_costs,
)
from controller.loop import TickReport
from policies.types import UNMANAGED

#: Columns of a metrics row, in CSV order, with their table headers (``controller.costs``).
METRIC_COLUMNS: tuple[tuple[str, str], ...] = COST_COLUMNS


@dataclass(frozen=True, eq=False)
class RunResult:
    """One policy's run: per-tick columns (ticks on axis 0) and activation records."""

    policy: str
    """Registered name of the policy."""
    names: tuple[str, ...]
    """Function names, in snapshot order."""
    memory_mb: np.ndarray
    """Memory limit per function, MB, shape (n,)."""
    slo_s: np.ndarray
    """SLO per function, s, shape (n,)."""
    tick_s: float
    """Tick length, s."""
    times_s: np.ndarray
    """Each tick's end, s, shape (T,)."""
    containers: np.ndarray
    """Containers per function at each tick's end, shape (T, n)."""
    cpu_shares: np.ndarray
    """CPU shares per container per function at each tick's end, shape (T, n)."""
    arrivals: np.ndarray
    """Invocations that arrived per function per tick, shape (T, n)."""
    cpu_used_core_s: np.ndarray
    """CPU used per function per tick, core-s, shape (T, n)."""
    cpu_alloc_core_s: np.ndarray
    """CPU allocated per function per tick, core-s, shape (T, n)."""
    rewards: np.ndarray
    """Reward per function per tick (NaN: none), shape (T, n)."""
    invoker_utilisation: np.ndarray
    """CPU utilisation per invoker per tick (NaN: invalid), shape (T, m)."""
    latency_s: np.ndarray
    """End-to-end latency of every completed activation, s, shape (A,)."""
    function_index: np.ndarray
    """Function of each activation (index into ``names``), shape (A,)."""
    cold: np.ndarray
    """Whether each activation was a cold start, shape (A,)."""
    usage: Usage
    """Exact per-function integrals over the run and the work left at its end (``controller.costs``)."""
    cuts: GuardCuts
    """What the guard did to the policy's decisions, per function."""
    failures: Mapping[str, int] = field(default_factory=dict)
    """Failed actions per failure kind."""
    end_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """When each completed activation ended, s of the run, shape (A,) (empty when not recorded)."""
    wall_s: float = float("nan")
    """Wall time the run took, s (measured by the command, for the record only)."""
    decide_ms: float = float("nan")
    """Mean wall time of the policy's ``decide`` per tick, ms (measured, for the record only)."""
    update_ms: float = float("nan")
    """Mean wall time of the policy's ``feedback`` per tick (a learner's update), ms (measured)."""


class RunRecorder:
    """A metrics sink that keeps what a :class:`RunResult` needs from every tick."""

    def __init__(self) -> None:
        self._reports: list[dict[str, Any]] = []
        self._names: tuple[str, ...] = ()
        self._memory_mb = np.zeros(0)
        self._slo_s = np.zeros(0)
        self._tick_s = float("nan")
        self._failures: dict[str, int] = {}
        self._cut_decisions = np.zeros(0)
        self._cut_containers = np.zeros(0)

    def on_tick(self, report: TickReport) -> None:
        fns = report.snapshot.functions
        self._names = fns.names
        self._memory_mb = fns.memory_mb
        self._slo_s = fns.slo_s
        self._tick_s = report.snapshot.tick_s
        for failure in report.failures:
            self._failures[failure.kind.value] = self._failures.get(failure.kind.value, 0) + 1
        self._count_cuts(report)
        self._reports.append(
            {
                "time_s": report.time_s,
                "containers": fns.containers,
                "cpu_shares": fns.cpu_shares,
                "arrivals": fns.arrivals,
                "cpu_used_core_s": fns.cpu_used_core_s,
                "cpu_alloc_core_s": fns.cpu_alloc_core_s,
                "rewards": report.rewards,
                "invoker_utilisation": report.snapshot.invokers.utilisation(report.snapshot.tick_s),
            }
        )

    def _count_cuts(self, report: TickReport) -> None:
        n = len(report.snapshot.functions)
        if self._cut_decisions.size < n:
            grow = n - self._cut_decisions.size
            self._cut_decisions = np.concatenate([self._cut_decisions, np.zeros(grow)])
            self._cut_containers = np.concatenate([self._cut_containers, np.zeros(grow)])
        asked = report.decisions
        granted = report.guarded.decisions
        for i, note in enumerate(report.guarded.notes):
            if not note or not asked.valid[i]:
                continue
            self._cut_decisions[i] += 1
            a, g = int(asked.containers[i]), int(granted.containers[i])
            if a != UNMANAGED and g != UNMANAGED:
                self._cut_containers[i] += abs(a - g)

    @property
    def ticks(self) -> int:
        return len(self._reports)

    def _stack(self, key: str, width: int) -> np.ndarray:
        out = np.full((len(self._reports), width), np.nan)
        for t, row in enumerate(self._reports):
            out[t, : len(row[key])] = row[key]
        return out

    def cuts(self) -> GuardCuts:
        """What the guard did to the decisions so far, per function."""
        n = len(self._names)
        return GuardCuts(np.resize(self._cut_decisions, n) if self._cut_decisions.size else np.zeros(n),
                         np.resize(self._cut_containers, n) if self._cut_containers.size else np.zeros(n))

    def result(self, policy: str, latency_s: np.ndarray, function_index: np.ndarray, cold: np.ndarray,
               held: Mapping[str, np.ndarray], wall_s: float = float("nan"), decide_ms: float = float("nan"),
               update_ms: float = float("nan"), end_s: np.ndarray | None = None) -> RunResult:
        """The run's result, with the activation columns and, in ``held``, the backend's exact
        per-function ``arrivals``, ``unfinished``, ``dropped``, ``memory_mb_s``, ``idle_memory_mb_s``
        and ``container_s`` over the run (``controller.costs.Usage``; the CPU columns come from the
        ticks, whose integrals they are)."""
        n = len(self._names)
        used = np.nan_to_num(self._stack("cpu_used_core_s", n))
        alloc = np.nan_to_num(self._stack("cpu_alloc_core_s", n))
        usage = Usage(cpu_used_core_s=np.array([used[:, i].sum() for i in range(n)]),
                      cpu_alloc_core_s=np.array([alloc[:, i].sum() for i in range(n)]), **held)
        m = max((len(r["invoker_utilisation"]) for r in self._reports), default=0)
        return RunResult(
            policy=policy,
            names=self._names,
            memory_mb=np.asarray(self._memory_mb, dtype=float),
            slo_s=np.asarray(self._slo_s, dtype=float),
            tick_s=self._tick_s,
            times_s=np.array([r["time_s"] for r in self._reports], dtype=float),
            containers=np.nan_to_num(self._stack("containers", n)),
            cpu_shares=np.nan_to_num(self._stack("cpu_shares", n)),
            arrivals=np.nan_to_num(self._stack("arrivals", n)),
            cpu_used_core_s=np.nan_to_num(self._stack("cpu_used_core_s", n)),
            cpu_alloc_core_s=np.nan_to_num(self._stack("cpu_alloc_core_s", n)),
            rewards=self._stack("rewards", n),
            invoker_utilisation=self._stack("invoker_utilisation", m),
            latency_s=np.asarray(latency_s, dtype=float),
            function_index=np.asarray(function_index, dtype=np.int64),
            cold=np.asarray(cold, dtype=bool),
            usage=usage,
            cuts=self.cuts(),
            failures=dict(self._failures),
            end_s=np.zeros(0) if end_s is None else np.asarray(end_s, dtype=float),
            wall_s=wall_s,
            decide_ms=decide_ms,
            update_ms=update_ms,
        )


def _activations(result: RunResult) -> Activations:
    return Activations(result.function_index, result.latency_s, result.cold)


def function_metrics(result: RunResult) -> list[dict[str, Any]]:
    """One metrics row per function (``controller.costs.function_costs``)."""
    rows = function_costs(result.names, result.slo_s, _activations(result), result.usage, result.cuts,
                          result.rewards)
    return [{"policy": result.policy, **row} for row in rows]


def overall_metrics(result: RunResult) -> dict[str, Any]:
    """The metrics pooled over every function and activation of the run (``controller.costs.overall_costs``)."""
    row = overall_costs(result.slo_s, _activations(result), result.usage, result.cuts, result.rewards)
    return {"policy": result.policy, **{key: row[key] for key, _ in COST_COLUMNS}}


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Rows of dicts as a CSV with a header (columns of the first row); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        if rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if np.isnan(value):
        return "–"
    if key in ("invocations", "completed", "unfinished", "dropped", "guard_cut_decisions", "guard_cut_containers"):
        return f"{value:,.0f}"
    if key.endswith("_rate") or key.endswith("_rate_p75") or key.endswith("utilisation"):
        return f"{100 * value:.1f}%"
    if key.endswith("_s"):
        return f"{value:,.0f}"
    return f"{value:.3f}"


def overall_table(rows: Iterable[Mapping[str, Any]], title: str = "Overall, per policy") -> Any:
    """A rich table of overall metrics rows (one per policy), the columns of ``costs.TABLE_COLUMNS``."""
    from rich.table import Table

    headers = dict(COST_COLUMNS)
    table = Table(title=title, caption="SLO viol. counts unfinished work; paper util. is the paper's metric "
                                       "(set by the shares a policy asks for), not a cost")
    table.add_column("policy", style="bold", no_wrap=True)
    for key in TABLE_COLUMNS:
        table.add_column(headers[key], justify="right", no_wrap=True)
    for row in rows:
        table.add_row(row["policy"], *(_fmt(key, row[key]) for key in TABLE_COLUMNS))
    return table


def plot_latency_cdf(results: Sequence[RunResult], path: Path) -> Path:
    """Latency distribution, all functions pooled, one line per policy: the CDF (left) and, to show
    the tail where policies differ, the share of invocations slower than x on a log scale (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cdf_ax, tail_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for result in results:
        latency = np.sort(result.latency_s)
        if latency.size == 0:
            continue
        # Hundreds of thousands of points draw slowly and look the same as a few thousand: keep
        # evenly spaced ranks for the body and geometrically spaced ranks from the top for the tail.
        n = latency.size
        body = np.linspace(0, n - 1, min(n, 2000))
        tail = n - np.geomspace(1, n, min(n, 2000))
        rank = np.unique(np.concatenate([body, tail]).astype(np.int64))
        share = (rank + 1) / n
        cdf_ax.plot(latency[rank], share, label=result.policy)
        # 1 - CDF reaches 0 at the slowest invocation, which a log axis cannot show: stop one short.
        tail_ax.plot(latency[rank][:-1], 1.0 - share[:-1], label=result.policy)
    for ax in (cdf_ax, tail_ax):
        ax.set_xscale("log")
        ax.set_xlabel("end-to-end latency (s)")
        ax.grid(True, which="both", alpha=0.3)
    cdf_ax.set_ylabel("share of invocations at most x")
    cdf_ax.set_title("Latency CDF, all functions")
    tail_ax.set_yscale("log")
    tail_ax.set_ylabel("share of invocations slower than x")
    tail_ax.set_title("Latency tail")
    cdf_ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


#: Most points per line of a time-series plot; longer runs are averaged over consecutive ticks so
#: that a line stays readable (an 8-hour run at 10-s ticks has 2,880 ticks).
MAX_PLOT_POINTS = 240


def window_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Means of consecutive ``window``-long blocks along axis 0 (the last block may be shorter)."""
    if window <= 1:
        return values
    starts = np.arange(0, len(values), window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a block of only NaN gives NaN, as it should
        return np.array([np.nanmean(values[s:s + window], axis=0) for s in starts])


def plot_timeseries(results: Sequence[RunResult], path: Path) -> Path:
    """Containers, mean CPU shares per container, and mean invoker utilisation over time, per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    window = 1
    for result in results:
        window = max(1, -(-len(result.times_s) // MAX_PLOT_POINTS))
        minutes = window_mean(result.times_s, window) / 60.0
        total = window_mean(result.containers.sum(axis=1), window)
        # Mean shares per container, weighted by how many containers each function holds.
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # ticks without a valid invoker are NaN
            weighted = window_mean((result.containers * result.cpu_shares).sum(axis=1), window)
            shares = weighted / total
            util = (
                window_mean(np.nanmean(result.invoker_utilisation, axis=1), window)
                if result.invoker_utilisation.size
                else minutes * np.nan
            )
        axes[0].plot(minutes, total, label=result.policy)
        axes[1].plot(minutes, shares, label=result.policy)
        axes[2].plot(minutes, 100 * util, label=result.policy)
    axes[0].set_ylabel("containers (all functions)")
    axes[1].set_ylabel("CPU shares per container")
    axes[2].set_ylabel("invoker CPU util. (%)")
    axes[2].set_xlabel("time since start (min)" + (f", means over {window} ticks" if window > 1 else ""))
    for ax in axes:
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = [
    "MAX_PLOT_POINTS",
    "METRIC_COLUMNS",
    "RunRecorder",
    "RunResult",
    "function_metrics",
    "overall_metrics",
    "overall_table",
    "plot_latency_cdf",
    "plot_timeseries",
    "window_mean",
    "write_csv",
]
