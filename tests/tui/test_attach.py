"""``wpool-tui attach`` and ``ls`` against a real service (``examples/service.py``) in a
child process, over its real control socket.

The service's events come in their own time, so each step waits on what the
dashboard shows (with a guard against hangs), never on a timer.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

import pool.job
from pool import PoolPhase, events
from tests.services import GUARD, Service
from tui.app import WpoolApp, create_app
from tui.screens.dialogs import AddJobsScreen
from tui.screens.jobs import DeadLettersScreen, JobDetailScreen
from tui.sources.attached import AttachedSource, Endpoint
from tui.sources.base import SourceError
from tui.widgets.banner import Banner
from tui.widgets.countdown import Countdown
from tui.widgets.joblog import JobLog
from tui.widgets.workers import WorkerGrid

SIZE = (120, 40)


@asynccontextmanager
async def dashboard(source: AttachedSource) -> AsyncIterator[Pilot[int]]:
    """The dashboard attached through ``source``; detached at the end."""
    app = create_app(source, animate=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            yield pilot
    finally:
        await source.close()


async def until(pilot: Pilot[int], what: Callable[[], object], why: str) -> None:
    """Wait until ``what()`` is true of the dashboard (its frames folded in first)."""
    app = pilot.app
    assert isinstance(app, WpoolApp)
    try:
        async with asyncio.timeout(GUARD):
            while True:
                app.refresh_now()
                if what():
                    return
                await pilot.pause(0.02)
    except TimeoutError:
        raise AssertionError(
            f"never saw: {why} (phase {app.state.phase.value}, screen {app.screen!r})"
        ) from None


def state(pilot: Pilot[int]) -> WpoolApp:
    app = pilot.app
    assert isinstance(app, WpoolApp)
    return app


async def add_jobs(pilot: Pilot[int], count: int, payload: str) -> None:
    """The add dialog, typed as a person would: the count, tab, the payload, enter."""
    await pilot.press("a")
    await until(pilot, lambda: isinstance(pilot.app.screen, AddJobsScreen), "the add dialog")
    await pilot.press("ctrl+u", *str(count), "tab", *payload, "enter")
    await until(pilot, lambda: len(pilot.app.screen_stack) == 1, "the add dialog closed")


async def test_the_dashboard_shows_the_service_and_resizes_pauses_adds_and_resubmits(
    tmp_path: Path, services: list[Service]
) -> None:
    service = await Service.start(tmp_path / "svc.sock", "--workers", "2", "--word-time", "0.01")
    services.append(service)
    source = AttachedSource(Endpoint(path=service.socket))
    await source.start()
    async with dashboard(source) as pilot:
        app = state(pilot)
        assert app.sub_title == f"svc · pid {service.process.pid} on {socket.gethostname()}"
        await until(pilot, lambda: len(app.state.workers) == 2, "two workers")

        await pilot.press("plus")
        await until(pilot, lambda: len(app.state.workers) == 3, "a third worker")
        await pilot.press("p")
        await until(pilot, lambda: app.state.phase is PoolPhase.PAUSED, "paused")
        await pilot.press("p")
        await until(pilot, lambda: app.state.phase is PoolPhase.RUNNING, "running again")

        await add_jobs(pilot, 2, "hi yo")
        await until(pilot, lambda: app.state.succeeded == 2, "two jobs succeeded")
        await add_jobs(pilot, 1, "fail")
        await until(pilot, lambda: app.state.failed == 1, "the failure")

        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, DeadLettersScreen), "failed jobs")
        await until(pilot, lambda: app.screen.query_one(DataTable).row_count == 1, "its row")
        await pilot.press("r")  # run it again: it fails again, as its payload says
        await until(pilot, lambda: app.state.failed == 2, "the resubmitted job failed again")
    assert service.process.returncode is None  # detached: the service goes on


async def test_jobs_added_from_the_dashboard_are_named_by_the_service(
    tmp_path: Path, services: list[Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool.job, "_ids", itertools.count(1))  # a new dashboard process
    service = await Service.start(tmp_path / "svc.sock", "--word-time", "0")
    services.append(service)
    assert len(await service.send_jobs("a", "b", "c")) == 6  # job-1 to job-3, ended
    source = AttachedSource(Endpoint(path=service.socket))
    await source.start()
    feed = source.events(maxsize=10_000)
    async with dashboard(source) as pilot:
        app = state(pilot)
        await add_jobs(pilot, 3, "x")
        await until(pilot, lambda: app.state.succeeded == 6, "the jobs added")
    added = [e.job_id for e in feed.drain() if isinstance(e, events.JobSubmitted)]
    assert added == ["job-4", "job-5", "job-6"]


@asynccontextmanager
async def running_a_long_job(
    tmp_path: Path, services: list[Service]
) -> AsyncIterator[tuple[Service, WpoolApp, Pilot[int]]]:
    """A one-worker service attached, its worker on a job of fifteen seconds."""
    service = await Service.start(tmp_path / "svc.sock", "--workers", "1", "--word-time", "5")
    services.append(service)
    source = AttachedSource(Endpoint(path=service.socket))
    await source.start()
    async with dashboard(source) as pilot:
        app = state(pilot)
        await add_jobs(pilot, 1, "a b c")
        await until(pilot, lambda: app.state.workers["w1"].job_id is not None, "the job running")
        yield service, app, pilot


async def test_a_running_job_is_cancelled_from_its_detail(
    tmp_path: Path, services: list[Service]
) -> None:
    async with running_a_long_job(tmp_path, services) as (_, app, pilot):
        grid = app.query_one(WorkerGrid)
        grid.focus()
        grid.selected = "w1"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobDetailScreen), "the job's detail")
        await pilot.press("c")
        await until(pilot, lambda: app.state.cancelled == 1, "the job cancelled")


async def test_s_shuts_the_service_pool_down_with_its_countdown_and_s_again_skips_ahead(
    tmp_path: Path, services: list[Service]
) -> None:
    async with running_a_long_job(tmp_path, services) as (service, app, pilot):
        await pilot.press("s")
        await pilot.press("enter")  # the dialog's defaults: a graceful shutdown
        await until(pilot, lambda: app.state.phase is PoolPhase.DRAINING, "the countdown")
        countdown = app.query_one(Countdown)
        assert countdown.has_class("-active")
        text = str(countdown.content)
        assert "draining" in text
        assert "s: cancel now" in text
        assert "q:" not in text  # q detaches: it has no part in the service's shutdown
        await pilot.press("s")  # the next phase: cancel what runs
        await until(pilot, lambda: app.state.phase is PoolPhase.STOPPED, "stopped")
        assert app.state.cancelled == 1
    status, out = await service.wait()
    assert (status, out) == (
        0,
        "shutting down...\nstopped: 0 finished, 1 cancelled, 0 not started, 0 abandoned\n",
    )


async def test_q_detaches_and_the_service_goes_on(tmp_path: Path, services: list[Service]) -> None:
    service = await Service.start(tmp_path / "svc.sock", "--feed", "20", "--word-time", "0.01")
    services.append(service)
    source = AttachedSource(Endpoint(path=service.socket))
    await source.start()
    app = create_app(source, animate=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.succeeded > 0, "the service's jobs")
        # q is offered as what it does here: detach, never quit (the pool is not ours).
        assert (app.check_action("quit_app", ()), app.check_action("detach", ())) == (False, True)
        await pilot.press("q")
        await until(pilot, lambda: app.return_code is not None, "the app exited")
    await source.close()
    assert app.return_code == 0
    again = AttachedSource(Endpoint(path=service.socket), read_only=True)
    await again.start()  # the service still serves
    assert again.snapshot().phase is PoolPhase.RUNNING
    await again.close()


async def test_when_the_service_dies_its_last_state_stays_and_a_new_one_is_resynced(
    tmp_path: Path, services: list[Service]
) -> None:
    path = tmp_path / "svc.sock"
    first = await Service.start(path, "--workers", "2")
    services.append(first)
    source = AttachedSource(Endpoint(path=path), backoff=(0.05,))
    await source.start()
    async with dashboard(source) as pilot:
        app = state(pilot)
        banner = app.query_one(Banner)
        await until(pilot, lambda: len(app.state.workers) == 2, "two workers")
        assert not banner.has_class("-active")
        await first.send_jobs("hello")
        await until(pilot, lambda: len(app.state.log) == 1, "the job's row")
        first.process.kill()
        await until(pilot, lambda: "reconnecting (tried" in source.status, "a failed retry")
        assert source.status.startswith("disconnected: the service went away; reconnecting")
        assert banner.has_class("-active")
        assert "disconnected: the service went away" in str(banner.content)
        assert len(app.state.workers) == 2  # the last state stays on screen
        # Out of reach, no control is offered (q still detaches).
        assert [app.check_action(a, ()) for a in ("grow", "pause", "shutdown", "detach")] == [
            False,
            False,
            False,
            True,
        ]
        assert app.sub_title.startswith(f"svc · pid {first.process.pid} ")

        second = await Service.start(path, "--workers", "3")
        services.append(second)
        await until(pilot, lambda: len(app.state.workers) == 3, "the new service's workers")
        await until(pilot, lambda: not banner.has_class("-active"), "the banner gone")
        assert source.status == ""
        # Another pool: the dashboard starts afresh from its snapshot.
        assert (len(app.state.log), app.query_one(JobLog).row_count) == (0, 0)
        assert app.sub_title.startswith(f"svc · pid {second.process.pid} ")
        assert app.check_action("grow", ()) is True
        await pilot.press("plus")  # and it is driven again
        await until(pilot, lambda: len(app.state.workers) == 4, "a fourth worker")


async def test_a_service_that_stopped_then_came_back_is_shown_running_afresh(
    tmp_path: Path, services: list[Service]
) -> None:
    path = tmp_path / "svc.sock"
    first = await Service.start(path)
    services.append(first)
    source = AttachedSource(Endpoint(path=path), backoff=(0.05,))
    await source.start()
    async with dashboard(source) as pilot:
        app = state(pilot)
        first.process.send_signal(signal.SIGTERM)
        await until(pilot, lambda: app.state.phase is PoolPhase.STOPPED, "the pool stopped")
        await until(pilot, lambda: app.query_one(Countdown).has_class("-active"), "its summary")
        await first.wait()
        await until(pilot, lambda: "the service ended, its pool stopped" in source.status, "why")
        second = await Service.start(path)
        services.append(second)
        await until(pilot, lambda: app.state.phase is PoolPhase.RUNNING, "the new pool")
        assert app.state.shutdown is None
        app.refresh_now()
        assert not app.query_one(Countdown).has_class("-active")
        assert app.check_action("shutdown", ()) is True


async def test_read_only_is_refused_control_by_the_service_itself(
    tmp_path: Path, services: list[Service]
) -> None:
    service = await Service.start(tmp_path / "svc.sock")
    services.append(service)
    source = AttachedSource(Endpoint(path=service.socket), read_only=True)
    await source.start()
    try:
        assert source.controls == frozenset()
        for control in (source.resize(5), source.pause(), source.add_jobs(1, "x")):
            with pytest.raises(SourceError, match="read"):
                await control
        assert len(source.snapshot().workers) == 4
    finally:
        await source.close()


async def wpool_tui(*args: str, runtime_dir: Path) -> str:
    """Run the ``wpool-tui`` command with ``XDG_RUNTIME_DIR`` set; what it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tui",
        *args,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)},
    )
    async with asyncio.timeout(GUARD):
        out, _ = await process.communicate()
    assert process.returncode == 0
    return out.decode()


async def test_ls_lists_the_live_pools_and_a_dead_socket_as_such_removing_nothing(
    tmp_path: Path, services: list[Service]
) -> None:
    folder = tmp_path / "wpool"
    assert (
        await wpool_tui("ls", runtime_dir=tmp_path)
        == f"no pool is served here (looked in {folder})\n"
    )
    service = await Service.start(folder / "alpha.sock", "--name", "alpha", "--workers", "3")
    services.append(service)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(folder / "dead.sock"))  # bound, never listened on: what a crash leaves
    dead.close()

    lines = (await wpool_tui("ls", runtime_dir=tmp_path)).splitlines()
    assert lines[0].split() == ["NAME", "PID", "PHASE", "WORKERS", "QUEUE", "UPTIME", "SOCKET"]
    alpha = lines[1].split()
    assert alpha[:5] == ["alpha", str(service.process.pid), "running", "0/3", "0/100"]
    assert alpha[-1] == str(folder / "alpha.sock")
    assert lines[2].startswith("dead ")
    assert "no service answers" in lines[2]
    assert (folder / "dead.sock").exists()  # not ours to clean up
