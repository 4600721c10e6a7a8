"""Event delivery: sequence numbers and per-subscriber bounded buffers.

The pool never waits for a subscriber. Each subscription buffers up to
``maxsize`` events; past that it drops them and counts how many, and the
subscriber gets one :class:`~pool.events.EventsDropped` in their place, at
the point where the gap is, and resyncs from ``pool.snapshot()``.

An event that every subscriber would drop is not even built: while no
subscription has room (:attr:`EventBus.room` is false), the publisher only
calls :meth:`EventBus.skip`, which takes the next sequence number; each
subscription counts the skipped events in its next notice, exactly.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType

from .events import EventsDropped, PoolEvent

__all__ = ("EventBus", "Subscription")


class Subscription:
    """One reader's bounded view of the pool's events.

    Iterate it (``async for event in sub``), or take what is pending with
    :meth:`drain` after :meth:`wait`. Use it as ``async with`` to
    unsubscribe at the end. Iteration ends after the pool's last event
    (:class:`~pool.events.PoolStopped`) has been read, or once closed.
    """

    __slots__ = ("_buffer", "_bus", "_closed", "_last_missed", "_maxsize", "_missed", "_waiter")

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._maxsize = maxsize
        self._buffer: deque[PoolEvent] = deque()
        self._missed = 0
        self._last_missed: tuple[int, float] = (0, 0.0)
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def maxsize(self) -> int:
        """How many events this subscription buffers before it drops them."""
        return self._maxsize

    @property
    def closed(self) -> bool:
        """Whether no more events will arrive (what is buffered can still be read)."""
        return self._closed

    def pending(self) -> int:
        """How many events are buffered, not counting a pending drop notice."""
        return len(self._buffer)

    def _push(self, event: PoolEvent) -> None:
        buffer = self._buffer
        if len(buffer) >= self._maxsize:
            self._missed += 1
            self._last_missed = (event.seq, event.at)
            return
        if self._missed:
            self._flush_missed()
        buffer.append(event)
        if len(buffer) >= self._maxsize:
            self._bus._filled()
        waiter = self._waiter
        if waiter is not None:
            # Woken once: the pushes until the reader runs need not look again.
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _made_room(self) -> None:
        # Called after events left the buffer: if it has room now and the bus
        # was skipping, the skipped events are counted before any new one comes.
        if not self._bus.room and len(self._buffer) < self._maxsize and not self._closed:
            self._bus._reopen()

    def _flush_missed(self) -> None:
        seq, at = self._last_missed
        # The notice may take the buffer one past maxsize: it stands for the gap.
        self._buffer.append(EventsDropped(seq=seq, at=at, missed=self._missed))
        self._missed = 0

    def _close(self) -> None:
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Unsubscribe: no more events arrive; what is buffered can still be read."""
        if not self._closed:
            self._bus._unsubscribe(self)
            self._close()

    def drain(self) -> list[PoolEvent]:
        """Take every buffered event (with a drop notice where events were missed)."""
        bus = self._bus
        if not bus.room and not self._closed:
            bus._settle_skipped()  # the skipped events join the notice at the end
        if self._missed:
            self._flush_missed()
        out = list(self._buffer)
        self._buffer.clear()
        if not bus.room and not self._closed:
            bus._rebind()
        return out

    async def wait(self) -> bool:
        """Wait until an event is buffered or the subscription closes.

        Returns:
            True if there is something to read, False if closed and empty.
        """
        while not self._buffer and not self._missed:
            if self._closed:
                return False
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return True

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> PoolEvent:
        if not self._buffer and not await self.wait():
            raise StopAsyncIteration
        if not self._buffer:
            self._flush_missed()
        event = self._buffer.popleft()
        self._made_room()
        return event

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Subscription [{state}] pending={len(self._buffer)} maxsize={self._maxsize}>"


class EventBus:
    """Hands each published event to every subscription, never waiting.

    A publisher builds an event only while :attr:`room` is true; otherwise,
    if anyone is subscribed, it calls :meth:`skip` instead::

        if bus.room:
            bus.seq += 1
            bus.publish(make_event(bus.seq, ...))
        elif bus.active:
            bus.skip(now)
    """

    __slots__ = ("_closed", "_skipped", "_skipped_at", "_subs", "publish", "room", "seq")

    def __init__(self) -> None:
        self.seq = 0
        """The sequence number of the last event published or skipped."""
        self._subs: list[Subscription] = []
        self._closed = False
        self.room = False
        """Whether some subscription has room: only then is an event worth building."""
        self._skipped = 0
        self._skipped_at = 0.0
        self.publish: Callable[[PoolEvent], None] = self._publish_all
        """Buffer an event for every subscription."""

    def _rebind(self) -> None:
        # Events are published several times a job, and one subscriber (the
        # dashboard) is the usual case: then publish is its buffer's own push.
        subs = self._subs
        self.publish = subs[0]._push if len(subs) == 1 else self._publish_all
        self.room = any(len(sub._buffer) < sub._maxsize for sub in subs)

    def skip(self, at: float) -> None:
        """Take the next ``seq`` for an event at time ``at`` that nobody has room for.

        Only while :attr:`room` is false and someone is subscribed: every
        subscription counts it as missed.
        """
        self.seq += 1
        self._skipped += 1
        self._skipped_at = at

    def _filled(self) -> None:
        # A subscription's buffer is full: is any other's not?
        self.room = any(len(sub._buffer) < sub._maxsize for sub in self._subs)

    def _settle_skipped(self) -> None:
        # Every subscription was full while these were skipped: all missed them.
        skipped = self._skipped
        if skipped:
            last = (self.seq, self._skipped_at)
            for sub in self._subs:
                sub._missed += skipped
                sub._last_missed = last
            self._skipped = 0

    def _reopen(self) -> None:
        # A subscription has room again.
        self._settle_skipped()
        self._rebind()

    @property
    def active(self) -> bool:
        """Whether anyone is subscribed (when not, events are not even built)."""
        return bool(self._subs)

    def subscribe(self, maxsize: int) -> Subscription:
        """A new subscription that sees every event published from now on."""
        sub = Subscription(self, maxsize)
        if self._closed:
            sub._close()
        else:
            self._settle_skipped()
            self._subs.append(sub)
            self._rebind()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._settle_skipped()
            self._subs.remove(sub)
            self._rebind()

    def _publish_all(self, event: PoolEvent) -> None:
        for sub in self._subs:
            sub._push(event)

    def close(self) -> None:
        """End every subscription: the pool will publish nothing more."""
        self._closed = True
        self._settle_skipped()
        subs, self._subs = self._subs, []
        self._rebind()
        for sub in subs:
            sub._close()
