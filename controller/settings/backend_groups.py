"""The groups of the platforms mfrm talks to: the ``local`` and ``openwhisk`` backends of the daemon, and
the OpenWhisk API ``mfrm replay`` sends a trace to."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from controller.settings.base import SettingsGroup
from controller.settings.urls import http_url_problem


class LocalSettings(SettingsGroup):
    """The ``local`` backend (``daemon.backend=local``): the one-machine platform of docs/localwhisk.md."""

    api_host: str = Field("http://127.0.0.1:3233", min_length=1)
    """URL of the platform's API. localwhisk's documented example port, on loopback, where it
    listens by default."""
    auth: SecretStr | None = None
    """API key ``uuid:key`` of the platform (``MFRM_LOCAL__AUTH``). No default: the platform's key
    is chosen when it starts; the backend refuses to start without one."""
    namespace: str = Field("_", min_length=1)
    """Namespace of the managed actions; ``_`` is the key's own, the platform's only one."""
    functions: tuple[str, ...] = ()
    """Actions the daemon manages, in order. Empty: every action of the namespace when the daemon
    starts (deploy them first, e.g. with ``mfrm replay --deploy``)."""
    slo_file: Path | None = None
    """JSON of ``python -m workload.functions.solo --json FILE``: each benchmark's solo p99 + 15%
    (``slo_ms``), measured on this platform. An action named ``<benchmark>`` or
    ``<benchmark>-<n>`` gets its benchmark's SLO. Required: the paper's SLO is a measurement."""
    cores: float | None = Field(None, gt=0, le=1024)
    """CPU cores the platform's containers share. Unset: the cores this process may run on
    (the platform runs on the same machine)."""
    lookback_s: float = Field(120.0, gt=0, le=3600)
    """How far back each tick re-reads activations so that late-stored ones are still counted
    once, s. 120 s is twice OpenWhisk's default 60-s action time limit."""
    connect_timeout_s: float = Field(3.05, gt=0, le=60)
    """Longest wait for a TCP connection to the platform, s. 3.05: just over TCP's 3-s initial
    retransmission timeout, so one lost SYN is resent before giving up."""
    read_timeout_s: float = Field(5.0, gt=0, le=300)
    """Longest wait for each read of an answer, s. The daemon lists and updates, never waits for a
    blocking invocation, so 5 s (half a 10-s tick) is ample for a page of 200 activations; within a
    tick the daemon's deadline (``daemon.tick_deadline_s``) shortens it further."""
    max_attempts: int = Field(2, ge=1, le=10)
    """Tries per request, the first included (429, 503 and lost connections are retried after a
    short backoff). 2 rides out one dropped connection within a tick; a longer outage fails the tick
    and the daemon's own backoff (``daemon.backoff_s``) takes over."""

    @model_validator(mode="after")
    def _api_is_a_url(self) -> LocalSettings:
        # The platform is reached with ``auth``. A user and password in the URL are not refused here,
        # only kept out of every log and saved run (``Settings.logged`` masks them).
        problem = http_url_problem("local.api_host", self.api_host, credentials_allowed=True)
        if problem is not None:
            raise ValueError(problem)
        return self


#: Most actions one daemon manages: each is a metric label value; more go to further releases.
OPENWHISK_MAX_FUNCTIONS = 1000
#: Longest entity name OpenWhisk accepts.
_OPENWHISK_MAX_NAME = 256
#: URL schemes the docker SDK speaks that the backend supports.
_DOCKER_SCHEMES = ("unix", "tcp", "http", "https")


def _is_action_name(name: str) -> bool:
    """OpenWhisk's EntityName rule: ASCII letters, digits, ``_@ .-``, starting with a letter, digit or
    ``_``, not ending with a space, at most 256 characters (no package part: activations carry the
    bare name)."""
    if not 0 < len(name) <= _OPENWHISK_MAX_NAME or name[-1] == " ":
        return False
    allowed = all(c.isascii() and (c.isalnum() or c in "_@ .-") for c in name)
    return allowed and (name[0].isalnum() or name[0] == "_")


