"""The Pool: lifecycle, submit, outcomes, retries, supervision, resize, shutdown, events."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from pool import (
    Job,
    JobAbandonedError,
    JobCancelledError,
    JobContext,
    JobFailedError,
    JobHandle,
    JobState,
    JobTimeoutError,
    ManualClock,
    Pool,
    PoolClosed,
    PoolError,
    PoolPhase,
    QueueFull,
    RetryPolicy,
    WorkerState,
    events,
)
from pool.job import JobRecord
from tests.helpers import Script, ThreadScript, next_event, release_all, settle


@pytest_asyncio.fixture(autouse=True)
async def _release_held_jobs() -> AsyncIterator[None]:
    # Runs inside the test's loop, so it is torn down before the loop is: a
    # test that fails while a job ignores cancellation would otherwise hang
    # the loop's teardown, which waits for every task.
    yield
    release_all()
    await settle()


def make(script: Any, clock: ManualClock, **kwargs: Any) -> Pool:
    kwargs.setdefault("workers", 2)
    return Pool(script, clock=clock, **kwargs)


async def run_started(pool: Pool, handle: JobHandle) -> None:
    """Wait until ``handle``'s job has started (its worker is running it)."""
    for _ in range(100):
        if handle.state is JobState.RUNNING:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{handle!r} did not start")


async def finish(pool: Pool, clock: ManualClock, script: Script | None = None) -> None:
    """Shut the pool down for good, whatever its jobs do."""
    if script is not None:
        script.release()
    task = asyncio.ensure_future(pool.shutdown(grace=1.0, cancel_grace=1.0))
    await clock.advance(2.0)
    await task


def identity(pool: Pool) -> None:
    s = pool.stats()
    assert s.submitted == s.rejected + s.queued + s.running + s.finished, s


