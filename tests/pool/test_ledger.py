"""Tests of ``pool.ledger``: every move of a job, its counters, dead letters and events.

The ledger is driven directly, without a pool or a loop: each test asks it
to record what a pool would have seen, and checks the counters, the
record's state and the events. A Hypothesis state machine at the end makes
random sequences of moves and checks the accounting identity after each.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pool import ErrorInfo, Job, JobState, RetryPolicy, events
from pool.bus import EventBus, Subscription
from pool.job import JobRecord
from pool.ledger import DeadLetter, Ledger, crash_error
from pool.runners import WorkerDied

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
)

NO_RETRY = RetryPolicy(max_attempts=1)
RETRY = RetryPolicy(max_attempts=2, backoff=0.5, jitter=0.0)
RETRY_TIMEOUTS = RetryPolicy(max_attempts=2, backoff=0.5, jitter=0.0, retry_timeouts=True)


def counts(ledger: Ledger) -> dict[str, int]:
    return {name: getattr(ledger, name) for name in COUNTERS}


class World:
    """A ledger on a bus with one subscriber that sees every event."""

    def __init__(self, retry: RetryPolicy | None = None, max_dead_letters: int = 10) -> None:
        self.bus = EventBus()
        self.sub: Subscription = self.bus.subscribe(10_000)
        self.ledger = Ledger(
            self.bus,
            now=0.0,
            max_dead_letters=max_dead_letters,
            retry=retry,
            rng=random.Random(0),
        )
        self.put: list[JobRecord] = []
        """The records handed to the queue, in order."""

    def queued(self, job_id: str = "j", at: float = 1.0) -> JobRecord:
        return self.ledger.accept(Job(id=job_id), at, "", self.put.append)

    def running(self, job_id: str = "j", at: float = 2.0) -> JobRecord:
        record = self.queued(job_id)
        self.ledger.begin(record, object(), "w1", at)
        return record

    def events(self) -> list[events.PoolEvent]:
        return self.sub.drain()


def boom() -> ValueError:
    return ValueError("boom")


# Each move: what the job is before, the move, and what follows: the counters
# that change (by one each), the record's state, the event told (without its
# seq), and whether the attempt's run time counts in the window.
BOOM = ErrorInfo(type="ValueError", message="boom")
MOVES: list[tuple[str, str, Any, dict[str, int], JobState, dict[str, object], bool]] = [
    ("succeed", "running", lambda w, r: w.ledger.succeed(r, "w1", b"x", 5.0),
     {"running": -1, "succeeded": 1}, JobState.SUCCEEDED,
     {"type": "JobSucceeded", "at": 5.0, "job_id": "j", "worker_id": "w1", "attempt": 1,
      "duration": 3.0}, True),
    ("fail", "running", lambda w, r: w.ledger.fail(r, "w1", boom(), 5.0, may_retry=True),
     {"running": -1, "failed": 1}, JobState.FAILED,
     {"type": "JobFailed", "at": 5.0, "job_id": "j", "worker_id": "w1", "attempt": 1,
      "duration": 3.0, "error": BOOM}, True),
    ("fail unmeasured", "running",
     lambda w, r: w.ledger.fail(r, "w1", boom(), 5.0, may_retry=True, info=BOOM, measured=False),
     {"running": -1, "failed": 1}, JobState.FAILED,
     {"type": "JobFailed", "at": 5.0, "job_id": "j", "worker_id": "w1", "attempt": 1,
      "duration": 3.0, "error": BOOM}, False),
    ("time out", "running",
     lambda w, r: w.ledger.time_out(r, "w1", 5.0, may_retry=True, measured=True),
     {"running": -1, "timed_out": 1}, JobState.TIMED_OUT,
     {"type": "JobTimedOut", "at": 5.0, "job_id": "j", "worker_id": "w1", "attempt": 1,
      "duration": 3.0}, True),
    ("time out unmeasured", "running",
     lambda w, r: w.ledger.time_out(r, "w1", 5.0, may_retry=True, measured=False),
     {"running": -1, "timed_out": 1}, JobState.TIMED_OUT,
     {"type": "JobTimedOut", "at": 5.0, "job_id": "j", "worker_id": "w1", "attempt": 1,
      "duration": 3.0}, False),
    ("cancel running", "running", lambda w, r: w.ledger.cancel_running(r, "w1", 5.0, True),
     {"running": -1, "cancelled": 1}, JobState.CANCELLED,
     {"type": "JobCancelled", "at": 5.0, "job_id": "j", "worker_id": "w1", "started": True},
     True),
    ("cancel running unmeasured", "running",
     lambda w, r: w.ledger.cancel_running(r, "w1", 5.0, False),
     {"running": -1, "cancelled": 1}, JobState.CANCELLED,
     {"type": "JobCancelled", "at": 5.0, "job_id": "j", "worker_id": "w1", "started": True},
     False),
    ("abandon", "running", lambda w, r: w.ledger.abandon(r, "w1", 5.0),
     {"running": -1, "abandoned": 1}, JobState.ABANDONED,
     {"type": "JobAbandoned", "at": 5.0, "job_id": "j", "worker_id": "w1", "duration": 3.0},
     False),
    ("hand back unstarted", "running",
     lambda w, r: w.ledger.hand_back_unstarted(r, "w1", WorkerDied("died"), 5.0),
     {"running": -1, "queued": 1, "retried": 1}, JobState.QUEUED,
     {"type": "JobRetryScheduled", "at": 5.0, "job_id": "j", "worker_id": "w1", "attempt": 1,
      "duration": 3.0, "delay": 0.0,
      "error": ErrorInfo(type="pool.runners.WorkerDied", message="died before the job began")},
     False),
    ("cancel queued", "queued", lambda w, r: w.ledger.cancel_queued(r, 5.0),
     {"queued": -1, "cancelled": 1}, JobState.CANCELLED,
     {"type": "JobCancelled", "at": 5.0, "job_id": "j", "worker_id": None, "started": False},
     False),
    ("begin", "queued", lambda w, r: w.ledger.begin(r, object(), "w1", 5.0),
     {"queued": -1, "running": 1}, JobState.RUNNING,
     {"type": "JobStarted", "at": 5.0, "job_id": "j", "worker_id": "w1", "attempt": 1,
      "waited": 4.0}, False),
]  # fmt: skip


def told(event: events.PoolEvent) -> dict[str, object]:
    """An event's fields but its seq, with the error as an ErrorInfo without traceback."""
    data = {name: getattr(event, name) for name in events.fields(type(event)) if name != "seq"}
    error = data.get("error")
    if isinstance(error, ErrorInfo):
        data["error"] = ErrorInfo(type=error.type, message=error.message)
    return {"type": type(event).__name__, **data}


