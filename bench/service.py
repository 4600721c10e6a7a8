"""A pool served on its control socket: what attached readers cost it, how fast controls act.

The service is a pool of ``service_workers`` workers running no-op jobs as
fast as a feeder task submits them, served with ``pool.serve()`` on a Unix
socket. The readers are plain asyncio clients in another process (as a
dashboard would be), each parsing every line it gets into events and
snapshots (``events.from_dict``, ``wire.snapshot_from_dict``).

- **throughput**: in each round the service runs ``service_seconds`` three
  times, in rotating order: with nobody attached, with one reader, and with
  ``service_readers`` readers; each timed after 0.1 s of warm-up. The
  figures are the attached rates over the rate with nobody attached.
- **control to effect**: with one reader attached and the jobs flowing, a
  control client in the readers' process sends ``resize`` (one worker more,
  then one less) every ``request_interval`` seconds; the time is taken from
  just before the request is written to when the pool's ``resize`` is
  called (``time.monotonic()``, one clock for every process on Linux).

Run as ``python -m bench.service --socket PATH ...``, this module is the
readers' process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pool import Pool, events, wire

from .dispatch import fed_rate, noop
from .measure import Line, Sizes, alternate, median, percentile, ratios

__all__ = ("run",)

WARM_UP = 0.1
"""Seconds the jobs flow before the throughput is timed."""


class _TimedPool(Pool):
    """The service's pool, noting when each resize reaches it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resized: list[float] = []

    async def resize(self, workers: int) -> None:
        self.resized.append(time.monotonic())
        await super().resize(workers)


@dataclass(slots=True)
class _Readers:
    """What the readers' process reported."""

    lines: int = 0
    gaps: int = 0
    seconds: float = 0.0
    sent: list[float] = field(default_factory=list)


async def _start_readers(
    path: Path, readers: int, request_interval: float | None, workers: int
) -> asyncio.subprocess.Process:
    args = [sys.executable, "-m", "bench.service", "--socket", str(path), "--readers", str(readers)]
    if request_interval is not None:
        args += ["--requests", str(request_interval), "--workers", str(workers)]
    process = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    if line != b"ready\n":
        raise RuntimeError(f"the readers' process did not start: {line!r}")
    return process


async def _service(
    sizes: Sizes, readers: int, *, requests: bool = False, into: _Readers | None = None
) -> tuple[float, _TimedPool]:
    """Run the service for ``service_seconds`` with ``readers`` attached; jobs a second."""
    directory = Path(tempfile.mkdtemp(prefix="wpool-bench-"))
    try:
        pool = _TimedPool(noop, workers=sizes.service_workers, queue_size=100, name="bench")
        await pool.start()
        server = await pool.serve(directory / "bench.sock")
        process = None
        if readers or requests:
            interval = sizes.request_interval if requests else None
            process = await _start_readers(server.path, readers, interval, sizes.service_workers)
        rate = await fed_rate(pool, sizes.service_seconds, WARM_UP)
        await pool.shutdown()
        await server.wait_closed()
        if process is not None:
            assert process.stdout is not None
            out = await asyncio.wait_for(process.stdout.read(), 30)
            if await process.wait() != 0:
                raise RuntimeError("the readers' process failed")
            report = json.loads(out)
            if into is not None:
                into.lines += report["lines"]
                into.gaps += report["gaps"]
                into.seconds += report["seconds"]
                into.sent += report["sent"]
        return rate, pool
    finally:
        shutil.rmtree(directory)


