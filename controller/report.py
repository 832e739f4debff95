"""What a run produced, and the tables, CSVs and plots made from it.

A :class:`RunRecorder` is a :class:`~controller.loop.MetricsSink`: it keeps the per-tick columns a
report needs (containers, shares, CPU, invoker utilisation, rewards). Together with the simulator's
activation records it becomes a :class:`RunResult`, a plain picklable value that a worker process
returns to the parent. Everything below turns results into numbers, files and figures; nothing
here runs a simulation.

Metric definitions (per function, and "overall" pooled over every function of a run):

* latency: end-to-end, activation end − arrival (wait + cold-start init + execution), s; p50, p99
  over the completed activations;
* SLO-violation rate: share of completed activations slower than the function's SLO;
* cold-start rate: share of completed activations that waited for a container to start;
* CPU utilisation: CPU used / CPU allocated, summed over the run (allocated = containers x
  shares / 1024 integrated over time, as in ``FunctionStats.cpu_alloc_core_s``). It can exceed
  100%: shares are weights, so a container borrows idle cores beyond its allocation (the reward
  caps its own ratio at 1; the report shows the raw one);
* container-seconds: containers held, sampled at each tick's end, x tick length;
* memory GB-seconds: container-seconds x the function's memory limit / 1024;
* mean reward: the mean of the finite per-tick rewards (``policies.reward``).
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller.loop import TickReport

#: Columns of a metrics row, in table and CSV order, with their headers.
METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("invocations", "invocations"),
    ("p50_latency_s", "p50 s"),
    ("p99_latency_s", "p99 s"),
    ("slo_violation_rate", "SLO viol."),
    ("cold_start_rate", "cold"),
    ("cpu_utilisation", "CPU util."),
    ("container_seconds", "container-s"),
    ("memory_gb_seconds", "mem GB-s"),
    ("mean_reward", "reward"),
)


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
    failures: Mapping[str, int] = field(default_factory=dict)
    """Failed actions per failure kind."""
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

    def on_tick(self, report: TickReport) -> None:
        fns = report.snapshot.functions
        self._names = fns.names
        self._memory_mb = fns.memory_mb
        self._slo_s = fns.slo_s
        self._tick_s = report.snapshot.tick_s
        for failure in report.failures:
            self._failures[failure.kind.value] = self._failures.get(failure.kind.value, 0) + 1
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

    @property
    def ticks(self) -> int:
        return len(self._reports)

    def _stack(self, key: str, width: int) -> np.ndarray:
        out = np.full((len(self._reports), width), np.nan)
        for t, row in enumerate(self._reports):
            out[t, : len(row[key])] = row[key]
        return out

    def result(self, policy: str, latency_s: np.ndarray, function_index: np.ndarray, cold: np.ndarray,
               wall_s: float = float("nan"), decide_ms: float = float("nan"),
               update_ms: float = float("nan")) -> RunResult:
        """The run's result, with the activation columns from the backend."""
        n = len(self._names)
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
            failures=dict(self._failures),
            wall_s=wall_s,
            decide_ms=decide_ms,
            update_ms=update_ms,
        )


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else float("nan")


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def _metrics(latency: np.ndarray, slo: np.ndarray, cold: np.ndarray, used: float, alloc: float,
             container_s: float, memory_gb_s: float, rewards: np.ndarray) -> dict[str, float]:
    finite = rewards[np.isfinite(rewards)]
    return {
        "invocations": float(latency.size),
        "p50_latency_s": _percentile(latency, 50),
        "p99_latency_s": _percentile(latency, 99),
        "slo_violation_rate": float(np.mean(latency > slo)) if latency.size else float("nan"),
        "cold_start_rate": float(np.mean(cold)) if cold.size else float("nan"),
        "cpu_utilisation": _ratio(used, alloc),
        "container_seconds": container_s,
        "memory_gb_seconds": memory_gb_s,
        "mean_reward": float(finite.mean()) if finite.size else float("nan"),
    }


def function_metrics(result: RunResult) -> list[dict[str, Any]]:
    """One metrics row per function (see the module docstring for the definitions)."""
    rows = []
    container_s = result.containers.sum(axis=0) * result.tick_s
    for i, name in enumerate(result.names):
        mine = result.function_index == i
        latency = result.latency_s[mine]
        row = {"policy": result.policy, "function": name}
        row.update(
            _metrics(
                latency,
                np.full(latency.shape, result.slo_s[i]),
                result.cold[mine],
                float(result.cpu_used_core_s[:, i].sum()),
                float(result.cpu_alloc_core_s[:, i].sum()),
                float(container_s[i]),
                float(container_s[i] * result.memory_mb[i] / 1024.0),
                result.rewards[:, i],
            )
        )
        rows.append(row)
    return rows


def overall_metrics(result: RunResult) -> dict[str, Any]:
    """The metrics pooled over every function and activation of the run."""
    container_s = result.containers.sum(axis=0) * result.tick_s
    slo = result.slo_s[result.function_index] if result.function_index.size else np.zeros(0)
    row: dict[str, Any] = {"policy": result.policy}
    row.update(
        _metrics(
            result.latency_s,
            slo,
            result.cold,
            float(result.cpu_used_core_s.sum()),
            float(result.cpu_alloc_core_s.sum()),
            float(container_s.sum()),
            float((container_s * result.memory_mb).sum() / 1024.0),
            result.rewards.ravel(),
        )
    )
    return row


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
    if key == "invocations":
        return f"{value:.0f}"
    if key.endswith("_rate") or key == "cpu_utilisation":
        return f"{100 * value:.1f}%"
    if key.endswith("_seconds"):
        return f"{value:,.0f}"
    return f"{value:.3f}"


def overall_table(rows: Iterable[Mapping[str, Any]], title: str = "Overall, per policy") -> Any:
    """A rich table of overall metrics rows (one per policy)."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("policy", style="bold", no_wrap=True)
    for _, header in METRIC_COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(row["policy"], *(_fmt(key, row[key]) for key, _ in METRIC_COLUMNS))
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
