"""Reading a function's completions, latency and cold starts from OpenWhisk activation records.

:class:`ActivationWindow` reads the activations API once per tick and hands every activation out
once; :func:`summarise` turns one function's new activations into latencies, execution times and
cold starts; :func:`fill_activation_columns` writes them into the snapshot's columns. Used by the
``openwhisk`` and ``local`` backends alike (both speak the OpenWhisk REST API).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from controller.clients.openwhisk import OpenWhiskClient, annotation

# --- latency sources ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TickActivations:
    """What one tick's newly seen activations say about one function."""

    latencies_s: np.ndarray
    """End-to-end latency of each, s: waitTime + duration."""
    exec_s: np.ndarray
    """Execution alone of each, s: duration − initTime."""
    cold: int
    """How many were cold starts (carry an ``initTime`` annotation)."""


def record_timing_s(record: Mapping[str, Any]) -> tuple[float, float, float, bool]:
    """(wait, init, duration, cold) of an activation record, s. ``duration`` includes ``init``.

    Raises ``ValueError`` naming the field when one is not a finite number >= 0 (a record the
    platform, or something between, garbled): its function's row is then invalid, not guessed.
    """
    wait = _milliseconds(record, "waitTime", annotation(record, "waitTime", 0)) / 1000.0
    init_raw = annotation(record, "initTime")
    init = _milliseconds(record, "initTime", init_raw) / 1000.0 if init_raw is not None else 0.0
    duration = _milliseconds(record, "duration", record.get("duration", 0)) / 1000.0
    return wait, init, duration, init_raw is not None


def _milliseconds(record: Mapping[str, Any], field: str, raw: Any) -> float:
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(raw, bool) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"activation {record.get('activationId')!r}: {field}={raw!r} is not a time in ms")
    return value


class ActivationWindow:
    """Reads the activations API once per tick and hands each activation out exactly once.

    Each read covers [now − lookback, now] (by activation start) and keeps only ids not seen before,
    so an activation that started in an earlier tick but was stored late is still counted, once.
    Ids older than the look-back are forgotten (memory stays bounded by the activations of one
    look-back).
    """

    def __init__(self, client: OpenWhiskClient, epoch_origin_ms: float, lookback_s: float = 120.0) -> None:
        self.client = client
        """Client of the platform's API."""
        self.epoch_origin_ms = float(epoch_origin_ms)
        """Platform time (ms since the epoch) of run time 0: activation times are epoch ms."""
        self.lookback_s = float(lookback_s)
        """How far back each read reaches, s: longer than the longest activation plus the store's lag.
        120 s covers OpenWhisk's default 60-s action time limit twice."""
        self._seen: dict[str, int] = {}
        self.unusable = 0
        """Records of the last read left out because they had no activation id or action name."""

    def read(self, now: float) -> dict[str, list[dict[str, Any]]]:
        """New activations by action name; raises OpenWhiskError when the window cannot be read.

        Records the window cannot use (no id, no action name) are left out and counted in
        :attr:`unusable` for this read, so the backend can say so.
        """
        upto = int(self.epoch_origin_ms + now * 1000.0)
        # Activations before the run's time 0 are not the run's.
        since = int(max(upto - self.lookback_s * 1000.0, self.epoch_origin_ms))
        records = self.client.iter_activations(since_ms=since, upto_ms=upto)
        fresh: dict[str, list[dict[str, Any]]] = {}
        unusable = 0
        for record in records:
            activation_id = record.get("activationId")
            name = record.get("name")
            if not isinstance(activation_id, str) or not isinstance(name, str):
                unusable += 1
                continue
            if activation_id in self._seen:
                continue
            start = record.get("start")
            self._seen[activation_id] = int(start) if isinstance(start, (int, float)) and math.isfinite(start) else upto
            fresh.setdefault(name, []).append(record)
        self._seen = {k: start for k, start in self._seen.items() if start >= since}
        for group in fresh.values():
            group.sort(key=_end_or_start)
        self.unusable = unusable
        return fresh


def _end_or_start(record: Mapping[str, Any]) -> float:
    value = record.get("end") or record.get("start") or 0
    return float(value) if isinstance(value, (int, float)) else 0.0


def summarise(records: Sequence[Mapping[str, Any]]) -> TickActivations:
    """Latencies, execution times and cold starts of one function's activations of a tick.

    Raises ``ValueError`` (naming the record and field) when a record's times are not usable."""
    timings = [record_timing_s(r) for r in records]
    latencies = np.array([wait + duration for wait, _, duration, _ in timings], dtype=float)
    exec_s = np.array([max(duration - init, 0.0) for _, init, duration, _ in timings], dtype=float)
    return TickActivations(latencies, exec_s, sum(1 for *_, cold in timings if cold))


def fill_activation_columns(
    cols: Mapping[str, np.ndarray], i: int, tick: TickActivations, slo_s: float, recent: deque[float]
) -> None:
    """Write row ``i`` of the activation-derived snapshot columns from one function's tick.

    Sets ``completions``, ``cold_starts`` and ``slo_violations`` (latency above ``slo_s``, s) always;
    ``p50_latency_s``, ``p99_latency_s`` and ``mean_exec_s`` only when something completed (no
    activations is "no data", so they stay NaN). ``recent`` is the function's own window of the last
    execution times (a ``deque`` with ``maxlen``): it is extended here, and ``recent_exec_s`` is its mean
    once it is full, so one or two early samples are not taken for the function's typical run time.
    """
    done = float(tick.latencies_s.size)
    cols["completions"][i] = done
    cols["cold_starts"][i] = tick.cold
    cols["slo_violations"][i] = float(np.sum(tick.latencies_s > slo_s))
    if done:
        cols["p50_latency_s"][i] = float(np.percentile(tick.latencies_s, 50))
        cols["p99_latency_s"][i] = float(np.percentile(tick.latencies_s, 99))
        cols["mean_exec_s"][i] = float(tick.exec_s.mean())
        recent.extend(tick.exec_s.tolist())
    if len(recent) == recent.maxlen:
        cols["recent_exec_s"][i] = float(np.mean(recent))


__all__ = ["ActivationWindow", "TickActivations", "fill_activation_columns", "record_timing_s", "summarise"]
