"""The ledger: the only code that moves a job from one state to another.

It keeps the counters of the accounting identity, the latency windows and
the dead letters, and emits the events that tell each move (submitted,
started, progressed, and every outcome). Because every move goes through
one of its methods, each of which changes two counters by one in opposite
directions, the identity

    submitted == rejected + queued + running
                 + succeeded + failed + timed_out + cancelled + abandoned

holds after every method returns (:meth:`Ledger.balanced`).

The ledger decides nothing about workers, timers or the queue: the pool
asks it to record what happened, and it says what follows (a retry's delay).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from . import events as ev
from .bus import EventBus
from .job import CancelReason, ErrorInfo, Job, JobRecord, JobState
from .retry import RetryPolicy
from .runners import WorkerDied
from .stats import LatencyWindow, Throughput

__all__ = ("CancelReason", "DeadLetter", "Ledger", "crash_error")

_QUEUED: Final = JobState.QUEUED
_RUNNING: Final = JobState.RUNNING
_SUCCEEDED: Final = JobState.SUCCEEDED


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A job that failed for good, kept so that it can be inspected and resubmitted.

    Attributes:
        job: The job as it was submitted.
        state: How it ended: ``failed`` or ``timed_out``.
        error: Its last error (None for a timeout).
        attempts: How many attempts it had.
        at: The pool clock's time when it ended.
    """

    job: Job
    state: JobState
    error: ErrorInfo | None
    attempts: int
    at: float


def crash_error(crash: BaseException, worker_id: str | None = None) -> ErrorInfo:
    """The error a worker's crash is told with: its cause's, for a runner's ``WorkerDied``.

    With ``worker_id``, the message says which worker crashed (the error a
    job that it held ends with).
    """
    cause = crash.__cause__ if isinstance(crash, WorkerDied) and crash.__cause__ else crash
    info = ErrorInfo.from_exception(cause)
    if worker_id is None:
        return info
    return ErrorInfo(
        type=info.type,
        message=f"worker {worker_id} crashed: {info.message}",
        traceback=info.traceback,
    )


