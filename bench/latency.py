"""Latency-bound jobs: many short sleeps on many workers, against the ideal rate.

``n`` jobs each sleep ``sleep`` seconds on ``workers`` workers: ideally they
take ``n * sleep / workers`` seconds. Efficiency is that ideal over the time
taken from the first submit until every job has finished and the workers are
stopped. The bare queue-and-workers pattern runs the same jobs in the same
rounds, for context: what the event loop itself allows here.
"""

from __future__ import annotations

import asyncio
import time

from pool import Job, JobContext, Pool

from .dispatch import make_jobs, timed_pool
from .measure import Line, Sizes, alternate, median

__all__ = ("run",)


async def _pool(jobs: list[Job], workers: int, sleep: float) -> float:
    async def nap(job: Job, ctx: JobContext) -> None:
        await asyncio.sleep(sleep)

    pool = Pool(nap, workers=workers, queue_size=100)
    await pool.start()
    return await timed_pool(pool, jobs)


async def _bare(jobs: list[Job], workers: int, sleep: float) -> float:
    queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=100)

    async def worker() -> None:
        while True:
            await queue.get()
            try:
                await asyncio.sleep(sleep)
            finally:
                queue.task_done()

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    await asyncio.sleep(0)
    start = time.perf_counter()
    for job in jobs:
        await queue.put(job)
    await queue.join()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return time.perf_counter() - start


async def run(sizes: Sizes) -> list[Line]:
    """Efficiency of the pool (events off) and of the bare pattern, medians over the rounds."""
    jobs = make_jobs(sizes.latency_jobs)
    w, s = sizes.latency_workers, sizes.latency_sleep
    ideal = len(jobs) * s / w
    times = await alternate(
        {"pool": lambda: _pool(jobs, w, s), "bare": lambda: _bare(jobs, w, s)}, sizes.rounds
    )
    pool = ideal / median(times["pool"])
    bare = ideal / median(times["bare"])
    rate = len(jobs) / median(times["pool"])
    label = f"{len(jobs):,} jobs of {s * 1000:g} ms on {w:,} workers"
    return [
        Line(
            section="latency",
            name=f"efficiency, {label}",
            value=pool,
            unit="",
            target=">= 0.75",
            met=pool >= 0.75,
            detail=f"{rate:,.0f} of ideal {len(jobs) / ideal:,.0f} jobs/s",
        ),
        Line(
            section="latency",
            name="efficiency of the bare queue, same jobs (context)",
            value=bare,
            unit="",
            detail=f"{len(jobs) / median(times['bare']):,.0f} jobs/s",
        ),
    ]
