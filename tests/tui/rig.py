"""The dashboard's test rig: a pool on a manual clock, the app over it, and frames on demand."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Label, Static

from pool import Job, JobContext, ManualClock, Pool, PoolPhase
from tests.helpers import Script, settle
from tui.app import WpoolApp, create_app

SIZE = (120, 40)

CONTROL_ACTIONS = ("add_jobs", "grow", "shrink", "resize", "pause", "shutdown")
"""The app's actions that change the pool."""


class Handler:
    """:class:`Script`'s payloads, plus ``flaky``: fails the first attempt of each job id."""

    def __init__(self) -> None:
        self.script = Script()
        self.failed_once: set[str] = set()

    @property
    def started(self) -> list[str]:
        return self.script.started

    async def __call__(self, job: Job, ctx: JobContext) -> bytes:
        if job.payload == b"flaky" and job.id not in self.failed_once:
            self.failed_once.add(job.id)
            self.script.started.append(job.id)
            raise ValueError(f"job {job.id} is flaky")
        return await self.script(job, ctx)


@dataclass
class Rig:
    """A pool on a manual clock, and what the app's ``a`` key submits to it."""

    clock: ManualClock
    handler: Handler = field(default_factory=Handler)
    pool_options: dict[str, Any] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _pool: Pool | None = None

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            options = {"workers": 2, **self.pool_options}
            self._pool = Pool(self.handler, clock=self.clock, **options)
        return self._pool

    def make_job(self) -> Job:
        """A job the add dialog submits: one that succeeds at once."""
        return Job(id=f"job-{next(self._ids)}", payload=b"ok")

    def app(self, **options: Any) -> WpoolApp:
        options.setdefault("animate", False)  # no cursor blink: nothing changes on its own
        return create_app(self.pool, clock=self.clock, make_job=self.make_job, **options)

    def submit(self, payload: bytes, job_id: str | None = None) -> str:
        job = Job(payload=payload) if job_id is None else Job(id=job_id, payload=payload)
        self.pool.submit_nowait(job)
        return job.id

    async def finish(self) -> None:
        """Stop the pool for good, whatever its jobs do (a test's last step)."""
        self.handler.script.release()
        if self.pool.phase is PoolPhase.CREATED or self.pool.phase.is_final:
            return
        task = asyncio.ensure_future(self.pool.shutdown(grace=1.0, cancel_grace=1.0))
        await self.clock.advance(3.0)
        await task


@asynccontextmanager
async def running(app: WpoolApp, rig: Rig) -> AsyncIterator[Pilot[int]]:
    """Run ``app`` headless; stop its pool before the app goes, so no task is left."""
    async with app.run_test(size=SIZE) as pilot:
        try:
            yield pilot
        finally:
            await rig.finish()
            await settle()


async def frame(pilot: Pilot[int]) -> None:
    """Let the pool's and the app's ready work run (no time passes), then draw one frame."""
    await settle()
    app = pilot.app
    assert isinstance(app, WpoolApp)
    app.refresh_now()


def text_of(widget: Static) -> str:
    return str(widget.content)


def dialog_error(app: WpoolApp) -> str:
    return text_of(app.screen.query_one("#error", Label))
