"""DashboardState: the dashboard's pure fold of the pool's events.

Two kinds of tests. Scripted ones build events with their constructors (seq
from 1, times chosen by the test) and check what the dashboard would show.
The others run a real :class:`~pool.Pool` on a :class:`~pool.ManualClock`,
fold its events after each step, and check the state against
``pool.stats()`` and ``pool.snapshot()``: the fold must agree with the pool.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable

import pytest
import pytest_asyncio

from pool import (
    ErrorInfo,
    Job,
    JobContext,
    JobHandle,
    JobState,
    ManualClock,
    Pool,
    PoolPhase,
    PoolStats,
    QueueFull,
    RetryPolicy,
    WorkerInfo,
    WorkerState,
    events,
)
from tests.helpers import Crash, Script, release_all, settle
from tests.pool.test_events import sample
from tui.state import LOG_LIMIT, SPARK_SECONDS, DashboardState, LogEntry, Outcome, WorkerView

ERROR = ErrorInfo(type="tests.errors.BoomError", message="boom\nsecond line", traceback="tb")
"""A job's error; its short form is ``BoomError: boom``."""

COUNTERS = (
    "submitted",
    "rejected",
    "queued",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "abandoned",
    "retried",
    "restarts",
)
"""The counters the dashboard shows, named as in PoolStats."""

Row = tuple[
    str, WorkerState, str | None, float | None, int | None, float | None, str, int, int, int
]


@pytest_asyncio.fixture(autouse=True)
async def _release_held_jobs() -> AsyncIterator[None]:
    # In the test's loop: a job that ignores cancellation must not hang the teardown.
    yield
    release_all()
    await settle()


# --- scripted events ---------------------------------------------------------


class Feed:
    """Builds events with seq 1, 2, 3... and folds each into ``state`` as it is made."""

    def __init__(self, state: DashboardState | None = None) -> None:
        self.state = DashboardState() if state is None else state
        self.seq = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def fold(self, event: events.PoolEvent) -> None:
        self.state.apply(event)

    def phase(self, phase: PoolPhase, at: float, reason: str | None = None) -> None:
        self.fold(
            events.PhaseChanged(
                seq=self.next_seq(), at=at, phase=phase, previous=self.state.phase, reason=reason
            )
        )

    def running(self, at: float, *worker_ids: str) -> None:
        """A pool that starts with these workers at ``at``."""
        self.phase(PoolPhase.STARTING, at)
        for worker_id in worker_ids:
            self.worker_started(worker_id, at)
        self.phase(PoolPhase.RUNNING, at)

    def worker_started(self, worker_id: str, at: float) -> None:
        self.fold(events.WorkerStarted(seq=self.next_seq(), at=at, worker_id=worker_id))

    def submitted(self, job_id: str, at: float) -> None:
        self.fold(
            events.JobSubmitted(
                seq=self.next_seq(), at=at, job_id=job_id, queued=self.state.queued + 1
            )
        )

    def rejected(self, job_id: str, at: float) -> None:
        self.fold(
            events.JobRejected(seq=self.next_seq(), at=at, job_id=job_id, reason="queue full")
        )

    def started(
        self, job_id: str, worker_id: str, at: float, attempt: int = 1, waited: float = 0.0
    ) -> None:
        self.fold(
            events.JobStarted(
                seq=self.next_seq(),
                at=at,
                job_id=job_id,
                worker_id=worker_id,
                attempt=attempt,
                waited=waited,
            )
        )

    def progressed(
        self, job_id: str, worker_id: str, at: float, fraction: float, message: str
    ) -> None:
        self.fold(
            events.JobProgressed(
                seq=self.next_seq(),
                at=at,
                job_id=job_id,
                worker_id=worker_id,
                fraction=fraction,
                message=message,
            )
        )

    def succeeded(
        self, job_id: str, worker_id: str, at: float, duration: float = 0.0, attempt: int = 1
    ) -> None:
        self.fold(
            events.JobSucceeded(
                seq=self.next_seq(),
                at=at,
                job_id=job_id,
                worker_id=worker_id,
                attempt=attempt,
                duration=duration,
            )
        )

    def run_ok(self, job_id: str, worker_id: str, at: float) -> None:
        """A job submitted, started and succeeded, all at ``at``."""
        self.submitted(job_id, at)
        self.started(job_id, worker_id, at)
        self.succeeded(job_id, worker_id, at)

    def retry(
        self,
        job_id: str,
        worker_id: str,
        at: float,
        delay: float,
        duration: float = 0.0,
        attempt: int = 1,
    ) -> None:
        self.fold(
            events.JobRetryScheduled(
                seq=self.next_seq(),
                at=at,
                job_id=job_id,
                worker_id=worker_id,
                attempt=attempt,
                duration=duration,
                error=ERROR,
                delay=delay,
            )
        )

    def failed(
        self, job_id: str, worker_id: str, at: float, duration: float = 0.0, attempt: int = 1
    ) -> None:
        self.fold(
            events.JobFailed(
                seq=self.next_seq(),
                at=at,
                job_id=job_id,
                worker_id=worker_id,
                attempt=attempt,
                duration=duration,
                error=ERROR,
            )
        )

    def cancel_requested(self, job_id: str, worker_id: str, at: float, reason: str) -> None:
        self.fold(
            events.JobCancelRequested(
                seq=self.next_seq(), at=at, job_id=job_id, worker_id=worker_id, reason=reason
            )
        )

    def timed_out(self, job_id: str, worker_id: str, at: float, duration: float) -> None:
        self.fold(
            events.JobTimedOut(
                seq=self.next_seq(),
                at=at,
                job_id=job_id,
                worker_id=worker_id,
                attempt=1,
                duration=duration,
            )
        )

    def cancelled(self, job_id: str, worker_id: str | None, at: float) -> None:
        self.fold(
            events.JobCancelled(
                seq=self.next_seq(),
                at=at,
                job_id=job_id,
                worker_id=worker_id,
                started=worker_id is not None,
            )
        )

    def abandoned(self, job_id: str, worker_id: str, at: float, duration: float) -> None:
        self.fold(
            events.JobAbandoned(
                seq=self.next_seq(), at=at, job_id=job_id, worker_id=worker_id, duration=duration
            )
        )

    def retire_requested(self, worker_id: str, at: float) -> None:
        self.fold(events.WorkerRetireRequested(seq=self.next_seq(), at=at, worker_id=worker_id))

    def worker_stopped(self, worker_id: str, at: float) -> None:
        self.fold(events.WorkerStopped(seq=self.next_seq(), at=at, worker_id=worker_id))

    def crashed(
        self, worker_id: str, job_id: str | None, at: float, restart_in: float | None
    ) -> None:
        self.fold(
            events.WorkerCrashed(
                seq=self.next_seq(),
                at=at,
                worker_id=worker_id,
                job_id=job_id,
                error=ErrorInfo(type="tests.helpers.Crash", message="killed"),
                restart_in=restart_in,
            )
        )

    def restarted(self, worker_id: str, at: float, restarts: int) -> None:
        self.fold(
            events.WorkerRestarted(
                seq=self.next_seq(), at=at, worker_id=worker_id, restarts=restarts
            )
        )

    def replaced(self, worker_id: str, job_id: str, at: float) -> None:
        self.fold(
            events.WorkerReplaced(seq=self.next_seq(), at=at, worker_id=worker_id, job_id=job_id)
        )

    def resized(self, target: int, previous: int, at: float) -> None:
        self.fold(events.PoolResized(seq=self.next_seq(), at=at, target=target, previous=previous))

    def shutdown_started(self, at: float, grace: float, cancel_grace: float) -> None:
        self.fold(
            events.ShutdownStarted(
                seq=self.next_seq(), at=at, grace=grace, cancel_grace=cancel_grace, drain=True
            )
        )

    def shutdown_tick(
        self, at: float, phase: PoolPhase, remaining: float, running: int, queued: int
    ) -> None:
        self.fold(
            events.ShutdownTick(
                seq=self.next_seq(),
                at=at,
                phase=phase,
                remaining=remaining,
                running=running,
                queued=queued,
            )
        )

    def pool_stopped(self, at: float, reached: PoolPhase, duration: float) -> events.PoolStopped:
        event = events.PoolStopped(
            seq=self.next_seq(),
            at=at,
            phase=PoolPhase.STOPPED,
            phase_reached=reached,
            finished=1,
            cancelled=0,
            not_started=1,
            abandoned=1,
            duration=duration,
            reason=None,
        )
        self.fold(event)
        return event


