"""The dashboard in known states, for snapshot tests and the README's screenshots.

Each scenario builds the real app on a real pool whose handlers are held
by asyncio events, on a frozen ManualClock, with a fixed theme and no
animation, and drives it to one state before the picture is taken.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from textual.pilot import Pilot

from pool import Handler, Job, ManualClock, Pool, RetryPolicy
from pool import events as ev
from pool.commands import ShellCommands
from pool.control import ControlServer
from tests.snapshots.scene import Scene
from tui.app import WpoolApp, create_app
from tui.sources.attached import AttachedSource, Endpoint, attached_title
from tui.sources.recording import Recorder, Recording, ReplaySource

START = 1000.0


@dataclass
class Stage:
    """What a scenario's steps drive: the app, its pool, the clock and the handler."""

    app: WpoolApp
    pool: Pool
    clock: ManualClock
    scene: Scene

    def submit(self, job_id: str, payload: str, **meta: str) -> None:
        self.pool.submit_nowait(Job(id=job_id, payload=payload.encode(), meta=meta))

    async def settle(self, turns: int = 30) -> None:
        """Let every ready callback run and draw a frame; no time passes."""
        for _ in range(turns):
            await asyncio.sleep(0)
        self.app.refresh_now()

    async def advance(self, seconds: float) -> None:
        await self.clock.advance(seconds)
        await self.settle()

    async def release(self) -> None:
        self.scene.release()
        await self.settle()


Steps = Callable[[Stage], Awaitable[None]]


@dataclass
class Scenario:
    """An app and how to bring it to the state to be pictured."""

    app: WpoolApp
    run_before: Callable[[Pilot[int]], Awaitable[None]]
    press: tuple[str, ...]
    size: tuple[int, int]


def build(
    steps: Steps,
    *,
    workers: int = 4,
    press: tuple[str, ...] = (),
    size: tuple[int, int] = (120, 36),
    read_only: bool = False,
    retry: RetryPolicy | None = None,
    handler: Handler | None = None,
    total_jobs: int | None = None,
) -> Scenario:
    """A scenario: a fresh pool, clock and app, and the ``steps`` that set it up.

    ``handler`` replaces the scene's (shell commands); ``total_jobs`` makes
    it a batch of known size.
    """
    scene = Scene()
    clock = ManualClock(START)
    pool = Pool(
        scene.handler if handler is None else handler,
        workers=workers,
        queue_size=20,
        max_workers=16,
        cancel_grace=2.0,
        restart_backoff=1.0,
        retry=retry,
        clock=clock,
        name="snap",
    )
    ids = itertools.count(1)

    def make_job() -> Job:
        return Job(id=f"added-{next(ids):03d}", payload=b"hold")

    app = create_app(
        pool,
        clock=clock,
        theme="textual-dark",
        read_only=read_only,
        make_job=make_job,
        grace=10.0,
        animate=False,
        total_jobs=total_jobs,
    )
    stage = Stage(app, pool, clock, scene)

    async def run_before(pilot: Pilot[int]) -> None:
        await pilot.pause()
        await steps(stage)
        await stage.settle()
        await pilot.pause()

    return Scenario(app=app, run_before=run_before, press=press, size=size)


async def history(stage: Stage) -> None:
    """A few finished jobs, so that the log and the figures have something in them."""
    stage.submit("warmup-1", "hold")
    stage.submit("warmup-2", "fail:64")
    stage.submit("warmup-3", "hold")
    await stage.settle()
    await stage.advance(0.4)
    await stage.release()
    await stage.advance(0.8)


async def busy(stage: Stage) -> None:
    """Four workers mid-job with progress bars, and a queue."""
    await history(stage)
    notes = ["resizing", "thumbnail", "encoding", "uploading"]
    for i, fraction in enumerate([0.25, 0.5, 0.75, 0.9]):
        stage.submit(f"image-{i + 1:03d}", f"progress:{fraction}", note=notes[i])
        await stage.advance(0.7)
    for i in range(5):
        stage.submit(f"queued-{i + 1:03d}", "hold")
    await stage.advance(1.5)


