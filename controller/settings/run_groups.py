"""The groups of a run: the cluster, the workload, the loop and what it decides with, and the daemon.

Fields marked ``Live[...]`` are applied by the daemon when its config file is reloaded; every other
change needs a restart (see :func:`controller.settings.live_keys`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from controller.settings.base import Live, SettingsGroup

#: The policies ``mfrm demo`` and ``mfrm compare`` run when none are named: every baseline. The
#: learned policies are not among them because they need a trained checkpoint (``--checkpoint``).
DEFAULT_COMPARE_POLICIES = ("openwhisk-default", "ensure", "kpa", "hpa", "hybrid-histogram")

#: The clusters ``mfrm run`` can drive (``daemon.backend``); :func:`controller.settings.backend_names`
#: reads them from here.
BackendName = Literal["sim", "local", "openwhisk"]


class ClusterSettings(SettingsGroup):
    """The simulated cluster (the paper's testbed by default: 21 invokers of 8 cores)."""

    invokers: int = Field(21, ge=1, le=10_000)
    """Number of invokers (worker nodes). 21 is the paper's OpenWhisk deployment (Appendix E)."""
    cores: float = Field(8.0, gt=0, le=1024)
    """CPU cores per invoker. 8 as in the paper's invoker VMs."""
    user_memory_mb: int = Field(2048, ge=128, le=4_194_304)
    """Memory for action containers per invoker, MB (OpenWhisk ``userMemory``). 2048 MB is
    OpenWhisk's default user memory; it bounds how many containers fit on one invoker."""
    idle_timeout_s: float | None = Field(None, gt=0, le=31_536_000)
    """Idle time after which an unmanaged container is removed, s (fixed keep-alive). Unset: the
    eviction rule's own — 600 s for ``lru`` (OpenWhisk's default keep-alive, 10 minutes), never for
    ``greedy-dual`` (FaasCache keeps a container until its memory is needed)."""
    eviction: Literal["lru", "greedy-dual"] = "lru"
    """Which idle container of an unmanaged function an invoker evicts when it needs memory (or holds
    more idle memory than ``idle_memory_fraction``): ``lru``, OpenWhisk's container pool, or
    ``greedy-dual``, FaasCache's keep-alive (Fuerst & Sharma, ASPLOS 2021: lowest clock + frequency
    x cold-start time / memory first). ``lru``: the stock platform."""
    idle_memory_fraction: float = Field(1.0, ge=0, le=1)
    """The most memory idle containers of unmanaged functions may hold on an invoker, as a share of
    its user memory; beyond it they are evicted by ``eviction``. 1 (no cap beyond the invoker's
    memory) is the stock platform; smaller values trade cold starts for idle memory."""


class WorkloadSettings(SettingsGroup):
    """Which functions run and when their invocations arrive."""

    trace_dir: Path | None = None
    """Azure Functions trace: a 2019 folder (``invocations.csv``, ``durations.csv``, ``memory.csv``,
    or the original day files), or the 2021 invocation trace file or a folder holding it (its
    minutes count from the trace's start, 0). Unset: the 2019 sample shipped in the source tree
    (``data/azure-functions-2019-sample``)."""
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
    arrivals: Literal["poisson", "equidistant", "bursty", "trace"] = "poisson"
    """How a minute's invocation count is spread inside the minute: ``poisson`` keeps the count and
    draws uniform times (a Poisson process given its count, the usual replay of a per-minute trace);
    ``equidistant`` spaces them evenly with a random phase; ``bursty`` sends each function's count in
    ``burst_count`` short bursts of ``burst_width_s``; ``trace`` replays the recorded arrival times
    of a 2021 per-invocation trace (``rate_scale`` 1 only)."""
    burst_count: int = Field(4, ge=1, le=60)
    """``bursty`` arrivals: bursts per function and minute. 4: a minute's work comes in a few
    clumps, as timer- and queue-triggered functions do, far burstier than a Poisson process."""
    burst_width_s: float = Field(1.0, gt=0, le=60)
    """``bursty`` arrivals: length of one burst, s. 1 s: shorter than most cold starts, so a burst
    finds whatever is warm when it arrives."""
    select: Literal["spread", "busiest"] = "spread"
    """How the ``functions`` are picked from the trace: ``spread`` draws them (seeded) evenly over
    the rate classes low / medium / high, as a representative sample; ``busiest`` takes the ones
    with the most invocations over the whole trace, so that a small sample carries real load (the
    seed then only decides which benchmark each one plays). Either way functions are picked from
    the trace's whole span, so runs over different minutes (train, then evaluate) see the same ones."""
    split_seed: int | None = Field(None, ge=0, le=2**63 - 1)
    """Split the sampled functions into two halves by this seed (a fixed permutation), so that
    learners can train on one half and every policy be judged on the other. Unset: no split."""
    split_part: Literal["all", "train", "evaluate"] = "all"
    """With ``split_seed``: which half runs (``train`` or ``evaluate``); ``all`` runs every sampled
    function."""
    split_within_seed: int | None = Field(None, ge=0, le=2**63 - 1)
    """Split one half of another split instead of every sampled function: the seed of that outer split
    (its half is ``split_within_part``). A tuning copy of a split scenario splits the scenario's own
    training half again, so that it is tuned on functions and minutes the scenario never judges on.
    Unset: ``split_seed`` splits every sampled function."""
    split_within_part: Literal["train", "evaluate"] = "train"
    """With ``split_within_seed``: which half of the outer split ``split_seed`` splits again."""
    rate_scale: float = Field(1.0, gt=0, le=1000)
    """Multiplier on every per-minute invocation count (a load knob). The scaled count of a minute
    is rounded stochastically with a generator keyed by (seed, minute), so it is the same for every
    policy and every replay window. 1 replays the trace as it is; the 12 sampled functions then load
    the paper's 21 x 8-core cluster to ~2% CPU (see docs/results-agents.md for the contended point)."""


class LoopSettings(SettingsGroup):
    """The control loop's timing."""

    tick_s: Live[float] = Field(10.0, ge=0.1, le=3600)
    """Length of one observe–decide–act pass, s. 10 s: long enough for a p99 of a busy function to
    mean something, short against the 10-minute keep-alive."""
    checkpoint_every_ticks: int = Field(0, ge=0, le=1_000_000)
    """Save the learner's state every this many ticks; 0 never. Off by default: simulations are
    reproducible from their seed."""


class GuardSettings(SettingsGroup):
    """Bounds every decision is clamped to before it reaches the cluster."""

    min_containers: Live[int] = Field(0, ge=0, le=10_000)
    """Fewest warm containers a managed function keeps. 0 allows scale to zero."""
    max_containers: Live[int | None] = Field(None, ge=1, le=1_000_000)
    """Most containers one function may hold (an operator's limit). Unset: as many as the cluster's
    user memory admits at the function's memory, so no function is held below its load by a number
    that fits one workload and not another."""
    min_shares: Live[int] = Field(2, ge=2, le=262_144)
    """Smallest CPU shares per container. 2 is Docker's (cgroup v1) minimum."""
    max_shares: Live[int | None] = Field(None, ge=2, le=262_144)
    """Largest CPU shares per container (an operator's limit). Unset: all the cores of the largest
    invoker (1024 per core), beyond which a weight buys nothing more."""
    max_container_change_per_tick: Live[int | None] = Field(None, ge=1, le=1_000_000)
    """Largest change of one function's container target in one tick (an operator's rate limit
    against a runaway policy). Unset: the larger of 16 and the function's current pool, so a pool
    may double every tick and a function needing hundreds of containers reaches them in a few
    ticks, while a small one still moves by up to 16."""
    max_shares_change_per_tick: Live[int] = Field(1024, ge=1, le=262_144)
    """Largest change of one function's CPU shares in one tick: one core's worth (1024)."""
    respect_capacity: Live[bool] = True
    """Trim container increases so that the memory of all targets fits the cluster's user memory."""
    max_reapply_per_tick: Live[int] = Field(32, ge=0, le=100_000)
    """Most functions whose targets in force are written again in one tick because the observed
    state differs from them (0: never; a platform that lost them then keeps its own defaults). 32:
    at the ~50 ms a remote write costs (a Docker update on an invoker), 32 writes take under 2 s, a
    fifth of a 10-s tick, and N managed functions are healed after a platform restart within
    ⌈N / 32⌉ ticks."""

    @model_validator(mode="after")
    def _ordered(self) -> GuardSettings:
        if self.max_containers is not None and self.min_containers > self.max_containers:
            raise ValueError(f"guard.min_containers={self.min_containers} is above "
                             f"guard.max_containers={self.max_containers}")
        if self.max_shares is not None and self.min_shares > self.max_shares:
            raise ValueError(f"guard.min_shares={self.min_shares} is above "
                             f"guard.max_shares={self.max_shares}")
        return self


class EstimatorSettings(SettingsGroup):
    """The population (mean-field) estimator."""

    bins: int = Field(10, ge=2, le=1000)
    """Bins of the invoker-utilisation histogram μ over [0, 1]. 10 bins of 10% each."""
    beta: float = Field(0.05, gt=0, le=1)
    """Smoothing step β of μ ← (1 − β)μ + βμ_obs per tick. 0.05 (a time constant of 20 ticks)
    keeps the mean field on a slower timescale than the policy, as the paper requires (β ≪ η)."""


class RewardSettings(SettingsGroup):
    """The learners' reward and the SLO it is measured against."""

    kind: Literal["paper", "operator"] = "operator"
    """``operator``: what an operator pays, per function and tick: the SLO violations and the work
    still waiting (priced per the population's average work) against the idle memory its containers
    hold (priced per invoker's memory), weighted (1 − α) : α (``policies.reward.operator_reward``);
    nothing in it reads the CPU shares a policy asks for. ``paper``: r = (1 − α)q + αu with u = CPU
    used / CPU allocated (the paper's Appendix E), which a policy raises by asking for fewer shares
    without saving anything (kept to reproduce the paper). The baselines do not read the reward; it
    only decides what the learners learn and the runs' mean reward column."""
    alpha: Live[float] = Field(0.3, ge=0, le=1)
    """Weight α of the resource term against latency quality. 0.3, the paper's best (Appendix E)."""
    cost_cap: float = Field(1.0, gt=0, le=1000)
    """``operator`` only: the cost C at which a function's reward reaches 0, r = 1 − min(cost, C)/C, in
    units of the population's average work per function in a tick (``policies.reward.operator_reward``).
    1.0: a tick with as many late invocations as the average function has work; every costlier tick of a
    busy function then gives the same 0."""
    charge_memory: bool = False
    """Multiply u by the use of the CPU the containers' memory reserves (cores x memory / invoker
    memory, ``policies.reward.memory_reserved_core_s``). Off by default, so the reward is
    exactly (1 − α)q + αu: a learner at the smallest shares then sees u = 1 at any pool size and
    nothing in its reward stops it filling the cluster's memory. On, both learners raced to the
    largest shares and pools instead (each function gains latency against the others;
    docs/results-agents.md)."""
    slo_margin: float = Field(0.15, ge=0, le=10)
    """SLO = p99 latency running alone x (1 + margin). 0.15 is the paper's rule."""
    slo_probe_invocations: int = Field(2000, ge=100, le=1_000_000)
    """Invocations simulated to measure a function's solo p99. 2000 puts about 20 samples beyond
    the 99th percentile."""


class PolicySettings(SettingsGroup):
    """Which decision makers run."""

    name: str = Field("openwhisk-default", min_length=1)
    """Policy of ``mfrm simulate`` (a registered name, see ``policies.registry``). OpenWhisk's own
    behaviour is the reference every other policy is compared with."""
    compare: tuple[str, ...] = Field(DEFAULT_COMPARE_POLICIES, min_length=1)
    """Policies of ``mfrm compare`` and ``mfrm demo`` when none are named: all baselines."""
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Keyword parameters per policy name, e.g. ``{ensure: {staffing_c: 1.5}}``; empty = their defaults."""


class OutputSettings(SettingsGroup):
    """Where results go and how runs use the machine."""

    out_dir: Path = Path("runs/latest")
    """Folder for CSVs, plots and the run's settings JSON (created if missing)."""
    plots: bool = True
    """Write PNG plots beside the CSVs."""
    workers: int = Field(2, ge=1, le=256)
    """Processes that run policies of a comparison in parallel. 2 = the cores of a small laptop."""


class DaemonSettings(SettingsGroup):
    """The long-running control loop of ``mfrm run``: clock, endpoints, shutdown, fault handling.

    A group of its own so that the batch commands (simulate, compare, demo) never read it.
    """

    backend: BackendName = "sim"
    """Cluster the daemon drives: the embedded simulated cluster (``sim``, replayed in scaled real
    time), the local platform, or a real OpenWhisk. ``sim`` so that ``mfrm run`` works anywhere."""
    interval_s: Live[float | None] = Field(None, ge=0.01, le=3600)
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
    health_stale_intervals: Live[float] = Field(3.0, ge=1, le=1000)
    """``/healthz`` answers 503 ("stuck") when no tick has ended, well or not, for this many intervals
    after one was due (the backoff's own waits do not count): the loop itself is stuck. 3 tolerates
    a slow tick or two before a liveness probe restarts the daemon."""
    blind_after_s: Live[float] = Field(120.0, gt=0, le=86_400)
    """``/healthz`` answers 503 ("blind", with the cause) when no tick has observed the cluster for
    this long, s: every observation failed or gave no function any data, although ticks go on.
    120 s equals the activation look-back (``local.lookback_s``, ``openwhisk.lookback_s``): past it
    the activations of the gap can no longer be read back, so by then the operator must know."""
    tick_deadline_s: Live[float | None] = Field(None, gt=0, le=3600)
    """Longest one tick may take, s: a request still running then is abandoned (an observation
    fails the tick with kind ``timeout``; an action is reported unavailable and compared again next
    tick), and a tick past it is counted in ``mfrm_tick_overruns_total``. Unset: the interval, so a
    tick always ends before the next one is due."""
    log_repeat_s: Live[float] = Field(300.0, gt=0, le=86_400)
    """A fault that keeps happening (the same cause of a failed tick, of missing data, of overruns)
    is logged once, then summarised with its count this often, s. 5 minutes keeps a day-long outage
    to under 300 lines while an operator still sees it continues."""
    shutdown_timeout_s: float = Field(30.0, gt=0, le=3600)
    """On SIGTERM/SIGINT the running tick finishes and a checkpoint is written; past this many
    seconds the daemon exits anyway. 30 s equals Kubernetes' default termination grace period."""
    max_metric_functions: int = Field(200, ge=1, le=100_000)
    """Most functions exported with their own ``function`` label; later ones are left out of the
    per-function series (and counted). Bounds the series count: 200 functions x ~8 series each."""
    backoff_s: Live[tuple[float, ...]] = Field((1.0, 2.0, 5.0, 10.0, 30.0, 60.0), min_length=1)
    """Delays after consecutive failed ticks, s, the last repeated; reset by a good tick. The wait
    is never shorter than the interval, so at 10 s it only slows down after the 4th failure."""
    resume: bool = True
    """Load the policy's checkpoint at start when one exists (so a restart keeps what was learned)."""
    checkpoint_dir: Path | None = None
    """Folder of the checkpoints. Unset: ``checkpoints`` under ``output.out_dir``."""
    reload_config: bool = True
    """Re-read the ``--config`` file when it changes (and on SIGHUP). A bad new file is reported
    and ignored. The live keys (``controller.settings.live_keys()``: every ``guard`` setting, the reward's
    alpha, the tick, the interval, the staleness limit and the backoff) take effect at once; any
    other change is logged as needing a restart."""

    @model_validator(mode="after")
    def _positive_backoff(self) -> DaemonSettings:
        if any(not delay > 0 for delay in self.backoff_s):
            raise ValueError(f"daemon.backoff_s: every delay must be > 0 s, got {list(self.backoff_s)}")
        return self


__all__ = [
    "DEFAULT_COMPARE_POLICIES",
    "BackendName",
    "ClusterSettings",
    "DaemonSettings",
    "EstimatorSettings",
    "GuardSettings",
    "LoopSettings",
    "OutputSettings",
    "PolicySettings",
    "RewardSettings",
    "WorkloadSettings",
]
