"""Open-loop replay of a trace's arrivals against an OpenWhisk API, recording every activation.

Open loop: each invocation is sent when the trace says (arrival time / speed-up), whether or not
earlier ones have come back, so a slow platform sees the load the trace describes and its slowness
shows in the latency, not in a thinner load. Sending is bounded: at most ``concurrency`` invocations
are outstanding (each is a blocking call on a worker thread); arrivals that find every worker busy
wait in a backlog of at most ``max_backlog``, and an arrival that finds the backlog full is recorded
as ``dropped`` (the client, not the platform, could not keep up; ``sent_s − scheduled_s / speedup``
of the others shows how late the client was).

The platform is reached through an :class:`Invoker` (the controller adapts its OpenWhisk client to
it), so this module needs no HTTP code. Time is injected: ``clock`` (monotonic seconds) and
``sleep``; a test passes a virtual clock and runs a replay at any speed-up without waiting.

Stopping (Ctrl-C or :meth:`Replayer.stop`): nothing more is sent; the invocations already sent are
awaited for at most ``drain_timeout_s``; the ones still waiting in the backlog are cancelled (never
sent, not recorded). Every row written so far is on disk (:class:`workload.records.RecordWriter`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

from workload.records import (
    DROPPED,
    ERROR,
    ActivationRecord,
    RecordWriter,
    from_activation,
    without_activation,
)


@dataclass(frozen=True)
class InvokeResult:
    """What the platform answered to one blocking invocation."""

    http_status: int
    """HTTP status; 0 when no answer came."""
    activation: Mapping[str, Any] | None = None
    """The activation record, when the answer carried one (200, 502, some 500s)."""
    status: str = ""
    """Outcome when there is no record (``throttled``, ``timeout``, ``accepted``, ...)."""
    activation_id: str = ""
    """Activation id when known without a record (a 202)."""
    error: str = ""
    """What went wrong, if anything."""


class Invoker(Protocol):
    """One platform: a blocking invocation of an action by name, which never raises."""

    def invoke(self, function: str) -> InvokeResult: ...


@dataclass(frozen=True)
class ReplayConfig:
    """How a replay paces and bounds its invocations."""

    speedup: float = 1.0
    """Trace seconds per replay second: 60 replays a trace hour in a minute."""
    concurrency: int = 64
    """Invocations outstanding at once (worker threads): more than the platform's concurrency
    limit would only measure its throttling."""
    max_backlog: int = 10_000
    """Arrivals that may wait for a free worker before new ones are dropped."""
    drain_timeout_s: float = 30.0
    """After a stop, how long to wait for invocations already sent, s."""
    poll_s: float = 0.1
    """Longest single wait of the pacing loop, s: how quickly a stop is noticed."""

    def __post_init__(self) -> None:
        if not self.speedup > 0:
            raise ValueError(f"speedup must be > 0, got {self.speedup}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_backlog < 0:
            raise ValueError(f"max_backlog must be >= 0, got {self.max_backlog}")


@dataclass(frozen=True)
class ReplayResult:
    """How a replay went."""

    scheduled: int
    """Arrivals the replay reached (sent, dropped or cancelled)."""
    sent: int
    """Invocations sent."""
    recorded: int
    """Rows written (sent and finished, plus dropped)."""
    dropped: int
    """Arrivals dropped because the backlog was full."""
    cancelled: int
    """Arrivals in the backlog when the replay stopped: never sent."""
    unfinished: int
    """Invocations still outstanding when the drain timed out (their rows may be lost)."""
    stopped: bool
    """Whether the replay was stopped before the end of its arrivals."""
    elapsed_s: float
    """Replay time from the first scheduled instant to the end of the drain, s (replayer clock)."""


def arrivals_of(stream: Any, end_s: float | None = None, window_s: float = 60.0) -> Iterator[tuple[float, int]]:
    """(time s, function index) of every arrival of an ``ArrivalStream``, in order, minute by minute."""
    end = stream.duration_s if end_s is None else min(end_s, stream.duration_s)
    start = 0.0
    while start < end:
        times, fn = stream.window(start, min(start + window_s, end))
        yield from zip(times.tolist(), fn.tolist())
        start += window_s


class Replayer:
    """Sends the arrivals of a trace to an :class:`Invoker` and records each answer."""

    def __init__(
        self,
        invoker: Invoker,
        names: Sequence[str],
        writer: RecordWriter,
        config: ReplayConfig = ReplayConfig(),
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.invoker = invoker
        self.names = tuple(names)
        """Action name of each function index of the arrivals."""
        self.writer = writer
        self.config = config
        self._clock = clock
        self._sleep = sleep
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._outstanding = 0
        self._t0 = 0.0

    def stop(self) -> None:
        """Stop sending (thread-safe); :meth:`run` then drains and returns."""
        self._stop.set()

    def _now(self) -> float:
        return self._clock() - self._t0

    def _call(self, function: str, scheduled_s: float) -> None:
        sent = self._now()
        try:
            result = self.invoker.invoke(function)
        except Exception as error:  # noqa: BLE001 - an Invoker must not raise; if it does, keep the row
            result = InvokeResult(0, status=ERROR, error=f"{type(error).__name__}: {error}")
        received = self._now()
        self.writer.write(self._row(function, scheduled_s, sent, received, result))
        with self._lock:
            self._outstanding -= 1

    @staticmethod
    def _row(function: str, scheduled_s: float, sent: float, received: float, result: InvokeResult) -> ActivationRecord:
        if result.activation is not None:
            return from_activation(function, scheduled_s, sent, received, result.http_status, result.activation, result.error)
        return without_activation(
            function, scheduled_s, sent, received, result.status or ERROR, result.http_status, result.error,
            result.activation_id,
        )

    def run(self, arrivals: Iterable[tuple[float, int]]) -> ReplayResult:
        """Replay ``arrivals`` ((trace time s, function index), ascending); returns when done or stopped.

        A KeyboardInterrupt while sending stops the replay like :meth:`stop` (the rows are kept).
        """
        cfg = self.config
        futures: list[Future[None]] = []
        scheduled = dropped = 0
        pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="replay")
        self._t0 = self._clock()
        try:
            for t_s, fn in arrivals:
                if self._stop.is_set():
                    break
                due = t_s / cfg.speedup
                while not self._stop.is_set():
                    left = due - self._now()
                    if left <= 0:
                        break
                    self._sleep(min(left, cfg.poll_s))
                if self._stop.is_set():
                    break
                scheduled += 1
                function = self.names[fn]
                with self._lock:
                    # Outstanding = running (at most ``concurrency``) + waiting for a worker.
                    full = self._outstanding >= cfg.concurrency + cfg.max_backlog
                    if not full:
                        self._outstanding += 1
                if full:
                    dropped += 1
                    now = self._now()
                    self.writer.write(without_activation(function, t_s, now, now, DROPPED, 0, "backlog full"))
                    continue
                futures.append(pool.submit(self._call, function, t_s))
                if len(futures) > 4 * cfg.concurrency:
                    futures = [f for f in futures if not f.done()]
        except KeyboardInterrupt:
            self._stop.set()
        pending = {f for f in futures if not f.done()}
        try:
            # All sent: wait for the answers, noticing a stop (or Ctrl-C) while waiting.
            while pending and not self._stop.is_set():
                _, pending = wait(pending, timeout=cfg.poll_s)
        except KeyboardInterrupt:
            self._stop.set()
        stopped = self._stop.is_set()
        cancelled = sum(f.cancel() for f in pending) if stopped else 0
        _, not_done = wait([f for f in pending if not f.cancelled()], timeout=cfg.drain_timeout_s)
        pool.shutdown(wait=False, cancel_futures=True)
        sent = scheduled - dropped - cancelled
        return ReplayResult(
            scheduled=scheduled,
            sent=sent,
            recorded=self.writer.written,
            dropped=dropped,
            cancelled=cancelled,
            unfinished=len(not_done),
            stopped=stopped,
            elapsed_s=self._now(),
        )


__all__ = ["InvokeResult", "Invoker", "ReplayConfig", "ReplayResult", "Replayer", "arrivals_of"]
