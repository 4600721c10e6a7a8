"""A file of jobs run through a pool: fed in order as the queue has room, each one accounted for.

:class:`Batch` takes jobs from a :class:`~tui.jobfile.JobReader` (or any
list) only as the pool's queue has room, so memory stays flat whatever the
file's length; writes a joblog line (and a results line) as each job ends;
and at the end saves every job that did not run to completion (never
started, cancelled, abandoned, and those not yet read from the file) as a
job file that ``wpool-tui run --jobs`` takes again. No Textual here: the
dashboard and the headless mode share it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import signal
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from typing import IO, Final

from pool import Job, JobFailedError, JobHandle, JobState, Pool, PoolClosed
from pool.commands import CommandFailed

from .jobfile import BlockFeed, JobFileError, JobReader, write_jobs
from .resume import Resume, escape, payload_text

__all__ = ("JOBLOG_HEADER", "RECENT", "Batch", "result_json")

JOBLOG_HEADER: Final = "seq\tid\tworker\tstart\truntime\toutcome\texit\tsignal\terror\tpayload"
"""The joblog's first line: one TSV line per finished job follows."""

RECENT: Final = 1000
"""Ended jobs whose handles are kept, newest first, for the dashboard's detail view."""

_UNFINISHED = (JobState.CANCELLED, JobState.ABANDONED)
_ENDED = ("succeeded", "failed", "timed_out", "cancelled", "abandoned")


class _Input:
    """Where the batch's jobs come from: a job file as it is read, or a list."""

    def __init__(self, jobs: JobReader | Iterable[Job]) -> None:
        self.reader = jobs if isinstance(jobs, JobReader) else None
        self._jobs: Iterator[Job] = iter(()) if isinstance(jobs, JobReader) else iter(jobs)
        self._feed: BlockFeed | None = None
        self.unsubmitted: Job | None = None
        """A job taken that the pool then refused (its shutdown began): first of the rest."""
        self.exhausted = False
        """Whether every job has been taken."""

    async def next(self) -> Job | None:
        """The next job, None at the end.

        Raises:
            JobFileError: The next line is not a valid job.
        """
        reader = self.reader
        if reader is None:
            job = next(self._jobs, None)
        else:
            while (job := reader.take()) is None and not reader.eof:
                if reader.regular:
                    reader.add(reader.read_block())
                else:
                    if self._feed is None:
                        self._feed = reader.blocks(asyncio.get_running_loop())
                    reader.add(await self._feed.get())
        if job is None:
            self.exhausted = True
        return job

    def rest(self, notes: list[str]) -> Iterator[Job]:
        """The jobs not submitted: read to the end of a file, or what a pipe has given so far."""
        if self.unsubmitted is not None:
            yield self.unsubmitted
        reader = self.reader
        if reader is None:
            yield from self._jobs
            return
        if self._feed is not None:
            for data in self._feed.read_ahead():
                reader.add(data)
        try:
            while (job := reader.take()) is not None or (reader.regular and not reader.eof):
                if job is None:
                    reader.add(reader.read_block())
                else:
                    yield job
        except JobFileError as exc:
            notes.append(f"the rest of the jobs was not saved: {exc}")
            return
        if not reader.eof:
            notes.append(
                f"{reader.name} was not read past line {reader.line}: "
                "the jobs after it are not in the unfinished file"
            )