async def crashed(stage: Stage) -> None:
    """A worker crashed under its job and waits out its backoff."""
    await history(stage)
    for i, fraction in enumerate([0.3, 0.6, 0.8]):
        stage.submit(f"image-{i + 1:03d}", f"progress:{fraction}", note="resizing")
        await stage.advance(0.5)
    stage.submit("video-007", "crash")
    await stage.advance(0.3)


async def shrinking(stage: Stage) -> None:
    """The pool is shrinking: busy workers retire after their job."""
    await busy(stage)
    await stage.pool.resize(2)
    await stage.advance(0.5)


async def draining(stage: Stage) -> None:
    """Mid-shutdown: the countdown of the drain."""
    await busy(stage)
    stage.app.begin_shutdown(grace=10.0, drain=True)
    await stage.settle()
    for _ in range(35):
        await stage.clock.advance(0.1)
    await stage.settle()


async def forcing(stage: Stage) -> None:
    """A job ignored its cancellation and was abandoned: the forcing phase."""
    await history(stage)
    stage.submit("legacy-042", "stubborn")
    stage.submit("image-100", "progress:0.6", note="resizing")
    await stage.advance(1.0)
    stage.app.begin_shutdown(grace=1.0, drain=False)
    await stage.settle()
    await stage.advance(1.0)  # grace over: cancelling; image-100 stops, legacy-042 does not
    await stage.advance(2.0)  # cancel grace over: forcing, then stopped


async def cancelling(stage: Stage) -> None:
    """The grace ran out: running jobs were cancelled and one ignores it (it will be abandoned)."""
    await history(stage)
    stage.submit("legacy-042", "stubborn")
    stage.submit("image-100", "progress:0.6", note="resizing")
    stage.submit("image-101", "hold")
    await stage.advance(1.0)
    stage.app.begin_shutdown(grace=1.0, drain=True)
    await stage.settle()
    for _ in range(15):
        await stage.clock.advance(0.1)
    await stage.settle()


async def stopped(stage: Stage) -> None:
    """The pool has stopped: the summary of the report."""
    await busy(stage)
    stage.app.begin_shutdown(grace=2.0, drain=False)
    await stage.settle()
    await stage.advance(1.0)
    await stage.release()
    await stage.advance(0.1)


async def failed_jobs(stage: Stage) -> None:
    """Failed jobs kept as dead letters."""
    await history(stage)
    for i, byte in enumerate([128, 4096, 77]):
        stage.submit(f"scan-{i + 1:03d}", f"fail:{byte}")
    await stage.advance(0.5)


async def batch(stage: Stage) -> None:
    """A batch of 40 jobs a third of the way through: progress and an ETA."""
    for second in range(6):
        for n in range(2):
            stage.submit(f"row-{second * 2 + n + 1:03d}", "fail:9" if second == 3 and n else "hold")
        await stage.advance(0.5)
        await stage.release()
        await stage.advance(0.5)
    for i, fraction in enumerate([0.2, 0.7, 0.4]):
        stage.submit(f"row-{13 + i:03d}", f"progress:{fraction}", note="importing")
    await stage.advance(0.4)


async def command_failed(stage: Stage) -> None:
    """A shell command failed: its exit code and the tail of its output are kept."""
    script = 'for i in $(seq 1 30); do echo "compiling module $i"; done; '
    script += "echo 'error: undefined symbol: render_frame' >&2; exit 2"
    # Real processes: each is waited for on its handle, not the clock, and
    # one after the other, so that the log's order is always the same.
    await (await stage.pool.submit(Job(id="build-8", payload=b"echo ok")))
    failed = await stage.pool.submit(Job(id="build-7", payload=script.encode()))
    await asyncio.gather(failed, return_exceptions=True)
    await stage.advance(0.5)


async def idle(stage: Stage) -> None:
    await stage.advance(2.0)


async def long_run(stage: Stage) -> None:
    """A minute of work: far more outcomes than the log shows at once."""
    for n in range(60):
        stage.submit(f"row-{n + 1:03d}", "fail:7" if n % 9 == 4 else "hold")
        stage.submit(f"row-{n + 61:03d}", "hold")
        await stage.advance(0.5)
        await stage.release()
        await stage.advance(0.5)
    stage.submit("row-121", "progress:0.4", note="importing")
    await stage.advance(0.3)


