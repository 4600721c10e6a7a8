"""Job files: the input of ``wpool-tui run``, and the unfinished jobs it saves.

A job file holds one job a line, as a JSON object::

    {"id": "resize-1", "payload": "photo-1.jpg", "timeout": 30}

Only ``payload`` is required; a job without an ``id`` is named by its line
number. A string payload is encoded as UTF-8; any other JSON value becomes
its compact JSON text. ``meta`` (an object of
strings) is kept too. With ``--shell`` a line is a shell command instead,
its id its line number; a line that is a JSON object is still read as
above, so that the unfinished jobs of a shell run can be run again.
Blank lines are skipped everywhere, and so is a UTF-8 byte-order mark at
the start of the file.

A file is read as it is consumed (:class:`JobReader`), never whole: what
is held is a block of bytes, the lines not yet taken, and, to refuse an id
used twice, up to :data:`NAMED_IDS` ids that jobs give themselves and one
bit per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import queue
import stat
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import IO, Any, BinaryIO, Final, NamedTuple

from pool import Job

__all__ = (
    "JobFileError",
    "JobReader",
    "Saved",
    "job_line",
    "parse_jobs",
    "read_jobs",
    "remove_stale_temporaries",
    "save_jobs",
    "temporary_name",
    "write_jobs",
)

FIELDS: Final = ("id", "payload", "timeout", "meta")

BLOCK: Final = 64 * 1024
"""Bytes read from a job file at a time."""

NAMED_IDS: Final = 100_000
"""Ids that lines give themselves kept to refuse one used again (about 10 MB at most).

Past these, a reused id is refused only while its first job is still
queued or running (the pool refuses it then): memory stays flat whatever
the file's length."""

_BOM: Final = b"\xef\xbb\xbf"


class JobFileError(Exception):
    """A job file cannot be read: the message names the file, the line and what is wrong."""


class _Lines:
    """Turns a file's lines into jobs, one at a time, numbering them and refusing a reused id."""

    __slots__ = ("_by_line", "_named", "name", "number", "shell")

    def __init__(self, name: str, *, shell: bool) -> None:
        self.name = name
        self.shell = shell
        self.number = 0  # the last line read
        self._named: dict[str, int] = {}  # ids that jobs give themselves -> their line
        self._by_line = bytearray()  # bit n: line n is a job named by its line number

    def job(self, raw: bytes) -> Job | None:
        """The job of the next line (None for a blank one).

        Raises:
            JobFileError: The line is not a valid job, or its id is taken.
        """
        self.number = number = self.number + 1
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JobFileError(f"{self.name}:{number}: not UTF-8 text ({exc.reason})") from None
        if not text.strip():
            return None
        try:
            job, named = _parse_line(text, number, shell=self.shell)
        except ValueError as exc:
            raise JobFileError(f"{self.name}:{number}: {exc}") from None
        earlier = self._earlier(job.id, named)
        if earlier is not None:
            raise JobFileError(
                f"{self.name}:{number}: id {job.id!r} is already used on line {earlier}"
            )
        if named:
            if len(self._named) < NAMED_IDS:
                self._named[job.id] = number
        else:
            byte, bit = divmod(number, 8)
            if byte >= len(self._by_line):
                self._by_line.extend(bytes(byte + 1 - len(self._by_line)))
            self._by_line[byte] |= 1 << bit
        return job

    def _earlier(self, job_id: str, named: bool) -> int | None:
        """The line that already used ``job_id``, if one did."""
        line = self._named.get(job_id)
        if line is not None or not named:
            return line
        # A job named by its line number takes that number as its id.
        if not job_id.isdigit() or str(int(job_id)) != job_id:
            return None
        byte, bit = divmod(int(job_id), 8)
        if byte < len(self._by_line) and self._by_line[byte] >> bit & 1:
            return int(job_id)
        return None


