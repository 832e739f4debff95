"""Replaying trace invocations against an OpenWhisk API: the library behind ``mfrm replay``.

:class:`OpenWhiskInvoker` sends each blocking invocation once through
:class:`controller.clients.openwhisk.OpenWhiskClient` and turns whatever comes back into what it
tells about the call (ran, not run, unknown; ``workload.records`` has the statuses); :func:`deploy_benchmarks` creates the benchmark actions under the sampled names; the
rest writes what a replay recorded (``summary.csv``, a table, plots).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import requests
import urllib3

from controller.clients.openwhisk import (
    ApplicationError,
    MalformedResponse,
    NotFound,
    OpenWhiskClient,
    OpenWhiskError,
    RequestRejected,
    ServerError,
    Throttled,
    Timeout,
    Unauthorized,
    Unavailable,
)
from workload import records as rec
from workload.replayer import InvokeResult, ReplayResult

#: HTTP statuses whose answer means "no answer in time" rather than a failure of the platform.
_TIMEOUT_STATUSES = (408, 504)


class OpenWhiskInvoker:
    """Blocking invocations through the OpenWhisk client, every outcome turned into an InvokeResult.

    The client must not retry invocations (``retry=NO_RETRY``): each arrival is one request, so the
    platform never runs a call twice and the load is the trace's. What the answer says decides the
    row (``docs/replayer.md`` has the table):

    * an activation record in the answer (200, 502, a 5xx that carries one): the record's status;
    * an activation id without a record (a 202, or a failure answer naming its activation): ``accepted``;
    * refused before running: 429 without an activation (``throttled``), 404 (``not_found``), any
      other 4xx (``rejected``), a connection that could not be opened (``refused``);
    * unknown: a read time-out, 408 or 504 (``timeout``), a connection broken after sending
      (``lost``), an unreadable answer (``malformed``), 503 (``unavailable``), another 5xx
      (``server_error``).
    """

    def __init__(self, client: OpenWhiskClient, blocking_timeout_ms: int | None = None) -> None:
        if client.retry.max_attempts != 1:
            raise ValueError(f"an invoker's client must not retry (retry=NO_RETRY), got {client.retry}: a repeated "
                             "invocation may run twice")
        self.client = client
        """The client every invocation goes through; its read time-out bounds each call."""
        self.blocking_timeout_ms = blocking_timeout_ms
        """The platform's blocking wait asked for (``?timeout=``), ms; None: the platform's default
        (60 s in OpenWhisk), after which it answers 202 with the activation id."""

    def invoke(self, function: str) -> InvokeResult:
        try:
            answer = self.client.invoke(function, {}, blocking=True, timeout_ms=self.blocking_timeout_ms)
        except OpenWhiskError as error:
            return result_of_error(error)
        except Exception as error:  # noqa: BLE001 - the Invoker contract: never raise, keep the row
            return InvokeResult(0, status=rec.ERROR, error=f"{type(error).__name__}: {error}")
        if answer.record is None:
            return InvokeResult(answer.status, status=rec.ACCEPTED, activation_id=answer.activation_id)
        return InvokeResult(answer.status, activation=answer.record)


def result_of_error(error: OpenWhiskError) -> InvokeResult:
    """What a failed blocking invocation tells about the call (see :class:`OpenWhiskInvoker`)."""
    status = error.status or 0
    detail = error.detail
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("activationId"), str) and body["activationId"]:
        # The platform created an activation: the call ran (or runs), whatever the HTTP status says.
        if "response" in body or "statusCode" in body:
            return InvokeResult(status, activation=body, error=detail)
        return InvokeResult(status, status=rec.ACCEPTED, activation_id=body["activationId"], error=detail)
    if isinstance(error, MalformedResponse):
        return InvokeResult(status, status=rec.MALFORMED, error=detail)
    if isinstance(error, Throttled):
        return InvokeResult(status, status=rec.THROTTLED, error=detail)
    if isinstance(error, NotFound):
        return InvokeResult(status, status=rec.NOT_FOUND, error=detail)
    if isinstance(error, (Unauthorized, RequestRejected)) and status not in _TIMEOUT_STATUSES:
        return InvokeResult(status, status=rec.REJECTED, error=detail)
    if isinstance(error, Timeout) or status in _TIMEOUT_STATUSES:
        return InvokeResult(status, status=rec.TIMEOUT, error=detail)
    if status == 0:
        kind = rec.REFUSED if never_sent(error) else rec.LOST
        return InvokeResult(0, status=kind, error=detail)
    if isinstance(error, Unavailable):
        return InvokeResult(status, status=rec.UNAVAILABLE, error=detail)
    if isinstance(error, (ServerError, ApplicationError)):
        return InvokeResult(status, status=rec.SERVER_ERROR, error=detail)
    return InvokeResult(status, status=rec.ERROR, error=str(error))


def never_sent(error: BaseException) -> bool:
    """Whether a transport failure happened before any byte of the request left: the URL could not
    be used, or the connection was refused, timed out while connecting, its name did not resolve,
    or its TLS handshake failed.
    Read from the ``requests`` exception the client's error was raised from."""
    cause = error.__cause__
    if isinstance(cause, (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError,
                          requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema)):
        return True
    if isinstance(cause, requests.exceptions.ConnectionError) and cause.args:
        reason = getattr(cause.args[0], "reason", None)
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


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


