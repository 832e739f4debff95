"""``mfrm simulate``, ``mfrm compare`` and ``mfrm demo``: policies on the simulated cluster, with reports.

Each parses its flags into settings, builds the workload and SLOs through ``controller.assemble``,
runs the policies with ``controller.runner`` (in worker processes, with progress bars) and prints
the table and the paths of what it wrote (``controller.runner.write_outputs``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from controller.assemble import (
    AssemblyError,
    PolicySpec,
    as_spec,
    build_policy,
    build_workload,
    check_policy_names,
    measure_slos,
    tick_count,
)
from controller.checkpoint import CheckpointError
from controller.commands.options import (
    RUN_OPTIONS,
    SettingOption,
    UsageProblem,
    command_line,
    config_options,
    configure_logging,
    load,
    overrides_from,
    setting_options,
)
from controller.runner import run_policies, write_outputs
from controller.settings import Settings
from controller.version import __version__
from policies.registry import learned_policies, learns

log = logging.getLogger(__name__)

#: What ``mfrm demo`` runs: every baseline and both learners.
DEMO_POLICIES: tuple[str, ...] = ("openwhisk-default", "ensure", "kpa", "hpa", "hybrid-histogram", "nac-linear", "nac-nn")

#: The folder of the learners' shipped checkpoints, ``<policy>.ckpt.npz``: each trained by
#: ``scripts/train-checkpoints.sh`` on the training window of ``scenarios/paper-12.yaml`` (minutes
#: 480-720), which the demo's window follows.
DEMO_CHECKPOINTS: Path = Path(__file__).resolve().parents[2] / "checkpoints" / "paper-12"

#: What ``mfrm demo`` sets on top of the defaults: the evaluation window of ``scenarios/paper-12.yaml``
#: (the paper's cluster, 21 invokers x 8 cores, and 12 functions spread over the rate classes, minutes
#: 720-960 of the shipped sample), and the learners as the shipped checkpoints were trained: the
#: staffing action scheme and the operator's reward.
DEMO_OVERRIDES: dict[str, Any] = {
    "cluster.invokers": 21,
    "cluster.cores": 8.0,
    "cluster.user_memory_mb": 2048,
    "workload.functions": 12,
    "workload.select": "spread",
    "workload.profiles": "benchmark",
    "workload.rate_scale": 1.0,
    "workload.start_minute": 720,
    "workload.minutes": 240,
    "reward.kind": "operator",
    "policy.params": {"nac-linear": {"scheme": "staffing"}, "nac-nn": {"scheme": "staffing"}},
    "policy.compare": list(DEMO_POLICIES),
    "output.out_dir": "runs/demo",
}

#: Flags that only the batch commands have.
OUTPUT_OPTIONS: tuple[SettingOption, ...] = (
    SettingOption("--out", "output.out_dir", "Output folder.", click.Path(file_okay=False, path_type=Path)),
)
WORKER_OPTIONS: tuple[SettingOption, ...] = (
    SettingOption("--workers", "output.workers", "Parallel worker processes.", int),
)


def _batch_options(base: Mapping[str, Any] = {}, workers: bool = True) -> Any:
    flags = (*RUN_OPTIONS, *OUTPUT_OPTIONS, *(WORKER_OPTIONS if workers else ()))

    def decorate(command: Any) -> Any:
        command = click.option("-v", "--verbose", is_flag=True, default=False, help="Log every applied change.")(command)
        command = click.option("--no-plots", is_flag=True, default=False, help="Skip the PNG plots.")(command)
        command = setting_options(flags, base)(command)
        return config_options(command)

    return decorate


def batch_settings(config: Path | None, options: Mapping[str, Any], sets: Sequence[str],
                   base: Mapping[str, Any] = {}) -> Settings:
    """The settings of a batch command from its config file, flags and ``--set`` pairs."""
    flags = (*RUN_OPTIONS, *OUTPUT_OPTIONS, *WORKER_OPTIONS)
    overrides = overrides_from(options, flags, sets, base)
    if options.get("no_plots"):
        overrides["output.plots"] = False
    return load(config, overrides)


def execute(settings: Settings, policies: Sequence[str | PolicySpec], command: str, title: str) -> None:
    """Run ``policies`` on the workload of ``settings``; print the table and what was written."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from controller.report import overall_table

    specs = [as_spec(p) for p in policies]
    try:
        check_policy_names([s.name for s in specs])
        # Refuse parameters a policy does not take, and a checkpoint that does not fit, before any
        # work starts (in a worker they would end as a traceback).
        for spec in specs:
            build_policy(settings, spec)
        workload = build_workload(settings)
    except (AssemblyError, CheckpointError) as error:
        raise UsageProblem(str(error)) from None
    console = Console(stderr=True)
    console.log(f"mfrm {__version__}: {len(specs)} polic{'y' if len(specs) == 1 else 'ies'}, "
                f"{settings.workload.functions} functions, {settings.workload.minutes} min from minute "
                f"{settings.workload.start_minute}, load x{settings.workload.rate_scale:g}, seed {settings.seed}")
    with console.status("measuring each function's SLO (solo p99 + margin)"):
        try:
            slo_s = measure_slos(settings, workload)
        except AssemblyError as error:
            raise UsageProblem(str(error)) from None
    ticks = tick_count(settings)
    started = time.perf_counter()
    with Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        tasks = {spec.name: progress.add_task(spec.name, total=ticks) for spec in specs}
        results = run_policies(settings, workload, slo_s, specs,
                               on_progress=lambda name, done: progress.update(tasks[name], completed=done))
    elapsed = time.perf_counter() - started
    outputs, overall = write_outputs(settings, workload, slo_s, results, command, specs)
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


def _log_level(verbose: bool) -> int:
    return logging.INFO if verbose else logging.WARNING


