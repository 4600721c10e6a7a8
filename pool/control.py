"""The control server: a pool watched and driven by other programs, over a local socket.

``await pool.serve()`` starts a :class:`ControlServer` in the service's own
loop. It speaks the protocol of ``docs/protocol.md`` (version 1): JSON lines;
a hello, a welcome and a snapshot, then the pool's events as they happen and
the answers to requests. Nothing is ever unpickled or evaluated: jobs arrive
as data (:func:`pool.wire.job_from_dict`).

How it never slows the pool. One subscription to the pool's events feeds the
server: at most every ``flush_interval`` seconds it takes what the
subscription holds, encodes it once, and hands the same bytes to every
client's outbox. Past ``events_buffer`` events between two batches the pool
skips building events and every client resyncs, so the server's work has a
bound, whatever the pool's rate. Each client has a writer task that passes
its outbox to the socket as fast as the client reads: one that does not read
fills its outbox up to ``client_buffer`` bytes, then misses events, and once
it reads again gets a gap marker and a fresh snapshot. Each client knows the
``seq`` its stream has reached, so that a snapshot, whenever it is taken,
joins up with the events after it. A client's requests are handled in turn
by its reader task; nothing on the way from the pool to the clients awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import errno
import hmac
import ipaddress
import json
import math
import os
import secrets
import socket
import stat
import struct
import time
import typing
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from . import wire
from .bus import Subscription
from .errors import PoolError, QueueFull
from .events import EVENT_TYPES, EventsDropped, PoolEvent, to_dict
from .job import ErrorInfo, check_timeout

if TYPE_CHECKING:
    from .pool import Pool

__all__ = (
    "CLIENT_BUFFER",
    "CLOSE_TIMEOUT",
    "EVENTS_BUFFER",
    "FLUSH_INTERVAL",
    "HELLO_TIMEOUT",
    "MAX_LINE",
    "PROTOCOL_VERSION",
    "ControlServer",
    "default_socket_dir",
    "default_socket_path",
)

PROTOCOL_VERSION: Final = 1
"""The version of the protocol this server speaks."""

MAX_LINE: Final = 1 << 20
"""The longest line a client may send, in bytes, not counting its newline (1 MiB)."""

HELLO_TIMEOUT: Final = 5.0
"""Seconds a client has, once connected, to send its hello."""

FLUSH_INTERVAL: Final = 0.05
"""Seconds between two batches of events sent to the clients, at the most."""

EVENTS_BUFFER: Final = 1_000
"""Events the server's subscription holds between two batches before it drops them."""

CLIENT_BUFFER: Final = 1 << 20
"""Bytes of events a client's outbox holds before it misses events (1 MiB)."""

CLOSE_TIMEOUT: Final = 2.0
"""Seconds a closing connection has to take what is left before it is cut."""

_MAX_UNIX_PATH = 107  # sun_path is 108 bytes, with its terminating NUL
_PENDING_BYTES = MAX_LINE  # lines read and not yet handled, before reading pauses
_ROLES = ("read", "control")
_HELLO_FIELDS = frozenset({"hello", "version", "role", "token"})
_REQUEST_FIELDS = frozenset({"id", "method", "params"})
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def default_socket_dir() -> Path:
    """Where sockets go by default: ``$XDG_RUNTIME_DIR/wpool``, else ``/tmp/wpool-<uid>``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "wpool"
    return Path(f"/tmp/wpool-{os.geteuid()}")


def default_socket_path(name: str) -> Path:
    """The default socket of the pool called ``name``: ``<default_socket_dir()>/<name>.sock``.

    Raises:
        ValueError: ``name`` cannot be a file name.
    """
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"pool name must be usable as a file name for its socket, got {name!r}")
    return default_socket_dir() / f"{name}.sock"


def _line(message: dict[str, Any]) -> bytes:
    return (_ENCODE(message) + "\n").encode()


# --- events as JSON text, fast ------------------------------------------------------
#
# The server sends every event it forwards, so it encodes tens of thousands a
# second: through to_dict() and json.dumps() an event costs about 5 us, which
# was a third of the loop under a flood. Each class gets a function, made once,
# that writes the very same text (the same keys in the same order, json's own
# string escaping, floats as json writes them) in about a fifth of the time.

_STRING: Final = json.encoder.encode_basestring_ascii  # what json.dumps uses by default
_NON_FINITE: Final = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _float(value: float) -> str:
    text = repr(value)  # json.dumps writes a float as its repr, but NaN and infinities
    return text if text[-1].isdigit() else _NON_FINITE.get(text, text)


def _error(value: ErrorInfo) -> str:
    return (
        f'{{"type":{_STRING(value.type)},"message":{_STRING(value.message)},'
        f'"traceback":{_STRING(value.traceback)}}}'
    )


def _expression(hint: object, value: str) -> str | None:
    """Python code for the JSON text of ``value`` (code) of type ``hint``; None if unknown."""
    args = typing.get_args(hint)
    if type(None) in args and len(args) == 2:
        inner = _expression(next(a for a in args if a is not type(None)), value)
        return None if inner is None else f'("null" if {value} is None else {inner})'
    if hint is bool:
        return f'("true" if {value} else "false")'
    if hint is int:
        return f"str({value})"
    if hint is float:
        return f"_float({value})"
    if hint is str:
        return f"_string({value})"
    if hint is ErrorInfo:
        return f"_error({value})"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return f"_string({value}.value)"
    return None


def _encoder(cls: type[Any]) -> Callable[[Any], str]:
    """``json.dumps(to_dict(event), separators=(",", ":"))`` for events of ``cls``, faster."""
    hints = typing.get_type_hints(cls)
    names = (
        [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else cls._fields
    )
    template = ["{" + f'"type":{_STRING(cls.__name__)}'.replace("%", "%%")]
    values = []
    for name in names:
        value = _expression(hints[name], f"event.{name}")
        if value is None:  # a kind of field this does not know: the slow way, still right
            return lambda event: _ENCODE(to_dict(event))
        template.append(f",{_STRING(name)}:".replace("%", "%%") + "%s")
        values.append(value)
    source = (
        f"def encode(event):\n    return {''.join(template) + '}'!r} % ({', '.join(values)},)\n"
    )
    namespace: dict[str, Any] = {"_float": _float, "_string": _STRING, "_error": _error}
    exec(source, namespace)
    encode: Callable[[Any], str] = namespace["encode"]
    return encode


_ENCODERS: Final = {cls: _encoder(cls) for cls in EVENT_TYPES.values()}


class _Batch:
    """Events in a row, encoded once for every client: JSON lines as ``events.to_json`` writes.

    Their ``seq`` follow one another, from :attr:`first` to :attr:`last`.
    """

    __slots__ = ("data", "first", "last", "texts")

    def __init__(self, events: Sequence[PoolEvent]) -> None:
        encoders = _ENCODERS
        self.texts = [encoders[type(event)](event) for event in events]
        self.first = events[0].seq
        """The ``seq`` of the first event."""
        self.last = events[-1].seq
        """The ``seq`` of the last event."""
        self.data = ("\n".join(self.texts) + "\n").encode()
        """Every event's line."""

    def after(self, seq: int) -> bytes:
        """The lines of the events after ``seq`` (for a client whose snapshot has the others)."""
        return ("\n".join(self.texts[seq - self.first + 1 :]) + "\n").encode()


