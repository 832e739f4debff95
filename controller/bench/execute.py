"""Running the suite's cells: resumable, in a local process pool or as Ray tasks, with progress.

Every finished cell is appended to ``cells.csv`` at once (one row, flushed), with its key; a rerun
skips every cell whose key is there, so an interrupted suite loses at most the cells that were
running. Learners are trained first (phase 1), each (scenario, learner, seed) once, into checkpoints
named by what decides them; then every cell is judged (phase 2). ``results.csv`` is written at the
end: the same rows in the suite's order (scenario, point, seed), so the same cells give the same file
byte for byte whichever executor ran them and in whatever order they finished. Wall times go to
``timings.csv`` (they are not results).

A cell is sent to a worker with everything that decides its row and nothing that depends on where it
runs: absolute paths (a worker's working directory is not this process's) and this process's
``MFRM_*`` variables (a worker's environment is the one its node was started with, and settings read
it). A cell that fails stops the suite with :class:`CellFailed`, which names the cell; the calls
still queued are cancelled.
"""

from __future__ import annotations

import csv
import ipaddress
import logging
import multiprocessing
import os
import platform
import secrets
import socket
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, Self

from controller.bench.cells import RESULT_COLUMNS, Cell, run_cell, train_cell
from controller.settings import ENV_PREFIX

log = logging.getLogger(__name__)

TIMING_COLUMNS: tuple[str, ...] = ("key", "scenario", "point", "seed", "wall_s", "train_wall_s", "decide_ms", "update_ms")

#: Ray's switch for the address it gives itself: "0" makes it loopback (127.0.0.1), "1" the address
#: other machines reach. Read once, when ``ray`` is first imported.
RAY_LOOPBACK_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: Ray's authentication: ``token`` (every connection shows the cluster's token) or ``disabled``.
RAY_AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"
#: The token itself, when it is given in the environment rather than in ``~/.ray/auth_token``.
RAY_TOKEN_VARIABLE = "RAY_AUTH_TOKEN"


