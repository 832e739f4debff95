"""Choose the functions of an experiment from a trace and give each a resource profile.

A workload is K trace functions, each with its per-minute counts over a minute range and a
``FunctionProfile``. Functions are picked either as named (HashFunction hashes or unique prefixes) or,
seeded, spread over invocation-rate classes (by default low < 1/min <= medium < 60/min <= high, by
the mean rate over the range). Each picked function then either

* plays one of the paper's 12 benchmark functions (``profiles="benchmark"``): a seeded permutation
  of the 12 names is laid round-robin over the picked functions, so the first 12 get 12 different
  benchmarks and every benchmark is used ceil(K/12) or floor(K/12) times; or
* keeps the trace's own durations and memory (``profiles="trace"``, ``FunctionProfile.from_trace``).

The sampling owns one ``numpy.random.Generator`` seeded with ``seed``: rate-class draws first, then
the benchmark permutation. Same trace, arguments and seed give the same workload.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from workload.azure2019 import AzureTrace2019, FunctionKey
from workload.azure2021 import InvocationTrace2021
from workload.profiles import (
    BENCHMARK_PROFILES,
    MEMORY_STEP_MB,
    TRACE_INIT_BASE_S,
    TRACE_INIT_S_PER_GB,
    TRACE_TIME_RESOLUTION_S,
    FunctionProfile,
    round_memory_mb,
)

ProfileMode = Literal["benchmark", "trace"]

#: OpenWhisk's entity-name rule: word characters, then word characters, '@', ' ', '.', '-', not ending
#: in a space; at most 256 characters.
OPENWHISK_NAME = re.compile(r"\A(?:\w|\w[\w@ .-]*[\w@.-])\Z", re.ASCII)
OPENWHISK_NAME_MAX = 256

#: Shortest hash prefix accepted when functions are named by prefix (8 hex digits: 4e9 values, so a
#: prefix is unique among the ~46k functions of a trace day with high probability).
MIN_HASH_PREFIX = 8


@dataclass(frozen=True)
class RateClass:
    """A band of mean invocation rates, invocations per minute, [low, high)."""

    name: str
    """Label, e.g. ``medium``."""
    low_per_minute: float
    """Inclusive lower bound of the mean rate, invocations/min."""
    high_per_minute: float
    """Exclusive upper bound of the mean rate, invocations/min (``inf`` for the top class)."""


#: Shahrad et al. (ATC 2020) report ~81% of apps invoked at most once a minute and a small share more
#: than once a second; these bounds split at 1/min and 1/s so all three regimes appear in a sample.
DEFAULT_RATE_CLASSES: tuple[RateClass, ...] = (
    RateClass("low", 0.0, 1.0),
    RateClass("medium", 1.0, 60.0),
    RateClass("high", 60.0, math.inf),
)


@dataclass(frozen=True, eq=False)
class WorkloadFunction:
    """One function of a workload: its action name, profile and per-minute arrivals."""

    name: str
    """Unique, valid OpenWhisk action name, e.g. ``image-inference-003``."""
    profile: FunctionProfile
    """What one invocation costs (a benchmark profile, or the trace function's own)."""
    counts_per_minute: np.ndarray = field(repr=False)
    """Invocations per minute over the workload's minutes, int32, read-only."""
    first_minute: int
    """Trace minute label of ``counts_per_minute[0]`` (the workload's start minute)."""
    trace_id: str
    """Which trace function the arrivals come from (``owner/app/function`` hashes, or ``app/func``)."""
    trigger: str = ""
    """Azure trigger of the trace function (2019 trace; empty for 2021)."""
    rate_class: str = ""
    """Rate class the function was drawn from (empty when picked by name)."""

    @property
    def mean_rate_per_minute(self) -> float:
        """Mean invocations per minute over the workload's minutes."""
        return float(self.counts_per_minute.mean()) if self.counts_per_minute.size else 0.0


@dataclass(frozen=True, eq=False)
class Workload:
    """The functions of an experiment over trace minutes [start_minute, end_minute)."""

    functions: tuple[WorkloadFunction, ...]
    """The picked functions; index i here is function index i of an ``ArrivalStream`` built from them."""
    start_minute: int
    """First trace minute (inclusive)."""
    end_minute: int
    """Last trace minute (exclusive)."""
    seed: int
    """Seed of the sampling."""
    profile_mode: str
    """``benchmark`` or ``trace``."""

    @property
    def names(self) -> tuple[str, ...]:
        """Action names, in function order."""
        return tuple(f.name for f in self.functions)

    def total_invocations(self) -> int:
        """All invocations of all functions over the minutes."""
        return int(sum(int(f.counts_per_minute.sum(dtype=np.int64)) for f in self.functions))


def check_action_name(name: str) -> str:
    """``name`` if it is a valid OpenWhisk action name, else ValueError saying why."""
    if len(name) > OPENWHISK_NAME_MAX or not OPENWHISK_NAME.match(name):
        raise ValueError(
            f"{name!r} is not a valid OpenWhisk action name (word characters, then word characters, "
            f"'@', ' ', '.', '-'; not ending in a space; at most {OPENWHISK_NAME_MAX} characters)"
        )
    return name


def rate_class_of(mean_per_minute: float, classes: Sequence[RateClass] = DEFAULT_RATE_CLASSES) -> str:
    """Name of the class whose band holds ``mean_per_minute``."""
    for rate_class in classes:
        if rate_class.low_per_minute <= mean_per_minute < rate_class.high_per_minute:
            return rate_class.name
    raise ValueError(f"mean rate {mean_per_minute}/min is in no rate class of {[c.name for c in classes]}")


def spread_over_classes(
    rates: np.ndarray, k: int, rng: np.random.Generator, classes: Sequence[RateClass] = DEFAULT_RATE_CLASSES
) -> tuple[np.ndarray, list[str]]:
    """Pick ``k`` row indices spread as evenly as possible over the rate classes.

    Each class gets ``k // C`` picks, the first ``k % C`` classes (in the order given) one more. A class
    with too few members gives all it has and its shortfall goes, one pick at a time round-robin, to the
    classes that still have members. Within a class, picks are uniform without replacement. Returns the
    picked indices in ascending order and each one's class name.
    """
    labels = [rate_class_of(float(rate), classes) for rate in rates]
    if k > len(labels):
        raise ValueError(f"cannot pick {k} functions from {len(labels)}")
    members = [np.flatnonzero(np.array([label == c.name for label in labels], dtype=bool)) for c in classes]
    quotas = [k // len(classes) + (1 if i < k % len(classes) else 0) for i in range(len(classes))]
    granted = [min(q, m.size) for q, m in zip(quotas, members, strict=True)]
    leftover = k - sum(granted)
    while leftover > 0:
        for i, pool in enumerate(members):
            if leftover > 0 and granted[i] < pool.size:
                granted[i] += 1
                leftover -= 1
    picked: list[int] = []
    for pool, n in zip(members, granted, strict=True):
        if n:
            picked.extend(int(x) for x in rng.choice(pool, size=n, replace=False))
    picked.sort()
    return np.asarray(picked, dtype=np.int64), [labels[i] for i in picked]


def resolve_names(
    trace_ids: Sequence[str], function_hashes: Sequence[str], wanted: Sequence[str]
) -> list[int]:
    """Row indices of ``wanted`` functions, each a full HashFunction, a trace id, or a unique prefix."""
    picked = []
    for name in wanted:
        exact = [
            i for i, (tid, h) in enumerate(zip(trace_ids, function_hashes, strict=True)) if name in (tid, h)
        ]
        if exact:
            picked.append(exact[0])
            continue
        if len(name) < MIN_HASH_PREFIX:
            raise ValueError(f"function {name!r}: a prefix needs at least {MIN_HASH_PREFIX} characters")
        matches = [i for i, h in enumerate(function_hashes) if h.startswith(name)]
        matches += [i for i, tid in enumerate(trace_ids) if tid.startswith(name) and i not in matches]
        if len(matches) != 1:
            raise ValueError(f"function {name!r} matches {len(matches)} trace functions; need exactly one")
        picked.append(matches[0])
    if len(set(picked)) != len(picked):
        raise ValueError(f"functions {list(wanted)} name the same trace function more than once")
    return picked


def _benchmark_assignment(
    n: int, rng: np.random.Generator, benchmark: dict[str, FunctionProfile]
) -> list[FunctionProfile]:
    names = sorted(benchmark)
    order = rng.permutation(len(names))
    return [benchmark[names[order[i % len(names)]]] for i in range(n)]


def _name(label: str, index: int, width: int) -> str:
    return check_action_name(f"{label}-{index:0{width}d}")


def _minute_slice(
    first_minute: int, n_minutes: int, start_minute: int | None, end_minute: int | None
) -> tuple[int, int]:
    start = first_minute if start_minute is None else int(start_minute)
    end = first_minute + n_minutes if end_minute is None else int(end_minute)
    if not first_minute <= start < end <= first_minute + n_minutes:
        raise ValueError(
            f"minutes [{start_minute}, {end_minute}) must be a non-empty range within the trace's "
            f"[{first_minute}, {first_minute + n_minutes})"
        )
    return start, end


def sample_workload(
    trace: AzureTrace2019,
    k: int | None = None,
    *,
    seed: int,
    functions: Sequence[str] | None = None,
    start_minute: int | None = None,
    end_minute: int | None = None,
    profiles: ProfileMode = "benchmark",
    classes: Sequence[RateClass] = DEFAULT_RATE_CLASSES,
    benchmark: dict[str, FunctionProfile] = BENCHMARK_PROFILES,
) -> Workload:
    """Pick ``k`` functions of a 2019 trace (or the named ``functions``) over trace minutes
    [start_minute, end_minute) (default: all the trace's minutes) and profile each one.
    """
    invocations = trace.invocations
    start, end = _minute_slice(invocations.first_minute, invocations.n_minutes, start_minute, end_minute)
    counts = invocations.counts[:, start - invocations.first_minute : end - invocations.first_minute]
    keys = invocations.keys
    rng = np.random.default_rng(seed)
    if functions is not None:
        if k is not None and k != len(functions):
            raise ValueError(f"k={k} disagrees with the {len(functions)} functions named")
        rows = resolve_names([key.trace_id for key in keys], [key.function for key in keys], functions)
        class_names = [""] * len(rows)
    else:
        if k is None or k < 1:
            raise ValueError(f"k must be >= 1 when no functions are named, got {k}")
        rates = counts.mean(axis=1)
        picked, class_names = spread_over_classes(rates, k, rng, classes)
        rows = [int(i) for i in picked]
    if profiles == "benchmark":
        assigned = _benchmark_assignment(len(rows), rng, benchmark)
    elif profiles == "trace":
        assigned = [_trace_profile(trace, keys[row]) for row in rows]
    else:
        raise ValueError(f"profiles must be 'benchmark' or 'trace', got {profiles!r}")
    width = max(3, len(str(len(rows) - 1)))
    result = []
    for position, (row, profile, class_name) in enumerate(zip(rows, assigned, class_names, strict=True)):
        label = profile.name if profiles == "benchmark" else f"trace-{keys[row].function[:8]}"
        series = np.array(counts[row], dtype=np.int32)
        series.setflags(write=False)
        result.append(
            WorkloadFunction(
                name=_name(label, position, width),
                profile=profile,
                counts_per_minute=series,
                first_minute=start,
                trace_id=keys[row].trace_id,
                trigger=invocations.triggers[row],
                rate_class=class_name,
            )
        )
    return Workload(
        functions=tuple(result), start_minute=start, end_minute=end, seed=seed, profile_mode=profiles
    )


def _trace_profile(trace: AzureTrace2019, key: FunctionKey) -> FunctionProfile:
    durations = trace.durations.get(key)
    if durations is None:
        raise ValueError(
            f"function {key.trace_id} has no row in {trace.files.durations}; "
            "use profiles='benchmark' or pick functions that have durations"
        )
    return FunctionProfile.from_trace(f"trace-{key.function[:8]}", durations, trace.memory.get(key))


def profile_from_invocations(
    name: str,
    durations_s: np.ndarray,
    init_s: float = TRACE_INIT_BASE_S + TRACE_INIT_S_PER_GB * MEMORY_STEP_MB / 1024,
) -> FunctionProfile:
    """A profile from a 2021 function's recorded durations: median and p99 of them, 128 MB.

    The 2021 trace records no memory, so the OpenWhisk minimum is used; ``init_s`` follows the
    ``from_trace`` rule at 128 MB.
    """
    if durations_s.size == 0:
        raise ValueError(f"function {name!r} has no invocations to profile")
    median = max(float(np.median(durations_s)), TRACE_TIME_RESOLUTION_S)
    p99 = max(float(np.quantile(durations_s, 0.99)), median)
    return FunctionProfile(
        name=name,
        memory_mb=round_memory_mb(0.0),
        exec_median_s=median,
        exec_p99_s=p99,
        init_s=init_s,
        source="Azure Functions 2021 trace: median/p99 of recorded durations; memory = OpenWhisk minimum",
    )


def sample_workload_2021(
    trace: InvocationTrace2021,
    k: int | None = None,
    *,
    seed: int,
    profiles: ProfileMode = "benchmark",
    classes: Sequence[RateClass] = DEFAULT_RATE_CLASSES,
    benchmark: dict[str, FunctionProfile] = BENCHMARK_PROFILES,
    rows: Sequence[int] | None = None,
) -> Workload:
    """Like ``sample_workload`` for a 2021 trace (all functions when ``k`` is None; the functions at
    trace indices ``rows``, in that order, when given).

    Minutes are counted from the trace clock's 0 (minute m covers [60 m, 60 m + 60) s). For exact
    replay of the recorded arrival times use ``arrivals.TraceArrivalStream`` with the same functions.
    """
    first, counts = trace.counts_per_minute()
    rng = np.random.default_rng(seed)
    n = counts.shape[0]
    rates = counts.mean(axis=1)
    if rows is not None:
        if k is not None and k != len(rows):
            raise ValueError(f"k={k} disagrees with the {len(rows)} rows named")
        bad = [r for r in rows if not 0 <= r < n]
        if bad:
            raise ValueError(f"rows {bad} are not functions of the trace (it has {n})")
        rows = [int(r) for r in rows]
        class_names = [rate_class_of(float(rates[r]), classes) for r in rows]
    elif k is None:
        rows = list(range(n))
        class_names = [rate_class_of(float(r), classes) for r in rates]
    else:
        picked, class_names = spread_over_classes(rates, k, rng, classes)
        rows = [int(i) for i in picked]
    if profiles == "benchmark":
        assigned = _benchmark_assignment(len(rows), rng, benchmark)
    elif profiles == "trace":
        assigned = [
            profile_from_invocations(
                f"trace-{trace.functions[row][1][:8]}", trace.duration_s[trace.fn == row]
            )
            for row in rows
        ]
    else:
        raise ValueError(f"profiles must be 'benchmark' or 'trace', got {profiles!r}")
    width = max(3, len(str(len(rows) - 1)))
    result = []
    for position, (row, profile, class_name) in enumerate(zip(rows, assigned, class_names, strict=True)):
        series = np.array(counts[row], dtype=np.int32)
        series.setflags(write=False)
        result.append(
            WorkloadFunction(
                name=_name(profile.name, position, width),
                profile=profile,
                counts_per_minute=series,
                first_minute=first,
                trace_id=trace.function_name(row),
                rate_class=class_name,
            )
        )
    return Workload(
        functions=tuple(result),
        start_minute=first,
        end_minute=first + counts.shape[1],
        seed=seed,
        profile_mode=profiles,
    )