class TestMoves:
    def test_each_move_changes_its_counters_and_state_and_tells_it(self) -> None:
        for name, before, move, changed, state, event, measured in MOVES:
            world = World(NO_RETRY)
            record = world.running() if before == "running" else world.queued()
            world.events()
            was = counts(world.ledger)
            runs = world.ledger.run_times.percentiles().count

            move(world, record)

            now = counts(world.ledger)
            delta = {k: now[k] - was[k] for k in COUNTERS if now[k] != was[k]}
            assert delta == changed, name
            assert record.state is state, name
            assert [told(e) for e in world.events()] == [event], name
            assert world.ledger.run_times.percentiles().count == runs + measured, name
            assert world.ledger.balanced(), name
            live = world.ledger.get("j")
            assert (live is record) == (state in (JobState.QUEUED, JobState.RUNNING)), name
            assert world.ledger.settled() == (live is None), name
            if state.is_terminal:
                assert record.ended_at == 5.0, name
                assert record.worker is None, name
                assert record.cancelled_running is name.startswith("cancel running"), name

    def test_counters_add_up_over_many_jobs(self) -> None:
        world = World()
        ledger = world.ledger
        for i in range(2):
            ledger.succeed(world.running(f"s{i}"), "w1", None, 5.0)
            ledger.fail(world.running(f"f{i}"), "w1", boom(), 5.0, may_retry=False)
            ledger.time_out(world.running(f"t{i}"), "w1", 5.0, may_retry=False, measured=True)
            ledger.cancel_running(world.running(f"c{i}"), "w1", 5.0, True)
            ledger.cancel_queued(world.queued(f"q{i}"), 5.0)
            ledger.abandon(world.running(f"a{i}"), "w1", 5.0)
            ledger.hand_back_unstarted(world.running(f"u{i}"), "w1", WorkerDied("x"), 5.0)
        assert counts(ledger) == {
            "submitted": 14,
            "rejected": 0,
            "queued": 2,
            "running": 0,
            "succeeded": 2,
            "failed": 2,
            "timed_out": 2,
            "cancelled": 4,
            "abandoned": 2,
            "retried": 2,
        }
        assert ledger.run_times.percentiles().p50 == 3.0  # each measured attempt ran 2.0 -> 5.0

    def test_retries_add_up_and_stop_at_the_last_attempt(self) -> None:
        world = World(RETRY_TIMEOUTS)
        first, second = world.running("a"), world.running("b")
        for record in (first, second):
            assert world.ledger.time_out(record, "w1", 3.0, may_retry=True, measured=True)
            world.ledger.begin(record, object(), "w1", 4.0)
        assert (world.ledger.queued, world.ledger.retried) == (0, 2)
        # The last of max_attempts (2) timed out: no third attempt.
        assert world.ledger.time_out(first, "w1", 5.0, may_retry=True, measured=True) is None
        assert first.state is JobState.TIMED_OUT

    def test_accept_and_reject(self) -> None:
        world = World()
        world.ledger.accept(Job(id="a"), 1.0, "label", world.put.append)
        world.ledger.reject("b", 1.5)

        assert counts(world.ledger)["submitted"] == 2
        assert (world.ledger.queued, world.ledger.rejected) == (1, 1)
        assert world.ledger.balanced()
        assert world.events() == [
            events.JobSubmitted(seq=1, at=1.0, job_id="a", queued=1, label="label"),
            events.JobRejected(seq=2, at=1.5, job_id="b", reason="queue full"),
        ]
        assert world.ledger.get("b") is None
        assert [r.job.id for r in world.put] == ["a"]  # queued before it was told

    def test_begin_counts_the_attempt_and_the_wait(self) -> None:
        world = World()
        record = world.queued(at=1.0)
        record.progress = (0.5, "old")
        worker = object()
        world.ledger.begin(record, worker, "w3", 4.0)

        assert (record.attempt, record.started_at, record.worker_id) == (1, 4.0, "w3")
        assert record.worker is worker
        assert record.progress is None
        assert world.ledger.waits.percentiles().count == 1
        assert world.ledger.waits.percentiles().p50 == 3.0
        assert world.events()[-1] == events.JobStarted(
            seq=2, at=4.0, job_id="j", worker_id="w3", attempt=1, waited=3.0
        )

    def test_only_measured_ends_count_in_the_run_times(self) -> None:
        world = World()
        measured = world.running("a", at=2.0)
        world.ledger.cancel_running(measured, "w1", 5.0, True)
        unmeasured = world.running("b", at=2.0)
        world.ledger.cancel_running(unmeasured, "w1", 9.0, False)

        run_times = world.ledger.run_times.percentiles()
        assert (run_times.count, run_times.p50) == (1, 3.0)

    def test_a_success_clears_an_earlier_attempts_error(self) -> None:
        world = World(RETRY)
        record = world.running()
        assert world.ledger.fail(record, "w1", boom(), 3.0, may_retry=True) is not None
        assert record.error is not None
        world.ledger.begin(record, object(), "w1", 4.0)
        world.ledger.succeed(record, "w1", b"done", 5.0)

        assert (record.error, record.exc, record.result) == (None, None, b"done")
        assert record.attempt == 2

    def test_durations_are_from_the_attempts_start(self) -> None:
        world = World()
        record = world.running(at=2.0)
        world.ledger.abandon(record, "w1", 7.5)

        (told,) = [e for e in world.events() if isinstance(e, events.JobAbandoned)]
        assert told.duration == 5.5

    def test_the_throughput_counts_every_end(self) -> None:
        world = World()
        for i in range(3):
            world.ledger.succeed(world.running(f"j{i}"), "w1", None, 1.0)
        assert world.ledger.throughput(3.0) == 1.0  # three ends over three seconds
        world.ledger.restart_throughput(10.0)
        assert world.ledger.throughput(11.0) == 0.0
        world.ledger.succeed(world.running("late"), "w1", None, 11.0)
        assert world.ledger.throughput(12.0) == 0.5

    def test_a_failure_keeps_its_exception_and_error(self) -> None:
        world = World()
        record = world.running()
        exc = boom()
        world.ledger.fail(record, "w1", exc, 5.0, may_retry=False)
        assert record.exc is exc
        assert record.error is not None
        assert (record.error.type, record.error.message) == ("ValueError", "boom")

    def test_retry_jitter_needs_no_random_source_given(self) -> None:
        bus = EventBus()
        ledger = Ledger(
            bus, now=0.0, max_dead_letters=1, retry=RetryPolicy(max_attempts=2, jitter=0.5)
        )
        record = ledger.accept(Job(id="j"), 0.0, "", lambda r: None)
        ledger.begin(record, object(), "w1", 1.0)
        delay = ledger.fail(record, "w1", boom(), 2.0, may_retry=True)
        assert delay is not None
        assert delay >= 0.0


