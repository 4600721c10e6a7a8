"""Tests of ``pool.queue``: the bound, the order, waiting submitters and idle workers.

The queue is driven directly, with records the tests make and a few
stand-ins for workers; a Hypothesis test makes random sequences of puts,
cancellations and takes and checks the order and the bound after each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pool import Job, JobState, ManualClock, QueueFull
from pool.job import JobRecord
from pool.queue import JobQueue
from tests.helpers import settle

T = TypeVar("T")


class Taker:
    """What the queue needs of a worker: its ready future, its wake, whether it retires."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ready: asyncio.Future[None] = loop.create_future()
        self.retiring = False
        self.wake: asyncio.Future[JobRecord | None] | None = None


def record(job_id: str, at: float = 0.0) -> JobRecord:
    return JobRecord(Job(id=job_id), at)


def at_once(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that must finish without waiting (no loop turn)."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise AssertionError("it waited")


async def waiting(queue: JobQueue, *workers: Any) -> list[asyncio.Task[JobRecord | None]]:
    """Each of ``workers`` asks ``queue`` for a job, in order, and waits for one."""
    taking = [asyncio.ensure_future(queue.take(w)) for w in workers]
    await settle()
    return taking


def cancel(queue: JobQueue, job: JobRecord) -> None:
    """As the pool cancels a queued job: the queue lets it go, then the ledger ends it."""
    queue.discard(job)
    job.state = JobState.CANCELLED


class TestOrderAndBound:
    def test_jobs_are_taken_first_in_first_out_skipping_cancelled_ones(self) -> None:
        loop = asyncio.new_event_loop()
        queue = JobQueue(5)
        a, b, c = record("a"), record("b"), record("c")
        for job in (a, b, c):
            queue.put(job)
        cancel(queue, b)

        worker: Any = Taker(loop)
        assert queue.ready == 2
        assert at_once(queue.take(worker)) is a
        assert at_once(queue.take(worker)) is c
        assert queue.ready == 0
        assert worker.ready.done()
        loop.close()

    def test_full_at_capacity_and_a_cancelled_job_frees_its_room(self) -> None:
        queue = JobQueue(2)
        a, b = record("a"), record("b")
        queue.put(a)
        assert not queue.full()
        queue.put(b)
        assert queue.full()
        cancel(queue, a)
        assert not queue.full()
        assert queue.ready == 1
        cancel(queue, a)  # a job not in the queue: changes nothing
        assert queue.ready == 1

    def test_the_oldest_wait_is_the_first_queued_job_and_reading_it_changes_nothing(
        self,
    ) -> None:
        queue = JobQueue(5)
        a, b = record("a", at=1.0), record("b", at=2.0)
        queue.put(a)
        queue.put(b)
        cancel(queue, a)

        assert queue.oldest_wait(10.0) == 8.0
        assert queue.oldest_wait(10.0) == 8.0
        assert queue.ready == 1
        assert JobQueue(1).oldest_wait(3.0) == 0.0

    def test_a_retry_goes_in_whatever_the_room(self) -> None:
        queue = JobQueue(1)
        queue.put(record("a"))
        queue.put(record("retried"))
        assert queue.ready == 2


class TestWorkers:
    async def test_a_job_goes_straight_to_an_idle_worker(self) -> None:
        queue = JobQueue(1)
        worker: Any = Taker(asyncio.get_running_loop())
        taking = asyncio.ensure_future(queue.take(worker))
        await settle()
        job = record("a")
        queue.put(job)

        assert await taking is job
        assert queue.ready == 0

    async def test_a_held_queue_gives_nothing_until_released(self) -> None:
        queue = JobQueue(3)
        loop = asyncio.get_running_loop()
        early: Any = Taker(loop)
        late: Any = Taker(loop)
        queue.hold()
        waiting_before = asyncio.ensure_future(queue.take(early))
        await settle()
        a, b = record("a"), record("b")
        queue.put(a)  # a worker waits, but the queue is held: kept
        queue.put(b)
        waiting_after = asyncio.ensure_future(queue.take(late))
        await settle()
        assert not waiting_before.done()
        assert not waiting_after.done()
        assert queue.ready == 2
        assert queue.held

        queue.release()
        assert await waiting_before is a
        assert await waiting_after is b
        assert queue.ready == 0
        assert not queue.held

    def test_released_with_no_worker_waiting_the_jobs_stay_in_order(self) -> None:
        loop = asyncio.new_event_loop()
        queue = JobQueue(3)
        a, b = record("a"), record("b")
        queue.hold()
        queue.put(a)
        queue.put(b)
        queue.release()

        worker: Any = Taker(loop)
        assert queue.ready == 2
        assert at_once(queue.take(worker)) is a
        assert at_once(queue.take(worker)) is b
        loop.close()

    async def test_a_dismissed_or_stopped_worker_is_told_to_exit(self) -> None:
        queue = JobQueue(3)
        loop = asyncio.get_running_loop()
        first: Any = Taker(loop)
        second: Any = Taker(loop)
        taking = await waiting(queue, first, second)
        first.retiring = True
        queue.dismiss(first)
        assert await taking[0] is None
        queue.stop()
        assert await taking[1] is None
        assert queue.stopped
        later: Any = Taker(loop)
        assert at_once(queue.take(later)) is None  # any later one too: no job

    async def test_a_busy_worker_dismissed_exits_at_its_next_take(self) -> None:
        queue = JobQueue(3)
        worker: Any = Taker(asyncio.get_running_loop())
        taking = asyncio.ensure_future(queue.take(worker))
        await settle()
        queue.put(record("a"))
        await taking  # it runs the job: no longer waiting
        worker.retiring = True
        queue.dismiss(worker)

        assert at_once(queue.take(worker)) is None
        queue.put(record("b"))
        assert queue.ready == 1

    async def test_a_forgotten_worker_is_handed_no_job(self) -> None:
        queue = JobQueue(3)
        worker: Any = Taker(asyncio.get_running_loop())
        taking = asyncio.ensure_future(queue.take(worker))
        await settle()
        queue.forget(worker)
        queue.forget(worker)  # twice: it waits no more, nothing changes
        queue.put(record("a"))

        assert queue.ready == 1
        assert not taking.done()
        taking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await taking

    async def test_a_retiring_worker_takes_nothing(self) -> None:
        queue = JobQueue(3)
        queue.put(record("a"))
        worker: Any = Taker(asyncio.get_running_loop())
        worker.retiring = True
        assert at_once(queue.take(worker)) is None
        assert queue.ready == 1


class TestCancelledTakers:
    """A worker's wait for a job is cancelled: no job is lost, none is taken twice."""

    async def test_a_job_handed_to_a_cancelled_taker_goes_back_to_the_front(self) -> None:
        queue = JobQueue(3)
        loop = asyncio.get_running_loop()
        first: Any = Taker(loop)
        second: Any = Taker(loop)
        taking = asyncio.ensure_future(queue.take(first))
        await settle()
        a, b = record("a"), record("b")
        queue.put(a)  # handed to the first: its wake is set...
        queue.put(b)  # (none waits for this one: kept)
        taking.cancel()  # ...but it is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await taking
        assert queue.ready == 2
        assert at_once(queue.take(second)) is a
        assert at_once(queue.take(second)) is b

    async def test_a_job_handed_to_a_cancelled_taker_goes_to_another_waiting_one(self) -> None:
        queue = JobQueue(3)
        loop = asyncio.get_running_loop()
        first: Any = Taker(loop)
        second: Any = Taker(loop)
        taking = await waiting(queue, first, second)
        job = record("a")
        queue.put(job)  # handed to the first, which has waited longest
        taking[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await taking[0]
        await settle()

        assert taking[1].done()
        assert taking[1].result() is job
        assert queue.ready == 0

    async def test_a_job_handed_to_a_cancelled_taker_while_held_waits_at_the_front(
        self,
    ) -> None:
        queue = JobQueue(3)
        loop = asyncio.get_running_loop()
        first: Any = Taker(loop)
        second: Any = Taker(loop)
        taking = await waiting(queue, first, second)
        a, b = record("a"), record("b")
        queue.put(a)  # handed to the first
        queue.hold()
        queue.put(b)
        taking[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await taking[0]
        await settle()
        assert not taking[1].done()  # held: the second waiting worker is not given it
        assert queue.ready == 2

        queue.release()
        assert await taking[1] is a
        assert at_once(queue.take(first)) is b

    async def test_what_a_cancelled_taker_was_given_but_cannot_run_is_dropped(self) -> None:
        queue = JobQueue(3)
        loop = asyncio.get_running_loop()
        given_a_job: Any = Taker(loop)
        dismissed: Any = Taker(loop)
        taking = await waiting(queue, given_a_job, dismissed)
        job = record("a")
        queue.put(job)  # handed to the first...
        cancel(queue, job)  # ...and cancelled by the pool before that worker ran
        dismissed.retiring = True
        queue.dismiss(dismissed)  # its wake is set to None
        for each in taking:
            each.cancel()  # both, before either runs
        for each in taking:
            with pytest.raises(asyncio.CancelledError):
                await each

        assert queue.ready == 0

    async def test_a_taker_cancelled_while_waiting_leaves_the_order_alone(self) -> None:
        queue = JobQueue(3)
        loop = asyncio.get_running_loop()
        first: Any = Taker(loop)
        second: Any = Taker(loop)
        queue.hold()
        a, b = record("a"), record("b")
        queue.put(a)
        queue.put(b)
        taking = asyncio.ensure_future(queue.take(first))
        await settle()
        taking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await taking
        queue.release()  # nobody waits now: nothing moves

        assert queue.ready == 2
        assert at_once(queue.take(second)) is a
        assert at_once(queue.take(second)) is b

    async def test_takers_cancelled_but_not_yet_gone_are_passed_over(self) -> None:
        queue = JobQueue(3)
        loop = asyncio.get_running_loop()
        workers: list[Any] = [Taker(loop) for _ in range(4)]
        taking = await waiting(queue, *workers)
        taking[0].cancel()  # their waits are cancelled, but they run only later:
        taking[2].cancel()  # still in the line of idle workers
        job = record("a")
        queue.put(job)  # passes over the first
        queue.stop()  # passes over the third

        assert await taking[1] is job
        assert await taking[3] is None
        for each in (taking[0], taking[2]):
            with pytest.raises(asyncio.CancelledError):
                await each
        assert queue.ready == 0

    async def test_a_job_put_when_every_waiting_taker_was_cancelled_is_kept(self) -> None:
        queue = JobQueue(3)
        loop = asyncio.get_running_loop()
        first: Any = Taker(loop)
        second: Any = Taker(loop)
        taking = asyncio.ensure_future(queue.take(first))
        await settle()
        taking.cancel()
        job = record("a")
        queue.put(job)  # the only waiting worker is being cancelled
        with pytest.raises(asyncio.CancelledError):
            await taking

        assert queue.ready == 1
        assert at_once(queue.take(second)) is job

    async def test_jobs_released_to_a_cancelled_taker_are_kept(self) -> None:
        queue = JobQueue(3)
        loop = asyncio.get_running_loop()
        first: Any = Taker(loop)
        second: Any = Taker(loop)
        queue.hold()
        taking = asyncio.ensure_future(queue.take(first))
        await settle()
        queue.put(record("a"))
        queue.put(record("b"))
        taking.cancel()
        queue.release()  # the only waiting worker is being cancelled
        with pytest.raises(asyncio.CancelledError):
            await taking

        assert queue.ready == 2
        taken = [at_once(queue.take(second)) for _ in range(2)]
        assert [r.job.id for r in taken if r is not None] == ["a", "b"]


class TestSubmitters:
    async def test_a_waiting_submitter_gets_the_room_a_take_makes(self, clock: ManualClock) -> None:
        queue = JobQueue(1)
        queue.put(record("a"))
        waiting = asyncio.ensure_future(queue.wait_for_room(clock, None, _refuse, _accept))
        await settle()
        assert not waiting.done()

        taker: Any = Taker(asyncio.get_running_loop())
        at_once(queue.take(taker))
        await waiting
        assert not queue.full()

    async def test_a_submitter_gives_up_after_its_limit(self, clock: ManualClock) -> None:
        for limit in (2.0, 0.5):
            queue = JobQueue(1)
            queue.put(record("a"))
            waiting = asyncio.ensure_future(queue.wait_for_room(clock, limit, _refuse, _accept))
            await clock.advance(limit - 0.25)
            assert not waiting.done(), limit
            await clock.advance(0.25)
            with pytest.raises(QueueFull):
                await waiting

    async def test_a_recheck_that_refuses_passes_the_room_on(self, clock: ManualClock) -> None:
        queue = JobQueue(1)
        queue.put(record("a"))

        def closed() -> None:
            raise RuntimeError("closed")

        refused = asyncio.ensure_future(queue.wait_for_room(clock, None, _refuse, closed))
        await settle()
        second = asyncio.ensure_future(queue.wait_for_room(clock, None, _refuse, _accept))
        await settle()
        taker: Any = Taker(asyncio.get_running_loop())
        at_once(queue.take(taker))

        with pytest.raises(RuntimeError, match=r"^closed$"):
            await refused
        await second

    async def test_a_submitter_cancelled_while_waiting_keeps_the_others_in_line(
        self, clock: ManualClock
    ) -> None:
        queue = JobQueue(1)
        queue.put(record("a"))
        waiting = [
            asyncio.ensure_future(queue.wait_for_room(clock, None, _refuse, _accept))
            for _ in range(3)
        ]
        await settle()
        waiting[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting[0]
        taker: Any = Taker(asyncio.get_running_loop())
        at_once(queue.take(taker))
        await settle()

        assert waiting[1].done()  # the next in line gets the room
        assert not waiting[2].done()
        waiting[2].cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting[2]

    async def test_room_handed_to_a_cancelled_submitter_passes_to_the_next(
        self, clock: ManualClock
    ) -> None:
        queue = JobQueue(1)
        queue.put(record("a"))
        waiting = [
            asyncio.ensure_future(queue.wait_for_room(clock, None, _refuse, _accept))
            for _ in range(2)
        ]
        await settle()
        taker: Any = Taker(asyncio.get_running_loop())
        at_once(queue.take(taker))  # the room goes to the first...
        waiting[0].cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiting[0]
        await settle()

        assert waiting[1].done()
        await waiting[1]

    async def test_a_recheck_that_refuses_passes_on_no_room_taken_meanwhile(
        self, clock: ManualClock
    ) -> None:
        queue = JobQueue(1)
        queue.put(record("a"))

        def closed() -> None:
            raise RuntimeError("closed")

        refused = asyncio.ensure_future(queue.wait_for_room(clock, None, _refuse, closed))
        await settle()
        waiting = [
            asyncio.ensure_future(queue.wait_for_room(clock, None, _refuse, _accept))
            for _ in range(2)
        ]
        await settle()
        taker: Any = Taker(asyncio.get_running_loop())
        at_once(queue.take(taker))  # the room goes to the first...
        queue.put(record("b"))  # ...but a submitter that did not wait takes it
        with pytest.raises(RuntimeError, match=r"^closed$"):
            await refused
        await settle()
        assert not any(w.done() for w in waiting)

        at_once(queue.take(taker))
        await settle()
        assert waiting[0].done()  # the next in line: its place was kept
        assert not waiting[1].done()
        waiting[1].cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting[1]

    async def test_waking_every_submitter(self, clock: ManualClock) -> None:
        queue = JobQueue(1)
        queue.put(record("a"))
        calls: list[str] = []

        def recheck() -> None:
            calls.append("recheck")
            raise RuntimeError("closed")

        waiting = [
            asyncio.ensure_future(queue.wait_for_room(clock, None, _refuse, recheck))
            for _ in range(3)
        ]
        await settle()
        queue.wake_all_putters()
        for fut in waiting:
            with pytest.raises(RuntimeError):
                await fut
        assert calls == ["recheck"] * 3


def _refuse() -> None:
    raise QueueFull("queue is full")


def _accept() -> None:
    return None


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 4),
    ops=st.lists(
        st.tuples(st.sampled_from(["put", "cancel", "take"]), st.integers(0, 9)), max_size=40
    ),
)
def test_random_puts_cancels_and_takes_keep_the_order_and_the_bound(
    capacity: int, ops: list[tuple[str, int]]
) -> None:
    loop = asyncio.new_event_loop()
    queue = JobQueue(capacity)
    worker: Any = Taker(loop)
    waiting: list[JobRecord] = []  # the queued jobs, oldest first: what it must give
    made = 0
    for op, arg in ops:
        if op == "put" and not queue.full():
            made += 1
            job = record(f"j{made}")
            queue.put(job)
            waiting.append(job)
        elif op == "cancel" and waiting:
            cancel(queue, waiting.pop(arg % len(waiting)))
        elif op == "take" and waiting:
            assert at_once(queue.take(worker)) is waiting.pop(0)
        assert queue.ready == len(waiting)
        assert queue.ready <= capacity
        assert queue.full() == (len(waiting) >= capacity)
    loop.close()
