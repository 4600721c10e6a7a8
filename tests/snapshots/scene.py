"""The handler of the pictured pools, in a module of its own: a job's traceback in a
picture names its lines, which edits elsewhere must not move."""

from __future__ import annotations

import asyncio

from pool import Job, JobContext

__all__ = ("Crash", "Scene")


class Crash(BaseException):
    """Kills the worker that runs it (not an Exception: not a job error)."""


class Scene:
    """A pool handler whose jobs do what their payload says, held by an event.

    ``progress:F`` reports F and waits; ``hold`` waits; ``stubborn`` ignores
    its first cancellation; ``fail`` raises; ``crash`` kills its worker.
    """

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    def release(self) -> None:
        """Let every job waiting now return (later ones wait again)."""
        self.gate.set()
        self.gate = asyncio.Event()

    async def handler(self, job: Job, ctx: JobContext) -> str:
        kind, _, arg = job.payload.decode().partition(":")
        gate = self.gate
        if kind == "progress":
            ctx.progress(float(arg), job.meta.get("note", "working"))
            await gate.wait()
        elif kind == "hold":
            await gate.wait()
        elif kind == "stubborn":
            try:
                await gate.wait()
            except asyncio.CancelledError:
                # Ignores the shutdown's cancellation; a second one (the
                # loop's teardown) ends it.
                await gate.wait()
        elif kind == "fail":
            raise ValueError(f"cannot decode {job.id}: truncated input at byte {arg or 512}")
        elif kind == "crash":
            raise Crash("segmentation fault in native decoder")
        return "ok"