@click.command("simulate")
@click.option("--policy", help="Registered policy name [policy.name; default: openwhisk-default].")
@_batch_options(workers=False)
def simulate_command(policy: str | None, config: Path | None, sets: tuple[str, ...], verbose: bool,
                     **options: Any) -> None:
    """Run one policy on the embedded simulated cluster and report its metrics."""
    configure_logging(_log_level(verbose))
    settings = batch_settings(config, options, sets, {"policy.name": policy} if policy else {})
    execute(settings, [settings.policy.name], command_line(), f"{settings.policy.name} on the simulated cluster")


def parse_checkpoints(values: Sequence[str]) -> dict[str, Path]:
    """``--checkpoint NAME=PATH`` pairs: learned policy name -> checkpoint file (must exist)."""
    out: dict[str, Path] = {}
    learners = learned_policies()
    for item in values:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name or not raw.strip():
            raise click.BadParameter(f"expected NAME=PATH, got {item!r}", param_hint="--checkpoint")
        if name not in learners:
            raise click.BadParameter(f"{name!r} is not a learned policy (one of {', '.join(learners)})",
                                     param_hint="--checkpoint")
        path = Path(raw.strip())
        if not path.is_file():
            raise click.BadParameter(f"checkpoint file not found: {path}", param_hint="--checkpoint")
        out[name] = path
    return out


def compare_specs(names: Sequence[str], checkpoints: Mapping[str, Path], frozen: bool, greedy: bool) -> list[PolicySpec]:
    """The run's policies: ``names``, then any learner given a checkpoint but not named; learners carry
    their checkpoint and the ``frozen``/``greedy`` flags."""
    ordered = list(dict.fromkeys([*names, *checkpoints]))
    try:
        check_policy_names(ordered)
    except AssemblyError as error:
        raise UsageProblem(str(error)) from None
    return [
        PolicySpec(name, checkpoints.get(name), frozen, greedy) if learns(name) else PolicySpec(name)
        for name in ordered
    ]


@click.command("compare")
@click.option("--policies", help="Comma-separated policy names [policy.compare; default: every baseline].")
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="NAME=PATH",
              help="Start learned policy NAME (nac-linear, nac-nn) from a checkpoint; adds it to the "
                   "comparison (repeatable).")
@click.option("--frozen", is_flag=True, default=False,
              help="Learned policies only decide; without it they keep learning online, as in the paper.")
@click.option("--greedy", is_flag=True, default=False,
              help="Learned policies take their most probable move instead of sampling one.")
@_batch_options()
def compare_command(policies: str | None, checkpoints: tuple[str, ...], frozen: bool, greedy: bool,
                    config: Path | None, sets: tuple[str, ...], verbose: bool, **options: Any) -> None:
    """Run several policies on the same simulated workload (same seed, same arrivals) and compare them."""
    configure_logging(_log_level(verbose))
    base = {"policy.compare": [p.strip() for p in policies.split(",") if p.strip()]} if policies else {}
    settings = batch_settings(config, options, sets, base)
    specs = compare_specs(settings.policy.compare, parse_checkpoints(checkpoints), frozen, greedy)
    if frozen and not any(s.learned and s.checkpoint for s in specs):
        log.warning("--frozen without --checkpoint: the learned policies stay at their initial (uniform) policy")
    execute(settings, specs, command_line(), "Policies on the same workload")


@click.command("demo")
@click.option("--checkpoints", "checkpoint_dir", type=click.Path(file_okay=False, path_type=Path),
              default=DEMO_CHECKPOINTS, show_default="checkpoints/paper-12 of the project",
              help="Folder of <policy>.ckpt.npz files the learners start from, frozen and greedy.")
@click.option("--from-scratch", is_flag=True, default=False,
              help="The learners start untrained and learn online during the demo instead.")
@_batch_options(DEMO_OVERRIDES)
def demo_command(checkpoint_dir: Path, from_scratch: bool, config: Path | None, sets: tuple[str, ...], verbose: bool,
                 **options: Any) -> None:
    """Compare every manager of ``policy.compare`` on the paper-scale simulated cluster (21 x 8 cores),
    the learners started from the shipped checkpoints."""
    configure_logging(_log_level(verbose))
    settings = batch_settings(config, options, sets, DEMO_OVERRIDES)
    execute(settings, demo_specs(settings.policy.compare, None if from_scratch else checkpoint_dir), command_line(),
            f"{settings.cluster.invokers} invokers x {settings.cluster.cores:g} cores, "
            f"{settings.workload.functions} functions, {settings.workload.minutes} min")


def demo_specs(names: Sequence[str], checkpoint_dir: Path | None) -> list[PolicySpec]:
    """The demo's policies: each learner from ``checkpoint_dir/<name>.ckpt.npz``, frozen and greedy,
    as the evaluation suite judges a trained learner; one without a file there (or every learner, with
    no folder) starts from scratch and learns online, and the log says so."""
    specs = []
    for name in names:
        if not learns(name) or checkpoint_dir is None:
            specs.append(PolicySpec(name))
            continue
        path = checkpoint_dir / f"{name}.ckpt.npz"
        if path.is_file():
            specs.append(PolicySpec(name, path, frozen=True, greedy=True))
        else:
            log.warning("%s: no checkpoint at %s; it starts from scratch and learns online "
                        "(scripts/train-checkpoints.sh makes the shipped ones)", name, path)
            specs.append(PolicySpec(name))
    return specs


__all__ = [
    "DEMO_CHECKPOINTS",
    "DEMO_OVERRIDES",
    "DEMO_POLICIES",
    "batch_settings",
    "compare_command",
    "compare_specs",
    "demo_command",
    "demo_specs",
    "execute",
    "parse_checkpoints",
    "simulate_command",
]
