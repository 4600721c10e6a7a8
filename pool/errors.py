"""The exceptions the pool raises.

Every error the pool raises on purpose derives from :class:`PoolError`. The
``Job*`` errors are what awaiting a :class:`~pool.JobHandle` raises when the
job did not succeed; each says how the job ended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .job import ErrorInfo

__all__ = (
    "JobAbandonedError",
    "JobCancelledError",
    "JobError",
    "JobFailedError",
    "JobTimeoutError",
    "PoolClosed",
    "PoolError",
    "QueueFull",
)


class PoolError(Exception):
    """Base class of every error the pool raises on purpose."""


class PoolClosed(PoolError):
    """The pool no longer accepts jobs: its shutdown has begun or it has stopped."""


class QueueFull(PoolError):
    """The queue is at capacity and the job was refused."""


class JobError(PoolError):
    """A job ended without a result.

    Attributes:
        job_id: The job's id.
    """

    def __init__(self, message: str, *, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobFailedError(JobError):
    """The handler raised on the job's last attempt.

    The handler's exception is this error's ``__cause__``.

    Attributes:
        error: The type, message and traceback of the handler's exception.
    """

    def __init__(self, message: str, *, job_id: str, error: ErrorInfo) -> None:
        super().__init__(message, job_id=job_id)
        self.error = error


class JobTimeoutError(JobError):
    """The job ran past its deadline and was cancelled."""


class JobCancelledError(JobError):
    """The job was cancelled: by its handle, or by a shutdown, before or while it ran."""


class JobAbandonedError(JobError):
    """The job did not stop within ``cancel_grace`` of its cancellation and was abandoned."""