class CallFailed(RuntimeError):
    """One call of an executor raised, or its worker died; the calls not yet finished are cancelled."""

    def __init__(self, index: int, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.index = index
        """Position of the failed call in the ``calls`` given to :meth:`Executor.run`."""
        self.reason = reason
        """One line: the exception's type and message (or how the worker died)."""
        self.detail = detail
        """The traceback where the call ran, when there is one (for the log, not for the user's line)."""


class CellFailed(RuntimeError):
    """A cell of the suite failed: the message names the cell (scenario, point, seed), the phase and why."""

    def __init__(self, cell: Cell, phase: str, reason: str) -> None:
        super().__init__(f"cell {cell.scenario.name} / {cell.point.label} / seed {cell.seed} failed while "
                         f"{phase}: {reason}")
        self.cell = cell
        """The cell that failed."""
        self.phase = phase
        """``training`` (its learner, phase 1) or ``judging`` (phase 2)."""
        self.reason = reason
        """One line: the exception's type and message where the cell ran."""


class ClusterUnusable(ValueError):
    """The Ray cluster cannot run the suite (Ray missing, no head at the address, no CPU, other versions
    on a node): one line that says which and what to do. A ``ValueError``: it is the user's setting."""


class Executor(Protocol):
    """Runs calls of a picklable function, yielding (index, result) as each finishes.

    A call that fails raises :class:`CallFailed` with its index; the calls not yet started are
    cancelled first, so a failure never waits for the rest of the suite.
    """

    def run(self, function: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> Iterator[tuple[int, Any]]: ...


def _one_line(error: BaseException) -> str:
    """The error's type and message on one line: a message of several lines (a heading and the items
    under it) keeps every line, joined with "; " after the heading's colon."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = lines[0] if len(lines) == 1 else f"{lines[0]} " + "; ".join(lines[1:])
    return f"{type(error).__name__}: {text}"


#: The variables that set how many threads a worker's numeric libraries use. They are read when the
#: libraries load, so a worker must start with them, and they change the numbers: nac-linear's
#: training gives other bits with one OpenBLAS thread than with two.
THREAD_VARIABLES: tuple[str, ...] = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker_threads() -> dict[str, str]:
    """The thread variables every worker starts with, in a local pool and on Ray alike: this process's,
    and ``OMP_NUM_THREADS=1`` unless it has one. One thread, because a cell is single-threaded and two
    cells on two cores beat two cells whose BLAS threads spin against each other (a pool forked from a
    process whose OpenBLAS had a thread per core ran paper-12's quick cells 3 to 5 times slower on a
    loaded machine)."""
    found = {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ}
    return {"OMP_NUM_THREADS": "1", **found}


@contextmanager
def _environment_added(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in this process's environment (those it lacks), while workers are started from it."""
    added = {name: value for name, value in values.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextmanager
def loop_notes_silenced() -> Iterator[None]:
    """The control loop's per-function notes (the guard's first cut of each function) silenced below
    errors while the block runs, and its level restored after: a cell's results count them, and in a
    suite of hundreds of runs they would only bury the progress bars."""
    logger = logging.getLogger("controller.loop")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def _worker_init() -> None:
    """Done at the start of every call: torch, which a worker may have imported before, to one thread."""
    try:
        import torch

        torch.set_num_threads(1)
    except ModuleNotFoundError:
        pass


@contextmanager
def _torch_threads_kept() -> Iterator[None]:
    """Calls made in this process leave torch's thread count as they found it."""
    try:
        import torch
    except ModuleNotFoundError:
        yield
        return
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class LocalExecutor:
    """A pool of worker processes on this machine, started with :func:`worker_threads` (a script that
    uses it needs the ``if __name__ == "__main__":`` guard, as every pool of started processes does).

    With one worker the calls run in this process, whose BLAS keeps the threads it loaded with (one per
    core unless ``OMP_NUM_THREADS`` said otherwise): its numbers may differ in the last bits from a
    pool's or Ray's when that is not one thread.
    """

    workers: int = 2
    """Processes at once. 2: the cores of the machines this project is developed on."""

    def run(self, function: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> Iterator[tuple[int, Any]]:
        if self.workers <= 1:
            for index, args in enumerate(calls):
                try:
                    with _torch_threads_kept():
                        answer = function(*args)
                except Exception as error:
                    raise CallFailed(index, _one_line(error), traceback.format_exc()) from error
                yield index, answer
            return
        # Started afresh rather than forked, so that their libraries load with worker_threads(); every
        # worker starts during the submissions, all made at once.
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_worker_init) as pool:
            with _environment_added(worker_threads()):
                pending = {pool.submit(function, *args): index for index, args in enumerate(calls)}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        index = pending.pop(future)
                        error = future.exception()
                        if error is not None:
                            # The worker's traceback rides along as the error's cause.
                            raise CallFailed(index, _one_line(error),
                                             "".join(traceback.format_exception(error))) from error
                        yield index, future.result()
            finally:
                # Queued calls are dropped; the running ones (one per worker) end before the pool closes.
                for future in pending:
                    future.cancel()


def _fingerprint() -> dict[str, str]:
    """What must be equal in two processes for a cell to give the same row in both: the code's version,
    the interpreter and the libraries that compute the numbers, and the machine's architecture."""
    import numba
    import numpy
    import scipy
    import torch

    from controller.version import __version__

    return {"mfrm": __version__, "python": platform.python_version(), "machine": platform.machine(),
            "numpy": numpy.__version__, "scipy": scipy.__version__, "numba": numba.__version__,
            "torch": torch.__version__}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class RayExecutor:
    """Ray tasks, one CPU each, on an existing cluster or on one started here on loopback.

    Connects on first use (so a bad address is one line in the command's error handling) and refuses a
    cluster on which some node runs another version of mfrm, Python or the numeric libraries, since that
    node's cells would give other numbers. Needs the optional extra: ``pip install 'mfrm[ray]'``.
    """

    address: str
    """``host:port`` of a running Ray head (its GCS port, 6379 unless ``ray start --port`` said
    otherwise), ``auto`` (the cluster this machine's ``ray start`` started), or ``local``: a Ray
    started in this process on 127.0.0.1 only, stopped by :meth:`close`."""
    retries: int = 2
    """Times Ray reruns a task whose worker or node died. Safe, since a cell is a pure function of its
    inputs; an exception raised by the cell itself is never retried (it would fail again). 2 rides out
    a lost node or two without hiding a cell that kills its worker every time."""
    connect_timeout_s: float = 10.0
    """How long the head's port may take to accept a connection, s, before the address is called
    wrong (Ray itself would retry for minutes). A head answers in milliseconds; 10 s allows a far one."""
    probe_timeout_s: float = 300.0
    """How long every node may take to start a worker and report its versions, s: a worker's start
    imports numpy, numba and torch (a few seconds) and may queue behind other jobs' tasks."""
    _connected: bool = field(default=False, init=False, repr=False)
    """Whether this executor opened Ray's connection (and so closes it)."""

    def connect(self) -> None:
        """Start or join the cluster and check its nodes (done by the first :meth:`run`)."""
        if self._connected:
            return
        if self.address == "local":
            # Before Ray is imported: the processes it starts take their address from it.
            os.environ[RAY_LOOPBACK_VARIABLE] = "0"
            if RAY_AUTH_MODE_VARIABLE not in os.environ:
                # Loopback is open to every user of the machine: only holders of a token made for this
                # run may submit tasks. Given in the environment, it is never written to ~/.ray, where
                # every later Ray of this user would find it and turn authentication on.
                os.environ[RAY_AUTH_MODE_VARIABLE] = "token"
                os.environ.setdefault(RAY_TOKEN_VARIABLE, secrets.token_hex(32))
        elif self.address != "auto":
            host, sep, port = self.address.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ClusterUnusable(f"--ray {self.address!r}: expected host:port, auto or local")
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=self.connect_timeout_s).close()
            except OSError as error:
                raise ClusterUnusable(f"--ray {self.address}: no Ray head answers there ({error.strerror or error}); "
                                      "start one with `ray start --head`") from None
            if _is_loopback(host):
                # Ray would otherwise replace a loopback host by this machine's outside address.
                os.environ[RAY_LOOPBACK_VARIABLE] = "0"
        try:
            import ray
        except ModuleNotFoundError:
            raise ClusterUnusable("--ray needs Ray, an optional extra: pip install 'mfrm[ray]'") from None
        if ray.is_initialized():  # a caller's own connection: used, and left open at close
            self._check_nodes()
            return
        try:
            if self.address == "local":
                # "local" always starts a new cluster; without an address Ray would join any it finds.
                ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False,
                         _node_ip_address="127.0.0.1")
            else:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError) as error:  # no cluster, another Ray version, a missing token
            raise ClusterUnusable(f"--ray {self.address}: {_one_line(error)}") from None
        self._connected = True
        try:
            self._check_nodes()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _runtime_env() -> dict[str, Any]:
        # Workers start with the local pool's thread variables, whatever the node was started with.
        return {"env_vars": worker_threads()}

    def _check_nodes(self) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= 1]
        if not nodes:
            raise ClusterUnusable(f"--ray {self.address}: no node of the cluster has a CPU for tasks "
                                  "(they would wait forever)")
        probe = ray.remote(num_cpus=0, max_retries=self.retries, runtime_env=self._runtime_env())(_fingerprint)
        refs = {node["NodeManagerAddress"]: probe.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote()
                for node in nodes}
        try:
            found = dict(zip(refs, ray.get(list(refs.values()), timeout=self.probe_timeout_s)))
        except ray.exceptions.GetTimeoutError:
            raise ClusterUnusable(f"--ray {self.address}: the nodes did not report their versions within "
                                  f"{self.probe_timeout_s:g} s") from None
        except ray.exceptions.RayError as error:  # e.g. a node that cannot import mfrm
            cause = getattr(error, "cause", None)
            raise ClusterUnusable(f"--ray {self.address}: a node cannot run mfrm: "
                                  f"{_one_line(cause if isinstance(cause, BaseException) else error)}") from None
        mine = _fingerprint()
        for node, theirs in sorted(found.items()):
            differ = [f"{name} {theirs.get(name)} (here {value})" for name, value in mine.items()
                      if theirs.get(name) != value]
            if differ:
                raise ClusterUnusable(f"--ray {self.address}: node {node} runs {', '.join(differ)}; every node "
                                      "needs the same mfrm and libraries, or its cells give other numbers")

    def run(self, function: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> Iterator[tuple[int, Any]]:
        if not calls:
            return
        self.connect()
        import ray

        remote = ray.remote(num_cpus=1, max_retries=self.retries, runtime_env=self._runtime_env())(function)
        pending = {remote.remote(*args): index for index, args in enumerate(calls)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    index = pending.pop(ref)
                    try:
                        answer = ray.get(ref)
                    except ray.exceptions.RayTaskError as error:  # the call raised where it ran
                        # Ray's error reads as its remote traceback; the cause is the cell's own exception.
                        cause = getattr(error, "cause", None)
                        reason = _one_line(cause) if isinstance(cause, BaseException) else _one_line(error)
                        raise CallFailed(index, reason, str(error)) from None
                    except ray.exceptions.RayError as error:  # its worker or node died, or it was cancelled
                        raise CallFailed(index, _one_line(error), str(error)) from None
                    yield index, answer
        finally:
            # On a failure or an interrupt, the rest must not keep the cluster busy.
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        """Disconnect; a cluster started by ``local`` stops with it."""
        if self._connected:
            import ray

            ray.shutdown()
            self._connected = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _use_environment(environment: Mapping[str, str]) -> None:
    """Make this process's settings variables exactly ``environment`` (those of the process that built
    the cells and their keys)."""
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX) and n not in environment]:
        del os.environ[name]
    os.environ.update(environment)


