"""The serverless mean-field game's observation and action spaces, vectorised over functions.

docs/architecture.md, "The serverless mean-field game": agent i is one function; its local state is its arrival
rate, warm containers, CPU shares per container, p99 latency against its SLO, the CPU utilisation of
its containers, its cold-start fraction and its queue per container; the mean-field state μ is the
histogram of invoker CPU utilisation over B bins. The action is one of 9 moves, {-1, 0, +1}
containers x {-1, 0, +1} CPU-share steps.

Everything here is a pure function of one :class:`~policies.types.ClusterSnapshot` and μ, computed
for all functions at once (a handful of numpy operations for 10,000 functions).

Feature vector ``x(s)`` of one function (every entry in [0, 1] before the final scaling)::

    0  bias                  1
    1  arrival rate          log(1 + arrivals/tick_s) / log(1 + rate_max_per_s)
    2  containers            log(1 + containers) / log(1 + containers_max)
    3  shares per container  cpu_shares / shares_max
    4  p99 / SLO             min(p99/slo, latency_ratio_max) / latency_ratio_max, 0 when unknown
    5  no latency            1 when nothing completed in the tick (p99 is NaN), else 0
    6  CPU utilisation       cpu_used / cpu_alloc of its containers, 0 without an allocation
    7  cold-start fraction   cold_starts / max(arrivals, 1)
    8  queue per container   log(1 + queued/max(containers, 1)) / log(1 + queue_per_container_max)
    9  offered load          ρ = arrival rate x mean execution time / containers (the staffing
       per container         ratio ENSURE and Knative size pools by), min(ρ, load_max) / load_max
   10  busy fraction         busy containers / containers at the snapshot, 0 without containers
   11… μ                     the B-bin population histogram (sums to 1, so its norm is <= 1)

Entries 9 and 10 refine "CPU utilisation of its containers": once CPU shares are low, a container
borrows idle cores and entry 6 saturates at 1 whatever the pool size, while ρ and the busy fraction
still say whether the pool is too small (ρ near or above 1, every container busy) or too large.

The whole vector is divided by ``sqrt(11 + 1)``: the 11 local entries contribute at most 11 to the
squared norm and μ at most 1, so ‖x‖₂ <= 1. The linear learner's features are the action-blocked
``φ(s, a) = e_a ⊗ x(s)`` (Algorithm 1 of the paper needs ‖φ‖₂ <= 1, and a block per action lets
every action's preference depend on the whole state); ``θᵀφ(s, a) = x(s) · Θ[a]`` so the policy's
logits are one (N, d) x (d, A) product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from policies.types import KEEP_SHARES, UNMANAGED, ClusterSnapshot, Decisions, FunctionStats, LazyReasons

#: Names of the local (per-function) feature columns, in order; μ's bins follow.
LOCAL_FEATURES: tuple[str, ...] = (
    "bias",
    "arrival_rate",
    "containers",
    "shares_per_container",
    "p99_over_slo",
    "no_latency",
    "cpu_utilisation",
    "cold_start_fraction",
    "queue_per_container",
    "offered_load_per_container",
    "busy_fraction",
)
#: Squared-norm bound of the unscaled vector: each local entry is <= 1, and μ (a probability
#: vector) has a Euclidean norm <= 1.
_NORM = math.sqrt(len(LOCAL_FEATURES) + 1)

#: The 9 moves: row a is (container change, share-step change). Action 4 is "hold".
ACTIONS: np.ndarray = np.array([(dc, ds) for dc in (-1, 0, 1) for ds in (-1, 0, 1)], dtype=np.int64)
ACTIONS.setflags(write=False)
N_ACTIONS = len(ACTIONS)
HOLD_ACTION = 4


@dataclass(frozen=True)
class FeatureSettings:
    """Normalisation constants of the local features: each maps a raw quantity into [0, 1]."""

    mu_bins: int = 10
    """Bins B of the population histogram μ (invoker CPU utilisation). Must match the estimator's;
    10 bins of 10% resolve the difference between an idle, a busy and a saturated invoker."""
    rate_max_per_s: float = 1000.0
    """Arrival rate, invocations/s, that maps to 1 (log scale, clipped). Azure traces span rates
    from one a day to thousands a second; a log keeps the rare functions distinguishable."""
    containers_max: float = 256.0
    """Container count that maps to 1 (log scale, clipped): more than any one function needs on the
    paper's 21 x 8-core cluster."""
    shares_max: float = 4096.0
    """CPU shares per container that map to 1 (linear, clipped): 4 cores, the largest action size
    a container of the benchmark functions can use."""
    latency_ratio_max: float = 4.0
    """p99/SLO that maps to 1 (linear, clipped): beyond 4x the objective the quality term of the
    reward is already <= 0.25 and finer detail does not change the right move."""
    queue_per_container_max: float = 64.0
    """Waiting invocations per container that map to 1 (log scale, clipped)."""
    load_max: float = 2.0
    """Offered load per container ρ that maps to 1 (linear, clipped): twice what a container can
    serve, a queue that grows by a pool's worth every mean execution time."""
    population: bool = True
    """Whether x(s) carries the population state μ. False fixes its entries at the uniform histogram
    1/B in every state, hiding the mean field from the policy (the suite's "no μ" ablation, which
    says what conditioning on the population adds)."""

    def __post_init__(self) -> None:
        if self.mu_bins < 1:
            raise ValueError(f"FeatureSettings.mu_bins={self.mu_bins}: must be >= 1")
        for name in (
            "rate_max_per_s",
            "containers_max",
            "shares_max",
            "latency_ratio_max",
            "queue_per_container_max",
            "load_max",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"FeatureSettings.{name}={value}: must be a finite number > 0")

    @property
    def state_dim(self) -> int:
        """Length d of the state vector x(s): the local features plus μ's bins."""
        return len(LOCAL_FEATURES) + self.mu_bins

    def feature_names(self) -> tuple[str, ...]:
        """Names of the entries of x(s), for diagnostics and docs."""
        return LOCAL_FEATURES + tuple(f"mu_{b}" for b in range(self.mu_bins))


