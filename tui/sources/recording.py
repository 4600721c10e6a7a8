"""Recordings: a pool's event stream in a file, and the source that replays it.

A recording is JSON lines:

1. a header: ``{"format": "wpool-recording", "version": 1, "title": ...,
   "started": <Unix seconds>, "snapshot": {...}}``;
2. the events, in the same JSON form as ``--headless`` prints (with a
   ``wall`` time beside ``at``);
3. now and then, and after any gap, ``{"type": "snapshot", "snapshot": {...}}``,
   so that seeking never folds more than ``SNAPSHOT_EVERY`` events; a gap
   in what was recorded is ``{"type": "gap", "missed": N}`` followed by a snapshot.

Each batch is written and flushed as it arrives: a crash loses at most the
line being written, and a reader stops at the last complete line.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from pool import PoolPhase, PoolSnapshot
from pool import events as ev
from pool.wire import snapshot_from_dict, snapshot_to_dict

from .base import EventFeed, Source

__all__ = (
    "FORMAT",
    "SNAPSHOT_EVERY",
    "VERSION",
    "Recorder",
    "Recording",
    "RecordingError",
    "ReplaySource",
)

FORMAT: Final = "wpool-recording"
VERSION: Final = 1
"""The version this program writes and reads; a newer one is refused."""

SNAPSHOT_EVERY: Final = 2_000
"""Events between two snapshots in a recording: the most a seek has to fold."""


class RecordingError(Exception):
    """A recording that cannot be read: the message names the file and the line."""


# --- writing ------------------------------------------------------------------------


class Recorder:
    """Writes what a dashboard (or a headless run) reads to a recording, batch by batch.

    The file is opened at once, so that a path that cannot be written is found
    before anything starts; :meth:`begin` writes the header once the pool's
    first snapshot is known.

    Raises:
        OSError: The file cannot be written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self._take_snapshot: Callable[[], PoolSnapshot] | None = None
        self._wall_offset = 0.0
        self._since_snapshot = 0
        self.error: OSError | None = None
        """Why the recording stopped early, if it did (a full disk...)."""

    def begin(
        self,
        *,
        title: str,
        snapshot: PoolSnapshot,
        take_snapshot: Callable[[], PoolSnapshot],
        wall_offset: float,
    ) -> None:
        """Write the header: what is recorded, and where the pool stands as it begins.

        Args:
            title: What is recorded.
            snapshot: The pool as recording begins (events after its ``seq`` follow).
            take_snapshot: A fresh snapshot, for the periodic ones and after a gap.
            wall_offset: Wall-clock time minus the pool clock's, for each event's ``wall``.
        """
        self._take_snapshot = take_snapshot
        self._wall_offset = wall_offset
        self._write(
            [
                {
                    "format": FORMAT,
                    "version": VERSION,
                    "title": title,
                    "started": time.time(),
                    "snapshot": snapshot_to_dict(snapshot),
                }
            ]
        )

    def record(self, batch: Iterable[ev.PoolEvent]) -> None:
        """Write a batch of events (a gap in it is written as a gap and a snapshot)."""
        lines: list[dict[str, Any]] = []
        for event in batch:
            if isinstance(event, ev.EventsDropped):
                lines.append({"type": "gap", "missed": event.missed})
                lines.append(self._snapshot_line())
                continue
            lines.append(ev.to_dict(event, wall_offset=self._wall_offset))
            self._since_snapshot += 1
        if self._since_snapshot >= SNAPSHOT_EVERY:
            lines.append(self._snapshot_line())
        self._write(lines)

    def _snapshot_line(self) -> dict[str, Any]:
        self._since_snapshot = 0
        take = self._take_snapshot
        assert take is not None, "begin() writes the header first"
        return {"type": "snapshot", "snapshot": snapshot_to_dict(take())}

    def _write(self, lines: list[dict[str, Any]]) -> None:
        file = self._file
        if file is None or not lines:
            return
        try:
            file.write("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
            file.flush()
        except OSError as exc:
            # The dashboard goes on without its recording, and says so at the end.
            self.error = exc
            self._file = None
            with contextlib.suppress(OSError):  # the write's own error is the one reported
                file.close()

    def close(self) -> None:
        """Finish the file."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as exc:
                self.error = exc


class RecordingFeed:
    """An event feed that records each batch the dashboard takes from it."""

    def __init__(self, feed: EventFeed, recorder: Recorder) -> None:
        self._feed = feed
        self.recorder = recorder

    def drain(self) -> list[ev.PoolEvent]:
        batch = self._feed.drain()
        if batch:
            self.recorder.record(batch)
        return batch

    def pending(self) -> int:
        return self._feed.pending()

    def close(self) -> None:
        self._feed.close()
        self.recorder.close()


# --- reading -------------------------------------------------------------------------


@dataclass(slots=True)
class Recording:
    """A recording read into memory: its events, and the snapshots to seek from."""

    title: str
    started: float
    first: PoolSnapshot
    events: list[ev.PoolEvent] = field(default_factory=list)
    snapshots: list[tuple[int, PoolSnapshot]] = field(default_factory=list)
    """``(index, snapshot)``: the snapshot holds every event before ``events[index]``."""
    complete: bool = True
    """False when the last line was cut short (the recorder died mid-write)."""

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Recording:
        """Read a recording.

        Raises:
            RecordingError: Not a recording, a newer version, or a broken line
                (named by number); a last line cut short is not an error.
            OSError: The file cannot be read.
        """
        name = os.fspath(path)
        with open(name, encoding="utf-8") as file:
            text = file.read()
        lines = text.split("\n")
        complete = text.endswith("\n") or not text
        if not complete:
            lines = lines[:-1]  # cut short by a crash: everything before it stands
        elif lines and lines[-1] == "":
            lines.pop()
        if not lines:
            raise RecordingError(f"{name}: empty: not a recording")
        header = _json(name, 1, lines[0])
        if header.get("format") != FORMAT:
            raise RecordingError(f"{name}:1: not a wpool-tui recording")
        version = header.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise RecordingError(
                f"{name}:1: recording format version {version!r}, newer than this "
                f"wpool-tui reads ({VERSION}): update wpool-tui"
            )
        try:
            first = snapshot_from_dict(header.get("snapshot"))
        except ValueError as exc:
            raise RecordingError(f"{name}:1: {exc}") from None
        title = header.get("title")
        started = header.get("started")
        recording = cls(
            title=title if isinstance(title, str) else Path(name).name,
            started=float(started) if isinstance(started, int | float) else 0.0,
            first=first,
            complete=complete,
        )
        recording.snapshots.append((0, first))
        for number, line in enumerate(lines[1:], start=2):
            data = _json(name, number, line)
            kind = data.get("type")
            try:
                if kind == "snapshot":
                    snapshot = snapshot_from_dict(data.get("snapshot"))
                    recording.snapshots.append((len(recording.events), snapshot))
                elif kind == "gap":
                    continue  # the snapshot that follows it is what counts
                else:
                    recording.events.append(ev.from_dict(data))
            except ValueError as exc:
                raise RecordingError(f"{name}:{number}: {exc}") from None
        return recording

    @property
    def start(self) -> float:
        """The pool-clock time the recording begins at."""
        return self.first.at

    @property
    def end(self) -> float:
        """The pool-clock time of its last event."""
        return self.events[-1].at if self.events else self.first.at


def _json(name: str, number: int, line: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordingError(f"{name}:{number}: not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise RecordingError(f"{name}:{number}: expected a JSON object")
    return data


class _ReplayFeed:
    def __init__(self) -> None:
        self.buffer: list[ev.PoolEvent] = []
        self.closed = False

    def drain(self) -> list[ev.PoolEvent]:
        out, self.buffer = self.buffer, []
        return out

    def pending(self) -> int:
        return len(self.buffer)

    def close(self) -> None:
        self.closed = True


SPEEDS: Final = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
"""The playback speeds, slowest first."""


class ReplaySource(Source):
    """A recording played back: the dashboard shows it as it looked, read-only.

    Time is the recording's own (its pool clock): playback moves it on at
    :attr:`speed` times real time, and stops at the end. ``pause``,
    ``step``, ``seek`` and the speed are the operator's playback keys.
    """

    def __init__(self, recording: Recording, *, wall: Callable[[], float] = time.monotonic) -> None:
        self.recording = recording
        self._wall = wall
        self._time = recording.start  # the replay's pool-clock time
        self._next = 0  # index of the next event to deliver
        self._snapshot = recording.first
        self._snapshot_index = 0  # the events before this one are in ``_snapshot``
        self._feeds: list[_ReplayFeed] = []
        self._generation = 0
        self.paused = False
        self.speed = 1.0
        self._ticked_at = wall()

    @property
    def title(self) -> str:
        return f"replay of {self.recording.title}"

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def status(self) -> str:
        if not self.recording.complete and self.at_end:
            return "the recording ends here: its last line was cut short"
        return ""

    def now(self) -> float:
        return self._time

    @property
    def at_end(self) -> bool:
        """Whether every event has been played."""
        return self._next >= len(self.recording.events)

    @property
    def position(self) -> tuple[float, float, float]:
        """``(start, now, end)`` on the recording's clock."""
        return self.recording.start, self._time, self.recording.end

    def snapshot(self) -> PoolSnapshot:
        return self._snapshot

    def events(self, maxsize: int) -> EventFeed:
        feed = _ReplayFeed()
        # What has been played since the snapshot: a dashboard that starts now
        # folds it onto the snapshot, and is where the replay is.
        feed.buffer = self.recording.events[self._snapshot_index : self._next]
        self._feeds.append(feed)
        return feed

    # --- playback --------------------------------------------------------------

    def tick(self) -> None:
        """Move the replay on by the real time since the last tick, times the speed."""
        wall = self._wall()
        elapsed, self._ticked_at = wall - self._ticked_at, wall
        if self.paused or self.at_end:
            return
        self._play_until(self._time + elapsed * self.speed)

    def _play_until(self, moment: float) -> None:
        events = self.recording.events
        end = bisect.bisect_right(events, moment, lo=self._next, key=_at)
        self._deliver(events[self._next : end])
        self._next = end
        self._time = min(max(self._time, moment), self.recording.end)

    def _deliver(self, batch: list[ev.PoolEvent]) -> None:
        if not batch:
            return
        for feed in self._feeds:
            if not feed.closed:
                feed.buffer.extend(batch)

    def toggle_pause(self) -> None:
        """Pause or play on."""
        self.paused = not self.paused
        self._ticked_at = self._wall()

    def faster(self) -> None:
        """Play at the next faster speed."""
        self.speed = next((s for s in SPEEDS if s > self.speed), SPEEDS[-1])

    def slower(self) -> None:
        """Play at the next slower speed."""
        self.speed = next((s for s in reversed(SPEEDS) if s < self.speed), SPEEDS[0])

    def step(self) -> None:
        """Play exactly one more event (and pause)."""
        self.paused = True
        if self.at_end:
            return
        event = self.recording.events[self._next]
        self._deliver([event])
        self._next += 1
        self._time = max(self._time, event.at)

    def seek(self, moment: float) -> None:
        """Show the recording as it stood at ``moment`` (its clock): from the
        last snapshot before it, then the events up to it."""
        recording = self.recording
        moment = min(max(moment, recording.start), recording.end)
        target = bisect.bisect_right(recording.events, moment, key=_at)
        index, snapshot = recording.snapshots[0]
        for at_index, candidate in recording.snapshots:
            if at_index <= target:
                index, snapshot = at_index, candidate
        self._snapshot = snapshot
        self._snapshot_index = index
        self._generation += 1  # the dashboard starts afresh from the snapshot
        missed = ev.EventsDropped(seq=snapshot.seq, at=snapshot.at, missed=0)
        for feed in self._feeds:
            if not feed.closed:
                # The dashboard resyncs from the snapshot, then folds what follows.
                feed.buffer = [missed]
        self._next = index
        self._time = snapshot.at
        self._play_until(moment)
        self._time = moment

    def next_mark(self) -> str | None:
        """Jump to the next shutdown or failure; returns what it found, or None."""
        events = self.recording.events
        for index in range(self._next, len(events)):
            event = events[index]
            what = _mark(event)
            if what is not None:
                self.seek(event.at)
                if self._next <= index:  # several at the same time: show this one
                    self._deliver(events[self._next : index + 1])
                    self._next = index + 1
                self.paused = True
                return what
        return None

    async def wait_stopped(self) -> None:
        """A replay never stops a pool."""
        return None


def _at(event: ev.PoolEvent) -> float:
    return event.at


def _mark(event: ev.PoolEvent) -> str | None:
    if isinstance(event, ev.ShutdownStarted):
        return "a shutdown"
    if isinstance(event, ev.JobFailed):
        return f"the failure of {event.job_id}"
    if isinstance(event, ev.WorkerCrashed):
        return f"a crash of {event.worker_id}"
    if isinstance(event, ev.PhaseChanged) and event.phase is PoolPhase.FAILED:
        return "the pool's failure"
    return None
