"""The dashboard as an operator's everyday tool: a log that follows, a filter, keys
that never lie, numbers that add up, and text that cannot break the screen.

Like ``test_app.py``, each test runs the real app headless on a pool that
reads a :class:`~pool.ManualClock`, with jobs held by events; it checks the
pool, the state, and the screen where the screen is the point.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from textual import events as textual_events
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, Static
from textual.widgets._footer import FooterKey

import tui.app as tui_app
from pool import Job, JobContext, JobState, ManualClock, Pool, PoolPhase
from pool import events as ev
from pool.commands import ShellCommands
from tests.helpers import settle
from tests.tui.rig import Rig, frame, running, text_of
from tui.app import WpoolApp
from tui.screens.dialogs import (
    AddJobsScreen,
    ConfirmShutdownScreen,
    HelpScreen,
    JobsToAdd,
    QuitScreen,
    ResizeScreen,
)
from tui.screens.jobs import ConfirmResubmitScreen, DeadLettersScreen, JobDetailScreen
from tui.state import LOG_LIMIT, DashboardState, LogEntry, Outcome
from tui.widgets.countdown import Countdown, render_countdown
from tui.widgets.format import plain
from tui.widgets.joblog import JobLog, LogView
from tui.widgets.summary import Summary, render_progress
from tui.widgets.workers import WorkerGrid, WorkerPanel

pytestmark = pytest.mark.usefixtures("frames_only_when_asked", "release_held_jobs")


def burst(app: WpoolApp, *keys: str) -> None:
    """Send ``keys`` as a terminal does for fast typing: all read at once, none waited for."""
    driver = app._driver
    assert driver is not None
    for key in keys:
        char = key if len(key) == 1 else {"enter": "\r", "space": " "}.get(key)
        event = textual_events.Key(key, char)
        event.set_sender(app)
        driver.send_message(event)


async def idle(pilot: Pilot[int], rounds: int = 3) -> None:
    """Let the app read and act on what was sent, draw a frame, and let it settle."""
    for _ in range(rounds):
        await pilot.pause()
    await frame(pilot)
    for _ in range(rounds):
        await pilot.pause()


def shown_keys(app: WpoolApp) -> list[str]:
    """The keys the footer shows, in order, that fit on the screen."""
    width = app.size.width
    return [
        key.key_display
        for key in app.screen.query(FooterKey)
        if key.region.width and key.region.right <= width and "palette" not in key.action
    ]


def log_rows(app: WpoolApp) -> list[str]:
    log = app.query_one(JobLog)
    return [log.entry_key(row) or "" for row in range(log.row_count)]


def log_title(app: WpoolApp) -> str:
    title = app.query_one(LogView).border_title
    return str(title)


async def add_ok_jobs(rig: Rig, pilot: Pilot[int], count: int, prefix: str = "j") -> None:
    """Run ``count`` jobs that succeed at once, then draw a frame with all of them."""
    for i in range(count):
        rig.submit(b"ok", f"{prefix}{i:03d}")
        if i % 20 == 19:
            await settled(rig)  # the queue holds 100
    await settled(rig)
    await frame(pilot)
    await pilot.pause()


async def settled(rig: Rig) -> None:
    """Give the loop turns until no job is queued or running (the jobs do not wait)."""
    for _ in range(1000):
        stats = rig.pool.stats()
        if not stats.queued and not stats.running:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"jobs still live: {rig.pool.stats()}")


class TestLogFollowsTheTail:
    async def test_the_newest_outcome_stays_in_sight_past_the_first_screenful(
        self, rig: Rig
    ) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            log = app.query_one(JobLog)
            await add_ok_jobs(rig, pilot, 10, "a")
            await add_ok_jobs(rig, pilot, 60, "b")
            await idle(pilot)
            assert log.max_scroll_y > 0, "the rows overflow the log"
            assert log.scroll_y == log.max_scroll_y
            assert log_rows(app)[-1] == app.state.log[-1].job_id  # the newest outcome
            await add_ok_jobs(rig, pilot, 30, "c")
            await idle(pilot)
            assert log.scroll_y == log.max_scroll_y
            assert log.cursor_row == log.row_count - 1
            assert "following" in log_title(app)

    async def test_scrolling_back_holds_still_and_says_so_until_end(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            log = app.query_one(JobLog)
            await add_ok_jobs(rig, pilot, 60)
            await pilot.press("l")
            assert app.focused is log
            await pilot.press("pageup", "up")
            await idle(pilot)
            assert not log.following
            held = log.scroll_y
            assert held < log.max_scroll_y
            await add_ok_jobs(rig, pilot, 20, "k")
            await idle(pilot)
            assert log.scroll_y == held, "a held view does not move"
            assert "paused at row" in log_title(app)
            assert "end follows again" in log_title(app)
            await pilot.press("end")
            await idle(pilot)
            assert log.following
            assert log.scroll_y == log.max_scroll_y
            assert "following" in log_title(app)

    @pytest.mark.parametrize("keys", [("home",), ("pageup",), ("up",), ("ctrl+home",)])
    async def test_each_way_back_holds_and_G_follows(self, rig: Rig, keys: tuple[str, ...]) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            log = app.query_one(JobLog)
            await add_ok_jobs(rig, pilot, 60)
            await pilot.press("l", *keys)
            await idle(pilot)
            assert not log.following, keys
            await pilot.press("G")
            await idle(pilot)
            assert log.following
            assert log.scroll_y == log.max_scroll_y

    async def test_the_mouse_wheel_holds_the_view(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            log = app.query_one(JobLog)
            await add_ok_jobs(rig, pilot, 60)
            await pilot.pause()
            log.post_message(textual_events.MouseScrollUp(log, 5, 5, 0, -1, 0, False, False, False))
            await idle(pilot)
            assert not log.following

    async def test_a_held_view_stays_on_its_entries_when_the_table_is_rebuilt(
        self, rig: Rig
    ) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            log = app.query_one(JobLog)
            await add_ok_jobs(rig, pilot, LOG_LIMIT, "a")
            await pilot.press("l", "pageup", "pageup")
            await idle(pilot)
            assert not log.following
            top = log_rows(app)[int(log.scroll_y)]
            cursor = log_rows(app)[log.cursor_row]
            # Enough new rows to make the table start over (it keeps LOG_LIMIT + slack).
            for batch in range(6):
                await add_ok_jobs(rig, pilot, 40, f"n{batch}-")
            await idle(pilot)
            assert log.row_count <= LOG_LIMIT + 200
            assert log_rows(app)[int(log.scroll_y)] == top
            assert log_rows(app)[log.cursor_row] == cursor

    async def test_the_log_follows_from_the_start_and_after_a_rebuild(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            log = app.query_one(JobLog)
            for batch in range(8):
                await add_ok_jobs(rig, pilot, 100, f"r{batch}-")
            await idle(pilot)
            assert log.following
            assert log.scroll_y == log.max_scroll_y
            assert log_rows(app)[-1] == app.state.log[-1].job_id

    async def test_l_focuses_the_log_and_tab_reaches_it_in_one_stop_from_the_workers(
        self, clock: ManualClock
    ) -> None:
        rig = Rig(clock, pool_options={"workers": 6})
        app = rig.app()
        async with running(app, rig) as pilot:
            await frame(pilot)
            app.query_one(WorkerGrid).focus()
            await pilot.pause()
            await pilot.press("tab")
            assert isinstance(app.focused, JobLog)
            await pilot.press("tab")
            assert isinstance(app.focused, WorkerGrid)
            await pilot.press("l")
            assert isinstance(app.focused, JobLog)

    async def test_enter_on_the_worker_grid_shows_the_selected_workers_job(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            rig.submit(b"hold", "held-1")
            await frame(pilot)
            busy = next(w.id for w in rig.pool.snapshot().workers if w.job_id == "held-1")
            app.query_one(WorkerGrid).focus()
            await pilot.pause()
            for _ in range(int(busy[1:]) - 1):
                await pilot.press("right")
            await pilot.press("enter")
            assert isinstance(app.screen, JobDetailScreen)
            body = text_of(app.screen.query_one("VerticalScroll > Static", Static))
            assert "held-1" in body


class TestFilter:
    async def test_slash_filters_the_log_counts_and_applies_to_later_rows(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            rig.submit(b"ok", "good-1")
            rig.submit(b"fail", "bad-1")
            rig.submit(b"ok", "good-2")
            await frame(pilot)
            await pilot.press("slash")
            assert isinstance(app.focused, Input)
            await pilot.press(*"outcome:failed")
            await idle(pilot)
            assert log_rows(app) == ["bad-1"]
            assert "1 of 3 shown" in log_title(app)
            rig.submit(b"fail", "bad-2")
            rig.submit(b"ok", "good-3")
            await idle(pilot)
            assert log_rows(app) == ["bad-1", "bad-2"]
            assert "2 of 5 shown" in log_title(app)
            await pilot.press("escape")
            await idle(pilot)
            assert log_rows(app) == [e.job_id for e in app.state.log]
            assert len(log_rows(app)) == 5
            assert "shown" not in log_title(app)

    @pytest.mark.parametrize(
        ("typed", "wanted"),
        [
            ("bad", lambda e: e.job_id.startswith("bad")),
            ("worker:w1", lambda e: e.worker_id == "w1"),
            (
                "outcome:failed worker:w2",
                lambda e: e.outcome.value == "failed" and e.worker_id == "w2",
            ),
            ("error:purpose", lambda e: "purpose" in e.error),
            ("id:good", lambda e: e.job_id.startswith("good")),
            (
                "outcome:failed outcome:succeeded worker:w2",
                lambda e: e.worker_id == "w2",
            ),
            ("BAD-1", lambda e: e.job_id == "bad-1"),
        ],
    )
    async def test_terms_narrow_and_words_match_any_field(
        self, rig: Rig, typed: str, wanted: Callable[[LogEntry], bool]
    ) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            for job_id, payload in (
                ("good-1", b"ok"),
                ("bad-1", b"fail"),
                ("bad-2", b"fail"),
                ("good-2", b"ok"),
            ):
                rig.submit(payload, job_id)
                await settle()
            await frame(pilot)
            assert {e.worker_id for e in app.state.log} == {"w1", "w2"}
            expected = [e.job_id for e in app.state.log if wanted(e)]
            assert 0 < len(expected) < 4, "each case keeps some rows and drops some"
            await pilot.press("slash", *typed)
            await idle(pilot)
            assert log_rows(app) == expected, typed

    async def test_an_unknown_field_is_named_and_filters_nothing(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            rig.submit(b"ok", "a-1")
            await frame(pilot)
            await pilot.press("slash", *"colour:red")
            await idle(pilot)
            assert log_rows(app) == ["a-1"]
            assert (
                "filter: unknown field 'colour' (fields: id, command, worker, outcome, error)"
                in log_title(app)
            )

    async def test_the_failed_list_filters_and_resubmits_all_shown_after_asking(
        self, rig: Rig
    ) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            for job_id in ("img-1", "img-2", "doc-1"):
                rig.submit(b"flaky", job_id)
            await frame(pilot)
            await pilot.press("f")
            assert isinstance(app.screen, DeadLettersScreen)
            await pilot.press("slash", *"img")
            await idle(pilot)
            table = app.screen.query_one("#letters", DataTable)
            assert table.row_count == 2
            assert "2 of 3 shown" in str(app.screen.query_one("#title", Label).content)
            await pilot.press("enter", "R")  # enter keeps the filter; R asks first
            assert isinstance(app.screen, ConfirmResubmitScreen)
            await pilot.press("escape")
            assert isinstance(app.screen, DeadLettersScreen)
            assert {d.job.id for d in rig.pool.dead_letters()} == {"img-1", "img-2", "doc-1"}
            await pilot.press("R", "enter")
            await idle(pilot)
            assert [d.job.id for d in rig.pool.dead_letters()] == ["doc-1"]
            assert rig.handler.started.count("img-1") == 2
            assert rig.handler.started.count("doc-1") == 1


class TestKeysThatNeverLie:
    async def test_after_the_stop_only_what_still_works_is_offered(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            rig.submit(b"ok")
            await idle(pilot)
            assert {"a", "r", "p", "s"} <= set(shown_keys(app))
            app.begin_shutdown()
            await idle(pilot)
            assert rig.pool.phase is PoolPhase.STOPPED
            for action in ("add_jobs", "grow", "shrink", "resize", "pause", "shutdown"):
                assert app.check_action(action, ()) is False, action
            assert shown_keys(app) == ["/", "f", "?", "q"]
            titles = {c.title for c in app.get_system_commands(app.screen)}
            assert {"Filter (/)", "Failed (f)", "Quit (q)", "Help (?)", "Log (l)"} <= titles
            for gone in ("Add (a)", "Resize (r)", "Pause (p)", "Shutdown (s)", "+1 (+)"):
                assert gone not in titles, gone

    async def test_a_batch_never_offers_add(self, rig: Rig) -> None:
        app = WpoolApp(rig.pool, clock=rig.clock, animate=False, total_jobs=1)
        async with running(app, rig) as pilot:
            await frame(pilot)
            assert "a" not in shown_keys(app)
            app.begin_shutdown()
            await idle(pilot)
            assert "a" not in shown_keys(app)

    async def test_pause_and_resume_are_told_apart(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            await idle(pilot)
            keys = {k.key_display: k.description for k in app.screen.query(FooterKey)}
            assert keys["p"] == "Pause"
            await pilot.press("p")
            await idle(pilot)
            assert rig.pool.phase is PoolPhase.PAUSED
            keys = {k.key_display: k.description for k in app.screen.query(FooterKey)}
            assert keys["p"] == "Resume"
            await pilot.press("p")
            await idle(pilot)
            assert rig.pool.phase is PoolPhase.RUNNING

    async def test_the_help_of_c_says_nothing_of_a_second_press_on_a_pool(self, rig: Rig) -> None:
        # A second c on a pool's job does nothing more; only a Celery task is
        # then terminated, and only a Celery dashboard's help says so.
        app = rig.app()
        async with running(app, rig) as pilot:
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            [cancel] = [line for line in app.screen._lines if line.key == "c"]
            assert cancel.does == "cancel the selected worker's job"

    async def test_read_only_mentions_no_refused_key_and_a_second_q_escalates(
        self, rig: Rig
    ) -> None:
        app = rig.app(read_only=True, grace=30.0)
        async with running(app, rig) as pilot:
            rig.submit(b"stubborn", "stuck")
            await frame(pilot)
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            keys = [line.key for line in app.screen._lines]
            assert keys == ["/", "f", "?", "q", "space", "l", "enter", "ctrl+c"]
            said = " ".join(line.does for line in app.screen._lines)
            for refused in ("resubmit", "resize", "add jobs", "pause", "shutdown (asks"):
                assert refused not in said, refused
            await pilot.press("escape")
            await pilot.press("q")
            await idle(pilot)
            assert rig.pool.phase is PoolPhase.DRAINING
            countdown = text_of(app.query_one(Countdown))
            assert "q: cancel now" in countdown
            assert "s:" not in countdown
            await pilot.press("q")
            await idle(pilot)
            assert rig.pool.phase is PoolPhase.CANCELLING
            assert "q: abandon now" in text_of(app.query_one(Countdown))
            await pilot.press("q")
            await idle(pilot)
            assert rig.pool.phase is PoolPhase.STOPPED
            assert rig.pool.stats().abandoned == 1
        assert app.return_value == 1

    @pytest.mark.parametrize("read_only", [False, True])
    async def test_ctrl_c_shuts_down_gracefully_then_escalates(
        self, rig: Rig, read_only: bool
    ) -> None:
        app = rig.app(read_only=read_only, grace=30.0)
        async with running(app, rig) as pilot:
            rig.submit(b"stubborn", "stuck")
            await frame(pilot)
            await pilot.press("ctrl+c")
            await idle(pilot)
            assert rig.pool.phase is PoolPhase.DRAINING
            assert app.return_value is None
            await pilot.press("ctrl+c")
            await idle(pilot)
            assert rig.pool.phase is PoolPhase.CANCELLING
            await pilot.press("ctrl+c")
            await idle(pilot)
            assert rig.pool.phase is PoolPhase.STOPPED
        assert app.return_value == 1

    async def test_q_then_enter_shuts_down_gracefully_and_quits(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            rig.submit(b"hold", "held")
            await frame(pilot)
            burst(app, "q", "enter")
            await idle(pilot)
            assert rig.pool.phase is PoolPhase.DRAINING
            assert not isinstance(app.screen, QuitScreen | ConfirmShutdownScreen)
            rig.handler.script.release()
            await idle(pilot)
            assert rig.pool.phase is PoolPhase.STOPPED
        assert app.return_value == 0

    async def test_s_leaves_the_stopped_screen_up_until_q(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            burst(app, "s", "enter")
            await idle(pilot)
            assert rig.pool.phase is PoolPhase.STOPPED
            assert app.return_value is None
            assert "press q to exit" in text_of(app.query_one(Countdown))
            await pilot.press("q")
        assert app.return_value == 0

    @pytest.mark.parametrize(
        ("keys", "check"),
        [
            (("r", "backspace", "6", "enter"), "workers"),
            (("r", "ctrl+u", "3", "enter"), "workers"),
            (("a", "backspace", "4", "enter"), "added"),
            (("s", "backspace", "7", "enter"), "grace"),
        ],
    )
    async def test_a_burst_of_keys_into_a_dialog_loses_none(
        self, rig: Rig, keys: tuple[str, ...], check: str
    ) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            rig.submit(b"hold", "held")
            await frame(pilot)
            burst(app, *keys)
            await idle(pilot)
            assert len(app.screen_stack) == 1, app.screen_stack
            typed = int(keys[2])
            if check == "workers":
                assert rig.pool.stats().target_workers == typed
            elif check == "added":
                assert rig.pool.stats().submitted == 1 + typed
            else:
                assert app.state.shutdown is not None
                assert app.state.shutdown.grace == typed

    async def test_a_key_typed_after_the_dialog_closes_goes_to_the_dashboard(
        self, rig: Rig
    ) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            rig.submit(b"hold", "held")
            await frame(pilot)
            burst(app, "r", "backspace", "6", "enter", "p")
            await idle(pilot)
            assert len(app.screen_stack) == 1, app.screen_stack
            assert rig.pool.stats().target_workers == 6
            assert rig.pool.phase is PoolPhase.PAUSED

    @pytest.mark.parametrize("opens", ["r", "a", "s"])
    async def test_escape_in_a_burst_closes_the_dialog_before_the_next_key(
        self, rig: Rig, opens: str
    ) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            await frame(pilot)
            burst(app, opens, "escape", "p")
            await idle(pilot)
            assert len(app.screen_stack) == 1, app.screen_stack
            assert rig.pool.phase is PoolPhase.PAUSED
            assert (rig.pool.stats().target_workers, rig.pool.stats().submitted) == (2, 0)

    @pytest.mark.parametrize("move_on", ["tab", "enter"])
    async def test_a_burst_across_the_fields_of_a_dialog_fills_each_in_turn(
        self, rig: Rig, move_on: str
    ) -> None:
        app = rig.app()
        asked: list[JobsToAdd | None] = []
        async with running(app, rig) as pilot:
            app.push_screen(AddJobsScreen(with_payload=True), asked.append)
            await idle(pilot)
            burst(app, "ctrl+u", "3", move_on, "o", "n", "e", "enter", "p")
            await idle(pilot)
            assert asked == [JobsToAdd(3, "one")]
            assert rig.pool.phase is PoolPhase.PAUSED  # the p after it: the dashboard's

    async def test_a_burst_into_the_filter_line_is_all_the_filters(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            rig.submit(b"ok", "upload-1")
            rig.submit(b"ok", "resize-2")
            await frame(pilot)
            # p, l and a are keys of the dashboard too: typed after /, they are text.
            burst(app, "slash", *"upload", "enter", "p")
            await idle(pilot)
            assert len(app.screen_stack) == 1, app.screen_stack
            assert log_rows(app) == ["upload-1"]
            assert isinstance(app.focused, JobLog)
            assert rig.pool.phase is PoolPhase.PAUSED  # the p after enter: the dashboard's
            burst(app, "slash", "escape", "p")
            await idle(pilot)
            assert log_rows(app) == ["upload-1", "resize-2"]
            assert rig.pool.phase is PoolPhase.RUNNING

    async def test_a_burst_after_l_moves_in_the_log(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            await add_ok_jobs(rig, pilot, 3)
            burst(app, "l", "home")
            await idle(pilot)
            log = app.query_one(JobLog)
            assert (app.focused, log.following, log.cursor_row) == (log, False, 0)

    async def test_a_burst_into_an_open_dialog_keeps_its_order(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            await pilot.press("r")
            assert isinstance(app.screen, ResizeScreen)
            burst(app, "backspace", "5", "enter")
            await idle(pilot)
            assert rig.pool.stats().target_workers == 5

    async def test_at_80x24_the_footer_has_q_and_help_and_the_log_keeps_rows(
        self, rig: Rig
    ) -> None:
        app = rig.app()
        async with app.run_test(size=(80, 24)) as pilot:
            try:
                await add_ok_jobs(rig, pilot, 10)
                rig.submit(b"hold", "held")
                await frame(pilot)
                assert {"q", "?"} <= set(shown_keys(app)), shown_keys(app)
                app.begin_shutdown()
                await idle(pilot)
                assert app.query_one(Countdown).has_class("-active")
                assert {"q", "?"} <= set(shown_keys(app)), shown_keys(app)
                log = app.query_one(JobLog)
                assert log.size.height - 1 >= 3, "three rows under the log's header"
            finally:
                await rig.finish()
                await settle()

    async def test_a_shutdown_supervision_begins_has_the_configured_grace_and_says_why(
        self, clock: ManualClock
    ) -> None:
        rig = Rig(clock, pool_options={"max_restarts": 0, "grace": 30.0})
        app = rig.app()
        async with running(app, rig) as pilot:
            rig.submit(b"hold", "long")
            rig.submit(b"crash", "boom")
            await idle(pilot)
            assert rig.pool.phase is PoolPhase.DRAINING
            banner = text_of(app.query_one(Countdown))
            assert "30.0s left" in banner
            assert "reason: worker w2 crashed 1 times within 5s (max_restarts=0)" in banner


class TestNumbersAddUp:
    async def test_one_word_for_each_outcome_everywhere(self, rig: Rig) -> None:
        rig.pool_options["job_timeout"] = 1.0
        app = rig.app()
        async with running(app, rig) as pilot:
            rig.submit(b"hold", "slow")
            await frame(pilot)
            await rig.clock.advance(1.0)
            await idle(pilot)
            (entry,) = [e for e in app.state.log if e.job_id == "slow"]
            assert entry.outcome is Outcome.TIMED_OUT
            assert entry.outcome.value == JobState.TIMED_OUT.value == "timed_out"
            assert "timed_out 1" in text_of(app.query_one(Summary))
            await pilot.press("f")
            table = app.screen.query_one("#letters", DataTable)
            assert str(table.get_row_at(0)[1]) == "timed_out"
        for outcome in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.CANCELLED, Outcome.ABANDONED):
            assert JobState(outcome.value).value == outcome.value

    async def test_a_worker_panel_counts_failed_attempts_under_that_name(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            rig.submit(b"flaky", "f1")  # fails once: one failed attempt, then a dead letter
            await frame(pilot)
            panels = " ".join(text_of(p) for p in app.query(WorkerPanel))
            assert "failed tries 1" in panels
            assert "failed 1" in text_of(app.query_one(Summary))

    def test_the_end_of_a_run_says_how_its_jobs_ended(self) -> None:
        state = DashboardState(total=200, succeeded=169, cancelled=31, stopped_at=10.0)
        progress = render_progress(state, 1.0).plain
        assert "169 succeeded, 31 cancelled" in progress
        assert "all ended" not in progress
        left = DashboardState(total=200, succeeded=150, stopped_at=10.0)
        assert "150 succeeded; 50 not run" in render_progress(left, 0.75).plain

    async def test_a_pool_that_finishes_by_itself_shows_its_totals(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            for i in range(3):
                rig.submit(b"ok", f"ok-{i}")
            rig.submit(b"fail", "bad")
            await frame(pilot)
            await rig.clock.advance(2.5)
            app.begin_shutdown()
            await idle(pilot)
            banner = text_of(app.query_one(Countdown))
            assert "STOPPED" in banner
            assert "after 2.5s: 3 succeeded, 1 failed (4 jobs)" in banner
            assert "shutdown took 0ms: no job was live then" in banner
            assert "0 finished" not in banner

    def test_the_eta_waits_for_jobs_still_running(self) -> None:
        state = DashboardState(total=10, succeeded=5, running=5, now=100.0)
        for i in range(5):
            state.run_times.add(0.2)  # the quick ones
            view = state.worker(f"w{i + 1}")
            view.job_id = f"long-{i}"
            view.job_started_at = 70.0  # running for 30 s already
        assert state.eta() is None, "they run past the typical time: nothing honest to say"
        text = render_progress(state, 0.5).plain
        assert "ETA - (5 running, longest 30.0s)" in text
        assert "1.1s" not in text

    def test_the_eta_counts_the_work_left_of_running_and_waiting_jobs(self) -> None:
        state = DashboardState(total=10, succeeded=2, running=2, queued=6, now=100.0)
        for _ in range(4):
            state.run_times.add(10.0)
        for i, started in enumerate((96.0, 98.0)):
            view = state.worker(f"w{i + 1}")
            view.job_id = f"j{i}"
            view.job_started_at = started
        # 6 waiting jobs of 10 s and 6 s + 8 s left of the running ones, on 2 workers.
        assert state.eta() == pytest.approx((6 * 10.0 + 6.0 + 8.0) / 2)

    async def test_jobs_per_second_counts_jobs_that_ran_not_a_cancelled_queue(
        self, rig: Rig
    ) -> None:
        rig.pool_options["queue_size"] = 500
        app = rig.app()
        async with running(app, rig) as pilot:
            await pilot.press("p")
            await idle(pilot)
            for i in range(300):
                rig.submit(b"ok", f"q{i}")
            await frame(pilot)
            app.begin_shutdown(grace=0.0, drain=False)
            await idle(pilot)
            await rig.clock.advance(1.0)
            await idle(pilot)
            assert app.state.cancelled == 300
            assert sum(app.state.sparkline()) == 0

    async def test_shell_jobs_show_their_command_everywhere(self, clock: ManualClock) -> None:
        pool = Pool(ShellCommands(), workers=1)
        app = WpoolApp(pool, animate=False)
        async with app.run_test(size=(120, 40)) as pilot:
            try:
                sub = pool.events()
                pool.submit_nowait(Job(id="1", payload=b"exit 3  # the failing one"))
                handle = pool.submit_nowait(Job(id="2", payload=b"sleep 30"))
                while handle.state is not JobState.RUNNING:
                    await sub.wait()
                    sub.drain()
                await frame(pilot)
                panels = " ".join(text_of(p) for p in app.query(WorkerPanel))
                assert "2 sleep 30" in panels
                log = app.query_one(JobLog)
                job_cell = log.row_text(0)[1]
                assert job_cell == "1 exit 3  # the failing one"
                await pilot.press("f")
                table = app.screen.query_one("#letters", DataTable)
                assert str(table.get_row_at(0)[0]) == "1 exit 3  # the failing one"
            finally:
                await pool.shutdown(grace=0.0, cancel_grace=0.5)
                await settle()


class TestQuietIdle:
    """Frames cost: a dashboard left open draws one only when something changed."""

    async def test_the_timer_draws_only_news_and_the_clocks_once_a_second(self, rig: Rig) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            await idle(pilot)
            start = app.frames
            for _ in range(10):
                app._tick()  # what the frame timer calls, 20 times a second
            assert app.frames == start, "nothing new, the clocks did not move"
            await rig.clock.advance(tui_app.IDLE_SECONDS)
            app._tick()
            app._tick()
            assert app.frames == start + 1, "the clocks, once"
            rig.submit(b"ok", "news")
            await settle()
            app._tick()
            assert app.frames == start + 2, "a job's events, at the next tick"
            assert log_rows(app)[-1] == "news"

    async def test_progress_alone_is_drawn_at_most_twice_a_second(self, rig: Rig) -> None:
        gate = asyncio.Event()
        contexts: list[JobContext] = []

        async def reporting(job: Job, ctx: JobContext) -> None:
            contexts.append(ctx)
            await gate.wait()

        pool = Pool(reporting, workers=1, clock=rig.clock)
        app = WpoolApp(pool, clock=rig.clock, animate=False)
        async with app.run_test(size=(120, 40)) as pilot:
            try:
                pool.submit_nowait(Job(id="slow"))
                await idle(pilot)
                (ctx,) = contexts
                start = app.frames
                for step in range(1, 5):
                    ctx.progress(step / 10)
                    app._tick()
                assert app.frames == start, "progress only: not before PROGRESS_SECONDS"
                await rig.clock.advance(tui_app.PROGRESS_SECONDS)
                ctx.progress(0.5)
                app._tick()
                assert app.frames == start + 1
                assert app.state.workers["w1"].progress == 0.5
            finally:
                gate.set()
                await pool.shutdown(grace=1.0)
                await settle()


NASTY = [
    "[/x]",
    "[bold red]not bold[/]",
    "\x1b[2J\x1b[31mred\x07",
    "a\u202eb\u2028c\x85d\x00e",
    "x" * 5000,
]
"""Text that would act as markup, move the terminal, or overflow, if shown as it is."""

NASTY_IDS = ["markup-close", "markup-style", "escapes", "controls", "long"]


class TestTextIsShownAsText:
    @pytest.mark.parametrize("nasty", NASTY, ids=NASTY_IDS)
    async def test_ids_and_errors_everywhere(self, rig: Rig, nasty: str) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            rig.submit(b"fail", nasty)  # its error quotes the id too
            rig.submit(b"hold", nasty + "-held")
            await idle(pilot)
            panels = " ".join(text_of(p) for p in app.query(WorkerPanel))
            assert plain(nasty, limit=200)[:20] in panels, "the id as it is, controls made visible"
            assert "\x1b" not in panels
            await pilot.press("l", "up", "enter")
            await idle(pilot)
            assert isinstance(app.screen, JobDetailScreen)
            body = text_of(app.screen.query_one("VerticalScroll > Static", Static))
            assert "\x1b" not in body
            assert "\x07" not in body
            await pilot.press("escape", "f")
            await idle(pilot)
            assert isinstance(app.screen, DeadLettersScreen)
            await pilot.press("enter")
            await idle(pilot)
            assert isinstance(app.screen, JobDetailScreen)
            await pilot.press("escape", "escape")
            await idle(pilot)
            assert len(app.screen_stack) == 1
            assert rig.pool.phase is PoolPhase.RUNNING

    @pytest.mark.parametrize("nasty", NASTY[:4], ids=NASTY_IDS[:4])
    async def test_what_is_typed_into_a_dialog_or_the_filter(self, rig: Rig, nasty: str) -> None:
        app = rig.app()
        async with running(app, rig) as pilot:
            rig.submit(b"ok", "a-1")
            await frame(pilot)
            await pilot.press("r", "ctrl+u")
            app.screen.query_one("#number", Input).value = nasty
            await pilot.press("enter")
            await idle(pilot)
            assert isinstance(app.screen, ResizeScreen)
            error = str(app.screen.query_one("#error", Label).content)
            assert error.startswith("enter a whole number from 0 to 1024, not ")
            assert "\x1b" not in error
            await pilot.press("escape", "slash")
            app.query_one("#log-filter", Input).value = nasty
            await idle(pilot)
            assert "\x1b" not in log_title(app)
            assert rig.pool.phase is PoolPhase.RUNNING

    @pytest.mark.parametrize("nasty", NASTY, ids=NASTY_IDS)
    async def test_a_shutdown_reason(self, nasty: str) -> None:
        state = DashboardState()
        state.apply(
            ev.ShutdownStarted(seq=1, at=1.0, grace=1.0, cancel_grace=1.0, drain=True, reason=nasty)
        )
        text = render_countdown(state, "").plain
        assert "\x1b" not in text
        assert "\x07" not in text
        assert len(text) < 600