async def long_run_filtered(stage: Stage) -> None:
    """The long run, with the log filtered down to its failures."""
    await long_run(stage)
    stage.app.action_filter()
    await stage.settle()


async def markup_job(stage: Stage) -> None:
    """Jobs whose ids and errors look like markup and terminal controls: shown as text."""
    await history(stage)
    stage.submit("[/x] [bold]not bold[/]", "fail:13")
    stage.submit("\x1b[2J\x1b[31mred\x07", "progress:0.5", note="[red]note[/red]")
    await stage.advance(0.5)


async def read_only_stopping(stage: Stage) -> None:
    """Read-only, and q pressed: the shutdown runs, and only q acts on it."""
    await busy(stage)
    stage.app.action_quit_app()
    await stage.settle()
    for _ in range(20):
        await stage.clock.advance(0.1)
    await stage.settle()


async def finished_batch(stage: Stage) -> None:
    """A batch that ended by itself: its totals, not an empty shutdown report."""
    for n in range(12):
        stage.submit(f"row-{n + 1:03d}", "fail:3" if n in (4, 9) else "hold")
    await stage.advance(0.5)
    await stage.release()
    await stage.advance(0.5)
    await stage.release()
    await stage.advance(0.5)
    await stage.release()
    await stage.advance(0.5)
    stage.app.begin_shutdown()
    await stage.settle()


def recorded_shutdown(path: Path) -> None:
    """Record a pool's life through a graceful shutdown into ``path``, on a manual clock."""

    async def run() -> None:
        scene = Scene()
        clock = ManualClock(START)
        pool = Pool(scene.handler, workers=3, clock=clock, cancel_grace=2.0, name="recorded")
        sub = pool.events(maxsize=100_000)
        recorder = Recorder(path)
        recorder.begin(
            title="recorded", snapshot=pool.snapshot(), take_snapshot=pool.snapshot, wall_offset=0.0
        )
        await pool.start()
        for n in range(6):
            pool.submit_nowait(Job(id=f"row-{n + 1:03d}", payload=b"fail:5" if n == 2 else b"hold"))
        for _ in range(5):
            await asyncio.sleep(0)
        await clock.advance(1.0)
        scene.release()
        for _ in range(5):
            await asyncio.sleep(0)
        pool.submit_nowait(Job(id="long-1", payload=b"progress:0.4"))
        pool.submit_nowait(Job(id="long-2", payload=b"stubborn"))
        await clock.advance(0.5)
        stopping = asyncio.ensure_future(pool.shutdown(grace=5.0, cancel_grace=2.0))
        for _ in range(30):
            await clock.advance(0.1)
            recorder.record(sub.drain())
        scene.release()
        for _ in range(60):
            await clock.advance(0.1)
        await stopping
        recorder.record(sub.drain())
        recorder.close()

    asyncio.run(run())


def replay(steps: Callable[[ReplaySource], None]) -> Scenario:
    """A recorded shutdown in the dashboard, paused where ``steps`` put it."""
    folder = Path(tempfile.mkdtemp(prefix="wpool-snapshot-"))
    path = folder / "recorded.jsonl"
    recorded_shutdown(path)
    source = ReplaySource(Recording.read(path), wall=lambda: 0.0)
    source.paused = True
    steps(source)
    shutil.rmtree(folder)
    app = create_app(source, theme="textual-dark", read_only=True, animate=False)

    async def run_before(pilot: Pilot[int]) -> None:
        await pilot.pause()
        app.refresh_now()
        await pilot.pause()

    return Scenario(app=app, run_before=run_before, press=(), size=(120, 36))


def _into_the_countdown(source: ReplaySource) -> None:
    started = next(e for e in source.recording.events if isinstance(e, ev.ShutdownStarted))
    source.seek(started.at + 2.0)


