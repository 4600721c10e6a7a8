"""A Celery cluster as a source: its events folded into the pool's, its remote control
behind the dashboard's controls (see ``docs/celery.md``).

:class:`CelerySource` reads Celery's event stream (workers started with
``-E``) and says each fact in the pool's own vocabulary, so that the
dashboard, its state and its widgets need nothing new:

================  =====================================================
Celery            the dashboard
================  =====================================================
task-sent         ``JobSubmitted`` (queued; only when the sender sends it)
task-received     ``JobSubmitted`` (queued) if not seen sent
task-started      ``JobStarted`` on a free slot of the node
task-progress     ``JobProgressed`` (a custom event the demo tasks send)
task-succeeded    ``JobSucceeded``
task-failed       ``JobFailed``; ``JobTimedOut`` for a time limit
task-retried      ``JobRetryScheduled`` (the job stays queued)
task-revoked      ``JobCancelled``
task-rejected     ``JobRejected``
node lost         ``JobFailed`` (``TaskLost``) for each task it held
worker-online     ``WorkerStarted`` for each slot of the node's pool
worker-offline    slots stopped; ``WorkerCrashed`` when the heartbeat is lost
================  =====================================================

The source keeps its own :class:`~tui.state.DashboardState`, folded from
the very events it gives the dashboard, and makes its snapshots from it.
A fact the pool's events cannot say exactly (a task lost before it
started, a rejected one, a node that stopped with no shutdown of the
pool) is set in that state, and an ``EventsDropped`` of nothing missed
makes the dashboard resync from the snapshot: the account stays exact.

Every call into Celery or kombu blocks, so it runs in a thread: the event
receiver in one of its own, the controls and the broker's queue lengths
through :func:`asyncio.to_thread`. Celery is imported only here, and only
when a source connects: the rest of ``tui`` runs without it.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from pool import (
    DeadLetter,
    ErrorInfo,
    Job,
    JobState,
    PoolPhase,
    PoolSnapshot,
    PoolStats,
    WorkerInfo,
    WorkerState,
)
from pool import events as ev

from ..state import DashboardState
from .base import Control, EventFeed, JobView, Source, SourceError

__all__ = (
    "CONTROL_TIMEOUT",
    "CeleryControl",
    "CelerySource",
    "ControlTransport",
    "parse_task",
)

CONTROL_TIMEOUT: Final = 2.0
"""Seconds a node has to answer a control before it is shown as unanswered."""

INSPECT_TIMEOUT: Final = 1.0
"""Seconds a resync waits for the nodes' answers to ``inspect``."""

TICK: Final = 0.1
"""Seconds between the source's own ticks: shutdown countdown, heartbeat checks."""

BROKER_EVERY: Final = 1.0
"""Seconds between two readings of the broker's queue lengths."""

HEARTBEAT_WINDOW: Final = 2.0
"""A node is lost when no heartbeat came for this many of its heartbeat periods
(Celery's own expiry window: 200%)."""

ENDED_KEPT: Final = 10_000
"""Ended tasks remembered, so that late or repeated events for them are ignored."""

OFFLINE_PATIENCE: Final = 60.0
"""Seconds the tasks of a node that went offline (not shut down from here) have to
end before they are shown as lost: a warm shutdown lets them finish first."""

GROW_ROOM: Final = 32
"""How many slots above the cluster's size a resize may ask for."""

_LIMITS = ("TimeLimitExceeded", "SoftTimeLimitExceeded")

_FIXED = ("threads", "thread", "solo")
"""Pools Celery cannot grow or shrink (``pool_grow`` and ``pool_shrink`` fail on them)."""

_LOST_SLOT = "lost-before-start"
"""The panel a task lost before it started is failed on (resynced away at once)."""

_IDENTIFIER = re.compile(r"[^A-Za-z0-9_-]")


