"""Where the pool's time comes from.

Every deadline, backoff and tick in the pool is a timer on its clock, so a
test (or a snapshot) can swap in :class:`ManualClock` and move time by hand.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ("Clock", "ManualClock", "MonotonicClock", "Timer", "sleep")


class Timer(Protocol):
    """A scheduled callback that can be called off."""

    def cancel(self) -> None:
        """Do not run the callback (no effect once it has run)."""


class Clock(Protocol):
    """The pool's source of time."""

    def now(self) -> float:
        """The current time in seconds; only differences are meaningful."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` on the event loop ``delay`` seconds from now."""


class MonotonicClock:
    """Real time: ``time.monotonic`` and the running loop's timers."""

    __slots__ = ()

    # The function itself, not a method around it: it is read on every job.
    now = staticmethod(time.monotonic)

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Schedule ``callback`` on the running loop."""
        return asyncio.get_running_loop().call_later(delay, callback)

    def __repr__(self) -> str:
        return "MonotonicClock()"


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told to: for tests and reproducible screens.

    Timers fire, in order of their due time, during :meth:`advance`.
    """

    __slots__ = ("_heap", "_now", "_order")

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._heap: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()

    def now(self) -> float:
        """The time the clock has been moved to."""
        return self._now

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Schedule ``callback`` for ``delay`` seconds after the current time."""
        timer = _ManualTimer(self._now + max(0.0, delay), callback)
        heapq.heappush(self._heap, (timer.when, next(self._order), timer))
        return timer

    def pending(self) -> int:
        """How many timers are scheduled and not cancelled."""
        return sum(1 for _, _, t in self._heap if not t.cancelled)

    def next_due(self) -> float | None:
        """When the earliest live timer is due, or None if there is none."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing each timer at its due time.

        After each timer, the event loop gets a few turns, so that what the
        timer woke can run and set timers of its own before time moves on.
        """
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        target = self._now + seconds
        await _let_loop_run()
        while True:
            due = self.next_due()
            if due is None or due > target:
                break
            _, _, timer = heapq.heappop(self._heap)
            self._now = max(self._now, timer.when)
            timer.callback()
            await _let_loop_run()
        self._now = target
        await _let_loop_run()

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now!r}, pending={self.pending()})"


async def _let_loop_run(turns: int = 8) -> None:
    # Each turn runs every callback that is ready, so a few turns let a chain
    # of wake-ups (timer -> future -> task -> next timer) settle.
    for _ in range(turns):
        await asyncio.sleep(0)


async def sleep(clock: Clock, delay: float) -> None:
    """Wait ``delay`` seconds of ``clock`` time."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    timer = clock.call_later(delay, wake)
    try:
        await fut
    finally:
        timer.cancel()
