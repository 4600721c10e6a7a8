"""The supervisor: worker slots, their spawning, crashes, restarts, resizing and retiring.

A job's exception is not a crash: a crash is a worker whose loop dies (its
thread or process died). The supervisor restarts a crashed slot after a
backoff that doubles with each crash in ``restart_window``; one crash more
than ``max_restarts`` in the window means the failure is systemic, and it
asks the pool to shut down ``failed``. A resize grows at once and shrinks
restarting slots first, then idle ones, then busy ones, which finish their
job and exit.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable
from typing import Any

from . import events as ev
from .bus import EventBus
from .clock import Clock, Timer
from .config import DEFAULT_GRACE, Settings
from .job import JobRecord
from .ledger import crash_error
from .phase import PoolPhase
from .queue import JobQueue
from .runners import CoroutineRunner, Runner, ThreadRunner, WorkerDied
from .worker import Begin, End, Worker, WorkerInfo, WorkerState

__all__ = ("Supervisor",)

_GONE = (WorkerState.STOPPED, WorkerState.CRASHED)


class Supervisor:
    """Every worker slot of a pool, by id (``w1``, ``w2``, ...), and what becomes of them."""

    __slots__ = (
        "_begin",
        "_bus",
        "_clock",
        "_crashes",
        "_end",
        "_give_up",
        "_loop",
        "_lose_job",
        "_next_id",
        "_phase",
        "_queue",
        "_restart_timers",
        "_restarts",
        "_retiring",
        "_settings",
        "_slots",
        "_target",
    )

    def __init__(
        self,
        settings: Settings,
        bus: EventBus,
        queue: JobQueue,
        *,
        begin: Begin,
        end: End,
        lose_job: Callable[[Worker, JobRecord, BaseException | None], None],
        give_up: Callable[[float, str], None],
        phase: Callable[[], PoolPhase],
    ) -> None:
        self._settings = settings
        self._bus = bus
        self._clock: Clock = settings.clock
        self._queue = queue
        self._begin = begin
        self._end = end
        self._lose_job = lose_job
        self._give_up = give_up
        self._phase = phase
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: dict[str, Worker] = {}
        self._next_id = 1
        self._target = settings.workers
        self._retiring = 0
        self._restarts = 0
        self._crashes: deque[float] = deque()
        self._restart_timers: dict[str, Timer] = {}

    # --- reading --------------------------------------------------------------

    @property
    def target(self) -> int:
        """The size the pool is to have."""
        return self._target

    @property
    def retiring(self) -> int:
        """Busy workers that exit after their job."""
        return self._retiring

    @property
    def restarts(self) -> int:
        """Crash restarts so far."""
        return self._restarts

    def __len__(self) -> int:
        return len(self._slots)

    def workers(self) -> list[Worker]:
        """Every slot's current worker."""
        return list(self._slots.values())

    def live_count(self) -> int:
        """Slots that are neither stopped nor crashed for good."""
        return sum(1 for w in self._slots.values() if w.state not in _GONE)

    def infos(self) -> tuple[WorkerInfo, ...]:
        """Every slot as a frozen record, in order of id."""
        workers = sorted(self._slots.values(), key=lambda w: (len(w.id), w.id))
        return tuple(w.info() for w in workers)

    # --- starting and resizing --------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> list[Worker]:
        """Start ``target`` workers on ``loop`` (see :meth:`wait_ready`)."""
        self._loop = loop
        return [self._spawn() for _ in range(self._target)]

    async def wait_ready(self, workers: list[Worker]) -> None:
        """Wait until each of ``workers`` is ready for a job (or gone)."""
        pending = [w.ready for w in workers if not w.ready.done()]
        if pending:
            await asyncio.wait(pending)

    def set_target(self, target: int) -> None:
        """Change the size the pool is to have, and tell it."""
        previous, self._target = self._target, target
        self._bus.emit_named(ev.PoolResized, self._clock.now(), target=target, previous=previous)

    async def resize(self, target: int) -> None:
        """Set the target and grow (returning once the new workers are ready) or shrink."""
        self.set_target(target)
        staying = len(self._slots) - self._retiring
        if target > staying:
            await self.wait_ready([self._spawn() for _ in range(target - staying)])
        elif target < staying:
            self._shrink(staying - target)

    def _shrink(self, count: int) -> None:
        slots = [w for w in self._slots.values() if not w.retiring]
        restarting = [w for w in slots if w.state is WorkerState.RESTARTING]
        idle = [w for w in slots if w.state is WorkerState.IDLE]
        busy = [w for w in slots if w.state is WorkerState.BUSY]
        for worker in (restarting + idle[::-1] + busy[::-1])[:count]:
            if worker.state is WorkerState.RESTARTING:
                timer = self._restart_timers.pop(worker.id, None)
                if timer is not None:
                    timer.cancel()
                self._drop_slot(worker)
                self._bus.emit_named(ev.WorkerStopped, self._clock.now(), worker_id=worker.id)
                continue
            worker.retiring = True
            self._retiring += 1
            self._queue.dismiss(worker)  # waiting for a job: it exits at once
            self._bus.emit_named(ev.WorkerRetireRequested, self._clock.now(), worker_id=worker.id)

    # --- a worker's life ----------------------------------------------------------

    def _make_runner(self, worker_id: str) -> Runner:
        name = f"{self._settings.name}-{worker_id}"
        handler: Any = self._settings.handler
        kind = self._settings.kind
        if kind == "async":
            return CoroutineRunner(handler)
        if kind == "thread":
            return ThreadRunner(handler, name)
        if kind == "process":
            from .process import ProcessRunner  # multiprocessing loads only when used

            return ProcessRunner(handler, name)
        runner: Runner = handler.make_runner(name)
        return runner

    def _spawn(
        self,
        worker_id: str | None = None,
        previous: Worker | None = None,
        announce: Callable[[Worker], object] | None = None,
    ) -> Worker:
        """Start a worker, in a new slot or in place of ``previous``.

        ``announce`` (by default: emit ``WorkerStarted`` for a new slot) runs
        once the worker exists and before its task is created: under an eager
        task factory the task runs its first steps, and may start a job,
        inside ``create_task``, so whatever tells of the worker comes first.
        """
        loop = self._loop
        assert loop is not None
        if worker_id is None:
            worker_id = f"w{self._next_id}"
            self._next_id += 1
        worker = Worker(worker_id, self._make_runner(worker_id), loop.create_future())
        if previous is not None:
            worker.restarts = previous.restarts
            worker.jobs_done = previous.jobs_done
            worker.jobs_failed = previous.jobs_failed
        self._slots[worker_id] = worker
        if announce is not None:
            announce(worker)
        elif previous is None:
            self._bus.emit_named(ev.WorkerStarted, self._clock.now(), worker_id=worker_id)
        worker.runner.start()
        task = loop.create_task(
            worker.run(self._queue.take, self._begin, self._end),
            name=f"{self._settings.name}-{worker_id}",
        )
        worker.task = task  # already set by the task itself if it started eagerly
        task.add_done_callback(functools.partial(self._exited, worker))
        return worker

    def replace(self, worker: Worker, job_id: str) -> None:
        """``worker``'s job was abandoned: a fresh worker takes its slot (unless winding down)."""
        if self._slots.get(worker.id) is not worker:
            return
        if worker.retiring or self._queue.stopped or self._winding_down():
            self._retire_slot(worker)
            return
        self._spawn(
            worker.id,
            previous=worker,
            announce=lambda _new: self._bus.emit_named(
                ev.WorkerReplaced, self._clock.now(), worker_id=worker.id, job_id=job_id
            ),
        )

    def _exited(self, worker: Worker, task: asyncio.Task[None]) -> None:
        """Done callback of every worker task: a normal exit, a cancellation or a crash."""
        never_ready = not worker.ready.done()
        if never_ready:
            worker.ready.set_result(None)
        exc = None if task.cancelled() else task.exception()
        worker.runner.stop()
        if worker.detached or self._slots.get(worker.id) is not worker:
            return  # replaced after its job was abandoned: its fate is already told
        record = worker.job
        if task.cancelled():
            # Cancelled from outside (the loop is going away): not a crash.
            if record is not None:
                self._lose_job(worker, record, None)
            worker.stop()
            self._drop_slot(worker)
            self._bus.emit_named(ev.WorkerStopped, self._clock.now(), worker_id=worker.id)
            return
        if exc is None:
            self._retire_slot(worker)
            return
        self._crash(worker, record, exc, never_ready=never_ready)

    def _crash(
        self, worker: Worker, record: JobRecord | None, exc: BaseException, *, never_ready: bool
    ) -> None:
        now = self._clock.now()
        info = crash_error(exc)
        if record is not None:
            self._lose_job(worker, record, exc)
        job_id = None if record is None else record.job.id
        if worker.retiring or self._winding_down() or self._queue.stopped:
            self._tell_crash(worker, job_id, exc, None)
            self._retire_slot(worker)
            return
        if never_ready:
            # It died before it could take a job (its process could not load
            # the handler, or start at all): the next one would too, and a
            # hang at load time is too slow for the restart window to notice.
            worker.give_up()
            self._tell_crash(worker, None, exc, None)
            what = str(exc) if isinstance(exc, WorkerDied) else info.short()
            self._give_up(DEFAULT_GRACE, f"worker {worker.id} could not start: {what}")
            return
        crashes = self._crashes
        settings = self._settings
        while crashes and crashes[0] <= now - settings.restart_window:
            crashes.popleft()
        if len(crashes) >= settings.max_restarts:
            worker.give_up()
            self._tell_crash(worker, job_id, exc, None)
            self._give_up(
                settings.grace,
                f"worker {worker.id} crashed {len(crashes) + 1} times within "
                f"{settings.restart_window:g}s (max_restarts={settings.max_restarts}): "
                f"{info.short()}",
            )
            return
        delay = min(settings.restart_backoff * 2.0 ** len(crashes), 5.0)
        crashes.append(now)
        worker.wait_restart()
        self._tell_crash(worker, job_id, exc, delay)
        self._restart_timers[worker.id] = self._clock.call_later(
            delay, functools.partial(self._restart, worker)
        )

    def _tell_crash(
        self, worker: Worker, job_id: str | None, exc: BaseException, restart_in: float | None
    ) -> None:
        self._bus.emit_named(
            ev.WorkerCrashed,
            self._clock.now(),
            worker_id=worker.id,
            job_id=job_id,
            error=crash_error(exc),
            restart_in=restart_in,
        )

    def _restart(self, worker: Worker) -> None:
        self._restart_timers.pop(worker.id, None)
        if self._slots.get(worker.id) is not worker:
            return  # retired by a resize while it waited
        if self._winding_down() or self._queue.stopped:
            worker.stop()
            self._bus.emit_named(ev.WorkerStopped, self._clock.now(), worker_id=worker.id)
            return
        self._spawn(worker.id, previous=worker, announce=self._announce_restart)

    def _announce_restart(self, new: Worker) -> None:
        new.restarts += 1
        self._restarts += 1
        self._bus.emit_named(
            ev.WorkerRestarted, self._clock.now(), worker_id=new.id, restarts=new.restarts
        )

    def _winding_down(self) -> bool:
        # Past the drain: no new worker would get a job.
        phase = self._phase()
        return phase.is_shutting_down and phase is not PoolPhase.DRAINING

    def _retire_slot(self, worker: Worker) -> None:
        """A worker has exited for good: drop a retired slot, or mark it stopped."""
        if self._queue.stopped or self._phase().is_shutting_down:
            if worker.state is not WorkerState.CRASHED:
                worker.stop()
            if worker.retiring:
                self._retiring -= 1
                worker.retiring = False
            self._bus.emit_named(ev.WorkerStopped, self._clock.now(), worker_id=worker.id)
            return
        self._drop_slot(worker)
        self._bus.emit_named(ev.WorkerStopped, self._clock.now(), worker_id=worker.id)

    def _drop_slot(self, worker: Worker) -> None:
        if self._slots.get(worker.id) is worker:
            del self._slots[worker.id]
        if worker.retiring:
            self._retiring -= 1
            worker.retiring = False
        self._queue.forget(worker)

    # --- stopping -----------------------------------------------------------------

    async def stop_all(self) -> None:
        """Stop every worker (none runs a job now) and wait until each has exited."""
        self._queue.stop()
        for timer in self._restart_timers.values():
            timer.cancel()
        self._restart_timers.clear()
        tasks = []
        for worker in list(self._slots.values()):
            if worker.state is WorkerState.RESTARTING:
                worker.stop()
                self._bus.emit_named(ev.WorkerStopped, self._clock.now(), worker_id=worker.id)
            elif worker.task is not None and worker.live and not worker.detached:
                if not worker.ready.done():
                    # Still starting (a child loading the handler): it holds no
                    # job, and must not hold the shutdown either.
                    worker.task.cancel()
                tasks.append(worker.task)
        if tasks:
            # Every one of them is idle (no job is running now), so each exits
            # at its next step.
            await asyncio.wait(tasks)
