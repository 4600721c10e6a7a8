"""DashboardState: what the dashboard shows, as a pure fold of the pool's events.

No Textual here: tests fold scripted events into a state and check it, and
the app renders widgets from it once per frame. When the event stream has a
gap (``EventsDropped``), the state is rebuilt from ``pool.snapshot()`` with
:meth:`DashboardState.resync` and events it already includes are skipped.
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from pool import PoolPhase, PoolSnapshot, WorkerState, events
from pool.stats import LatencyWindow, Percentiles

__all__ = ("DashboardState", "LogEntry", "Outcome", "ShutdownView", "WorkerView")

LOG_LIMIT = 500
"""Job outcomes the log keeps."""

SPARK_SECONDS = 60
"""Seconds of per-second completions the sparkline shows."""


class Outcome(enum.Enum):
    """How a job, or one attempt at it, ended: one word for it everywhere.

    The words are :class:`pool.JobState`'s for the five ends of a job (the
    log, the failed list, the joblog and the summary all spell them so),
    and two more that only the log shows.
    """

    SUCCEEDED = "succeeded"
    """The handler returned."""
    FAILED = "failed"
    """The handler raised (or its worker crashed), and no retry follows."""
    TIMED_OUT = "timed_out"
    """It ran past its deadline and was stopped."""
    CANCELLED = "cancelled"
    """It was cancelled: before it started, or while it ran."""
    ABANDONED = "abandoned"
    """It ignored its cancellation and was left behind."""
    RETRYING = "retrying"
    """An attempt failed and another follows (the job is not over)."""
    REJECTED = "rejected"
    """The queue was full: the job was never accepted."""


@dataclass(slots=True)
class WorkerView:
    """One worker panel's data."""

    id: str
    state: WorkerState = WorkerState.IDLE
    job_id: str | None = None
    job_started_at: float | None = None
    attempt: int | None = None
    progress: float | None = None
    progress_message: str = ""
    jobs_done: int = 0
    jobs_failed: int = 0
    restarts: int = 0
    label: str = ""
    """What its job is, for people (a shell command's text), if known."""
    changed_at: float = 0.0
    """When the state last changed: the panel is highlighted for a moment after."""
    cancelling: bool = False
    """Its job was asked to stop and has not yet."""

    def set_state(self, state: WorkerState, at: float) -> None:
        """Change the state, noting when, if it differs."""
        if state is not self.state:
            self.state = state
            self.changed_at = at

    def clear_job(self) -> None:
        """Forget the job it ran."""
        self.job_id = None
        self.label = ""
        self.job_started_at = None
        self.attempt = None
        self.progress = None
        self.progress_message = ""
        self.cancelling = False


class LogEntry(NamedTuple):
    """One line of the job log: how a job (or an attempt) ended.

    A named tuple, not a frozen dataclass: one is made for every job that
    ends, and a tuple is built four times faster.
    """

    at: float
    job_id: str
    worker_id: str | None
    outcome: Outcome
    duration: float | None
    error: str = ""
    label: str = ""
    """What the job is, for people (a shell command's text), if known."""


@dataclass(slots=True)
class ShutdownView:
    """The shutdown's progress, for the countdown."""

    started_at: float
    grace: float
    cancel_grace: float
    drain: bool
    phase: PoolPhase = PoolPhase.DRAINING
    remaining: float = 0.0
    phase_length: float = 0.0
    running: int = 0
    queued: int = 0
    stopped: events.PoolStopped | None = None
    reason: str | None = None
    """Why the pool is shutting down, when nobody asked it to."""


