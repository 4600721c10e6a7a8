"""Test helpers shared by the pool's tests: scripted handlers and event waits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from pool import Job, JobContext, Subscription, events

E = TypeVar("E", bound=events.PoolEvent)

_held: list[Script | ThreadScript] = []


def release_all() -> None:
    """Release every script made so far (a test's teardown), so no job stays held."""
    while _held:
        _held.pop().release()


class Crash(BaseException):
    """Raised by a handler to kill its worker (not an Exception: not a job error)."""


class Script:
    """A handler whose behaviour each job's payload chooses, held by events, never by sleeps.

    Payloads:
        ``ok``       return the payload.
        ``fail``     raise ValueError.
        ``hold``     wait until :meth:`release` (cancellable).
        ``stubborn`` wait until :meth:`release`, ignoring every cancellation.
        ``crash``    raise :class:`Crash`, killing the worker.
    Every job's id is appended to ``started`` when the handler begins.
    """

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release_event = asyncio.Event()
        self.cancelled: list[str] = []
        _held.append(self)

    def release(self) -> None:
        """Let every held job return."""
        self.release_event.set()

    async def __call__(self, job: Job, ctx: JobContext) -> bytes:
        self.started.append(job.id)
        kind = job.payload.split(b":", 1)[0]
        if kind == b"fail":
            raise ValueError(f"job {job.id} failed on purpose")
        if kind == b"crash":
            raise Crash(f"worker killed by {job.id}")
        if kind == b"hold":
            try:
                await self.release_event.wait()
            except asyncio.CancelledError:
                self.cancelled.append(job.id)
                raise
        if kind == b"stubborn":
            while not self.release_event.is_set():
                try:
                    await self.release_event.wait()
                except asyncio.CancelledError:
                    self.cancelled.append(job.id)
        return job.payload


class ThreadScript:
    """The plain-``def`` counterpart of :class:`Script`, run in the pool's threads.

    ``hold`` waits until released or cancelled (it polls ``ctx.cancelled``
    through a threading.Event wait with a short period); ``stubborn`` waits
    until released only; ``exit`` raises SystemExit, killing its thread.
    """

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release_event = threading.Event()
        self.running = threading.Semaphore(0)
        _held.append(self)

    def release(self) -> None:
        self.release_event.set()

    def __call__(self, job: Job, ctx: JobContext) -> bytes:
        self.started.append(job.id)
        self.running.release()
        kind = job.payload
        if kind == b"fail":
            raise ValueError(f"job {job.id} failed on purpose")
        if kind == b"exit":
            raise SystemExit(3)
        if kind == b"hold":
            while not self.release_event.wait(0.005):
                if ctx.cancelled:
                    raise RuntimeError("stopped: cancelled")
        if kind == b"stubborn":
            self.release_event.wait()
        return job.payload


async def next_event(
    sub: Subscription, kind: type[E], where: Callable[[E], bool] | None = None
) -> E:
    """Read events until one of ``kind`` (matching ``where``) arrives; fail if the stream ends."""
    async for event in sub:
        if isinstance(event, kind) and (where is None or where(event)):
            return event
    raise AssertionError(f"the event stream ended before a {kind.__name__}")


async def settle(turns: int = 20) -> None:
    """Give the loop a few turns so that ready callbacks run (no time passes)."""
    for _ in range(turns):
        await asyncio.sleep(0)


def outlives(pid: int, within: float = 5.0) -> bool:
    """Whether process ``pid`` still lives after ``within`` seconds.

    A process that was just sent SIGKILL takes a moment to go; a pidfd turns
    readable when its process exits, so this waits on that event, not a timer.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        readable, _, _ = select.select([fd], [], [], within)
        return not readable
    finally:
        os.close(fd)


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A real file system of ``size`` (``8k``) mounted at ``path``, for a real full disk.

    Mounting needs root (CI runs as root); elsewhere the test is skipped, and says why.
    """
    path.mkdir(exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (it needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)