class TestRetries:
    def test_a_failure_is_retried_while_attempts_are_left(self) -> None:
        world = World(RETRY)
        record = world.running()
        record.cancel_reason = None
        delay = world.ledger.fail(record, "w1", boom(), 3.0, may_retry=True)

        assert delay == 0.5
        assert record.state is JobState.QUEUED
        assert (world.ledger.queued, world.ledger.retried, world.ledger.failed) == (1, 1, 0)
        assert record.worker is None
        (told,) = world.events()[-1:]
        assert isinstance(told, events.JobRetryScheduled)
        assert (told.attempt, told.delay, told.error.message) == (1, 0.5, "boom")
        assert world.ledger.balanced()

    def test_a_retry_tells_the_attempt_that_ended(self) -> None:
        for retry, end in ((RETRY, "fail"), (RETRY_TIMEOUTS, "time out")):
            world = World(retry)
            record = world.running(at=2.0)
            if end == "fail":
                world.ledger.fail(record, "w7", boom(), 3.5, may_retry=True)
                error = BOOM
            else:
                world.ledger.time_out(record, "w7", 3.5, may_retry=True, measured=True)
                error = ErrorInfo(type="TimeoutError", message="job timed out")
            assert [told(e) for e in world.events()][-1] == {
                "type": "JobRetryScheduled",
                "at": 3.5,
                "job_id": "j",
                "worker_id": "w7",
                "attempt": 1,
                "duration": 1.5,
                "error": error,
                "delay": 0.5,
            }, end
            assert (record.state, record.cancel_reason, record.worker) == (
                JobState.QUEUED,
                None,
                None,
            )

    def test_a_retry_is_counted_with_the_jobs_already_queued(self) -> None:
        for end in ("fail", "time out"):
            world = World(RETRY_TIMEOUTS)
            world.queued("a")
            world.queued("b")
            record = world.running("c")
            if end == "fail":
                delay = world.ledger.fail(record, "w1", boom(), 3.0, may_retry=True)
            else:
                delay = world.ledger.time_out(record, "w1", 3.0, may_retry=True, measured=True)

            assert delay is not None, end
            assert (world.ledger.queued, world.ledger.running) == (3, 0), end
            assert world.ledger.balanced(), end

    def test_the_last_attempt_fails_for_good(self) -> None:
        world = World(RETRY)
        record = world.running()
        world.ledger.fail(record, "w1", boom(), 3.0, may_retry=True)
        world.ledger.begin(record, object(), "w1", 4.0)

        assert world.ledger.fail(record, "w1", boom(), 5.0, may_retry=True) is None
        assert record.state is JobState.FAILED

    @pytest.mark.parametrize(
        ("retry", "may_retry"), [(None, True), (NO_RETRY, True), (RETRY, False)]
    )
    def test_no_retry_without_a_policy_attempts_or_leave(
        self, retry: RetryPolicy | None, may_retry: bool
    ) -> None:
        world = World(retry)
        record = world.running()

        assert world.ledger.fail(record, "w1", boom(), 3.0, may_retry=may_retry) is None
        assert record.state is JobState.FAILED
        assert world.ledger.retried == 0

    def test_a_timeout_is_retried_only_when_the_policy_says_so(self) -> None:
        for retry, retried in ((RETRY, False), (RETRY_TIMEOUTS, True)):
            world = World(retry)
            record = world.running()
            record.cancel_reason = None
            delay = world.ledger.time_out(record, "w1", 3.0, may_retry=True, measured=True)

            assert (delay is not None) == retried
            assert record.state is (JobState.QUEUED if retried else JobState.TIMED_OUT)
            if retried:
                (told,) = world.events()[-1:]
                assert isinstance(told, events.JobRetryScheduled)
                assert told.error == ErrorInfo(type="TimeoutError", message="job timed out")

    def test_a_timeout_is_not_retried_when_the_pool_forbids_it(self) -> None:
        world = World(RETRY_TIMEOUTS)
        record = world.running()
        assert world.ledger.time_out(record, "w1", 3.0, may_retry=False, measured=False) is None
        assert record.state is JobState.TIMED_OUT

    def test_a_job_handed_back_unstarted_keeps_its_attempt_count(self) -> None:
        world = World()
        record = world.running(at=2.0)
        world.ledger.hand_back_unstarted(record, "w1", WorkerDied("process died"), 5.0)

        assert (record.attempt, record.queued_at, record.worker) == (0, 5.0, None)
        (told,) = world.events()[-1:]
        assert told == events.JobRetryScheduled(
            seq=told.seq,
            at=5.0,
            job_id="j",
            worker_id="w1",
            attempt=1,
            duration=3.0,
            error=ErrorInfo(
                type="pool.runners.WorkerDied", message="process died before the job began"
            ),
            delay=0.0,
        )


