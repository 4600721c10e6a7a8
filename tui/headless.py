"""Running a pool with no UI: events as JSON lines, signals for the shutdown.

Every event goes to standard output as one line of its own JSON (the same
as :func:`pool.events.to_json`). The first SIGINT or SIGTERM begins the
graceful shutdown, whose countdown is written to standard error about once
a second; a second one escalates it (cancel now, then abandon). SIGHUP (the
terminal closed) counts as one of them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Coroutine
from typing import IO, Any, Final

from pool import Pool, ShutdownReport, Subscription
from pool import events as ev

from .sources.recording import Recorder

__all__ = ("run_headless",)

_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


async def run_headless(
    pool: Pool,
    work: Callable[[], Coroutine[Any, Any, None]],
    *,
    out: IO[str],
    err: IO[str],
    grace: float,
    cancel_grace: float,
    extra: Callable[[ev.PoolEvent], dict[str, object] | None] | None = None,
    record: Recorder | None = None,
) -> ShutdownReport:
    """Start ``pool``, run ``work`` beside it and print its events until it stops.

    ``work`` feeds the pool and may shut it down itself (a batch does, once
    its jobs have ended); otherwise only a signal ends the run. Each line
    has the event's wall-clock time (``wall``) beside the pool clock's
    (``at``), and whatever ``extra`` adds to it (a job's result). ``record``
    writes every event to a recording as well (``--record``).

    The signal handlers stay on the loop until it is closed: whoever runs
    the loop decides what a signal does after (see :func:`tui.runloop.run_loop`).
    """
    events = pool.events(maxsize=100_000)
    wall_offset = time.time() - pool.clock.now()
    if record is not None:
        record.begin(
            title=pool.name,
            snapshot=pool.snapshot(),
            take_snapshot=pool.snapshot,
            wall_offset=wall_offset,
        )
    loop = asyncio.get_running_loop()
    signals = 0
    shutdown: asyncio.Task[ShutdownReport] | None = None

    def on_signal(signum: int) -> None:
        nonlocal signals, shutdown
        signals += 1
        name = signal.Signals(signum).name
        if signals == 1:
            err.write(
                f"wpool-tui: {name}: shutting down gracefully (grace {grace:g}s, "
                f"cancel grace {cancel_grace:g}s); send it again to cancel now\n"
            )
        else:
            err.write(f"wpool-tui: {name} again: escalating the shutdown\n")
        err.flush()
        # A second call while the first runs skips to the next phase.
        shutdown = loop.create_task(pool.shutdown(grace=grace, cancel_grace=cancel_grace))

    for signum in _SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    feeder: asyncio.Task[None] | None = None
    try:
        await pool.start()
        feeder = loop.create_task(work())
        await _print_events(events, out, err, wall_offset, extra, record)
        report = await pool.wait_stopped()
        await feeder
        if shutdown is not None:
            await shutdown
        return report
    finally:
        if feeder is not None and not feeder.done():
            feeder.cancel()
            await asyncio.wait({feeder})
        events.close()
        if record is not None:
            record.close()


async def _print_events(
    events: Subscription,
    out: IO[str] | None,
    err: IO[str],
    wall_offset: float,
    extra: Callable[[ev.PoolEvent], dict[str, object] | None] | None,
    record: Recorder | None,
) -> None:
    last_second: int | None = None
    while True:
        more = await events.wait()
        batch = events.drain()
        if record is not None:
            record.record(batch)
        if out is not None:
            try:
                out.writelines(f"{_line(event, wall_offset, extra)}\n" for event in batch)
                out.flush()
            except BrokenPipeError:
                # The reader went away (``| head``): the run goes on, unprinted.
                err.write("wpool-tui: standard output was closed; events are no longer printed\n")
                out = None
        for event in batch:
            if isinstance(event, ev.ShutdownTick):
                second = int(event.remaining)
                if second != last_second:
                    last_second = second
                    err.write(
                        f"wpool-tui: {event.phase.value}: {event.remaining:.1f}s left, "
                        f"{event.running} running, {event.queued} queued\n"
                    )
                    err.flush()
        if not more:
            return


def _line(
    event: ev.PoolEvent,
    wall_offset: float,
    extra: Callable[[ev.PoolEvent], dict[str, object] | None] | None,
) -> str:
    more = extra(event) if extra is not None else None
    if not more:
        return ev.to_json(event, wall_offset=wall_offset)
    data = ev.to_dict(event, wall_offset=wall_offset)
    data.update(more)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=repr)
