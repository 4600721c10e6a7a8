"""The pool's one publisher: sequence numbers and per-subscriber bounded buffers.

Every event the pool publishes goes through :meth:`EventBus.emit` (the
per-job events) or :meth:`EventBus.emit_named` (the rest), which number it
(``seq`` 1, 2, 3, ...) and hand it to every subscription. The
pool never waits for a subscriber. Each subscription buffers up to
``maxsize`` events; past that it drops them and counts how many, and the
subscriber gets one :class:`~pool.events.EventsDropped` in their place, at
the point where the gap is, and resyncs from ``pool.snapshot()``.

An event that every subscriber would drop is not even built: while no
subscription has room (:attr:`EventBus.room` is false), ``emit`` only takes
the next sequence number; each subscription counts the skipped events in
its next notice, exactly.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from .events import EventsDropped, PoolEvent

__all__ = ("EventBus", "Subscription")

_E = TypeVar("_E")
_new = tuple.__new__
_ABSENT: Any = object()  # emit's fourth field, for events of three


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

    # --- the bus's side -------------------------------------------------------

    def has_room(self) -> bool:
        """Whether an event delivered now would be buffered, not missed (for the bus)."""
        return len(self._buffer) < self._maxsize

    def deliver(self, event: PoolEvent) -> None:
        """Buffer ``event``, or count it as missed when the buffer is full (for the bus)."""
        buffer = self._buffer
        if len(buffer) >= self._maxsize:
            self._missed += 1
            self._last_missed = (event.seq, event.at)
            return
        if self._missed:
            self._flush_missed()
        buffer.append(event)
        if len(buffer) >= self._maxsize:
            self._bus.buffer_filled()
        waiter = self._waiter
        if waiter is not None:
            # Woken once: the deliveries until the reader runs need not look again.
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def count_missed(self, count: int, seq: int, at: float) -> None:
        """Count ``count`` events, the last numbered ``seq`` at ``at``, as missed (for the bus)."""
        self._missed += count
        self._last_missed = (seq, at)

    def end(self) -> None:
        """No more events will arrive: wake the reader (for the bus; see :meth:`close`)."""
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the reader's side ----------------------------------------------------

    def _made_room(self) -> None:
        # Called after events left the buffer: if it has room now and the bus
        # was skipping, the skipped events are counted before any new one comes.
        if not self._bus.room and len(self._buffer) < self._maxsize and not self._closed:
            self._bus.room_made()

    def _flush_missed(self) -> None:
        seq, at = self._last_missed
        # The notice may take the buffer one past maxsize: it stands for the gap.
        self._buffer.append(EventsDropped(seq=seq, at=at, missed=self._missed))
        self._missed = 0

    def close(self) -> None:
        """Unsubscribe: no more events arrive; what is buffered can still be read."""
        if not self._closed:
            self._bus.unsubscribe(self)
            self.end()

    def drain(self) -> list[PoolEvent]:
        """Take every buffered event (with a drop notice where events were missed)."""
        bus = self._bus
        skipping = not bus.room and not self._closed
        if skipping:
            bus.settle_skipped()  # the skipped events join the notice at the end
        if self._missed:
            self._flush_missed()
        out = list(self._buffer)
        self._buffer.clear()
        if skipping:
            bus.room_made()
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
        buffer = self._buffer
        if not buffer:
            if not await self.wait():
                raise StopAsyncIteration
            if not buffer:
                self._flush_missed()
        event = buffer.popleft()
        if not self._bus.room:  # the bus was skipping: this read may have made room
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
    """The pool's one publisher: numbers each event and hands it to every subscription.

    ``emit(JobStarted, at, job_id, worker_id, attempt, waited)`` takes the
    event's class, its time, and its other fields in declaration order
    (``emit_named`` takes them by name). It never waits, and builds the
    event only while some subscription has room.
    """

    __slots__ = (
        "_closed",
        "_deliver",
        "_seq",
        "_skipped",
        "_skipped_at",
        "_subs",
        "active",
        "room",
    )

    def __init__(self) -> None:
        self._seq = 0
        self._subs: list[Subscription] = []
        self._closed = False
        self.room = False
        """Whether some subscription has room: only then is an event worth building.

        Read it, never set it: the bus keeps it (a plain attribute, as
        subscribers read it after every event they take)."""
        self.active = False
        """Whether anyone is subscribed: when not, :meth:`emit` does nothing at all.

        Read it, never set it. The per-job events look at it before they
        call ``emit``: with nobody subscribed, a job's three events then
        cost three attribute reads rather than three calls."""
        self._skipped = 0
        self._skipped_at = 0.0
        self._deliver: Callable[[PoolEvent], None] = self._deliver_all

    @property
    def seq(self) -> int:
        """The sequence number of the last event emitted (or skipped)."""
        return self._seq

    def emit(
        self, cls: type[PoolEvent], at: float, a: Any, b: Any, c: Any, d: Any = _ABSENT
    ) -> None:
        """Publish an event of class ``cls`` at time ``at``, numbered with the next ``seq``.

        For the per-job events, the quickest way to build one: their three or
        four other fields, every one, by position in declaration order (a
        function with ``*fields`` cannot be called as cheaply). Nothing is
        built while no subscription has room: the event then only takes its
        ``seq``, and every subscription counts it as missed.
        """
        if self.room:
            seq = self._seq = self._seq + 1
            # What the class's own constructor does with all its fields given,
            # without its Python frame: 0.19 us an event rather than 0.44.
            if d is _ABSENT:
                self._deliver(_new(cls, (seq, at, a, b, c)))
            else:
                self._deliver(_new(cls, (seq, at, a, b, c, d)))
        elif self._subs:
            self._skip(at)

    def emit_named(self, cls: Callable[..., PoolEvent], at: float, **named: Any) -> None:
        """As :meth:`emit`, with the fields by name (the rarer events, for clarity)."""
        if self.room:
            self._seq += 1
            self._deliver(cls(seq=self._seq, at=at, **named))
        elif self._subs:
            self._skip(at)

    def _skip(self, at: float) -> None:
        # Every subscription is full: the event takes its seq and is counted missed.
        self._seq += 1
        self._skipped += 1
        self._skipped_at = at

    def emit_kept(self, cls: Callable[..., _E], at: float, **named: Any) -> _E:
        """As :meth:`emit`, but build the event in any case and return it (to keep it).

        With nobody subscribed it takes no ``seq`` of its own: it carries the last one.
        """
        if self.room:
            self._seq += 1
            event = cls(seq=self._seq, at=at, **named)
            self._deliver(event)  # type: ignore[arg-type]
            return event
        if self._subs:
            self._skip(at)
        return cls(seq=self._seq, at=at, **named)

    def _rebind(self) -> None:
        # Events are emitted several times a job, and one subscriber (the
        # dashboard) is the usual case: then delivery is its own method.
        subs = self._subs
        self.active = bool(subs)
        self._deliver = subs[0].deliver if len(subs) == 1 else self._deliver_all
        self.room = any(sub.has_room() for sub in subs)

    def _deliver_all(self, event: PoolEvent) -> None:
        for sub in self._subs:
            sub.deliver(event)

    # --- the subscriptions' side ------------------------------------------------

    def buffer_filled(self) -> None:
        """A subscription's buffer is full: is any other's not? (for subscriptions)."""
        self.room = any(sub.has_room() for sub in self._subs)

    def settle_skipped(self) -> None:
        """Count the events skipped so far as missed by every subscription (for subscriptions).

        Every subscription was full while they were skipped: all missed them.
        """
        skipped = self._skipped
        if skipped:
            for sub in self._subs:
                sub.count_missed(skipped, self._seq, self._skipped_at)
            self._skipped = 0

    def room_made(self) -> None:
        """A subscription has room again (for subscriptions)."""
        self.settle_skipped()
        self._rebind()

    def subscribe(self, maxsize: int) -> Subscription:
        """A new subscription that sees every event emitted from now on."""
        sub = Subscription(self, maxsize)
        if self._closed:
            sub.end()
        else:
            self.settle_skipped()
            self._subs.append(sub)
            self._rebind()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub`` (see :meth:`Subscription.close`)."""
        if sub in self._subs:
            self.settle_skipped()
            self._subs.remove(sub)
            self._rebind()

    def close(self) -> None:
        """End every subscription: the pool will emit nothing more."""
        self._closed = True
        self.settle_skipped()
        subs, self._subs = self._subs, []
        self._rebind()
        for sub in subs:
            sub.end()
