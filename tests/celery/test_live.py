"""The dashboard on a real Celery cluster: a real Redis broker, real worker processes.

Two nodes (alpha, beta) are shared by the module; the tests that stop or
kill a node start one of their own (gamma, delta) with a queue of its own,
so that what they do touches no other test. Nothing waits on a timer: each
step waits for a condition of the dashboard's state, with a deadline.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from pool import PoolPhase, WorkerState
from tui.app import WpoolApp, create_app
from tui.sources.celery import CelerySource
from tui.widgets.banner import Banner
from tui.widgets.joblog import JobLog
from tui.widgets.summary import Summary
from tui.widgets.workers import WorkerGrid, WorkerPanel

pytestmark = pytest.mark.timeout(60)

Dashboard = tuple[CelerySource, WpoolApp, Pilot[int]]


@asynccontextmanager
async def dashboard(broker: str, *, read_only: bool = False) -> AsyncIterator[Dashboard]:
    # The nodes are on this machine: they answer inspect within milliseconds.
    source = CelerySource.connect(broker, read_only=read_only, inspect_timeout=0.5)
    source.control_timeout = 2.0
    # Connected and resynced before the dashboard mounts, as the command does.
    await source.start()
    app = create_app(source, animate=False, read_only=read_only)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        yield source, app, pilot


async def until(
    pilot: Pilot[int], condition: Callable[[], bool], what: str, within: float = 20.0
) -> None:
    """Let the app run until ``condition`` holds; fail with ``what`` past ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await pilot.pause(0.05)
    app = pilot.app
    assert isinstance(app, WpoolApp)
    app.refresh_now()


def text(widget: Static) -> str:
    return str(widget.content)


def log_text(app: WpoolApp) -> str:
    log = app.query_one(JobLog)
    return "\n".join(" ".join(log.row_text(row)) for row in range(log.row_count))


def panel_of(app: WpoolApp, worker_id: str) -> str:
    panel = app.query_one(f"#worker-{worker_id}", WorkerPanel)
    return f"{panel.border_title}\n{text(panel)}"


def toasts(app: WpoolApp) -> str:
    """The notifications on screen."""
    return "\n".join(str(toast.render()) for toast in app.screen.query("Toast"))


def slots_of(source: CelerySource, node: str) -> list[str]:
    return list(source.nodes[node].slots)


def running_on(app: WpoolApp, job_id: str) -> str | None:
    for view in app.state.workers.values():
        if view.job_id == job_id:
            return view.id
    return None


async def select(pilot: Pilot[int], worker_id: str) -> None:
    """Select a worker's panel, as a click on it does (the grid takes the focus)."""
    grid = pilot.app.query_one(WorkerGrid)
    grid.focus()
    grid.selected = worker_id
    await pilot.pause()


def processes(client: Any, node: str) -> int:
    """How many pool processes ``node`` says it has (inspect stats)."""
    stats = client.control.inspect(destination=[node], timeout=1, limit=1).stats() or {}
    return len(stats.get(node, {}).get("pool", {}).get("processes", []))


def job_of(uuid: str) -> str:
    return uuid[:8]


async def test_tasks_are_counted_by_how_they_ended(broker: str, client: Any, cluster: Any) -> None:
    async with dashboard(broker) as (source, app, pilot):
        await until(pilot, lambda: len(source.nodes) >= 2, "both nodes seen")
        for _ in range(2):
            client.send_task("demo.work", args=[0.2, 2])
        client.send_task("demo.fail", args=["on purpose"])
        client.send_task("demo.limited", args=[5.0])
        client.send_task("demo.flaky", args=[1.0])  # fails, is retried twice, then fails
        state = app.state
        await until(pilot, lambda: state.finished >= 5, "five tasks ended")
        assert (state.succeeded, state.failed, state.timed_out) == (2, 2, 1), log_text(app)
        assert state.retried == 2
        assert state.submitted == state.queued + state.running + state.finished
        summary = text(app.query_one(Summary))
        assert "succeeded 2" in summary
        assert "failed 2" in summary
        assert "timed_out 1" in summary
        assert "retried 2" in summary
        log = log_text(app)
        assert "ValueError: on purpose" in log
        assert "timed_out" in log
        assert "retrying" in log
        banner = text(app.query_one(Banner))
        assert "alpha@" in banner
        assert "prefork 2" in banner
        assert "broker: celery 0," in banner


async def test_a_node_is_resized_with_plus_and_minus(
    broker: str, client: Any, cluster: Any
) -> None:
    alpha = cluster.node_name("alpha")
    async with dashboard(broker) as (source, app, pilot):
        await until(pilot, lambda: source.nodes[alpha].pool == "prefork", "alpha's stats")
        before = app.state.target_workers
        await select(pilot, slots_of(source, alpha)[0])
        await pilot.press("plus")
        await until(pilot, lambda: app.state.target_workers == before + 1, "one more slot")
        assert len(slots_of(source, alpha)) == 3
        await until(pilot, lambda: processes(client, alpha) == 3, "alpha has three processes")
        await pilot.press("minus")
        await until(pilot, lambda: app.state.target_workers == before, "back to the size it had")
        assert len(slots_of(source, alpha)) == 2


