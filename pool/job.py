"""Jobs as data, their states, and what a handler and a submitter see of them."""

from __future__ import annotations

import asyncio
import enum
import itertools
import math
import os
import traceback
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from .errors import JobAbandonedError, JobCancelledError, JobError, JobFailedError, JobTimeoutError

if TYPE_CHECKING:
    from .events import JobOutputCaptured

__all__ = (
    "CancelReason",
    "ErrorInfo",
    "Job",
    "JobContext",
    "JobHandle",
    "JobPort",
    "JobRecord",
    "JobState",
    "check_progress",
)

_ids = itertools.count(1)


def _new_id() -> str:
    return f"job-{next(_ids)}"


def check_timeout(name: str, value: object, *, allow_zero: bool = False) -> float | None:
    """Return ``value`` as a float if it is a valid timeout, else raise a clear error."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or None, got {value!r}")
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def check_progress(fraction: object, message: object) -> None:
    """Raise a clear error unless ``fraction`` is 0.0 to 1.0 and ``message`` a str."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise TypeError(f"fraction must be a number, got {fraction!r}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0.0 and 1.0, got {fraction!r}")
    if not isinstance(message, str):
        raise TypeError(f"message must be a str, got {type(message).__name__}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A unit of work: frozen data the pool hands to its handler.

    Attributes:
        payload: The job's input, as bytes.
        id: A unique id; one is generated when not given. Two live jobs in one
            pool may not share an id.
        timeout: The job's deadline in seconds from when it starts, or None for
            the pool's ``job_timeout``.
        meta: Free-form string labels, kept with the job and shown in its detail.
    """

    payload: bytes = b""
    id: str = field(default_factory=_new_id)
    timeout: float | None = None
    meta: Mapping[str, str] = field(default_factory=lambda: _EMPTY_META, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.payload, bytes):
            raise TypeError(f"payload must be bytes, got {type(self.payload).__name__}")
        if not isinstance(self.id, str):
            raise TypeError(f"id must be a str, got {self.id!r}")
        if not self.id:
            raise ValueError("id must not be empty")
        if self.timeout is not None:
            object.__setattr__(self, "timeout", check_timeout("timeout", self.timeout))
        if self.meta is not _EMPTY_META:
            if not isinstance(self.meta, Mapping):
                raise TypeError(f"meta must be a mapping of str to str, got {self.meta!r}")
            for key, value in self.meta.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise TypeError(f"meta must map str to str, got {key!r}: {value!r}")
            object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))


_EMPTY_META: Mapping[str, str] = MappingProxyType({})


class JobState(enum.Enum):
    """Where a job is in its life. The last five are terminal."""

    QUEUED = "queued"
    """Accepted and waiting for a worker (or for its next attempt)."""
    RUNNING = "running"
    """A worker is running its handler."""
    SUCCEEDED = "succeeded"
    """The handler returned."""
    FAILED = "failed"
    """The handler raised on the last attempt, or its worker crashed under it."""
    TIMED_OUT = "timed_out"
    """The job ran past its deadline and was cancelled."""
    CANCELLED = "cancelled"
    """Cancelled by its handle or by a shutdown, before or while it ran."""
    ABANDONED = "abandoned"
    """It did not stop within ``cancel_grace`` of its cancellation."""

    @property
    def is_terminal(self) -> bool:
        """Whether the job has ended (in this state it stays)."""
        return self not in _LIVE


_LIVE = frozenset({JobState.QUEUED, JobState.RUNNING})
_QUEUED = JobState.QUEUED  # a module constant: an enum member's lookup costs ~0.1 us


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """An exception, kept as text so that it can be shown, stored and sent.

    Attributes:
        type: The exception's qualified class name (``module.Class`` outside builtins).
        message: ``str()`` of the exception.
        traceback: The formatted traceback, or an empty string.
    """

    type: str
    message: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Describe ``exc`` with its type, message and traceback."""
        kind = type(exc)
        name = kind.__qualname__
        if kind.__module__ not in ("builtins", "__main__"):
            name = f"{kind.__module__}.{name}"
        try:
            message = str(exc)
        except Exception as err:  # a broken __str__ must not lose the job
            message = f"<unprintable {kind.__qualname__}: {type(err).__name__}>"
        return cls(type=name, message=message, traceback=_format(exc))

    def short(self) -> str:
        """``Type: message`` on one line, with the type's bare name."""
        name = self.type.rpartition(".")[2]
        first = self.message.splitlines()[0] if self.message else ""
        return f"{name}: {first}" if first else name


_POOL_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _format(exc: BaseException) -> str:
    # The pool's own frames come first and say nothing about the job: start
    # at the first frame outside the package (the handler's).
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_POOL_DIR):
        tb = tb.tb_next
    if tb is None and not type(exc).__module__.startswith("pool."):
        # No frame is the handler's and the pool did not mean to raise it
        # (a bug of its own): every frame counts then.
        tb = exc.__traceback__
    # A failure the pool reports on purpose (a command's exit code, a dead
    # process) keeps no frames: only itself and what it chains (a child's
    # traceback).
    return "".join(traceback.format_exception(type(exc), exc, tb))


