"""Tests of ``pool.attempts``: an attempt's deadline, its end, cancellation and abandon.

The part is driven directly, with a real ledger, queue and bus, a manual
clock, and stand-ins for the worker's runner, the supervisor (which puts a
fresh worker in an abandoned job's slot) and the shutdown (told of every
job's end while it waits).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pool import Job, JobState, ManualClock, PoolPhase, RetryPolicy, events
from pool.attempts import Attempts
from pool.bus import EventBus
from pool.job import CancelReason, JobContext, JobRecord
from pool.ledger import Ledger
from pool.queue import JobQueue
from pool.runners import WorkerDied
from pool.worker import Worker


class Runner:
    """A runner whose jobs live outside the loop: cancelling asks it, abandoning tells it."""

    cancels_task = False

    def __init__(self) -> None:
        self.cancelled = 0
        self.abandoned = 0

    def cancel(self) -> None:
        self.cancelled += 1

    def abandon(self) -> None:
        self.abandoned += 1


class Slots:
    """The supervisor's side: which slots got a fresh worker."""

    def __init__(self) -> None:
        self.replaced: list[tuple[str, str]] = []

    def replace(self, worker: Worker, job_id: str) -> None:
        self.replaced.append((worker.id, job_id))


class Waiting:
    """The shutdown's side: it waits, and counts the jobs that ended."""

    def __init__(self) -> None:
        self.waiting = True
        self.ended = 0

    def job_ended(self) -> None:
        self.ended += 1


