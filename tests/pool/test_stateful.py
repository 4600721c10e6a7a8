"""Random sequences of operations on a real pool, with its invariants checked after every step.

A Hypothesis state machine drives a :class:`~pool.Pool` on a
:class:`~pool.ManualClock` with a scripted coroutine handler (payloads
``ok``, ``fail``, ``hold``, ``stubborn``, ``crash``). After every step it
checks the accounting identity, that counters never go negative or back,
that every handle is in one state and stays in its terminal state, and that
the event stream agrees. Its ``shutdown`` rule checks the bound: the call is
done once the clock has moved ``grace + cancel_grace`` (and a millisecond),
whatever the handlers do, and its report accounts for exactly the jobs that
were live when it began.

Time never passes by itself: the loop only gets turns (``settle``) and the
clock only moves through ``ManualClock.advance``. Each example has an event
loop of its own, closed in ``teardown``; the machine runs once on a default
loop and once on an eager one (where Python has it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pool import (
    Job,
    JobAbandonedError,
    JobCancelledError,
    JobContext,
    JobError,
    JobFailedError,
    JobHandle,
    JobState,
    JobTimeoutError,
    ManualClock,
    Pool,
    PoolClosed,
    PoolError,
    PoolPhase,
    PoolStats,
    QueueFull,
    RetryPolicy,
    ShutdownReport,
    Subscription,
    events,
)
from tests.helpers import Crash, settle
from tests.loops import new_loop

T = TypeVar("T")

EPS: Final = 0.001
"""Clock time allowed past a shutdown's bound: a millisecond."""

ESCALATED_GRACE: Final = 10.0
"""The grace period of a shutdown the pool begins itself when supervision gives up."""

WORKERS: Final = 2
QUEUE_SIZE: Final = 3

PAYLOADS: Final = (b"ok", b"fail", b"hold", b"stubborn", b"crash")
payloads: Final = st.sampled_from((*PAYLOADS, b"hold"))  # held jobs make the states worth seeing
graces: Final = st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0])
cancel_graces: Final = st.sampled_from([0.0, 0.1, 0.5, 1.0])

IDENTITY_TERMS: Final = (
    "rejected",
    "queued",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "abandoned",
)
COUNTERS: Final = ("submitted", *IDENTITY_TERMS, "retried", "restarts")
MONOTONIC: Final = tuple(c for c in COUNTERS if c not in ("queued", "running"))

TERMINAL_COUNTER: Final = {
    JobState.SUCCEEDED: "succeeded",
    JobState.FAILED: "failed",
    JobState.TIMED_OUT: "timed_out",
    JobState.CANCELLED: "cancelled",
    JobState.ABANDONED: "abandoned",
}

TERMINAL_EVENT: Final[dict[type[Any], JobState]] = {
    events.JobSucceeded: JobState.SUCCEEDED,
    events.JobFailed: JobState.FAILED,
    events.JobTimedOut: JobState.TIMED_OUT,
    events.JobCancelled: JobState.CANCELLED,
    events.JobAbandoned: JobState.ABANDONED,
}

RESULT_ERROR: Final[dict[JobState, type[JobError]]] = {
    JobState.FAILED: JobFailedError,
    JobState.TIMED_OUT: JobTimeoutError,
    JobState.CANCELLED: JobCancelledError,
    JobState.ABANDONED: JobAbandonedError,
}

# How each payload may end: ``ok`` returns at once, so it can only succeed or
# be cancelled while queued; only ``stubborn`` ignores a cancellation long
# enough to be abandoned; only ``fail`` and ``crash`` raise.
ALLOWED_ENDS: Final = {
    b"ok": {JobState.SUCCEEDED, JobState.CANCELLED},
    b"fail": {JobState.FAILED, JobState.CANCELLED},
    b"crash": {JobState.FAILED, JobState.CANCELLED},
    b"hold": {JobState.SUCCEEDED, JobState.TIMED_OUT, JobState.CANCELLED},
    b"stubborn": {
        JobState.SUCCEEDED,
        JobState.TIMED_OUT,
        JobState.CANCELLED,
        JobState.ABANDONED,
    },
}


