"""Dispatch throughput: no-op jobs through this pool and through what a Python user would pick.

Every contender does the same work, timed over the whole span a user sees:
from before its workers (or scheduler) exist until every job has finished
and the workers are stopped. It takes ``n`` jobs already built (the same
:class:`~pool.Job` objects for all), admits them through a bound of
``queue_size`` waiting jobs with at most ``workers`` running at once, awaits
a no-op handler for each, and waits for all of them. The pool's span is
``Pool(...)``, ``start()``, the submits, ``shutdown()``, and, with events
on, a subscriber that reads every event with ``async for`` to the last.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import aiojobs

from pool import Job, JobContext, Pool, Subscription
from pool.events import EventsDropped

from .measure import Line, Sizes, alternate, median, ratios

__all__ = (
    "aiojobs_scheduler",
    "bare_queue",
    "fed_rate",
    "feed",
    "pool_async",
    "pool_thread",
    "read_all",
    "run",
    "task_group",
    "thread_pool_executor",
    "timed_pool",
)


async def noop(job: Job, ctx: JobContext | None = None) -> None:
    """The job every async contender runs: nothing."""


def noop_sync(job: Job, ctx: JobContext | None = None) -> None:
    """The job every thread contender runs: nothing."""


async def feed(pool: Pool, stop: asyncio.Event) -> None:
    """Submit no-op jobs as fast as ``pool`` takes them, until ``stop`` is set."""
    submit = pool.submit
    while not stop.is_set():
        await submit(Job(payload=b""))


async def fed_rate(pool: Pool, seconds: float, warm_up: float = 0.1) -> float:
    """Jobs a second ``pool`` finishes while :func:`feed` keeps it busy, after ``warm_up`` s."""
    stop = asyncio.Event()
    feeder = asyncio.create_task(feed(pool, stop))
    await asyncio.sleep(warm_up)
    before = pool.stats().finished
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    done = pool.stats().finished - before
    elapsed = time.perf_counter() - start
    stop.set()
    await feeder
    return done / elapsed


def make_jobs(n: int) -> list[Job]:
    """``n`` jobs with empty payloads, built before any clock starts."""
    return [Job(payload=b"") for _ in range(n)]


async def timed_pool(pool: Pool, jobs: list[Job]) -> float:
    """Submit ``jobs`` to a started pool and shut it down (draining).

    Returns:
        Seconds from the first submit until every job has finished and the
        workers have stopped.
    """
    submit = pool.submit
    start = time.perf_counter()
    for job in jobs:
        await submit(job)
    await pool.shutdown()
    return time.perf_counter() - start


async def read_all(sub: Subscription) -> int:
    """Read every event with ``async for`` until the pool's last; how many were missed."""
    missed = 0
    async for event in sub:
        if isinstance(event, EventsDropped):
            missed += event.missed
    return missed


async def pool_async(jobs: list[Job], workers: int, queue_size: int, *, events: bool) -> float:
    """This pool, async handler, from ``Pool()`` to the end of ``shutdown()``.

    With ``events``, one subscriber (there from before ``start()``) reads
    every event with ``async for``, and the clock stops once it has read the
    last; its buffer is large enough that it misses none.

    Returns:
        Jobs per second.
    """
    start = time.perf_counter()
    pool = Pool(noop, workers=workers, queue_size=queue_size)
    reader = None
    if events:
        reader = asyncio.create_task(read_all(pool.events(maxsize=len(jobs) * 4 + 10_000)))
    await pool.start()
    submit = pool.submit
    for job in jobs:
        await submit(job)
    await pool.shutdown()
    if reader is not None:
        missed = await reader
        assert missed == 0, f"the subscriber missed {missed} events"
    elapsed = time.perf_counter() - start
    return len(jobs) / elapsed


async def bare_queue(jobs: list[Job], workers: int, queue_size: int) -> float:
    """The bare pattern: ``asyncio.Queue(maxsize=queue_size)`` and fixed worker tasks.

    Returns:
        Jobs per second.
    """
    start = time.perf_counter()
    queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=queue_size)

    async def worker() -> None:
        while True:
            job = await queue.get()
            try:
                await noop(job)
            finally:
                queue.task_done()

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    await asyncio.sleep(0)  # every worker is waiting on the queue
    put = queue.put
    for job in jobs:
        await put(job)
    await queue.join()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.perf_counter() - start
    return len(jobs) / elapsed


async def aiojobs_scheduler(jobs: list[Job], workers: int, queue_size: int) -> float:
    """``aiojobs.Scheduler(limit=workers, pending_limit=queue_size)``; ``spawn`` each job.

    Returns:
        Jobs per second.
    """
    start = time.perf_counter()
    scheduler = aiojobs.Scheduler(limit=workers, pending_limit=queue_size, wait_timeout=None)
    spawn = scheduler.spawn
    for job in jobs:
        await spawn(noop(job))
    await scheduler.wait_and_close()
    elapsed = time.perf_counter() - start
    return len(jobs) / elapsed


