"""``mfrm train``: train a learner (NAC-Linear or NAC-NN) on the simulated cluster (``controller.training``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click

from controller.assemble import AssemblyError, tick_count
from controller.bench.scenarios import ScenarioError, load_scenario
from controller.checkpoint import CheckpointError
from controller.commands.options import (
    RUN_OPTIONS,
    UsageProblem,
    command_line,
    config_options,
    configure_logging,
    load,
    overrides_from,
    setting_options,
)
from controller.training import summary, train_policy
from controller.version import __version__
from policies.registry import learned_policies


@click.command("train")
@click.option("--policy", "policy_name", type=click.Choice(list(learned_policies())), required=True,
              help="The learner to train.")
@click.option("--episodes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Replays of the trace window (each with fresh arrival and simulator draws).")
@click.option("--resume", is_flag=True, default=False,
              help="Continue from the checkpoint --out when it exists (else start from scratch).")
@click.option("--overwrite", is_flag=True, default=False,
              help="Replace an existing checkpoint --out with a policy trained from scratch.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint file [default: runs/train/POLICY.ckpt.npz]; diagnostics, plot and run.json are "
                   "written beside it.")
@click.option("--scenario", type=click.Path(dir_okay=False, path_type=Path),
              help="Train on this scenario file's training window (and training half of its functions), as "
                   "mfrm bench does, instead of the settings of --config.")
@click.option("--no-plots", is_flag=True, default=False, help="Skip the PNG plot.")
@click.option("-v", "--verbose", is_flag=True, default=False, help="Log every applied change.")
@setting_options(RUN_OPTIONS)
@config_options
def train_command(policy_name: str, episodes: int, resume: bool, overwrite: bool, out: Path | None,
                  scenario: Path | None, no_plots: bool, verbose: bool, config: Path | None, sets: tuple[str, ...], **options: Any) -> None:
    """Train a learner on the simulated cluster; write its checkpoint, diagnostics and a plot."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    configure_logging(logging.INFO if verbose else logging.WARNING)
    overrides = overrides_from(options, RUN_OPTIONS, sets)
    if no_plots:
        overrides["output.plots"] = False
    if scenario is not None:
        if config is not None:
            raise UsageProblem("--scenario and --config both give the settings: pass one of them")
        try:
            settings = load_scenario(scenario).settings("train", False, overrides)
        except ScenarioError as error:
            raise UsageProblem(str(error)) from None
    else:
        settings = load(config, overrides)
    out = out if out is not None else Path("runs/train") / f"{policy_name}.ckpt.npz"
    if out.is_dir():
        raise UsageProblem(f"--out {out} is a folder; give the checkpoint's file name")
    if out.exists() and not (resume or overwrite):
        raise UsageProblem(f"--out {out} already holds a checkpoint: pass --resume to continue training it, "
                           "--overwrite to replace it, or another --out")
    console = Console(stderr=True)
    console.log(f"mfrm {__version__}: training {policy_name} on {settings.workload.functions} functions, "
                f"minutes {settings.workload.start_minute}-{settings.workload.start_minute + settings.workload.minutes}, "
                f"load x{settings.workload.rate_scale:g}, {episodes} episode(s), seed {settings.seed}")
    total = episodes * tick_count(settings)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console) as progress:
            task = progress.add_task(f"{policy_name} ticks", total=total)
            result = train_policy(settings, policy_name, out, resume=resume, episodes=episodes,
                                  command=command_line(),
                                  on_tick=lambda done: progress.update(task, completed=done,
                                                                       description=f"{policy_name} ticks"),
                                  on_level=lambda level: progress.update(
                                      task, description=f"{policy_name} warm start: playing {level}"))
    except (AssemblyError, CheckpointError) as error:
        raise UsageProblem(str(error)) from None
    figures = summary(result.rows)
    click.echo(f"trained {policy_name}: ticks {result.ticks_before} -> {result.ticks_before + total} "
               f"in {result.wall_s:.1f} s ({result.decide_ms:.2f} ms per decide, {result.update_ms:.2f} ms per update)")
    click.echo(f"mean reward first/last 10%: {figures['reward_first']:.3f} / {figures['reward_last']:.3f}; "
               f"SLO violations first/last 10%: {100 * figures['slo_violations_first']:.2f}% / "
               f"{100 * figures['slo_violations_last']:.2f}%")
    click.echo(f"checkpoint:  {result.checkpoint}")
    click.echo(f"diagnostics: {result.diagnostics_csv}")
    if result.plot is not None:
        click.echo(f"plot:        {result.plot}")
    click.echo(f"run:         {result.run_json}")


__all__ = ["train_command"]
