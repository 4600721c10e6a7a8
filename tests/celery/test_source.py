"""The Celery source's fold of Celery's events, fed by hand on a frozen clock.

What a real cluster sends is checked live in test_live.py; here each
mapping, each odd order and each lost node is checked exactly, fast.
"""

from __future__ import annotations

import asyncio

import pytest

from pool import PoolPhase, WorkerState
from pool import events as ev
from tests.celery.script import Script, ScriptedControl, uuid
from tui.app import create_app
from tui.screens.dialogs import HelpScreen
from tui.sources import SourceError
from tui.sources.celery import HEARTBEAT_WINDOW, OFFLINE_PATIENCE, CelerySource, parse_task
from tui.state import DashboardState, Outcome

A = "alpha@host"
B = "beta@host"


def two_nodes(script: Script, source: CelerySource) -> None:
    for node in (A, B):
        source.feed(script.online(node))
        source.describe_node(node, pool="prefork", size=2, registered=["demo.work"])


def dashboard_of(source: CelerySource) -> DashboardState:
    """The state a dashboard folds from the source's feed, resyncing where told."""
    state = DashboardState.from_snapshot(source.snapshot())
    return state


def fold(state: DashboardState, source: CelerySource, feed: object) -> None:
    assert hasattr(feed, "drain")
    if state.apply_all(feed.drain()):
        state.resync(source.snapshot())


def balanced(state: DashboardState) -> bool:
    return state.submitted == state.rejected + state.queued + state.running + state.finished


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def source(script: Script) -> CelerySource:
    source = script.source()
    two_nodes(script, source)
    return source


class TestMapping:
    def test_each_task_event_is_said_in_the_pools_words(
        self, script: Script, source: CelerySource
    ) -> None:
        state = dashboard_of(source)
        feed = source.events(1000)
        source.feed_all(
            [
                script.sent(1, "demo.work", "(1.0,)"),
                script.received(1, A, "demo.work", "(1.0,)"),
                script.started(1, A),
                script.progress(1, A, 0.5, "half"),
            ]
        )
        fold(state, source, feed)
        slot = source.nodes[A].slots[0]
        view = state.workers[slot]
        assert (view.job_id, view.label, view.progress) == ("task0001", "demo.work(1.0)", 0.5)
        assert (state.queued, state.running) == (0, 1)
        script.advance(1.0)
        source.feed_all(
            [
                script.succeeded(1, A, 1.0),
                script.received(2, B, "demo.fail"),
                script.started(2, B),
                script.failed(2, B, "ValueError('no')", "Traceback...\nValueError: no"),
                script.received(3, B, "demo.limited"),
                script.started(3, B),
                script.failed(3, B, "TimeLimitExceeded(2)"),
                script.received(4, A, "demo.flaky"),
                script.started(4, A),
                script.retried(4, A, "RuntimeError('again')"),
                script.received(4, B, "demo.flaky", retries=1),
                script.started(4, B),
                script.succeeded(4, B, 0.3),
                script.received(5, A, "demo.work"),
                script.revoked(5, A),
                script.received(6, A, "demo.slow"),
                script.started(6, A),
                script.revoked(6, A, terminated=True),
                script.received(7, B, "demo.work"),
                script.started(7, B),
                script.rejected(7, B),
            ]
        )
        fold(state, source, feed)
        outcomes = {(e.job_id, e.outcome) for e in state.log}
        assert outcomes == {
            ("task0001", Outcome.SUCCEEDED),
            ("task0002", Outcome.FAILED),
            ("task0003", Outcome.TIMED_OUT),
            ("task0004", Outcome.RETRYING),
            ("task0004", Outcome.SUCCEEDED),
            ("task0005", Outcome.CANCELLED),
            ("task0006", Outcome.CANCELLED),
            ("task0007", Outcome.REJECTED),
        }
        counts = (state.succeeded, state.failed, state.timed_out, state.cancelled, state.rejected)
        assert counts == (2, 1, 1, 2, 1)
        assert (state.retried, state.queued, state.running) == (1, 0, 0)
        assert balanced(state)
        failed = next(e for e in state.log if e.outcome is Outcome.FAILED)
        assert failed.error == "ValueError: no"
        assert all(v.state is WorkerState.IDLE and v.job_id is None for v in state.workers.values())
        # The dashboard's fold and the source's own picture agree.
        snap = source.snapshot().stats
        assert (snap.succeeded, snap.failed, snap.cancelled, snap.rejected) == (2, 1, 2, 1)

    def test_a_node_is_a_group_of_panels_and_its_size_the_target(
        self, source: CelerySource
    ) -> None:
        state = dashboard_of(source)
        assert sorted(state.workers) == [
            "alpha_host-1",
            "alpha_host-2",
            "beta_host-1",
            "beta_host-2",
        ]
        assert state.target_workers == 4
        assert source.part_of("beta_host-2") == B
        assert source.part_of("nobody") is None

    def test_the_note_tells_each_nodes_pool_and_heartbeat_age(
        self, script: Script, source: CelerySource
    ) -> None:
        script.advance(3.0)
        source.feed(script.heartbeat(B))
        note = source.note
        assert "alpha@host prefork 2 ♥3s" in note
        assert "beta@host prefork 2 ♥0s" in note


