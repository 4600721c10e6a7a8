"""Running jobs: an attempt's beginning and deadline, its end, cancellation and abandonment.

The pool's workers call :meth:`Attempts.begin` and :meth:`Attempts.end`
around every handler call (the supervisor calls :meth:`Attempts.lose` for
the job of a worker that died). Each of them asks the ledger to record the
move, and does what the move needs beyond the account: the deadline's
timer, a retry's timer, the cancellation of a handler, a fresh worker in
place of one that held an abandoned job, and telling a waiting shutdown
that a job has ended. A job's :class:`~pool.job.JobContext` and
:class:`~pool.job.JobHandle` reach this module through :attr:`Attempts.port`.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import events as ev
from .bus import EventBus
from .clock import Clock
from .job import CancelReason, JobContext, JobRecord, JobState
from .ledger import Ledger, crash_error
from .phase import PoolPhase
from .queue import JobQueue
from .runners import WorkerDied
from .worker import Worker

if TYPE_CHECKING:
    from .shutdown import Shutdown
    from .supervisor import Supervisor

__all__ = ("Attempts", "Port")

_QUEUED = JobState.QUEUED
_RUNNING = JobState.RUNNING
_NO_RETRY = (PoolPhase.CANCELLING, PoolPhase.FORCING)


class Attempts:
    """Every attempt's course, from its worker's first call to the account of its end."""

    __slots__ = (
        "_bus",
        "_cancel_grace",
        "_clock",
        "_job_timeout",
        "_ledger",
        "_now",
        "_phase",
        "_put",
        "_queue",
        "_shutdown",
        "_supervisor",
        "port",
    )

    def __init__(
        self,
        *,
        clock: Clock,
        ledger: Ledger,
        queue: JobQueue,
        bus: EventBus,
        job_timeout: float | None,
        cancel_grace: float,
        phase: Callable[[], PoolPhase],
    ) -> None:
        self._clock = clock
        self._now = clock.now
        self._ledger = ledger
        self._queue = queue
        self._put = queue.put
        self._bus = bus
        self._job_timeout = job_timeout
        self._cancel_grace = cancel_grace
        self._phase = phase
        self.port = Port(self.progress, self.output, self.cancel)
        """How the jobs' contexts and handles reach the pool."""
        self._supervisor: Supervisor
        self._shutdown: Shutdown

    def connect(self, supervisor: Supervisor, shutdown: Shutdown) -> None:
        """The parts made after this one, that it calls: a worker's slot, a waiting shutdown."""
        self._supervisor = supervisor
        self._shutdown = shutdown

    # --- a worker's calls -----------------------------------------------------

    def begin(self, worker: Worker, record: JobRecord) -> JobContext:
        """``worker`` begins an attempt at ``record``'s job: its context, its deadline's timer."""
        now = self._now()
        worker.job = record
        self._ledger.begin(record, worker, worker.id, now)
        timeout = record.job.timeout or self._job_timeout
        deadline = None
        if timeout is not None:
            deadline = now + timeout
            worker.deadline_timer = self._clock.call_later(
                timeout,
                functools.partial(self.request_cancel, worker, record, CancelReason.TIMEOUT),
            )
        return JobContext(record.job, worker.id, record.attempt, deadline, record, self.port)

    def end(
        self, worker: Worker, record: JobRecord, result: object, exc: BaseException | None
    ) -> None:
        """Account for the end of an attempt that ran on ``worker``."""
        now = self._now()
        if worker.deadline_timer is not None or worker.abandon_timer is not None:
            worker.clear_timers()
        worker.job = None
        if record.cancel_reason is None and exc is None:
            worker.jobs_done += 1
            self._ledger.succeed(record, worker.id, result, now)
        else:
            self._settle(worker, record, now, exc, measured=True)
        if self._shutdown.waiting:  # only a shutdown waits for the pool to settle
            self._shutdown.job_ended()

    def lose(self, worker: Worker, record: JobRecord, crash: BaseException | None) -> None:
        """End the attempt a dead worker held: failed or retried after a crash, else cancelled."""
        worker.clear_timers()
        worker.job = None
        self._settle(worker, record, self._now(), crash, measured=False, crashed=True)
        self._shutdown.job_ended()

    def _settle(
        self,
        worker: Worker,
        record: JobRecord,
        now: float,
        exc: BaseException | None,
        *,
        measured: bool,
        crashed: bool = False,
    ) -> None:
        """An attempt ended other than by success: failed, retried, timed out or cancelled.

        ``exc`` is what the handler raised or, when ``crashed``, what killed
        its worker (None when its task was cancelled from outside).
        """
        ledger = self._ledger
        reason = record.cancel_reason
        delay = None
        if (
            crashed
            and reason is None
            and isinstance(exc, WorkerDied)
            and not exc.job_began
            and self._may_retry()
        ):
            # The job never began: no attempt was made, so it waits for another worker.
            worker.jobs_failed += 1  # as the dashboard counts a crash under a job
            ledger.hand_back_unstarted(record, worker.id, exc, now)
            self._put(record)
            return
        if reason is None and exc is not None:
            worker.jobs_failed += 1
            info = crash_error(exc, worker.id) if crashed else None
            delay = ledger.fail(
                record,
                worker.id,
                exc,
                now,
                may_retry=self._may_retry(),
                info=info,
                measured=measured,
            )
        elif reason is CancelReason.TIMEOUT:
            worker.jobs_failed += 1
            may_retry = not crashed and self._may_retry()
            delay = ledger.time_out(record, worker.id, now, may_retry=may_retry, measured=measured)
        else:
            ledger.cancel_running(record, worker.id, now, measured)
        if delay is not None:
            record.retry_timer = self._clock.call_later(
                delay, functools.partial(self._requeue, record)
            )

    def _may_retry(self) -> bool:
        # Once the shutdown cancels, nothing new may be queued: it would never run.
        phase = self._phase()
        return phase not in _NO_RETRY and not phase.is_final

    def _requeue(self, record: JobRecord) -> None:
        record.retry_timer = None
        if record.state is not _QUEUED:
            return
        record.queued_at = self._now()
        # Retries skip the bound: they were accepted already, and a full queue
        # must not make an accepted job wait on new ones.
        self._put(record)

    # --- a handler's reports (through the port) ---------------------------------

    def progress(self, record: JobRecord, attempt: int, fraction: float, message: str) -> None:
        """Note an attempt's progress (on the loop; see :meth:`Port.progress`)."""
        self._ledger.progress(record, attempt, fraction, message, self._now())

    def output(
        self,
        record: JobRecord,
        attempt: int,
        worker_id: str,
        output: str,
        exit_code: int | None,
        path: str | None,
    ) -> None:
        """Keep what an attempt's process left (on the loop; see :meth:`Port.output`)."""
        if self._phase().is_final:
            return  # PoolStopped has been told
        self._ledger.output(record, attempt, worker_id, output, exit_code, path, self._now())

    # --- cancelling -------------------------------------------------------------

    def cancel(self, record: JobRecord) -> bool:
        """Cancel a job by request of its handle; see :meth:`JobHandle.cancel`."""
        state = record.state
        if state is _QUEUED:
            self._cancel_queued(record, self._now())
            self._shutdown.job_ended()
            return True
        if state is _RUNNING and record.cancel_reason is None:
            worker = record.worker
            assert isinstance(worker, Worker)
            self.request_cancel(worker, record, CancelReason.CANCEL)
            return True
        return False

    def hand_back_queued(self) -> None:
        """Cancel every queued job (a shutdown that does not drain, or has stopped waiting)."""
        now = self._now()
        for record in self._ledger.live():
            if record.state is _QUEUED:
                self._cancel_queued(record, now)

    def _cancel_queued(self, record: JobRecord, now: float) -> None:
        timer = record.retry_timer
        if timer is not None:
            timer.cancel()
            record.retry_timer = None
        else:
            self._queue.discard(record)
        self._ledger.cancel_queued(record, now)

    def request_cancel(self, worker: Worker, record: JobRecord, reason: CancelReason) -> None:
        """Ask the handler running ``record`` on ``worker`` to stop.

        Unless the shutdown asks (it abandons on its own schedule), the job
        is abandoned if it has not stopped within the pool's ``cancel_grace``.
        """
        if worker.job is not record or record.cancel_reason is not None:
            return
        record.cancel_reason = reason
        if record.cancelled_attempts is None:
            record.cancelled_attempts = set()
        record.cancelled_attempts.add(record.attempt)
        if worker.runner.cancels_task:
            task = worker.task
            assert task is not None
            if task is asyncio.current_task():
                # From inside the handler: Task.uncancel() (3.11/3.12) would not undo it.
                task.get_loop().call_soon(self._cancel_task_later, worker, record)
            else:
                worker.cancels += 1
                task.cancel()
        else:
            worker.runner.cancel()
        self._bus.emit_named(
            ev.JobCancelRequested,
            self._now(),
            job_id=record.job.id,
            worker_id=worker.id,
            reason=reason.value,
        )
        if reason is not CancelReason.SHUTDOWN:
            worker.abandon_timer = self._clock.call_later(
                self._cancel_grace, functools.partial(self.abandon, worker, record)
            )

    def cancel_for_shutdown(self, worker: Worker, record: JobRecord) -> None:
        """The shutdown cancels ``record``'s handler on ``worker``."""
        self.request_cancel(worker, record, CancelReason.SHUTDOWN)

    def _cancel_task_later(self, worker: Worker, record: JobRecord) -> None:
        task = worker.task
        if worker.job is record and task is not None and not task.done():
            worker.cancels += 1
            task.cancel()

    def abandon(self, worker: Worker, record: JobRecord) -> None:
        """Give up on a job that ignored its cancellation; the slot gets a fresh worker."""
        if worker.job is not record or record.state is not _RUNNING:
            return
        now = self._now()
        worker.clear_timers()
        worker.detached = True
        worker.job = None
        self._ledger.abandon(record, worker.id, now)
        worker.runner.abandon()
        self._supervisor.replace(worker, record.job.id)
        self._shutdown.job_ended()


class Port:
    """How a pool's job contexts and handles reach it (a :class:`~pool.job.JobPort`).

    Progress and output may be reported from a handler's thread: they hop
    onto the pool's loop first.
    """

    __slots__ = ("_loop", "_loop_thread", "_on_output", "_on_progress", "cancel")

    def __init__(
        self,
        on_progress: Callable[[JobRecord, int, float, str], None],
        on_output: Callable[[JobRecord, int, str, str, int | None, str | None], None],
        cancel: Callable[[JobRecord], bool],
    ) -> None:
        self._on_progress = on_progress
        self._on_output = on_output
        self.cancel = cancel
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = -1

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The pool runs on ``loop``, in this thread."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def progress(self, record: JobRecord, attempt: int, fraction: float, message: str) -> None:
        """See :meth:`JobPort.progress`."""
        self._call(self._on_progress, record, attempt, fraction, message)

    def output(
        self,
        record: JobRecord,
        attempt: int,
        worker_id: str,
        output: str,
        exit_code: int | None,
        path: str | None,
    ) -> None:
        """See :meth:`JobPort.output`."""
        self._call(self._on_output, record, attempt, worker_id, output, exit_code, path)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
            return
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            return  # the loop has closed: the pool is gone, and so is anyone to tell