class JobReader:
    """The jobs of a job file (``-`` for standard input), read as they are taken.

    :meth:`take` gives the next job of the lines read so far; :meth:`add`
    gives it the next block of the file (``b""`` at its end), which
    :meth:`read_block` reads. A regular file is read where it is taken; a
    pipe or a terminal is read by :meth:`blocks` in a thread of its own, so
    that a slow writer never blocks the event loop.
    """

    def __init__(self, source: str, *, shell: bool, stdin: BinaryIO | None = None) -> None:
        """Open ``source``.

        Raises:
            JobFileError: It cannot be opened for reading, or is a directory.
        """
        self.source = source
        self._file: IO[bytes]
        if source == "-":
            if stdin is not None:
                self._file, self._owned = stdin, False
            else:
                # A descriptor of its own: the dashboard may take standard input
                # over for the terminal's keys.
                self._file, self._owned = os.fdopen(os.dup(sys.stdin.fileno()), "rb"), True
            name = "<stdin>"
        else:
            try:
                self._file = open(source, "rb")  # noqa: SIM115 - read as the run goes
            except OSError as exc:
                raise JobFileError(f"cannot read {source}: {exc.strerror or exc}") from None
            self._owned = True
            name = source
        try:
            mode = os.fstat(self._file.fileno()).st_mode
        except (OSError, ValueError):  # a stream without a descriptor (tests' BytesIO)
            mode = stat.S_IFREG
        if stat.S_ISDIR(mode):
            self.close()
            raise JobFileError(f"cannot read {source}: Is a directory")
        self.regular = stat.S_ISREG(mode)
        """Whether reading it never waits on a writer (a regular file)."""
        self._lines = _Lines(name, shell=shell)
        self._pending: deque[bytes] = deque()
        self._ahead: deque[Job] = deque()  # parsed, not taken yet
        self._partial = b""
        self.eof = False
        """Whether the end of the file has been read."""

    @property
    def name(self) -> str:
        """The file's name in messages (``<stdin>`` for standard input)."""
        return self._lines.name

    @property
    def line(self) -> int:
        """The number of the last line taken."""
        return self._lines.number

    def read_block(self) -> bytes:
        """The next block of the file (``b""`` at its end); blocks until there is one."""
        read = getattr(self._file, "read1", self._file.read)
        data: bytes = read(BLOCK)
        return data

    def add(self, data: bytes) -> None:
        """Take the next block of the file; ``b""`` marks its end."""
        if not data:
            self.eof = True
            if self._partial:
                self._pending.append(self._partial)
                self._partial = b""
            return
        *lines, self._partial = (self._partial + data).split(b"\n")
        self._pending.extend(lines)

    def take(self) -> Job | None:
        """The next job of the lines read so far; None when more must be read (or at the end).

        Raises:
            JobFileError: The next line is not a valid job.
        """
        if self._ahead:
            return self._ahead.popleft()
        pending = self._pending
        while pending:
            job = self._lines.job(pending.popleft())
            if job is not None:
                return job
        return None

    def check_ahead(self) -> Job | None:
        """Parse every line read so far (they are taken later); the first job, if any.

        Raises:
            JobFileError: One of those lines is not a valid job.
        """
        ahead, self._ahead = self._ahead, deque()
        try:
            while (job := self.take()) is not None:
                ahead.append(job)
        finally:
            self._ahead = ahead
        return ahead[0] if ahead else None

    def next_job(self) -> Job | None:
        """The next job, reading as needed (blocking); None at the end of the file.

        Raises:
            JobFileError: A line is not a valid job.
        """
        while True:
            job = self.take()
            if job is not None or self.eof:
                return job
            self.add(self.read_block())

    def __iter__(self) -> Iterator[Job]:
        while (job := self.next_job()) is not None:
            yield job

    def blocks(self, loop: asyncio.AbstractEventLoop, ahead: int = 4) -> BlockFeed:
        """Read the rest of the file in a daemon thread, at most ``ahead`` blocks ahead."""
        return BlockFeed(self, loop, ahead)

    def close(self) -> None:
        """Close the file if this reader opened it."""
        if self._owned:
            self._file.close()


