"""The pool's figures: exact counters, recent latencies and recent throughput."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ("LatencyWindow", "Percentiles", "PoolStats", "Throughput")


@dataclass(frozen=True, slots=True, kw_only=True)
class Percentiles:
    """Percentiles of a duration in seconds, over the most recent jobs.

    All three are 0.0 (and ``count`` is 0) before any job is measured.
    """

    p50: float
    p95: float
    p99: float
    count: int


_NO_SAMPLES = Percentiles(p50=0.0, p95=0.0, p99=0.0, count=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolStats:
    """A consistent set of the pool's figures at one moment.

    The counters obey, always::

        submitted == rejected + queued + running
                     + succeeded + failed + timed_out + cancelled + abandoned

    Attributes:
        submitted: Jobs offered to the pool, accepted or rejected (not those
            refused with ``PoolClosed`` or a bad-argument error).
        rejected: Jobs refused because the queue was full.
        queued: Accepted jobs waiting for a worker, including those waiting
            for a retry.
        running: Jobs a worker is running now.
        succeeded, failed, timed_out, cancelled, abandoned: Jobs that ended
            so; a job is counted once, when its last attempt ends.
        retried: Retries scheduled (one job may be retried several times).
        restarts: Worker restarts after crashes.
        workers: Live worker slots (including retiring and restarting ones).
        target_workers: The size the pool is resizing towards.
        busy_workers: Workers running a job.
        retiring_workers: Workers that exit after their current job.
        queue_capacity: The queue's bound.
        oldest_queued_age: Seconds the oldest job ready in the queue has waited, or 0.0.
        run_time: Percentiles of how long recent attempts ran.
        queue_wait: Percentiles of how long recent jobs waited to start.
        throughput: Jobs that ended per second, over the last few seconds.
        dead_letters: Failed jobs kept for inspection and resubmission.
    """

    submitted: int
    rejected: int
    queued: int
    running: int
    succeeded: int
    failed: int
    timed_out: int
    cancelled: int
    abandoned: int
    retried: int
    restarts: int
    workers: int
    target_workers: int
    busy_workers: int
    retiring_workers: int
    queue_capacity: int
    oldest_queued_age: float
    run_time: Percentiles
    queue_wait: Percentiles
    throughput: float
    dead_letters: int

    @property
    def finished(self) -> int:
        """Jobs in a terminal state."""
        return self.succeeded + self.failed + self.timed_out + self.cancelled + self.abandoned

    @property
    def utilisation(self) -> float:
        """Busy workers as a fraction of live ones (0.0 with no workers)."""
        return self.busy_workers / self.workers if self.workers else 0.0

    def balanced(self) -> bool:
        """Whether the accounting identity holds (it always should)."""
        return self.submitted == self.rejected + self.queued + self.running + self.finished


class LatencyWindow:
    """The last ``size`` durations, for percentiles that follow the recent load."""

    __slots__ = ("_samples", "add")

    def __init__(self, size: int = 2048) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        # The deque's own append, not a method around it: it runs twice a job.
        self.add: Callable[[float], None] = self._samples.append
        """Record one duration."""

    def percentiles(self) -> Percentiles:
        """Nearest-rank p50, p95 and p99 of the recorded durations."""
        samples = sorted(self._samples)
        n = len(samples)
        if not n:
            return _NO_SAMPLES

        def rank(p: int) -> float:
            return samples[max(0, math.ceil(n * p / 100) - 1)]

        return Percentiles(p50=rank(50), p95=rank(95), p99=rank(99), count=n)


class Throughput:
    """Events per second over a sliding window of whole-second buckets."""

    __slots__ = ("_buckets", "_current", "_second", "_since", "_window")

    def __init__(self, now: float, window: int = 5) -> None:
        self._window = window
        self._since = now
        self._second = int(now)
        self._current = 0
        self._buckets: deque[tuple[int, int]] = deque(maxlen=window + 1)

    def add(self, now: float) -> None:
        """Count one event at time ``now``."""
        second = int(now)
        if second != self._second:
            self._roll(second)
        self._current += 1

    def _roll(self, second: int) -> None:
        if self._current:
            self._buckets.append((self._second, self._current))
        self._second = second
        self._current = 0

    def rate(self, now: float) -> float:
        """Events per second over the current second and the ``window - 1`` before it."""
        second = int(now)
        if second != self._second:
            self._roll(second)
        first = second - self._window + 1
        span = now - max(float(first), self._since)
        total = self._current + sum(c for s, c in self._buckets if s >= first)
        # At least a second, so that the first few events do not read as a burst.
        return total / max(span, 1.0)
