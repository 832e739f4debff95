"""The hybrid-histogram keep-alive policy (Shahrad et al., "Serverless in the Wild: Characterizing and
Optimizing the Serverless Workload at a Large Cloud Provider", USENIX ATC 2020, Section 4).

The paper's rule, per application (here: per function):

* keep a histogram of **idle times** (time from the end of one execution to the next invocation)
  with 1-minute bins over a 4-hour range;
* **pre-warming window** = the head (5th percentile) of the histogram, lowered by a 10% margin:
  after an execution the container is unloaded and loaded again once this much idle time passed;
* **keep-alive window** ends at the tail (99th percentile), raised by a 10% margin: past it the
  container is unloaded;
* when the histogram is **not representative** (too few samples, or bin counts with a low
  coefficient of variation, i.e. no dominant idle time) fall back to a fixed keep-alive with no
  pre-warming;
* when many idle times fall **out of the histogram's range**, the paper forecasts the next idle
  time with ARIMA and loads the container around the forecast with a 15% margin.

Mapping onto this model (see docs/baselines.md):

* Windows are expressed as idle times: the container is loaded while the idle time lies in
  ``[(1 - 0.10)·head, (1 + 0.10)·tail]``; ``head`` is the lower edge of the bin holding the 5th
  percentile, ``tail`` the upper edge of the bin holding the 99th (bin resolution, rounded outwards).
* Idle times come from ticks, not from single invocations: a tick is *busy* when it had arrivals
  or ended with requests in flight or queued; on a tick with arrivals the policy records one idle
  time, ``now - (end of the last busy tick) - tick_s`` (whole ticks, rounded down; consecutive busy
  ticks record 0). With 10-second ticks this is 6× finer than the 1-minute bins.
* A decision holds for the coming tick, so the container is loaded when the idle time an arrival in
  that tick would record, ``now - (end of the last busy tick)``, lies in the window.
* Loaded = ``k >= 1`` containers: enough for the observed concurrency
  (``max(in_flight + queued, arrivals / tick_s × exec_s)``), at least 1; unloaded = ``0`` (scale to
  zero: an arrival cold-starts a container that is removed once idle). A function with requests in
  flight or queued is never unloaded.
* Out-of-range idle times: instead of ARIMA (a model fit per function, which this pure, per-tick
  policy does not carry) the forecast is the median of the last ``oob_history`` out-of-range idle
  times, with the paper's 15% margin on both sides. Periodic functions with long periods — the
  case ARIMA served in the paper — have a stable median, which is what the forecast needs.
* Fallback keep-alive is 10 minutes, OpenWhisk's own idle eviction, so an unrepresentative
  function behaves as it would under the platform default.
* An unobserved (invalid) tick may hide an arrival, so the idle time spanning it is not recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from policies.baselines._common import (
    COUNT_EPS,
    assemble,
    ceil_count,
    check_range,
    config_from_params,
    grow,
    grow_rows,
)
from policies.registry import register
from policies.types import KEEP_SHARES, ClusterSnapshot, Decisions, StatelessFeedback

#: Where a function's windows came from (see :meth:`HybridHistogramPolicy.windows`).
FROM_HISTOGRAM = "histogram"
FROM_FIXED = "fixed"
FROM_OUT_OF_RANGE = "oob"


@dataclass(frozen=True)
class HybridHistogramConfig:
    """Hyperparameters of the hybrid-histogram policy (defaults: Shahrad et al. 2020, Section 4.2)."""

    bin_s: float = 60.0
    """Width of one idle-time bin, s (the paper's 1-minute bins)."""
    range_s: float = 4 * 3600.0
    """Idle times the histogram covers, s (the paper's 4 hours); longer ones are out of range."""
    head_percentile: float = 0.05
    """Percentile of idle times that sets the pre-warming window (the paper's 5th)."""
    tail_percentile: float = 0.99
    """Percentile of idle times that sets the end of the keep-alive window (the paper's 99th)."""
    prewarm_margin: float = 0.10
    """Fraction by which the pre-warming window is shortened (the paper's 10% margin)."""
    keep_alive_margin: float = 0.10
    """Fraction by which the keep-alive window is lengthened (the paper's 10% margin)."""
    min_samples: int = 10
    """Idle times a histogram needs before it is trusted. The paper gives no number; 10 puts at
    least one sample under the 5th-percentile head once two samples fall in one bin (our choice)."""
    cv_threshold: float = 2.0
    """Coefficient of variation of the bin counts above which the histogram is representative (the
    paper's threshold 2; near-uniform counts have a CV near 0, one dominant bin about sqrt(bins))."""
    fallback_keep_alive_s: float = 600.0
    """Fixed keep-alive, s, while the histogram is not representative: OpenWhisk's 10-minute idle
    eviction, so such a function behaves as under the platform default."""
    oob_fraction: float = 0.5
    """Share of idle times beyond ``range_s`` above which the out-of-range forecast replaces the
    histogram (our choice: the histogram no longer describes most idle periods)."""
    oob_history: int = 8
    """Out-of-range idle times kept per function for the forecast (median of these)."""
    oob_margin: float = 0.15
    """Relative margin around the out-of-range forecast (the paper's 15% ARIMA margin)."""

    @property
    def bins(self) -> int:
        """Number of histogram bins."""
        return round(self.range_s / self.bin_s)

    def __post_init__(self) -> None:
        name = "HybridHistogramConfig"
        check_range(name, "bin_s", self.bin_s, 1e-9)
        check_range(name, "range_s", self.range_s, self.bin_s)
        check_range(name, "head_percentile", self.head_percentile, 0.0, 1.0)
        check_range(name, "tail_percentile", self.tail_percentile, self.head_percentile, 1.0)
        check_range(name, "prewarm_margin", self.prewarm_margin, 0.0, 1.0)
        check_range(name, "keep_alive_margin", self.keep_alive_margin, 0.0)
        check_range(name, "min_samples", self.min_samples, 1)
        check_range(name, "cv_threshold", self.cv_threshold, 0.0)
        check_range(name, "fallback_keep_alive_s", self.fallback_keep_alive_s, 0.0)
        check_range(name, "oob_fraction", self.oob_fraction, 0.0, 1.0)
        check_range(name, "oob_history", self.oob_history, 1)
        check_range(name, "oob_margin", self.oob_margin, 0.0, 1.0)


@dataclass(frozen=True, eq=False)
class KeepWindows:
    """Per-function load window in idle-time units: loaded while ``prewarm_s <= idle <= keep_until_s``."""

    prewarm_s: np.ndarray
    """Idle time at which the container is loaded again, s."""
    keep_until_s: np.ndarray
    """Idle time after which the container is unloaded, s."""
    source: np.ndarray
    """Where each window came from: FROM_HISTOGRAM, FROM_FIXED or FROM_OUT_OF_RANGE."""


@dataclass
class HybridHistogramPolicy(StatelessFeedback):
    """Per-function pre-warm / keep-alive windows from an idle-time histogram (see the module docstring)."""

    name: ClassVar[str] = "hybrid-histogram"
    config: HybridHistogramConfig = field(default_factory=HybridHistogramConfig)
    """The policy's hyperparameters."""
    counts: np.ndarray = field(init=False, repr=False)
    """In-range idle times per function and bin, shape (n_functions, bins)."""
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    """Idle times recorded per function, in range or not."""
    out_of_range: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    """Idle times per function longer than ``range_s``."""
    recent_out_of_range_s: np.ndarray = field(init=False, repr=False)
    """The last ``oob_history`` out-of-range idle times per function, s (ring buffer, NaN = empty)."""
    out_of_range_next: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    """Next slot of each function's ring buffer."""
    last_busy_s: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    """End of the function's last busy tick, s; NaN before its first invocation."""
    gap_unknown: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool), repr=False)
    """True when a tick since the last busy one was unobserved: the next idle time is not recorded."""
    exec_s: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    """Last observed mean execution time per function, s (NaN until a completion was seen)."""
    explain: bool = True
    """Write each function's reason. False gives every row the same short reason, for a caller that
    reads only the counts (the portfolio's histogram member)."""

    def __post_init__(self) -> None:
        self.counts = np.zeros((0, self.config.bins), dtype=np.int64)
        self.recent_out_of_range_s = np.zeros((0, self.config.oob_history))
        self._windows: KeepWindows | None = None
        self._stale = np.zeros(0, dtype=bool)
        self._square_sum = np.zeros(0, dtype=np.int64)  # Σ counts² per function, kept as counts grow

    def _grow(self, n: int) -> None:
        self.counts = grow_rows(self.counts, n, 0)
        self.samples = grow(self.samples, n, 0)
        self.out_of_range = grow(self.out_of_range, n, 0)
        self.recent_out_of_range_s = grow_rows(self.recent_out_of_range_s, n, np.nan)
        self.out_of_range_next = grow(self.out_of_range_next, n, 0)
        self.last_busy_s = grow(self.last_busy_s, n, np.nan)
        self.gap_unknown = grow(self.gap_unknown, n, False)
        self.exec_s = grow(self.exec_s, n, np.nan)
        self._stale = grow(self._stale, n, True)
        self._square_sum = grow(self._square_sum, n, 0)

    def record_idle_times(self, rows: np.ndarray, idle_s: np.ndarray) -> None:
        """Add one idle time (s) for each function index in ``rows`` (distinct indices)."""
        cfg = self.config
        if rows.size and np.bincount(rows).max() > 1:
            raise ValueError(f"record_idle_times: function indices must be distinct, got {rows.tolist()}")
        self._stale[rows] = True
        self.samples[rows] += 1
        in_range = idle_s < cfg.range_s
        bins = np.minimum((idle_s[in_range] // cfg.bin_s).astype(np.int64), cfg.bins - 1)
        near = rows[in_range]
        # One count per (distinct) row: c -> c + 1 adds 2c + 1 to the row's sum of squared counts.
        self._square_sum[near] += 2 * self.counts[near, bins] + 1
        self.counts[near, bins] += 1
        far = rows[~in_range]
        self.out_of_range[far] += 1
        self.recent_out_of_range_s[far, self.out_of_range_next[far]] = idle_s[~in_range]
        self.out_of_range_next[far] = (self.out_of_range_next[far] + 1) % cfg.oob_history

    def windows(self, needed: np.ndarray | None = None) -> KeepWindows:
        """Each function's current load window (paper, Section 4.2; see the module docstring).

        A function's window changes only when it records an idle time, so the windows are kept and
        only those of functions that recorded one since are computed again. ``needed`` (a boolean
        mask over the functions): only these windows must be current, the others are computed when
        they are next needed (a busy function's window decides nothing this tick)."""
        n = len(self.samples)
        cached = self._windows
        if cached is None or len(cached.prewarm_s) != n:
            # Rows new since the last windows are stale already (``_grow``).
            cached = KeepWindows(
                prewarm_s=grow(np.zeros(0) if cached is None else cached.prewarm_s, n, 0.0),
                keep_until_s=grow(np.zeros(0) if cached is None else cached.keep_until_s, n, 0.0),
                source=grow(np.zeros(0, dtype=object) if cached is None else cached.source, n, FROM_FIXED),
            )
        due = self._stale if needed is None else self._stale & np.asarray(needed, dtype=bool)
        if due.any():
            rows = np.flatnonzero(due)
            fresh = self._compute_windows(rows)
            prewarm, keep_until, source = cached.prewarm_s.copy(), cached.keep_until_s.copy(), cached.source.copy()
            prewarm[rows], keep_until[rows], source[rows] = fresh.prewarm_s, fresh.keep_until_s, fresh.source
            cached = KeepWindows(prewarm_s=prewarm, keep_until_s=keep_until, source=source)
            self._stale = self._stale & ~due
        self._windows = cached
        return cached

    def _compute_windows(self, rows: np.ndarray) -> KeepWindows:
        """The windows of the functions ``rows``, from their histograms."""
        cfg = self.config
        n = len(rows)
        every = n == len(self.samples)
        counts = self.counts if every else self.counts[rows]
        samples = self.samples if every else self.samples[rows]
        out_of_range = self.out_of_range if every else self.out_of_range[rows]
        square_sum = self._square_sum if every else self._square_sum[rows]
        bins = cfg.bins
        cumulative = np.cumsum(counts, axis=1)
        in_range = cumulative[:, -1]
        mean = in_range / bins
        spread = np.sqrt(np.maximum(square_sum / bins - mean**2, 0.0))
        cv = np.where(mean > 0, spread / np.where(mean > 0, mean, 1.0), 0.0)

        # The first bin whose cumulative count reaches each percentile of the row's count. Counts are
        # whole numbers, so "reaches p·total" is "reaches ⌈p·total⌉"; every row is shifted above the
        # previous one's largest value, which makes the flattened cumulative histogram one sorted
        # array that a binary search per row answers.
        total = np.maximum(in_range, 1)
        offset = np.arange(n, dtype=np.int64) * (int(total.max(initial=1)) + 1)
        flat = (cumulative + offset[:, None]).ravel()
        start = np.arange(n, dtype=np.int64) * bins

        def first_bin(percentile: float) -> np.ndarray:
            needed = np.ceil((percentile - COUNT_EPS) * total).astype(np.int64)
            found = np.searchsorted(flat, offset + needed) - start
            return np.where(in_range > 0, np.minimum(found, bins - 1), 0)

        head_bin = first_bin(cfg.head_percentile)
        tail_bin = first_bin(cfg.tail_percentile)
        head_s = head_bin * cfg.bin_s
        tail_s = (tail_bin + 1) * cfg.bin_s

        prewarm = np.zeros(n)
        keep_until = np.full(n, cfg.fallback_keep_alive_s)
        source = np.full(n, FROM_FIXED, dtype=object)

        representative = (samples >= cfg.min_samples) & (in_range > 0) & (cv > cfg.cv_threshold)
        prewarm = np.where(representative, (1.0 - cfg.prewarm_margin) * head_s, prewarm)
        keep_until = np.where(representative, (1.0 + cfg.keep_alive_margin) * tail_s, keep_until)
        source[representative] = FROM_HISTOGRAM

        mostly_far = (out_of_range > 0) & (out_of_range > cfg.oob_fraction * samples)
        for i in np.flatnonzero(mostly_far):
            recent = self.recent_out_of_range_s[rows[i]]
            forecast = float(np.median(recent[~np.isnan(recent)]))
            prewarm[i] = (1.0 - cfg.oob_margin) * forecast
            keep_until[i] = (1.0 + cfg.oob_margin) * forecast
            source[i] = FROM_OUT_OF_RANGE
        return KeepWindows(prewarm_s=prewarm, keep_until_s=keep_until, source=source)

    def decide(self, snapshot: ClusterSnapshot, mu: np.ndarray) -> Decisions:
        f = snapshot.functions
        n = len(f)
        now = snapshot.time_s
        self._grow(n)
        valid = f.valid

        completed = valid & np.isfinite(f.mean_exec_s) & (f.completions > 0)
        self.exec_s = np.where(completed, f.mean_exec_s, self.exec_s)
        held = f.in_flight + f.queued
        arrived = valid & (f.arrivals > 0)
        busy = valid & ((f.arrivals > 0) | (held > 0))

        # One idle time per tick with arrivals: the gap since the previous busy tick, in whole ticks.
        recordable = arrived & np.isfinite(self.last_busy_s) & ~self.gap_unknown
        rows = np.flatnonzero(recordable)
        if rows.size:
            idle = np.maximum(now - self.last_busy_s[rows] - snapshot.tick_s, 0.0)
            self.record_idle_times(rows, idle)
        self.gap_unknown = np.where(busy, False, self.gap_unknown | ~valid)
        self.last_busy_s = np.where(busy, now, self.last_busy_s)

        seen = np.isfinite(self.last_busy_s)
        windows = self.windows(valid & seen & ~(held > 0))  # a busy function is loaded whatever its window
        elapsed = now - self.last_busy_s  # the idle time an arrival in the coming tick would record
        inside = (
            seen & (elapsed >= windows.prewarm_s - COUNT_EPS) & (elapsed <= windows.keep_until_s + COUNT_EPS)
        )
        concurrency = np.maximum(held, np.nan_to_num(f.arrivals / snapshot.tick_s * self.exec_s))
        needed = np.maximum(ceil_count(concurrency), 1)
        loaded = (held > 0) | inside
        containers = np.where(loaded, needed, 0)

        if not self.explain:
            return assemble(valid, containers, np.full(n, KEEP_SHARES), "hybrid-histogram")
        reasons: list[str] = []
        for i in range(n):
            if held[i] > 0:
                text = f"hybrid-histogram: busy, {needed[i]} containers"
            elif not seen[i]:
                text = "hybrid-histogram: never invoked, scaled to zero"
            else:
                state = f"loaded ({needed[i]})" if inside[i] else "unloaded"
                text = (
                    f"hybrid-histogram: idle {elapsed[i]:.0f}s, {windows.source[i]} window "
                    f"[{windows.prewarm_s[i]:.0f}s, {windows.keep_until_s[i]:.0f}s] -> {state}"
                )
            reasons.append(text)
        return assemble(valid, containers, np.full(n, KEEP_SHARES), reasons)


@register("hybrid-histogram")
def make_hybrid_histogram(**params: Any) -> HybridHistogramPolicy:
    """Registry factory: ``params`` are fields of :class:`HybridHistogramConfig`."""
    return HybridHistogramPolicy(config_from_params(HybridHistogramConfig, "hybrid-histogram", params))
