"""CPU of OpenWhisk action pods through the Kubernetes API (OpenWhisk's KubernetesContainerFactory).

The factory runs each action container as a pod named like the Docker container (``_`` -> ``-``,
lower case: ``wsk0-7-guest-primes``) and labelled ``invoker=<invokerN>``, ``name=<pod>`` and
``user-action-pod=true`` (apache/openwhisk ``KubernetesContainerFactory``, ``WhiskPodBuilder``); there
is no action label, so the action comes from the pod name (:func:`container_action_key`).

CPU: a pod's container gets a CPU request (= limit) only when the invoker's ``cpu-scaling`` is on
(``whisk.kubernetes.cpu-scaling``: millicpus per memory step); the kubelet turns a request of m
millicores into ``m * 1024 / 1000`` cgroup shares. Changing it on a running pod needs in-place pod
resize (the ``pods/resize`` subresource, Kubernetes 1.33+ where it is on by default): the backend
patches the request (and the limit, if the pod has one, so that its QoS class stays). Without that
subresource, or for pods without a CPU request, CPU can only be set when the invoker creates the pod,
and each change is reported REJECTED (``docs/backends.md``). CPU used is not read here (the metrics
API is not assumed); it stays NaN.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from controller.backends.runtime import (
    ContainerInfo,
    RuntimeRejected,
    RuntimeUnavailable,
    RuntimeView,
    container_action_key,
)
from policies.types import SHARES_PER_CORE

#: Every Kubernetes API call this backend makes, as (verb, resource): the chart derives its RBAC
#: Role from this list, so nothing else may be called.
KUBERNETES_API_CALLS: tuple[tuple[str, str], ...] = (
    ("list", "pods"),
    ("patch", "pods/resize"),
)

#: Name of the action container inside an OpenWhisk pod (WhiskPodBuilder).
ACTION_CONTAINER = "user-action"
#: Label every OpenWhisk action pod carries.
ACTION_POD_SELECTOR = "user-action-pod=true"

_QUANTITY = re.compile(r"^(?P<number>[0-9.]+)(?P<unit>m|k|Ki|M|Mi|G|Gi)?$")
_UNITS = {None: 1.0, "m": 1e-3, "k": 1e3, "Ki": 1024.0, "M": 1e6, "Mi": 1024.0**2, "G": 1e9, "Gi": 1024.0**3}


def parse_quantity(value: str | None) -> float:
    """A Kubernetes quantity (``250m``, ``2``, ``256Mi``) as a number; NaN if absent or not understood."""
    if value is None:
        return math.nan
    match = _QUANTITY.match(str(value))
    if match is None:
        return math.nan
    return float(match.group("number")) * _UNITS[match.group("unit")]


def cpu_to_shares(cores: float) -> float:
    """The kubelet's mapping of a CPU request to cgroup shares (1 core = 1024, at least 2)."""
    return math.nan if math.isnan(cores) else max(math.floor(cores * SHARES_PER_CORE), 2)


def shares_to_millicpu(shares: int) -> int:
    """The smallest CPU request, millicores, that the kubelet maps to at least ``shares`` shares."""
    return max(math.ceil(shares * 1000 / SHARES_PER_CORE), 1)


class KubeRuntime:
    """Action pods of one Kubernetes namespace, behind :class:`controller.backends.runtime.ContainerRuntime`."""

    name = "kubernetes"
    kubernetes = True
    invokers: tuple[str, ...] = ()

    def __init__(self, api_client: k8s.ApiClient, namespace: str, *, timeout_s: float = 5.0) -> None:
        """``namespace`` is the Kubernetes namespace OpenWhisk's invokers create pods in."""
        self.core = k8s.CoreV1Api(api_client)
        self.namespace = namespace
        """Kubernetes namespace of the action pods."""
        self.timeout_s = timeout_s
        self._pods: dict[str, dict[str, Any]] = {}

    def read(self) -> RuntimeView:
        try:
            pods = self.core.list_namespaced_pod(
                self.namespace, label_selector=ACTION_POD_SELECTOR, _request_timeout=self.timeout_s
            )
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            raise RuntimeUnavailable(f"kubernetes: list pods in {self.namespace}: {_brief(error)}") from error
        containers = []
        self._pods = {}
        for pod in pods.items or []:
            meta, spec, status = pod.metadata, pod.spec, pod.status
            if meta is None or spec is None or (status is not None and status.phase not in ("Running", "Pending")):
                continue
            key = container_action_key(meta.name or "", kubernetes=True)
            action = next((c for c in spec.containers if c.name == ACTION_CONTAINER), None)
            if key is None or action is None:
                continue
            resources = action.resources
            requests_ = (resources.requests if resources else None) or {}
            limits = (resources.limits if resources else None) or {}
            self._pods[meta.name] = {"has_cpu_limit": "cpu" in limits, "has_cpu_request": "cpu" in requests_}
            containers.append(
                ContainerInfo(
                    invoker=(meta.labels or {}).get("invoker", spec.node_name or "unknown"),
                    key=key,
                    ref=meta.name,
                    cpu_shares=cpu_to_shares(parse_quantity(requests_.get("cpu"))),
                    memory_mb=parse_quantity(limits.get("memory") or requests_.get("memory")) / 1024.0**2,
                    busy=None,
                    cpu_total_s=None,
                )
            )
        return RuntimeView(tuple(containers), {})

    def set_shares(self, container: ContainerInfo, shares: int) -> None:
        facts = self._pods.get(container.ref, {})
        if not facts.get("has_cpu_request", False):
            raise RuntimeRejected(
                f"pod {container.ref} has no CPU request (the invoker's cpu-scaling is off): its CPU can only be set "
                "when the invoker creates it"
            )
        cpu = f"{shares_to_millicpu(shares)}m"
        resources: dict[str, Any] = {"requests": {"cpu": cpu}}
        if facts.get("has_cpu_limit", False):
            resources["limits"] = {"cpu": cpu}
        body = {"spec": {"containers": [{"name": ACTION_CONTAINER, "resources": resources}]}}
        try:
            self.core.patch_namespaced_pod_resize(
                container.ref, self.namespace, body,
                _content_type="application/strategic-merge-patch+json", _request_timeout=self.timeout_s,
            )
        except ApiException as error:
            message = _brief(error)
            if error.status == 404 and f'"{container.ref}" not found' in message:
                return  # the pod is gone since it was listed
            if error.status == 404:
                raise RuntimeRejected(
                    "in-place pod resize (pods/resize) is not available on this cluster: the CPU of an action pod "
                    "can only be set when the invoker creates it"
                ) from error
            if error.status is not None and 400 <= error.status < 500 and error.status != 429:
                raise RuntimeRejected(f"resize {container.ref} to {cpu}: {message}") from error
            raise RuntimeUnavailable(f"kubernetes: resize {container.ref}: {message}") from error
        except urllib3.exceptions.HTTPError as error:
            raise RuntimeUnavailable(f"kubernetes: resize {container.ref}: {error}") from error


def _brief(error: Exception) -> str:
    if isinstance(error, ApiException):
        try:
            return str(json.loads(error.body or "{}").get("message") or error.reason)
        except ValueError:
            return f"HTTP {error.status} {error.reason}"
    return str(error)


__all__ = [
    "ACTION_CONTAINER",
    "ACTION_POD_SELECTOR",
    "KUBERNETES_API_CALLS",
    "KubeRuntime",
    "cpu_to_shares",
    "parse_quantity",
    "shares_to_millicpu",
]