class TestLifecycle:
    async def test_start_returns_with_every_worker_idle(self, clock: ManualClock) -> None:
        pool = make(Script(), clock, workers=3)
        await pool.start()
        snap = pool.snapshot()
        assert snap.phase is PoolPhase.RUNNING
        assert [w.id for w in snap.workers] == ["w1", "w2", "w3"]
        assert {w.state for w in snap.workers} == {WorkerState.IDLE}
        await finish(pool, clock)

    async def test_start_twice_is_refused(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        await pool.start()
        with pytest.raises(PoolError, match=r"^cannot start: pool is running$"):
            await pool.start()
        await finish(pool, clock)

    async def test_submit_before_start_is_refused(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        with pytest.raises(PoolError, match=r"^cannot submit: pool is created, not started$"):
            pool.submit_nowait(Job())
        assert pool.stats().submitted == 0

    async def test_async_with_starts_and_shuts_down(self, clock: ManualClock) -> None:
        script = Script()
        async with make(script, clock) as pool:
            assert pool.phase is PoolPhase.RUNNING
            handle = await pool.submit(Job(payload=b"ok"))
            assert await handle == b"ok"
        assert pool.phase is PoolPhase.STOPPED

    async def test_repr_shows_live_state(self, clock: ManualClock) -> None:
        pool = make(Script(), clock, workers=3, name="p")
        await pool.start()
        pool.submit_nowait(Job(payload=b"hold"))
        await settle()
        assert repr(pool) == "<Pool 'p' [running] workers=3/3 queued=0 running=1>"
        await finish(pool, clock, None)

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"workers": -1}, ValueError, r"^workers must be >= 0, got -1$"),
            ({"workers": "4"}, TypeError, r"^workers must be an int, got '4'$"),
            ({"workers": True}, TypeError, r"^workers must be an int, got True$"),
            ({"workers": 5, "max_workers": 4}, ValueError, r"^workers must be <= 4, got 5$"),
            ({"queue_size": 0}, ValueError, r"^queue_size must be >= 1, got 0$"),
            ({"max_workers": 0}, ValueError, r"^max_workers must be >= 1, got 0$"),
            ({"job_timeout": -1}, ValueError, r"^job_timeout must be > 0, got -1$"),
            ({"cancel_grace": -0.5}, ValueError, r"^cancel_grace must be >= 0, got -0.5$"),
            ({"grace": -1}, ValueError, r"^grace must be >= 0, got -1$"),
            ({"grace": None}, TypeError, r"^grace must be a number of seconds, got None$"),
            ({"retry": 3}, TypeError, r"^retry must be a RetryPolicy or None, got 3$"),
            (
                {"runner": "fork"},
                ValueError,
                r"^runner must be 'async', 'thread' or 'process', got 'fork'$",
            ),
            ({"max_restarts": -1}, ValueError, r"^max_restarts must be >= 0, got -1$"),
        ],
    )
    def test_bad_arguments_are_named(
        self, clock: ManualClock, kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        with pytest.raises(error, match=message):
            Pool(Script(), clock=clock, **kwargs)

    def test_handler_must_be_callable(self) -> None:
        with pytest.raises(
            TypeError, match=r"^handler must be callable or have make_runner\(\), got None$"
        ):
            Pool(None)  # type: ignore[arg-type]


class TestSubmit:
    async def test_submit_nowait_refuses_when_full_and_counts_a_rejection(
        self, clock: ManualClock
    ) -> None:
        pool = make(Script(), clock, workers=1, queue_size=2)
        await pool.start()
        sub = pool.events()
        first = pool.submit_nowait(Job(payload=b"hold"))
        await run_started(pool, first)
        pool.submit_nowait(Job(payload=b"ok"))
        pool.submit_nowait(Job(payload=b"ok"))
        with pytest.raises(QueueFull, match=r"^queue is full \(2 jobs waiting\)$"):
            pool.submit_nowait(Job(payload=b"ok", id="late"))
        stats = pool.stats()
        assert (stats.submitted, stats.rejected, stats.queued, stats.running) == (4, 1, 2, 1)
        identity(pool)
        rejected = await next_event(sub, events.JobRejected)
        assert rejected.job_id == "late"
        await finish(pool, clock)

    async def test_idle_workers_take_jobs_beyond_the_queue_bound(self, clock: ManualClock) -> None:
        pool = make(Script(), clock, workers=3, queue_size=1)
        await pool.start()
        for _ in range(4):  # three handed straight to idle workers, one queued
            pool.submit_nowait(Job(payload=b"hold"))
        with pytest.raises(QueueFull):
            pool.submit_nowait(Job())
        await finish(pool, clock)

    async def test_submit_waits_for_room(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock, workers=1, queue_size=1)
        await pool.start()
        running = pool.submit_nowait(Job(payload=b"hold"))
        await run_started(pool, running)
        pool.submit_nowait(Job(payload=b"ok"))
        waiting = asyncio.ensure_future(pool.submit(Job(payload=b"ok", id="third")))
        await settle()
        assert not waiting.done()
        script.release()
        handle = await waiting
        assert await handle == b"ok"
        await finish(pool, clock)

    async def test_submit_timeout_gives_up_and_counts_a_rejection(self, clock: ManualClock) -> None:
        pool = make(Script(), clock, workers=1, queue_size=1)
        await pool.start()
        await run_started(pool, pool.submit_nowait(Job(payload=b"hold")))
        pool.submit_nowait(Job(payload=b"ok"))
        waiting = asyncio.ensure_future(pool.submit(Job(), timeout=1.5))
        await clock.advance(1.0)
        assert not waiting.done()
        await clock.advance(0.5)
        with pytest.raises(QueueFull):
            await waiting
        assert pool.stats().rejected == 1
        identity(pool)
        await finish(pool, clock)

    async def test_a_cancelled_waiter_passes_its_turn_on(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock, workers=1, queue_size=1)
        await pool.start()
        await run_started(pool, pool.submit_nowait(Job(payload=b"hold")))
        pool.submit_nowait(Job(payload=b"ok"))
        first = asyncio.ensure_future(pool.submit(Job(id="first")))
        second = asyncio.ensure_future(pool.submit(Job(id="second")))
        await settle()
        script.release()  # the held job ends; the queued one starts; room for one
        first.cancel()
        handle = await second
        assert handle.id == "second"
        assert first.cancelled()
        identity(pool)
        await finish(pool, clock)

    async def test_bad_submit_changes_nothing(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        await pool.start()
        with pytest.raises(ValueError, match=r"^timeout must be >= 0, got -1$"):
            await pool.submit(Job(), timeout=-1)
        with pytest.raises(TypeError, match=r"^job must be a Job, got bytes$"):
            pool.submit_nowait(b"payload")  # type: ignore[arg-type]
        assert pool.stats().submitted == 0
        await finish(pool, clock)

    async def test_a_live_id_cannot_be_used_twice(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock)
        await pool.start()
        first = pool.submit_nowait(Job(payload=b"hold", id="a"))
        with pytest.raises(ValueError, match=r"^job id 'a' is already queued or running$"):
            pool.submit_nowait(Job(id="a"))
        assert pool.stats().submitted == 1
        script.release()
        await first
        again = pool.submit_nowait(Job(id="a", payload=b"ok"))
        assert await again == b"ok"
        await finish(pool, clock)

    async def test_submit_nowait_from_another_thread_is_refused(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        await pool.start()
        errors: list[BaseException] = []

        def submit() -> None:
            try:
                pool.submit_nowait(Job(payload=b"ok"))
            except BaseException as exc:  # kept for the test's thread to check
                errors.append(exc)

        thread = threading.Thread(target=submit)
        thread.start()
        thread.join()
        (error,) = errors
        with pytest.raises(
            PoolError,
            match=r"^submit_nowait was called from another thread than the pool's event loop's: "
            r"use asyncio\.run_coroutine_threadsafe\(pool\.submit\(job\), loop\)$",
        ):
            raise error
        assert pool.stats().submitted == 0

    async def test_the_documented_way_from_another_thread_works(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        await pool.start()
        loop = asyncio.get_running_loop()
        handles: list[JobHandle] = []

        def submit() -> None:
            future = asyncio.run_coroutine_threadsafe(pool.submit(Job(payload=b"ok")), loop)
            handles.append(future.result())

        thread = threading.Thread(target=submit)
        thread.start()
        await asyncio.to_thread(thread.join)
        assert await handles[0] == b"ok"
        await finish(pool, clock)

    async def test_while_the_shutdown_begins_submit_and_resize_say_it(
        self, clock: ManualClock, loop_kind: str
    ) -> None:
        pool = make(Script(), clock)
        await pool.start()
        stopping = asyncio.ensure_future(pool.shutdown(grace=1.0))
        await asyncio.sleep(0)  # shutdown() has closed intake; its own task may not have run
        # On a default loop the shutdown's task has not taken its first step,
        # so the phase is still running; an eager loop ran it at once.
        state = "shutting down" if loop_kind == "default" else "draining"
        with pytest.raises(PoolClosed, match=rf"^pool is {state}: it accepts no more jobs$"):
            pool.submit_nowait(Job())
        with pytest.raises(PoolClosed, match=rf"^cannot resize: pool is {state}$"):
            await pool.resize(4)
        await stopping
        assert pool.stats().workers == 0
        assert [w.id for w in pool.snapshot().workers] == ["w1", "w2"]

    async def test_after_shutdown_submit_raises_pool_closed(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        await pool.start()
        await pool.shutdown()
        with pytest.raises(PoolClosed, match=r"^pool is stopped: it accepts no more jobs$"):
            await pool.submit(Job())
        with pytest.raises(PoolClosed):
            pool.submit_nowait(Job())
        assert pool.stats().submitted == 0

    async def test_waiting_submitters_are_woken_with_pool_closed(self, clock: ManualClock) -> None:
        pool = make(Script(), clock, workers=1, queue_size=1)
        await pool.start()
        await run_started(pool, pool.submit_nowait(Job(payload=b"hold")))
        pool.submit_nowait(Job())
        waiting = asyncio.ensure_future(pool.submit(Job()))
        await settle()
        stopping = asyncio.ensure_future(pool.shutdown(grace=1.0, cancel_grace=1.0))
        await settle()
        with pytest.raises(PoolClosed, match=r"^pool is draining: it accepts no more jobs$"):
            await waiting
        await clock.advance(2.0)
        await stopping
        identity(pool)


class TestOutcomes:
    @pytest.mark.parametrize(
        ("error", "text"),
        [(SystemExit(3), "SystemExit: 3"), (KeyboardInterrupt(), "KeyboardInterrupt")],
    )
    async def test_an_async_job_that_raises_systemexit_or_keyboardinterrupt_only_fails(
        self, clock: ManualClock, error: BaseException, text: str
    ) -> None:
        # Out of a task, asyncio would let these end the whole program.
        async def handler(job: Job, ctx: JobContext) -> bytes:
            if job.payload == b"exit":
                raise error
            return job.payload

        pool = make(handler, clock, workers=1)
        await pool.start()
        with pytest.raises(JobFailedError, match=rf"^job 'x' failed: {text}$"):
            await pool.submit_nowait(Job(payload=b"exit", id="x"))
        assert await pool.submit_nowait(Job(payload=b"ok")) == b"ok"
        stats = pool.stats()
        assert (stats.failed, stats.succeeded, stats.restarts) == (1, 1, 0)
        await finish(pool, clock)

    async def test_a_result_is_returned(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        await pool.start()
        handle = await pool.submit(Job(payload=b"ok:1"))
        assert await handle == b"ok:1"
        assert handle.state is JobState.SUCCEEDED
        assert handle.result() == b"ok:1"
        assert pool.stats().succeeded == 1
        await finish(pool, clock)

    async def test_an_error_is_recorded_and_the_worker_goes_on(self, clock: ManualClock) -> None:
        pool = make(Script(), clock, workers=1)
        await pool.start()
        bad = await pool.submit(Job(payload=b"fail", id="bad"))
        with pytest.raises(
            JobFailedError, match=r"^job 'bad' failed: ValueError: job bad failed on purpose$"
        ) as caught:
            await bad
        assert isinstance(caught.value.__cause__, ValueError)
        error = bad.error
        assert error is not None
        assert error.type == "ValueError"
        assert "raise ValueError" in error.traceback
        good = await pool.submit(Job(payload=b"ok"))
        assert await good == b"ok"
        assert good.worker_id == bad.worker_id == "w1"
        assert pool.snapshot().workers[0].jobs_failed == 1
        assert [d.job.id for d in pool.dead_letters()] == ["bad"]
        await finish(pool, clock)

    async def test_a_job_past_its_deadline_times_out(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock)
        await pool.start()
        handle = pool.submit_nowait(Job(payload=b"hold", id="slow", timeout=3.0))
        await run_started(pool, handle)
        await clock.advance(2.9)
        assert handle.state is JobState.RUNNING
        await clock.advance(0.1)
        with pytest.raises(JobTimeoutError, match=r"^job 'slow' timed out$"):
            await handle
        assert script.cancelled == ["slow"]
        assert pool.stats().timed_out == 1
        await finish(pool, clock)

    async def test_a_timed_out_job_is_kept_as_a_dead_letter(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        await pool.start()
        handle = pool.submit_nowait(Job(payload=b"hold", id="slow", timeout=1.0))
        await run_started(pool, handle)
        await clock.advance(1.0)
        with pytest.raises(JobTimeoutError):
            await handle
        (letter,) = pool.dead_letters()
        assert (letter.job, letter.state, letter.error, letter.attempts, letter.at) == (
            handle.job,
            JobState.TIMED_OUT,
            None,
            1,
            clock.now(),
        )
        assert pool.stats().dead_letters == 1
        await finish(pool, clock)

    async def test_the_pool_default_deadline_applies(self, clock: ManualClock) -> None:
        pool = make(Script(), clock, job_timeout=1.0)
        await pool.start()
        handle = pool.submit_nowait(Job(payload=b"hold"))
        await run_started(pool, handle)
        await clock.advance(1.0)
        assert handle.state is JobState.TIMED_OUT
        await finish(pool, clock)

    async def test_cancel_a_queued_job(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock, workers=1, queue_size=1)
        await pool.start()
        await run_started(pool, pool.submit_nowait(Job(payload=b"hold")))
        queued = pool.submit_nowait(Job(payload=b"ok", id="q"))
        assert queued.cancel() is True
        assert queued.cancel() is False
        with pytest.raises(JobCancelledError, match=r"^job 'q' was cancelled$"):
            await queued
        pool.submit_nowait(Job(payload=b"ok"))  # its room is free again
        script.release()
        await settle()
        assert "q" not in script.started
        identity(pool)
        await finish(pool, clock)

    async def test_cancel_a_running_job(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock)
        await pool.start()
        handle = pool.submit_nowait(Job(payload=b"hold", id="r"))
        await run_started(pool, handle)
        assert handle.cancel() is True
        with pytest.raises(JobCancelledError):
            await handle
        assert script.cancelled == ["r"]
        assert handle.cancel() is False
        assert pool.stats().cancelled == 1
        await finish(pool, clock)

    async def test_a_job_that_ignores_cancellation_is_abandoned_and_its_slot_replaced(
        self, clock: ManualClock
    ) -> None:
        script = Script()
        pool = make(script, clock, workers=1, cancel_grace=2.0)
        await pool.start()
        sub = pool.events()
        handle = pool.submit_nowait(Job(payload=b"stubborn", id="s", timeout=1.0))
        await run_started(pool, handle)
        await clock.advance(1.0)
        assert (await next_event(sub, events.JobCancelRequested)).reason == "timeout"
        assert handle.state is JobState.RUNNING
        await clock.advance(2.0)
        with pytest.raises(JobAbandonedError, match=r"^job 's' was abandoned$"):
            await handle
        replaced = await next_event(sub, events.WorkerReplaced)
        assert (replaced.worker_id, replaced.job_id) == ("w1", "s")
        # Capacity is kept: the fresh worker in slot w1 runs the next job.
        after = await pool.submit(Job(payload=b"ok"))
        assert await after == b"ok"
        assert after.worker_id == "w1"
        assert pool.stats().abandoned == 1
        identity(pool)
        await finish(pool, clock, script)

    async def test_progress_is_published_and_in_the_snapshot(self, clock: ManualClock) -> None:
        gate = asyncio.Event()

        async def handler(job: Job, ctx: JobContext) -> None:
            ctx.progress(0.25, "resizing")
            await gate.wait()

        pool = make(handler, clock, workers=1)
        await pool.start()
        sub = pool.events()
        handle = pool.submit_nowait(Job(id="p"))
        progressed = await next_event(sub, events.JobProgressed)
        assert (progressed.job_id, progressed.fraction, progressed.message) == (
            "p",
            0.25,
            "resizing",
        )
        worker = pool.snapshot().workers[0]
        assert (worker.job_id, worker.progress, worker.progress_message) == ("p", 0.25, "resizing")
        gate.set()
        await handle
        await finish(pool, clock)

    async def test_progress_reported_after_its_attempt_ended_is_ignored(
        self, clock: ManualClock
    ) -> None:
        contexts: list[JobContext] = []
        gate = asyncio.Event()

        async def handler(job: Job, ctx: JobContext) -> None:
            contexts.append(ctx)
            if ctx.attempt == 1:
                raise ValueError("first attempt")
            await gate.wait()

        pool = make(handler, clock, workers=1, retry=RetryPolicy(max_attempts=2, backoff=0.0))
        await pool.start()
        sub = pool.events()
        handle = pool.submit_nowait(Job(id="r"))
        await clock.advance(0.0)
        await next_event(sub, events.JobRetryScheduled)
        second = await next_event(sub, events.JobStarted)
        assert second.attempt == 2
        first_ctx, second_ctx = contexts

        first_ctx.progress(0.9, "from the first attempt")  # while the second runs
        assert pool.snapshot().workers[0].progress is None
        gate.set()
        await handle
        second_ctx.progress(1.0, "after the end")  # the job is over
        await finish(pool, clock)

        seen = sub.drain()
        assert not [e for e in seen if isinstance(e, events.JobProgressed)]

    async def test_bad_progress_is_refused(self, clock: ManualClock) -> None:
        async def handler(job: Job, ctx: JobContext) -> None:
            ctx.progress(1.5)

        pool = make(handler, clock)
        await pool.start()
        handle = pool.submit_nowait(Job())
        with pytest.raises(JobFailedError, match=r"fraction must be between 0.0 and 1.0, got 1.5$"):
            await handle
        await finish(pool, clock)


class TestThreads:
    async def test_a_plain_def_runs_in_a_daemon_thread_the_pool_owns(
        self, clock: ManualClock
    ) -> None:
        seen: list[threading.Thread] = []

        def handler(job: Job, ctx: JobContext) -> bytes:
            seen.append(threading.current_thread())
            ctx.progress(1.0)
            return job.payload * 2

        pool = make(handler, clock, name="tp")
        await pool.start()
        assert await pool.submit_nowait(Job(payload=b"ab")) == b"abab"
        (thread,) = seen
        assert thread is not threading.main_thread()
        assert thread.daemon
        assert thread.name in ("tp-w1", "tp-w2")
        await finish(pool, clock)

    async def test_a_plain_def_that_returns_a_coroutine_fails_and_says_why(
        self, clock: ManualClock
    ) -> None:
        ran: list[str] = []

        async def work(job: Job) -> None:
            ran.append(job.id)

        def handler(job: Job, ctx: JobContext) -> object:
            return work(job)  # forgot the await: nothing of work() ever runs

        pool = make(handler, clock)
        await pool.start()
        with pytest.raises(
            JobFailedError,
            match=r"^job 'x' failed: TypeError: the handler returned a coroutine "
            r"\(TestThreads\.test_a_plain_def_that_returns_a_coroutine_fails_and_says_why\."
            r"<locals>\.work\) without awaiting it, so its work never ran: "
            r"make the handler async def, or await it there$",
        ):
            await pool.submit_nowait(Job(id="x"))
        assert ran == []
        await finish(pool, clock)

    async def test_a_thread_job_error_is_a_failure(self, clock: ManualClock) -> None:
        pool = make(ThreadScript(), clock)
        await pool.start()
        with pytest.raises(JobFailedError, match=r"ValueError"):
            await pool.submit_nowait(Job(payload=b"fail"))
        assert pool.stats().restarts == 0
        await finish(pool, clock)

    async def test_a_thread_job_sees_cancelled_and_stops(self, clock: ManualClock) -> None:
        script = ThreadScript()
        pool = make(script, clock, job_timeout=1.0)
        await pool.start()
        handle = pool.submit_nowait(Job(payload=b"hold"))
        await asyncio.to_thread(script.running.acquire)
        await clock.advance(1.0)
        with pytest.raises(JobTimeoutError):
            await handle
        await finish(pool, clock)

    async def test_a_stuck_thread_is_abandoned_and_replaced(self, clock: ManualClock) -> None:
        script = ThreadScript()
        pool = make(script, clock, workers=1, cancel_grace=0.5)
        await pool.start()
        handle = pool.submit_nowait(Job(payload=b"stubborn", timeout=1.0))
        await asyncio.to_thread(script.running.acquire)
        await clock.advance(1.5)
        with pytest.raises(JobAbandonedError):
            await handle
        after = pool.submit_nowait(Job(payload=b"ok"))
        assert await after == b"ok"
        assert after.worker_id == "w1"
        await finish(pool, clock)
        script.release()

    async def test_a_thread_that_dies_is_a_crash_and_is_restarted(self, clock: ManualClock) -> None:
        pool = make(ThreadScript(), clock, workers=1)
        await pool.start()
        sub = pool.events()
        handle = pool.submit_nowait(Job(payload=b"exit", id="x"))
        with pytest.raises(
            JobFailedError, match=r"^job 'x' failed: SystemExit: worker w1 crashed: 3$"
        ):
            await handle
        crashed = await next_event(sub, events.WorkerCrashed)
        assert crashed.error.type == "SystemExit"
        await clock.advance(crashed.restart_in or 0.0)
        await next_event(sub, events.WorkerRestarted)
        assert await pool.submit_nowait(Job(payload=b"ok")) == b"ok"
        await finish(pool, clock)

    def test_an_abandoned_thread_never_keeps_the_process_alive(self) -> None:
        # A thread job that never returns, in a real process: once the pool has
        # shut down and abandoned it, the interpreter still exits.
        program = textwrap.dedent(
            """
            import asyncio, threading
            from pool import Job, Pool

            never = threading.Event()

            def stuck(job, ctx):
                never.wait()

            async def main():
                pool = Pool(stuck, workers=2)
                await pool.start()
                pool.submit_nowait(Job())
                await asyncio.sleep(0)
                report = await pool.shutdown(grace=0.0, cancel_grace=0.0)
                print(len(report.abandoned), pool.phase.value)

            asyncio.run(main())
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=20, check=False
        )
        assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "1 stopped", "")

    def test_a_pool_left_running_does_not_hang_asyncio_run(self) -> None:
        # asyncio.run cancels every task left at its end, the worker tasks of a
        # pool never shut down among them: they must end, not take the next job.
        program = textwrap.dedent(
            """
            import asyncio
            from pool import Job, Pool

            async def held(job, ctx):
                await asyncio.Event().wait()

            async def main():
                pool = Pool(held, workers=2)
                await pool.start()
                for _ in range(4):
                    pool.submit_nowait(Job())
                await asyncio.sleep(0)
                print(pool.stats().running)

            asyncio.run(main())
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=20, check=False
        )
        assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "2", "")


class TestRetry:
    async def test_a_failing_job_is_retried_with_backoff_until_it_succeeds(
        self, clock: ManualClock
    ) -> None:
        attempts: list[int] = []

        async def flaky(job: Job, ctx: JobContext) -> str:
            attempts.append(ctx.attempt)
            if ctx.attempt < 3:
                raise RuntimeError(f"attempt {ctx.attempt}")
            return "done"

        pool = make(flaky, clock, retry=RetryPolicy(max_attempts=3, backoff=0.5, jitter=0.0))
        await pool.start()
        sub = pool.events()
        handle = pool.submit_nowait(Job(id="f"))
        retrying = await next_event(sub, events.JobRetryScheduled)
        assert (retrying.attempt, retrying.delay, retrying.error.message) == (1, 0.5, "attempt 1")
        assert handle.state is JobState.QUEUED
        assert pool.stats().queued == 1
        identity(pool)
        await clock.advance(0.5)
        assert (await next_event(sub, events.JobRetryScheduled)).delay == 1.0
        await clock.advance(1.0)
        assert await handle == "done"
        assert attempts == [1, 2, 3]
        assert handle.attempts == 3
        stats = pool.stats()
        assert (stats.retried, stats.failed, stats.succeeded) == (2, 0, 1)
        await finish(pool, clock)

    async def test_a_job_that_exhausts_its_retries_is_a_dead_letter(
        self, clock: ManualClock
    ) -> None:
        pool = make(Script(), clock, retry=RetryPolicy(max_attempts=2, backoff=0.0, jitter=0.0))
        await pool.start()
        handle = pool.submit_nowait(Job(payload=b"fail", id="d"))
        await clock.advance(0.0)
        with pytest.raises(JobFailedError):
            await handle
        (letter,) = pool.dead_letters()
        assert (letter.job.id, letter.attempts, letter.state) == ("d", 2, JobState.FAILED)
        assert letter.error is not None
        assert letter.error.type == "ValueError"
        again = await pool.resubmit("d")
        assert again.job is letter.job
        assert pool.dead_letters() == ()
        await clock.advance(0.0)
        with pytest.raises(JobFailedError):
            await again
        await finish(pool, clock)

    async def test_resubmit_with_no_time_to_wait_refuses_a_full_queue_at_once(
        self, clock: ManualClock
    ) -> None:
        pool = make(Script(), clock, workers=1, queue_size=1)
        await pool.start()
        with pytest.raises(JobFailedError):
            await pool.submit_nowait(Job(payload=b"fail", id="d"))
        await pool.resize(0)
        pool.submit_nowait(Job(id="filler"))
        with pytest.raises(QueueFull, match=r"^queue is full \(1 jobs waiting\)$"):
            await pool.resubmit("d", timeout=0)
        assert [letter.job.id for letter in pool.dead_letters()] == ["d"]
        assert pool.stats().rejected == 1
        await finish(pool, clock)

    async def test_resubmit_of_an_unknown_id_is_refused(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        await pool.start()
        with pytest.raises(ValueError, match=r"^no dead letter with id 'nope'$"):
            await pool.resubmit("nope")
        await finish(pool, clock)

    async def test_dead_letters_are_bounded(self, clock: ManualClock) -> None:
        pool = make(Script(), clock, max_dead_letters=2)
        await pool.start()
        for i in range(3):
            with pytest.raises(JobFailedError):
                await pool.submit_nowait(Job(payload=b"fail", id=f"d{i}"))
        assert [d.job.id for d in pool.dead_letters()] == ["d1", "d2"]
        await finish(pool, clock)


class TestSupervision:
    async def test_a_crashed_worker_is_restarted_after_a_backoff(self, clock: ManualClock) -> None:
        pool = make(Script(), clock, workers=1, restart_backoff=0.25)
        await pool.start()
        sub = pool.events()
        handle = pool.submit_nowait(Job(payload=b"crash", id="c"))
        with pytest.raises(
            JobFailedError, match=r"^job 'c' failed: Crash: worker w1 crashed: worker killed by c$"
        ):
            await handle
        crashed = await next_event(sub, events.WorkerCrashed)
        assert (crashed.worker_id, crashed.job_id, crashed.restart_in) == ("w1", "c", 0.25)
        assert pool.snapshot().workers[0].state is WorkerState.RESTARTING
        queued = pool.submit_nowait(Job(payload=b"ok"))
        await clock.advance(0.2)
        assert queued.state is JobState.QUEUED
        await clock.advance(0.05)
        restarted = await next_event(sub, events.WorkerRestarted)
        assert (restarted.worker_id, restarted.restarts) == ("w1", 1)
        assert await queued == b"ok"
        assert pool.stats().restarts == 1
        assert pool.snapshot().workers[0].restarts == 1
        await finish(pool, clock)

    async def test_the_backoff_doubles_within_the_window(self, clock: ManualClock) -> None:
        pool = make(Script(), clock, workers=1, restart_backoff=0.1, max_restarts=5)
        await pool.start()
        sub = pool.events()
        delays = []
        for i in range(3):
            pool.submit_nowait(Job(payload=b"crash", id=f"c{i}"))
            crashed = await next_event(sub, events.WorkerCrashed)
            delays.append(crashed.restart_in)
            await clock.advance(crashed.restart_in or 0.0)
            await next_event(sub, events.WorkerRestarted)
        assert delays == [0.1, 0.2, 0.4]
        await finish(pool, clock)

    async def test_a_crashed_job_is_retried_when_the_policy_allows(
        self, clock: ManualClock
    ) -> None:
        runs: list[int] = []

        async def handler(job: Job, ctx: JobContext) -> str:
            runs.append(ctx.attempt)
            if ctx.attempt == 1:
                raise KeyboardInterruptLike("die")
            return "second time lucky"

        pool = make(handler, clock, workers=1, retry=RetryPolicy(backoff=0.0, jitter=0.0))
        await pool.start()
        handle = pool.submit_nowait(Job())
        await clock.advance(1.0)
        assert await handle == "second time lucky"
        assert runs == [1, 2]
        await finish(pool, clock)

    async def test_too_many_crashes_escalate_to_a_failed_shutdown(self, clock: ManualClock) -> None:
        pool = make(Script(), clock, workers=1, max_restarts=1, restart_window=10.0)
        await pool.start()
        sub = pool.events()
        pool.submit_nowait(Job(payload=b"crash", id="c1"))
        crashed = await next_event(sub, events.WorkerCrashed)
        await clock.advance(crashed.restart_in or 0.0)
        pool.submit_nowait(Job(payload=b"crash", id="c2"))
        final = await next_event(sub, events.WorkerCrashed)
        assert final.restart_in is None
        report = await pool.wait_stopped()
        assert pool.phase is PoolPhase.FAILED
        assert report.failed
        assert report.reason == (
            "worker w1 crashed 2 times within 10s (max_restarts=1): Crash: worker killed by c2"
        )
        with pytest.raises(PoolClosed, match=r"^pool is failed: it accepts no more jobs$"):
            pool.submit_nowait(Job())
        identity(pool)

    async def test_the_shutdown_supervision_begins_has_the_pools_grace(
        self, clock: ManualClock
    ) -> None:
        pool = make(Script(), clock, workers=2, max_restarts=0, grace=30.0)
        sub = pool.events()
        await pool.start()
        pool.submit_nowait(Job(payload=b"hold", id="long"))
        pool.submit_nowait(Job(payload=b"crash", id="c"))
        started = await next_event(sub, events.ShutdownStarted)
        assert started.grace == 30.0
        await clock.advance(29.9)
        assert pool.phase is PoolPhase.DRAINING  # the held job still has its grace
        await clock.advance(0.1)
        report = await pool.wait_stopped()
        assert report.failed
        assert report.cancelled == ("long",)

    async def test_crashes_outside_the_window_do_not_add_up(self, clock: ManualClock) -> None:
        pool = make(Script(), clock, workers=1, max_restarts=1, restart_window=5.0)
        await pool.start()
        sub = pool.events()
        for i in range(3):
            pool.submit_nowait(Job(payload=b"crash", id=f"c{i}"))
            crashed = await next_event(sub, events.WorkerCrashed)
            assert crashed.restart_in is not None
            await clock.advance(6.0)
        assert pool.phase is PoolPhase.RUNNING
        await finish(pool, clock)


class KeyboardInterruptLike(BaseException):
    """Kills a worker without being an Exception (and without stopping pytest)."""


class TestResize:
    async def test_growing_starts_workers_at_once_and_wakes_blocked_submitters(
        self, clock: ManualClock
    ) -> None:
        script = Script()
        pool = make(script, clock, workers=1, queue_size=1)
        await pool.start()
        await run_started(pool, pool.submit_nowait(Job(payload=b"hold")))
        pool.submit_nowait(Job(payload=b"hold"))
        blocked = asyncio.ensure_future(pool.submit(Job(payload=b"hold", id="blocked")))
        await settle()
        assert not blocked.done()
        await pool.resize(3)
        handle = await blocked
        await run_started(pool, handle)
        stats = pool.stats()
        assert (stats.workers, stats.target_workers, stats.busy_workers) == (3, 3, 3)
        await finish(pool, clock, script)

    async def test_shrinking_retires_idle_workers_first(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock, workers=3)
        await pool.start()
        busy = pool.submit_nowait(Job(payload=b"hold"))
        await run_started(pool, busy)
        sub = pool.events()
        await pool.resize(1)
        stopped = {(await next_event(sub, events.WorkerStopped)).worker_id for _ in range(2)}
        assert busy.worker_id not in stopped
        assert [w.id for w in pool.snapshot().workers] == [busy.worker_id]
        assert busy.state is JobState.RUNNING
        await finish(pool, clock, script)

    async def test_a_busy_worker_retires_after_its_job(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock, workers=2)
        await pool.start()
        jobs = [pool.submit_nowait(Job(payload=b"hold")) for _ in range(2)]
        for job in jobs:
            await run_started(pool, job)
        sub = pool.events()
        await pool.resize(1)
        retiring = await next_event(sub, events.WorkerRetireRequested)
        stats = pool.stats()
        assert (stats.workers, stats.target_workers, stats.retiring_workers) == (2, 1, 1)
        states = {w.id: w.state for w in pool.snapshot().workers}
        assert states[retiring.worker_id] is WorkerState.RETIRING
        script.release()
        assert [await j for j in jobs] == [b"hold", b"hold"]  # never cancelled
        assert (await next_event(sub, events.WorkerStopped)).worker_id == retiring.worker_id
        assert pool.stats().workers == 1
        await finish(pool, clock)

    async def test_resize_to_zero_holds_jobs_until_it_grows(self, clock: ManualClock) -> None:
        pool = make(Script(), clock, workers=2)
        await pool.start()
        await pool.resize(0)
        await settle()
        handle = pool.submit_nowait(Job(payload=b"ok"))
        await settle()
        assert handle.state is JobState.QUEUED
        assert pool.stats().workers == 0
        await pool.resize(1)
        assert await handle == b"ok"
        await finish(pool, clock)

    @pytest.mark.parametrize(
        ("value", "error", "message"),
        [
            (-1, ValueError, r"^workers must be >= 0, got -1$"),
            (9, ValueError, r"^workers must be <= 8, got 9$"),
            ("2", TypeError, r"^workers must be an int, got '2'$"),
            (2.0, TypeError, r"^workers must be an int, got 2.0$"),
        ],
    )
    async def test_a_bad_size_is_refused_and_changes_nothing(
        self, clock: ManualClock, value: Any, error: type[Exception], message: str
    ) -> None:
        pool = make(Script(), clock, workers=2, max_workers=8)
        await pool.start()
        with pytest.raises(error, match=message):
            await pool.resize(value)
        assert pool.stats().target_workers == 2
        assert pool.stats().workers == 2
        await finish(pool, clock)

    async def test_resize_after_shutdown_is_refused(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        await pool.start()
        await pool.shutdown()
        with pytest.raises(PoolClosed, match=r"^cannot resize: pool is stopped$"):
            await pool.resize(3)


class TestPause:
    async def test_a_paused_pool_accepts_but_does_not_start_jobs(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        await pool.start()
        await pool.pause()
        assert pool.phase is PoolPhase.PAUSED
        with pytest.raises(PoolError, match=r"^cannot pause: pool is paused$"):
            await pool.pause()
        handle = pool.submit_nowait(Job(payload=b"ok"))
        await settle()
        assert handle.state is JobState.QUEUED
        await pool.resume()
        assert await handle == b"ok"
        with pytest.raises(PoolError, match=r"^cannot resume: pool is running$"):
            await pool.resume()
        await finish(pool, clock)


class TestShutdown:
    async def test_an_idle_pool_stops_at_once(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        await pool.start()
        sub = pool.events()
        report = await pool.shutdown()
        assert report.clean
        assert report.duration == 0.0
        assert report.phase_reached is PoolPhase.DRAINING
        phases = [e.phase async for e in sub if isinstance(e, events.PhaseChanged)]
        assert phases == [PoolPhase.DRAINING, PoolPhase.STOPPED]
        assert {w.state for w in pool.snapshot().workers} == {WorkerState.STOPPED}

    async def test_draining_runs_queued_jobs(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock, workers=1)
        await pool.start()
        handles = [pool.submit_nowait(Job(payload=b"hold", id=f"j{i}")) for i in range(3)]
        stopping = asyncio.ensure_future(pool.shutdown(grace=5.0, drain=True))
        await settle()
        script.release()
        report = await stopping
        assert report.finished == ("j0", "j1", "j2")
        assert report.unfinished == ()
        assert all(h.state is JobState.SUCCEEDED for h in handles)

    async def test_without_drain_queued_jobs_are_handed_back(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock, workers=1)
        await pool.start()
        running = pool.submit_nowait(Job(payload=b"hold", id="run"))
        await run_started(pool, running)
        queued = [Job(payload=b"ok", id=f"q{i}") for i in range(2)]
        for job in queued:
            pool.submit_nowait(job)
        stopping = asyncio.ensure_future(pool.shutdown(grace=5.0, drain=False))
        await settle()
        script.release()
        report = await stopping
        assert report.finished == ("run",)
        assert report.not_started == ("q0", "q1")
        assert report.unfinished == tuple(queued)
        assert "q0" not in script.started
        identity(pool)

    async def test_phases_cancel_then_abandon_within_the_bound(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock, workers=2)
        await pool.start()
        hold = pool.submit_nowait(Job(payload=b"hold", id="hold"))
        stuck = pool.submit_nowait(Job(payload=b"stubborn", id="stuck"))
        waiting = Job(payload=b"ok", id="waiting")
        pool.submit_nowait(waiting)
        await run_started(pool, stuck)
        sub = pool.events()
        stopping = asyncio.ensure_future(pool.shutdown(grace=3.0, cancel_grace=2.0))
        await clock.advance(2.99)
        assert pool.phase is PoolPhase.DRAINING
        await clock.advance(0.01)
        assert pool.phase is PoolPhase.CANCELLING
        assert hold.state is JobState.CANCELLED
        await clock.advance(1.99)
        assert not stopping.done()
        await clock.advance(0.01)
        assert stopping.done()
        report = stopping.result()
        assert report.phase_reached is PoolPhase.FORCING
        assert report.duration == pytest.approx(5.0)
        assert (report.cancelled, report.not_started, report.abandoned) == (
            ("hold",),
            ("waiting",),
            ("stuck",),
        )
        assert [j.id for j in report.unfinished] == ["hold", "waiting", "stuck"]
        phases = [e.phase async for e in sub if isinstance(e, events.PhaseChanged)]
        assert phases == [
            PoolPhase.DRAINING,
            PoolPhase.CANCELLING,
            PoolPhase.FORCING,
            PoolPhase.STOPPED,
        ]
        identity(pool)
        script.release()

    async def test_ticks_count_down_about_every_100ms(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock, workers=1)
        await pool.start()
        pool.submit_nowait(Job(payload=b"stubborn"))
        pool.submit_nowait(Job(payload=b"ok"))
        await settle()
        sub = pool.events()
        stopping = asyncio.ensure_future(pool.shutdown(grace=1.0, cancel_grace=0.5))
        for _ in range(15):
            await clock.advance(0.1)
        await stopping
        ticks = [e async for e in sub if isinstance(e, events.ShutdownTick)]
        draining = [t for t in ticks if t.phase is PoolPhase.DRAINING]
        assert [round(t.remaining, 3) for t in draining] == [
            0.9,
            0.8,
            0.7,
            0.6,
            0.5,
            0.4,
            0.3,
            0.2,
            0.1,
        ]
        assert {(t.running, t.queued) for t in draining} == {(1, 1)}
        cancelling = [t for t in ticks if t.phase is PoolPhase.CANCELLING]
        assert cancelling
        assert cancelling[-1].remaining < cancelling[0].remaining

    async def test_a_second_call_escalates_and_a_third_forces(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock, workers=1)
        await pool.start()
        stuck = pool.submit_nowait(Job(payload=b"stubborn"))
        await run_started(pool, stuck)
        first = asyncio.ensure_future(pool.shutdown(grace=100.0, cancel_grace=100.0))
        await settle()
        assert pool.phase is PoolPhase.DRAINING
        second = asyncio.ensure_future(pool.shutdown())
        await settle()
        assert pool.phase is PoolPhase.CANCELLING
        third = asyncio.ensure_future(pool.shutdown())
        await settle()
        assert [first.done(), second.done(), third.done()] == [True, True, True]
        assert first.result() is second.result() is third.result()
        assert first.result().abandoned == (stuck.id,)
        assert clock.now() == 1000.0  # no time had to pass
        script.release()

    async def test_shutdown_is_idempotent(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        await pool.start()
        report = await pool.shutdown()
        assert await pool.shutdown() is report
        assert pool.phase is PoolPhase.STOPPED

    async def test_a_pool_never_started_stops_cleanly(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        report = await pool.shutdown()
        assert report.clean
        assert pool.phase is PoolPhase.STOPPED

    async def test_cancelling_the_caller_does_not_abort_the_shutdown(
        self, clock: ManualClock
    ) -> None:
        script = Script()
        pool = make(script, clock)
        await pool.start()
        pool.submit_nowait(Job(payload=b"hold"))
        caller = asyncio.ensure_future(pool.shutdown(grace=1.0, cancel_grace=1.0))
        await settle()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await clock.advance(1.0)
        report = await pool.wait_stopped()
        assert len(report.cancelled) == 1
        assert pool.phase is PoolPhase.STOPPED

    async def test_a_shutdown_given_no_grace_has_the_pools(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock, grace=4.0)
        sub = pool.events()
        await pool.start()
        held = pool.submit_nowait(Job(payload=b"hold"))
        await run_started(pool, held)
        stopping = asyncio.ensure_future(pool.shutdown())
        assert (await next_event(sub, events.ShutdownStarted)).grace == 4.0
        await clock.advance(3.9)
        assert held.state is JobState.RUNNING
        await clock.advance(0.1)
        await stopping
        assert held.state is JobState.CANCELLED
        assert pool.grace == 4.0

    @pytest.mark.parametrize("grace", [-1.0, float("nan")])
    async def test_a_bad_grace_is_refused_and_changes_nothing(
        self, clock: ManualClock, grace: float
    ) -> None:
        pool = make(Script(), clock)
        await pool.start()
        with pytest.raises(ValueError, match=r"^grace must be >= 0, got "):
            await pool.shutdown(grace=grace)
        assert pool.phase is PoolPhase.RUNNING
        await finish(pool, clock)

    async def test_real_time_bound_with_stuck_coroutine_and_thread(self) -> None:
        # With the real clock: whatever the handlers do, the call returns
        # about grace + cancel_grace after it began (the margin is for a loaded CI).
        release = threading.Event()
        gate = asyncio.Event()

        async def stuck_coroutine(job: Job, ctx: JobContext) -> None:
            while True:
                try:
                    await gate.wait()
                    return
                except asyncio.CancelledError:
                    continue

        def stuck_thread(job: Job, ctx: JobContext) -> None:
            release.wait()

        pools = [Pool(stuck_coroutine, workers=1), Pool(stuck_thread, workers=1)]
        for pool in pools:
            await pool.start()
            pool.submit_nowait(Job())
        await settle()
        began = time.monotonic()
        reports = await asyncio.gather(*(p.shutdown(grace=0.2, cancel_grace=0.2) for p in pools))
        elapsed = time.monotonic() - began
        assert [r.phase_reached for r in reports] == [PoolPhase.FORCING, PoolPhase.FORCING]
        assert 0.4 <= elapsed < 2.0
        gate.set()
        release.set()


class TestEvents:
    async def test_sequence_numbers_have_no_gaps(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        sub = pool.events()
        await pool.start()
        for i in range(5):
            with contextlib.suppress(JobFailedError):
                await pool.submit_nowait(Job(payload=b"ok" if i % 2 else b"fail"))
        await pool.shutdown()
        seqs = [e.seq async for e in sub]
        assert seqs == list(range(1, len(seqs) + 1))

    async def test_the_snapshot_matches_the_events_up_to_its_seq(self, clock: ManualClock) -> None:
        script = Script()
        pool = make(script, clock, workers=2)
        sub = pool.events()
        await pool.start()
        for i in range(6):
            pool.submit_nowait(Job(payload=[b"ok", b"fail", b"hold"][i % 3], id=f"j{i}"))
        await settle()
        snap = pool.snapshot()
        seen = sub.drain()
        assert seen[-1].seq == snap.seq
        succeeded = sum(isinstance(e, events.JobSucceeded) for e in seen)
        failed = sum(isinstance(e, events.JobFailed) for e in seen)
        started = {e.job_id for e in seen if isinstance(e, events.JobStarted)}
        ended = {e.job_id for e in seen if isinstance(e, events.JobSucceeded | events.JobFailed)}
        assert (snap.stats.succeeded, snap.stats.failed) == (succeeded, failed)
        assert {w.job_id for w in snap.workers if w.job_id} == started - ended
        await finish(pool, clock, script)

    async def test_a_slow_subscriber_never_slows_the_pool_and_is_told_what_it_missed(
        self, clock: ManualClock
    ) -> None:
        pool = make(Script(), clock, workers=2, queue_size=100)
        await pool.start()
        slow = pool.events(maxsize=5)
        handles = [pool.submit_nowait(Job(payload=b"ok")) for _ in range(50)]
        for handle in handles:
            await handle  # the pool ran every job with nobody reading
        got = slow.drain()
        assert [type(e) for e in got[:5]] == [events.JobSubmitted] * 5
        dropped = got[5]
        assert isinstance(dropped, events.EventsDropped)
        snap = pool.snapshot()
        assert dropped.missed == snap.seq - 5
        assert dropped.seq == snap.seq
        assert snap.stats.succeeded == 50
        await finish(pool, clock)

    async def test_a_full_subscriber_gets_events_again_once_it_has_read(
        self, clock: ManualClock
    ) -> None:
        pool = make(Script(), clock, workers=2, queue_size=100)
        await pool.start()
        slow = pool.events(maxsize=3)
        for _ in range(10):
            await pool.submit_nowait(Job(payload=b"ok"))
        first = slow.drain()
        await pool.submit_nowait(Job(payload=b"ok", id="after"))
        second = slow.drain()

        gap = first[-1]
        assert isinstance(gap, events.EventsDropped)
        assert len(first) - 1 + gap.missed == gap.seq
        assert [type(e) for e in second] == [
            events.JobSubmitted,
            events.JobStarted,
            events.JobSucceeded,
        ]
        assert [e.seq for e in second] == [gap.seq + 1, gap.seq + 2, gap.seq + 3]
        assert pool.snapshot().seq == gap.seq + 3
        await finish(pool, clock)

    async def test_iteration_ends_after_the_pool_stops(self, clock: ManualClock) -> None:
        pool = make(Script(), clock)
        await pool.start()
        sub = pool.events()
        await pool.shutdown()
        seen = [e async for e in sub]
        assert isinstance(seen[-1], events.PoolStopped)
        late = pool.events()
        assert [e async for e in late] == []


class BrokenStr(Exception):
    def __str__(self) -> str:
        raise AttributeError("no detail")


class TestEdgeCases:
    """Paths a review found broken once; each test failed before its fix."""

    async def test_an_error_that_cannot_be_printed_still_fails_its_job(
        self, clock: ManualClock
    ) -> None:
        async def handler(job: Job, ctx: JobContext) -> None:
            raise BrokenStr

        pool = make(handler, clock, workers=1)
        await pool.start()
        handle = pool.submit_nowait(Job(id="u"))
        with pytest.raises(
            JobFailedError,
            match=r"^job 'u' failed: BrokenStr: <unprintable BrokenStr: AttributeError>$",
        ):
            await handle
        identity(pool)
        await finish(pool, clock)

    async def test_a_waiter_refused_after_waking_passes_the_room_on(
        self, clock: ManualClock
    ) -> None:
        script = Script()
        pool = make(script, clock, workers=1, queue_size=1)
        await pool.start()
        await pool.pause()
        first = pool.submit_nowait(Job(id="q1", payload=b"hold"))
        taken = asyncio.ensure_future(pool.submit(Job(id="x")))
        other = asyncio.ensure_future(pool.submit(Job(id="y", payload=b"ok")))
        await settle()
        first.cancel()  # room for one: wakes the first waiter...
        await pool.resume()
        pool.submit_nowait(Job(id="x", payload=b"hold"))  # ...whose id is then taken
        with pytest.raises(ValueError, match=r"^job id 'x' is already queued or running$"):
            await taken
        handle = await other
        assert handle.id == "y"
        await finish(pool, clock, script)

    async def test_a_finished_job_is_freed_at_once_not_by_the_collector(
        self, clock: ManualClock
    ) -> None:
        # Record and handle pointed at each other: every job left a cycle
        # that only the collector freed, which doubled its work under load.
        async def handler(job: Job, ctx: JobContext) -> None:
            return None

        pool = make(handler, clock, workers=2)
        await pool.start()
        gc.collect()
        gc.disable()
        try:
            for n in range(50):
                await pool.submit_nowait(Job(id=f"freed-{n}"))
            ours = [
                o
                for o in gc.get_objects()
                if isinstance(o, (JobHandle, JobRecord)) and o.job.id.startswith("freed-")
            ]
            handles = [o for o in ours if isinstance(o, JobHandle)]
            records = [o for o in ours if isinstance(o, JobRecord)]
        finally:
            gc.enable()
        assert handles == []
        assert len(records) <= 2  # each worker's last job, still in its loop's frame
        await finish(pool, clock)

    async def test_the_handle_pool_job_gives_equals_the_one_submit_gave(
        self, clock: ManualClock
    ) -> None:
        script = Script()
        pool = make(script, clock, workers=1)
        await pool.start()
        first = pool.submit_nowait(Job(id="a", payload=b"hold"))
        second = pool.submit_nowait(Job(id="b"))
        found = pool.job("a")
        assert found == first
        assert hash(found) == hash(first)
        assert found != second
        assert found != "a"
        assert {first, second, found} == {first, second}
        assert found is not None
        assert found.cancel()
        with pytest.raises(JobCancelledError):
            await first
        await finish(pool, clock, script)

    async def test_a_handler_that_cancels_its_own_job_keeps_its_worker(
        self, clock: ManualClock
    ) -> None:
        async def handler(job: Job, ctx: JobContext) -> str:
            if job.payload == b"self":
                own = pool.job(job.id)
                assert own is not None
                own.cancel()
            return "done"

        pool = make(handler, clock, workers=1)
        await pool.start()
        with pytest.raises(JobCancelledError):
            await pool.submit_nowait(Job(payload=b"self"))
        assert await pool.submit_nowait(Job(payload=b"ok")) == "done"
        assert pool.stats().workers == 1
        await finish(pool, clock)

    async def test_draining_restarts_a_crashed_worker_so_queued_jobs_run(
        self, clock: ManualClock
    ) -> None:
        pool = make(Script(), clock, workers=1, restart_backoff=0.1)
        await pool.start()
        pool.submit_nowait(Job(payload=b"crash", id="c"))
        waiting = [pool.submit_nowait(Job(payload=b"ok", id=f"ok{i}")) for i in range(3)]
        stopping = asyncio.ensure_future(pool.shutdown(grace=5.0, drain=True))
        await clock.advance(0.1)
        report = await stopping
        assert [h.state for h in waiting] == [JobState.SUCCEEDED] * 3
        assert report.not_started == ()
        assert report.duration == pytest.approx(0.1)

    async def test_retiring_an_idle_worker_is_an_event_and_stops_are_told_before_the_end(
        self, clock: ManualClock
    ) -> None:
        pool = make(Script(), clock, workers=3)
        await pool.start()
        sub = pool.events()
        await pool.resize(1)
        retired = [e.worker_id for e in sub.drain() if isinstance(e, events.WorkerRetireRequested)]
        assert retired == ["w3", "w2"]
        await pool.shutdown()
        seen = sub.drain()
        assert isinstance(seen[-1], events.PoolStopped)
        stopped = {e.worker_id for e in seen if isinstance(e, events.WorkerStopped)}
        assert stopped == {"w1", "w2", "w3"}

    async def test_the_callers_cancel_grace_bounds_a_shutdown_supervision_began(
        self, clock: ManualClock
    ) -> None:
        pool = make(Script(), clock, workers=2, cancel_grace=3.0, max_restarts=0)
        await pool.start()
        stuck = pool.submit_nowait(Job(payload=b"stubborn"))
        await run_started(pool, stuck)
        pool.submit_nowait(Job(payload=b"crash"))
        await settle()
        assert pool.phase is PoolPhase.DRAINING  # supervision gave up and began the shutdown
        stopping = asyncio.ensure_future(pool.shutdown(grace=0.1, cancel_grace=0.1))
        await clock.advance(0.1)
        assert stopping.done()
        assert stopping.result().failed

    async def test_a_successful_retry_clears_the_earlier_error(self, clock: ManualClock) -> None:
        async def flaky(job: Job, ctx: JobContext) -> str:
            if ctx.attempt == 1:
                raise ValueError("first attempt fails")
            return "ok"

        pool = make(flaky, clock, retry=RetryPolicy(max_attempts=2, backoff=0.0, jitter=0.0))
        await pool.start()
        handle = pool.submit_nowait(Job())
        await clock.advance(0.0)
        assert await handle == "ok"
        assert handle.error is None
        await finish(pool, clock)


def announced_before_their_jobs(seen: list[events.PoolEvent]) -> list[str]:
    """Jobs started on a worker whose (re)start the stream had not told yet."""
    announced: set[str] = set()
    problems = []
    for event in seen:
        if isinstance(event, events.WorkerStarted | events.WorkerRestarted | events.WorkerReplaced):
            announced.add(event.worker_id)
        elif isinstance(event, events.WorkerCrashed | events.JobAbandoned):
            announced.discard(event.worker_id)
        elif isinstance(event, events.JobStarted) and event.worker_id not in announced:
            problems.append(f"{event.job_id} started on {event.worker_id} before it was told")
    return problems


class TestTaskFactories:
    """Under ``asyncio.eager_task_factory`` a worker's task runs inside ``create_task``.

    Every test in this directory runs on a default loop and on an eager one;
    these are the cases where eager start once broke the pool.
    """

    async def test_the_loop_is_of_the_kind_asked_for(self, loop_kind: str) -> None:
        factory = asyncio.get_running_loop().get_task_factory()
        if loop_kind == "eager":
            assert factory is asyncio.eager_task_factory  # type: ignore[attr-defined,unused-ignore]
        else:
            assert factory is None

    async def test_new_workers_are_told_before_they_take_queued_jobs(
        self, clock: ManualClock
    ) -> None:
        pool = make(Script(), clock, workers=0)
        sub = pool.events()
        await pool.start()
        handles = [pool.submit_nowait(Job(payload=b"ok")) for _ in range(3)]
        await pool.resize(2)
        assert [await h for h in handles] == [b"ok"] * 3
        await finish(pool, clock)
        assert announced_before_their_jobs(sub.drain()) == []

    async def test_a_restarted_worker_is_told_before_it_takes_a_queued_job(
        self, clock: ManualClock
    ) -> None:
        pool = make(Script(), clock, workers=1, restart_backoff=0.25)
        sub = pool.events()
        await pool.start()
        with contextlib.suppress(JobFailedError):
            await pool.submit_nowait(Job(payload=b"crash"))
        queued = pool.submit_nowait(Job(payload=b"ok"))
        await clock.advance(0.25)
        assert await queued == b"ok"
        await finish(pool, clock)
        assert announced_before_their_jobs(sub.drain()) == []

    async def test_a_replaced_worker_is_told_before_it_takes_a_queued_job(
        self, clock: ManualClock
    ) -> None:
        script = Script()
        pool = make(script, clock, workers=1, cancel_grace=1.0)
        sub = pool.events()
        await pool.start()
        stubborn = pool.submit_nowait(Job(payload=b"stubborn", timeout=1.0))
        queued = pool.submit_nowait(Job(payload=b"ok"))
        await run_started(pool, stubborn)
        await clock.advance(2.0)
        assert await queued == b"ok"
        assert stubborn.state is JobState.ABANDONED
        await finish(pool, clock, script)
        assert announced_before_their_jobs(sub.drain()) == []
