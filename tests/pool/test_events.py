"""Tests of ``pool.events``: the event classes and their JSON form.

Sample events are built from each class's fields and type hints, so an event
type added to ``PoolEvent`` is covered here without a change to this file (a
field of a new type makes :func:`sample_value` fail loudly until it is taught).
"""

from __future__ import annotations

import copy
import inspect
import json
import pickle
import re
import typing
from typing import Any

import pytest

from pool import ErrorInfo, PoolPhase
from pool import events as ev

EVENT_NAMES = sorted(ev.EVENT_TYPES)

_PHASES = list(PoolPhase)


def sample_value(hint: object, index: int, *, fill_optional: bool) -> object:
    """A value of type ``hint``, different for each field ``index`` of a class."""
    args = typing.get_args(hint)
    if type(None) in args:
        if not fill_optional:
            return None
        (hint,) = [a for a in args if a is not type(None)]
    if hint is bool:
        return index % 2 == 0
    if hint is int:
        return 10 + index
    if hint is float:
        return 0.25 + index  # not integral, so an int/float mix-up shows
    if hint is str:
        return f'value {index}: \u00e9"quoted"'
    if hint is PoolPhase:
        return _PHASES[index % len(_PHASES)]
    if hint is ErrorInfo:
        return ErrorInfo(
            type="pool.errors.QueueFull",
            message=f"queue is full\nsecond line {index}",
            traceback='Traceback (most recent call last):\n  File "x.py", line 1\nQueueFull\n',
        )
    raise AssertionError(f"no sample value for {hint!r}: teach sample_value this type")


def sample_fields(cls: type[ev.Event], *, fill_optional: bool) -> dict[str, Any]:
    """Keyword arguments for ``cls``: every field, in declaration order."""
    hints = typing.get_type_hints(cls)
    return {
        name: sample_value(hints[name], i, fill_optional=fill_optional)
        for i, name in enumerate(ev.fields(cls))
    }


def sample(name: str, *, fill_optional: bool = True) -> ev.PoolEvent:
    cls = ev.EVENT_TYPES[name]
    event: ev.PoolEvent = cls(**sample_fields(cls, fill_optional=fill_optional))
    return event


def _types(event: ev.PoolEvent) -> list[type]:
    return [type(getattr(event, name)) for name in ev.fields(type(event))]


class TestSampleCoverage:
    def test_samples_use_every_kind_of_field(self) -> None:
        # The round trips below are only as good as the samples: check that
        # they include enums, nested errors, and None for optional fields.
        kinds = {
            type(value)
            for name in EVENT_NAMES
            for fill in (False, True)
            for value in sample_fields(ev.EVENT_TYPES[name], fill_optional=fill).values()
        }

        assert {bool, int, float, str, PoolPhase, ErrorInfo, type(None)} <= kinds

    def test_every_event_class_in_the_module_is_a_pool_event(self) -> None:
        defined = {
            name
            for name, obj in vars(ev).items()
            if inspect.isclass(obj) and issubclass(obj, ev.Event) and obj is not ev.Event
        }

        assert defined == set(ev.EVENT_TYPES)
        assert set(typing.get_args(ev.PoolEvent)) == set(ev.EVENT_TYPES.values())
        assert defined <= set(ev.__all__)

    def test_type_names_are_the_class_names(self) -> None:
        for name, cls in ev.EVENT_TYPES.items():
            assert cls.__name__ == name


def every_sample() -> list[ev.PoolEvent]:
    """An event of every class, with optional fields filled, then left None."""
    return [sample(name, fill_optional=fill) for name in EVENT_NAMES for fill in (True, False)]


class TestRoundTrip:
    def test_every_event_reads_back_from_json_and_from_its_dict(self) -> None:
        for event in every_sample():
            data = ev.to_dict(event)
            text = ev.to_json(event)
            assert data["type"] == type(event).__name__
            assert json.loads(json.dumps(data)) == data, "the dict is plain JSON data"
            assert "\n" not in text, "one line"
            for back in (ev.from_json(text), ev.from_dict(data)):
                assert type(back) is type(event)
                assert back == event
                assert _types(back) == _types(event), event