class TestOrder:
    def test_a_monitor_that_starts_mid_run_counts_what_it_sees_end(
        self, script: Script, source: CelerySource
    ) -> None:
        state = dashboard_of(source)
        feed = source.events(100)
        source.feed(script.succeeded(9, A, 2.0))  # never saw it sent, received or started
        fold(state, source, feed)
        assert (state.submitted, state.succeeded) == (1, 1)
        assert balanced(state)

    def test_late_and_repeated_events_of_an_ended_task_are_ignored(
        self, script: Script, source: CelerySource
    ) -> None:
        state = dashboard_of(source)
        feed = source.events(100)
        source.feed_all(
            [
                script.received(1, A, "demo.work"),
                script.started(1, A),
                script.succeeded(1, A, 1.0),
                script.succeeded(1, A, 1.0),
                script.started(1, A),
                script.progress(1, A, 0.9),
            ]
        )
        fold(state, source, feed)
        assert (state.submitted, state.succeeded, state.running) == (1, 1, 0)
        assert balanced(state)

    def test_a_dashboard_that_falls_behind_resyncs_to_the_same_account(
        self, script: Script, source: CelerySource
    ) -> None:
        state = dashboard_of(source)
        feed = source.events(5)
        for number in range(1, 20):
            source.feed_all(
                [
                    script.received(number, A, "demo.work"),
                    script.started(number, A),
                    script.succeeded(number, A, 0.1),
                ]
            )
        fold(state, source, feed)
        assert state.missed > 0
        assert (state.submitted, state.succeeded) == (19, 19)