@dataclass(slots=True)
class DashboardState:
    """Everything the dashboard draws, kept up to date by :meth:`apply`."""

    queue_capacity: int = 0
    phase: PoolPhase = PoolPhase.CREATED
    seq: int = 0
    started_at: float | None = None
    stopped_at: float | None = None
    now: float = 0.0
    target_workers: int = 0
    workers: dict[str, WorkerView] = field(default_factory=dict)
    submitted: int = 0
    rejected: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    cancelled: int = 0
    abandoned: int = 0
    retried: int = 0
    restarts: int = 0
    missed: int = 0
    """Events this dashboard missed (it resynced after each gap)."""
    total: int | None = None
    """How many jobs the run has, when it is a batch of known size."""
    labels: dict[str, str] = field(default_factory=dict)
    """What each live job is, for people (from ``JobSubmitted.label``), by job id."""
    outputs: OrderedDict[str, events.JobOutputCaptured] = field(default_factory=OrderedDict)
    """The last ``LOG_LIMIT`` jobs' process output (exit code, tail), by job id."""
    log: deque[LogEntry] = field(default_factory=lambda: deque(maxlen=LOG_LIMIT))
    log_total: int = 0
    """Entries ever added to the log (the log itself keeps the last ``LOG_LIMIT``)."""
    shutdown: ShutdownView | None = None
    run_times: LatencyWindow = field(default_factory=LatencyWindow)
    waits: LatencyWindow = field(default_factory=LatencyWindow)
    _queued_since: OrderedDict[str, float] = field(default_factory=OrderedDict)
    _spark: deque[int] = field(
        default_factory=lambda: deque([0] * SPARK_SECONDS, maxlen=SPARK_SECONDS)
    )
    _spark_second: int | None = None
    _percentiles_at: tuple[int, Percentiles, Percentiles] | None = None

    # --- reading ------------------------------------------------------------

    @property
    def live_workers(self) -> int:
        """Worker slots alive (not stopped or given up on)."""
        return sum(1 for w in self.workers.values() if w.state not in _GONE)

    @property
    def busy_workers(self) -> int:
        """Workers running a job."""
        return sum(1 for w in self.workers.values() if w.job_id is not None)

    @property
    def retiring_workers(self) -> int:
        """Workers that exit after their job."""
        return sum(1 for w in self.workers.values() if w.state is WorkerState.RETIRING)

    @property
    def utilisation(self) -> float:
        """Busy workers as a fraction of live ones."""
        live = self.live_workers
        return self.busy_workers / live if live else 0.0

    @property
    def finished(self) -> int:
        """Jobs in a terminal state."""
        return self.succeeded + self.failed + self.timed_out + self.cancelled + self.abandoned

    def progress(self) -> float | None:
        """The fraction of a known-size batch that has ended, or None."""
        if not self.total:
            return None
        return min(1.0, self.finished / self.total)

    def eta(self) -> float | None:
        """Seconds until a known-size batch ends; None when that cannot be told.

        Each job not yet started takes the typical (median) run time, shared
        among the live workers; each running job takes what the typical time
        leaves of it. When only running jobs are left and every one of them
        has run past the typical time, or no run time is known yet, or no
        worker is live, nothing honest can be said: None.
        """
        if not self.total:
            return None
        left = self.total - self.finished
        if left <= 0:
            return 0.0
        times = self.run_time()
        workers = self.live_workers
        if not times.count or not workers:
            return None
        typical = times.p50
        now = self.now
        remaining = [
            max(0.0, typical - (now - view.job_started_at))
            for view in self.workers.values()
            if view.job_id is not None and view.job_started_at is not None
        ]
        longest = max(remaining, default=0.0)
        waiting = max(0, left - len(remaining))
        if not waiting:
            return longest or None
        return max(longest, (waiting * typical + sum(remaining)) / workers)

    def running_longest(self) -> float | None:
        """Seconds the longest-running job has run, or None when none runs."""
        starts = [v.job_started_at for v in self.workers.values() if v.job_started_at is not None]
        return self.now - min(starts) if starts else None

    @property
    def uptime(self) -> float:
        """Seconds since the pool started."""
        if self.started_at is None:
            return 0.0
        end = self.now if self.stopped_at is None else self.stopped_at
        return max(0.0, end - self.started_at)

    def oldest_queued_age(self) -> float:
        """Seconds the oldest queued job has waited (0.0 when none waits)."""
        if self.queued <= 0 or not self._queued_since:
            return 0.0
        return max(0.0, self.now - min(self._queued_since.values()))

    @property
    def ran(self) -> int:
        """Jobs that ran to an end: succeeded, failed or timed out (what jobs/s counts)."""
        return self.succeeded + self.failed + self.timed_out

    def throughput(self) -> float:
        """Jobs that ran to an end, per second, over the last five whole seconds.

        Cancelled and abandoned jobs are not counted: a shutdown that hands
        back a full queue must not look like a burst of work done.
        """
        recent = list(self._spark)[-6:-1]
        return sum(recent) / 5.0

    def sparkline(self) -> list[int]:
        """Jobs that ran to an end in each of the last ``SPARK_SECONDS`` seconds, oldest first."""
        return list(self._spark)

    def run_time(self) -> Percentiles:
        """Percentiles of recent attempts' run time."""
        return self._percentiles()[0]

    def queue_wait(self) -> Percentiles:
        """Percentiles of recent jobs' wait in the queue."""
        return self._percentiles()[1]

    def _percentiles(self) -> tuple[Percentiles, Percentiles]:
        # Sorting the windows is the costly part of a frame; they change only
        # when an event is folded, that is, when ``seq`` moves.
        cached = self._percentiles_at
        if cached is None or cached[0] != self.seq:
            cached = (self.seq, self.run_times.percentiles(), self.waits.percentiles())
            self._percentiles_at = cached
        return cached[1], cached[2]

    def worker(self, worker_id: str) -> WorkerView:
        """The view of a worker slot, made on first sight."""
        view = self.workers.get(worker_id)
        if view is None:
            view = self.workers[worker_id] = WorkerView(worker_id, changed_at=self.now)
        return view

    def ordered_workers(self) -> list[WorkerView]:
        """Worker views in a stable order: by the number in their id."""
        return sorted(self.workers.values(), key=lambda w: (len(w.id), w.id))

    # --- folding ------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Move the state's clock (uptime, ages, the sparkline) to ``now``."""
        self.now = max(self.now, now)
        self._roll_spark(int(self.now))

    def _roll_spark(self, second: int) -> None:
        if self._spark_second is None:
            self._spark_second = second
            return
        gap = second - self._spark_second
        if gap > 0:
            for _ in range(min(gap, SPARK_SECONDS)):
                self._spark.append(0)
            self._spark_second = second

    def _count_end(self, at: float) -> None:
        self._roll_spark(int(at))
        if self._spark_second is not None and int(at) >= self._spark_second:
            self._spark[-1] += 1

    def _add_log(self, entry: LogEntry) -> None:
        self.log.append(entry)
        self.log_total += 1

    def apply_all(self, batch: list[events.PoolEvent]) -> bool:
        """Fold a batch of events.

        Returns:
            True if the batch had a gap and the caller must :meth:`resync`.
        """
        gap = False
        folds = self._FOLDS
        for event in batch:
            if type(event) is events.EventsDropped:
                self.missed += event.missed
                gap = True
            elif event.seq > self.seq:
                self.seq = event.seq
                if event.at > self.now:
                    self.now = event.at
                folds[type(event)](self, event)
        return gap

    def apply(self, event: events.PoolEvent) -> None:
        """Fold one event into the state."""
        self.seq = max(self.seq, event.seq)
        self.now = max(self.now, event.at)
        self._FOLDS[type(event)](self, event)

    # One small function per kind of event, in the table below. The per-job
    # ones (submitted, started, succeeded) are written for speed: thousands
    # run per frame.

    def _on_job_submitted(self, event: events.JobSubmitted) -> None:
        self.submitted += 1
        self.queued += 1
        self._queued_since[event.job_id] = event.at
        if event.label:
            self.labels[event.job_id] = event.label

    def _on_job_rejected(self, event: events.JobRejected) -> None:
        self.submitted += 1
        self.rejected += 1
        self._add_log(LogEntry(event.at, event.job_id, None, Outcome.REJECTED, None, event.reason))

    def _on_job_started(self, event: events.JobStarted) -> None:
        self.queued -= 1
        self.running += 1
        if self._queued_since.pop(event.job_id, None) is None:
            # A job from before a resync: the age it stood for is stale now.
            self._queued_since.pop(_RESYNCED, None)
        self.waits.add(event.waited)
        view = self.worker(event.worker_id)
        view.clear_job()
        view.job_id = event.job_id
        view.label = self.labels.get(event.job_id, "")
        view.job_started_at = event.at
        view.attempt = event.attempt
        if view.state is not WorkerState.RETIRING:
            view.set_state(WorkerState.BUSY, event.at)

    def _on_job_progressed(self, event: events.JobProgressed) -> None:
        view = self.worker(event.worker_id)
        if view.job_id == event.job_id:
            view.progress = event.fraction
            view.progress_message = event.message

    def _on_job_succeeded(self, event: events.JobSucceeded) -> None:
        self._attempt_ended(event.worker_id, event.job_id, event.at, event.duration)
        self.succeeded += 1
        self.worker(event.worker_id).jobs_done += 1
        self._count_end(event.at)
        label = self.labels.pop(event.job_id, "") if self.labels else ""
        self._add_log(
            LogEntry(
                event.at,
                event.job_id,
                event.worker_id,
                Outcome.SUCCEEDED,
                event.duration,
                "",
                label,
            )
        )

    def _on_job_retry_scheduled(self, event: events.JobRetryScheduled) -> None:
        self._attempt_ended(event.worker_id, event.job_id, event.at, event.duration)
        self.worker(event.worker_id).jobs_failed += 1
        self.queued += 1
        self.retried += 1
        self._queued_since[event.job_id] = event.at + event.delay
        label = self.labels.get(event.job_id, "")
        self._log_attempt(event, Outcome.RETRYING, event.error.short(), label)

    def _on_job_failed(self, event: events.JobFailed) -> None:
        self._attempt_ended(event.worker_id, event.job_id, event.at, event.duration)
        self.worker(event.worker_id).jobs_failed += 1
        self.failed += 1
        self._count_end(event.at)
        label = self.labels.pop(event.job_id, "")
        self._log_attempt(event, Outcome.FAILED, event.error.short(), label)

    def _on_job_output_captured(self, event: events.JobOutputCaptured) -> None:
        outputs = self.outputs
        outputs.pop(event.job_id, None)
        outputs[event.job_id] = event
        if len(outputs) > LOG_LIMIT:
            outputs.popitem(last=False)

    def _on_job_cancel_requested(self, event: events.JobCancelRequested) -> None:
        view = self.worker(event.worker_id)
        if view.job_id == event.job_id:
            view.cancelling = True

    def _on_job_timed_out(self, event: events.JobTimedOut) -> None:
        self._attempt_ended(event.worker_id, event.job_id, event.at, event.duration)
        self.worker(event.worker_id).jobs_failed += 1
        self.timed_out += 1
        self._count_end(event.at)
        label = self.labels.pop(event.job_id, "")
        self._log_attempt(event, Outcome.TIMED_OUT, "", label)

    def _on_job_cancelled(self, event: events.JobCancelled) -> None:
        worker_id = event.worker_id
        if event.started and worker_id is not None:
            self._attempt_ended(worker_id, event.job_id, event.at, None)
        else:
            self.queued -= 1
            self._queued_since.pop(event.job_id, None)
        self.cancelled += 1
        # Not counted in the throughput: jobs/s is of jobs that ran to an end.
        label = self.labels.pop(event.job_id, "")
        self._add_log(
            LogEntry(event.at, event.job_id, worker_id, Outcome.CANCELLED, None, label=label)
        )

    def _on_job_abandoned(self, event: events.JobAbandoned) -> None:
        self._attempt_ended(event.worker_id, event.job_id, event.at, event.duration)
        self.abandoned += 1
        label = self.labels.pop(event.job_id, "")
        self._log_attempt(event, Outcome.ABANDONED, "", label)

    def _on_worker_started(self, event: events.WorkerStarted) -> None:
        self.worker(event.worker_id).set_state(WorkerState.IDLE, event.at)

    def _on_worker_retire_requested(self, event: events.WorkerRetireRequested) -> None:
        self.worker(event.worker_id).set_state(WorkerState.RETIRING, event.at)

    def _on_worker_stopped(self, event: events.WorkerStopped) -> None:
        view = self.worker(event.worker_id)
        if self.phase.is_shutting_down:
            view.set_state(WorkerState.STOPPED, event.at)
        else:
            self.workers.pop(event.worker_id, None)  # retired by a resize

    def _on_worker_crashed(self, event: events.WorkerCrashed) -> None:
        view = self.worker(event.worker_id)
        view.clear_job()
        if event.restart_in is not None:
            view.set_state(WorkerState.RESTARTING, event.at)
        elif view.state is not WorkerState.RETIRING:
            # Not restarted: given up on, or (a WorkerStopped follows) stopped.
            view.set_state(WorkerState.CRASHED, event.at)

    def _on_worker_restarted(self, event: events.WorkerRestarted) -> None:
        view = self.worker(event.worker_id)
        view.restarts = event.restarts
        view.clear_job()
        view.set_state(WorkerState.IDLE, event.at)
        self.restarts += 1

    def _on_worker_replaced(self, event: events.WorkerReplaced) -> None:
        view = self.worker(event.worker_id)
        view.clear_job()
        view.set_state(WorkerState.IDLE, event.at)

    def _on_phase_changed(self, event: events.PhaseChanged) -> None:
        phase = self.phase = event.phase
        if phase is PoolPhase.RUNNING and self.started_at is None:
            self.started_at = event.at
        if self.shutdown is not None and phase in _TIMED_PHASES:
            self.shutdown.phase = phase

    def _on_pool_resized(self, event: events.PoolResized) -> None:
        self.target_workers = event.target

    def _on_shutdown_started(self, event: events.ShutdownStarted) -> None:
        self.shutdown = ShutdownView(
            started_at=event.at,
            grace=event.grace,
            cancel_grace=event.cancel_grace,
            drain=event.drain,
            remaining=event.grace,
            phase_length=event.grace,
            running=self.running,
            queued=self.queued,
            reason=event.reason,
        )

    def _on_shutdown_tick(self, event: events.ShutdownTick) -> None:
        view = self.shutdown
        if view is None:
            return
        view.phase = event.phase
        if event.phase is PoolPhase.CANCELLING:
            view.phase_length = view.cancel_grace
        view.remaining = event.remaining
        view.running = event.running
        view.queued = event.queued

    def _on_pool_stopped(self, event: events.PoolStopped) -> None:
        if self.shutdown is None:
            self.shutdown = ShutdownView(event.at, 0.0, 0.0, drain=True)
        self.shutdown.stopped = event
        self.stopped_at = event.at
        self.shutdown.remaining = 0.0
        self.shutdown.running = 0
        self.shutdown.queued = 0
        self.phase = event.phase

    def _on_events_dropped(self, event: events.EventsDropped) -> None:
        self.missed += event.missed

    _FOLDS: ClassVar[dict[type[Any], Callable[[DashboardState, Any], None]]] = {
        events.JobSubmitted: _on_job_submitted,
        events.JobRejected: _on_job_rejected,
        events.JobStarted: _on_job_started,
        events.JobProgressed: _on_job_progressed,
        events.JobSucceeded: _on_job_succeeded,
        events.JobRetryScheduled: _on_job_retry_scheduled,
        events.JobFailed: _on_job_failed,
        events.JobOutputCaptured: _on_job_output_captured,
        events.JobCancelRequested: _on_job_cancel_requested,
        events.JobTimedOut: _on_job_timed_out,
        events.JobCancelled: _on_job_cancelled,
        events.JobAbandoned: _on_job_abandoned,
        events.WorkerStarted: _on_worker_started,
        events.WorkerRetireRequested: _on_worker_retire_requested,
        events.WorkerStopped: _on_worker_stopped,
        events.WorkerCrashed: _on_worker_crashed,
        events.WorkerRestarted: _on_worker_restarted,
        events.WorkerReplaced: _on_worker_replaced,
        events.PhaseChanged: _on_phase_changed,
        events.PoolResized: _on_pool_resized,
        events.ShutdownStarted: _on_shutdown_started,
        events.ShutdownTick: _on_shutdown_tick,
        events.PoolStopped: _on_pool_stopped,
        events.EventsDropped: _on_events_dropped,
    }
    """How each kind of event is folded: the one table, one small function each."""

    def _log_attempt(
        self,
        event: events.JobRetryScheduled
        | events.JobFailed
        | events.JobTimedOut
        | events.JobAbandoned,
        outcome: Outcome,
        error: str,
        label: str,
    ) -> None:
        self._add_log(
            LogEntry(event.at, event.job_id, event.worker_id, outcome, event.duration, error, label)
        )

    def _attempt_ended(
        self, worker_id: str, job_id: str, at: float, duration: float | None
    ) -> None:
        self.running -= 1
        if duration is not None:
            self.run_times.add(duration)
        view = self.worker(worker_id)
        if view.job_id == job_id:
            view.clear_job()
            if view.state is WorkerState.BUSY:
                view.set_state(WorkerState.IDLE, at)

    def resync(self, snapshot: PoolSnapshot) -> None:
        """Take counts, workers and phase from ``snapshot`` (after missing events)."""
        stats = snapshot.stats
        if self._spark_second is not None:
            # Jobs that ended in the gap count in the sparkline (and so in the
            # throughput) too, as ending now: the gap is at most a frame old.
            unseen = (stats.succeeded + stats.failed + stats.timed_out) - self.ran
            if unseen > 0:
                self._roll_spark(int(max(self.now, snapshot.at)))
                self._spark[-1] += unseen
        self.seq = snapshot.seq
        self.now = max(self.now, snapshot.at)
        self.phase = snapshot.phase
        self.started_at = snapshot.started_at
        self.queue_capacity = stats.queue_capacity
        self.target_workers = stats.target_workers
        for name in _COUNTERS:
            setattr(self, name, getattr(stats, name))
        self._queued_since.clear()
        if stats.oldest_queued_age:
            # The one age the snapshot gives stands for the whole queue until
            # new events rebuild it.
            self._queued_since[_RESYNCED] = snapshot.at - stats.oldest_queued_age
        seen = set()
        for info in snapshot.workers:
            view = self.worker(info.id)
            seen.add(info.id)
            view.set_state(info.state, snapshot.at)
            view.job_id = info.job_id
            view.job_started_at = info.job_started_at
            view.attempt = info.attempt
            view.progress = info.progress
            view.progress_message = info.progress_message
            view.jobs_done = info.jobs_done
            view.jobs_failed = info.jobs_failed
            view.restarts = info.restarts
        for worker_id in list(self.workers):
            if worker_id not in seen:
                del self.workers[worker_id]
        if self.shutdown is None and snapshot.phase.is_shutting_down:
            # The gap swallowed ShutdownStarted: the countdown starts from here.
            self.shutdown = ShutdownView(
                started_at=snapshot.at,
                grace=0.0,
                cancel_grace=0.0,
                drain=True,
                phase=snapshot.phase,
                phase_length=max(0.0, (snapshot.phase_deadline or snapshot.at) - snapshot.at),
            )
        if snapshot.phase.is_final and self.stopped_at is None:
            self.stopped_at = snapshot.at
        if self.shutdown is not None and snapshot.phase_deadline is not None:
            self.shutdown.phase = snapshot.phase
            self.shutdown.remaining = max(0.0, snapshot.phase_deadline - snapshot.at)
            self.shutdown.running = stats.running
            self.shutdown.queued = stats.queued

    @classmethod
    def from_snapshot(cls, snapshot: PoolSnapshot) -> DashboardState:
        """A state that starts from ``snapshot`` (a dashboard attaching to a running pool)."""
        state = cls()
        state.resync(snapshot)
        return state


def _zeros(n: int) -> deque[int]:
    return deque([0] * n, maxlen=n)


_COUNTERS = (
    "submitted",
    "rejected",
    "queued",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "abandoned",
    "retried",
    "restarts",
)
"""The counters the state keeps under the same names as PoolStats."""

_GONE = (WorkerState.STOPPED, WorkerState.CRASHED)
_RESYNCED = "(resynced)"
_TIMED_PHASES = (PoolPhase.DRAINING, PoolPhase.CANCELLING, PoolPhase.FORCING)