class TestJsonForm:
    def test_enums_and_errors_are_written_as_plain_values(self) -> None:
        event = ev.JobFailed(
            seq=3,
            at=1.5,
            job_id="a",
            worker_id="w1",
            attempt=2,
            duration=0.5,
            error=ErrorInfo(type="ValueError", message="bad", traceback="tb"),
        )

        assert json.loads(ev.to_json(event)) == {
            "type": "JobFailed",
            "seq": 3,
            "at": 1.5,
            "job_id": "a",
            "worker_id": "w1",
            "attempt": 2,
            "duration": 0.5,
            "error": {"type": "ValueError", "message": "bad", "traceback": "tb"},
        }
        phase = ev.PhaseChanged(
            seq=1, at=0.0, phase=PoolPhase.RUNNING, previous=PoolPhase.STARTING, reason=None
        )
        assert ev.to_dict(phase)["phase"] == "running"

    def test_an_int_for_a_float_field_reads_as_a_float(self) -> None:
        back = ev.from_json('{"type":"WorkerStarted","seq":1,"at":5,"worker_id":"w1"}')

        assert back == ev.WorkerStarted(seq=1, at=5.0, worker_id="w1")
        assert type(back.at) is float

    def test_a_wall_clock_time_follows_at_and_reads_back(self) -> None:
        event = ev.WorkerStarted(seq=1, at=5.25, worker_id="w1")
        text = ev.to_json(event, wall_offset=1_700_000_000.0)
        assert text == (
            '{"type":"WorkerStarted","seq":1,"at":5.25,"wall":1700000005.25,"worker_id":"w1"}'
        )
        assert ev.from_json(text) == event
        assert "wall" not in ev.to_dict(event)


def _valid(name: str) -> dict[str, Any]:
    return ev.to_dict(sample(name))


class TestFromJsonErrors:
    @pytest.mark.parametrize(
        ("text", "kind"),
        [("[]", "list"), ('"JobSubmitted"', "str"), ("null", "NoneType"), ("3", "int")],
    )
    def test_non_object_json(self, text: str, kind: str) -> None:
        with pytest.raises(ValueError, match=rf"^an event is a JSON object, got {kind}$"):
            ev.from_json(text)

    def test_not_json_at_all(self) -> None:
        with pytest.raises(ValueError, match=r"^Expecting value: line 1 column 1 \(char 0\)$"):
            ev.from_json("not json")

    @pytest.mark.parametrize(
        ("data", "shown"),
        [
            ({"type": "JobExploded", "seq": 1, "at": 0.0}, "'JobExploded'"),
            ({"type": "Event", "seq": 1, "at": 0.0}, "'Event'"),
            ({"type": "jobsubmitted"}, "'jobsubmitted'"),
            ({"type": 7}, "7"),
            ({"seq": 1, "at": 0.0}, "None"),
        ],
    )
    def test_unknown_type(self, data: dict[str, Any], shown: str) -> None:
        with pytest.raises(ValueError, match=rf"^unknown event type {re.escape(shown)}$"):
            ev.from_json(json.dumps(data))

    def test_each_missing_field_is_named(self) -> None:
        for name in EVENT_NAMES:
            for field in ev.fields(ev.EVENT_TYPES[name]):
                data = _valid(name)
                del data[field]

                with pytest.raises(ValueError, match=rf"^{name}: missing field '{field}'$"):
                    ev.from_json(json.dumps(data))

    def test_unexpected_field(self) -> None:
        data = _valid("JobSubmitted")
        data["priority"] = 3

        with pytest.raises(ValueError, match=r"^JobSubmitted: unexpected field 'priority'$"):
            ev.from_json(json.dumps(data))

    @pytest.mark.parametrize(
        ("name", "field", "value", "message"),
        [
            ("JobSubmitted", "queued", "three", r"JobSubmitted\.queued: expected int, got 'three'"),
            ("JobSubmitted", "queued", 1.5, r"JobSubmitted\.queued: expected int, got 1\.5"),
            ("JobSubmitted", "job_id", None, r"JobSubmitted\.job_id: expected str, got None"),
            ("JobSubmitted", "job_id", 5, r"JobSubmitted\.job_id: expected str, got 5"),
            ("JobStarted", "waited", "1.0", r"JobStarted\.waited: expected float, got '1\.0'"),
            ("JobStarted", "waited", True, r"JobStarted\.waited: expected float, got True"),
            ("JobCancelled", "started", 1, r"JobCancelled\.started: expected bool, got 1"),
            ("JobCancelled", "worker_id", 3, r"JobCancelled\.worker_id: expected str, got 3"),
            (
                "PhaseChanged",
                "phase",
                "sideways",
                r"PhaseChanged\.phase: 'sideways' is not a valid PoolPhase",
            ),
            ("JobFailed", "error", "boom", r"JobFailed\.error: expected an object, got 'boom'"),
        ],
    )
    def test_wrong_value_type(self, name: str, field: str, value: object, message: str) -> None:
        data = _valid(name)
        data[field] = value

        with pytest.raises(ValueError, match=rf"^{message}$"):
            ev.from_json(json.dumps(data))

    @pytest.mark.parametrize("field", ["seq", "queued"])
    def test_bool_for_an_int_field_is_a_wrong_type(self, field: str) -> None:
        # JSON true is not a count: bool is refused for float fields, and must
        # be for int fields too (isinstance(True, int) holds in Python).
        data = _valid("JobSubmitted")
        data[field] = True

        with pytest.raises(ValueError, match=rf"^JobSubmitted\.{field}: expected int, got True$"):
            ev.from_json(json.dumps(data))

    @pytest.mark.parametrize(
        "error",
        [
            {"type": 1, "message": "m", "traceback": ""},
            {"type": "E", "message": ["m"], "traceback": ""},
        ],
    )
    def test_wrong_type_inside_an_error_is_refused(self, error: dict[str, Any]) -> None:
        # Else the event reads back and its error breaks later, in the reader
        # (ErrorInfo.short() on a non-str type).
        data = _valid("JobFailed")
        data["error"] = error

        with pytest.raises(ValueError, match=r"^JobFailed\.error"):
            ev.from_json(json.dumps(data))

    def test_unknown_key_inside_an_error_is_refused(self) -> None:
        data = _valid("JobFailed")
        data["error"] = {"type": "E", "message": "m", "traceback": "", "code": 3}

        with pytest.raises(ValueError, match=r"^JobFailed\.error: "):
            ev.from_json(json.dumps(data))