class TestDeadLetters:
    def test_failed_and_timed_out_jobs_are_kept(self) -> None:
        world = World()
        failed = world.running("f", at=1.0)
        world.ledger.fail(failed, "w1", boom(), 3.0, may_retry=True)
        timed_out = world.running("t", at=1.0)
        world.ledger.time_out(timed_out, "w1", 4.0, may_retry=True, measured=True)

        assert world.ledger.dead_letters() == (
            DeadLetter(
                job=failed.job, state=JobState.FAILED, error=failed.error, attempts=1, at=3.0
            ),
            DeadLetter(job=timed_out.job, state=JobState.TIMED_OUT, error=None, attempts=1, at=4.0),
        )
        assert failed.error is not None
        assert failed.error.message == "boom"

    def test_other_ends_leave_none(self) -> None:
        world = World()
        world.ledger.succeed(world.running("s"), "w1", None, 3.0)
        world.ledger.cancel_running(world.running("c"), "w1", 3.0, True)
        world.ledger.abandon(world.running("a"), "w1", 3.0)
        world.ledger.cancel_queued(world.queued("q"), 3.0)

        assert world.ledger.dead_letters() == ()

    def test_the_oldest_go_first_and_none_is_kept_with_no_room(self) -> None:
        for room, kept in ((2, ["d1", "d2"]), (0, [])):
            world = World(max_dead_letters=room)
            for i in range(3):
                world.ledger.fail(world.running(f"d{i}"), "w1", boom(), 3.0, may_retry=True)
            assert [d.job.id for d in world.ledger.dead_letters()] == kept

    def test_a_dead_letter_is_found_and_forgotten(self) -> None:
        world = World()
        world.ledger.fail(world.running("d"), "w1", boom(), 3.0, may_retry=True)
        letter = world.ledger.dead_letter("d")

        assert letter is not None
        assert world.ledger.dead_letter("nope") is None
        world.ledger.forget_dead_letter(letter)
        world.ledger.forget_dead_letter(letter)  # twice: nothing left to forget
        assert world.ledger.dead_letters() == ()


