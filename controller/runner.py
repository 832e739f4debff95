"""The batch runner: policies on the simulated cluster over a trace window, and their reports.

One run = one policy on the ``sim`` backend, driven by the control loop for the workload's minutes
(:func:`run_policy`). A comparison runs several policies on the *same* workload and the *same*
arrivals (every seed is derived from the one ``settings.seed``), in parallel worker processes
(:func:`run_policies`), and :func:`write_outputs` writes:

* ``overall.csv`` (one row per policy) and ``functions.csv`` (one row per policy and function);
* ``latency_cdf.png`` and ``timeseries.png`` (containers, CPU shares, invoker utilisation);
* ``run.json``: the command, the effective settings (secrets masked), the seeds, the workload, the
  SLOs, the versions of mfrm and its main libraries, and each run's wall time and learner cost.

A learner runs like any baseline; it gets its own seed derived from the run's seed, may start from
a checkpoint, keeps learning online during the run (the paper's setting) unless frozen, and is
saved to ``checkpoints/<policy>.ckpt.npz`` at the end (and every ``loop.checkpoint_every_ticks``
ticks when set). This module is a library: the commands in ``controller.commands`` call it.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import platform
import queue as queue_module
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from controller.assemble import (
    PolicySpec,
    RunSeeds,
    as_spec,
    attach_twin,
    build_loop,
    build_policy,
    build_sim_backend,
    resolve_trace_dir,
    tick_count,
)
from controller.checkpoint import Checkpointer
from controller.level_twins import attach_level_twins
from controller.loop import MetricsSink, tick_times
from controller.report import RunRecorder, RunResult
from controller.settings import Settings
from controller.version import __version__
from policies.types import is_learner

log = logging.getLogger(__name__)


def run_policy(settings: Settings, workload: Any, slo_s: np.ndarray, policy_name: str | PolicySpec,
               on_tick: Callable[[int], None] | None = None, *, policy: Any = None,
               checkpointer: Checkpointer | None = None, sinks: Sequence[MetricsSink] = (),
               seeds: RunSeeds | None = None, save_learner: bool = True) -> RunResult:
    """One policy on the simulated cluster over the whole workload.

    ``policy`` is a pre-built policy object (e.g. a learner resumed from a checkpoint); None builds
    ``policy_name`` with ``controller.assemble.build_policy``. A learner is saved when the run
    ends, however it ends, and every ``loop.checkpoint_every_ticks`` ticks when that is set: through
    ``checkpointer`` when given, else into ``output.out_dir/checkpoints``. ``sinks`` get every tick's
    report. ``seeds`` replaces the run's arrival and simulator seeds (another episode over the same
    workload); None derives them from ``settings.seed``. ``on_tick`` gets the ticks done so far.
    ``save_learner=False`` writes no checkpoint at all (an evaluation that keeps nothing).
    """
    spec = as_spec(policy_name)
    seeds = seeds or RunSeeds.from_seed(settings.seed)
    backend = build_sim_backend(settings, workload, slo_s, seeds=seeds)
    inner = policy if policy is not None else build_policy(settings, spec)
    attach_twin(inner, settings, workload, slo_s, seeds)
    attach_level_twins(inner, settings, workload, slo_s, seeds)
    recorder = RunRecorder()
    if is_learner(inner) and checkpointer is None:
        checkpointer = Checkpointer.in_directory(settings.output.out_dir / "checkpoints", spec.name)
    if not is_learner(inner) or not save_learner:
        checkpointer = None
    loop = build_loop(settings, backend, inner, sinks=[recorder, *sinks], checkpointer=checkpointer)
    started = time.perf_counter()
    try:
        loop.run(tick_times(0.0, settings.loop.tick_s, tick_count(settings)),
                 on_tick=(lambda report: on_tick(report.tick + 1)) if on_tick else None)
    finally:
        if checkpointer is not None and loop.counters.ticks > 0:
            checkpointer.save(inner, loop.counters.ticks, backend.time_s)
    records = backend.records()
    held = backend.totals().functions
    ticks = max(loop.counters.ticks, 1)
    return recorder.result(
        spec.name,
        latency_s=records["end_s"] - records["arrival_s"],
        end_s=records["end_s"],
        function_index=records["fn"],
        cold=records["cold"],
        held={"arrivals": held.arrivals, "unfinished": held.queued + held.in_flight, "dropped": held.dropped,
              "memory_mb_s": held.memory_mb_s, "idle_memory_mb_s": held.idle_memory_mb_s,
              "container_s": held.container_s},
        wall_s=time.perf_counter() - started,
        decide_ms=1000.0 * loop.counters.decide_s / ticks,
        update_ms=1000.0 * loop.counters.feedback_s / ticks,
    )


# --------------------------------------------------------------------------------------------
# several runs in parallel processes, with progress
# --------------------------------------------------------------------------------------------

_progress_queue: Any = None


def _init_worker(progress_queue: Any, log_level: int) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")


def _worker(settings: Settings, workload: Any, slo_s: np.ndarray, spec: PolicySpec) -> RunResult:
    def report(done: int) -> None:
        _progress_queue.put((spec.name, done))

    return run_policy(settings, workload, slo_s, spec, on_tick=report)


def run_policies(settings: Settings, workload: Any, slo_s: np.ndarray, policies: Sequence[str | PolicySpec],
                 on_progress: Callable[[str, int], None]) -> list[RunResult]:
    """Every policy on the same workload; in ``settings.output.workers`` processes when more than one."""
    specs = [as_spec(p) for p in policies]
    workers = min(settings.output.workers, len(specs))
    if workers <= 1:
        return [run_policy(settings, workload, slo_s, spec, on_tick=lambda done, n=spec.name: on_progress(n, done))
                for spec in specs]
    context = multiprocessing.get_context()
    progress_queue = context.Queue()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=(progress_queue, logging.getLogger().getEffectiveLevel())) as pool:
        # Learners cost ~10x a baseline per tick: start them first, so the processes finish together
        # (the results keep the order the policies were given in).
        order = sorted(range(len(specs)), key=lambda i: not specs[i].learned)
        submitted = {i: pool.submit(_worker, settings, workload, slo_s, specs[i]) for i in order}
        futures: list[Future[RunResult]] = [submitted[i] for i in range(len(specs))]
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


def versions() -> dict[str, str]:
    """Versions of mfrm, Python and the libraries that shape the numbers (saved with every result)."""
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


def write_outputs(settings: Settings, workload: Any, slo_s: np.ndarray, results: Sequence[RunResult],
                  command: str, specs: Sequence[PolicySpec] = ()) -> tuple[Outputs, list[dict[str, Any]]]:
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
        "versions": versions(),
        "ticks": tick_count(settings),
        "functions": [
            {"name": f.name, "profile": f.profile.name, "memory_mb": f.profile.memory_mb, "trace_id": f.trace_id,
             "rate_class": f.rate_class, "invocations": int(f.counts_per_minute.sum()), "slo_s": float(s)}
            for f, s in zip(workload.functions, slo_s)
        ],
        "learned": [{"policy": spec.name, "checkpoint": str(spec.checkpoint) if spec.checkpoint else None,
                     "frozen": spec.frozen, "greedy": spec.greedy, "seed": seeds.policy_seed(spec.name)}
                    for spec in specs if spec.learned],
        "runs": [{"policy": r.policy, "wall_s": r.wall_s, "decide_ms": r.decide_ms, "update_ms": r.update_ms,
                  "failures": dict(r.failures)} for r in results],
    }
    outputs = Outputs(
        overall_csv=write_csv(overall, out / "overall.csv"),
        functions_csv=write_csv(per_function, out / "functions.csv"),
        run_json=out / "run.json",
        plots=plots,
    )
    outputs.run_json.write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    return outputs, overall


__all__ = ["Outputs", "run_policies", "run_policy", "versions", "write_outputs"]
