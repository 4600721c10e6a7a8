"""The dashboard in a real terminal: what it costs idle, and what it costs a busy run.

Both run ``wpool-tui`` as a separate program on a pseudo-terminal of 120x40
(its screen is read and thrown away, as a terminal emulator would draw it),
so that everything a user pays for is in the figure: Textual's rendering,
the writes to the terminal, the pool and its jobs.

- **idle**: the demo at 0.5 jobs a second; after a warm-up, the CPU time the
  program uses (``/proc/<pid>/stat``, user + system) over ``idle_seconds`` of
  wall time, as a share of one core.
- **busy**: ``wpool-tui run --shell`` of ``true`` commands, once headless
  and once with the dashboard, in alternating order; each is timed from its
  start until its joblog holds every job. The figure is the dashboard's rate
  over the headless rate.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

from .measure import Line, Sizes, median

__all__ = ("run",)

SIZE = (120, 40)
"""Columns and rows of the pseudo-terminal."""

IDLE_RATE = 0.5
"""Demo jobs a second in the idle figure: an operator's pool left open all day."""

WARM_UP = 3.0
"""Seconds the program runs before the idle measurement starts."""


def _program() -> list[str]:
    found = shutil.which("wpool-tui", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError("wpool-tui is not installed beside this Python")
    return [found]


class _Terminal:
    """A program on a pseudo-terminal whose screen output is read and discarded."""

    def __init__(self, argv: list[str], cwd: str) -> None:
        master, slave = pty.openpty()
        columns, rows = SIZE
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTUAL_")}
        env.pop("NO_COLOR", None)
        env["TERM"] = "xterm-256color"
        self.process = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self._master = master
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                if not os.read(self._master, 65536):
                    return
            except OSError:
                return

    def cpu_seconds(self) -> float:
        """User and system CPU time the program has used so far."""
        with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def type(self, keys: bytes) -> None:
        os.write(self._master, keys)

    def close(self, within: float = 15.0) -> None:
        """Ask it to stop (SIGTERM: the graceful shutdown), then make sure it has."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(within)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        os.close(self._master)
        self._reader.join(5.0)


def _idle_share(sizes: Sizes, folder: str) -> float:
    argv = [*_program(), "--rate", str(IDLE_RATE), "--hang-rate", "0", "--seed", "3"]
    terminal = _Terminal(argv, folder)
    try:
        time.sleep(min(WARM_UP, sizes.idle_seconds))  # not a timer of any test: a warm-up
        start_cpu, start = terminal.cpu_seconds(), time.perf_counter()
        time.sleep(sizes.idle_seconds)
        used = terminal.cpu_seconds() - start_cpu
        return used / (time.perf_counter() - start)
    finally:
        terminal.close()


def _joblog_lines(path: Path) -> int:
    try:
        with path.open("rb") as log:
            return sum(1 for _ in log) - 1  # the header
    except FileNotFoundError:
        return 0


def _busy_rate(sizes: Sizes, folder: str, *, dashboard: bool) -> float:
    jobs = Path(folder, "jobs.txt")
    joblog = Path(folder, f"joblog-{'ui' if dashboard else 'headless'}.tsv")
    joblog.unlink(missing_ok=True)
    argv = [*_program(), "run", "--shell", "--jobs", str(jobs), "--joblog", str(joblog)]
    start = time.perf_counter()
    if not dashboard:
        done = subprocess.run(
            [*argv, "--headless"], cwd=folder, capture_output=True, check=False, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(f"the headless run failed: {done.stderr.decode()[-500:]}")
        if _joblog_lines(joblog) != sizes.busy_jobs:
            raise RuntimeError(f"the headless run logged {_joblog_lines(joblog)} jobs")
        return sizes.busy_jobs / (time.perf_counter() - start)
    terminal = _Terminal(argv, folder)
    try:
        deadline = start + 300
        while _joblog_lines(joblog) < sizes.busy_jobs:
            if terminal.process.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError("the dashboard run ended or stalled before every job")
            time.sleep(0.01)  # a poll of the joblog, not a timer: the figure is the total time
        elapsed = time.perf_counter() - start
        terminal.type(b"q")  # every job has ended: q quits
        return sizes.busy_jobs / elapsed
    finally:
        terminal.close()


def _measure(sizes: Sizes) -> tuple[list[float], list[tuple[float, float]]]:
    with tempfile.TemporaryDirectory(prefix="wpool-bench-") as folder:
        Path(folder, "jobs.txt").write_text("true\n" * sizes.busy_jobs)
        idle = [_idle_share(sizes, folder) for _ in range(max(1, sizes.rounds // 2))]
        busy = []
        for index in range(sizes.rounds):
            order = (False, True) if index % 2 else (True, False)
            rates = {ui: _busy_rate(sizes, folder, dashboard=ui) for ui in order}
            busy.append((rates[True], rates[False]))
        return idle, busy


async def run(sizes: Sizes) -> list[Line]:
    """The idle share of a core, and the busy run's rate with the dashboard over without."""
    idle, busy = await asyncio.to_thread(_measure, sizes)
    share = median(idle) * 100
    kept = median([ui / headless for ui, headless in busy])
    return [
        Line(
            section="terminal",
            name=f"CPU of the dashboard on the demo at {IDLE_RATE:g} jobs/s, 120x40",
            value=share,
            unit="%",
            target="<= 3% (stretch 1%)",
            met=share <= 3.0,
            detail=f"share of one core over {sizes.idle_seconds:g} s, median of {len(idle)}",
        ),
        Line(
            section="terminal",
            name=f"run --shell of {sizes.busy_jobs:,} true: with the dashboard / headless",
            value=kept,
            unit="x",
            target=">= 0.70x",
            met=kept >= 0.7,
            detail=(
                f"{median([b[0] for b in busy]):,.0f} vs {median([b[1] for b in busy]):,.0f} jobs/s"
            ),
        ),
    ]
