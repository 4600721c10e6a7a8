"""Formatting shared by the widgets: durations, bars, sparklines, colours."""

from __future__ import annotations

from pool import PoolPhase, WorkerState

__all__ = ("PHASE_STYLE", "STATE_STYLE", "bar", "duration", "sparkline")

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
