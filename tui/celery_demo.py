"""Demo tasks for ``wpool-tui celery --demo``, and the cluster it starts.

Workers load this module (``celery -A tui.celery_demo worker``): its app reads
the broker's URL from ``WPOOL_CELERY_BROKER``. The tasks report progress with
a custom ``task-progress`` event, which the dashboard shows as a bar.

:class:`DemoCluster` starts what the demo needs: a private ``redis-server``
on a free port (when no broker is given), two worker nodes (prefork, with
events), and stops all of it, each process by its own id.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from celery import Celery, Task

__all__ = ("DemoCluster", "app", "free_port", "start_redis")

BROKER_ENV: Final = "WPOOL_CELERY_BROKER"

app = Celery("tui.celery_demo", broker=os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"))
app.conf.update(
    worker_send_task_events=True,
    task_send_sent_event=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    result_backend=None,
)


def _progress(task: Task[Any, Any], fraction: float, message: str = "") -> None:
    task.send_event("task-progress", fraction=fraction, message=message)


@app.task(bind=True, name="demo.work")
def work(self: Task[Any, Any], seconds: float = 1.0, steps: int = 5) -> float:
    """Work for ``seconds``, telling progress ``steps`` times."""
    for step in range(steps):
        time.sleep(seconds / steps)
        _progress(self, (step + 1) / steps, f"step {step + 1}/{steps}")
    return seconds


@app.task(name="demo.fail")
def fail(message: str = "the demo fails this one") -> None:
    """Fail at once."""
    raise ValueError(message)


@app.task(bind=True, name="demo.flaky", max_retries=2, default_retry_delay=0.5)
def flaky(self: Task[Any, Any], odds: float = 0.5) -> str:
    """Fail now and then; retried twice."""
    time.sleep(0.3)
    if random.random() < odds:
        raise self.retry(exc=RuntimeError("flaky: try again"))
    return "ok"


@app.task(bind=True, name="demo.slow")
def slow(self: Task[Any, Any], seconds: float = 20.0) -> float:
    """A long task (to cancel, or to see a shutdown wait for it)."""
    steps = max(1, int(seconds))
    for step in range(steps):
        time.sleep(seconds / steps)
        _progress(self, (step + 1) / steps, "slow")
    return seconds


@app.task(name="demo.limited", time_limit=2, soft_time_limit=None)
def limited(seconds: float = 5.0) -> float:
    """Runs past its 2 s time limit: the node kills it (timed out)."""
    time.sleep(seconds)
    return seconds


@app.task(bind=True, name="demo.hold")
def hold(self: Task[Any, Any], path: str, limit: float = 60.0) -> str:
    """Run until the file ``path`` exists (a test hands it over), at most ``limit`` s."""
    deadline = time.monotonic() + limit
    _progress(self, 0.0, "holding")
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {limit:g}s")
        time.sleep(0.02)
    return path


@app.task(name="demo.noop")
def noop() -> None:
    """Nothing: for floods of events (the benchmark)."""


def _die_with_parent() -> None:
    """In the child, before exec: end when the demo's process ends, however it ends
    (Linux's parent-death signal), so that nothing it started is left behind."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: stop() still stops everything on a normal exit


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A private ``redis-server`` on ``port``, no persistence; waits until it answers.

    Raises:
        FileNotFoundError: No ``redis-server`` on the PATH.
        TimeoutError: It did not answer within 10 s.
    """
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise TimeoutError(f"redis-server did not answer on port {port}")
        time.sleep(0.05)


class DemoCluster:
    """A broker (if none is given) and worker nodes running this module's tasks.

    Args:
        broker: A broker URL; None starts a private ``redis-server``.
        nodes: The nodes' names (``alpha`` makes ``alpha@<host>``).
        concurrency: Each node's prefork processes.
        extra: More flags for ``celery worker``.
    """

    def __init__(
        self,
        broker: str | None = None,
        *,
        nodes: Sequence[str] = ("alpha", "beta"),
        concurrency: int = 2,
        extra: Sequence[str] = (),
    ) -> None:
        self.broker = broker
        self.names = tuple(nodes)
        self.concurrency = concurrency
        self.extra = tuple(extra)
        self.redis: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> str:
        """Start the broker (if needed) and the nodes; the broker's URL."""
        self._folder = tempfile.TemporaryDirectory(prefix="wpool-celery-")
        folder = Path(self._folder.name)
        if self.broker is None:
            port = free_port()
            self.redis = start_redis(port, folder)
            self.broker = f"redis://127.0.0.1:{port}/0"
        for name in self.names:
            self.start_node(name)
        return self.broker

    def node_name(self, name: str) -> str:
        """The full name of node ``name`` (``alpha@host``)."""
        return f"{name}@{socket.gethostname()}"

    def start_node(
        self,
        name: str,
        *,
        pool: str = "prefork",
        concurrency: int | None = None,
        extra: Sequence[str] = (),
    ) -> subprocess.Popen[bytes]:
        """Start one worker node (events on) named ``name@host`` (``extra``: more flags)."""
        assert self.broker is not None
        assert self._folder is not None
        env = {**os.environ, BROKER_ENV: self.broker}
        log = open(Path(self._folder.name) / f"{name}.log", "ab")  # noqa: SIM115 (the child holds it)
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tui.celery_demo",
                "worker",
                "-E",
                "-P",
                pool,
                "-c",
                str(concurrency or self.concurrency),
                "-n",
                f"{name}@%h",
                "--without-mingle",
                "--without-gossip",
                "-l",
                "warning",
                *self.extra,
                *extra,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.workers[name] = process
        return process

    def log(self, name: str) -> str:
        """What node ``name`` wrote."""
        assert self._folder is not None
        path = Path(self._folder.name) / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill_node(self, name: str) -> None:
        """SIGKILL node ``name`` and its pool's processes (its whole process group)."""
        process = self.workers[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self, timeout: float = 10.0, *, warm: bool = False) -> None:
        """Stop every node (cold: SIGQUIT; ``warm``: SIGTERM, running tasks finish),
        killed past ``timeout``, and the private broker."""
        for process in self.workers.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM if warm else signal.SIGQUIT)
        deadline = time.monotonic() + timeout
        for process in self.workers.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            # Pool processes left by a node killed with SIGKILL: its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            try:
                self.redis.wait(5)
            except subprocess.TimeoutExpired:
                self.redis.kill()
                self.redis.wait()
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


_MIX: Final[tuple[tuple[str, list[float], int], ...]] = (
    ("demo.work", [1.5], 6),
    ("demo.work", [3.0], 3),
    ("demo.flaky", [0.5], 2),
    ("demo.fail", [], 1),
    ("demo.slow", [20.0], 1),
    ("demo.limited", [5.0], 1),
)


async def feed(broker: str, every: float = 1.5, seed: int = 7) -> None:
    """Send a mix of the demo's tasks to ``broker``, one every ``every`` seconds,
    until cancelled (each send in a thread: it blocks)."""
    import asyncio

    app.conf.broker_url = broker
    rng = random.Random(seed)
    mix = [(name, args) for name, args, weight in _MIX for _ in range(weight)]
    slow_sent = -30.0
    while True:
        await asyncio.sleep(every)
        name, args = rng.choice(mix)
        if name == "demo.slow":
            if time.monotonic() - slow_sent < 30:
                name, args = "demo.work", [1.5]
            else:
                slow_sent = time.monotonic()
        await asyncio.to_thread(app.send_task, name, args=args)
