"""Recordings: written as the events come, read back whole or cut short, and replayed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

import tui.sources.recording as recording_module
from pool import Job, ManualClock, Pool, PoolPhase
from pool import events as ev
from tests.helpers import Script, release_all, settle
from tui.app import create_app
from tui.sources.recording import Recorder, Recording, RecordingError, ReplaySource
from tui.state import DashboardState
from tui.widgets.joblog import JobLog

WPOOL = str(Path(sys.executable).with_name("wpool-tui"))


async def record_a_run(path: Path, clock: ManualClock) -> list[ev.PoolEvent]:
    """A pool's whole life, recorded as a dashboard would: returns every event it made."""
    script = Script()
    pool = Pool(script, workers=2, clock=clock, name="recorded")
    sub = pool.events(maxsize=10_000)
    recorder = Recorder(path)
    recorder.begin(
        title="recorded",
        snapshot=pool.snapshot(),
        take_snapshot=pool.snapshot,
        wall_offset=1_700_000_000.0,
    )
    seen: list[ev.PoolEvent] = []

    def take() -> None:
        batch = sub.drain()
        seen.extend(batch)
        recorder.record(batch)

    await pool.start()
    for i in range(6):
        pool.submit_nowait(Job(id=f"j{i}", payload=b"fail" if i == 3 else b"ok"))
        await settle()
        await clock.advance(1.0)
        take()
    pool.submit_nowait(Job(id="held", payload=b"hold"))
    await settle()
    take()
    task = asyncio.ensure_future(pool.shutdown(grace=2.0, cancel_grace=1.0))
    await settle()
    await clock.advance(0.5)
    take()
    script.release()
    await task
    take()
    recorder.close()
    release_all()
    return seen


def fold(state: DashboardState, events: list[ev.PoolEvent]) -> DashboardState:
    state.apply_all(events)
    return state