@dataclass(frozen=True)
class ActionSettings:
    """How a move becomes a target: step sizes, bounds, and the pool a new function starts from."""

    share_step: int = 128
    """CPU shares added or removed per container by one move (1/8 core: the design's default)."""
    container_step_fraction: float = 0.25
    """A container move adds or removes ⌈fraction x pool⌉ containers (at least 1). 0 makes every
    move exactly one container. Proportional, because one container per 10-s tick cannot follow
    the trace's busiest functions: at x3 load one of them needs ~40 containers at its peak, which
    a pool of 5 would take 6 minutes of queueing to reach; with 0.25 it takes 8 ticks."""
    load_floor: float = 1.0
    """A container target is never below ⌈load_floor x R⌉, R = arrival rate x mean execution time
    (the offered load in busy containers, feature 9 before the division by the pool); 0 turns the
    floor off. With fewer than R containers a function's queue grows without bound whatever the
    policy does next, and the backlog outlives the decision that caused it by minutes, so a
    learner cannot tell which move was to blame. The floor rules out only that region: the
    headroom above it, where latency is decided, and the CPU shares are the policy's. Exactly,
    the floor is ⌈load_floor x S⌉ with the staffed load S = R + staffing_c·√R (below)."""
    staffing_c: float = 1.0
    """Square-root headroom of the staffed load S = R + staffing_c·√R (Halfin–Whitt staffing, the
    rule ENSURE sizes its pools by; 1.0 keeps the chance that an arrival finds every container
    busy near 20% at any R). 0 staffs ⌈R⌉, where a pool runs at ρ = 1 and its queue, though finite
    in a tick, has no stable length: measured, the functions held there were the ones that queued
    for minutes (docs/results-agents.md)."""
    load_ceiling: float = 2.0
    """A container target is never above ⌈load_ceiling x S⌉ (at least ``min_containers``); 0
    turns the ceiling off. Containers beyond a few times the staffed load
    are idle memory that keeps other functions' containers off the invokers; a policy's
    reward does not see that cost (it is paid by the functions the capacity check then trims),
    so the ceiling reclaims them. With floor and ceiling the policy chooses a pool inside a band
    around the staffing level, and the shares."""
    idle_load: float = 1e-3
    """A function whose staffed-for load (below) is under this many busy containers is handed back
    to the platform: its container target is ``UNMANAGED`` (OpenWhisk's on-demand containers and
    10-minute keep-alive) and its shares are left alone, as ENSURE does. The policy's move does not
    apply there and the row forms no transition. Without it every idle function would keep
    ``min_containers`` warm for ever, and a function never invoked would keep whatever pool the
    policy's moves gave it (docs/results-agents.md measures both). 0 keeps every function managed."""
    load_smoothing_s: float = 30.0
    """Floor and ceiling staff for max(R of the tick, R smoothed over about this many seconds) —
    an exponential average with weight 1 − exp(−tick / τ), as ENSURE smooths its load — so a
    burst lifts the floor at once and the ceiling lets go of it over about τ. 0 uses the tick's R."""
    min_containers: int = 1
    """Fewest containers a managed function keeps. 1, so a learned policy never scales a function
    to zero (a cold start per invocation); an idle function goes back to the platform instead
    (``idle_load``), whose own manager does that."""
    max_containers: int = 1_000_000
    """Most containers per function. No cap of the policy's own by default: the guard holds every
    pool to what the cluster's memory admits (``guard.max_containers`` is the operator's limit), and
    a cap here would hold a heavy function below its load on a workload it was not chosen for."""
    min_shares: int = 128
    """Fewest CPU shares per container: one step, so a container is never starved to Docker's 2."""
    max_shares: int = 2048
    """Most CPU shares per container: two cores."""
    initial_containers: int = 1
    """Pool a function starts from when the platform has not created a container for it yet (an
    observed pool of 0): one warm container, which the policy then grows or keeps."""
    initial_shares: int = 256
    """Shares per container a function starts from when none are set yet (an observed 0): a
    quarter core, OpenWhisk's default for a 512 MB action on a 2 GB invoker."""

    def __post_init__(self) -> None:
        checks = (
            ("share_step", self.share_step >= 1, ">= 1"),
            (
                "container_step_fraction",
                math.isfinite(self.container_step_fraction) and 0 <= self.container_step_fraction <= 1,
                "in [0, 1]",
            ),
            ("load_floor", math.isfinite(self.load_floor) and self.load_floor >= 0, ">= 0"),
            ("staffing_c", math.isfinite(self.staffing_c) and self.staffing_c >= 0, ">= 0"),
            (
                "load_ceiling",
                math.isfinite(self.load_ceiling)
                and (self.load_ceiling == 0 or self.load_ceiling >= max(1.0, self.load_floor)),
                "0 (off) or >= max(1, load_floor) (a ceiling under the floor)",
            ),
            ("idle_load", math.isfinite(self.idle_load) and self.idle_load >= 0, ">= 0"),
            ("load_smoothing_s", math.isfinite(self.load_smoothing_s) and self.load_smoothing_s >= 0, ">= 0"),
            ("min_containers", self.min_containers >= 0, ">= 0"),
            (
                "max_containers",
                self.max_containers >= max(self.min_containers, 1),
                ">= max(min_containers, 1)",
            ),
            ("min_shares", self.min_shares >= 2, ">= 2 (Docker's minimum)"),
            ("max_shares", self.max_shares >= self.min_shares, ">= min_shares"),
            (
                "initial_containers",
                self.min_containers <= self.initial_containers <= self.max_containers,
                "within [min_containers, max_containers]",
            ),
            (
                "initial_shares",
                self.min_shares <= self.initial_shares <= self.max_shares,
                "within [min_shares, max_shares]",
            ),
        )
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"ActionSettings.{name}={getattr(self, name)}: must be {allowed}")


