"""One cell of the evaluation suite: a scenario, a point (a policy at a knob value), a seed.

A cell is a pure function of its inputs: the same cell gives the same row in any process, on any
machine of the same platform, locally or as a Ray task. Learners are trained first, on the
scenario's training window (and training half of the functions, when it splits them), into a
checkpoint that every evaluation cell of the same (scenario, learner, seed) starts from.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    learn_online: bool = True
    """Learners keep learning while they are judged (the paper's setting); off: frozen."""
    episodes: int = 1
    """Training episodes of a learner over the training window."""

    def settings(self, part: str = "evaluate") -> Settings:
        """The cell's settings for its ``train`` or ``evaluate`` run."""
        return self.scenario.settings(part, self.quick, {**self.point.overrides, "seed": self.seed,
                                                         "output.plots": False, "output.workers": 1})

    def key(self) -> str:
        """A digest of everything that decides the cell's row: rerunning a cell with this key is never
        needed, and a changed scenario file or setting gives a new key rather than a stale row."""
        parts = {"scenario": self.scenario.name, "point": self.point.label, "seed": self.seed, "quick": self.quick,
                 "settings": self.settings().logged(), "learn_online": self.learn_online}
        if self.point.learned:
            parts["train"] = self.settings("train").logged()
            parts["episodes"] = self.episodes
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def training_key(self) -> str:
        """A digest of what decides a learner's checkpoint (its training settings and episodes)."""
        parts = {"scenario": self.scenario.name, "policy": self.point.policy, "seed": self.seed,
                 "train": self.settings("train").logged(), "episodes": self.episodes}
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def checkpoint_path(self, directory: Path) -> Path:
        """Where the learner's trained checkpoint is kept (named by what decides it)."""
        return directory / self.scenario.name / f"{self.point.label}-seed{self.seed}-{self.training_key()}.ckpt.npz"


def train_cell(cell: Cell, directory: Path) -> dict[str, Any]:
    """Train the cell's learner on the training window, unless its checkpoint already exists; returns
    where it is and how long training took (0 when it existed)."""
    from controller.training import side_path, train_policy

    path = cell.checkpoint_path(directory)
    if path.is_file():
        return {"checkpoint": str(path), "train_wall_s": 0.0}
    started = time.perf_counter()
    partial = path.with_name(path.name.replace(".ckpt.npz", ".partial.ckpt.npz"))
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
    spec = PolicySpec(cell.point.policy, Path(checkpoint) if checkpoint else None, frozen=not cell.learn_online) \
        if cell.point.learned else PolicySpec(cell.point.policy)
    result = run_policy(settings, workload, slo_s, spec, save_learner=False)
    metrics = overall_metrics(result)
    row: dict[str, Any] = {
        "scenario": cell.scenario.name, "family": cell.point.family, "point": cell.point.label,
        "policy": cell.point.policy, "knob": cell.point.knob,
        "value": "" if cell.point.value is None else repr(cell.point.value),
        "default": str(cell.point.default).lower(), "seed": cell.seed, "functions": len(workload.functions),
    }
    row.update({key: metrics[key] for key, _ in COST_COLUMNS})
    timing = {"wall_s": time.perf_counter() - started, "decide_ms": result.decide_ms, "update_ms": result.update_ms}
    return row, timing


__all__ = ["CELL_COLUMNS", "RESULT_COLUMNS", "Cell", "run_cell", "train_cell"]
