"""The process runner: one child process per worker, killable jobs, crashes as crashes.

These tests start real processes, so they run in real time (the default
clock), with short deadlines, and wait on the pool's events and handles.
The handlers are module-level functions of this module: the children
import it by name (as ``tests.pool.test_process``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from pool import (
    Job,
    JobCancelledError,
    JobContext,
    JobFailedError,
    JobState,
    JobTimeoutError,
    Pool,
    PoolPhase,
    RetryPolicy,
    Subscription,
    children,
    events,
)
from pool.process import JobInterrupted, ProcessRunner, check_picklable
from tests.helpers import next_event, outlives

WAIT = 10.0
"""A bound on any one wait: far above what each needs, so a hang fails instead of stalling."""

# --- handlers, run in the children ------------------------------------------

_grandchildren: list[subprocess.Popen[bytes]] = []


def echo(job: Job, ctx: JobContext) -> bytes:
    return job.payload


def whoami(job: Job, ctx: JobContext) -> int:
    return os.getpid()


def context_of(job: Job, ctx: JobContext) -> dict[str, Any]:
    return {
        "id": job.id,
        "payload": job.payload,
        "meta": dict(job.meta),
        "timeout": job.timeout,
        "worker_id": ctx.worker_id,
        "attempt": ctx.attempt,
        "deadline": ctx.deadline,
        "cancelled": ctx.cancelled,
        "main_thread": threading.current_thread() is threading.main_thread(),
    }


class Boom(Exception):
    """An error of the handler's own."""


class Unloadable(Exception):
    """Pickles, but cannot be rebuilt from its pickle (its __init__ takes two arguments)."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a} and {b}")


def fail(job: Job, ctx: JobContext) -> None:
    raise Boom(f"job {job.id} failed on purpose")


def fail_unloadable(job: Job, ctx: JobContext) -> None:
    raise Unloadable("this", "that")


def bad_result(job: Job, ctx: JobContext) -> object:
    return threading.Lock()


def report_progress(job: Job, ctx: JobContext) -> bytes:
    ctx.progress(0.25, "a quarter")
    ctx.progress(1, "done")
    return b"ok"


def bad_progress(job: Job, ctx: JobContext) -> None:
    ctx.progress(1.5, "too far")


def chatty(job: Job, ctx: JobContext) -> bytes:
    print("to stdout")
    print("to stderr", file=sys.stderr)
    return b"ok"


def flood(job: Job, ctx: JobContext) -> bytes:
    for i in range(5000):
        print(f"line {i}")
    return b"ok"


def spin(job: Job, ctx: JobContext) -> None:
    """CPU-bound forever; cleans up when interrupted."""
    try:
        ctx.progress(0.0, "spinning")
        while True:
            pass
    finally:
        print(f"cleaned up, cancelled={ctx.cancelled}")


def spin_stubborn(job: Job, ctx: JobContext) -> None:
    """CPU-bound forever, swallowing its interruption."""
    while True:
        try:
            ctx.progress(0.0, "spinning")
            while True:
                pass
        except BaseException:
            print("ignoring the interruption")


def sleep_until_cancelled(job: Job, ctx: JobContext) -> None:
    """Blocked in a sleep until its interruption comes."""
    try:
        ctx.progress(0.0, "sleeping")
        time.sleep(60)
    except JobInterrupted as exc:
        print(f"{exc}, cancelled={ctx.cancelled}")
        raise


def exit3(job: Job, ctx: JobContext) -> None:
    print("about to exit")
    os._exit(3)


def kill_self(job: Job, ctx: JobContext) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def exit_on_first_attempt(job: Job, ctx: JobContext) -> int:
    if ctx.attempt == 1:
        os._exit(3)
    return ctx.attempt


def start_grandchild(job: Job, ctx: JobContext) -> tuple[int, int]:
    """Leave a long sleeper behind, in a session of its own if the payload says so."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        start_new_session=job.payload == b"escapee",
    )
    _grandchildren.append(proc)  # kept: no "still running" warning when it is collected
    return os.getpid(), proc.pid


