"""A pool in this process: the demo's, or ``wpool-tui run``'s."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pool import (
    DeadLetter,
    Job,
    JobHandle,
    JobState,
    Pool,
    PoolClosed,
    PoolSnapshot,
    QueueFull,
    ShutdownReport,
    Subscription,
)

from .base import Control, JobView, Source, SourceError

__all__ = ("LocalSource",)


class LocalSource(Source):
    """A :class:`~pool.Pool` of this process, driven directly.

    Args:
        pool: The pool (started by :meth:`start` if it is not yet).
        make_job: What the add dialog submits; without it, no adding.
        find_job: Finds any job of a batch by id, ended ones included.
        resubmit: Runs a failed job again in the batch's stead (its account).
        title: What the header names (default: the pool's name).
    """

    def __init__(
        self,
        pool: Pool,
        *,
        make_job: Callable[[], Job] | None = None,
        find_job: Callable[[str], JobHandle | None] | None = None,
        resubmit: Callable[[str], Awaitable[JobHandle]] | None = None,
        title: str | None = None,
    ) -> None:
        self.pool = pool
        self._make_job = make_job
        self._find_job = find_job
        self._resubmit = resubmit or pool.resubmit
        self._title = pool.name if title is None else title
        controls = {
            Control.RESIZE,
            Control.PAUSE,
            Control.SHUTDOWN,
            Control.RESUBMIT,
            Control.CANCEL,
        }
        if make_job is not None:
            controls.add(Control.ADD_JOBS)
        self.controls = frozenset(controls)
        self._stopping: list[asyncio.Task[ShutdownReport]] = []

    @property
    def title(self) -> str:
        return self._title

    @property
    def max_workers(self) -> int:
        return self.pool.max_workers

    @property
    def grace(self) -> float:
        return self.pool.grace

    @property
    def cancel_grace(self) -> float:
        return self.pool.cancel_grace

    def now(self) -> float:
        """The pool's clock."""
        return self.pool.clock.now()

    async def start(self) -> None:
        if self.pool.phase.value == "created":
            await self.pool.start()

    def snapshot(self) -> PoolSnapshot:
        return self.pool.snapshot()

    def events(self, maxsize: int) -> Subscription:
        return self.pool.events(maxsize=maxsize)

    async def add_jobs(self, count: int, payload: str | None = None) -> int:
        """Submit ``count`` jobs that ``make_job`` makes (``payload`` is not used)."""
        make_job = self._make_job
        if make_job is None:
            raise SourceError("this pool has no jobs to add")
        added = 0
        try:
            for _ in range(count):
                self.pool.submit_nowait(make_job())
                added += 1
        except QueueFull:
            raise SourceError(f"queue full: added {added} of {count}") from None
        except PoolClosed as exc:
            raise SourceError(str(exc)) from None
        return added

    async def resize(self, workers: int) -> None:
        await self.pool.resize(workers)

    async def pause(self) -> None:
        await self.pool.pause()

    async def resume(self) -> None:
        await self.pool.resume()

    async def shutdown(self, grace: float | None, drain: bool, cancel_grace: float | None) -> None:
        # Pool.shutdown returns only with the report: it runs on in a task of
        # its own (a second call skips ahead), and wait_stopped() gives the report.
        task = asyncio.ensure_future(
            self.pool.shutdown(grace=grace, drain=drain, cancel_grace=cancel_grace)
        )
        self._stopping.append(task)
        task.add_done_callback(self._stopping.remove)
        await asyncio.sleep(0)  # let it begin: the pool closes its intake
        if task.done():
            task.result()  # a bad argument: raised here, to the caller

    async def wait_stopped(self) -> ShutdownReport:
        return await self.pool.wait_stopped()

    async def resubmit(self, job_id: str) -> None:
        await self._resubmit(job_id)

    async def cancel(self, job_id: str) -> bool:
        handle = self.pool.job(job_id)
        return handle is not None and handle.cancel()

    async def dead_letters(self) -> tuple[DeadLetter, ...]:
        return self.pool.dead_letters()

    async def job(self, job_id: str) -> JobView | None:
        handle = self.pool.job(job_id)
        if handle is None and self._find_job is not None:
            handle = self._find_job(job_id)
        if handle is not None:
            succeeded = handle.state is JobState.SUCCEEDED
            return JobView(
                job=handle.job,
                state=handle.state.value,
                attempts=handle.attempts,
                worker_id=handle.worker_id,
                started_at=handle.started_at,
                ended_at=handle.ended_at,
                error=handle.error,
                output=handle.output,
                result=handle.result() if succeeded else None,
                has_result=succeeded,
            )
        for letter in reversed(self.pool.dead_letters()):
            if letter.job.id == job_id:
                return JobView(
                    job=letter.job,
                    state=letter.state.value,
                    attempts=letter.attempts,
                    error=letter.error,
                )
        return None

    def describe(self, job: Job) -> str:
        return self.pool.describe(job)

    async def close(self) -> None:
        """Nothing to let go of: the program that made the pool stops it."""
