"""A small asyncio service that embeds a worker pool and serves it for ``wpool-tui attach``.

The service takes work over TCP, one line of text a job: each line a client
sends to its port (127.0.0.1:7777 by default) is queued in the pool, and the
client is told ``accepted <id>``; when the job ends, it gets ``ok <id>
<result>`` or ``failed <id> <error>``. A job "works" on its words, one word
every ``--word-time`` seconds (reporting its progress as it goes), and
returns them in reverse order; a line that starts with ``fail`` fails, to
show what failures look like. A client that sends faster than the pool
works waits: the pool's queue is bounded.

The pool is served on its control socket (``pool.serve()``), so that in
another terminal ``wpool-tui attach svc`` watches it live and drives it:
resize, pause, add jobs, shut down. ``q`` there detaches and leaves the
service running.

Try it in two terminals::

    python examples/service.py                  # terminal 1: the service
    wpool-tui attach svc                         # terminal 2: its dashboard
    printf 'hello brave new world\\n' | nc 127.0.0.1 7777   # some work (or socat)

``--feed 5`` makes the service give itself five jobs a second, for a pool
that is always busy. SIGINT (Ctrl-C) or SIGTERM shuts the pool down
gracefully (queued jobs still run, up to ``--grace`` seconds); a second one
skips to the next phase of the shutdown. The service also ends when its
pool is shut down from a dashboard. It exits 0 once the pool has stopped,
1 if the pool failed (its workers crashed too often).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
from pathlib import Path

# Run from a clone without installing: the pool package sits beside examples/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pool import Job, JobContext, JobError, JobHandle, Pool, PoolClosed

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india")
"""What the ``--feed`` jobs are made of."""


class Words:
    """The handler: takes ``word_time`` seconds a word, and returns the words reversed."""

    def __init__(self, word_time: float) -> None:
        self.word_time = word_time

    async def __call__(self, job: Job, ctx: JobContext) -> str:
        text = job.payload.decode("utf-8", errors="replace").strip()
        if text.startswith("fail"):
            raise ValueError(f"asked to fail: {text[:60]!r}")
        words = text.split()
        for done, word in enumerate(words, 1):
            await asyncio.sleep(self.word_time)
            ctx.progress(done / len(words), word[:40])
        return " ".join(reversed(words))


class Clients:
    """The TCP side: each line a client sends is a job, and each job's end a line back."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.writers: set[asyncio.StreamWriter] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client, until it has sent its last line and its jobs have ended."""
        pending: set[str] = set()
        settled = asyncio.Event()
        settled.set()

        def tell(text: str) -> None:
            if not writer.is_closing():
                writer.write(text.encode("utf-8", errors="replace") + b"\n")

        def ended(handle: JobHandle) -> None:
            try:
                tell(f"ok {handle.id} {handle.result()}")
            except JobError as exc:  # how the job ended, told to whoever sent it
                tell(f"failed {handle.id} {exc}")
            pending.discard(handle.id)
            if not pending:
                settled.set()

        self.writers.add(writer)
        try:
            while line := await reader.readline():
                text = line.strip()
                if not text:
                    continue
                try:
                    handle = await self.pool.submit(Job(payload=text))  # waits while full
                except PoolClosed:
                    tell("error the service is shutting down")
                    break
                tell(f"accepted {handle.id}")
                pending.add(handle.id)
                settled.clear()
                handle.add_done_callback(ended)
        except ValueError:  # a line over the reader's limit (64 KiB)
            tell("error line too long")
        except ConnectionError:
            writer.close()  # the client went away; its jobs still run
            return
        finally:
            self.writers.discard(writer)
        # The client may have closed its side only: it still gets its jobs' ends.
        await settled.wait()
        writer.close()

    def close(self) -> None:
        """Hang up on every client (once their jobs have ended)."""
        for writer in list(self.writers):
            writer.close()


