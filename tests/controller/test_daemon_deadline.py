"""The tick's deadline around a backend: a call that hangs is left behind at the deadline or at a stop
request, the tick says why, and the backend is not called again until the hung call returns. The
backend hangs on an event the test releases; the clock is the daemon's real one."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from conftest import make_snapshot

from controller.backends.base import FailureKind
from controller.clients.errors import ObservationError, remaining_s
from controller.clock import RealClock
from controller.daemon import DeadlineBackend, Interrupted
from policies.types import KEEP_SHARES, Decisions


class HangingBackend:
    """Observes and applies at once, or, while ``hang`` is set, waits for ``release`` (bounded)."""

    name = "hanging"
    function_names = ("a", "b")

    def __init__(self) -> None:
        self.hang = False
        self.release = threading.Event()
        self.entered = threading.Event()
        self.seen_remaining: list[float] = []
        self.problems = ()

    def _maybe_hang(self) -> None:
        self.seen_remaining.append(remaining_s())
        if self.hang:
            self.entered.set()
            self.release.wait(60.0)

    def observe(self, now):
        self._maybe_hang()
        return make_snapshot(self.function_names, time_s=now)

    def apply(self, decisions, now):
        self._maybe_hang()
        return []


@pytest.fixture
def hanging():
    backend = HangingBackend()
    yield backend
    backend.release.set()


def _decisions(valid=(True, True)) -> Decisions:
    return Decisions(containers=np.array([2, 2]), cpu_shares=np.array([KEEP_SHARES] * 2), valid=np.array(valid),
                     reasons=("r", "r"))


def test_calls_that_return_in_time_pass_through_and_see_the_deadline(hanging):
    clock = RealClock()
    guarded = DeadlineBackend(hanging, clock)
    guarded.deadline_at_s = clock.monotonic() + 30.0
    assert guarded.observe(1.0).time_s == 1.0
    assert guarded.apply(_decisions(), 1.0) == []
    assert all(0 < left <= 30.0 for left in hanging.seen_remaining)  # the clients inside see what is left
    guarded.deadline_at_s = None
    guarded.observe(2.0)
    assert math.isinf(hanging.seen_remaining[-1])
    assert guarded.function_names == ("a", "b") and guarded.problems == ()  # the rest is the backend's


def test_a_hung_observation_fails_the_tick_at_its_deadline_and_blocks_the_next_call_until_it_returns(hanging):
    clock = RealClock()
    guarded = DeadlineBackend(hanging, clock)
    hanging.hang = True
    guarded.deadline_at_s = clock.monotonic() + 0.2
    with pytest.raises(ObservationError) as caught:
        guarded.observe(1.0)
    assert caught.value.kind == "timeout" and "did not return by the tick's deadline" in str(caught.value)
    # The call is still running: the backend is not called a second time at once.
    guarded.deadline_at_s = clock.monotonic() + 30.0
    with pytest.raises(ObservationError, match="has not returned yet") as again:
        guarded.observe(2.0)
    assert again.value.kind == "timeout"
    assert len(hanging.seen_remaining) == 1
    hanging.hang = False
    hanging.release.set()
    for _ in range(600):  # the hung call ends as soon as it is released; give its thread the time to say so
        try:
            assert guarded.observe(3.0).time_s == 3.0
            break
        except ObservationError:
            threading.Event().wait(0.05)
    else:
        pytest.fail("the backend was never called again after its hung call returned")


def test_a_hung_apply_reports_every_decision_as_unavailable_at_the_deadline(hanging):
    clock = RealClock()
    guarded = DeadlineBackend(hanging, clock)
    hanging.hang = True
    guarded.deadline_at_s = clock.monotonic() + 0.2
    failures = guarded.apply(_decisions(valid=(True, False)), 1.0)
    assert [(f.function, f.kind) for f in failures] == [("a", FailureKind.UNAVAILABLE)]
    assert "whether the change was made is unknown" in failures[0].message


def test_a_stop_request_while_a_call_hangs_interrupts_the_wait_without_a_deadline(hanging):
    clock = RealClock()
    guarded = DeadlineBackend(hanging, clock)
    hanging.hang = True
    guarded.deadline_at_s = None  # no deadline at all: only the stop can end the wait
    threading.Thread(target=lambda: (hanging.entered.wait(60.0), clock.request_stop()), daemon=True).start()
    with pytest.raises(Interrupted, match="stop requested while the backend's observe was running"):
        guarded.observe(1.0)


def test_an_error_of_the_backend_reaches_the_loop_as_it_was_raised(hanging):
    class Broken(HangingBackend):
        def observe(self, now):
            raise KeyError("a bug")

    guarded = DeadlineBackend(Broken(), RealClock())
    with pytest.raises(KeyError, match="a bug"):
        guarded.observe(1.0)
