"""Tests of ``pool.job``: jobs as data, their states, errors as text, and handles."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import AsyncIterator
from types import MappingProxyType
from typing import Final

import pytest

from pool import (
    ErrorInfo,
    Job,
    JobCancelledError,
    JobContext,
    JobFailedError,
    JobState,
    ManualClock,
    Pool,
    QueueFull,
)


class ParseError(Exception):
    """An exception defined outside builtins, for the qualified-name rule."""


class TestJobIds:
    def test_generated_ids_are_unique_non_empty_strings(self) -> None:
        ids = [Job().id for _ in range(1000)]

        assert len(set(ids)) == len(ids)
        assert all(isinstance(i, str) and i for i in ids)

    def test_given_id_is_kept(self) -> None:
        assert Job(id="invoice-7").id == "invoice-7"

    def test_empty_id_is_refused(self) -> None:
        with pytest.raises(ValueError, match=r"^id must not be empty$"):
            Job(id="")

    def test_non_string_id_is_refused(self) -> None:
        with pytest.raises(TypeError, match=r"^id must be a str, got 5$"):
            Job(id=5)  # type: ignore[arg-type]

    def test_timeout_is_stored_as_a_float(self) -> None:
        timeout = Job(timeout=5).timeout
        assert isinstance(timeout, float)
        assert timeout == 5.0

    def test_jobs_are_hashable(self) -> None:
        assert hash(Job(id="h", meta={"a": "b"})) == hash(Job(id="h", meta={"a": "b"}))


class TestJobIsFrozen:
    @pytest.mark.parametrize(
        ("name", "value"), [("payload", b"other"), ("id", "other"), ("timeout", 1.0)]
    )
    def test_fields_cannot_be_assigned(self, name: str, value: object) -> None:
        job = Job(payload=b"data", id="a", timeout=5.0)

        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(job, name, value)
        assert (job.payload, job.id, job.timeout) == (b"data", "a", 5.0)


class TestJobPayload:
    def test_bytes_are_kept(self) -> None:
        assert Job(payload=b"\x00\xffdata").payload == b"\x00\xffdata"

    def test_default_is_empty_bytes(self) -> None:
        assert Job().payload == b""

    @pytest.mark.parametrize(
        ("payload", "kind"),
        [("text", "str"), (bytearray(b"x"), "bytearray"), (memoryview(b"x"), "memoryview")],
    )
    def test_non_bytes_are_refused(self, payload: object, kind: str) -> None:
        with pytest.raises(TypeError, match=rf"^payload must be bytes, got {kind}$"):
            Job(payload=payload)  # type: ignore[arg-type]


class TestJobTimeout:
    @pytest.mark.parametrize("timeout", [None, 0.001, 2.5, 30])
    def test_none_or_positive_is_accepted(self, timeout: float | None) -> None:
        assert Job(timeout=timeout).timeout == timeout

    @pytest.mark.parametrize(
        ("timeout", "shown"),
        [(-1, "-1"), (-0.5, "-0.5"), (0, "0"), (0.0, "0.0"), (math.nan, "nan")],
    )
    def test_negative_zero_or_nan_is_refused(self, timeout: float, shown: str) -> None:
        with pytest.raises(ValueError, match=rf"^timeout must be > 0, got {shown}$"):
            Job(timeout=timeout)

    @pytest.mark.parametrize(("timeout", "shown"), [(True, "True"), (False, "False"), ("5", "'5'")])
    def test_bool_or_non_number_is_refused(self, timeout: object, shown: str) -> None:
        with pytest.raises(
            TypeError, match=rf"^timeout must be a number of seconds or None, got {shown}$"
        ):
            Job(timeout=timeout)  # type: ignore[arg-type]


class TestJobMeta:
    def test_default_is_empty_and_read_only(self) -> None:
        job = Job()

        assert dict(job.meta) == {}
        with pytest.raises(TypeError):
            job.meta["k"] = "v"  # type: ignore[index]

    def test_str_to_str_mapping_is_kept(self) -> None:
        assert dict(Job(meta={"tenant": "acme", "kind": "pdf"}).meta) == {
            "tenant": "acme",
            "kind": "pdf",
        }

    def test_is_read_only(self) -> None:
        job = Job(meta={"tenant": "acme"})

        with pytest.raises(TypeError):
            job.meta["tenant"] = "other"  # type: ignore[index]
        with pytest.raises(TypeError):
            del job.meta["tenant"]  # type: ignore[attr-defined]
        assert dict(job.meta) == {"tenant": "acme"}

    def test_later_change_to_the_dict_passed_in_does_not_leak_in(self) -> None:
        given = {"tenant": "acme"}
        job = Job(meta=given)

        given["tenant"] = "other"
        given["extra"] = "x"
        del given["tenant"]

        assert dict(job.meta) == {"tenant": "acme"}

    def test_a_read_only_mapping_passed_in_is_copied_too(self) -> None:
        backing = {"tenant": "acme"}
        job = Job(meta=MappingProxyType(backing))

        backing["tenant"] = "other"

        assert dict(job.meta) == {"tenant": "acme"}

    @pytest.mark.parametrize(
        ("meta", "shown"), [({1: "a"}, "1: 'a'"), ({"a": 1}, "'a': 1"), ({"a": None}, "'a': None")]
    )
    def test_non_str_key_or_value_is_refused(self, meta: object, shown: str) -> None:
        with pytest.raises(TypeError, match=rf"^meta must map str to str, got {shown}$"):
            Job(meta=meta)  # type: ignore[arg-type]

    def test_non_mapping_is_refused(self) -> None:
        with pytest.raises(TypeError, match=r"^meta must be a mapping of str to str, got \['a'\]$"):
            Job(meta=["a"])  # type: ignore[arg-type]


TERMINAL: Final = {
    JobState.QUEUED: False,
    JobState.RUNNING: False,
    JobState.SUCCEEDED: True,
    JobState.FAILED: True,
    JobState.TIMED_OUT: True,
    JobState.CANCELLED: True,
    JobState.ABANDONED: True,
}


class TestJobState:
    def test_every_state_is_classified_here(self) -> None:
        assert set(TERMINAL) == set(JobState)

    @pytest.mark.parametrize("state", list(JobState), ids=lambda s: s.value)
    def test_is_terminal(self, state: JobState) -> None:
        assert state.is_terminal is TERMINAL[state]


def _raise(exc: BaseException) -> None:
    raise exc  # the raising line the traceback must show


def _caught(exc: BaseException) -> BaseException:
    try:
        _raise(exc)
    except BaseException as caught:
        return caught
    raise AssertionError("unreachable")


class TestErrorInfoFromException:
    class Nested(Exception):
        """Defined in a class: its qualified name includes the class."""

    def test_builtin_type_is_bare(self) -> None:
        info = ErrorInfo.from_exception(_caught(ValueError("bad input 42")))

        assert info.type == "ValueError"
        assert info.message == "bad input 42"

    def test_non_builtin_type_is_qualified_by_module(self) -> None:
        info = ErrorInfo.from_exception(_caught(ParseError("line 3")))

        assert info.type == f"{__name__}.ParseError"
        assert info.message == "line 3"

    def test_pool_error_is_qualified(self) -> None:
        info = ErrorInfo.from_exception(_caught(QueueFull("queue is full")))

        assert info.type == "pool.errors.QueueFull"

    def test_nested_class_uses_its_qualified_name(self) -> None:
        info = ErrorInfo.from_exception(_caught(self.Nested("x")))

        assert info.type == f"{__name__}.TestErrorInfoFromException.Nested"

    def test_traceback_shows_the_raising_line_and_the_error(self) -> None:
        info = ErrorInfo.from_exception(_caught(ValueError("bad input 42")))

        assert info.traceback.startswith("Traceback (most recent call last):\n")
        assert "raise exc  # the raising line the traceback must show" in info.traceback
        assert "in _raise" in info.traceback
        assert info.traceback.rstrip().endswith("ValueError: bad input 42")

    def test_a_bug_inside_the_pool_keeps_every_frame(self) -> None:
        # Raised from the pool's own code, by no handler: the frames are the news.
        with pytest.raises(TypeError) as caught:
            Job(payload="text")  # type: ignore[arg-type]
        info = ErrorInfo.from_exception(caught.value)
        assert info.traceback.startswith("Traceback (most recent call last):\n")
        assert "pool/job.py" in info.traceback

    def test_message_is_str_of_the_exception(self) -> None:
        assert ErrorInfo.from_exception(_caught(KeyError("k"))).message == "'k'"


class TestErrorInfoShort:
    def test_bare_type_name_and_message(self) -> None:
        info = ErrorInfo(type="pool.errors.QueueFull", message="queue is full")

        assert info.short() == "QueueFull: queue is full"

    def test_only_the_first_line_of_the_message(self) -> None:
        info = ErrorInfo(type="ValueError", message="first line\nsecond line")

        assert info.short() == "ValueError: first line"

    def test_no_message_gives_the_name_alone(self) -> None:
        assert ErrorInfo(type="a.b.Timeout", message="").short() == "Timeout"


@dataclasses.dataclass
class Gated:
    """A one-worker pool whose handler holds every job until ``gate`` is set."""

    pool: Pool
    gate: asyncio.Event
    started: asyncio.Event


@pytest.fixture
async def gated(clock: ManualClock) -> AsyncIterator[Gated]:
    gate = asyncio.Event()
    started = asyncio.Event()

    async def handler(job: Job, ctx: JobContext) -> bytes:
        started.set()
        if job.payload == b"fail":
            raise ValueError("bad payload")
        await gate.wait()
        return job.payload.upper()

    pool = Pool(handler, workers=1, clock=clock)
    await pool.start()
    yield Gated(pool=pool, gate=gate, started=started)
    gate.set()
    await pool.shutdown()


class TestJobHandleResult:
    async def test_raises_invalid_state_while_running_or_queued(self, gated: Gated) -> None:
        running = gated.pool.submit_nowait(Job(id="a", payload=b"one"))
        queued = gated.pool.submit_nowait(Job(id="b", payload=b"two"))
        await gated.started.wait()

        with pytest.raises(asyncio.InvalidStateError, match=r"^job 'a' is running$"):
            running.result()
        with pytest.raises(asyncio.InvalidStateError, match=r"^job 'b' is queued$"):
            queued.result()
        assert not running.done()
        assert not queued.done()

        gated.gate.set()

        assert await running == b"ONE"
        assert await queued == b"TWO"
        assert running.result() == b"ONE"
        assert running.state is JobState.SUCCEEDED

    async def test_failed_job_raises_job_failed_with_the_cause(self, gated: Gated) -> None:
        handle = gated.pool.submit_nowait(Job(id="f", payload=b"fail"))

        failed = r"^job 'f' failed: ValueError: bad payload$"
        with pytest.raises(JobFailedError, match=failed) as info:
            await handle

        assert isinstance(info.value.__cause__, ValueError)
        assert info.value.error.type == "ValueError"
        assert info.value.job_id == "f"
        with pytest.raises(JobFailedError, match=failed):
            handle.result()

    async def test_cancelled_queued_job_raises_job_cancelled(self, gated: Gated) -> None:
        gated.pool.submit_nowait(Job(id="a"))
        queued = gated.pool.submit_nowait(Job(id="b"))
        await gated.started.wait()

        assert queued.cancel() is True

        assert queued.state is JobState.CANCELLED
        with pytest.raises(JobCancelledError, match=r"^job 'b' was cancelled$"):
            queued.result()
        assert queued.cancel() is False