class CancelReason(enum.Enum):
    """Why a running job was asked to stop (``JobCancelRequested.reason``)."""

    TIMEOUT = "timeout"
    """It ran past its deadline."""
    CANCEL = "cancel"
    """Its handle asked (``JobHandle.cancel``)."""
    SHUTDOWN = "shutdown"
    """The shutdown's grace period ran out."""


class JobRecord:
    """The pool's record of one accepted job: what its :class:`JobHandle` shows.

    Internal. Only the ledger (``pool/ledger.py``) moves ``state`` and
    ends a record; the pool notes the rest of an attempt here.
    """

    __slots__ = (
        "attempt",
        "cancel_reason",
        "cancelled_attempts",
        "cancelled_running",
        "ended_at",
        "error",
        "exc",
        "job",
        "output",
        "progress",
        "queued_at",
        "result",
        "retry_timer",
        "started_at",
        "state",
        "submitted_at",
        "waiter",
        "worker",
        "worker_id",
    )

    def __init__(self, job: Job, submitted_at: float) -> None:
        self.job = job
        self.state = _QUEUED
        self.attempt = 0
        self.submitted_at = submitted_at
        self.queued_at = submitted_at
        self.worker: Any = None
        self.cancelled_running = False
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.worker_id: str | None = None
        self.result: Any = None
        self.error: ErrorInfo | None = None
        self.exc: BaseException | None = None
        self.output: JobOutputCaptured | None = None
        self.cancel_reason: CancelReason | None = None
        self.cancelled_attempts: set[int] | None = None  # their contexts say cancelled
        self.progress: tuple[float, str] | None = None
        self.retry_timer: Any = None
        self.waiter: asyncio.Future[None] | None = None

    def finish(self, state: JobState, now: float) -> None:
        """Enter the terminal ``state`` and wake whoever awaits the handle."""
        self.state = state
        self.ended_at = now
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class JobPort(Protocol):
    """The narrow way from a job's :class:`JobContext` and :class:`JobHandle` into its pool."""

    def progress(self, record: JobRecord, attempt: int, fraction: float, message: str) -> None:
        """Note an attempt's progress; from any thread."""

    def output(
        self,
        record: JobRecord,
        attempt: int,
        worker_id: str,
        output: str,
        exit_code: int | None,
        path: str | None,
    ) -> None:
        """Publish what an attempt's process left; from any thread."""

    def cancel(self, record: JobRecord) -> bool:
        """Cancel the job at its handle's request; on the pool's loop."""


