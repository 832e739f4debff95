"""``mfrm replay``: replay Azure trace invocations against any OpenWhisk API and record every activation.

    mfrm replay --api-host http://127.0.0.1:3233 --auth UUID:KEY --functions 12 --minutes 5 \\
        --speedup 10 --out runs/replay --deploy

The functions and their arrival times come from the same settings and builders as ``mfrm simulate``
(``controller.assemble.build_workload`` and ``build_arrivals``), so one seed picks the same
functions and the same arrivals in both. Invocations are sent open-loop by
``workload.replayer.Replayer`` through :class:`controller.clients.openwhisk.OpenWhiskClient`;
``records.csv`` (one row per invocation, flushed as it goes), ``summary.csv`` and two plots are
written to the output folder, and a summary table is printed. Ctrl-C or SIGTERM stops sending, waits
at most ``replay.drain_timeout_s`` for invocations already sent, and still writes the summary.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import numpy as np
import requests

from controller.assemble import AssemblyError, build_arrivals, build_workload
from controller.clients.openwhisk import NO_RETRY, OpenWhiskClient, OpenWhiskError, RetryPolicy
from controller.commands.options import (
    RUN_OPTIONS,
    SettingOption,
    UsageProblem,
    config_options,
    configure_logging,
    load,
    overrides_from,
    setting_options,
)
from controller.replay import (
    DeployError,
    OpenWhiskInvoker,
    deploy_benchmarks,
    failure_problem,
    plot_records,
    render_summary,
    status_counts,
    write_summary_csv,
)
from controller.settings import Settings
from workload import records as rec
from workload.arrivals import CountOverflow
from workload.replayer import ReplayConfig, Replayer, arrivals_of

#: What ``mfrm replay`` sets on top of the defaults: a short window and its own output folder.
REPLAY_OVERRIDES: dict[str, Any] = {"workload.minutes": 5, "output.out_dir": "runs/replay"}

#: Most arrivals one trace minute may hold in a replay. The replayer generates a minute's arrival
#: times at once (about 20 bytes each), and 10 million a minute (167,000 a second) is far beyond what
#: one client sends; a count past it is a mistyped trace or rate scale, refused before the start.
MAX_ARRIVALS_PER_MINUTE = 10_000_000

#: Flags of ``mfrm replay`` beyond the workload's, each the override of one settings key.
REPLAY_FLAGS: tuple[SettingOption, ...] = (
    SettingOption("--api-host", "replay.api_host", "OpenWhisk API URL, e.g. http://127.0.0.1:3233."),
    SettingOption("--auth", "replay.auth", "API key 'uuid:key' (better: MFRM_REPLAY__AUTH in the environment)."),
    SettingOption("--namespace", "replay.namespace", "Namespace of the actions ('_': the key's own)."),
    SettingOption("--speedup", "replay.speedup", "Trace seconds per replay second.", click.FloatRange(min=0, min_open=True)),
    SettingOption("--concurrency", "replay.concurrency", "Invocations outstanding at once.", click.IntRange(min=1)),
    SettingOption("--max-backlog", "replay.max_backlog",
                  "Arrivals that may wait for a free worker before new ones are dropped.", click.IntRange(min=0)),
    SettingOption("--arrival-mode", "workload.arrivals", "How a minute's count is spread inside the minute."),
    SettingOption("--request-timeout", "replay.request_timeout_s",
                  "Seconds to wait for the answer of one blocking invocation (then: timeout, outcome unknown).",
                  click.FloatRange(min=0, min_open=True)),
    SettingOption("--drain-timeout", "replay.drain_timeout_s",
                  "After a stop, seconds to wait for invocations already sent (then: unfinished).",
                  click.FloatRange(min=0)),
    SettingOption("--max-failure-fraction", "replay.max_failure_fraction",
                  "Largest share of invocations that may fail, not run or end unknown before the exit status is 1.",
                  click.FloatRange(min=0, max=1)),
    SettingOption("--out", "output.out_dir", "Folder for records.csv, summary.csv and the plots.",
                  click.Path(file_okay=False, path_type=Path)),
)

log = logging.getLogger(__name__)


@click.command("replay")
@click.option("--deploy/--no-deploy", default=None,
              help="Create the benchmark actions under the sampled names first [replay.deploy; default: off].")
@click.option("--insecure", is_flag=True, default=False,
              help="Do not verify the API's TLS certificate (self-signed deployments) [replay.verify_tls].")
@setting_options((*RUN_OPTIONS, *REPLAY_FLAGS), REPLAY_OVERRIDES)
@config_options
def replay_command(deploy: bool | None, insecure: bool, config: Path | None, sets: tuple[str, ...],
                   **options: Any) -> None:
    """Replay trace functions against an OpenWhisk API, open loop, recording every arrival once.

    Exit status: 0 when at most replay.max_failure_fraction of the invocations did not succeed,
    1 when more did (or the replay could not run), 2 for a usage error.
    """
    configure_logging(logging.WARNING)
    overrides = overrides_from(options, (*RUN_OPTIONS, *REPLAY_FLAGS), sets, REPLAY_OVERRIDES)
    if deploy is not None:
        overrides["replay.deploy"] = deploy
    if insecure:
        overrides["replay.verify_tls"] = False
    settings = load(config, overrides)
    r = settings.replay
    if r.api_host is None:
        raise UsageProblem("replay.api_host is not set: pass --api-host URL (or set it in the config file)")
    check_api_host(r.api_host)
    if r.auth is None:
        raise UsageProblem("replay.auth is not set: export MFRM_REPLAY__AUTH=UUID:KEY (or pass --auth)")
    out = settings.output.out_dir
    records_path = out / "records.csv"
    check_no_records(records_path)
    workload, stream = build_replay(settings)
    make_out_dir(out, records_path)
    try:
        invoke_client = OpenWhiskClient(r.api_host, r.auth.get_secret_value(), namespace=r.namespace,
                                        read_timeout_s=r.request_timeout_s, pool_size=r.concurrency,
                                        verify_tls=r.verify_tls, retry=NO_RETRY)
    except ValueError as error:
        raise UsageProblem(f"replay.auth: {error}") from None
    if r.deploy:
        # Creating an action is idempotent (PUT with overwrite): retried, unlike an invocation.
        deploy_client = OpenWhiskClient(r.api_host, r.auth.get_secret_value(), namespace=r.namespace,
                                        verify_tls=r.verify_tls, retry=RetryPolicy(max_attempts=3),
                                        rng=np.random.default_rng(settings.seed))
        try:
            names = deploy_benchmarks(deploy_client, workload)
        except DeployError as error:
            raise UsageProblem(str(error)) from None
        except OpenWhiskError as error:
            raise click.ClickException(f"replay.deploy failed: {error}") from None
        finally:
            deploy_client.close()
        click.echo(f"deployed {len(names)} actions")
    config_ = ReplayConfig(speedup=r.speedup, concurrency=r.concurrency, max_backlog=r.max_backlog,
                           drain_timeout_s=r.drain_timeout_s)
    click.echo(f"replaying {len(workload.functions)} functions, trace minutes [{workload.start_minute}, "
               f"{workload.end_minute}), {stream.total_invocations()} invocations, speed-up {r.speedup:g}")
    try:
        with rec.RecordWriter(records_path) as writer:
            replayer = Replayer(OpenWhiskInvoker(invoke_client), workload.names, writer, config_)
            with stop_on_signals(replayer):
                result = replayer.run(arrivals_of(stream))
    except OSError as error:
        raise click.ClickException(f"cannot write {records_path}: {error}") from None
    finally:
        invoke_client.close()
    rows = rec.read_records(records_path)
    summaries = rec.summarise_records(rows)
    write_summary_csv(out / "summary.csv", summaries)
    plots = plot_records(rows, out)
    render_summary(summaries, result, status_counts(rows))
    click.echo(f"records: {records_path}")
    for plot in plots:
        click.echo(f"plot:    {plot}")
    problem = failure_problem(rows, r.max_failure_fraction)
    if problem is not None:
        raise click.ClickException(problem)


def check_api_host(url: str) -> None:
    """A usage error unless requests can send to ``url`` with the API's paths appended to it (a path
    prefix is fine, behind a reverse proxy; a query or fragment would make every call miss)."""
    split = urlsplit(url)
    try:
        split.port  # noqa: B018 - reading it checks the range
        requests.Request("POST", url).prepare()
    except (ValueError, requests.exceptions.RequestException) as error:
        raise UsageProblem(f"replay.api_host={url!r}: not a usable URL ({error})") from None
    if split.query or split.fragment:
        raise UsageProblem(f"replay.api_host={url!r}: no query or fragment (the client appends /api/v1/... "
                           f"to the URL)")


def check_no_records(records_path: Path) -> None:
    """A usage error when ``records_path`` already holds a replay's records (two runs never mix)."""
    if records_path.is_file() and records_path.stat().st_size > 0:
        raise UsageProblem(f"{records_path} already holds a replay's records: choose another --out")
    if records_path.exists() and not records_path.is_file():
        raise UsageProblem(f"{records_path} is not a file: choose another --out")


