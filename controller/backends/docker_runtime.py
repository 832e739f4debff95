"""CPU shares of OpenWhisk action containers through the Docker Engine API of each invoker host.

One ``docker.DockerClient`` per invoker host (``tcp://host:2376`` with TLS, or ``unix://`` on the
host itself). Per tick :meth:`DockerRuntime.read` lists the running and paused containers whose name
starts with ``wsk`` (OpenWhisk's prefix), inspects each (``HostConfig.CpuShares``, memory, paused =
idle) and, with ``read_cpu``, reads its cumulative CPU with a one-shot ``stats`` call.
:meth:`DockerRuntime.set_shares` is ``docker update --cpu-shares`` (``POST /containers/{id}/update``
with ``CpuShares``): it changes the container's cgroup at once, without a restart.

Caveats (also in ``docs/backends.md``): the invoker does not know about the change, so it neither
undoes it nor gives it to the next container it creates (the backend re-applies the target to new
containers every tick); stem cells keep their ``prewarm`` name after an action is loaded, so their
shares are never changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import docker
import docker.errors
import requests

from controller.backends.runtime import (
    ContainerInfo,
    RuntimeRejected,
    RuntimeUnavailable,
    RuntimeView,
    container_action_key,
)

#: Docker API version the backend speaks (Docker Engine 24+, 2023; pinned so that no ``/version``
#: round trip is needed at start and the request shapes are the ones the fakes record).
DOCKER_API_VERSION = "1.43"
_MB = 1024 * 1024


def _client(base_url: str, timeout_s: float) -> docker.DockerClient:
    return docker.DockerClient(base_url=base_url, version=DOCKER_API_VERSION, timeout=timeout_s)


class DockerRuntime:
    """The invokers' Docker hosts, behind :class:`controller.backends.runtime.ContainerRuntime`."""

    name = "docker"
    kubernetes = False

    def __init__(
        self,
        hosts: Mapping[str, str],
        *,
        timeout_s: float = 5.0,
        read_cpu: bool = True,
        client_factory: Callable[[str, float], Any] = _client,
    ) -> None:
        """``hosts`` maps invoker name -> Docker base URL (``tcp://10.0.0.5:2376``)."""
        if not hosts:
            raise ValueError("docker shares: at least one invoker host is needed (invoker name -> Docker URL)")
        self.hosts = dict(hosts)
        """Invoker name -> Docker base URL."""
        self.invokers = tuple(self.hosts)
        self.read_cpu = read_cpu
        """Read each container's CPU counter (one ``stats`` call per container per tick)."""
        self._clients = {invoker: client_factory(url, timeout_s) for invoker, url in self.hosts.items()}
        self._where: dict[str, str] = {}

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def read(self) -> RuntimeView:
        containers: list[ContainerInfo] = []
        failed: dict[str, str] = {}
        where: dict[str, str] = {}
        for invoker, client in self._clients.items():
            try:
                found = self._read_host(invoker, client)
            except (docker.errors.APIError, requests.exceptions.RequestException) as error:
                failed[invoker] = f"docker host {self.hosts[invoker]} of {invoker}: {error}"
                continue
            containers.extend(found)
            where.update({c.ref: invoker for c in found})
        self._where = where
        return RuntimeView(tuple(containers), failed)

    def _read_host(self, invoker: str, client: Any) -> list[ContainerInfo]:
        found = []
        for item in client.api.containers(filters={"name": "wsk"}):
            names = item.get("Names") or []
            key = container_action_key(names[0]) if names else None
            if key is None:
                continue
            try:
                attrs = client.api.inspect_container(item["Id"])
                cpu_total_s = None
                if self.read_cpu:
                    stats = client.api.stats(item["Id"], stream=False, one_shot=True)
                    cpu_total_s = float(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9
            except docker.errors.NotFound:
                continue  # removed between the list and the inspect: it is gone, not an error
            host_config = attrs.get("HostConfig") or {}
            state = attrs.get("State") or {}
            found.append(
                ContainerInfo(
                    invoker=invoker,
                    key=key,
                    ref=item["Id"],
                    cpu_shares=float(host_config.get("CpuShares") or 1024),  # 0 means Docker's default, 1024
                    memory_mb=float(host_config.get("Memory") or 0) / _MB,
                    busy=not bool(state.get("Paused")),
                    cpu_total_s=cpu_total_s,
                )
            )
        return found

    def set_shares(self, container: ContainerInfo, shares: int) -> None:
        client = self._clients.get(container.invoker)
        if client is None:
            raise RuntimeRejected(f"no Docker host configured for invoker {container.invoker!r}")
        try:
            client.api.update_container(container.ref, cpu_shares=int(shares))
        except docker.errors.NotFound:
            return  # removed since it was listed; the next tick will not see it
        except docker.errors.APIError as error:
            if error.is_client_error():
                raise RuntimeRejected(f"docker update --cpu-shares {shares} {container.ref[:12]}: {error.explanation}") from error
            raise RuntimeUnavailable(f"docker host of {container.invoker}: {error}") from error
        except requests.exceptions.RequestException as error:
            raise RuntimeUnavailable(f"docker host {self.hosts[container.invoker]} of {container.invoker}: {error}") from error


__all__ = ["DOCKER_API_VERSION", "DockerRuntime"]