class BlockFeed:
    """Blocks of a file read by a daemon thread; the loop takes them with :meth:`get`.

    The thread is a daemon: one blocked on a writer that never writes never
    keeps the program from exiting.
    """

    def __init__(self, reader: JobReader, loop: asyncio.AbstractEventLoop, ahead: int) -> None:
        self._reader = reader
        self._loop = loop
        self._blocks: queue.Queue[bytes] = queue.Queue(maxsize=ahead)
        self._ready = asyncio.Event()
        self._thread = threading.Thread(target=self._main, name="wpool-jobs", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        while True:
            try:
                data = self._reader.read_block()
            except (OSError, ValueError):
                data = b""  # the stream broke or was closed: its end, for us
            self._blocks.put(data)
            try:
                self._loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:
                return  # the loop has closed: nobody reads any more
            if not data:
                return

    async def get(self) -> bytes:
        """The next block (``b""`` at the end), waiting for the thread as needed."""
        while True:
            self._ready.clear()
            try:
                return self._blocks.get_nowait()
            except queue.Empty:
                await self._ready.wait()

    def read_ahead(self) -> list[bytes]:
        """The blocks read and not yet taken (the thread may add more later)."""
        blocks = []
        while True:
            try:
                blocks.append(self._blocks.get_nowait())
            except queue.Empty:
                return blocks


def read_jobs(source: str, *, shell: bool, stdin: BinaryIO | None = None) -> list[Job]:
    """Every job in the file ``source`` (``-`` for standard input), in order.

    Raises:
        JobFileError: The file cannot be read, or a line is not a valid job;
            nothing is returned then.
    """
    reader = JobReader(source, shell=shell, stdin=stdin)
    try:
        return list(reader)
    finally:
        reader.close()


def parse_jobs(lines: Iterable[bytes], name: str, *, shell: bool) -> list[Job]:
    """The jobs of a file's lines; ``name`` is the file's name in errors."""
    numbered = _Lines(name, shell=shell)
    return [job for raw in lines if (job := numbered.job(raw)) is not None]


def _parse_line(text: str, number: int, *, shell: bool) -> tuple[Job, bool]:
    """The line's job, and whether it named itself (else its id is its line number)."""
    if shell:
        stripped = text.strip()
        if stripped.startswith("{"):
            try:
                data = json.loads(stripped)
            except json.JSONDecodeError:
                data = None  # a shell command that starts with a brace
            if isinstance(data, dict):
                return _job_from_object(data, number)
        return Job(id=str(number), payload=text.rstrip("\r").encode("utf-8")), False
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {_kind(data)}")
    return _job_from_object(data, number)


def _job_from_object(data: dict[str, Any], number: int) -> tuple[Job, bool]:
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    if "payload" not in data:
        raise ValueError("payload is required")
    payload = data["payload"]
    if isinstance(payload, str):
        encoded = payload.encode("utf-8")
    else:
        encoded = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    # Without an id, a job is named by its line, as a shell command is.
    fields: dict[str, Any] = {"payload": encoded, "id": str(number)}
    job_id = data.get("id")
    if job_id is not None:
        if isinstance(job_id, bool) or not isinstance(job_id, str | int) or job_id == "":
            raise ValueError(f"id must be a non-empty string or a whole number, got {job_id!r}")
        fields["id"] = str(job_id)
    timeout = data.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ValueError(f"timeout must be a number of seconds, got {timeout!r}")
        if not math.isfinite(timeout):
            raise ValueError(f"timeout must be a finite number of seconds, got {timeout!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        fields["timeout"] = float(timeout)
    meta = data.get("meta")
    if meta is not None:
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ValueError(f"meta must be an object of strings, got {meta!r}")
        fields["meta"] = meta
    return Job(**fields), job_id is not None


def _kind(value: object) -> str:
    match value:
        case list():
            return "an array"
        case str():
            return "a string"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case None:
            return "null"
    return type(value).__name__


def job_line(job: Job) -> str:
    """``job`` as one line of a job file (its payload as text, which must be UTF-8).

    Raises:
        ValueError: The payload is not UTF-8 (no job read from a file has one).
    """
    try:
        payload = job.payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"job {job.id!r}: its payload is not UTF-8 text") from None
    data: dict[str, object] = {"id": job.id, "payload": payload}
    if job.timeout is not None:
        data["timeout"] = job.timeout
    if job.meta:
        data["meta"] = dict(job.meta)
    return json.dumps(data, ensure_ascii=False, separators=(", ", ": "))


def write_jobs(path: str, jobs: Iterable[Job], *, replace: bool = True) -> int:
    """Write ``jobs`` to ``path`` as a job file, atomically; returns how many.

    The file is complete or untouched: it is written beside ``path`` (as
    ``path.tmp-PID``) and renamed over it; the temporary file never outlives
    a failure.

    Raises:
        FileExistsError: ``replace`` is false and ``path`` exists.
        OSError: The file cannot be written.
    """
    temporary = temporary_name(path)
    count = 0
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            for job in jobs:
                file.write(job_line(job) + "\n")
                count += 1
            file.flush()
            os.fsync(file.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # never over a file that appeared meanwhile
    finally:
        # A full disk, a bad job, a signal, or linked: either way it goes.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return count


class Saved(NamedTuple):
    """What :func:`save_jobs` did: how many jobs, where, and the error that sent them elsewhere."""

    jobs: int
    path: str
    error: str | None


def save_jobs(path: str, jobs: Iterable[Job], *, replace: bool = True, fallback: IO[str]) -> Saved:
    """Write ``jobs`` to ``path`` as :func:`write_jobs` does; if that fails, to ``fallback``.

    Nothing is lost either way: when the file cannot be written (a full
    disk, no rights), every job, those it held already included, is written
    to ``fallback`` as a job line, and the partial file is removed. Nothing
    is written when there is no job. Without ``replace``, a file that is
    already at ``path`` stays: the jobs go to the first free name beside it
    (``name-2.jsonl``, ``name-3.jsonl``...).
    """
    temporary = temporary_name(path)
    count = 0
    written = 0  # bytes of whole chunks in the temporary file
    chunk: list[str] = []
    it = iter(jobs)
    first = next(it, None)
    if first is None:
        return Saved(0, path, None)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        return _fall_back(itertools.chain((first,), it), [], temporary, 0, fallback, exc)
    try:
        try:
            for job in itertools.chain((first,), it):
                chunk.append(job_line(job) + "\n")
                count += 1
                if len(chunk) >= _SAVE_CHUNK:
                    written += _write_all(fd, "".join(chunk).encode())
                    chunk = []
            if chunk:
                written += _write_all(fd, "".join(chunk).encode())
                chunk = []
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temporary, path)
        else:
            while True:
                try:
                    os.link(temporary, path)  # never over a file that is there
                    break
                except FileExistsError:
                    path = beside(path)
    except OSError as exc:
        return _fall_back(it, chunk, temporary, written, fallback, exc)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return Saved(count, path, None)


def beside(path: str) -> str:
    """The next name after ``path`` in the series ``name.ext``, ``name-2.ext``, ``name-3.ext``..."""
    folder, name = os.path.split(path)
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = ext, ""
    base, dash, number = stem.rpartition("-")
    if dash and number.isdigit() and base:
        stem, n = base, int(number) + 1
    else:
        n = 2
    return os.path.join(folder, f"{stem}-{n}{dot}{ext}")


_SAVE_CHUNK: Final = 1000


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)


