"""A real broker and real Celery worker nodes for the Celery source's tests.

Redis runs on 127.0.0.1:6379 where this project is built and tested: the
tests use database 11 there (Celery's event and control channels are per
database with Redis) and empty it when done. Where nothing answers there, a
private ``redis-server`` is started on a free port; without one, the tests
are skipped with the reason, and in CI (``CI=true``) that skip is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DB = 11
"""The Redis database these tests own (emptied after them)."""


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _skip(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: the Celery tests cannot be skipped: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """A Redis broker's URL (database 11), emptied after the session."""
    try:
        from tui.celery_demo import free_port, start_redis
    except ImportError:
        _skip("celery is not installed (pip install 'wpool-tui[celery]')")
        raise

    process = None
    if _answers(6379):
        url = f"redis://127.0.0.1:6379/{DB}"
    elif shutil.which("redis-server") or Path("/usr/bin/redis-server").exists():
        folder = tempfile.mkdtemp(prefix="wpool-redis-")
        port = free_port()
        process = start_redis(port, Path(folder))
        url = f"redis://127.0.0.1:{port}/{DB}"
    else:
        _skip("no Redis answers on 127.0.0.1:6379 and no redis-server binary to start one")
        raise AssertionError  # not reached
    _flush(url)
    try:
        yield url
    finally:
        _flush(url)
        if process is not None:
            process.terminate()
            process.wait(5)


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture(scope="session")
def client(broker: str) -> Any:
    """A Celery app that sends tasks to the test broker (as any program would)."""
    import celery

    app = celery.Celery("tests", broker=broker, set_as_current=False)
    app.conf.task_send_sent_event = True
    yield app
    app.close()


@pytest.fixture(scope="module")
def cluster(broker: str, client: Any) -> Iterator[Any]:
    """Real worker nodes (prefork, events on, a heartbeat a second): alpha and beta
    (two processes each) on the default queue; gamma (prefork) and delta (threads),
    one each, on queues of their own."""
    from tui.celery_demo import DemoCluster

    nodes = DemoCluster(broker, nodes=("alpha", "beta"), extra=("--heartbeat-interval", "1"))
    nodes.start()
    # Two more, one process each, each on a queue of its own: one test shuts
    # gamma down, another kills delta. Started now, with the others, in parallel.
    nodes.start_node("gamma", concurrency=1, extra=("-Q", "gamma"))
    nodes.start_node("delta", pool="threads", concurrency=1, extra=("-Q", "delta"))
    try:
        wait_for_nodes(client, [nodes.node_name(n) for n in nodes.workers])
        yield nodes
    finally:
        nodes.stop(timeout=10)


def wait_for_nodes(client: Any, names: list[str], timeout: float = 30.0) -> None:
    """Until every node in ``names`` answers a ping (each ping waits its own 0.5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        replies = client.control.ping(destination=names, timeout=0.5)
        seen = {name for reply in replies for name in reply}
        if seen >= set(names):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes did not come up: {sorted(set(names) - seen)}")
