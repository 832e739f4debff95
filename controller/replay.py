"""Replaying trace invocations against an OpenWhisk API: the library behind ``mfrm replay``.

:class:`OpenWhiskInvoker` turns every outcome of a blocking invocation through
:class:`controller.clients.openwhisk.OpenWhiskClient` into the ``workload.replayer`` record it
stands for; :func:`deploy_benchmarks` creates the benchmark actions under the sampled names; the
rest writes what a replay recorded (``summary.csv``, a table, plots).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from controller.clients.openwhisk import (
    ApplicationError,
    NotFound,
    OpenWhiskClient,
    OpenWhiskError,
    ServerError,
    Throttled,
    Timeout,
    Unavailable,
)
from workload import records as rec
from workload.replayer import InvokeResult, ReplayResult


class OpenWhiskInvoker:
    """Blocking invocations through the OpenWhisk client, every outcome turned into an InvokeResult."""

    def __init__(self, client: OpenWhiskClient, blocking_timeout_ms: int | None = None) -> None:
        self.client = client
        self.blocking_timeout_ms = blocking_timeout_ms

    def invoke(self, function: str) -> InvokeResult:
        try:
            answer = self.client.invoke(function, {}, blocking=True, timeout_ms=self.blocking_timeout_ms)
        except ApplicationError as error:
            return InvokeResult(502, activation=error.activation, status=rec.APPLICATION_ERROR, error=error.detail)
        except ServerError as error:
            record = error.body if isinstance(error.body, dict) and "activationId" in error.body else None
            return InvokeResult(error.status or 0, activation=record, status=rec.INTERNAL_ERROR, error=error.detail)
        except Throttled as error:
            return InvokeResult(429, status=rec.THROTTLED, error=error.detail)
        except Timeout as error:
            return InvokeResult(error.status or 0, status=rec.TIMEOUT, error=error.detail)
        except Unavailable as error:
            return InvokeResult(error.status or 0, status=rec.UNAVAILABLE, error=error.detail)
        except NotFound as error:
            return InvokeResult(404, status=rec.NOT_FOUND, error=error.detail)
        except OpenWhiskError as error:
            return InvokeResult(error.status or 0, status=rec.ERROR, error=str(error))
        if answer.record is None:
            return InvokeResult(answer.status, status=rec.ACCEPTED, activation_id=answer.activation_id)
        return InvokeResult(answer.status, activation=answer.record)


class DeployError(ValueError):
    """A workload function cannot be deployed as a benchmark action."""


def deploy_benchmarks(client: OpenWhiskClient, workload: Any) -> list[str]:
    """Create (overwrite) each workload function as the benchmark action it plays; returns the names.

    Raises :class:`DeployError` for a function that plays no benchmark action, and the client's
    ``OpenWhiskError`` when the platform refuses an action."""
    from workload.functions import FUNCTIONS

    deployed = []
    for function in workload.functions:
        benchmark = FUNCTIONS.get(function.profile.name)
        if benchmark is None:
            raise DeployError(
                f"replay.deploy: function {function.name} plays {function.profile.name!r}, which is not one of the "
                f"benchmark actions in workload/functions ({', '.join(FUNCTIONS)}); sample with benchmark profiles"
            )
        client.put_action(function.name, benchmark.action_body(), overwrite=True)
        deployed.append(function.name)
    return deployed


def write_summary_csv(path: Path, summaries: list[rec.FunctionSummary]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        names = list(rec.FunctionSummary.__dataclass_fields__)
        writer.writerow(names)
        for s in summaries:
            writer.writerow([getattr(s, n) for n in names])


def render_summary(summaries: list[rec.FunctionSummary], result: ReplayResult) -> None:
    from rich.console import Console
    from rich.table import Table

    def ms(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.1f}"

    table = Table(title="replay summary (latency = waitTime + duration, ms)")
    for column in ("function", "invoked", "ok", "failed", "dropped", "cold", "p50", "p99", "p99 client"):
        # Action names are the key of the table: folded, never cut to an ellipsis.
        table.add_column(column, justify="left" if column == "function" else "right",
                         overflow="fold" if column == "function" else "ellipsis", min_width=22 if column == "function" else None)
    for s in summaries:
        table.add_row(s.function, str(s.invocations), str(s.succeeded), str(s.failed), str(s.dropped), str(s.cold),
                      ms(s.p50_latency_ms), ms(s.p99_latency_ms), ms(s.p99_client_latency_ms))
    console = Console()
    console.print(table)
    console.print(
        f"sent {result.sent}, recorded {result.recorded}, dropped {result.dropped}, cancelled {result.cancelled}, "
        f"unfinished {result.unfinished}, {'stopped' if result.stopped else 'completed'} after {result.elapsed_s:.1f} s"
    )


def plot_records(rows: list[rec.ActivationRecord], out: Path, bin_s: float = 1.0) -> list[Path]:
    """Latency CDF per function and completions per second over time; returns the files written
    (none when nothing was recorded: an empty plot says nothing)."""
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    functions = sorted({r.function for r in rows})
    plotted = 0
    for function in functions:
        latency = np.sort([r.latency_ms for r in rows if r.function == function and r.status == rec.SUCCESS
                           and not math.isnan(r.latency_ms)])
        if latency.size:
            ax.step(latency, np.arange(1, latency.size + 1) / latency.size, where="post", label=function)
            plotted += 1
    if plotted:
        ax.set_xscale("log")
        if plotted <= 16:
            ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no successful activations", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("latency (waitTime + duration), ms")
    ax.set_ylabel("fraction of activations")
    ax.set_title("latency CDF per function")
    fig.tight_layout()
    paths.append(out / "latency_cdf.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    done = np.array([r.received_s for r in rows if r.status != rec.DROPPED and not math.isnan(r.received_s)])
    if done.size:
        edges = np.arange(0.0, done.max() + bin_s, bin_s)
        counts, _ = np.histogram(done, bins=edges) if edges.size > 1 else (np.array([done.size]), None)
        ax.plot(edges[: counts.size], counts / bin_s, drawstyle="steps-post")
    ax.set_xlabel("replay time, s")
    ax.set_ylabel("answers per second")
    ax.set_title("throughput")
    fig.tight_layout()
    paths.append(out / "throughput.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


__all__ = ["DeployError", "OpenWhiskInvoker", "deploy_benchmarks", "plot_records", "render_summary", "write_summary_csv"]
