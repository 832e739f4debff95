"""The tick's deadline around a backend: no request, however stuck, holds a tick past it.

The clients already shorten their time-outs to what is left of the tick
(:func:`controller.clients.errors.deadline_scope`), so a request normally ends by the deadline on
its own. That is not a bound: a server that trickles one byte per read never trips a read time-out,
and the container runtimes' clients do not know the deadline. :class:`DeadlineBackend` is the
bound. It runs each ``observe`` and ``apply`` in a worker thread with the deadline set, and the
loop's thread waits for it only until the deadline, or until a stop is requested (SIGTERM), then
goes on without it:

* an ``observe`` still running at the deadline fails the tick with
  :class:`~controller.clients.errors.ObservationError` of kind ``timeout``: nothing is decided;
* an ``apply`` still running at the deadline reports every decision it was given as an
  ``UNAVAILABLE`` action failure: whether each change was made is unknown, and the next tick
  compares again;
* a stop requested while waiting raises :class:`Interrupted`: the daemon then writes its final
  checkpoint instead of waiting for the platform.

A call left running keeps its thread (a daemon thread, so it never holds up the exit) until its
own time-outs end it; until then the backend is not called again — the next tick fails at once
with ``timeout``, saying which call is still running — because a backend's state is not made for
two calls at once. Only the worker touches the backend; the policy and the checkpoints stay on the
loop's thread, so a call left behind never races with a checkpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from controller.backends.base import ActionFailure, Backend, FailureKind
from controller.clients.errors import Deadline, ObservationError, ObservationKind, deadline_scope
from controller.clock import Clock
from policies.types import ClusterSnapshot, Decisions

T = TypeVar("T")

#: Longest real wait between two looks at a stop request while a backend call runs, s. Short, so
#: that SIGTERM is noticed at once; a call that finishes wakes the wait immediately anyway.
POLL_S = 0.1


class Interrupted(Exception):
    """A stop was requested while a backend call was running; the call was left behind."""


@dataclass
class _Call:
    """One backend call running in its worker thread."""

    what: str
    started_s: float
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class DeadlineBackend:
    """``backend`` with every ``observe`` and ``apply`` held to :attr:`deadline_at_s` (see the module docstring)."""

    def __init__(self, backend: Backend, clock: Clock) -> None:
        self.inner = backend
        """The backend that does the work."""
        self.name = backend.name
        self.clock = clock
        """The daemon's clock: the deadline is an instant on it, and a stop request on it ends the wait."""
        self.deadline_at_s: float | None = None
        """Monotonic instant by which the current tick's calls must end; None: no bound."""
        self._running: _Call | None = None

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait (up to ``timeout_s`` real seconds) until no call is left running; True when none is."""
        running = self._running
        return running is None or running.done.wait(timeout_s)

    def __getattr__(self, name: str) -> Any:
        # What the loop and the daemon read besides the two calls (function_names, problems, ...).
        return getattr(self.inner, name)

    def observe(self, now: float) -> ClusterSnapshot:
        return self._call("observe", self.inner.observe, now)

    def apply(self, decisions: Decisions, now: float) -> list[ActionFailure]:
        try:
            return self._call("apply", self.inner.apply, decisions, now)
        except ObservationError as error:
            names = getattr(self.inner, "function_names", ())
            return [
                ActionFailure(names[i] if i < len(names) else f"#{i}", FailureKind.UNAVAILABLE,
                              f"{error.cause}; whether the change was made is unknown")
                for i in range(len(decisions)) if decisions.valid[i]
            ]

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        now_s = self.clock.monotonic()
        running = self._running
        if running is not None and not running.done.is_set():
            raise ObservationError(ObservationKind.TIMEOUT, what,
                                   f"the backend's {running.what} of {now_s - running.started_s:.1f} s ago has not "
                                   "returned yet (a request hangs beyond its time-outs)")
        call = _Call(what, now_s)
        deadline = None if self.deadline_at_s is None else Deadline(self.deadline_at_s, self.clock.monotonic)

        def work() -> None:
            with deadline_scope(deadline):
                try:
                    call.value = fn(*args)
                except BaseException as error:  # noqa: BLE001 - handed to the loop's thread as it is
                    call.error = error
                finally:
                    call.done.set()

        self._running = call
        threading.Thread(target=work, name=f"mfrm-backend-{what}", daemon=True).start()
        while not call.done.is_set():
            left = None if deadline is None else deadline.remaining_s()
            if left is not None and left <= 0:
                raise ObservationError(ObservationKind.TIMEOUT, what,
                                       f"the backend's {what} did not return by the tick's deadline "
                                       f"({self.clock.monotonic() - call.started_s:.1f} s)")
            if self.clock.stop_requested:
                raise Interrupted(f"stop requested while the backend's {what} was running")
            call.done.wait(POLL_S if left is None else min(POLL_S, left))
        if call.error is not None:
            raise call.error
        return call.value


__all__ = ["POLL_S", "DeadlineBackend", "Interrupted"]
