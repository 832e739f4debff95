"""The real-clock driver: grid scheduling, overrun skipping, backoff that resets, stopping; all on fake time."""

from __future__ import annotations

import itertools

import pytest

from controller.clock import BackoffPolicy, IntervalDriver, TimeScale, next_slot


class FakeClock:
    """Monotonic time that only moves when waited on or advanced by hand; ``wait`` never blocks."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.t = start_s
        self.waits: list[float] = []
        self._stop = False

    def monotonic(self) -> float:
        return self.t

    def wait(self, seconds: float) -> bool:
        if self._stop:
            return True
        self.waits.append(max(0.0, seconds))
        self.t += max(0.0, seconds)
        return self._stop

    def advance(self, seconds: float) -> None:
        self.t += seconds

    @property
    def stop_requested(self) -> bool:
        return self._stop

    def request_stop(self) -> None:
        self._stop = True


def _recording_tick(clock: FakeClock, durations_s: list[float], outcomes: list[bool] | None = None):
    """A tick that takes ``durations_s[i]`` of fake time and returns ``outcomes[i]``; records elapsed times."""
    seen: list[float] = []

    def tick(elapsed_s: float) -> bool:
        i = len(seen)
        seen.append(elapsed_s)
        clock.advance(durations_s[i] if i < len(durations_s) else 0.0)
        return outcomes[i] if outcomes is not None and i < len(outcomes) else True

    return tick, seen


def test_ticks_sit_on_the_interval_grid_whatever_each_tick_takes():
    clock = FakeClock()
    driver = IntervalDriver(clock, interval_s=1.0)
    tick, seen = _recording_tick(clock, [0.3, 0.9, 0.0, 0.5])
    stats = driver.run(tick, max_ticks=4)
    assert seen == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert stats.skipped_slots == 0


def test_a_tick_that_overruns_skips_the_slots_it_missed_instead_of_bursting():
    clock = FakeClock()
    driver = IntervalDriver(clock, interval_s=1.0)
    tick, seen = _recording_tick(clock, [2.5, 0.1, 0.1])
    stats = driver.run(tick, max_ticks=3)
    assert seen == pytest.approx([1.0, 4.0, 5.0])
    assert stats.skipped_slots == 2


def test_failures_back_off_along_the_sequence_and_a_good_tick_resets_it():
    clock = FakeClock()
    driver = IntervalDriver(clock, interval_s=1.0, backoff=BackoffPolicy((2.0, 4.0, 8.0)))
    outcomes = [False, False, False, False, True, False, True]
    tick, seen = _recording_tick(clock, [0.0] * 7, outcomes)
    stats = driver.run(tick, max_ticks=7)
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    # after failures 1..4: 2, 4, 8, 8 (the last delay repeats); after the good tick: one interval;
    # the next failure starts the sequence again at 2.
    assert gaps == pytest.approx([2.0, 4.0, 8.0, 8.0, 1.0, 2.0])
    assert stats.failed == 5
    assert stats.consecutive_failures == 0


def test_the_wait_after_a_failure_is_never_shorter_than_the_interval():
    clock = FakeClock()
    driver = IntervalDriver(clock, interval_s=10.0, backoff=BackoffPolicy((1.0, 2.0, 30.0)))
    tick, seen = _recording_tick(clock, [0.0] * 4, [False] * 4)
    driver.run(tick, max_ticks=4)
    assert [b - a for a, b in itertools.pairwise(seen)] == pytest.approx([10.0, 10.0, 30.0])


def test_a_stop_requested_during_a_tick_ends_the_run_after_that_tick():
    clock = FakeClock()
    driver = IntervalDriver(clock, interval_s=1.0)
    calls = []

    def tick(elapsed_s: float) -> bool:
        calls.append(elapsed_s)
        if len(calls) == 3:
            clock.request_stop()
        return True

    stats = driver.run(tick)
    assert len(calls) == 3
    assert stats.ticks == 3


def test_the_interval_can_change_between_ticks():
    clock = FakeClock()
    driver = IntervalDriver(clock, interval_s=1.0)
    seen: list[float] = []

    def tick(elapsed_s: float) -> bool:
        seen.append(elapsed_s)
        if len(seen) == 2:
            driver.interval_s = 5.0
        return True

    driver.run(tick, max_ticks=4)
    assert seen == pytest.approx([1.0, 2.0, 7.0, 12.0])


@pytest.mark.parametrize(
    ("previous", "interval", "now", "expected", "skipped"),
    [
        (10.0, 1.0, 10.2, 11.0, 0),
        (10.0, 1.0, 10.0, 11.0, 0),
        (10.0, 1.0, 11.5, 12.0, 1),
        (10.0, 2.0, 17.9, 18.0, 3),
    ],
    ids=["inside-the-slot", "at-the-slot", "one-slot-overrun", "three-slots-overrun"],
)
def test_next_slot_is_the_first_grid_time_after_now(previous, interval, now, expected, skipped):
    assert next_slot(previous, interval, now) == (pytest.approx(expected), skipped)


@pytest.mark.parametrize("delays", [(), (0.0,), (1.0, -2.0), (float("inf"),)], ids=["empty", "zero", "negative", "inf"])
def test_a_backoff_without_positive_finite_delays_is_refused(delays):
    with pytest.raises(ValueError, match="backoff delays"):
        BackoffPolicy(delays)


def test_a_new_time_scale_keeps_the_loop_time_continuous_and_growing():
    scale = TimeScale(scale=10.0)
    assert scale.loop_time(2.0) == pytest.approx(20.0)
    slower = scale.rescaled(2.0, 1.0)
    assert slower.loop_time(2.0) == pytest.approx(20.0)
    assert slower.loop_time(3.0) == pytest.approx(21.0)
