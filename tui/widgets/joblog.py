"""The job log: how each job ended, newest at the bottom, bounded."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from ..state import LOG_LIMIT, DashboardState, LogEntry
from .format import duration

__all__ = ("JobLog",)

_PER_FRAME = 40
"""The most rows one frame adds; a busier frame shows only its newest outcomes."""

_SLACK = 200
"""Rows the table may hold beyond ``LOG_LIMIT`` before it is rebuilt."""

_OUTCOME_STYLE = {
    "succeeded": "green",
    "failed": "bold red",
    "retrying": "magenta",
    "timed out": "dark_orange",
    "cancelled": "yellow",
    "abandoned": "bold red",
    "rejected": "red",
}


class JobLog(DataTable[Text]):
    """A table of job outcomes that follows the tail unless scrolled back."""

    DEFAULT_CSS = """
    JobLog {
        height: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._added = 0
        self._rows = 0
        self._keys: list[str] = []

    def on_mount(self) -> None:
        for label, width in (
            ("time", 8),
            ("job", 18),
            ("worker", 6),
            ("outcome", 9),
            ("took", 7),
            ("error", None),
        ):
            self.add_column(label, width=width)

    def show(self, state: DashboardState) -> None:
        """Append the entries added to ``state.log`` since the last call, in one batch.

        The table is rebuilt rather than trimmed row by row (removing a row
        costs about as much as rebuilding it), and a frame adds at most
        ``_PER_FRAME`` rows: the newest.
        """
        fresh = state.log_total - self._added
        if fresh <= 0:
            return
        self._added = state.log_total
        following = self.scroll_y >= self.max_scroll_y
        origin = state.started_at or 0.0
        # Nobody reads more than a screenful a frame: past that, only the newest
        # are drawn (the state keeps them all, up to its bound).
        count = min(fresh, _PER_FRAME)
        if len(self._keys) + count > LOG_LIMIT + _SLACK:
            # Start over: cheaper than removing old rows one by one. Under light
            # load the whole bounded log is drawn again; under heavy load only
            # this frame's newest rows, so that no frame does much more work.
            self.clear()
            self._keys.clear()
            if fresh <= _PER_FRAME:
                count = min(len(state.log), LOG_LIMIT)
        entries = list(state.log)[-count:]
        for entry in entries:
            self._rows += 1
            key = f"{self._rows}:{entry.job_id}"
            self._keys.append(key)
            self.add_row(*_cells(entry, origin), key=key)
        if following:
            self.scroll_end(animate=False, immediate=True)

    def entry_key(self, row: int) -> str | None:
        """The job id shown in a row."""
        if 0 <= row < len(self._keys):
            return self._keys[row].split(":", 1)[1]
        return None


def _cells(entry: LogEntry, origin: float) -> tuple[Text, ...]:
    style = _OUTCOME_STYLE.get(entry.outcome, "")
    return (
        Text(f"{max(0.0, entry.at - origin):7.1f}s", style="dim"),
        Text(entry.job_id),
        Text(entry.worker_id or "-"),
        Text(entry.outcome, style=style),
        Text(duration(entry.duration)),
        Text(entry.error, style="red" if entry.error else "", no_wrap=True, overflow="ellipsis"),
    )
