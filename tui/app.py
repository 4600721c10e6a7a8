"""The Textual app: source -> event pump -> DashboardState -> widgets, and the controls.

The app reads a :class:`~tui.sources.Source`: a pool in this process, a pool
in another process, or a recording. Events are never rendered one by one:
once per frame the pump takes every pending event, folds them into the
state, and the widgets render from the state. A dashboard that falls
behind misses events, is told so, and resyncs from the source's snapshot;
the pool never waits for it. The footer, the palette and the help offer
only the controls the source supports.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from rich.text import Text
from textual import events, on
from textual.app import App, ComposeResult, ScreenStackError, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from pool import Job, JobHandle, Pool, PoolError, PoolPhase, ShutdownReport
from pool import events as pool_events

from .screens.dialogs import (
    AddJobsScreen,
    ConfirmShutdownScreen,
    Dialog,
    HelpLine,
    HelpScreen,
    JobsToAdd,
    JumpScreen,
    QuitScreen,
    ResizeScreen,
    ShutdownChoice,
)
from .screens.jobs import DeadLettersScreen, JobDetail, JobDetailScreen, Result
from .sources import Control, EventFeed, Source, SourceError
from .sources.local import LocalSource
from .sources.recording import Recorder, RecordingFeed, ReplaySource
from .state import DashboardState
from .widgets.banner import Banner, render_playback
from .widgets.countdown import NEXT_STEP, Countdown
from .widgets.field import focus_now
from .widgets.format import plain
from .widgets.joblog import JobLog, LogView
from .widgets.summary import Summary
from .widgets.workers import WorkerGrid

__all__ = ("FPS", "WpoolApp", "create_app")

FPS = 20
"""Frames a second, at most: the pump and the widgets run once a frame."""

IDLE_SECONDS = 1.0
"""With no new event, a frame is drawn only this often (on the pool's clock):
enough for the clocks on screen (uptime, how long each job has run), so that
a dashboard left open on a quiet pool costs next to nothing."""

PROGRESS_SECONDS = 0.5
"""When the only news is progress (a job's bar, the shutdown's seconds), a frame
is drawn at most this often; any other event is drawn at the next tick."""

BUSY_RATE = 400
"""Events a second past which the dashboard is busy: see ``BUSY_SECONDS``."""

BUSY_SECONDS = 0.5
"""While busy, the worker panels and the log, the costly part of a frame (the
log scrolls, so every visible row is drawn again), are drawn at most this
often by the timer; the summary, which shows every counter, every frame. A
key's effect is drawn whole, at once. Nobody reads more than two screens of
outcomes a second."""

BUSY_EVENTS = 500
"""Events in one frame past which the dashboard is flooded: see ``FLOOD_EVERY``."""

EVENT_BUFFER = 1_000
"""Events the dashboard's subscription holds before it misses some and resyncs.

A frame folds what is buffered: a frame's worth at 20,000 events a second
(about 7,000 jobs). Past that the pool stops even building the events the
dashboard would drop, and each frame resyncs from ``pool.snapshot()``
(O(workers)) instead of folding hundreds of thousands of events: the
counters stay exact, the log shows only the outcomes that were read."""

COMPACT_HEIGHT = 30
"""Terminal rows below which the dashboard packs its upper part tighter."""

FLOOD_EVERY = 3
"""While events flood in (a frame had a gap or more than ``BUSY_EVENTS``), only
every this many frame ticks draws a frame: the loop, saturated, goes to the pool.
A key's effect is still drawn at once: the action draws its own frame."""


class WpoolApp(App[int]):
    """The dashboard of one pool. Its result is the process's exit status."""

    CSS_PATH = "app.tcss"
    TITLE = "wpool-tui"
    AUTO_FOCUS = "#log"

    # The dashboard's keys are priority bindings: each acts the moment it is
    # read, so that a dialog it opens exists before the next key is read
    # (keys typed ahead of a dialog are held until it is ready: see
    # ``on_event``). check_action lets them through to a dialog or the filter
    # line when one has the keys.
    BINDINGS = [
        Binding("a", "add_jobs", "Add", id="add-jobs", priority=True),
        Binding("r", "resize", "Resize", id="resize", priority=True),
        Binding("p", "pause", "Pause", id="pause", priority=True),
        Binding("p", "resume", "Resume", id="resume", priority=True),
        Binding("slash", "filter", "Filter", id="filter", key_display="/", priority=True),
        Binding("f", "failed", "Failed", id="failed", priority=True),
        Binding("c", "cancel_job", "Cancel job", id="cancel-job", show=False, priority=True),
        Binding("s", "shutdown", "Shutdown", id="shutdown", priority=True),
        Binding("s", "escalate", "Next phase", id="escalate", priority=True),
        Binding("question_mark", "help", "Help", id="help", key_display="?", priority=True),
        Binding("q", "quit_app", "Quit", id="quit", priority=True),
        Binding("q", "detach", "Detach", id="detach", priority=True),
        Binding("plus", "grow", "+1", id="grow", key_display="+", show=False, priority=True),
        Binding("minus", "shrink", "-1", id="shrink", key_display="-", show=False, priority=True),
        Binding("space", "freeze", "Freeze", id="freeze", show=False, priority=True),
        Binding("l", "log", "Log", id="log", show=False, priority=True),
        Binding("enter", "details", "Details", id="details", show=False),
        Binding("ctrl+c", "interrupt", "Interrupt", id="interrupt", show=False, priority=True),
        # A replay's playback keys (only a replay offers them).
        Binding("space", "play_pause", "Play/Pause", id="play-pause", priority=True),
        Binding("less_than_sign", "slower", "Slower", id="slower", key_display="<", priority=True),
        Binding(
            "greater_than_sign", "faster", "Faster", id="faster", key_display=">", priority=True
        ),
        Binding("full_stop", "step", "Step", id="step", key_display=".", priority=True),
        Binding("j", "jump", "Jump", id="jump", priority=True),
        Binding("n", "next_mark", "Next mark", id="next-mark", priority=True),
    ]

    _NEEDS: dict[str, Control] = {
        "add_jobs": Control.ADD_JOBS,
        "grow": Control.RESIZE,
        "shrink": Control.RESIZE,
        "resize": Control.RESIZE,
        "pause": Control.PAUSE,
        "resume": Control.PAUSE,
        "shutdown": Control.SHUTDOWN,
        "escalate": Control.SHUTDOWN,
        "cancel_job": Control.CANCEL,
    }
    """The control of the source that each action needs."""

    _PLAYBACK = frozenset({"play_pause", "slower", "faster", "step", "jump", "next_mark"})
    """Actions only a replay has."""

    _CONTROLS = frozenset(
        {
            "add_jobs",
            "grow",
            "shrink",
            "resize",
            "pause",
            "resume",
            "shutdown",
            "escalate",
            "cancel_job",
        }
    )
    """Actions that change the pool's work: none in read-only mode."""

    _LIVE_ONLY = frozenset({"add_jobs", "grow", "shrink", "resize", "shutdown"})
    """Actions for a running (or paused) pool only."""

    _DASHBOARD_KEYS = frozenset(
        {
            "add_jobs",
            "grow",
            "shrink",
            "resize",
            "pause",
            "resume",
            "freeze",
            "failed",
            "filter",
            "log",
            "shutdown",
            "escalate",
            "quit_app",
            "detach",
            "help",
            "play_pause",
            "slower",
            "faster",
            "step",
            "jump",
            "next_mark",
            "cancel_job",
        }
    )
    """Priority bindings that belong to the dashboard itself, not to a dialog over it."""

    def __init__(
        self,
        source: Source | Pool,
        *,
        clock: _Now | None = None,
        theme: str = "textual-dark",
        read_only: bool = False,
        make_job: Callable[[], Job] | None = None,
        grace: float | None = None,
        cancel_grace: float | None = None,
        on_started: Callable[[], Awaitable[None]] | None = None,
        exit_when_stopped: bool = False,
        handle_signals: bool = False,
        animate: bool = True,
        total_jobs: int | None = None,
        find_job: Callable[[str], JobHandle | None] | None = None,
        resubmit: Callable[[str], Awaitable[JobHandle]] | None = None,
        freeze_gc: bool = False,
        recorder: Recorder | None = None,
    ) -> None:
        """The dashboard of ``source`` (a :class:`~pool.Pool` is read as a
        :class:`~tui.sources.local.LocalSource`); started on mount.

        Tests pass a pool on a :class:`pool.ManualClock` and the same clock
        here, so that what is drawn does not depend on real time (by
        default the time is the source's). ``grace`` and ``cancel_grace``
        are the shutdown's (default: the source's). For a pool: ``make_job``
        is what the add dialog submits, ``total_jobs`` (a batch of known
        size) adds overall progress and an ETA, ``find_job`` finds the
        handle of any job of the batch, ended ones included, and
        ``resubmit`` runs a failed job again in its stead (the batch's
        account). ``recorder`` records what the dashboard reads
        (``--record``). ``freeze_gc`` is for a program whose main UI
        this is: once mounted, what exists is frozen out of the garbage
        collector's full scans (``gc.freeze``).
        """
        super().__init__()
        self._freeze_gc = freeze_gc
        if not animate:
            self.animation_level = "none"
        self._handle_signals = handle_signals
        if isinstance(source, Pool):
            source = LocalSource(source, make_job=make_job, find_job=find_job, resubmit=resubmit)
        self.source: Source = source
        self.clock: _Now = clock or source
        self.read_only = read_only
        self._grace = grace
        self.cancel_grace = cancel_grace
        self.recorder = recorder
        """What records the dashboard's events (``--record``), if anything does."""
        self._on_started = on_started
        self._theme_name = theme
        self.state = DashboardState(total=total_jobs)
        self._total_jobs = total_jobs
        self.frozen = False
        self.report: ShutdownReport | None = None
        self.stopped = False
        """Whether the pool has stopped (the source's report, if any: :attr:`report`)."""
        self._sub: EventFeed | None = None
        self._stop_task: asyncio.Task[ShutdownReport | None] | None = None
        self._exit_when_stopped = exit_when_stopped
        self._phase_shown: PoolPhase | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._want_target: int | None = None
        self._want_paused: bool | None = None
        self._interrupts = 0
        self._ticks = 0
        self._flooded = False
        self._busy = False
        self._drawn_all_at = 0.0  # real time of the last frame with the panels and log
        self._folded_at = 0.0  # real time of the last fold
        self._clock_at = -IDLE_SECONDS  # the pool's time of the last frame
        self.frames = 0
        """Frames drawn so far (the benchmarks and tests count them)."""
        self._typed_ahead: list[tuple[str, str | None]] = []
        self._status_shown = ""
        self._generation = 0  # the source's, when the state was made from its snapshot
        self._stop_requested = False

    # --- layout and frames ----------------------------------------------------

    @property
    def grace(self) -> float:
        """The grace period the shutdown dialog offers."""
        return self.source.grace if self._grace is None else self._grace

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="")
        with Vertical(id="top"):
            yield Summary(id="summary")
            yield Banner(id="banner")
            yield Countdown(id="countdown")
        yield WorkerGrid(id="workers")
        yield LogView(id="log-box")
        yield Footer()

    async def on_mount(self) -> None:
        self.theme = self._theme_name
        source = self.source
        await source.start()
        self._show_title()
        feed = source.events(maxsize=EVENT_BUFFER)
        if self.recorder is not None:
            self.recorder.begin(
                title=source.title,
                snapshot=source.snapshot(),
                take_snapshot=source.snapshot,
                wall_offset=time.time() - source.now(),
            )
            feed = RecordingFeed(feed, self.recorder)
        self._sub = feed
        self.state = DashboardState.from_snapshot(source.snapshot())
        self._generation = source.generation
        self.state.total = self._total_jobs
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

    def on_resize(self, event: events.Resize) -> None:
        # At 80 columns the footer has room for the dashboard's keys or for
        # the palette's hint, not both: the keys win (ctrl+p still works).
        self.query_one(Footer).show_command_palette = event.size.width >= 100
        # A short terminal: the log keeps rows (see app.tcss).
        for part in ("#top", "#workers"):
            self.query_one(part).set_class(event.size.height < COMPACT_HEIGHT, "-compact")

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.notify(
                plain(f"{type(exc).__name__}: {exc}", limit=500),
                title="error",
                severity="error",
                markup=False,
            )

    def _show_title(self) -> None:
        title = self.source.title
        self.sub_title = f"{title} · read-only" if self.read_only else title

    def _tick(self) -> None:
        self._ticks += 1
        if isinstance(self.source, ReplaySource):
            self.source.tick()  # the recording plays on: its events join the feed
        if self._flooded and self._ticks % FLOOD_EVERY:
            return  # fewer frames while the loop is saturated
        news = self._fold()
        since = self.clock.now() - self._clock_at
        if (
            news is _News.CHANGES
            or since >= IDLE_SECONDS
            or (news is _News.PROGRESS and since >= PROGRESS_SECONDS)
        ):
            self._draw(whole=not self._busy)

    def refresh_now(self) -> None:
        """One frame, all of it: fold every pending event, then draw (unless frozen).

        What a key does is drawn this way, at once; the frames the timer
        draws are lighter while events pour in (see ``BUSY_SECONDS``).
        """
        self._fold()
        self._draw(whole=True)

    def _fold(self) -> _News:
        """Fold the pending events into the state; say what kind of news they were."""
        sub = self._sub
        batch = sub.drain() if sub is not None else []
        if not batch:
            return _News.NONE
        gap = False
        start = 0
        for index, event in enumerate(batch):
            if type(event) is pool_events.EventsDropped:
                # What came before the gap, then the snapshot, then what follows
                # it (events the snapshot already has are skipped by their seq).
                self.state.apply_all(batch[start:index])
                self._resync(event)
                start = index + 1
                gap = True
        self.state.apply_all(batch[start:] if start else batch)
        # Real time, not the pool's clock: this budgets the loop's own time.
        now = time.monotonic()
        elapsed = max(now - self._folded_at, 1 / FPS)
        self._folded_at = now
        self._flooded = gap or len(batch) > BUSY_EVENTS
        self._busy = self._flooded or len(batch) / elapsed > BUSY_RATE
        if gap or any(type(event) not in _PROGRESS for event in batch):
            return _News.CHANGES
        return _News.PROGRESS

    def _resync(self, gap: pool_events.EventsDropped) -> None:
        """Resync from the source's snapshot; from scratch where it is of another pool."""
        source = self.source
        snapshot = source.snapshot()
        if source.generation == self._generation:
            self.state.missed += gap.missed
            self.state.resync(snapshot)
            return
        self._generation = source.generation
        fresh = DashboardState.from_snapshot(snapshot)
        fresh.total = self.state.total
        self.state = fresh
        self.query_one(JobLog).restart()

    def _draw(self, *, whole: bool) -> None:
        state = self.state
        self.frames += 1
        self._clock_at = self.clock.now()
        state.tick(self._clock_at)
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
        self._show_banner()
        self.query_one(Countdown).show(state, self._countdown_hint())
        now = time.monotonic()
        if not whole and now - self._drawn_all_at < BUSY_SECONDS:
            return
        self._drawn_all_at = now
        self.query_one(WorkerGrid).show(state)
        self.query_one(JobLog).show(state)

    @on(LogView.FilterChanged)
    def _filter_changed(self) -> None:
        self.refresh_now()

    # --- keys typed ahead of a dialog ----------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        if (
            isinstance(event, events.Key)
            and not event.is_forwarded
            and event.key not in _NEVER_HELD
            and self._dialog_not_ready()
        ):
            # The dialog a key just opened is not mounted yet: what is typed
            # next is meant for it, so it waits (see on_dialog_ready).
            self._typed_ahead.append((event.key, event.character))
            return
        await super().on_event(event)

    def _dialog_not_ready(self) -> bool:
        try:
            screen = self.screen
        except ScreenStackError:
            return False
        return isinstance(screen, Dialog) and not screen.ready

    def on_dialog_ready(self, message: Dialog.Ready) -> None:
        """Let the keys typed ahead of a dialog through, in the order they were typed."""
        held, self._typed_ahead = self._typed_ahead, []
        for key, character in held:
            self.post_message(events.Key(key, character))

    # --- what applies now ----------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self._DASHBOARD_KEYS and not self._dashboard_has_keys():
            return False  # the key goes on to the dialog or the filter line
        return self._available(action)

    def _dashboard_has_keys(self) -> bool:
        return len(self.screen_stack) == 1 and not isinstance(self.focused, Input)

    def _available(self, action: str) -> bool | None:
        """Whether ``action`` works now: False hides it (this source, mode or phase
        has no use for it); the footer, the palette and the help show only what works."""
        if not self._available_here(action):
            return False
        phase = self.state.phase
        live = phase in (PoolPhase.RUNNING, PoolPhase.PAUSED)
        if action in self._LIVE_ONLY:
            return live
        if action == "pause":
            return phase is PoolPhase.RUNNING
        if action == "resume":
            return phase is PoolPhase.PAUSED
        if action == "escalate":
            return phase in NEXT_STEP
        if action in ("freeze", "cancel_job"):
            return not phase.is_final
        return True

    def _available_here(self, action: str) -> bool:
        """Whether ``action`` works at all with this source and mode (read-only, replay)."""
        source = self.source
        needs = self._NEEDS.get(action)
        if needs is not None and (
            self.read_only or needs not in source.controls or not source.connected
        ):
            return False
        if action in ("quit_app", "detach"):
            return (action == "detach") == source.remote
        replay = isinstance(self.source, ReplaySource)
        if action in self._PLAYBACK:
            return replay
        return not (action == "freeze" and replay)  # space plays and pauses a replay

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding)
            if binding.action not in _PALETTE_HELP or self._available(binding.action) is not True:
                continue
            yield SystemCommand(
                f"{binding.description} ({binding.key_display or binding.key})",
                self._said(binding.action, _PALETTE_HELP[binding.action]),
                getattr(self, f"action_{binding.action}"),
            )

    def _countdown_hint(self) -> str:
        """Which keys act on the shutdown now, for the countdown banner."""
        step = NEXT_STEP.get(self.state.phase)
        if step is None:
            return ""
        if not self._owns_pool():  # attached: s still skips ahead; q only leaves
            return f"s: {step}" if self._available("escalate") is True else ""
        if self.read_only:
            return f"q: {step}" if self._exit_when_stopped else "q: quit when it ends"
        hint = f"s: {step}"
        if not self._exit_when_stopped:
            hint += "   q: quit when it ends"
        return hint

    def _show_banner(self) -> None:
        source = self.source
        banner = self.query_one(Banner)
        if isinstance(source, ReplaySource):
            start, now, end = source.position
            banner.say(
                render_playback(
                    start, now, end, paused=source.paused, speed=source.speed, note=source.status
                )
            )
            return
        status = source.status
        note = "" if status else source.note
        if note:
            banner.say(Text("\n".join(f" {plain(line, limit=300)}" for line in note.splitlines())))
        else:
            banner.say(Text(f" {plain(status, limit=300)}") if status else None, warning=True)
        if status != self._status_shown:
            self._status_shown = status
            self._show_title()
            self.refresh_bindings()  # out of reach, a remote source's controls are not offered

    def _owns_pool(self) -> bool:
        """Whether quitting here is the pool's end (a pool of this process), or only
        the dashboard's (attached to a service, or a replay)."""
        return isinstance(self.source, LocalSource)

    # --- actions ---------------------------------------------------------------

    def _act(self, call: Awaitable[object], done: Callable[[], None] | None = None) -> None:
        """Run a control of the source; what it refuses is told, never raised."""
        self._spawn(self._do(call, done))

    async def _do(self, call: Awaitable[object], done: Callable[[], None] | None = None) -> None:
        try:
            await call
        except (PoolError, SourceError, ValueError, TypeError) as exc:
            self.notify(plain(str(exc), limit=500), severity="warning", markup=False)
        finally:
            if done is not None:
                done()
        self.refresh_now()

    def action_add_jobs(self) -> None:
        """Ask how many jobs to add (and, for a service, their payload), then submit them."""
        asks_payload = not isinstance(self.source, LocalSource)
        self.push_screen(
            AddJobsScreen(with_payload=asks_payload, payload_label=self.source.payload_hint),
            self._add_jobs,
        )

    def _add_jobs(self, wanted: JobsToAdd | None) -> None:
        if wanted is not None:
            self._spawn(self._add(wanted))

    async def _add(self, wanted: JobsToAdd) -> None:
        try:
            added = await self.source.add_jobs(wanted.count, wanted.payload)
        except (PoolError, SourceError) as exc:
            self.notify(plain(str(exc), limit=500), severity="warning", markup=False)
        else:
            self.notify(f"added {added} jobs", markup=False)
        self.refresh_now()

    def _target(self) -> int:
        # What the last request asked for, not what the last frame showed:
        # quick presses must add up.
        return self.state.target_workers if self._want_target is None else self._want_target

    def _aim(self) -> None:
        """Tell the source which panel is selected: a Celery source resizes its node."""
        self.source.aim(self.query_one(WorkerGrid).selected)

    def _focused_part(self) -> str | None:
        """The part of the source (a Celery node) whose panel is selected, while the
        worker grid has the focus; else None (the whole source)."""
        grid = self.query_one(WorkerGrid)
        if not grid.has_focus or grid.selected is None:
            return None
        return self.source.part_of(grid.selected)

    def action_grow(self) -> None:
        """Add one worker."""
        self._aim()
        if self._target() < self.source.max_workers:
            self._resize(self._target() + 1)

    def action_shrink(self) -> None:
        """Retire one worker (idle first; a busy one finishes its job)."""
        self._aim()
        if self._target() > 0:
            self._resize(self._target() - 1)

    def action_resize(self) -> None:
        """Ask for the pool's size."""
        self._aim()
        self.push_screen(
            ResizeScreen(
                target=self._target(),
                live=self.state.live_workers,
                high=self.source.max_workers,
            ),
            lambda n: None if n is None else self._resize(n),
        )

    def _resize(self, workers: int) -> None:
        if not 0 <= workers <= self.source.max_workers:
            self.notify(
                f"workers must be from 0 to {self.source.max_workers}",
                severity="warning",
                markup=False,
            )
            return
        self._want_target = workers

        def resized() -> None:
            if self._want_target == workers:
                self._want_target = None

        self._act(self.source.resize(workers), resized)

    def action_pause(self) -> None:
        """Stop taking jobs from the queue (running ones go on)."""
        self._set_paused(True)

    def action_resume(self) -> None:
        """Take jobs from the queue again."""
        self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        now = (
            self.state.phase is PoolPhase.PAUSED if self._want_paused is None else self._want_paused
        )
        if now is paused:
            return
        self._want_paused = paused

        def settled() -> None:
            if self._want_paused is paused:
                self._want_paused = None

        self._act(self.source.pause() if paused else self.source.resume(), settled)

    def action_freeze(self) -> None:
        """Freeze or unfreeze the view; events are still read."""
        self.frozen = not self.frozen
        if self.frozen:
            self.query_one(Summary).show(self.state, frozen=True)
        else:
            self.refresh_now()

    def action_filter(self) -> None:
        """Filter the job log: the filter line takes the keys."""
        self.query_one(LogView).open_filter()

    def action_log(self) -> None:
        """Put the focus on the job log."""
        focus_now(self.query_one(JobLog))

    def action_failed(self) -> None:
        """Show the failed jobs (dead letters)."""
        self._spawn(self._show_failed())

    async def _show_failed(self) -> None:
        try:
            letters = await self.source.dead_letters()
        except SourceError as exc:
            self.notify(plain(str(exc), limit=500), severity="warning", markup=False)
            return
        resubmit = not self.read_only and Control.RESUBMIT in self.source.controls
        self.push_screen(
            DeadLettersScreen(
                letters,
                read_only=not resubmit or self.state.phase.is_shutting_down,
                outputs=self.state.outputs,
                describe=self.source.describe,
            )
        )

    @on(DeadLettersScreen.Resubmit)
    def _resubmit(self, message: DeadLettersScreen.Resubmit) -> None:
        if self.read_only or Control.RESUBMIT not in self.source.controls:
            return
        self._spawn(self._resubmit_job(message.job_id))

    async def _resubmit_job(self, job_id: str) -> None:
        try:
            await self.source.resubmit(job_id)
        except (PoolError, SourceError, ValueError) as exc:
            self.notify(
                plain(f"{job_id} was not resubmitted: {exc}", limit=500),
                severity="warning",
                markup=False,
            )
            return
        self.notify(plain(f"resubmitted {job_id}", limit=500), markup=False)

    def action_cancel_job(self) -> None:
        """Cancel the selected worker's job (again: harder, as the source can)."""
        grid = self.query_one(WorkerGrid)
        view = self.state.workers.get(grid.selected) if grid.selected is not None else None
        if view is None or view.job_id is None:
            self.notify("tab to a worker running a job, then c", markup=False)
            return
        self._spawn(self._cancel(view.job_id))

    async def _cancel(self, job_id: str) -> None:
        try:
            live = await self.source.cancel(job_id)
        except (PoolError, SourceError) as exc:
            self.notify(plain(str(exc), limit=500), severity="warning", markup=False)
        else:
            said = f"cancelling {job_id}" if live else f"{job_id} had already ended"
            self.notify(plain(said, limit=300), markup=False)
        self.refresh_now()

    def action_details(self) -> None:
        """Details of the selected worker's job, or of the selected log row's job."""
        focused = self.focused
        if isinstance(focused, WorkerGrid) and focused.selected is not None:
            self._show_worker_job(focused.selected)
        elif isinstance(focused, JobLog) and focused.row_count:
            job_id = focused.entry_key(focused.cursor_row)
            if job_id is not None:
                self._show_job(job_id)
        else:
            self.notify("tab to a worker, or l to the log, then enter", markup=False)

    @on(WorkerGrid.DetailsWanted)
    def _worker_details(self, message: WorkerGrid.DetailsWanted) -> None:
        self._show_worker_job(message.worker_id)

    @on(JobLog.Selected)
    def _log_selected(self, message: JobLog.Selected) -> None:
        self._show_job(message.job_id)

    def _show_worker_job(self, worker_id: str) -> None:
        view = self.state.workers.get(worker_id)
        if view is None or view.job_id is None:
            self.notify(f"{worker_id} runs no job now", markup=False)
            return
        self._show_job(view.job_id)

    def _show_job(self, job_id: str) -> None:
        self._spawn(self._show_job_detail(job_id))

    async def _show_job_detail(self, job_id: str) -> None:
        try:
            view = await self.source.job(job_id)
        except SourceError as exc:
            self.notify(plain(str(exc), limit=500), severity="warning", markup=False)
            return
        if view is None:
            self.notify(
                plain(
                    f"{job_id} has ended; details are kept for live and failed jobs only",
                    limit=300,
                ),
                markup=False,
            )
            return
        running = view.state == "running" and view.started_at is not None
        self.push_screen(
            JobDetailScreen(
                JobDetail(
                    job=view.job,
                    state=view.state,
                    attempts=view.attempts,
                    worker_id=view.worker_id,
                    error=view.error,
                    running_for=(
                        self.clock.now() - view.started_at
                        if running and view.started_at is not None
                        else None
                    ),
                    output=view.output or self.state.outputs.get(job_id),
                    label=self.source.describe(view.job),
                    result=Result(view.result) if view.has_result else None,
                ),
                can_cancel=view.state in ("queued", "running")
                and self._available("cancel_job") is True,
            ),
            lambda wanted: self._cancel_after_detail(job_id, wanted),
        )

    def _cancel_after_detail(self, job_id: str, wanted: bool | None) -> None:
        if wanted:
            self._spawn(self._cancel(job_id))

    # --- a replay's playback -------------------------------------------------------------

    def _replay(self) -> ReplaySource | None:
        source = self.source
        return source if isinstance(source, ReplaySource) else None

    def action_play_pause(self) -> None:
        """Pause the replay, or play it on."""
        if (replay := self._replay()) is not None:
            replay.toggle_pause()
            self.refresh_now()

    def action_faster(self) -> None:
        """Play the replay faster."""
        if (replay := self._replay()) is not None:
            replay.faster()
            self.refresh_now()

    def action_slower(self) -> None:
        """Play the replay slower."""
        if (replay := self._replay()) is not None:
            replay.slower()
            self.refresh_now()

    def action_step(self) -> None:
        """Play one more event of the replay (and pause)."""
        if (replay := self._replay()) is not None:
            replay.step()
            self.refresh_now()

    def action_jump(self) -> None:
        """Ask for a moment of the recording, and show it as it stood then."""
        if (replay := self._replay()) is not None:
            start, now, end = replay.position
            self.push_screen(JumpScreen(now=now - start, length=end - start), self._jumped)

    def _jumped(self, seconds: float | None) -> None:
        if seconds is not None and (replay := self._replay()) is not None:
            replay.seek(replay.position[0] + seconds)
            self.refresh_now()

    def action_next_mark(self) -> None:
        """Jump to the next shutdown or failure in the replay."""
        if (replay := self._replay()) is not None:
            found = replay.next_mark()
            self.notify(
                plain(f"at {found}" if found else "no shutdown or failure after here"),
                markup=False,
            )
            self.refresh_now()

    # --- shutting down and quitting ---------------------------------------------------

    def _shutting_down(self) -> bool:
        return (
            self._stop_requested or self._stop_task is not None or self.state.phase.is_shutting_down
        )

    def _follow_shutdown(self) -> None:
        """Wait for the end of a shutdown (begun here, or without us: supervision)."""
        if self._stop_task is None:
            self._stop_task = self._spawn(self.source.wait_stopped())
            self._stop_task.add_done_callback(self._stopped)

    def escalate(self) -> None:
        """Skip the running shutdown to its next phase (a second ``s``, ``q`` or signal)."""
        self._follow_shutdown()
        self._act(self.source.shutdown(None, True, self.cancel_grace))

    def action_escalate(self) -> None:
        """Skip the shutdown to its next phase: cancel what runs, then abandon it."""
        self.escalate()

    def action_shutdown(self) -> None:
        """Begin a graceful shutdown, after a confirmation (of the selected panel's
        node alone, for a source of parts, a Celery cluster, while the grid has the focus)."""
        if self._shutting_down():
            self.escalate()
            return
        part = self._focused_part()
        if part is not None:
            self.push_screen(
                ConfirmShutdownScreen(
                    grace=self.grace, cancel_grace=self._cancel_grace(), title=f"Shut down {part}?"
                ),
                lambda choice: None
                if choice is None
                else self._act(self.source.shutdown_part(part, choice.grace)),
            )
            return
        self.push_screen(
            ConfirmShutdownScreen(grace=self.grace, cancel_grace=self._cancel_grace()),
            self._confirmed,
        )

    def _cancel_grace(self) -> float:
        return self.source.cancel_grace if self.cancel_grace is None else self.cancel_grace

    def _confirmed(self, choice: ShutdownChoice | None) -> None:
        if choice is None:
            return
        if self._shutting_down():
            # Answered after a shutdown began some other way: that one stands.
            self.notify("a shutdown is already under way; s skips to its next phase", markup=False)
            return
        self.begin_shutdown(choice.grace, choice.drain)

    def begin_shutdown(self, grace: float | None = None, drain: bool = True) -> None:
        """Start the graceful shutdown now; if one is under way, follow it (never escalate)."""
        if self._shutting_down():
            self._follow_shutdown()
            return
        self._stop_requested = True
        self._spawn(self._begin(self.grace if grace is None else grace, drain))

    async def _begin(self, grace: float, drain: bool) -> None:
        try:
            await self.source.shutdown(grace, drain, self.cancel_grace)
        except (PoolError, SourceError, ValueError, TypeError) as exc:
            self._stop_requested = False
            self.notify(plain(str(exc), limit=500), severity="warning", markup=False)
            return
        self._follow_shutdown()  # begun: its end can be waited for
        self.refresh_now()

    def interrupt(self, what: str) -> None:
        """A signal or ctrl+c: the first begins the graceful shutdown and quits when it
        ends (read-only too: the operator is never stuck); each one after escalates.
        Attached to a service, or replaying, it only leaves."""
        self._exit_when_stopped = True
        if self.stopped or not self._owns_pool():
            self.exit(self.exit_status())
            return
        self._interrupts += 1
        if self._interrupts == 1:
            self.notify(
                f"{what}: shutting down gracefully, then quitting; again skips ahead",
                severity="warning",
                markup=False,
            )
            self.begin_shutdown()
        else:
            self.escalate()
        self.refresh_now()

    def on_terminate(self) -> None:
        """SIGTERM: as ctrl+c."""
        self.interrupt("SIGTERM")

    def action_interrupt(self) -> None:
        """ctrl+c: as SIGINT to the headless run."""
        self.interrupt("ctrl+c")

    def _stopped(self, task: asyncio.Task[ShutdownReport | None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.notify(
                plain(f"the shutdown failed: {type(exc).__name__}: {exc}", limit=500),
                severity="error",
                markup=False,
            )
            return
        self.report = task.result()
        self.stopped = True
        self.refresh_now()
        self.refresh_bindings()
        if self._exit_when_stopped:
            self.exit(self.exit_status())

    def exit_status(self) -> int:
        """0 when every job succeeded or was cleanly drained, 1 otherwise; leaving a
        pool that is not ours (attached, replayed) is 0."""
        if not self._owns_pool():
            return 0
        s = self.state
        report = self.report
        # Before any shutdown (a quit that did not wait), clean only if nothing was left.
        clean = s.queued == 0 and s.running == 0 if report is None else report.clean
        bad = s.failed + s.timed_out + s.cancelled + s.abandoned
        return 0 if clean and bad == 0 else 1

    def action_quit_app(self) -> None:
        """Quit. While the pool runs, offer the graceful shutdown first (enter takes it);
        during a shutdown, quit when it ends, and a second q skips it ahead. Attached
        to a service, or replaying, quit only leaves (the service's pool goes on)."""
        if self.stopped or not self._owns_pool():
            self.exit(self.exit_status())
            return
        if self._shutting_down():
            if self._exit_when_stopped:
                self.escalate()
                return
            self._follow_shutdown()
            self._exit_when_stopped = True
            self.notify("quitting when the shutdown ends; q again skips ahead", markup=False)
            self.refresh_now()
            return
        if self.read_only:
            # No controls, but never a silent kill: the pool still shuts down gracefully.
            self._exit_when_stopped = True
            self.begin_shutdown()
            return
        self.push_screen(QuitScreen(), self._quit_choice)

    def _quit_choice(self, choice: str | None) -> None:
        if choice is None:
            return
        self._exit_when_stopped = True
        if self._shutting_down():
            self._follow_shutdown()
            if choice == "now":
                self.escalate()
            return
        if choice == "graceful":
            self.begin_shutdown()
        elif choice == "now":
            self.begin_shutdown(grace=0.0, drain=False)

    async def action_quit(self) -> None:
        """Textual's own quit (ctrl+q, the palette): the same as ``q``."""
        self.action_quit_app()

    def action_detach(self) -> None:
        """Leave the dashboard; the work it watched goes on."""
        self.exit(self.exit_status())

    def _said(self, action: str, does: str) -> str:
        """``does``, with what the source does on a second cancel where it does more."""
        again = self.source.cancel_again if action == "cancel_job" else ""
        return f"{does}; again: {again}" if again else does

    def action_help(self) -> None:
        """Show the keys that work in this dashboard."""
        lines = []
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding)
            line = _HELP.get(binding.action)
            if line is None or not self._available_here(binding.action):
                continue
            if self.read_only:
                line = _READ_ONLY_HELP.get(binding.action, line)
            if not self._owns_pool():
                line = _VISITOR_HELP.get(binding.action, line)
            does, when = line
            lines.append(
                HelpLine(binding.key_display or binding.key, self._said(binding.action, does), when)
            )
        title = "wpool-tui (read-only: watching, no control)" if self.read_only else "wpool-tui"
        self.push_screen(HelpScreen(lines, title=title))

    async def on_unmount(self) -> None:
        if self._handle_signals:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
        if self._sub is not None:
            self._sub.close()
        for task in list(self._tasks):
            if task is not self._stop_task:
                task.cancel()
        await self.source.close()


class _Now(Protocol):
    """Where the dashboard's time comes from: the source, or a test's clock."""

    def now(self) -> float: ...


class _News(enum.Enum):
    """What a batch of events changes on screen."""

    NONE = "none"
    """No event came."""
    PROGRESS = "progress"
    """Only progress: a job's bar, the shutdown's seconds left."""
    CHANGES = "changes"
    """A job or worker changed state, or a figure did."""


_PROGRESS = frozenset({pool_events.JobProgressed, pool_events.ShutdownTick})
"""The events that only move a bar or a clock."""

_NEVER_HELD = frozenset({"ctrl+c", "ctrl+q"})
"""Keys that act at once even while a dialog is being opened."""

_PALETTE_HELP = {
    "add_jobs": "Submit a number of jobs",
    "grow": "Add one worker",
    "shrink": "Retire one worker",
    "resize": "Set the number of workers",
    "pause": "Stop taking jobs from the queue",
    "resume": "Take jobs from the queue again",
    "freeze": "Freeze or unfreeze the view",
    "filter": "Filter the job log",
    "log": "Put the focus on the job log",
    "failed": "Show failed jobs (dead letters)",
    "details": "Details of the selected job",
    "cancel_job": "Cancel the selected worker's job",
    "shutdown": "Graceful shutdown",
    "escalate": "Skip the shutdown to its next phase",
    "quit_app": "Quit (offers a graceful shutdown)",
    "detach": "Detach (the service's pool goes on)",
    "help": "Show the keys",
    "play_pause": "Pause the replay, or play it on",
    "slower": "Play the replay slower",
    "faster": "Play the replay faster",
    "step": "Play one more event",
    "jump": "Jump to a moment of the recording",
    "next_mark": "Jump to the next shutdown or failure",
}

_HELP: dict[str, tuple[str, str]] = {
    "add_jobs": ("add jobs (asks how many)", "while running"),
    "resize": ("set the number of workers", "while running"),
    "pause": ("pause / resume taking jobs from the queue", "while running"),
    "filter": ("filter the log: words, outcome:failed, worker:w3; escape clears", ""),
    "failed": ("failed jobs: enter details, / filter, r resubmit, R all shown", ""),
    "shutdown": ("graceful shutdown (asks first); during one, skip ahead", ""),
    "help": ("this help (ctrl+p: every action in the command palette)", ""),
    "quit_app": ("quit: while running, enter shuts down gracefully first", ""),
    "detach": ("detach: leave the service's pool running", ""),
    "grow": ("one more worker", "while running"),
    "shrink": ("one worker less (a busy one finishes its job first)", "while running"),
    "freeze": ("freeze the view (events are still read)", "until stopped"),
    "log": ("the log: up or home holds it, end or G follows the newest", ""),
    "details": ("details of the selected worker's job or log row", ""),
    "cancel_job": ("cancel the selected worker's job", ""),
    "interrupt": ("graceful shutdown, then quit; again: skip ahead", ""),
    "play_pause": ("pause the replay, or play it on", ""),
    "slower": ("play slower", ""),
    "faster": ("play faster", ""),
    "step": ("one more event (and pause)", ""),
    "jump": ("jump to a moment of the recording (asks which)", ""),
    "next_mark": ("jump to the next shutdown or failure", ""),
}
"""The help's line for each key (one line a key: p pauses and resumes, s shuts
down and escalates), and when it applies if not always."""

_VISITOR_HELP: dict[str, tuple[str, str]] = {
    "quit_app": ("quit", ""),
    "interrupt": ("leave at once: nothing is stopped", ""),
}
"""The lines that differ when the pool is not this program's (attached, replayed)."""

_READ_ONLY_HELP: dict[str, tuple[str, str]] = {
    "quit_app": ("shut down gracefully, then quit; again: skip ahead", ""),
    "failed": ("failed jobs: enter details, / filter", ""),
}
"""The lines that say less in read-only mode: no key that is refused there."""


create_app = WpoolApp
"""The app factory that tests, tools and the command use: the class itself,
so that its keyword arguments are written once (see ``WpoolApp.__init__``)."""