class World:
    """One attempts part over a real ledger, queue and bus."""

    def __init__(
        self,
        *,
        job_timeout: float | None = None,
        cancel_grace: float = 1.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.clock = ManualClock(0.0)
        self.bus = EventBus()
        self.events = self.bus.subscribe(1000)
        self.ledger = Ledger(self.bus, now=0.0, max_dead_letters=10, retry=retry)
        self.queue = JobQueue(10)
        self.phase = PoolPhase.RUNNING
        self.attempts = Attempts(
            clock=self.clock,
            ledger=self.ledger,
            queue=self.queue,
            bus=self.bus,
            job_timeout=job_timeout,
            cancel_grace=cancel_grace,
            phase=lambda: self.phase,
        )
        self.slots = Slots()
        self.shutdown = Waiting()
        supervisor: Any = self.slots
        shutdown: Any = self.shutdown
        self.attempts.connect(supervisor, shutdown)
        self.runner = Runner()

    def begun(self, job: Job) -> tuple[Worker, JobRecord, JobContext]:
        """``job`` accepted and begun on a fresh worker ``w1``."""
        record = self.ledger.accept(job, self.clock.now(), "", lambda _: None)
        runner: Any = self.runner
        worker = Worker("w1", runner, asyncio.get_running_loop().create_future())
        return worker, record, self.attempts.begin(worker, record)

    def told(self, kind: type[events.PoolEvent]) -> list[Any]:
        return [e for e in self.events.drain() if isinstance(e, kind)]


class TestDeadlines:
    async def test_the_deadline_is_the_jobs_own_else_the_pools_else_none(self) -> None:
        world = World(job_timeout=5.0)
        await world.clock.advance(2.0)
        worker, _, ctx = world.begun(Job(timeout=1.5))
        assert ctx.deadline == 3.5
        assert worker.deadline_timer is not None

        assert world.begun(Job())[2].deadline == 7.0

        bare = World()
        worker, _, ctx = bare.begun(Job())
        assert ctx.deadline is None
        assert worker.deadline_timer is None
        assert bare.clock.pending() == 0

    async def test_past_its_deadline_a_job_is_asked_to_stop_then_abandoned_after_the_grace(
        self,
    ) -> None:
        world = World(cancel_grace=1.0)
        worker, record, ctx = world.begun(Job(id="slow", timeout=2.0))
        await world.clock.advance(2.0)

        assert world.runner.cancelled == 1
        assert ctx.cancelled
        assert record.cancel_reason is CancelReason.TIMEOUT
        [asked] = world.told(events.JobCancelRequested)
        assert (asked.job_id, asked.worker_id, asked.reason) == ("slow", "w1", "timeout")

        await world.clock.advance(1.0)
        assert record.state is JobState.ABANDONED
        assert worker.detached
        assert worker.job is None
        assert world.runner.abandoned == 1
        assert world.slots.replaced == [("w1", "slow")]
        assert world.shutdown.ended == 1
        assert world.ledger.balanced()

    async def test_a_job_that_stops_within_its_grace_times_out_and_is_not_abandoned(
        self,
    ) -> None:
        world = World(cancel_grace=1.0)
        worker, record, _ = world.begun(Job(timeout=2.0))
        await world.clock.advance(2.0)
        world.attempts.end(worker, record, None, asyncio.CancelledError())

        assert record.state is JobState.TIMED_OUT
        assert world.clock.pending() == 0  # the abandon timer went with the attempt
        await world.clock.advance(5.0)
        assert world.runner.abandoned == 0
        assert world.slots.replaced == []


class TestCancelling:
    async def test_the_shutdowns_cancel_sets_no_abandon_timer(self) -> None:
        world = World()
        worker, record, _ = world.begun(Job())
        world.attempts.cancel_for_shutdown(worker, record)

        assert record.cancel_reason is CancelReason.SHUTDOWN
        assert worker.abandon_timer is None
        assert world.runner.cancelled == 1

    async def test_a_second_request_and_one_for_another_job_change_nothing(self) -> None:
        world = World()
        worker, record, _ = world.begun(Job())
        world.attempts.request_cancel(worker, record, CancelReason.CANCEL)
        world.attempts.request_cancel(worker, record, CancelReason.TIMEOUT)
        world.attempts.request_cancel(worker, JobRecord(Job(), 0.0), CancelReason.CANCEL)

        assert record.cancel_reason is CancelReason.CANCEL
        assert world.runner.cancelled == 1
        assert len(world.told(events.JobCancelRequested)) == 1

    async def test_abandon_after_the_job_ended_changes_nothing(self) -> None:
        world = World()
        worker, record, _ = world.begun(Job())
        world.attempts.end(worker, record, "done", None)
        world.attempts.abandon(worker, record)

        assert record.state is JobState.SUCCEEDED
        assert not worker.detached
        assert world.slots.replaced == []
        assert world.runner.abandoned == 0

    async def test_a_queued_job_cancelled_leaves_the_queue_and_the_shutdown_is_told(
        self,
    ) -> None:
        world = World()
        record = world.ledger.accept(Job(id="q"), 0.0, "", world.queue.put)
        assert world.queue.ready == 1

        assert world.attempts.cancel(record)
        assert world.queue.ready == 0
        assert record.state is JobState.CANCELLED
        assert world.shutdown.ended == 1
        assert not world.attempts.cancel(record)  # ended: nothing to cancel


class TestRetries:
    async def test_a_failed_attempt_is_queued_again_after_its_delay(self) -> None:
        world = World(retry=RetryPolicy(max_attempts=2, backoff=0.5, jitter=0.0))
        worker, record, _ = world.begun(Job())
        world.attempts.end(worker, record, None, ValueError("boom"))
        assert record.state is JobState.QUEUED
        assert world.queue.ready == 0

        await world.clock.advance(0.5)
        assert world.queue.ready == 1
        assert record.queued_at == 0.5

    async def test_a_retry_cancelled_while_it_waits_is_never_queued(self) -> None:
        world = World(retry=RetryPolicy(max_attempts=2, backoff=0.5, jitter=0.0))
        worker, record, _ = world.begun(Job())
        world.attempts.end(worker, record, None, ValueError("boom"))
        assert world.attempts.cancel(record)

        await world.clock.advance(1.0)
        assert world.queue.ready == 0
        assert record.state is JobState.CANCELLED
        assert world.ledger.balanced()

    async def test_once_the_shutdown_cancels_a_failed_job_is_not_retried(self) -> None:
        world = World(retry=RetryPolicy(max_attempts=3, backoff=0.5, jitter=0.0))
        worker, record, _ = world.begun(Job())
        world.phase = PoolPhase.CANCELLING
        world.attempts.end(worker, record, None, ValueError("boom"))

        assert record.state is JobState.FAILED
        assert world.clock.pending() == 0

    async def test_a_job_whose_worker_died_before_it_began_waits_again_unattempted(
        self,
    ) -> None:
        world = World()
        worker, record, _ = world.begun(Job())
        world.attempts.lose(worker, record, WorkerDied("its process died", job_began=False))

        assert record.state is JobState.QUEUED
        assert record.attempt == 0
        assert world.queue.ready == 1
        assert world.shutdown.ended == 1
        assert world.ledger.balanced()

    async def test_a_worker_that_died_under_a_job_fails_it_naming_the_worker(self) -> None:
        world = World()
        worker, record, _ = world.begun(Job())
        died = WorkerDied("thread w1 died")
        died.__cause__ = RuntimeError("out of luck")
        world.attempts.lose(worker, record, died)

        assert record.state is JobState.FAILED
        assert record.error is not None
        assert record.error.message == "worker w1 crashed: out of luck"


class TestReports:
    async def test_output_once_the_pool_has_stopped_is_dropped(self) -> None:
        world = World()
        _, record, _ = world.begun(Job())
        world.phase = PoolPhase.STOPPED
        world.attempts.output(record, 1, "w1", "tail", 0, None)
        assert record.output is None

        world.phase = PoolPhase.RUNNING
        world.attempts.output(record, 1, "w1", "tail", 0, None)
        assert record.output is not None
        assert record.output.output == "tail"
