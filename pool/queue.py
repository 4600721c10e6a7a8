"""Intake: the bounded queue of ready jobs, the submitters waiting for room, and the
idle workers waiting for a job, with the hand-off between them.

The queue owns this state alone (as trio's ``MemoryChannelState`` is kept
apart from the channel's endpoints): the pool submits to it, workers take
from it, and the ledger says which jobs are still queued. A job handed to an
idle worker never enters the deque. A cancelled job stays in the deque until
it is reached, and is skipped then; it no longer takes room.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from .job import JobRecord, JobState

if TYPE_CHECKING:
    from .clock import Clock
    from .worker import Worker

__all__ = ("JobQueue",)

_QUEUED = JobState.QUEUED


class JobQueue:
    """Ready jobs up to ``capacity``, and who waits on either side of them."""

    __slots__ = ("_capacity", "_held", "_idle", "_jobs", "_putters", "_ready", "_stopped")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._jobs: deque[JobRecord] = deque()  # may hold cancelled jobs: skipped
        self._ready = 0  # queued jobs in ``_jobs``: what the capacity bounds
        self._putters: deque[asyncio.Future[None]] = deque()
        self._idle: deque[Worker] = deque()
        self._held = False
        self._stopped = False

    # --- reading --------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """How many ready jobs it holds at most."""
        return self._capacity

    @property
    def ready(self) -> int:
        """How many jobs wait in it for a worker."""
        return self._ready

    @property
    def held(self) -> bool:
        """Whether workers take nothing from it (the pool is paused)."""
        return self._held

    @property
    def stopped(self) -> bool:
        """Whether it hands out no more jobs: every worker that asks is told to exit."""
        return self._stopped

    def full(self) -> bool:
        """Whether a new job would have to wait for room."""
        return self._ready >= self._capacity

    def oldest_wait(self, now: float) -> float:
        """Seconds the oldest ready job has waited (0.0 when none waits); changes nothing."""
        for record in self._jobs:
            if record.state is _QUEUED:
                return now - record.queued_at
        return 0.0

    # --- submitters -------------------------------------------------------------

    async def wait_for_room(
        self,
        clock: Clock,
        limit: float | None,
        give_up: Callable[[], object],
        recheck: Callable[[], object],
    ) -> None:
        """Wait until there is room, or ``limit`` seconds pass (then ``give_up()``, which raises).

        ``recheck()`` runs after every wake-up and raises if the job may no
        longer be queued (the pool closed, its id was taken): the room it was
        handed then passes to the next submitter. Cancellation-safe.
        """
        deadline = None if limit is None else clock.now() + limit
        loop = asyncio.get_running_loop()
        while self._ready >= self._capacity:
            remaining = None if deadline is None else deadline - clock.now()
            if remaining is not None and remaining <= 0:
                give_up()
            fut: asyncio.Future[None] = loop.create_future()
            self._putters.append(fut)
            timer = None
            if remaining is not None:
                timer = clock.call_later(remaining, functools.partial(_set_none, fut))
            try:
                await fut
            except BaseException:
                # Cancelled: if a slot was handed to us, pass it to the next waiter.
                if fut.done() and not fut.cancelled():
                    self._wake_putter()
                else:
                    fut.cancel()
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            try:
                recheck()
            except BaseException:
                if self._ready < self._capacity:
                    self._wake_putter()
                raise

    def wake_all_putters(self) -> None:
        """Wake every waiting submitter (they find the pool closed)."""
        while self._putters:
            self._wake_putter()

    def _wake_putter(self) -> None:
        putters = self._putters
        while putters:
            fut = putters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    # --- jobs -------------------------------------------------------------------

    def put(self, record: JobRecord) -> None:
        """Give a queued job to an idle worker if one waits, else keep it.

        The bound is the submitter's to respect (:meth:`full`): a retry is put
        back whatever the room, as it was accepted already.
        """
        if self._idle and not self._held:
            wake = self._next_wake()
            if wake is not None:
                wake.set_result(record)
                return
        self._jobs.append(record)
        self._ready += 1

    def discard(self, record: JobRecord) -> None:
        """A queued job is being cancelled: it no longer takes room (it is skipped later).

        Called before the ledger ends it (while it is still queued); once it
        has ended, or if it was never in the queue, nothing changes.
        """
        if record.state is _QUEUED and record in self._jobs:
            self._ready -= 1
            if self._putters:
                self._wake_putter()

    def _next_wake(self) -> asyncio.Future[JobRecord | None] | None:
        """The wake of the idle worker that has waited longest and still waits.

        Taken out of the line; those that stopped waiting are dropped from it.
        """
        idle = self._idle
        while idle:
            wake = idle.popleft().wake
            if wake is not None and not wake.done():
                return wake
        return None

    def _pop_ready(self) -> JobRecord | None:
        jobs = self._jobs
        while jobs:
            record = jobs.popleft()
            if record.state is _QUEUED:
                self._ready -= 1
                if self._putters:
                    self._wake_putter()
                return record
        return None

    # --- workers ----------------------------------------------------------------

    async def take(self, worker: Worker) -> JobRecord | None:
        """The next job for ``worker``, waiting for one; None when it should exit."""
        ready = worker.ready
        if not ready.done():
            ready.set_result(None)
        while True:
            if worker.retiring or self._stopped:
                return None
            if not self._held and self._ready:
                record = self._pop_ready()
                if record is not None:
                    return record
            wake: asyncio.Future[JobRecord | None] = asyncio.get_running_loop().create_future()
            worker.wake = wake
            self._idle.append(worker)
            try:
                record = await wake
            except BaseException:
                if worker in self._idle:
                    self._idle.remove(worker)
                if wake.done() and not wake.cancelled():
                    given = wake.result()
                    if given is not None and given.state is _QUEUED:
                        # The job was this worker's: the next one gets it, else it is
                        # the queue's first again.
                        other = None if self._held else self._next_wake()
                        if other is not None:
                            other.set_result(given)
                        else:
                            self._jobs.appendleft(given)
                            self._ready += 1
                raise
            finally:
                worker.wake = None
            if record is not None and record.state is _QUEUED:
                return record

    def hold(self) -> None:
        """Workers take nothing until :meth:`release` (pause)."""
        self._held = True

    def release(self) -> None:
        """Workers take jobs again: the idle ones get the ready jobs at once."""
        self._held = False
        while self._ready:
            wake = self._next_wake()
            if wake is None:
                break  # the jobs left keep their places
            record = self._pop_ready()
            assert record is not None  # ``_ready`` counts the queued jobs in the deque
            wake.set_result(record)

    def dismiss(self, worker: Worker) -> None:
        """``worker`` retires: if it waits for a job, it wakes, sees so and exits now."""
        if worker in self._idle:
            self._idle.remove(worker)
        wake = worker.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def forget(self, worker: Worker) -> None:
        """``worker`` is gone: it no longer waits for a job."""
        if worker in self._idle:
            self._idle.remove(worker)

    def stop(self) -> None:
        """Hand out no more jobs: every idle worker, and any that asks later, exits."""
        self._stopped = True
        while self._idle:
            wake = self._idle.popleft().wake
            if wake is not None and not wake.done():
                wake.set_result(None)


def _set_none(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