class TestProgressAndOutput:
    def test_progress_of_the_running_attempt_is_kept_and_told(self) -> None:
        world = World()
        record = world.running()
        world.ledger.progress(record, 1, 0.25, "a quarter", 3.0)

        assert record.progress == (0.25, "a quarter")
        assert world.events()[-1] == events.JobProgressed(
            seq=3, at=3.0, job_id="j", worker_id="w1", fraction=0.25, message="a quarter"
        )

    def test_progress_after_its_attempt_ended_is_ignored(self) -> None:
        world = World(RETRY)
        record = world.running()
        world.ledger.fail(record, "w1", boom(), 3.0, may_retry=True)  # queued again
        world.ledger.progress(record, 1, 0.5, "queued", 3.5)
        world.ledger.begin(record, object(), "w1", 4.0)
        world.ledger.progress(record, 1, 0.5, "the first attempt's", 4.5)
        world.ledger.succeed(record, "w1", None, 5.0)
        world.ledger.progress(record, 2, 0.5, "ended", 5.5)

        assert record.progress is None
        assert not [e for e in world.events() if isinstance(e, events.JobProgressed)]

    def test_output_is_kept_and_told_unless_a_later_attempt_began(self) -> None:
        world = World(RETRY)
        record = world.running()
        world.ledger.output(record, 1, "w1", "tail", 0, None, 3.0)
        kept = record.output
        assert kept == events.JobOutputCaptured(
            seq=3, at=3.0, job_id="j", worker_id="w1", attempt=1, exit_code=0, output="tail",
            path=None,
        )  # fmt: skip
        assert world.events()[-1] == kept
        world.ledger.fail(record, "w1", boom(), 4.0, may_retry=True)
        world.ledger.begin(record, object(), "w1", 5.0)
        world.ledger.output(record, 1, "w1", "late", 1, None, 6.0)

        assert record.output is kept

    def test_output_is_kept_with_nobody_subscribed(self) -> None:
        world = World()
        world.sub.close()
        record = world.running()
        world.ledger.output(record, 1, "w1", "tail", 0, "/tmp/out", 3.0)

        assert record.output is not None
        assert (record.output.output, record.output.path) == ("tail", "/tmp/out")