class Gated:
    """A :class:`tests.helpers.Script`-like handler whose ``release`` can be used again.

    ``hold`` and ``stubborn`` jobs wait on the gate that was current when
    they started; :meth:`release` opens it and puts a closed one in its
    place, so jobs started afterwards hold again.

    Payloads:
        ``ok``       return the payload.
        ``fail``     raise ValueError.
        ``hold``     wait until released (cancellable).
        ``stubborn`` wait until released, ignoring every cancellation.
        ``crash``    raise :class:`tests.helpers.Crash`, killing the worker.
    """

    def __init__(self) -> None:
        self.started: list[str] = []
        self._gate = asyncio.Event()

    def release(self) -> None:
        """Let every job held so far return."""
        self._gate.set()
        self._gate = asyncio.Event()

    async def __call__(self, job: Job, ctx: JobContext) -> bytes:
        self.started.append(job.id)
        gate = self._gate
        kind = job.payload
        if kind == b"fail":
            raise ValueError(f"job {job.id} failed on purpose")
        if kind == b"crash":
            raise Crash(f"worker killed by {job.id}")
        if kind == b"hold":
            await gate.wait()
        if kind == b"stubborn":
            while not gate.is_set():
                try:
                    await gate.wait()
                except asyncio.CancelledError:
                    continue  # ignore it, on purpose
        return job.payload


@dataclass
class PendingSubmit:
    """An ``await pool.submit(...)`` that is waiting for room in the queue."""

    task: asyncio.Task[JobHandle]
    payload: bytes
    deadline: float | None


