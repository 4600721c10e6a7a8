"""The JSON form of snapshots, jobs and dead letters: round trips, and clear refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pool import ErrorInfo, Job, JobState, ManualClock, Pool, wire
from pool.pool import DeadLetter
from tests.helpers import Script, release_all, settle


class TestJobs:
    @pytest.mark.parametrize(
        "job",
        [
            Job(id="a", payload=b"echo hi"),
            Job(id="b", payload=b"\xff\x00binary", timeout=2.5, meta={"k": "v"}),
            Job(id="c"),
        ],
        ids=["text", "binary", "empty"],
    )
    def test_a_job_survives_the_round_trip(self, job: Job) -> None:
        data = json.loads(json.dumps(wire.job_to_dict(job)))
        assert wire.job_from_dict(data) == job

    def test_text_stays_text_and_bytes_go_as_base64(self) -> None:
        assert wire.job_to_dict(Job(id="t", payload="é".encode())) == {"id": "t", "payload": "é"}
        assert wire.job_to_dict(Job(id="b", payload=b"\xff")) == {
            "id": "b",
            "payload_base64": "/w==",
        }

    def test_without_an_id_one_is_made(self) -> None:
        job = wire.job_from_dict({"payload": "x"})
        assert job.id
        assert job.payload == b"x"

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ([], r"^job: expected an object, got \[\]$"),
            ({"payload": 3}, r"^job\.payload: expected str, got 3$"),
            ({"payload": "x", "code": "rm -rf"}, r"^job: unexpected field 'code'$"),
            (
                {"payload": "x", "payload_base64": "eA=="},
                r"^job: give payload or payload_base64, not both$",
            ),
            ({"payload_base64": "!!"}, r"^job\.payload_base64: not base64: "),
            ({"timeout": "soon"}, r"^job\.timeout: expected float, got 'soon'$"),
            ({"timeout": True}, r"^job\.timeout: expected float, got True$"),
            ({"timeout": -1}, r"^job: timeout must be > 0, got -1"),
            ({"id": ""}, r"^job: id must not be empty$"),
            ({"meta": {"k": 1}}, r"^job\.meta\.k: expected str, got 1$"),
        ],
    )
    def test_bad_input_is_named(self, data: Any, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            wire.job_from_dict(data)


class TestDeadLetters:
    def test_a_dead_letter_survives_the_round_trip(self) -> None:
        letter = DeadLetter(
            job=Job(id="j", payload=b"p"),
            state=JobState.FAILED,
            error=ErrorInfo(type="ValueError", message="bad", traceback="tb"),
            attempts=3,
            at=12.5,
        )
        data = json.loads(json.dumps(wire.dead_letter_to_dict(letter)))
        assert wire.dead_letter_from_dict(data) == letter

    def test_an_unknown_state_is_named(self) -> None:
        data = wire.dead_letter_to_dict(
            DeadLetter(job=Job(id="j"), state=JobState.TIMED_OUT, error=None, attempts=1, at=1.0)
        )
        data["state"] = "exploded"
        with pytest.raises(
            ValueError, match=r"^dead_letter\.state: expected one of .*got 'exploded'$"
        ):
            wire.dead_letter_from_dict(data)


class TestSnapshots:
    async def test_a_live_snapshot_survives_the_round_trip(self, clock: ManualClock) -> None:
        script = Script()
        pool = Pool(script, workers=2, clock=clock)
        await pool.start()
        pool.submit_nowait(Job(id="held", payload=b"hold"))
        pool.submit_nowait(Job(id="done", payload=b"ok"))
        await settle()
        snapshot = pool.snapshot()
        assert any(w.job_id == "held" for w in snapshot.workers)
        data = json.loads(json.dumps(wire.snapshot_to_dict(snapshot)))
        assert wire.snapshot_from_dict(data) == snapshot
        release_all()
        await pool.shutdown()

    async def test_a_missing_or_wrong_field_is_named(self, clock: ManualClock) -> None:
        pool = Pool(Script(), workers=1, clock=clock)
        await pool.start()
        data = wire.snapshot_to_dict(pool.snapshot())
        await pool.shutdown()
        broken = json.loads(json.dumps(data))
        del broken["stats"]["queued"]
        with pytest.raises(ValueError, match=r"^snapshot\.stats: missing field 'queued'$"):
            wire.snapshot_from_dict(broken)
        broken = json.loads(json.dumps(data))
        broken["workers"][0]["state"] = "dancing"
        with pytest.raises(ValueError, match=r"^snapshot\.workers\[0\]\.state: expected one of "):
            wire.snapshot_from_dict(broken)
        broken = json.loads(json.dumps(data))
        broken["seq"] = "7"
        with pytest.raises(ValueError, match=r"^snapshot\.seq: expected int, got '7'$"):
            wire.snapshot_from_dict(broken)


def test_errors_keep_type_message_and_traceback() -> None:
    error = ErrorInfo(type="mod.Boom", message="line 1\nline 2", traceback="Traceback...")
    assert wire.error_from_dict(wire.error_to_dict(error)) == error
    assert wire.error_from_dict({"type": "X", "message": "m"}) == ErrorInfo(type="X", message="m")
