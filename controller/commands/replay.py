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
from pathlib import Path
from typing import Any

import click
import numpy as np

from controller.assemble import AssemblyError, build_arrivals, build_workload
from controller.clients.openwhisk import OpenWhiskClient, OpenWhiskError, RetryPolicy
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
    plot_records,
    render_summary,
    write_summary_csv,
)
from workload import records as rec
from workload.replayer import ReplayConfig, Replayer, arrivals_of

#: What ``mfrm replay`` sets on top of the defaults: a short window and its own output folder.
REPLAY_OVERRIDES: dict[str, Any] = {"workload.minutes": 5, "output.out_dir": "runs/replay"}

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
    SettingOption("--drain-timeout", "replay.drain_timeout_s",
                  "After a stop, seconds to wait for invocations already sent.", click.FloatRange(min=0)),
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
    """Replay trace functions against an OpenWhisk API, open loop, recording every activation."""
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
    if r.auth is None:
        raise UsageProblem("replay.auth is not set: export MFRM_REPLAY__AUTH=UUID:KEY (or pass --auth)")
    out = settings.output.out_dir
    records_path = out / "records.csv"
    if records_path.exists() and records_path.stat().st_size > 0:
        raise UsageProblem(f"{records_path} already holds a replay's records: choose another --out")
    try:
        workload = build_workload(settings)
    except AssemblyError as error:
        raise UsageProblem(str(error)) from None
    stream = build_arrivals(settings, workload)
    client = OpenWhiskClient(r.api_host, r.auth.get_secret_value(), namespace=r.namespace,
                             pool_size=r.concurrency, verify_tls=r.verify_tls,
                             retry=RetryPolicy(max_attempts=3), rng=np.random.default_rng(settings.seed))
    out.mkdir(parents=True, exist_ok=True)
    if r.deploy:
        try:
            names = deploy_benchmarks(client, workload)
        except DeployError as error:
            raise UsageProblem(str(error)) from None
        except OpenWhiskError as error:
            raise click.ClickException(f"replay.deploy failed: {error}") from None
        click.echo(f"deployed {len(names)} actions")
    config_ = ReplayConfig(speedup=r.speedup, concurrency=r.concurrency, max_backlog=r.max_backlog,
                           drain_timeout_s=r.drain_timeout_s)
    click.echo(f"replaying {len(workload.functions)} functions, trace minutes [{workload.start_minute}, "
               f"{workload.end_minute}), {stream.total_invocations()} invocations, speed-up {r.speedup:g}")
    with rec.RecordWriter(records_path) as writer:
        replayer = Replayer(OpenWhiskInvoker(client), workload.names, writer, config_)
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
    plots = plot_records(rows, out)
    render_summary(summaries, result)
    click.echo(f"records: {records_path}")
    for plot in plots:
        click.echo(f"plot:    {plot}")


__all__ = ["REPLAY_FLAGS", "REPLAY_OVERRIDES", "replay_command"]
