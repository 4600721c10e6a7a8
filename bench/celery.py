"""A Celery cluster's events into the dashboard: how fast they fold, how far it lags.

One real worker node (prefork, two processes, events on) on a real Redis
broker: the local one's database 12 when it answers on 127.0.0.1:6379, else
a private ``redis-server``. Two figures, for context (no target):

- events folded per second while the node floods task events (no-op tasks
  sent as fast as a client can), from the first event to the last task's
  end; and the fold alone, the same recorded events fed again to a fresh
  source (what the dashboard could take, were the cluster faster);
- the lag from a task's end on the node (its event's timestamp) to its row
  in the dashboard's state, with the dashboard running (headless), p50 and p99.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .measure import Line, Sizes, percentile

__all__ = ("run",)

DB = 12
"""The Redis database the benchmark uses (emptied before and after)."""


def _local_redis() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


async def run(sizes: Sizes) -> list[Line]:
    """Start a broker (if needed) and a node; measure; stop everything it started."""
    import redis
    from celery import Celery

    from tui.celery_demo import DemoCluster, free_port, start_redis

    folder = tempfile.TemporaryDirectory(prefix="wpool-bench-redis-")
    server = None
    if _local_redis():
        url = f"redis://127.0.0.1:6379/{DB}"
    else:
        port = free_port()
        server = start_redis(port, Path(folder.name))
        url = f"redis://127.0.0.1:{port}/{DB}"
    redis.Redis.from_url(url).flushdb()
    cluster = DemoCluster(url, nodes=("bench",), extra=("--heartbeat-interval", "1"))
    client = Celery("bench", broker=url, set_as_current=False)
    client.conf.task_send_sent_event = True
    try:
        cluster.start()
        await asyncio.to_thread(_wait_up, client, cluster.node_name("bench"))
        flood = await _flood(url, client, sizes.celery_tasks)
        lags = await _lag(url, client, sizes.celery_lag_tasks)
    finally:
        await asyncio.to_thread(cluster.stop, 10.0)
        client.close()
        redis.Redis.from_url(url).flushdb()
        if server is not None:
            server.terminate()
            server.wait(5)
        folder.cleanup()
    rate, replayed, events = flood
    return [
        Line(
            section="celery",
            name="events folded per second, one node flooding task events",
            value=rate,
            unit="/s",
            detail=(
                f"{events:,} events of {sizes.celery_tasks:,} no-op tasks; the fold alone, "
                f"the same events fed again: {replayed:,.0f}/s"
            ),
        ),
        Line(
            section="celery",
            name="lag from a task's end on the node to its row in the dashboard, p99",
            value=percentile(lags, 99) if lags else float("nan"),
            unit="ms",
            detail=(
                f"p50 {percentile(lags, 50):.0f} ms over {len(lags)} tasks (the dashboard "
                "folds once a frame, 20 a second)"
                if lags
                else "no task seen"
            ),
        ),
    ]


def _wait_up(client: Any, node: str) -> None:
    deadline = time.monotonic() + 30
    while not client.control.ping(destination=[node], timeout=0.5):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{node} did not come up")


async def _flood(url: str, client: Any, tasks: int) -> tuple[float, float, int]:
    """Events folded per second from the flood; the fold alone; how many events."""
    from tui.sources.celery import CelerySource

    source = CelerySource.connect(url, read_only=True, inspect_timeout=0.5)
    recorded: list[dict[str, Any]] = []
    feed = source.feed

    def keep(event: dict[str, Any]) -> None:
        recorded.append(event)
        feed(event)

    source.feed = keep  # type: ignore[method-assign]
    await source.start()
    drained = source.events(1_000_000)
    first: list[float] = []

    def send() -> None:
        with client.producer_or_acquire() as producer:
            for _ in range(tasks):
                client.send_task("demo.noop", producer=producer)

    sender = threading.Thread(target=send, daemon=True)
    start = time.monotonic()
    sender.start()
    state = source.snapshot
    try:
        while state().stats.succeeded < tasks:
            if not first and source.folded:
                first.append(time.monotonic())
            drained.drain()
            if time.monotonic() - start > 120:
                raise TimeoutError(f"only {state().stats.succeeded} of {tasks} tasks ended")
            await asyncio.sleep(0.005)
        elapsed = time.monotonic() - (first[0] if first else start)
        folded = len(recorded)
    finally:
        await source.close()
        sender.join(10)
    fresh = CelerySource(title="replay")
    began = time.perf_counter()
    fresh.feed_all(recorded)
    alone = time.perf_counter() - began
    return folded / elapsed, folded / alone if alone else 0.0, folded


async def _lag(url: str, client: Any, tasks: int) -> list[float]:
    """Milliseconds from each task's end on the node (its event's stamp) to the moment
    its row is in the running app's state (looked for every 2 ms)."""
    from tui.app import create_app
    from tui.sources.celery import CelerySource

    source = CelerySource.connect(url, read_only=True, inspect_timeout=0.5)
    await source.start()
    app = create_app(source, animate=False, read_only=True)

    def send() -> None:
        for _ in range(tasks):
            client.send_task("demo.noop")
            time.sleep(0.02)  # a steady pace, not a flood: the lag of an ordinary load

    lags: list[float] = []
    async with app.run_test(size=(120, 40)):
        state = app.state
        counted = state.log_total
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        deadline = time.monotonic() + 30 + tasks * 0.02
        while len(lags) < tasks and time.monotonic() < deadline:
            state = app.state  # the app replaces it once, on mount
            new = state.log_total - counted
            if new > 0:
                now = source.now()
                lags += [(now - entry.at) * 1000 for entry in list(state.log)[-new:]]
                counted = state.log_total
            await asyncio.sleep(0.002)
        sender.join(10)
    return lags
