"""Tests of ``pool.bus``: delivery, per-subscriber bounds, drop notices and closing."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from pool import events as ev
from pool.bus import EventBus, Subscription
from tests.helpers import settle


class Feed:
    """Emits events on a bus (``seq`` 1, 2, ...), and says what each one is."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    @property
    def seq(self) -> int:
        return self.bus.seq

    def publish(self, count: int = 1) -> list[ev.PoolEvent]:
        out: list[ev.PoolEvent] = []
        for _ in range(count):
            seq = self.bus.seq + 1
            # By position, as the per-job events go: three fields, or four.
            if seq % 2:
                out.append(ev.JobSubmitted(seq=seq, at=100.0 + seq, job_id=f"j{seq}", queued=seq))
                self.bus.emit(ev.JobSubmitted, 100.0 + seq, f"j{seq}", seq, "")
            else:
                out.append(
                    ev.JobStarted(
                        seq=seq,
                        at=100.0 + seq,
                        job_id=f"j{seq}",
                        worker_id="w",
                        attempt=1,
                        waited=0.5,
                    )
                )
                self.bus.emit(ev.JobStarted, 100.0 + seq, f"j{seq}", "w", 1, 0.5)
        return out


class Source:
    """Emits as the pool does, counting the events built (only while the bus has room)."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.built = 0

    def publish(self, count: int = 1) -> None:
        bus = self.bus
        for _ in range(count):
            self.built += bus.room
            bus.emit_named(ev.WorkerStarted, 100.0 + bus.seq + 1, worker_id="w")


def dropped(seq: int, missed: int) -> ev.EventsDropped:
    """The notice for ``missed`` events up to ``seq`` (at: as :class:`Feed` times them)."""
    return ev.EventsDropped(seq=seq, at=100.0 + seq, missed=missed)


async def read(sub: Subscription, count: int) -> list[ev.PoolEvent]:
    return [await anext(sub) for _ in range(count)]


async def collect(sub: Subscription) -> list[ev.PoolEvent]:
    return [event async for event in sub]


class TestDelivery:
    async def test_in_publish_order(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(100)
        sent = Feed(bus).publish(5)

        assert sub.pending() == 5
        assert await read(sub, 5) == sent
        assert sub.pending() == 0

    async def test_every_subscriber_gets_every_event(self) -> None:
        bus = EventBus()
        first, second = bus.subscribe(100), bus.subscribe(100)
        sent = Feed(bus).publish(3)

        assert first.drain() == sent
        assert second.drain() == sent

    def test_drain_takes_everything_once(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(100)
        feed = Feed(bus)
        sent = feed.publish(3)

        assert sub.drain() == sent
        assert sub.drain() == []
        later = feed.publish(1)
        assert sub.drain() == later

    def test_a_subscriber_sees_only_events_from_when_it_subscribed(self) -> None:
        bus = EventBus()
        feed = Feed(bus)
        feed.publish(2)
        sub = bus.subscribe(100)

        assert sub.drain() == []
        assert sub.pending() == 0
        later = feed.publish(1)
        assert sub.drain() == later


class TestNoSubscribers:
    def test_publishing_does_nothing(self) -> None:
        bus = EventBus()

        assert bus.active is False
        Feed(bus).publish(3)
        assert bus.active is False

    def test_active_follows_subscriptions(self) -> None:
        bus = EventBus()
        first, second = bus.subscribe(10), bus.subscribe(10)

        assert bus.active is True
        first.close()
        assert bus.active is True
        second.close()
        assert bus.active is False


class TestBound:
    async def test_reader_gets_maxsize_events_then_one_drop_notice(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(3)
        sent = Feed(bus).publish(10)

        assert sub.pending() == 3
        got = await read(sub, 4)

        assert got == [*sent[:3], dropped(seq=10, missed=7)]
        assert sub.drain() == []

    def test_drain_ends_with_the_drop_notice(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(3)
        sent = Feed(bus).publish(10)

        assert sub.drain() == [*sent[:3], dropped(seq=10, missed=7)]
        assert sub.drain() == []

    async def test_notice_is_at_the_gap(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(3)
        feed = Feed(bus)
        first = feed.publish(5)  # 1-3 buffered, 4-5 missed

        assert await anext(sub) == first[0]  # room for one more
        after = feed.publish(2)  # 6 fits behind the notice; 7 is missed again

        assert sub.drain() == [
            first[1],
            first[2],
            dropped(seq=5, missed=2),
            after[0],
            dropped(seq=7, missed=1),
        ]

    def test_each_subscriber_has_its_own_bound(self) -> None:
        bus = EventBus()
        slow, fast = bus.subscribe(2), bus.subscribe(10)
        sent = Feed(bus).publish(5)

        assert fast.drain() == sent
        assert slow.drain() == [*sent[:2], dropped(seq=5, missed=3)]

    def test_maxsize_is_reported(self) -> None:
        assert EventBus().subscribe(7).maxsize == 7

    # Operations: ("publish", n) publishes n events, ("read", _) takes one
    # event if one is buffered, ("drain", _) takes all.
    @given(
        maxsize=st.integers(min_value=1, max_value=5),
        ops=st.lists(
            st.tuples(
                st.sampled_from(["publish", "read", "drain"]), st.integers(min_value=1, max_value=8)
            ),
            max_size=40,
        ),
    )
    async def test_nothing_is_lost_silently(self, maxsize: int, ops: list[tuple[str, int]]) -> None:
        bus = EventBus()
        sub = bus.subscribe(maxsize)
        feed = Feed(bus)
        delivered: list[ev.PoolEvent] = []
        for op, count in ops:
            if op == "publish":
                feed.publish(count)
            elif op == "read" and sub.pending():
                delivered.append(await anext(sub))
            elif op == "drain":
                delivered.extend(sub.drain())
            # The notice may stand one past the bound, never more.
            assert sub.pending() <= maxsize + 1
        delivered.extend(sub.drain())

        notices = [e for e in delivered if isinstance(e, ev.EventsDropped)]
        events = [e for e in delivered if not isinstance(e, ev.EventsDropped)]
        assert len(events) + sum(n.missed for n in notices) == feed.seq
        # Seqs increase, and every gap is exactly covered by the notice at it.
        last = 0
        for event in delivered:
            if isinstance(event, ev.EventsDropped):
                assert event.missed >= 1
                assert event.seq - last == event.missed
            else:
                assert event.seq == last + 1
            last = event.seq
        assert last == feed.seq


class TestSkip:
    def test_room_follows_the_buffers(self) -> None:
        bus = EventBus()
        assert bus.room is False
        sub = bus.subscribe(2)
        assert bus.room is True
        Source(bus).publish(2)
        assert bus.room is False
        sub.drain()
        assert bus.room is True
        sub.close()
        assert bus.room is False

    def test_no_event_is_built_once_every_buffer_is_full(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(3)
        source = Source(bus)
        source.publish(10)

        assert source.built == 3
        assert bus.seq == 10
        got = sub.drain()
        assert [e.seq for e in got[:3]] == [1, 2, 3]
        assert got[3:] == [dropped(seq=10, missed=7)]

    async def test_reading_one_event_lets_the_next_in_behind_the_notice(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(2)
        source = Source(bus)
        source.publish(5)  # 1-2 buffered, 3-5 skipped

        assert (await anext(sub)).seq == 1
        source.publish(1)  # 6: room for it, behind the notice for 3-5

        assert sub.drain() == [
            ev.WorkerStarted(seq=2, at=102.0, worker_id="w"),
            dropped(seq=5, missed=3),
            ev.WorkerStarted(seq=6, at=106.0, worker_id="w"),
        ]

    def test_a_subscriber_with_room_keeps_getting_every_event(self) -> None:
        bus = EventBus()
        slow, fast = bus.subscribe(2), bus.subscribe(100)
        source = Source(bus)
        source.publish(6)

        assert source.built == 6
        assert [e.seq for e in fast.drain()] == [1, 2, 3, 4, 5, 6]
        assert slow.drain()[2:] == [dropped(seq=6, missed=4)]

    def test_events_skipped_before_a_subscriber_came_are_not_its_own(self) -> None:
        bus = EventBus()
        full = bus.subscribe(1)
        source = Source(bus)
        source.publish(3)  # 1 buffered, 2-3 skipped
        late = bus.subscribe(10)
        source.publish(1)

        assert late.drain() == [ev.WorkerStarted(seq=4, at=104.0, worker_id="w")]
        assert full.drain() == [
            ev.WorkerStarted(seq=1, at=101.0, worker_id="w"),
            dropped(seq=4, missed=3),
        ]

    def test_closing_counts_what_was_skipped(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(1)
        Source(bus).publish(4)
        bus.close()

        assert sub.drain()[1:] == [dropped(seq=4, missed=3)]

    # Operations on two subscriptions of different bounds: ("publish", n),
    # ("read", i) takes one event from subscription i, ("drain", i) takes all.
    @given(
        sizes=st.tuples(st.integers(1, 4), st.integers(1, 4)),
        ops=st.lists(
            st.tuples(st.sampled_from(["publish", "read", "drain"]), st.integers(0, 5)),
            max_size=40,
        ),
    )
    async def test_nothing_is_lost_silently_when_events_are_skipped(
        self, sizes: tuple[int, int], ops: list[tuple[str, int]]
    ) -> None:
        bus = EventBus()
        subs = [bus.subscribe(size) for size in sizes]
        source = Source(bus)
        delivered: list[list[ev.PoolEvent]] = [[], []]
        for op, arg in ops:
            which = arg % 2
            sub = subs[which]
            if op == "publish":
                source.publish(arg + 1)
            elif op == "read" and sub.pending():
                delivered[which].append(await anext(sub))
            elif op == "drain":
                delivered[which].extend(sub.drain())
            assert bus.room == any(s.pending() < s.maxsize for s in subs)
        for which, sub in enumerate(subs):
            delivered[which].extend(sub.drain())
            last = 0
            for event in delivered[which]:
                if isinstance(event, ev.EventsDropped):
                    assert event.missed >= 1
                    assert event.seq - last == event.missed
                else:
                    assert event.seq == last + 1
                last = event.seq
            assert last == bus.seq


class TestWait:
    async def test_waits_until_an_event_is_published(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(10)
        waiting = asyncio.create_task(sub.wait())
        await settle()
        assert not waiting.done()

        sent = Feed(bus).publish(1)

        assert await waiting is True
        assert sub.drain() == sent

    async def test_returns_true_at_once_when_events_are_buffered(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(10)
        Feed(bus).publish(1)

        assert await sub.wait() is True

    async def test_returns_true_for_a_pending_drop_notice_alone(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(1)
        sent = Feed(bus).publish(3)
        assert await anext(sub) == sent[0]

        assert sub.pending() == 0
        assert await sub.wait() is True
        assert sub.drain() == [dropped(seq=3, missed=2)]

    async def test_false_when_closed_and_empty(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(10)
        bus.close()

        assert await sub.wait() is False

    async def test_true_when_closed_with_events_left_then_false(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(10)
        Feed(bus).publish(1)
        bus.close()

        assert await sub.wait() is True
        sub.drain()
        assert await sub.wait() is False

    async def test_closing_wakes_a_waiter_with_false(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(10)
        waiting = asyncio.create_task(sub.wait())
        await settle()

        bus.close()

        assert await waiting is False


class TestClose:
    async def test_iteration_ends_after_close_once_the_buffer_is_read(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(10)
        sent = Feed(bus).publish(2)
        bus.close()

        assert sub.closed is True
        assert await collect(sub) == sent

    async def test_iteration_waiting_for_events_ends_at_close(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(10)
        feed = Feed(bus)
        reader = asyncio.create_task(collect(sub))
        await settle()
        sent = feed.publish(2)
        await settle()
        assert not reader.done()

        bus.close()

        assert await reader == sent

    async def test_a_drop_notice_is_read_before_iteration_ends(self) -> None:
        bus = EventBus()
        sub = bus.subscribe(2)
        sent = Feed(bus).publish(4)
        bus.close()

        assert await collect(sub) == [*sent[:2], dropped(seq=4, missed=2)]

    async def test_subscribing_after_close_gives_a_closed_subscription(self) -> None:
        bus = EventBus()
        bus.close()
        sub = bus.subscribe(10)

        assert sub.closed is True
        assert bus.active is False
        assert await collect(sub) == []

    async def test_async_with_unsubscribes(self) -> None:
        bus = EventBus()
        feed = Feed(bus)
        async with bus.subscribe(10) as sub:
            inside = feed.publish(1)
        feed.publish(2)

        assert sub.closed is True
        assert bus.active is False
        assert sub.drain() == inside
        assert await collect(sub) == []

    async def test_close_keeps_what_is_buffered_and_stops_the_rest(self) -> None:
        bus = EventBus()
        feed = Feed(bus)
        sub = bus.subscribe(10)
        other = bus.subscribe(10)
        before = feed.publish(2)

        sub.close()
        sub.close()  # a second close changes nothing
        after = feed.publish(1)

        assert await collect(sub) == before
        assert other.drain() == before + after