class Batch:
    """Runs a stream of jobs through ``pool`` and keeps the account of each.

    Args:
        pool: The pool (started by whoever runs the batch).
        jobs: A job file's reader, or the jobs themselves, in the order they
            are submitted.
        joblog: An open text file for the joblog, or None.
        joblog_header: Whether to write the joblog's header (not when
            appending to a joblog that has one).
        results: An open text file for the results (JSON lines), or None.
        resume: Which jobs an earlier run's joblog says to skip, or None.
        grace: The grace of the shutdown begun once every job has ended.
        cancel_grace: Its cancel grace.
        total: How many jobs there are, when known (for progress).
    """

    def __init__(
        self,
        pool: Pool,
        jobs: JobReader | Iterable[Job],
        *,
        joblog: IO[str] | None = None,
        joblog_header: bool = True,
        results: IO[str] | None = None,
        resume: Resume | None = None,
        grace: float = 10.0,
        cancel_grace: float | None = None,
        total: int | None = None,
    ) -> None:
        self.pool = pool
        self._input = _Input(jobs)
        self.total = total
        """How many jobs the batch has, if known before they are read."""
        self._resume = resume
        self._live: dict[str, tuple[int, JobHandle]] = {}  # submitted, not ended: seq, handle
        self._recent: OrderedDict[str, tuple[int, JobHandle]] = OrderedDict()  # ended, bounded
        self._left: list[tuple[int, Job]] = []  # cancelled or abandoned
        self._counts: Counter[str] = Counter()
        self._submitted = 0
        self.skipped = 0
        """Jobs the ``resume`` joblog said to skip."""
        self._all_ended = asyncio.Event()
        self._intake_over = False
        self.input_error: str | None = None
        """The bad line that stopped the intake, if one did."""
        self.not_saved: list[str] = []
        """Why some jobs could not be put in the unfinished file (read there)."""
        self._not_submitted = 0
        self._joblog = joblog
        self.joblog_error: OSError | None = None
        """Why the joblog stopped being written, if it did (a full disk...)."""
        self._results = results
        self.results_error: OSError | None = None
        """Why the results stopped being written, if they did."""
        self._grace = grace
        self._cancel_grace = cancel_grace
        # Pool clock -> wall clock, for the joblog's start times.
        self._wall_offset = time.time() - pool.clock.now()
        if joblog is not None and joblog_header:
            # Raises OSError at once if the joblog cannot be written at all.
            joblog.write(JOBLOG_HEADER + "\n")
            joblog.flush()

    @property
    def submitted(self) -> int:
        """How many jobs the pool has accepted so far."""
        return self._submitted

    @property
    def exhausted(self) -> bool:
        """Whether every job of the input has been read."""
        return self._input.exhausted

    async def feed(self) -> None:
        """Submit the jobs in order, as the queue has room; once all have ended, shut down.

        Stops early, quietly, when the pool's shutdown begins (a signal, a
        key, supervision giving up): what was not submitted is unfinished.
        A bad line stops the intake (:attr:`input_error`); the jobs already
        submitted still run.
        """
        resume = self._resume
        reader = self._input.reader
        try:
            while True:
                try:
                    job = await self._input.next()
                    if job is not None and resume is not None and resume.skips(job, reader):
                        self.skipped += 1
                        continue
                except JobFileError as exc:
                    self.input_error = str(exc)
                    break
                if job is None:
                    break
                try:
                    handle = await self.pool.submit(job)
                except PoolClosed:
                    self._input.unsubmitted = job
                    raise
                except ValueError as exc:  # its id is that of a job still queued or running
                    where = f"{reader.name}:{reader.line}: " if reader is not None else ""
                    self.input_error = f"{where}{exc}"
                    break
                self._submitted += 1
                self._live[job.id] = (self._submitted, handle)
                handle.add_done_callback(self._ended_one)
            self._intake_over = True
            if self._live:
                await self._all_ended.wait()
            await self.pool.shutdown(grace=self._grace, cancel_grace=self._cancel_grace)
        except PoolClosed:
            return

    def handle(self, job_id: str) -> JobHandle | None:
        """The handle of a running job of the batch, or of one that ended lately."""
        entry = self._live.get(job_id) or self._recent.get(job_id)
        return None if entry is None else entry[1]

    def result(self, job_id: str) -> tuple[bool, object]:
        """Whether ``job_id`` succeeded lately, and its handler's return value if so."""
        handle = self.handle(job_id)
        if handle is None or handle.state is not JobState.SUCCEEDED:
            return False, None
        return True, handle.result()

    async def resubmit(self, job_id: str) -> JobHandle:
        """Run a failed job of the batch again (``pool.resubmit``), keeping its account.

        Its new outcome replaces the old one in the summary and gets a joblog
        line of its own (the old line stays: that attempt did fail).
        """
        before = next(
            (letter.state for letter in self.pool.dead_letters() if letter.job.id == job_id), None
        )
        handle = await self.pool.resubmit(job_id)
        if before is not None:
            ended = self._recent.pop(job_id, None)
            self._counts[before.value] -= 1
            self._live[job_id] = (ended[0] if ended else 0, handle)
            handle.add_done_callback(self._ended_one)
        return handle

    def _ended_one(self, handle: JobHandle) -> None:
        # Counted before any writing: a joblog that fails must not stall the run.
        seq, _ = self._live.pop(handle.id, (0, handle))
        state = handle.state
        self._counts[state.value] += 1
        if state in _UNFINISHED:
            self._left.append((seq, handle.job))
        recent = self._recent
        recent[handle.id] = (seq, handle)
        if len(recent) > RECENT:
            recent.popitem(last=False)
        if not self._live and self._intake_over:
            self._all_ended.set()
        if self._joblog is not None:
            try:
                self._joblog.write(self.joblog_line(handle, seq) + "\n")
                self._joblog.flush()
            except OSError as exc:
                self._joblog = None
                self.joblog_error = exc
        if self._results is not None:
            try:
                self._results.write(self.results_line(handle) + "\n")
                self._results.flush()
            except OSError as exc:
                self._results = None
                self.results_error = exc

    def joblog_line(self, handle: JobHandle, seq: int | None = None) -> str:
        """The joblog's TSV line for a job that has ended."""
        if seq is None:
            entry = self._recent.get(handle.id) or self._live.get(handle.id)
            seq = entry[0] if entry is not None else 0
        started = handle.started_at
        ended = handle.ended_at
        if started is None or (handle.state is JobState.CANCELLED and not handle.attempts):
            start, runtime, worker = "-", "0.000", "-"
        else:
            start = f"{started + self._wall_offset:.3f}"
            runtime = f"{(ended or started) - started:.3f}"
            worker = handle.worker_id or "-"
        output = handle.output
        code = None if output is None else output.exit_code
        fields = (
            str(seq),
            handle.id,
            worker,
            start,
            runtime,
            handle.state.value,
            "-" if code is None or code < 0 else str(code),
            _signal_name(-code) if code is not None and code < 0 else "-",
            _error(handle),
            payload_text(handle.job.payload),
        )
        return "\t".join(escape(field) for field in fields)

    def results_line(self, handle: JobHandle) -> str:
        """The results file's JSON line for a job that has ended."""
        line: dict[str, object] = {"id": handle.id, "outcome": handle.state.value}
        if handle.state is JobState.SUCCEEDED:
            line["result"] = result_json(handle.result())
        else:
            line["error"] = _error(handle)
        return json.dumps(line, ensure_ascii=False, default=repr)

    def outcomes(self) -> dict[str, int]:
        """How many jobs ended in each state, did not end, were skipped or never submitted."""
        counts = {name: self._counts[name] for name in _ENDED}
        counts["not ended"] = len(self._live)  # the pool went away without them (a crash)
        counts["skipped"] = self.skipped
        counts["not submitted"] = self._not_submitted
        return counts

    def unfinished(self) -> Iterator[Job]:
        """The jobs that did not run to an end of their own, in input order.

        Cancelled and abandoned jobs, jobs still queued or running (only if the
        pool is gone without accounting for them), and the jobs never
        submitted: read to the end of a file, or what a pipe has given so
        far. Meant to be read once, at the end: it reads the rest of the input.
        """
        left = sorted(self._left, key=lambda entry: entry[0])
        yield from (job for _, job in left)
        yield from (handle.job for _, handle in sorted(self._live.values(), key=_first))
        if self.input_error is not None:
            # The input is broken there: the jobs after the bad line wait for
            # it to be fixed (and the run repeated with --resume), not here.
            return
        for job in self._input.rest(self.not_saved):
            self._not_submitted += 1
            yield job

    def succeeded(self) -> bool:
        """Whether every job read ran and succeeded (the skipped ones had, before)."""
        ended = sum(self._counts.values())
        return (
            self._input.exhausted
            and self.input_error is None
            and not self._live
            and self._counts["succeeded"] == ended
        )

    def save_unfinished(self, path: str, *, replace: bool = True) -> int:
        """Write the unfinished jobs to ``path`` if there are any; returns how many.

        Raises:
            OSError: The file cannot be written (nothing is left behind).
            FileExistsError: ``replace`` is false and ``path`` exists.
        """
        left = self.unfinished()
        first = next(left, None)
        if first is None:
            return 0
        return write_jobs(path, itertools.chain((first,), left), replace=replace)


def _first(entry: tuple[int, JobHandle]) -> int:
    return entry[0]


def result_json(value: object) -> object:
    """A handler's return value as JSON can hold it.

    Bytes become text (UTF-8, else their repr); dataclasses (a command's
    result) become objects; anything else JSON cannot hold, its repr.
    """
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: result_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [result_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): result_json(item) for key, item in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _error(handle: JobHandle) -> str:
    state = handle.state
    if state is JobState.FAILED:
        try:
            handle.result()
        except JobFailedError as exc:
            cause = exc.__cause__
            if isinstance(cause, CommandFailed):
                return str(cause)
            return exc.error.short()
        return ""
    if state is JobState.TIMED_OUT:
        return "timed out"
    if state is JobState.ABANDONED:
        return "ignored its cancellation: abandoned"
    if state is JobState.CANCELLED:
        return "cancelled" if handle.attempts else "cancelled before it started"
    return ""
