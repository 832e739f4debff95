"""``mfrm train``: train a learned policy (NAC-Linear or NAC-NN) on the simulated cluster.

A training run is the control loop of ``mfrm simulate`` with one learned policy, over the trace
minutes [start_minute, start_minute + minutes), repeated for ``--episodes`` replays of that window
(each with its own arrival and simulator draws, the same functions and counts). The policy learns
online at every tick, exactly as in an evaluation run; training only adds the bookkeeping:

* the checkpoint ``--out`` (written atomically every ``loop.checkpoint_every_ticks`` ticks when
  set, and at the end however the run ends), which ``--resume`` continues from and
  ``mfrm compare --checkpoint NAME=PATH`` evaluates;
* beside it, ``<stem>.diagnostics.csv``: one row per tick with the learner's diagnostics
  (``transitions``, ``mean_reward``, ``losses/critic``, ``losses/actor``, ``approx_kl``,
  ``entropy``, ``explained_variance``, ... as ``feedback`` returned them) and what the tick looked
  like (mean reward, SLO-violation rate of its completions, containers, CPU shares);
* ``<stem>.training.png``: reward and SLO violations over the training ticks;
* ``<stem>.run.json``: the command, settings, seeds, the checkpoint the run resumed from, and the
  learner's cost (wall ms per ``decide`` and per update).

The stem is the checkpoint's file name without ``.npz`` (``runs/train/nac-nn.ckpt.npz`` gives
``runs/train/nac-nn.ckpt.diagnostics.csv``).
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import numpy as np

from controller.experiments import (
    LEARNED_POLICIES,
    PolicyParamsError,
    PolicySpec,
    RunSeeds,
    _command_line,
    _common_options,
    _configure_logging,
    _settings_from_cli,
    _versions,
    build_policy,
    build_workload,
    measure_slos,
    resolve_trace_dir,
    run_policy,
    tick_count,
)
from controller.loop import TickReport
from controller.settings import Settings
from controller.version import __version__

log = logging.getLogger(__name__)

#: Columns every diagnostics row starts with, in order; the learner's own keys follow, sorted.
BASE_COLUMNS: tuple[str, ...] = (
    "episode",
    "tick",
    "time_s",
    "tick_mean_reward",
    "tick_slo_violation_rate",
    "tick_completions",
    "containers",
    "mean_cpu_shares",
)


def episode_seeds(settings: Settings, episode: int) -> RunSeeds:
    """The seeds of training episode ``episode``: episode 0 is the run's own (what ``mfrm simulate``
    with the same settings draws); later episodes get fresh arrival and simulator draws from children
    of the run's seed, and keep the workload and SLO seeds, so every episode replays the same
    functions and counts."""
    seeds = RunSeeds.from_seed(settings.seed)
    if episode == 0:
        return seeds
    arrivals, cluster = np.random.SeedSequence(settings.seed, spawn_key=(1_000_000 + episode,)).spawn(2)
    return replace(
        seeds,
        arrivals=int(arrivals.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)),
        cluster=int(cluster.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)),
    )


class DiagnosticsRecorder:
    """A metrics sink keeping one row per tick: the learner's diagnostics and the tick's outcome."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.episode = 0
        """Episode the next rows belong to (set by the trainer)."""
        self.tick_offset = 0
        """Ticks trained before this episode (and before a resume), added to the loop's tick."""

    def on_tick(self, report: TickReport) -> None:
        fns = report.snapshot.functions
        finite = report.rewards[np.isfinite(report.rewards)]
        completions = float(np.nansum(fns.completions))
        violations = float(np.nansum(fns.slo_violations))
        containers = float(np.nansum(fns.containers))
        weighted_shares = float(np.nansum(fns.containers * fns.cpu_shares))
        row: dict[str, float] = {
            "episode": float(self.episode),
            "tick": float(self.tick_offset + report.tick + 1),
            "time_s": float(report.time_s),
            "tick_mean_reward": float(finite.mean()) if finite.size else float("nan"),
            "tick_slo_violation_rate": violations / completions if completions > 0 else float("nan"),
            "tick_completions": completions,
            "containers": containers,
            "mean_cpu_shares": weighted_shares / containers if containers > 0 else float("nan"),
        }
        row.update({key: float(value) for key, value in report.diagnostics.items()})
        self.rows.append(row)


def write_diagnostics(rows: Sequence[Mapping[str, float]], path: Path) -> Path:
    """The rows as CSV: :data:`BASE_COLUMNS`, then every diagnostics key seen in any row, sorted
    (a tick without a key, e.g. the first one, which has no transition yet, leaves it empty)."""
    extra = sorted({key for row in rows for key in row} - set(BASE_COLUMNS))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*BASE_COLUMNS, *extra], restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: (int(v) if key in ("episode", "tick") else repr(v)) for key, v in row.items()})
    return path


#: Ticks averaged per point of the training plot (30 ticks = 5 minutes at 10-s ticks).
PLOT_WINDOW_TICKS = 30


