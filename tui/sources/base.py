"""What the dashboard reads and drives: a source.

A source gives a snapshot, batches of events with sequence numbers, and the
controls it supports. The dashboard knows nothing else of what stands
behind it: a pool in this process (:mod:`.local`), a pool in another
process (:mod:`.attached`), a recording (:mod:`.recording`), a Celery
cluster (:mod:`.celery`). Adding a kind
of source is adding a module, never touching the widgets.
"""

from __future__ import annotations

import abc
import enum
import time
from dataclasses import dataclass
from typing import Protocol

from pool import DeadLetter, ErrorInfo, Job, PoolSnapshot, ShutdownReport
from pool.events import JobOutputCaptured, PoolEvent

__all__ = ("Control", "EventFeed", "JobView", "Source", "SourceError")


class Control(enum.Enum):
    """What a source lets the operator do to the work behind it."""

    ADD_JOBS = "add_jobs"
    """Submit jobs (the add dialog)."""
    RESIZE = "resize"
    """Grow, shrink, or set the number of workers."""
    PAUSE = "pause"
    """Pause and resume taking jobs."""
    SHUTDOWN = "shutdown"
    """Begin a graceful shutdown, and skip it ahead."""
    RESUBMIT = "resubmit"
    """Run a failed job again."""
    CANCEL = "cancel"
    """Cancel one job (a Celery task: revoke it; asked again, terminate it)."""


class SourceError(Exception):
    """A control the source could not carry out; the message says why."""


class EventFeed(Protocol):
    """The events a source has for the dashboard, taken a batch at a time.

    An :class:`~pool.events.EventsDropped` in a batch means the feed lost
    events there: the dashboard resyncs from :meth:`Source.snapshot`, then
    folds the events after the marker that the snapshot does not include.
    """

    def drain(self) -> list[PoolEvent]:
        """Every event pending, in order."""
        ...

    def pending(self) -> int:
        """How many events are pending."""
        ...

    def close(self) -> None:
        """No more events are wanted."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class JobView:
    """One job as a source can tell of it, for the detail view."""

    job: Job
    state: str
    attempts: int
    worker_id: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: ErrorInfo | None = None
    output: JobOutputCaptured | None = None
    result: object = None
    has_result: bool = False
    """Whether ``result`` is what the handler returned (it may return None)."""


class Source(abc.ABC):
    """A pool (or what stands for one) that the dashboard shows and drives.

    Every control is a coroutine that raises :class:`SourceError` (or a
    ``PoolError``) with a message for the operator when it cannot be done;
    a source that does not support a control leaves it out of
    :attr:`controls`, and the dashboard never offers it.
    """

    controls: frozenset[Control] = frozenset()
    """The controls this source supports."""

    remote: bool = False
    """Whether the work runs in another process, and goes on when the dashboard
    leaves (``q`` detaches)."""

    @property
    def connected(self) -> bool:
        """Whether a control can reach the work now (a remote one may be out of reach)."""
        return True

    @property
    def generation(self) -> int:
        """Changes when the snapshot that a gap resyncs from is of another pool, or of
        an earlier moment (a service restarted, a replay sought): the dashboard then
        starts afresh from it, instead of bringing its state up to date."""
        return 0

    @property
    @abc.abstractmethod
    def title(self) -> str:
        """What the dashboard's header names: the pool, and where it runs."""

    @property
    def status(self) -> str:
        """What is wrong with the source now, for a banner ("disconnected..."), or ''."""
        return ""

    @property
    def max_workers(self) -> int:
        """The largest size a resize may ask for."""
        return 0

    @property
    def grace(self) -> float:
        """The grace period a shutdown offers by default."""
        return 10.0

    @property
    def cancel_grace(self) -> float:
        """Seconds a cancelled job has before it is abandoned."""
        return 2.0

    @property
    def note(self) -> str:
        """What the source says beside the figures that is no problem (a cluster's
        nodes and broker queues), for the banner, or ''."""
        return ""

    @property
    def cancel_again(self) -> str:
        """What asking again to cancel a job that is being cancelled does, in a few
        words for the help ('' when it does nothing more)."""
        return ""

    @property
    def payload_hint(self) -> str:
        """What the add dialog asks of a job's payload ('' for its default words)."""
        return ""

    def now(self) -> float:
        """The pool's time now, on the clock its events' ``at`` are read on."""
        return time.monotonic()

    async def start(self) -> None:  # noqa: B027 (a hook: most sources have nothing to start)
        """Begin: start the pool, connect, open the file. Called once, on mount."""

    @abc.abstractmethod
    def snapshot(self) -> PoolSnapshot:
        """The latest consistent picture of the pool (``seq`` says what it includes)."""

    @abc.abstractmethod
    def events(self, maxsize: int) -> EventFeed:
        """Subscribe to the events after :meth:`snapshot`'s (``maxsize``: the buffer)."""

    async def add_jobs(self, count: int, payload: str | None = None) -> int:
        """Submit ``count`` jobs (of ``payload``, where the source takes one); returns
        how many were accepted."""
        raise SourceError("this source cannot add jobs")

    async def resize(self, workers: int) -> None:
        """Set the number of workers."""
        raise SourceError("this source cannot be resized")

    async def pause(self) -> None:
        """Stop taking jobs from the queue."""
        raise SourceError("this source cannot be paused")

    async def resume(self) -> None:
        """Take jobs from the queue again."""
        raise SourceError("this source cannot be paused")

    async def shutdown(self, grace: float | None, drain: bool, cancel_grace: float | None) -> None:
        """Begin the graceful shutdown (returns once begun); again, skip it ahead."""
        raise SourceError("this source cannot be shut down")

    async def wait_stopped(self) -> ShutdownReport | None:
        """Wait until the pool has stopped; its report where the source has one."""
        raise SourceError("this source does not stop")

    async def resubmit(self, job_id: str) -> None:
        """Run a failed job again."""
        raise SourceError("this source cannot resubmit jobs")

    def aim(self, worker_id: str | None) -> None:  # noqa: B027 (a hook: most sources are one part)
        """The operator selected ``worker_id``'s panel: controls that act on one part
        of the source (a Celery node) act on its part."""

    def part_of(self, worker_id: str) -> str | None:
        """The part (a Celery node) that can be shut down alone holding ``worker_id``, or None."""
        return None

    async def shutdown_part(self, part: str, grace: float) -> None:
        """Begin the graceful shutdown of one part only; the rest goes on."""
        raise SourceError("this source cannot shut down a part of itself")

    async def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job (asked again, harder where the source can:
        a Celery task is terminated); False when it had already ended."""
        raise SourceError("this source cannot cancel jobs")

    async def dead_letters(self) -> tuple[DeadLetter, ...]:
        """The failed jobs kept for inspection."""
        return ()

    async def job(self, job_id: str) -> JobView | None:
        """What the source knows of a job, or None."""
        return None

    def describe(self, job: Job) -> str:
        """A job named for people (a shell command's text), or ''."""
        return ""

    async def close(self) -> None:  # noqa: B027 (a hook: most sources have nothing to close)
        """Let go: detach, disconnect, close the file. Never stops a pool it did not start."""
