"""The dashboard app driven by its keys: each key must change the POOL as the issue says.

Every test runs the app headless with ``App.run_test`` on a pool that reads a
:class:`~pool.ManualClock`, with jobs held by :class:`~tests.helpers.Script`'s
events; nothing waits on real time. A test checks the pool itself
(``stats()``, ``phase``, ``dead_letters()``), and the screen only where the
screen is the point.
"""

from __future__ import annotations

import asyncio
import gc

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable, Input, Label, Static
from textual.widgets._footer import FooterKey

from pool import Job, JobHandle, JobState, ManualClock, PoolPhase, events
from tests.tui.rig import CONTROL_ACTIONS, Rig, dialog_error, frame, running, text_of
from tui.app import WpoolApp
from tui.screens.dialogs import (
    AddJobsScreen,
    ConfirmShutdownScreen,
    HelpScreen,
    QuitScreen,
    ResizeScreen,
)
from tui.screens.jobs import DeadLettersScreen, JobDetailScreen
from tui.widgets.countdown import Countdown
from tui.widgets.joblog import JobLog
from tui.widgets.summary import Summary
from tui.widgets.workers import WorkerGrid, WorkerPanel

pytestmark = pytest.mark.usefixtures("frames_only_when_asked", "release_held_jobs")


def phases(batch: list[events.PoolEvent]) -> list[PoolPhase]:
    return [e.phase for e in batch if isinstance(e, events.PhaseChanged)]


# --- startup -------------------------------------------------------------------


