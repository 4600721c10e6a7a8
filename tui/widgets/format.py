"""Formatting shared by the widgets: durations, bars, sparklines, colours."""

from __future__ import annotations

import unicodedata

from pool import PoolPhase, WorkerState

__all__ = ("PHASE_STYLE", "STATE_STYLE", "bar", "clock", "duration", "plain", "sparkline")

_SPARKS = "▁▂▃▄▅▆▇█"

STATE_STYLE = {
    WorkerState.IDLE: "dim",
    WorkerState.BUSY: "bold green",
    WorkerState.RETIRING: "bold yellow",
    WorkerState.CRASHED: "bold white on red",
    WorkerState.RESTARTING: "bold magenta",
    WorkerState.STOPPED: "dim italic",
}
"""A distinct look for each worker state."""

PHASE_STYLE = {
    PoolPhase.CREATED: "dim",
    PoolPhase.STARTING: "cyan",
    PoolPhase.RUNNING: "bold green",
    PoolPhase.PAUSED: "bold yellow",
    PoolPhase.DRAINING: "bold yellow",
    PoolPhase.CANCELLING: "bold dark_orange",
    PoolPhase.FORCING: "bold red",
    PoolPhase.STOPPED: "bold blue",
    PoolPhase.FAILED: "bold white on red",
}


# Characters that would move the cursor, change the terminal's state or
# reorder the line if written as they are: C0 and C1 controls and DEL
# (category Cc), and the bidirectional overrides and isolates.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_LINE_BREAKS = frozenset("\n\r\u2028\u2029\x85\x0b\x0c")


def plain(text: str, *, lines: bool = False, limit: int | None = None) -> str:
    """``text`` made safe to show as it is: every control character visible.

    Text from jobs, handlers and users (ids, commands, errors, output, what
    is typed) is always shown as plain text, never as markup (callers put
    it in a ``rich.text.Text`` or ``Content``); this makes what would act on
    the terminal visible instead: ``\x1b`` shows as ``\\x1b``. Tabs become
    spaces. Line breaks become ``⏎`` unless ``lines`` keeps them (``\r\n``
    and the other breaks then become plain ``\n``). ``limit`` cuts the text
    to that many characters, ending in ``…``.
    """
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    if text.isprintable():
        return text  # the common case: nothing to replace
    out = []
    for char in text.replace("\r\n", "\n"):
        if char in _LINE_BREAKS:
            out.append("\n" if lines else "⏎")
        elif char == "\t":
            out.append("    ")
        elif char in _BIDI or unicodedata.category(char) == "Cc":
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


def duration(seconds: float | None) -> str:
    """A short duration: ``850ms``, ``12.3s``, ``4m05s``, ``2h03m``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 1.0:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60.0:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def clock(seconds: float) -> str:
    """A running clock to the second: ``42s``, ``4m05s``, ``2h03m``.

    Whole seconds: a clock in tenths changes every frame, and each change
    is a repaint.
    """
    if seconds < 60.0:
        return f"{int(seconds)}s"
    return duration(seconds)


def bar(fraction: float, width: int) -> str:
    """A bar of ``width`` cells filled to ``fraction`` (clamped to 0..1), in eighths."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part] if part else ""
    return ("█" * full + partial).ljust(width)


def sparkline(values: list[int], width: int) -> str:
    """The last ``width`` values as a sparkline, scaled to the largest."""
    tail = values[-width:]
    top = max(tail, default=0)
    if top <= 0:
        return _SPARKS[0] * len(tail)
    return "".join(_SPARKS[min(7, (v * 8) // (top + 1))] if v else " " for v in tail)
