"""Warm pools: which container runs which activation, when containers start, pause and go.

One :class:`Scheduler` owns every pool and every container. All its decisions are taken under one
lock by short methods that only change state (``_schedule``, ``_reconcile``, ``_make_room``); the slow
work — starting a process, running an activation — happens on each container's own thread, which
reports back. Time for decisions comes from the injected clock (``tick`` is the janitor pass:
pause after the grace, evict after the idle timeout, reconcile pinned pools).

Pool sizes follow ``policies/types.py``'s ``Decisions.containers``:

* ``-1`` (default): OpenWhisk's behaviour — a container is cold-started for an activation that finds
  none idle, kept warm (paused) and removed after ``idle_timeout_s`` without use;
* ``k >= 1``: exactly k containers, started at once (their start is paid before any activation);
  an activation that finds all k busy waits in the pool's queue;
* ``0``: scale to zero — an activation cold-starts a container, removed as soon as it is idle.

Memory: every container reserves its action's memory against ``user_memory_mb``. A new container that
does not fit first evicts idle containers of unpinned pools (least recently used first), else waits.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from localwhisk.actions import Action
from localwhisk.cgroups import MAX_SHARES, MIN_SHARES, clamp_shares
from localwhisk.clock import Clock
from localwhisk.config import PlatformConfig
from localwhisk.containers import ContainerFactory, Worker, WorkerDied, WorkerTimeout
from localwhisk.errors import bad_request, not_found, unavailable
from localwhisk.outcomes import DEVELOPER_ERROR, INTERNAL_ERROR, Outcome, classify_result

log = logging.getLogger(__name__)

#: Pool size meaning "the platform's own on-demand behaviour" (as ``policies.types.UNMANAGED``).
ON_DEMAND = -1
#: CPU shares meaning "leave them as they are" (as ``policies.types.KEEP_SHARES``).
KEEP_SHARES = -1
#: One core's worth of CPU shares (Docker's and Kubernetes' unit).
SHARES_PER_CORE = 1024


def default_shares(memory_mb: int, user_memory_mb: int) -> int:
    """OpenWhisk's CPU shares for a container: 1024 shared in proportion to memory, at least 2."""
    return max(SHARES_PER_CORE // max(user_memory_mb // memory_mb, 1), 2)


class State(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    PAUSED = "paused"
    BUSY = "busy"
    REMOVED = "removed"


@dataclass(eq=False)
class Job:
    """One admitted activation on its way through a pool."""

    activation_id: str
    """OpenWhisk activation id (32 hex digits)."""
    action: Action
    """The action as it was when invoked."""
    params: dict[str, Any]
    """Parameters handed to ``main``: the action's defaults overridden by the payload."""
    arrival_ms: int
    """Arrival, ms since the epoch (the record's ``start`` is this plus the wait)."""
    arrival_perf: float = field(default_factory=time.perf_counter)
    """Arrival on the measuring clock (``time.perf_counter``), s: the wait is measured from here."""
    env: dict[str, str] = field(default_factory=dict)
    """``__OW_*`` variables for the run."""
    done: threading.Event = field(default_factory=threading.Event)
    """Set once ``outcome`` is filled in."""
    outcome: Outcome | None = None
    """How it ended; None while pending."""
    record: dict[str, Any] | None = None
    """The activation record, filled in by the platform when the activation completes."""


@dataclass(eq=False)
class Container:
    name: str
    pool: Pool
    revision: int
    memory_mb: int
    shares: int
    worker: Worker | None = None
    state: State = State.STARTING
    idle_since: float = 0.0
    retire: bool = False
    inbox: queue.SimpleQueue[Job | None] = field(default_factory=queue.SimpleQueue)
    thread: threading.Thread | None = None


@dataclass(eq=False)
class Pool:
    action: Action
    target: int = ON_DEMAND
    shares: int | None = None
    containers: list[Container] = field(default_factory=list)
    queue: deque[Job] = field(default_factory=deque)
    broken: str = ""
    cpu_s_of_removed: float = 0.0
    deleted: bool = False

    def live(self) -> list[Container]:
        """Containers of the current revision not on their way out."""
        return [
            c for c in self.containers if c.state is not State.REMOVED and not c.retire and c.revision == self.action.revision
        ]

    def take_idle(self) -> Container | None:
        # The most recently used idle container first: it is the warmest (caches, resident pages).
        idle = [c for c in self.live() if c.state in (State.IDLE, State.PAUSED)]
        return max(idle, key=lambda c: c.idle_since) if idle else None


@dataclass(frozen=True)
class ContainerView:
    """One container, as ``GET /resources/v1/...`` shows it."""

    name: str
    state: str
    pid: int | None
    cpu_shares: int
    memory_mb: int
    cpu_cgroup: str
    memory_cgroup: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "pid": self.pid,
            "cpuShares": self.cpu_shares,
            "memoryMB": self.memory_mb,
            "cgroup": {"cpu": self.cpu_cgroup, "memory": self.memory_cgroup},
        }


@dataclass(frozen=True)
class PoolView:
    """A consistent snapshot of one action's pool."""

    namespace: str
    action: str
    target: int
    cpu_shares: int
    shares_set: bool
    memory_mb: int
    queued: int
    counts: dict[str, int]
    cpu_seconds: float
    broken: str
    containers: tuple[ContainerView, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "action": self.action,
            "containers": self.target,
            "cpuShares": self.cpu_shares,
            "cpuSharesSource": "set" if self.shares_set else "default",
            "memoryMB": self.memory_mb,
            "queued": self.queued,
            "current": self.counts,
            "cpuSeconds": round(self.cpu_seconds, 6),
            "lastInitError": self.broken,
            "instances": [c.to_json() for c in self.containers],
        }


class Scheduler:
    """All pools and containers of one platform instance."""

    def __init__(
        self,
        config: PlatformConfig,
        containers: ContainerFactory,
        clock: Clock,
        on_complete: Callable[[Job], None],
    ) -> None:
        self._config = config
        self._containers = containers
        self._clock = clock
        self._on_complete = on_complete
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._pools: dict[tuple[str, str], Pool] = {}
        self._reserved_mb = 0
        self._closing = False
        self._threads: list[threading.Thread] = []

    # --- actions ---------------------------------------------------------------------------

    def set_action(self, action: Action) -> None:
        """Register a new action or a new revision; containers of an old revision are retired."""
        with self._lock:
            key = (action.namespace, action.name)
            pool = self._pools.get(key)
            if pool is None:
                self._pools[key] = Pool(action=action)
                return
            pool.action = action
            pool.broken = ""
            for container in list(pool.containers):
                if container.revision != action.revision:
                    if container.state in (State.IDLE, State.PAUSED):
                        self._remove(container)
                    else:
                        container.retire = True
            self._reconcile(pool)
            self._schedule()

    def remove_action(self, namespace: str, name: str) -> None:
        """Forget an action: queued activations fail, containers are killed."""
        with self._lock:
            pool = self._pools.pop((namespace, name), None)
            if pool is None:
                return
            pool.deleted = True
            orphans = list(pool.queue)
            pool.queue.clear()
            for container in list(pool.containers):
                self._remove(container)
        for job in orphans:
            self._complete(job, _internal_error(job, "the action was deleted before the activation could run"))

    # --- activations -----------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue an admitted activation; it runs as soon as its pool has a container for it."""
        with self._lock:
            if self._closing:
                raise unavailable("the platform is shutting down")
            pool = self._pools.get((job.action.namespace, job.action.name))
            if pool is None:
                raise not_found()
            pool.queue.append(job)
            self._schedule()

    # --- resources -------------------------------------------------------------------------

    def capacity(self, memory_mb: int) -> int:
        """Most containers of ``memory_mb`` each that the platform's user memory can hold."""
        return self._config.user_memory_mb // memory_mb

    def set_resources(self, namespace: str, name: str, containers: object, cpu_shares: object) -> PoolView:
        """Apply a pool size (see module docstring) and CPU shares per container (None: unchanged).

        Refuses (400, naming the field and its allowed range) anything but -1 or a pool the user
        memory can hold at the action's memory, and shares outside cgroup v1's range.
        """
        with self._lock:
            pool = self._pools.get((namespace, name))
            if pool is None:
                raise not_found()
            memory_mb = pool.action.limits.memory_mb
            most = self.capacity(memory_mb)
            if containers is not None and not (_is_int(containers) and (containers == ON_DEMAND or 0 <= containers <= most)):
                raise bad_request(
                    f"containers must be -1 (on demand) or an integer in [0, {most}] ({most} containers of "
                    f"{memory_mb} MB fill the platform's {self._config.user_memory_mb} MB of user memory), "
                    f"got {_shown(containers)}"
                )
            if cpu_shares is not None and not (
                _is_int(cpu_shares) and (cpu_shares == KEEP_SHARES or MIN_SHARES <= cpu_shares <= MAX_SHARES)
            ):
                raise bad_request(
                    f"cpuShares must be -1 (unchanged) or an integer in [{MIN_SHARES}, {MAX_SHARES}] (cgroup v1's "
                    f"range), got {_shown(cpu_shares)}"
                )
            assert containers is None or isinstance(containers, int)
            assert cpu_shares is None or isinstance(cpu_shares, int)
            if cpu_shares == KEEP_SHARES:
                cpu_shares = None
            if containers is not None and containers != pool.target:
                log.info("pool %s/%s: containers %d -> %d", namespace, name, pool.target, containers)
                pool.target = containers
                pool.broken = ""
            if cpu_shares is not None and cpu_shares != self._shares(pool):
                log.info("pool %s/%s: cpu shares %d -> %d", namespace, name, self._shares(pool), cpu_shares)
                pool.shares = cpu_shares
                for container in pool.containers:
                    if container.state is not State.REMOVED:
                        container.shares = cpu_shares
                        if container.worker is not None:
                            container.worker.set_shares(cpu_shares)
            elif cpu_shares is not None:
                pool.shares = cpu_shares
            self._reconcile(pool)
            self._schedule()
            return self._view(pool)

    def view(self, namespace: str, name: str) -> PoolView:
        with self._lock:
            pool = self._pools.get((namespace, name))
            if pool is None:
                raise not_found()
            return self._view(pool)

    def views(self) -> list[PoolView]:
        with self._lock:
            return [self._view(p) for p in self._pools.values()]

    def wait_for(self, predicate: Callable[[list[PoolView]], bool], timeout_s: float) -> bool:
        """Block until ``predicate(views)`` holds (re-checked at every container state change) or the
        timeout passes; returns whether it held. For embedding programs and tests, which must not
        poll with sleeps."""
        with self._lock:
            return self._changed.wait_for(lambda: predicate([self._view(p) for p in self._pools.values()]), timeout_s)

    def settle(self) -> None:
        """Wait until every pause, resume and shares change asked of the containers so far has been
        carried out (at once for worker processes; a Docker engine's calls are queued). For embedding
        programs and tests, which then read the containers' state from the engine."""
        with self._lock:
            workers = [c.worker for p in self._pools.values() for c in p.containers if c.worker is not None]
        for worker in workers:
            worker.settle()

    @property
    def reserved_mb(self) -> int:
        with self._lock:
            return self._reserved_mb

    # --- the janitor pass ------------------------------------------------------------------

    def tick(self) -> None:
        """Pause idle containers past the grace, remove unpinned ones past the idle timeout,
        bring pinned pools to their size. Called by the platform's janitor thread and by tests."""
        now = self._clock.now()
        with self._lock:
            for pool in list(self._pools.values()):
                for container in list(pool.containers):
                    idle_for = now - container.idle_since
                    if container.state is State.IDLE and idle_for >= self._config.pause_grace_s:
                        assert container.worker is not None
                        container.worker.pause()
                        container.state = State.PAUSED
                        self._changed.notify_all()
                    if (
                        container.state in (State.IDLE, State.PAUSED)
                        and pool.target == ON_DEMAND
                        and idle_for >= self._config.idle_timeout_s
                    ):
                        log.info("evicting idle container %s of %s after %.1f s", container.name, pool.action.path, idle_for)
                        self._remove(container)
                self._reconcile(pool)
            self._schedule()

    def shutdown(self, drain_timeout_s: float) -> None:
        """Refuse new work, let running activations finish (up to the timeout), remove everything."""
        with self._lock:
            self._closing = True
            self._changed.wait_for(
                lambda: all(
                    not p.queue and all(c.state is not State.BUSY for c in p.containers) for p in self._pools.values()
                ),
                timeout=drain_timeout_s,
            )
            orphans = [job for p in self._pools.values() for job in p.queue]
            for pool in self._pools.values():
                pool.queue.clear()
                for container in list(pool.containers):
                    self._remove(container)
            threads = list(self._threads)
        for job in orphans:
            self._complete(job, _internal_error(job, "the platform shut down before the activation could run"))
        for thread in threads:
            thread.join(timeout=10.0)
        self._containers.close()

    # --- decisions (lock held) -------------------------------------------------------------

    def _shares(self, pool: Pool) -> int:
        if pool.shares is not None:
            return pool.shares
        return default_shares(pool.action.limits.memory_mb, self._config.user_memory_mb)

    def _schedule(self) -> None:
        waiting = sorted((p for p in self._pools.values() if p.queue), key=lambda p: p.queue[0].arrival_perf)
        for pool in waiting:
            while pool.queue:
                container = pool.take_idle()
                if container is not None:
                    self._assign(container, pool.queue.popleft())
                    continue
                if pool.target >= 1 or self._closing:
                    break  # pinned pools never grow on demand: the activation waits for one of its k
                if not self._make_room(pool.action.limits.memory_mb):
                    break
                self._start(pool, pool.queue.popleft())

    def _reconcile(self, pool: Pool) -> None:
        if pool.deleted or self._closing:
            return
        live = pool.live()
        if pool.target == 0:
            for container in live:
                if container.state in (State.IDLE, State.PAUSED):
                    self._remove(container)
        elif pool.target >= 1:
            surplus = len(live) - pool.target
            if surplus > 0:
                # Idle ones go first, then the youngest; busy or starting ones finish their work first.
                order = sorted(live, key=lambda c: (c.state not in (State.IDLE, State.PAUSED), -c.idle_since))
                for container in order[:surplus]:
                    if container.state in (State.IDLE, State.PAUSED):
                        self._remove(container)
                    else:
                        container.retire = True
            elif surplus < 0 and not pool.broken:
                for _ in range(-surplus):
                    if not self._make_room(pool.action.limits.memory_mb):
                        break
                    self._start(pool, None)

    def _make_room(self, memory_mb: int) -> bool:
        limit = self._config.user_memory_mb
        if self._reserved_mb + memory_mb <= limit:
            return True
        candidates = sorted(
            (
                c
                for p in self._pools.values()
                for c in p.containers
                if c.state in (State.IDLE, State.PAUSED) and (p.target < 1 or c.revision != p.action.revision)
            ),
            key=lambda c: c.idle_since,
        )
        for container in candidates:
            if self._reserved_mb + memory_mb <= limit:
                break
            log.info("evicting idle container %s of %s to make room", container.name, container.pool.action.path)
            self._remove(container)
        return self._reserved_mb + memory_mb <= limit

    def _assign(self, container: Container, job: Job) -> None:
        if container.state is State.PAUSED:
            assert container.worker is not None
            container.worker.resume()
        container.state = State.BUSY
        container.inbox.put(job)

    def _start(self, pool: Pool, job: Job | None) -> None:
        action = pool.action
        container = Container(
            name=self._containers.new_name(action.namespace, action.name),
            pool=pool,
            revision=action.revision,
            memory_mb=action.limits.memory_mb,
            shares=self._shares(pool),
            state=State.BUSY if job is not None else State.STARTING,
        )
        pool.containers.append(container)
        self._reserved_mb += container.memory_mb
        thread = threading.Thread(target=self._container_main, args=(container, job), name=container.name, daemon=True)
        container.thread = thread
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _remove(self, container: Container) -> None:
        if container.state is State.REMOVED:
            return
        container.state = State.REMOVED
        self._reserved_mb -= container.memory_mb
        container.inbox.put(None)
        if container.worker is not None:
            container.worker.kill()
        self._changed.notify_all()

    def _view(self, pool: Pool) -> PoolView:
        # "stopping": removed from the pool, process or cgroup not yet cleaned up.
        counts = {s.value: 0 for s in State if s is not State.REMOVED} | {"stopping": 0}
        cpu = pool.cpu_s_of_removed
        views = []
        for c in pool.containers:
            if c.state is State.REMOVED:
                counts["stopping"] += 1
                cpu += c.worker.cpu_seconds() if c.worker is not None else 0.0
                continue
            counts[c.state.value] += 1
            if c.worker is not None:
                cpu += c.worker.cpu_seconds()
            views.append(
                ContainerView(
                    name=c.name,
                    state=c.state.value,
                    pid=c.worker.pid if c.worker else None,
                    cpu_shares=c.shares,
                    memory_mb=c.memory_mb,
                    cpu_cgroup=c.worker.cpu_dir if c.worker is not None else "",
                    memory_cgroup=c.worker.memory_dir if c.worker is not None else "",
                )
            )
        counts["total"] = len(views)
        return PoolView(
            namespace=pool.action.namespace,
            action=pool.action.name,
            target=pool.target,
            cpu_shares=self._shares(pool),
            shares_set=pool.shares is not None,
            memory_mb=pool.action.limits.memory_mb,
            queued=len(pool.queue),
            counts=counts,
            cpu_seconds=cpu,
            broken=pool.broken,
            containers=tuple(views),
        )

    # --- a container's own thread ----------------------------------------------------------

    def _container_main(self, container: Container, first: Job | None) -> None:
        action = container.pool.action
        started = time.perf_counter()
        error = self._boot(container, action)
        init_ms = round((time.perf_counter() - started) * 1000)
        try:
            if error is not None:
                self._boot_failed(container, first, error, started)
                return
            if first is not None:
                self._finish(container, first, self._run(container, first, cold_started=started, init_ms=init_ms))
            else:
                with self._lock:
                    if container.state is State.STARTING:
                        container.state = State.IDLE
                        container.idle_since = self._clock.now()
                        self._reconcile(container.pool)
                        self._schedule()
                    self._changed.notify_all()
            while True:
                job = container.inbox.get()
                if job is None:
                    return
                self._finish(container, job, self._run(container, job))
        finally:
            if container.worker is not None:
                container.worker.close()
            # The last reading taken before the kill: CPU counters stay monotonic across removal.
            cpu_s = container.worker.cpu_seconds() if container.worker else 0.0
            with self._lock:
                container.pool.cpu_s_of_removed += cpu_s
                if container.state is not State.REMOVED:
                    self._remove(container)
                container.pool.containers = [c for c in container.pool.containers if c is not container]
                self._changed.notify_all()

    def _boot(self, container: Container, action: Action) -> tuple[int, str] | None:
        """Create the container, start it, load the code. None on success, else (status, why)."""
        shares = clamp_shares(container.shares)
        try:
            worker = self._containers.create(container.name, action.namespace, action.name, shares, action.limits.memory_mb)
        except OSError as error:
            return INTERNAL_ERROR, f"could not start container {container.name}: {error}"
        with self._lock:
            removed = container.state is State.REMOVED
            if not removed:
                container.worker = worker
                if container.shares != shares:  # changed through the resource API meanwhile
                    worker.set_shares(container.shares)
        if removed:
            worker.close()
            return INTERNAL_ERROR, "the container was removed while starting"
        try:
            worker.start()
        except OSError as error:
            return INTERNAL_ERROR, f"could not start container {container.name}: {error}"
        with self._lock:
            container.name = worker.name  # a Docker container takes another number when its name is in use
        try:
            reply = worker.request({"op": "init", "code": action.code, "main": action.entry}, action.limits.timeout_ms / 1000)
        except WorkerTimeout:
            return DEVELOPER_ERROR, f"The action exceeded its time limit of {action.limits.timeout_ms} milliseconds during initialization."
        except (WorkerDied, ValueError) as error:
            return DEVELOPER_ERROR, f"The action failed to initialize: its container exited ({error})."
        if not reply.get("ok"):
            return DEVELOPER_ERROR, f"Initialization has failed due to: {reply.get('error')}"
        return None

    def _boot_failed(self, container: Container, first: Job | None, error: tuple[int, str], started: float) -> None:
        status, message = error
        log.warning("container %s of %s failed to start: %s", container.name, container.pool.action.path, message)
        with self._lock:
            if first is None and container.state is not State.REMOVED:
                container.pool.broken = message
            self._remove(container)
        if first is not None:
            duration_ms = round((time.perf_counter() - started) * 1000)
            wait_ms = round((started - first.arrival_perf) * 1000)
            self._complete(first, Outcome(status, {"error": message}, wait_ms, duration_ms, init_ms=duration_ms))
            with self._lock:
                self._schedule()

    def _run(
        self, container: Container, job: Job, cold_started: float | None = None, init_ms: int | None = None
    ) -> tuple[Outcome, bool]:
        """Run one activation; also says whether the container can be used again (not after a
        time-out, which killed nothing yet but left the action running, nor after the process died)."""
        action = job.action
        assert container.worker is not None
        # A paused container's resume is carried out before the run: its time counts as waiting, as
        # in OpenWhisk, where the invoker resumes the container before it sends the run.
        container.worker.settle()
        started = time.perf_counter() if cold_started is None else cold_started
        run_started = time.perf_counter()
        wait_ms = round((started - job.arrival_perf) * 1000)
        request = {
            "op": "run",
            "value": job.params,
            "env": job.env | {"__OW_DEADLINE": str(int(job.arrival_ms + wait_ms + (init_ms or 0) + action.limits.timeout_ms))},
            "logLimit": action.limits.logs_mb * 1024 * 1024,
        }
        timed_out = False
        healthy = True
        try:
            reply = container.worker.request(request, action.limits.timeout_ms / 1000)
        except WorkerTimeout:
            timed_out, healthy = True, False
            reply = {"ok": False, "error": f"The action exceeded its time limit of {action.limits.timeout_ms} milliseconds."}
        except (WorkerDied, ValueError) as error:
            healthy = False
            reply = {"ok": False, "error": f"The action did not produce a valid response and exited unexpectedly ({error})."}
        run_ms = round((time.perf_counter() - run_started) * 1000)
        duration_ms = run_ms + (init_ms or 0)
        logs = list(reply.get("logs", []))
        if reply.get("ok"):
            result = reply["result"]
            return Outcome(classify_result(result), result, wait_ms, duration_ms, init_ms, logs), healthy
        error_result = {"error": reply.get("error", "unknown error")}
        return Outcome(DEVELOPER_ERROR, error_result, wait_ms, duration_ms, init_ms, logs, timed_out), healthy

    def _finish(self, container: Container, job: Job, ran: tuple[Outcome, bool]) -> None:
        outcome, healthy = ran
        with self._lock:
            pool = container.pool
            if container.state is not State.REMOVED:
                if (
                    not healthy
                    or container.retire
                    or pool.deleted
                    or container.revision != pool.action.revision
                    or pool.target == 0
                ):
                    self._remove(container)
                else:
                    container.state = State.IDLE
                    container.idle_since = self._clock.now()
                    if pool.target >= 1 and len(pool.live()) > pool.target:
                        self._remove(container)
            self._reconcile(pool)
            self._schedule()
            self._changed.notify_all()
        self._complete(job, outcome)

    def _complete(self, job: Job, outcome: Outcome) -> None:
        job.outcome = outcome
        try:
            self._on_complete(job)
        finally:
            job.done.set()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: object) -> str:
    """A value for an error message, cut short: a request may carry a huge number or string."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _internal_error(job: Job, message: str) -> Outcome:
    wait_ms = round((time.perf_counter() - job.arrival_perf) * 1000)
    return Outcome(INTERNAL_ERROR, {"error": message}, wait_ms, 0)
