"""Pool: a supervised, resizable worker pool for asyncio programs."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import random
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn

from . import events as ev
from .bus import EventBus, Subscription
from .clock import Clock, MonotonicClock, sleep
from .errors import PoolClosed, PoolError, QueueFull
from .job import Job, JobContext, JobHandle, JobRecord, JobState, check_timeout
from .ledger import CancelReason, DeadLetter, Ledger, crash_error
from .phase import PoolPhase
from .retry import RetryPolicy
from .runners import CoroutineRunner, Runner, RunnerFactory, ThreadRunner, WorkerDied
from .shutdown import ShutdownReport
from .stats import PoolStats
from .worker import Worker, WorkerInfo, WorkerState

if TYPE_CHECKING:
    from .control import ControlServer

__all__ = ("DeadLetter", "Handler", "Pool", "PoolSnapshot")

Handler = (
    Callable[[Job, JobContext], Awaitable[object]]
    | Callable[[Job, JobContext], object]
    | RunnerFactory
)
"""``async def handler(job, ctx)``, a plain ``def`` that the pool runs in a thread
or a child process, or an object that makes its own runners (shell commands)."""

RunnerKind = Literal["async", "thread", "process"]
"""How the pool runs a handler function."""

DEFAULT_GRACE: Final = 10.0
"""The default of the pool's ``grace`` setting."""

TICK_INTERVAL: Final = 0.1
"""Seconds between two ``ShutdownTick`` events."""

_GONE = (WorkerState.STOPPED, WorkerState.CRASHED)
_QUEUED = JobState.QUEUED
_RUNNING = JobState.RUNNING


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSnapshot:
    """A consistent picture of the pool, including every event up to ``seq``.

    Attributes:
        phase: The pool's phase.
        seq: The sequence number of the last event this picture includes.
        at: The pool clock's time it was taken.
        stats: The pool's figures.
        workers: Every worker slot, in order of id.
        phase_deadline: During a shutdown, the clock time when the current
            phase's wait ends; else None.
        started_at: The clock time the pool started, or None.
    """

    phase: PoolPhase
    seq: int
    at: float
    stats: PoolStats
    workers: tuple[WorkerInfo, ...]
    phase_deadline: float | None
    started_at: float | None


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