def _error_line(request_id: object, code: str, message: str) -> bytes:
    return _line({"type": "error", "id": request_id, "error": {"code": code, "message": message}})


class _Refused(Exception):
    """A request or a hello that gets an error answer: ``code`` is the protocol's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- the socket's directory and files -------------------------------------------


def _check_dir(directory: Path) -> None:
    """Create ``directory`` (0700) if missing; refuse it unless it is ours and 0700."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise PoolError(f"cannot create the socket directory {directory}: {exc.strerror}") from exc
    else:
        os.chmod(directory, 0o700)  # whatever the umask
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise PoolError(f"socket directory {directory} is not a directory")
    if info.st_uid != os.geteuid():
        raise PoolError(
            f"socket directory {directory} belongs to uid {info.st_uid}, not to this "
            f"process's uid {os.geteuid()}"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode != 0o700:
        raise PoolError(f"socket directory {directory} must have mode 0700, got {mode:04o}")


def _claim(path: Path) -> None:
    """Make room for a socket at ``path``: remove a stale one (and its files), never a live one."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise PoolError(f"{path} exists and is not a socket: not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        # Nothing listens: a service that died left it, and its files beside it.
        for left in (path, path.with_suffix(".json"), path.with_suffix(".token")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(left)
        return
    except FileNotFoundError:
        return  # removed meanwhile
    except BlockingIOError:
        pass  # its backlog is full: it is alive
    except OSError as exc:
        raise PoolError(f"cannot tell whether a service serves on {path}: {exc}") from exc
    finally:
        probe.close()
    raise PoolError(f"a live service already serves on {path}")


def _write_private(path: Path, text: str) -> tuple[int, int]:
    """Write ``text`` to ``path`` with mode 0600, atomically; returns its (device, inode)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    info = os.lstat(path)
    return info.st_dev, info.st_ino


def _remove_if_ours(path: Path, identity: tuple[int, int] | None) -> None:
    """Remove ``path`` if it is still the file we made (and not one put there since)."""
    if identity is None:
        return
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if (info.st_dev, info.st_ino) == identity:
        os.unlink(path)


def _check_tcp(tcp: object) -> tuple[str, int, int]:
    """``(host, port, family)`` of a loopback TCP address, or raise naming what is wrong."""
    if not (isinstance(tcp, tuple) and len(tcp) == 2):
        raise TypeError(f"tcp must be a (host, port) tuple or None, got {tcp!r}")
    host, port = tcp
    if not isinstance(host, str):
        raise TypeError(f"tcp host must be a str, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"tcp port must be an int, got {port!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"tcp port must be from 0 to 65535, got {port}")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ValueError(
            f"tcp address must be a loopback address (127.0.0.0/8 or ::1), got {host!r}"
        )
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return host, port, family


def _positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    seconds = check_timeout(name, value, allow_zero=allow_zero)
    if seconds is None:
        raise TypeError(f"{name} must be a number of seconds, got None")
    return seconds


def _at_least(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


# --- reading what a client sent -----------------------------------------------------


def _show(value: object) -> str:
    """``repr(value)``, cut short: error messages echo what a client sent."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _parse(line: bytes) -> object:
    """A line's JSON value; ``ValueError`` (never RecursionError) if it is not UTF-8 JSON."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _fields(
    params: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> None:
    unknown = sorted(set(params) - set(required) - set(optional))
    if unknown:
        raise _Refused("invalid", f"params: unexpected field {_show(unknown[0])}")
    for name in required:
        if name not in params:
            raise _Refused("invalid", f"params: missing field {name!r}")


def _job_id(params: dict[str, Any]) -> str:
    _fields(params, ("job_id",))
    job_id = params["job_id"]
    if not isinstance(job_id, str):
        raise _Refused("invalid", f"params.job_id: expected str, got {_show(job_id)}")
    return job_id


@contextlib.contextmanager
def _pool_call() -> Iterator[None]:
    """Turn the pool's refusals into the protocol's: bad arguments, then the pool's own."""
    try:
        yield
    except (TypeError, ValueError) as exc:
        raise _Refused("invalid", str(exc)) from exc
    except PoolError as exc:
        raise _Refused("pool", str(exc)) from exc


class _Signal(enum.Enum):
    """What a connection's line queue holds besides lines."""

    END = "end"
    """No more lines will come: end of file, or the connection is gone."""
    TOO_LONG = "too_long"
    """The next line was over the limit; nothing more is read."""


# --- one client -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _ServerSide:
    """What a connection asks of its server: the server's own methods, bound."""

    connected: Callable[[_Connection], None]
    disconnected: Callable[[_Connection], None]
    check_hello: Callable[[bytes, bool], str]
    welcome: Callable[[_Connection, str], None]
    request: Callable[[_Connection, bytes], Awaitable[None]]
    snapshot: Callable[[], tuple[int, bytes]]
    left: Callable[[_Connection], None]


class _Connection(asyncio.Protocol):
    """One client: the peer check, its hello, its requests in order, and its outbox.

    The reader task handles the hello, then each request in turn; the writer
    task hands the outbox to the socket. The outbox holds the protocol's own
    messages (never dropped) and batches of events (missed past the bound,
    then made up for with a gap marker and a snapshot).
    """

    def __init__(self, server: ControlServer, side: _ServerSide, *, tcp: bool) -> None:
        self._server = server  # its settings (max_line, timeouts, client_buffer)
        self._side = side
        self._tcp = tcp
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self.role: str | None = None
        """``read`` or ``control`` once welcomed."""
        self.done: asyncio.Future[None] = self._loop.create_future()
        """Resolved once the connection is gone."""
        # Reading.
        self._inbox = bytearray()
        self._scanned = 0
        self._lines: deque[bytes | _Signal] = deque()
        self._pending = 0
        self._reading = True
        self._ended = False
        self._line_waiter: asyncio.Future[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        # Writing.
        self._chunks: list[bytes] = []
        self._size = 0
        self._seq = 0  # the last event its stream has reached (by an event or a snapshot)
        self._resync = False
        self._limit = server.client_buffer
        self._wake: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._lost = False
        self._abort_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        # First of all, before the transport reads a byte: is the peer this user?
        if not self._tcp and not _same_user(transport):
            transport.abort()
            return
        self._transport = transport
        self._side.connected(self)
        self._writer = self._loop.create_task(self._write_loop(), name="wpool-control-writer")
        self._writer.add_done_callback(self._task_done)
        self._reader = self._loop.create_task(self._serve(), name="wpool-control-reader")
        self._reader.add_done_callback(self._task_done)

    def data_received(self, data: bytes) -> None:
        if self._ended:
            return
        buf = self._inbox
        buf += data
        limit = self._server.max_line
        pos = 0
        scan = self._scanned
        while (end := buf.find(b"\n", scan)) >= 0:
            if end - pos > limit:
                self._overflow()
                return
            line = bytes(buf[pos:end])
            pos = scan = end + 1
            if line.strip():  # blank lines are ignored
                self._lines.append(line)
                self._pending += len(line)
        if pos:
            del buf[:pos]
        if len(buf) > limit:
            self._overflow()
            return
        self._scanned = len(buf)
        if self._lines:
            self._wake_reader()
            if self._pending >= _PENDING_BYTES and self._reading:
                self._pause_reading()

    def eof_received(self) -> bool:
        self._end()
        return True  # half-closed: the answers are still to be written

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._end()
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        for waiter in (self._wake, self._drained, self._room):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        if not self.done.done():
            self.done.set_result(None)
        self._side.disconnected(self)

    def pause_writing(self) -> None:
        self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # --- reading ------------------------------------------------------------

    def _pause_reading(self) -> None:
        self._reading = False
        if self._transport is not None and not self._lost:
            self._transport.pause_reading()

    def _overflow(self) -> None:
        self._ended = True
        self._inbox.clear()
        self._lines.append(_Signal.TOO_LONG)
        self._wake_reader()
        if self._reading:
            self._pause_reading()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._lines.append(_Signal.END)
            self._wake_reader()

    def _wake_reader(self) -> None:
        waiter = self._line_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next_line(self) -> bytes | _Signal:
        while not self._lines:
            self._line_waiter = self._loop.create_future()
            try:
                await self._line_waiter
            finally:
                self._line_waiter = None
        line = self._lines.popleft()
        if isinstance(line, bytes):
            self._pending -= len(line)
            if not self._reading and not self._ended and self._pending < _PENDING_BYTES // 2:
                self._reading = True
                assert self._transport is not None
                self._transport.resume_reading()
        return line

    async def _serve(self) -> None:
        """The reader task: the hello, then every request in turn, then the close."""
        server = self._server
        try:
            try:
                async with asyncio.timeout(server.hello_timeout):
                    line = await self._next_line()
            except TimeoutError:
                message = f"no hello within {server.hello_timeout:g} s"
                self.send(_error_line(None, "auth", message))
                return
            if not isinstance(line, bytes):
                self._signalled(line)
                return
            try:
                role = self._side.check_hello(line, self._tcp)
            except _Refused as refused:
                self.send(_error_line(None, refused.code, refused.message))
                return
            self.role = role
            self._side.welcome(self, role)
            while True:
                line = await self._next_line()
                if not isinstance(line, bytes):
                    self._signalled(line)
                    return
                while self._size >= self._limit and not self._lost:
                    # The client reads none of its answers: take none of its requests.
                    self._room = self._loop.create_future()
                    try:
                        await self._room
                    finally:
                        self._room = None
                await self._side.request(self, line)
        finally:
            self.close()

    def _signalled(self, signal: _Signal) -> None:
        if signal is _Signal.TOO_LONG:
            message = f"line is over {self._server.max_line} bytes"
            self.send(_error_line(None, "too_long", message))

    # --- the outbox ---------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue one of the protocol's own messages: it is never dropped."""
        if self._lost:
            return
        self._chunks.append(data)
        self._size += len(data)
        self._wake_writer()

    def start(self, seq: int, snapshot: bytes) -> None:
        """Queue the first snapshot: the events after ``seq`` follow it."""
        self._seq = seq
        self.send(snapshot)

    def send_events(self, batch: _Batch) -> None:
        """Queue the events of ``batch`` this client has not had, or miss them if it is full.

        Those its snapshot includes are left out; while the client is to
        resync, every event is (the next snapshot will include them).
        """
        if self._resync or batch.last <= self._seq:
            return
        if self._size >= self._limit:
            self.resync()
            return
        data = batch.data if batch.first > self._seq else batch.after(self._seq)
        self._chunks.append(data)
        self._size += len(data)
        self._seq = batch.last
        self._wake_writer()

    def skip_to(self, seq: int) -> None:
        """The client has a snapshot up to ``seq``: the events it includes are left out."""
        self._seq = max(self._seq, seq)

    def resync(self) -> None:
        """The client misses events from now on: once it reads, a gap marker and a snapshot."""
        self._resync = True
        self._wake_writer()

    def _wake_writer(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _take(self) -> bytes:
        chunks = self._chunks
        if self._resync:
            # Taken only now that the client reads again; the events it missed
            # are those between its last one and the snapshot.
            seq, snapshot = self._side.snapshot()
            chunks.append(_line({"type": "gap", "missed": seq - self._seq}))
            chunks.append(snapshot)
            self._seq = seq
            self._resync = False
        data = b"".join(chunks)
        chunks.clear()
        self._size = 0
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)
        return data

    async def _write_loop(self) -> None:
        """The writer task: the outbox to the socket, never faster than the client reads."""
        transport = self._transport
        assert transport is not None
        while True:
            while not (self._chunks or self._resync or self._closing or self._lost):
                self._wake = self._loop.create_future()
                try:
                    await self._wake
                finally:
                    self._wake = None
            if self._lost:
                return
            data = self._take()
            if data:
                transport.write(data)
            if self._closing and not self._chunks and not self._resync:
                transport.close()  # once what the transport holds has gone
                return
            drained = self._drained
            if drained is not None:
                await drained

    # --- closing ------------------------------------------------------------

    def close(self) -> None:
        """Stop reading; write what is queued, then close (cut after ``close_timeout``)."""
        if self._closing or self._transport is None:
            return
        self._closing = True
        self._side.left(self)
        if not self._lost:
            if self._reading:
                self._pause_reading()
            self._abort_timer = self._loop.call_later(
                self._server.close_timeout, self._transport.abort
            )
        self._wake_writer()

    def cancel(self) -> None:
        """Close from the server's side: a request in progress is cancelled."""
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        self.close()

    def abort(self) -> None:
        """Cut the connection now, whatever is left to write."""
        if self._transport is not None and not self._lost:
            self._transport.abort()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # A bug, not the client's doing: told to the loop's handler, and the client cut.
            self._loop.call_exception_handler(
                {"message": f"control connection: {task.get_name()} failed", "exception": exc}
            )
            self.abort()


def _same_user(transport: asyncio.Transport) -> bool:
    """Whether the peer of a Unix socket runs as this process's user (``SO_PEERCRED``)."""
    sock = transport.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return False  # gone already, or nothing to tell: refused either way
    _pid, uid, _gid = _PEERCRED.unpack(creds)
    return bool(uid == os.geteuid())


# --- requests ------------------------------------------------------------------------


class _Requests:
    """What each request method does to the pool, and the checks of what a client sent."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self._background: set[asyncio.Task[Any]] = set()

    async def answer(self, conn: _Connection, line: bytes) -> None:
        """Answer one request line of ``conn`` with a result or an error."""
        request_id: object = None
        try:
            try:
                request = _parse(line)
            except ValueError as exc:
                raise _Refused("bad_request", f"not JSON: {exc}") from None
            if not isinstance(request, dict):
                kind = type(request).__name__
                raise _Refused("bad_request", f"a request is a JSON object, got {kind}")
            if "id" not in request:
                raise _Refused("bad_request", "missing field 'id'")
            given = request["id"]
            if (
                isinstance(given, bool)
                or not isinstance(given, int | float | str)
                or (isinstance(given, float) and not math.isfinite(given))
            ):
                raise _Refused(
                    "bad_request", f"id: expected a number or a string, got {_show(given)}"
                )
            request_id = given
            unknown = sorted(set(request) - _REQUEST_FIELDS)
            if unknown:
                raise _Refused("bad_request", f"unexpected field {_show(unknown[0])}")
            method = request.get("method")
            if method is None:
                raise _Refused("bad_request", "missing field 'method'")
            if not isinstance(method, str):
                raise _Refused("bad_request", f"method: expected str, got {_show(method)}")
            params = request.get("params", {})
            if not isinstance(params, dict):
                raise _Refused("bad_request", f"params: expected an object, got {_show(params)}")
            spec = _METHODS.get(method)
            if spec is None:
                raise _Refused("unknown_method", f"no method {_show(method)}")
            if spec.control and conn.role != "control":
                raise _Refused(
                    "forbidden", f"{method} needs the control role; this connection is read"
                )
            result = await spec.run(self, conn, params)
        except _Refused as refused:
            conn.send(_error_line(request_id, refused.code, refused.message))
        else:
            conn.send(_line({"type": "result", "id": request_id, "result": result}))

    async def snapshot(self, conn: _Connection, params: dict[str, Any]) -> object:
        _fields(params, ())
        snapshot = self._pool.snapshot()
        conn.skip_to(snapshot.seq)  # the events it includes are left out after it, as ever
        return wire.snapshot_to_dict(snapshot)

    async def dead_letters(self, conn: _Connection, params: dict[str, Any]) -> object:
        _fields(params, ())
        return [wire.dead_letter_to_dict(letter) for letter in self._pool.dead_letters()]

    async def job(self, conn: _Connection, params: dict[str, Any]) -> object:
        job_id = _job_id(params)
        handle = self._pool.job(job_id)
        if handle is not None:
            error = handle.error
            output = handle.output
            return {
                "job": wire.job_to_dict(handle.job),
                "state": handle.state.value,
                "attempts": handle.attempts,
                "worker_id": handle.worker_id,
                "error": None if error is None else wire.error_to_dict(error),
                "started_at": handle.started_at,
                "ended_at": handle.ended_at,
                "output": None if output is None else to_dict(output),
            }
        for letter in reversed(self._pool.dead_letters()):
            if letter.job.id == job_id:
                return {
                    "job": wire.job_to_dict(letter.job),
                    "state": letter.state.value,
                    "attempts": letter.attempts,
                    "worker_id": None,
                    "error": None if letter.error is None else wire.error_to_dict(letter.error),
                    "started_at": None,
                    "ended_at": letter.at,
                    "output": None,
                }
        return None

    async def submit(self, conn: _Connection, params: dict[str, Any]) -> object:
        _fields(params, ("jobs",))
        given = params["jobs"]
        if not isinstance(given, list):
            raise _Refused("invalid", f"params.jobs: expected a list, got {_show(given)}")
        try:
            jobs = [wire.job_from_dict(item, f"params.jobs[{i}]") for i, item in enumerate(given)]
        except ValueError as exc:
            raise _Refused("invalid", str(exc)) from None
        accepted: list[str] = []
        rejected: list[dict[str, str]] = []
        submit = self._pool.submit_nowait
        for job in jobs:
            try:
                submit(job)
            except (QueueFull, ValueError) as exc:
                rejected.append({"id": job.id, "error": str(exc)})
            except PoolError as exc:
                if accepted or rejected:
                    rejected.append({"id": job.id, "error": str(exc)})
                else:  # closed, or not running: it refuses every job alike
                    raise _Refused("pool", str(exc)) from None
            else:
                accepted.append(job.id)
        return {"accepted": accepted, "rejected": rejected}

    async def resize(self, conn: _Connection, params: dict[str, Any]) -> object:
        _fields(params, ("workers",))
        workers = params["workers"]
        with _pool_call():
            await self._pool.resize(workers)
        return {"target": workers}

    async def pause(self, conn: _Connection, params: dict[str, Any]) -> object:
        _fields(params, ())
        with _pool_call():
            await self._pool.pause()
        return {}

    async def resume(self, conn: _Connection, params: dict[str, Any]) -> object:
        _fields(params, ())
        with _pool_call():
            await self._pool.resume()
        return {}

    async def shutdown(self, conn: _Connection, params: dict[str, Any]) -> object:
        _fields(params, (), ("grace", "drain", "cancel_grace"))
        with _pool_call():
            grace = check_timeout("grace", params.get("grace"), allow_zero=True)
            cancel_grace = check_timeout(
                "cancel_grace", params.get("cancel_grace"), allow_zero=True
            )
        drain = params.get("drain", True)
        if not isinstance(drain, bool):
            raise _Refused("invalid", f"params.drain: expected bool, got {_show(drain)}")
        # Begun, not awaited: its progress and its end reach the client as events.
        task = self._loop.create_task(
            self._pool.shutdown(grace, drain, cancel_grace), name="wpool-control-shutdown"
        )
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return {"begun": True}

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._loop.call_exception_handler(
                {
                    "message": "a shutdown begun over the control socket failed",
                    "exception": task.exception(),
                }
            )

    async def cancel(self, conn: _Connection, params: dict[str, Any]) -> object:
        handle = self._pool.job(_job_id(params))
        return {"cancelled": handle.cancel() if handle is not None else False}

    async def resubmit(self, conn: _Connection, params: dict[str, Any]) -> object:
        job_id = _job_id(params)
        with _pool_call():
            handle = await self._pool.resubmit(job_id, timeout=0)
        return {"job_id": handle.id}


# --- the server -------------------------------------------------------------------


class ControlServer:
    """Serves one pool's events and controls on a Unix socket (and on loopback TCP).

    Made and started by :meth:`Pool.serve <pool.Pool.serve>`; the protocol is
    ``docs/protocol.md``. It closes when the pool stops (once the pool's last
    event has been sent to every client), or with :meth:`close`; either way
    it closes every connection and removes its socket and files. ``async
    with server:`` closes it at the end of the block.
    """

    def __init__(
        self,
        pool: Pool,
        path: str | os.PathLike[str] | None = None,
        *,
        tcp: tuple[str, int] | None = None,
        token_file: str | os.PathLike[str] | None = None,
        hello_timeout: float = HELLO_TIMEOUT,
        max_line: int = MAX_LINE,
        client_buffer: int = CLIENT_BUFFER,
        events_buffer: int = EVENTS_BUFFER,
        flush_interval: float = FLUSH_INTERVAL,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        """Check the settings; nothing is bound until :meth:`start`.

        Args:
            pool: The pool to serve.
            path: The Unix socket; by default :func:`default_socket_path` of
                the pool's name. Its directory is created with mode 0700, and
                must be this user's and of mode 0700 if it exists.
            tcp: ``(host, port)`` to listen on as well: a loopback address
                only; port 0 picks a free one (see :attr:`address`).
            token_file: With ``tcp``, where the token is written (mode 0600);
                by default beside the socket, ``<name>.token``.
            hello_timeout: Seconds a client has to send its hello.
            max_line: The longest line a client may send, in bytes.
            client_buffer: Bytes of events a client's outbox holds.
            events_buffer: Events the server's subscription holds between batches.
            flush_interval: Seconds between two batches of events, at the most.
            close_timeout: Seconds a closing connection has to take what is left.

        Raises:
            TypeError, ValueError: An argument is wrong: ``tcp`` is not a
                loopback address, ``token_file`` is given without ``tcp``, the
                path is too long for a Unix socket...
        """
        self._pool = pool
        self._side = _ServerSide(
            connected=self._connected,
            disconnected=self._disconnected,
            check_hello=self._check_hello,
            welcome=self._welcome,
            request=self._request,
            snapshot=self._snapshot,
            left=self._left,
        )
        if path is None:
            socket_path = default_socket_path(pool.name)
        else:
            socket_path = Path(os.fspath(path)).absolute()
        if len(os.fsencode(socket_path)) > _MAX_UNIX_PATH:
            raise ValueError(
                f"socket path is too long for a Unix socket (at most {_MAX_UNIX_PATH} "
                f"bytes): {socket_path}"
            )
        self._path = socket_path
        self._info_path = socket_path.with_suffix(".json")
        self._tcp = None if tcp is None else _check_tcp(tcp)
        if token_file is not None and tcp is None:
            raise ValueError("token_file is only used with tcp")
        self._token_path: Path | None = None
        if tcp is not None:
            self._token_path = (
                socket_path.with_suffix(".token")
                if token_file is None
                else Path(os.fspath(token_file)).absolute()
            )
        self.hello_timeout = _positive("hello_timeout", hello_timeout)
        """Seconds a client has to send its hello."""
        self.max_line = _at_least("max_line", max_line, 1)
        """The longest line a client may send, in bytes, not counting its newline."""
        self.client_buffer = _at_least("client_buffer", client_buffer, 1)
        """Bytes of events a client's outbox holds before it misses events."""
        self.close_timeout = _positive("close_timeout", close_timeout)
        """Seconds a closing connection has to take what is left before it is cut."""
        self._events_buffer = _at_least("events_buffer", events_buffer, 1)
        self._flush_interval = _positive("flush_interval", flush_interval, allow_zero=True)

        self._token = ""
        self._address: tuple[str, int] | None = None
        self._listeners: list[asyncio.Server] = []
        self._files: dict[Path, tuple[int, int]] = {}
        self._sub: Subscription | None = None
        self._connections: set[_Connection] = set()
        self._clients: set[_Connection] = set()
        self._broadcaster: asyncio.Task[None] | None = None
        self._requests: _Requests | None = None
        self._snapshot_taken: tuple[int, bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closing = False
        self._done: asyncio.Future[None] | None = None

    # --- what it serves -----------------------------------------------------

    @property
    def pool(self) -> Pool:
        """The pool served."""
        return self._pool

    @property
    def path(self) -> Path:
        """The Unix socket's path."""
        return self._path

    @property
    def info_path(self) -> Path:
        """The ``<name>.json`` file beside the socket that says who serves there."""
        return self._info_path

    @property
    def address(self) -> tuple[str, int] | None:
        """The TCP ``(host, port)`` listened on (the real port when 0 was asked), or None."""
        return self._address

    @property
    def token_path(self) -> Path | None:
        """The file that holds the TCP token (mode 0600), or None without TCP."""
        return self._token_path

    @property
    def clients(self) -> int:
        """How many clients are connected and welcomed."""
        return len(self._clients)

    @property
    def closed(self) -> bool:
        """Whether the server has begun closing (by :meth:`close`, or as the pool stopped)."""
        return self._closing

    # --- starting -----------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket (and the TCP port), write the files, and start serving.

        Raises:
            PoolError: The server was started before; the pool has stopped;
                a live service already serves on the path; the socket's
                directory is not this user's or not of mode 0700; the path is
                taken by something that is not a socket.
            OSError: The socket or the TCP port cannot be bound.
        """
        if self._started:
            raise PoolError("the control server was already started")
        pool = self._pool
        if pool.phase.is_final:
            raise PoolError(f"cannot serve: pool is {pool.phase.value}")
        if not hasattr(socket, "SO_PEERCRED"):
            raise PoolError("cannot serve: this system cannot tell a socket peer's user")
        self._started = True
        loop = self._loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._requests = _Requests(pool)
        try:
            await self._listen_unix(loop)
            tcp_text = None
            if self._tcp is not None:
                tcp_text = await self._listen_tcp(loop, *self._tcp)
            info = {
                "name": pool.name,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "socket": str(self._path),
                "tcp": tcp_text,
                "started": time.time(),
            }
            self._files[self._info_path] = _write_private(self._info_path, json.dumps(info) + "\n")
            self._sub = pool.events(maxsize=1)  # nobody is attached: only the end matters
            self._broadcaster = loop.create_task(self._broadcast(), name="wpool-control")
        except BaseException:
            self._teardown()
            self._done.set_result(None)
            raise

    async def _listen_unix(self, loop: asyncio.AbstractEventLoop) -> None:
        path = self._path
        _check_dir(path.parent)
        _claim(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(path))
        except OSError as exc:
            listener.close()
            if exc.errno == errno.EADDRINUSE:
                raise PoolError(f"a live service already serves on {path}") from exc
            raise
        info = os.lstat(path)
        self._files[path] = (info.st_dev, info.st_ino)
        try:
            os.chmod(path, 0o600)
            listener.listen(100)
            self._listeners.append(
                await loop.create_unix_server(
                    lambda: _Connection(self, self._side, tcp=False), sock=listener
                )
            )
        except BaseException:
            listener.close()
            raise

    async def _listen_tcp(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int, family: int
    ) -> str:
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(100)
            bound_host, bound_port = listener.getsockname()[:2]
            self._address = (bound_host, bound_port)
            self._token = secrets.token_urlsafe(32)
            assert self._token_path is not None
            self._files[self._token_path] = _write_private(self._token_path, self._token + "\n")
            self._listeners.append(
                await loop.create_server(
                    lambda: _Connection(self, self._side, tcp=True), sock=listener
                )
            )
        except BaseException:
            listener.close()
            raise
        return (
            f"[{bound_host}]:{bound_port}"
            if family == socket.AF_INET6
            else f"{bound_host}:{bound_port}"
        )

    # --- connections --------------------------------------------------------

    def _connected(self, conn: _Connection) -> None:
        self._connections.add(conn)
        if self._closing:
            conn.cancel()

    def _left(self, conn: _Connection) -> None:
        """``conn`` gets no more events (it is closing)."""
        if conn in self._clients:
            self._clients.discard(conn)
            if not self._clients and not self._closing:
                self._subscribe(1)

    def _disconnected(self, conn: _Connection) -> None:
        self._left(conn)
        self._connections.discard(conn)

    def _check_hello(self, line: bytes, tcp: bool) -> str:
        """The role a hello asks for, or :class:`_Refused` saying what is wrong with it."""
        try:
            hello = _parse(line)
        except ValueError:
            raise _Refused("auth", "expected a hello, got a line that is not JSON") from None
        if not isinstance(hello, dict) or hello.get("hello") != "wpool":
            raise _Refused(
                "auth",
                'expected a hello: {"hello": "wpool", "version": 1, "role": "read" or "control"}',
            )
        unknown = sorted(set(hello) - _HELLO_FIELDS)
        if unknown:
            raise _Refused("bad_request", f"hello: unexpected field {_show(unknown[0])}")
        if tcp:
            token = hello.get("token")
            if token is None:
                raise _Refused("auth", "a token is needed over TCP")
            if not isinstance(token, str) or not hmac.compare_digest(
                token.encode(), self._token.encode()
            ):
                raise _Refused("auth", "wrong token")
        version = hello.get("version")
        if type(version) is not int or version != PROTOCOL_VERSION:
            raise _Refused(
                "version",
                f"protocol version {_show(version)} is not supported; "
                f"this server speaks {PROTOCOL_VERSION}",
            )
        role = hello.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise _Refused(
                "bad_request", f"hello.role: expected 'read' or 'control', got {_show(role)}"
            )
        return role

    def _welcome(self, conn: _Connection, role: str) -> None:
        """``conn`` said hello: a welcome and a snapshot, then the events after it."""
        pool = self._pool
        if not self._clients:
            self._subscribe(self._events_buffer)
        conn.send(
            _line(
                {
                    "type": "welcome",
                    "version": PROTOCOL_VERSION,
                    "role": role,
                    "pool": {
                        "name": pool.name,
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "max_workers": pool.max_workers,
                        "queue_size": pool.queue_size,
                        "grace": pool.grace,
                        "cancel_grace": pool.cancel_grace,
                    },
                }
            )
        )
        conn.start(*self._snapshot())
        self._clients.add(conn)

    # --- events -------------------------------------------------------------

    def _subscribe(self, maxsize: int) -> None:
        """Swap the server's subscription for one of ``maxsize`` (1 while nobody is attached)."""
        old = self._sub
        self._sub = self._pool.events(maxsize=maxsize)
        if old is not None:
            old.close()  # wakes the broadcaster, which takes the new one

    def _pump(self) -> None:
        """Send what the server's subscription holds to every client, encoded once."""
        sub = self._sub
        if sub is None:
            return
        events = sub.drain()
        clients = self._clients
        if not events or not clients:
            return
        cut = len(events)
        for index, event in enumerate(events):
            if type(event) is EventsDropped:
                cut = index
                break
        if cut:
            batch = _Batch(events if cut == len(events) else events[:cut])
            for conn in clients:
                conn.send_events(batch)
        if cut < len(events):
            # The server itself fell behind the pool: every client resyncs.
            for conn in clients:
                conn.resync()

    def _snapshot(self) -> tuple[int, bytes]:
        """A snapshot of the pool and its message, encoded; shared within one loop turn.

        Any snapshot joins up with the events that follow, as each client
        leaves out those its snapshot includes.
        """
        taken = self._snapshot_taken
        if taken is None:
            snapshot = self._pool.snapshot()
            message = _line({"type": "snapshot", "snapshot": wire.snapshot_to_dict(snapshot)})
            taken = self._snapshot_taken = (snapshot.seq, message)
            assert self._loop is not None
            self._loop.call_soon(self._forget_snapshot)  # next turn, its time and figures are old
        return taken

    def _forget_snapshot(self) -> None:
        self._snapshot_taken = None

    async def _broadcast(self) -> None:
        """The server's task: batches of events to the clients, until the pool stops."""
        try:
            while True:
                sub = self._sub
                assert sub is not None
                more = await sub.wait()
                if sub is not self._sub:
                    continue  # swapped as a client came or the last one left
                if not more:
                    break  # the pool has stopped and every event has been sent
                self._pump()
                if self._flush_interval:
                    # A batch at most every so often: past what the subscription
                    # holds between two, the pool skips the events (and clients
                    # resync), so the server's work is bounded, not the pool's.
                    await asyncio.sleep(self._flush_interval)
        except asyncio.CancelledError:
            if not self._closing:
                # Cancelled from outside (the loop is ending): leave no files behind.
                self._teardown()
                for conn in list(self._connections):
                    conn.abort()
            raise
        self.close()

    # --- requests -----------------------------------------------------------

    async def _request(self, conn: _Connection, line: bytes) -> None:
        assert self._requests is not None
        await self._requests.answer(conn, line)

    # --- closing ------------------------------------------------------------

    def close(self) -> None:
        """Stop serving: no new connection; each one gets what is queued for it and is closed.

        The socket and the files are removed at once; :meth:`wait_closed`
        waits for the connections. Closing a closed server does nothing.
        """
        if self._closing or not self._started:
            return
        self._closing = True
        self._teardown()
        sub = self._sub
        if sub is not None:
            sub.close()
        broadcaster = self._broadcaster
        if broadcaster is not None and broadcaster is not asyncio.current_task():
            broadcaster.cancel()
        for conn in list(self._connections):
            conn.cancel()
        assert self._loop is not None
        self._loop.create_task(self._finish_close(), name="wpool-control-close")

    def _teardown(self) -> None:
        """Stop listening and remove the socket and the files that are still ours."""
        for listener in self._listeners:
            listener.close()
        files, self._files = self._files, {}
        for path, identity in files.items():
            _remove_if_ours(path, identity)

    async def _finish_close(self) -> None:
        try:
            pending = [conn.done for conn in self._connections]
            if pending:
                await asyncio.wait(pending)  # each is cut after close_timeout at the most
            for listener in self._listeners:
                await listener.wait_closed()
        finally:
            if self._done is not None and not self._done.done():
                self._done.set_result(None)

    async def wait_closed(self) -> None:
        """Wait until the server has closed and every connection is gone."""
        if self._done is not None:
            await asyncio.shield(self._done)

    async def __aenter__(self) -> ControlServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        state = "closed" if self._closing else "serving" if self._started else "created"
        clients = len(self._clients)
        return f"<ControlServer {self._pool.name!r} [{state}] {self._path} clients={clients}>"


@dataclasses.dataclass(frozen=True, slots=True)
class _Method:
    """A request method: whether it needs the control role, and what runs it."""

    control: bool
    run: Callable[[_Requests, _Connection, dict[str, Any]], Awaitable[object]]


_METHODS: Final[dict[str, _Method]] = {
    "snapshot": _Method(False, _Requests.snapshot),
    "dead_letters": _Method(False, _Requests.dead_letters),
    "job": _Method(False, _Requests.job),
    "submit": _Method(True, _Requests.submit),
    "resize": _Method(True, _Requests.resize),
    "pause": _Method(True, _Requests.pause),
    "resume": _Method(True, _Requests.resume),
    "shutdown": _Method(True, _Requests.shutdown),
    "cancel": _Method(True, _Requests.cancel),
    "resubmit": _Method(True, _Requests.resubmit),
}
"""Every request method, by the name a request gives."""
