"""The process runner: each worker owns a child process that runs its jobs.

``Pool(fn, runner="process")`` gives every worker a Python interpreter of
its own (``sys.executable`` with the parent's ``sys.path``), started in a new
session so that it and everything it starts form one process group. The
handler is sent to it pickled by reference: it must be importable by name
(see :func:`check_picklable`).

A process is what lets a job really be stopped. Cancelling a job sends
SIGTERM to the group; in the child that raises :class:`JobInterrupted`
inside the handler (a pure Python loop stops, ``finally`` blocks run), and
the child lives on for the next job. What still runs ``cancel_grace`` later
is abandoned, and abandoning SIGKILLs the group. A child that dies under a
job (``os._exit``, a signal, the OOM killer) is a crash for the supervisor:
:meth:`ProcessRunner.run` raises :class:`~pool.runners.WorkerDied`.

No process outlives the program, whatever the way out:

- each group is recorded in :mod:`pool.children` (killed at exit) until its
  leader has been reaped, by a daemon thread per child, so the loop never
  blocks and no zombie is left;
- the child kills its whole group as soon as its channel to the parent
  closes: the parent stopped it, or died;
- when the leader has exited, the parent SIGKILLs the group, so nothing the
  handler started survives it; a stopped child that has not gone within a
  second is killed too.

Parent and child talk over a socketpair, in frames of a 4-byte length and a
pickled tuple of plain values; user objects (results, errors) travel inside
as pickled bytes of their own, so that one that does not load fails its job
and not the channel. The child's stdout and stderr go to an unlinked
temporary file, emptied before each job: its tail is the job's output.
POSIX only.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
import types
from collections.abc import Callable
from typing import IO, Any, Final

from . import children
from .commands import OutputTail, environment_text, exit_description
from .job import Job, JobContext, check_progress
from .runners import SyncHandler, WorkerDied, _Abandoned, check_not_coroutine

__all__ = ("JobInterrupted", "ProcessRunner", "check_picklable")

TAIL_LINES: Final = 100
"""How many of the last lines a job printed are published."""

TAIL_BYTES: Final = 16 * 1024
"""How much of the end of a job's output is read for its tail."""

STOP_TIMEOUT: Final = 1.0
"""Seconds a stopped child has to exit before it is killed."""

_HEADER: Final = 4
_CHUNK: Final = 65536

# The child runs ``python -u -c _BOOT <fd> <sys.path...>``: the path comes
# first, so that this package and the handler's module import as they do in
# the parent; -u, so that what the handler prints is in the output file at
# once (an os._exit would lose a buffer).
_BOOT: Final = (
    "import sys; sys.path[:] = sys.argv[2:]; "
    f"from {__name__} import _child_main; _child_main(int(sys.argv[1]))"
)

_Message = tuple[Any, ...]
_Error = tuple[bytes | None, str, str, str]
"""An exception as sent: its pickle (None if it has none), type name, message, traceback."""


class JobInterrupted(BaseException):
    """Raised inside a process handler when its job is cancelled (SIGTERM reached the child).

    A BaseException, so that an ``except Exception`` in the handler lets it
    through and the job stops; ``finally`` blocks and context managers run.
    It is raised once per job: a handler that swallows it goes on until the
    pool abandons the job and kills the process.
    """