class ServedHere(AttachedSource):
    """Attached, over a real socket, to a pool served in this process.

    The pool runs on the scenario's manual clock, read through the socket as
    a service's would be; the header names a fixed process and host, so that
    the picture is the same on every machine.
    """

    def __init__(self, pool: Pool, clock: ManualClock) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="wpool-snapshot-"))
        # A retry in an hour: the banner of a lost service holds still for the picture.
        super().__init__(
            Endpoint(path=self.folder / "svc.sock"), backoff=(3600.0,), clock=clock.now
        )
        self.pool = pool
        self.server: ControlServer | None = None

    @property
    def title(self) -> str:
        return attached_title({**self.info, "pid": 4242, "host": "build-7"}, self.endpoint)

    async def start(self) -> None:
        await self.pool.start()
        self.server = await self.pool.serve(self.endpoint.path)
        await super().start()

    async def caught_up(self, app: WpoolApp) -> None:
        """Wait until the dashboard has every event the pool has sent."""
        async with asyncio.timeout(10):
            while app.state.seq < self.pool.snapshot().seq:
                await asyncio.sleep(0.001)
                app.refresh_now()

    async def close(self) -> None:
        await super().close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        shutil.rmtree(self.folder, ignore_errors=True)


def attached(steps: Steps, *, lost: bool = False) -> Scenario:
    """``steps`` on a served pool, seen by an attached dashboard; ``lost``: the
    service then goes away, and the dashboard keeps its last state."""
    scene = Scene()
    clock = ManualClock(START)
    pool = Pool(scene.handler, workers=4, queue_size=20, clock=clock, name="svc")
    source = ServedHere(pool, clock)
    app = create_app(source, theme="textual-dark", animate=False)
    stage = Stage(app, pool, clock, scene)

    async def run_before(pilot: Pilot[int]) -> None:
        await pilot.pause()
        await steps(stage)
        await source.caught_up(app)
        if lost:
            assert source.server is not None
            source.server.close()
            await source.server.wait_closed()
            async with asyncio.timeout(10):
                while not source.status:
                    await asyncio.sleep(0.001)
                    app.refresh_now()
        app.refresh_now()
        await pilot.pause()

    return Scenario(app=app, run_before=run_before, press=(), size=(120, 36))


# Imported here, not at the top: the tracebacks pictured above quote this file's
# line numbers, which lines added before them would move.
from tests.celery.script import Script, ScriptedControl  # noqa: E402
from tui.sources.celery import CelerySource  # noqa: E402

CelerySteps = Callable[[Script, CelerySource], Awaitable[None]]


def celery(steps: CelerySteps, *, press: tuple[str, ...] = ()) -> Scenario:
    """A Celery cluster's dashboard, fed Celery events made by hand on a frozen clock
    (a live cluster is never the same twice); its controls answer ``ok``."""
    script = Script(START)
    control = ScriptedControl()
    control.depths = {"celery": 7}
    source = script.source(control=control)
    app = create_app(source, theme="textual-dark", animate=False)

    async def run_before(pilot: Pilot[int]) -> None:
        await pilot.pause()
        await steps(script, source)
        # The source reads the broker every few seconds of its clock, in a
        # thread: whether a reading had come by now was a race. Read it here.
        await source.read_broker()
        app.refresh_now()
        await pilot.pause()

    return Scenario(app=app, run_before=run_before, press=press, size=(120, 36))


ALPHA = "alpha@demo"
BETA = "beta@demo"