class ControlTransport(Protocol):
    """What the source sends controls and reads the broker through (all blocking)."""

    def broadcast(
        self,
        command: str,
        arguments: dict[str, Any],
        destination: Sequence[str] | None,
        reply: bool,
        timeout: float,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Send ``command`` (to ``destination``, or every node); the replies received
        within ``timeout``, or once ``limit`` (default: as many as destinations) came."""
        ...

    def send_task(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
        """Send one task; its id."""
        ...

    def queue_lengths(self, queues: Iterable[str]) -> dict[str, int]:
        """How many messages wait in each queue on the broker."""
        ...


@dataclass(slots=True)
class _Node:
    """One Celery worker node, as the source knows it."""

    name: str
    online: bool = True
    heartbeat_at: float | None = None
    freq: float = 2.0
    pool: str = "?"
    size: int = 0
    known_size: int = 0
    autoscale: tuple[int, int] | None = None
    queues: tuple[str, ...] = ("celery",)
    registered: tuple[str, ...] = ()
    slots: list[str] = field(default_factory=list)
    lost: bool = False
    events_seen: bool = False
    offline_at: float | None = None
    shutdown_deadline: float | None = None
    stopping: bool = False
    mismatches: int = 0

    def slot_id(self, number: int) -> str:
        """A panel's id: the node's name made an identifier (``alpha@host`` ->
        ``alpha_host``), then the slot's number."""
        return f"{_IDENTIFIER.sub('-', self.name.replace('@', '_'))}-{number}"


@dataclass(slots=True)
class _Task:
    """One live task."""

    uuid: str
    job_id: str
    name: str
    label: str
    node: str | None = None
    slot: str | None = None
    queued_at: float = 0.0
    started_at: float | None = None
    retries: int = 0
    revoke_asked: bool = False


class _Feed:
    """The events made and not yet drained by one subscriber, bounded."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.buffer: deque[ev.PoolEvent] = deque()
        self.closed = False
        self.missed = 0

    def push(self, event: ev.PoolEvent) -> None:
        if len(self.buffer) >= self.maxsize:
            # Full: drop what it holds; the resync marker makes the dashboard
            # take the snapshot, which includes everything up to ``event``.
            self.missed += len(self.buffer) + 1
            self.buffer.clear()
            self.buffer.append(ev.EventsDropped(seq=event.seq, at=event.at, missed=self.missed))
            return
        self.buffer.append(event)

    def drain(self) -> list[ev.PoolEvent]:
        out = list(self.buffer)
        self.buffer.clear()
        self.missed = 0
        return out

    def pending(self) -> int:
        return len(self.buffer)

    def close(self) -> None:
        self.closed = True


def parse_task(
    payload: str | None, registered: Iterable[str]
) -> tuple[str, list[Any], dict[str, Any]]:
    """``NAME [JSON]`` from the add dialog: a registered task's name and its arguments.

    The JSON is a list (positional arguments), an object (keyword
    arguments) or one value (the only argument).

    Raises:
        SourceError: No name, a name no node registered, or bad JSON.
    """
    names = sorted(set(registered))
    text = (payload or "").strip()
    if not text:
        shown = ", ".join(names) or "none known yet"
        raise SourceError(f"name a task, then its JSON arguments (registered: {shown})")
    name, _, rest = text.partition(" ")
    if name not in names:
        shown = ", ".join(names) or "none known yet"
        raise SourceError(f"no node registered a task named {name!r} (registered: {shown})")
    rest = rest.strip()
    if not rest:
        return name, [], {}
    try:
        value = json.loads(rest)
    except ValueError as exc:
        raise SourceError(f"the arguments are not JSON: {exc}") from None
    if isinstance(value, list):
        return name, value, {}
    if isinstance(value, dict):
        return name, [], value
    return name, [value], {}


class CelerySource(Source):
    """The dashboard's source for a Celery cluster.

    Args:
        transport: Where controls go (a :class:`CeleryControl`); None for a
            source that is only fed events (tests, snapshots): it sends nothing.
        title: What the header names.
        read_only: Send no control at all.
        now: The source's clock (monotonic seconds).
        wall_offset: Wall-clock time minus ``now()``: Celery stamps its events
            with wall-clock time, the dashboard reads the source's clock.
        connect: Starts the event receiver (a thread) once the source starts;
            given by :meth:`connect`.
    """

    def __init__(
        self,
        transport: ControlTransport | None = None,
        *,
        title: str = "celery",
        read_only: bool = False,
        now: Callable[[], float] = time.monotonic,
        wall_offset: float | None = None,
        receive: Callable[[CelerySource], threading.Thread] | None = None,
        control_timeout: float = CONTROL_TIMEOUT,
        inspect_timeout: float = INSPECT_TIMEOUT,
    ) -> None:
        self._transport = transport
        self._title = title
        self.read_only = read_only
        self._now = now
        self._wall_offset = time.time() - now() if wall_offset is None else wall_offset
        self._receive = receive
        self.control_timeout = control_timeout
        self.inspect_timeout = inspect_timeout
        self._state = DashboardState()
        self._seq = 0
        self._feeds: list[_Feed] = []
        self._nodes: dict[str, _Node] = {}
        self._tasks: dict[str, _Task] = {}
        self._by_job: dict[str, str] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()
        self._failed: OrderedDict[str, tuple[_Task, ErrorInfo, float]] = OrderedDict()
        self._broker: dict[str, int] = {}
        self._status = ""
        self._aimed: str | None = None
        self._inbox: deque[dict[str, Any]] = deque()
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_flag = threading.Event()
        self._ticker: asyncio.Task[None] | None = None
        self._tasks_running: set[asyncio.Task[Any]] = set()
        self._stopped: asyncio.Future[None] | None = None
        self._cluster_shutdown: _ClusterShutdown | None = None
        self._resyncing: set[str] = set()
        self._last_broker = -BROKER_EVERY
        self.controls = (
            frozenset()
            if read_only or transport is None
            else frozenset(
                {Control.ADD_JOBS, Control.RESIZE, Control.PAUSE, Control.SHUTDOWN, Control.CANCEL}
            )
        )
        self.folded = 0
        """Celery events folded so far (the benchmark reads it)."""

    remote = True
    """The cluster goes on when the dashboard leaves."""

    @classmethod
    def connect(
        cls,
        broker: str,
        *,
        app: str | None = None,
        read_only: bool = False,
        inspect_timeout: float = INSPECT_TIMEOUT,
    ) -> CelerySource:
        """The source for ``wpool-tui celery --broker URL [--app MODULE]``.

        Raises:
            SourceError: Celery is not installed, or the app cannot be imported.
        """
        control = CeleryControl(broker, app=app)
        return cls(
            control,
            title=f"celery · {_safe_url(broker)}",
            read_only=read_only,
            receive=control.receiver,
            inspect_timeout=inspect_timeout,
        )

    # --- what the dashboard reads ------------------------------------------------

    @property
    def title(self) -> str:
        # The nodes change; the header is drawn once: they are told in the banner.
        return self._title

    @property
    def status(self) -> str:
        return self._status

    @property
    def note(self) -> str:
        return self.describe_cluster()

    @property
    def cancel_again(self) -> str:
        return "terminate it (SIGTERM to its process)"

    @property
    def payload_hint(self) -> str:
        names = ", ".join(sorted(self._registered())) or "none known yet"
        return f"Task and its JSON arguments (NAME [1, 2]), one of:\n{names}"

    @property
    def max_workers(self) -> int:
        return self._state.target_workers + GROW_ROOM

    @property
    def grace(self) -> float:
        return 30.0

    @property
    def cancel_grace(self) -> float:
        return 5.0

    @property
    def nodes(self) -> dict[str, _Node]:
        """The nodes the source knows, by name (tests read them)."""
        return self._nodes

    @property
    def broker_depth(self) -> dict[str, int]:
        """The broker's queue lengths, as last read."""
        return dict(self._broker)

    def now(self) -> float:
        return self._now()

    def snapshot(self) -> PoolSnapshot:
        state = self._state
        now = self._now()
        state.tick(now)
        oldest = min(
            (t.queued_at for t in self._tasks.values() if t.started_at is None), default=None
        )
        stats = PoolStats(
            submitted=state.submitted,
            rejected=state.rejected,
            queued=state.queued,
            running=state.running,
            succeeded=state.succeeded,
            failed=state.failed,
            timed_out=state.timed_out,
            cancelled=state.cancelled,
            abandoned=state.abandoned,
            retried=state.retried,
            restarts=state.restarts,
            workers=state.live_workers,
            target_workers=state.target_workers,
            busy_workers=state.busy_workers,
            retiring_workers=state.retiring_workers,
            queue_capacity=0,
            oldest_queued_age=0.0 if oldest is None else max(0.0, now - oldest),
            run_time=state.run_time(),
            queue_wait=state.queue_wait(),
            throughput=state.throughput(),
            dead_letters=len(self._failed),
        )
        workers = tuple(
            WorkerInfo(
                id=v.id,
                state=v.state,
                job_id=v.job_id,
                job_started_at=v.job_started_at,
                attempt=v.attempt,
                progress=v.progress,
                progress_message=v.progress_message,
                jobs_done=v.jobs_done,
                jobs_failed=v.jobs_failed,
                restarts=v.restarts,
            )
            for v in state.ordered_workers()
        )
        shutdown = self._cluster_shutdown
        return PoolSnapshot(
            phase=state.phase,
            seq=self._seq,
            at=now,
            stats=stats,
            workers=workers,
            phase_deadline=None if shutdown is None else shutdown.deadline,
            started_at=state.started_at,
        )

    def events(self, maxsize: int) -> EventFeed:
        feed = _Feed(maxsize)
        self._feeds.append(feed)
        return feed

    def describe_cluster(self) -> str:
        """The nodes (pool, heartbeat age, shutdown) and the broker's queues, in a line or two."""
        now = self._now()
        parts = []
        for node in sorted(self._nodes.values(), key=lambda n: n.name):
            running = sum(1 for t in self._tasks.values() if t.slot and t.node == node.name)
            if node.lost:
                what = "LOST (no heartbeat)"
            elif not node.online and node.shutdown_deadline is None:
                what = f"offline, finishing {running} running" if running else "offline"
            elif not node.online:
                what = "offline"
            else:
                age = (
                    "?"
                    if node.heartbeat_at is None
                    else f"{max(0.0, now - node.heartbeat_at):.0f}s"
                )
                kind = node.pool if node.autoscale is None else f"{node.pool} autoscale"
                what = f"{kind} {node.size} ♥{age}"
                if not node.events_seen:
                    what += " (no events yet: started without -E?)"
            if node.shutdown_deadline is not None:
                left = max(0.0, node.shutdown_deadline - now)
                what += f", SHUTTING DOWN {left:.1f}s left, {running} running"
            parts.append(f"{node.name} {what}")
        line = "nodes: " + (" · ".join(parts) if parts else "none seen yet")
        if self._broker:
            queues = ", ".join(f"{q} {n}" for q, n in sorted(self._broker.items()))
            line += f"\nbroker: {queues} waiting"
        stopping = [n.name for n in self._nodes.values() if n.stopping]
        if stopping or self._cluster_shutdown is not None:
            up = [n.name for n in self._nodes.values() if n.online or self._finishing(n)]
            line += f"\nnodes still up: {', '.join(sorted(up)) or 'none'}"
        return line

    # --- the event stream ----------------------------------------------------------

    def _emit(self, event: ev.PoolEvent) -> None:
        self._state.apply(event)
        for feed in self._feeds:
            if not feed.closed:
                feed.push(event)

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _resync_dashboard(self) -> None:
        """What was just set in the source's state reaches the dashboard by a resync."""
        self._emit(ev.EventsDropped(seq=self._next(), at=self._now(), missed=0))

    def _at(self, event: dict[str, Any]) -> float:
        stamp = event.get("timestamp")
        if isinstance(stamp, int | float):
            return float(stamp) - self._wall_offset
        return self._now()

    def feed(self, event: dict[str, Any]) -> None:
        """Fold one Celery event (as the receiver gives it) into the source."""
        self.folded += 1
        kind = event.get("type", "")
        if not isinstance(kind, str):
            return
        if kind.startswith("worker-"):
            self._worker_event(kind, event)
        elif kind.startswith("task-"):
            uuid = event.get("uuid")
            if isinstance(uuid, str) and uuid not in self._ended:
                self._task_event(kind, uuid, event)

    def feed_all(self, events: Iterable[dict[str, Any]]) -> None:
        """Fold Celery events in order."""
        for event in events:
            self.feed(event)

    def from_thread(self, event: dict[str, Any]) -> None:
        """The receiver thread's handler: hand the event to the loop, a batch at a time."""
        self._inbox.append(event)
        if not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._take_inbox)

    def _take_inbox(self) -> None:
        self._wake_pending = False
        inbox = self._inbox
        while inbox:
            self.feed(inbox.popleft())

    # --- workers --------------------------------------------------------------------

    def _node(self, name: str) -> _Node:
        node = self._nodes.get(name)
        if node is None:
            node = self._nodes[name] = _Node(name)
        return node

    def _worker_event(self, kind: str, event: dict[str, Any]) -> None:
        name = event.get("hostname")
        if not isinstance(name, str):
            return
        at = self._at(event)
        known = name in self._nodes
        node = self._node(name)
        node.events_seen = True
        freq = event.get("freq")
        if isinstance(freq, int | float) and freq > 0:
            node.freq = float(freq)
        if kind == "worker-offline":
            if node.online:
                self._node_gone(node, at, lost=False)
            return
        if kind not in ("worker-online", "worker-heartbeat"):
            return
        node.heartbeat_at = max(at, node.heartbeat_at or at)
        came_back = not node.online or not known
        if came_back:
            node.online = True
            node.lost = False
            node.offline_at = None
            node.stopping = False
            node.shutdown_deadline = None
            # The size it had before it went (a resync from inspect corrects it).
            size = node.size or node.known_size
            if size or self._transport is None:
                self._set_slots(node, size or max(1, int(event.get("active", 0) or 0)), at)
            # Else its panels come with its stats, all at once (a group on screen).
            self._request_resync(name)
        elif kind == "worker-heartbeat":
            if node.pool == "?":
                self._request_resync(name)  # its stats have not come yet: ask again
            active = event.get("active")
            ours = sum(1 for t in self._tasks.values() if t.node == name and t.slot is not None)
            if isinstance(active, int) and active != ours:
                # Two heartbeats in a row that disagree with what we fold: events
                # were missed (or came out of order); ask the node.
                node.mismatches += 1
                if node.mismatches >= 2:
                    node.mismatches = 0
                    self._request_resync(name)
            else:
                node.mismatches = 0

    def _set_slots(self, node: _Node, size: int, at: float) -> None:
        """Give ``node`` ``size`` worker panels (busy ones above it retire after their task)."""
        before = self._state.target_workers
        node.size = size
        live = set(node.slots)
        for number in range(1, size + 1):
            slot = node.slot_id(number)
            if slot not in live:
                node.slots.append(slot)
                self._emit(ev.WorkerStarted(seq=self._next(), at=at, worker_id=slot))
            elif self._state.workers.get(slot) is not None:
                view = self._state.workers[slot]
                if view.state in (WorkerState.CRASHED, WorkerState.STOPPED):
                    self._emit(ev.WorkerStarted(seq=self._next(), at=at, worker_id=slot))
        for slot in list(node.slots[size:]):
            busy = any(t.slot == slot for t in self._tasks.values())
            if busy:
                self._emit(ev.WorkerRetireRequested(seq=self._next(), at=at, worker_id=slot))
            else:
                node.slots.remove(slot)
                self._emit(ev.WorkerStopped(seq=self._next(), at=at, worker_id=slot))
        self._retarget(at, before)

    def _retarget(self, at: float, before: int) -> None:
        target = sum(n.size for n in self._nodes.values() if n.online)
        if target != before:
            self._emit(ev.PoolResized(seq=self._next(), at=at, target=target, previous=before))

    def _node_gone(self, node: _Node, at: float, *, lost: bool) -> None:
        """``node`` sent worker-offline, or (``lost``) its heartbeat stopped.

        A warm shutdown says offline as it *begins*: the tasks running go on
        and their ends come after it. So, offline, the node's running tasks
        run on (their panels retire) until they end, or until the node's
        countdown (or ``OFFLINE_PATIENCE``) passes: then they are lost. Its
        reserved tasks go back to the broker (another node receives them).
        With its heartbeat lost (killed), everything it held is lost now.
        """
        node.online = False
        node.lost = lost
        node.offline_at = at
        if lost:
            node.shutdown_deadline = None
        resync = False
        for task in [t for t in self._tasks.values() if t.node == node.name]:
            if task.slot is None and not lost:
                task.node = None  # handed back to the broker by the warm shutdown
            elif lost:
                resync |= self._lose(task, node, at, "its heartbeat stopped")
        for slot in list(node.slots):
            if lost:
                error = ErrorInfo(type="NodeLost", message=f"{node.name}: no heartbeat")
                self._emit(
                    ev.WorkerCrashed(
                        seq=self._next(),
                        at=at,
                        worker_id=slot,
                        job_id=None,
                        error=error,
                        restart_in=None,
                    )
                )
            elif any(t.slot == slot for t in self._tasks.values()):
                self._emit(ev.WorkerRetireRequested(seq=self._next(), at=at, worker_id=slot))
            else:
                node.slots.remove(slot)
                self._emit(ev.WorkerStopped(seq=self._next(), at=at, worker_id=slot))
        before = self._state.target_workers
        node.known_size = node.size
        node.size = 0
        self._retarget(at, before)
        if resync:
            self._resync_dashboard()
        self._settle_offline(node, at)

    def _lose(self, task: _Task, node: _Node, at: float, why: str) -> bool:
        error = ErrorInfo(type="TaskLost", message=f"lost: {node.name} {why} while it held it")
        return self._fail(task, at, error)

    def _settle_offline(self, node: _Node, at: float) -> None:
        """Once an offline node runs nothing more, it is done: its countdown ends, and
        the cluster's shutdown ends with the last node."""
        if node.online or any(t.node == node.name and t.slot for t in self._tasks.values()):
            return
        node.stopping = False
        node.shutdown_deadline = None
        if (
            self._cluster_shutdown is not None
            and not self._state.phase.is_final
            and not any(n.online or self._finishing(n) for n in self._nodes.values())
        ):
            self._cluster_stopped(at)

    def _finishing(self, node: _Node) -> bool:
        """An offline node whose running tasks have not ended yet."""
        return not node.online and any(t.node == node.name and t.slot for t in self._tasks.values())

    # --- tasks -------------------------------------------------------------------------

    def _task(self, uuid: str, event: dict[str, Any], at: float) -> _Task:
        """The live task ``uuid``; seen for the first time, it is submitted now."""
        task = self._tasks.get(uuid)
        if task is not None:
            return task
        name = event.get("name")
        name = name if isinstance(name, str) else "?"
        args = event.get("args")
        label = name
        if isinstance(args, str) and args not in ("()", "[]", ""):
            if args.startswith("[") and args.endswith("]"):
                args = f"({args[1:-1]})"
            label += args if args.startswith("(") else f"({args})"
            label = label.replace(",)", ")")
        job_id = uuid[:8]
        if job_id in self._by_job:
            job_id = uuid
        task = _Task(uuid=uuid, job_id=job_id, name=name, label=label, queued_at=at)
        retries = event.get("retries")
        if isinstance(retries, int):
            task.retries = retries
        self._tasks[uuid] = task
        self._by_job[job_id] = uuid
        self._emit(
            ev.JobSubmitted(
                seq=self._next(), at=at, job_id=job_id, queued=self._state.queued + 1, label=label
            )
        )
        return task

    def _task_event(self, kind: str, uuid: str, event: dict[str, Any]) -> None:
        at = self._at(event)
        node = event.get("hostname") if isinstance(event.get("hostname"), str) else None
        if kind == "task-sent":
            self._task(uuid, event, at)
        elif kind == "task-received":
            task = self._task(uuid, event, at)
            if task.slot is None:
                task.node = node
        elif kind == "task-started":
            task = self._task(uuid, event, at)
            if task.slot is None and node is not None:
                self._start(task, self._node(node), at)
        elif kind == "task-progress":
            live = self._tasks.get(uuid)
            fraction = event.get("fraction")
            if live is not None and live.slot is not None and isinstance(fraction, int | float):
                message = event.get("message")
                self._emit(
                    ev.JobProgressed(
                        seq=self._next(),
                        at=at,
                        job_id=live.job_id,
                        worker_id=live.slot,
                        fraction=max(0.0, min(1.0, float(fraction))),
                        message=message if isinstance(message, str) else "",
                    )
                )
        elif kind == "task-succeeded":
            task = self._running(uuid, event, at, node)
            assert task.slot is not None
            runtime = event.get("runtime")
            duration = (
                float(runtime) if isinstance(runtime, int | float) else at - (task.started_at or at)
            )
            self._end(task)
            self._emit(
                ev.JobSucceeded(
                    seq=self._next(),
                    at=at,
                    job_id=task.job_id,
                    worker_id=task.slot,
                    attempt=task.retries + 1,
                    duration=duration,
                )
            )
            self._after_slot_freed(task, at)
        elif kind == "task-failed":
            task = self._running(uuid, event, at, node)
            exception = str(event.get("exception") or "")
            traceback = event.get("traceback")
            if any(limit in exception for limit in _LIMITS) or (
                # A hard time limit's error may come wrapped (ExceptionWithTraceback).
                isinstance(traceback, str) and "TimeLimitExceeded" in traceback[-300:]
            ):
                assert task.slot is not None
                self._end(task)
                self._emit(
                    ev.JobTimedOut(
                        seq=self._next(),
                        at=at,
                        job_id=task.job_id,
                        worker_id=task.slot,
                        attempt=task.retries + 1,
                        duration=at - (task.started_at or at),
                    )
                )
                self._after_slot_freed(task, at)
            else:
                self._fail(task, at, _error(exception, event.get("traceback")))
        elif kind == "task-retried":
            task = self._running(uuid, event, at, node)
            slot = task.slot
            assert slot is not None
            task.slot = None
            task.started_at = None
            task.queued_at = at
            attempt = task.retries + 1
            task.retries += 1
            self._emit(
                ev.JobRetryScheduled(
                    seq=self._next(),
                    at=at,
                    job_id=task.job_id,
                    worker_id=slot,
                    attempt=attempt,
                    duration=0.0,
                    error=_error(str(event.get("exception") or ""), event.get("traceback")),
                    delay=0.0,
                )
            )
            task.slot = None
            self._retire_if_asked(slot, at)
        elif kind == "task-revoked":
            task = self._task(uuid, event, at)
            self._end(task)
            self._emit(
                ev.JobCancelled(
                    seq=self._next(),
                    at=at,
                    job_id=task.job_id,
                    worker_id=task.slot,
                    started=task.slot is not None,
                )
            )
            self._after_slot_freed(task, at)
        elif kind == "task-rejected":
            task = self._task(uuid, event, at)
            self._reject(task, at, requeue=bool(event.get("requeue")))

    def _running(self, uuid: str, event: dict[str, Any], at: float, node: str | None) -> _Task:
        """The task, started (on its node) if its start was not seen: an end implies one."""
        task = self._task(uuid, event, at)
        if task.slot is None:
            self._start(task, self._node(node or task.node or "?"), at)
        return task

    def _start(self, task: _Task, node: _Node, at: float) -> None:
        busy = {t.slot for t in self._tasks.values() if t.slot is not None}
        free = [s for s in node.slots[: node.size or len(node.slots)] if s not in busy]
        if free:
            slot = free[0]
        else:
            # More running than the node's size we know of: it grew, or we never
            # heard its size. A panel more.
            number = len(node.slots) + 1
            slot = node.slot_id(number)
            while slot in node.slots:
                number += 1
                slot = node.slot_id(number)
            node.slots.append(slot)
            self._emit(ev.WorkerStarted(seq=self._next(), at=at, worker_id=slot))
        task.node = node.name
        task.slot = slot
        task.started_at = at
        self._emit(
            ev.JobStarted(
                seq=self._next(),
                at=at,
                job_id=task.job_id,
                worker_id=slot,
                attempt=task.retries + 1,
                waited=max(0.0, at - task.queued_at),
            )
        )

    def _end(self, task: _Task) -> None:
        self._tasks.pop(task.uuid, None)
        self._ended[task.uuid] = task.job_id
        if len(self._ended) > ENDED_KEPT:
            _, job_id = self._ended.popitem(last=False)
            self._by_job.pop(job_id, None)

    def _after_slot_freed(self, task: _Task, at: float) -> None:
        if task.slot is not None:
            self._retire_if_asked(task.slot, at)

    def _retire_if_asked(self, slot: str, at: float) -> None:
        view = self._state.workers.get(slot)
        if view is None or view.state is not WorkerState.RETIRING:
            return
        for node in self._nodes.values():
            if slot in node.slots and (not node.online or node.slots.index(slot) >= node.size):
                node.slots.remove(slot)
                self._emit(ev.WorkerStopped(seq=self._next(), at=at, worker_id=slot))
                self._settle_offline(node, at)

    def _fail(self, task: _Task, at: float, error: ErrorInfo) -> bool:
        """End ``task`` as failed; True when the dashboard must resync (it never started)."""
        self._end(task)
        self._failed[task.job_id] = (task, error, at)
        if len(self._failed) > 1000:
            self._failed.popitem(last=False)
        if task.slot is not None:
            self._emit(
                ev.JobFailed(
                    seq=self._next(),
                    at=at,
                    job_id=task.job_id,
                    worker_id=task.slot,
                    attempt=task.retries + 1,
                    duration=at - (task.started_at or at),
                    error=error,
                )
            )
            self._after_slot_freed(task, at)
            return False
        # Never started: the pool's JobFailed is of a running job. Its log line
        # is made with the node's name; the counts are set right and resynced.
        state = self._state
        self._emit(
            ev.JobFailed(
                seq=self._next(),
                at=at,
                job_id=task.job_id,
                worker_id=_LOST_SLOT,
                attempt=task.retries + 1,
                duration=0.0,
                error=error,
            )
        )
        state.workers.pop(_LOST_SLOT, None)
        state.running += 1
        state.queued -= 1
        self._resync_dashboard()
        return True

    def _reject(self, task: _Task, at: float, *, requeue: bool) -> None:
        state = self._state
        slot = task.slot
        if slot is not None:
            view = state.workers.get(slot)
            if view is not None and view.job_id == task.job_id:
                view.clear_job()
                view.set_state(WorkerState.IDLE, at)
            state.running -= 1
        else:
            state.queued -= 1
        if requeue:
            # Back on the broker's queue: still queued, on no node.
            task.slot = None
            task.node = None
            task.started_at = None
            task.queued_at = at
            state.queued += 1
        else:
            self._end(task)
            self._emit(
                ev.JobRejected(
                    seq=self._next(), at=at, job_id=task.job_id, reason="rejected by its node"
                )
            )
            state.submitted -= 1  # JobRejected counts a new job: this one was counted
        self._resync_dashboard()

    # --- ticks: heartbeats, the broker, the shutdown's countdown -----------------------

    def check(self) -> None:
        """Note nodes whose heartbeat stopped, and move the shutdown's countdown on."""
        now = self._now()
        for node in list(self._nodes.values()):
            if (
                node.online
                and node.events_seen  # a node that sends none (no -E) has no heartbeat to lose
                and node.heartbeat_at is not None
                and now - node.heartbeat_at > node.freq * HEARTBEAT_WINDOW
            ):
                self._node_gone(node, now, lost=True)
            deadline = node.shutdown_deadline
            if node.online and deadline is not None and now >= deadline:
                # Past its countdown and still up: what it runs is terminated.
                node.shutdown_deadline = None
                self._spawn(self._terminate_running([node.name]))
            elif self._finishing(node):
                patience = (node.offline_at or now) + OFFLINE_PATIENCE
                if now >= (patience if deadline is None else deadline):
                    self._lose_all(node, now)
        shutdown = self._cluster_shutdown
        phase = self._state.phase
        if shutdown is not None and phase.is_shutting_down:
            if now >= shutdown.deadline and phase is PoolPhase.DRAINING:
                self._spawn(self._escalate())
            elif now >= shutdown.deadline and phase is PoolPhase.CANCELLING:
                self._phase(PoolPhase.FORCING)
            else:
                self._emit(
                    ev.ShutdownTick(
                        seq=self._next(),
                        at=now,
                        phase=phase,
                        remaining=max(0.0, shutdown.deadline - now),
                        running=self._state.running,
                        queued=self._state.queued,
                    )
                )

    def _lose_all(self, node: _Node, at: float) -> None:
        """An offline node's tasks that never ended (past its countdown or patience)."""
        resync = False
        for task in [t for t in self._tasks.values() if t.node == node.name and t.slot]:
            resync |= self._lose(task, node, at, "went offline and the task never ended")
        if resync:
            self._resync_dashboard()
        self._settle_offline(node, at)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.check()
            if self._transport is not None and self._now() - self._last_broker >= BROKER_EVERY:
                self._last_broker = self._now()
                await self.read_broker()

    async def read_broker(self) -> None:
        """Read the broker's queue lengths now (the banner shows them; a failure is told there)."""
        transport = self._transport
        assert transport is not None
        queues = sorted({q for n in self._nodes.values() if n.online for q in n.queues}) or [
            "celery"
        ]
        try:
            self._broker = await asyncio.to_thread(transport.queue_lengths, queues)
        except Exception as exc:  # redis-py and kombu raise their own errors
            # Told in the banner; the next reading tries again.
            self._status = f"broker: cannot read the queue lengths: {type(exc).__name__}: {exc}"
        else:
            if self._status.startswith("broker: "):
                self._status = ""

    # --- starting, resyncing, closing ------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks_running.add(task)
        task.add_done_callback(self._spawned_done)
        return task

    def _spawned_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks_running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self._status = f"{type(exc).__name__}: {exc}"

    async def start(self) -> None:
        """Begin: the phase is running; with a broker, connect, listen, and resync."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        now = self._now()
        self._emit(
            ev.PhaseChanged(
                seq=self._next(),
                at=now,
                phase=PoolPhase.RUNNING,
                previous=PoolPhase.CREATED,
                reason=None,
            )
        )
        if self._receive is not None:
            self._thread = self._receive(self)
        if self._transport is not None:
            if not self.read_only:
                # As Flower does: a node started without -E sends events from now on.
                await asyncio.to_thread(
                    self._transport.broadcast, "enable_events", {}, None, False, 0.0
                )
            await self.resync()
        self._ticker = self._spawn(self._tick_forever())

    def check_broker(self) -> None:
        """Reach the broker once (blocking: call it in a thread).

        Raises:
            SourceError: It cannot be reached.
        """
        transport = self._transport
        check = getattr(transport, "check", None)
        if check is not None:
            check()

    def stop_flag(self) -> threading.Event:
        """Set when the receiver thread must stop."""
        return self._stop_flag

    def thread_says(self, status: str) -> None:
        """The receiver thread's news (lost the broker, back): shown in the banner."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._set_status, status)

    def _set_status(self, status: str) -> None:
        self._status = status

    def _request_resync(self, node: str) -> None:
        if self._transport is None or node in self._resyncing or self._loop is None:
            return
        self._resyncing.add(node)
        self._spawn(self._resync_node(node))

    async def _resync_node(self, node: str) -> None:
        try:
            await self.resync([node])
        finally:
            self._resyncing.discard(node)

    async def resync(self, nodes: Sequence[str] | None = None) -> None:
        """Ask the nodes (all, or ``nodes``) what they are and run: ``inspect`` stats,
        active, reserved, registered and active queues, all at once."""
        transport = self._transport
        if transport is None:
            return
        limit = None if nodes is None else list(nodes)

        def ask(command: str) -> Any:
            return asyncio.to_thread(
                transport.broadcast, command, {}, limit, True, self.inspect_timeout
            )

        answers = await asyncio.gather(
            ask("stats"), ask("active"), ask("reserved"), ask("registered"), ask("active_queues")
        )
        stats, active, reserved, registered, queues = (_by_node(a) for a in answers)
        now = self._now()
        for name, info in stats.items():
            if not isinstance(info, dict):
                continue
            pool = info.get("pool") or {}
            # The processes it has now (max-concurrency stays what it started with).
            processes = pool.get("processes")
            size = len(processes) if isinstance(processes, list) and processes else None
            if size is None:
                size = pool.get("max-concurrency")
            scaler = info.get("autoscaler")
            autoscale = None
            if isinstance(scaler, dict) and isinstance(scaler.get("max"), int):
                autoscale = (int(scaler.get("min", 0)), int(scaler["max"]))
            self.describe_node(
                name,
                pool=_pool_kind(str(pool.get("implementation", "?"))),
                size=size if isinstance(size, int) else None,
                autoscale=autoscale,
            )
        for name, names in registered.items():
            if isinstance(names, list):
                self.describe_node(name, registered=[str(n).split(" ")[0] for n in names])
        for name, found in queues.items():
            if isinstance(found, list):
                self.describe_node(
                    name, queues=[str(q.get("name")) for q in found if isinstance(q, dict)]
                )
        for name, found in reserved.items():
            for item in found if isinstance(found, list) else []:
                uuid = item.get("id") if isinstance(item, dict) else None
                if isinstance(uuid, str) and uuid not in self._ended:
                    self._task(uuid, _as_event(item), now).node = name
        for name, found in active.items():
            for item in found if isinstance(found, list) else []:
                uuid = item.get("id") if isinstance(item, dict) else None
                if not isinstance(uuid, str) or uuid in self._ended:
                    continue
                started = item.get("time_start")
                at = float(started) - self._wall_offset if isinstance(started, int | float) else now
                task = self._task(uuid, _as_event(item), at)
                if task.slot is None:
                    self._start(task, self._node(name), at)

    def describe_node(
        self,
        name: str,
        *,
        pool: str | None = None,
        size: int | None = None,
        autoscale: tuple[int, int] | None = None,
        registered: Iterable[str] | None = None,
        queues: Iterable[str] | None = None,
    ) -> None:
        """What ``inspect`` told of node ``name`` (it answered: it is up)."""
        node = self._node(name)
        now = self._now()
        if node.heartbeat_at is None:
            node.heartbeat_at = now
        if not node.online:
            node.online = True
            node.lost = False
            node.offline_at = None
        if pool is not None:
            node.pool = pool
        if autoscale is not None:
            node.autoscale = autoscale
        if registered is not None:
            node.registered = tuple(registered)
        if queues is not None:
            node.queues = tuple(queues)
        if size is not None:
            self._set_slots(node, size, now)

    async def close(self) -> None:
        """Stop listening (the cluster goes on)."""
        self._stop_flag.set()
        self._ticker = None
        running = list(self._tasks_running)
        for task in running:
            task.cancel()
        if running:
            # Only theirs: a cancellation of close() itself goes on up.
            await asyncio.wait(running)
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 5.0)
        for feed in self._feeds:
            feed.close()

    # --- controls ------------------------------------------------------------------------

    def aim(self, worker_id: str | None) -> None:
        """Controls that act on one node act on the node of ``worker_id``."""
        self._aimed = self.part_of(worker_id) if worker_id is not None else None

    def part_of(self, worker_id: str) -> str | None:
        """The node a worker panel belongs to."""
        for node in self._nodes.values():
            if worker_id in node.slots:
                return node.name
        return None

    def _aimed_node(self) -> _Node:
        node = self._nodes.get(self._aimed or "")
        if node is not None and node.online:
            return node
        up = sorted((n for n in self._nodes.values() if n.online), key=lambda n: n.name)
        if not up:
            raise SourceError("no node is up")
        return up[0]

    def _send_check(self) -> ControlTransport:
        if self.read_only:
            raise SourceError("read-only: no control is sent")
        if self._transport is None:
            raise SourceError("not connected to a broker: no control is sent")
        return self._transport

    async def _command(
        self, command: str, arguments: dict[str, Any], nodes: Sequence[str]
    ) -> dict[str, str]:
        """Send ``command`` to ``nodes``; each one's answer.

        Raises:
            SourceError: A node refused, or did not answer within the timeout
                (then it is said unanswered: not done).
        """
        transport = self._send_check()
        replies = await asyncio.to_thread(
            transport.broadcast, command, arguments, list(nodes), True, self.control_timeout
        )
        answers = _by_node(replies)
        refused = []
        out: dict[str, str] = {}
        for node in nodes:
            answer = answers.get(node)
            if not isinstance(answer, dict):
                refused.append(
                    f"{node}: no answer within {self.control_timeout:g}s (unanswered, not done)"
                )
            elif "error" in answer:
                why = f"{node} refused {command}: {answer['error']}"
                known = self._nodes.get(node)
                if command.startswith("pool_") and known is not None and known.pool in _FIXED:
                    why += (
                        f" (a {known.pool} pool cannot be resized: prefork, eventlet, gevent can)"
                    )
                refused.append(why)
            else:
                out[node] = str(answer.get("ok", answer))
        if refused:
            raise SourceError("; ".join(refused))
        return out

    def _registered(self) -> set[str]:
        return {name for n in self._nodes.values() if n.online for name in n.registered}

    async def add_jobs(self, count: int, payload: str | None = None) -> int:
        """Send ``count`` tasks of ``NAME [JSON arguments]`` (only names the nodes registered)."""
        transport = self._send_check()
        name, args, kwargs = parse_task(payload, self._registered())

        def send_all() -> int:
            for _ in range(count):
                transport.send_task(name, args, kwargs)
            return count

        return await asyncio.to_thread(send_all)

    async def resize(self, workers: int) -> None:
        """Grow or shrink the aimed node (the selected panel's) by the difference:
        ``pool_grow``/``pool_shrink``, or its autoscale range where autoscale is on."""
        node = self._aimed_node()
        delta = workers - self._state.target_workers
        if delta == 0:
            return
        new = node.size + delta
        if new < 0:
            raise SourceError(f"{node.name} has only {node.size} to take away")
        if node.autoscale is not None:
            low, high = node.autoscale
            high = max(low, high + delta)
            await self._command("autoscale", {"max": high, "min": min(low, high)}, [node.name])
            node.autoscale = (min(low, high), high)
        elif delta > 0:
            await self._command("pool_grow", {"n": delta}, [node.name])
        else:
            await self._command("pool_shrink", {"n": -delta}, [node.name])
        self._set_slots(node, new, self._now())

    async def pause(self) -> None:
        """Every node stops consuming its queues (``cancel_consumer``); running tasks go on."""
        await self._consumers("cancel_consumer")
        self._phase(PoolPhase.PAUSED)

    async def resume(self) -> None:
        """Every node consumes its queues again (``add_consumer``)."""
        await self._consumers("add_consumer")
        self._phase(PoolPhase.RUNNING)

    async def _consumers(self, command: str) -> None:
        up = [n for n in self._nodes.values() if n.online]
        if not up:
            raise SourceError("no node is up")
        queues = sorted({q for n in up for q in n.queues})
        failures = []
        for queue in queues:
            nodes = [n.name for n in up if queue in n.queues]
            try:
                await self._command(command, {"queue": queue}, nodes)
            except SourceError as exc:
                failures.append(str(exc))
        if failures:
            raise SourceError("; ".join(failures))

    def _phase(self, phase: PoolPhase, reason: str | None = None) -> None:
        previous = self._state.phase
        if phase is not previous:
            self._emit(
                ev.PhaseChanged(
                    seq=self._next(), at=self._now(), phase=phase, previous=previous, reason=reason
                )
            )

    async def cancel(self, job_id: str) -> bool:
        """Revoke a task; asked again, terminate it (SIGTERM to its process).

        A running task that is only revoked runs on to its end (Celery stops
        only tasks that have not started): its panel says it is cancelling.
        Returns False when the task had already ended.
        """
        transport = self._send_check()
        uuid = self._by_job.get(job_id, job_id)
        task = self._tasks.get(uuid)
        if task is None:
            return False
        terminate = task.revoke_asked and task.slot is not None
        up = sum(1 for n in self._nodes.values() if n.online)
        # To every node (one that receives it later must know it is revoked);
        # answered once the nodes up have.
        replies = await asyncio.to_thread(
            transport.broadcast,
            "revoke",
            {"task_id": uuid, "terminate": terminate, "signal": "SIGTERM"},
            None,
            True,
            self.control_timeout,
            up or None,
        )
        if not _by_node(replies):
            raise SourceError(
                f"revoke {job_id}: no node answered within {self.control_timeout:g}s "
                "(unanswered, not done)"
            )
        already = task.revoke_asked
        task.revoke_asked = True
        if task.slot is not None and not already:
            self._emit(
                ev.JobCancelRequested(
                    seq=self._next(),
                    at=self._now(),
                    job_id=task.job_id,
                    worker_id=task.slot,
                    reason="cancel",
                )
            )
        return True

    async def shutdown(self, grace: float | None, drain: bool, cancel_grace: float | None) -> None:
        """Warm shutdown of every node up; again, skip ahead (terminate what runs)."""
        if self._cluster_shutdown is not None:
            await self._escalate()
            return
        up = [n.name for n in self._nodes.values() if n.online]
        if not up:
            raise SourceError("no node is up")
        transport = self._send_check()
        await asyncio.to_thread(transport.broadcast, "shutdown", {}, up, False, 0.0)
        self.begin_countdown(
            up,
            self.grace if grace is None else grace,
            self.cancel_grace if cancel_grace is None else cancel_grace,
        )

    def begin_countdown(self, nodes: Sequence[str], grace: float, cancel_grace: float) -> None:
        """The cluster's shutdown was sent to ``nodes``: the countdown starts."""
        now = self._now()
        state = self._state
        self._cluster_shutdown = _ClusterShutdown(
            started_at=now,
            deadline=now + grace,
            grace=grace,
            cancel_grace=cancel_grace,
            nodes=tuple(nodes),
            ended_then=state.succeeded + state.failed + state.timed_out,
            cancelled_then=state.cancelled,
        )
        for name in nodes:
            self._nodes[name].stopping = True
        self._emit(
            ev.ShutdownStarted(
                seq=self._next(), at=now, grace=grace, cancel_grace=cancel_grace, drain=True
            )
        )
        self._phase(PoolPhase.DRAINING)

    async def shutdown_part(self, part: str, grace: float) -> None:
        """Warm shutdown of one node: its running tasks finish; past ``grace``, they
        are terminated. The rest of the cluster goes on."""
        node = self._nodes.get(part)
        if node is None or not node.online:
            raise SourceError(f"{part} is not up")
        transport = self._send_check()
        await asyncio.to_thread(transport.broadcast, "shutdown", {}, [part], False, 0.0)
        self.node_countdown(part, grace)

    def node_countdown(self, part: str, grace: float) -> None:
        """A shutdown was sent to node ``part``: its countdown starts."""
        node = self._nodes[part]
        node.stopping = True
        now = self._now()
        node.shutdown_deadline = now + grace
        for task in self._tasks.values():
            if task.node == part and task.slot is not None:
                self._emit(ev.WorkerRetireRequested(seq=self._next(), at=now, worker_id=task.slot))

    async def _escalate(self) -> None:
        """Skip the cluster's shutdown ahead: terminate what runs, then only wait."""
        shutdown = self._cluster_shutdown
        assert shutdown is not None
        phase = self._state.phase
        if phase is PoolPhase.DRAINING:
            shutdown.deadline = self._now() + shutdown.cancel_grace
            self._phase(PoolPhase.CANCELLING)
            await self._terminate_running([n for n in shutdown.nodes if self._nodes[n].online])
        elif phase is PoolPhase.CANCELLING:
            self._phase(PoolPhase.FORCING)
        else:
            raise SourceError(
                "celery has no remote cold shutdown: waiting for the nodes to stop "
                "(SIGQUIT to a node stops it at once)"
            )

    async def _terminate_running(self, nodes: Sequence[str]) -> None:
        transport = self._send_check()
        ids = [t.uuid for t in self._tasks.values() if t.node in nodes and t.slot is not None]
        if ids:
            await asyncio.to_thread(
                transport.broadcast,
                "revoke",
                {"task_id": ids, "terminate": True, "signal": "SIGTERM"},
                list(nodes),
                True,
                self.control_timeout,
            )

    def _cluster_stopped(self, at: float) -> None:
        shutdown = self._cluster_shutdown
        assert shutdown is not None
        state = self._state
        self._emit(
            ev.PoolStopped(
                seq=self._next(),
                at=at,
                phase=PoolPhase.STOPPED,
                phase_reached=state.phase,
                finished=max(
                    0, state.succeeded + state.failed + state.timed_out - shutdown.ended_then
                ),
                cancelled=max(0, state.cancelled - shutdown.cancelled_then),
                not_started=state.queued,
                abandoned=0,
                duration=at - shutdown.started_at,
                reason=None,
            )
        )
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def wait_stopped(self) -> None:
        """Wait until every node the cluster's shutdown was sent to is offline."""
        if self._stopped is None:
            raise SourceError("not started")
        await asyncio.shield(self._stopped)

    async def dead_letters(self) -> tuple[DeadLetter, ...]:
        return tuple(
            DeadLetter(
                job=Job(id=task.job_id, payload=task.label.encode(), meta={"uuid": task.uuid}),
                state=JobState.FAILED,
                error=error,
                attempts=task.retries + 1,
                at=at,
            )
            for task, error, at in self._failed.values()
        )

    async def job(self, job_id: str) -> JobView | None:
        uuid = self._by_job.get(job_id, job_id)
        task = self._tasks.get(uuid)
        if task is not None:
            return JobView(
                job=Job(id=task.job_id, payload=task.label.encode(), meta={"uuid": uuid}),
                state="running" if task.slot is not None else "queued",
                attempts=task.retries + 1,
                worker_id=task.slot,
                started_at=task.started_at,
            )
        failed = self._failed.get(job_id)
        if failed is not None:
            task, error, _ = failed
            return JobView(
                job=Job(id=task.job_id, payload=task.label.encode(), meta={"uuid": task.uuid}),
                state="failed",
                attempts=task.retries + 1,
                worker_id=task.slot,
                error=error,
            )
        return None

    def describe(self, job: Job) -> str:
        return job.payload.decode("utf-8", "replace")