async def test_mount_starts_the_pool_and_shows_a_panel_per_worker(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.RUNNING
        assert [p.worker_id for p in app.query(WorkerPanel)] == ["w1", "w2"]
        assert " RUNNING " in text_of(app.query_one(Summary))
        assert app.screen_stack == [app.screen]


# --- a: add jobs ---------------------------------------------------------------


async def test_a_opens_the_add_dialog_and_enter_submits_that_many(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        await pilot.press("a")
        assert isinstance(app.screen, AddJobsScreen)
        assert app.screen.query_one("#number", Input).value == "10", "10 by default"
        await pilot.press("3", "enter")  # the default is selected: typing replaces it
        await frame(pilot)
        assert not isinstance(app.screen, AddJobsScreen)
        stats = rig.pool.stats()
        assert stats.submitted == 3
        assert stats.succeeded == 3
        assert app.state.submitted == 3


async def test_the_add_dialog_refuses_invalid_input_with_a_message(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        await pilot.press("a")
        for typed, error in (
            ("abc", "enter a whole number from 1 to 10000, not 'abc'"),
            ("0", "must be from 1 to 10000, got 0"),
            ("-3", "must be from 1 to 10000, got -3"),
        ):
            await pilot.press("ctrl+u", *typed, "enter")  # ctrl+u clears the field
            await frame(pilot)
            assert isinstance(app.screen, AddJobsScreen), (typed, "the dialog stays open")
            assert app.screen.query_one("#number", Input).value == typed
            assert dialog_error(app) == error
            stats = rig.pool.stats()
            assert stats.submitted == 0, typed
            # What is typed into the dialog is text, not the app's keys (a, -).
            assert stats.target_workers == 2, typed
            assert len(app.screen_stack) == 2, (typed, app.screen_stack)
        await pilot.press("escape")
        await frame(pilot)
        assert len(app.screen_stack) == 1
        assert rig.pool.stats().submitted == 0


# --- + / -: grow and shrink --------------------------------------------------


async def test_plus_and_minus_change_the_target_by_one_worker(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        await pilot.press("+")
        await frame(pilot)
        stats = rig.pool.stats()
        assert (stats.target_workers, stats.workers) == (3, 3)
        assert [p.worker_id for p in app.query(WorkerPanel)] == ["w1", "w2", "w3"]
        await pilot.press("-")
        await frame(pilot)
        stats = rig.pool.stats()
        assert (stats.target_workers, stats.workers) == (2, 2)
        await pilot.press("-", "-")
        await frame(pilot)
        assert rig.pool.stats().target_workers == 0
        await pilot.press("-")  # nothing below zero
        await frame(pilot)
        assert rig.pool.stats().target_workers == 0


async def test_minus_retires_a_busy_worker_after_its_job_target_vs_live_shown(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        rig.submit(b"hold")
        rig.submit(b"hold")
        await frame(pilot)
        await pilot.press("-")
        await frame(pilot)
        stats = rig.pool.stats()
        assert (stats.target_workers, stats.workers, stats.retiring_workers) == (1, 2, 1)
        summary = text_of(app.query_one(Summary))
        assert "2 live / 1 target (1 retiring)" in summary
        rig.handler.script.release()
        await frame(pilot)
        assert rig.pool.stats().workers == 1
        assert "1 live / 1 target" in text_of(app.query_one(Summary))


async def test_plus_at_max_workers_changes_nothing(clock: ManualClock) -> None:
    rig = Rig(clock, pool_options={"max_workers": 2})
    app = rig.app()
    async with running(app, rig) as pilot:
        await pilot.press("+")
        await frame(pilot)
        assert rig.pool.stats().target_workers == 2


# --- r: resize -----------------------------------------------------------------


async def test_r_opens_the_resize_dialog_and_a_value_reaches_the_pool(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        await pilot.press("r")
        assert isinstance(app.screen, ResizeScreen)
        assert app.screen.query_one("#number", Input).value == "2"
        await pilot.press("5", "enter")
        await frame(pilot)
        assert not isinstance(app.screen, ResizeScreen)
        stats = rig.pool.stats()
        assert (stats.target_workers, stats.workers) == (5, 5)
        assert [p.worker_id for p in app.query(WorkerPanel)] == [f"w{n}" for n in range(1, 6)]


async def test_the_resize_dialog_refuses_out_of_range_with_a_message(clock: ManualClock) -> None:
    rig = Rig(clock, pool_options={"max_workers": 8})
    app = rig.app()
    async with running(app, rig) as pilot:
        await pilot.press("r")
        for typed, error in (
            ("9", "must be from 0 to 8, got 9"),
            ("-1", "must be from 0 to 8, got -1"),
        ):
            await pilot.press("ctrl+u", *typed, "enter")
            await frame(pilot)
            assert isinstance(app.screen, ResizeScreen), typed
            assert dialog_error(app) == error
            assert rig.pool.stats().target_workers == 2, typed
        await pilot.press("escape")
        await frame(pilot)
        assert len(app.screen_stack) == 1
        assert rig.pool.stats().target_workers == 2


# --- p: pause ------------------------------------------------------------------


async def test_p_pauses_taking_jobs_and_p_again_resumes(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        await pilot.press("p")
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.PAUSED
        assert " PAUSED " in text_of(app.query_one(Summary))
        rig.submit(b"ok")
        await frame(pilot)
        stats = rig.pool.stats()
        assert (stats.queued, stats.succeeded) == (1, 0)
        await pilot.press("p")
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.RUNNING
        stats = rig.pool.stats()
        assert (stats.queued, stats.succeeded) == (0, 1)


# --- space: freeze -------------------------------------------------------------


async def test_space_freezes_the_view_while_events_are_still_consumed(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        await frame(pilot)
        await pilot.press("space")
        assert app.frozen
        summary = app.query_one(Summary)
        assert "FROZEN" in text_of(summary)
        frozen_summary = text_of(summary)
        panels = {p.worker_id: text_of(p) for p in app.query(WorkerPanel)}
        first = rig.submit(b"hold")
        rig.submit(b"ok")
        await frame(pilot)
        # The subscription was drained into the state ...
        assert app.state.seq == rig.pool.snapshot().seq
        assert app.state.submitted == 2
        assert app.state.succeeded == 1
        # ... but the widgets did not change.
        assert text_of(summary) == frozen_summary
        assert {p.worker_id: text_of(p) for p in app.query(WorkerPanel)} == panels
        assert app.query_one(JobLog).row_count == 0
        await pilot.press("space")
        await frame(pilot)
        assert not app.frozen
        assert "FROZEN" not in text_of(summary)
        assert "submitted 2" in text_of(summary)
        assert any(first in text_of(p) for p in app.query(WorkerPanel))
        assert app.query_one(JobLog).row_count == 1


# --- f: failed jobs --------------------------------------------------------------


async def test_f_lists_failed_jobs_and_r_resubmits_the_selected_one(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        rig.submit(b"flaky", "flaky-1")
        rig.submit(b"flaky", "flaky-2")
        await frame(pilot)
        assert [d.job.id for d in rig.pool.dead_letters()] == ["flaky-1", "flaky-2"]
        await pilot.press("f")
        assert isinstance(app.screen, DeadLettersScreen)
        table = app.screen.query_one("#letters", DataTable)
        assert table.row_count == 2
        assert [str(table.get_row_at(i)[0]) for i in range(2)] == ["flaky-1", "flaky-2"]
        await pilot.press("down", "r")
        await frame(pilot)
        assert isinstance(app.screen, DeadLettersScreen), "r resubmits; it does not resize"
        assert table.row_count == 1
        assert [d.job.id for d in rig.pool.dead_letters()] == ["flaky-1"]
        assert rig.handler.started.count("flaky-2") == 2
        stats = rig.pool.stats()
        assert (stats.submitted, stats.failed, stats.succeeded) == (3, 2, 1)
        assert stats.target_workers == 2
        await pilot.press("escape")
        assert len(app.screen_stack) == 1


async def test_enter_in_the_failed_jobs_shows_the_error_and_traceback(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        rig.submit(b"fail", "broken-1")
        await frame(pilot)
        await pilot.press("f")
        assert isinstance(app.screen, DeadLettersScreen)
        await pilot.press("enter")
        assert isinstance(app.screen, JobDetailScreen)
        body = text_of(app.screen.query_one("VerticalScroll > Static", Static))
        assert "broken-1" in body
        assert "ValueError: job broken-1 failed on purpose" in body
        assert "Traceback (most recent call last)" in body
        await pilot.press("escape")
        assert isinstance(app.screen, DeadLettersScreen)


# --- enter: details ----------------------------------------------------------------


async def test_enter_on_a_selected_worker_opens_its_job_detail(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        job_id = rig.submit(b"hold")
        await frame(pilot)
        (busy,) = [w.id for w in rig.pool.snapshot().workers if w.job_id == job_id]
        grid = app.query_one(WorkerGrid)
        grid.focus()
        grid.selected = busy
        await pilot.pause()
        await pilot.press("enter")
        assert isinstance(app.screen, JobDetailScreen)
        body = text_of(app.screen.query_one("VerticalScroll > Static", Static))
        assert job_id in body
        assert "state      running" in body
        assert f"worker     {busy}" in body
        # One dialog: escape brings the dashboard back.
        assert len(app.screen_stack) == 2, app.screen_stack
        await pilot.press("escape")
        assert len(app.screen_stack) == 1, app.screen_stack


async def _detail_of_running_job(app: WpoolApp, rig: Rig, pilot: Pilot[int]) -> JobHandle:
    handle = rig.pool.submit_nowait(Job(id="long-1", payload=b"hold"))
    await frame(pilot)
    grid = app.query_one(WorkerGrid)
    grid.focus()
    grid.selected = handle.worker_id
    await pilot.pause()
    await pilot.press("enter")
    assert isinstance(app.screen, JobDetailScreen)
    return handle


async def test_under_a_job_detail_the_footer_offers_none_of_the_dashboards_keys(
    rig: Rig,
) -> None:
    # The footer below a dialog is the dashboard's: it showed the worker
    # grid's "enter Details", a key that then closes the dialog instead.
    app = rig.app()
    async with running(app, rig) as pilot:
        await _detail_of_running_job(app, rig, pilot)
        await pilot.pause()
        under = app.screen_stack[0]
        assert offered(under) == []
        await pilot.press("escape")
        await pilot.pause()
        assert "Details" in offered(under)


def offered(screen: Screen[object]) -> list[str]:
    """What a screen's footer offers, but the command palette (always there)."""
    return [key.description for key in screen.query(FooterKey) if "palette" not in key.action]


async def test_c_in_a_running_job_detail_cancels_the_job(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        handle = await _detail_of_running_job(app, rig, pilot)
        assert "c cancels the job" in text_of(app.screen.query_one(".dialog-hint", Label))
        ended = asyncio.Event()
        handle.add_done_callback(lambda _: ended.set())
        await pilot.press("c")
        await asyncio.wait_for(ended.wait(), 5)
        assert handle.state is JobState.CANCELLED
        assert len(app.screen_stack) == 1


async def test_read_only_job_detail_offers_no_cancel_and_c_does_nothing(rig: Rig) -> None:
    app = rig.app(read_only=True)
    async with running(app, rig) as pilot:
        handle = await _detail_of_running_job(app, rig, pilot)
        assert text_of(app.screen.query_one(".dialog-hint", Label)) == "escape closes"
        await pilot.press("c")
        await frame(pilot)
        assert handle.state is JobState.RUNNING
        assert isinstance(app.screen, JobDetailScreen)


async def test_enter_on_a_failed_job_in_the_log_shows_its_error(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        rig.submit(b"fail", "broken-2")
        await frame(pilot)
        log = app.query_one(JobLog)
        assert log.row_count == 1
        log.focus()
        await pilot.pause()
        await pilot.press("enter")
        assert isinstance(app.screen, JobDetailScreen)
        assert len(app.screen_stack) == 2
        body = text_of(app.screen.query_one("VerticalScroll > Static", Static))
        assert "broken-2" in body
        assert "failed on purpose" in body


async def test_enter_on_a_succeeded_job_in_the_log_shows_what_its_handler_returned(
    rig: Rig,
) -> None:
    handles: dict[str, JobHandle] = {}
    app = rig.app(find_job=handles.get)
    async with running(app, rig) as pilot:
        job = Job(id="answer", payload=b"ok:42")
        handles[job.id] = rig.pool.submit_nowait(job)
        await frame(pilot)
        log = app.query_one(JobLog)
        log.focus()
        await pilot.pause()
        await pilot.press("enter")
        assert isinstance(app.screen, JobDetailScreen)
        body = text_of(app.screen.query_one("VerticalScroll > Static", Static))
        assert "state      succeeded" in body
        assert 'result     "ok:42"' in body


# --- s: shutdown -----------------------------------------------------------------


async def test_s_asks_first_refuses_a_bad_grace_and_enter_begins_the_shutdown(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        rig.submit(b"hold")
        await frame(pilot)
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmShutdownScreen)
        assert app.screen.query_one("#grace", Input).value == "10", "the app's grace"
        assert rig.pool.phase is PoolPhase.RUNNING, "nothing happens before the confirmation"
        await pilot.press("x", "enter")
        await frame(pilot)
        assert isinstance(app.screen, ConfirmShutdownScreen)
        assert dialog_error(app) == "enter a number of seconds, not 'x'"
        assert rig.pool.phase is PoolPhase.RUNNING, "a bad grace is refused"
        await pilot.press("ctrl+u", "7", "enter")
        await frame(pilot)
        assert len(app.screen_stack) == 1
        assert rig.pool.phase is PoolPhase.DRAINING
        assert app.state.shutdown is not None
        assert app.state.shutdown.grace == 7.0, "the grace typed reaches the pool"
        countdown = app.query_one(Countdown)
        assert countdown.has_class("-active")
        assert "SHUTTING DOWN" in text_of(countdown)
        rig.handler.script.release()
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.STOPPED
        assert app.report is not None
        assert app.report.clean
        assert "press q to exit" in text_of(countdown)


async def test_a_stubborn_job_is_cancelled_after_the_grace_and_s_escalates_at_once(
    rig: Rig,
) -> None:
    app = rig.app(grace=5.0, cancel_grace=2.0)
    async with running(app, rig) as pilot:
        stubborn = rig.submit(b"stubborn")
        await frame(pilot)
        sub = rig.pool.events()
        await pilot.press("s", "enter")
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.DRAINING
        await rig.clock.advance(4.9)
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.DRAINING
        await rig.clock.advance(0.2)
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.CANCELLING
        assert rig.handler.script.cancelled == [stubborn]
        assert app.state.shutdown is not None
        assert app.state.shutdown.phase is PoolPhase.CANCELLING
        now = rig.clock.now()
        await pilot.press("s")
        await frame(pilot)
        assert len(app.screen_stack) == 1, "escalating asks nothing"
        assert rig.clock.now() == now, "no time passed"
        assert phases(sub.drain()) == [
            PoolPhase.DRAINING,
            PoolPhase.CANCELLING,
            PoolPhase.FORCING,
            PoolPhase.STOPPED,
        ]
        assert rig.pool.stats().abandoned == 1
        assert app.report is not None
        assert app.report.phase_reached is PoolPhase.FORCING
        assert app.report.abandoned == (stubborn,)


async def test_s_while_draining_skips_to_cancelling_without_time_passing(rig: Rig) -> None:
    app = rig.app(grace=5.0, cancel_grace=2.0)
    async with running(app, rig) as pilot:
        rig.submit(b"stubborn")
        await frame(pilot)
        app.begin_shutdown()  # what s then enter do (tested above)
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.DRAINING
        await pilot.press("s")
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.CANCELLING
        assert rig.clock.now() == 1000.0
        await pilot.press("s")
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.STOPPED
        assert rig.clock.now() == 1000.0
        assert rig.pool.stats().abandoned == 1


# --- q: quit -----------------------------------------------------------------------


async def test_q_after_the_pool_stopped_exits_0_when_every_job_succeeded(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        rig.submit(b"ok")
        rig.submit(b"ok")
        await frame(pilot)
        app.begin_shutdown()  # what s then enter do (tested above)
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.STOPPED
        assert app.return_value is None
        await pilot.press("q")
        assert app.return_value == 0
    assert app.return_value == 0


async def test_q_after_the_pool_stopped_exits_1_when_a_job_failed(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        rig.submit(b"ok")
        rig.submit(b"fail")
        await frame(pilot)
        app.begin_shutdown()  # what s then enter do (tested above)
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.STOPPED
        await pilot.press("q")
        assert app.return_value == 1
    assert app.return_value == 1


async def test_q_while_running_offers_the_graceful_shutdown_and_quits_after_it(
    rig: Rig,
) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        rig.submit(b"hold")
        await frame(pilot)
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        assert rig.pool.phase is PoolPhase.RUNNING
        assert app.return_value is None
        await pilot.press("enter")  # "Shut down gracefully" has the focus
        await frame(pilot)
        assert len(app.screen_stack) == 1, "the defaults: nothing more to ask"
        assert rig.pool.phase is PoolPhase.DRAINING
        assert app.return_value is None
        rig.handler.script.release()
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.STOPPED
    assert app.return_value == 0, "asked to quit: it quits once stopped"


async def test_textuals_own_quit_also_offers_the_graceful_shutdown(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, QuitScreen)
        assert rig.pool.phase is PoolPhase.RUNNING
        assert app.return_value is None
        await pilot.press("escape")


async def test_quit_now_cancels_what_runs_and_exits_1(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        held = rig.submit(b"hold")
        await frame(pilot)
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("tab", "enter")  # "Quit now"
        await frame(pilot)
        assert rig.pool.phase.is_shutting_down
        await rig.clock.advance(0.0)  # a grace of 0 still ends on the clock
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.STOPPED
        assert rig.handler.script.cancelled == [held]
        assert app.report is not None
        assert app.report.cancelled == (held,)
        assert app.return_value == 1


async def test_q_during_the_shutdown_exits_when_it_ends(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        rig.submit(b"hold")
        await frame(pilot)
        app.begin_shutdown()  # what s then enter do (tested above)
        await frame(pilot)
        await pilot.press("q")
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.DRAINING
        assert app.return_value is None
        rig.handler.script.release()
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.STOPPED
        assert app.return_value == 0


# --- ?: help -------------------------------------------------------------------------


async def test_question_mark_opens_the_help(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        await pilot.press("?")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert len(app.screen_stack) == 1


# --- what applies now: read-only and after the shutdown began ------------------------------


async def test_read_only_control_keys_change_nothing_in_the_pool(rig: Rig) -> None:
    app = rig.app(read_only=True)
    async with running(app, rig) as pilot:
        rig.submit(b"hold")
        await frame(pilot)
        before = rig.pool.stats()
        for key in ("a", "+", "-", "r", "p", "s"):
            await pilot.press(key)
            await frame(pilot)
            assert len(app.screen_stack) == 1, (key, app.screen_stack)
            stats = rig.pool.stats()
            assert stats.submitted == before.submitted, key
            assert stats.target_workers == 2, key
            assert stats.workers == 2, key
            assert rig.pool.phase is PoolPhase.RUNNING, key


async def test_read_only_hides_the_controls(rig: Rig) -> None:
    app = rig.app(read_only=True)
    async with running(app, rig) as pilot:
        await frame(pilot)
        for action in CONTROL_ACTIONS:
            assert app.check_action(action, ()) is False, action
        for action in ("freeze", "failed", "details", "help", "quit_app"):
            assert app.check_action(action, ()) is True, action
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for name in ("Add", "Resize", "Shutdown", "Pause", "+1", "-1"):
            assert not any(t.startswith(f"{name} (") for t in titles), (name, titles)
        assert any(t.startswith("Help (") for t in titles)


async def test_read_only_failed_jobs_cannot_be_resubmitted(rig: Rig) -> None:
    app = rig.app(read_only=True)
    async with running(app, rig) as pilot:
        rig.submit(b"flaky", "flaky-3")
        await frame(pilot)
        await pilot.press("f")
        assert isinstance(app.screen, DeadLettersScreen)
        assert app.screen.check_action("resubmit", ()) is False
        await pilot.press("r")
        await frame(pilot)
        assert [d.job.id for d in rig.pool.dead_letters()] == ["flaky-3"]
        assert rig.pool.stats().submitted == 1
        assert isinstance(app.screen, DeadLettersScreen)


async def test_after_the_shutdown_began_resize_add_and_pause_are_hidden(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        rig.submit(b"hold")
        await frame(pilot)
        for action in CONTROL_ACTIONS:
            assert app.check_action(action, ()) is True, action
        app.begin_shutdown()  # what s then enter do (tested above)
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.DRAINING
        for action in ("add_jobs", "grow", "shrink", "resize", "pause", "shutdown"):
            assert app.check_action(action, ()) is False, action
        assert app.check_action("escalate", ()) is True, "s escalates during a shutdown"
        for key in ("a", "+", "-", "r", "p"):
            await pilot.press(key)
            await frame(pilot)
            assert len(app.screen_stack) == 1, (key, app.screen_stack)
            assert rig.pool.phase is PoolPhase.DRAINING, key
            assert rig.pool.stats().target_workers == 2, key
            assert rig.pool.stats().submitted == 1, key
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Next phase (s)" in titles
        for gone in ("Add (a)", "+1 (+)", "-1 (-)", "Resize (r)", "Pause (p)"):
            assert gone not in titles, gone
        rig.handler.script.release()
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.STOPPED
        assert app.check_action("shutdown", ()) is False
        assert app.check_action("escalate", ()) is False


# --- the command palette -------------------------------------------------------------


async def test_the_command_palette_offers_every_action(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        await frame(pilot)
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        for title in (
            "Add (a)",
            "+1 (+)",
            "-1 (-)",
            "Resize (r)",
            "Pause (p)",
            "Freeze (space)",
            "Failed (f)",
            "Details (enter)",
            "Shutdown (s)",
            "Quit (q)",
            "Help (?)",
        ):
            assert title in commands, (title, sorted(commands))
        # A palette entry does what its key does.
        callback = commands["Pause (p)"].callback
        result = callback()
        if asyncio.iscoroutine(result):
            await result
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.PAUSED


# --- SIGTERM ---------------------------------------------------------------------------


async def test_sigterm_begins_the_graceful_shutdown_and_exits_when_it_ends(rig: Rig) -> None:
    app = rig.app()
    async with running(app, rig) as pilot:
        rig.submit(b"hold")
        await frame(pilot)
        app.on_terminate()
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.DRAINING
        assert app.query_one(Countdown).has_class("-active")
        assert app.return_value is None
        rig.handler.script.release()
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.STOPPED
        assert app.return_value == 0


async def test_a_second_sigterm_escalates(rig: Rig) -> None:
    app = rig.app(grace=5.0, cancel_grace=2.0)
    async with running(app, rig) as pilot:
        rig.submit(b"stubborn")
        await frame(pilot)
        app.on_terminate()
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.DRAINING
        app.on_terminate()
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.CANCELLING
        assert rig.clock.now() == 1000.0
        app.on_terminate()
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.STOPPED
        assert rig.pool.stats().abandoned == 1
        assert app.return_value == 1


async def test_after_sigterm_the_app_exits_within_grace_and_cancel_grace(rig: Rig) -> None:
    app = rig.app(grace=3.0, cancel_grace=1.0)
    async with running(app, rig) as pilot:
        rig.submit(b"stubborn")
        await frame(pilot)
        app.on_terminate()
        await frame(pilot)
        await rig.clock.advance(3.0 + 1.0 + 0.1)
        await frame(pilot)
        assert rig.pool.phase is PoolPhase.STOPPED
        assert app.report is not None
        assert app.report.phase_reached is PoolPhase.FORCING
        assert app.return_value == 1


class TestShutdownsBegunElsewhere:
    """The operator's controls follow a shutdown the app did not start."""

    async def test_s_escalates_a_shutdown_supervision_began(self, clock: ManualClock) -> None:
        rig = Rig(clock, pool_options={"max_restarts": 0})
        app = rig.app()
        async with running(app, rig) as pilot:
            rig.submit(b"stubborn", "stuck")
            await frame(pilot)
            rig.submit(b"crash", "boom")
            await frame(pilot)
            assert rig.pool.phase is PoolPhase.DRAINING
            await pilot.press("s")
            await frame(pilot)
            assert not isinstance(app.screen, ConfirmShutdownScreen)
            assert rig.pool.phase is PoolPhase.CANCELLING

    async def test_a_dialog_answered_after_sigterm_does_not_escalate(self, rig: Rig) -> None:
        app = rig.app(grace=30.0)
        async with running(app, rig) as pilot:
            rig.submit(b"hold")
            await frame(pilot)
            await pilot.press("s")
            assert isinstance(app.screen, ConfirmShutdownScreen)
            app.on_terminate()
            await frame(pilot)
            await pilot.press("enter")
            await frame(pilot)
            assert rig.pool.phase is PoolPhase.DRAINING

    async def test_quick_presses_add_up(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            await frame(pilot)
            for _ in range(3):
                app.action_grow()
            app.action_pause()
            app.action_resume()
            await frame(pilot)
            assert rig.pool.stats().target_workers == 5
            assert rig.pool.phase is PoolPhase.RUNNING

    async def test_read_only_quit_still_shuts_down_gracefully(self, rig: Rig) -> None:
        app = rig.app(read_only=True)
        async with running(app, rig) as pilot:
            handle = rig.pool.submit_nowait(Job(payload=b"hold"))
            await frame(pilot)
            await pilot.press("q")
            await frame(pilot)
            assert rig.pool.phase is PoolPhase.DRAINING
            rig.handler.script.release()
            await frame(pilot)
            assert handle.state is JobState.SUCCEEDED
        assert app.return_value == 0
        assert app.report is not None


# --- garbage collection ------------------------------------------------------------------


@pytest.mark.parametrize("freeze", [True, False])
async def test_the_command_freezes_what_exists_once_mounted(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, freeze: bool
) -> None:
    frozen: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(len(frozen)))
    app = rig.app(freeze_gc=freeze)
    async with running(app, rig) as pilot:
        await frame(pilot)
        assert frozen == ([0] if freeze else [])