async def test_intake_is_paused_and_resumed_on_every_node(
    broker: str, client: Any, cluster: Any
) -> None:
    async with dashboard(broker) as (source, app, pilot):
        await until(pilot, lambda: len(source.nodes) >= 2, "both nodes seen")
        await pilot.press("p")
        await until(pilot, lambda: app.state.phase is PoolPhase.PAUSED, "paused")
        result = client.send_task("demo.work", args=[0.1, 1])
        # No node takes it: it waits on the broker, as the banner says.
        await until(pilot, lambda: source.broker_depth.get("celery") == 1, "one task waiting")
        assert "broker: celery 1," in text(app.query_one(Banner))
        assert job_of(result.id) not in {v.job_id for v in app.state.workers.values()}
        await pilot.press("p")
        await until(pilot, lambda: app.state.phase is PoolPhase.RUNNING, "running again")
        await until(
            pilot,
            lambda: any(e.job_id == job_of(result.id) for e in app.state.log),
            "the waiting task ran",
        )
        assert app.state.succeeded == 1


async def test_a_task_is_revoked_then_terminated(broker: str, client: Any, cluster: Any) -> None:
    async with dashboard(broker) as (source, app, pilot):
        await until(pilot, lambda: len(source.nodes) >= 2, "both nodes seen")
        job = job_of(client.send_task("demo.slow", args=[30.0]).id)
        await until(pilot, lambda: running_on(app, job) is not None, "the slow task runs")
        slot = running_on(app, job)
        assert slot is not None
        await select(pilot, slot)
        await pilot.press("c")
        await until(pilot, lambda: app.state.workers[slot].cancelling, "asked to stop")
        assert "cancelling" in panel_of(app, slot)
        await pilot.press("c")  # a second press terminates it
        await until(pilot, lambda: app.state.cancelled == 1, "cancelled")
        assert running_on(app, job) is None
        assert "cancelled" in log_text(app)


async def test_a_node_shuts_down_gracefully_while_its_task_finishes(
    broker: str, client: Any, cluster: Any, tmp_path: Path
) -> None:
    gamma = cluster.node_name("gamma")
    async with dashboard(broker) as (source, app, pilot):
        await until(pilot, lambda: source.nodes.get(gamma) is not None, "gamma seen")
        # It runs until the test hands it the file: the shutdown is sure to find it running.
        done = tmp_path / "done"
        job = job_of(client.send_task("demo.hold", args=[str(done)], queue="gamma").id)
        await until(pilot, lambda: running_on(app, job) is not None, "its task runs")
        slot = running_on(app, job)
        assert slot is not None
        await select(pilot, slot)
        await pilot.press("s")
        await until(pilot, lambda: app.screen.query("#grace").first() is not None, "the dialog")
        await pilot.press("enter")
        await until(pilot, lambda: "SHUTTING DOWN" in text(app.query_one(Banner)), "countdown")
        banner = text(app.query_one(Banner))
        assert "s left, 1 running" in banner
        assert "nodes still up:" in banner
        assert gamma in banner.split("nodes still up:")[1]
        assert app.state.workers[slot].state is WorkerState.RETIRING
        done.touch()
        # Celery says offline as its warm shutdown begins; the task runs on to its end.
        await until(
            pilot,
            lambda: any(e.job_id == job and e.outcome.value == "succeeded" for e in app.state.log),
            "its task succeeded",
            30,
        )
        assert not source.nodes[gamma].online
        assert not [w for w in app.state.workers if w.startswith("gamma")]
        assert app.state.phase is PoolPhase.RUNNING  # the rest of the cluster goes on
        banner = text(app.query_one(Banner))
        assert f"{gamma} offline" in banner
        assert "nodes still up" not in banner  # the countdown is over
    cluster.workers["gamma"].wait(10)


async def test_a_threads_node_refuses_to_resize_then_killed_shows_its_task_lost(
    broker: str, client: Any, cluster: Any
) -> None:
    delta = cluster.node_name("delta")
    async with dashboard(broker) as (source, app, pilot):
        await until(pilot, lambda: source.nodes.get(delta) is not None, "delta seen")
        await until(pilot, lambda: source.nodes[delta].pool == "thread", "delta's stats")
        before = app.state.target_workers
        await select(pilot, slots_of(source, delta)[0])
        await pilot.press("plus")
        await until(pilot, lambda: "refused pool_grow" in toasts(app), "the refusal shown")
        assert "a thread pool cannot be resized" in toasts(app)
        assert app.state.target_workers == before
        job = job_of(client.send_task("demo.slow", args=[30.0], queue="delta").id)
        await until(pilot, lambda: running_on(app, job) is not None, "its task runs")
        slot = running_on(app, job)
        assert slot is not None
        cluster.kill_node("delta")
        await until(pilot, lambda: source.nodes[delta].lost, "delta lost (no heartbeat)")
        assert running_on(app, job) is None
        assert app.state.workers[slot].state is WorkerState.CRASHED
        assert "crashed" in panel_of(app, slot)
        assert f"{delta} LOST" in text(app.query_one(Banner))
        assert "TaskLost: lost:" in log_text(app)
        assert app.state.failed == 1


async def test_read_only_sends_no_control(broker: str, client: Any, cluster: Any) -> None:
    async with dashboard(broker, read_only=True) as (source, app, pilot):
        await until(pilot, lambda: len(source.nodes) >= 2, "both nodes seen")
        assert source.controls == frozenset()
        for key in ("p", "plus", "s", "c", "a"):
            await pilot.press(key)
        await pilot.pause()
        assert app.state.phase is PoolPhase.RUNNING
        assert len(app.screen_stack) == 1
