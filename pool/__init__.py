"""A supervised worker pool for asyncio programs.

Jobs are data (an id, a payload, a deadline); workers, started before any
traffic, take them from a bounded queue; a job's error is recorded and its
worker goes on; crashed workers are restarted within an intensity limit;
the pool can be resized while it runs; and a graceful shutdown is bounded in
time and accounts for every job. Every change is published as a typed event.
"""

from __future__ import annotations

from . import children as children
from . import commands as commands
from . import control as control
from . import events as events
from . import wire as wire
from .bus import Subscription as Subscription
from .clock import Clock as Clock
from .clock import ManualClock as ManualClock
from .clock import MonotonicClock as MonotonicClock
from .control import ControlServer as ControlServer
from .errors import JobAbandonedError as JobAbandonedError
from .errors import JobCancelledError as JobCancelledError
from .errors import JobError as JobError
from .errors import JobFailedError as JobFailedError
from .errors import JobTimeoutError as JobTimeoutError
from .errors import PoolClosed as PoolClosed
from .errors import PoolError as PoolError
from .errors import QueueFull as QueueFull
from .job import ErrorInfo as ErrorInfo
from .job import Job as Job
from .job import JobContext as JobContext
from .job import JobHandle as JobHandle
from .job import JobState as JobState
from .phase import PoolPhase as PoolPhase
from .pool import DeadLetter as DeadLetter
from .pool import Handler as Handler
from .pool import Pool as Pool
from .pool import PoolSnapshot as PoolSnapshot
from .retry import RetryPolicy as RetryPolicy
from .shutdown import ShutdownReport as ShutdownReport
from .stats import Percentiles as Percentiles
from .stats import PoolStats as PoolStats
from .worker import WorkerInfo as WorkerInfo
from .worker import WorkerState as WorkerState

__all__ = (
    "Clock",
    "ControlServer",
    "DeadLetter",
    "ErrorInfo",
    "Handler",
    "Job",
    "JobAbandonedError",
    "JobCancelledError",
    "JobContext",
    "JobError",
    "JobFailedError",
    "JobHandle",
    "JobState",
    "JobTimeoutError",
    "ManualClock",
    "MonotonicClock",
    "Percentiles",
    "PoolClosed",
    "PoolError",
    "PoolPhase",
    "PoolSnapshot",
    "PoolStats",
    "QueueFull",
    "RetryPolicy",
    "ShutdownReport",
    "Subscription",
    "WorkerInfo",
    "WorkerState",
    "children",
    "commands",
    "control",
    "events",
    "wire",
)