class TestWriting:
    async def test_a_recording_reads_back_as_it_was_written(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        path = tmp_path / "run.jsonl"
        seen = await record_a_run(path, clock)
        recording = Recording.read(path)
        assert recording.title == "recorded"
        assert recording.complete
        assert recording.events == seen
        assert isinstance(recording.events[-1], ev.PoolStopped)
        lines = path.read_text().splitlines()
        header = json.loads(lines[0])
        assert (header["format"], header["version"]) == ("wpool-recording", 1)
        first_event = json.loads(lines[1])
        assert first_event["wall"] == pytest.approx(first_event["at"] + 1_700_000_000.0)

    async def test_snapshots_come_every_so_often_so_that_seeking_is_cheap(
        self, tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(recording_module, "SNAPSHOT_EVERY", 5)
        path = tmp_path / "run.jsonl"
        seen = await record_a_run(path, clock)
        recording = Recording.read(path)
        assert len(recording.snapshots) > 3
        for index, snapshot in recording.snapshots:
            # Each holds exactly the events before its place.
            before = seen[:index]
            if before:
                assert snapshot.seq >= before[-1].seq

    async def test_a_gap_is_written_as_a_gap_and_a_fresh_snapshot(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        pool = Pool(Script(), workers=1, clock=clock)
        path = tmp_path / "gap.jsonl"
        recorder = Recorder(path)
        recorder.begin(
            title="t", snapshot=pool.snapshot(), take_snapshot=pool.snapshot, wall_offset=0.0
        )
        recorder.record([ev.EventsDropped(seq=10, at=1.0, missed=7)])
        recorder.close()
        kinds = [json.loads(line).get("type") for line in path.read_text().splitlines()[1:]]
        assert kinds == ["gap", "snapshot"]

    def test_a_file_that_cannot_be_written_is_told_at_once(self, tmp_path: Path) -> None:
        with pytest.raises(IsADirectoryError):
            Recorder(tmp_path)

    async def test_a_full_disk_stops_the_recording_and_says_why(self, clock: ManualClock) -> None:
        pool = Pool(Script(), workers=1, clock=clock)
        recorder = Recorder("/dev/full")
        recorder.begin(
            title="t", snapshot=pool.snapshot(), take_snapshot=pool.snapshot, wall_offset=0.0
        )
        assert recorder.error is not None
        assert recorder.error.strerror == "No space left on device"
        recorder.record([ev.WorkerStarted(seq=1, at=0.0, worker_id="w1")])  # no raise
        recorder.close()


class TestReading:
    async def test_a_last_line_cut_short_by_a_crash_is_left_out(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        path = tmp_path / "crashed.jsonl"
        seen = await record_a_run(path, clock)
        text = path.read_text()
        path.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 10])  # half a line
        recording = Recording.read(path)
        assert not recording.complete
        assert recording.events == seen[: len(recording.events)]
        assert len(recording.events) >= len(seen) - 2

    @pytest.mark.parametrize(
        ("lines", "message"),
        [
            ([], r"^{path}: empty: not a recording$"),
            (['{"format": "something else"}'], r"^{path}:1: not a wpool-tui recording$"),
            (
                ['{"format": "wpool-recording", "version": 2, "snapshot": {}}'],
                r"^{path}:1: recording format version 2, newer than this wpool-tui reads "
                r"\(1\): update wpool-tui$",
            ),
            (["not json"], r"^{path}:1: not JSON: Expecting value$"),
        ],
    )
    def test_a_file_that_is_not_a_recording_is_refused_naming_the_line(
        self, tmp_path: Path, lines: list[str], message: str
    ) -> None:
        path = tmp_path / "bad.jsonl"
        path.write_text("".join(line + "\n" for line in lines))
        with pytest.raises(RecordingError, match=message.format(path=str(path))):
            Recording.read(path)

    async def test_a_broken_event_names_its_line(self, tmp_path: Path, clock: ManualClock) -> None:
        path = tmp_path / "run.jsonl"
        await record_a_run(path, clock)
        lines = path.read_text().splitlines()
        lines[3] = json.dumps({"type": "JobExploded", "seq": 1, "at": 0.0})
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(RecordingError, match=rf"^{path}:4: unknown event type 'JobExploded'$"):
            Recording.read(path)


class FakeWall:
    """Real time for the replay, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TestReplay:
    async def test_playing_to_the_end_shows_what_the_live_dashboard_showed(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        path = tmp_path / "run.jsonl"
        seen = await record_a_run(path, clock)
        recording = Recording.read(path)
        wall = FakeWall()
        replay = ReplaySource(recording, wall=wall)
        feed = replay.events(maxsize=1000)
        state = DashboardState.from_snapshot(replay.snapshot())
        live = fold(DashboardState.from_snapshot(recording.first), seen)
        for _ in range(40):
            wall.now += 0.5
            replay.tick()
            state.apply_all(feed.drain())
        assert replay.at_end
        assert (state.succeeded, state.failed, state.cancelled) == (
            live.succeeded,
            live.failed,
            live.cancelled,
        )
        assert state.phase is PoolPhase.STOPPED
        assert [e.job_id for e in state.log] == [e.job_id for e in live.log]

    async def test_time_moves_at_the_speed_and_stops_when_paused(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        path = tmp_path / "run.jsonl"
        await record_a_run(path, clock)
        wall = FakeWall()
        replay = ReplaySource(Recording.read(path), wall=wall)
        start = replay.now()
        replay.speed = 2.0
        wall.now += 1.0
        replay.tick()
        assert replay.now() == pytest.approx(start + 2.0)
        replay.toggle_pause()
        wall.now += 5.0
        replay.tick()
        assert replay.now() == pytest.approx(start + 2.0)
        replay.faster()
        assert replay.speed == 4.0
        replay.slower()
        replay.slower()
        assert replay.speed == 1.0

    async def test_step_plays_one_event(self, tmp_path: Path, clock: ManualClock) -> None:
        path = tmp_path / "run.jsonl"
        seen = await record_a_run(path, clock)
        replay = ReplaySource(Recording.read(path), wall=FakeWall())
        feed = replay.events(maxsize=1000)
        replay.step()
        replay.step()
        assert feed.drain() == seen[:2]
        assert replay.paused

    async def test_seeking_shows_the_recording_as_it_stood_then(
        self, tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(recording_module, "SNAPSHOT_EVERY", 4)
        path = tmp_path / "run.jsonl"
        seen = await record_a_run(path, clock)
        recording = Recording.read(path)
        replay = ReplaySource(recording, wall=FakeWall())
        feed = replay.events(maxsize=1000)
        moment = recording.start + 3.5
        replay.seek(moment)
        batch = feed.drain()
        assert isinstance(batch[0], ev.EventsDropped), "the dashboard resyncs first"
        state = DashboardState()
        state.apply_all(batch)
        state.resync(replay.snapshot())
        state.apply_all(batch[1:])
        expected = fold(
            DashboardState.from_snapshot(recording.first), [e for e in seen if e.at <= moment]
        )
        assert (state.succeeded, state.failed, state.submitted) == (
            expected.succeeded,
            expected.failed,
            expected.submitted,
        )
        assert replay.now() == moment

    async def test_the_dashboard_seeking_back_shows_that_moment_and_no_later_row(
        self, tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(recording_module, "SNAPSHOT_EVERY", 4)
        path = tmp_path / "run.jsonl"
        seen = await record_a_run(path, clock)
        recording = Recording.read(path)
        replay = ReplaySource(recording, wall=FakeWall())
        replay.paused = True
        app = create_app(replay, read_only=True, animate=False)
        async with app.run_test(size=(120, 40)):
            replay.seek(recording.end)
            app.refresh_now()
            assert app.state.phase is PoolPhase.STOPPED
            moment = recording.start + 3.5
            replay.seek(moment)
            app.refresh_now()
            expected = fold(
                DashboardState.from_snapshot(recording.first), [e for e in seen if e.at <= moment]
            )
            state = app.state
            assert (state.phase, state.succeeded, state.failed, state.submitted) == (
                expected.phase,
                expected.succeeded,
                expected.failed,
                expected.submitted,
            )
            # The log starts afresh at the snapshot the seek started from: its rows
            # are the last of the rows of that moment, and none from later.
            shown = [e.job_id for e in state.log]
            assert shown
            assert shown == [e.job_id for e in expected.log][-len(shown) :]
            assert app.query_one(JobLog).row_count == len(shown)

    async def test_next_mark_finds_the_failure_then_the_shutdown(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        path = tmp_path / "run.jsonl"
        await record_a_run(path, clock)
        replay = ReplaySource(Recording.read(path), wall=FakeWall())
        assert replay.next_mark() == "the failure of j3"
        assert replay.next_mark() == "a shutdown"
        assert replay.next_mark() is None


class TestCommands:
    def test_replay_of_a_broken_file_is_a_usage_error(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"format": "wpool-recording", "version": 9}\n')
        done = subprocess.run(
            [WPOOL, "replay", str(bad)], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 2
        assert done.stderr == (
            f"wpool-tui replay: error: {bad}:1: recording format version 9, newer than this "
            "wpool-tui reads (1): update wpool-tui\n"
        )

    def test_a_headless_run_records_what_it_printed(self, tmp_path: Path) -> None:
        jobs = tmp_path / "jobs.txt"
        jobs.write_text("true\nexit 3\n")
        record = tmp_path / "r.jsonl"
        done = subprocess.run(
            [WPOOL, "run", "--shell", "--headless", "--jobs", str(jobs), "--record", str(record)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        printed = [json.loads(line) for line in done.stdout.splitlines()]
        recording = Recording.read(record)
        assert [e.seq for e in recording.events] == [line["seq"] for line in printed]
        assert isinstance(recording.events[-1], ev.PoolStopped)

    def test_record_to_a_folder_is_refused_before_anything_runs(self, tmp_path: Path) -> None:
        jobs = tmp_path / "jobs.txt"
        marker = tmp_path / "ran"
        jobs.write_text(f"touch {marker}\n")
        done = subprocess.run(
            [WPOOL, "run", "--shell", "--headless", "--jobs", str(jobs), "--record", str(tmp_path)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2
        assert (
            done.stderr == f"wpool-tui run: error: --record {tmp_path}: is a folder; give a file\n"
        )
        assert not marker.exists()