def spin_with_grandchild(job: Job, ctx: JobContext) -> None:
    """Start a long sleeper, tell both pids (as progress), and spin: a job that still runs."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    _grandchildren.append(proc)
    ctx.progress(0.0, f"{os.getpid()} {proc.pid}")
    while True:
        pass


ACTIONS: dict[bytes, Callable[[Job, JobContext], object]] = {
    b"pid": whoami,
    b"spin": spin,
    b"stubborn": spin_stubborn,
    b"sleep": sleep_until_cancelled,
    b"exit": exit3,
    b"kill": kill_self,
    b"exit-once": exit_on_first_attempt,
    b"grandchild": start_grandchild,
    b"escapee": start_grandchild,
    b"spin-with-grandchild": spin_with_grandchild,
}


def act(job: Job, ctx: JobContext) -> object:
    """Do what the payload names (see ACTIONS); echo any other payload."""
    return ACTIONS.get(job.payload, echo)(job, ctx)


# A lambda has no name to be imported by, even at module level.
module_lambda: Callable[[Job, JobContext], object] = lambda job, ctx: None  # noqa: E731


def in_main_handler(job: Job, ctx: JobContext) -> None:
    """Copied into a function that claims to live in ``__main__``."""


async def async_handler(job: Job, ctx: JobContext) -> None:
    """Not a process handler."""


def raise_exit(job: Job, ctx: JobContext) -> None:
    """Raises what the payload names: SystemExit or KeyboardInterrupt."""
    if job.payload == b"exit":
        raise SystemExit(3)
    if job.payload == b"interrupt":
        raise KeyboardInterrupt
    ctx.progress(1.0, str(os.getpid()))


def forgets_to_await(job: Job, ctx: JobContext) -> object:
    """Returns the coroutine of an async function instead of running it."""
    return async_handler(job, ctx)


# --- helpers ----------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after WAIT seconds.

    For what no event announces: that the kernel has removed a process,
    after the pool has let go of it.
    """
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


async def gone(*pids: int) -> None:
    """Wait until none of ``pids`` runs and none is a recorded process group."""
    await eventually(
        lambda: not any(alive(p) for p in pids) and not set(pids) & children.live_groups(),
        f"processes {pids} gone",
    )


@contextlib.asynccontextmanager
async def process_pool(handler: Callable[..., object], **kwargs: Any) -> AsyncIterator[Pool]:
    """A started process pool, shut down (briefly) at the end whatever happens."""
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("cancel_grace", 5.0)
    pool = Pool(handler, runner="process", **kwargs)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.shutdown(grace=1.0, cancel_grace=0.5)


async def running(sub: Subscription, job_id: str) -> None:
    """Wait until the handler of ``job_id`` has reported that it runs (as progress)."""
    await next_event(sub, events.JobProgressed, lambda e: e.job_id == job_id)


async def pid_of_worker(pool: Pool) -> str:
    """The pid of the process of a one-worker pool of ``raise_exit``, as its progress tells."""
    sub = pool.events()
    await pool.submit(Job(payload=b"pid"))
    return (await next_event(sub, events.JobProgressed)).message


async def pid_of(pool: Pool) -> int:
    """The pid of the process that serves a one-worker pool (a job asks it)."""
    handle = await pool.submit(Job(payload=b"pid", timeout=WAIT))
    pid = await handle
    assert isinstance(pid, int)
    return pid


@pytest_asyncio.fixture(autouse=True)
async def _no_process_left() -> AsyncIterator[None]:
    # Every group a test starts must be reaped and forgotten before its
    # loop ends (the runner releases its descriptors on the loop).
    before = children.live_groups()
    yield
    try:
        await eventually(lambda: not children.live_groups() - before, "every child reaped")
    finally:
        for pgid in children.live_groups() - before:
            children.signal_group(pgid, signal.SIGKILL)


# --- tests ------------------------------------------------------------------


