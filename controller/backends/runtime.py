"""The contract between the ``openwhisk`` backend and the container runtime of its invokers.

What the backend needs from a runtime (:class:`ContainerRuntime`: read every action container, set
one container's CPU shares), what a read returns (:class:`RuntimeView` of :class:`ContainerInfo`),
the two ways a runtime call fails (:class:`RuntimeUnavailable`, :class:`RuntimeRejected`), and how
OpenWhisk names its containers, which is how containers are attributed to actions. The Docker
(:mod:`controller.backends.docker_runtime`) and Kubernetes (:mod:`controller.backends.kube_runtime`)
drivers implement the contract; the backend only uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

# --- container names ----------------------------------------------------------------------------


def sanitize(part: str) -> str:
    """OpenWhisk's container-name filter: letters, digits and ``_`` only (ContainerProxy.containerName)."""
    return "".join(c for c in part if c.isalnum() or c == "_")


def action_key(namespace: str, action: str, *, kubernetes: bool = False) -> str:
    """The part of a container (or pod) name that identifies an action of ``namespace``.

    OpenWhisk names a container ``wsk<instance>_<count>_<namespace>_<action>`` with namespace and action
    filtered by :func:`sanitize` (apache/openwhisk ``ContainerProxy.containerName`` and
    ``ContainerFactory.containerNamePrefix``); the Kubernetes factory turns ``_`` into ``-`` and lower-cases
    it for the pod name (``KubernetesContainer.create``). So ``image-inference-003`` of ``guest`` is
    ``guest_imageinference003`` in a Docker name and ``guest-imageinference003`` in a pod name.
    """
    key = f"{sanitize(namespace)}_{sanitize(action)}"
    return key.replace("_", "-").lower() if kubernetes else key


#: Stem cells (prewarmed containers) are named ``wsk<i>_<n>_prewarm_<kind>`` and keep that name after
#: an action is loaded into them, so they cannot be attributed to an action by name.
PREWARM_PART = "prewarm"


def container_action_key(name: str, *, kubernetes: bool = False) -> str | None:
    """The ``<namespace>_<action>`` part of an OpenWhisk container name, None if it is not an action
    container (not ``wsk...``, or a stem cell)."""
    name = name.lstrip("/")
    sep = "-" if kubernetes else "_"
    parts = name.split(sep, 2)
    if len(parts) != 3 or not parts[0].startswith("wsk") or not parts[1].isdigit():
        return None
    rest = parts[2]
    if rest.startswith(PREWARM_PART + sep):
        return None
    return rest


# --- what the runtimes report -------------------------------------------------------------------


class RuntimeUnavailable(Exception):
    """The container runtime of an invoker (or the Kubernetes API) could not be reached."""


class RuntimeRejected(Exception):
    """The runtime refused a change (invalid value, or a change it does not support)."""


@dataclass(frozen=True)
class ContainerInfo:
    """One action container as the runtime reports it."""

    invoker: str
    """Invoker the container runs on (configured host name, or the pod's ``invoker`` label)."""
    key: str
    """Action key from the container name (see :func:`action_key`)."""
    ref: str
    """What the runtime calls it: Docker container id, or pod name."""
    cpu_shares: float
    """CPU shares of the container (Docker ``CpuShares``; for a pod, its CPU request in shares); NaN if unknown."""
    memory_mb: float
    """Memory limit, MB."""
    busy: bool | None
    """Running an activation: Docker reports idle OpenWhisk containers as paused; None if unknown."""
    cpu_total_s: float | None
    """CPU consumed since the container started, core-seconds; None if unknown."""


@dataclass(frozen=True)
class RuntimeView:
    """One read of every invoker's containers."""

    containers: tuple[ContainerInfo, ...]
    """Action containers found (stem cells and foreign containers excluded)."""
    failed: Mapping[str, str]
    """Invokers that could not be read, with why: their containers are missing from ``containers``."""


class ContainerRuntime(Protocol):
    """The invokers' container runtime: Docker hosts or a Kubernetes cluster."""

    name: str
    invokers: tuple[str, ...]
    """Invokers known in advance (Docker: one per host; Kubernetes: none, they come from pod labels)."""
    kubernetes: bool

    def read(self) -> RuntimeView: ...

    def set_shares(self, container: ContainerInfo, shares: int) -> None:
        """Set one container's CPU shares; raise RuntimeRejected or RuntimeUnavailable."""
        ...


__all__ = [
    "PREWARM_PART",
    "ContainerInfo",
    "ContainerRuntime",
    "RuntimeRejected",
    "RuntimeUnavailable",
    "RuntimeView",
    "action_key",
    "container_action_key",
    "sanitize",
]
