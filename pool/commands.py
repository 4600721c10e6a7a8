"""Shell commands as jobs: each job's payload is a command line run by ``/bin/sh``.

``Pool(ShellCommands())`` runs every job's payload in a shell of its own, in
a process group of its own, so that cancelling the job (its deadline, its
handle, the shutdown) reaches the command and everything it started:
SIGTERM to the group at once, SIGKILL when the pool abandons the job
``cancel_grace`` seconds later. A command that exits 0 succeeds with a
:class:`CommandResult`; any other exit fails with :class:`CommandFailed`.
Either way the tail of its output is published as a
:class:`~pool.events.JobOutputCaptured` event, and with ``output_dir`` all of it is
kept in a file per attempt.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Final

from . import children
from .job import Job, JobContext
from .runners import Runner

__all__ = (
    "LABEL_LIMIT",
    "CommandFailed",
    "CommandResult",
    "OutputTail",
    "ShellCommands",
    "environment_text",
    "exit_description",
)

_NAME_MAX: Final = 120
"""Characters of a cleaned id kept in an output file's name (a hash and a suffix follow)."""

NOT_FOUND: Final = 127
"""The shell's exit status for a command it cannot find."""

LABEL_LIMIT: Final = 200
"""The longest job label :meth:`ShellCommands.describe` makes, in characters."""

_TAIL_BYTES: Final = 64 * 1024
"""How much of the end of an output file is read for its tail."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    """What a command that succeeded left.

    Attributes:
        exit_code: Always 0.
        output: The last lines it wrote (stdout and stderr together).
        path: The file that holds all of its output, if it was saved.
    """

    exit_code: int
    output: str
    path: str | None


class CommandFailed(Exception):
    """A command exited with a status other than 0, or a signal ended it.

    Attributes:
        exit_code: The exit status, negative for a signal.
        output: The last lines it wrote.
        path: The file that holds all of its output, if it was saved.
    """

    def __init__(self, exit_code: int, output: str, path: str | None) -> None:
        self.exit_code = exit_code
        self.output = output
        self.path = path
        super().__init__(_failure_message(exit_code, output))


def exit_description(exit_code: int) -> str:
    """``exit code 3``, or ``killed by SIGKILL`` for a negative status."""
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"killed by {name}"
    return f"exit code {exit_code}"


def _failure_message(exit_code: int, output: str) -> str:
    if exit_code == NOT_FOUND:
        last = output.rstrip().rpartition("\n")[2]
        return f"command not found (exit code 127): {last}" if last else "command not found"
    return exit_description(exit_code)


class OutputTail:
    """The last lines of a stream of bytes, bounded in lines and in line length."""

    __slots__ = ("_lines", "_max_line", "_partial")

    def __init__(self, lines: int = 100, max_line: int = 500) -> None:
        self._lines: deque[str] = deque(maxlen=lines)
        self._max_line = max_line
        self._partial = b""

    def feed(self, data: bytes) -> None:
        """Add bytes as they arrive; a line may span several calls."""
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        for line in complete:
            self._add(line)
        if len(self._partial) > 4 * self._max_line:
            # A line with no end in sight: keep its head, as a line of its own.
            self._add(self._partial)
            self._partial = b""

    def _add(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if len(text) > self._max_line:
            text = text[: self._max_line - 1] + "…"
        self._lines.append(text)

    def text(self) -> str:
        """The kept lines, the last one unfinished if the stream did not end with a newline."""
        lines = list(self._lines)
        if self._partial:
            lines.append(self._partial.decode("utf-8", "replace")[: self._max_line])
        return "\n".join(lines)


async def _exited(proc: subprocess.Popen[bytes], after: Callable[[], object]) -> int:
    """Wait for ``proc`` to exit (in a daemon thread), run ``after`` there, return its status."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()

    def wait() -> None:
        code = proc.wait()
        after()
        try:
            loop.call_soon_threadsafe(_settle, done, code)
        except RuntimeError:
            return  # the loop has closed: nobody waits for this exit any more

    threading.Thread(target=wait, name=f"wait-{proc.pid}", daemon=True).start()
    return await done


def _settle(done: asyncio.Future[int], code: int) -> None:
    if not done.done():
        done.set_result(code)


