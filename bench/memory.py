"""Memory: resident memory growth over many no-op jobs, events on and drained.

The pool keeps no per-job state once a job has ended, beyond bounded
buffers (latency windows, dead letters, the subscriber's queue). After a
warm-up of a tenth of the jobs (which fills those buffers and the
allocator's free lists), the figure is how much the resident set grows over
all ``memory_jobs`` jobs. Each job is built as it is submitted, as a caller
would, and dropped after.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource

from pool import Job, Pool

from .dispatch import noop
from .measure import Line, Sizes

__all__ = ("rss_mb", "run")


def rss_mb() -> float:
    """This process's resident set, in MB, after a full collection.

    Read from ``/proc/self/statm`` (Linux); elsewhere the peak resident set,
    which can only grow, stands in for it.
    """
    gc.collect()
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


async def run(sizes: Sizes) -> list[Line]:
    """Resident growth over ``sizes.memory_jobs`` jobs after a warm-up."""
    pool = Pool(noop, workers=sizes.workers, queue_size=sizes.queue_size)
    await pool.start()
    sub = pool.events(maxsize=100_000)
    seen = 0

    async def drain() -> None:
        nonlocal seen
        while await sub.wait():
            seen += len(sub.drain())

    drainer = asyncio.create_task(drain())
    submit = pool.submit
    warm_up = sizes.memory_jobs // 10
    for _ in range(warm_up):
        await submit(Job(payload=b""))
    await asyncio.sleep(0)
    before = rss_mb()
    samples = []
    quarter = max(1, sizes.memory_jobs // 4)
    for index in range(sizes.memory_jobs):
        await submit(Job(payload=b""))
        if (index + 1) % quarter == 0:
            samples.append(rss_mb() - before)
    await pool.shutdown()
    await drainer
    growth = max(samples) if samples else 0.0
    steps = ", ".join(f"{s:+.1f}" for s in samples)
    return [
        Line(
            section="memory",
            name=f"resident growth over {sizes.memory_jobs:,} jobs, events on, 1 subscriber",
            value=growth,
            unit="MB",
            target="< 30 MB",
            met=growth < 30,
            detail=f"after each quarter: {steps} MB; {seen:,} events drained",
        )
    ]
