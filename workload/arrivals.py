"""Arrival streams: invocation times generated from per-minute counts, or replayed from a 2021 trace.

``ArrivalStream`` turns per-minute counts (the 2019 trace's only arrival information) into arrival
times, lazily, one minute at a time. Each minute's arrivals come from a child random generator keyed
by (seed, minute label), so the stream is the same however a caller slices it into windows, and the
same minute of the trace gets the same arrivals whatever the stream's start minute.

Modes:

* ``poisson``: the minute's count is kept exactly and the times are independent and uniform within
  the minute: a Poisson process conditioned on its count (the standard replay of a per-minute trace,
  as In-Vitro does);
* ``equidistant``: a function's c arrivals in a minute are spaced 60/c s apart, with a random phase
  per function and minute so that functions with equal counts do not fire in lockstep.

Times are seconds relative to the start of the stream's first minute. A window is half-open,
[t0, t1): an arrival at exactly t1 belongs to the next window.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from workload.azure2021 import InvocationTrace2021

SECONDS_PER_MINUTE = 60.0
"""Length of one trace minute, s."""

Mode = Literal["poisson", "equidistant", "bursty"]
MODES: tuple[str, ...] = ("poisson", "equidistant", "bursty")


class MinuteCounts(Protocol):
    """Anything carrying one function's per-minute counts (``sampler.WorkloadFunction`` does)."""

    counts_per_minute: np.ndarray
    first_minute: int


@dataclass(frozen=True, eq=False)
class ArrivalWindow:
    """The arrivals of one window [start_s, end_s)."""

    start_s: float
    """Window start, s from the stream start (inclusive)."""
    end_s: float
    """Window end, s from the stream start (exclusive)."""
    times_s: np.ndarray
    """Arrival times, float64 s from the stream start, ascending."""
    fn: np.ndarray
    """Function index of each arrival, int32."""


class Arrivals(Protocol):
    """What the simulator consumes: windows of arrivals and the totals."""

    @property
    def n_functions(self) -> int: ...

    @property
    def duration_s(self) -> float: ...

    def window(self, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]: ...

    def total_invocations(self) -> int: ...


def iter_windows(
    stream: Arrivals, length_s: float, start_s: float = 0.0, end_s: float | None = None
) -> Iterator[ArrivalWindow]:
    """Consecutive windows of ``length_s`` from ``start_s`` to ``end_s`` (default: the stream's end).

    Window k starts at ``start_s + k * length_s`` (computed, not accumulated, so there is no drift);
    the last window is cut at ``end_s``.
    """
    if not length_s > 0:
        raise ValueError(f"window length must be > 0 s, got {length_s}")
    stop = stream.duration_s if end_s is None else end_s
    k = 0
    while True:
        t0 = start_s + k * length_s
        if t0 >= stop:
            return
        t1 = min(t0 + length_s, stop)
        times, fn = stream.window(t0, t1)
        yield ArrivalWindow(start_s=t0, end_s=t1, times_s=times, fn=fn)
        k += 1


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int32)


def _minute_seed(seed: int, minute_label: int) -> np.random.SeedSequence:
    """The child seed of one trace minute (labels may be negative for a 2021 trace's counts)."""
    return np.random.SeedSequence(seed, spawn_key=(int(minute_label < 0), abs(int(minute_label))))


def _scale_seed(seed: int, minute_label: int) -> np.random.SeedSequence:
    """The child seed of one trace minute's count scaling: a spawn key apart from the arrival times'
    (``_minute_seed``), so scaling a workload never changes where a minute's arrivals fall."""
    return np.random.SeedSequence(seed, spawn_key=(2 + int(minute_label < 0), abs(int(minute_label))))


MAX_MINUTE_COUNT = int(np.iinfo(np.int32).max)
"""Largest invocation count of one function in one minute (2^31 − 1, about 36 million a second):
counts are stored as int32 (the readers refuse larger ones in a trace file), and no simulation or
replay comes near it."""


class CountOverflow(ValueError):
    """A per-minute count that a rate scale makes larger than :data:`MAX_MINUTE_COUNT`."""

    def __init__(self, row: int, minute: int, count: int, factor: float, function: str = "") -> None:
        self.row = row
        """Row of the count matrix (the function's index in the workload)."""
        self.minute = minute
        """Trace minute of the count."""
        self.count = count
        """The count before scaling."""
        self.factor = factor
        """The rate scale."""
        self.function = function
        """Name of the function, when the caller gave the names."""
        who = f"function {function}" if function else f"function #{row}"
        super().__init__(
            f"{who}, trace minute {minute}: {count} invocations x rate scale {factor:g} = "
            f"{count * factor:.4g}, more than {MAX_MINUTE_COUNT} in one minute"
        )


