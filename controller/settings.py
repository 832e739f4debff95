"""Every setting of a run or of the daemon, in one typed, grouped object.

Sources, highest precedence first:

1. command-line overrides (``load_settings(overrides={"loop.tick_s": 5})``, ``mfrm ... --set loop.tick_s=5``);
2. environment variables with prefix ``MFRM_`` and ``__`` between levels (``MFRM_LOOP__TICK_S=5``);
3. a YAML file (``--config FILE``) with the same nesting (``loop: {tick_s: 5}``);
4. the defaults below.

Every field carries its meaning, unit and the reason for its default (as its docstring, which
pydantic also uses as the field's description for ``docs/user-guide.md`` and ``--help``), and its
bounds. A value outside them stops the run at start with a :class:`SettingsError` naming the key,
the value, where it came from (file and line, environment variable or command line) and the
allowed range. Secret fields are ``SecretStr`` and print as ``**********`` in :meth:`Settings.logged`.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "MFRM_"
ENV_NESTED_DELIMITER = "__"

#: The policies ``mfrm demo`` and ``mfrm compare`` run when none are named: every registered
#: baseline. Learned policies join this list once they are registered (it is a setting, not code).
DEFAULT_COMPARE_POLICIES = ("openwhisk-default", "ensure", "kpa", "hpa", "hybrid-histogram")


class SettingsError(ValueError):
    """Invalid settings: the message names each bad key, its value, its source and what is allowed."""


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class ClusterSettings(_Group):
    """The simulated cluster (the paper's testbed by default: 21 invokers of 8 cores)."""

    invokers: int = Field(21, ge=1, le=10_000)
    """Number of invokers (worker nodes). 21 is the paper's OpenWhisk deployment (Appendix E)."""
    cores: float = Field(8.0, gt=0, le=1024)
    """CPU cores per invoker. 8 as in the paper's invoker VMs."""
    user_memory_mb: int = Field(2048, ge=128, le=4_194_304)
    """Memory for action containers per invoker, MB (OpenWhisk ``userMemory``). 2048 MB is
    OpenWhisk's default user memory; it bounds how many containers fit on one invoker."""
    idle_timeout_s: float = Field(600.0, gt=0, le=86_400)
    """Idle time after which an unmanaged container is removed, s. 600 s is OpenWhisk's default
    keep-alive (10 minutes)."""


class WorkloadSettings(_Group):
    """Which functions run and when their invocations arrive."""

    trace_dir: Path | None = None
    """Azure Functions 2019 trace folder (``invocations.csv``, ``durations.csv``, ``memory.csv``).
    Unset: the sample shipped in the source tree (``data/azure-functions-2019-sample``)."""
    functions: int = Field(12, ge=1, le=100_000)
    """Number of functions sampled from the trace. 12, the number of benchmark functions of the
    paper's serverless experiment."""
    start_minute: int = Field(480, ge=0, le=1439)
    """Minute of the trace day where the replay starts (0 = midnight). 480 (08:00) is the first
    minute of the shipped sample."""
    minutes: int = Field(10, ge=1, le=1440)
    """Length of the replay, whole trace minutes (the trace counts per minute). 10 keeps a single
    run short on a laptop."""
    profiles: Literal["benchmark", "trace"] = "benchmark"
    """Resource profile of each function: ``benchmark`` maps the sampled functions onto the paper's
    12 benchmark functions (in order); ``trace`` uses each function's own durations and memory
    from the trace. Benchmark by default, as in the paper."""
    arrivals: Literal["poisson", "equidistant"] = "poisson"
    """How a minute's invocation count is spread inside the minute: ``poisson`` keeps the count and
    draws uniform times (a Poisson process given its count, the usual replay of a per-minute trace);
    ``equidistant`` spaces them evenly with a random phase."""
    select: Literal["spread", "busiest"] = "spread"
    """How the ``functions`` are picked from the trace: ``spread`` draws them (seeded) evenly over
    the rate classes low / medium / high, as a representative sample; ``busiest`` takes the ones
    with the most invocations over the whole trace, so that a small sample carries real load (the
    seed then only decides which benchmark each one plays). Either way functions are picked from
    the trace's whole span, so runs over different minutes (train, then evaluate) see the same ones."""
    rate_scale: float = Field(1.0, gt=0, le=1000)
    """Multiplier on every per-minute invocation count (a load knob). The scaled count of a minute
    is rounded stochastically with a generator keyed by (seed, minute), so it is the same for every
    policy and every replay window. 1 replays the trace as it is; the 12 sampled functions then load
    the paper's 21 x 8-core cluster to ~2% CPU (see docs/results-agents.md for the contended point)."""


class LoopSettings(_Group):
    """The control loop's timing."""

    tick_s: float = Field(10.0, ge=0.1, le=3600)
    """Length of one observe–decide–act pass, s. 10 s (DESIGN.md): long enough for a p99 of a
    busy function to mean something, short against the 10-minute keep-alive."""
    checkpoint_every_ticks: int = Field(0, ge=0, le=1_000_000)
    """Save the learner's state every this many ticks; 0 never. Off by default: simulations are
    reproducible from their seed."""


class GuardSettings(_Group):
    """Bounds every decision is clamped to before it reaches the cluster."""

    min_containers: int = Field(0, ge=0, le=10_000)
    """Fewest warm containers a managed function keeps. 0 allows scale to zero."""
    max_containers: int = Field(64, ge=1, le=100_000)
    """Most containers one function may hold. 64 is above what one function of the paper's
    workload needs and well under the 168 of the 21 x 2048 MB cluster at 256 MB."""
    min_shares: int = Field(2, ge=2, le=262_144)
    """Smallest CPU shares per container. 2 is Docker's (cgroup v1) minimum."""
    max_shares: int = Field(8192, ge=2, le=262_144)
    """Largest CPU shares per container. 8192 = all 8 cores of a default invoker."""
    max_container_change_per_tick: int = Field(16, ge=1, le=100_000)
    """Largest change of one function's container target in one tick. 16 lets square-root staffing
    reach a busy function's pool within a few ticks while bounding a runaway policy."""
    max_shares_change_per_tick: int = Field(1024, ge=1, le=262_144)
    """Largest change of one function's CPU shares in one tick: one core's worth (1024)."""
    respect_capacity: bool = True
    """Trim container increases so that the memory of all targets fits the cluster's user memory."""

    @model_validator(mode="after")
    def _ordered(self) -> GuardSettings:
        if self.min_containers > self.max_containers:
            raise ValueError(
                f"guard.min_containers={self.min_containers} is above guard.max_containers={self.max_containers}"
            )
        if self.min_shares > self.max_shares:
            raise ValueError(f"guard.min_shares={self.min_shares} is above guard.max_shares={self.max_shares}")
        return self


class EstimatorSettings(_Group):
    """The population (mean-field) estimator."""

    bins: int = Field(10, ge=2, le=1000)
    """Bins of the invoker-utilisation histogram μ over [0, 1]. 10 bins of 10% each."""
    beta: float = Field(0.05, gt=0, le=1)
    """Smoothing step β of μ ← (1 − β)μ + βμ_obs per tick. 0.05 (a time constant of 20 ticks)
    keeps the mean field on a slower timescale than the policy, as the paper requires (β ≪ η)."""


class RewardSettings(_Group):
    """The reward r = (1 − α)q + αu and the SLO it is measured against."""

    alpha: float = Field(0.3, ge=0, le=1)
    """Weight α of CPU utilisation against latency quality. 0.3, the paper's best (Appendix E)."""
    charge_memory: bool = False
    """Multiply u by the use of the CPU the containers' memory reserves (cores x memory / invoker
    memory, ``policies.reward.memory_reserved_core_s``). Off by default, so the reward is
    DESIGN.md's: a learner at the smallest shares then sees u = 1 at any pool size and nothing in
    its reward stops it filling the cluster's memory. On, both learners raced to the largest
    shares and pools instead (each function gains latency against the others; docs/results-agents.md)."""
    slo_margin: float = Field(0.15, ge=0, le=10)
    """SLO = p99 latency running alone x (1 + margin). 0.15 is the paper's rule."""
    slo_probe_invocations: int = Field(2000, ge=100, le=1_000_000)
    """Invocations simulated to measure a function's solo p99. 2000 puts about 20 samples beyond
    the 99th percentile."""


class PolicySettings(_Group):
    """Which decision makers run."""

    name: str = Field("openwhisk-default", min_length=1)
    """Policy of ``mfrm simulate`` (a registered name, see ``policies.registry``). OpenWhisk's own
    behaviour is the reference every other policy is compared with."""
    compare: tuple[str, ...] = Field(DEFAULT_COMPARE_POLICIES, min_length=1)
    """Policies of ``mfrm compare`` and ``mfrm demo`` when none are named: all baselines."""
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Keyword parameters per policy name, e.g. ``{ensure: {c: 1.5}}``; empty = their defaults."""


class OutputSettings(_Group):
    """Where results go and how runs use the machine."""

    out_dir: Path = Path("runs/latest")
    """Folder for CSVs, plots and the run's settings JSON (created if missing)."""
    plots: bool = True
    """Write PNG plots beside the CSVs."""
    workers: int = Field(2, ge=1, le=256)
    """Processes that run policies of a comparison in parallel. 2 = the cores of a small laptop."""


# ============================================================================================
# The daemon (``mfrm run``): added by the daemon's engineer, issue 5. A separate group so that
# batch commands (simulate, compare, demo) never read it.
# ============================================================================================


class DaemonSettings(_Group):
    """The long-running control loop of ``mfrm run``: clock, endpoints, shutdown, fault handling."""

    backend: Literal["sim", "local", "openwhisk"] = "sim"
    """Cluster the daemon drives: the embedded simulated cluster (``sim``, replayed in scaled real
    time), the local platform, or a real OpenWhisk. ``sim`` so that ``mfrm run`` works anywhere."""
    interval_s: float | None = Field(None, ge=0.01, le=3600)
    """Wall-clock seconds between two ticks. Unset: ``loop.tick_s`` (real time). With the ``sim``
    backend each tick still simulates ``loop.tick_s``, so a shorter interval runs the simulated
    cluster faster than real time by ``loop.tick_s / interval_s``."""
    dry_run: bool = False
    """Observe, decide and log, but never change the cluster (``--dry-run``)."""
    metrics_host: str = Field("0.0.0.0", min_length=1)
    """Address the ``/metrics`` and ``/healthz`` server binds. All interfaces, because Prometheus
    and the kubelet reach the daemon from outside its pod; bind 127.0.0.1 on a shared host."""
    metrics_port: int = Field(9471, ge=0, le=65535)
    """Port of ``/metrics`` and ``/healthz``; 0 picks a free port (logged at start). 9471 clashes
    with neither OpenWhisk (8080, user-events 9095) nor Prometheus (9090) nor node-exporter (9100)."""
    health_stale_intervals: float = Field(3.0, ge=1, le=1000)
    """``/healthz`` answers 503 when no tick has finished for this many intervals. 3 tolerates one
    slow and one failed tick before a liveness probe sees the daemon as stuck."""
    shutdown_timeout_s: float = Field(30.0, gt=0, le=3600)
    """On SIGTERM/SIGINT the running tick finishes and a checkpoint is written; past this many
    seconds the daemon exits anyway. 30 s equals Kubernetes' default termination grace period."""
    max_metric_functions: int = Field(200, ge=1, le=100_000)
    """Most functions exported with their own ``function`` label; later ones are left out of the
    per-function series (and counted). Bounds the series count: 200 functions x ~8 series each."""
    backoff_s: tuple[float, ...] = Field((1.0, 2.0, 5.0, 10.0, 30.0, 60.0), min_length=1)
    """Delays after consecutive failed ticks, s, the last repeated; reset by a good tick. The wait
    is never shorter than the interval, so at 10 s it only slows down after the 4th failure."""
    resume: bool = True
    """Load the policy's checkpoint at start when one exists (so a restart keeps what was learned)."""
    checkpoint_dir: Path | None = None
    """Folder of the checkpoints. Unset: ``checkpoints`` under ``output.out_dir``."""
    reload_config: bool = True
    """Re-read the ``--config`` file when it changes (and on SIGHUP). A bad new file is reported
    and ignored; the guard's bounds, the reward's alpha and the interval take effect live."""

    @model_validator(mode="after")
    def _positive_backoff(self) -> DaemonSettings:
        bad = [d for d in self.backoff_s if not d > 0]
        if bad:
            raise ValueError(f"daemon.backoff_s: every delay must be > 0 s, got {list(self.backoff_s)}")
        return self


class LocalSettings(_Group):
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


# ============================================================================================
# The ``openwhisk`` backend (``daemon.backend=openwhisk``): added for issue 5 item 4 / issue 6.
# Where the API is, which actions are managed and their SLOs, how the invokers are reached.
# Settings that only matter when this backend is chosen (api_host, auth, functions, docker_hosts,
# prometheus_url) are checked when it starts (controller.backends.openwhisk.from_settings), so
# that a file written for another backend still loads.
# ============================================================================================

#: Most actions one daemon manages: each is a metric label value; more go to further releases.
OPENWHISK_MAX_FUNCTIONS = 1000
#: Longest entity name OpenWhisk accepts.
_OPENWHISK_MAX_NAME = 256
#: URL schemes the docker SDK speaks that the backend supports.
_DOCKER_SCHEMES = ("unix", "tcp", "http", "https")


def _http_url_problem(key: str, url: str) -> str | None:
    """Why ``url`` is not an http(s) URL the backend can use (None when it is)."""
    split = urlsplit(url)
    if split.username is not None or split.password is not None:
        # Settings are logged in full at start: a password in a URL would be logged with them (and
        # is not repeated here).
        return f"openwhisk.{key}: no user or password in the URL (they would be logged)"
    if split.scheme not in ("http", "https") or not split.hostname:
        return f"openwhisk.{key}={url!r}: give an http:// or https:// URL with a host"
    return None


def _is_action_name(name: str) -> bool:
    """OpenWhisk's EntityName rule: ASCII letters, digits, ``_@ .-``, starting with a letter, digit or
    ``_``, not ending with a space, at most 256 characters (no package part: activations carry the
    bare name)."""
    if not 0 < len(name) <= _OPENWHISK_MAX_NAME or name[-1] == " ":
        return False
    allowed = all(c.isascii() and (c.isalnum() or c in "_@ .-") for c in name)
    return allowed and (name[0].isalnum() or name[0] == "_")


class OpenWhiskSettings(_Group):
    """The ``openwhisk`` backend (``daemon.backend=openwhisk``): a real deployment, docs/backends.md."""

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
            problem = _http_url_problem(key, url) if url is not None else None
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


# The YAML file's content while load_settings builds a Settings (None: no file).
_CONFIG_FILE_DATA: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "mfrm_config_file", default=None
)


