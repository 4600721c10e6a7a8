"""Shutdown: how long an idle pool takes to stop, and how bounded a stop with hung jobs is.

An idle pool of ``shutdown_workers`` workers is shut down; the figure is the
time ``shutdown()`` takes, against the bare pattern's stop (cancel every
worker task and gather them), in the same rounds.

With hung jobs, ``hung_jobs`` coroutine jobs and as many thread jobs ignore
their cancellation until the benchmark lets them go, after the shutdown has
returned. The figure is how far past ``grace + cancel_grace`` the
``shutdown()`` call returns: its overshoot.
"""

from __future__ import annotations

import asyncio
import threading
import time

from pool import Job, JobContext, Pool

from .dispatch import noop
from .measure import Line, Sizes, alternate, median

__all__ = ("run",)


async def _idle_pool(workers: int) -> float:
    pool = Pool(noop, workers=workers)
    await pool.start()
    start = time.perf_counter()
    await pool.shutdown()
    return time.perf_counter() - start


async def _idle_bare(workers: int) -> float:
    queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=100)

    async def worker() -> None:
        while True:
            await queue.get()
            queue.task_done()

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    await asyncio.sleep(0)
    start = time.perf_counter()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return time.perf_counter() - start


async def _hung(sizes: Sizes) -> float:
    """One shutdown with hung jobs; returns its overshoot past grace + cancel_grace."""
    release = asyncio.Event()
    release_threads = threading.Event()
    running = asyncio.Semaphore(0)

    async def stubborn(job: Job, ctx: JobContext) -> None:
        running.release()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # ignores its cancellation, as a hung job does

    def stubborn_sync(job: Job, ctx: JobContext) -> None:
        loop.call_soon_threadsafe(running.release)
        release_threads.wait()

    loop = asyncio.get_running_loop()
    n = sizes.hung_jobs
    pools = [
        Pool(stubborn, workers=n, cancel_grace=sizes.cancel_grace),
        Pool(stubborn_sync, workers=n, cancel_grace=sizes.cancel_grace),
    ]
    for pool in pools:
        await pool.start()
        for _ in range(n):
            await pool.submit(Job(payload=b""))
    for _ in range(2 * n):
        await running.acquire()  # every job is running
    start = time.perf_counter()
    reports = await asyncio.gather(
        *(p.shutdown(grace=sizes.grace, cancel_grace=sizes.cancel_grace) for p in pools)
    )
    elapsed = time.perf_counter() - start
    release.set()
    release_threads.set()
    assert all(len(r.abandoned) == n for r in reports), reports
    await asyncio.sleep(0)  # the abandoned coroutines see the release and end
    return elapsed - (sizes.grace + sizes.cancel_grace)


async def run(sizes: Sizes) -> list[Line]:
    """Idle shutdown time and hung-job overshoot, medians over the rounds."""
    w = sizes.shutdown_workers
    idle = await alternate(
        {"pool": lambda: _idle_pool(w), "bare": lambda: _idle_bare(w)}, sizes.rounds
    )
    pool_ms = median(idle["pool"]) * 1000
    bare_ms = median(idle["bare"]) * 1000
    over = await alternate({"hung": lambda: _hung(sizes)}, sizes.rounds)
    over_ms = median(over["hung"]) * 1000
    worst_ms = max(over["hung"]) * 1000
    n = sizes.hung_jobs
    return [
        Line(
            section="shutdown",
            name=f"idle pool of {w} workers shuts down",
            value=pool_ms,
            unit="ms",
            target="< 10 ms",
            met=pool_ms < 10,
            detail=f"bare pattern's stop: {bare_ms:.2f} ms",
        ),
        Line(
            section="shutdown",
            name=f"overshoot past grace + cancel_grace ({n} async + {n} thread hung jobs)",
            value=over_ms,
            unit="ms",
            target="< 50 ms",
            met=over_ms < 50,
            detail=(
                f"grace {sizes.grace * 1000:g} ms + cancel_grace "
                f"{sizes.cancel_grace * 1000:g} ms; worst round {worst_ms:.1f} ms"
            ),
        ),
    ]