async def feed(pool: Pool, rate: float) -> None:
    """Give the pool ``rate`` jobs a second of random words, until cancelled."""
    rng = random.Random()
    while True:
        await asyncio.sleep(1.0 / rate)
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
        try:
            await pool.submit(Job(payload=words.encode()))
        except PoolClosed:
            return


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (``--help`` lists it)."""
    parser = argparse.ArgumentParser(
        prog="python examples/service.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--name", default="svc", help="the pool's name (default: svc)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="where jobs are taken (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=7777, help="the jobs' TCP port, 0 for any (default: 7777)"
    )
    parser.add_argument("--workers", type=int, default=4, help="workers to start with (default: 4)")
    parser.add_argument("--queue", type=int, default=100, help="the queue's bound (default: 100)")
    parser.add_argument(
        "--grace", type=float, default=10.0, help="the shutdown's grace, in seconds (default: 10)"
    )
    parser.add_argument(
        "--word-time", type=float, default=0.2, help="seconds a job takes a word (default: 0.2)"
    )
    parser.add_argument(
        "--feed",
        type=float,
        default=0.0,
        help="jobs a second the service gives itself (default: 0)",
    )
    parser.add_argument(
        "--socket",
        help="the control socket (default: $XDG_RUNTIME_DIR/wpool/NAME.sock, else /tmp/wpool-UID/)",
    )
    parser.add_argument(
        "--control-tcp",
        metavar="HOST:PORT",
        help="also serve the control protocol on a loopback TCP port, with a token file",
    )
    args = parser.parse_args(argv)
    if args.control_tcp is not None:
        host, _, port = args.control_tcp.rpartition(":")
        if not host or not port.isdigit():
            parser.error(f"--control-tcp must be HOST:PORT, got {args.control_tcp!r}")
        args.control_tcp = (host.strip("[]"), int(port))
    return args


async def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM (or the pool is shut down), then stop gracefully."""
    args = parse_args(argv)
    loop = asyncio.get_running_loop()
    pool = Pool(
        Words(args.word_time),
        workers=args.workers,
        queue_size=args.queue,
        grace=args.grace,
        name=args.name,
    )
    stop = asyncio.Event()
    escalations: set[asyncio.Task[object]] = set()

    def on_signal() -> None:
        if not stop.is_set():
            stop.set()
        else:  # again: the shutdown skips to its next phase
            task: asyncio.Task[object] = loop.create_task(pool.shutdown())
            escalations.add(task)
            task.add_done_callback(escalations.discard)

    # Before anything starts: a signal during start-up still stops the service cleanly.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)

    await pool.start()
    control = await pool.serve(args.socket, tcp=args.control_tcp)
    clients = Clients(pool)
    jobs = await asyncio.start_server(clients.serve, args.host, args.port)
    host, port = jobs.sockets[0].getsockname()[:2]
    print(f"service {args.name!r}: jobs on {host}:{port}, control socket {control.path}")
    if control.address is not None:
        tcp_host, tcp_port = control.address
        print(f"control on tcp {tcp_host}:{tcp_port}, token in {control.token_path}")
    print("ready", flush=True)
    feeder = asyncio.create_task(feed(pool, args.feed)) if args.feed > 0 else None

    # Until a signal, or until the pool stops by itself (shut down from a
    # dashboard, or failed): its control server closes then.
    stopping = asyncio.create_task(stop.wait())
    served = asyncio.create_task(control.wait_closed())
    await asyncio.wait([stopping, served], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()

    jobs.close()  # no new client; those connected get their jobs' ends
    if feeder is not None:
        feeder.cancel()
        await asyncio.wait([feeder])
    print("shutting down...", flush=True)
    report = await pool.shutdown()
    await served  # the dashboards got the pool's last event
    clients.close()
    await jobs.wait_closed()
    ended = (
        f"stopped: {len(report.finished)} finished, {len(report.cancelled)} cancelled, "
        f"{len(report.not_started)} not started, {len(report.abandoned)} abandoned"
    )
    print(f"{ended}; failed: {report.reason}" if report.failed else ended, flush=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