class _RemoteTraceback(Exception):
    """The child's formatted traceback, chained as the ``__cause__`` of the error it raised."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


class _Interrupted(Exception):
    """The child stopped the job on SIGTERM (the pool classifies it by its cancel reason)."""


# --- the handler ------------------------------------------------------------


class _InMain(Exception):
    def __init__(self, obj: object) -> None:
        super().__init__(obj)
        self.obj = obj


class _MainChecker(pickle.Pickler):
    """A pickler that refuses functions and classes of ``__main__``.

    Pickle stores them by reference and would succeed here, but the child's
    ``__main__`` is not this program's script: the child could not load them.
    """

    def reducer_override(self, obj: Any) -> Any:
        if (
            isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType)
            and getattr(obj, "__module__", None) == "__main__"
        ):
            raise _InMain(obj)
        return NotImplemented


def check_picklable(fn: object) -> None:
    """Raise a clear error unless ``fn`` can be sent to a child process by name.

    Functions and classes are pickled by reference (module and qualified
    name) and imported again in the child, so lambdas, nested functions and
    anything defined in ``__main__`` cannot be handlers of a process pool.
    A callable object is pickled by value and must pickle.

    Raises:
        TypeError: ``fn`` cannot be sent; the message says what to do.
    """
    try:
        _MainChecker(io.BytesIO(), pickle.HIGHEST_PROTOCOL).dump(fn)
    except _InMain as exc:
        raise TypeError(
            f"a process handler must be importable by name, got {_describe_object(exc.obj)}: "
            "move it out of __main__ into a module"
        ) from None
    except Exception as exc:
        raise TypeError(
            f"a process handler must be importable by name, got {_describe_object(fn)}: "
            "define it with def at module level"
        ) from exc


def _describe_object(obj: object) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(name, str):
        return f"{module}.{name}"
    return repr(obj)


# --- the parent's side ------------------------------------------------------


class ProcessRunner:
    """Runs a worker's jobs in a child process of its own, one at a time.

    The child starts with :meth:`start` and serves job after job; the first
    job waits for it to load the handler (its deadline runs meanwhile). It
    is replaced only when it dies or its job is abandoned: the pool then
    makes a new runner.

    Inside the child the handler gets a context with ``job``, ``worker_id``,
    ``attempt``, ``deadline`` (the pool clock's time; with the default clock
    that is ``time.monotonic()`` in the child too), ``cancelled`` and
    ``progress(fraction, message)``. Its result and its exception come back
    pickled; an exception that does not unpickle here becomes a
    RuntimeError naming its type. Either way its traceback in the child is
    kept, as the ``__cause__``. What it prints is published as a
    :class:`~pool.events.JobOutputCaptured` before the job's outcome.
    """

    __slots__ = (
        "_abandoned",
        "_ctx",
        "_dead",
        "_exited",
        "_fatal",
        "_fn_blob",
        "_key",
        "_kill_timer",
        "_loop",
        "_name",
        "_out",
        "_pending",
        "_proc",
        "_rbuf",
        "_ready",
        "_seq",
        "_sock",
        "_started",
        "_stopping",
        "_term_wanted",
        "_wbuf",
    )
    cancels_task = False
    load_timeout = 60.0
    """Seconds a child has to load the handler before it counts as dead."""

    def __init__(self, fn: SyncHandler, name: str) -> None:
        """Args:
        fn: The handler, importable by name (:func:`check_picklable` says why not).
        name: The worker's name, used in messages (``pool-w1``).

        Raises:
            pickle.PicklingError, TypeError, AttributeError: ``fn`` does not pickle.
        """
        self._fn_blob = pickle.dumps(fn, pickle.HIGHEST_PROTOCOL)
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._out: IO[bytes] | None = None
        self._rbuf = bytearray()
        self._wbuf = bytearray()
        self._seq = 0
        self._key: str | None = None  # the key of the last job sent (see children.end_job)
        self._pending: asyncio.Future[Any] | None = None
        self._ctx: JobContext | None = None
        self._started = False  # the child has begun the pending job
        self._term_wanted = False  # cancelled before the child began it
        self._abandoned: JobContext | None = None  # told its exit code once reaped
        self._dead: str | None = None  # why no more jobs can run here
        self._fatal: BaseException | None = None  # why the child could not load the handler
        self._stopping = False
        self._kill_timer: asyncio.TimerHandle | None = None
        self._exited: asyncio.Future[None] | None = None
        self._ready: asyncio.Future[None] | None = None

    @property
    def pid(self) -> int | None:
        """The child's pid (also its process group's id), or None if it could not start."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the child process; returns at once (it loads the handler on its own time).

        A child that cannot be started (no more processes, no more file
        descriptors) is not an error here: the first job's :meth:`run`
        raises :class:`~pool.runners.WorkerDied`, and the supervisor takes
        it from there.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._exited = loop.create_future()
        self._ready = loop.create_future()
        try:
            ours, theirs = socket.socketpair()
        except OSError as exc:
            self._not_started(exc)
            return
        out: IO[bytes] | None = None
        try:
            # A file, not a pipe: nothing to pump on the loop, a child never
            # blocks on a full pipe, and what it wrote before dying is still there.
            out = tempfile.TemporaryFile()  # noqa: SIM115 - open for the child's lifetime
            # Popen forks and execs in about a millisecond: not worth a thread.
            proc = subprocess.Popen(
                [sys.executable, "-u", "-c", _BOOT, str(theirs.fileno()), *_sys_path()],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                env=children.run_environment(dict(os.environ)),
            )
        except OSError as exc:
            ours.close()
            if out is not None:
                out.close()
            self._not_started(exc)
            return
        finally:
            theirs.close()
        children.track(proc.pid)
        self._proc, self._sock, self._out = proc, ours, out
        ours.setblocking(False)
        loop.add_reader(ours.fileno(), self._on_readable)
        self._send(("hello", self._fn_blob))
        threading.Thread(
            target=self._reap, args=(proc, loop), name=f"{self._name}-reaper", daemon=True
        ).start()

    async def wait_ready(self) -> None:
        """Wait until the child has loaded the handler.

        The worker counts as ready only then, so a pool's ``start()`` returns
        with every child able to take a job at once, and a job's deadline
        never pays for an interpreter's start-up.

        Raises:
            WorkerDied: The child could not start, could not load the
                handler, died, or did not load it within ``load_timeout``.
        """
        ready, exited = self._ready, self._exited
        if ready is None or exited is None:
            return
        if not exited.done():
            await self._wait_loaded(ready, exited)
        if self._dead is not None:
            # Could not start, could not load the handler, or hung: a crash of
            # this worker before it took any job.
            raise self._died(job_began=False)

    async def _wait_loaded(self, ready: asyncio.Future[None], exited: asyncio.Future[None]) -> None:
        await asyncio.wait(
            {ready, exited}, timeout=self.load_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if not ready.done() and not exited.done():
            # Hung while importing: a child that cannot take jobs is a dead one.
            self._signal(signal.SIGKILL)
            self._dead = (
                f"process {self._name} did not load its handler within {self.load_timeout:g}s"
            )

    def _not_started(self, exc: OSError) -> None:
        self._dead = f"process {self._name} could not start: {exc}"
        self._fatal = exc
        assert self._exited is not None
        self._exited.set_result(None)

    async def run(self, job: Job, ctx: JobContext) -> object:
        """Run ``job`` in the child; its result, or the error it raised.

        Raises:
            WorkerDied: The child died under the job (its output so far and
                its exit status are published first), or it had died, or
                could not start or load the handler, before the job came:
                that job then fails or is retried as a crash too.
            Exception: The handler's error, as its own type when it unpickles.
        """
        if self._dead is not None:
            raise self._died(job_began=False)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._seq += 1
        self._pending, self._ctx = fut, ctx
        self._started = self._term_wanted = False
        self._key = children.new_job_key()
        self._clear_output()
        self._send(
            (
                "job",
                self._seq,
                job.payload,
                job.id,
                job.timeout,
                dict(job.meta),  # a mappingproxy does not pickle
                ctx.attempt,
                ctx.worker_id,
                ctx.deadline,
                self._key,
            )
        )
        try:
            return await fut
        finally:
            self._pending = self._ctx = None

    def cancel(self) -> None:
        """SIGTERM to the child's process group, once the child has begun the job.

        Until the child has said it began the job (it may still be loading),
        a SIGTERM could kill it outright, a crash instead of a cancellation:
        the signal waits for that word.
        """
        fut = self._pending
        if fut is None or fut.done():
            return
        if self._started:
            self._signal(signal.SIGTERM)
        else:
            self._term_wanted = True

    def abandon(self) -> None:
        """SIGKILL the child's group and stop waiting for the job at once.

        The job's output and exit status are published once the child has
        been reaped, after the pool has told of the abandonment.
        """
        fut = self._pending
        if fut is not None and not fut.done():
            self._abandoned = self._ctx
            fut.set_exception(_Abandoned())
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """Ask the child to exit, and kill it if it has not within a second; never blocks.

        Closing our end of the channel is the request: the child kills its
        group at once when it reads the end of it. The descriptors are
        released once it has been reaped.
        """
        if self._stopping:
            return
        self._stopping = True
        sock, loop = self._sock, self._loop
        if sock is None or loop is None or self._dead is not None:
            return  # never started, or already reaped and released
        if self._wbuf:
            self._wbuf.clear()
            loop.remove_writer(sock.fileno())
        with contextlib.suppress(OSError):  # the child closed it first: it is exiting anyway
            sock.shutdown(socket.SHUT_WR)
        self._kill_timer = loop.call_later(STOP_TIMEOUT, self._signal, signal.SIGKILL)

    async def wait_exited(self) -> None:
        """Wait until the child has exited and been reaped (at once if it never started)."""
        if self._exited is not None:
            await asyncio.shield(self._exited)

    # --- the channel, on the loop ---

    def _send(self, msg: _Message) -> None:
        sock, loop = self._sock, self._loop
        if sock is None or loop is None or self._stopping or self._dead is not None:
            return
        data = _frame(msg)
        if self._wbuf:
            self._wbuf += data
            return
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return  # the child has gone: the reaper will say how
        if sent < len(data):
            self._wbuf += data[sent:]
            loop.add_writer(sock.fileno(), self._on_writable)

    def _on_writable(self) -> None:
        sock, loop = self._sock, self._loop
        assert sock is not None
        assert loop is not None
        try:
            sent = sock.send(self._wbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent = len(self._wbuf)  # the child has gone: drop what it will never read
        del self._wbuf[:sent]
        if not self._wbuf:
            loop.remove_writer(sock.fileno())

    def _on_readable(self) -> None:
        self._read(drain=False)

    def _read(self, *, drain: bool) -> None:
        """Read what the child sent (one chunk, or all there is) and act on whole frames."""
        sock, loop = self._sock, self._loop
        if sock is None or loop is None:
            return
        while True:
            try:
                data = sock.recv(_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                # The child closed its end: it is exiting, and the reaper will tell.
                loop.remove_reader(sock.fileno())
                break
            self._rbuf += data
            if not drain:
                break
        buf = self._rbuf
        while len(buf) >= _HEADER:
            size = int.from_bytes(buf[:_HEADER], "big")
            if len(buf) < _HEADER + size:
                break
            msg = pickle.loads(buf[_HEADER : _HEADER + size])
            del buf[: _HEADER + size]
            self._on_message(msg)

    def _on_message(self, msg: _Message) -> None:
        kind = msg[0]
        if kind == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
            return
        if kind == "fatal":
            _, type_name, message, _ = msg[1]
            self._fatal = _rebuild(msg[1])
            self._dead = f"process {self._name} could not load its handler: " + (
                f"{type_name}: {message}" if message else type_name
            )
            return
        fut, ctx = self._pending, self._ctx
        if fut is None or fut.done() or ctx is None or msg[1] != self._seq:
            return  # about a job that run() no longer waits for
        if kind == "started":
            self._started = True
            if self._term_wanted:
                self._signal(signal.SIGTERM)
        elif kind == "progress":
            ctx.progress(msg[2], msg[3])
        else:
            output = self._tail()
            if output:
                ctx.report_output(output)
            if kind == "ok":
                try:
                    fut.set_result(pickle.loads(msg[2]))
                except Exception as exc:
                    err = TypeError(
                        f"the result of job {ctx.job.id!r} cannot be unpickled here: {exc}"
                    )
                    err.__cause__ = exc
                    fut.set_exception(err)
            elif kind == "error":
                fut.set_exception(_rebuild(msg[2]))
            else:
                fut.set_exception(_Interrupted(f"job {ctx.job.id!r} stopped on SIGTERM"))

    # --- the process ---

    def _signal(self, sig: int) -> None:
        proc = self._proc
        # Once reaped, the group is gone: never signal an id that may be reused.
        if proc is not None and proc.returncode is None and self._dead is None:
            children.signal_group(proc.pid, sig)

    def _reap(self, proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        """The reaper thread: wait for the child, kill what is left of its group, tell the loop."""
        code = proc.wait()
        # The leader is gone; whatever it started goes with it. The group's
        # id cannot be reused while any member lives. What its last job
        # started outside the group (the child, killed, could not end it)
        # is found by the job's key.
        children.signal_group(proc.pid, signal.SIGKILL)
        if self._key is not None:
            children.end_job(self._key)
        try:
            loop.call_soon_threadsafe(self._on_exit, code)
        except RuntimeError:
            # The loop has closed: nobody waits for this child any more.
            self._release()
            children.untrack(proc.pid)

    def _on_exit(self, code: int) -> None:
        """The child has been reaped: fail the job it held, release everything."""
        proc = self._proc
        assert proc is not None
        self._read(drain=True)  # a reply sent just before it died still counts
        if self._dead is None:  # else it was already given up on, for a reason of its own
            self._dead = f"process {self._name} died: {exit_description(code)}"
        fut, ctx = self._pending, self._ctx
        if fut is not None and not fut.done() and ctx is not None:
            ctx.report_output(self._tail(), exit_code=code)
            fut.set_exception(self._died(job_began=self._started))
        elif self._abandoned is not None:
            self._abandoned.report_output(self._tail(), exit_code=code)
        self._abandoned = None
        self._release()
        children.untrack(proc.pid)
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)

    def _release(self) -> None:
        if self._kill_timer is not None:
            self._kill_timer.cancel()
            self._kill_timer = None
        sock, loop = self._sock, self._loop
        if sock is not None:
            if loop is not None and not loop.is_closed():
                loop.remove_reader(sock.fileno())
                loop.remove_writer(sock.fileno())
            sock.close()
        if self._out is not None:
            # Read from it no more: a late tail is an empty one.
            self._out.close()
        self._wbuf.clear()
        self._rbuf.clear()

    def _died(self, *, job_began: bool = True) -> WorkerDied:
        assert self._dead is not None
        died = WorkerDied(self._dead, job_began=job_began)
        if self._fatal is not None:
            died.__cause__ = self._fatal
        return died

    # --- the output file ---

    def _clear_output(self) -> None:
        out = self._out
        if out is not None and not out.closed:
            # The child is idle and shares the file's offset: it writes at 0 next.
            fd = out.fileno()
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)

    def _tail(self) -> str:
        out = self._out
        if out is None or out.closed:
            return ""
        fd = out.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - TAIL_BYTES)
        data = os.pread(fd, size - start, start)
        if start:
            data = data.partition(b"\n")[2]  # the first line was cut: drop it
        tail = OutputTail(TAIL_LINES)
        tail.feed(data)
        return tail.text()

    def __repr__(self) -> str:
        state = "dead" if self._dead else "stopping" if self._stopping else "running"
        return f"<ProcessRunner {self._name} pid={self.pid} [{state}]>"


def _sys_path() -> list[str]:
    return [p for p in sys.path if isinstance(p, str)]


def _frame(msg: _Message) -> bytes:
    data = pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(_HEADER, "big") + data


def _rebuild(err: _Error) -> BaseException:
    """The exception the child sent, with its traceback there as its ``__cause__``."""
    blob, type_name, message, text = err
    exc: object = None
    if blob is not None:
        try:
            exc = pickle.loads(blob)
        except Exception:
            exc = None  # its class or its arguments do not load here: described below
    if not isinstance(exc, Exception | SystemExit | KeyboardInterrupt):
        exc = RuntimeError(f"{type_name}: {message}" if message else type_name)
    exc.__cause__ = _RemoteTraceback(text)
    return exc


# --- the child's side -------------------------------------------------------


class _ChildState:
    """What the SIGTERM handler needs: it runs between any two bytecodes of the main thread."""

    __slots__ = ("armed", "ctx", "deferred", "shield")

    def __init__(self) -> None:
        self.armed = False  # a job runs: a SIGTERM raises JobInterrupted in it
        self.ctx: _ChildContext | None = None
        self.shield = 0  # >0 while the main thread sends a frame: it must not be cut
        self.deferred = False  # a SIGTERM came during a send: raise when it is over


_state = _ChildState()


def _on_sigterm(signum: int, frame: types.FrameType | None) -> None:
    state = _state
    if not state.armed:
        return  # idle, or the job is already ending: a late SIGTERM changes nothing
    if state.ctx is not None:
        state.ctx.mark_cancelled()
    if state.shield:
        state.deferred = True
        return
    # Disarmed before raising: one raise per job, so that the runner's own
    # cleanup below the handler can never be hit by a second one.
    state.armed = False
    raise JobInterrupted("job cancelled")


class _Channel:
    """The child's end of the socketpair: whole frames, from any thread."""

    __slots__ = ("_lock", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, msg: _Message) -> None:
        data = _frame(msg)
        state = _state
        main = threading.current_thread() is threading.main_thread()
        if main:
            state.shield += 1
        try:
            with self._lock:
                self._sock.sendall(data)
        finally:
            if main:
                state.shield -= 1
        if main and state.deferred and not state.shield:
            state.deferred = False
            if state.armed:
                state.armed = False
                raise JobInterrupted("job cancelled")


class _ChildContext:
    """What a handler in a child process knows of its job; see :class:`~pool.JobContext`."""

    __slots__ = ("_cancelled", "_channel", "_seq", "attempt", "deadline", "job", "worker_id")

    def __init__(
        self,
        job: Job,
        worker_id: str,
        attempt: int,
        deadline: float | None,
        seq: int,
        channel: _Channel,
    ) -> None:
        self.job = job
        """The job being run."""
        self.worker_id = worker_id
        """The id of the worker running it."""
        self.attempt = attempt
        """1 for the first attempt, 2 for the first retry, and so on."""
        self.deadline = deadline
        """The pool clock's time at which the job times out, or None."""
        self._seq = seq
        self._channel = channel
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        """True once the job has been cancelled (JobInterrupted was raised, or is on its way)."""
        return self._cancelled

    def mark_cancelled(self) -> None:
        """The job is being cancelled (SIGTERM came): ``cancelled`` is true from now on."""
        self._cancelled = True

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the job has got: ``fraction`` from 0.0 to 1.0, and a short note.

        Raises:
            TypeError: ``fraction`` is not a number or ``message`` not a str.
            ValueError: ``fraction`` is outside 0.0 to 1.0.
        """
        check_progress(fraction, message)
        self._channel.send(("progress", self._seq, float(fraction), message))

    def __repr__(self) -> str:
        return (
            f"<JobContext job={self.job.id!r} worker={self.worker_id!r} "
            f"attempt={self.attempt} cancelled={self._cancelled} (in process {os.getpid()})>"
        )


def _child_main(fd: int) -> None:
    """The child process: load the handler, then run jobs until the channel closes."""
    # The reader thread must never take SIGTERM: only a signal delivered to
    # the main thread interrupts what blocks it (a sleep, a read) at once.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    # The handler's own children must not hold the channel open.
    os.set_inheritable(fd, False)
    # What a job's processes leave when their parent dies comes here, not to
    # init: still within reach when the job ends.
    children.become_subreaper()
    sock = socket.socket(fileno=fd)
    inbox: queue.SimpleQueue[_Message] = queue.SimpleQueue()
    threading.Thread(target=_read_frames, args=(sock, inbox), name="reader", daemon=True).start()
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    channel = _Channel(sock)
    hello = inbox.get()
    try:
        fn = pickle.loads(hello[1])
    except BaseException as exc:
        # Whatever the handler's module did on import (raised, or called
        # sys.exit()), the parent is told what, rather than seeing a bare status.
        channel.send(("fatal", _describe(exc)))
        sys.exit(1)
    channel.send(("ready",))
    while True:
        _run_job(fn, channel, inbox.get())


def _read_frames(sock: socket.socket, inbox: queue.SimpleQueue[_Message]) -> None:
    """The child's reader thread: frames to the inbox; at the end of the channel, the end."""
    buf = bytearray()
    try:
        while data := sock.recv(_CHUNK):
            buf += data
            while len(buf) >= _HEADER:
                size = int.from_bytes(buf[:_HEADER], "big")
                if len(buf) < _HEADER + size:
                    break
                inbox.put(pickle.loads(buf[_HEADER : _HEADER + size]))
                del buf[: _HEADER + size]
    finally:
        # The parent stopped us or died: nothing of this group may outlive
        # it, a job in the middle of its work included.
        os.killpg(0, signal.SIGKILL)


def _run_job(fn: Callable[..., object], channel: _Channel, msg: _Message) -> None:
    """Run one job and send exactly one reply, whatever the handler does (short of dying)."""
    _, seq, payload, job_id, timeout, meta, attempt, worker_id, deadline, key = msg
    job = Job(payload=payload, id=job_id, timeout=timeout, meta=meta)
    # As a shell command's: what the job starts knows its job, and carries its key.
    os.environ.update(
        WPOOL_JOB_ID=environment_text(job_id),
        WPOOL_WORKER=worker_id,
        WPOOL_ATTEMPT=str(attempt),
        **{children.JOB_VARIABLE: key},
    )
    ctx = _ChildContext(job, worker_id, attempt, deadline, seq, channel)
    # A SIGTERM meant for the previous job may still be pending (sent as it
    # ended): pthread_sigmask runs pending handlers, here, while disarmed.
    signal.pthread_sigmask(signal.SIG_BLOCK, ())
    state = _state
    state.ctx = ctx
    state.deferred = False
    reply: _Message
    try:
        try:
            state.armed = True
            channel.send(("started", seq))
            result = check_not_coroutine(fn(job, ctx))
        finally:
            state.armed = False
    except JobInterrupted:
        reply = ("interrupted", seq)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        # A job's exit or interrupt is its own failure: the process serves on.
        reply = ("error", seq, _describe(exc))
    else:
        try:
            reply = ("ok", seq, pickle.dumps(result, pickle.HIGHEST_PROTOCOL))
        except Exception as exc:
            err = TypeError(
                f"the result of job {job_id!r} cannot be sent back from its process: {exc}"
            )
            reply = ("error", seq, _describe(err))
    # No process the job started outlives it, whatever group or session it
    # went to (they carry its key); the usual job started none at all.
    if children.has_children():
        children.end_job(key)
    # What the job printed is in the output file before the parent reads it.
    _flush(sys.stdout)
    _flush(sys.stderr)
    channel.send(reply)


def _flush(stream: IO[str] | None) -> None:
    if stream is None:
        return
    try:
        stream.flush()
    except (OSError, ValueError):
        return  # the handler closed or broke it: what it held is lost, the reply is not


def _describe(exc: BaseException) -> _Error:
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    try:
        message = str(exc)
    except Exception as err:  # a broken __str__ must not lose the reply
        message = f"<unprintable {kind.__qualname__}: {type(err).__name__}>"
    tb = exc.__traceback__
    # This module's frames come first and say nothing about the job.
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(kind, exc, tb))
    try:
        blob: bytes | None = pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
    except Exception:
        blob = None  # sent as text only: the parent raises a RuntimeError naming it
    return blob, name, message, text
