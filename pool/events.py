"""The pool's events: one immutable, slotted class per fact, and their JSON form.

Every change of state in the pool is published as an event with a sequence
number ``seq`` (1, 2, 3, ... per pool) and a time ``at`` from the pool's
clock. Events carry data; formatting is the reader's business. Consumers
``match`` on :data:`PoolEvent` and end with ``assert_never``.

Every event is an :class:`Event`, declared as a dataclass is (annotated
fields, defaults last) and built the same way: by keyword, or by position
in declaration order (``seq``, ``at``, then its own fields), which is how the
bus builds them. Underneath, an event is a tuple (the cheapest immutable
object to build, which matters: several are made per job), but it does
not act as one: it equals only an event of its own class, and it cannot be
iterated, ordered or unpacked.
"""

from __future__ import annotations

import collections
import enum
import json
import typing
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Final, NoReturn, dataclass_transform

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
    "fields",
    "from_dict",
    "from_json",
    "to_dict",
    "to_json",
)


@dataclass_transform(kw_only_default=True, frozen_default=True)
class _EventClass(type):
    """Makes every subclass of :class:`Event` a slotted tuple with a field per annotation.

    The constructor, the field accessors and ``repr`` are those that
    :func:`collections.namedtuple` makes for the same fields (the base's
    first), so an event is as cheap to build and read as a named tuple.
    """

    def __new__(
        mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> _EventClass:
        names: list[str] = []
        defaults: dict[str, Any] = {}
        for base in bases:
            base_defaults: dict[str, Any] = getattr(base, "_field_defaults", {})
            for field_name in getattr(base, "_fields", ()):
                names.append(field_name)
                if field_name in base_defaults:
                    defaults[field_name] = base_defaults[field_name]
        for field_name in namespace.get("__annotations__", {}):
            if field_name in names:
                raise TypeError(f"{name}: field {field_name!r} is already a field of its base")
            names.append(field_name)
            if field_name in namespace:
                defaults[field_name] = namespace.pop(field_name)
            elif defaults:
                raise TypeError(f"{name}: field {field_name!r} without a default follows one with")
        namespace["__slots__"] = ()
        namespace["_fields"] = tuple(names)
        namespace["_field_defaults"] = defaults
        namespace["__match_args__"] = tuple(names)
        if any(isinstance(base, _EventClass) for base in bases):
            make_shape: Callable[..., type[tuple[Any, ...]]] = collections.namedtuple
            shape = make_shape(name, names, defaults=tuple(defaults.values()))
            namespace["__new__"] = shape.__new__
            namespace["__repr__"] = shape.__repr__
            for field_name in names:
                namespace[field_name] = vars(shape)[field_name]
        return super().__new__(mcls, name, bases, namespace, **kwargs)


class Event(tuple[Any, ...], metaclass=_EventClass):
    """What every event is, and the fields every event has.

    Attributes:
        seq: The pool's sequence number for this event, from 1, without gaps.
        at: The pool clock's time when it happened.
    """

    seq: int
    at: float

    if TYPE_CHECKING:
        _fields: ClassVar[tuple[str, ...]]

    def __new__(cls, *args: Any, **kwargs: Any) -> Event:
        raise TypeError("Event is the base of the events, not one itself")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple.__hash__(self)))

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(f"{type(self).__name__} is an event, not a sequence: read its fields")

    def __getnewargs__(self) -> tuple[Any, ...]:
        # Copies and pickles rebuild an event from its values, without iterating.
        return tuple.__getitem__(self, slice(None))

    def _refuse(self, other: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is an event, not a sequence")

    __lt__ = __le__ = __gt__ = __ge__ = __add__ = __mul__ = __rmul__ = _refuse

    def __getitem__(self, index: Any) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is an event, not a sequence: read its fields")

    def __len__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is an event, not a sequence: read its fields")

    def __bool__(self) -> bool:
        return True


# --- jobs -------------------------------------------------------------------


class JobSubmitted(Event):
    """A job was accepted into the queue; ``queued`` is the queue depth after it.

    ``label`` names the job for people (a shell command's text), when the
    pool has a way to (see ``Pool``'s ``describe``); else it is empty.
    """

    job_id: str
    queued: int
    label: str = ""


class JobStarted(Event):
    """A worker began an attempt at a job, after it ``waited`` seconds in the queue."""

    job_id: str
    worker_id: str
    attempt: int
    waited: float


class JobProgressed(Event):
    """A running job reported progress: ``fraction`` from 0.0 to 1.0 and a note."""

    job_id: str
    worker_id: str
    fraction: float
    message: str


class JobSucceeded(Event):
    """The handler returned; the attempt took ``duration`` seconds."""

    job_id: str
    worker_id: str
    attempt: int
    duration: float


class JobRejected(Event):
    """A job was refused because the queue was full (it counts as rejected)."""

    job_id: str
    reason: str


class JobRetryScheduled(Event):
    """An attempt failed (its handler raised, or its worker crashed) and the
    job will run again after ``delay`` seconds."""

    job_id: str
    worker_id: str
    attempt: int
    duration: float
    error: ErrorInfo
    delay: float


class JobFailed(Event):
    """The job failed for good: its last attempt raised, or its worker crashed under it."""

    job_id: str
    worker_id: str
    attempt: int
    duration: float
    error: ErrorInfo


class JobCancelRequested(Event):
    """A running job was asked to stop; ``reason`` is timeout, cancel or shutdown."""

    job_id: str
    worker_id: str
    reason: str


class JobTimedOut(Event):
    """A job that ran past its deadline has stopped."""

    job_id: str
    worker_id: str
    attempt: int
    duration: float


class JobCancelled(Event):
    """A job was cancelled; ``worker_id`` is None when it had not started."""

    job_id: str
    worker_id: str | None
    started: bool


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


class JobAbandoned(Event):
    """A job ignored its cancellation for ``cancel_grace`` and was abandoned."""

    job_id: str
    worker_id: str
    duration: float


# --- workers ----------------------------------------------------------------


class WorkerStarted(Event):
    """A new worker slot came up and is idle."""

    worker_id: str


class WorkerRetireRequested(Event):
    """A busy worker will exit after its current job (the pool is shrinking)."""

    worker_id: str


class WorkerStopped(Event):
    """A worker exited: retired by a resize, or stopped by the shutdown."""

    worker_id: str


class WorkerCrashed(Event):
    """A worker died (not a job's error: its loop or thread did).

    ``job_id`` is the job it held, if any. ``restart_in`` is the backoff
    before it restarts, or None when it will not restart.
    """

    worker_id: str
    job_id: str | None
    error: ErrorInfo
    restart_in: float | None


class WorkerRestarted(Event):
    """A crashed worker's slot is up again; ``restarts`` counts its restarts."""

    worker_id: str
    restarts: int


class WorkerReplaced(Event):
    """A worker whose job was abandoned was replaced by a fresh one in its slot."""

    worker_id: str
    job_id: str


# --- the pool ---------------------------------------------------------------


class PhaseChanged(Event):
    """The pool moved from ``previous`` to ``phase``; ``reason`` says why, when it matters."""

    phase: PoolPhase
    previous: PoolPhase
    reason: str | None


class PoolResized(Event):
    """The target number of workers changed from ``previous`` to ``target``."""

    target: int
    previous: int


class ShutdownStarted(Event):
    """A graceful shutdown began with these settings; ``reason`` says why when
    it was not asked for (supervision gave up), else None."""

    grace: float
    cancel_grace: float
    drain: bool
    reason: str | None = None


class ShutdownTick(Event):
    """About every 100 ms of a shutdown: ``remaining`` seconds left in ``phase``."""

    phase: PoolPhase
    remaining: float
    running: int
    queued: int


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


def fields(cls: type[Event]) -> tuple[str, ...]:
    """The names of an event class's fields, in declaration order (``seq`` and ``at`` first)."""
    return cls._fields


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
    for name in type(event)._fields:
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
