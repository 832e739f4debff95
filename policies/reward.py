"""The reward each function earns for one tick: quality of service blended with CPU efficiency.

docs/architecture.md, "The serverless mean-field game", after the paper's Appendix E (reward coefficient α):

    r = (1 − α) · q + α · u,        r ∈ [0, 1]

* ``q`` (quality) is 1 when the tick's p99 latency is within the SLO and SLO / p99 above it, so it
  falls smoothly towards 0 as the function gets slower (twice the SLO gives q = 0.5).
* ``u`` (utilisation) is min(1, CPU used / CPU allocated) of the function's containers over the
  tick: allocated but idle CPU earns nothing. The ratio is capped at 1 because CPU shares are
  relative weights: a container may borrow idle CPU beyond its allocation, which is not a merit.
  With the controller's ``reward.charge_memory`` (off by default) u is multiplied by a second
  factor, min(1, CPU used / CPU the containers' memory reserves on their invokers)
  (``memory_reserved_core_s``), so that a pool kept at tiny shares still pays for the memory that
  keeps other functions out.

What "no data" means here (a NaN reward is *no reward*: learners skip it, reports ignore it):

=========================================  =====  =============================================
case                                        q      u
=========================================  =====  =============================================
row invalid (backend could not observe)     NaN    NaN   → r = NaN
completions > 0                             min(1, SLO / p99)
no completions, nothing arrived, nothing    1      used / allocated, or 1 when nothing was
queued or executing (an idle tick)                 allocated (no CPU wasted)
no completions but work arrived, queued     NaN    → r = NaN: the latency of that work is not
or executing                                       known yet; it is counted in the tick where it
                                                   completes
a number the case reads is unknown          NaN    → r = NaN: no reward on an unknown value
(NaN, infinite or negative)
=========================================  =====  =============================================

The numbers each case reads: the completions always; the p99 latency and the SLO (> 0) when
something completed, else the work seen (arrivals, queued, in flight); CPU used and CPU allocated;
with ``charge_memory`` the containers and their memory (> 0) as well.

Treating an idle tick as on-time (q = 1) keeps the cost of idle warm containers visible to a
learner: a function that keeps containers it does not use earns (1 − α) + α·0 instead of 1.

Pure and vectorised: one call scores every function of a snapshot.
"""

from __future__ import annotations

import numpy as np

from policies.types import FunctionStats

#: Weight of CPU utilisation against latency quality. 0.3 is the paper's choice (Appendix E: best
#: value of its sensitivity study over α).
DEFAULT_ALPHA = 0.3