@dataclass(frozen=True, eq=False)
class StateFeatures:
    """The state vectors of every function of one snapshot."""

    x: np.ndarray
    """(N, d) scaled state vectors, ‖x[i]‖₂ <= 1; rows that are not ``usable`` are zero."""
    usable: np.ndarray
    """(N,) True where the function was observed with complete data (a decision may be made)."""


def check_mu(mu: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """μ as a float array of shape (B,); raises when its shape disagrees with the settings."""
    mu = np.asarray(mu, dtype=float)
    if mu.shape != (settings.mu_bins,):
        raise ValueError(
            f"mu has shape {mu.shape}, but FeatureSettings.mu_bins={settings.mu_bins}: "
            "set mu_bins to the population estimator's number of bins"
        )
    return mu


def observed_rows(functions: FunctionStats) -> np.ndarray:
    """Rows whose every number a learner reads is known this tick: the backend observed the row
    (``valid``); arrivals, completions, containers, busy containers, queue, cold starts, CPU shares,
    CPU used and CPU allocated are finite and >= 0; the SLO is finite and > 0; the p99 latency is
    finite and >= 0 whenever something completed (NaN, "nothing completed", is a known state only
    then); the execution times are NaN (the work's size is not known yet: no staffing band) or
    finite and >= 0. Anything else (NaN where a number is due, infinite, negative) is an unknown
    value, and no decision is made on one.
    """
    with np.errstate(invalid="ignore"):
        usable = np.asarray(functions.valid, dtype=bool).copy()
        for column in (functions.arrivals, functions.completions, functions.containers, functions.busy_containers,
                       functions.queued, functions.cold_starts, functions.cpu_shares, functions.cpu_used_core_s,
                       functions.cpu_alloc_core_s):
            usable &= np.isfinite(column) & (column >= 0)
        usable &= np.isfinite(functions.slo_s) & (functions.slo_s > 0)
        p99 = functions.p99_latency_s
        latency = np.isfinite(p99) & (p99 >= 0)
        usable &= np.where(functions.completions > 0, latency, latency | np.isnan(p99))
        for column in (functions.mean_exec_s, functions.recent_exec_s):
            usable &= np.isnan(column) | (np.isfinite(column) & (column >= 0))
    return usable


def state_features(snapshot: ClusterSnapshot, mu: np.ndarray, settings: FeatureSettings) -> StateFeatures:
    """x(s) for every function of ``snapshot`` under population ``mu`` (module docstring lists the entries).

    A row is usable only where every number it reads is known (:func:`observed_rows`); μ with an
    entry that is not a finite number >= 0 makes no row usable (no population estimate, no
    decision).
    """
    fs = snapshot.functions
    mu = check_mu(mu, settings)
    n = len(fs)
    tick_s = float(snapshot.tick_s)
    if not (math.isfinite(tick_s) and tick_s > 0):
        raise ValueError(f"snapshot.tick_s={snapshot.tick_s}: must be a finite number of seconds > 0")
    usable = observed_rows(fs)
    if not np.all(np.isfinite(mu) & (mu >= 0)):
        usable[:] = False

    x = np.zeros((n, settings.state_dim))
    # Ratios of extreme or zero counters are clipped below; their floating-point warnings are noise.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        rate = np.maximum(fs.arrivals, 0.0) / tick_s
        x[:, 0] = 1.0
        x[:, 1] = np.log1p(rate) / math.log1p(settings.rate_max_per_s)
        x[:, 2] = np.log1p(np.maximum(fs.containers, 0.0)) / math.log1p(settings.containers_max)
        x[:, 3] = np.maximum(fs.cpu_shares, 0.0) / settings.shares_max
        ratio = fs.p99_latency_s / fs.slo_s
        known = np.isfinite(ratio) & (fs.slo_s > 0)
        x[:, 4] = np.where(
            known, np.minimum(ratio, settings.latency_ratio_max) / settings.latency_ratio_max, 0.0
        )
        x[:, 5] = np.where(known, 0.0, 1.0)
        alloc = fs.cpu_alloc_core_s
        x[:, 6] = np.where(alloc > 0, np.maximum(fs.cpu_used_core_s, 0.0) / alloc, 0.0)
        x[:, 7] = np.maximum(fs.cold_starts, 0.0) / np.maximum(fs.arrivals, 1.0)
        per_container = np.maximum(fs.queued, 0.0) / np.maximum(fs.containers, 1.0)
        x[:, 8] = np.log1p(per_container) / math.log1p(settings.queue_per_container_max)
        load = offered_load(fs, tick_s) / np.maximum(fs.containers, 1.0)
        x[:, 9] = np.minimum(load, settings.load_max) / settings.load_max
        x[:, 10] = np.where(fs.containers > 0, np.maximum(fs.busy_containers, 0.0) / fs.containers, 0.0)
    np.clip(x[:, : len(LOCAL_FEATURES)], 0.0, 1.0, out=x[:, : len(LOCAL_FEATURES)])
    x[:, len(LOCAL_FEATURES) :] = np.clip(mu, 0.0, 1.0) if settings.population else 1.0 / settings.mu_bins
    x /= _NORM
    x[~usable] = 0.0
    return StateFeatures(x=x, usable=usable)


def action_features(x: np.ndarray) -> np.ndarray:
    """φ(s, a) = e_a ⊗ x(s) for every state and action: (N, d) -> (N, A, A·d), ‖φ‖₂ = ‖x‖₂ <= 1.

    Materialised only where a learner needs explicit features (the linear NAC core); the policy's
    logits use the equivalent ``x @ Θᵀ`` without building this array.
    """
    n, d = x.shape
    phi = np.zeros((n, N_ACTIONS, N_ACTIONS, d), dtype=x.dtype)
    idx = np.arange(N_ACTIONS)
    phi[:, idx, idx, :] = x[:, None, :]
    return phi.reshape(n, N_ACTIONS, N_ACTIONS * d)


def sample_actions(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row of ``probs`` (N, A), drawn by inverse CDF with one uniform per row."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=1), probs.shape[1] - 1).astype(np.int64)


def greedy_actions(probs: np.ndarray) -> np.ndarray:
    """The most probable action of each row (ties to the lowest index)."""
    return np.argmax(probs, axis=1).astype(np.int64)


_MOVE_WORDS = {-1: "fewer", 0: "hold", 1: "more"}


def describe_pool(before: int, moved: int, after: int, direction: int, floor: int, ceiling: int, band: int,
                  bounds: tuple[int, int]) -> str:
    """The container part of a learner's reason: where the pool goes and why, so that the words never
    contradict the numbers. ``moved`` is where the move alone leads; ``band`` is +1 when the load
    floor raised it, -1 when the load ceiling lowered it, 0 when the band left it; ``bounds`` are
    the policy's (min, max) containers."""
    change = f"containers {before}→{after}" if after != before else f"containers {before}"
    word = _MOVE_WORDS[direction]
    if band > 0:
        why = f"move {word} to {moved}, raised to the load floor {floor}"
    elif band < 0:
        why = f"move {word} to {moved}, lowered to the load ceiling {ceiling}"
    elif after != moved:
        why = f"move {word} to {moved}, kept within [{bounds[0]}, {bounds[1]}]"
    else:
        why = f"move {word}"
    return f"{change} ({why})"


def offered_load(functions: FunctionStats, tick_s: float) -> np.ndarray:
    """R = arrival rate x mean execution time per function: the containers its work keeps busy.

    The rate is the tick's arrivals over ``tick_s``, the time the counts cover (the snapshot's
    ``tick_s``: the time since the last good observation, so a tick after a gap is not a lump).
    The tick's mean execution time, else that of the last 3 completions; 0 where neither is known
    (nothing has completed, so nothing is known about the work's size); NaN where the arrivals or
    an execution time are not numbers >= 0 (an unknown load, never read as no load).
    """
    arrivals = np.asarray(functions.arrivals, dtype=float)
    with np.errstate(invalid="ignore"):
        exec_s = np.where(np.isfinite(functions.mean_exec_s), functions.mean_exec_s, functions.recent_exec_s)
        load = arrivals / tick_s * exec_s
        garbled = (np.isinf(functions.mean_exec_s) | (functions.mean_exec_s < 0)
                   | np.isinf(functions.recent_exec_s) | (functions.recent_exec_s < 0))
        unknown = ~(np.isfinite(arrivals) & (arrivals >= 0)) | garbled
    return np.where(unknown, np.nan, np.where(np.isfinite(load), load, 0.0))


def smooth_load(previous: np.ndarray | None, load: np.ndarray, tick_s: float, settings: ActionSettings) -> np.ndarray:
    """One step of the exponential average of the offered load (``ActionSettings.load_smoothing_s``).

    ``previous`` is the last average, row by row (functions keep their index, as everywhere in the
    driver): functions appended since, and non-finite entries, start from their tick's load; None,
    or a longer ``previous`` (another set of functions), starts everything from ``load``. A row
    whose load this tick is unknown (NaN) keeps its average: a tick without data moves nothing.
    The weight is 1 − exp(−tick_s / τ) with ``tick_s`` the time the tick's counts cover.
    """
    load = np.asarray(load, dtype=float)
    if previous is None or len(previous) > len(load) or settings.load_smoothing_s == 0:
        return load.copy()
    weight = 1.0 - math.exp(-tick_s / settings.load_smoothing_s)
    previous = np.concatenate([np.asarray(previous, dtype=float), np.full(len(load) - len(previous), np.nan)])
    blended = np.where(np.isfinite(previous), previous + weight * (load - previous), load)
    return np.where(np.isfinite(load), blended, previous)


def staffing_band(load: np.ndarray, settings: ActionSettings) -> tuple[np.ndarray, np.ndarray]:
    """(floor, ceiling) of the container target for offered load ``load`` (containers kept busy).

    With the staffed load S = load + c·√load (c = staffing_c): floor = ⌈load_floor x S⌉ and
    ceiling = max(min_containers, ⌈load_ceiling x S⌉), or max_containers with the ceiling off.
    """
    load = np.maximum(np.asarray(load, dtype=float), 0.0)
    staffed = load + settings.staffing_c * np.sqrt(load)
    floor = np.ceil(settings.load_floor * staffed - 1e-9).astype(np.int64)
    if settings.load_ceiling > 0:
        ceiling = np.maximum(np.ceil(settings.load_ceiling * staffed - 1e-9).astype(np.int64), settings.min_containers)
    else:
        ceiling = np.full(len(floor), settings.max_containers, dtype=np.int64)
    return floor, ceiling


def container_steps(pool: np.ndarray, settings: ActionSettings) -> np.ndarray:
    """Containers one move adds or removes from ``pool``: ⌈container_step_fraction x pool⌉, at least 1."""
    return np.maximum(1, np.ceil(settings.container_step_fraction * pool - 1e-9)).astype(np.int64)


def actions_to_decisions(
    functions: FunctionStats,
    actions: np.ndarray,
    usable: np.ndarray,
    settings: ActionSettings,
    label: str,
    tick_s: float,
    load: np.ndarray | None = None,
) -> Decisions:
    """Targets for every function: current pool ± one container step, current shares ± one step, clamped.

    The pool is then held inside the staffing band (:func:`staffing_band`) of ``load``, the offered
    load to staff for (by default the tick's, :func:`offered_load`; the driver passes its smoothed
    one); a function with arrivals but no completion yet (its work's size unknown) has no band.
    ``actions[i]`` is ignored where ``usable[i]`` is False (no data: no decision, and the
    returned ``Decisions.action`` is -1 there). A pool or share setting the platform has not
    created yet (observed 0) starts from the initial pool of ``settings``. A function whose load
    is under ``idle_load`` is left to the platform: ``UNMANAGED`` containers, ``KEEP_SHARES``, and
    ``Decisions.action`` -1 (no move was applied). A row with an unknown number
    (:func:`observed_rows`) gets no decision whatever ``usable`` says.
    """
    n = len(functions)
    actions = np.asarray(actions, dtype=np.int64)
    if actions.shape != (n,) or usable.shape != (n,):
        raise ValueError(f"actions {actions.shape} and usable {usable.shape} must both have shape ({n},)")
    usable = np.asarray(usable, dtype=bool) & observed_rows(functions)
    safe = np.where(usable, actions, HOLD_ACTION)
    if np.any((safe < 0) | (safe >= N_ACTIONS)):
        raise ValueError(
            f"action indices must be in [0, {N_ACTIONS}), got {safe[(safe < 0) | (safe >= N_ACTIONS)][:5]}"
        )
    current = np.where(usable, functions.containers, 0.0).round().astype(np.int64)
    shares = np.where(usable, functions.cpu_shares, 0.0).round().astype(np.int64)
    base_c = np.where(current > 0, current, settings.initial_containers)
    base_s = np.where(shares > 0, shares, settings.initial_shares)
    move = ACTIONS[safe]
    moved = base_c + move[:, 0] * container_steps(base_c, settings)
    if load is None:
        load = offered_load(functions, tick_s)
    elif np.shape(load) != (n,):
        raise ValueError(f"load has shape {np.shape(load)}, expected ({n},)")
    load = np.where(np.isfinite(load), load, 0.0)
    floor, ceiling = staffing_band(load, settings)
    # The load is known where the work's size is, or where nothing arrived (then it is 0 whatever
    # the size: a function never invoked is idle, not unknown). Elsewhere — work arriving before
    # its first completion — there is no band and the move stands.
    sized = (
        np.isfinite(functions.mean_exec_s)
        | np.isfinite(functions.recent_exec_s)
        | ~(np.nan_to_num(functions.arrivals, nan=1.0) > 0)
    )
    floor = np.where(sized, floor, 0)
    ceiling = np.where(sized, ceiling, settings.max_containers)
    lifted = floor > moved
    lowered = ~lifted & (ceiling < moved) & (ceiling < settings.max_containers)  # not the plain bound
    banded = np.where(lifted, floor, np.where(lowered, ceiling, moved))
    idle = usable & sized & (load < settings.idle_load)  # idle_load = 0: never true
    target_c = np.clip(banded, settings.min_containers, settings.max_containers)
    target_s = np.clip(base_s + move[:, 1] * settings.share_step, settings.min_shares, settings.max_shares)
    target_c = np.where(usable & ~idle, target_c, UNMANAGED)
    target_s = np.where(usable & ~idle, target_s, KEEP_SHARES)
    bounds = (settings.min_containers, settings.max_containers)
    columns = (np.asarray(usable, dtype=bool).copy(), idle, load, move[:, 0], base_c, moved, target_c, floor, ceiling,
               lifted, lowered, base_s, target_s)

    def reason(i: int) -> str:
        ok, rest, r, dc, c0, m, c1, lo, hi, up, down, s0, s1 = (np.asarray(column)[i].item() for column in columns)
        if not ok:
            return "no data"
        if rest:
            return f"{label}: idle (R={r:.3g}), containers left to the platform"
        return (f"{label}: {describe_pool(c0, m, c1, dc, lo, hi, up - down, bounds)}, "
                + (f"shares {s0}→{s1}" if s1 != s0 else f"shares {s0}"))

    reasons = LazyReasons(len(target_c), reason)
    return Decisions(
        containers=target_c,
        cpu_shares=target_s,
        valid=usable.copy(),
        reasons=reasons,
        action=np.where(usable & ~idle, safe, -1),
    )


__all__ = [
    "ACTIONS",
    "HOLD_ACTION",
    "LOCAL_FEATURES",
    "N_ACTIONS",
    "ActionSettings",
    "FeatureSettings",
    "StateFeatures",
    "action_features",
    "actions_to_decisions",
    "check_mu",
    "container_steps",
    "describe_pool",
    "greedy_actions",
    "observed_rows",
    "offered_load",
    "sample_actions",
    "smooth_load",
    "staffing_band",
    "state_features",
]
