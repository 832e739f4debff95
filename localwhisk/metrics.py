"""Prometheus metrics: OpenWhisk's user-events names, plus the platform's own pool gauges.

The user-events names and labels are the ones OpenWhisk's Grafana dashboards query
(``reference/openwhisk/grafana`` in this repository): ``openwhisk_action_activations_total``,
``openwhisk_action_coldStarts_total``, ``openwhisk_action_status``, ``openwhisk_action_status_code``,
the ``openwhisk_action_{waitTime,initTime,duration}_seconds`` and ``openwhisk_action_response_size_bytes``
histograms and the ``openwhisk_action_memory`` gauge, labelled by ``namespace``, ``initiator`` and
``action`` (plus ``kind``/``memory`` or ``status``). OpenWhisk exports ``openwhisk_action_status`` and
``openwhisk_action_status_code`` without the ``_total`` suffix; they are served here under those exact
names as untyped samples so that the dashboards' queries work unchanged.

``openwhisk_action_duration_seconds`` observes the run alone (duration minus initTime), so that
wait + init + duration add up to an activation's latency.

Every metric lives on the instance's own registry: two platforms in one process do not share counts.
Labels are bounded by the number of actions (never container or activation ids).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from localwhisk.outcomes import METRIC_STATUS
from localwhisk.scheduler import PoolView

#: Latency buckets, s: from a warm 1 ms call to a 5-minute time-out.
TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Response-size buckets, bytes.
SIZE_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
_ACTION_LABELS = ("namespace", "initiator", "action")


class _StatusCounters(Collector):
    """``openwhisk_action_status`` and ``openwhisk_action_status_code`` under their exact names."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: dict[tuple[str, str, str, str], float] = {}
        self._codes: dict[tuple[str, str, str, str], float] = {}

    def add(self, namespace: str, initiator: str, action: str, status: str, status_code: str | None) -> None:
        with self._lock:
            key = (namespace, initiator, action, status)
            self._status[key] = self._status.get(key, 0.0) + 1.0
            if status_code is not None:
                code_key = (namespace, initiator, action, status_code)
                self._codes[code_key] = self._codes.get(code_key, 0.0) + 1.0

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            status, codes = dict(self._status), dict(self._codes)
        family = Metric("openwhisk_action_status", "Activations by outcome (OpenWhisk user-events)", "unknown")
        for (namespace, initiator, action, value), count in sorted(status.items()):
            family.add_sample(
                "openwhisk_action_status",
                {"namespace": namespace, "initiator": initiator, "action": action, "status": value},
                count,
            )
        yield family
        family = Metric("openwhisk_action_status_code", "Activations by the statusCode the action returned", "unknown")
        for (namespace, initiator, action, value), count in sorted(codes.items()):
            family.add_sample(
                "openwhisk_action_status_code",
                {"namespace": namespace, "initiator": initiator, "action": action, "status_code": value},
                count,
            )
        yield family


