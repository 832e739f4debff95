"""``mfrm simulate``, ``mfrm compare`` and ``mfrm demo``: policies on the simulated cluster, with reports.

One run = one policy on the ``sim`` backend, driven by the control loop for the workload's minutes.
A comparison runs several policies on the *same* workload and the *same* arrivals (every seed is
derived from the one ``--seed``), in parallel worker processes, then writes:

* ``overall.csv`` (one row per policy) and ``functions.csv`` (one row per policy and function);
* ``latency_cdf.png`` and ``timeseries.png`` (containers, CPU shares, invoker utilisation);
* ``run.json``: the command, the effective settings (secrets masked), the seeds, the workload, the
  SLOs, the versions of mfrm and its main libraries, and each run's wall time.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import platform
import queue as queue_module
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from controller.settings import Settings, SettingsError, load_settings
from controller.version import __version__

log = logging.getLogger(__name__)

#: The shipped trace sample, relative to the source tree (``data/`` beside the packages).
SAMPLE_TRACE = Path(__file__).resolve().parents[1] / "data" / "azure-functions-2019-sample"

#: What ``mfrm demo`` pins, on top of the defaults: the paper's cluster and 12 functions.
#: All 480 minutes of the shipped sample (08:00-16:00): the five baselines take well under 3 minutes
#: on 2 cores (measured in docs/results-simulator.md).
DEMO_OVERRIDES: dict[str, Any] = {
    "cluster.invokers": 21,
    "cluster.cores": 8.0,
    "cluster.user_memory_mb": 2048,
    "workload.functions": 12,
    "workload.minutes": 480,
    "output.out_dir": "runs/demo",
}


# --------------------------------------------------------------------------------------------
# seeds, workload, one run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSeeds:
    """Independent seeds of a run's components, all derived from the run's one seed."""

    workload: int
    """Which trace functions are picked and which benchmark each plays."""
    arrivals: int
    """Arrival times inside each trace minute."""
    cluster: int
    """The simulator's own draws (execution times, placement ties)."""
    slo: int
    """The solo runs that measure each function's SLO."""

    @classmethod
    def from_seed(cls, seed: int) -> RunSeeds:
        """Spawn one child seed per component (numpy SeedSequence: independent streams)."""
        children = np.random.SeedSequence(seed).spawn(4)
        values = [int(child.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for child in children]
        return cls(*values)


def resolve_trace_dir(settings: Settings) -> Path:
    """The trace folder of ``settings`` (the shipped sample when unset); a clear error if it is missing."""
    path = settings.workload.trace_dir if settings.workload.trace_dir is not None else SAMPLE_TRACE
    if not path.is_dir():
        hint = (
            " (the sample ships in the source tree under data/; run from a git checkout or pass --trace)"
            if settings.workload.trace_dir is None
            else ""
        )
        raise click.ClickException(f"trace folder not found: {path}{hint}")
    return path


def build_workload(settings: Settings) -> Any:
    """The sampled ``workload.sampler.Workload`` of ``settings`` (same settings and seed: same workload)."""
    from workload.azure2019 import load_trace
    from workload.sampler import sample_workload

    w = settings.workload
    trace = load_trace(resolve_trace_dir(settings))
    return sample_workload(
        trace,
        w.functions,
        seed=RunSeeds.from_seed(settings.seed).workload,
        start_minute=w.start_minute,
        end_minute=w.start_minute + w.minutes,
        profiles=w.profiles,
    )


def cluster_config(settings: Settings) -> Any:
    """The simulator's ``ClusterConfig`` for ``settings.cluster``."""
    from simulator import ClusterConfig

    c = settings.cluster
    return ClusterConfig(invokers=c.invokers, cores=c.cores, user_memory_mb=c.user_memory_mb,
                         idle_timeout_s=c.idle_timeout_s)


def measure_slos(settings: Settings, workload: Any) -> np.ndarray:
    """Each function's SLO, s (solo p99 in the simulated cluster + margin; cached per profile)."""
    from controller.backends.sim import solo_slo_s

    return solo_slo_s(
        [f.profile for f in workload.functions],
        cluster_config(settings),
        margin=settings.reward.slo_margin,
        seed=RunSeeds.from_seed(settings.seed).slo,
        probes=settings.reward.slo_probe_invocations,
    )


def tick_count(settings: Settings) -> int:
    """Ticks that cover the workload's minutes (the last one may run past the trace's end)."""
    return math.ceil(settings.workload.minutes * 60.0 / settings.loop.tick_s)


def run_policy(settings: Settings, workload: Any, slo_s: np.ndarray, policy_name: str,
               on_tick: Callable[[int], None] | None = None) -> Any:
    """One policy on the simulated cluster over the whole workload; returns a ``RunResult``."""
    from controller.backends.sim import SimBackend
    from controller.estimator import PopulationEstimator
    from controller.guard import GuardBounds
    from controller.loop import ControlLoop, tick_times
    from controller.report import RunRecorder
    from policies.registry import make
    from simulator import Cluster
    from workload.arrivals import ArrivalStream

    seeds = RunSeeds.from_seed(settings.seed)
    cluster = Cluster(cluster_config(settings), [f.profile for f in workload.functions], slo_s, seed=seeds.cluster)
    arrivals = ArrivalStream(workload.functions, workload.start_minute, workload.end_minute,
                             mode=settings.workload.arrivals, seed=seeds.arrivals)
    backend = SimBackend(cluster, arrivals, workload.names, settings.loop.tick_s)
    policy = make(policy_name, **settings.policy.params.get(policy_name, {}))
    recorder = RunRecorder()
    checkpointer = None
    if settings.loop.checkpoint_every_ticks > 0:
        from controller.checkpoint import CheckpointStore

        checkpointer = CheckpointStore(settings.output.out_dir / "checkpoints")
    loop = ControlLoop(
        backend=backend,
        policy=policy,
        estimator=PopulationEstimator(bins=settings.estimator.bins, beta=settings.estimator.beta),
        bounds=GuardBounds.from_settings(settings.guard),
        reward_alpha=settings.reward.alpha,
        sinks=[recorder],
        checkpointer=checkpointer,
        checkpoint_every_ticks=settings.loop.checkpoint_every_ticks,
    )
    started = time.perf_counter()
    loop.run(tick_times(0.0, settings.loop.tick_s, tick_count(settings)),
             on_tick=(lambda report: on_tick(report.tick + 1)) if on_tick else None)
    records = backend.records()
    return recorder.result(
        policy_name,
        latency_s=records["end_s"] - records["arrival_s"],
        function_index=records["fn"],
        cold=records["cold"],
        wall_s=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------------------------
# several runs in parallel processes, with progress
# --------------------------------------------------------------------------------------------

_progress_queue: Any = None


def _init_worker(progress_queue: Any, log_level: int) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")


def _worker(settings: Settings, workload: Any, slo_s: np.ndarray, policy_name: str) -> Any:
    def report(done: int) -> None:
        _progress_queue.put((policy_name, done))

    return run_policy(settings, workload, slo_s, policy_name, on_tick=report)


def run_policies(settings: Settings, workload: Any, slo_s: np.ndarray, policies: Sequence[str],
                 on_progress: Callable[[str, int], None]) -> list[Any]:
    """Every policy on the same workload; in ``settings.output.workers`` processes when more than one."""
    workers = min(settings.output.workers, len(policies))
    if workers <= 1:
        return [run_policy(settings, workload, slo_s, name, on_tick=lambda done, n=name: on_progress(n, done))
                for name in policies]
    context = multiprocessing.get_context()
    progress_queue = context.Queue()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=(progress_queue, logging.getLogger().getEffectiveLevel())) as pool:
        futures: list[Future[Any]] = [pool.submit(_worker, settings, workload, slo_s, name) for name in policies]
        while not all(f.done() for f in futures):
            try:
                name, done = progress_queue.get(timeout=0.2)
            except queue_module.Empty:
                continue
            on_progress(name, done)
        # The last updates may still be in the queue's feeder: drain until it stays empty briefly.
        while True:
            try:
                on_progress(*progress_queue.get(timeout=0.05))
            except queue_module.Empty:
                break
        return [f.result() for f in futures]


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    import matplotlib
    import pydantic
    import scipy

    return {
        "mfrm": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
        "pydantic": pydantic.VERSION,
        "platform": platform.platform(),
    }


@dataclass(frozen=True)
class Outputs:
    """Files a run or comparison wrote."""

    overall_csv: Path
    """One row of overall metrics per policy."""
    functions_csv: Path
    """One row per policy and function."""
    run_json: Path
    """Settings, seeds, workload, SLOs, versions, wall times."""
    plots: tuple[Path, ...]
    """PNG plots (empty when plots are off)."""


def write_outputs(settings: Settings, workload: Any, slo_s: np.ndarray, results: Sequence[Any],
                  command: str) -> tuple[Outputs, list[dict[str, Any]]]:
    """Write CSVs, plots and ``run.json`` into ``settings.output.out_dir``; return them and the overall rows."""
    from controller.report import (
        function_metrics,
        overall_metrics,
        plot_latency_cdf,
        plot_timeseries,
        write_csv,
    )

    out = settings.output.out_dir
    out.mkdir(parents=True, exist_ok=True)
    overall = [overall_metrics(r) for r in results]
    per_function = [row for r in results for row in function_metrics(r)]
    plots: tuple[Path, ...] = ()
    if settings.output.plots:
        plots = (plot_latency_cdf(results, out / "latency_cdf.png"), plot_timeseries(results, out / "timeseries.png"))
    seeds = RunSeeds.from_seed(settings.seed)
    meta = {
        "command": command,
        "seed": settings.seed,
        "seeds": seeds.__dict__,
        "settings": settings.logged(),
        "trace_dir": str(resolve_trace_dir(settings)),
        "versions": _versions(),
        "ticks": tick_count(settings),
        "functions": [
            {"name": f.name, "profile": f.profile.name, "memory_mb": f.profile.memory_mb, "trace_id": f.trace_id,
             "rate_class": f.rate_class, "invocations": int(f.counts_per_minute.sum()), "slo_s": float(s)}
            for f, s in zip(workload.functions, slo_s)
        ],
        "runs": [{"policy": r.policy, "wall_s": r.wall_s, "failures": dict(r.failures)} for r in results],
    }
    outputs = Outputs(
        overall_csv=write_csv(overall, out / "overall.csv"),
        functions_csv=write_csv(per_function, out / "functions.csv"),
        run_json=out / "run.json",
        plots=plots,
    )
    outputs.run_json.write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    return outputs, overall


# --------------------------------------------------------------------------------------------
# the commands
# --------------------------------------------------------------------------------------------


def _parse_set(values: Sequence[str]) -> dict[str, Any]:
    """``--set key=value`` pairs; values are read as YAML scalars (numbers, booleans, lists)."""
    import yaml

    overrides: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        overrides[key.strip()] = yaml.safe_load(raw)
    return overrides


def _settings_from_cli(config: Path | None, options: dict[str, Any], sets: Sequence[str],
                       base: dict[str, Any] | None = None) -> Settings:
    mapping = {
        "trace": "workload.trace_dir",
        "functions": "workload.functions",
        "minutes": "workload.minutes",
        "start_minute": "workload.start_minute",
        "profiles": "workload.profiles",
        "seed": "seed",
        "out": "output.out_dir",
        "workers": "output.workers",
    }
    overrides = dict(base or {})
    overrides.update({mapping[k]: v for k, v in options.items() if k in mapping and v is not None})
    if options.get("no_plots"):
        overrides["output.plots"] = False
    overrides.update(_parse_set(sets))
    try:
        return load_settings(config, overrides)
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


def _common_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--config", "config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="YAML settings file (see docs/user-guide.md)."),
        click.option("--trace", type=click.Path(file_okay=False, path_type=Path),
                     help="Azure Functions 2019 trace folder [default: the shipped sample]."),
        click.option("--functions", type=int, help="Functions sampled from the trace [default: 12]."),
        click.option("--minutes", type=int, help="Trace minutes replayed [default: 10]."),
        click.option("--start-minute", type=int, help="First trace minute [default: 480]."),
        click.option("--profiles", type=click.Choice(["benchmark", "trace"]),
                     help="Benchmark profiles (the paper's 12) or the trace's own [default: benchmark]."),
        click.option("--seed", type=int, help="Seed of everything random [default: 0]."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder."),
        click.option("--no-plots", is_flag=True, default=False, help="Skip the PNG plots."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override any setting, e.g. --set loop.tick_s=5 (repeatable)."),
        click.option("-v", "--verbose", is_flag=True, default=False, help="Log every applied change."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _execute(settings: Settings, policies: Sequence[str], command: str, title: str) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from controller.report import overall_table
    from policies.registry import available

    known = available()
    unknown = [p for p in policies if p not in known]
    if unknown:
        raise click.ClickException(f"unknown policy {', '.join(unknown)}; known policies: {', '.join(known)}")
    console = Console(stderr=True)
    console.log(f"mfrm {__version__}: {len(policies)} polic{'y' if len(policies) == 1 else 'ies'}, "
                f"{settings.workload.functions} functions, {settings.workload.minutes} min from minute "
                f"{settings.workload.start_minute}, seed {settings.seed}")
    log.info("effective settings: %s", json.dumps(settings.logged()))
    try:
        workload = build_workload(settings)
    except (ValueError, OSError) as error:
        raise click.ClickException(f"cannot build the workload: {error}") from None
    with console.status("measuring each function's SLO (solo p99 + margin)"):
        try:
            slo_s = measure_slos(settings, workload)
        except ValueError as error:  # e.g. a function larger than an invoker's user memory
            raise click.ClickException(f"cannot simulate this workload on this cluster: {error}") from None
    ticks = tick_count(settings)
    started = time.perf_counter()
    with Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        tasks = {name: progress.add_task(name, total=ticks) for name in policies}
        results = run_policies(settings, workload, slo_s, policies,
                               on_progress=lambda name, done: progress.update(tasks[name], completed=done))
    elapsed = time.perf_counter() - started
    outputs, overall = write_outputs(settings, workload, slo_s, results, command)
    out_console = Console()
    if not out_console.is_terminal:
        # Piped or captured output is not wrapped to 80 columns: the table must stay readable.
        out_console = Console(width=160)
    out_console.print(overall_table(overall, title=title))
    out_console.print(f"policies ran in {elapsed:.1f} s wall time")
    out_console.print(f"overall:   {outputs.overall_csv}")
    out_console.print(f"functions: {outputs.functions_csv}")
    out_console.print(f"run:       {outputs.run_json}")
    for plot in outputs.plots:
        out_console.print(f"plot:      {plot}")


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _command_line() -> str:
    return " ".join(["mfrm", *sys.argv[1:]])


@click.command("simulate")
@click.option("--policy", help="Registered policy name [default: openwhisk-default].")
@_common_options
def simulate_command(policy: str | None, config: Path | None, sets: tuple[str, ...], verbose: bool,
                     **options: Any) -> None:
    """Run one policy on the embedded simulated cluster and report its metrics."""
    _configure_logging(verbose)
    base = {"policy.name": policy} if policy else {}
    settings = _settings_from_cli(config, options, sets, base)
    _execute(settings, [settings.policy.name], _command_line(), f"{settings.policy.name} on the simulated cluster")


@click.command("compare")
@click.option("--policies", help="Comma-separated policy names [default: every baseline].")
@click.option("--workers", type=int, help="Parallel worker processes [default: 2].")
@_common_options
def compare_command(policies: str | None, config: Path | None, sets: tuple[str, ...], verbose: bool,
                    **options: Any) -> None:
    """Run several policies on the same simulated workload (same seed, same arrivals) and compare them."""
    _configure_logging(verbose)
    base = {"policy.compare": [p.strip() for p in policies.split(",") if p.strip()]} if policies else {}
    settings = _settings_from_cli(config, options, sets, base)
    _execute(settings, list(settings.policy.compare), _command_line(), "Policies on the same workload")


@click.command("demo")
@click.option("--workers", type=int, help="Parallel worker processes [default: 2].")
@_common_options
def demo_command(config: Path | None, sets: tuple[str, ...], verbose: bool, **options: Any) -> None:
    """Compare every manager of ``policy.compare`` on the paper-scale simulated cluster (21 x 8 cores)."""
    _configure_logging(verbose)
    settings = _settings_from_cli(config, options, sets, DEMO_OVERRIDES)
    _execute(settings, list(settings.policy.compare), _command_line(),
             f"{settings.cluster.invokers} invokers x {settings.cluster.cores:g} cores, "
             f"{settings.workload.functions} functions, {settings.workload.minutes} min")


__all__ = [
    "DEMO_OVERRIDES",
    "SAMPLE_TRACE",
    "RunSeeds",
    "build_workload",
    "cluster_config",
    "compare_command",
    "demo_command",
    "measure_slos",
    "resolve_trace_dir",
    "run_policies",
    "run_policy",
    "simulate_command",
    "tick_count",
    "write_outputs",
]
