"""How a handler runs: as a coroutine on the loop, or in a thread the pool owns.

Other kinds (a child process per worker, a shell command per job) implement
the same small :class:`Runner` protocol, and a handler object that makes its
own runners (a :class:`RunnerFactory`) can stand in for a handler function.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import Any, Protocol, runtime_checkable

from .job import Job, JobContext

__all__ = (
    "CoroutineRunner",
    "Runner",
    "RunnerFactory",
    "ThreadRunner",
    "WorkerDied",
    "check_not_coroutine",
)

AsyncHandler = Callable[[Job, JobContext], Awaitable[object]]
SyncHandler = Callable[[Job, JobContext], object]


class WorkerDied(BaseException):
    """Raised in a worker when what runs its jobs died (not when a job raised).

    It derives from BaseException so that no ``except Exception`` in the job
    path mistakes it for a job's error. The cause is its ``__cause__``.
    ``job_began`` is False when the job it held had not begun (the process
    was already dead, or died before it took the job): the pool then queues
    the job again, as no attempt was made.
    """

    def __init__(self, message: str, *, job_began: bool = True) -> None:
        super().__init__(message)
        self.job_began = job_began


class Runner(Protocol):
    """What a worker uses to run one job at a time."""

    cancels_task: bool
    """Whether cancelling a job means cancelling the worker's task (else only ``ctx``)."""

    def start(self) -> None:
        """Get ready to run jobs (start a thread, a process...); never blocks."""

    async def wait_ready(self) -> None:
        """Return once :meth:`start`'s work is done and a job can begin at once."""

    def run(self, job: Job, ctx: JobContext) -> Awaitable[object]:
        """Run one job: awaited, it returns the job's result, or raises its error.

        An ``async def run`` is the usual way to write it; a runner that only
        waits for a future may return that future (one coroutine less a job).
        """

    def cancel(self) -> None:
        """The job in progress was cancelled (``ctx.cancelled`` is already true).

        Called only when ``cancels_task`` is false: a runner whose work lives
        outside the loop passes the request on (a process gets SIGTERM).
        """

    def abandon(self) -> None:
        """Give up on the job in progress: :meth:`run` stops waiting for it.

        A runner that can (a process's) kills what still runs the job.
        """

    def stop(self) -> None:
        """Release what :meth:`start` took; never blocks."""


@runtime_checkable
class RunnerFactory(Protocol):
    """A handler object that makes one :class:`Runner` per worker itself.

    Passed to :class:`~pool.Pool` in place of a handler function, as
    :class:`~pool.commands.ShellCommands` is.
    """

    def make_runner(self, name: str) -> Runner:
        """A new runner for the worker called ``name`` (the pool starts it)."""


class CoroutineRunner:
    """Awaits an ``async def`` handler in the worker's own task."""

    __slots__ = ("fn",)
    cancels_task = True

    def __init__(self, fn: AsyncHandler) -> None:
        self.fn = fn

    def start(self) -> None:
        """Nothing to start: the worker's task runs the handler."""

    async def wait_ready(self) -> None:
        """Ready at once."""

    async def run(self, job: Job, ctx: JobContext) -> object:
        """Await the handler."""
        return await self.fn(job, ctx)

    def cancel(self) -> None:
        """Never called: the pool cancels the worker's task."""

    def abandon(self) -> None:
        """Nothing to do: the worker's task is left to the handler that holds it."""

    def stop(self) -> None:
        """Nothing to release."""


class _Abandoned(Exception):
    """The job's thread was given up on; its result will be ignored."""


_STOP = None


class ThreadRunner:
    """Runs a plain ``def`` handler in a daemon thread of its own.

    One thread per worker, fed through a queue: the thread is the worker's
    hands. A daemon thread never keeps the process from exiting, so a job
    that ignores ``ctx.cancelled`` can be abandoned without holding shutdown.
    A handler that raises something that is not an ``Exception`` (such as
    ``SystemExit``) kills the thread: that is a crash, reported as
    :class:`WorkerDied`.
    """

    __slots__ = ("_fn", "_inbox", "_name", "_pending", "_thread")
    cancels_task = False

    def __init__(self, fn: SyncHandler, name: str) -> None:
        self._fn = fn
        self._name = name
        self._inbox: queue.SimpleQueue[tuple[Job, JobContext, asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._pending: asyncio.Future[Any] | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    async def wait_ready(self) -> None:
        """Ready at once: the thread takes its first job from its queue."""

    def run(self, job: Job, ctx: JobContext) -> asyncio.Future[Any]:
        """Hand the job to the thread; the future its outcome will be set on."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # Kept until the next job (abandon() skips a done future), as the
        # worker's loop keeps the last job's context until then.
        self._pending = fut
        self._inbox.put((job, ctx, fut))
        return fut

    def cancel(self) -> None:
        """Nothing to do: the handler sees ``ctx.cancelled`` and should return."""

    def abandon(self) -> None:
        """Stop waiting for the thread; it exits once its handler returns."""
        fut = self._pending
        if fut is not None and not fut.done():
            fut.set_exception(_Abandoned())
        self._inbox.put(_STOP)

    def stop(self) -> None:
        """Ask the thread to exit after any job it holds."""
        self._inbox.put(_STOP)

    def _main(self) -> None:
        fn = self._fn
        while True:
            item = self._inbox.get()
            if item is None:
                return
            job, ctx, fut = item
            loop = fut.get_loop()
            try:
                result = fn(job, ctx)
                if isinstance(result, CoroutineType):  # the check, without a call per job
                    check_not_coroutine(result)
            except Exception as exc:  # the job's error, handed to the worker
                _post(loop, fut, None, exc)
            except BaseException as exc:
                # The handler killed its thread (SystemExit, KeyboardInterrupt...):
                # a crash for the supervisor, so the thread ends here.
                died = WorkerDied(f"thread {self._name} died: {type(exc).__name__}")
                died.__cause__ = exc
                _post(loop, fut, None, died)
                return
            else:
                _post(loop, fut, result, None)


def check_not_coroutine(result: object) -> object:
    """``result``, unless a plain ``def`` handler returned a coroutine it never awaited.

    Raises:
        TypeError: ``result`` is a coroutine (closed here, so that Python
            does not warn about it later): its work never ran.
    """
    if inspect.iscoroutine(result):
        result.close()
        raise TypeError(
            f"the handler returned a coroutine ({getattr(result, '__qualname__', '?')}) "
            "without awaiting it, "
            "so its work never ran: make the handler async def, or await it there"
        )
    return result


def _post(
    loop: asyncio.AbstractEventLoop,
    fut: asyncio.Future[Any],
    result: object,
    exc: BaseException | None,
) -> None:
    try:
        loop.call_soon_threadsafe(_resolve, fut, result, exc)
    except RuntimeError:
        # The loop has closed: nobody is left to take the outcome.
        return


def _resolve(fut: asyncio.Future[Any], result: object, exc: BaseException | None) -> None:
    if fut.done():  # abandoned, or the worker was cancelled
        return
    if exc is None:
        fut.set_result(result)
    else:
        fut.set_exception(exc)
