"""A file of jobs run through a pool: fed in order, each one accounted for.

:class:`Batch` submits the jobs (waiting while the queue is full), writes a
joblog line as each one ends, and at the end saves every job that did not
run to completion (never started, cancelled, abandoned) as a job file that
``wpool-tui run --jobs`` takes again. No Textual here: the dashboard and the
headless mode share it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import IO, Final

from pool import Job, JobFailedError, JobHandle, JobState, Pool, PoolClosed
from pool.commands import CommandFailed

from .jobfile import write_jobs

__all__ = ("JOBLOG_HEADER", "Batch")

JOBLOG_HEADER: Final = "seq\tid\tworker\tstart\truntime\toutcome\texit\terror"
"""The joblog's first line: one TSV line per finished job follows."""

_UNFINISHED = (JobState.CANCELLED, JobState.ABANDONED)


class Batch:
    """Runs a known list of jobs through ``pool`` and keeps the account of each.

    Args:
        pool: The pool (started by whoever runs the batch).
        jobs: The jobs, in the order they are submitted.
        joblog: An open text file for the joblog, or None.
        grace: The grace of the shutdown begun once every job has ended.
        cancel_grace: Its cancel grace.
    """

    def __init__(
        self,
        pool: Pool,
        jobs: Sequence[Job],
        *,
        joblog: IO[str] | None = None,
        grace: float = 10.0,
        cancel_grace: float | None = None,
    ) -> None:
        self.pool = pool
        self.jobs = tuple(jobs)
        self._handles: list[JobHandle] = []
        self._seqs: dict[str, int] = {}  # job id -> its place in the input, from 1
        self._ended = 0
        self._all_ended = asyncio.Event()
        self._joblog = joblog
        self.joblog_error: OSError | None = None
        """Why the joblog stopped being written, if it did (a full disk...)."""
        self._grace = grace
        self._cancel_grace = cancel_grace
        # Pool clock -> wall clock, for the joblog's start times.
        self._wall_offset = time.time() - pool.clock.now()
        if joblog is not None:
            # Raises OSError at once if the joblog cannot be written at all.
            joblog.write(JOBLOG_HEADER + "\n")
            joblog.flush()

    @property
    def total(self) -> int:
        """How many jobs the batch has."""
        return len(self.jobs)

    @property
    def submitted(self) -> int:
        """How many of them the pool has accepted so far."""
        return len(self._handles)

    async def feed(self) -> None:
        """Submit every job in order; once all have ended, shut the pool down.

        Stops early, quietly, when the pool's shutdown begins (a signal, a
        key, supervision giving up): what was not submitted is unfinished.
        """
        try:
            for job in self.jobs:
                handle = await self.pool.submit(job)
                self._handles.append(handle)
                self._seqs[job.id] = len(self._handles)
                handle.add_done_callback(self._ended_one)
            if self.jobs:
                await self._all_ended.wait()
            await self.pool.shutdown(grace=self._grace, cancel_grace=self._cancel_grace)
        except PoolClosed:
            return

    def handle(self, job_id: str) -> JobHandle | None:
        """The handle of a submitted job of the batch, ended or not."""
        seq = self._seqs.get(job_id)
        return None if seq is None else self._handles[seq - 1]

    async def resubmit(self, job_id: str) -> JobHandle:
        """Run a failed job of the batch again (``pool.resubmit``), keeping its account.

        Its new outcome replaces the old one in the summary and gets a joblog
        line of its own (the old line stays: that attempt did fail).
        """
        handle = await self.pool.resubmit(job_id)
        seq = self._seqs.get(job_id)
        if seq is not None and self._handles[seq - 1].done():
            self._handles[seq - 1] = handle
            self._ended -= 1
            handle.add_done_callback(self._ended_one)
        return handle

    def _ended_one(self, handle: JobHandle) -> None:
        # Counted before any writing: a joblog that fails must not stall the run.
        self._ended += 1
        if self._ended == self.total:
            self._all_ended.set()
        joblog = self._joblog
        if joblog is not None:
            try:
                joblog.write(self.joblog_line(handle) + "\n")
                joblog.flush()
            except OSError as exc:
                self._joblog = None
                self.joblog_error = exc

    def joblog_line(self, handle: JobHandle) -> str:
        """The joblog's TSV line for a job that has ended."""
        seq = self._seqs[handle.id]
        started = handle.started_at
        ended = handle.ended_at
        if started is None or (handle.state is JobState.CANCELLED and not handle.attempts):
            start, runtime, worker = "-", "0.000", "-"
        else:
            start = f"{started + self._wall_offset:.3f}"
            runtime = f"{(ended or started) - started:.3f}"
            worker = handle.worker_id or "-"
        output = handle.output
        exit_code = "-" if output is None or output.exit_code is None else str(output.exit_code)
        fields = (
            str(seq),
            handle.id,
            worker,
            start,
            runtime,
            handle.state.value,
            exit_code,
            _error(handle),
        )
        return "\t".join(_clean(field) for field in fields)

    def outcomes(self) -> dict[str, int]:
        """How many jobs ended in each state, did not end, or were never submitted."""
        counts = {state.value: 0 for state in JobState if state not in _LIVE_STATES}
        counts["not ended"] = 0  # the pool went away without them (a crash)
        for handle in self._handles:
            counts[handle.state.value if handle.done() else "not ended"] += 1
        counts["not submitted"] = self.total - self.submitted
        return counts

    def unfinished(self) -> list[Job]:
        """The jobs that did not run to an end of their own, in input order.

        Cancelled and abandoned jobs, jobs still queued or running (only if the
        pool is gone without accounting for them), and jobs never submitted.
        """
        left = [h.job for h in self._handles if h.state in _UNFINISHED or not h.done()]
        left.extend(self.jobs[self.submitted :])
        return left

    def succeeded(self) -> bool:
        """Whether every job ran and succeeded."""
        return self.submitted == self.total and all(
            h.state is JobState.SUCCEEDED for h in self._handles
        )

    def save_unfinished(self, path: str) -> int:
        """Write the unfinished jobs to ``path`` if there are any; returns how many."""
        left = self.unfinished()
        if left:
            write_jobs(path, left)
        return len(left)


_LIVE_STATES = (JobState.QUEUED, JobState.RUNNING)


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


def _clean(field: str) -> str:
    # One job, one line: tabs and line breaks would break the TSV.
    return field.replace("\t", " ").replace("\r", " ").replace("\n", " ")