class PoolMachine(RuleBasedStateMachine):
    """Random operations on one pool; the invariants are checked after every step."""

    loop_kind = "default"
    """The kind of event loop each example runs on (see ``tests/loops.py``)."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = new_loop(self.loop_kind)
        self.loop_errors: list[dict[str, Any]] = []
        self.loop.set_exception_handler(lambda _loop, context: self.loop_errors.append(context))
        self.broken = False  # a step failed: teardown only cleans up

        self.clock = ManualClock(start=1000.0)
        self.pool: Pool | None = None
        self.handler: Gated | None = None
        self.sub: Subscription | None = None
        self.max_restarts = 0
        self.cancel_grace = 0.0
        self.last_shutdown = (0.0, 0.0, False, False)

        # The model.
        self.handles: list[JobHandle] = []
        self.payloads: dict[str, bytes] = {}
        self.terminal: dict[str, JobState] = {}
        self.rejected = 0
        self.pending: list[PendingSubmit] = []
        self.previous: PoolStats | None = None
        self.report: ShutdownReport | None = None

        # What the event stream says.
        self.ev_live: set[str] = set()
        self.ev_ended: dict[str, JobState] = {}
        self.ev_started: dict[str, bool] = {}  # JobCancelled.started, by job
        self.ev_cancelling: dict[
            str, tuple[float, str]
        ] = {}  # the last JobCancelRequested's at, reason
        self.ev_live_at_shutdown: set[str] | None = None
        self.ev_stopped = False

    # --- running async code ----------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.broken = True
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._guard():
            return self.loop.run_until_complete(coro)

    @property
    def p(self) -> Pool:
        assert self.pool is not None
        return self.pool

    @property
    def h(self) -> Gated:
        assert self.handler is not None
        return self.handler

    def _accepting(self) -> bool:
        return self.pool is not None and self.pool.phase in (PoolPhase.RUNNING, PoolPhase.PAUSED)

    def _worth_shutting_down(self) -> bool:
        # With nothing live the rule would test little; teardown shuts every
        # pool down with the same checks, so the run goes on instead.
        pool = self.pool
        if pool is None:
            return False
        return bool(self._live()) or bool(self.pending) or pool.phase.is_shutting_down

    def _live(self) -> list[JobHandle]:
        return [h for h in self.handles if not h.state.is_terminal]

    def _adopt(self, handle: JobHandle, payload: bytes) -> None:
        assert handle.job.payload == payload
        assert handle.id not in self.payloads, f"job id {handle.id} accepted twice"
        self.handles.append(handle)
        self.payloads[handle.id] = payload

    def _collect_submits(self) -> None:
        """Account for waiting submits that have finished."""
        still: list[PendingSubmit] = []
        for sub in self.pending:
            if not sub.task.done():
                still.append(sub)
                continue
            exc = sub.task.exception()
            if exc is None:
                self._adopt(sub.task.result(), sub.payload)
            elif isinstance(exc, QueueFull):
                assert sub.deadline is not None, "a submit without a timeout raised QueueFull"
                self.rejected += 1
            elif isinstance(exc, PoolClosed):
                assert self.p.phase.is_shutting_down, f"PoolClosed while {self.p.phase.value}"
            else:
                raise AssertionError(f"submit raised {exc!r}") from exc
        self.pending = still

    async def _must_finish(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        """Run ``coro`` to the end with loop turns only (no clock time)."""
        task = asyncio.ensure_future(coro)
        for _ in range(40):
            if task.done():
                break
            await asyncio.sleep(0)
        if not task.done():
            task.cancel()
            await settle()
            raise AssertionError(f"{what} did not finish without the clock moving")
        return task.result()

    # --- setup --------------------------------------------------------------

    @initialize(
        max_restarts=st.sampled_from([1000, 1000, 0, 1, 3]),
        retry=st.sampled_from([None, RetryPolicy(max_attempts=2, backoff=0.0, jitter=0.0)]),
        job_timeout=st.sampled_from([None, 1.0]),
        cancel_grace=st.sampled_from([0.0, 0.3, 1.0]),
        last_shutdown=st.tuples(graces, cancel_graces, st.booleans(), st.booleans()),
    )
    def start(
        self,
        max_restarts: int,
        retry: RetryPolicy | None,
        job_timeout: float | None,
        cancel_grace: float,
        last_shutdown: tuple[float, float, bool, bool],
    ) -> None:
        """Start a pool; ``last_shutdown`` is how teardown shuts it down if no rule did."""
        self.max_restarts = max_restarts
        self.cancel_grace = cancel_grace
        self.last_shutdown = last_shutdown

        async def go() -> None:
            self.handler = Gated()  # made inside the loop, so its events bind to it
            self.pool = Pool(
                self.handler,
                workers=WORKERS,
                queue_size=QUEUE_SIZE,
                job_timeout=job_timeout,
                cancel_grace=cancel_grace,
                retry=retry,
                max_restarts=max_restarts,
                clock=self.clock,
                seed=0,
            )
            self.sub = self.pool.events(maxsize=1_000_000)
            await self._must_finish(self.pool.start(), "start()")
            await settle()

        self._run(go())
        assert self.p.phase is PoolPhase.RUNNING

    # --- rules --------------------------------------------------------------

    @precondition(lambda self: self._accepting() and len(self.pending) < 3)
    @rule(
        payload=payloads,
        timeout=st.sampled_from([None, 0.0, 0.5, 2.0]),
        job_timeout=st.sampled_from([None, None, 0.5, 2.0]),
    )
    def submit(self, payload: bytes, timeout: float | None, job_timeout: float | None) -> None:
        """``await submit(job, timeout=...)``; when the queue is full it waits as a task."""

        async def go() -> None:
            deadline = None if timeout is None else self.clock.now() + timeout
            job = Job(payload=payload, timeout=job_timeout)
            task = asyncio.ensure_future(self.p.submit(job, timeout=timeout))
            self.pending.append(PendingSubmit(task, payload, deadline))
            await settle()

        self._run(go())

    @precondition(lambda self: self._accepting())
    @rule(payloads=st.lists(payloads, min_size=1, max_size=6))
    def submit_nowait(self, payloads: list[bytes]) -> None:
        """A burst of ``submit_nowait`` calls, without a loop turn between them."""

        async def go() -> None:
            for payload in payloads:
                try:
                    handle = self.p.submit_nowait(Job(payload=payload))
                except QueueFull:
                    self.rejected += 1
                else:
                    self._adopt(handle, payload)
            await settle()

        self._run(go())

    @precondition(lambda self: self._accepting() and bool(self.handles))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        live = self._live()
        # Mostly a live job, now and then any (perhaps one that has ended).
        any_job = not live or data.draw(st.integers(0, 3), label="any job") == 0
        handle = data.draw(st.sampled_from(self.handles if any_job else live), label="handle")

        async def go() -> None:
            before = handle.state
            done = handle.cancel()
            if before.is_terminal:
                assert not done, f"cancel() of a {before.value} job returned True"
                assert handle.state is before
            elif before is JobState.QUEUED:
                assert done, "cancel() of a queued job returned False"
                assert handle.state is JobState.CANCELLED, (
                    f"a queued job is {handle.state.value} right after cancel(), not cancelled"
                )
            await settle()

        self._run(go())

    @precondition(lambda self: self._accepting())
    @rule(workers=st.integers(0, 6))
    def resize(self, workers: int) -> None:
        async def go() -> None:
            await self._must_finish(self.p.resize(workers), f"resize({workers})")
            await settle()
            if self._accepting():  # a crash may have escalated meanwhile
                assert self.p.stats().target_workers == workers

        self._run(go())

    @precondition(lambda self: self.pool is not None and self.pool.phase is PoolPhase.RUNNING)
    @rule()
    def pause(self) -> None:
        async def go() -> None:
            await self._must_finish(self.p.pause(), "pause()")
            assert self.p.phase is PoolPhase.PAUSED
            await settle()

        self._run(go())

    @precondition(lambda self: self.pool is not None and self.pool.phase is PoolPhase.PAUSED)
    @rule()
    def resume(self) -> None:
        async def go() -> None:
            await self._must_finish(self.p.resume(), "resume()")
            assert self.p.phase is PoolPhase.RUNNING
            await settle()

        self._run(go())

    @precondition(lambda self: self.pool is not None and not self.pool.phase.is_final)
    @rule()
    def release(self) -> None:
        async def go() -> None:
            self.h.release()
            await settle()

        self._run(go())

    @precondition(lambda self: self.pool is not None and not self.pool.phase.is_final)
    @rule(
        seconds=st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.5, 1.0, 2.0, 3.0])
        | st.floats(0.0, 3.0, allow_nan=False, allow_infinity=False)
    )
    def advance(self, seconds: float) -> None:
        async def go() -> None:
            await self.clock.advance(seconds)
            await settle()

        self._run(go())

    @precondition(lambda self: self.report is None and self._worth_shutting_down())
    @rule(grace=graces, cancel_grace=cancel_graces, drain=st.booleans(), twice=st.booleans())
    def shutdown(self, grace: float, cancel_grace: float, drain: bool, twice: bool) -> None:
        """Shut down; done within ``grace + cancel_grace``; the report accounts for every job.

        With ``twice`` the call is made again while the first runs (a second
        Ctrl-C): that may only make it end sooner.
        """
        self._run(self._shutdown(grace, cancel_grace, drain, twice))

    async def _shutdown(self, grace: float, cancel_grace: float, drain: bool, twice: bool) -> None:
        pool = self.p
        self._collect_submits()
        requested = not pool.phase.is_shutting_down
        if requested:
            bound = grace + cancel_grace
            live_before = {h.id for h in self._live()}
        else:
            # Supervision gave up and the pool is shutting itself down (grace
            # 10 s, the pool's cancel_grace). A call now skips to the next
            # phase: at most the pool's cancel_grace is left.
            bound = self.cancel_grace
        began = self.clock.now()
        waiting = list(self.pending)
        first = asyncio.ensure_future(pool.shutdown(grace, drain, cancel_grace))
        await settle()
        for sub in waiting:
            assert sub.task.done(), "a waiting submit was not woken when the shutdown began"
            assert isinstance(sub.task.exception(), PoolClosed), (
                f"a submit waiting when the shutdown began ended with {sub.task!r}, not PoolClosed"
            )
        second = None
        if twice:
            second = asyncio.ensure_future(pool.shutdown(grace, drain, cancel_grace))
            await settle()
        await self.clock.advance(bound)
        await self.clock.advance(EPS)
        await settle()  # loop turns only: no clock time passes
        moved = self.clock.now() - began
        assert first.done(), (
            f"shutdown(grace={grace}, cancel_grace={cancel_grace}, drain={drain}) is not done "
            f"{moved:.3f}s after it began (bound {bound:g}s + {EPS}s); pool: {pool!r}, "
            f"live: {[(h.id, self.payloads[h.id], h.state.value) for h in self._live()]}"
        )
        report = first.result()
        if second is not None:
            assert second.done(), "the second shutdown() call is not done"
            assert second.result() is report, "the second shutdown() returned another report"
        self.report = report
        self._collect_submits()
        self._drain_events()

        assert pool.phase.is_final, f"pool is {pool.phase.value} after its shutdown returned"
        assert pool.phase is (PoolPhase.FAILED if report.failed else PoolPhase.STOPPED)
        assert report.failed == (report.reason is not None)
        if requested:
            assert not report.failed, f"a requested shutdown ended failed: {report.reason}"
            assert report.duration <= bound + EPS, (
                f"report.duration {report.duration} > grace + cancel_grace = {bound}"
            )
        else:
            assert report.failed
            assert report.duration <= ESCALATED_GRACE + self.cancel_grace + EPS, (
                f"escalated shutdown took {report.duration}s"
            )
        self._check_after_stop(report)
        if requested:
            at_start = self.ev_live_at_shutdown or set()
            assert live_before == at_start, (
                "jobs live before shutdown() differ from those the event stream shows "
                f"live at ShutdownStarted: {sorted(live_before ^ at_start)}"
            )

    def _check_after_stop(self, report: ShutdownReport) -> None:
        """Every job has ended, and the report accounts for those live when the shutdown began."""
        pool = self.p
        stats = pool.stats()
        assert stats.queued == 0, f"stats.queued is {stats.queued} after the shutdown"
        assert stats.running == 0, f"stats.running is {stats.running} after the shutdown"
        stuck = [(h.id, h.state.value) for h in self.handles if not h.state.is_terminal]
        assert not stuck, f"handles not terminal after the shutdown: {stuck}"
        assert not self.pending, f"{len(self.pending)} submit call(s) still waiting after shutdown"

        assert self.ev_live_at_shutdown is not None, "no ShutdownStarted event"
        live = self.ev_live_at_shutdown
        lists = {
            "finished": report.finished,
            "cancelled": report.cancelled,
            "not_started": report.not_started,
            "abandoned": report.abandoned,
        }
        seen: list[str] = [job_id for ids in lists.values() for job_id in ids]
        assert len(seen) == len(set(seen)), f"a job is in two lists of the report: {lists}"
        assert set(seen) == live, (
            f"the report's jobs differ from those live when the shutdown began: "
            f"missing {sorted(live - set(seen))}, extra {sorted(set(seen) - live)}"
        )
        by_id = {h.id: h for h in self.handles}
        expected = {
            job_id
            for job_id in live
            if by_id[job_id].state in (JobState.CANCELLED, JobState.ABANDONED)
        }
        unfinished = set(report.cancelled) | set(report.not_started) | set(report.abandoned)
        assert unfinished == expected, (
            f"report.cancelled + not_started + abandoned = {sorted(unfinished)}, but the jobs "
            f"live at the start that ended cancelled or abandoned are {sorted(expected)}"
        )
        assert [j.id for j in report.unfinished] == [
            *report.cancelled,
            *report.not_started,
            *report.abandoned,
        ]
        for job_id in report.abandoned:
            assert by_id[job_id].state is JobState.ABANDONED, job_id
        for job_id in (*report.cancelled, *report.not_started):
            assert by_id[job_id].state is JobState.CANCELLED, job_id
        for job_id in report.cancelled:
            assert self.ev_started[job_id], f"{job_id} is in report.cancelled but never ran"
        for job_id in report.not_started:
            assert not self.ev_started[job_id], f"{job_id} is in report.not_started but was running"
        for job_id in report.finished:
            assert by_id[job_id].state in (
                JobState.SUCCEEDED,
                JobState.FAILED,
                JobState.TIMED_OUT,
            ), (job_id, by_id[job_id].state)

    @precondition(lambda self: self.report is not None)
    @rule(grace=st.sampled_from([0.0, 5.0]), drain=st.booleans())
    def shutdown_again(self, grace: float, drain: bool) -> None:
        async def go() -> None:
            report = await self._must_finish(self.p.shutdown(grace, drain), "shutdown() again")
            assert report is self.report, "shutdown() again returned another report"
            stopped = await self._must_finish(self.p.wait_stopped(), "wait_stopped()")
            assert stopped is self.report

        self._run(go())

    @precondition(lambda self: self.report is not None)
    @rule(payload=payloads)
    def closed_after_stop(self, payload: bytes) -> None:
        async def go() -> None:
            pool = self.p
            calls: list[Callable[[], Coroutine[Any, Any, object]]] = [
                lambda: pool.submit(Job(payload=payload)),
                lambda: pool.submit(Job(payload=payload), timeout=0.0),
                lambda: pool.resize(1),
            ]
            for call in calls:
                try:
                    await self._must_finish(call(), "a call on a stopped pool")
                except PoolClosed:
                    pass
                else:
                    raise AssertionError("a call on a stopped pool did not raise PoolClosed")
            try:
                pool.submit_nowait(Job(payload=payload))
            except PoolClosed:
                pass
            else:
                raise AssertionError("submit_nowait on a stopped pool did not raise PoolClosed")
            for control in (pool.pause, pool.resume):
                try:
                    await self._must_finish(control(), "pause/resume on a stopped pool")
                except PoolError:
                    pass
                else:
                    raise AssertionError("pause/resume on a stopped pool did not raise")

        self._run(go())

    # --- invariants ---------------------------------------------------------

    def _drain_events(self) -> None:
        assert self.sub is not None
        for event in self.sub.drain():
            assert not isinstance(event, events.EventsDropped), "the test's subscriber lost events"
            if isinstance(event, events.JobSubmitted):
                assert event.job_id not in self.ev_live, f"{event.job_id} submitted twice"
                assert event.job_id not in self.ev_ended, f"{event.job_id} submitted again"
                self.ev_live.add(event.job_id)
            elif isinstance(event, events.ShutdownStarted):
                assert self.ev_live_at_shutdown is None, "two ShutdownStarted events"
                self.ev_live_at_shutdown = set(self.ev_live)
            elif isinstance(event, events.JobCancelRequested):
                self.ev_cancelling[event.job_id] = (event.at, event.reason)
            elif isinstance(event, events.PoolStopped):
                self.ev_stopped = True
            else:
                state = TERMINAL_EVENT.get(type(event))
                if state is not None:
                    job_id: str = getattr(event, "job_id")  # noqa: B009 - any of five events
                    assert job_id in self.ev_live, (
                        f"{type(event).__name__} for {job_id}, which is not live "
                        f"(ended before as {self.ev_ended.get(job_id)})"
                    )
                    self.ev_live.discard(job_id)
                    self.ev_ended[job_id] = state
                    if isinstance(event, events.JobCancelled):
                        self.ev_started[job_id] = event.started

    def _check_identity(self, stats: PoolStats) -> None:
        values = {name: getattr(stats, name) for name in COUNTERS}
        total = sum(values[name] for name in IDENTITY_TERMS)
        terms = " + ".join(f"{name}={values[name]}" for name in IDENTITY_TERMS)
        assert values["submitted"] == total, (
            f"identity broken: submitted={values['submitted']} != {terms} (= {total})"
        )
        assert stats.balanced(), "PoolStats.balanced() is False"
        negative = {name: v for name, v in values.items() if v < 0}
        assert not negative, f"negative counters: {negative}"
        previous = self.previous
        if previous is not None:
            went_back = {
                name: (getattr(previous, name), values[name])
                for name in MONOTONIC
                if values[name] < getattr(previous, name)
            }
            assert not went_back, f"counters went back (before, now): {went_back}"
        self.previous = stats

    def _check_handles(self, stats: PoolStats) -> None:
        pool = self.p
        counts = dict.fromkeys(JobState, 0)
        for handle in self.handles:
            state = handle.state
            assert isinstance(state, JobState)
            counts[state] += 1
            assert handle.done() == state.is_terminal
            payload = self.payloads[handle.id]
            if state.is_terminal:
                assert pool.job(handle.id) is None, f"{handle.id} is {state.value} yet still live"
                was = self.terminal.setdefault(handle.id, state)
                assert state is was, (
                    f"{handle.id} ({payload!r}) went from {was.value} to {state.value}"
                )
                assert state in ALLOWED_ENDS[payload], f"a {payload!r} job ended {state.value}"
                assert handle.ended_at is not None
                if state is JobState.SUCCEEDED:
                    assert handle.result() == payload
                else:
                    try:
                        handle.result()
                    except RESULT_ERROR[state]:
                        pass
                    else:
                        raise AssertionError(f"result() of a {state.value} job did not raise")
            else:
                assert pool.job(handle.id) == handle, f"{handle.id} is {state.value} but not live"
        ev_state = {h.id: h.state for h in self.handles if h.id in self.ev_ended}
        assert ev_state == {k: v for k, v in self.ev_ended.items() if k in ev_state}
        assert set(self.ev_ended) == set(self.terminal), (
            "jobs with a terminal event differ from jobs in a terminal state: "
            f"{sorted(set(self.ev_ended) ^ set(self.terminal))}"
        )

        assert stats.rejected == self.rejected, (
            f"stats.rejected={stats.rejected}, but {self.rejected} QueueFull were raised"
        )
        assert stats.submitted == len(self.handles) + self.rejected, (
            f"stats.submitted={stats.submitted}, but {len(self.handles)} jobs were accepted "
            f"and {self.rejected} rejected"
        )
        mismatched = {
            counter: (counts[state], getattr(stats, counter))
            for state, counter in TERMINAL_COUNTER.items()
            if counts[state] != getattr(stats, counter)
        }
        assert not mismatched, (
            f"handles per terminal state != counters (handles, pool): {mismatched}"
        )
        assert counts[JobState.QUEUED] == stats.queued, (counts[JobState.QUEUED], stats.queued)
        assert counts[JobState.RUNNING] == stats.running, (counts[JobState.RUNNING], stats.running)

    @invariant()
    def check_all(self) -> None:
        if self.pool is None:
            return
        with self._guard():
            self._check()

    def _check(self) -> None:
        self._collect_submits()
        self._drain_events()
        stats = self.p.stats()
        self._check_identity(stats)
        self._check_handles(stats)
        now = self.clock.now()
        for sub in self.pending:
            assert sub.deadline is None or now < sub.deadline + EPS, (
                f"a submit with a deadline at {sub.deadline} still waits at {now}"
            )
        for handle in self.handles:
            if handle.state is not JobState.RUNNING or handle.id not in self.ev_cancelling:
                continue
            at, reason = self.ev_cancelling[handle.id]
            started = handle.started_at
            if reason != "shutdown" and started is not None and started <= at:
                assert now < at + self.cancel_grace + EPS, (
                    f"{handle.id} ({self.payloads[handle.id]!r}) still runs {now - at:g}s after "
                    f"its cancellation ({reason}); cancel_grace is {self.cancel_grace:g}s"
                )
        if self.p.phase.is_shutting_down:
            assert not self.pending, "submits still wait while the pool shuts down"
        if self.p.phase.is_final:
            assert stats.queued == 0, f"stats.queued={stats.queued} in {self.p.phase.value}"
            assert stats.running == 0, f"stats.running={stats.running} in {self.p.phase.value}"
            assert not self.pending
            assert self.ev_stopped, "the pool is stopped, but no PoolStopped event"
        assert not self.loop_errors, f"errors on the loop: {self.loop_errors}"

    # --- teardown -----------------------------------------------------------

    def teardown(self) -> None:
        problems: list[str] = []
        failure: AssertionError | None = None
        try:
            if self.pool is not None:
                failure = self.loop.run_until_complete(self._wind_down(problems))
        finally:
            self._close_loop(problems)
        if not self.broken:
            if failure is not None:
                raise failure
            assert not problems, "; ".join(problems)

    async def _wind_down(self, problems: list[str]) -> AssertionError | None:
        """Shut the pool down (checked as the ``shutdown`` rule is), then let every job return."""
        pool = self.p
        failure = None
        if self.report is None and not self.broken:
            try:
                await self._shutdown(*self.last_shutdown)
            except AssertionError as exc:
                failure = exc
        if self.report is None or failure is not None or self.broken:
            # Something went wrong already: only make sure that everything stops.
            self.h.release()
            await self.clock.advance(60.0)
            task = asyncio.ensure_future(pool.shutdown(0.0, False, 0.0))
            await self.clock.advance(60.0)
            await settle()
            if not task.done():
                problems.append(f"teardown: the pool did not stop: {pool!r}")
            self.h.release()
            await settle()
            return failure
        # Held and abandoned jobs now return: nothing the pool has told may change.
        before = pool.stats()
        self._check()
        self.h.release()
        await settle()
        await self.clock.advance(1.0)
        try:
            self._check()
        except AssertionError as exc:
            problems.append(f"after the handlers returned: {exc}")
        after = pool.stats()
        for name in COUNTERS:
            if getattr(before, name) != getattr(after, name):
                problems.append(
                    f"{name} changed after the stop: {getattr(before, name)} -> "
                    f"{getattr(after, name)}"
                )
        return None

    def _close_loop(self, problems: list[str]) -> None:
        loop = self.loop
        try:
            if self.sub is not None:
                self.sub.close()
            left = [t for t in asyncio.all_tasks(loop) if not t.done()]
            if left:
                problems.append(f"tasks left after the stop: {[t.get_name() for t in left]}")
                for task in left:
                    task.cancel()

                loop.run_until_complete(settle())
                for task in left:
                    if task.done() and not task.cancelled():
                        task.exception()  # retrieved: its fate is reported above
            loop.run_until_complete(loop.shutdown_asyncgens())
            if self.loop_errors:
                problems.append(f"errors on the loop: {self.loop_errors}")
        finally:
            loop.close()


SETTINGS = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)


class EagerPoolMachine(PoolMachine):
    """The same machine on loops whose tasks start eagerly."""

    loop_kind = "eager"


MACHINES: dict[str, type[PoolMachine]] = {"default": PoolMachine, "eager": EagerPoolMachine}


def test_random_operations_keep_every_promise(loop_kind: str) -> None:
    """The state machine, on a default loop and (where Python has it) an eager one."""
    run_state_machine_as_test(MACHINES[loop_kind], settings=SETTINGS)
