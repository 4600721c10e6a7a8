"""``python -m bench``: run every benchmark, print the table, write ``docs/benchmarks.md``."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from . import celery, dashboard, dispatch, jobfile, latency, memory, service, shutdown, terminal
from .measure import FULL, TINY, Line, Sizes
from .report import page, table

__all__ = ("SUITES", "main", "run_all")

SUITES: dict[str, Callable[[Sizes], Awaitable[list[Line]]]] = {
    "dispatch": dispatch.run,
    "latency": latency.run,
    "shutdown": shutdown.run,
    "dashboard": dashboard.run,
    "memory": memory.run,
    "terminal": terminal.run,
    "jobfile": jobfile.run,
    "service": service.run,
    "celery": celery.run,
}
"""Every benchmark, in the order the table shows them."""

NOTES = Path(__file__).with_name("NOTES.md")
"""What each peer does and what the profiles showed: copied below the table."""


async def run_all(sizes: Sizes, only: list[str] | None = None) -> list[Line]:
    """Run the benchmarks (all, or those named in ``only``) and return their lines."""
    lines: list[Line] = []
    for name, suite in SUITES.items():
        if only and name not in only:
            continue
        print(f"running {name}...", file=sys.stderr, flush=True)
        lines.extend(await suite(sizes))
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, and write the page unless ``--no-write``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--only", action="append", choices=list(SUITES), help="one benchmark")
    parser.add_argument("--out", default="docs/benchmarks.md", help="where to write the page")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--command", help="the command to name on the page (make bench)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    lines = asyncio.run(run_all(TINY if args.tiny else FULL, args.only))
    seconds = time.perf_counter() - start
    print(table(lines))
    if not args.no_write:
        given = sys.argv[1:] if argv is None else argv
        command = args.command or shlex.join(["python", "-m", "bench", *given])
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(page(lines, command, seconds, NOTES.read_text()))
        print(f"\nwritten to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
