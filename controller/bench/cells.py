"""One cell of the evaluation suite: a scenario, a point (a policy at a knob value), a seed.

A cell is a pure function of its inputs: the same cell gives the same row in any process, on any
machine of the same platform, locally or as a Ray task. Learners are trained first, on the
scenario's training window (and training half of the functions, when it splits them), into a
checkpoint that every evaluation cell of the same (scenario, learner, seed) starts from.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.assemble import PolicySpec, build_workload, measure_slos
from controller.bench.scenarios import Scenario
from controller.bench.suite import Point
from controller.costs import COST_COLUMNS
from controller.report import overall_metrics
from controller.runner import run_policy
from controller.settings import Settings

#: Columns of a result row that name the cell, before the metrics (``controller.costs``).
CELL_COLUMNS: tuple[str, ...] = ("scenario", "family", "point", "policy", "knob", "value", "default", "seed", "functions")
#: Every column of a result row, in order.
RESULT_COLUMNS: tuple[str, ...] = (*CELL_COLUMNS, *(key for key, _ in COST_COLUMNS))


@dataclass(frozen=True)
class Cell:
    """A scenario, a point and a seed: one row of results."""

    scenario: Scenario
    """Where it runs."""
    point: Point
    """What decides, at which knob value."""
    seed: int
    """The run's seed (arrivals, simulator draws, the policy's draws): paired across points."""
    quick: bool = False
    """The scenario's shortened windows."""
    episodes: int = 1
    """Training episodes of a learner over the training window."""

    def settings(self, part: str = "evaluate") -> Settings:
        """The cell's settings for its ``train`` or ``evaluate`` run."""
        overrides = self.point.overrides
        if part == "train" and self.point.training is not None:
            overrides = self.point.training
        return self.scenario.settings(part, self.quick, {**overrides, "seed": self.seed,
                                                         "output.plots": False, "output.workers": 1})

    def key(self) -> str:
        """A digest of everything that decides the cell's row: rerunning a cell with this key is never
        needed, and a changed scenario file or setting gives a new key rather than a stale row."""
        parts = {"scenario": self.scenario.name, "point": self.point.label, "seed": self.seed, "quick": self.quick,
                 "settings": self.settings().logged(), "mode": self.point.mode if self.point.learned else ""}
        if self.point.needs_training:
            parts["train"] = self.settings("train").logged()
            parts["episodes"] = self.episodes
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def training_key(self) -> str:
        """A digest of what decides a learner's checkpoint (its training settings and episodes)."""
        parts = {"scenario": self.scenario.name, "policy": self.point.policy, "seed": self.seed,
                 "train": self.settings("train").logged(), "episodes": self.episodes}
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def checkpoint_path(self, directory: Path) -> Path:
        """Where the learner's trained checkpoint is kept, named by what decides it (so points that
        train alike — a learner judged frozen and online — share one)."""
        return directory / self.scenario.name / f"{self.point.policy}-seed{self.seed}-{self.training_key()}.ckpt.npz"


def train_cell(cell: Cell, directory: Path) -> dict[str, Any]:
    """Train the cell's learner on the training window, unless its checkpoint already exists; returns
    where it is and how long training took (0 when it existed)."""
    from controller.training import side_path, train_policy

    path = cell.checkpoint_path(directory)
    if path.is_file():
        return {"checkpoint": str(path), "train_wall_s": 0.0}
    started = time.perf_counter()
    # A name of its own per attempt: a retried task may overlap the first one still writing.
    partial = path.with_name(path.name.replace(".ckpt.npz", f".partial-{os.getpid()}-{time.time_ns()}.ckpt.npz"))
    train_policy(cell.settings("train"), cell.point.policy, partial, episodes=cell.episodes)
    for suffix in (".diagnostics.csv", ".run.json"):  # the training's record, beside its checkpoint
        side_path(partial, suffix).replace(side_path(path, suffix))
    partial.replace(path)  # last: a checkpoint under its final name is always a finished one
    return {"checkpoint": str(path), "train_wall_s": time.perf_counter() - started}


def run_cell(cell: Cell, checkpoint: str | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Judge the cell's point on the evaluation window: its result row and its timings."""
    settings = cell.settings()
    started = time.perf_counter()
    workload = build_workload(settings)
    slo_s = measure_slos(settings, workload)
    mode = cell.point.mode
    spec = PolicySpec(cell.point.policy, Path(checkpoint) if checkpoint else None, frozen=mode != "online",
                      greedy=mode in ("trained", "warm-start")) if cell.point.learned else PolicySpec(cell.point.policy)
    fallback = _FallbackRecorder()
    result = run_policy(settings, workload, slo_s, spec, save_learner=False, sinks=[fallback])
    metrics = overall_metrics(result)
    row: dict[str, Any] = {
        "scenario": cell.scenario.name, "family": cell.point.family, "point": cell.point.label,
        "policy": cell.point.policy, "knob": cell.point.knob,
        "value": "" if cell.point.value is None else repr(cell.point.value),
        "default": str(cell.point.default).lower(), "seed": cell.seed, "functions": len(workload.functions),
    }
    row.update({key: metrics[key] for key, _ in COST_COLUMNS})
    timing = {"wall_s": time.perf_counter() - started, "decide_ms": result.decide_ms, "update_ms": result.update_ms,
              "windows": window_rows(result, fallback.active_times)}
    return row, timing


#: Length of the windows online learning is judged over (the safety check), s.
SAFETY_WINDOW_S = 600.0


class _FallbackRecorder:
    """Notes the ticks at which a learner's fallback was active (from its diagnostics)."""

    def __init__(self) -> None:
        self.active_times: list[float] = []

    def on_tick(self, report: Any) -> None:
        if report.diagnostics.get("fallback_active", 0.0) >= 1.0:
            self.active_times.append(float(report.time_s))


def window_rows(result: Any, fallback_times: list[float], window_s: float = SAFETY_WINDOW_S) -> list[dict[str, Any]]:
    """Per window of ``window_s`` of the run: invocations completed, SLO violations among them, and
    whether a learner's fallback was active at any tick of it."""
    if result.times_s.size == 0:
        return []
    end = float(result.times_s[-1])
    count = max(1, int(np.ceil(end / window_s)))
    # A completion belongs to the window it ended in.
    index = result.function_index
    over = result.latency_s > result.slo_s[index] if index.size else np.zeros(0, dtype=bool)
    done_at = result.end_s
    which = np.minimum((done_at // window_s).astype(np.int64), count - 1) if done_at.size else np.zeros(0, dtype=np.int64)
    completed = np.bincount(which, minlength=count)
    violations = np.bincount(which, weights=over.astype(float), minlength=count)
    active = np.zeros(count, dtype=bool)
    for t in fallback_times:
        active[min(int((t - 1e-9) // window_s), count - 1)] = True
    return [{"window": w, "completed": int(completed[w]), "violations": int(violations[w]),
             "fallback_active": bool(active[w])} for w in range(count)]


__all__ = ["CELL_COLUMNS", "RESULT_COLUMNS", "Cell", "run_cell", "train_cell"]