def scale_minute_counts(
    counts: np.ndarray, first_minute: int, factor: float, seed: int, names: Sequence[str] | None = None
) -> np.ndarray:
    """Per-minute counts (functions, minutes) multiplied by ``factor`` and rounded stochastically.

    A load knob: ``c * factor`` becomes ``floor(c * factor)`` plus one with probability equal to
    its fractional part, so the expected count is exactly ``c * factor`` (rounding to nearest would
    erase a rare function's single calls at factors below 0.5). The uniforms of trace minute ``m``
    come from a generator keyed by (seed, m) alone, so a minute scales to the same counts whatever
    window of the trace a caller slices. ``factor`` 1 returns the counts unchanged.

    Raises :class:`CountOverflow` (naming the function, by ``names[row]`` when given, and the trace
    minute) when a scaled count would exceed :data:`MAX_MINUTE_COUNT`, the int32 the counts are
    kept in: a silent wrap-around would replay a wrong, possibly negative, load.
    """
    matrix = np.asarray(counts, dtype=np.int64)
    if matrix.ndim != 2:
        raise ValueError(f"counts must be a (functions, minutes) matrix, got shape {matrix.shape}")
    if not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"rate scale factor must be a finite number > 0, got {factor}")
    if factor == 1.0:
        scaled_counts = matrix.copy()
    else:
        scaled = matrix * float(factor)
        whole = np.floor(scaled)
        fraction = scaled - whole
        uniforms = np.empty_like(scaled)
        for column in range(matrix.shape[1]):
            rng = np.random.default_rng(_scale_seed(seed, first_minute + column))
            uniforms[:, column] = rng.random(matrix.shape[0])
        scaled_counts = (whole + (uniforms < fraction)).astype(np.int64)
    if scaled_counts.size and scaled_counts.max() > MAX_MINUTE_COUNT:
        row, column = (int(i) for i in np.unravel_index(int(np.argmax(scaled_counts)), scaled_counts.shape))
        raise CountOverflow(row, first_minute + column, int(matrix[row, column]), float(factor),
                            names[row] if names is not None and row < len(names) else "")
    return scaled_counts


