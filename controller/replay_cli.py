"""``mfrm replay``: replay an Azure Functions trace against any OpenWhisk API and record every activation.

    mfrm replay --api-host http://127.0.0.1:3233 --auth UUID:KEY --trace DIR --functions 12 \\
        --minutes 5 --speedup 10 --out replay-out --deploy

Picks K functions of the trace (``workload.sampler.sample_workload``, seeded), generates their
arrivals (``workload.arrivals.ArrivalStream``) and sends them open-loop with
``workload.replayer.Replayer`` through :class:`controller.clients.openwhisk.OpenWhiskClient`. Writes
``records.csv`` (one row per invocation, flushed as it goes), ``summary.csv``, ``latency_cdf.png`` and
``throughput.png`` to ``--out`` and prints a summary table. Ctrl-C stops sending, waits at most
``--drain-timeout`` for the invocations already sent, and still writes the summary and plots.
"""

from __future__ import annotations

import csv
import math
import signal
from pathlib import Path
from typing import Any

import click
import numpy as np

from controller.clients.openwhisk import (
    ApplicationError,
    NotFound,
    OpenWhiskClient,
    OpenWhiskError,
    RetryPolicy,
    ServerError,
    Throttled,
    Timeout,
    Unavailable,
)
from workload import records as rec
from workload.replayer import InvokeResult, ReplayConfig, Replayer, ReplayResult, arrivals_of


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


def deploy_benchmarks(client: OpenWhiskClient, workload: Any) -> list[str]:
    """Create (overwrite) each workload function as the benchmark action it plays; returns the names."""
    from workload.functions import FUNCTIONS

    deployed = []
    for function in workload.functions:
        benchmark = FUNCTIONS.get(function.profile.name)
        if benchmark is None:
            raise click.ClickException(
                f"--deploy: function {function.name} plays {function.profile.name!r}, which is not one of the "
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
    """Latency CDF per function and completions per second over time; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    functions = sorted({r.function for r in rows})
    for function in functions:
        latency = np.sort([r.latency_ms for r in rows if r.function == function and r.status == rec.SUCCESS
                           and not math.isnan(r.latency_ms)])
        if latency.size:
            ax.step(latency, np.arange(1, latency.size + 1) / latency.size, where="post", label=function)
    ax.set_xscale("log")
    ax.set_xlabel("latency (waitTime + duration), ms")
    ax.set_ylabel("fraction of activations")
    ax.set_title("latency CDF per function")
    if len(functions) <= 16:
        ax.legend(fontsize=7)
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


@click.command("replay")
@click.option("--api-host", required=True, help="OpenWhisk API URL, e.g. http://127.0.0.1:3233.")
@click.option("--auth", required=True, envvar="MFRM_REPLAY_AUTH", show_envvar=True, help="API key 'uuid:key'.")
@click.option("--namespace", default="_", show_default=True, help="Namespace of the actions ('_': the key's own).")
@click.option("--trace", "trace_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Azure Functions 2019 trace folder.")
@click.option("--functions", "k", type=click.IntRange(min=1), default=12, show_default=True, help="Functions to replay (K).")
@click.option("--minutes", type=click.IntRange(min=1), default=5, show_default=True, help="Trace minutes to replay (M).")
@click.option("--start-minute", type=int, default=None, help="First trace minute (default: the trace's first).")
@click.option("--speedup", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Trace seconds per replay second.")
@click.option("--concurrency", type=click.IntRange(min=1), default=64, show_default=True, help="Invocations outstanding at once.")
@click.option("--max-backlog", type=click.IntRange(min=0), default=10_000, show_default=True,
              help="Arrivals that may wait for a free worker before new ones are dropped.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the function sampling and the arrivals.")
@click.option("--arrival-mode", type=click.Choice(["poisson", "equidistant"]), default="poisson", show_default=True)
@click.option("--deploy/--no-deploy", default=False, show_default=True,
              help="Create the benchmark actions (workload/functions) under the sampled names first.")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="After Ctrl-C, seconds to wait for invocations already sent.")
@click.option("--insecure", is_flag=True, help="Do not verify the API's TLS certificate (self-signed deployments).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("replay-out"), show_default=True,
              help="Folder for records.csv, summary.csv and the plots.")
def replay_command(api_host: str, auth: str, namespace: str, trace_dir: Path, k: int, minutes: int,
                   start_minute: int | None, speedup: float, concurrency: int, max_backlog: int, seed: int,
                   arrival_mode: str, deploy: bool, drain_timeout: float, insecure: bool, out: Path) -> None:
    """Replay K trace functions for M minutes against an OpenWhisk API, open loop, recording every activation."""
    from workload.arrivals import ArrivalStream
    from workload.azure2019 import load_trace
    from workload.sampler import sample_workload

    trace = load_trace(trace_dir)
    first = trace.invocations.first_minute
    start = first if start_minute is None else start_minute
    try:
        workload = sample_workload(trace, k, seed=seed, start_minute=start, end_minute=start + minutes)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--functions/--start-minute/--minutes") from None
    stream = ArrivalStream(workload.functions, workload.start_minute, workload.end_minute, mode=arrival_mode, seed=seed)
    client = OpenWhiskClient(api_host, auth, namespace=namespace, pool_size=concurrency, verify_tls=not insecure,
                             retry=RetryPolicy(max_attempts=3), rng=np.random.default_rng(seed))
    out.mkdir(parents=True, exist_ok=True)
    if (out / "records.csv").exists() and (out / "records.csv").stat().st_size > 0:
        raise click.ClickException(f"{out / 'records.csv'} already holds a replay's records: choose another --out")
    if deploy:
        try:
            names = deploy_benchmarks(client, workload)
        except OpenWhiskError as error:
            raise click.ClickException(f"--deploy failed: {error}") from None
        click.echo(f"deployed {len(names)} actions")
    config = ReplayConfig(speedup=speedup, concurrency=concurrency, max_backlog=max_backlog, drain_timeout_s=drain_timeout)
    click.echo(f"replaying {len(workload.functions)} functions, trace minutes [{workload.start_minute}, "
               f"{workload.end_minute}), {stream.total_invocations()} invocations, speed-up {speedup}")
    records_path = out / "records.csv"
    with rec.RecordWriter(records_path) as writer:
        replayer = Replayer(OpenWhiskInvoker(client), workload.names, writer, config)
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, lambda *_: replayer.stop())
        try:
            result = replayer.run(arrivals_of(stream))
        finally:
            signal.signal(signal.SIGTERM, previous)
    client.close()
    rows = rec.read_records(records_path)
    summaries = rec.summarise_records(rows)
    write_summary_csv(out / "summary.csv", summaries)
    plot_records(rows, out)
    render_summary(summaries, result)
    click.echo(f"records: {records_path}")


__all__ = ["OpenWhiskInvoker", "deploy_benchmarks", "plot_records", "replay_command"]
