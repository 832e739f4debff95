"""Training a learner (NAC-Linear or NAC-NN) on the simulated cluster: the library behind ``mfrm train``.

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
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.assemble import (
    AssemblyError,
    PolicySpec,
    RunSeeds,
    build_policy,
    build_workload,
    measure_slos,
    resolve_trace_dir,
    tick_count,
)
from controller.checkpoint import Checkpointer
from controller.loop import TickReport
from controller.runner import run_policy, versions
from controller.settings import Settings
from controller.warm_fit import fit_warm_start
from policies.registry import learned_policies, learns

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


#: Folder beside a checkpoint where a fitted warm start's plays of the training window are kept
#: (``controller.warm_fit``), so that training the same window again, or at another α, reuses them.
WARM_FIT_CACHE = "warm-fit-plays"


def episode_seeds(settings: Settings, episode: int) -> RunSeeds:
    """The seeds of training episode ``episode`` (``controller.assemble.RunSeeds.episode``): episode 0
    is the run's own (what ``mfrm simulate`` with the same settings draws)."""
    return RunSeeds.from_seed(settings.seed).episode(settings.seed, episode)


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

    from controller.report import window_mean

    ticks = np.array([row["tick"] for row in rows], dtype=float)
    reward = np.array([row["tick_mean_reward"] for row in rows], dtype=float)
    violations = np.array([row["tick_slo_violation_rate"] for row in rows], dtype=float)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    if ticks.size:
        x = window_mean(ticks, PLOT_WINDOW_TICKS)
        top.plot(x, window_mean(reward, PLOT_WINDOW_TICKS))
        bottom.plot(x, 100 * window_mean(violations, PLOT_WINDOW_TICKS))
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
                 command: str = "", on_tick: Callable[[int], None] | None = None,
                 on_level: Callable[[str], None] | None = None) -> TrainResult:
    """Train learned policy ``name`` on the workload of ``settings`` for ``episodes`` replays; save to ``out``.

    With ``resume`` and an existing ``out`` the policy starts from that checkpoint (refused, with
    the reason, when it does not fit) and the tick count continues from it. ``on_tick`` gets the
    number of ticks done in this run (for a progress bar); ``on_level`` each pool level a fitted warm
    start plays before the first episode.
    """
    if not learns(name):
        raise AssemblyError(f"policy {name!r} does not learn; train one of {', '.join(learned_policies())}")
    if episodes < 1:
        raise AssemblyError(f"episodes must be >= 1, got {episodes}")
    policy = build_policy(settings, PolicySpec(name))  # first: a parameter typo stops before any work
    workload = build_workload(settings)
    slo_s = measure_slos(settings, workload)
    checkpointer = Checkpointer(out)
    ticks_before = 0
    resumed_from = None
    if resume and out.is_file():
        loaded = checkpointer.load(policy)
        ticks_before = int(loaded.header.get("tick", 0))
        resumed_from = {"path": str(out), "tick": ticks_before, "settings_differences": list(loaded.settings_differences)}
    elif resume:
        log.warning("--resume: %s does not exist yet; training starts from the initial policy", out)
    warm_fit = None
    if resumed_from is None and getattr(getattr(policy, "agent", None), "warm_start", "none") == "fitted":
        # The plays are kept beside the checkpoint: learners of the same window at other α reuse them.
        try:
            warm_fit = fit_warm_start(settings, name, policy, workload, slo_s, episode_seeds(settings, 0),
                                      on_level=on_level, cache=out.parent / WARM_FIT_CACHE)
        except ValueError as error:
            raise AssemblyError(str(error)) from None
    recorder = DiagnosticsRecorder()
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
        "warm_start_fit": warm_fit.record() if warm_fit is not None else None,
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
        "versions": versions(),
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


__all__ = [
    "BASE_COLUMNS",
    "DiagnosticsRecorder",
    "TrainResult",
    "episode_seeds",
    "plot_training",
    "side_path",
    "summary",
    "train_policy",
    "write_diagnostics",
]