def _timed_run(cell: Cell, checkpoint: str | None, environment: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, float]]:
    _worker_init()
    _use_environment(environment)
    with loop_notes_silenced():
        return run_cell(cell, checkpoint)


def _timed_train(cell: Cell, directory: str, environment: Mapping[str, str]) -> dict[str, Any]:
    _worker_init()
    _use_environment(environment)
    with loop_notes_silenced():
        return train_cell(cell, Path(directory))


def _portable(cell: Cell) -> Cell:
    """The cell as sent to a worker: its scenario file by absolute path."""
    path = cell.scenario.path
    return cell if path.is_absolute() else replace(cell, scenario=replace(cell.scenario, path=path.resolve()))


#: Columns of ``windows.csv``: per cell and window of ``SAFETY_WINDOW_S``, the completions, their SLO
#: violations and whether a learner's fallback was active (the online-learning safety check).
WINDOW_COLUMNS: tuple[str, ...] = ("key", "scenario", "family", "point", "seed", "window", "completed",
                                   "violations", "fallback_active")


class ResultStore:
    """``cells.csv`` (append-only, one row per finished cell), ``timings.csv`` and ``windows.csv`` in ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.cells_csv = out / "cells.csv"
        self.timings_csv = out / "timings.csv"
        self.results_csv = out / "results.csv"
        self.windows_csv = out / "windows.csv"
        self.rows: dict[str, dict[str, str]] = {}
        """Finished cells by key (read back from ``cells.csv``)."""
        out.mkdir(parents=True, exist_ok=True)
        if self.cells_csv.is_file():
            with self.cells_csv.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if reader.fieldnames != ["key", *RESULT_COLUMNS]:
                    raise ValueError(f"{self.cells_csv} was written by another version of the suite (its columns "
                                     "differ): choose another --out")
                for row in reader:
                    self.rows[row.pop("key")] = row

    def add(self, key: str, row: dict[str, Any], timing: dict[str, Any]) -> None:
        """Append one finished cell (flushed at once, so a crash loses no finished cell); its windows
        first, so that a cell in ``cells.csv`` always has its windows."""
        windows = [{"key": key, "scenario": row["scenario"], "family": row["family"], "point": row["point"],
                    "seed": row["seed"], **w} for w in timing.get("windows", [])]
        for path, columns, values in ((self.windows_csv, list(WINDOW_COLUMNS), windows),
                                      (self.timings_csv, list(TIMING_COLUMNS), [{"key": key, **timing}]),
                                      (self.cells_csv, ["key", *RESULT_COLUMNS], [{"key": key, **row}])):
            new = not path.is_file()
            with path.open("a", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
                if new:
                    writer.writeheader()
                writer.writerows(values)
        self.rows[key] = {k: ("" if row[k] is None else str(row[k])) for k in RESULT_COLUMNS}

    def windows(self, cells: Iterable[Cell]) -> list[dict[str, str]]:
        """The window rows of ``cells`` (a cell that crashed between its windows and its row may have
        left some twice: the last are kept)."""
        wanted = {cell.key() for cell in cells}
        if not self.windows_csv.is_file():
            return []
        with self.windows_csv.open(newline="", encoding="utf-8") as handle:
            rows = {(r["key"], r["window"]): r for r in csv.DictReader(handle) if r["key"] in wanted}
        return list(rows.values())

    def write_results(self, cells: Iterable[Cell]) -> Path:
        """``results.csv``: the rows of ``cells`` (all finished) in their order."""
        with self.results_csv.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(RESULT_COLUMNS))
            writer.writeheader()
            for cell in cells:
                writer.writerow(self.rows[cell.key()])
        return self.results_csv


def run_suite(cells: Sequence[Cell], out: Path, executor: Executor,
              on_progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Run every cell not already in ``out``; returns ``results.csv``. ``on_progress(phase, done, total)``.

    Raises :class:`CellFailed` for the first cell that fails (the cells finished before it are kept).
    """
    store = ResultStore(out)
    keys = [cell.key() for cell in cells]
    todo = [cell for cell, key in zip(cells, keys) if key not in store.rows]
    checkpoints = out.resolve() / "checkpoints"
    environment = {name: value for name, value in os.environ.items() if name.startswith(ENV_PREFIX)}
    training: dict[str, Cell] = {}
    for cell in todo:
        if cell.point.needs_training:
            training.setdefault(str(cell.checkpoint_path(checkpoints)), cell)
    trained: dict[str, dict[str, Any]] = {}
    calls = [(_portable(cell), str(checkpoints), environment) for cell in training.values()]
    try:
        for done, (index, answer) in enumerate(executor.run(_timed_train, calls), start=1):
            trained[list(training)[index]] = answer
            if on_progress:
                on_progress("train", done, len(calls))
    except CallFailed as failure:
        log.info("the training of %s failed where it ran:\n%s", calls[failure.index][0].point.label, failure.detail)
        raise CellFailed(list(training.values())[failure.index], "training", failure.reason) from None
    run_calls = []
    for cell in todo:
        path = str(cell.checkpoint_path(checkpoints)) if cell.point.needs_training else None
        run_calls.append((_portable(cell), path, environment))
    try:
        for done, (index, (row, timing)) in enumerate(executor.run(_timed_run, run_calls), start=1):
            cell = todo[index]
            train_wall = trained.get(str(cell.checkpoint_path(checkpoints)), {}).get("train_wall_s", 0.0) \
                if cell.point.needs_training else 0.0
            store.add(cell.key(), row, {"scenario": row["scenario"], "point": row["point"], "seed": row["seed"],
                                        "train_wall_s": train_wall, **timing})
            if on_progress:
                on_progress("judge", done, len(run_calls))
    except CallFailed as failure:
        log.info("the cell %s failed where it ran:\n%s", todo[failure.index].point.label, failure.detail)
        raise CellFailed(todo[failure.index], "judging", failure.reason) from None
    return store.write_results(cells)


__all__ = ["RAY_AUTH_MODE_VARIABLE", "RAY_LOOPBACK_VARIABLE", "RAY_TOKEN_VARIABLE", "THREAD_VARIABLES", "TIMING_COLUMNS",
           "CallFailed", "CellFailed", "ClusterUnusable", "Executor", "LocalExecutor", "RayExecutor", "ResultStore",
           "run_suite", "worker_threads"]