class Ledger:
    """Every accepted job's state, the pool's counters, and the dead letters.

    Attributes (read them; only the ledger's methods change them):
        submitted, rejected, queued, running, succeeded, failed, timed_out,
        cancelled, abandoned, retried: The counters (see ``PoolStats``).
    """

    __slots__ = (
        "_add_run_time",
        "_add_wait",
        "_bus",
        "_count_end",
        "_dead",
        "_live",
        "_retry",
        "_rng",
        "_throughput",
        "abandoned",
        "cancelled",
        "failed",
        "queued",
        "rejected",
        "retried",
        "run_times",
        "running",
        "submitted",
        "succeeded",
        "timed_out",
        "waits",
    )

    def __init__(
        self,
        bus: EventBus,
        *,
        now: float,
        max_dead_letters: int,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._bus = bus
        self._retry = retry
        self._rng = rng or random.Random()
        self._live: dict[str, JobRecord] = {}
        self._dead: deque[DeadLetter] = deque(maxlen=max_dead_letters)
        self.submitted = 0
        self.rejected = 0
        self.queued = 0  # ready, handed to a worker not yet started, or waiting for a retry
        self.running = 0
        self.succeeded = 0
        self.failed = 0
        self.timed_out = 0
        self.cancelled = 0
        self.abandoned = 0
        self.retried = 0
        self.run_times = LatencyWindow()
        """Recent attempts' run times."""
        self.waits = LatencyWindow()
        """Recent jobs' waits in the queue."""
        self._add_run_time = self.run_times.add
        self._add_wait = self.waits.add
        self._throughput = Throughput(now)
        self._count_end = self._throughput.add

    # --- reading --------------------------------------------------------------

    def balanced(self) -> bool:
        """Whether the accounting identity holds (it always should)."""
        return self.submitted == (
            self.rejected
            + self.queued
            + self.running
            + self.succeeded
            + self.failed
            + self.timed_out
            + self.cancelled
            + self.abandoned
        )

    def settled(self) -> bool:
        """Whether no job is queued or running."""
        return not self.queued and not self.running

    def get(self, job_id: str) -> JobRecord | None:
        """The record of a live (queued or running) job, or None."""
        return self._live.get(job_id)

    @property
    def jobs(self) -> Mapping[str, JobRecord]:
        """Every live job's record by id (read it; only the ledger changes it)."""
        return self._live

    def live(self) -> list[JobRecord]:
        """The records of every live job, in order of acceptance."""
        return list(self._live.values())

    def throughput(self, now: float) -> float:
        """Jobs ended a second, over the last few seconds."""
        return self._throughput.rate(now)

    def restart_throughput(self, now: float) -> None:
        """Count throughput from ``now`` (the pool has started)."""
        self._throughput = Throughput(now)
        self._count_end = self._throughput.add

    def dead_letters(self) -> tuple[DeadLetter, ...]:
        """The failed jobs kept, oldest first."""
        return tuple(self._dead)

    def dead_letter(self, job_id: str) -> DeadLetter | None:
        """The dead letter of ``job_id``, if one is kept."""
        for letter in self._dead:
            if letter.job.id == job_id:
                return letter
        return None

    def forget_dead_letter(self, letter: DeadLetter) -> None:
        """Drop ``letter`` (its job was submitted again), if it is still kept."""
        if letter in self._dead:
            self._dead.remove(letter)

    # --- intake ---------------------------------------------------------------

    def reject(self, job_id: str, now: float) -> None:
        """A job was refused (the queue was full): submitted and rejected at once."""
        self.submitted += 1
        self.rejected += 1
        self._bus.emit_named(ev.JobRejected, now, job_id=job_id, reason="queue full")

    def accept(
        self, job: Job, now: float, label: str, put: Callable[[JobRecord], object]
    ) -> JobRecord:
        """A job was accepted: it is live and queued from now on (``label`` names it).

        ``put`` hands it to the queue before it is told, so that a worker
        waiting for it is woken before any reader of the events is (the
        order the loop runs them in).
        """
        record = JobRecord(job, now)
        self._live[job.id] = record
        self.submitted += 1
        queued = self.queued = self.queued + 1
        put(record)
        bus = self._bus
        if bus.active:  # with nobody subscribed, not even the call
            bus.emit(ev.JobSubmitted, now, job.id, queued, label)
        return record

    # --- queued -> running ----------------------------------------------------

    def begin(self, record: JobRecord, worker: object, worker_id: str, now: float) -> None:
        """A worker begins an attempt at a queued job."""
        self.queued -= 1
        self.running += 1
        record.state = _RUNNING
        attempt = record.attempt = record.attempt + 1
        record.started_at = now
        record.worker_id = worker_id
        record.worker = worker
        record.progress = None
        waited = now - record.queued_at
        self._add_wait(waited)
        bus = self._bus
        if bus.active:
            bus.emit(ev.JobStarted, now, record.job.id, worker_id, attempt, waited)

    def progress(
        self, record: JobRecord, attempt: int, fraction: float, message: str, now: float
    ) -> None:
        """Note an attempt's progress; ignored once that attempt has ended."""
        if record.state is not _RUNNING or record.attempt != attempt:
            return  # reported after the attempt ended
        record.progress = (fraction, message)
        self._bus.emit(
            ev.JobProgressed, now, record.job.id, record.worker_id or "", fraction, message
        )

    def output(
        self,
        record: JobRecord,
        attempt: int,
        worker_id: str,
        output: str,
        exit_code: int | None,
        path: str | None,
        now: float,
    ) -> None:
        """Keep and emit what an attempt's process left; ignored once a later attempt began."""
        if record.attempt != attempt:
            return
        record.output = self._bus.emit_kept(
            ev.JobOutputCaptured,
            now,
            job_id=record.job.id,
            worker_id=worker_id,
            attempt=attempt,
            exit_code=exit_code,
            output=output,
            path=path,
        )

    # --- running -> an outcome ------------------------------------------------

    def _stop_running(self, record: JobRecord, now: float, measured: bool) -> float:
        self.running -= 1
        duration = now - (record.started_at or now)
        if measured:
            self._add_run_time(duration)
        return duration

    def succeed(self, record: JobRecord, worker_id: str, result: object, now: float) -> None:
        """The attempt's handler returned."""
        # _stop_running's and _end's work, inline: this is the path of nearly every job.
        self.running -= 1
        duration = now - (record.started_at or now)
        self._add_run_time(duration)
        self.succeeded += 1
        record.result = result
        record.error = record.exc = None  # an earlier attempt's error is no longer the job's
        record.worker = None
        record.finish(_SUCCEEDED, now)
        job_id = record.job.id
        live = self._live
        if live.get(job_id) is record:
            del live[job_id]
        self._count_end(now)
        bus = self._bus
        if bus.active:
            bus.emit(ev.JobSucceeded, now, job_id, worker_id, record.attempt, duration)

    def fail(
        self,
        record: JobRecord,
        worker_id: str,
        exc: BaseException,
        now: float,
        *,
        may_retry: bool,
        info: ErrorInfo | None = None,
        measured: bool = True,
    ) -> float | None:
        """The attempt raised ``exc`` (or its worker crashed): retried, or failed for good.

        Returns:
            The delay before the next attempt, if the job is retried.
        """
        duration = self._stop_running(record, now, measured)
        info = info or ErrorInfo.from_exception(exc)
        record.error = info
        record.exc = exc
        retry = self._retry
        if may_retry and retry is not None and record.attempt < retry.max_attempts:
            return self._retry_later(record, worker_id, info, duration, now)
        self.failed += 1
        self._end(record, JobState.FAILED, now)
        self._keep_dead(record, JobState.FAILED, info, now)
        self._bus.emit_named(
            ev.JobFailed,
            now,
            job_id=record.job.id,
            worker_id=worker_id,
            attempt=record.attempt,
            duration=duration,
            error=info,
        )
        return None

    def time_out(
        self, record: JobRecord, worker_id: str, now: float, *, may_retry: bool, measured: bool
    ) -> float | None:
        """The attempt ran past its deadline and has stopped: retried, or timed out for good.

        Returns:
            The delay before the next attempt, if the job is retried.
        """
        duration = self._stop_running(record, now, measured)
        retry = self._retry
        if (
            may_retry
            and retry is not None
            and retry.retry_timeouts
            and record.attempt < retry.max_attempts
        ):
            info = ErrorInfo(type="TimeoutError", message="job timed out")
            return self._retry_later(record, worker_id, info, duration, now)
        self.timed_out += 1
        self._end(record, JobState.TIMED_OUT, now)
        self._keep_dead(record, JobState.TIMED_OUT, None, now)
        self._bus.emit_named(
            ev.JobTimedOut,
            now,
            job_id=record.job.id,
            worker_id=worker_id,
            attempt=record.attempt,
            duration=duration,
        )
        return None

    def cancel_running(self, record: JobRecord, worker_id: str, now: float, measured: bool) -> None:
        """A running job stopped after its cancellation."""
        self._stop_running(record, now, measured)
        record.cancelled_running = True
        self.cancelled += 1
        self._end(record, JobState.CANCELLED, now)
        self._bus.emit_named(
            ev.JobCancelled, now, job_id=record.job.id, worker_id=worker_id, started=True
        )

    def abandon(self, record: JobRecord, worker_id: str, now: float) -> None:
        """A running job ignored its cancellation: given up on, still running."""
        duration = self._stop_running(record, now, False)
        self.abandoned += 1
        self._end(record, JobState.ABANDONED, now)
        self._bus.emit_named(
            ev.JobAbandoned, now, job_id=record.job.id, worker_id=worker_id, duration=duration
        )

    def hand_back_unstarted(
        self, record: JobRecord, worker_id: str, crash: BaseException, now: float
    ) -> None:
        """The worker died before the job began: no attempt was made, and it waits again."""
        duration = self._stop_running(record, now, False)
        record.attempt -= 1
        record.state = _QUEUED
        record.worker = None
        record.queued_at = now
        self.queued += 1
        self.retried += 1
        self._bus.emit_named(
            ev.JobRetryScheduled,
            now,
            job_id=record.job.id,
            worker_id=worker_id,
            attempt=record.attempt + 1,
            duration=duration,
            error=ErrorInfo(
                type="pool.runners.WorkerDied", message=f"{crash} before the job began"
            ),
            delay=0.0,
        )

    # --- queued -> cancelled --------------------------------------------------

    def cancel_queued(self, record: JobRecord, now: float) -> None:
        """A queued job was cancelled (or handed back by a shutdown) before it started."""
        self.queued -= 1
        self.cancelled += 1
        record.cancelled_running = False
        self._end(record, JobState.CANCELLED, now)
        self._bus.emit_named(
            ev.JobCancelled, now, job_id=record.job.id, worker_id=None, started=False
        )

    # --- the ledger's own steps -----------------------------------------------

    def _retry_later(
        self, record: JobRecord, worker_id: str, info: ErrorInfo, duration: float, now: float
    ) -> float:
        assert self._retry is not None
        delay = self._retry.delay(record.attempt + 1, self._rng)
        record.state = _QUEUED
        record.cancel_reason = None
        record.worker = None
        self.queued += 1
        self.retried += 1
        self._bus.emit_named(
            ev.JobRetryScheduled,
            now,
            job_id=record.job.id,
            worker_id=worker_id,
            attempt=record.attempt,
            duration=duration,
            error=info,
            delay=delay,
        )
        return delay

    def _end(self, record: JobRecord, state: JobState, now: float) -> None:
        record.worker = None
        record.finish(state, now)
        job_id = record.job.id
        if self._live.get(job_id) is record:
            del self._live[job_id]
        self._count_end(now)

    def _keep_dead(
        self, record: JobRecord, state: JobState, info: ErrorInfo | None, now: float
    ) -> None:
        if self._dead.maxlen:
            self._dead.append(
                DeadLetter(job=record.job, state=state, error=info, attempts=record.attempt, at=now)
            )
