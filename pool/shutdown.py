"""The shutdown: its phases and their deadlines, and what it hands back.

1. intake closes; 2. with ``drain`` queued jobs still run, else they are
handed back; 3. up to ``grace`` seconds for every job to end, with a tick
about every 100 ms; 4. running jobs are cancelled, queued ones handed back;
5. after ``cancel_grace`` whatever still runs is abandoned; 6. the report.
A second request skips to the next phase.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from . import events as ev
from .clock import sleep
from .job import Job, JobRecord, JobState
from .phase import PoolPhase

if TYPE_CHECKING:
    from .bus import EventBus
    from .clock import Clock
    from .ledger import Ledger
    from .queue import JobQueue
    from .supervisor import Supervisor
    from .worker import Worker

__all__ = ("TICK_INTERVAL", "Shutdown", "ShutdownHost", "ShutdownReport")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownReport:
    """The account of a shutdown, for every job that was live when it began.

    Attributes:
        finished: Ids of jobs that ended on their own during the shutdown
            (succeeded, failed or timed out).
        cancelled: Ids of jobs that were running and were cancelled.
        not_started: Ids of queued jobs handed back without running (with
            ``drain=False``, or left when the grace period ran out).
        abandoned: Ids of jobs that ignored cancellation and were abandoned.
        unfinished: The jobs of ``cancelled``, ``not_started`` and
            ``abandoned``, in that order, ready to be saved and submitted again.
        duration: Seconds from the start of the shutdown to its end.
        phase_reached: The last shutdown phase it went through: ``draining``
            if everything finished in time, ``cancelling`` if it had to
            cancel, ``forcing`` if it had to abandon.
        reason: Why the pool shut down, when not on request (supervision
            gave up); None for a requested shutdown.
        failed: Whether the pool ended ``failed`` rather than ``stopped``.
    """

    finished: tuple[str, ...]
    cancelled: tuple[str, ...]
    not_started: tuple[str, ...]
    abandoned: tuple[str, ...]
    unfinished: tuple[Job, ...]
    duration: float
    phase_reached: PoolPhase
    reason: str | None
    failed: bool

    @property
    def clean(self) -> bool:
        """Whether nothing was cancelled, left unstarted or abandoned."""
        return not self.unfinished and not self.failed


TICK_INTERVAL: Final = 0.1
"""Seconds between two ``ShutdownTick`` events."""


class Shutdown:
    """A pool's shutdown: its phases and their deadlines, escalation, and the report.

    The pool begins it (on request, or when supervision gives up) and asks
    it to look again whenever a job ends (:meth:`job_ended`); the shutdown
    moves the pool's phase through :meth:`~pool.Pool`'s checked setter.
    """

    __slots__ = (
        "_bus",
        "_clock",
        "_escalations",
        "_host",
        "_ledger",
        "_name",
        "_override",
        "_queue",
        "_report",
        "_settled",
        "_supervisor",
        "_task",
        "begun",
        "deadline",
        "waiting",
    )

    def __init__(
        self,
        name: str,
        clock: Clock,
        bus: EventBus,
        ledger: Ledger,
        queue: JobQueue,
        supervisor: Supervisor,
        host: ShutdownHost,
    ) -> None:
        self._name = name
        self._clock = clock
        self._bus = bus
        self._ledger = ledger
        self._queue = queue
        self._supervisor = supervisor
        self._host = host
        self._task: asyncio.Task[ShutdownReport] | None = None
        self._report: ShutdownReport | None = None
        self._escalations = 0
        self._override = float("inf")  # a later call's cancel_grace, if shorter
        self._settled: asyncio.Future[None] | None = None
        self.deadline: float | None = None
        """During a shutdown, the clock time when the current phase's wait ends; else None."""
        self.begun = False
        """Whether a shutdown has begun (intake is closed), even if its task has not run yet."""
        self.waiting = False
        """Whether it waits for every job to end (then each end must be told: :meth:`job_ended`).

        Both are plain attributes, read on every submit and every job's end:
        read them, never set them."""

    @property
    def report(self) -> ShutdownReport | None:
        """The report, once the shutdown has finished."""
        return self._report

    def begin(self, grace: float, drain: bool, cancel_grace: float, reason: str | None) -> None:
        """Start the shutdown's task (once; later calls do nothing)."""
        if self._task is not None:
            return
        self.begun = True
        self._task = asyncio.get_running_loop().create_task(
            self._run(grace, drain, cancel_grace, reason), name=f"{self._name}-shutdown"
        )

    def escalate(self, cancel_grace: float | None) -> None:
        """Skip to the next phase (a second call, a second Ctrl-C)."""
        if cancel_grace is not None:
            self._override = min(self._override, cancel_grace)
        self._escalations += 1
        self._wake()

    async def wait(self) -> ShutdownReport:
        """The report, once the shutdown has finished (it has begun)."""
        if self._report is not None:
            return self._report
        assert self._task is not None
        return await asyncio.shield(self._task)

    def job_ended(self) -> None:
        """A job ended: if the shutdown waits and none is left, it goes on."""
        if self._settled is not None and self._ledger.settled():
            self._wake()

    def _wake(self) -> None:
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
        settled = self._settled = asyncio.get_running_loop().create_future()
        self.waiting = True
        self.deadline = self._clock.now() + seconds
        timer = self._clock.call_later(seconds, self._wake)
        try:
            while not settled.done():
                await settled
        finally:
            timer.cancel()
            self._settled = None
            self.waiting = False
            self.deadline = None
        return self._ledger.settled()

    async def _run(
        self, grace: float, drain: bool, cancel_grace: float, reason: str | None
    ) -> ShutdownReport:
        host = self._host
        start = self._clock.now()
        if not host.started():
            return self._finish(start, PoolPhase.DRAINING, reason, [])
        host.set_phase(PoolPhase.DRAINING, reason)
        self._bus.emit_named(
            ev.ShutdownStarted,
            self._clock.now(),
            grace=grace,
            cancel_grace=cancel_grace,
            drain=drain,
            reason=reason,
        )
        live = self._ledger.live()
        self._queue.wake_all_putters()  # they find the pool closed and raise PoolClosed
        if not drain:
            host.hand_back_queued()
        ticker = asyncio.get_running_loop().create_task(self._tick(), name=f"{self._name}-ticks")
        try:
            reached = PoolPhase.DRAINING
            if self._queue.held and drain:
                self._queue.release()
            if not self._escalations:
                await self._wait_settled(grace)
            if not self._ledger.settled():
                reached = PoolPhase.CANCELLING
                host.set_phase(PoolPhase.CANCELLING, None)
                host.hand_back_queued()
                for worker in self._supervisor.workers():
                    if worker.job is not None:
                        host.cancel_running(worker, worker.job)
                if self._escalations < 2:
                    await self._wait_settled(min(cancel_grace, self._override))
            if self._ledger.running:
                reached = PoolPhase.FORCING
                host.set_phase(PoolPhase.FORCING, None)
                for worker in self._supervisor.workers():
                    if worker.job is not None:
                        host.abandon(worker, worker.job)
            await self._supervisor.stop_all()
        finally:
            ticker.cancel()
        return self._finish(start, reached, reason, live)

    async def _tick(self) -> None:
        while True:
            await sleep(self._clock, TICK_INTERVAL)
            deadline = self.deadline
            now = self._clock.now()
            self._bus.emit_named(
                ev.ShutdownTick,
                now,
                phase=self._host.phase(),
                remaining=0.0 if deadline is None else max(0.0, deadline - now),
                running=self._ledger.running,
                queued=self._ledger.queued,
            )

    def _finish(
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
            duration=self._clock.now() - start,
            phase_reached=reached,
            reason=reason,
            failed=failed,
        )
        self._report = report
        final = PoolPhase.FAILED if failed else PoolPhase.STOPPED
        self._host.set_phase(final, reason)
        self._bus.emit_named(
            ev.PoolStopped,
            self._clock.now(),
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownHost:
    """What the shutdown asks of its pool (the pool and its attempts give each call).

    Attributes:
        started: Whether the pool was started (else there is nothing to wind down).
        phase: The pool's phase.
        set_phase: Move the pool to a phase, with a reason (checked).
        hand_back_queued: Cancel every queued job: it is handed back unstarted.
        cancel_running: Ask the handler running a job on a worker to stop (no
            abandon timer: the shutdown forces on its own schedule).
        abandon: Give up on a job that ignored its cancellation.
    """

    started: Callable[[], bool]
    phase: Callable[[], PoolPhase]
    set_phase: Callable[[PoolPhase, str | None], None]
    hand_back_queued: Callable[[], None]
    cancel_running: Callable[[Worker, JobRecord], None]
    abandon: Callable[[Worker, JobRecord], None]