@dataclass(slots=True)
class _ClusterShutdown:
    """The cluster's warm shutdown: when its current phase ends, and what it started from."""

    started_at: float
    deadline: float
    grace: float
    cancel_grace: float
    nodes: tuple[str, ...]
    ended_then: int
    cancelled_then: int


def _error(exception: str, traceback: object) -> ErrorInfo:
    kind, paren, rest = exception.partition("(")
    message = rest[:-1] if paren and rest.endswith(")") else exception
    message = message.strip("'\"")
    return ErrorInfo(
        type=kind if paren else "Exception",
        message=message,
        traceback=traceback if isinstance(traceback, str) else "",
    )


def _by_node(replies: object) -> dict[str, Any]:
    """``[{node: answer}, ...]`` (or one dict of them) as one dict."""
    out: dict[str, Any] = {}
    if isinstance(replies, dict):
        replies = [replies]
    if isinstance(replies, list):
        for reply in replies:
            if isinstance(reply, dict):
                out.update(reply)
    return out


def _as_event(item: dict[str, Any]) -> dict[str, Any]:
    args = item.get("args")
    return {"name": item.get("name"), "args": _args_text(args)}


def _args_text(args: object) -> str:
    if isinstance(args, list | tuple):
        return "(" + ", ".join(repr(a) for a in args) + ")"
    return args if isinstance(args, str) else ""


