"""The platform without its HTTP skin: actions, invocations, activation records, resources.

:class:`Platform` composes the stores, the throttle, the scheduler and the metrics. The HTTP layer
(:mod:`localwhisk.api`) turns requests into calls here; an embedding program or a test may call it
directly.
"""

from __future__ import annotations

import logging
import secrets
import threading
import uuid
from typing import Any

from localwhisk.actions import Action, check_entity_name, parse_put
from localwhisk.cgroups import CgroupDriver, NoCgroups, detect
from localwhisk.clock import Clock, SystemClock
from localwhisk.config import PlatformConfig
from localwhisk.containers import ContainerFactory, ProcessContainers
from localwhisk.errors import conflict, not_found
from localwhisk.leftovers import claim_state_dir
from localwhisk.metrics import PlatformMetrics
from localwhisk.outcomes import activation_record
from localwhisk.scheduler import Job, PoolView, Scheduler
from localwhisk.store import ActionStore, ActivationStore
from localwhisk.throttle import ConcurrencyThrottled, RateThrottled, Throttle

log = logging.getLogger(__name__)


class Platform:
    """One localwhisk instance's state and behaviour."""

    def __init__(self, config: PlatformConfig, clock: Clock | None = None, cgroups: CgroupDriver | None = None) -> None:
        """``cgroups`` replaces the driver detected for worker processes (``containers="process"``);
        raises ``StateDirBusy`` while another platform holds the state directory and, with
        ``containers="docker"``, ``EngineError`` when the engine or its image is missing."""
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.instance_id = secrets.token_hex(3)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self._claim = claim_state_dir(config.state_dir, self.instance_id)
        try:
            self.containers = self._container_factory(config, cgroups)
            try:
                self.containers.remove_leftovers(self._claim.previous_instance)
            except BaseException:
                self.containers.close()
                raise
        except BaseException:
            self._claim.release()
            raise
        self.actions = ActionStore(config.state_dir)
        self.activations = ActivationStore(config.max_stored_activations)
        self.throttle = Throttle(config.throttle)
        self.metrics = PlatformMetrics()
        self.scheduler = Scheduler(config, self.containers, self.clock, self._on_complete)
        self.metrics.attach_pools(self.scheduler.views, self.containers.status.cpu_control,
                                  lambda: self.scheduler.reserved_mb)
        self._pending: dict[str, Job] = {}
        self._pending_lock = threading.Lock()
        self._janitor_stop = threading.Event()
        self._janitor: threading.Thread | None = None
        for action in self.actions.all():
            self.scheduler.set_action(action)

    def _container_factory(self, config: PlatformConfig, cgroups: CgroupDriver | None) -> ContainerFactory:
        if config.containers == "docker":
            # Imported here: the docker SDK is loaded only by a platform that uses it.
            from localwhisk.docker_containers import DockerContainers

            return DockerContainers(config, self.instance_id)
        if cgroups is None:
            cgroups = detect(config.cgroup_parent) if config.cgroups == "auto" else NoCgroups("cgroups are off by configuration")
        return ProcessContainers(config, cgroups, self.instance_id)

    # --- actions ---------------------------------------------------------------------------

    def put_action(self, namespace: str, name: str, body: Any, overwrite: bool) -> Action:
        existing = self.actions.get(namespace, name)
        if existing is not None and not overwrite:
            raise conflict()
        action = parse_put(body, namespace, name, self.config.limits, self.clock.wall_ms(), existing)
        self.actions.put(action)
        self.scheduler.set_action(action)
        return action

    def get_action(self, namespace: str, name: str) -> Action:
        action = self.actions.get(namespace, name)
        if action is None:
            raise not_found()
        return action

    def delete_action(self, namespace: str, name: str) -> Action:
        action = self.actions.delete(namespace, name)
        if action is None:
            raise not_found()
        self.scheduler.remove_action(namespace, name)
        return action

    # --- invocations -----------------------------------------------------------------------

    def invoke(self, namespace: str, name: str, payload: dict[str, Any], api_host: str = "") -> Job:
        """Admit and queue one activation; the returned job's ``done`` is set when it completes."""
        check_entity_name(name)
        action = self.get_action(namespace, name)
        initiator = self.config.subject.namespace
        try:
            self.throttle.admit(namespace, self.clock.now())
        except ConcurrencyThrottled:
            self.metrics.limit_concurrent.labels(namespace, initiator).inc()
            raise
        except RateThrottled:
            self.metrics.limit_timed.labels(namespace, initiator).inc()
            raise
        params = dict(action.parameters) | payload
        activation_id = uuid.uuid4().hex
        job = Job(
            activation_id=activation_id,
            action=action,
            params=params,
            arrival_ms=self.clock.wall_ms(),
            env={
                "__OW_API_HOST": api_host,
                "__OW_NAMESPACE": namespace,
                "__OW_ACTION_NAME": f"/{action.path}",
                "__OW_ACTIVATION_ID": activation_id,
            },
        )
        with self._pending_lock:
            self._pending[activation_id] = job
        try:
            self.scheduler.submit(job)
        except Exception:
            with self._pending_lock:
                self._pending.pop(activation_id, None)
            self.throttle.release(namespace)
            raise
        return job

    def wait_activation(self, activation_id: str, timeout_s: float) -> dict[str, Any] | None:
        """The record of an activation, waiting up to ``timeout_s`` for it to complete (None if it did
        not, or is unknown). For embedding programs and tests: the REST API has no such wait."""
        with self._pending_lock:
            job = self._pending.get(activation_id)
        if job is not None:
            job.done.wait(timeout_s)
            return job.record
        return self.activations.get(self.config.subject.namespace, activation_id)

    def _on_complete(self, job: Job) -> None:
        outcome = job.outcome
        assert outcome is not None
        action = job.action
        record = activation_record(job.activation_id, action, self.config.subject.namespace, job.arrival_ms, outcome)
        job.record = record
        self.activations.add(record)
        user_status = outcome.result.get("statusCode")
        self.metrics.record(
            namespace=action.namespace,
            initiator=self.config.subject.namespace,
            action=action.name,
            kind=action.kind,
            memory_mb=action.limits.memory_mb,
            status_code=outcome.status_code,
            wait_s=outcome.wait_ms / 1000,
            init_s=None if outcome.init_ms is None else outcome.init_ms / 1000,
            run_s=outcome.run_ms / 1000,
            response_bytes=record["response"]["size"],
            user_status_code=str(user_status) if isinstance(user_status, int) and not isinstance(user_status, bool) else None,
        )
        self.throttle.release(action.namespace)
        with self._pending_lock:
            self._pending.pop(job.activation_id, None)

    # --- resources -------------------------------------------------------------------------

    def set_resources(self, namespace: str, name: str, containers: object, cpu_shares: object) -> PoolView:
        """Size an action's pool and set its CPU shares (see :meth:`Scheduler.set_resources`)."""
        self.get_action(namespace, name)
        return self.scheduler.set_resources(namespace, name, containers, cpu_shares)

    def resources(self, namespace: str, name: str) -> PoolView:
        self.get_action(namespace, name)
        return self.scheduler.view(namespace, name)

    def all_resources(self, namespace: str) -> list[PoolView]:
        return sorted((v for v in self.scheduler.views() if v.namespace == namespace), key=lambda v: v.action)

    def status(self) -> dict[str, Any]:
        """What ``GET /resources/v1/status`` serves: control available, capacity, load."""
        views = self.scheduler.views()
        return {
            "instance": self.instance_id,
            "containerRuntime": self.config.containers,
            "cgroups": self.containers.status.to_json(),
            "userMemoryMB": self.config.user_memory_mb,
            "reservedMemoryMB": self.scheduler.reserved_mb,
            "containers": sum(v.counts["total"] for v in views),
            "actions": len(views),
            "idleTimeoutSeconds": self.config.idle_timeout_s,
            "pauseGraceSeconds": self.config.pause_grace_s,
        }

    # --- lifecycle -------------------------------------------------------------------------

    def tick(self) -> None:
        """One janitor pass at the clock's current time (pause, evict, reconcile)."""
        self.scheduler.tick()

    def settle(self) -> None:
        """Wait until the containers' engine has carried out every pause, resume and shares change
        asked so far (see :meth:`Scheduler.settle`)."""
        self.scheduler.settle()

    def start_janitor(self) -> None:
        def loop() -> None:
            while not self._janitor_stop.wait(self.config.janitor_interval_s):
                try:
                    self.scheduler.tick()
                except Exception:  # one failed pass must not stop eviction for good
                    log.exception("janitor pass failed")

        self._janitor = threading.Thread(target=loop, name="localwhisk-janitor", daemon=True)
        self._janitor.start()

    def close(self) -> None:
        """Stop the janitor, drain, remove every container and the platform's cgroups."""
        self._janitor_stop.set()
        if self._janitor is not None:
            self._janitor.join(timeout=5.0)
        self.scheduler.shutdown(self.config.drain_timeout_s)
        self._claim.release()