def make_out_dir(out: Path, records_path: Path) -> None:
    """Create ``out`` and an empty ``records.csv`` in it; a usage error naming the folder if it cannot."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        records_path.touch()
    except OSError as error:
        raise UsageProblem(f"output.out_dir={out}: cannot write records there ({error.strerror or error})") from None


def build_replay(settings: Settings) -> tuple[Any, Any]:
    """The workload and arrival stream of ``settings`` (as ``mfrm simulate`` builds them); every
    refusal a usage error that names the setting, the file or the function and minute."""
    try:
        workload = build_workload(settings)
    except AssemblyError as error:
        raise UsageProblem(str(error)) from None
    except CountOverflow as error:
        raise UsageProblem(f"workload.rate_scale={settings.workload.rate_scale:g}: "
                           f"{overflow_named(settings, error)}") from None
    try:
        stream = build_arrivals(settings, workload)
    except ValueError as error:
        raise UsageProblem(f"workload: {error}") from None
    counts = np.stack([f.counts_per_minute for f in workload.functions]).astype(np.int64)
    per_minute = counts.sum(axis=0)
    if per_minute.size and per_minute.max() > MAX_ARRIVALS_PER_MINUTE:
        column = int(np.argmax(per_minute))
        busiest = int(np.argmax(counts[:, column]))
        raise UsageProblem(
            f"workload: trace minute {workload.start_minute + column} holds {int(per_minute[column])} arrivals "
            f"({int(counts[busiest, column])} of function {workload.names[busiest]}), more than the "
            f"{MAX_ARRIVALS_PER_MINUTE} a replay takes in one minute (check the trace and workload.rate_scale)")
    return workload, stream


def overflow_named(settings: Settings, error: CountOverflow) -> str:
    """The overflow's message with the function's name: the unscaled workload lists the same functions
    in the same order (functions are picked before the counts are scaled)."""
    if error.function:
        return str(error)
    try:
        unscaled = build_workload(settings.model_copy(update={"workload": settings.workload.model_copy(
            update={"rate_scale": 1.0})}))
        name = unscaled.names[error.row]
    except (AssemblyError, CountOverflow, IndexError):
        return str(error)
    return str(CountOverflow(error.row, error.minute, error.count, error.factor, name))


@contextmanager
def stop_on_signals(replayer: Replayer) -> Iterator[None]:
    """SIGTERM and Ctrl-C (SIGINT) stop the replay gracefully while it runs (a second one ends the
    drain at once); the previous handlers are restored after."""
    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in handled}
    for sig in handled:
        signal.signal(sig, lambda *_: replayer.stop())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["MAX_ARRIVALS_PER_MINUTE", "REPLAY_FLAGS", "REPLAY_OVERRIDES", "replay_command"]