async def task_group(jobs: list[Job], workers: int, queue_size: int) -> float:
    """``asyncio.TaskGroup``, a task per job, with two semaphores.

    The submitter takes an admission semaphore of ``workers + queue_size``
    before it creates a task (so at most that many jobs exist at once); each
    task runs its job under a semaphore of ``workers``.

    Returns:
        Jobs per second.
    """
    start = time.perf_counter()
    admit = asyncio.Semaphore(workers + queue_size)
    running = asyncio.Semaphore(workers)

    async def one(job: Job) -> None:
        try:
            async with running:
                await noop(job)
        finally:
            admit.release()

    async with asyncio.TaskGroup() as group:
        for job in jobs:
            await admit.acquire()
            group.create_task(one(job))
    elapsed = time.perf_counter() - start
    return len(jobs) / elapsed


async def pool_thread(jobs: list[Job], workers: int, queue_size: int) -> float:
    """This pool's thread runner: a plain ``def`` handler on ``workers`` threads.

    Returns:
        Jobs per second.
    """
    start = time.perf_counter()
    pool = Pool(noop_sync, workers=workers, queue_size=queue_size)
    await pool.start()
    submit = pool.submit
    for job in jobs:
        await submit(job)
    await pool.shutdown()
    return len(jobs) / (time.perf_counter() - start)


async def thread_pool_executor(jobs: list[Job], workers: int, queue_size: int) -> float:
    """``ThreadPoolExecutor(max_workers=workers)`` through ``loop.run_in_executor``.

    A semaphore of ``workers + queue_size`` bounds the jobs handed to the
    executor at once (its own queue is unbounded); the submitter waits on it.

    Returns:
        Jobs per second.
    """
    start = time.perf_counter()
    loop = asyncio.get_running_loop()
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    bound = workers + queue_size
    admit = asyncio.Semaphore(bound)

    def done(_: object) -> None:
        admit.release()

    for job in jobs:
        await admit.acquire()
        loop.run_in_executor(executor, noop_sync, job, None).add_done_callback(done)
    for _ in range(bound):  # every job has released its place: all are done
        await admit.acquire()
    executor.shutdown(wait=True)
    elapsed = time.perf_counter() - start
    return len(jobs) / elapsed


async def run(sizes: Sizes) -> list[Line]:
    """Every dispatch comparison, alternating contenders, medians over ``sizes.rounds``."""
    w, q = sizes.workers, sizes.queue_size
    jobs = make_jobs(sizes.dispatch_jobs)
    results = await alternate(
        {
            "bare": lambda: bare_queue(jobs, w, q),
            "off": lambda: pool_async(jobs, w, q, events=False),
            "on": lambda: pool_async(jobs, w, q, events=True),
            "aiojobs": lambda: aiojobs_scheduler(jobs, w, q),
            "taskgroup": lambda: task_group(jobs, w, q),
        },
        sizes.rounds,
    )
    rate = {name: median(values) for name, values in results.items()}

    def ratio_line(subject: str, peer: str, name: str, low: float | None) -> Line:
        value = median(ratios(results, subject, peer))
        return Line(
            section="dispatch",
            name=name,
            value=value,
            unit="x",
            target="" if low is None else f">= {low:.1f}x",
            met=None if low is None else value >= low,
            detail=f"{rate[subject]:,.0f} vs {rate[peer]:,.0f} jobs/s",
        )

    lines = [
        ratio_line("on", "bare", "events on, 1 subscriber / bare queue", 0.6),
        ratio_line("on", "aiojobs", "events on, 1 subscriber / aiojobs", 1.0),
        ratio_line("off", "bare", "events off / bare queue", 0.8),
        ratio_line("off", "aiojobs", "events off / aiojobs", None),
        ratio_line("off", "taskgroup", "events off / TaskGroup + Semaphore", None),
        ratio_line("on", "taskgroup", "events on / TaskGroup + Semaphore", None),
    ]
    thread_jobs = make_jobs(sizes.thread_jobs)
    threads = await alternate(
        {
            "pool": lambda: pool_thread(thread_jobs, w, q),
            "executor": lambda: thread_pool_executor(thread_jobs, w, q),
        },
        sizes.rounds,
    )
    value = median(ratios(threads, "pool", "executor"))
    lines.append(
        Line(
            section="dispatch",
            name="thread runner / ThreadPoolExecutor (def jobs)",
            value=value,
            unit="x",
            target=">= 1.0x",
            met=value >= 1.0,
            detail=(f"{median(threads['pool']):,.0f} vs {median(threads['executor']):,.0f} jobs/s"),
        )
    )
    return lines