class OpenWhiskSettings(SettingsGroup):
    """The ``openwhisk`` backend (``daemon.backend=openwhisk``): a real deployment, docs/backends.md.

    Where the API is, which actions are managed and their SLOs, how the invokers are reached. What
    only this backend needs (``api_host``, ``auth``, ``functions``, ``docker_hosts``,
    ``prometheus_url``) is required when it starts (``controller.backends.openwhisk.from_settings``),
    not when the settings load, so that a file written for another backend still loads.
    """

    api_host: str | None = None
    """URL of OpenWhisk's API, with its scheme: ``http://owdev-controller.openwhisk.svc.cluster.local:8080``
    (openwhisk-deploy-kube's controller, inside the cluster) or the ingress, ``https://<host>:31001``.
    No default: a production deployment has no usual address; the backend refuses to start without one."""
    auth: SecretStr | None = None
    """API key ``uuid:key`` of the namespace that owns the managed actions, best given as
    ``MFRM_OPENWHISK__AUTH`` (the chart passes it from a Secret). No default; logged as ``**********``."""
    namespace: str = Field("_", min_length=1, max_length=_OPENWHISK_MAX_NAME)
    """OpenWhisk namespace of the managed actions. ``_`` is the key's own; with a container runtime or
    Prometheus the backend looks its real name up once at start (``GET /api/v1/namespaces``), because
    container names and metric labels carry the real name. Set the real name to skip that call."""
    verify_tls: bool = True
    """Check the API's TLS certificate. Off only for a self-signed test certificate (openwhisk-deploy-kube's
    default ingress); the key travels with every request."""
    connect_timeout_s: float = Field(3.05, gt=0, le=60)
    """Longest wait for a TCP connection to the API, s. 3.05: just over TCP's 3-s initial retransmission
    timeout, so one lost SYN is resent before giving up."""
    read_timeout_s: float = Field(5.0, gt=0, le=300)
    """Longest wait for each read of an answer, s. The daemon lists and updates, never waits for a
    blocking invocation, so 5 s (half a 10-s tick) is ample for a page of 200 activations."""
    max_attempts: int = Field(2, ge=1, le=10)
    """Tries per API request, the first included (429, 503 and lost connections are retried after a
    backoff). 2 rides out one dropped connection within a tick; a longer outage fails the tick and the
    daemon's own backoff (``daemon.backoff_s``) takes over."""
    lookback_s: float = Field(120.0, gt=0, le=3600)
    """How far back each tick re-reads activations so that late-stored ones are still counted once, s.
    120 s is twice OpenWhisk's default 60-s action time limit."""
    functions: tuple[str, ...] = Field((), max_length=OPENWHISK_MAX_FUNCTIONS)
    """Actions the daemon manages, in order, by name (without a package). Required by the backend: a
    namespace may hold actions nobody asked mfrm to touch. Each name is a metric label value, so at
    most 1000; split a larger set over several releases, each with its own list (sharding)."""
    slo_s: dict[str, float] = Field(default_factory=dict)
    """SLO per managed action, s (0 < value <= 3600), e.g. ``{primes: 0.35}``; every name must be in
    ``functions``. The paper's rule is the action's p99 running alone plus 15%: the ``slo_ms`` column
    of ``python -m workload.functions.solo`` run against this deployment."""
    default_slo_s: float | None = Field(None, gt=0, le=3600)
    """SLO of every managed action without an ``slo_s`` entry, s. Unset: each needs its own entry; no
    SLO is invented, since rewards and SLO violations are measured against it."""
    latency_source: Literal["activations", "prometheus"] = "activations"
    """Where completions, latency and cold starts come from: the activations API (exact, one paged
    read per tick) or Prometheus with OpenWhisk's user-events metrics (lighter on a busy namespace;
    quantiles estimated from histograms, conservatively). Activations: they need nothing else."""
    prometheus_url: str | None = None
    """Base URL of the Prometheus that scrapes OpenWhisk's user-events service (openwhisk-deploy-kube:
    ``http://owdev-prometheus-server.openwhisk.svc.cluster.local:9090``). Needed with
    ``latency_source=prometheus`` only."""
    prometheus_timeout_s: float = Field(5.0, gt=0, le=60)
    """Longest wait for one PromQL query, s (also the query's server-side timeout). 5 s keeps a 10-s
    tick alive when Prometheus hangs."""
    runtime: Literal["none", "docker", "kubernetes"] = "none"
    """How the invokers' containers are reached for container counts and CPU shares: ``docker`` (the
    Docker Engine API of each invoker host, ``docker_hosts``), ``kubernetes`` (action pods through the
    Kubernetes API) or ``none`` (latency only; every shares decision is rejected). ``none`` because
    the others need access the operator grants (the chart sets it from ``openwhisk.containerFactory``)."""
    docker_hosts: dict[str, str] = Field(default_factory=dict, max_length=1000)
    """Invoker name -> Docker Engine URL (``tcp://10.0.0.5:2376``, ``unix:///var/run/docker.sock``), one
    per invoker host, for ``runtime=docker``; the names become the snapshot's invoker rows. Plain TCP
    is refused except to loopback: the Docker API is root on its host."""
    docker_tls_dir: Path | None = None
    """Folder with ``ca.pem``, ``cert.pem`` and ``key.pem`` (Docker's ``DOCKER_CERT_PATH`` layout):
    mutual TLS to every ``tcp://`` Docker host. Unset: no TLS (sockets and loopback only)."""
    kubernetes_namespace: str = Field("openwhisk", min_length=1, max_length=63)
    """Kubernetes namespace where OpenWhisk's invokers create action pods, for ``runtime=kubernetes``.
    ``openwhisk``, where openwhisk-deploy-kube's documentation installs it (the chart sets it)."""
    kubeconfig: Path | None = None
    """kubeconfig file for ``runtime=kubernetes``. Unset: the pod's service account inside Kubernetes,
    else ``$KUBECONFIG`` or ``~/.kube/config``, as kubectl reads them."""
    runtime_timeout_s: float = Field(5.0, gt=0, le=60)
    """Longest wait for one Docker or Kubernetes API call, s. 5 s keeps a 10-s tick alive when one
    invoker host hangs."""
    warm_pool: Literal["reject", "instances-limit"] = "reject"
    """What a container target turns (``WarmPoolMode``): ``reject`` turns nothing and reports each
    target as not supported by stock OpenWhisk; ``instances-limit`` sets the action's
    ``limits.instances`` (a cap, not a floor; OpenWhisk's new scheduler). ``reject``, so that nothing
    changes behind the operator's back; docs/backends.md has the caveats."""
    invoker_cores: float = Field(8.0, gt=0, le=1024)
    """CPU cores of one invoker (OpenWhisk's API does not report them). 8 as the paper's invoker VMs;
    set your invoker nodes' allocatable CPU."""
    invoker_memory_mb: float = Field(2048.0, ge=128, le=4_194_304)
    """User memory of one invoker, MB (``whisk.containerPool.userMemory``). 2048 MB is OpenWhisk's
    default."""

    @model_validator(mode="after")
    def _consistent(self) -> OpenWhiskSettings:
        problems: list[str] = []
        for key in ("api_host", "prometheus_url"):
            url = getattr(self, key)
            problem = http_url_problem(f"openwhisk.{key}", url) if url is not None else None
            if problem is not None:
                problems.append(problem)
        bad_names = [n for n in self.functions if not _is_action_name(n)]
        if bad_names:
            problems.append(f"openwhisk.functions: {bad_names} are not OpenWhisk action names (letters, "
                            f"digits, '_@ .-', at most {_OPENWHISK_MAX_NAME} characters, no package)")
        twice = sorted({n for n in self.functions if self.functions.count(n) > 1})
        if twice:
            problems.append(f"openwhisk.functions: {twice} listed more than once")
        unknown = sorted(set(self.slo_s) - set(self.functions))
        if unknown:
            problems.append(f"openwhisk.slo_s: {unknown} are not in openwhisk.functions")
        out_of_range = {k: v for k, v in self.slo_s.items() if not 0 < v <= 3600}
        if out_of_range:
            problems.append(f"openwhisk.slo_s: {out_of_range}; allowed: 0 < value <= 3600 (s)")
        if self.default_slo_s is None:
            missing = [n for n in dict.fromkeys(self.functions) if n not in self.slo_s]
            if missing:
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                problems.append(f"openwhisk.slo_s: no SLO for {missing[:10]}{more} "
                                "(give each one, or openwhisk.default_slo_s)")
        for invoker, url in self.docker_hosts.items():
            if urlsplit(url).scheme not in _DOCKER_SCHEMES:
                problems.append(f"openwhisk.docker_hosts.{invoker}={url!r}: the scheme must be one of "
                                f"{', '.join(s + '://' for s in _DOCKER_SCHEMES)}")
        if problems:
            raise ValueError("\n    ".join(problems))
        return self