class TestCheckPicklable:
    def test_module_level_function_passes(self) -> None:
        check_picklable(echo)

    def test_lambda_is_refused(self) -> None:
        with pytest.raises(
            TypeError,
            match=r"^a process handler must be importable by name, got tests\.pool\.test_process\.<lambda>: define it with def at module level$",
        ):
            check_picklable(module_lambda)

    def test_nested_function_is_refused(self) -> None:
        def inner(job: Job, ctx: JobContext) -> None:
            return None

        with pytest.raises(
            TypeError,
            match=r"^a process handler must be importable by name, got tests\.pool\.test_process\.TestCheckPicklable\.test_nested_function_is_refused\.<locals>\.inner: define it with def at module level$",
        ):
            check_picklable(inner)

    def test_function_in_main_is_refused(self) -> None:
        fn = types.FunctionType(in_main_handler.__code__, {}, "handler")
        fn.__module__ = "__main__"
        fn.__qualname__ = "handler"
        with pytest.raises(
            TypeError,
            match=r"^a process handler must be importable by name, got __main__\.handler: move it out of __main__ into a module$",
        ):
            check_picklable(fn)

    def test_pool_refuses_a_lambda(self) -> None:
        with pytest.raises(TypeError, match=r"^a process handler must be importable by name, "):
            Pool(lambda job, ctx: None, runner="process")

    def test_pool_refuses_an_async_handler(self) -> None:
        with pytest.raises(
            ValueError, match=r"^runner 'process' needs a plain def handler, got an async one$"
        ):
            Pool(async_handler, runner="process")