def _fall_back(
    rest: Iterable[Job],
    chunk: list[str],
    temporary: str,
    written: int,
    fallback: IO[str],
    exc: OSError,
) -> Saved:
    """To ``fallback``: the temporary file's whole chunks, the chunk that failed, the rest."""
    count = 0
    with contextlib.suppress(FileNotFoundError), open(temporary, "rb") as done:
        remaining = written
        while remaining > 0:
            data = done.read(min(remaining, BLOCK))
            if not data:
                break
            remaining -= len(data)
            fallback.write(data.decode("utf-8"))
            count += data.count(b"\n")
    for line in chunk:
        fallback.write(line)
        count += 1
    for job in rest:
        fallback.write(job_line(job) + "\n")
        count += 1
    fallback.flush()
    return Saved(count, "", exc.strerror or str(exc))


def temporary_name(path: str) -> str:
    """Where :func:`write_jobs` writes ``path`` before it is complete."""
    return f"{path}.tmp-{os.getpid()}"


def remove_stale_temporaries(path: str) -> list[str]:
    """Remove the temporary files of ``path`` left by processes that no longer run.

    A run killed while it saved leaves one (``path.tmp-PID``); that of a run
    still going is left alone. Returns the paths removed.
    """
    folder = os.path.dirname(path) or "."
    prefix = os.path.basename(path) + ".tmp-"
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed  # the folder's own trouble is told where it is checked
    for name in names:
        pid = name[len(prefix) :]
        if not name.startswith(prefix) or not pid.isdigit() or int(pid) < 1 or _runs(int(pid)):
            continue
        stale = os.path.join(folder, name)
        with contextlib.suppress(FileNotFoundError):  # another run removed it first
            os.unlink(stale)
            removed.append(stale)
    return removed


def _runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