def quality(p99_latency_s: np.ndarray, slo_s: np.ndarray) -> np.ndarray:
    """q = 1 when p99 ≤ SLO, SLO / p99 above it; NaN where p99 is NaN (nothing completed)."""
    p99 = np.asarray(p99_latency_s, dtype=float)
    slo = np.asarray(slo_s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = slo / p99
    return np.where(np.isnan(p99), np.nan, np.where(p99 <= slo, 1.0, ratio))


def utilisation(
    cpu_used_core_s: np.ndarray, cpu_alloc_core_s: np.ndarray, reserved_core_s: np.ndarray | float = 0.0
) -> np.ndarray:
    """u = min(1, used / allocated) x min(1, used / reserved); a factor is 1 where its denominator is 0.

    The first factor is the use of the CPU the shares allocate, the second the use of the CPU the
    containers' memory holds on its invokers (``reserved_core_s``, see
    :func:`memory_reserved_core_s`; 0 leaves the shares alone). Both resources are held by the
    function and either can be wasted: raising the shares of a pool or growing it with idle
    containers each lower u.
    """
    used = np.asarray(cpu_used_core_s, dtype=float)
    u = np.ones(np.broadcast(used, np.asarray(cpu_alloc_core_s), np.asarray(reserved_core_s)).shape)
    for held in (cpu_alloc_core_s, reserved_core_s):
        held = np.asarray(held, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratio = np.clip(used / held, 0.0, 1.0)
        # An unknown denominator is not "nothing held": the factor is unknown too.
        u = u * np.where(held > 0.0, ratio, np.where(np.isnan(held), np.nan, 1.0))
    return u


def memory_reserved_core_s(
    containers: np.ndarray, memory_mb: np.ndarray, cores_per_mb: float, tick_s: float
) -> np.ndarray:
    """CPU a function's containers hold through their memory over a tick, core-seconds.

    containers x memory x (invoker cores / invoker memory) x tick: OpenWhisk admits containers by
    memory, so a container of m MB on an invoker of M MB and C cores keeps m/M of it from every
    other function, whatever CPU shares it is given (OpenWhisk's own shares are the same
    proportion). Counting it makes an idle container cost utilisation even at the smallest shares;
    measured against the shares alone, a pool at 1/8 core per container looks fully used at any size.
    """
    if not (np.isfinite(cores_per_mb) and cores_per_mb >= 0):
        raise ValueError(f"cores_per_mb={cores_per_mb}: must be a finite number >= 0")
    count = np.maximum(np.nan_to_num(np.asarray(containers, dtype=float)), 0.0)
    return count * np.asarray(memory_mb, dtype=float) * cores_per_mb * tick_s


def reward_columns(
    *,
    p99_latency_s: np.ndarray,
    slo_s: np.ndarray,
    completions: np.ndarray,
    pending: np.ndarray,
    cpu_used_core_s: np.ndarray,
    cpu_alloc_core_s: np.ndarray,
    valid: np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    reserved_core_s: np.ndarray | float = 0.0,
) -> np.ndarray:
    """The reward per function from plain columns (see the module docstring for every case).

    ``pending`` is the work seen during the tick that has not completed: arrivals + queued +
    in-flight (any positive value marks the tick as "not idle").
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"reward alpha must be in [0, 1], got {alpha}")
    completions = np.asarray(completions, dtype=float)
    pending = np.asarray(pending, dtype=float)
    slo = np.asarray(slo_s, dtype=float)
    with np.errstate(invalid="ignore"):
        idle = (completions <= 0) & (pending <= 0)
        done = completions > 0
        read_q = np.where(done, _known(p99_latency_s) & np.isfinite(slo) & (slo > 0), _known(pending))
        known = (np.asarray(valid, dtype=bool) & _known(completions) & read_q & _known(cpu_used_core_s)
                 & _known(cpu_alloc_core_s) & _known(reserved_core_s))
    q = np.where(done, quality(p99_latency_s, slo_s), np.where(idle, 1.0, np.nan))
    u = utilisation(cpu_used_core_s, cpu_alloc_core_s, reserved_core_s)
    r = (1.0 - alpha) * q + alpha * u
    return np.where(known, r, np.nan)


#: The cost at which the operator reward reaches 0 (see :func:`operator_reward`): as much work late
#: as the population's average function does in a tick, or one invoker's memory held idle. Larger
#: costs (a busy function's bad tick) all give 0; a larger cap would keep them apart but shrink every
#: difference a learner must see against its entropy term (rewards near 1 with differences of 1e-3
#: taught nothing in 720 ticks).
OPERATOR_COST_CAP = 1.0


def operator_reward(functions: FunctionStats, alpha: float = DEFAULT_ALPHA, *, memory_scale_mb: float,
                    cost_cap: float = OPERATOR_COST_CAP) -> np.ndarray:
    """The reward that prices what an operator pays, per function, shape (n_functions,):

        cost = (1 − α) · late / V  +  α · idle / M,        r = 1 − min(cost, C) / C ∈ [0, 1]

    * ``late``: the tick's invocations that violated the SLO plus those still waiting at its end
      (counts); ``V``: the population's average work per function in the tick (completions +
      queued, at least 1), so violations are priced in the same currency for every function and a
      busy function's violations weigh as much as they do in the pooled violation rate;
    * ``idle``: the memory its containers hold while executing nothing (idle containers at the
      snapshot x the function's memory, MB); ``M`` = ``memory_scale_mb`` (one invoker's user memory):
      a container of a large function costs more than one of a small function;
    * ``C`` = ``cost_cap`` (:data:`OPERATOR_COST_CAP` unless given) keeps r in [0, 1], linear in both
      costs below it (where the sum over functions is the operator's cost).

    Neither term reads the CPU shares a policy asks for, so asking for fewer shares cannot raise it
    (unlike the paper's u = CPU used / CPU allocated). NaN, no reward, where a number it reads is
    unknown or the row is invalid.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"reward alpha must be in [0, 1], got {alpha}")
    if not (np.isfinite(memory_scale_mb) and memory_scale_mb > 0):
        raise ValueError(f"memory_scale_mb={memory_scale_mb}: must be a finite number > 0")
    if not (np.isfinite(cost_cap) and cost_cap > 0):
        raise ValueError(f"cost_cap={cost_cap}: must be a finite number > 0")
    f = functions
    completions = np.asarray(f.completions, dtype=float)
    violations = np.asarray(f.slo_violations, dtype=float)
    queued = np.asarray(f.queued, dtype=float)
    containers = np.asarray(f.containers, dtype=float)
    busy = np.asarray(f.busy_containers, dtype=float)
    memory = np.asarray(f.memory_mb, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        known = (np.asarray(f.valid, dtype=bool) & _known(completions) & _known(violations) & _known(queued)
                 & _known(containers) & _known(busy) & np.isfinite(memory) & (memory > 0))
        work = completions + queued
        average = max(1.0, float(np.mean(work[known]))) if known.any() else 1.0
        late = (violations + queued) / average
        idle = np.maximum(containers - busy, 0.0) * memory / memory_scale_mb
        cost = (1.0 - alpha) * late + alpha * idle
    r = 1.0 - np.minimum(cost, cost_cap) / cost_cap
    return np.where(known, r, np.nan)


#: The rewards a run can give its learner (``controller.settings`` ``reward.kind``).
REWARD_KINDS: tuple[str, ...] = ("paper", "operator")


def _known(values: np.ndarray | float) -> np.ndarray:
    """Where ``values`` are finite numbers >= 0 (a count, a time or an amount that is known)."""
    values = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values >= 0)


def reward(
    functions: FunctionStats, alpha: float = DEFAULT_ALPHA, *, cores_per_mb: float = 0.0, tick_s: float = 0.0
) -> np.ndarray:
    """The reward of every function of one tick's observations, shape (n_functions,).

    ``cores_per_mb`` > 0 (invoker cores per MB of invoker memory) measures u against the CPU the
    containers' memory reserves as well (:func:`memory_reserved_core_s`); 0 against the shares alone.
    """
    work = (functions.arrivals, functions.queued, functions.in_flight)
    # The work seen is known only when each part is (a negative part must not hide in the sum).
    with np.errstate(invalid="ignore", over="ignore"):
        pending = np.where(_known(work[0]) & _known(work[1]) & _known(work[2]), work[0] + work[1] + work[2], np.nan)
    reserved: np.ndarray | float = 0.0
    if cores_per_mb > 0:
        memory = np.asarray(functions.memory_mb, dtype=float)
        with np.errstate(invalid="ignore"):
            pool_known = _known(functions.containers) & np.isfinite(memory) & (memory > 0)
        with np.errstate(invalid="ignore", over="ignore"):
            held = memory_reserved_core_s(functions.containers, memory, cores_per_mb, tick_s)
        reserved = np.where(pool_known, held, np.nan)
    return reward_columns(
        reserved_core_s=reserved,
        p99_latency_s=functions.p99_latency_s,
        slo_s=functions.slo_s,
        completions=functions.completions,
        pending=pending,
        cpu_used_core_s=functions.cpu_used_core_s,
        cpu_alloc_core_s=functions.cpu_alloc_core_s,
        valid=functions.valid,
        alpha=alpha,
    )


__all__ = ["DEFAULT_ALPHA", "OPERATOR_COST_CAP", "REWARD_KINDS", "memory_reserved_core_s", "operator_reward", "quality", "reward",
           "reward_columns", "utilisation"]