class TestResults:
    async def test_a_handler_that_returns_a_coroutine_fails_and_says_why(self) -> None:
        async with process_pool(forgets_to_await) as pool:
            handle = await pool.submit(Job(id="x"))
            with pytest.raises(
                JobFailedError,
                match=r"^job 'x' failed: TypeError: the handler returned a coroutine "
                r"\(async_handler\) without awaiting it, so its work never ran: "
                r"make the handler async def, or await it there$",
            ):
                await handle

    @pytest.mark.parametrize(
        ("payload", "text"), [(b"exit", "SystemExit: 3"), (b"interrupt", "KeyboardInterrupt")]
    )
    async def test_systemexit_or_keyboardinterrupt_fails_the_job_and_the_process_serves_on(
        self, payload: bytes, text: str
    ) -> None:
        async with process_pool(raise_exit) as pool:
            pid = await pid_of_worker(pool)
            handle = await pool.submit(Job(id="x", payload=payload))
            with pytest.raises(JobFailedError, match=rf"^job 'x' failed: {text}$"):
                await handle
            assert await pid_of_worker(pool) == pid
            assert pool.stats().restarts == 0

    async def test_result_comes_back(self) -> None:
        async with process_pool(echo) as pool:
            handle = await pool.submit(Job(payload=b"hello"))
            assert await handle == b"hello"
            assert handle.state is JobState.SUCCEEDED

    async def test_handler_sees_its_job_and_context(self) -> None:
        async with process_pool(context_of, job_timeout=30.0) as pool:
            handle = await pool.submit(Job(payload=b"p", id="j1", meta={"k": "v"}))
            seen = await handle
        assert handle.started_at is not None
        assert seen == {
            "id": "j1",
            "payload": b"p",
            "meta": {"k": "v"},
            "timeout": None,
            "worker_id": "w1",
            "attempt": 1,
            "deadline": pytest.approx(handle.started_at + 30.0),
            "cancelled": False,
            "main_thread": True,
        }

    async def test_start_returns_once_every_child_has_loaded_the_handler(self) -> None:
        # Loading this module in a child takes far longer than the job's
        # deadline: that time is start()'s, never the first job's.
        async with process_pool(echo, workers=2) as pool:
            handles = [await pool.submit(Job(payload=b"x", timeout=0.3)) for _ in range(2)]
            assert [await handle for handle in handles] == [b"x", b"x"]
            assert pool.stats().timed_out == 0

    async def test_a_worker_keeps_its_process(self) -> None:
        async with process_pool(whoami) as pool:
            first = await (await pool.submit(Job()))
            second = await (await pool.submit(Job()))
        assert first == second != os.getpid()
        await gone(first)

    async def test_error_fails_the_job_with_the_childs_traceback(self) -> None:
        async with process_pool(fail) as pool:
            handle = await pool.submit(Job(id="bad"))
            with pytest.raises(
                JobFailedError, match=r"^job 'bad' failed: Boom: job bad failed on purpose$"
            ):
                await handle
            err = handle.error
            assert err is not None
            assert err.type == "tests.pool.test_process.Boom"
            assert err.message == "job bad failed on purpose"
            # The child's own frames, as it formatted them.
            assert 'in fail\n    raise Boom(f"job {job.id} failed on purpose")' in err.traceback
            assert "pool.process._RemoteTraceback" in err.traceback
            # The same type, and the worker goes on.
            with pytest.raises(JobFailedError) as failed:
                handle.result()
            assert isinstance(failed.value.__cause__, Boom)
            assert pool.snapshot().stats.restarts == 0

    async def test_error_that_does_not_unpickle_becomes_a_runtime_error(self) -> None:
        async with process_pool(fail_unloadable) as pool:
            handle = await pool.submit(Job())
            with pytest.raises(JobFailedError):
                await handle
        err = handle.error
        assert err is not None
        assert err.type == "RuntimeError"
        assert err.message == "tests.pool.test_process.Unloadable: this and that"
        assert 'raise Unloadable("this", "that")' in err.traceback

    async def test_result_that_does_not_pickle_fails_the_job(self) -> None:
        async with process_pool(bad_result) as pool:
            handle = await pool.submit(Job(id="lock"))
            with pytest.raises(JobFailedError):
                await handle
        err = handle.error
        assert err is not None
        assert err.type == "TypeError"
        assert err.message == (
            "the result of job 'lock' cannot be sent back from its process: "
            "cannot pickle '_thread.lock' object"
        )

    async def test_progress_reaches_the_events(self) -> None:
        async with process_pool(report_progress) as pool:
            sub = pool.events()
            handle = await pool.submit(Job(id="p"))
            first = await next_event(sub, events.JobProgressed)
            second = await next_event(sub, events.JobProgressed)
            assert await handle == b"ok"
        assert (first.job_id, first.worker_id, first.fraction, first.message) == (
            "p",
            "w1",
            0.25,
            "a quarter",
        )
        assert (second.fraction, second.message) == (1.0, "done")

    async def test_bad_progress_fails_in_the_child(self) -> None:
        async with process_pool(bad_progress) as pool:
            handle = await pool.submit(Job())
            with pytest.raises(JobFailedError):
                await handle
        assert handle.error is not None
        assert handle.error.short() == "ValueError: fraction must be between 0.0 and 1.0, got 1.5"

    async def test_printed_output_is_published_before_the_outcome(self) -> None:
        async with process_pool(chatty) as pool:
            sub = pool.events()
            handle = await pool.submit(Job(id="c"))
            output = await next_event(sub, events.JobOutputCaptured)
            assert await handle == b"ok"
            succeeded = await next_event(sub, events.JobSucceeded)
        assert output.seq < succeeded.seq
        assert (output.job_id, output.worker_id, output.attempt) == ("c", "w1", 1)
        assert output.exit_code is None
        assert output.path is None
        assert output.output == "to stdout\nto stderr"

    async def test_each_job_publishes_only_its_own_output(self) -> None:
        async with process_pool(chatty) as pool:
            sub = pool.events()
            await (await pool.submit(Job(id="one")))
            await (await pool.submit(Job(id="two")))
            first = await next_event(sub, events.JobOutputCaptured)
            second = await next_event(sub, events.JobOutputCaptured)
        assert (first.job_id, first.output) == ("one", "to stdout\nto stderr")
        assert (second.job_id, second.output) == ("two", "to stdout\nto stderr")

    async def test_output_is_bounded_to_its_last_lines(self) -> None:
        async with process_pool(flood) as pool:
            sub = pool.events()
            await (await pool.submit(Job()))
            output = await next_event(sub, events.JobOutputCaptured)
        lines = output.output.splitlines()
        assert len(lines) == 100
        assert (lines[0], lines[-1]) == ("line 4900", "line 4999")

    async def test_a_job_without_output_publishes_none(self) -> None:
        async with process_pool(echo) as pool:
            sub = pool.events()
            await (await pool.submit(Job()))
            await pool.shutdown()
        assert not [e for e in sub.drain() if isinstance(e, events.JobOutputCaptured)]


