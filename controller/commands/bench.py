"""``mfrm bench``: the evaluation suite — scenarios × policies × knob values × seeds — and its verdicts.

Writes to ``--out``: ``results.csv`` (one row per cell, sorted; the numbers), ``summary.csv`` (each
point's means and spreads over seeds), ``dominance.csv`` (every pair of points, seed-paired, on both
planes), ``dominance.md`` (the learners' and each family's default, readable), one
``frontier-<scenario>.png`` per scenario, ``timings.csv`` and ``bench.json`` (what ran, with which
versions). Rerunning with the same ``--out`` skips every finished cell.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import click

from controller.bench.analysis import (
    acceptance_rows,
    acceptance_table,
    dominance_rows,
    dominance_table,
    plot_frontiers,
    read_rows,
    safety_rows,
    safety_table,
    summarise,
    write_csv,
)
from controller.bench.cells import Cell
from controller.bench.execute import CellFailed, Executor, LocalExecutor, RayExecutor, ResultStore, run_suite
from controller.bench.scenarios import ScenarioError, load_scenario, shipped_scenarios
from controller.bench.suite import (
    FAMILIES,
    LEARNER_SCHEME,
    LEARNER_SCHEMES,
    LEARNER_WARM_STARTS,
    suite_points,
)
from controller.commands.options import UsageProblem, command_line, configure_logging, parse_set
from controller.runner import versions

log = logging.getLogger(__name__)

#: Seeds of a run when ``--seeds`` is not given: five, the fewest a paired comparison is reported on.
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)


def _shown(path: Path) -> str:
    """A file as the record names it: relative to the working directory when it lies under it (the
    record then holds no path of the machine that made it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def parse_seeds(text: str | None) -> tuple[int, ...]:
    """``--seeds``: a comma-separated list of seeds and ranges, e.g. ``0-4`` or ``0,1,7``."""
    if text is None:
        return DEFAULT_SEEDS
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            values = range(int(low), int(high) + 1) if dash else [int(part)]
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a seed or a range like 0-4", param_hint="--seeds") from None
        if dash and int(high) < int(low):
            raise click.BadParameter(f"{part!r}: a range runs from low to high", param_hint="--seeds")
        seeds.extend(values)
    if not seeds or any(s < 0 for s in seeds):
        raise click.BadParameter("seeds are whole numbers >= 0", param_hint="--seeds")
    return tuple(dict.fromkeys(seeds))


@click.command("bench")
@click.argument("scenario_files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--quick", is_flag=True, default=False,
              help="Each scenario's short windows (every point still runs: the docs' headline table).")
@click.option("--seeds", "seed_values", metavar="LIST",
              help="Seeds, paired across points: a list and ranges, e.g. 0-4 or 0,1,7 [default: 0-4].")
@click.option("--families", help=f"Comma-separated families to run [default: all: {', '.join(FAMILIES)}].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder; a rerun skips finished cells [default: runs/bench, or runs/bench-quick].")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Local worker processes.")
@click.option("--ray", "ray_address", metavar="ADDRESS",
              help="Run the cells as Ray tasks on this cluster (host:port, auto, or local); needs mfrm[ray].")
@click.option("--episodes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Training episodes of each learner over its scenario's training window.")
@click.option("--learner-scheme", type=click.Choice(LEARNER_SCHEMES), default=LEARNER_SCHEME, show_default=True,
              help="Action scheme of the learner points (portfolio: ENSURE's constants or the KPA, per function); "
                   "a point run with another scheme than the default is labelled with it.")
@click.option("--learner-warm-start", type=click.Choice(LEARNER_WARM_STARTS), default="none", show_default=True,
              help="Where the trained learner points start: none (the uniform policy), ensure, kpa (portfolio "
                   "scheme), twins (with --learner-param twin_features=true: each function's level drawn by its "
                   "regret in the level twins) or fitted (each function's cheapest level on the training window, "
                   "played and fitted before the first episode); such points are labelled with it. The online points keep ENSURE's.")
@click.option("--learner-param", "learner_param_values", multiple=True, metavar="KEY=VALUE",
              help="One more parameter of every trained learner point (repeatable), e.g. fit_cold_starts=ensure, or of "
                   "one learner's, e.g. nac-linear.policy_lr=0.01; such points are labelled with it. The "
                   "baselines' cells are untouched.")
@click.option("-v", "--verbose", is_flag=True, default=False, help="Log at INFO.")
def bench_command(scenario_files: tuple[Path, ...], quick: bool, seed_values: str | None, families: str | None,
                  out: Path | None, workers: int, ray_address: str | None, episodes: int,
                  learner_scheme: str, learner_warm_start: str, learner_param_values: tuple[str, ...],
                  verbose: bool) -> None:
    """Run the evaluation suite: every scenario (default: the shipped ones), every family swept over
    its knob, the learners, over paired seeds; write results, frontiers and the dominance table."""
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
    # The per-function notes of each run (the guard's first cut of each function) are silenced by the
    # cells themselves (controller.bench.execute.loop_notes_silenced): the results count them.
    files = list(scenario_files) or shipped_scenarios()
    if not files:
        raise UsageProblem("no scenario files given, and none shipped in scenarios/")
    try:
        scenarios = [load_scenario(path) for path in files]
    except ScenarioError as error:
        raise UsageProblem(str(error)) from None
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise UsageProblem(f"two scenario files share a name: {sorted(n for n in set(names) if names.count(n) > 1)}")
    try:
        learner_params = parse_set(learner_param_values, "--learner-param")
        points = suite_points([f.strip() for f in families.split(",")] if families else None, learner_scheme,
                              learner_warm_start, learner_params)
    except ValueError as error:
        raise UsageProblem(f"--families, --learner-scheme, --learner-warm-start or --learner-param: {error}") from None
    seeds = parse_seeds(seed_values)
    out = out or Path("runs/bench-quick" if quick else "runs/bench")
    cells = [Cell(scenario, point, seed, quick=quick, episodes=episodes)
             for scenario in scenarios for point in points for seed in seeds]
    executor: Executor = RayExecutor(ray_address) if ray_address else LocalExecutor(workers)
    console = Console(stderr=True)
    console.log(f"mfrm bench: {len(scenarios)} scenarios x {len(points)} points x {len(seeds)} seeds = {len(cells)} "
                f"cells{' (quick)' if quick else ''} -> {out}")
    started = time.perf_counter()
    try:
        with Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console) as progress:
            tasks: dict[str, Any] = {}

            def on_progress(phase: str, done: int, total: int) -> None:
                label = "training learners" if phase == "train" else "judging cells"
                if phase not in tasks:
                    tasks[phase] = progress.add_task(label, total=total)
                progress.update(tasks[phase], completed=done)

            results = run_suite(cells, out, executor, on_progress)
    except CellFailed as error:  # one line and exit 1; the cells finished before it are kept
        raise click.ClickException(f"{error} (finished cells are kept in {out}; rerun to resume)") from None
    except ValueError as error:  # e.g. an --out written by another version of the suite
        raise UsageProblem(str(error)) from None
    finally:
        if isinstance(executor, RayExecutor):
            executor.close()
    wall_s = time.perf_counter() - started
    rows = read_rows(results)
    summaries = summarise(rows)
    summary_rows = [{"scenario": p.scenario, "family": p.family, "point": p.point, "default": p.default,
                     "seeds": len(p.seeds), **{f"{k}_mean": v for k, v in p.means.items()},
                     **{f"{k}_sd": v for k, v in p.sds.items()}} for ps in summaries.values() for p in ps]
    write_csv(summary_rows, out / "summary.csv")
    write_csv(dominance_rows(summaries), out / "dominance.csv")
    learners = [f for f in FAMILIES if f.startswith("nac-")]
    (out / "dominance.md").write_text(dominance_table(summaries, learners), encoding="utf-8")
    verdicts = acceptance_rows(summaries, learners)
    write_csv(verdicts, out / "beyond.csv")
    (out / "beyond.md").write_text(acceptance_table(verdicts), encoding="utf-8")
    safety = safety_rows(ResultStore(out).windows(cells), [p.label for p in points if p.learned and p.mode == "online"])
    write_csv(safety, out / "safety.csv")
    (out / "safety.md").write_text(safety_table(safety), encoding="utf-8")
    plots = [plot_frontiers(summaries[s.name], s.name, s.description, out / f"frontier-{s.name}.png")
             for s in scenarios if s.name in summaries]
    (out / "bench.json").write_text(json.dumps({
        "command": command_line(), "quick": quick, "seeds": list(seeds), "points": [p.label for p in points],
        "scenarios": [{"name": s.name, "file": _shown(s.path),
                       "sha256": hashlib.sha256(s.path.read_bytes()).hexdigest()} for s in scenarios],
        "cells": len(cells), "wall_s_this_run": wall_s, "versions": versions(),
    }, indent=2), encoding="utf-8")
    click.echo(f"{len(cells)} cells in {wall_s:.0f} s")
    for name in ("results.csv", "summary.csv", "dominance.csv", "dominance.md", "beyond.md", "windows.csv", "safety.md"):
        click.echo(f"{name:<14} {out / name}")
    for plot in plots:
        click.echo(f"plot           {plot}")


__all__ = ["DEFAULT_SEEDS", "bench_command", "parse_seeds"]
