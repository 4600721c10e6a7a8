"""The table ``make bench`` prints, and the page it writes to ``docs/benchmarks.md``."""

from __future__ import annotations

import datetime
import os
import platform
import sys

from .measure import Line

__all__ = ("format_value", "machine", "page", "table")


def format_value(line: Line) -> str:
    """A line's figure with its unit."""
    if line.unit == "x":
        return f"{line.value:.2f}x"
    if line.unit == "/s":
        return f"{line.value:,.0f}/s"
    if line.unit == "":
        return f"{line.value:.2f}"
    if line.unit == "%":
        return f"{line.value:.1f}%"
    return f"{line.value:.1f} {line.unit}"


def table(lines: list[Line]) -> str:
    """The results as a Markdown table: one line per figure, with its target and verdict."""
    rows = [
        "| benchmark | figure | value | target | verdict | behind it |",
        "|---|---|---:|---|---|---|",
    ]
    for line in lines:
        rows.append(
            f"| {line.section} | {line.name} | {format_value(line)} | {line.target} "
            f"| {line.verdict} | {line.detail} |"
        )
    return "\n".join(rows)


def machine() -> str:
    """The machine and Python, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for row in info:
                if row.startswith("model name"):
                    cpu = row.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()} ({sys.implementation.name})"
    )


def page(lines: list[Line], command: str, seconds: float, notes: str) -> str:
    """``docs/benchmarks.md``: the table, how it was made, and the notes below it."""
    today = datetime.date.today().isoformat()
    met = sum(1 for line in lines if line.met)
    targets = sum(1 for line in lines if line.met is not None)
    return (
        "# Benchmarks\n\n"
        "Written by `make bench`; the numbers below are the ones it printed.\n\n"
        f"- command: `{command}`\n"
        f"- machine: {machine()}\n"
        f"- date: {today}; the run took {seconds:.0f} s\n"
        f"- targets met: {met} of {targets}\n\n"
        f"{table(lines)}\n\n{notes}"
    )