class TestEventObjects:
    def test_every_event_is_one_kind_of_object(self) -> None:
        # One base, one way to build, compare, copy and match, for all of them.
        for event in every_sample():
            cls: Any = type(event)
            values = {name: getattr(event, name) for name in ev.fields(cls)}
            assert isinstance(event, ev.Event)
            assert cls.__match_args__ == ev.fields(cls)
            assert "__slots__" in vars(cls)
            assert not hasattr(event, "__dict__")
            assert cls(**values) == event
            assert cls(*values.values()) == event, "by position, in declaration order"
            assert hash(cls(**values)) == hash(event)
            assert pickle.loads(pickle.dumps(event)) == event
            assert copy.deepcopy(event) == event
            for name in ev.fields(cls):
                with pytest.raises(AttributeError):
                    setattr(event, name, values[name])

    def test_an_event_equals_only_an_event_of_its_own_class(self) -> None:
        started = ev.WorkerStarted(seq=1, at=2.0, worker_id="w1")
        stopped = ev.WorkerStopped(seq=1, at=2.0, worker_id="w1")

        assert started != stopped
        assert hash(started) != hash(stopped)
        assert started != (1, 2.0, "w1")
        assert started == ev.WorkerStarted(seq=1, at=2.0, worker_id="w1")
        assert not started != ev.WorkerStarted(seq=1, at=2.0, worker_id="w1")  # noqa: SIM202

    def test_an_event_is_not_a_sequence(self) -> None:
        event: Any = ev.WorkerStarted(seq=1, at=2.0, worker_id="w1")

        for misuse in (list, len, lambda e: e[0], lambda e: e < e, lambda e: e + e):
            with pytest.raises(TypeError, match=r"^WorkerStarted is an event, not a sequence"):
                misuse(event)

    def test_the_base_is_no_event_itself(self) -> None:
        with pytest.raises(TypeError, match=r"^Event is the base of the events, not one itself$"):
            ev.Event(seq=1, at=2.0)

    def test_a_missing_or_unknown_field_is_refused(self) -> None:
        with pytest.raises(TypeError):
            ev.WorkerStarted(seq=1, at=2.0)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            ev.WorkerStarted(seq=1, at=2.0, worker_id="w1", job_id="j")  # type: ignore[call-arg]

    def test_match_by_keyword_and_by_position(self) -> None:
        event: ev.PoolEvent = ev.JobStarted(
            seq=1, at=2.0, job_id="j", worker_id="w1", attempt=1, waited=0.5
        )
        match event:
            case ev.JobStarted(1, 2.0, job_id, worker_id="w1"):  # type: ignore[misc]
                assert job_id == "j"
            case _:
                pytest.fail("no match")


def _words(name: str) -> list[str]:
    return re.findall(r"[A-Z][a-z]*", name)


# STYLE.md asks for past-tense event names. ShutdownTick is a periodic reading,
# not a change; it is listed so that no new name joins it unnoticed.
NOT_PAST_TENSE = frozenset({"ShutdownTick"})


_PARTICLES = frozenset({"Out", "Up", "Down", "Off", "Back"})


class TestNaming:
    @pytest.mark.parametrize("name", [n for n in EVENT_NAMES if n not in NOT_PAST_TENSE])
    def test_past_tense(self, name: str) -> None:
        # A past participle last (JobFailed), or before a particle (JobTimedOut).
        *rest, last = _words(name)
        if last in _PARTICLES:
            last = rest[-1]
        assert last.endswith("ed"), f"{name} is not in the past tense"

    def test_exceptions_are_still_event_types(self) -> None:
        assert set(ev.EVENT_TYPES) >= NOT_PAST_TENSE