async def run(sizes: Sizes) -> list[Line]:
    """Throughput with readers over none, and the time from a control request to its effect."""
    many = sizes.service_readers
    one = _Readers()

    async def alone() -> float:
        return (await _service(sizes, 0))[0]

    async def with_one() -> float:
        return (await _service(sizes, 1, into=one))[0]

    async def with_many() -> float:
        return (await _service(sizes, many))[0]

    rates = await alternate({"none": alone, "one": with_one, "many": with_many}, sizes.rounds)
    kept_one = median(ratios(rates, "one", "none"))
    kept_many = median(ratios(rates, "many", "none"))

    delays: list[float] = []
    for _ in range(sizes.rounds):
        timed = _Readers()
        _, pool = await _service(sizes, 1, requests=True, into=timed)
        # The k-th request sent is the k-th resize the pool saw.
        delays += [
            (seen - sent) * 1000 for sent, seen in zip(timed.sent, pool.resized, strict=False)
        ]
    p50 = percentile(delays, 50) if delays else float("nan")
    p99 = percentile(delays, 99) if delays else float("nan")
    w = sizes.service_workers
    return [
        Line(
            section="service",
            name=f"throughput, one reader attached / none ({w} workers, no-op jobs)",
            value=kept_one,
            unit="x",
            target=">= 0.80x",
            met=kept_one >= 0.8,
            detail=(
                f"{median(rates['one']):,.0f} vs {median(rates['none']):,.0f} jobs/s; "
                f"{one.gaps} resyncs"
            ),
        ),
        Line(
            section="service",
            name=f"throughput, {many} readers attached / none",
            value=kept_many,
            unit="x",
            target=">= 0.60x",
            met=kept_many >= 0.6,
            detail=f"{median(rates['many']):,.0f} vs {median(rates['none']):,.0f} jobs/s",
        ),
        Line(
            section="service",
            name="lines a reader parsed per second",
            value=one.lines / one.seconds if one.seconds else 0.0,
            unit="/s",
            detail="events and snapshots, through events.from_dict and wire.snapshot_from_dict",
        ),
        Line(
            section="service",
            name="control request (resize) to its effect in the pool, p50",
            value=p50,
            unit="ms",
            detail=f"{len(delays)} requests, one reader attached, jobs flowing",
        ),
        Line(
            section="service",
            name="control request (resize) to its effect in the pool, p99",
            value=p99,
            unit="ms",
            target="< 50 ms",
            met=p99 < 50,
            detail=f"worst {max(delays):.1f} ms" if delays else "",
        ),
    ]


# --- the readers' process -----------------------------------------------------------


async def _hello(path: str, role: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 24)
    writer.write(json.dumps({"hello": "wpool", "version": 1, "role": role}).encode() + b"\n")
    for _ in range(2):
        json.loads(await reader.readline())  # the welcome and the first snapshot
    return reader, writer


async def _read(reader: asyncio.StreamReader, counts: dict[str, int]) -> None:
    """One reader: parse every line until the end of the stream, as a dashboard would."""
    while line := await reader.readline():
        message = json.loads(line)
        kind = message["type"]
        if kind == "snapshot":
            wire.snapshot_from_dict(message["snapshot"])
        elif kind == "gap":
            counts["gaps"] += 1
        else:
            events.from_dict(message)
        counts["lines"] += 1


async def _control(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    interval: float,
    workers: int,
    sent: list[float],
) -> None:
    """Resize by one, up and down, every ``interval`` seconds, noting when each was sent."""

    async def drain() -> None:  # its own stream, read and dropped: it must not fall behind
        while await reader.read(1 << 16):
            pass

    draining = asyncio.create_task(drain())
    number = 0
    while not draining.done():
        number += 1
        request = {"id": number, "method": "resize", "params": {"workers": workers + number % 2}}
        sent.append(time.monotonic())
        writer.write(json.dumps(request).encode() + b"\n")
        await asyncio.sleep(interval)


async def _readers_main(args: argparse.Namespace) -> None:
    counts = {"lines": 0, "gaps": 0}
    sent: list[float] = []
    readers = await asyncio.gather(*(_hello(args.socket, "read") for _ in range(args.readers)))
    tasks = [asyncio.create_task(_read(reader, counts)) for reader, _ in readers]
    if args.requests is not None:
        reader, writer = await _hello(args.socket, "control")
        tasks.append(
            asyncio.create_task(_control(reader, writer, args.requests, args.workers, sent))
        )
    print("ready", flush=True)
    start = time.perf_counter()
    await asyncio.gather(*tasks)  # until the service's pool stops
    seconds = time.perf_counter() - start
    report = {"lines": counts["lines"], "gaps": counts["gaps"], "seconds": seconds, "sent": sent}
    print(json.dumps(report), flush=True)


def main(argv: list[str] | None = None) -> None:
    """The readers' process: ``--readers`` clients, and optionally one that sends requests."""
    parser = argparse.ArgumentParser(prog="python -m bench.service")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--readers", type=int, default=1)
    parser.add_argument("--requests", type=float, help="seconds between two resize requests")
    parser.add_argument("--workers", type=int, default=8, help="the pool's size, to resize around")
    asyncio.run(_readers_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