class Pool:
    """A supervised pool of workers that run one handler over many jobs.

    ``await start()`` brings the workers up; ``submit`` queues jobs (waiting
    while the bounded queue is full); ``shutdown`` stops intake, lets work
    finish, cancels and finally abandons what will not stop, and returns a
    :class:`ShutdownReport`, within ``grace + cancel_grace`` and a small
    margin. ``async with Pool(...) as pool`` does the first and the last.

    Every accepted job ends in exactly one terminal state, and every change
    is published as an event (see :meth:`events`).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        workers: int = 4,
        queue_size: int = 100,
        max_workers: int = 1024,
        job_timeout: float | None = None,
        cancel_grace: float = 2.0,
        grace: float = DEFAULT_GRACE,
        retry: RetryPolicy | None = None,
        max_restarts: int = 3,
        restart_window: float = 5.0,
        restart_backoff: float = 0.1,
        max_dead_letters: int = 1000,
        runner: RunnerKind | None = None,
        clock: Clock | None = None,
        seed: int | None = None,
        name: str = "pool",
        describe: Callable[[Job], str] | None = None,
    ) -> None:
        """Build a pool; nothing runs until :meth:`start`.

        Args:
            handler: Called as ``handler(job, ctx)`` for every job.
            workers: Workers to start with, 0 to ``max_workers``.
            queue_size: How many jobs may wait for a worker (at least 1).
            max_workers: The largest size :meth:`resize` allows.
            job_timeout: The deadline of jobs that set none, in seconds, or None.
            cancel_grace: Seconds a cancelled job has to stop before it is abandoned.
            grace: The grace period of a shutdown that is given none: ``shutdown()``
                without ``grace``, the end of ``async with``, and the shutdown the
                supervisor begins when workers crash too often.
            retry: When failed jobs run again; None for no retry.
            max_restarts: Crash restarts allowed within ``restart_window``;
                one more and the pool gives up and shuts down ``failed``.
            restart_window: The window, in seconds, that restarts are counted over.
            restart_backoff: The wait before the first restart in the window;
                it doubles with each further one, up to 5 seconds.
            max_dead_letters: How many failed jobs are kept (the oldest go first).
            runner: ``"async"``, ``"thread"`` or ``"process"``; by default,
                ``async def`` handlers run on the loop and plain ones in
                threads. With ``"process"`` each worker owns a child process
                that runs a plain handler (importable by name), so a job can
                really be killed. Not given for a :class:`RunnerFactory`.
            clock: Where time comes from (a :class:`~pool.clock.ManualClock` in tests).
            seed: Seed for the retry jitter, for reproducible runs.
            name: Shown in ``repr`` and in thread names.
            describe: Names a job for people, in a few words (a shell command's
                text): the ``label`` of its ``JobSubmitted`` event, and what
                :meth:`describe` returns. By default the handler's own
                ``describe`` method, if it has one.

        Raises:
            TypeError, ValueError: An argument is of the wrong type or out of range.
        """
        if not (callable(handler) or isinstance(handler, RunnerFactory)):
            raise TypeError(f"handler must be callable or have make_runner(), got {handler!r}")
        self._max_workers = _check_int("max_workers", max_workers, 1)
        self._target = _check_int("workers", workers, 0, self._max_workers)
        self._queue_size = _check_int("queue_size", queue_size, 1)
        self._job_timeout = check_timeout("job_timeout", job_timeout)
        cancel = check_timeout("cancel_grace", cancel_grace, allow_zero=True)
        self._cancel_grace: float = 0.0 if cancel is None else cancel
        default_grace = check_timeout("grace", grace, allow_zero=True)
        if default_grace is None:
            raise TypeError("grace must be a number of seconds, got None")
        self._grace: float = default_grace
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, got {retry!r}")
        self._max_restarts = _check_int("max_restarts", max_restarts, 0)
        window = check_timeout("restart_window", restart_window)
        if window is None:
            raise TypeError("restart_window must be a number of seconds, got None")
        self._restart_window = window
        backoff = check_timeout("restart_backoff", restart_backoff, allow_zero=True)
        self._restart_backoff: float = 0.0 if backoff is None else backoff
        _check_int("max_dead_letters", max_dead_letters, 0)
        self._runner_kind = _runner_kind(handler, runner)
        self._handler = handler
        if describe is None:
            describe = getattr(handler, "describe", None)
        if describe is not None and not callable(describe):
            raise TypeError(f"describe must be callable or None, got {describe!r}")
        self._describe = describe
        if clock is None:
            clock = MonotonicClock()
        elif not (
            callable(getattr(clock, "now", None)) and callable(getattr(clock, "call_later", None))
        ):
            raise TypeError(f"clock must have now() and call_later(), got {clock!r}")
        self._clock: Clock = clock
        self._now = clock.now
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        self._name = name
        self._rng = random.Random(seed)

        self._phase = PoolPhase.CREATED
        self._paused = False
        self._closed = False
        self._bus = EventBus()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = -1
        self._started_at: float | None = None

        # Jobs: their states and counts are the ledger's.
        self._ledger = Ledger(
            self._bus,
            now=clock.now(),
            max_dead_letters=max_dead_letters,
            retry=retry,
            rng=self._rng,
        )
        self._port = _Port(self._job_progress, self._job_output, self._cancel_job)
        self._queue: deque[JobRecord] = deque()  # may hold cancelled jobs: skipped
        self._ready = 0  # live jobs in ``_queue``: what the capacity bounds
        self._putters: deque[asyncio.Future[None]] = deque()
        self._restarts = 0

        # Workers, by slot id.
        self._workers: dict[str, Worker] = {}
        self._idle: deque[Worker] = deque()
        self._next_worker = 1
        self._retiring = 0
        self._crashes: deque[float] = deque()
        self._restart_timers: dict[str, Any] = {}
        self._stopping_workers = False

        # Shutdown.
        self._shutdown_task: asyncio.Task[ShutdownReport] | None = None
        self._report: ShutdownReport | None = None
        self._escalations = 0
        self._phase_deadline: float | None = None
        self._settled: asyncio.Future[None] | None = None
        self._shutdown_cancel_grace = float("inf")

    # --- lifecycle ----------------------------------------------------------

    @property
    def name(self) -> str:
        """The pool's name."""
        return self._name

    @property
    def phase(self) -> PoolPhase:
        """Where the pool is in its lifecycle."""
        return self._phase

    @property
    def clock(self) -> Clock:
        """The clock the pool reads time from."""
        return self._clock

    @property
    def queue_size(self) -> int:
        """The queue's bound."""
        return self._queue_size

    @property
    def max_workers(self) -> int:
        """The largest size :meth:`resize` allows."""
        return self._max_workers

    @property
    def cancel_grace(self) -> float:
        """Seconds a cancelled job has to stop before it is abandoned."""
        return self._cancel_grace

    def describe(self, job: Job) -> str:
        """``job`` named for people in a few words (a shell command's text), or ''."""
        return "" if self._describe is None else self._describe(job)

    @property
    def grace(self) -> float:
        """The grace period of a shutdown that is given none (supervision's included)."""
        return self._grace

    async def start(self) -> None:
        """Start the workers; returns once every one of them is idle and ready.

        Raises:
            PoolError: The pool was already started.
        """
        if self._phase is not PoolPhase.CREATED:
            raise PoolError(f"cannot start: pool is {self._phase.value}")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._set_phase(PoolPhase.STARTING)
        self._started_at = self._now()
        self._ledger.restart_throughput(self._started_at)
        self._port.bind(self._loop)
        new = [self._spawn() for _ in range(self._target)]
        try:
            await self._wait_ready(new)
        finally:
            if not self._closed:  # supervision may have given up already
                self._set_phase(PoolPhase.RUNNING)

    async def __aenter__(self) -> Pool:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    async def pause(self) -> None:
        """Stop taking jobs from the queue; running jobs go on and submit still works.

        Raises:
            PoolError: The pool is not running (or already paused).
        """
        if self._phase is not PoolPhase.RUNNING or self._closed:
            raise PoolError(f"cannot pause: pool is {self._phase.value}")
        self._paused = True
        self._set_phase(PoolPhase.PAUSED)

    async def resume(self) -> None:
        """Take jobs from the queue again after :meth:`pause`.

        Raises:
            PoolError: The pool is not paused.
        """
        if self._phase is not PoolPhase.PAUSED:
            raise PoolError(f"cannot resume: pool is {self._phase.value}")
        self._set_phase(PoolPhase.RUNNING)
        self._unpause()

    def _unpause(self) -> None:
        self._paused = False
        while self._idle and self._ready:
            handle = self._pop_ready()
            if handle is None:
                break
            self._hand_to_idle(handle)

    def _closing_state(self) -> str:
        """The phase of a pool whose intake has closed, as messages say it."""
        phase = self._phase
        # The shutdown's task has not run its first step yet: the phase is
        # still the one before, but the pool is on its way out.
        return phase.value if phase.is_shutting_down else "shutting down"

    def _set_phase(self, phase: PoolPhase, reason: str | None = None) -> None:
        previous = self._phase
        self._phase = phase
        self._bus.emit(ev.PhaseChanged, self._now(), phase=phase, previous=previous, reason=reason)

    # --- submitting ---------------------------------------------------------

    def _check_submit(self, job: Job, method: str) -> None:
        if not isinstance(job, Job):
            raise TypeError(f"job must be a Job, got {type(job).__name__}")
        if self._loop_thread != -1 and threading.get_ident() != self._loop_thread:
            # The pool's state belongs to its loop: from another thread a job
            # would sit in the queue until something else woke the loop.
            raise PoolError(
                f"{method} was called from another thread than the pool's event loop's: "
                "use asyncio.run_coroutine_threadsafe(pool.submit(job), loop)"
            )
        phase = self._phase
        if self._closed:
            raise PoolClosed(f"pool is {self._closing_state()}: it accepts no more jobs")
        if phase is not PoolPhase.RUNNING and phase is not PoolPhase.PAUSED:
            raise PoolError(f"cannot submit: pool is {phase.value}, not started")
        if self._ledger.get(job.id) is not None:
            raise ValueError(f"job id {job.id!r} is already queued or running")

    def submit_nowait(self, job: Job) -> JobHandle:
        """Queue ``job`` now, or refuse it at once.

        Raises:
            QueueFull: The queue is at capacity (the job counts as rejected).
            PoolClosed: The pool's shutdown has begun.
            ValueError: A live job has the same id.
        """
        self._check_submit(job, "submit_nowait")
        if self._ready >= self._queue_size:
            self._reject(job)
        return self._accept(job)

    async def submit(self, job: Job, *, timeout: float | None = None) -> JobHandle:  # noqa: ASYNC109
        """Queue ``job``, waiting while the queue is full.

        Args:
            job: The job.
            timeout: Give up after this many seconds of waiting (None: wait as
                long as it takes).

        Raises:
            QueueFull: ``timeout`` passed with the queue still full (the job
                counts as rejected).
            PoolClosed: The pool's shutdown began before or while waiting.
            ValueError: A live job has the same id.
        """
        limit = None if timeout is None else check_timeout("timeout", timeout, allow_zero=True)
        self._check_submit(job, "submit")
        if self._ready >= self._queue_size:
            await self._wait_for_room(job, limit)
        return self._accept(job)

    async def _wait_for_room(self, job: Job, limit: float | None) -> None:
        deadline = None if limit is None else self._now() + limit
        while self._ready >= self._queue_size:
            remaining = None if deadline is None else deadline - self._now()
            if remaining is not None and remaining <= 0:
                self._reject(job)
            assert self._loop is not None
            fut: asyncio.Future[None] = self._loop.create_future()
            self._putters.append(fut)
            timer = None
            if remaining is not None:
                timer = self._clock.call_later(remaining, functools.partial(_set_none, fut))
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
                self._check_submit(job, "submit")  # closed, or the id taken, while we waited
            except BaseException:
                if self._ready < self._queue_size:
                    self._wake_putter()
                raise

    def _wake_putter(self) -> None:
        putters = self._putters
        while putters:
            fut = putters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _reject(self, job: Job) -> NoReturn:
        self._ledger.reject(job.id, self._now())
        raise QueueFull(f"queue is full ({self._queue_size} jobs waiting)")

    def _accept(self, job: Job) -> JobHandle:
        now = self._now()
        record = self._ledger.accept(job, now)
        handle = JobHandle(record, self._port)
        self._dispatch(record)
        describe = self._describe
        # Named only when someone will read it: a label can cost a command's parsing.
        label = "" if describe is None or not self._bus.room else describe(job)
        self._ledger.tell_submitted(record, now, label)
        return handle

    def _dispatch(self, record: JobRecord) -> None:
        """Give a queued job to an idle worker if one waits, else to the queue."""
        if self._idle and not self._paused:
            self._hand_to_idle(record)
        else:
            self._queue.append(record)
            self._ready += 1

    def _hand_to_idle(self, record: JobRecord) -> None:
        idle = self._idle
        while idle:
            wake = idle.popleft().wake
            if wake is not None and not wake.done():
                wake.set_result(record)
                return
        self._queue.append(record)
        self._ready += 1

    def _pop_ready(self) -> JobRecord | None:
        queue = self._queue
        while queue:
            record = queue.popleft()
            if record.state is _QUEUED:
                self._ready -= 1
                if self._putters:
                    self._wake_putter()
                return record
        return None

    async def _take(self, worker: Worker) -> JobRecord | None:
        """The next job for ``worker``, or None when it should exit."""
        ready = worker.ready
        if not ready.done():
            ready.set_result(None)
        while True:
            if worker.retiring or self._stopping_workers:
                return None
            if not self._paused and self._ready:
                record = self._pop_ready()
                if record is not None:
                    return record
            assert self._loop is not None
            wake: asyncio.Future[JobRecord | None] = self._loop.create_future()
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
                        if self._idle and not self._paused:
                            self._hand_to_idle(given)
                        else:
                            self._queue.appendleft(given)
                            self._ready += 1
                raise
            finally:
                worker.wake = None
            if record is not None and record.state is _QUEUED:
                return record

    # --- running jobs -------------------------------------------------------

    def _begin_job(self, worker: Worker, record: JobRecord) -> JobContext:
        now = self._now()
        worker.job = record
        self._ledger.begin(record, worker, worker.id, now)
        timeout = record.job.timeout or self._job_timeout
        deadline = None
        if timeout is not None:
            deadline = now + timeout
            worker.deadline_timer = self._clock.call_later(
                timeout,
                functools.partial(self._request_cancel, worker, record, CancelReason.TIMEOUT),
            )
        return JobContext(record.job, worker.id, record.attempt, deadline, record, self._port)

    def _end_job(
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
            self._settle_attempt(worker, record, now, exc, measured=True)
        if self._settled is not None:  # only a shutdown waits for the pool to settle
            self._check_settled()

    def _lose_job(self, worker: Worker, record: JobRecord, crash: BaseException | None) -> None:
        """End the attempt a dead worker held: failed or retried after a crash, else cancelled."""
        worker.clear_timers()
        worker.job = None
        self._settle_attempt(worker, record, self._now(), crash, measured=False, crashed=True)
        self._check_settled()

    def _settle_attempt(
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
            self._dispatch(record)
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
        return (
            self._phase not in (PoolPhase.CANCELLING, PoolPhase.FORCING)
            and not self._phase.is_final
        )

    def _requeue(self, record: JobRecord) -> None:
        record.retry_timer = None
        if record.state is not _QUEUED:
            return
        record.queued_at = self._now()
        # Retries skip the bound: they were accepted already, and a full queue
        # must not make an accepted job wait on new ones.
        self._dispatch(record)

    def _job_progress(self, record: JobRecord, attempt: int, fraction: float, message: str) -> None:
        self._ledger.progress(record, attempt, fraction, message, self._now())

    def _job_output(
        self,
        record: JobRecord,
        attempt: int,
        worker_id: str,
        output: str,
        exit_code: int | None,
        path: str | None,
    ) -> None:
        if self._phase.is_final:
            return  # PoolStopped has been told
        self._ledger.output(record, attempt, worker_id, output, exit_code, path, self._now())

    # --- cancelling ---------------------------------------------------------

    def _cancel_job(self, record: JobRecord) -> bool:
        """Cancel a job by request of its handle; see :meth:`JobHandle.cancel`."""
        state = record.state
        if state is _QUEUED:
            self._cancel_queued(record, self._now())
            self._check_settled()
            return True
        if state is _RUNNING and record.cancel_reason is None:
            worker = record.worker
            assert isinstance(worker, Worker)
            self._request_cancel(worker, record, CancelReason.CANCEL)
            return True
        return False

    def _cancel_queued(self, record: JobRecord, now: float) -> None:
        timer = record.retry_timer
        if timer is not None:
            timer.cancel()
            record.retry_timer = None
        elif record in self._queue:
            # Left in the deque and skipped when reached; it no longer takes room.
            self._ready -= 1
            if self._putters:
                self._wake_putter()
        self._ledger.cancel_queued(record, now)

    def _request_cancel(self, worker: Worker, record: JobRecord, reason: CancelReason) -> None:
        """Ask the handler running ``record`` on ``worker`` to stop."""
        if worker.job is not record or record.cancel_reason is not None:
            return
        record.cancel_reason = reason
        if record.cancelled_attempts is None:
            record.cancelled_attempts = set()
        record.cancelled_attempts.add(record.attempt)
        if worker.runner.cancels_task:
            assert worker.task is not None
            if worker.task is asyncio.current_task():
                # From inside the handler: Task.uncancel() (3.11/3.12) would not undo it.
                assert self._loop is not None
                self._loop.call_soon(self._cancel_task_later, worker, record)
            else:
                worker.cancels += 1
                worker.task.cancel()
        else:
            worker.runner.cancel()
        self._bus.emit(
            ev.JobCancelRequested,
            self._now(),
            job_id=record.job.id,
            worker_id=worker.id,
            reason=reason.value,
        )
        if reason is not CancelReason.SHUTDOWN:  # the shutdown abandons on its own schedule
            worker.abandon_timer = self._clock.call_later(
                self._cancel_grace, functools.partial(self._abandon, worker, record)
            )

    def _cancel_task_later(self, worker: Worker, record: JobRecord) -> None:
        if worker.job is record and worker.task is not None and not worker.task.done():
            worker.cancels += 1
            worker.task.cancel()

    def _abandon(self, worker: Worker, record: JobRecord) -> None:
        """Give up on a job that ignored its cancellation; the slot gets a fresh worker."""
        if worker.job is not record or record.state is not _RUNNING:
            return
        now = self._now()
        worker.clear_timers()
        worker.detached = True
        worker.job = None
        self._ledger.abandon(record, worker.id, now)
        worker.runner.abandon()
        if self._workers.get(worker.id) is worker:
            if worker.retiring or self._stopping_workers or self._winding_down():
                self._retire_slot(worker)
            else:
                self._spawn(
                    worker.id,
                    previous=worker,
                    announce=lambda _new: self._bus.emit(
                        ev.WorkerReplaced, self._now(), worker_id=worker.id, job_id=record.job.id
                    ),
                )
        self._check_settled()

    # --- workers and supervision -------------------------------------------

    def _make_runner(self, worker_id: str) -> Runner:
        name = f"{self._name}-{worker_id}"
        handler: Any = self._handler
        kind = self._runner_kind
        if kind == "async":
            return CoroutineRunner(handler)
        if kind == "thread":
            return ThreadRunner(handler, name)
        if kind == "process":
            from .process import ProcessRunner  # multiprocessing loads only when used

            return ProcessRunner(handler, name)
        runner: Runner = handler.make_runner(name)
        return runner

    def _spawn(
        self,
        worker_id: str | None = None,
        previous: Worker | None = None,
        announce: Callable[[Worker], object] | None = None,
    ) -> Worker:
        """Start a worker, in a new slot or in place of ``previous``.

        ``announce`` (by default: emit ``WorkerStarted`` for a new slot) runs
        once the worker exists and before its task is created: under an eager
        task factory the task runs its first steps, and may start a job,
        inside ``create_task``, so whatever tells of the worker comes first.
        """
        assert self._loop is not None
        if worker_id is None:
            worker_id = f"w{self._next_worker}"
            self._next_worker += 1
        worker = Worker(worker_id, self._make_runner(worker_id), self._loop.create_future())
        if previous is not None:
            worker.restarts = previous.restarts
            worker.jobs_done = previous.jobs_done
            worker.jobs_failed = previous.jobs_failed
        self._workers[worker_id] = worker
        if announce is not None:
            announce(worker)
        elif previous is None:
            self._bus.emit(ev.WorkerStarted, self._now(), worker_id=worker_id)
        worker.runner.start()
        task = self._loop.create_task(
            worker.run(self._take, self._begin_job, self._end_job), name=f"{self._name}-{worker_id}"
        )
        worker.task = task  # already set by the task itself if it started eagerly
        task.add_done_callback(functools.partial(self._worker_exited, worker))
        return worker

    async def _wait_ready(self, workers: list[Worker]) -> None:
        pending = [w.ready for w in workers if not w.ready.done()]
        if pending:
            await asyncio.wait(pending)

    def _worker_exited(self, worker: Worker, task: asyncio.Task[None]) -> None:
        """Done callback of every worker task: a normal exit, a cancellation or a crash."""
        never_ready = not worker.ready.done()
        if never_ready:
            worker.ready.set_result(None)
        if task.cancelled():
            exc: BaseException | None = None
        else:
            exc = task.exception()
        worker.runner.stop()
        if worker.detached or self._workers.get(worker.id) is not worker:
            return  # replaced after its job was abandoned: its fate is already told
        record = worker.job
        if task.cancelled():
            # Cancelled from outside (the loop is going away): not a crash.
            if record is not None:
                self._lose_job(worker, record, None)
            worker.status = WorkerState.STOPPED
            self._drop_slot(worker)
            self._bus.emit(ev.WorkerStopped, self._now(), worker_id=worker.id)
            return
        if exc is None:
            self._retire_slot(worker)
            return
        self._crash(worker, record, exc, never_ready=never_ready)

    def _crash(
        self,
        worker: Worker,
        record: JobRecord | None,
        exc: BaseException,
        *,
        never_ready: bool = False,
    ) -> None:
        now = self._now()
        info = crash_error(exc)
        if record is not None:
            self._lose_job(worker, record, exc)
        if worker.retiring or self._winding_down() or self._stopping_workers:
            self._bus.emit(
                ev.WorkerCrashed,
                self._now(),
                worker_id=worker.id,
                job_id=_id(record),
                error=info,
                restart_in=None,
            )
            self._retire_slot(worker)
            return
        if never_ready:
            # It died before it could take a job (its process could not load
            # the handler, or start at all): the next one would too, and a
            # hang at load time is too slow for the restart window to notice.
            worker.status = WorkerState.CRASHED
            self._bus.emit(
                ev.WorkerCrashed,
                self._now(),
                worker_id=worker.id,
                job_id=None,
                error=info,
                restart_in=None,
            )
            what = str(exc) if isinstance(exc, WorkerDied) else info.short()
            reason = f"worker {worker.id} could not start: {what}"
            self._begin_shutdown(DEFAULT_GRACE, False, self._cancel_grace, reason)
            return
        crashes = self._crashes
        while crashes and crashes[0] <= now - self._restart_window:
            crashes.popleft()
        if len(crashes) >= self._max_restarts:
            worker.status = WorkerState.CRASHED
            self._bus.emit(
                ev.WorkerCrashed,
                self._now(),
                worker_id=worker.id,
                job_id=_id(record),
                error=info,
                restart_in=None,
            )
            reason = (
                f"worker {worker.id} crashed {len(crashes) + 1} times within "
                f"{self._restart_window:g}s (max_restarts={self._max_restarts}): {info.short()}"
            )
            self._begin_shutdown(self._grace, False, self._cancel_grace, reason)
            return
        delay = min(self._restart_backoff * 2.0 ** len(crashes), 5.0)
        crashes.append(now)
        worker.status = WorkerState.RESTARTING
        self._bus.emit(
            ev.WorkerCrashed,
            self._now(),
            worker_id=worker.id,
            job_id=_id(record),
            error=info,
            restart_in=delay,
        )
        self._restart_timers[worker.id] = self._clock.call_later(
            delay, functools.partial(self._restart, worker)
        )

    def _restart(self, worker: Worker) -> None:
        self._restart_timers.pop(worker.id, None)
        if self._workers.get(worker.id) is not worker:
            return  # retired by a resize while it waited
        if self._winding_down() or self._stopping_workers:
            worker.status = WorkerState.STOPPED
            self._bus.emit(ev.WorkerStopped, self._now(), worker_id=worker.id)
            return
        self._spawn(worker.id, previous=worker, announce=self._announce_restart)

    def _announce_restart(self, new: Worker) -> None:
        new.restarts += 1
        self._restarts += 1
        self._bus.emit(ev.WorkerRestarted, self._now(), worker_id=new.id, restarts=new.restarts)

    def _winding_down(self) -> bool:
        # Past the drain: no new worker would get a job.
        return self._phase.is_shutting_down and self._phase is not PoolPhase.DRAINING

    def _retire_slot(self, worker: Worker) -> None:
        """A worker has exited for good: drop a retired slot, or mark it stopped."""
        if self._stopping_workers or self._phase.is_shutting_down:
            if worker.status is not WorkerState.CRASHED:
                worker.status = WorkerState.STOPPED
            if worker.retiring:
                self._retiring -= 1
                worker.retiring = False
            self._bus.emit(ev.WorkerStopped, self._now(), worker_id=worker.id)
            return
        self._drop_slot(worker)
        self._bus.emit(ev.WorkerStopped, self._now(), worker_id=worker.id)

    def _drop_slot(self, worker: Worker) -> None:
        if self._workers.get(worker.id) is worker:
            del self._workers[worker.id]
        if worker.retiring:
            self._retiring -= 1
            worker.retiring = False
        if worker in self._idle:
            self._idle.remove(worker)

    async def resize(self, workers: int) -> None:
        """Set the pool's size; returns once any new workers are ready.

        Growing starts workers at once. Shrinking retires workers waiting for
        a restart first, then idle ones, then marks busy ones retiring: they
        finish their job and exit. A resize never cancels a running job.

        Raises:
            TypeError, ValueError: ``workers`` is not an int from 0 to ``max_workers``.
            PoolClosed: The pool's shutdown has begun.
            PoolError: The pool has not been started.
        """
        target = _check_int("workers", workers, 0, self._max_workers)
        if self._closed:
            raise PoolClosed(f"cannot resize: pool is {self._closing_state()}")
        if self._phase is PoolPhase.CREATED:
            previous, self._target = self._target, target
            self._bus.emit(ev.PoolResized, self._now(), target=target, previous=previous)
            return
        if self._phase is PoolPhase.STARTING:
            raise PoolError("cannot resize: pool is starting")
        previous, self._target = self._target, target
        self._bus.emit(ev.PoolResized, self._now(), target=target, previous=previous)
        staying = len(self._workers) - self._retiring
        if target > staying:
            new = [self._spawn() for _ in range(target - staying)]
            await self._wait_ready(new)
        elif target < staying:
            self._shrink(staying - target)

    def _shrink(self, count: int) -> None:
        slots = [w for w in self._workers.values() if not w.retiring]
        restarting = [w for w in slots if w.status is WorkerState.RESTARTING]
        idle = [w for w in slots if w.status is None and w.job is None]
        busy = [w for w in slots if w.status is None and w.job is not None]
        for worker in (restarting + idle[::-1] + busy[::-1])[:count]:
            if worker.status is WorkerState.RESTARTING:
                timer = self._restart_timers.pop(worker.id, None)
                if timer is not None:
                    timer.cancel()
                self._drop_slot(worker)
                self._bus.emit(ev.WorkerStopped, self._now(), worker_id=worker.id)
                continue
            worker.retiring = True
            self._retiring += 1
            wake = worker.wake
            if wake is not None and not wake.done():
                # Waiting for a job: it exits at once.
                if worker in self._idle:
                    self._idle.remove(worker)
                wake.set_result(None)
            self._bus.emit(ev.WorkerRetireRequested, self._now(), worker_id=worker.id)

    # --- shutdown -----------------------------------------------------------

    async def shutdown(
        self, grace: float | None = None, drain: bool = True, cancel_grace: float | None = None
    ) -> ShutdownReport:
        """Stop the pool gracefully and account for every job; never hangs.

        1. Intake closes: submit raises PoolClosed, waiting submitters too.
        2. With ``drain`` queued jobs still run; without, they are handed back.
        3. Up to ``grace`` seconds (default: the pool's) for every job to
           end, with a ``ShutdownTick`` about every 100 ms.
        4. Then running jobs are cancelled, queued ones handed back, and
        5. after ``cancel_grace`` (default: the pool's) the rest is abandoned.

        Returns within ``grace + cancel_grace`` and a few milliseconds. Called
        again while it runs, it skips to the next phase (as a second Ctrl-C
        would); once done, it returns the same report.

        Raises:
            TypeError, ValueError: ``grace`` or ``cancel_grace`` is not a
                number of seconds >= 0.
        """
        grace_s = check_timeout("grace", grace, allow_zero=True)
        cancel_s = check_timeout("cancel_grace", cancel_grace, allow_zero=True)
        if self._report is not None:
            return self._report
        if self._shutdown_task is None:
            self._begin_shutdown(
                self._grace if grace_s is None else grace_s,
                bool(drain),
                self._cancel_grace if cancel_s is None else cancel_s,
                None,
            )
        else:
            if cancel_s is not None:
                self._shutdown_cancel_grace = min(self._shutdown_cancel_grace, cancel_s)
            self._escalate()
        assert self._shutdown_task is not None
        return await asyncio.shield(self._shutdown_task)

    def _begin_shutdown(
        self, grace: float, drain: bool, cancel_grace: float, reason: str | None
    ) -> None:
        if self._shutdown_task is not None:
            return
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        self._closed = True
        self._shutdown_task = loop.create_task(
            self._run_shutdown(grace, drain, cancel_grace, reason), name=f"{self._name}-shutdown"
        )

    def _escalate(self) -> None:
        self._escalations += 1
        self._wake_settled()

    def _check_settled(self) -> None:
        if self._settled is not None and self._ledger.settled():
            self._wake_settled()

    def _wake_settled(self) -> None:
        settled = self._settled
        if settled is not None and not settled.done():
            settled.set_result(None)

    async def _wait_settled(self, seconds: float) -> bool:
        """Wait until no job is queued or running, ``seconds`` pass, or an escalation.

        Returns:
            True if every job has ended.
        """
        if self._ledger.settled():
            return True
        assert self._loop is not None
        settled = self._settled = self._loop.create_future()
        self._phase_deadline = self._now() + seconds
        timer = self._clock.call_later(seconds, self._wake_settled)
        try:
            while not settled.done():
                await settled
        finally:
            timer.cancel()
            self._settled = None
            self._phase_deadline = None
        return self._ledger.settled()

    async def _run_shutdown(
        self, grace: float, drain: bool, cancel_grace: float, reason: str | None
    ) -> ShutdownReport:
        start = self._now()
        self._closed = True
        if self._phase is PoolPhase.CREATED or self._loop_thread == -1:
            return self._finish_shutdown(start, PoolPhase.DRAINING, reason, [])
        self._set_phase(PoolPhase.DRAINING, reason)
        self._bus.emit(
            ev.ShutdownStarted,
            self._now(),
            grace=grace,
            cancel_grace=cancel_grace,
            drain=drain,
            reason=reason,
        )
        live = self._ledger.live()
        while self._putters:
            self._wake_putter()  # they find the pool closed and raise PoolClosed
        if not drain:
            self._hand_back_queued()
        ticker = asyncio.get_running_loop().create_task(self._tick(), name=f"{self._name}-ticks")
        try:
            reached = PoolPhase.DRAINING
            if self._paused and drain:
                self._unpause()
            if not self._escalations:
                await self._wait_settled(grace)
            if not self._ledger.settled():
                reached = PoolPhase.CANCELLING
                self._set_phase(PoolPhase.CANCELLING)
                self._hand_back_queued()
                for worker in list(self._workers.values()):
                    if worker.job is not None:
                        self._request_cancel(worker, worker.job, CancelReason.SHUTDOWN)
                if self._escalations < 2:
                    await self._wait_settled(min(cancel_grace, self._shutdown_cancel_grace))
            if self._ledger.running:
                reached = PoolPhase.FORCING
                self._set_phase(PoolPhase.FORCING)
                for worker in list(self._workers.values()):
                    if worker.job is not None:
                        self._abandon(worker, worker.job)
            await self._stop_workers()
        finally:
            ticker.cancel()
        return self._finish_shutdown(start, reached, reason, live)

    async def _tick(self) -> None:
        while True:
            await sleep(self._clock, TICK_INTERVAL)
            deadline = self._phase_deadline
            remaining = 0.0 if deadline is None else max(0.0, deadline - self._now())
            self._bus.emit(
                ev.ShutdownTick,
                self._now(),
                phase=self._phase,
                remaining=remaining,
                running=self._ledger.running,
                queued=self._ledger.queued,
            )

    def _hand_back_queued(self) -> None:
        now = self._now()
        for record in self._ledger.live():
            if record.state is _QUEUED:
                self._cancel_queued(record, now)

    async def _stop_workers(self) -> None:
        self._stopping_workers = True
        for timer in self._restart_timers.values():
            timer.cancel()
        self._restart_timers.clear()
        tasks = []
        for worker in list(self._workers.values()):
            if worker.status is WorkerState.RESTARTING:
                worker.status = WorkerState.STOPPED
                self._bus.emit(ev.WorkerStopped, self._now(), worker_id=worker.id)
            elif worker.task is not None and worker.status is None and not worker.detached:
                if not worker.ready.done():
                    # Still starting (a child loading the handler): it holds no
                    # job, and must not hold the shutdown either.
                    worker.task.cancel()
                tasks.append(worker.task)
        while self._idle:
            wake = self._idle.popleft().wake
            if wake is not None and not wake.done():
                wake.set_result(None)
        if tasks:
            # Every one of them is idle (no job is running now), so each exits
            # at its next step.
            await asyncio.wait(tasks)

    def _finish_shutdown(
        self, start: float, reached: PoolPhase, reason: str | None, live: list[JobRecord]
    ) -> ShutdownReport:
        finished: list[str] = []
        cancelled: list[Job] = []
        not_started: list[Job] = []
        abandoned: list[Job] = []
        for record in live:
            state = record.state
            if state is JobState.CANCELLED:
                (cancelled if record.cancelled_running else not_started).append(record.job)
            elif state is JobState.ABANDONED:
                abandoned.append(record.job)
            else:
                finished.append(record.job.id)
        failed = reason is not None
        report = ShutdownReport(
            finished=tuple(finished),
            cancelled=tuple(j.id for j in cancelled),
            not_started=tuple(j.id for j in not_started),
            abandoned=tuple(j.id for j in abandoned),
            unfinished=tuple(cancelled + not_started + abandoned),
            duration=self._now() - start,
            phase_reached=reached,
            reason=reason,
            failed=failed,
        )
        self._report = report
        final = PoolPhase.FAILED if failed else PoolPhase.STOPPED
        self._set_phase(final, reason)
        self._bus.emit(
            ev.PoolStopped,
            self._now(),
            phase=final,
            phase_reached=reached,
            finished=len(report.finished),
            cancelled=len(report.cancelled),
            not_started=len(report.not_started),
            abandoned=len(report.abandoned),
            duration=report.duration,
            reason=reason,
        )
        self._bus.close()
        return report

    async def wait_stopped(self) -> ShutdownReport:
        """Wait until a shutdown (requested or escalated) has finished, and return its report.

        Raises:
            PoolError: No shutdown has begun.
        """
        if self._report is not None:
            return self._report
        if self._shutdown_task is None:
            raise PoolError(
                f"cannot wait for the stop: pool is {self._phase.value}, no shutdown began"
            )
        return await asyncio.shield(self._shutdown_task)

    # --- dead letters -------------------------------------------------------

    def dead_letters(self) -> tuple[DeadLetter, ...]:
        """The failed jobs kept, oldest first."""
        return self._ledger.dead_letters()

    async def resubmit(self, job_id: str, *, timeout: float | None = None) -> JobHandle:  # noqa: ASYNC109
        """Submit a dead letter's job again (its attempts start over) and remove it.

        Args:
            job_id: The dead letter's job id.
            timeout: As :meth:`submit`'s: give up after this many seconds of
                waiting for room (0: at once, as ``submit_nowait``).

        Raises:
            ValueError: No dead letter has that id.
            PoolClosed, QueueFull: As :meth:`submit`.
        """
        letter = self._ledger.dead_letter(job_id)
        if letter is None:
            raise ValueError(f"no dead letter with id {job_id!r}")
        handle = await self.submit(letter.job, timeout=timeout)
        self._ledger.forget_dead_letter(letter)
        return handle

    # --- serving ------------------------------------------------------------

    async def serve(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        tcp: tuple[str, int] | None = None,
        token_file: str | os.PathLike[str] | None = None,
    ) -> ControlServer:
        """Let other programs watch and drive this pool, over a socket (``wpool-tui attach``).

        Starts a :class:`~pool.control.ControlServer` on this loop and
        returns it once it listens; the protocol is ``docs/protocol.md``:
        JSON lines, never pickles. It stops when the pool stops (the
        clients get the last event first) or when closed; either way it
        removes its socket and files.

        Args:
            path: The Unix socket; by default ``$XDG_RUNTIME_DIR/wpool/<name>.sock``,
                else ``/tmp/wpool-<uid>/<name>.sock``. Its directory is made
                with mode 0700 and the socket has mode 0600; a client of another
                user is refused. A socket a dead service left is replaced.
            tcp: ``(host, port)`` to listen on as well, on a loopback address
                only (port 0 picks one); clients must send the token that is
                written to ``token_file``.
            token_file: Where the TCP token is written (mode 0600); by default
                ``<name>.token`` beside the socket.

        Raises:
            ValueError: ``tcp`` is not a loopback address, ``token_file`` is
                given without ``tcp``, or the path cannot be a socket's.
            PoolError: A live service already serves on the path, the socket's
                directory is not this user's with mode 0700, or the pool has stopped.
        """
        from .control import ControlServer  # control reads the pool's wire forms: not at import

        server = ControlServer(self, path, tcp=tcp, token_file=token_file)
        await server.start()
        return server

    # --- observing ----------------------------------------------------------

    def events(self, maxsize: int = 10_000) -> Subscription:
        """Subscribe to the pool's events from now on.

        The pool never waits for a subscriber: one that falls more than
        ``maxsize`` events behind misses the rest, is told how many with an
        ``EventsDropped``, and should resync from :meth:`snapshot`.
        """
        _check_int("maxsize", maxsize, 1)
        return self._bus.subscribe(maxsize)

    def stats(self) -> PoolStats:
        """The pool's figures now (see :class:`PoolStats` for their exact meaning)."""
        now = self._now()
        # The oldest ready job; cancelled ones wait in the deque to be skipped.
        oldest = next((now - r.queued_at for r in self._queue if r.state is _QUEUED), 0.0)
        ledger = self._ledger
        return PoolStats(
            submitted=ledger.submitted,
            rejected=ledger.rejected,
            queued=ledger.queued,
            running=ledger.running,
            succeeded=ledger.succeeded,
            failed=ledger.failed,
            timed_out=ledger.timed_out,
            cancelled=ledger.cancelled,
            abandoned=ledger.abandoned,
            retried=ledger.retried,
            restarts=self._restarts,
            workers=sum(1 for w in self._workers.values() if w.status not in _GONE),
            target_workers=self._target,
            busy_workers=ledger.running,
            retiring_workers=self._retiring,
            queue_capacity=self._queue_size,
            oldest_queued_age=oldest,
            run_time=ledger.run_times.percentiles(),
            queue_wait=ledger.waits.percentiles(),
            throughput=ledger.throughput(now),
            dead_letters=len(ledger.dead_letters()),
        )

    def snapshot(self) -> PoolSnapshot:
        """Everything at once, consistent with the events up to its ``seq``."""
        workers = sorted(self._workers.values(), key=lambda w: (len(w.id), w.id))
        return PoolSnapshot(
            phase=self._phase,
            seq=self._bus.seq,
            at=self._now(),
            stats=self.stats(),
            workers=tuple(w.info() for w in workers),
            phase_deadline=self._phase_deadline,
            started_at=self._started_at,
        )

    def job(self, job_id: str) -> JobHandle | None:
        """The handle of a live (queued or running) job, or None."""
        record = self._ledger.get(job_id)
        return None if record is None else record.handle

    def __repr__(self) -> str:
        return (
            f"<Pool {self._name!r} [{self._phase.value}] "
            f"workers={len(self._workers)}/{self._target} "
            f"queued={self._ledger.queued} running={self._ledger.running}>"
        )


def _runner_kind(handler: object, runner: str | None) -> str:
    """How ``handler`` runs; ``"factory"`` when it makes its own runners."""
    if isinstance(handler, RunnerFactory):
        if runner is not None:
            raise ValueError(
                f"runner must be None for a handler with make_runner(), got {runner!r}"
            )
        return "factory"
    if runner is None:
        return "async" if _is_async(handler) else "thread"
    if runner not in ("async", "thread", "process"):
        raise ValueError(f"runner must be 'async', 'thread' or 'process', got {runner!r}")
    if runner == "process":
        if _is_async(handler):
            raise ValueError("runner 'process' needs a plain def handler, got an async one")
        from .process import check_picklable

        check_picklable(handler)
    return runner


def _is_async(handler: object) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - an object with an async __call__
    return inspect.iscoroutinefunction(call)


def _set_none(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _id(record: JobRecord | None) -> str | None:
    return record.job.id if record is not None else None


class _Port:
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
