"""Memory of ``wpool-tui run`` on a job file of a million lines: it must stay flat.

The program reads a job file as the queue has room (never all at once). The
figure is the peak resident set (``VmHWM``) of a real ``wpool-tui run
--headless`` on a file of ``jobfile_lines`` JSON lines (each job a no-op
coroutine), less that of the same run on a file a thousandth of the size:
what the file's length costs. Its events go to ``/dev/null``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pool import Job, JobContext

from .measure import Line, Sizes

__all__ = ("noop", "peak_rss_mb", "run")

ROOT = Path(__file__).resolve().parent.parent


async def noop(job: Job, ctx: JobContext) -> None:
    """The handler of every job of the benchmark."""


def peak_rss_mb(lines: int, folder: str) -> tuple[float, float, int]:
    """Run ``wpool-tui run`` on a file of ``lines`` jobs; its peak RSS (MB), seconds, file size."""
    path = os.path.join(folder, f"jobs-{lines}.jsonl")
    with open(path, "w", encoding="utf-8") as file:
        for n in range(lines):
            file.write(f'{{"id": "job-{n}", "payload": "{n}"}}\n')
    command = [sys.executable, "-c", _PEAK, "run", "--headless", "--handler", "bench.jobfile:noop"]
    command += ["--jobs", path, "--unfinished", os.path.join(folder, "left.jsonl")]
    began = time.perf_counter()
    with open(os.devnull, "w") as null:
        done = subprocess.run(
            command,
            cwd=ROOT,
            stdout=null,
            capture_output=False,
            check=False,
            stderr=subprocess.PIPE,
            text=True,
        )
    seconds = time.perf_counter() - began
    last = done.stderr.rstrip().rpartition("\n")[2]
    if done.returncode != 0 or not last.startswith("VmHWM:"):
        raise RuntimeError(f"wpool-tui run exited {done.returncode}: {done.stderr}")
    return int(last.split()[1]) / 1e3, seconds, os.path.getsize(path)


# The program's own peak, as it ends: VmHWM is its address space's, begun at
# exec (a child's ru_maxrss would count the benchmark's own memory, from
# before the exec).
_PEAK = """
import sys
from tui.cli import main
status = main(sys.argv[1:])
with open("/proc/self/status") as status_file:
    print(next(line for line in status_file if line.startswith("VmHWM:")).strip(), file=sys.stderr)
sys.exit(status)
"""


async def run(sizes: Sizes) -> list[Line]:
    """Peak memory of a run on a big file, against one on a file a thousand times smaller."""
    with tempfile.TemporaryDirectory() as folder:
        small, _, _ = await asyncio.to_thread(peak_rss_mb, sizes.jobfile_lines // 1000, folder)
        big, seconds, size = await asyncio.to_thread(peak_rss_mb, sizes.jobfile_lines, folder)
    growth = big - small
    return [
        Line(
            section="jobfile",
            name=f"peak resident memory of wpool-tui run on {sizes.jobfile_lines:,} lines",
            value=big,
            unit="MB",
            target="",
            met=None,
            detail=f"a {size / 1e6:.0f} MB file with an id a line, run in {seconds:.0f} s",
        ),
        Line(
            section="jobfile",
            name="what the file's length adds (against a file of a thousandth)",
            value=growth,
            unit="MB",
            target="< 40 MB",
            met=growth < 40,
            detail=f"{small:.1f} MB for {sizes.jobfile_lines // 1000:,} lines",
        ),
    ]
