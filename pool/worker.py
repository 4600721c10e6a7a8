"""A worker: one slot of the pool, taking jobs one at a time."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .job import JobRecord
from .runners import CoroutineRunner, Runner

if TYPE_CHECKING:
    from .clock import Timer
    from .job import JobContext

__all__ = ("Worker", "WorkerInfo", "WorkerState")

Take = Callable[["Worker"], Awaitable["JobRecord | None"]]
"""The pool's way to give a worker its next job (None: exit)."""
Begin = Callable[["Worker", JobRecord], "JobContext"]
"""The pool's way to start an attempt on a worker."""
End = Callable[["Worker", JobRecord, object, "BaseException | None"], None]
"""The pool's way to account for an attempt's end."""


class WorkerState(enum.Enum):
    """What a worker slot is doing."""

    IDLE = "idle"
    """Waiting for a job."""
    BUSY = "busy"
    """Running a job."""
    RETIRING = "retiring"
    """Running its last job: the pool is shrinking and it exits after this one."""
    CRASHED = "crashed"
    """Its loop or thread died and it will not be restarted (the pool gave up on it)."""
    RESTARTING = "restarting"
    """It crashed and waits out its backoff before it restarts."""
    STOPPED = "stopped"
    """It exited: the pool shut down."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInfo:
    """One worker slot as seen in a snapshot.

    Attributes:
        id: The slot's id (``w1``, ``w2``...), stable across restarts.
        state: What it is doing.
        job_id: The job it runs, if any.
        job_started_at: The pool clock's time when that job's attempt started.
        attempt: That job's attempt number.
        progress: The fraction that job last reported, if it did.
        progress_message: The note that came with it.
        jobs_done: Jobs that succeeded on this slot.
        jobs_failed: Attempts that failed or timed out on this slot.
        restarts: Times this slot was restarted after a crash.
    """

    id: str
    state: WorkerState
    job_id: str | None
    job_started_at: float | None
    attempt: int | None
    progress: float | None
    progress_message: str
    jobs_done: int
    jobs_failed: int
    restarts: int


class Worker:
    """One live worker: the task that runs the loop, and the runner that runs jobs.

    A slot outlives its workers: after a crash, or when a job is abandoned, a
    new :class:`Worker` takes the same id and carries the counts on.
    """

    __slots__ = (
        "_fate",
        "abandon_timer",
        "cancels",
        "deadline_timer",
        "detached",
        "id",
        "job",
        "jobs_done",
        "jobs_failed",
        "ready",
        "restarts",
        "retiring",
        "runner",
        "task",
        "wake",
    )

    def __init__(
        self,
        worker_id: str,
        runner: Runner,
        ready: asyncio.Future[None],
        *,
        restarts: int = 0,
        jobs_done: int = 0,
        jobs_failed: int = 0,
    ) -> None:
        self.id = worker_id
        self.runner = runner
        self.ready = ready
        self.task: asyncio.Task[None] | None = None
        self.job: JobRecord | None = None
        self.wake: asyncio.Future[JobRecord | None] | None = None
        self.deadline_timer: Timer | None = None
        self.abandon_timer: Timer | None = None
        self.cancels = 0
        self.retiring = False
        self.detached = False
        self._fate: WorkerState | None = None  # restarting, stopped or crashed: no loop runs
        self.restarts = restarts
        self.jobs_done = jobs_done
        self.jobs_failed = jobs_failed

    @property
    def state(self) -> WorkerState:
        """The slot's state, as the dashboard shows it."""
        if self._fate is not None:
            return self._fate
        if self.retiring:
            return WorkerState.RETIRING
        return WorkerState.BUSY if self.job is not None else WorkerState.IDLE

    @property
    def live(self) -> bool:
        """Whether its loop runs (it is idle, busy or retiring)."""
        return self._fate is None

    def stop(self) -> None:
        """It exited (or will not restart) because the pool stops or shrinks."""
        self._fate = WorkerState.STOPPED

    def give_up(self) -> None:
        """It crashed and will not be restarted."""
        self._fate = WorkerState.CRASHED

    def wait_restart(self) -> None:
        """It crashed and waits out its backoff before a new worker takes its slot."""
        self._fate = WorkerState.RESTARTING

    def info(self) -> WorkerInfo:
        """This worker as a frozen record."""
        job = self.job
        progress = job.progress if job is not None else None
        return WorkerInfo(
            id=self.id,
            state=self.state,
            job_id=job.job.id if job is not None else None,
            job_started_at=job.started_at if job is not None else None,
            attempt=job.attempt if job is not None else None,
            progress=progress[0] if progress is not None else None,
            progress_message=progress[1] if progress is not None else "",
            jobs_done=self.jobs_done,
            jobs_failed=self.jobs_failed,
            restarts=self.restarts,
        )

    def clear_timers(self) -> None:
        """Call off the current job's deadline and abandonment timers."""
        if self.deadline_timer is not None:
            self.deadline_timer.cancel()
            self.deadline_timer = None
        if self.abandon_timer is not None:
            self.abandon_timer.cancel()
            self.abandon_timer = None

    def take_back_cancels(self) -> bool:
        """Undo the task cancellations the pool made for the job that just ended.

        Returns:
            True if the task is still being cancelled by someone else.
        """
        task = self.task
        assert task is not None
        while self.cancels:
            self.cancels -= 1
            task.uncancel()
        return task.cancelling() > 0

    async def run(self, take: Take, begin: Begin, end: End) -> None:
        """Take jobs and run them until retired, stopped or detached.

        The pool says how: ``take(worker)`` is the next job (None: exit),
        ``begin(worker, job)`` starts an attempt and gives its context, and
        ``end(worker, job, result, exc)`` accounts for the attempt's end.
        """
        # An async handler is awaited directly: one coroutine frame less per job.
        run = runner.fn if isinstance(runner := self.runner, CoroutineRunner) else runner.run
        # Not ``self.task``: under an eager task factory this runs inside
        # ``create_task``, before the pool has been handed the task.
        task = self.task = asyncio.current_task()
        assert task is not None
        await runner.wait_ready()  # a child process loads the handler first
        while True:
            handle = await take(self)
            if handle is None:
                return
            ctx = begin(self, handle)
            try:
                result = await run(handle.job, ctx)
            except asyncio.CancelledError as exc:
                if self.detached or self.take_back_cancels():
                    # Not (only) the pool's own cancellation of the job: the task
                    # itself is being cancelled, and must end cancelled.
                    raise
                end(self, handle, None, exc)
            except (Exception, SystemExit, KeyboardInterrupt) as exc:
                # A job that raises SystemExit or KeyboardInterrupt fails like
                # any other: out of a task, asyncio would let them end the program.
                if self.detached:
                    return  # the job was abandoned and accounted for; its late error has no reader
                external = self.take_back_cancels()
                end(self, handle, None, exc)
                if external:
                    raise asyncio.CancelledError from exc
            else:
                if self.detached:
                    return
                # Most jobs were never cancelled: then only an outside cancel can be pending.
                external = self.take_back_cancels() if self.cancels else task.cancelling() > 0
                end(self, handle, result, None)
                if external:
                    raise asyncio.CancelledError
            # Any other BaseException (the runner's WorkerDied: its thread or
            # process died) leaves the loop: the pool sees the task fail and
            # treats it as a crash of this worker, with ``self.job`` still set.

    def __repr__(self) -> str:
        job = f" job={self.job.job.id!r}" if self.job is not None else ""
        return f"<Worker {self.id} [{self.state.value}]{job}>"
