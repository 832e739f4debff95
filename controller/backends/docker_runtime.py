"""CPU shares of OpenWhisk action containers through the Docker Engine API of each invoker host.

One client per invoker host (``tcp://host:2376`` with mutual TLS, or ``unix://`` on the host
itself). Per tick :meth:`DockerRuntime.read` lists the running and paused containers whose name
starts with ``wsk`` (OpenWhisk's prefix), inspects each (``HostConfig.CpuShares``, memory, paused =
idle) and, with ``read_cpu``, reads the cumulative CPU of each running one with a one-shot ``stats``
call; a paused container keeps the reading it had when it last ran (:class:`CpuCounter`).

Why the calls of one host are made at once: Docker 20.10 answers a one-shot ``stats`` in a few
milliseconds only when no ``stats`` call was made on the engine in the last second or so; otherwise
the call waits for the engine's next one-second collection (and for a paused container it always
waits). Made one after another, the calls cost about a second per container; made at once, about a
second for the host. So a host's inspect and ``stats`` calls run in a bounded pool of threads
(``parallel_calls``), the hosts are read at once as well, and each client's connection pool holds
as many connections as calls run together.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import docker
import docker.errors
import docker.tls
import requests
import requests.adapters

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
#: Most Engine API calls made at once to one host while reading it, and the size of each client's
#: connection pool. An invoker runs tens of action containers at most (its user memory over the
#: smallest action memory: 2048 MB / 128 MB = 16 with OpenWhisk's defaults), so 16 reads such a host
#: in one wait for the engine's collection, while a host with hundreds of containers still gets no
#: more than 16 connections. The docker SDK's own pool holds 10: more calls than that at once would
#: open and throw away a connection each (with a warning from urllib3).
PARALLEL_CALLS = 16
#: Most hosts read at once; each gets its own pool of ``parallel_calls`` threads. A host's read is
#: mostly a wait for its engine's collection, so hosts read one after another would add about a
#: second each; 16 covers most clusters in one wait and bounds the threads of a read (16 x 16) on a
#: large one, whose further hosts take their turn.
PARALLEL_HOSTS = 16
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
                  tls: docker.tls.TLSConfig | None = None, pool_size: int = PARALLEL_CALLS) -> EngineClient:
    """A client of one engine at ``api_version``; ``tls`` applies to ``tcp://`` and ``https://`` URLs
    only (a ``unix://`` socket is protected by its file permissions). It keeps up to ``pool_size``
    connections open, so that as many calls made at once from threads reuse them. No request is made."""
    secure = tls if tls is not None and urlsplit(base_url).scheme in ("tcp", "https") else False
    client = EngineClient(base_url=base_url, version=api_version, timeout=timeout_s, tls=secure,
                          max_pool_size=pool_size)
    if not client.base_url.startswith("http+docker://"):
        # tcp:// and http(s):// go through requests' own adapters, whose pool of a host holds 10
        # connections; the SDK's max_pool_size reaches only its unix-socket and ssh adapters (and
        # its unix-socket adapter keeps a pool per URL, so that calls at once never fill one).
        for prefix in ("http://", "https://"):
            client.mount(prefix, requests.adapters.HTTPAdapter(pool_maxsize=pool_size))
    return client


def _version_refused(error: docker.errors.APIError) -> bool:
    """The engine refused the API version of the request ("client version 1.43 is too new ...")."""
    return error.status_code == 400 and "client version" in str(error.explanation)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


@dataclass
class CpuCounter:
    """What the driver remembers of one container's CPU counter, so that a paused one needs no ``stats``.

    A paused container is frozen (cgroup freezer): it uses no CPU, so its counter is where it was
    when it last ran, and the driver reports that reading again (its CPU over the tick is 0) instead
    of asking the engine, which would make the call wait for its next one-second collection.

    A paused container whose counter the driver has never read is reported at 0.0 and treated as
    having used nothing since it was first seen; its counter is unknown until it runs.
    What its first reading then means depends on when it was first seen:

    * it appeared after the driver's first read of its host: the invoker created it while the daemon
      watched, so what it used before its pause (its cold start, its first activations) is load of
      the watched period. Its whole counter is reported, and it counts in the tick of that first
      reading, as it does for a container first seen running;
    * it was already on the host at the driver's first read: what it used then lies before the
      daemon watched, hours of CPU perhaps, and must not appear as one tick's load. Its first
      counter becomes its offset: it reads 0.0 at that reading and counts from there, so the CPU it
      used in the tick of that first reading is not counted.

    Not asking for a paused container's reading at all (``None``) would make its invoker's CPU
    unknown in most ticks, since OpenWhisk keeps its idle containers paused.
    """

    reported_s: float
    """Cumulative CPU last reported for the container, core-seconds: the engine's counter less
    ``offset_s``."""
    offset_s: float | None
    """Core-seconds subtracted from the engine's counter: 0 for a container whose whole counter counts,
    its first counter for one already paused on the host at the driver's first read, None until then."""

    def running(self, counter_s: float) -> float:
        """Report the engine's counter of the container, read now that it runs."""
        if self.offset_s is None:
            self.offset_s = counter_s - self.reported_s
        self.reported_s = counter_s - self.offset_s
        return self.reported_s


@dataclass(frozen=True)
class _Sample:
    """What the engine said of one listed container in one read."""

    container_id: str
    """Docker's id of the container (the ``Id`` of the list)."""
    key: str
    """Action key from the container name."""
    attrs: Mapping[str, Any]
    """The inspect answer."""
    counter_s: float | None
    """``cpu_stats.cpu_usage.total_usage`` of the one-shot ``stats`` answer, core-seconds; None when
    not asked (paused, or ``read_cpu`` off) or when the call failed."""
    stats_error: Exception | None
    """Why the ``stats`` call failed; None if it was not made or answered."""

    @property
    def paused(self) -> bool:
        return bool((self.attrs.get("State") or {}).get("Paused"))


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
        parallel_calls: int = PARALLEL_CALLS,
    ) -> None:
        """``hosts`` maps invoker name -> Docker base URL (``tcp://10.0.0.5:2376``); ``tls`` is the
        client certificate and CA for ``tcp://``/``https://`` hosts. Nothing is contacted here."""
        if not hosts:
            raise ValueError("docker shares: at least one invoker host is needed (invoker -> Docker URL)")
        if parallel_calls < 1:
            raise ValueError(f"docker shares: parallel_calls must be at least 1, not {parallel_calls}")
        self.hosts = dict(hosts)
        """Invoker name -> Docker base URL."""
        self.invokers = tuple(self.hosts)
        self.read_cpu = read_cpu
        """Read each running container's CPU counter (one ``stats`` call per running container per tick)."""
        self.timeout_s = timeout_s
        """Limit on one Engine API call, s (connect and read)."""
        self.parallel_calls = parallel_calls
        """Most inspect and ``stats`` calls made at once to one host, and its client's connection pool
        size (see :data:`PARALLEL_CALLS` for the default)."""
        self._tls = tls
        # Until a host is negotiated its client speaks NEWEST_API_VERSION, used only for GET /version.
        self._clients = {invoker: self._client(url, NEWEST_API_VERSION)
                         for invoker, url in self.hosts.items()}
        self._versions: dict[str, str] = {}
        # Invoker -> container id -> its CPU counter; an invoker is present once its host was read.
        self._counters: dict[str, dict[str, CpuCounter]] = {}

    @property
    def api_versions(self) -> Mapping[str, str]:
        """Invoker -> Engine API version negotiated with its host (hosts not yet reached are absent)."""
        return dict(self._versions)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def read(self) -> RuntimeView:
        """Every host's action containers, the hosts read at once.

        A host whose list or one of whose inspect calls fails (other than for a container removed
        meanwhile) is in ``failed`` and none of its containers is reported: a partial list would read
        as fewer containers. A ``stats`` call that fails (an error answer, a timeout, a lost
        connection, an answer without the counter) costs only that container's CPU: it is reported
        with ``cpu_total_s=None`` and everything the inspect said, and every other container of the
        host keeps its reading; the backend then counts that container's function and invoker CPU as
        unknown for the tick, never as zero. A lost connection or a refused API version there makes
        the host's version be negotiated again at the next contact, as it does for other calls.
        """
        with ThreadPoolExecutor(max_workers=min(PARALLEL_HOSTS, len(self.invokers)),
                                thread_name_prefix="docker-hosts") as pool:
            outcomes = list(pool.map(self._read_host_or_why, self.invokers))
        containers: list[ContainerInfo] = []
        failed: dict[str, str] = {}
        for invoker, outcome in zip(self.invokers, outcomes):
            if isinstance(outcome, RuntimeUnavailable):
                failed[invoker] = str(outcome)
            else:
                containers.extend(outcome)
        return RuntimeView(tuple(containers), failed)

    def _read_host_or_why(self, invoker: str) -> list[ContainerInfo] | RuntimeUnavailable:
        try:
            return self._read_host(invoker)
        except RuntimeUnavailable as error:
            return error

    def _read_host(self, invoker: str) -> list[ContainerInfo]:
        client = self._negotiated(invoker)
        try:
            listed = client.containers(filters={"name": "wsk"})
        except (docker.errors.APIError, requests.exceptions.RequestException) as error:
            raise self._unavailable(invoker, error) from error
        wanted = []
        for item in listed:
            names = item.get("Names") or []
            key = container_action_key(names[0]) if names else None
            if key is not None:
                wanted.append((item["Id"], key))
        samples: list[_Sample | None] = []
        if wanted:
            with ThreadPoolExecutor(max_workers=min(self.parallel_calls, len(wanted)),
                                    thread_name_prefix=f"docker-{invoker}") as pool:
                try:
                    samples = list(pool.map(lambda w: self._sample(client, *w), wanted))
                except (docker.errors.APIError, requests.exceptions.RequestException) as error:
                    raise self._unavailable(invoker, error) from error
        first_read = invoker not in self._counters
        counters = self._counters.setdefault(invoker, {})
        found = []
        for sample in samples:
            if sample is None:
                continue  # removed between the list and its inspect or stats: it is gone, not an error
            if sample.stats_error is not None:
                self._forget_version_if_lost(invoker, sample.stats_error)
            host_config = sample.attrs.get("HostConfig") or {}
            found.append(
                ContainerInfo(
                    invoker=invoker,
                    key=sample.key,
                    ref=sample.container_id,
                    cpu_shares=float(host_config.get("CpuShares") or 1024),  # 0 means Docker's default, 1024
                    memory_mb=float(host_config.get("Memory") or 0) / _MB,
                    busy=not sample.paused,
                    cpu_total_s=self._cpu_total_s(counters, sample, first_read),
                )
            )
        listed_ids = {container_id for container_id, _ in wanted}
        for gone in [container_id for container_id in counters if container_id not in listed_ids]:
            del counters[gone]
        return found

    def _sample(self, client: EngineClient, container_id: str, key: str) -> _Sample | None:
        """Inspect one container and, when it runs and CPU is read, ask its one-shot ``stats``.
        None if it is gone; an inspect failure is raised (the host's read fails), a ``stats``
        failure is kept in the sample."""
        try:
            attrs = client.inspect_container(container_id)
        except docker.errors.NotFound:
            return None
        sample = _Sample(container_id, key, attrs, None, None)
        if not self.read_cpu or sample.paused:
            return sample
        try:
            stats = client.stats(container_id, stream=False, one_shot=True)
            counter_s = float(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9
        except docker.errors.NotFound:
            return None
        except (docker.errors.APIError, requests.exceptions.RequestException) as error:
            return _Sample(container_id, key, sample.attrs, None, error)
        except (KeyError, TypeError, ValueError) as error:
            why = ValueError(f"stats of {container_id[:12]} without cpu_stats.cpu_usage.total_usage: "
                             f"{error!r}")
            return _Sample(container_id, key, sample.attrs, None, why)
        return _Sample(container_id, key, sample.attrs, counter_s, None)

    def _cpu_total_s(self, counters: dict[str, CpuCounter], sample: _Sample,
                     first_read: bool) -> float | None:
        """The container's cumulative CPU to report, core-seconds (see :class:`CpuCounter`); None if
        CPU is not read or its ``stats`` call failed."""
        if not self.read_cpu:
            return None
        counter = counters.get(sample.container_id)
        if sample.paused:
            if counter is None:
                counter = counters[sample.container_id] = CpuCounter(0.0, None if first_read else 0.0)
            return counter.reported_s
        if sample.counter_s is None:
            return None
        if counter is None:
            counter = counters[sample.container_id] = CpuCounter(0.0, 0.0)
        return counter.running(sample.counter_s)

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
            client = self._client(url, version)
            self._clients[invoker] = client
        self._versions[invoker] = version
        return client

    def _forget_version_if_lost(self, invoker: str, error: Exception) -> None:
        """Forget the host's API version when the connection was lost or the version refused, so
        that the next contact negotiates again."""
        if isinstance(error, docker.errors.APIError):  # an answer (APIError is also a RequestException)
            forget = _version_refused(error)
        else:
            forget = isinstance(error, requests.exceptions.RequestException)
        if forget:
            self._versions.pop(invoker, None)

    def _client(self, url: str, api_version: str) -> EngineClient:
        return engine_client(url, api_version, timeout_s=self.timeout_s, tls=self._tls,
                             pool_size=self.parallel_calls)

    def _unavailable(self, invoker: str, error: Exception) -> RuntimeUnavailable:
        """The error for a host that did not answer usefully (see :meth:`_forget_version_if_lost`)."""
        self._forget_version_if_lost(invoker, error)
        return RuntimeUnavailable(f"docker host {self.hosts[invoker]} of {invoker}: {_one_line(error)}")


__all__ = [
    "GATEWAY_STATUSES",
    "NEWEST_API_VERSION",
    "OLDEST_API_VERSION",
    "PARALLEL_CALLS",
    "PARALLEL_HOSTS",
    "CpuCounter",
    "DockerRuntime",
    "EngineClient",
    "engine_client",
    "negotiate_api_version",
]