class _PoolGauges(Collector):
    """The platform's own gauges, read from one consistent snapshot of the pools at scrape time."""

    def __init__(self, pools: Callable[[], list[PoolView]], cpu_control: bool, reserved_mb: Callable[[], int]) -> None:
        self._pools = pools
        self._cpu_control = cpu_control
        self._reserved_mb = reserved_mb

    def collect(self) -> Iterable[Metric]:
        views = self._pools()
        containers = GaugeMetricFamily(
            "localwhisk_containers", "Containers of an action by state", labels=["namespace", "action", "state"]
        )
        target = GaugeMetricFamily(
            "localwhisk_target_containers",
            "Pool size set through the resource API (-1 on demand, 0 scale to zero, k pinned)",
            labels=["namespace", "action"],
        )
        shares = GaugeMetricFamily(
            "localwhisk_container_cpu_shares", "CPU shares of each container of an action", labels=["namespace", "action"]
        )
        queued = GaugeMetricFamily(
            "localwhisk_queued_activations", "Activations waiting for a container", labels=["namespace", "action"]
        )
        cpu = GaugeMetricFamily(
            "localwhisk_action_cpu_seconds",
            "CPU time used by the action's containers since the platform started, s (monotonic)",
            labels=["namespace", "action"],
        )
        for view in views:
            labels = [view.namespace, view.action]
            for state, count in view.counts.items():
                if state != "total":
                    containers.add_metric(labels + [state], count)
            target.add_metric(labels, view.target)
            shares.add_metric(labels, view.cpu_shares)
            queued.add_metric(labels, view.queued)
            cpu.add_metric(labels, view.cpu_seconds)
        yield from (containers, target, shares, queued, cpu)
        yield GaugeMetricFamily(
            "localwhisk_cpu_control", "1 when container CPU shares are enforced by cgroups", value=int(self._cpu_control)
        )
        yield GaugeMetricFamily(
            "localwhisk_memory_reserved_megabytes", "Memory reserved by all containers, MB", value=self._reserved_mb()
        )


class PlatformMetrics:
    """The metrics of one platform instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.activations = Counter(
            "openwhisk_action_activations",
            "Activations (OpenWhisk user-events)",
            ["namespace", "initiator", "action", "kind", "memory"],
            registry=r,
        )
        self.cold_starts = Counter("openwhisk_action_coldStarts", "Cold starts", _ACTION_LABELS, registry=r)
        self.wait_time = Histogram(
            "openwhisk_action_waitTime_seconds", "Time in the platform before the container started work, s",
            _ACTION_LABELS, buckets=TIME_BUCKETS, registry=r,
        )
        self.init_time = Histogram(
            "openwhisk_action_initTime_seconds", "Container start and code load of cold starts, s",
            _ACTION_LABELS, buckets=TIME_BUCKETS, registry=r,
        )
        self.duration = Histogram(
            "openwhisk_action_duration_seconds", "Run time of the action (without init), s",
            _ACTION_LABELS, buckets=TIME_BUCKETS, registry=r,
        )
        self.response_size = Histogram(
            "openwhisk_action_response_size_bytes", "Size of the action's result, bytes",
            _ACTION_LABELS, buckets=SIZE_BUCKETS, registry=r,
        )
        self.memory = Gauge("openwhisk_action_memory", "Memory limit of the action, MB", _ACTION_LABELS, registry=r)
        self.limit_concurrent = Counter(
            "openwhisk_action_limit_concurrent", "Invocations refused over the concurrency limit",
            ["namespace", "initiator"], registry=r,
        )
        self.limit_timed = Counter(
            "openwhisk_action_limit_timed", "Invocations refused over the per-minute limit",
            ["namespace", "initiator"], registry=r,
        )
        self._status = _StatusCounters()
        r.register(self._status)

    def attach_pools(self, pools: Callable[[], list[PoolView]], cpu_control: bool, reserved_mb: Callable[[], int]) -> None:
        self.registry.register(_PoolGauges(pools, cpu_control, reserved_mb))

    def record(
        self,
        namespace: str,
        initiator: str,
        action: str,
        kind: str,
        memory_mb: int,
        status_code: int,
        wait_s: float,
        init_s: float | None,
        run_s: float,
        response_bytes: int,
        user_status_code: str | None,
    ) -> None:
        """Count one completed activation."""
        labels = (namespace, initiator, action)
        self.activations.labels(namespace, initiator, action, kind, str(memory_mb)).inc()
        self.memory.labels(*labels).set(memory_mb)
        if init_s is not None:
            self.cold_starts.labels(*labels).inc()
            self.init_time.labels(*labels).observe(init_s)
        self.wait_time.labels(*labels).observe(wait_s)
        self.duration.labels(*labels).observe(run_s)
        self.response_size.labels(*labels).observe(response_bytes)
        self._status.add(namespace, initiator, action, METRIC_STATUS[status_code], user_status_code)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