async def celery_cluster(script: Script, source: CelerySource) -> None:
    """Two nodes at work: tasks that ended every way, two running, one waiting."""
    for node in (ALPHA, BETA):
        source.feed(script.online(node))
        source.describe_node(node, pool="prefork", size=2, registered=["demo.work", "demo.slow"])
    work = "demo.work"
    feed = source.feed_all
    feed([script.received(1, ALPHA, work, "(1.5,)"), script.started(1, ALPHA)])
    feed([script.received(2, BETA, "demo.fail"), script.started(2, BETA)])
    script.advance(0.4)
    feed([script.failed(2, BETA, "ValueError('the demo fails this one')")])
    feed([script.received(3, BETA, "demo.flaky"), script.started(3, BETA)])
    script.advance(0.3)
    feed([script.retried(3, BETA, "RuntimeError('flaky: try again')")])
    script.advance(1.0)
    feed([script.succeeded(1, ALPHA, 1.4)])
    feed([script.received(3, ALPHA, "demo.flaky", retries=1), script.started(3, ALPHA)])
    script.advance(0.3)
    feed([script.succeeded(3, ALPHA, 0.3)])
    feed([script.received(4, BETA, "demo.limited", "(5.0,)"), script.started(4, BETA)])
    script.advance(2.0)
    feed([script.failed(4, BETA, "TimeLimitExceeded(2)")])
    feed([script.received(5, ALPHA, work, "(3.0,)"), script.started(5, ALPHA)])
    feed([script.received(6, BETA, "demo.slow", "(20.0,)"), script.started(6, BETA)])
    script.advance(1.8)
    feed([script.progress(5, ALPHA, 0.6, "step 3/5"), script.progress(6, BETA, 0.1, "slow")])
    feed([script.sent(7, work, "(1.5,)"), script.received(7, ALPHA, work, "(1.5,)")])
    script.advance(0.5)
    feed([script.heartbeat(ALPHA, active=1), script.heartbeat(BETA, active=1)])


async def celery_node_lost(script: Script, source: CelerySource) -> None:
    """beta's heartbeat stops (killed): its running task is lost, its panels crashed."""
    await celery_cluster(script, source)
    script.advance(4.5)
    source.feed(script.heartbeat(ALPHA, active=1))
    source.check()


async def celery_countdown(script: Script, source: CelerySource) -> None:
    """The cluster's warm shutdown: alpha said offline and finishes its task, beta is up."""
    await celery_cluster(script, source)
    await source.shutdown(30.0, True, 5.0)
    script.advance(1.0)
    source.feed(script.offline(ALPHA))
    source.feed(script.heartbeat(BETA, active=1))
    script.advance(11.0)
    source.feed(script.heartbeat(BETA, active=1))
    source.check()


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "startup": lambda: build(idle),
    "busy": lambda: build(busy),
    "crashed": lambda: build(crashed),
    "shrinking": lambda: build(shrinking),
    "add_dialog_error": lambda: build(busy, press=("a", "backspace", "backspace", "x", "enter")),
    "resize_dialog_error": lambda: build(busy, press=("r", "backspace", "9", "9", "enter")),
    "shutdown_dialog": lambda: build(busy, press=("s",)),
    "quit_dialog": lambda: build(busy, press=("q",)),
    "countdown": lambda: build(draining),
    "cancelling": lambda: build(cancelling),
    "shutdown_dialog_error": lambda: build(
        busy, press=("s", "backspace", "backspace", "x", "enter")
    ),
    "forcing": lambda: build(forcing),
    "stopped": lambda: build(stopped),
    "failed_jobs": lambda: build(failed_jobs, press=("f",)),
    "job_detail_traceback": lambda: build(failed_jobs, press=("f", "enter")),
    "help": lambda: build(busy, press=("question_mark",)),
    "small_terminal": lambda: build(busy, size=(80, 24)),
    "read_only": lambda: build(busy, read_only=True),
    "batch_progress": lambda: build(batch, total_jobs=40),
    "command_detail": lambda: build(
        command_failed, handler=ShellCommands(tail_lines=8), press=("f", "enter")
    ),
    "log_following": lambda: build(long_run, total_jobs=200),
    "log_held": lambda: build(long_run, total_jobs=200, press=("l", "pageup", "up", "up")),
    "log_filter": lambda: build(long_run_filtered, total_jobs=200, press=tuple("outcome:failed")),
    "markup_job": lambda: build(markup_job),
    "markup_job_failed_list": lambda: build(markup_job, press=("f",)),
    "read_only_stopping": lambda: build(read_only_stopping, read_only=True),
    "finished_batch": lambda: build(finished_batch, total_jobs=12),
    "small_terminal_stopping": lambda: build(draining, size=(80, 24)),
    "replay_countdown": lambda: replay(_into_the_countdown),
    "attached": lambda: attached(busy),
    "attached_lost": lambda: attached(busy, lost=True),
    "celery_cluster": lambda: celery(celery_cluster),
    "celery_node_lost": lambda: celery(celery_node_lost),
    "celery_countdown": lambda: celery(celery_countdown),
}
"""Every pictured state, by name."""
