"""The pool's events: one immutable, slotted class per fact, and their JSON form.

Every change of state in the pool is published as an event with a sequence
number ``seq`` (1, 2, 3, ... per pool) and a time ``at`` from the pool's
clock. Events carry data; formatting is the reader's business. Consumers
``match`` on :data:`PoolEvent` and end with ``assert_never``.

Events are frozen dataclasses, except the four made once per job
(submitted, started, progressed, succeeded): those are named tuples, the
cheapest immutable object to build, which the pool builds through
:func:`_maker`. Both kinds have the same fields, JSON and ``match`` form.
"""

from __future__ import annotations

import enum
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Final, NamedTuple

from .job import ErrorInfo
from .phase import PoolPhase

__all__ = (
    "EVENT_TYPES",
    "Event",
    "EventsDropped",
    "JobAbandoned",
    "JobCancelRequested",
    "JobCancelled",
    "JobFailed",
    "JobOutputCaptured",
    "JobProgressed",
    "JobRejected",
    "JobRetryScheduled",
    "JobStarted",
    "JobSubmitted",
    "JobSucceeded",
    "JobTimedOut",
    "PhaseChanged",
    "PoolEvent",
    "PoolResized",
    "PoolStopped",
    "ShutdownStarted",
    "ShutdownTick",
    "WorkerCrashed",
    "WorkerReplaced",
    "WorkerRestarted",
    "WorkerRetireRequested",
    "WorkerStarted",
    "WorkerStopped",
    "from_dict",
    "from_json",
    "to_dict",
    "to_json",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every event has.

    Attributes:
        seq: The pool's sequence number for this event, from 1, without gaps.
        at: The pool clock's time when it happened.
    """

    seq: int
    at: float


# --- jobs -------------------------------------------------------------------

# The four events every job makes (submitted, started, progressed, succeeded)
# are named tuples: built in C, about a third of a frozen dataclass's cost,
# and just as immutable and slotted. As tuples they would equal any tuple of
# the same values: these keep an event equal only to an event of its type.


def _same_event(self: tuple[Any, ...], other: object) -> bool:
    return type(other) is type(self) and tuple.__eq__(self, other)


def _other_event(self: tuple[Any, ...], other: object) -> bool:
    return not _same_event(self, other)


def _event_hash(self: tuple[Any, ...]) -> int:
    return hash((type(self).__name__, *self))


class JobSubmitted(NamedTuple):
    """A job was accepted into the queue; ``queued`` is the queue depth after it.

    ``label`` names the job for people (a shell command's text), when the
    pool has a way to (see ``Pool``'s ``describe``); else it is empty.
    """

    seq: int
    at: float
    job_id: str
    queued: int
    label: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRejected(Event):
    """A job was refused because the queue was full (it counts as rejected)."""

    job_id: str
    reason: str


class JobStarted(NamedTuple):
    """A worker began an attempt at a job, after it ``waited`` seconds in the queue."""

    seq: int
    at: float
    job_id: str
    worker_id: str
    attempt: int
    waited: float


class JobProgressed(NamedTuple):
    """A running job reported progress: ``fraction`` from 0.0 to 1.0 and a note."""

    seq: int
    at: float
    job_id: str
    worker_id: str
    fraction: float
    message: str


class JobSucceeded(NamedTuple):
    """The handler returned; the attempt took ``duration`` seconds."""

    seq: int
    at: float
    job_id: str
    worker_id: str
    attempt: int
    duration: float


for _tuple_event in (JobSubmitted, JobStarted, JobProgressed, JobSucceeded):
    # Set here: a NamedTuple's class body may only declare fields.
    _tuple_event.__eq__ = _same_event  # type: ignore[method-assign]
    _tuple_event.__ne__ = _other_event  # type: ignore[method-assign, assignment]
    _tuple_event.__hash__ = _event_hash  # type: ignore[method-assign]
del _tuple_event


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRetryScheduled(Event):
    """An attempt failed (its handler raised, or its worker crashed) and the
    job will run again after ``delay`` seconds."""

    job_id: str
    worker_id: str
    attempt: int
    duration: float
    error: ErrorInfo
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFailed(Event):
    """The job failed for good: its last attempt raised, or its worker crashed under it."""

    job_id: str
    worker_id: str
    attempt: int
    duration: float
    error: ErrorInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCancelRequested(Event):
    """A running job was asked to stop; ``reason`` is timeout, cancel or shutdown."""

    job_id: str
    worker_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobTimedOut(Event):
    """A job that ran past its deadline has stopped."""

    job_id: str
    worker_id: str
    attempt: int
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCancelled(Event):
    """A job was cancelled; ``worker_id`` is None when it had not started."""

    job_id: str
    worker_id: str | None
    started: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class JobOutputCaptured(Event):
    """What an attempt's process left: its exit code and the tail of its output.

    Published by runners that run jobs in processes (shell commands, the
    process runner), before the attempt's outcome; for an abandoned job it
    may come after it, once the killed process has been reaped.

    Attributes:
        exit_code: The exit status; negative when a signal ended it
            (``-9`` for SIGKILL); None when it could not be started.
        output: The last lines it wrote to stdout and stderr (bounded).
        path: The file holding all of its output, if it was saved.
    """

    job_id: str
    worker_id: str
    attempt: int
    exit_code: int | None
    output: str
    path: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobAbandoned(Event):
    """A job ignored its cancellation for ``cancel_grace`` and was abandoned."""

    job_id: str
    worker_id: str
    duration: float


# --- workers ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStarted(Event):
    """A new worker slot came up and is idle."""

    worker_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRetireRequested(Event):
    """A busy worker will exit after its current job (the pool is shrinking)."""

    worker_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStopped(Event):
    """A worker exited: retired by a resize, or stopped by the shutdown."""

    worker_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerCrashed(Event):
    """A worker died (not a job's error: its loop or thread did).

    ``job_id`` is the job it held, if any. ``restart_in`` is the backoff
    before it restarts, or None when it will not restart.
    """

    worker_id: str
    job_id: str | None
    error: ErrorInfo
    restart_in: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRestarted(Event):
    """A crashed worker's slot is up again; ``restarts`` counts its restarts."""

    worker_id: str
    restarts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerReplaced(Event):
    """A worker whose job was abandoned was replaced by a fresh one in its slot."""

    worker_id: str
    job_id: str


# --- the pool ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseChanged(Event):
    """The pool moved from ``previous`` to ``phase``; ``reason`` says why, when it matters."""

    phase: PoolPhase
    previous: PoolPhase
    reason: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolResized(Event):
    """The target number of workers changed from ``previous`` to ``target``."""

    target: int
    previous: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownStarted(Event):
    """A graceful shutdown began with these settings; ``reason`` says why when
    it was not asked for (supervision gave up), else None."""

    grace: float
    cancel_grace: float
    drain: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownTick(Event):
    """About every 100 ms of a shutdown: ``remaining`` seconds left in ``phase``."""

    phase: PoolPhase
    remaining: float
    running: int
    queued: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolStopped(Event):
    """The shutdown ended; counts of the report's job lists, and how it ended."""

    phase: PoolPhase
    phase_reached: PoolPhase
    finished: int
    cancelled: int
    not_started: int
    abandoned: int
    duration: float
    reason: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventsDropped(Event):
    """Made for one subscriber: it fell behind and missed ``missed`` events.

    ``seq`` is that of the last missed event. The subscriber should resync
    from ``pool.snapshot()`` and skip events with ``seq <= snapshot.seq``.
    """

    missed: int


PoolEvent = (
    JobSubmitted
    | JobRejected
    | JobStarted
    | JobProgressed
    | JobSucceeded
    | JobRetryScheduled
    | JobFailed
    | JobCancelRequested
    | JobTimedOut
    | JobOutputCaptured
    | JobCancelled
    | JobAbandoned
    | WorkerStarted
    | WorkerRetireRequested
    | WorkerStopped
    | WorkerCrashed
    | WorkerRestarted
    | WorkerReplaced
    | PhaseChanged
    | PoolResized
    | ShutdownStarted
    | ShutdownTick
    | PoolStopped
    | EventsDropped
)
"""Any event the pool publishes."""

EVENT_TYPES: Final[dict[str, type[Any]]] = {cls.__name__: cls for cls in typing.get_args(PoolEvent)}
"""Every event class by its name, as written in the JSON ``type`` field."""


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    """An event class's fields, in declaration order."""
    if issubclass(cls, tuple):
        names: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
        return names
    return tuple(f.name for f in fields(cls))


def _maker(cls: type[Any]) -> Callable[..., Any]:
    """A positional constructor for ``cls`` (fields in declaration order), as fast as can be.

    A named tuple is built by ``tuple.__new__`` directly. A frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__``;
    setting its slots through their descriptors makes the very same object
    about three times faster.
    """
    names = _field_names(cls)
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls, "tuple_new": tuple.__new__}
    args = ", ".join(names)
    if issubclass(cls, tuple):
        source = f"def make({args}):\n    return tuple_new(cls, ({args},))\n"
    else:
        for name in names:
            namespace[f"set_{name}"] = getattr(cls, name).__set__
        body = "".join(f"    set_{name}(o, {name})\n" for name in names)
        source = f"def make({args}):\n    o = new(cls)\n{body}    return o\n"
    exec(source, namespace)
    make: Callable[..., Any] = namespace["make"]
    return make


# --- JSON -------------------------------------------------------------------


def _encode(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, ErrorInfo):
        return {"type": value.type, "message": value.message, "traceback": value.traceback}
    return value


def to_dict(event: PoolEvent, *, wall_offset: float | None = None) -> dict[str, object]:
    """The event as a JSON-ready dict, its class name under ``type``.

    With ``wall_offset`` (wall-clock time minus the pool clock's, e.g.
    ``time.time() - pool.clock.now()``), a ``wall`` field follows ``at``:
    the event's time in Unix seconds, to line it up with other logs.
    :func:`from_dict` accepts it and leaves it out.
    """
    out: dict[str, object] = {"type": type(event).__name__}
    for name in _FIELDS[type(event)]:
        out[name] = _encode(getattr(event, name))
        if name == "at" and wall_offset is not None:
            out["wall"] = round(event.at + wall_offset, 6)
    return out


def to_json(event: PoolEvent, *, wall_offset: float | None = None) -> str:
    """The event as one line of JSON (see :func:`to_dict` for ``wall_offset``)."""
    return json.dumps(to_dict(event, wall_offset=wall_offset), separators=(",", ":"))


def _decoder(hint: object) -> Callable[[Any], Any]:
    args = set(typing.get_args(hint)) or {hint}
    optional = type(None) in args
    args.discard(type(None))
    (kind,) = args

    def decode(value: Any) -> Any:
        if value is None and optional:
            return None
        if kind is PoolPhase:
            return PoolPhase(value)
        if kind is ErrorInfo:
            return _decode_error(value)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        # JSON true/false are Python bools, which are ints: refuse them for numbers.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise TypeError(f"expected {kind.__name__}, got {value!r}")
        return value

    return decode


def _decode_error(value: object) -> ErrorInfo:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {value!r}")
    unknown = set(value) - {"type", "message", "traceback"}
    if unknown:
        raise TypeError(f"unexpected field {sorted(unknown)[0]!r}")
    for key in ("type", "message"):
        if not isinstance(value.get(key), str):
            raise TypeError(f"{key} must be a string, got {value.get(key)!r}")
    if not isinstance(value.get("traceback", ""), str):
        raise TypeError(f"traceback must be a string, got {value['traceback']!r}")
    return ErrorInfo(**value)


_FIELDS: Final[dict[type[Any], tuple[str, ...]]] = {
    cls: _field_names(cls) for cls in EVENT_TYPES.values()
}

BUILDERS: Final[dict[type[Any], Callable[..., Any]]] = {
    cls: _maker(cls) for cls in EVENT_TYPES.values()
}
"""Every event class's positional constructor (``seq``, ``at``, then its fields in
order): how :meth:`~pool.bus.EventBus.emit` builds the events it publishes."""

_DECODERS: Final[dict[type[Any], dict[str, Callable[[Any], Any]]]] = {
    cls: {name: _decoder(hint) for name, hint in typing.get_type_hints(cls).items()}
    for cls in EVENT_TYPES.values()
}


_ANNOTATIONS: Final = frozenset({"type", "wall", "result"})
"""Keys of the JSON form that are not fields: the class, the wall-clock time, and
the handler's result that ``wpool-tui run --headless`` adds to ``JobSucceeded``."""


def from_dict(data: dict[str, Any]) -> PoolEvent:
    """Rebuild an event from :func:`to_dict`'s form.

    Raises:
        ValueError: The type is unknown, a field is missing or unexpected, or
            a value has the wrong type.
    """
    name = data.get("type")
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown event type {name!r}")
    decoders = _DECODERS[cls]
    extra = set(data) - set(decoders) - _ANNOTATIONS
    if extra:
        raise ValueError(f"{name}: unexpected field {sorted(extra)[0]!r}")
    values: dict[str, Any] = {}
    for field_name, decode in decoders.items():
        if field_name not in data:
            raise ValueError(f"{name}: missing field {field_name!r}")
        try:
            values[field_name] = decode(data[field_name])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}.{field_name}: {exc}") from exc
    event: PoolEvent = cls(**values)
    return event


def from_json(text: str) -> PoolEvent:
    """Rebuild an event from :func:`to_json`'s form.

    Raises:
        ValueError: The text is not JSON or not an event.
    """
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"an event is a JSON object, got {type(data).__name__}")
    return from_dict(data)
