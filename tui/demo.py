"""The built-in demo workload: seeded, so that two runs with one seed look alike.

Jobs arrive at a steady rate and take a spread of durations, reporting
progress as they go. Some fail, a few run past their deadline, and a rare
one hangs in its thread and ignores cancellation, so that retries,
timeouts and abandonment can all be seen on the dashboard.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from dataclasses import dataclass

from pool import Job, JobContext, Pool, PoolClosed, QueueFull

__all__ = ("DemoSettings", "DemoWorkload")


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSettings:
    """What the demo generates.

    Attributes:
        rate: Jobs submitted per second (0 for none after the initial batch).
        jobs: Jobs submitted at once when the demo starts.
        fail_rate: Fraction of jobs whose handler raises.
        hang_rate: Fraction of jobs that hang and ignore cancellation.
        slow_rate: Fraction of jobs that take longer than the pool's deadline.
        mean_duration: Typical seconds a job takes.
        seed: Seed for every random choice.
    """

    rate: float = 2.0
    jobs: int = 0
    fail_rate: float = 0.1
    hang_rate: float = 0.01
    slow_rate: float = 0.03
    mean_duration: float = 1.5
    seed: int = 1


_KINDS = ("resize", "thumbnail", "transcode", "index", "upload", "checksum")


class DemoWorkload:
    """Makes demo jobs, runs them (as a plain ``def``, in the pool's threads) and feeds them in."""

    def __init__(self, settings: DemoSettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._count = 0
        self._stop = threading.Event()

    def make_job(self) -> Job:
        """The next demo job: its payload says how it will behave."""
        s = self.settings
        rng = self._rng
        self._count += 1
        roll = rng.random()
        if roll < s.hang_rate:
            behaviour = "hang"
        elif roll < s.hang_rate + s.fail_rate:
            behaviour = "fail"
        elif roll < s.hang_rate + s.fail_rate + s.slow_rate:
            behaviour = "slow"
        else:
            behaviour = "ok"
        duration = min(rng.lognormvariate(0.0, 0.6) * s.mean_duration, 6 * s.mean_duration)
        kind = rng.choice(_KINDS)
        payload = json.dumps({"kind": kind, "behaviour": behaviour, "seconds": round(duration, 2)})
        return Job(id=f"{kind}-{self._count:04d}", payload=payload.encode(), meta={"kind": kind})

    def handler(self, job: Job, ctx: JobContext) -> str:
        """Run a demo job in a pool thread: wait in steps, reporting progress."""
        spec = json.loads(job.payload)
        behaviour = spec["behaviour"]
        seconds = float(spec["seconds"])
        if behaviour == "slow":
            # Runs until its deadline cancels it, and then stops: a timeout.
            while not self._stop.wait(0.05):
                if ctx.cancelled:
                    raise RuntimeError("stopped: cancelled")
            return "released"
        if behaviour == "hang":
            # Ignores ctx.cancelled on purpose: the pool has to abandon it.
            self._stop.wait()
            return "released"
        steps = 20
        for step in range(steps):
            if self._stop.wait(seconds / steps) or ctx.cancelled:
                raise RuntimeError("stopped: cancelled")
            ctx.progress((step + 1) / steps, spec["kind"])
            if behaviour == "fail" and step == steps // 2:
                raise ValueError(f"{spec['kind']} failed: input {job.id} is corrupt")
        return f"{spec['kind']} done in {seconds:.2f}s"

    def release(self) -> None:
        """Let hung demo jobs return (at exit, so that their threads end)."""
        self._stop.set()

    async def feed(self, pool: Pool) -> None:
        """Submit the initial batch, then jobs at the set rate until the pool closes."""
        s = self.settings
        try:
            for _ in range(s.jobs):
                await pool.submit(self.make_job())
            if s.rate <= 0:
                return
            while True:
                await asyncio.sleep(self._rng.expovariate(s.rate))
                try:
                    pool.submit_nowait(self.make_job())
                except QueueFull:
                    continue  # counted as rejected by the pool and shown; the demo goes on
        except PoolClosed:
            return  # the shutdown began: the feed ends with it