class TestNodesThatGo:
    def test_a_node_whose_heartbeat_stops_loses_its_tasks(
        self, script: Script, source: CelerySource
    ) -> None:
        state = dashboard_of(source)
        feed = source.events(100)
        source.feed_all(
            [
                script.received(1, A, "demo.slow"),
                script.started(1, A),
                script.received(2, A, "demo.work"),  # reserved, not started
            ]
        )
        source.feed(script.heartbeat(B))
        script.advance(2.0 * HEARTBEAT_WINDOW + 0.1)
        source.feed(script.heartbeat(B))
        source.check()
        fold(state, source, feed)
        assert source.nodes[A].lost
        assert (state.failed, state.running, state.queued) == (2, 0, 0)
        assert balanced(state)
        errors = {e.job_id: e.error for e in state.log}
        assert errors["task0001"].startswith("TaskLost: lost: alpha@host its heartbeat stopped")
        assert errors["task0002"].startswith("TaskLost: lost:")
        assert {state.workers[s].state for s in source.nodes[A].slots} == {WorkerState.CRASHED}
        assert "alpha@host LOST (no heartbeat)" in source.note
        assert state.target_workers == 2

    def test_a_warm_shutdown_says_offline_first_and_its_task_ends_after(
        self, script: Script, source: CelerySource
    ) -> None:
        state = dashboard_of(source)
        feed = source.events(100)
        source.feed_all(
            [
                script.received(1, A, "demo.work"),
                script.started(1, A),
                script.received(2, A, "demo.work"),
                script.offline(A),
            ]
        )
        fold(state, source, feed)
        slot = source.nodes[A].slots[0]
        assert state.workers[slot].state is WorkerState.RETIRING
        assert len([w for w in state.workers if w.startswith("alpha")]) == 1
        assert (state.running, state.queued) == (1, 1)  # task 2 went back to the broker
        assert "alpha@host offline, finishing 1 running" in source.note
        script.advance(1.0)
        source.feed(script.succeeded(1, A, 1.5))
        source.feed_all([script.received(2, B, "demo.work"), script.started(2, B)])
        fold(state, source, feed)
        assert state.succeeded == 1
        assert not [w for w in state.workers if w.startswith("alpha")]
        assert state.workers[source.nodes[B].slots[0]].job_id == "task0002"
        assert balanced(state)

    def test_an_offline_nodes_task_that_never_ends_is_lost_after_the_patience(
        self, script: Script, source: CelerySource
    ) -> None:
        state = dashboard_of(source)
        feed = source.events(100)
        source.feed_all(
            [script.received(1, A, "demo.slow"), script.started(1, A), script.offline(A)]
        )
        script.advance(OFFLINE_PATIENCE + 1)
        source.feed(script.heartbeat(B))
        source.check()
        fold(state, source, feed)
        assert state.failed == 1
        assert "went offline and the task never ended" in state.log[-1].error

    def test_a_node_that_comes_back_gets_its_panels_again(
        self, script: Script, source: CelerySource
    ) -> None:
        state = dashboard_of(source)
        feed = source.events(100)
        script.advance(10.0)
        source.feed(script.heartbeat(B))
        source.check()
        source.feed(script.online(A))
        fold(state, source, feed)
        assert not source.nodes[A].lost
        slots = [w for w in state.workers.values() if w.id.startswith("alpha")]
        assert {w.state for w in slots} == {WorkerState.IDLE}