class _MappingSource(PydanticBaseSettingsSource):
    """Settings already parsed from a YAML file (read by :func:`load_settings`)."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class Settings(BaseSettings):
    """Everything a run needs; build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )

    seed: int = Field(0, ge=0, le=2**63 - 1)
    """Seed of the run: arrivals, simulator and policies all derive their generators from it, so
    the same seed gives the same numbers and every policy of a comparison sees the same arrivals."""
    cluster: ClusterSettings = ClusterSettings()
    workload: WorkloadSettings = WorkloadSettings()
    loop: LoopSettings = LoopSettings()
    guard: GuardSettings = GuardSettings()
    estimator: EstimatorSettings = EstimatorSettings()
    reward: RewardSettings = RewardSettings()
    policy: PolicySettings = PolicySettings()
    output: OutputSettings = OutputSettings()
    daemon: DaemonSettings = DaemonSettings()
    local: LocalSettings = LocalSettings()
    openwhisk: OpenWhiskSettings = OpenWhiskSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _MappingSource(settings_cls, _CONFIG_FILE_DATA.get() or {}))

    def logged(self) -> dict[str, Any]:
        """The settings as plain JSON-able data, secrets masked: what runs log and save."""
        return self.model_dump(mode="json")


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"loop.tick_s": 5}`` → ``{"loop": {"tick_s": 5}}`` (nested mappings pass through)."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SettingsError(f"override {key!r}: {part!r} is both a value and a group")
        node[parts[-1]] = value
    return nested


