"""The Textual app: event pump -> DashboardState -> widgets, and the controls.

Events are never rendered one by one: once per frame (at most ``FPS`` a
second) the pump takes every pending event, folds them into the state,
and the widgets render from the state. A dashboard that falls behind
misses events, is told so, and resyncs from ``pool.snapshot()``; the pool
never waits for it.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from pool import (
    Clock,
    DeadLetter,
    Job,
    JobHandle,
    JobState,
    MonotonicClock,
    PoolClosed,
    PoolError,
    PoolPhase,
    PoolSnapshot,
    QueueFull,
    ShutdownReport,
    Subscription,
)

from .screens.dialogs import (
    AddJobsScreen,
    ConfirmShutdownScreen,
    HelpScreen,
    QuitScreen,
    ResizeScreen,
    ShutdownChoice,
)
from .screens.jobs import DeadLettersScreen, JobDetail, JobDetailScreen, Result
from .state import DashboardState
from .widgets.countdown import Countdown
from .widgets.joblog import JobLog
from .widgets.summary import Summary
from .widgets.workers import WorkerGrid, WorkerPanel

__all__ = ("FPS", "PoolControl", "WpoolApp", "create_app")

FPS = 20
"""Frames a second, at most: the pump and the widgets run once a frame."""

BUSY_EVENTS = 500
"""Events in one frame past which the dashboard is flooded: it draws less (below)."""

BUSY_SECONDS = 0.5
"""While flooded, the worker panels and the log, the costly part of a frame (a
layout and a repaint of most of the screen), are drawn at most this often; the
summary, which shows every counter and a key's effect, is drawn every frame."""

EVENT_BUFFER = 1_000
"""Events the dashboard's subscription holds before it misses some and resyncs.

A frame folds what is buffered: a frame's worth at 20,000 events a second
(about 7,000 jobs). Past that the pool stops even building the events the
dashboard would drop, and each frame resyncs from ``pool.snapshot()``
(O(workers)) instead of folding hundreds of thousands of events: the
counters stay exact, the log shows only the outcomes that were read."""

FLOOD_EVERY = 3
"""While events flood in (a frame had a gap or more than ``BUSY_EVENTS``), only
every this many frame ticks draws a frame: the loop, saturated, goes to the pool.
A key's effect is still drawn at once: the action draws its own frame."""


class PoolControl(Protocol):
    """What the dashboard needs of a pool: :class:`pool.Pool` has it, and so
    can a stand-in for a pool in another process."""

    @property
    def phase(self) -> PoolPhase: ...

    @property
    def max_workers(self) -> int: ...

    @property
    def cancel_grace(self) -> float: ...

    async def start(self) -> None: ...

    def events(self, maxsize: int = ...) -> Subscription: ...

    def snapshot(self) -> PoolSnapshot: ...

    def submit_nowait(self, job: Job) -> JobHandle: ...

    async def resize(self, workers: int) -> None: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def shutdown(
        self, grace: float = ..., drain: bool = ..., cancel_grace: float | None = ...
    ) -> ShutdownReport: ...

    def dead_letters(self) -> tuple[DeadLetter, ...]: ...

    async def resubmit(self, job_id: str) -> JobHandle: ...

    async def wait_stopped(self) -> ShutdownReport: ...

    def job(self, job_id: str) -> JobHandle | None: ...