class TestControls:
    async def test_a_control_nobody_answers_is_unanswered_not_done(self, script: Script) -> None:
        control = ScriptedControl()
        control.answers["pool_grow"] = None
        source = script.source(control=control)
        two_nodes(script, source)
        source.aim("beta_host-1")
        with pytest.raises(
            SourceError, match=r"^beta@host: no answer within 2s \(unanswered, not done\)$"
        ):
            await source.resize(5)
        assert source.snapshot().stats.target_workers == 4

    async def test_a_refusal_is_told_with_celerys_words(self, script: Script) -> None:
        control = ScriptedControl()
        control.answers["pool_grow"] = {"error": "NotImplementedError('grow')"}
        source = script.source(control=control)
        two_nodes(script, source)
        source.aim("alpha_host-1")
        with pytest.raises(
            SourceError, match=r"^alpha@host refused pool_grow: NotImplementedError\('grow'\)$"
        ):
            await source.resize(5)

    async def test_resize_grows_the_aimed_node_and_pause_asks_every_node(
        self, script: Script
    ) -> None:
        control = ScriptedControl()
        source = script.source(control=control)
        two_nodes(script, source)
        await source.start()
        source.aim("beta_host-2")
        await source.resize(6)
        await source.pause()
        await source.resume()
        sent = [
            (c, a, d)
            for c, a, d in control.sent
            if c
            not in ("stats", "active", "reserved", "registered", "active_queues", "enable_events")
        ]
        assert sent == [
            ("pool_grow", {"n": 2}, [B]),
            ("cancel_consumer", {"queue": "celery"}, [A, B]),
            ("add_consumer", {"queue": "celery"}, [A, B]),
        ]
        assert len(source.nodes[B].slots) == 4
        assert source.snapshot().phase is PoolPhase.RUNNING
        await source.close()

    async def test_cancel_revokes_then_terminates(self, script: Script) -> None:
        control = ScriptedControl()
        source = script.source(control=control)
        two_nodes(script, source)
        source.feed_all([script.received(1, A, "demo.slow"), script.started(1, A)])
        assert await source.cancel("task0001")
        assert any(
            w.job_id == "task0001" and w.state.value == "busy" for w in source.snapshot().workers
        )
        assert await source.cancel("task0001")
        revokes = [a for c, a, _ in control.sent if c == "revoke"]
        assert [r["terminate"] for r in revokes] == [False, True]
        assert revokes[0]["task_id"] == uuid(1)

    async def test_read_only_sends_nothing(self, script: Script) -> None:
        control = ScriptedControl()
        source = script.source(control=control, read_only=True)
        two_nodes(script, source)
        assert source.controls == frozenset()
        for call in (
            source.resize(3),
            source.pause(),
            source.add_jobs(1, "demo.work"),
            source.shutdown(1.0, True, 1.0),
            source.cancel("x"),
        ):
            with pytest.raises(SourceError):
                await call
        assert control.sent == []

    async def test_the_clusters_shutdown_counts_down_and_stops_with_the_last_node(
        self, script: Script
    ) -> None:
        control = ScriptedControl()
        source = script.source(control=control)
        two_nodes(script, source)
        await source.start()
        state = dashboard_of(source)
        feed = source.events(1000)
        source.feed_all([script.received(1, A, "demo.work"), script.started(1, A)])
        await source.shutdown(10.0, True, 2.0)
        assert ("shutdown", {}, [A, B]) in control.sent
        script.advance(4.0)
        source.check()
        fold(state, source, feed)
        assert state.phase is PoolPhase.DRAINING
        assert state.shutdown is not None
        assert state.shutdown.remaining == pytest.approx(6.0)
        assert "nodes still up: alpha@host, beta@host" in source.note
        source.feed_all([script.offline(A), script.offline(B)])
        assert "nodes still up: alpha@host" in source.note
        source.feed(script.succeeded(1, A, 4.0))
        fold(state, source, feed)
        assert state.phase is PoolPhase.STOPPED
        assert state.shutdown.stopped is not None
        assert state.shutdown.stopped.finished == 1
        await asyncio.wait_for(source.wait_stopped(), 1.0)
        await source.close()


class TestTheDashboard:
    async def test_its_help_says_a_second_cancel_terminates_the_task(self, script: Script) -> None:
        app = create_app(script.source(control=ScriptedControl()), animate=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            [cancel] = [line for line in app.screen._lines if line.key == "c"]
            assert cancel.does == (
                "cancel the selected worker's job; again: terminate it (SIGTERM to its process)"
            )


class TestParseTask:
    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            ("demo.work", ("demo.work", [], {})),
            ("demo.work [1, 2]", ("demo.work", [1, 2], {})),
            ('demo.work {"seconds": 2}', ("demo.work", [], {"seconds": 2})),
            ("demo.work 3", ("demo.work", [3], {})),
        ],
    )
    def test_a_name_and_json(self, payload: str, expected: object) -> None:
        assert parse_task(payload, ["demo.work"]) == expected

    def test_only_registered_names(self) -> None:
        with pytest.raises(
            SourceError, match=r"^no node registered a task named 'x' \(registered: a, b\)$"
        ):
            parse_task("x", ["b", "a"])

    def test_bad_json(self) -> None:
        with pytest.raises(SourceError, match=r"^the arguments are not JSON: "):
            parse_task("a [1,", ["a"])


def test_events_carry_the_pools_types(script: Script, source: CelerySource) -> None:
    feed = source.events(10)
    source.feed_all([script.received(1, A, "demo.work"), script.started(1, A)])
    kinds = [type(e) for e in feed.drain()]
    assert kinds == [ev.JobSubmitted, ev.JobStarted]
