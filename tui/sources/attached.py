"""A pool in another process, over its control socket (see ``docs/protocol.md``).

:class:`AttachedSource` speaks the protocol's client side: a hello, then the
snapshot and the live events; requests for the controls. When the service
goes away it keeps the last state, says so in :attr:`~AttachedSource.status`,
and reconnects with backoff; once back, the dashboard resyncs from the
fresh snapshot. :func:`discover` lists the pools a user can attach to.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pool import DeadLetter, PoolSnapshot
from pool import events as ev
from pool.control import default_socket_dir
from pool.wire import (
    dead_letter_from_dict,
    error_from_dict,
    job_from_dict,
    snapshot_from_dict,
)

from .base import Control, EventFeed, JobView, Source, SourceError

__all__ = (
    "PROTOCOL_VERSION",
    "AttachedSource",
    "PoolListing",
    "discover",
    "socket_dir",
)

PROTOCOL_VERSION: Final = 1

LINE_LIMIT: Final = 1 << 20
"""The longest line the protocol allows (1 MiB)."""

REQUEST_TIMEOUT: Final = 10.0
"""Seconds a request may wait for its answer before it is shown as unanswered."""

BACKOFF: Final = (0.25, 0.5, 1.0, 2.0, 4.0)
"""Seconds between reconnection attempts, the last one repeated."""


def socket_dir() -> Path:
    """Where services put their sockets (``Pool.serve``'s default)."""
    return default_socket_dir()


def resolve(target: str | None) -> Path:
    """The socket a name or a path means (no name: the only one there is).

    Raises:
        SourceError: Nothing is served, or the name is ambiguous or unknown.
    """
    if target is not None and ("/" in target or target.endswith(".sock")):
        return Path(target)
    folder = socket_dir()
    if target is not None:
        path = folder / f"{target}.sock"
        if not path.exists():
            raise SourceError(f"no pool named {target!r} is served here (looked in {folder})")
        return path
    found = sorted(folder.glob("*.sock")) if folder.is_dir() else []
    if not found:
        raise SourceError(f"no pool is served here (looked in {folder}); see wpool-tui ls")
    if len(found) > 1:
        names = ", ".join(p.stem for p in found)
        raise SourceError(f"several pools are served here ({names}): name one")
    return found[0]


class _Feed:
    """The events received and not yet drained, bounded; overflow makes a resync."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.buffer: deque[ev.PoolEvent] = deque()
        self.closed = False
        self.missed = 0

    def push(self, event: ev.PoolEvent) -> bool:
        """Add an event; False once the feed is full (the caller resyncs it)."""
        if len(self.buffer) >= self.maxsize:
            self.missed += 1
            return False
        self.buffer.append(event)
        return True

    def resync(self, snapshot: PoolSnapshot, missed: int) -> None:
        """Everything before ``snapshot`` is replaced by it: the dashboard resyncs."""
        self.buffer.clear()
        self.buffer.append(ev.EventsDropped(seq=snapshot.seq, at=snapshot.at, missed=missed))
        self.missed = 0

    def drain(self) -> list[ev.PoolEvent]:
        out = list(self.buffer)
        self.buffer.clear()
        return out

    def pending(self) -> int:
        return len(self.buffer)

    def close(self) -> None:
        self.closed = True


class Unreachable(SourceError):
    """Nothing answered at an endpoint as a wpool service (``reason`` says what)."""

    def __init__(self, endpoint: Endpoint, reason: str) -> None:
        super().__init__(f"cannot attach to {endpoint}: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect: a Unix socket, or TCP on loopback with a token."""

    path: Path | None = None
    host: str = ""
    port: int = 0
    token: str = ""

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else f"{self.host}:{self.port}"


class AttachedSource(Source):
    """A pool served by another process, watched and (with the control role) driven.

    Args:
        endpoint: Where the service listens.
        read_only: Ask for the read role: the service refuses every control.
        reconnect: When the service goes away, try again with backoff.
        backoff: Seconds between reconnection attempts, the last one repeated.
        clock: This side's monotonic clock; the service's pool time is read
            as this clock plus the offset seen at the last snapshot.
    """

    remote = True

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        read_only: bool = False,
        reconnect: bool = True,
        backoff: Sequence[float] = BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not backoff or min(backoff) < 0:
            raise ValueError(f"backoff must be seconds >= 0, at least one, got {backoff!r}")
        self.endpoint = endpoint
        self.read_only = read_only
        self._reconnect = reconnect
        self._backoff = tuple(backoff)
        self._clock = clock
        self._pool: dict[str, Any] = {}
        self._snapshot: PoolSnapshot | None = None
        self._offset = 0.0  # the service's pool clock minus ours
        self._feeds: list[_Feed] = []
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._status = "connecting"
        self._stopped: asyncio.Future[None] | None = None
        self._closing = False
        self._refreshing: asyncio.Task[None] | None = None
        self._generation = 0
        self._pool_seen: tuple[object, ...] = ()
        self.controls = frozenset() if read_only else frozenset(Control)

    @classmethod
    def from_target(
        cls,
        target: str | None,
        *,
        tcp: str | None = None,
        token_file: str | None = None,
        read_only: bool = False,
    ) -> AttachedSource:
        """The source for ``wpool-tui attach``'s arguments.

        Raises:
            SourceError: The target or the token cannot be found.
        """
        if tcp is None:
            return cls(Endpoint(path=resolve(target)), read_only=read_only)
        host, colon, port = tcp.rpartition(":")
        if not colon or not port.isdigit():
            raise SourceError(f"--tcp must be HOST:PORT, got {tcp!r}")
        if token_file is None:
            raise SourceError("--tcp needs --token-file (the service wrote the token there)")
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SourceError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        return cls(
            Endpoint(host=host.strip("[]"), port=int(port), token=token), read_only=read_only
        )

    # --- what the dashboard reads ------------------------------------------------

    @property
    def title(self) -> str:
        return attached_title(self._pool, self.endpoint)

    @property
    def status(self) -> str:
        return self._status

    @property
    def connected(self) -> bool:
        return self._writer is not None

    @property
    def info(self) -> dict[str, Any]:
        """What the service's welcome said of its pool (name, pid, host...)."""
        return dict(self._pool)

    @property
    def max_workers(self) -> int:
        return int(self._pool.get("max_workers", 0))

    @property
    def grace(self) -> float:
        return float(self._pool.get("grace", 10.0))

    @property
    def cancel_grace(self) -> float:
        return float(self._pool.get("cancel_grace", 2.0))

    def now(self) -> float:
        """The service's pool clock, as estimated at the last snapshot."""
        return self._clock() + self._offset

    def snapshot(self) -> PoolSnapshot:
        if self._snapshot is None:
            raise SourceError("not attached yet")
        return self._snapshot

    def events(self, maxsize: int) -> EventFeed:
        feed = _Feed(maxsize)
        self._feeds.append(feed)
        return feed

    # --- the connection -------------------------------------------------------------

    async def start(self) -> None:
        """Connect, and read the welcome and the first snapshot.

        Raises:
            SourceError: Nothing answers there, or the service refuses us.
        """
        if self._reader_task is not None:
            return  # attached already (the command connects before the dashboard mounts)
        self._stopped = asyncio.get_running_loop().create_future()
        reader = await self._connect()
        self._reader_task = asyncio.ensure_future(self._run(reader))

    async def _connect(self) -> asyncio.StreamReader:
        endpoint = self.endpoint
        try:
            if endpoint.path is not None:
                reader, writer = await asyncio.open_unix_connection(
                    str(endpoint.path), limit=LINE_LIMIT + 1
                )
            else:
                reader, writer = await asyncio.open_connection(
                    endpoint.host, endpoint.port, limit=LINE_LIMIT + 1
                )
        except OSError as exc:
            raise Unreachable(endpoint, exc.strerror or type(exc).__name__) from None
        hello: dict[str, Any] = {
            "hello": "wpool",
            "version": PROTOCOL_VERSION,
            "role": "read" if self.read_only else "control",
        }
        if endpoint.token:
            hello["token"] = endpoint.token
        try:
            writer.write(_line(hello))
            await writer.drain()
            welcome = await asyncio.wait_for(_read(reader), REQUEST_TIMEOUT)
            if welcome.get("type") == "error":
                error = welcome.get("error") or {}
                raise SourceError(f"{endpoint} refused us: {error.get('message', error)}")
            if welcome.get("type") != "welcome":
                raise SourceError(f"{endpoint} did not answer as a wpool service")
            first = await asyncio.wait_for(_read(reader), REQUEST_TIMEOUT)
            snapshot = snapshot_from_dict(
                first.get("snapshot") if first.get("type") == "snapshot" else None
            )
        except (OSError, EOFError, TimeoutError, ValueError) as exc:
            writer.close()
            raise Unreachable(endpoint, str(exc) or type(exc).__name__) from None
        except BaseException:
            writer.close()
            raise
        pool = welcome.get("pool")
        self._pool = pool if isinstance(pool, dict) else {}
        self._writer = writer
        self._take_snapshot(snapshot)
        self._status = ""
        return reader

    @property
    def generation(self) -> int:
        return self._generation

    def _take_snapshot(self, snapshot: PoolSnapshot) -> None:
        first = self._snapshot is None
        pool = (self._pool.get("pid"), self._pool.get("host"), snapshot.started_at)
        if pool != self._pool_seen:
            if not first:
                self._generation += 1  # another service's pool (or another run of it)
            self._pool_seen = pool
        self._snapshot = snapshot
        self._offset = snapshot.at - self._clock()
        if not first:
            for feed in self._feeds:
                feed.resync(snapshot, feed.missed)

    async def _run(self, reader: asyncio.StreamReader) -> None:
        """Read the service's lines; when it goes away, reconnect with backoff."""
        backoff = self._backoff
        while True:
            try:
                await self._read_lines(reader)
            except EOFError:
                stopped = self._stopped is not None and self._stopped.done()
                why = "the service ended, its pool stopped" if stopped else "the service went away"
            except (OSError, ValueError) as exc:
                why = f"lost the service ({exc or type(exc).__name__})"
            self._lost(why)
            if self._closing or not self._reconnect:
                return
            # The last state stays on screen, under a banner that says why
            # and how the reconnecting goes; the snapshot on return resyncs it.
            self._status = f"disconnected: {why}; reconnecting"
            for attempt in itertools.count():
                await asyncio.sleep(backoff[min(attempt, len(backoff) - 1)])
                try:
                    reader = await self._connect()
                except SourceError as exc:
                    reason = exc.reason if isinstance(exc, Unreachable) else str(exc)
                    self._status = (
                        f"disconnected: {why}; reconnecting (tried {attempt + 1}x: {reason})"
                    )
                    continue
                break

    def _lost(self, why: str) -> None:
        self._status = f"disconnected: {why}"
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(SourceError(f"no answer: {why}"))

    async def _read_lines(self, reader: asyncio.StreamReader) -> None:
        gap = False
        while True:
            data = await _read(reader)
            kind = data.get("type")
            if kind == "snapshot":
                self._take_snapshot(snapshot_from_dict(data.get("snapshot")))
                gap = False
            elif kind == "gap":
                gap = True  # the snapshot that follows resyncs the dashboard
            elif kind in ("result", "error"):
                self._answer(data)
            elif not gap:
                event = ev.from_dict(data)
                for feed in self._feeds:
                    if not feed.closed and not feed.push(event) and self._refreshing is None:
                        # The dashboard fell behind: a fresh picture replaces what it missed.
                        self._refreshing = asyncio.ensure_future(self._refresh())
                if isinstance(event, ev.PoolStopped):
                    stopped = self._stopped
                    if stopped is not None and not stopped.done():
                        stopped.set_result(None)

    async def _refresh(self) -> None:
        try:
            data = await self._request("snapshot")
            self._take_snapshot(snapshot_from_dict(data))
        except (SourceError, ValueError) as exc:
            self._status = f"resync failed: {exc}"
        finally:
            self._refreshing = None

    def _answer(self, data: dict[str, Any]) -> None:
        request_id = data.get("id")
        future = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        if future is None or future.done():
            return
        if data.get("type") == "result":
            future.set_result(data.get("result"))
        else:
            error = data.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            future.set_exception(SourceError(str(message or error)))

    async def _request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        writer = self._writer
        if writer is None:
            raise SourceError(f"not done: {self._status or 'not attached'}")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message: dict[str, Any] = {"id": request_id, "method": method}
        if params:
            message["params"] = params
        try:
            writer.write(_line(message))
            await writer.drain()
            return await asyncio.wait_for(future, REQUEST_TIMEOUT)
        except TimeoutError:
            raise SourceError(
                f"{method}: no answer from the service within {REQUEST_TIMEOUT:g}s (not done)"
            ) from None
        except OSError as exc:
            raise SourceError(f"{method}: not sent: {exc.strerror}") from None
        finally:
            self._pending.pop(request_id, None)

    # --- controls ----------------------------------------------------------------------

    async def add_jobs(self, count: int, payload: str | None = None) -> int:
        """Submit ``count`` jobs of ``payload`` (text, the service's to read).

        The service names them: ids made here could be ones its pool has
        used already (each process counts ``job-1``, ``job-2``... of its own).
        """
        jobs = [{"payload": payload or ""} for _ in range(count)]
        result = await self._request("submit", {"jobs": jobs})
        accepted = result.get("accepted", []) if isinstance(result, dict) else []
        rejected = result.get("rejected", []) if isinstance(result, dict) else []
        if rejected:
            first = rejected[0].get("error", "") if isinstance(rejected[0], dict) else ""
            raise SourceError(f"added {len(accepted)} of {count}: {first}")
        return len(accepted)

    async def resize(self, workers: int) -> None:
        await self._request("resize", {"workers": workers})

    async def pause(self) -> None:
        await self._request("pause")

    async def resume(self) -> None:
        await self._request("resume")

    async def shutdown(self, grace: float | None, drain: bool, cancel_grace: float | None) -> None:
        params: dict[str, Any] = {"drain": drain}
        if grace is not None:
            params["grace"] = grace
        if cancel_grace is not None:
            params["cancel_grace"] = cancel_grace
        await self._request("shutdown", params)

    async def wait_stopped(self) -> None:
        """Wait until the service's pool has stopped (its ``PoolStopped`` came)."""
        if self._stopped is None:
            raise SourceError("not attached yet")
        await asyncio.shield(self._stopped)

    async def resubmit(self, job_id: str) -> None:
        await self._request("resubmit", {"job_id": job_id})

    async def cancel(self, job_id: str) -> bool:
        result = await self._request("cancel", {"job_id": job_id})
        return isinstance(result, dict) and result.get("cancelled") is True

    async def dead_letters(self) -> tuple[DeadLetter, ...]:
        result = await self._request("dead_letters")
        if not isinstance(result, list):
            raise SourceError("dead_letters: the service answered with no list")
        try:
            return tuple(dead_letter_from_dict(item) for item in result)
        except ValueError as exc:
            raise SourceError(f"dead_letters: {exc}") from None

    async def job(self, job_id: str) -> JobView | None:
        result = await self._request("job", {"job_id": job_id})
        if result is None:
            return None
        try:
            error = result.get("error")
            output = result.get("output")
            captured = None
            if isinstance(output, dict):
                event = ev.from_dict({"type": "JobOutputCaptured", **output})
                assert isinstance(event, ev.JobOutputCaptured)
                captured = event
            return JobView(
                job=job_from_dict(result.get("job")),
                state=str(result.get("state")),
                attempts=int(result.get("attempts", 0)),
                worker_id=result.get("worker_id"),
                started_at=result.get("started_at"),
                ended_at=result.get("ended_at"),
                error=None if error is None else error_from_dict(error),
                output=captured,
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise SourceError(f"job: {exc}") from None

    async def close(self) -> None:
        """Detach: the service and its pool go on."""
        self._closing = True
        task, self._reader_task = self._reader_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        for feed in self._feeds:
            feed.close()


def attached_title(info: dict[str, Any], endpoint: Endpoint) -> str:
    """The header of an attached dashboard: the pool, its process and host."""
    if not info:
        return f"attaching to {endpoint}"
    return f"{info.get('name', '?')} · pid {info.get('pid', '?')} on {info.get('host', '?')}"


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode("utf-8") + b"\n"


async def _read(reader: asyncio.StreamReader) -> dict[str, Any]:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        raise EOFError("the connection closed") from exc
    except asyncio.LimitOverrunError:
        raise ValueError("a line over 1 MiB") from None
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a line that is not a JSON object")
    return data


# --- wpool-tui ls ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolListing:
    """One served pool as ``wpool-tui ls`` shows it."""

    name: str
    pid: int | None
    socket: Path
    live: bool
    phase: str = ""
    workers: str = ""
    queue: str = ""
    uptime: float | None = None
    note: str = ""


async def discover(patience: float = 2.0) -> list[PoolListing]:
    """Every pool served in :func:`socket_dir` for this user, asked how it is.

    A socket nothing answers on is listed as not live; nothing is removed.
    """
    folder = socket_dir()
    if not folder.is_dir():
        return []
    found: list[PoolListing] = []
    for path in sorted(folder.glob("*.sock")):
        info = _info(path.with_suffix(".json"))
        pid = info.get("pid") if isinstance(info.get("pid"), int) else None
        source = AttachedSource(Endpoint(path=path), read_only=True, reconnect=False)
        try:
            await asyncio.wait_for(source.start(), patience)
        except (SourceError, TimeoutError) as exc:
            note = "no service answers (left by one that died?)"
            if isinstance(exc, SourceError) and "refused us" in str(exc):
                note = str(exc)
            found.append(PoolListing(path.stem, pid, path, live=False, note=note))
            continue
        try:
            snapshot = source.snapshot()
            stats = snapshot.stats
            uptime = None if snapshot.started_at is None else snapshot.at - snapshot.started_at
            found.append(
                PoolListing(
                    name=str(source.info.get("name", path.stem)),
                    pid=source.info.get("pid") or pid,
                    socket=path,
                    live=True,
                    phase=snapshot.phase.value,
                    workers=f"{stats.busy_workers}/{stats.workers}",
                    queue=f"{stats.queued}/{stats.queue_capacity}",
                    uptime=uptime,
                )
            )
        finally:
            await source.close()
    return found


def _info(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def local_host() -> str:
    """This machine's name, as a service puts it in its welcome."""
    return socket.gethostname()