def _read_yaml(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SettingsError(f"cannot read settings file {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise SettingsError(f"{where}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: the top level must be a mapping of groups, got {type(data).__name__}")
    return data, node


def _yaml_line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the key at ``loc`` in a composed YAML document, if present."""
    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            return line
        for key_node, value_node in node.value:
            if key_node.value == part:
                line = key_node.start_mark.line + 1
                node = value_node
                break
        else:
            return line
    return line


def _lookup(data: Mapping[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _field_info(loc: tuple[Any, ...]) -> FieldInfo | None:
    model: Any = Settings
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        info = fields[part]
        model = info.annotation
    return info


def allowed_range(info: FieldInfo | None) -> str:
    """The bounds of a field in words, e.g. ``0.1 <= value <= 3600``; empty when unbounded."""
    if info is None:
        return ""
    low = high = ""
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"{item.ge} <= "
        elif isinstance(item, annotated_types.Gt):
            low = f"{item.gt} < "
        elif isinstance(item, annotated_types.Le):
            high = f" <= {item.le}"
        elif isinstance(item, annotated_types.Lt):
            high = f" < {item.lt}"
    return f"{low}value{high}" if (low or high) else ""


def _source(loc: tuple[Any, ...], overrides: Mapping[str, Any], config_file: Path | None,
            yaml_data: Mapping[str, Any], yaml_node: yaml.Node | None) -> str:
    if _lookup(overrides, loc):
        return "command line"
    env_name = ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(p) for p in loc).upper()
    if any(name.upper() == env_name for name in os.environ):
        return f"environment variable {env_name}"
    if config_file is not None and _lookup(yaml_data, loc):
        line = _yaml_line(yaml_node, loc)
        return f"{config_file}:{line}" if line else str(config_file)
    return "defaults"


def _friendly(error: ValidationError, overrides: Mapping[str, Any], config_file: Path | None,
              yaml_data: Mapping[str, Any], yaml_node: yaml.Node | None) -> SettingsError:
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(p) for p in loc) or "(settings)"
        source = _source(loc, overrides, config_file, yaml_data, yaml_node)
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown setting (from {source})")
            continue
        value = item.get("input")
        message = item["msg"]
        bounds = allowed_range(_field_info(loc))
        allowed = f"; allowed: {bounds}" if bounds else ""
        shown = "" if isinstance(value, Mapping) else f" = {value!r}"
        lines.append(f"  {key}{shown} (from {source}): {message}{allowed}")
    return SettingsError("invalid settings:\n" + "\n".join(lines))


def settings_reference() -> list[tuple[str, str, str, str]]:
    """Every setting as (dotted key, default, allowed range or values, description), in field order."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(model: Any, prefix: str) -> None:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, prefix + name + ".")
                continue
            default = info.get_default(call_default_factory=True)
            if isinstance(default, tuple):
                default = list(default)
            allowed = allowed_range(info)
            choices = getattr(annotation, "__args__", None)
            if not allowed and choices and all(isinstance(c, str) for c in choices):
                allowed = " | ".join(choices)
            description = " ".join((info.description or "").split())
            rows.append((prefix + name, repr(default) if isinstance(default, str) else str(default), allowed, description))

    walk(Settings, "")
    return rows


def load_settings(config_file: Path | str | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the YAML file, the environment and ``overrides`` (dotted keys), in that rising order.

    Raises :class:`SettingsError` with a readable message when any value is invalid.
    """
    path = Path(config_file) if config_file is not None else None
    yaml_data, yaml_node = _read_yaml(path) if path is not None else ({}, None)
    nested = _nest(dict(overrides or {}))
    token = _CONFIG_FILE_DATA.set(yaml_data)
    try:
        return Settings(**nested)
    except ValidationError as error:
        raise _friendly(error, nested, path, yaml_data, yaml_node) from None
    finally:
        _CONFIG_FILE_DATA.reset(token)


__all__ = [
    "DEFAULT_COMPARE_POLICIES",
    "OPENWHISK_MAX_FUNCTIONS",
    "ClusterSettings",
    "DaemonSettings",
    "EstimatorSettings",
    "GuardSettings",
    "LocalSettings",
    "LoopSettings",
    "OpenWhiskSettings",
    "OutputSettings",
    "PolicySettings",
    "RewardSettings",
    "Settings",
    "SettingsError",
    "WorkloadSettings",
    "allowed_range",
    "load_settings",
    "settings_reference",
]
