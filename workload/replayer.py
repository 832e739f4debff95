"""Open-loop replay of a trace's arrivals against an OpenWhisk API: every arrival recorded exactly once.

Open loop: each invocation is sent when the trace says (arrival time / speed-up), whether or not
earlier ones have come back, so a slow platform sees the load the trace describes and its slowness
shows in the latency, not in a thinner load. Sending is bounded: at most ``concurrency`` invocations
are outstanding (each is a blocking call on a worker thread); arrivals that find every worker busy
wait in a backlog of at most ``max_backlog``, and an arrival that finds the backlog full is recorded
as ``dropped`` (the client, not the platform, could not keep up; ``sent_s − scheduled_s / speedup``
of the others shows how late the client was).

Exactly once: every arrival the replay reaches gets one row, whatever happens to it — answered,
refused, lost, dropped, cancelled by a stop, or still unanswered when the drain runs out. The row
of an invocation is claimed once, by whichever comes first: its answer, or the drain's deadline
(``unfinished``); an answer that comes after its row was written is counted (``late``), never
written. Each arrival is sent at most once: the replayer never repeats a call (see the
:class:`Invoker` contract), so the platform runs at most as many activations as there are rows.
A worker's slot is given back whatever the invoker or the writer did.

The platform is reached through an :class:`Invoker` (the controller adapts its OpenWhisk client to
it), so this module needs no HTTP code. Time is injected: ``clock`` (monotonic seconds) and
``sleep``; a test passes a virtual clock and runs a replay at any speed-up without waiting.

Stopping (Ctrl-C or :meth:`Replayer.stop`): nothing more is sent; the arrivals waiting in the
backlog are recorded as ``cancelled``; the invocations already sent are awaited for at most
``drain_timeout_s`` (a second stop ends the wait at once), and those still unanswered then are
recorded as ``unfinished``. The workers are daemon threads, so a call that never returns does not
hold the process open after :meth:`Replayer.run` returned. Every row written so far is on disk
(:class:`workload.records.RecordWriter`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from workload.records import (
    CANCELLED,
    DROPPED,
    ERROR,
    MALFORMED,
    OUTCOME_OF,
    UNFINISHED,
    ActivationRecord,
    RecordWriter,
    from_activation,
    without_activation,
)


@dataclass(frozen=True)
class InvokeResult:
    """What became of one blocking invocation, as far as the client can tell."""

    http_status: int
    """HTTP status; 0 when no answer came."""
    activation: Mapping[str, Any] | None = None
    """The activation record, when the answer carried one (200, 502, some 5xx): the row's status
    then comes from its ``statusCode``."""
    status: str = ""
    """Status of the row when there is no record (one of ``workload.records.STATUSES``)."""
    activation_id: str = ""
    """Activation id when known without a record (a 202)."""
    error: str = ""
    """What went wrong, if anything."""


class Invoker(Protocol):
    """One platform: a blocking invocation of an action by name.

    Contract: ``invoke`` sends the request at most once (no retries: a repeat is an arrival the
    trace does not have, and one that may have run would run twice) and never raises; it says
    what it knows in the result's status (``workload.records.OUTCOME_OF`` tells which statuses
    mean ran, not run and unknown)."""

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
    """After a stop, how long to wait for invocations already sent, s; then they are recorded as
    ``unfinished``."""
    poll_s: float = 0.1
    """Longest single wait of the pacing and drain loops, s: how quickly a stop is noticed."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speedup) and self.speedup > 0):
            raise ValueError(f"speedup must be a finite number > 0, got {self.speedup}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_backlog < 0:
            raise ValueError(f"max_backlog must be >= 0, got {self.max_backlog}")
        if not (math.isfinite(self.drain_timeout_s) and self.drain_timeout_s >= 0):
            raise ValueError(f"drain_timeout_s must be a finite number >= 0, got {self.drain_timeout_s}")
        if not (math.isfinite(self.poll_s) and self.poll_s > 0):
            raise ValueError(f"poll_s must be a finite number > 0, got {self.poll_s}")


@dataclass(frozen=True)
class ReplayResult:
    """How a replay went. ``recorded == scheduled`` unless writing a row failed."""

    scheduled: int
    """Arrivals the replay reached (each is sent, dropped or cancelled)."""
    sent: int
    """Invocations handed to the invoker."""
    recorded: int
    """Rows written."""
    dropped: int
    """Arrivals not sent because the backlog was full."""
    cancelled: int
    """Arrivals waiting in the backlog when the replay stopped: never sent."""
    unfinished: int
    """Invocations still unanswered when the drain ran out: recorded as ``unfinished``."""
    late: int
    """Answers that came after their row was written as ``unfinished`` by the time :meth:`Replayer.run`
    returned (not written: each arrival has one row)."""
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


class _Arrival:
    """One arrival between admission and its row."""

    __slots__ = ("function", "recorded", "scheduled_s", "sent_s")

    def __init__(self, function: str, scheduled_s: float) -> None:
        self.function = function
        """Action name."""
        self.scheduled_s = scheduled_s
        """Arrival time in the trace, s."""
        self.sent_s = math.nan
        """When a worker took it, s of replay time; NaN while it waits."""
        self.recorded = False
        """Whether its row is written (or being written): set once, under the replayer's lock."""


class Replayer:
    """Sends the arrivals of a trace to an :class:`Invoker` and records each one exactly once."""

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
        """The platform the calls go to."""
        self.names = tuple(names)
        """Action name of each function index of the arrivals."""
        self.writer = writer
        """Where every arrival's row goes."""
        self.config = config
        """Pacing and bounds of the replay."""
        self._clock = clock
        self._sleep = sleep
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._lock = threading.Condition()
        self._backlog: deque[_Arrival] = deque()
        self._in_flight: set[_Arrival] = set()
        self._writing: set[_Arrival] = set()
        self._closing = False
        self._late = 0
        self._write_failure: BaseException | None = None
        self._workers: list[threading.Thread] = []
        self._t0 = 0.0

    @property
    def late(self) -> int:
        """Answers that came after their row was written as ``unfinished`` (so far; not written)."""
        with self._lock:
            return self._late

    def join(self, timeout_s: float) -> bool:
        """Wait for the workers of a finished :meth:`run` to end, up to ``timeout_s`` (real time) for
        each: a worker still in a call after the drain ends when that call returns. True if all ended."""
        for worker in self._workers:
            worker.join(timeout_s)
        return not any(worker.is_alive() for worker in self._workers)

    def stop(self) -> None:
        """Stop sending (thread-safe); :meth:`run` then drains and returns. A second call ends the
        drain at once."""
        if self._stop.is_set():
            self._abort.set()
        self._halt()

    def _halt(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()

    def _now(self) -> float:
        return self._clock() - self._t0

    # --- rows -----------------------------------------------------------------------------------

    def _claim(self, arrival: _Arrival, by_worker: bool = False) -> bool:
        """Whether the caller may write ``arrival``'s row (true once per arrival). A worker's claim
        holds ``arrival`` in ``_writing`` until :meth:`_written`, so the drain can wait for its row."""
        with self._lock:
            if arrival.recorded:
                return False
            arrival.recorded = True
            if by_worker:
                self._writing.add(arrival)
            return True

    def _written(self, arrival: _Arrival) -> None:
        with self._lock:
            self._writing.discard(arrival)
            self._lock.notify_all()

    def _write(self, record: ActivationRecord) -> None:
        try:
            self.writer.write(record)
        except Exception as error:  # noqa: BLE001 - a row that cannot be written ends the replay
            with self._lock:
                if self._write_failure is None:
                    self._write_failure = error
            self._halt()

    def _unsent(self, arrival: _Arrival, status: str, why: str) -> None:
        if self._claim(arrival):
            self._write(without_activation(arrival.function, arrival.scheduled_s, math.nan, math.nan, status, 0, why))

    @staticmethod
    def _row(arrival: _Arrival, received: float, result: InvokeResult) -> ActivationRecord:
        sent = arrival.sent_s
        if result.activation is not None:
            try:
                return from_activation(arrival.function, arrival.scheduled_s, sent, received, result.http_status,
                                       result.activation, result.error)
            except (ValueError, TypeError) as error:
                activation_id = result.activation.get("activationId") if isinstance(result.activation, Mapping) else ""
                return without_activation(arrival.function, arrival.scheduled_s, sent, received, MALFORMED,
                                          result.http_status, f"malformed activation record: {error}",
                                          activation_id if isinstance(activation_id, str) else "")
        status = result.status if result.status in OUTCOME_OF else ERROR
        detail = result.error if status == result.status else f"invoker status {result.status!r}: {result.error}"
        return without_activation(arrival.function, arrival.scheduled_s, sent, received, status,
                                  result.http_status, detail, result.activation_id)

    # --- workers --------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                # After a stop nothing more is sent: what waits is the run's to cancel.
                while (not self._backlog or self._stop.is_set()) and not self._closing:
                    self._lock.wait()
                if not self._backlog or self._stop.is_set():
                    return
                arrival = self._backlog.popleft()
                arrival.sent_s = self._now()
                self._in_flight.add(arrival)
            try:
                try:
                    result = self.invoker.invoke(arrival.function)
                except Exception as error:  # noqa: BLE001 - an Invoker must not raise; if it does, keep the row
                    result = InvokeResult(0, status=ERROR, error=f"{type(error).__name__}: {error}")
                received = self._now()
                if self._claim(arrival, by_worker=True):
                    try:
                        try:
                            row = self._row(arrival, received, result)
                        except Exception as error:  # noqa: BLE001 - a row is written whatever the answer held
                            row = without_activation(arrival.function, arrival.scheduled_s, arrival.sent_s, received,
                                                     ERROR, result.http_status, f"{type(error).__name__}: {error}")
                        self._write(row)
                    finally:
                        self._written(arrival)
                else:
                    with self._lock:
                        self._late += 1
            finally:
                with self._lock:
                    self._in_flight.discard(arrival)
                    self._lock.notify_all()

    # --- the run --------------------------------------------------------------------------------

    def run(self, arrivals: Iterable[tuple[float, int]]) -> ReplayResult:
        """Replay ``arrivals`` ((trace time s, function index), ascending); returns when every
        arrival reached has its row, or when the drain after a stop ran out.

        A KeyboardInterrupt while sending or waiting stops the replay like :meth:`stop`. Raises the
        writer's error, after the drain, if a row could not be written.
        """
        cfg = self.config
        scheduled = dropped = 0
        self._workers = [threading.Thread(target=self._work, name=f"replay-{i}", daemon=True)
                         for i in range(cfg.concurrency)]
        self._t0 = self._clock()
        for worker in self._workers:
            worker.start()
        try:
            try:
                for t_s, fn in arrivals:
                    if not self._wait_until(t_s / cfg.speedup):
                        break
                    scheduled += 1
                    arrival = _Arrival(self.names[fn], t_s)
                    with self._lock:
                        # Outstanding = running (at most ``concurrency``) + waiting for a worker.
                        full = len(self._in_flight) + len(self._backlog) >= cfg.concurrency + cfg.max_backlog
                        if not full:
                            self._backlog.append(arrival)
                            self._lock.notify()
                    if full:
                        dropped += 1
                        self._unsent(arrival, DROPPED, "backlog full")
                # Every arrival handed over: wait for the answers, noticing a stop.
                with self._lock:
                    while (self._backlog or self._in_flight) and not self._stop.is_set():
                        self._lock.wait(cfg.poll_s)
            except KeyboardInterrupt:
                self._stop.set()
            stopped = self._stop.is_set()
            cancelled = self._cancel_backlog() if stopped else 0
            unfinished = self._drain(cfg.drain_timeout_s) if stopped else 0
        finally:
            with self._lock:
                self._closing = True
                self._lock.notify_all()
        with self._lock:
            late, failure = self._late, self._write_failure
        if failure is not None:
            raise failure
        return ReplayResult(
            scheduled=scheduled,
            sent=scheduled - dropped - cancelled,
            recorded=self.writer.written,
            dropped=dropped,
            cancelled=cancelled,
            unfinished=unfinished,
            late=late,
            stopped=stopped,
            elapsed_s=self._now(),
        )

    def _wait_until(self, due_s: float) -> bool:
        """Sleep until ``due_s`` (replay time); False when stopped first."""
        while not self._stop.is_set():
            left = due_s - self._now()
            if left <= 0:
                return True
            self._sleep(min(left, self.config.poll_s))
        return False

    def _cancel_backlog(self) -> int:
        with self._lock:
            waiting = list(self._backlog)
            self._backlog.clear()
        for arrival in waiting:
            self._unsent(arrival, CANCELLED, "waiting for a worker when the replay stopped")
        return len(waiting)

    def _drain(self, timeout_s: float) -> int:
        """Wait at most ``timeout_s`` (replayer clock) for the invocations in flight; record the ones
        still unanswered then as ``unfinished``; returns how many."""
        deadline = self._now() + timeout_s
        try:
            while not self._abort.is_set():
                with self._lock:
                    if not self._in_flight:
                        return 0
                left = deadline - self._now()
                if left <= 0:
                    break
                self._sleep(min(left, self.config.poll_s))
        except KeyboardInterrupt:
            pass
        with self._lock:
            unanswered = [a for a in self._in_flight if not a.recorded]
        written = 0
        for arrival in unanswered:
            if self._claim(arrival):
                written += 1
                self._write(without_activation(
                    arrival.function, arrival.scheduled_s, arrival.sent_s, math.nan, UNFINISHED, 0,
                    f"no answer within the drain time-out of {timeout_s:g} s after the stop"))
        # Answers that came just before the deadline are being written: a local file's row, not a call.
        with self._lock:
            while self._writing:
                self._lock.wait(self.config.poll_s)
        return written


__all__ = ["InvokeResult", "Invoker", "ReplayConfig", "ReplayResult", "Replayer", "arrivals_of"]