def plot_training(rows: Sequence[Mapping[str, float]], path: Path, title: str) -> Path:
    """Mean reward and SLO-violation rate over training ticks, averaged over blocks of ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from controller.report import _window_mean

    ticks = np.array([row["tick"] for row in rows], dtype=float)
    reward = np.array([row["tick_mean_reward"] for row in rows], dtype=float)
    violations = np.array([row["tick_slo_violation_rate"] for row in rows], dtype=float)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    if ticks.size:
        x = _window_mean(ticks, PLOT_WINDOW_TICKS)
        top.plot(x, _window_mean(reward, PLOT_WINDOW_TICKS))
        bottom.plot(x, 100 * _window_mean(violations, PLOT_WINDOW_TICKS))
    top.set_ylabel("mean reward per tick")
    bottom.set_ylabel("SLO violations (% of completions)")
    bottom.set_xlabel(f"training tick (means over {PLOT_WINDOW_TICKS} ticks)")
    top.set_title(title)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


class FileCheckpointer:
    """Saves one policy to one file (atomically, ``controller.checkpoint.save_checkpoint``), counting
    ticks across episodes and resumed runs."""

    def __init__(self, path: Path, tick_offset: int = 0) -> None:
        self.path = path
        self.tick_offset = tick_offset
        """Ticks trained before the current episode (added to the loop's own count)."""
        self.saved = 0
        """Checkpoints written."""

    def save(self, policy: Any, tick: int, now: float) -> Path:
        from controller.checkpoint import save_checkpoint

        self.saved += 1
        return save_checkpoint(self.path, policy, tick=self.tick_offset + tick, time_s=now)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    policy: Any
    """The trained policy object (as it is after the last tick)."""
    checkpoint: Path
    """The checkpoint file, saved after the last tick."""
    diagnostics_csv: Path
    """Per-tick diagnostics."""
    plot: Path | None
    """Reward and SLO violations over time (None when plots are off)."""
    run_json: Path
    """Settings, seeds, resume source, learner cost."""
    rows: tuple[Mapping[str, float], ...]
    """The diagnostics rows (this run's ticks only)."""
    ticks_before: int
    """Ticks the checkpoint had been trained for before this run (0 without ``resume``)."""
    decide_ms: float
    """Mean wall ms of ``decide`` per tick over the run."""
    update_ms: float
    """Mean wall ms of ``feedback`` (the update) per tick over the run."""
    wall_s: float
    """Wall time of the training loop, s."""


def side_path(checkpoint: Path, suffix: str) -> Path:
    """A file beside ``checkpoint`` named after it: ``x.ckpt.npz`` + ``.diagnostics.csv`` -> ``x.ckpt.diagnostics.csv``."""
    stem = checkpoint.name.removesuffix(".npz")
    return checkpoint.with_name(stem + suffix)


def train_policy(settings: Settings, name: str, out: Path, *, resume: bool = False, episodes: int = 1,
                 command: str = "", on_tick: Callable[[int], None] | None = None) -> TrainResult:
    """Train learned policy ``name`` on the workload of ``settings`` for ``episodes`` replays; save to ``out``.

    With ``resume`` and an existing ``out`` the policy starts from that checkpoint (refused, with
    the reason, when it does not fit) and the tick count continues from it. ``on_tick`` gets the
    number of ticks done in this run (for a progress bar).
    """
    from controller.checkpoint import load_checkpoint

    if name not in LEARNED_POLICIES:
        raise ValueError(f"policy {name!r} does not learn; train one of {', '.join(LEARNED_POLICIES)}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    policy = build_policy(settings, PolicySpec(name))  # first: a parameter typo stops before any work
    workload = build_workload(settings)
    slo_s = measure_slos(settings, workload)
    ticks_before = 0
    resumed_from = None
    if resume and out.is_file():
        loaded = load_checkpoint(out, policy)
        ticks_before = int(loaded.header.get("tick", 0))
        resumed_from = {"path": str(out), "tick": ticks_before, "settings_differences": list(loaded.settings_differences)}
    elif resume:
        log.warning("--resume: %s does not exist yet; training starts from the initial policy", out)
    recorder = DiagnosticsRecorder()
    checkpointer = FileCheckpointer(out, ticks_before)
    per_episode = tick_count(settings)
    decide_ms, update_ms = [], []
    started = time.perf_counter()
    csv_path = side_path(out, ".diagnostics.csv")
    try:
        for episode in range(episodes):
            recorder.episode = episode
            recorder.tick_offset = checkpointer.tick_offset = ticks_before + episode * per_episode
            done_before = episode * per_episode
            result = run_policy(
                settings, workload, slo_s, name, policy=policy, checkpointer=checkpointer, sinks=[recorder],
                seeds=episode_seeds(settings, episode),
                on_tick=(lambda done, base=done_before: on_tick(base + done)) if on_tick else None,
            )
            decide_ms.append(result.decide_ms)
            update_ms.append(result.update_ms)
    finally:
        # Whatever happened, the ticks trained so far are on disk (the checkpoint itself is saved by
        # run_policy at the end of every episode).
        write_diagnostics(recorder.rows, csv_path)
    wall_s = time.perf_counter() - started
    plot = None
    if settings.output.plots:
        plot = plot_training(recorder.rows, side_path(out, ".training.png"),
                             f"{name} training: {settings.workload.functions} functions, minutes "
                             f"{settings.workload.start_minute}-{settings.workload.start_minute + settings.workload.minutes}")
    run_json = side_path(out, ".run.json")
    meta = {
        "command": command,
        "policy": name,
        "seed": settings.seed,
        "policy_seed": RunSeeds.from_seed(settings.seed).policy_seed(name),
        "episodes": episodes,
        "ticks_per_episode": per_episode,
        "ticks_before": ticks_before,
        "ticks_after": ticks_before + episodes * per_episode,
        "resumed_from": resumed_from,
        "decide_ms": float(np.mean(decide_ms)),
        "update_ms": float(np.mean(update_ms)),
        "wall_s": wall_s,
        "policy_settings": getattr(policy, "settings_record", {}),
        "settings": settings.logged(),
        "trace_dir": str(resolve_trace_dir(settings)),
        "functions": [{"name": f.name, "profile": f.profile.name, "trace_id": f.trace_id,
                       "invocations": int(f.counts_per_minute.sum()), "slo_s": float(s)}
                      for f, s in zip(workload.functions, slo_s)],
        "versions": _versions(),
    }
    run_json.parent.mkdir(parents=True, exist_ok=True)
    run_json.write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    return TrainResult(
        policy=policy, checkpoint=out, diagnostics_csv=csv_path, plot=plot, run_json=run_json,
        rows=tuple(recorder.rows), ticks_before=ticks_before, decide_ms=float(np.mean(decide_ms)),
        update_ms=float(np.mean(update_ms)), wall_s=wall_s,
    )


def summary(rows: Sequence[Mapping[str, float]], fraction: float = 0.1) -> dict[str, float]:
    """Mean reward and SLO-violation rate over the first and the last ``fraction`` of the ticks."""
    n = max(1, int(len(rows) * fraction))

    def mean(key: str, part: Sequence[Mapping[str, float]]) -> float:
        values = np.array([row[key] for row in part], dtype=float)
        values = values[np.isfinite(values)]
        return float(values.mean()) if values.size else float("nan")

    return {
        "reward_first": mean("tick_mean_reward", rows[:n]),
        "reward_last": mean("tick_mean_reward", rows[-n:]),
        "slo_violations_first": mean("tick_slo_violation_rate", rows[:n]),
        "slo_violations_last": mean("tick_slo_violation_rate", rows[-n:]),
    }


@click.command("train")
@click.option("--policy", "policy_name", type=click.Choice(list(LEARNED_POLICIES)), required=True,
              help="The learned policy to train.")
@click.option("--episodes", type=int, default=1, show_default=True,
              help="Replays of the trace window (each with fresh arrival and simulator draws).")
@click.option("--resume", is_flag=True, default=False,
              help="Continue from the checkpoint --out when it exists (else start from scratch).")
@functools.partial(_common_options, out_file=True)
def train_command(policy_name: str, episodes: int, resume: bool, config: Path | None, sets: tuple[str, ...],
                  verbose: bool, **options: Any) -> None:
    """Train a learned policy on the simulated cluster; write its checkpoint, diagnostics and a plot.

    --out is the checkpoint file (default runs/train/POLICY.ckpt.npz); the diagnostics CSV, the
    plot and run.json are written beside it.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    _configure_logging(verbose)
    out_option = options.pop("out", None)
    settings = _settings_from_cli(config, options, sets)
    out = Path(out_option) if out_option is not None else Path("runs/train") / f"{policy_name}.ckpt.npz"
    if episodes < 1:
        raise click.BadParameter(f"must be >= 1, got {episodes}", param_hint="--episodes")
    console = Console(stderr=True)
    console.log(f"mfrm {__version__}: training {policy_name} on {settings.workload.functions} functions, "
                f"minutes {settings.workload.start_minute}-{settings.workload.start_minute + settings.workload.minutes}, "
                f"load x{settings.workload.rate_scale:g}, {episodes} episode(s), seed {settings.seed}")
    total = episodes * tick_count(settings)
    from controller.checkpoint import CheckpointError

    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console) as progress:
            task = progress.add_task(f"{policy_name} ticks", total=total)
            result = train_policy(settings, policy_name, out, resume=resume, episodes=episodes,
                                  command=_command_line(),
                                  on_tick=lambda done: progress.update(task, completed=done))
    except (CheckpointError, PolicyParamsError) as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:
        raise click.ClickException(f"cannot train on this workload and cluster: {error}") from None
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


__all__ = [
    "BASE_COLUMNS",
    "DiagnosticsRecorder",
    "FileCheckpointer",
    "TrainResult",
    "episode_seeds",
    "plot_training",
    "side_path",
    "summary",
    "train_command",
    "train_policy",
    "write_diagnostics",
]
