"""Small pieces every baseline shares: state growth, OpenWhisk's share rule, windows, and assembly.

Nothing here decides anything; the baselines' modules hold the rules and cite their sources.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import numpy as np

from policies.types import KEEP_SHARES, SHARES_PER_CORE, UNMANAGED, Decisions, constant_reasons

#: Rounding guard for counts computed in floating point: 14 / 0.7 is 20.000000000000004, which a
#: plain ceil turns into 21 containers. Any real excess is far larger than this.
COUNT_EPS = 1e-9

#: Reason given to a row the backend could not observe (no data, no decision).
NO_DATA = "no data"

#: Smallest CPU shares Docker accepts; OpenWhisk's invoker clamps to it as well.
MIN_DOCKER_SHARES = 2

ConfigT = TypeVar("ConfigT")


def ceil_count(values: np.ndarray | float) -> np.ndarray:
    """``ceil`` of non-negative container counts, ignoring float noise below ``COUNT_EPS``."""
    return np.ceil(np.maximum(np.asarray(values, dtype=float) - COUNT_EPS, 0.0)).astype(np.int64)


def grow(array: np.ndarray, n: int, fill: Any) -> np.ndarray:
    """``array`` extended to length ``n`` with ``fill`` (new functions appear at the end of a snapshot)."""
    extra = n - len(array)
    if extra <= 0:
        return array
    return np.concatenate([array, np.full(extra, fill, dtype=array.dtype)])


def grow_rows(array: np.ndarray, n: int, fill: Any) -> np.ndarray:
    """A 2-D per-function array (functions on axis 0) extended to ``n`` rows with ``fill``."""
    extra = n - array.shape[0]
    if extra <= 0:
        return array
    pad = np.full((extra,) + array.shape[1:], fill, dtype=array.dtype)
    return np.concatenate([array, pad], axis=0)


def openwhisk_cpu_shares(memory_mb: np.ndarray, user_memory_mb: float) -> np.ndarray:
    """CPU shares OpenWhisk's invoker gives one container of each function.

    The invoker's ContainerPool config divides Docker's 1024 shares by how many containers of the
    function's memory fit into the invoker's user memory (integer division of the byte counts), and
    never goes below Docker's minimum of 2: ``max(floor(1024 / (userMemory // memory)), 2)``.
    A function larger than the user memory (quotient 0) cannot be placed at all; it is given one
    core's worth so the formula stays defined.
    """
    memory = np.maximum(np.asarray(memory_mb, dtype=float), 1e-9)
    fits = np.floor(user_memory_mb / memory)
    shares = np.floor(SHARES_PER_CORE / np.maximum(fits, 1.0))
    return np.maximum(shares, MIN_DOCKER_SHARES).astype(np.int64)


def assemble(
    valid: np.ndarray,
    containers: np.ndarray,
    cpu_shares: np.ndarray,
    reasons: Sequence[str] | str,
) -> Decisions:
    """Decisions whose rows with ``valid`` False carry no decision and the reason "no data".

    ``reasons``: one per row, or one string for every row (then no string is written per row)."""
    valid = np.asarray(valid, dtype=bool)
    containers = np.where(valid, np.asarray(containers, dtype=np.int64), UNMANAGED)
    cpu_shares = np.where(valid, np.asarray(cpu_shares, dtype=np.int64), KEEP_SHARES)
    if isinstance(reasons, str):
        return Decisions(containers=containers, cpu_shares=cpu_shares, valid=valid,
                         reasons=constant_reasons(valid, reasons, NO_DATA))
    reasons_out = tuple(reason if ok else NO_DATA for reason, ok in zip(reasons, valid))
    return Decisions(containers=containers, cpu_shares=cpu_shares, valid=valid, reasons=reasons_out)


def config_from_params(config_cls: Callable[..., ConfigT], policy: str, params: dict[str, Any]) -> ConfigT:
    """``config_cls(**params)``, failing with the policy name and the accepted keys on an unknown key."""
    known = {f.name for f in fields(config_cls)}  # type: ignore[arg-type]
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            f"policy {policy!r}: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}"
        )
    return config_cls(**params)


def check_range(config: str, key: str, value: float, low: float, high: float = math.inf) -> None:
    """Reject a hyperparameter outside ``[low, high]`` naming the config, key, value and range."""
    if not (low <= value <= high):  # also rejects NaN
        raise ValueError(f"{config}.{key} = {value!r} is outside the allowed range [{low}, {high}]")


def column_nanmean(samples: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN; NaN where a column has no sample (no data, no warning)."""
    present = ~np.isnan(samples)
    count = present.sum(axis=0)
    total = np.where(present, samples, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def column_nanmax(samples: np.ndarray) -> np.ndarray:
    """Max over axis 0 ignoring NaN; NaN where a column has no sample (no data, no warning)."""
    present = ~np.isnan(samples)
    peak = np.where(present, samples, -np.inf).max(axis=0, initial=-np.inf)
    return np.where(present.any(axis=0), peak, np.nan)


@dataclass
class TimedColumns:
    """Per-function samples stamped with the tick that produced them, kept for a sliding window.

    Used by the autoscalers whose rules are averages or maxima over the last ``span_s`` seconds
    (Knative's stable and panic windows, the HPA's stabilisation window). A sample belongs to the
    window ``(now - span_s, now]`` when its tick ended after ``now - span_s``; functions that
    appeared after a sample was taken read NaN (no data) there.
    """

    span_s: float
    """Longest window any caller asks for, s; older samples are dropped."""
    times_s: list[float] = field(default_factory=list)
    """End time of the tick of each kept sample, s, oldest first."""
    columns: list[np.ndarray] = field(default_factory=list)
    """One per-function float array per kept sample, NaN where there was no data."""

    def append(self, time_s: float, values: np.ndarray) -> None:
        """Keep ``values`` as the sample of the tick ending at ``time_s`` and drop expired ones
        (never the latest: a window shorter than a tick still reads it)."""
        self.times_s.append(float(time_s))
        self.columns.append(np.asarray(values, dtype=float).copy())
        while len(self.times_s) > 1 and self.times_s[0] <= time_s - self.span_s:
            self.times_s.pop(0)
            self.columns.pop(0)

    def window(self, now_s: float, span_s: float, n: int) -> np.ndarray:
        """Samples of ticks ending in ``(now_s - span_s, now_s]``, shape (samples, n); never empty
        once something was appended, because the latest sample is always included (a window
        shorter than a tick still sees the tick that just ended)."""
        chosen = [c for t, c in zip(self.times_s, self.columns) if t > now_s - span_s]
        if not chosen and self.columns:
            chosen = [self.columns[-1]]
        if not chosen:
            return np.full((0, n), np.nan)
        return np.stack([grow(c, n, np.nan) for c in chosen])