class TestCancellation:
    async def test_cpu_bound_job_is_timed_out_and_its_process_serves_on(self) -> None:
        async with process_pool(act, job_timeout=0.3) as pool:
            sub = pool.events()
            pid = await pid_of(pool)
            handle = await pool.submit(Job(id="spin", payload=b"spin"))
            with pytest.raises(JobTimeoutError):
                await handle
            # Interrupted inside the loop: its finally block ran, and said so.
            output = await next_event(sub, events.JobOutputCaptured)
            assert (output.job_id, output.exit_code) == ("spin", None)
            assert output.output == "cleaned up, cancelled=True"
            # The same process takes the next job, which succeeds.
            assert await pid_of(pool) == pid
            assert await (await pool.submit(Job(payload=b"next"))) == b"next"
            stats = pool.stats()
        assert (stats.timed_out, stats.succeeded, stats.restarts) == (1, 3, 0)
        kinds = {type(e) for e in sub.drain()}
        assert not kinds & {events.WorkerCrashed, events.WorkerReplaced, events.JobAbandoned}

    async def test_user_cancel_interrupts_a_blocking_call(self) -> None:
        async with process_pool(act) as pool:
            sub = pool.events()
            pid = await pid_of(pool)
            handle = await pool.submit(Job(id="s", payload=b"sleep"))
            await running(sub, "s")
            began = time.monotonic()
            assert handle.cancel()
            with pytest.raises(JobCancelledError):
                await handle
            assert time.monotonic() - began < 5.0  # not the 60 s sleep
            output = await next_event(sub, events.JobOutputCaptured)
            assert output.output == "job cancelled, cancelled=True"
            assert await pid_of(pool) == pid

    async def test_cancel_before_the_child_begins_waits_for_it(self) -> None:
        # The child is still loading when the job is cancelled: the SIGTERM
        # waits until it has begun the job, and does not kill it.
        async with process_pool(act) as pool:
            sub = pool.events()
            handle = await pool.submit(Job(id="early", payload=b"sleep"))
            await next_event(sub, events.JobStarted)
            assert handle.cancel()
            with pytest.raises(JobCancelledError):
                await handle
            assert await (await pool.submit(Job(payload=b"next"))) == b"next"
            assert pool.stats().restarts == 0

    async def test_stubborn_job_is_abandoned_and_its_process_killed(self) -> None:
        async with process_pool(act, cancel_grace=0.3) as pool:
            sub = pool.events()
            pid = await pid_of(pool)
            handle = await pool.submit(Job(id="stubborn", payload=b"stubborn", timeout=0.2))
            abandoned = await next_event(sub, events.JobAbandoned)
            assert abandoned.job_id == "stubborn"
            assert handle.state is JobState.ABANDONED
            await next_event(sub, events.WorkerReplaced)
            # Once the killed process has been reaped, its exit is told.
            output = await next_event(
                sub, events.JobOutputCaptured, lambda e: e.exit_code is not None
            )
            assert (output.job_id, output.exit_code) == ("stubborn", -signal.SIGKILL)
            assert "ignoring the interruption" in output.output
            assert not alive(pid)
            assert pid not in children.live_groups()
            # The slot's new process serves.
            new_pid = await pid_of(pool)
            assert new_pid != pid
            assert pool.stats().abandoned == 1


