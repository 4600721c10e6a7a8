"""Tests of ``pool.clock``: the manual clock's timers, ``sleep`` and the real clock."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import pytest

from pool import ManualClock, MonotonicClock
from pool.clock import sleep
from tests.helpers import settle


class Recorder:
    """Callbacks that note their name and the clock's time when they run."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.fired: list[tuple[str, float]] = []

    def __call__(self, name: str) -> None:
        self.fired.append((name, self.clock.now()))

    def cb(self, name: str) -> Callable[[], None]:
        return functools.partial(self, name)


class TestManualClockTime:
    def test_starts_where_told(self, clock: ManualClock) -> None:
        assert clock.now() == 1000.0
        assert ManualClock().now() == 0.0

    async def test_advance_moves_time_by_exactly_the_amount(self, clock: ManualClock) -> None:
        await clock.advance(2.5)
        await clock.advance(0)

        assert clock.now() == 1002.5

    async def test_negative_advance_is_refused(self, clock: ManualClock) -> None:
        with pytest.raises(ValueError, match=r"^seconds must be >= 0, got -1$"):
            await clock.advance(-1)
        with pytest.raises(ValueError, match=r"^seconds must be >= 0, got -0\.5$"):
            await clock.advance(-0.5)
        assert clock.now() == 1000.0


class TestManualClockTimers:
    async def test_fire_in_due_order_at_their_due_time(self, clock: ManualClock) -> None:
        rec = Recorder(clock)
        clock.call_later(5, rec.cb("five-a"))
        clock.call_later(2, rec.cb("two"))
        clock.call_later(5, rec.cb("five-b"))
        clock.call_later(3.5, rec.cb("three-and-a-half"))

        await clock.advance(10)

        assert rec.fired == [
            ("two", 1002.0),
            ("three-and-a-half", 1003.5),
            ("five-a", 1005.0),
            ("five-b", 1005.0),
        ]
        assert clock.now() == 1010.0

    async def test_do_not_fire_before_they_are_due(self, clock: ManualClock) -> None:
        rec = Recorder(clock)
        clock.call_later(3, rec.cb("three"))

        await clock.advance(2.5)
        assert rec.fired == []
        await clock.advance(0.5)
        assert rec.fired == [("three", 1003.0)]

    async def test_not_even_without_an_advance(self, clock: ManualClock) -> None:
        rec = Recorder(clock)
        clock.call_later(0, rec.cb("now"))
        await settle()

        assert rec.fired == []
        await clock.advance(0)
        assert rec.fired == [("now", 1000.0)]

    async def test_negative_delay_is_due_now(self, clock: ManualClock) -> None:
        rec = Recorder(clock)
        clock.call_later(-5, rec.cb("late"))

        assert clock.next_due() == 1000.0
        await clock.advance(0)
        assert rec.fired == [("late", 1000.0)]

    async def test_each_fires_once(self, clock: ManualClock) -> None:
        rec = Recorder(clock)
        clock.call_later(1, rec.cb("one"))

        await clock.advance(2)
        await clock.advance(2)

        assert rec.fired == [("one", 1001.0)]

    async def test_cancelled_timers_never_fire(self, clock: ManualClock) -> None:
        rec = Recorder(clock)
        kept = clock.call_later(1, rec.cb("kept"))
        dropped = clock.call_later(2, rec.cb("dropped"))
        dropped.cancel()

        await clock.advance(5)
        kept.cancel()  # after it ran: no effect

        assert rec.fired == [("kept", 1001.0)]

    async def test_a_timer_cancelled_by_an_earlier_one_does_not_fire(
        self, clock: ManualClock
    ) -> None:
        rec = Recorder(clock)
        later = clock.call_later(2, rec.cb("later"))
        clock.call_later(1, later.cancel)

        await clock.advance(5)

        assert rec.fired == []

    async def test_a_timer_set_by_a_callback_fires_in_the_same_advance(
        self, clock: ManualClock
    ) -> None:
        rec = Recorder(clock)

        def first() -> None:
            rec("first")
            clock.call_later(2, rec.cb("second"))  # due 1003: within this advance
            clock.call_later(10, rec.cb("too-late"))  # due 1011: not within it

        clock.call_later(1, first)
        await clock.advance(5)

        assert rec.fired == [("first", 1001.0), ("second", 1003.0)]
        assert clock.next_due() == 1011.0

    async def test_a_task_woken_by_a_timer_can_set_the_next_in_the_same_advance(
        self, clock: ManualClock
    ) -> None:
        ticks: list[float] = []

        async def ticker() -> None:
            for _ in range(3):
                await sleep(clock, 1)
                ticks.append(clock.now())

        task = asyncio.create_task(ticker())
        await clock.advance(3)

        assert ticks == [1001.0, 1002.0, 1003.0]
        assert task.done()


