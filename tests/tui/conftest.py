from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

import tui.app
from pool import ManualClock
from tests.helpers import release_all, settle
from tests.tui.rig import Rig


@pytest.fixture
def frames_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app draws a frame on a real-time interval (1 / FPS seconds). Here
    that interval is longer than any test, and the tests draw each frame with
    app.refresh_now(): what is on screen never depends on real time."""
    monkeypatch.setattr(tui.app, "FPS", 1e-6)


@pytest_asyncio.fixture
async def release_held_jobs() -> AsyncIterator[None]:
    """Runs inside the test's loop, so it is torn down before the loop is: a
    test that fails while a job ignores cancellation would otherwise hang the
    loop's teardown, which waits for every task."""
    yield
    release_all()
    await settle()
    # The pool was stopped and the app has gone: nothing of either may still run.
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not left, left


@pytest.fixture
def rig(clock: ManualClock) -> Rig:
    return Rig(clock)


@pytest.fixture(autouse=True)
def _signals_as_they_were() -> Iterator[None]:
    # wpool-tui run holds SIGINT, SIGTERM and SIGHUP until the program exits;
    # run in this process, it must not take ctrl+c away from pytest.
    before = {
        signum: signal.getsignal(signum)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)