class TestCrashes:
    async def test_exit_is_a_crash_and_the_worker_restarts(self) -> None:
        async with process_pool(act, restart_backoff=0.0) as pool:
            sub = pool.events()
            pid = await pid_of(pool)
            handle = await pool.submit(Job(id="x", payload=b"exit"))
            with pytest.raises(
                JobFailedError,
                match=r"^job 'x' failed: WorkerDied: worker w1 crashed: process pool-w1 died: exit code 3$",
            ):
                await handle
            assert handle.error is not None
            assert handle.error.type == "pool.runners.WorkerDied"
            output = await next_event(sub, events.JobOutputCaptured)
            assert (output.job_id, output.exit_code, output.output) == ("x", 3, "about to exit")
            crashed = await next_event(sub, events.WorkerCrashed)
            assert (crashed.worker_id, crashed.job_id) == ("w1", "x")
            assert crashed.error.short() == "WorkerDied: process pool-w1 died: exit code 3"
            restarted = await next_event(sub, events.WorkerRestarted)
            assert (restarted.worker_id, restarted.restarts) == ("w1", 1)
            assert not alive(pid)
            assert await (await pool.submit(Job(payload=b"next"))) == b"next"

    async def test_killed_by_a_signal(self) -> None:
        async with process_pool(act, restart_backoff=0.0) as pool:
            handle = await pool.submit(Job(id="k", payload=b"kill"))
            with pytest.raises(
                JobFailedError,
                match=r"^job 'k' failed: WorkerDied: worker w1 crashed: process pool-w1 died: killed by SIGKILL$",
            ):
                await handle

    async def test_a_crashed_job_is_retried(self) -> None:
        retry = RetryPolicy(max_attempts=2, backoff=0.0, jitter=0.0)
        async with process_pool(act, retry=retry, restart_backoff=0.0) as pool:
            sub = pool.events()
            handle = await pool.submit(Job(payload=b"exit-once"))
            assert await handle == 2
            scheduled = await next_event(sub, events.JobRetryScheduled)
            assert scheduled.error.type == "pool.runners.WorkerDied"
            assert pool.stats().restarts == 1

    async def test_crashes_past_max_restarts_fail_the_pool(self) -> None:
        async with process_pool(act, max_restarts=1, restart_backoff=0.0) as pool:
            first = await pool.submit(Job(payload=b"exit"))
            with pytest.raises(JobFailedError):
                await first
            second = await pool.submit(Job(payload=b"exit"))
            with pytest.raises(JobFailedError):
                await second
            report = await pool.wait_stopped()
        assert pool.phase is PoolPhase.FAILED
        assert report.failed
        assert report.reason == (
            "worker w1 crashed 2 times within 5s (max_restarts=1): "
            "WorkerDied: process pool-w1 died: exit code 3"
        )

    async def test_a_job_for_a_process_that_died_idle_goes_to_the_next_one(self) -> None:
        # The job never began: it is not failed but handed to the restarted worker.
        async with process_pool(act, restart_backoff=0.0) as pool:
            pid = await pid_of(pool)
            os.kill(pid, signal.SIGKILL)
            await gone(pid)
            sub = pool.events()
            handle = await pool.submit(Job(id="late", payload=b"next"))
            assert await handle == b"next"
            assert handle.attempts == 1
            retry = await next_event(sub, events.JobRetryScheduled)
            assert retry.error.message == (
                "process pool-w1 died: killed by SIGKILL before the job began"
            )
            stats = pool.stats()
            assert (stats.restarts, stats.failed, stats.succeeded) == (1, 0, 2)

    async def test_a_handler_the_child_cannot_import_is_a_crash(self) -> None:
        module = types.ModuleType("wpool_nowhere")
        fn = types.FunctionType(echo.__code__, {}, "handler")
        fn.__module__ = module.__name__
        fn.__qualname__ = "handler"
        module.handler = fn  # type: ignore[attr-defined]
        sys.modules[module.__name__] = module
        try:
            async with process_pool(fn) as pool:
                # The worker dies before it is ever ready: the pool cannot start,
                # and gives up at once, whatever restarts it allows.
                report = await pool.wait_stopped()
            assert report.reason == (
                "worker w1 could not start: process pool-w1 could not load its handler: "
                "ModuleNotFoundError: No module named 'wpool_nowhere'"
            )
            assert pool.phase is PoolPhase.FAILED
            assert pool.stats().restarts == 0
        finally:
            del sys.modules[module.__name__]

    async def test_a_process_that_cannot_start_is_a_crash(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def no_more(*args: object, **kwargs: object) -> None:
            raise OSError(errno.EMFILE, "Too many open files")

        monkeypatch.setattr(subprocess, "Popen", no_more)
        async with process_pool(echo, max_restarts=0) as pool:
            report = await pool.wait_stopped()
        assert pool.phase is PoolPhase.FAILED
        assert report.reason == (
            "worker w1 could not start: process pool-w1 could not start: "
            "[Errno 24] Too many open files"
        )

    async def test_a_child_that_hangs_loading_the_handler_is_given_up_on(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(ProcessRunner, "load_timeout", 0.0)
        async with process_pool(echo, max_restarts=0) as pool:
            report = await pool.wait_stopped()
        assert report.reason is not None
        assert report.reason.endswith("did not load its handler within 0s")

    @pytest.mark.parametrize(
        ("line", "load_timeout", "why"),
        [
            ("time.sleep(600)", 0.5, "did not load its handler within 0.5s"),
            # Time enough to start Python on a busy machine: the exit is what is told.
            ("sys.exit(3)", 30.0, "could not load its handler: SystemExit: 3"),
        ],
    )
    async def test_a_module_that_hangs_or_exits_on_import_in_the_child_fails_the_start(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        line: str,
        load_timeout: float,
        why: str,
    ) -> None:
        # Each load takes longer than the restart window: without the rule
        # that a never-ready worker fails the start, it would restart forever.
        name = f"wpool_load_{abs(hash(line))}"
        (tmp_path / f"{name}.py").write_text(
            f"import sys, time\nif sys.argv[0] == '-c':\n    {line}\n"
            "def handler(job, ctx):\n    return b''\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setattr(ProcessRunner, "load_timeout", load_timeout)
        module = importlib.import_module(name)
        pool = Pool(module.handler, runner="process", workers=2, restart_window=0.2)
        began = time.monotonic()
        await pool.start()
        report = await pool.wait_stopped()
        assert time.monotonic() - began < load_timeout + WAIT
        assert report.failed
        assert report.reason is not None
        assert re.fullmatch(
            rf"worker (w[12]) could not start: process pool-\1 {re.escape(why)}", report.reason
        )
        assert pool.stats().restarts == 0

    async def test_shutdown_does_not_wait_for_a_child_still_loading(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A handler whose module hangs on import in the child (never here).
        (tmp_path / "wpool_hangs_on_load.py").write_text(
            "import sys, time\n"
            "if sys.argv[0] == '-c':\n"
            "    time.sleep(600)\n"
            "def handler(job, ctx):\n"
            "    return b''\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        module = importlib.import_module("wpool_hangs_on_load")
        pool = Pool(module.handler, runner="process", workers=1)
        starting = asyncio.ensure_future(pool.start())
        await asyncio.sleep(0)  # start() has spawned the worker; its child loads forever
        report = await pool.shutdown(grace=0.0, cancel_grace=0.0)
        await starting
        assert report.failed is False
        assert pool.phase is PoolPhase.STOPPED


class TestShutdown:
    async def test_no_process_outlives_the_pool(self) -> None:
        pool = Pool(act, runner="process", workers=3)
        await pool.start()
        handles = [await pool.submit(Job(payload=b"pid")) for _ in range(2)]
        handles.append(await pool.submit(Job(payload=b"grandchild")))
        pids = [await h for h in handles[:2]]
        pid, grandchild = await handles[2]
        assert len({*pids, pid}) == 3  # one per worker
        assert {*pids, pid} <= children.live_groups()
        assert not alive(grandchild)  # ended with its job
        await pool.shutdown()
        await gone(*pids, pid)

    @pytest.mark.parametrize("payload", [b"grandchild", b"escapee"])
    async def test_no_process_outlives_its_job(self, payload: bytes) -> None:
        # Popen(start_new_session=True) leaves the worker's process group: the
        # job's key in its environment finds it all the same.
        async with process_pool(act) as pool:
            handle = await pool.submit(Job(payload=payload))
            worker, grandchild = await handle
            assert not outlives(grandchild, within=0.0)
            assert alive(worker)

    async def test_shutdown_with_a_hung_job_is_bounded(self) -> None:
        pool = Pool(act, runner="process", workers=1)
        await pool.start()
        sub = pool.events()
        pid = await pid_of(pool)
        handle = await pool.submit(Job(id="hung", payload=b"stubborn"))
        await running(sub, "hung")
        began = time.monotonic()
        report = await pool.shutdown(grace=0.2, cancel_grace=0.2)
        assert time.monotonic() - began < 0.4 + 0.5
        assert report.abandoned == ("hung",)
        assert handle.state is JobState.ABANDONED
        await gone(pid)

    async def test_shutdown_interrupts_a_cpu_bound_job(self) -> None:
        pool = Pool(act, runner="process", workers=1)
        await pool.start()
        sub = pool.events()
        pid = await pid_of(pool)
        await pool.submit(Job(id="spin", payload=b"spin"))
        await running(sub, "spin")
        report = await pool.shutdown(grace=0.1, cancel_grace=5.0)
        assert report.cancelled == ("spin",)
        assert report.duration < 5.0
        await gone(pid)


class TestRunner:
    async def test_stop_ends_an_idle_child(self) -> None:
        runner = ProcessRunner(echo, "solo")
        runner.start()
        pid = runner.pid
        assert pid is not None
        assert pid in children.live_groups()
        runner.stop()
        await asyncio.wait_for(runner.wait_exited(), WAIT)
        assert not alive(pid)
        assert pid not in children.live_groups()
        assert repr(runner) == f"<ProcessRunner solo pid={pid} [dead]>"


ROOT = Path(__file__).resolve().parents[2]

_PROGRAM = """
import asyncio
import sys
from pool import Job, Pool, events
from tests.pool.test_process import act

async def main():
    pool = Pool(act, runner="process", workers=1)
    await pool.start()
    sub = pool.events()
    await pool.submit(Job(id="spin", payload=b"spin-with-grandchild"))
    async for event in sub:
        if isinstance(event, events.JobProgressed):
            break
    print(event.message, flush=True)
    {end}

asyncio.run(main())
"""


async def run_program(end: str) -> tuple[asyncio.subprocess.Process, int, int]:
    """Start a program whose pool runs a job that started a process; the pids of both."""
    program = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _PROGRAM.format(end=end),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert program.stdout is not None
    line = await asyncio.wait_for(program.stdout.readline(), WAIT)
    pid, grandchild = map(int, line.split())
    assert alive(pid)
    assert alive(grandchild)
    return program, pid, grandchild


class TestProgramExit:
    async def test_a_program_that_ends_without_shutdown_leaves_no_process(self) -> None:
        # asyncio.run cancels the worker tasks; the runners stop their
        # children, and what would remain is killed at interpreter exit.
        program, pid, grandchild = await run_program(end="sys.stdin.readline()")
        _, stderr = await asyncio.wait_for(program.communicate(b"end\n"), WAIT)
        assert (program.returncode, stderr) == (0, b"")
        await gone(pid, grandchild)

    async def test_a_killed_program_leaves_no_process(self) -> None:
        # No atexit here: each child sees its channel close and kills its group.
        program, pid, grandchild = await run_program(end="await asyncio.Event().wait()")
        program.kill()
        await asyncio.wait_for(program.communicate(), WAIT)
        assert program.returncode == -signal.SIGKILL
        await gone(pid, grandchild)
