"""A Hypothesis state machine that drives ``pool.queue.JobQueue`` on its own.

It puts jobs, cancels queued ones, has workers take (and their waits be
cancelled, even just after a job was handed to them), holds and releases,
and retires workers, against a model of what the queue must do: jobs leave
first in, first out, a job put while a worker waits goes to the worker that
has waited longest, nothing is handed out while held, no job is given twice
or lost, and the ready count is the model's after every step.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pool import Job, JobState
from pool.job import JobRecord
from pool.queue import JobQueue
from tests.helpers import settle
from tests.pool.test_queue import Taker

WORKERS = 3


class QueueMachine(RuleBasedStateMachine):
    """The queue, and the model it must agree with after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.queue = JobQueue(1)
        self.capacity = 1
        self.workers: list[Any] = [Taker(self.loop) for _ in range(WORKERS)]
        self.taking: dict[int, asyncio.Task[JobRecord | None]] = {}
        # The model.
        self.ready: list[JobRecord] = []  # queued, not handed out: the order they must leave in
        self.idle: list[int] = []  # workers waiting for a job, longest first
        self.held = False
        self.expect: dict[int, JobRecord | None] = {}  # what each waiting worker must get
        self.given: list[JobRecord] = []
        self.cancelled: list[JobRecord] = []
        self.made = 0

    def teardown(self) -> None:
        for task in self.taking.values():
            task.cancel()
        self.run(settle())
        self.loop.close()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    # --- the model's moves --------------------------------------------------------

    def _hand_out(self) -> None:
        """What the queue does while not held: idle workers get ready jobs, in order."""
        while not self.held and self.idle and self.ready:
            self.expect[self.idle.pop(0)] = self.ready.pop(0)

    def _collect(self) -> None:
        """Let the loop run; every take that ended must have given what the model says."""
        self.run(settle())
        for index, task in list(self.taking.items()):
            if not task.done():
                continue
            del self.taking[index]
            got = task.result()
            assert index in self.expect, f"worker {index} got {got!r} while it should wait"
            assert got is self.expect.pop(index)
            if got is not None:
                assert got not in self.given, f"{got.job.id} was given twice"
                self.given.append(got)
                got.state = JobState.RUNNING  # as the pool begins it

    # --- rules ----------------------------------------------------------------------

    @initialize(capacity=st.integers(1, 4))
    def make(self, capacity: int) -> None:
        self.capacity = capacity
        self.queue = JobQueue(capacity)

    @rule(retry=st.booleans())
    def put(self, retry: bool) -> None:
        # A submitter puts only while there is room; a retry goes in whatever the room.
        if self.queue.full() and not retry:
            return
        job = self._new_job()
        self.queue.put(job)
        self.ready.append(job)
        self._hand_out()
        self._collect()

    @rule(worker=st.integers(0, WORKERS - 1))
    def take(self, worker: int) -> None:
        if worker in self.taking or self.workers[worker].retiring:
            return
        self.taking[worker] = self.loop.create_task(self.queue.take(self.workers[worker]))
        self.idle.append(worker)
        self._hand_out()
        self._collect()

    @rule(pick=st.integers(0, 20))
    def cancel_queued(self, pick: int) -> None:
        if not self.ready:
            return
        job = self.ready.pop(pick % len(self.ready))
        self.queue.discard(job)
        job.state = JobState.CANCELLED  # as the ledger then ends it
        self.cancelled.append(job)
        self._collect()

    @rule(worker=st.integers(0, WORKERS - 1))
    def cancel_a_wait(self, worker: int) -> None:
        task = self.taking.get(worker)
        if task is None:
            return
        task.cancel()
        self.run(settle())
        del self.taking[worker]
        self.idle.remove(worker)  # every step settles: a handed wait has ended already
        self._collect()

    @precondition(lambda self: self.idle)
    @rule(pick=st.integers(0, 20), release=st.booleans())
    def cancel_a_wait_then_move_before_it_runs(self, pick: int, release: bool) -> None:
        """A worker's wait is cancelled and, before that worker has run (it is
        still in the queue's line), the queue is released or a job is put: it
        is passed over, and the jobs keep their order."""
        worker = self.idle.pop(pick % len(self.idle))
        self.taking.pop(worker).cancel()
        if release:
            self.queue.release()
            self.held = False
        else:
            job = self._new_job()
            self.queue.put(job)  # whatever the room, as a retry does
            self.ready.append(job)
        self._hand_out()
        self._collect()

    @precondition(lambda self: self.idle and not self.held and not self.ready)
    @rule(more=st.integers(0, 3), hold=st.booleans())
    def cancel_a_wait_just_after_it_was_handed_a_job(self, more: int, hold: bool) -> None:
        """A job is handed to the longest-waiting worker, whose wait is cancelled
        before it ran; meanwhile ``more`` jobs came (to other idle workers, else to
        the queue) and, with ``hold``, the pool paused. The handed job must go to
        the next idle worker or to the front of the queue."""
        first = self._new_job()
        self.queue.put(first)
        worker = self.idle.pop(0)
        for _ in range(more):
            job = self._new_job()
            self.queue.put(job)  # whatever the room, as a retry does
            self.ready.append(job)
            self._hand_out()
        if hold:
            self.queue.hold()
            self.held = True
        self.taking.pop(worker).cancel()  # it has not run: the job is in its wake
        self.ready.insert(0, first)
        self._hand_out()
        self._collect()

    def _new_job(self) -> JobRecord:
        self.made += 1
        return JobRecord(Job(id=f"j{self.made}"), float(self.made))

    @rule()
    def hold(self) -> None:
        self.queue.hold()
        self.held = True
        self._collect()

    @rule()
    def release(self) -> None:
        self.queue.release()
        self.held = False
        self._hand_out()
        self._collect()

    @rule(worker=st.integers(0, WORKERS - 1))
    def retire(self, worker: int) -> None:
        taker = self.workers[worker]
        if taker.retiring:
            return
        taker.retiring = True
        self.queue.dismiss(taker)
        if worker in self.idle:
            self.idle.remove(worker)
            self.expect[worker] = None  # it wakes with nothing and exits
        self._collect()

    # --- what must hold after every step --------------------------------------------

    @invariant()
    def the_ready_count_and_the_bound_are_the_models(self) -> None:
        assert self.queue.ready == len(self.ready)
        assert self.queue.full() == (len(self.ready) >= self.capacity)
        assert self.queue.held == self.held

    @invariant()
    def the_oldest_ready_job_is_the_models_first(self) -> None:
        now = 100.0
        head = now - self.ready[0].queued_at if self.ready else 0.0
        assert self.queue.oldest_wait(now) == head

    @invariant()
    def no_job_is_lost(self) -> None:
        handed = [job for job in self.expect.values() if job is not None]
        seen = self.given + self.ready + self.cancelled + handed
        assert len(seen) == self.made
        assert len({id(job) for job in seen}) == self.made


def test_random_puts_takes_cancels_and_pauses_keep_the_order_and_lose_nothing() -> None:
    run_state_machine_as_test(
        QueueMachine,
        settings=settings(
            max_examples=300,
            stateful_step_count=40,
            deadline=None,
            derandomize=True,
            database=None,
        ),
    )
