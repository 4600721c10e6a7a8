"""Pool: a supervised, resizable worker pool for asyncio programs."""

from __future__ import annotations

import asyncio
import functools
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, NoReturn

from . import events as ev
from .attempts import Attempts
from .bus import EventBus, Subscription
from .clock import Clock
from .config import DEFAULT_GRACE, Handler, RunnerKind, Settings, check_int
from .errors import PoolClosed, PoolError, QueueFull
from .job import Job, JobHandle, JobState, check_timeout
from .ledger import DeadLetter, Ledger
from .phase import PoolPhase, can_move
from .queue import JobQueue
from .retry import RetryPolicy
from .shutdown import Shutdown, ShutdownHost, ShutdownReport
from .stats import PoolStats
from .supervisor import Supervisor
from .worker import WorkerInfo

if TYPE_CHECKING:
    from .control import ControlServer

__all__ = ("DeadLetter", "Handler", "Pool", "PoolSnapshot")


_QUEUED = JobState.QUEUED
_RUNNING = JobState.RUNNING
# Module constants: an enum member's lookup costs about 0.1 us, on every submit.
_TAKING = PoolPhase.RUNNING
_PAUSED = PoolPhase.PAUSED


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
        settings = Settings.check(
            handler,
            workers=workers,
            queue_size=queue_size,
            max_workers=max_workers,
            job_timeout=job_timeout,
            cancel_grace=cancel_grace,
            grace=grace,
            retry=retry,
            max_restarts=max_restarts,
            restart_window=restart_window,
            restart_backoff=restart_backoff,
            max_dead_letters=max_dead_letters,
            runner=runner,
            clock=clock,
            seed=seed,
            name=name,
            describe=describe,
        )
        self._max_workers = settings.max_workers
        self._queue_size = settings.queue_size
        self._cancel_grace = settings.cancel_grace
        self._grace = settings.grace
        self._describe = settings.describe
        self._clock = clock = settings.clock
        self._now = clock.now
        self._name = settings.name
        self._rng = random.Random(settings.seed)

        self._phase = PoolPhase.CREATED
        self._bus = EventBus()
        self._loop_thread = -1
        self._started_at: float | None = None

        # Jobs: their states and counts are the ledger's.
        self._ledger = Ledger(
            self._bus,
            now=clock.now(),
            max_dead_letters=settings.max_dead_letters,
            retry=settings.retry,
            rng=self._rng,
        )
        self._live_jobs = self._ledger.jobs  # read on every submit
        self._queue = JobQueue(settings.queue_size)
        self._put = self._queue.put  # bound once: a bound method made per job is garbage per job
        self._attempts = attempts = Attempts(
            clock=clock,
            ledger=self._ledger,
            queue=self._queue,
            bus=self._bus,
            job_timeout=settings.job_timeout,
            cancel_grace=settings.cancel_grace,
            phase=lambda: self._phase,
        )
        self._port = attempts.port
        self._supervisor = Supervisor(
            settings,
            self._bus,
            self._queue,
            begin=attempts.begin,
            end=attempts.end,
            lose_job=attempts.lose,
            give_up=self._give_up,
            phase=lambda: self._phase,
        )
        self._shutdown = Shutdown(
            settings.name,
            clock,
            self._bus,
            self._ledger,
            self._queue,
            self._supervisor,
            ShutdownHost(
                started=lambda: self._phase is not PoolPhase.CREATED and self._loop_thread != -1,
                phase=lambda: self._phase,
                set_phase=self._set_phase,
                hand_back_queued=attempts.hand_back_queued,
                cancel_running=attempts.cancel_for_shutdown,
                abandon=attempts.abandon,
            ),
        )
        attempts.connect(self._supervisor, self._shutdown)

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
        loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._set_phase(PoolPhase.STARTING)
        self._started_at = self._now()
        self._ledger.restart_throughput(self._started_at)
        self._port.bind(loop)
        new = self._supervisor.start(loop)
        try:
            await self._supervisor.wait_ready(new)
        finally:
            if not self._closed():  # supervision may have given up already
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
        if self._phase is not PoolPhase.RUNNING or self._closed():
            raise PoolError(f"cannot pause: pool is {self._phase.value}")
        self._queue.hold()
        self._set_phase(PoolPhase.PAUSED)

    async def resume(self) -> None:
        """Take jobs from the queue again after :meth:`pause`.

        Raises:
            PoolError: The pool is not paused.
        """
        if self._phase is not PoolPhase.PAUSED:
            raise PoolError(f"cannot resume: pool is {self._phase.value}")
        self._set_phase(PoolPhase.RUNNING)
        self._queue.release()

    def _closing_state(self) -> str:
        """The phase of a pool whose intake has closed, as messages say it."""
        phase = self._phase
        # The shutdown's task has not run its first step yet: the phase is
        # still the one before, but the pool is on its way out.
        return phase.value if phase.is_shutting_down else "shutting down"

    def _set_phase(self, phase: PoolPhase, reason: str | None = None) -> None:
        """Move to ``phase`` and tell it; the one place the phase changes.

        Raises:
            RuntimeError: The move is not one a pool can make (a bug of the pool's).
        """
        previous = self._phase
        if not can_move(previous, phase):
            raise RuntimeError(f"pool cannot move from {previous.value} to {phase.value}")
        self._phase = phase
        self._bus.emit_named(
            ev.PhaseChanged, self._now(), phase=phase, previous=previous, reason=reason
        )

    def _closed(self) -> bool:
        """Whether intake has closed: a shutdown has begun (its task may not have run yet)."""
        return self._shutdown.begun

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
        if self._shutdown.begun:
            raise PoolClosed(f"pool is {self._closing_state()}: it accepts no more jobs")
        if phase is not _TAKING and phase is not _PAUSED:
            raise PoolError(f"cannot submit: pool is {phase.value}, not started")
        if job.id in self._live_jobs:
            raise ValueError(f"job id {job.id!r} is already queued or running")

    def submit_nowait(self, job: Job) -> JobHandle:
        """Queue ``job`` now, or refuse it at once.

        Raises:
            QueueFull: The queue is at capacity (the job counts as rejected).
            PoolClosed: The pool's shutdown has begun.
            ValueError: A live job has the same id.
        """
        self._check_submit(job, "submit_nowait")
        if self._queue.full():
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
        if self._queue.full():
            await self._queue.wait_for_room(
                self._clock,
                limit,
                functools.partial(self._reject, job),
                functools.partial(self._check_submit, job, "submit"),
            )
        return self._accept(job)

    def _reject(self, job: Job) -> NoReturn:
        self._ledger.reject(job.id, self._now())
        raise QueueFull(f"queue is full ({self._queue_size} jobs waiting)")

    def _accept(self, job: Job) -> JobHandle:
        describe = self._describe
        # Named only when someone will read it: a label can cost a command's parsing.
        label = "" if describe is None or not self._bus.room else describe(job)
        record = self._ledger.accept(job, self._now(), label, self._put)
        return JobHandle(record, self._port)

    # --- workers and supervision (the supervisor's) ------------------------

    def _give_up(self, grace: float, reason: str) -> None:
        """Supervision gave up: shut down, without draining, to end ``failed``."""
        self._shutdown.begin(grace, False, self._cancel_grace, reason)

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
        target = check_int("workers", workers, 0, self._max_workers)
        if self._closed():
            raise PoolClosed(f"cannot resize: pool is {self._closing_state()}")
        if self._phase is PoolPhase.CREATED:
            self._supervisor.set_target(target)
            return
        if self._phase is PoolPhase.STARTING:
            raise PoolError("cannot resize: pool is starting")
        await self._supervisor.resize(target)

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
        shutdown = self._shutdown
        if shutdown.report is not None:
            return shutdown.report
        if shutdown.begun:
            shutdown.escalate(cancel_s)
        else:
            shutdown.begin(
                self._grace if grace_s is None else grace_s,
                bool(drain),
                self._cancel_grace if cancel_s is None else cancel_s,
                None,
            )
        return await shutdown.wait()

    async def wait_stopped(self) -> ShutdownReport:
        """Wait until a shutdown (requested or escalated) has finished, and return its report.

        Raises:
            PoolError: No shutdown has begun.
        """
        if not self._shutdown.begun:
            raise PoolError(
                f"cannot wait for the stop: pool is {self._phase.value}, no shutdown began"
            )
        return await self._shutdown.wait()

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
        check_int("maxsize", maxsize, 1)
        return self._bus.subscribe(maxsize)

    def stats(self) -> PoolStats:
        """The pool's figures now (see :class:`PoolStats` for their exact meaning)."""
        now = self._now()
        # The oldest ready job; cancelled ones wait in the deque to be skipped.
        oldest = self._queue.oldest_wait(now)
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
            restarts=self._supervisor.restarts,
            workers=self._supervisor.live_count(),
            target_workers=self._supervisor.target,
            busy_workers=ledger.running,
            retiring_workers=self._supervisor.retiring,
            queue_capacity=self._queue_size,
            oldest_queued_age=oldest,
            run_time=ledger.run_times.percentiles(),
            queue_wait=ledger.waits.percentiles(),
            throughput=ledger.throughput(now),
            dead_letters=len(ledger.dead_letters()),
        )

    def snapshot(self) -> PoolSnapshot:
        """Everything at once, consistent with the events up to its ``seq``."""
        return PoolSnapshot(
            phase=self._phase,
            seq=self._bus.seq,
            at=self._now(),
            stats=self.stats(),
            workers=self._supervisor.infos(),
            phase_deadline=self._shutdown.deadline,
            started_at=self._started_at,
        )

    def job(self, job_id: str) -> JobHandle | None:
        """A handle of a live (queued or running) job, or None.

        Each call gives a new handle; it equals (``==``) the one ``submit``
        returned, and acts on the same job.
        """
        record = self._ledger.get(job_id)
        return None if record is None else JobHandle(record, self._port)

    def __repr__(self) -> str:
        return (
            f"<Pool {self._name!r} [{self._phase.value}] "
            f"workers={len(self._supervisor)}/{self._supervisor.target} "
            f"queued={self._ledger.queued} running={self._ledger.running}>"
        )