class ArrivalStream:
    """Arrival times generated from per-minute counts, minute by minute, on demand.

    ``functions`` carry per-minute counts (``counts_per_minute`` starting at trace minute
    ``first_minute``); the stream covers trace minutes [start_minute, end_minute) and its time 0 is the
    start of ``start_minute``. Function index i in the output is ``functions[i]``.
    """

    def __init__(
        self,
        functions: Sequence[MinuteCounts],
        start_minute: int | None = None,
        end_minute: int | None = None,
        mode: Mode = "poisson",
        seed: int = 0,
        cache_minutes: int = 8,
        burst_count: int = 4,
        burst_width_s: float = 1.0,
    ) -> None:
        if not functions:
            raise ValueError("an arrival stream needs at least one function")
        first = max(int(f.first_minute) for f in functions)
        last = min(int(f.first_minute) + len(f.counts_per_minute) for f in functions)
        start = first if start_minute is None else int(start_minute)
        end = last if end_minute is None else int(end_minute)
        if not (first <= start < end <= last):
            raise ValueError(
                f"minutes [{start_minute}, {end_minute}) must lie within the minutes all functions "
                f"cover, [{first}, {last}), and be non-empty"
            )
        rows = [
            np.asarray(f.counts_per_minute[start - f.first_minute : end - f.first_minute], dtype=np.int64)
            for f in functions
        ]
        self._setup(np.stack(rows), start, mode, seed, cache_minutes, burst_count, burst_width_s)

    @classmethod
    def from_counts(
        cls,
        counts: np.ndarray,
        first_minute: int = 0,
        mode: Mode = "poisson",
        seed: int = 0,
        cache_minutes: int = 8,
    ) -> ArrivalStream:
        """A stream over a whole (functions, minutes) count matrix whose column 0 is ``first_minute``."""
        matrix = np.asarray(counts)
        if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
            raise ValueError(
                f"counts must be a non-empty (functions, minutes) matrix, got shape {matrix.shape}"
            )
        stream = cls.__new__(cls)
        stream._setup(matrix.astype(np.int64), int(first_minute), mode, seed, cache_minutes)
        return stream

    def _setup(self, counts: np.ndarray, start_minute: int, mode: str, seed: int, cache_minutes: int,
               burst_count: int = 4, burst_width_s: float = 1.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not (isinstance(burst_count, int) and burst_count >= 1):
            raise ValueError(f"burst_count must be an int >= 1, got {burst_count!r}")
        if not 0 < burst_width_s <= SECONDS_PER_MINUTE:
            raise ValueError(f"burst_width_s must be in (0, {SECONDS_PER_MINUTE}], got {burst_width_s!r}")
        self.burst_count = burst_count
        """``bursty`` mode: bursts per function and minute (fewer when the minute has fewer arrivals)."""
        self.burst_width_s = float(burst_width_s)
        """``bursty`` mode: length of one burst, s; its arrivals are spread uniformly over it."""
        if counts.min() < 0:
            raise ValueError("per-minute counts must be >= 0")
        if cache_minutes < 1:
            raise ValueError(f"cache_minutes must be >= 1, got {cache_minutes}")
        # Minute-major copy: generating a minute reads one contiguous row.
        self._by_minute = np.ascontiguousarray(counts.T)
        self._fn_ids = np.arange(counts.shape[0], dtype=np.int32)
        self.start_minute = start_minute
        self.end_minute = start_minute + counts.shape[1]
        self.mode = mode
        self.seed = int(seed)
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_minutes = cache_minutes
        self.minutes_generated = 0
        """How many minutes have been generated (a minute re-generated after eviction counts again)."""

    @property
    def n_functions(self) -> int:
        """Functions in the stream."""
        return int(self._by_minute.shape[1])

    @property
    def n_minutes(self) -> int:
        """Minutes in the stream."""
        return int(self._by_minute.shape[0])

    @property
    def duration_s(self) -> float:
        """Length of the stream, s."""
        return self.n_minutes * SECONDS_PER_MINUTE

    def total_invocations(self) -> int:
        """All arrivals of the stream (the sum of the counts, in both modes)."""
        return int(self._by_minute.sum())

    def counts_in_minute(self, index: int) -> np.ndarray:
        """The count of each function in minute ``index`` of the stream (0-based)."""
        return self._by_minute[index].copy()

    def minute(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """All arrivals of minute ``index`` (0-based from the stream start): (times_s, fn), sorted."""
        if not 0 <= index < self.n_minutes:
            raise IndexError(f"minute {index} is outside the stream's 0..{self.n_minutes - 1}")
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        generated = self._generate(index)
        self._cache[index] = generated
        if len(self._cache) > self._cache_minutes:
            self._cache.popitem(last=False)
        self.minutes_generated += 1
        return generated

    def _generate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        counts = self._by_minute[index]
        total = int(counts.sum())
        if total == 0:
            return _empty()
        rng = np.random.default_rng(_minute_seed(self.seed, self.start_minute + index))
        fn = np.repeat(self._fn_ids, counts)
        if self.mode == "poisson":
            fraction = rng.random(total)
        elif self.mode == "bursty":
            fraction = self._burst_fractions(counts, fn, rng)
        else:
            active = counts > 0
            phase = np.zeros(counts.size)
            phase[active] = rng.random(int(active.sum()))
            # Position j of each arrival within its function's run of c arrivals.
            run_start = np.repeat(np.cumsum(counts) - counts, counts)
            j = np.arange(total) - run_start
            fraction = (j + phase[fn]) / counts[fn]
        minute_start = index * SECONDS_PER_MINUTE
        times = minute_start + fraction * SECONDS_PER_MINUTE
        # Rounding may not push an arrival into the next minute: each minute owns [start, start + 60).
        np.minimum(times, np.nextafter(minute_start + SECONDS_PER_MINUTE, 0.0), out=times)
        order = np.argsort(times, kind="stable")
        return times[order], fn[order]

    def _burst_fractions(self, counts: np.ndarray, fn: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Where in the minute each arrival falls in ``bursty`` mode: every function's count goes out in
        ``min(burst_count, count)`` bursts, each starting at a uniform time of the minute and lasting
        ``burst_width_s``; every arrival joins one of its function's bursts at random (the count is
        kept; the arrivals bunch, as a trace's per-minute counts cannot show)."""
        bursts = np.minimum(counts, self.burst_count)
        width = self.burst_width_s / SECONDS_PER_MINUTE
        starts = rng.random(int(bursts.sum())) * (1.0 - width)
        first = np.cumsum(bursts) - bursts  # index of each function's first burst in ``starts``
        which = first[fn] + np.floor(rng.random(fn.size) * bursts[fn]).astype(np.int64)
        return starts[which] + rng.random(fn.size) * width

    def window(self, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Arrivals with t0_s <= time < t1_s (s from the stream start): (times float64 sorted, fn int32)."""
        if t1_s < t0_s:
            raise ValueError(f"window end {t1_s} is before its start {t0_s}")
        lo_s = max(float(t0_s), 0.0)
        hi_s = min(float(t1_s), self.duration_s)
        if hi_s <= lo_s:
            return _empty()
        first = int(lo_s // SECONDS_PER_MINUTE)
        last = min(int(np.ceil(hi_s / SECONDS_PER_MINUTE)), self.n_minutes)
        pieces = [self.minute(index) for index in range(first, last)]
        times = np.concatenate([piece[0] for piece in pieces])
        fn = np.concatenate([piece[1] for piece in pieces])
        lo = int(np.searchsorted(times, lo_s, side="left"))
        hi = int(np.searchsorted(times, hi_s, side="left"))
        return times[lo:hi], fn[lo:hi]

    def windows(
        self, length_s: float, start_s: float = 0.0, end_s: float | None = None
    ) -> Iterator[ArrivalWindow]:
        """Consecutive windows of ``length_s`` (see ``iter_windows``)."""
        return iter_windows(self, length_s, start_s, end_s)


class TraceArrivalStream:
    """The recorded arrivals of a 2021 per-invocation trace, with the same window interface.

    Time 0 is ``origin_s`` of the trace clock; arrivals before it or at/after ``origin_s +
    duration_s`` are left out. Function index i is ``trace.functions[i]``, or, with ``functions``
    (trace function indices), ``functions[i]``: only those functions' arrivals are kept.
    """

    def __init__(self, trace: InvocationTrace2021, origin_s: float = 0.0, end_s: float | None = None,
                 functions: Sequence[int] | None = None) -> None:
        starts = trace.start_s
        if end_s is None:
            # Default end: the end of the trace minute holding the last arrival.
            last = float(starts[-1]) if starts.size else origin_s
            end_s = origin_s + (np.floor((last - origin_s) / SECONDS_PER_MINUTE) + 1) * SECONDS_PER_MINUTE
        if not end_s > origin_s:
            raise ValueError(f"end_s ({end_s}) must be after origin_s ({origin_s})")
        lo = int(np.searchsorted(starts, origin_s, side="left"))
        hi = int(np.searchsorted(starts, end_s, side="left"))
        self._times = starts[lo:hi] - origin_s
        self._fn = trace.fn[lo:hi]
        self._durations = trace.duration_s[lo:hi]
        self._n_functions = len(trace.functions)
        if functions is not None:
            renumber = np.full(len(trace.functions), -1, dtype=np.int64)
            renumber[np.asarray(functions, dtype=np.int64)] = np.arange(len(functions))
            keep = renumber[self._fn] >= 0
            self._times, self._durations = self._times[keep], self._durations[keep]
            self._fn = renumber[self._fn[keep]].astype(np.int32)
            self._n_functions = len(functions)
        self.origin_s = float(origin_s)
        self._duration_s = float(end_s - origin_s)

    @property
    def n_functions(self) -> int:
        """Functions of the trace (some may have no arrival in the stream's span)."""
        return self._n_functions

    @property
    def duration_s(self) -> float:
        """Length of the stream, s."""
        return self._duration_s

    def total_invocations(self) -> int:
        """Arrivals within the stream's span."""
        return int(self._times.size)

    def _span(self, t0_s: float, t1_s: float) -> slice:
        if t1_s < t0_s:
            raise ValueError(f"window end {t1_s} is before its start {t0_s}")
        lo = int(np.searchsorted(self._times, t0_s, side="left"))
        hi = int(np.searchsorted(self._times, t1_s, side="left"))
        return slice(lo, hi)

    def window(self, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Arrivals with t0_s <= time < t1_s: (times float64 sorted, fn int32)."""
        span = self._span(t0_s, t1_s)
        return self._times[span], self._fn[span]

    def window_durations(self, t0_s: float, t1_s: float) -> np.ndarray:
        """The recorded durations (s) of the arrivals ``window(t0_s, t1_s)`` returns, in the same order."""
        return self._durations[self._span(t0_s, t1_s)]

    def windows(
        self, length_s: float, start_s: float = 0.0, end_s: float | None = None
    ) -> Iterator[ArrivalWindow]:
        """Consecutive windows of ``length_s`` (see ``iter_windows``)."""
        return iter_windows(self, length_s, start_s, end_s)


class RepeatingArrivals:
    """An arrival stream replayed end to end forever (a daemon runs longer than any trace window).

    Cycle ``k`` is the inner stream shifted by ``k`` times its duration, so a window that spans
    the seam gets the end of one cycle and the start of the next.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        """A stream with ``duration_s`` and ``window(t0_s, t1_s)`` (e.g. :class:`ArrivalStream`)."""
        self.period_s = float(inner.duration_s)
        """Length of one cycle, s."""
        if not self.period_s > 0:
            raise ValueError(f"a repeating stream needs a positive duration, got {self.period_s} s")

    def window(self, t0_s: float, t1_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Arrivals with ``t0_s <= time < t1_s``, s from the start of the first cycle."""
        times, fns = [], []
        cycle = max(0, math.floor(t0_s / self.period_s))
        while cycle * self.period_s < t1_s:
            offset = cycle * self.period_s
            t, f = self.inner.window(max(t0_s - offset, 0.0), min(t1_s - offset, self.period_s))
            times.append(t + offset)
            fns.append(f)
            cycle += 1
        if not times:
            return _empty()
        return np.concatenate(times), np.concatenate(fns)