def _pool_kind(implementation: str) -> str:
    """``celery.concurrency.prefork:TaskPool`` -> ``prefork``."""
    module = implementation.split(":")[0]
    return module.rsplit(".", 1)[-1] or implementation


def _safe_url(url: str) -> str:
    """The broker's URL without its password."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + ':***@' if user else '***@'}{host}"


# --- Celery itself (imported only here, when a source connects) ---------------------------


class CeleryControl:
    """The real transport: a Celery app's remote control, its broker, its event receiver.

    Raises:
        SourceError: Celery is not installed, or ``app`` cannot be imported.
    """

    def __init__(self, broker: str, *, app: str | None = None) -> None:
        try:
            import celery
        except ImportError:
            raise SourceError("celery is not installed: pip install 'wpool-tui[celery]'") from None
        if app is not None:
            import importlib

            try:
                module = importlib.import_module(app.split(":")[0])
            except ImportError as exc:
                raise SourceError(f"cannot import the app {app!r}: {exc}") from None
            names = [app.split(":")[1]] if ":" in app else ["app", "celery"]
            found = next(
                (
                    getattr(module, n)
                    for n in names
                    if isinstance(getattr(module, n, None), celery.Celery)
                ),
                None,
            )
            if found is None:
                raise SourceError(f"{app!r} has no Celery app named {' or '.join(names)}")
            self.app = found
            self.app.conf.broker_url = broker
        else:
            self.app = celery.Celery("wpool-tui", broker=broker, set_as_current=False)
        self.app.conf.broker_connection_retry_on_startup = False
        self.broker = broker

    def check(self) -> None:
        """Connect to the broker once.

        Raises:
            SourceError: It cannot be reached.
        """
        with self.app.connection_for_write() as conn:
            try:
                conn.ensure_connection(max_retries=1, timeout=2)
            except Exception as exc:  # kombu raises its transports' own errors
                raise SourceError(
                    f"cannot reach the broker {_safe_url(self.broker)}: {exc}"
                ) from exc

    def broadcast(
        self,
        command: str,
        arguments: dict[str, Any],
        destination: Sequence[str] | None,
        reply: bool,
        timeout: float,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        if limit is None and destination and reply:
            limit = len(destination)
        result = self.app.control.broadcast(
            command,
            arguments=arguments,
            destination=list(destination) if destination else None,
            reply=reply,
            timeout=timeout,
            limit=limit,
        )
        return list(result or [])

    def send_task(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
        result = self.app.send_task(name, args=args, kwargs=kwargs)
        return str(result.id)

    def queue_lengths(self, queues: Iterable[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        with self.app.connection_for_read() as conn:
            channel = conn.default_channel
            client = getattr(channel, "client", None)
            for queue in queues:
                if client is not None:
                    # Redis: one list per priority step (kombu's naming); all of it waits.
                    names = [queue, *(f"{queue}\x06\x16{p}" for p in (3, 6, 9))]
                    out[queue] = sum(int(client.llen(n)) for n in names)
                else:
                    out[queue] = int(channel.queue_declare(queue, passive=True).message_count)
        return out

    def receiver(self, source: CelerySource) -> threading.Thread:
        """Start the thread that receives the cluster's events into ``source``."""
        thread = threading.Thread(
            target=self._receive, args=(source,), name="celery-events", daemon=True
        )
        thread.start()
        return thread

    def _receive(self, source: CelerySource) -> None:
        stop = source.stop_flag()
        delay = 0.25
        while not stop.is_set():
            try:
                with self.app.connection_for_read() as conn:
                    receiver = self.app.events.Receiver(conn, handlers={"*": source.from_thread})

                    def watch(receiver: Any = receiver) -> None:
                        stop.wait()
                        receiver.should_stop = True

                    threading.Thread(target=watch, daemon=True).start()
                    source.thread_says("")
                    delay = 0.25
                    # Short drains: a closing source's thread sees the stop flag soon.
                    for _ in receiver.consume(
                        limit=None, timeout=None, safety_interval=0.25, wakeup=True
                    ):
                        pass
            except Exception as exc:  # kombu raises its transports' own errors
                # Told in the banner, then tried again: a monitor outlives its broker's restarts.
                source.thread_says(
                    f"events: lost the broker ({type(exc).__name__}: {exc}); retrying"
                )
                if stop.wait(delay):
                    return
                delay = min(delay * 2, 4.0)