def render_summary(summaries: list[rec.FunctionSummary], result: ReplayResult,
                   statuses: dict[str, int] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    def ms(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.1f}"

    table = Table(title="replay summary (latency = waitTime + duration, ms)")
    for column in ("function", "invoked", "ok", "failed", "not run", "unknown", "cold", "p50", "p99", "p99 client"):
        # Action names are the key of the table: folded, never cut to an ellipsis.
        table.add_column(column, justify="left" if column == "function" else "right",
                         overflow="fold" if column == "function" else "ellipsis", min_width=22 if column == "function" else None)
    for s in summaries:
        table.add_row(s.function, str(s.invocations), str(s.succeeded), str(s.failed), str(s.not_run), str(s.unknown),
                      str(s.cold), ms(s.p50_latency_ms), ms(s.p99_latency_ms), ms(s.p99_client_latency_ms))
    console = Console()
    console.print(table)
    console.print(
        f"arrivals {result.scheduled}: sent {result.sent}, dropped {result.dropped}, cancelled {result.cancelled}; "
        f"recorded {result.recorded}, unfinished {result.unfinished}; "
        f"{'stopped' if result.stopped else 'completed'} after {result.elapsed_s:.1f} s"
    )
    if statuses:
        console.print("statuses: " + ", ".join(f"{name} {count}" for name, count in statuses.items()))


def status_counts(rows: list[rec.ActivationRecord]) -> dict[str, int]:
    """Rows per status, in the order of ``workload.records.STATUSES``, statuses with rows only."""
    counts = {name: 0 for name in rec.STATUSES}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return {name: count for name, count in counts.items() if count}


def failure_problem(rows: list[rec.ActivationRecord], max_fraction: float) -> str | None:
    """Why the replay failed, when the share of rows that did not succeed (failed, not run or
    unknown) is above ``max_fraction``; None when it is not (or nothing was replayed)."""
    bad, total = rec.failure_share(rows)
    if total == 0 or bad / total <= max_fraction:
        return None
    worst = sorted(((n, s) for s, n in status_counts(rows).items() if s != rec.SUCCESS), reverse=True)
    detail = ", ".join(f"{status} {count}" for count, status in worst)
    return (f"{bad} of {total} invocations ({bad / total:.1%}) did not succeed ({detail}): more than "
            f"replay.max_failure_fraction={max_fraction:g}")


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
    done = np.array([r.received_s for r in rows if not math.isnan(r.received_s)])
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


__all__ = [
    "DeployError",
    "OpenWhiskInvoker",
    "deploy_benchmarks",
    "failure_problem",
    "never_sent",
    "plot_records",
    "render_summary",
    "result_of_error",
    "status_counts",
    "write_summary_csv",
]