def counts(source: DashboardState | PoolStats) -> dict[str, int]:
    """The dashboard's counters, from the state or from the pool's stats."""
    values: dict[str, int] = {name: getattr(source, name) for name in COUNTERS}
    return values


def balanced(state: DashboardState) -> bool:
    """The pool's accounting identity, as the dashboard's counters see it."""
    return state.submitted == state.rejected + state.queued + state.running + state.finished


def states(state: DashboardState) -> list[tuple[str, WorkerState]]:
    return [(w.id, w.state) for w in state.ordered_workers()]


class TestJobCounters:
    def test_a_job_moves_from_queued_to_running_to_succeeded(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        feed.submitted("a", 1.0)
        assert (feed.state.submitted, feed.state.queued, feed.state.running) == (1, 1, 0)
        feed.started("a", "w1", 1.5, waited=0.5)
        assert (feed.state.queued, feed.state.running) == (0, 1)
        feed.succeeded("a", "w1", 2.0, duration=0.5)
        assert counts(feed.state) == {
            "submitted": 1,
            "rejected": 0,
            "queued": 0,
            "running": 0,
            "succeeded": 1,
            "failed": 0,
            "timed_out": 0,
            "cancelled": 0,
            "abandoned": 0,
            "retried": 0,
            "restarts": 0,
        }
        assert feed.state.finished == 1
        assert feed.state.queue_wait().count == 1
        assert feed.state.run_time().p50 == 0.5

    def test_a_rejected_job_counts_as_submitted_and_rejected(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        feed.rejected("r", 1.0)
        assert (feed.state.submitted, feed.state.rejected, feed.state.queued) == (1, 1, 0)
        assert balanced(feed.state)

    def test_a_retry_requeues_and_the_last_failure_counts_once(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        feed.submitted("a", 1.0)
        feed.started("a", "w1", 1.0)
        feed.retry("a", "w1", 2.0, delay=0.25, duration=1.0)
        assert (feed.state.queued, feed.state.running, feed.state.retried) == (1, 0, 1)
        assert feed.state.failed == 0
        assert balanced(feed.state)
        feed.started("a", "w1", 2.25, attempt=2)
        assert feed.state.workers["w1"].attempt == 2
        feed.failed("a", "w1", 3.0, duration=0.75, attempt=2)
        assert (feed.state.queued, feed.state.running, feed.state.failed) == (0, 0, 1)
        assert feed.state.retried == 1
        assert feed.state.workers["w1"].jobs_failed == 2
        assert balanced(feed.state)

    def test_a_crash_retry_or_failure_ends_the_attempt_on_its_worker(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1", "w2")
        for job_id, worker_id in (("a", "w1"), ("b", "w2")):
            feed.submitted(job_id, 1.0)
            feed.started(job_id, worker_id, 1.0)
        feed.retry("a", "w1", 2.0, delay=0.0)
        assert (feed.state.queued, feed.state.running, feed.state.retried) == (1, 1, 1)
        feed.failed("b", "w2", 2.0)
        assert (feed.state.running, feed.state.failed) == (0, 1)
        assert [w.job_id for w in feed.state.ordered_workers()] == [None, None]
        assert balanced(feed.state)

    def test_a_timeout_counts_as_timed_out_and_as_a_failure_of_its_worker(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        feed.submitted("a", 1.0)
        feed.started("a", "w1", 1.0)
        feed.cancel_requested("a", "w1", 3.0, "timeout")
        assert feed.state.workers["w1"].cancelling
        feed.timed_out("a", "w1", 3.0, duration=2.0)
        view = feed.state.workers["w1"]
        assert (feed.state.running, feed.state.timed_out) == (0, 1)
        assert (view.state, view.job_id, view.cancelling, view.jobs_failed) == (
            WorkerState.IDLE,
            None,
            False,
            1,
        )

    def test_cancelling_a_queued_job_and_a_running_one(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        feed.submitted("run", 1.0)
        feed.started("run", "w1", 1.0)
        feed.submitted("wait", 1.0)
        feed.cancelled("wait", None, 2.0)
        assert (feed.state.queued, feed.state.running, feed.state.cancelled) == (0, 1, 1)
        assert feed.state.oldest_queued_age() == 0.0
        feed.cancel_requested("run", "w1", 2.0, "cancel")
        feed.cancelled("run", "w1", 2.5)
        assert (feed.state.queued, feed.state.running, feed.state.cancelled) == (0, 0, 2)
        assert feed.state.workers["w1"].state is WorkerState.IDLE
        assert feed.state.workers["w1"].jobs_failed == 0
        assert balanced(feed.state)

    def test_an_abandoned_job_and_its_replaced_worker(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        feed.submitted("a", 1.0)
        feed.started("a", "w1", 1.0)
        feed.cancel_requested("a", "w1", 2.0, "cancel")
        feed.abandoned("a", "w1", 4.0, duration=3.0)
        assert (feed.state.running, feed.state.abandoned) == (0, 1)
        feed.replaced("w1", "a", 4.0)
        view = feed.state.workers["w1"]
        assert (view.state, view.job_id, view.changed_at) == (WorkerState.IDLE, None, 4.0)
        assert balanced(feed.state)

    def test_resizing_sets_the_target(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        feed.resized(4, 1, 1.0)
        assert feed.state.target_workers == 4


class TestWorkerViews:
    def test_a_started_worker_is_idle_since_it_started(self) -> None:
        feed = Feed()
        feed.running(5.0, "w1")
        view = feed.state.workers["w1"]
        assert (view.state, view.job_id, view.changed_at) == (WorkerState.IDLE, None, 5.0)
        assert (feed.state.live_workers, feed.state.busy_workers) == (1, 0)
        assert feed.state.utilisation == 0.0

    def test_a_busy_worker_shows_its_job_attempt_and_progress(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1", "w2")
        feed.submitted("a", 1.0)
        feed.started("a", "w1", 2.0, attempt=3, waited=1.0)
        feed.progressed("a", "w1", 2.5, 0.25, "a quarter")
        view = feed.state.workers["w1"]
        assert (view.state, view.job_id, view.attempt, view.job_started_at) == (
            WorkerState.BUSY,
            "a",
            3,
            2.0,
        )
        assert (view.progress, view.progress_message) == (0.25, "a quarter")
        assert feed.state.utilisation == 0.5
        feed.succeeded("a", "w1", 3.0, attempt=3)
        assert view == WorkerView("w1", jobs_done=1, changed_at=3.0)

    def test_progress_of_another_job_is_ignored(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        feed.submitted("a", 1.0)
        feed.started("a", "w1", 1.0)
        feed.progressed("old", "w1", 1.5, 0.9, "late")
        view = feed.state.workers["w1"]
        assert (view.progress, view.progress_message) == (None, "")

    def test_changed_at_moves_only_when_the_state_changes(self) -> None:
        feed = Feed()
        feed.running(1.0, "w1")
        view = feed.state.workers["w1"]
        feed.submitted("a", 2.0)
        feed.started("a", "w1", 2.0)
        assert view.changed_at == 2.0
        feed.progressed("a", "w1", 2.5, 0.5, "half")
        feed.cancel_requested("a", "w1", 2.6, "cancel")
        assert view.changed_at == 2.0
        feed.cancelled("a", "w1", 3.0)
        assert (view.state, view.changed_at) == (WorkerState.IDLE, 3.0)
        feed.worker_started("w1", 4.0)  # idle already
        assert view.changed_at == 3.0
        feed.submitted("b", 5.0)
        feed.started("b", "w1", 5.0)
        feed.retire_requested("w1", 6.0)
        assert (view.state, view.changed_at) == (WorkerState.RETIRING, 6.0)
        feed.succeeded("b", "w1", 7.0)
        assert (view.state, view.changed_at) == (WorkerState.RETIRING, 6.0)

    def test_workers_are_ordered_by_the_number_in_their_id(self) -> None:
        feed = Feed()
        feed.running(0.0, "w10", "w2", "w1", "w11")
        assert list(feed.state.workers) == ["w10", "w2", "w1", "w11"]
        assert [w.id for w in feed.state.ordered_workers()] == ["w1", "w2", "w10", "w11"]

    def test_a_retiring_worker_finishes_its_job_then_is_removed(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1", "w2")
        feed.submitted("a", 1.0)
        feed.started("a", "w2", 1.0)
        feed.resized(1, 2, 2.0)
        feed.worker_stopped("w1", 2.0)  # the idle one goes at once
        feed.retire_requested("w2", 2.0)
        assert states(feed.state) == [("w2", WorkerState.RETIRING)]
        assert (feed.state.retiring_workers, feed.state.busy_workers) == (1, 1)
        feed.succeeded("a", "w2", 3.0)
        view = feed.state.workers["w2"]
        assert (view.state, view.job_id, view.jobs_done) == (WorkerState.RETIRING, None, 1)
        assert feed.state.busy_workers == 0
        feed.worker_stopped("w2", 3.0)
        assert feed.state.workers == {}
        assert feed.state.live_workers == 0

    def test_workers_stopped_by_a_shutdown_are_kept_as_stopped(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1", "w2")
        feed.phase(PoolPhase.DRAINING, 1.0)
        feed.worker_stopped("w2", 1.0)
        feed.worker_stopped("w1", 1.0)
        assert states(feed.state) == [("w1", WorkerState.STOPPED), ("w2", WorkerState.STOPPED)]
        assert feed.state.workers["w1"].changed_at == 1.0
        assert feed.state.live_workers == 0
        assert feed.state.utilisation == 0.0

    def test_a_crashed_worker_restarts_after_its_backoff(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        feed.submitted("a", 1.0)
        feed.started("a", "w1", 1.0)
        feed.failed("a", "w1", 2.0)  # as the pool tells it: the attempt ends, then the crash
        feed.crashed("w1", "a", 2.0, restart_in=0.5)
        view = feed.state.workers["w1"]
        assert (view.state, view.job_id, view.changed_at) == (WorkerState.RESTARTING, None, 2.0)
        assert (view.jobs_failed, feed.state.running, feed.state.failed) == (1, 0, 1)
        assert feed.state.live_workers == 1
        feed.restarted("w1", 2.5, restarts=1)
        assert (view.state, view.restarts, view.changed_at) == (WorkerState.IDLE, 1, 2.5)
        assert feed.state.restarts == 1
        feed.submitted("b", 3.0)
        feed.started("b", "w1", 3.0)
        feed.retry("b", "w1", 3.0, delay=0.0)
        feed.crashed("w1", "b", 3.0, restart_in=1.0)
        feed.restarted("w1", 4.0, restarts=2)
        assert (view.restarts, feed.state.restarts, view.jobs_failed) == (2, 2, 2)
        assert (feed.state.queued, feed.state.retried) == (1, 1)

    def test_a_worker_given_up_on_is_crashed_and_not_live(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1", "w2")
        feed.crashed("w1", None, 1.0, restart_in=None)
        assert states(feed.state) == [("w1", WorkerState.CRASHED), ("w2", WorkerState.IDLE)]
        assert feed.state.live_workers == 1


class TestLog:
    def test_entries_carry_outcome_duration_and_short_error(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        feed.rejected("r", 1.0)
        feed.submitted("a", 1.0)
        feed.started("a", "w1", 1.0)
        feed.succeeded("a", "w1", 1.5, duration=0.5)
        feed.submitted("b", 2.0)
        feed.started("b", "w1", 2.0)
        feed.retry("b", "w1", 3.0, delay=0.0, duration=1.0)
        feed.started("b", "w1", 3.0, attempt=2)
        feed.failed("b", "w1", 4.0, duration=1.0, attempt=2)
        feed.submitted("c", 4.0)
        feed.started("c", "w1", 4.0)
        feed.timed_out("c", "w1", 6.0, duration=2.0)
        feed.submitted("d", 6.0)
        feed.cancelled("d", None, 6.5)
        feed.submitted("e", 7.0)
        feed.started("e", "w1", 7.0)
        feed.abandoned("e", "w1", 9.0, duration=2.0)
        assert list(feed.state.log) == [
            LogEntry(1.0, "r", None, Outcome.REJECTED, None, "queue full"),
            LogEntry(1.5, "a", "w1", Outcome.SUCCEEDED, 0.5),
            LogEntry(3.0, "b", "w1", Outcome.RETRYING, 1.0, "BoomError: boom"),
            LogEntry(4.0, "b", "w1", Outcome.FAILED, 1.0, "BoomError: boom"),
            LogEntry(6.0, "c", "w1", Outcome.TIMED_OUT, 2.0),
            LogEntry(6.5, "d", None, Outcome.CANCELLED, None),
            LogEntry(9.0, "e", "w1", Outcome.ABANDONED, 2.0),
        ]
        assert feed.state.log_total == 7

    def test_the_log_keeps_the_last_entries_and_counts_them_all(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        for i in range(LOG_LIMIT + 5):
            feed.rejected(f"r{i}", float(i))
        assert len(feed.state.log) == LOG_LIMIT
        assert feed.state.log_total == LOG_LIMIT + 5
        assert feed.state.log[0].job_id == "r5"
        assert feed.state.log[-1].job_id == f"r{LOG_LIMIT + 4}"


class TestQueueAge:
    def test_the_oldest_waiting_job_sets_the_age(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        assert feed.state.oldest_queued_age() == 0.0
        feed.submitted("a", 10.0)
        feed.submitted("b", 12.0)
        feed.state.tick(15.0)
        assert feed.state.oldest_queued_age() == 5.0
        feed.started("a", "w1", 15.0, waited=5.0)
        assert feed.state.oldest_queued_age() == 3.0
        feed.succeeded("a", "w1", 16.0)
        feed.started("b", "w1", 16.0, waited=4.0)
        assert feed.state.oldest_queued_age() == 0.0

    def test_a_retry_waits_from_the_end_of_its_backoff(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        feed.submitted("a", 1.0)
        feed.started("a", "w1", 1.0)
        feed.retry("a", "w1", 2.0, delay=3.0)
        feed.state.tick(4.0)
        assert feed.state.oldest_queued_age() == 0.0
        feed.state.tick(6.0)
        assert feed.state.oldest_queued_age() == 1.0

    def test_a_job_in_its_retry_backoff_does_not_hide_a_job_that_waits(self) -> None:
        # The pool's oldest_queued_age is that of the oldest job ready in the queue.
        feed = Feed()
        feed.running(0.0, "w1")
        feed.submitted("a", 0.0)
        feed.started("a", "w1", 0.0)
        feed.retry("a", "w1", 1.0, delay=10.0)  # ready at 11.0
        feed.submitted("b", 1.0)
        feed.submitted("c", 2.0)
        feed.state.tick(5.0)
        assert feed.state.oldest_queued_age() == 4.0


class TestThroughput:
    def test_a_fresh_state_shows_nothing(self) -> None:
        state = DashboardState()
        assert state.sparkline() == [0] * SPARK_SECONDS
        assert state.throughput() == 0.0

    def test_ends_are_counted_per_whole_second(self) -> None:
        feed = Feed()
        feed.running(99.0, "w1")
        feed.state.tick(99.5)
        feed.run_ok("a", "w1", 100.2)
        feed.run_ok("b", "w1", 100.7)
        for job_id in ("c", "d", "e"):
            feed.run_ok(job_id, "w1", 101.1)
        assert feed.state.sparkline()[-2:] == [2, 3]
        feed.state.tick(102.0)
        spark = feed.state.sparkline()
        assert len(spark) == SPARK_SECONDS
        assert spark[-3:] == [2, 3, 0]
        assert sum(spark) == 5

    def test_throughput_is_over_the_last_five_whole_seconds(self) -> None:
        feed = Feed()
        feed.running(99.0, "w1")
        feed.state.tick(99.5)
        feed.run_ok("a", "w1", 100.2)
        feed.run_ok("b", "w1", 100.7)
        for job_id in ("c", "d", "e"):
            feed.run_ok(job_id, "w1", 101.1)
        assert feed.state.throughput() == 0.4  # second 100 is whole; 101 is not yet
        feed.state.tick(102.0)
        assert feed.state.throughput() == 1.0
        feed.state.tick(105.9)
        assert feed.state.throughput() == 1.0
        feed.state.tick(106.0)
        assert feed.state.throughput() == 0.6
        feed.state.tick(107.0)
        assert feed.state.throughput() == 0.0
        assert sum(feed.state.sparkline()) == 5

    def test_jobs_that_ran_to_an_end_count_and_cancelled_retried_or_rejected_do_not(
        self,
    ) -> None:
        feed = Feed()
        feed.running(0.0, "w1", "w2", "w3")
        feed.state.tick(200.0)
        for job_id, worker_id in (("a", "w1"), ("b", "w2"), ("c", "w3")):
            feed.submitted(job_id, 200.1)
            feed.started(job_id, worker_id, 200.1)
        feed.submitted("q", 200.1)
        feed.rejected("r", 200.2)
        feed.retry("a", "w1", 200.3, delay=0.0)
        assert feed.state.sparkline()[-1] == 0
        feed.failed("b", "w2", 200.4)
        feed.timed_out("c", "w3", 200.5, duration=0.4)
        feed.cancelled("q", None, 200.6)
        feed.started("a", "w1", 200.6, attempt=2)
        feed.abandoned("a", "w1", 200.7, duration=0.1)
        feed.state.tick(201.0)
        # b failed and c timed out: they ran to an end. q was cancelled before it
        # started and a was abandoned: a shutdown's hand-back is not work done.
        assert feed.state.sparkline()[-2:] == [2, 0]

    def test_a_long_gap_clears_the_sparkline_and_time_never_goes_back(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        feed.state.tick(10.0)
        feed.run_ok("a", "w1", 10.5)
        feed.state.tick(10.0 + SPARK_SECONDS + 5)
        assert feed.state.sparkline() == [0] * SPARK_SECONDS
        feed.state.tick(1.0)
        assert feed.state.now == 10.0 + SPARK_SECONDS + 5


class TestBatchProgress:
    def test_no_total_no_progress(self) -> None:
        state = DashboardState()
        assert (state.progress(), state.eta()) == (None, None)

    def test_progress_counts_every_terminal_outcome(self) -> None:
        feed = Feed(DashboardState(total=4))
        feed.running(0.0, "w1")
        assert (feed.state.progress(), feed.state.eta()) == (0.0, None)
        feed.run_ok("a", "w1", 1.0)
        feed.submitted("b", 1.0)
        feed.cancelled("b", None, 1.5)
        assert feed.state.progress() == 0.5

    def test_eta_shares_the_typical_run_time_of_the_jobs_left_among_the_workers(
        self,
    ) -> None:
        feed = Feed(DashboardState(total=40))
        feed.running(99.0, "w1", "w2")
        for n in range(10):
            feed.submitted(f"j{n}", 100.0 + n)
            feed.started(f"j{n}", f"w{n % 2 + 1}", 100.0 + n)
            feed.succeeded(f"j{n}", f"w{n % 2 + 1}", 101.0 + n, duration=1.0)
        feed.state.tick(111.0)
        assert feed.state.eta() == 15.0  # 30 left, a second each, on two workers

    def test_eta_counts_what_is_left_of_a_running_job(self) -> None:
        feed = Feed(DashboardState(total=10))
        feed.running(0.0, "w1")
        for job_id, end in (("a", 30.0), ("b", 60.0)):
            feed.submitted(job_id, end - 30.0)
            feed.started(job_id, "w1", end - 30.0)
            feed.succeeded(job_id, "w1", end, duration=30.0)
        feed.submitted("c", 60.0)
        feed.started("c", "w1", 60.0)
        feed.state.tick(70.0)
        # c has 20 s of its typical 30 left; then 7 more jobs of 30 s on one worker.
        assert feed.state.eta() == 20.0 + 7 * 30.0

    def test_a_finished_batch_has_nothing_left(self) -> None:
        feed = Feed(DashboardState(total=1))
        feed.running(0.0, "w1")
        feed.run_ok("a", "w1", 1.0)
        assert (feed.state.progress(), feed.state.eta()) == (1.0, 0.0)


class TestOutputs:
    def output(self, feed: Feed, job_id: str, exit_code: int | None) -> events.JobOutputCaptured:
        event = events.JobOutputCaptured(
            seq=feed.next_seq(),
            at=1.0,
            job_id=job_id,
            worker_id="w1",
            attempt=1,
            exit_code=exit_code,
            output=f"{job_id} said",
            path=None,
        )
        feed.fold(event)
        return event

    def test_the_last_output_of_each_job_is_kept(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        self.output(feed, "a", 1)
        latest = self.output(feed, "a", 0)
        assert feed.state.outputs == {"a": latest}
        assert counts(feed.state) == counts(DashboardState())  # no counter moves

    def test_outputs_are_bounded_oldest_first(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        for n in range(LOG_LIMIT + 2):
            self.output(feed, f"j{n}", 0)
        assert len(feed.state.outputs) == LOG_LIMIT
        assert next(iter(feed.state.outputs)) == "j2"


class TestUptime:
    def test_uptime_runs_from_the_start_and_stops_with_the_pool(self) -> None:
        feed = Feed()
        feed.state.tick(5.0)
        assert feed.state.uptime == 0.0
        feed.phase(PoolPhase.STARTING, 9.0)
        feed.phase(PoolPhase.RUNNING, 10.0)
        assert feed.state.started_at == 10.0
        feed.state.tick(15.0)
        assert feed.state.uptime == 5.0
        feed.phase(PoolPhase.PAUSED, 16.0)
        feed.phase(PoolPhase.RUNNING, 17.0)
        assert feed.state.started_at == 10.0
        feed.phase(PoolPhase.DRAINING, 18.0)
        feed.shutdown_started(18.0, grace=1.0, cancel_grace=1.0)
        feed.phase(PoolPhase.STOPPED, 20.0)
        feed.pool_stopped(20.0, PoolPhase.DRAINING, duration=2.0)
        assert (feed.state.stopped_at, feed.state.uptime) == (20.0, 10.0)
        feed.state.tick(30.0)
        assert feed.state.uptime == 10.0


class TestShutdownView:
    def test_the_countdown_follows_the_phases_and_ends_with_the_summary(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1", "w2")
        for job_id in ("a", "b", "c"):
            feed.submitted(job_id, 1.0)
        feed.started("a", "w1", 1.0)
        feed.started("b", "w2", 1.0)
        assert feed.state.shutdown is None
        feed.phase(PoolPhase.DRAINING, 10.0)
        feed.shutdown_started(10.0, grace=3.0, cancel_grace=2.0)
        view = feed.state.shutdown
        assert view is not None
        assert (view.started_at, view.grace, view.cancel_grace, view.drain) == (
            10.0,
            3.0,
            2.0,
            True,
        )
        assert (view.phase, view.remaining, view.phase_length) == (PoolPhase.DRAINING, 3.0, 3.0)
        assert (view.running, view.queued, view.stopped) == (2, 1, None)

        feed.shutdown_tick(10.1, PoolPhase.DRAINING, remaining=2.9, running=2, queued=1)
        feed.succeeded("a", "w1", 11.0)
        feed.started("c", "w1", 11.0)
        feed.shutdown_tick(11.1, PoolPhase.DRAINING, remaining=1.9, running=2, queued=0)
        assert (view.phase, view.remaining, view.running, view.queued) == (
            PoolPhase.DRAINING,
            1.9,
            2,
            0,
        )

        feed.phase(PoolPhase.CANCELLING, 13.0)
        assert view.phase is PoolPhase.CANCELLING
        feed.cancel_requested("b", "w2", 13.0, "shutdown")
        feed.cancel_requested("c", "w1", 13.0, "shutdown")
        feed.cancelled("c", "w1", 13.0)
        feed.shutdown_tick(13.1, PoolPhase.CANCELLING, remaining=1.9, running=1, queued=0)
        assert (view.phase, view.remaining, view.phase_length, view.running) == (
            PoolPhase.CANCELLING,
            1.9,
            2.0,
            1,
        )

        feed.phase(PoolPhase.FORCING, 15.0)
        assert view.phase is PoolPhase.FORCING
        feed.abandoned("b", "w2", 15.0, duration=14.0)
        feed.worker_stopped("w2", 15.0)
        feed.worker_stopped("w1", 15.0)
        feed.phase(PoolPhase.STOPPED, 15.0)
        stopped = feed.pool_stopped(15.0, PoolPhase.FORCING, duration=5.0)
        assert view.stopped is stopped
        assert (view.remaining, view.running, view.queued) == (0.0, 0, 0)
        assert (feed.state.phase, feed.state.stopped_at) == (PoolPhase.STOPPED, 15.0)
        assert states(feed.state) == [("w1", WorkerState.STOPPED), ("w2", WorkerState.STOPPED)]
        assert counts(feed.state)["abandoned"] == 1
        assert balanced(feed.state)

    def test_ticks_without_a_shutdown_are_ignored(self) -> None:
        feed = Feed()
        feed.running(0.0, "w1")
        feed.shutdown_tick(1.0, PoolPhase.DRAINING, remaining=1.0, running=0, queued=0)
        assert feed.state.shutdown is None

    def test_a_pool_stopped_before_it_started_still_gets_a_summary(self) -> None:
        feed = Feed()
        feed.phase(PoolPhase.STOPPED, 3.0)
        stopped = feed.pool_stopped(3.0, PoolPhase.DRAINING, duration=0.0)
        view = feed.state.shutdown
        assert view is not None
        assert (view.started_at, view.stopped, view.drain) == (3.0, stopped, True)
        assert feed.state.uptime == 0.0


class TestApplyAll:
    def test_a_batch_without_a_gap_is_folded_in_order(self) -> None:
        state = DashboardState()
        batch: list[events.PoolEvent] = [
            events.WorkerStarted(seq=1, at=1.0, worker_id="w1"),
            events.JobSubmitted(seq=2, at=2.0, job_id="a", queued=1),
            events.JobStarted(seq=3, at=3.0, job_id="a", worker_id="w1", attempt=1, waited=1.0),
        ]
        assert state.apply_all(batch) is False
        assert (state.seq, state.now, state.missed) == (3, 3.0, 0)
        assert (state.submitted, state.running) == (1, 1)
        assert state.workers["w1"].job_id == "a"

    def test_a_dropped_notice_asks_for_a_resync_and_counts_the_missed_events(self) -> None:
        state = DashboardState()
        batch: list[events.PoolEvent] = [
            events.JobSubmitted(seq=1, at=1.0, job_id="a", queued=1),
            events.EventsDropped(seq=9, at=2.0, missed=8),
            events.JobSubmitted(seq=10, at=3.0, job_id="b", queued=2),
        ]
        assert state.apply_all(batch) is True
        assert state.missed == 8
        assert (state.submitted, state.seq) == (2, 10)
        assert state.apply_all([events.EventsDropped(seq=12, at=4.0, missed=2)]) is True
        assert state.missed == 10

    def test_every_kind_of_event_folds_the_same_one_at_a_time_and_in_a_batch(self) -> None:
        batch = [sample(name) for name in sorted(events.EVENT_TYPES) if name != "EventsDropped"]
        for seq, event in enumerate(batch, 1):
            values = {name: getattr(event, name) for name in events.fields(type(event))}
            batch[seq - 1] = type(event)(**{**values, "seq": seq})
        one, many = DashboardState(), DashboardState()
        for event in batch:
            one.apply(event)

        assert many.apply_all(batch) is False
        assert (one.seq, one.now) == (many.seq, many.now) == (len(batch), max(e.at for e in batch))
        assert re.sub(" at 0x[0-9a-f]+", "", repr(one)) == re.sub(" at 0x[0-9a-f]+", "", repr(many))
        assert (one.run_time(), one.queue_wait()) == (many.run_time(), many.queue_wait())

    def test_events_the_state_already_includes_are_skipped(self) -> None:
        state = DashboardState()
        first: list[events.PoolEvent] = [
            events.JobSubmitted(seq=s, at=1.0, job_id=f"j{s}", queued=s) for s in (1, 2, 3)
        ]
        state.apply_all(first)
        again: list[events.PoolEvent] = [
            events.JobSubmitted(seq=s, at=2.0, job_id=f"j{s}", queued=s) for s in (2, 3, 4)
        ]
        assert state.apply_all(again) is False
        assert (state.submitted, state.queued, state.seq) == (4, 4, 4)
        state.seq = 10  # as after a resync from a snapshot taken at seq 10
        assert state.apply_all([events.JobSubmitted(seq=10, at=3.0, job_id="x", queued=5)]) is False
        assert state.submitted == 4


# --- against a real pool -----------------------------------------------------


class Handler:
    """:class:`Script`'s payloads, plus two that kill their worker.

    ``crash-once`` kills its worker on the first attempt and succeeds on the
    next; ``crash-on-cancel`` is held until released, and kills its worker
    when it is cancelled (so the pool cancels the job rather than failing it);
    ``progress`` reports half way, then is held until released.
    """

    def __init__(self) -> None:
        self.script = Script()

    def release(self) -> None:
        self.script.release()

    async def __call__(self, job: Job, ctx: JobContext) -> bytes:
        if job.payload == b"crash-once" and ctx.attempt == 1:
            raise Crash(f"worker killed by {job.id}")
        if job.payload == b"progress":
            ctx.progress(0.5, "half way")
            await self.script.release_event.wait()
            return job.payload
        if job.payload == b"crash-on-cancel":
            try:
                await self.script.release_event.wait()
            except asyncio.CancelledError as exc:
                raise Crash(f"worker killed by {job.id} when cancelled") from exc
            return job.payload
        return await self.script(job, ctx)


def view_row(w: WorkerView | WorkerInfo) -> Row:
    return (
        w.id,
        w.state,
        w.job_id,
        w.job_started_at,
        w.attempt,
        w.progress,
        w.progress_message,
        w.jobs_done,
        w.jobs_failed,
        w.restarts,
    )


def assert_matches(state: DashboardState, pool: Pool) -> None:
    """The state shows what the pool holds: its counters and every worker slot."""
    snapshot = pool.snapshot()
    stats = snapshot.stats
    assert counts(state) == counts(stats)
    assert [view_row(w) for w in state.ordered_workers()] == [view_row(w) for w in snapshot.workers]
    assert (state.seq, state.phase) == (snapshot.seq, snapshot.phase)
    assert (
        state.live_workers,
        state.busy_workers,
        state.retiring_workers,
        state.target_workers,
        state.queue_capacity,
    ) == (
        stats.workers,
        stats.busy_workers,
        stats.retiring_workers,
        stats.target_workers,
        stats.queue_capacity,
    )


class Watch:
    """A dashboard's view of ``pool``: subscribed first, then built from a snapshot, as the app does."""

    def __init__(self, pool: Pool, maxsize: int = 10_000) -> None:
        self.pool = pool
        self.sub = pool.events(maxsize=maxsize)
        self.state = DashboardState.from_snapshot(pool.snapshot())

    def fold(self) -> tuple[list[events.PoolEvent], bool]:
        """One frame: fold what is pending, resync after a gap, move the clock."""
        batch = self.sub.drain()
        gap = self.state.apply_all(batch)
        if gap:
            self.state.resync(self.pool.snapshot())
        self.state.tick(self.pool.clock.now())
        return batch, gap

    async def check(self) -> list[events.PoolEvent]:
        """Let the loop settle, fold (there must be no gap) and compare with the pool."""
        await settle()
        batch, gap = self.fold()
        assert not gap
        assert_matches(self.state, self.pool)
        return batch


def the_crash(batch: Iterable[events.PoolEvent]) -> events.WorkerCrashed:
    (event,) = [e for e in batch if isinstance(e, events.WorkerCrashed)]
    return event


async def stop(pool: Pool, clock: ManualClock, handler: Handler) -> None:
    """Shut the pool down for good, whatever its jobs do."""
    handler.release()
    stopping = asyncio.ensure_future(pool.shutdown(grace=1.0, cancel_grace=1.0))
    await clock.advance(2.0)
    await stopping


async def running(handle: JobHandle) -> None:
    for _ in range(100):
        if handle.state is JobState.RUNNING:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{handle!r} did not start")


class TestAgainstPool:
    async def test_submits_failures_retries_rejections_and_cancels(
        self, clock: ManualClock
    ) -> None:
        handler = Handler()
        pool = Pool(
            handler,
            clock=clock,
            workers=2,
            queue_size=1,
            retry=RetryPolicy(max_attempts=2, backoff=0.0, jitter=0.0),
        )
        watch = Watch(pool)
        await watch.check()
        await pool.start()
        await watch.check()
        assert states(watch.state) == [("w1", WorkerState.IDLE), ("w2", WorkerState.IDLE)]
        assert watch.state.started_at == 1000.0

        pool.submit_nowait(Job(payload=b"ok", id="ok1"))
        await watch.check()
        assert watch.state.succeeded == 1

        pool.submit_nowait(Job(payload=b"fail", id="f1"))
        await watch.check()
        assert (watch.state.retried, watch.state.queued) == (1, 1)
        await clock.advance(0.0)
        await watch.check()
        assert watch.state.failed == 1

        holds = [pool.submit_nowait(Job(payload=b"hold", id=f"h{i}")) for i in (1, 2)]
        waiting = pool.submit_nowait(Job(payload=b"ok", id="q1"))
        await watch.check()
        assert (watch.state.running, watch.state.queued) == (2, 1)
        await clock.advance(1.5)
        await watch.check()
        assert watch.state.oldest_queued_age() == pool.stats().oldest_queued_age == 1.5

        with pytest.raises(QueueFull, match=r"^queue is full \(1 jobs waiting\)$"):
            pool.submit_nowait(Job(payload=b"ok", id="r1"))
        await watch.check()
        assert watch.state.rejected == 1

        assert waiting.cancel()
        await watch.check()
        assert (watch.state.cancelled, watch.state.queued) == (1, 0)

        handler.release()
        assert [await h for h in holds] == [b"hold", b"hold"]
        await watch.check()
        assert watch.state.succeeded == 3

        await pool.shutdown()
        await watch.check()
        assert states(watch.state) == [("w1", WorkerState.STOPPED), ("w2", WorkerState.STOPPED)]
        assert watch.state.log_total == 7  # ok1, f1 twice, r1, q1, h1, h2

    async def test_a_crash_retries_the_job_and_restarts_the_worker(
        self, clock: ManualClock
    ) -> None:
        pool = Pool(
            Handler(),
            clock=clock,
            workers=2,
            restart_backoff=0.5,
            retry=RetryPolicy(max_attempts=2, backoff=0.0, jitter=0.0),
        )
        await pool.start()
        watch = Watch(pool)
        pool.submit_nowait(Job(payload=b"crash-once", id="c1"))
        crashed = the_crash(await watch.check())
        view = watch.state.workers[crashed.worker_id]
        assert (view.state, view.jobs_failed) == (WorkerState.RESTARTING, 1)
        assert (watch.state.retried, watch.state.queued, watch.state.running) == (1, 1, 0)
        await clock.advance(0.0)
        await watch.check()
        assert watch.state.succeeded == 1
        await clock.advance(0.5)
        await watch.check()
        assert watch.state.workers[crashed.worker_id].state is WorkerState.IDLE
        await pool.shutdown()
        await watch.check()

    async def test_a_crash_while_cancelling_restarts_the_worker(self, clock: ManualClock) -> None:
        pool = Pool(Handler(), clock=clock, workers=2, restart_backoff=0.5)
        await pool.start()
        watch = Watch(pool)
        handle = pool.submit_nowait(Job(payload=b"crash-on-cancel", id="x"))
        await running(handle)
        await watch.check()
        worker_id = handle.worker_id
        assert worker_id is not None
        assert handle.cancel()
        crashed = the_crash(await watch.check())
        assert (crashed.worker_id, crashed.restart_in) == (worker_id, 0.5)
        assert watch.state.workers[worker_id].state is WorkerState.RESTARTING
        assert watch.state.cancelled == 1
        await clock.advance(0.25)
        await watch.check()
        assert watch.state.workers[worker_id].state is WorkerState.RESTARTING
        await clock.advance(0.25)
        await watch.check()
        view = watch.state.workers[worker_id]
        assert (view.state, view.restarts, watch.state.restarts) == (WorkerState.IDLE, 1, 1)
        pool.submit_nowait(Job(payload=b"ok", id="after"))
        await watch.check()
        assert watch.state.succeeded == 1
        await pool.shutdown()
        await watch.check()

    async def test_supervision_gives_up_and_the_pool_fails(self, clock: ManualClock) -> None:
        pool = Pool(Handler(), clock=clock, workers=2, max_restarts=0)
        await pool.start()
        watch = Watch(pool)
        handle = pool.submit_nowait(Job(payload=b"crash-on-cancel", id="x"))
        await running(handle)
        await watch.check()
        assert handle.cancel()
        await settle()
        report = await pool.wait_stopped()
        await watch.check()
        assert report.failed
        assert watch.state.phase is PoolPhase.FAILED
        assert states(watch.state) == [("w1", WorkerState.CRASHED), ("w2", WorkerState.STOPPED)]
        assert watch.state.shutdown is not None
        assert watch.state.shutdown.stopped is not None
        assert watch.state.shutdown.stopped.reason == report.reason

    async def test_progress_shows_on_the_worker_until_the_job_ends(
        self, clock: ManualClock
    ) -> None:
        handler = Handler()
        pool = Pool(handler, clock=clock, workers=1)
        await pool.start()
        watch = Watch(pool)
        handle = pool.submit_nowait(Job(payload=b"progress", id="p"))
        await watch.check()
        view = watch.state.workers["w1"]
        assert (view.job_id, view.progress, view.progress_message) == ("p", 0.5, "half way")
        handler.release()
        await handle
        await watch.check()
        assert (view.job_id, view.progress, view.progress_message) == (None, None, "")
        await pool.shutdown()
        await watch.check()

    async def test_a_resize_down_retires_a_busy_worker_after_its_job(
        self, clock: ManualClock
    ) -> None:
        handler = Handler()
        pool = Pool(handler, clock=clock, workers=3)
        await pool.start()
        watch = Watch(pool)
        holds = [pool.submit_nowait(Job(payload=b"hold", id=f"h{i}")) for i in (1, 2)]
        await watch.check()
        assert states(watch.state) == [
            ("w1", WorkerState.BUSY),
            ("w2", WorkerState.BUSY),
            ("w3", WorkerState.IDLE),
        ]
        await pool.resize(1)
        await watch.check()
        assert states(watch.state) == [("w1", WorkerState.BUSY), ("w2", WorkerState.RETIRING)]
        assert (watch.state.target_workers, watch.state.retiring_workers) == (1, 1)
        assert watch.state.workers["w2"].job_id == "h2"
        handler.release()
        assert [await h for h in holds] == [b"hold", b"hold"]
        await watch.check()
        assert states(watch.state) == [("w1", WorkerState.IDLE)]
        await pool.resize(2)
        await watch.check()
        assert states(watch.state) == [("w1", WorkerState.IDLE), ("w4", WorkerState.IDLE)]
        await pool.shutdown()
        await watch.check()

    async def test_a_shutdown_cancels_then_abandons_a_stubborn_job(
        self, clock: ManualClock
    ) -> None:
        pool = Pool(Handler(), clock=clock, workers=2)
        await pool.start()
        watch = Watch(pool)
        pool.submit_nowait(Job(payload=b"hold", id="hold"))
        pool.submit_nowait(Job(payload=b"stubborn", id="stuck"))
        pool.submit_nowait(Job(payload=b"ok", id="waiting"))
        await watch.check()

        stopping = asyncio.ensure_future(pool.shutdown(grace=1.0, cancel_grace=1.0))
        await watch.check()
        view = watch.state.shutdown
        assert view is not None
        assert (view.phase, view.grace, view.cancel_grace, view.drain) == (
            PoolPhase.DRAINING,
            1.0,
            1.0,
            True,
        )
        assert (view.remaining, view.running, view.queued) == (1.0, 2, 1)

        await clock.advance(0.55)
        await watch.check()
        assert view.remaining == pytest.approx(0.5)
        assert (view.phase, view.running, view.queued) == (PoolPhase.DRAINING, 2, 1)

        await clock.advance(0.5)
        await watch.check()
        assert view.phase is PoolPhase.CANCELLING
        assert (watch.state.cancelled, watch.state.running, watch.state.queued) == (2, 1, 0)

        await clock.advance(0.5)
        await watch.check()
        assert (view.phase, view.phase_length) == (PoolPhase.CANCELLING, 1.0)
        assert view.remaining == pytest.approx(0.5)
        assert (view.running, view.queued) == (1, 0)

        await clock.advance(0.5)
        report = await stopping
        await watch.check()
        assert report.abandoned == ("stuck",)
        assert view.stopped is not None
        assert (view.stopped.phase_reached, view.stopped.abandoned, view.stopped.cancelled) == (
            PoolPhase.FORCING,
            1,
            1,
        )
        assert states(watch.state) == [("w1", WorkerState.STOPPED), ("w2", WorkerState.STOPPED)]
        assert watch.state.uptime == pytest.approx(2.0)
        await clock.advance(5.0)
        watch.fold()
        assert watch.state.uptime == pytest.approx(2.0)

    async def test_a_crash_during_a_shutdown_stops_the_worker(self, clock: ManualClock) -> None:
        # A worker that dies while the pool shuts down is not restarted, and the pool
        # shows it as stopped: WorkerCrashed(restart_in=None), then WorkerStopped.
        # CRASHED is for a worker supervision gave up on (see the test above).
        pool = Pool(Handler(), clock=clock, workers=1)
        await pool.start()
        watch = Watch(pool)
        pool.submit_nowait(Job(payload=b"crash-on-cancel", id="x"))
        await watch.check()
        stopping = asyncio.ensure_future(pool.shutdown(grace=1.0, cancel_grace=1.0))
        await watch.check()
        await clock.advance(1.0)
        await stopping
        await watch.check()

    async def test_a_restart_due_during_a_shutdown_leaves_the_slot_stopped(
        self, clock: ManualClock
    ) -> None:
        handler = Handler()
        pool = Pool(handler, clock=clock, workers=2, restart_backoff=0.5)
        await pool.start()
        watch = Watch(pool)
        hold = pool.submit_nowait(Job(payload=b"hold", id="hold"))
        victim = pool.submit_nowait(Job(payload=b"crash-on-cancel", id="x"))
        await running(victim)
        assert victim.cancel()
        await watch.check()
        stopping = asyncio.ensure_future(pool.shutdown(grace=5.0))
        await watch.check()
        await clock.advance(1.0)  # the restart was due at 0.5: the pool marks the slot stopped
        await watch.check()
        handler.release()
        await hold
        await stopping
        await watch.check()


class TestResync:
    async def test_after_a_gap_the_snapshot_brings_the_state_back_in_line(
        self, clock: ManualClock
    ) -> None:
        handler = Handler()
        pool = Pool(
            handler,
            clock=clock,
            workers=2,
            retry=RetryPolicy(max_attempts=2, backoff=0.0, jitter=0.0),
        )
        watch = Watch(pool, maxsize=3)
        await pool.start()  # four events: one too many
        await settle()
        batch, gap = watch.fold()
        assert gap
        assert isinstance(batch[-1], events.EventsDropped)
        assert watch.state.missed == 1
        assert_matches(watch.state, pool)

        pool.submit_nowait(Job(payload=b"ok", id="a"))  # three events: no gap
        await settle()
        assert watch.fold()[1] is False
        assert_matches(watch.state, pool)
        assert watch.state.succeeded == 1

        for i in range(4):
            pool.submit_nowait(Job(payload=b"fail", id=f"f{i}"))
        await settle()
        assert watch.fold()[1] is True
        assert_matches(watch.state, pool)
        assert (watch.state.retried, watch.state.queued) == (4, 4)
        assert watch.state.missed > 1

        await clock.advance(0.0)  # four retries fail: eight events
        await settle()
        assert watch.fold()[1] is True
        assert_matches(watch.state, pool)
        assert watch.state.failed == 4

        pool.submit_nowait(Job(payload=b"fail", id="g"))  # three events: no gap
        await settle()
        assert watch.fold()[1] is False
        assert_matches(watch.state, pool)
        await clock.advance(0.0)
        await settle()
        assert watch.fold()[1] is False
        assert_matches(watch.state, pool)
        assert watch.state.failed == 5

        handle = pool.submit_nowait(Job(payload=b"hold", id="h"))
        await running(handle)
        assert watch.fold()[1] is False
        assert_matches(watch.state, pool)
        assert watch.state.workers[handle.worker_id or ""].job_id == "h"
        await stop(pool, clock, handler)

    async def test_jobs_that_ended_in_a_gap_count_in_the_sparkline(
        self, clock: ManualClock
    ) -> None:
        handler = Handler()
        pool = Pool(handler, clock=clock, workers=2)
        watch = Watch(pool, maxsize=4)
        await pool.start()
        await settle()
        watch.fold()
        for i in range(5):
            pool.submit_nowait(Job(payload=b"ok", id=f"j{i}"))
        await settle()

        assert watch.fold()[1] is True
        assert watch.state.succeeded == 5
        assert sum(watch.state.sparkline()) == 5
        await stop(pool, clock, handler)

    async def test_a_resync_with_a_waiting_job_forgets_its_age_once_the_queue_empties(
        self, clock: ManualClock
    ) -> None:
        handler = Handler()
        pool = Pool(handler, clock=clock, workers=1)
        await pool.start()
        watch = Watch(pool, maxsize=3)
        hold = pool.submit_nowait(Job(payload=b"hold", id="h"))
        await running(hold)
        await pool.pause()
        pool.submit_nowait(Job(payload=b"ok", id="q"))  # the fourth event: a gap
        await clock.advance(2.0)
        await settle()
        assert watch.fold()[1] is True
        assert_matches(watch.state, pool)
        assert watch.state.oldest_queued_age() == pool.stats().oldest_queued_age == 2.0
        await pool.resume()
        await watch.check()
        handler.release()
        await hold
        await watch.check()
        assert pool.stats().queued == 0
        await clock.advance(1.0)
        await watch.check()
        assert watch.state.oldest_queued_age() == pool.stats().oldest_queued_age == 0.0
        await stop(pool, clock, handler)


class TestQueueAgeAgainstPool:
    async def test_a_job_in_its_retry_backoff_does_not_hide_a_waiting_job(
        self, clock: ManualClock
    ) -> None:
        handler = Handler()
        pool = Pool(
            handler,
            clock=clock,
            workers=1,
            retry=RetryPolicy(max_attempts=2, backoff=10.0, jitter=0.0),
        )
        await pool.start()
        watch = Watch(pool)
        pool.submit_nowait(Job(payload=b"fail", id="f"))
        await watch.check()
        pool.submit_nowait(Job(payload=b"hold", id="h"))
        await clock.advance(2.0)
        pool.submit_nowait(Job(payload=b"ok", id="q"))
        await clock.advance(3.0)
        await watch.check()
        assert watch.state.oldest_queued_age() == pool.stats().oldest_queued_age == 3.0
        await stop(pool, clock, handler)


class TestCrashAndResyncDuringShutdown:
    def test_a_worker_given_up_on_during_a_drain_shows_crashed(self) -> None:
        state = DashboardState()
        state.apply(events.WorkerStarted(seq=1, at=0.0, worker_id="w1"))
        state.apply(
            events.PhaseChanged(
                seq=2, at=1.0, phase=PoolPhase.DRAINING, previous=PoolPhase.RUNNING, reason=None
            )
        )
        error = ErrorInfo(type="Crash", message="boom")
        state.apply(
            events.WorkerCrashed(
                seq=3, at=2.0, worker_id="w1", job_id=None, error=error, restart_in=None
            )
        )
        assert state.workers["w1"].state is WorkerState.CRASHED
        assert state.live_workers == 0

    async def test_a_resync_that_missed_the_shutdown_start_still_shows_the_countdown(
        self, clock: ManualClock
    ) -> None:
        script = Script()
        pool = Pool(script, workers=1, clock=clock)
        await pool.start()
        state = DashboardState.from_snapshot(pool.snapshot())
        pool.submit_nowait(Job(payload=b"hold"))
        stopping = asyncio.ensure_future(pool.shutdown(grace=5.0))
        await settle()
        state.resync(pool.snapshot())  # as after a gap that swallowed ShutdownStarted
        assert state.shutdown is not None
        assert state.shutdown.phase is PoolPhase.DRAINING
        assert state.shutdown.remaining == pytest.approx(5.0)
        script.release()
        await stopping