class JobContext:
    """What a running handler knows of its job, and how it reports progress.

    One is made for every attempt. ``cancelled`` turns true when the job is
    cancelled (deadline, handle, shutdown); a thread handler should check it
    and return.
    """

    __slots__ = ("_port", "_record", "attempt", "deadline", "job", "worker_id")

    def __init__(
        self,
        job: Job,
        worker_id: str,
        attempt: int,
        deadline: float | None,
        record: JobRecord,
        port: JobPort,
    ) -> None:
        self.job = job
        """The job being run."""
        self.worker_id = worker_id
        """The id of the worker running it."""
        self.attempt = attempt
        """1 for the first attempt, 2 for the first retry, and so on."""
        self.deadline = deadline
        """The pool clock's time at which the job times out, or None."""
        self._record = record
        self._port = port

    @property
    def cancelled(self) -> bool:
        """True once the job has been cancelled; the handler should stop soon."""
        cancelled = self._record.cancelled_attempts
        return cancelled is not None and self.attempt in cancelled

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the job has got: ``fraction`` from 0.0 to 1.0, and a short note.

        Safe to call from a thread handler. Progress reported after the job
        has ended is ignored.

        Raises:
            ValueError: ``fraction`` is outside 0.0 to 1.0.
        """
        check_progress(fraction, message)
        self._port.progress(self._record, self.attempt, float(fraction), message)

    def report_output(
        self, output: str, *, exit_code: int | None = None, path: str | None = None
    ) -> None:
        """Publish what the attempt's process left, as a :class:`~pool.events.JobOutputCaptured`.

        For runners that run jobs in processes. Safe to call from any thread;
        ignored once a later attempt has begun or the pool has stopped.
        """
        if not isinstance(output, str):
            raise TypeError(f"output must be a str, got {type(output).__name__}")
        self._port.output(self._record, self.attempt, self.worker_id, output, exit_code, path)

    def __repr__(self) -> str:
        return (
            f"<JobContext job={self.job.id!r} worker={self.worker_id!r} "
            f"attempt={self.attempt} cancelled={self.cancelled}>"
        )


class JobHandle:
    """A submitted job: its state, and its result once it ends.

    ``await handle`` returns the handler's return value, or raises a
    :class:`~pool.errors.JobError` subclass saying how the job ended.
    """

    __slots__ = ("_port", "_record", "job")

    def __init__(self, record: JobRecord, port: JobPort) -> None:
        self.job = record.job
        """The job itself."""
        self._record = record
        self._port = port
        # The record does not point back: a handle nobody keeps is freed at
        # once (a cycle per job had the collector free them, and a handle
        # kept for every live job made it run twice as often under load).

    @property
    def id(self) -> str:
        """The job's id."""
        return self.job.id

    @property
    def state(self) -> JobState:
        """The job's current state."""
        return self._record.state

    @property
    def attempts(self) -> int:
        """How many attempts have started so far."""
        return self._record.attempt

    @property
    def worker_id(self) -> str | None:
        """The worker that runs (or last ran) the job, if any."""
        return self._record.worker_id

    @property
    def error(self) -> ErrorInfo | None:
        """The last attempt's error, if it failed or its worker crashed."""
        return self._record.error

    @property
    def output(self) -> JobOutputCaptured | None:
        """What the last attempt's process left (exit code, output tail), if it ran in one."""
        return self._record.output

    @property
    def submitted_at(self) -> float:
        """The pool clock's time when the job was accepted."""
        return self._record.submitted_at

    @property
    def started_at(self) -> float | None:
        """The pool clock's time when the current or last attempt started."""
        return self._record.started_at

    @property
    def ended_at(self) -> float | None:
        """The pool clock's time when the job reached its terminal state."""
        return self._record.ended_at

    def done(self) -> bool:
        """Whether the job has reached a terminal state."""
        return self._record.state not in _LIVE

    def cancel(self) -> bool:
        """Cancel the job: at once if queued, by cancelling its handler if running.

        Returns:
            True if the request was made, False if the job had already ended
            or was already being cancelled.
        """
        return self._port.cancel(self._record)

    def result(self) -> Any:
        """The handler's return value, or raise how the job ended.

        Raises:
            asyncio.InvalidStateError: The job has not ended yet.
            JobError: It did not succeed (a subclass says how it ended).
        """
        record = self._record
        state = record.state
        if state is JobState.SUCCEEDED:
            return record.result
        if state in _LIVE:
            raise asyncio.InvalidStateError(f"job {self.job.id!r} is {state.value}")
        raise self._job_error()

    def _job_error(self) -> JobError:
        job_id = self.job.id
        record = self._record
        state = record.state
        if state is JobState.FAILED:
            assert record.error is not None
            err = JobFailedError(
                f"job {job_id!r} failed: {record.error.short()}", job_id=job_id, error=record.error
            )
            err.__cause__ = record.exc
            return err
        if state is JobState.TIMED_OUT:
            return JobTimeoutError(f"job {job_id!r} timed out", job_id=job_id)
        if state is JobState.CANCELLED:
            return JobCancelledError(f"job {job_id!r} was cancelled", job_id=job_id)
        return JobAbandonedError(f"job {job_id!r} was abandoned", job_id=job_id)

    def _waiter(self) -> asyncio.Future[None]:
        record = self._record
        waiter = record.waiter
        if waiter is None:
            waiter = record.waiter = asyncio.get_running_loop().create_future()
            if record.state not in _LIVE:
                waiter.set_result(None)
        return waiter

    def add_done_callback(self, fn: Callable[[JobHandle], object]) -> None:
        """Call ``fn(handle)`` on the loop once the job reaches its terminal state.

        If it already has, ``fn`` is called soon. Must be called on the pool's loop.
        """
        self._waiter().add_done_callback(lambda _: fn(self))

    def __await__(self) -> Generator[Any, None, Any]:
        return self._wait().__await__()

    async def _wait(self) -> Any:
        if self._record.state in _LIVE:
            # Shielded so that one awaiter's cancellation does not cancel the others' wait.
            await asyncio.shield(self._waiter())
        return self.result()

    def __eq__(self, other: object) -> bool:
        # Every handle of a job is a view of the same record (see ``Pool.job``).
        if not isinstance(other, JobHandle):
            return NotImplemented
        return other._record is self._record

    def __hash__(self) -> int:
        return id(self._record)

    def __repr__(self) -> str:
        return (
            f"<JobHandle {self.job.id!r} [{self._record.state.value}] "
            f"attempts={self._record.attempt}>"
        )