class TestManualClockQueries:
    def test_next_due_and_pending_with_no_timers(self, clock: ManualClock) -> None:
        assert clock.next_due() is None
        assert clock.pending() == 0

    def test_next_due_is_the_earliest_live_timer(self, clock: ManualClock) -> None:
        late = clock.call_later(7, lambda: None)
        early = clock.call_later(2, lambda: None)

        assert clock.next_due() == 1002.0
        assert clock.pending() == 2
        early.cancel()
        assert clock.next_due() == 1007.0
        assert clock.pending() == 1
        late.cancel()
        assert clock.next_due() is None
        assert clock.pending() == 0

    async def test_fired_timers_are_no_longer_pending(self, clock: ManualClock) -> None:
        clock.call_later(1, lambda: None)
        clock.call_later(3, lambda: None)

        await clock.advance(2)

        assert clock.pending() == 1
        assert clock.next_due() == 1003.0

    def test_next_due_follows_later_scheduling(self, clock: ManualClock) -> None:
        clock.call_later(5, lambda: None)
        clock.call_later(1, lambda: None)

        assert clock.next_due() == 1001.0


class TestSleep:
    async def test_wakes_only_once_the_clock_has_moved_by_the_delay(
        self, clock: ManualClock
    ) -> None:
        task = asyncio.create_task(sleep(clock, 5))
        await settle()
        assert not task.done()

        await clock.advance(4.5)
        assert not task.done()

        await clock.advance(0.5)
        assert task.done()
        assert task.result() is None

    async def test_cancelled_sleep_leaves_no_timer(self, clock: ManualClock) -> None:
        task = asyncio.create_task(sleep(clock, 5))
        await settle()
        assert clock.pending() == 1

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert clock.pending() == 0

    async def test_zero_delay_wakes_on_an_advance_by_zero(self, clock: ManualClock) -> None:
        task = asyncio.create_task(sleep(clock, 0))
        await settle()
        assert not task.done()

        await clock.advance(0)

        assert task.done()


class TestMonotonicClock:
    async def test_call_later_runs_the_callback_on_the_running_loop(self) -> None:
        clock = MonotonicClock()
        ran = asyncio.Event()
        loops: list[asyncio.AbstractEventLoop] = []

        def callback() -> None:
            loops.append(asyncio.get_running_loop())
            ran.set()

        clock.call_later(0, callback)
        await ran.wait()

        assert loops == [asyncio.get_running_loop()]

    async def test_a_cancelled_timer_does_not_run(self) -> None:
        clock = MonotonicClock()
        ran = asyncio.Event()
        called: list[str] = []

        clock.call_later(0, lambda: called.append("cancelled")).cancel()
        clock.call_later(0, ran.set)
        await ran.wait()
        await settle()

        assert called == []

    def test_now_does_not_go_backwards(self) -> None:
        clock = MonotonicClock()
        readings = [clock.now() for _ in range(100)]

        assert readings == sorted(readings)

    def test_call_later_needs_a_running_loop(self) -> None:
        with pytest.raises(RuntimeError, match=r"^no running event loop$"):
            MonotonicClock().call_later(0, lambda: None)