class TestCrashError:
    def test_a_worker_died_is_told_by_its_cause(self) -> None:
        try:
            try:
                raise OSError("pipe closed")
            except OSError as cause:
                raise WorkerDied("process died") from cause
        except WorkerDied as died:
            crash = died

        assert crash_error(crash).type == "OSError"
        assert crash_error(crash).message == "pipe closed"
        assert "OSError: pipe closed" in crash_error(crash).traceback
        held = crash_error(crash, "w2")
        assert (held.type, held.message) == ("OSError", "worker w2 crashed: pipe closed")
        assert held.traceback == crash_error(crash).traceback

    def test_any_other_crash_is_told_as_itself(self) -> None:
        assert crash_error(WorkerDied("gone")).type == "pool.runners.WorkerDied"
        assert crash_error(KeyError("k"), "w1").message == "worker w1 crashed: 'k'"


class LedgerMachine(RuleBasedStateMachine):
    """Random moves on a ledger, as a pool would make them: the identity after every one."""

    def __init__(self) -> None:
        super().__init__()
        self.world = World(RETRY_TIMEOUTS, max_dead_letters=3)
        self.now = 0.0
        self.next_id = 0
        self.records: list[JobRecord] = []
        self.before = counts(self.world.ledger)

    def tick(self) -> float:
        self.now += 1.0
        return self.now

    def of(self, state: JobState) -> list[JobRecord]:
        return [r for r in self.records if r.state is state]

    @rule()
    def accept(self) -> None:
        self.next_id += 1
        job = Job(id=f"j{self.next_id}")
        self.records.append(self.world.ledger.accept(job, self.tick(), "", self.world.put.append))

    @rule()
    def reject(self) -> None:
        self.world.ledger.reject("refused", self.tick())

    @precondition(lambda self: self.of(JobState.QUEUED))
    @rule(data=st.data())
    def begin(self, data: st.DataObject) -> None:
        record = data.draw(st.sampled_from(self.of(JobState.QUEUED)))
        self.world.ledger.begin(record, object(), "w1", self.tick())

    @precondition(lambda self: self.of(JobState.QUEUED))
    @rule(data=st.data())
    def cancel_queued(self, data: st.DataObject) -> None:
        record = data.draw(st.sampled_from(self.of(JobState.QUEUED)))
        self.world.ledger.cancel_queued(record, self.tick())

    @precondition(lambda self: self.of(JobState.RUNNING))
    @rule(
        data=st.data(),
        end=st.sampled_from(["succeed", "fail", "time_out", "cancel", "abandon", "unstarted"]),
        may_retry=st.booleans(),
    )
    def end(self, data: st.DataObject, end: str, may_retry: bool) -> None:
        record = data.draw(st.sampled_from(self.of(JobState.RUNNING)))
        ledger, now = self.world.ledger, self.tick()
        attempt = record.attempt
        if end == "succeed":
            ledger.succeed(record, "w1", None, now)
        elif end == "fail":
            ledger.fail(record, "w1", boom(), now, may_retry=may_retry)
        elif end == "time_out":
            ledger.time_out(record, "w1", now, may_retry=may_retry, measured=True)
        elif end == "cancel":
            ledger.cancel_running(record, "w1", now, True)
        elif end == "abandon":
            ledger.abandon(record, "w1", now)
        else:
            ledger.hand_back_unstarted(record, "w1", WorkerDied("died"), now)
            assert record.attempt == attempt - 1
        if record.state is JobState.QUEUED and end != "unstarted":
            assert may_retry
            assert record.attempt < RETRY_TIMEOUTS.max_attempts

    @precondition(lambda self: self.records)
    @rule(data=st.data(), fraction=st.floats(0.0, 1.0))
    def progress(self, data: st.DataObject, fraction: float) -> None:
        record = data.draw(st.sampled_from(self.records))
        attempt = data.draw(st.integers(0, 3))
        before = record.progress
        self.world.ledger.progress(record, attempt, fraction, "", self.tick())
        if record.state is JobState.RUNNING and attempt == record.attempt:
            assert record.progress == (fraction, "")
        else:
            assert record.progress == before

    @invariant()
    def balanced(self) -> None:
        ledger = self.world.ledger
        assert ledger.balanced()
        now = counts(ledger)
        for name in COUNTERS:
            assert now[name] >= 0, name
            if name not in ("queued", "running"):
                assert now[name] >= self.before[name], name  # ends and intake only grow
        self.before = now

    @invariant()
    def live_records_are_the_queued_and_running(self) -> None:
        ledger = self.world.ledger
        live = ledger.live()
        assert len(live) == ledger.queued + ledger.running
        assert all(r.state in (JobState.QUEUED, JobState.RUNNING) for r in live)
        for record in self.records:
            assert (ledger.get(record.job.id) is record) == (not record.state.is_terminal)
            if record.state.is_terminal:
                assert record.ended_at is not None

    @invariant()
    def dead_letters_are_bounded_and_terminal(self) -> None:
        letters = self.world.ledger.dead_letters()
        assert len(letters) <= 3
        assert all(d.state in (JobState.FAILED, JobState.TIMED_OUT) for d in letters)


def test_random_moves_keep_the_identity() -> None:
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=100,
            stateful_step_count=40,
            deadline=None,
            derandomize=True,
            database=None,
        ),
    )
