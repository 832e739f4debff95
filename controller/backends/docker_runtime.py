"""CPU shares of OpenWhisk action containers through the Docker Engine API of each invoker host.

One client per invoker host (``tcp://host:2376`` with mutual TLS, or ``unix://`` on the host
itself). Per tick :meth:`DockerRuntime.read` lists the running and paused containers whose name
starts with ``wsk`` (OpenWhisk's prefix), inspects each (``HostConfig.CpuShares``, memory, paused =
idle) and, with ``read_cpu``, reads its cumulative CPU with a one-shot ``stats`` call.
:meth:`DockerRuntime.set_shares` is ``docker update --cpu-shares`` (``POST /containers/{id}/update``
with ``CpuShares``): it changes the container's cgroup at once, without a restart, paused or not.

Engine API version: engines refuse a client version above their newest ("client version 1.43 is too
new", Docker 20.10 speaks 1.41) and below their minimum, which recent engines have raised (Docker 29
refuses anything under 1.44). So the version is negotiated per host at first contact: the unversioned
``GET /version`` gives the engine's ``ApiVersion`` and ``MinAPIVersion``, and the driver speaks the
newest version both sides know (:func:`negotiate_api_version`). A host whose connection is lost, or
that refuses the negotiated version (an engine upgraded under a running daemon), is asked again at
the next contact.

Failures: no answer, a gateway error (502-504) or an API-version refusal make the host
:class:`~controller.backends.runtime.RuntimeUnavailable`; any other refusal of an update by the
engine is :class:`~controller.backends.runtime.RuntimeRejected` — Docker answers a value the kernel
or runc refuses (cpu-shares below 2) with HTTP 500, not 4xx, and that is a refused decision, not an
outage.

TLS: the engine is checked against the CA in the :class:`docker.tls.TLSConfig` given, also when
``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` is set (requests would otherwise let the environment's
bundle replace that CA, and the engine's certificate would fail to verify).

Caveats (also in ``docs/backends.md``): the invoker does not know about the change, so it neither
undoes it nor gives it to the next container it creates (the backend re-applies the target to new
containers every tick); stem cells keep their ``prewarm`` name after an action is loaded, so their
shares are never changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.errors
import docker.tls
import requests

from controller.backends.runtime import (
    ContainerInfo,
    RuntimeRejected,
    RuntimeUnavailable,
    RuntimeView,
    container_action_key,
)

#: Oldest Engine API version the driver speaks: Docker 20.10. One-shot ``stats`` (one sample instead
#: of two a second apart) appeared in 1.41.
OLDEST_API_VERSION = "1.41"
#: Newest Engine API version the driver speaks: the newest the docker SDK it depends on (7.1) knows.
#: The requests it makes (list with a name filter, inspect, update ``CpuShares``, one-shot stats) and
#: the fields it reads are the same from 1.41 to 1.44 (Engine API version history), and 1.44 is the
#: minimum of Docker 29, the first engine to raise it past 1.24.
NEWEST_API_VERSION = "1.44"
#: Answers that mean "no engine behind this address right now" (a proxy or load balancer in front).
GATEWAY_STATUSES = frozenset({502, 503, 504})
_MB = 1024 * 1024


def _api_version(text: object) -> tuple[int, int]:
    """``"1.41"`` -> ``(1, 41)``; ValueError if it is not ``major.minor``."""
    major, minor = str(text).split(".")
    return int(major), int(minor)


def negotiate_api_version(engine: Mapping[str, Any]) -> str:
    """The Engine API version to speak to an engine, from its ``GET /version`` answer.

    The newest version both sides speak: ``min(engine's ApiVersion, NEWEST_API_VERSION)``, provided
    the engine still accepts it (its ``MinAPIVersion``, absent on old engines, is not above it) and
    the driver can speak it (not below ``OLDEST_API_VERSION``). Raises ValueError saying which
    versions each side speaks otherwise.
    """
    try:
        engine_newest = _api_version(engine["ApiVersion"])
        engine_oldest = _api_version(engine.get("MinAPIVersion") or "1.0")
    except (KeyError, TypeError, ValueError):
        shown = f"{dict(engine)!r:.200}"
        raise ValueError(f"GET /version gave no usable ApiVersion/MinAPIVersion: {shown}") from None
    ours = f"mfrm speaks Engine API {OLDEST_API_VERSION} to {NEWEST_API_VERSION}"
    theirs = (f"the engine (Docker {engine.get('Version', '?')}) speaks {_text(engine_oldest)} to "
              f"{_text(engine_newest)}")
    chosen = min(engine_newest, _api_version(NEWEST_API_VERSION))
    if chosen < _api_version(OLDEST_API_VERSION):
        raise ValueError(f"{theirs}; {ours}: upgrade the engine to Docker 20.10 or newer")
    if engine_oldest > chosen:
        raise ValueError(f"{theirs}; {ours}: this engine is newer than mfrm supports")
    return _text(chosen)


def _text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


class EngineClient(docker.APIClient):
    """The docker SDK's low-level client, verifying a TLS engine against the CA it was given.

    requests lets ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` replace a session's own CA file for
    every request (``Session.merge_environment_settings``); with those set, as on many build machines,
    an engine whose certificate comes from a private CA would fail to verify. Here the CA given wins;
    the environment still supplies proxies.
    """

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str):  # a CA file from TLSConfig: never replaced
            settings["verify"] = self.verify
        return settings


def engine_client(base_url: str, api_version: str, *, timeout_s: float,
                  tls: docker.tls.TLSConfig | None = None) -> EngineClient:
    """A client of one engine at ``api_version``; ``tls`` applies to ``tcp://`` and ``https://`` URLs
    only (a ``unix://`` socket is protected by its file permissions). No request is made."""
    secure = tls if tls is not None and urlsplit(base_url).scheme in ("tcp", "https") else False
    return EngineClient(base_url=base_url, version=api_version, timeout=timeout_s, tls=secure)


def _version_refused(error: docker.errors.APIError) -> bool:
    """The engine refused the API version of the request ("client version 1.43 is too new ...")."""
    return error.status_code == 400 and "client version" in str(error.explanation)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


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
        tls: docker.tls.TLSConfig | None = None,
    ) -> None:
        """``hosts`` maps invoker name -> Docker base URL (``tcp://10.0.0.5:2376``); ``tls`` is the
        client certificate and CA for ``tcp://``/``https://`` hosts. Nothing is contacted here."""
        if not hosts:
            raise ValueError("docker shares: at least one invoker host is needed (invoker -> Docker URL)")
        self.hosts = dict(hosts)
        """Invoker name -> Docker base URL."""
        self.invokers = tuple(self.hosts)
        self.read_cpu = read_cpu
        """Read each container's CPU counter (one ``stats`` call per container per tick)."""
        self.timeout_s = timeout_s
        """Limit on one Engine API call, s (connect and read)."""
        self._tls = tls
        # Until a host is negotiated its client speaks NEWEST_API_VERSION, used only for GET /version.
        self._clients = {invoker: engine_client(url, NEWEST_API_VERSION, timeout_s=timeout_s, tls=tls)
                         for invoker, url in self.hosts.items()}
        self._versions: dict[str, str] = {}

    @property
    def api_versions(self) -> Mapping[str, str]:
        """Invoker -> Engine API version negotiated with its host (hosts not yet reached are absent)."""
        return dict(self._versions)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def read(self) -> RuntimeView:
        containers: list[ContainerInfo] = []
        failed: dict[str, str] = {}
        for invoker in self.invokers:
            try:
                containers.extend(self._read_host(invoker))
            except RuntimeUnavailable as error:
                failed[invoker] = str(error)
        return RuntimeView(tuple(containers), failed)

    def _read_host(self, invoker: str) -> list[ContainerInfo]:
        client = self._negotiated(invoker)
        try:
            listed = client.containers(filters={"name": "wsk"})
        except (docker.errors.APIError, requests.exceptions.RequestException) as error:
            raise self._unavailable(invoker, error) from error
        found = []
        for item in listed:
            names = item.get("Names") or []
            key = container_action_key(names[0]) if names else None
            if key is None:
                continue
            try:
                attrs = client.inspect_container(item["Id"])
                cpu_total_s = None
                if self.read_cpu:
                    stats = client.stats(item["Id"], stream=False, one_shot=True)
                    cpu_total_s = float(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9
            except docker.errors.NotFound:
                continue  # removed between the list and the inspect: it is gone, not an error
            except (docker.errors.APIError, requests.exceptions.RequestException) as error:
                raise self._unavailable(invoker, error) from error
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
        if container.invoker not in self._clients:
            raise RuntimeRejected(f"no Docker host configured for invoker {container.invoker!r}")
        client = self._negotiated(container.invoker)
        try:
            client.update_container(container.ref, cpu_shares=int(shares))
        except docker.errors.NotFound:
            return  # removed since it was listed; the next tick will not see it
        except docker.errors.APIError as error:
            if _version_refused(error) or error.status_code in GATEWAY_STATUSES:
                raise self._unavailable(container.invoker, error) from error
            raise RuntimeRejected(
                f"docker update --cpu-shares {shares} {container.ref[:12]} on {container.invoker}: "
                f"the engine answered {error.status_code}: {_one_line(error.explanation)}"
            ) from error
        except requests.exceptions.RequestException as error:
            raise self._unavailable(container.invoker, error) from error

    def _negotiated(self, invoker: str) -> EngineClient:
        """The host's client at its negotiated API version, asking ``GET /version`` on first contact."""
        client = self._clients[invoker]
        if invoker in self._versions:
            return client
        url = self.hosts[invoker]
        try:
            engine = client.version(api_version=False)
        except (docker.errors.APIError, requests.exceptions.RequestException) as error:
            raise RuntimeUnavailable(f"docker host {url} of {invoker}: {_one_line(error)}") from error
        try:
            version = negotiate_api_version(engine if isinstance(engine, Mapping) else {})
        except ValueError as error:
            raise RuntimeUnavailable(f"docker host {url} of {invoker}: {error}") from None
        if version != client.api_version:
            client.close()
            client = engine_client(url, version, timeout_s=self.timeout_s, tls=self._tls)
            self._clients[invoker] = client
        self._versions[invoker] = version
        return client

    def _unavailable(self, invoker: str, error: Exception) -> RuntimeUnavailable:
        """The error for a host that did not answer usefully; forgets its API version when the
        connection was lost or the version refused, so that the next contact negotiates again."""
        if isinstance(error, docker.errors.APIError):  # an answer (APIError is also a RequestException)
            forget = _version_refused(error)
        else:
            forget = isinstance(error, requests.exceptions.RequestException)
        if forget:
            self._versions.pop(invoker, None)
        return RuntimeUnavailable(f"docker host {self.hosts[invoker]} of {invoker}: {_one_line(error)}")


__all__ = [
    "GATEWAY_STATUSES",
    "NEWEST_API_VERSION",
    "OLDEST_API_VERSION",
    "DockerRuntime",
    "EngineClient",
    "engine_client",
    "negotiate_api_version",
]