class ReplaySettings(SettingsGroup):
    """``mfrm replay``: the trace's arrivals sent open loop to an OpenWhisk API, every invocation recorded.

    Which functions and minutes are replayed comes from ``workload`` and ``seed``, as for a simulation,
    so the same seed sends the same arrivals. ``api_host`` is required when the command starts, not when
    the settings load, so that one file serves every command.
    """

    api_host: str | None = None
    """URL of the OpenWhisk API to replay against, with its scheme (``http://127.0.0.1:3233`` for
    localwhisk). No default: a replay loads a platform on purpose; the command refuses to start
    without one."""
    auth: SecretStr | None = None
    """API key ``uuid:key`` the invocations are sent with, best given as ``MFRM_REPLAY__AUTH``. No
    default, as for the backends; logged as ``**********``."""
    namespace: str = Field("_", min_length=1, max_length=_OPENWHISK_MAX_NAME)
    """Namespace of the invoked actions. ``_`` is the key's own namespace."""
    verify_tls: bool = True
    """Check the API's TLS certificate. Off only for a self-signed test certificate; the key travels
    with every request."""
    speedup: float = Field(1.0, gt=0, le=10_000)
    """Trace seconds per replay second: 60 replays a trace hour in a minute. 1 replays in real time,
    so the platform sees the trace's own rates."""
    concurrency: int = Field(64, ge=1, le=10_000)
    """Invocations outstanding at once (one worker thread each). 64 is above what a small deployment
    or localwhisk runs at once, so queueing happens in the platform, where it shows in the latency,
    not in the replayer; far more than the platform's own limit would only measure its throttling."""
    max_backlog: int = Field(10_000, ge=0, le=10_000_000)
    """Arrivals that may wait for a free worker before new ones are dropped (and recorded as
    dropped). 10000 absorbs a long stall of the platform while the memory of waiting arrivals stays
    a few MB."""
    drain_timeout_s: float = Field(30.0, ge=0, le=3600)
    """After a stop (Ctrl-C or SIGTERM), the longest wait for invocations already sent, s. 30 s equals
    Kubernetes' default termination grace period, as the daemon's ``shutdown_timeout_s``."""
    deploy: bool = False
    """Create the benchmark actions (``workload/functions``) under the sampled names before replaying.
    Off: the actions usually exist already, and creating them overwrites what is there."""
    request_timeout_s: float = Field(70.0, gt=0, le=3600)
    """Read time-out of one blocking invocation, s. OpenWhisk's blocking invoke waits at most 60 s for
    the result before answering with an activation id; 70 leaves 10 s of margin for the network."""
    max_failure_fraction: float = Field(0.05, ge=0, le=1)
    """Largest share of invocations that may fail or end with an unknown outcome before the replay
    exits non-zero. 0.05: a few failures do not spoil a long replay, a broken platform does."""

    @model_validator(mode="after")
    def _api_is_a_url(self) -> ReplaySettings:
        if self.api_host is not None:
            problem = http_url_problem("replay.api_host", self.api_host)
            if problem is not None:
                raise ValueError(problem)
        return self


__all__ = ["OPENWHISK_MAX_FUNCTIONS", "LocalSettings", "OpenWhiskSettings", "ReplaySettings"]