class WpoolApp(App[int]):
    """The dashboard of one pool. Its result is the process's exit status."""

    CSS_PATH = "app.tcss"
    TITLE = "wpool-tui"

    BINDINGS = [
        Binding("a", "add_jobs", "Add", id="add-jobs"),
        Binding("plus", "grow", "+1", id="grow", key_display="+"),
        Binding("minus", "shrink", "-1", id="shrink", key_display="-"),
        Binding("r", "resize", "Resize", id="resize"),
        Binding("p", "pause", "Pause", id="pause"),
        Binding("space", "freeze", "Freeze", id="freeze"),
        Binding("f", "failed", "Failed", id="failed"),
        Binding("enter", "details", "Details", id="details", priority=False),
        Binding("s", "shutdown", "Shutdown", id="shutdown"),
        Binding("q", "quit_app", "Quit", id="quit"),
        Binding("question_mark", "help", "Help", id="help", key_display="?"),
    ]

    _CONTROLS = frozenset({"add_jobs", "grow", "shrink", "resize", "pause", "shutdown"})
    _RUNNING_ONLY = frozenset({"add_jobs", "grow", "shrink", "resize", "pause"})

    def __init__(
        self,
        pool: PoolControl,
        *,
        clock: Clock | None = None,
        theme: str = "textual-dark",
        read_only: bool = False,
        make_job: Callable[[], Job] | None = None,
        grace: float = 10.0,
        cancel_grace: float | None = None,
        on_started: Callable[[], Awaitable[None]] | None = None,
        exit_when_stopped: bool = False,
        handle_signals: bool = False,
        animate: bool = True,
        total_jobs: int | None = None,
        find_job: Callable[[str], JobHandle | None] | None = None,
        resubmit: Callable[[str], Awaitable[JobHandle]] | None = None,
        freeze_gc: bool = False,
    ) -> None:
        """The dashboard for ``pool`` (started on mount if it is not yet).

        Tests pass a pool on a :class:`pool.ManualClock` and the same clock
        here, so that what is drawn does not depend on real time.
        ``total_jobs`` (a batch of known size) adds overall progress and an
        ETA; ``find_job`` finds the handle of any job of the batch, ended
        ones included; ``resubmit`` runs a failed job again in its stead (the
        batch's account). ``freeze_gc`` is for a program whose main UI this
        is: once mounted, what exists is frozen out of the garbage
        collector's full scans (``gc.freeze``).
        """
        super().__init__()
        self._freeze_gc = freeze_gc
        if not animate:
            self.animation_level = "none"
        self._handle_signals = handle_signals
        self.pool = pool
        self.clock: Clock = clock or MonotonicClock()
        self.read_only = read_only
        self.make_job = make_job
        self.grace = grace
        self.cancel_grace = cancel_grace
        self._on_started = on_started
        self._theme_name = theme
        self.state = DashboardState(total=total_jobs)
        self._total_jobs = total_jobs
        self._find_job = find_job
        self._resubmit_fn = resubmit or pool.resubmit
        self.frozen = False
        self.report: ShutdownReport | None = None
        self._sub: Subscription | None = None
        self._stop_task: asyncio.Task[ShutdownReport] | None = None
        self._exit_when_stopped = exit_when_stopped
        self._phase_shown: PoolPhase | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._want_target: int | None = None
        self._want_paused: bool | None = None
        self._terms = 0
        self._ticks = 0
        self._flooded = False
        self._drawn_all_at = 0.0

    # --- layout and frames ----------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="")
        with Vertical(id="top"):
            yield Summary(id="summary")
            yield Countdown(id="countdown")
        yield WorkerGrid(id="workers")
        # In a container of its own: a widget at the top level is clipped by the
        # screen, so the compositor would render the log again for any change
        # anywhere (the summary's, every frame).
        with Vertical(id="log-box"):
            yield JobLog(id="log")
        yield Footer()

    async def on_mount(self) -> None:
        self.theme = self._theme_name
        self.sub_title = "read-only" if self.read_only else ""
        self._sub = self.pool.events(maxsize=EVENT_BUFFER)
        self.state = DashboardState.from_snapshot(self.pool.snapshot())
        self.state.total = self._total_jobs
        if self.pool.phase is PoolPhase.CREATED:
            await self.pool.start()
        self.refresh_now()
        if self._freeze_gc:
            # What exists now (modules, widgets, styles) lives as long as the
            # program: out of the collector's full scans, which otherwise stop
            # the UI for 40-100 ms now and then under a flood of events.
            gc.collect()
            gc.freeze()
        self.set_interval(1 / FPS, self._tick, name="frame")
        if self._handle_signals:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.on_terminate)
        if self._on_started is not None:
            self._spawn(self._on_started())

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.notify(f"{type(exc).__name__}: {exc}", title="error", severity="error")

    def _tick(self) -> None:
        self._ticks += 1
        if self._flooded and self._ticks % FLOOD_EVERY:
            return  # fewer frames while the loop is saturated
        self.refresh_now()

    def refresh_now(self) -> None:
        """One frame: fold every pending event, then render (unless the view is frozen)."""
        state = self.state
        sub = self._sub
        batch = sub.drain() if sub is not None else []
        gap = state.apply_all(batch)
        if gap:
            state.resync(self.pool.snapshot())
        self._flooded = gap or len(batch) > BUSY_EVENTS
        state.tick(self.clock.now())
        if state.phase is not self._phase_shown:
            self._phase_shown = state.phase
            self.refresh_bindings()
        if state.phase.is_shutting_down:
            self._follow_shutdown()
        if self.frozen:
            return
        try:
            summary = self.query_one(Summary)
        except NoMatches:
            return  # a last frame while the app tears its screen down
        summary.show(state, frozen=False)
        self.query_one(Countdown).show(state)
        if self._flooded:
            # Real time, not the pool's clock: this budgets the loop's own time.
            now = time.monotonic()
            if now - self._drawn_all_at < BUSY_SECONDS:
                return
            self._drawn_all_at = now
        self.query_one(WorkerGrid).show(state)
        self.query_one(JobLog).show(state)

    # --- what applies now ----------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.read_only and action in self._CONTROLS:
            return False
        phase = self.state.phase
        if action in self._RUNNING_ONLY and phase not in (PoolPhase.RUNNING, PoolPhase.PAUSED):
            return None
        if action == "add_jobs" and self.make_job is None:
            return False
        if action == "shutdown" and phase.is_final:
            return None
        return True

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding)
            if self.check_action(binding.action, ()) is not True:
                continue
            yield SystemCommand(
                f"{binding.description} ({binding.key_display or binding.key})",
                _PALETTE_HELP[binding.action],
                getattr(self, f"action_{binding.action}"),
            )

    # --- actions ---------------------------------------------------------------

    def action_add_jobs(self) -> None:
        """Ask how many jobs to add, then submit them."""
        self.push_screen(AddJobsScreen(), self._add_jobs)

    def _add_jobs(self, count: int | None) -> None:
        if count is None or self.make_job is None:
            return
        added = 0
        try:
            for _ in range(count):
                self.pool.submit_nowait(self.make_job())
                added += 1
        except QueueFull:
            self.notify(f"queue full: added {added} of {count}", severity="warning")
            return
        except PoolClosed as exc:
            self.notify(str(exc), severity="warning")
            return
        self.notify(f"added {added} jobs")

    def _target(self) -> int:
        # What the last request asked for, not what the last frame showed:
        # quick presses must add up.
        return self.state.target_workers if self._want_target is None else self._want_target

    def action_grow(self) -> None:
        """Add one worker."""
        if self._target() < self.pool.max_workers:
            self._resize(self._target() + 1)

    def action_shrink(self) -> None:
        """Retire one worker (idle first; a busy one finishes its job)."""
        if self._target() > 0:
            self._resize(self._target() - 1)

    def action_resize(self) -> None:
        """Ask for the pool's size."""
        self.push_screen(
            ResizeScreen(
                target=self._target(),
                live=self.state.live_workers,
                high=self.pool.max_workers,
            ),
            lambda n: None if n is None else self._resize(n),
        )

    def _resize(self, workers: int) -> None:
        if not 0 <= workers <= self.pool.max_workers:
            self.notify(f"workers must be from 0 to {self.pool.max_workers}", severity="warning")
            return
        self._want_target = workers
        self._spawn(self._do(self.pool.resize(workers), self._resized, workers))

    def _resized(self, workers: int) -> None:
        if self._want_target == workers:
            self._want_target = None

    async def _do(
        self, call: Awaitable[object], done: Callable[[Any], None] | None = None, arg: Any = None
    ) -> None:
        try:
            await call
        except PoolError as exc:
            self.notify(str(exc), severity="warning")
        finally:
            if done is not None:
                done(arg)
        self.refresh_now()

    def action_pause(self) -> None:
        """Pause or resume taking jobs from the queue."""
        paused = (
            self.pool.phase is PoolPhase.PAUSED if self._want_paused is None else self._want_paused
        )
        self._want_paused = not paused
        call = self.pool.resume() if paused else self.pool.pause()
        self._spawn(self._do(call, self._paused, not paused))

    def _paused(self, paused: bool) -> None:
        if self._want_paused is paused:
            self._want_paused = None

    def action_freeze(self) -> None:
        """Freeze or unfreeze the view; events are still read."""
        self.frozen = not self.frozen
        if self.frozen:
            self.query_one(Summary).show(self.state, frozen=True)
        else:
            self.refresh_now()

    def action_failed(self) -> None:
        """Show the failed jobs (dead letters)."""
        self.push_screen(
            DeadLettersScreen(
                self.pool.dead_letters(),
                read_only=self.read_only or self.pool.phase.is_shutting_down,
                outputs=self.state.outputs,
            )
        )

    @on(DeadLettersScreen.Resubmit)
    def _resubmit(self, message: DeadLettersScreen.Resubmit) -> None:
        if self.read_only:
            return
        self._spawn(self._resubmit_job(message.job_id))

    async def _resubmit_job(self, job_id: str) -> None:
        try:
            await self._resubmit_fn(job_id)
        except (PoolError, ValueError) as exc:
            self.notify(f"{job_id} was not resubmitted: {exc}", severity="warning")
            return
        self.notify(f"resubmitted {job_id}")

    def action_details(self) -> None:
        """Details of the focused worker's job, or of the selected log row's job."""
        focused = self.focused
        if isinstance(focused, WorkerPanel):
            self._show_worker_job(focused.worker_id)
        elif isinstance(focused, JobLog) and focused.row_count:
            job_id = focused.entry_key(focused.cursor_row)
            if job_id is not None:
                self._show_job(job_id)

    @on(DataTable.RowSelected, "#log")
    def _log_selected(self, message: DataTable.RowSelected) -> None:
        job_id = self.query_one(JobLog).entry_key(message.cursor_row)
        if job_id is not None:
            self._show_job(job_id)

    def _show_worker_job(self, worker_id: str) -> None:
        view = self.state.workers.get(worker_id)
        if view is None or view.job_id is None:
            self.notify(f"{worker_id} runs no job now")
            return
        self._show_job(view.job_id)

    def _show_job(self, job_id: str) -> None:
        handle = self.pool.job(job_id)
        if handle is None and self._find_job is not None:
            handle = self._find_job(job_id)
        if handle is not None:
            started = handle.started_at
            running = handle.state is JobState.RUNNING
            self.push_screen(
                JobDetailScreen(
                    JobDetail(
                        job=handle.job,
                        state=handle.state.value,
                        attempts=handle.attempts,
                        worker_id=handle.worker_id,
                        error=handle.error,
                        running_for=(
                            self.clock.now() - started if running and started is not None else None
                        ),
                        output=handle.output or self.state.outputs.get(job_id),
                        result=Result(handle.result())
                        if handle.state is JobState.SUCCEEDED
                        else None,
                    )
                )
            )
            return
        for letter in reversed(self.pool.dead_letters()):
            if letter.job.id == job_id:
                self.push_screen(
                    JobDetailScreen(JobDetail.of_letter(letter, self.state.outputs.get(job_id)))
                )
                return
        self.notify(f"{job_id} has ended; details are kept for live and failed jobs only")

    def _shutting_down(self) -> bool:
        return self._stop_task is not None or self.pool.phase.is_shutting_down

    def _follow_shutdown(self) -> None:
        """Wait for the report of a shutdown that began without us (supervision gave up)."""
        if self._stop_task is None:
            self._stop_task = self._spawn(self.pool.wait_stopped())
            self._stop_task.add_done_callback(self._stopped)

    def escalate(self) -> None:
        """Skip the running shutdown to its next phase (a second ``s`` or SIGTERM)."""
        self._follow_shutdown()
        self._spawn(self.pool.shutdown())

    def action_shutdown(self) -> None:
        """Begin a graceful shutdown (after confirmation); during one, escalate."""
        if self.pool.phase.is_final:
            return
        if self._shutting_down():
            self.escalate()
            return
        self.push_screen(
            ConfirmShutdownScreen(grace=self.grace, cancel_grace=self._cancel_grace()),
            self._confirmed,
        )

    def _cancel_grace(self) -> float:
        return self.pool.cancel_grace if self.cancel_grace is None else self.cancel_grace

    def _confirmed(self, choice: ShutdownChoice | None) -> None:
        if choice is None:
            return
        if self._shutting_down():
            # Answered after a shutdown began some other way: that one stands.
            self.notify("a shutdown is already under way; s skips to its next phase")
            return
        self.begin_shutdown(choice.grace, choice.drain)

    def begin_shutdown(self, grace: float | None = None, drain: bool = True) -> None:
        """Start the graceful shutdown now; if one is under way, follow it (never escalate)."""
        if self._shutting_down():
            self._follow_shutdown()
            return
        self._stop_task = self._spawn(
            self.pool.shutdown(
                grace=self.grace if grace is None else grace,
                drain=drain,
                cancel_grace=self.cancel_grace,
            )
        )
        self._stop_task.add_done_callback(self._stopped)
        self.refresh_now()

    def on_terminate(self) -> None:
        """SIGTERM: begin the graceful shutdown on screen and exit when it ends; again, escalate."""
        self._exit_when_stopped = True
        self._terms += 1
        if self._terms == 1:
            self.notify(
                "SIGTERM: shutting down gracefully; a second one escalates", severity="warning"
            )
            self.begin_shutdown()
        else:
            self.escalate()

    def _stopped(self, task: asyncio.Task[ShutdownReport]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        self.report = task.result()
        self.refresh_now()
        self.refresh_bindings()
        if self._exit_when_stopped:
            self.exit(self.exit_status())

    def exit_status(self) -> int:
        """0 when every job succeeded or was cleanly drained, 1 otherwise."""
        s = self.state
        report = self.report
        # Before any shutdown (a quit that did not wait), clean only if nothing was left.
        clean = s.queued == 0 and s.running == 0 if report is None else report.clean
        bad = s.failed + s.timed_out + s.cancelled + s.abandoned
        return 0 if clean and bad == 0 else 1

    def action_quit_app(self) -> None:
        """Quit; while the pool runs, offer the graceful shutdown first."""
        if self.state.phase.is_final and self.report is not None:
            self.exit(self.exit_status())
            return
        if self._shutting_down():
            self._follow_shutdown()
            self._exit_when_stopped = True
            self.notify("exiting when the shutdown ends; s skips to the next phase")
            return
        if self.read_only:
            # No controls, but never a silent kill: the pool still shuts down gracefully.
            self._exit_when_stopped = True
            self.begin_shutdown()
            return
        self.push_screen(QuitScreen(), self._quit_choice)

    def _quit_choice(self, choice: str | None) -> None:
        if choice is not None and self._shutting_down():
            self._follow_shutdown()
            self._exit_when_stopped = choice == "now" or self._exit_when_stopped
            return
        if choice == "graceful":
            self.action_shutdown()
        elif choice == "now":
            self._exit_when_stopped = True
            self.begin_shutdown(grace=0.0, drain=False)

    async def action_quit(self) -> None:
        """Textual's own quit (ctrl+q, the palette): the same as ``q``."""
        self.action_quit_app()

    def action_help(self) -> None:
        """Show the keys."""
        self.push_screen(HelpScreen())

    async def on_unmount(self) -> None:
        if self._handle_signals:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
        if self._sub is not None:
            self._sub.close()
        for task in list(self._tasks):
            if task is not self._stop_task:
                task.cancel()


_PALETTE_HELP = {
    "add_jobs": "Submit a number of jobs",
    "grow": "Add one worker",
    "shrink": "Retire one worker",
    "resize": "Set the number of workers",
    "pause": "Pause or resume taking jobs",
    "freeze": "Freeze or unfreeze the view",
    "failed": "Show failed jobs (dead letters)",
    "details": "Details of the selected job",
    "shutdown": "Graceful shutdown, or its next phase",
    "quit_app": "Quit (offers a graceful shutdown)",
    "help": "Show the keys",
}


create_app = WpoolApp
"""The app factory that tests, tools and the command use: the class itself,
so that its keyword arguments are written once (see ``WpoolApp.__init__``)."""