def environment_text(text: str) -> str:
    """``text`` as an environment variable can hold it: no NUL, nothing unencodable."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\0", "\\0")


def read_tail(file: IO[bytes], lines: int) -> str:
    """The last ``lines`` lines of an open binary file (read from its end, bounded)."""
    size = file.seek(0, os.SEEK_END)
    start = max(0, size - _TAIL_BYTES)
    file.seek(start)
    data = file.read()
    if start:
        data = data.partition(b"\n")[2]  # the first line was cut: drop it
    tail = OutputTail(lines)
    tail.feed(data)
    return tail.text()


class ShellCommands:
    """A handler that runs each job's payload (UTF-8) as a ``/bin/sh`` command line.

    Pass it to :class:`~pool.Pool` in place of a handler function. The
    command's standard input is ``/dev/null``; its environment adds
    ``WPOOL_JOB_ID``, ``WPOOL_WORKER`` and ``WPOOL_ATTEMPT``. When the shell
    exits, whatever it left running in its process group is killed.
    """

    __slots__ = ("cwd", "env", "output_dir", "shell", "tail_lines")

    def __init__(
        self,
        *,
        output_dir: str | os.PathLike[str] | None = None,
        tail_lines: int = 100,
        shell: str = "/bin/sh",
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Args:
        output_dir: Keep each attempt's whole output in a file here
            (``<job id>.out``, ``<job id>+<attempt>.out`` for retries; an id
            that is not a safe file name is cleaned and gets ``+<hash>``);
            created if missing.
        tail_lines: How many of the last output lines to keep and publish.
        shell: The shell that runs the command lines (with ``-c``).
        cwd: The commands' working directory (default: the current one).
        env: The commands' environment (default: this process's).

        Raises:
            ValueError: ``tail_lines`` is below 1.
            OSError: ``output_dir`` cannot be created.
        """
        if isinstance(tail_lines, bool) or not isinstance(tail_lines, int) or tail_lines < 1:
            raise ValueError(f"tail_lines must be an int >= 1, got {tail_lines!r}")
        self.tail_lines = tail_lines
        self.shell = shell
        self.cwd = None if cwd is None else os.fspath(cwd)
        self.env = None if env is None else dict(env)
        self.output_dir = None if output_dir is None else os.fspath(output_dir)
        if self.output_dir is not None:
            os.makedirs(self.output_dir, exist_ok=True)

    def describe(self, job: Job) -> str:
        """The job's command line, as people read it (the pool's job label).

        The first line only, cut at ``LABEL_LIMIT`` characters; a payload
        that is not UTF-8 shows its undecodable bytes as escapes.
        """
        text = job.payload.decode("utf-8", errors="backslashreplace")
        first, newline, _ = text.strip().partition("\n")
        if len(first) > LABEL_LIMIT:
            return first[: LABEL_LIMIT - 1] + "…"
        return first + (" …" if newline else "")

    def make_runner(self, name: str) -> Runner:
        """A runner for one worker: it runs that worker's commands one at a time."""
        return CommandRunner(self)

    def output_path(self, job: Job, attempt: int) -> str | None:
        """Where an attempt's whole output is kept, or None without ``output_dir``."""
        if self.output_dir is None:
            return None
        name = re.sub(r"[^A-Za-z0-9._-]", "_", job.id).lstrip(".") or "job"
        if name != job.id or len(name) > _NAME_MAX:
            # Two ids may clean up to the same name: the original's hash tells
            # them apart, after a "+" that no cleaned name contains. A long id
            # is cut, so that the name fits any file system's limit.
            digest = hashlib.sha256(job.id.encode("utf-8", "surrogatepass")).hexdigest()
            name = name[:_NAME_MAX] + "+" + digest[:10]
        suffix = ".out" if attempt == 1 else f"+{attempt}.out"
        return os.path.join(self.output_dir, name + suffix)

    def __repr__(self) -> str:
        return f"ShellCommands(shell={self.shell!r}, output_dir={self.output_dir!r})"


class CommandRunner:
    """Runs one worker's commands, each in a new process group."""

    __slots__ = ("_commands", "_pgid")
    cancels_task = False

    def __init__(self, commands: ShellCommands) -> None:
        self._commands = commands
        self._pgid: int | None = None

    def start(self) -> None:
        """Nothing to start: each job starts its own shell."""

    async def wait_ready(self) -> None:
        """Ready at once."""

    async def run(self, job: Job, ctx: JobContext) -> object:
        """Run the job's command; its result, or :class:`CommandFailed`."""
        try:
            command = job.payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"the command is not UTF-8: {exc}") from None
        commands = self._commands
        env = dict(os.environ if commands.env is None else commands.env)
        env.update(
            WPOOL_JOB_ID=environment_text(job.id),
            WPOOL_WORKER=ctx.worker_id,
            WPOOL_ATTEMPT=str(ctx.attempt),
        )
        key = children.new_job_key()
        children.job_environment(env, key)
        path = commands.output_path(job, ctx.attempt)
        # The command writes straight to a file (the kept one, or an unnamed
        # one): nothing to pump on the loop, and no pipe that a stray
        # background process could hold open. The tail is read at the end.
        # Creating a local file takes microseconds: not worth a thread.
        sink = open(path, "w+b") if path is not None else tempfile.TemporaryFile()  # noqa: ASYNC230, SIM115
        with sink:
            # Popen, not asyncio's subprocess: the exit is waited for by a
            # thread of our own, which stays quiet if the loop has gone by then
            # (a job abandoned at the very end of a run).
            # Every process of the job inherits the write end: once the read
            # end is at its end of file, none of them is left (see end_job).
            sentinel, held = os.pipe()
            try:
                proc = subprocess.Popen(  # noqa: ASYNC220 - a fork and exec: as asyncio does it
                    [commands.shell, "-c", command],
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=commands.cwd,
                    env=env,
                    pass_fds=(held,),
                )
            except BaseException:
                os.close(sentinel)
                raise
            finally:
                os.close(held)
            self._pgid = proc.pid
            children.track(proc.pid)

            def after() -> None:
                # Whatever the shell left goes with it, in its group or not:
                # nothing this job started outlives it (a cancelled run included).
                try:
                    children.signal_group(proc.pid, signal.SIGKILL)
                    children.end_job(key, sentinel)
                finally:
                    os.close(sentinel)  # here: the thread is its last user

            try:
                exit_code = await _exited(proc, after)
            finally:
                self._pgid = None
                children.signal_group(proc.pid, signal.SIGKILL)
                children.untrack(proc.pid)
            output = read_tail(sink, commands.tail_lines)
        ctx.report_output(output, exit_code=exit_code, path=path)
        if exit_code != 0:
            raise CommandFailed(exit_code, output, path)
        return CommandResult(exit_code=0, output=output, path=path)

    def cancel(self) -> None:
        """SIGTERM to the command's whole process group."""
        if self._pgid is not None:
            children.signal_group(self._pgid, signal.SIGTERM)

    def abandon(self) -> None:
        """SIGKILL to the command's whole process group: it stops now."""
        if self._pgid is not None:
            children.signal_group(self._pgid, signal.SIGKILL)

    def stop(self) -> None:
        """Nothing to release between jobs."""
