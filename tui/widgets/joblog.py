"""The job log: how each job ended, newest at the bottom, following the tail.

:class:`JobLog` is the table; :class:`LogView` puts the filter line (``/``)
over it and says in its title what the log shows: whether it follows the
newest outcome or holds still where the operator scrolled back, and how many
rows a filter lets through.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.scrollbar import ScrollDown, ScrollTo, ScrollUp
from textual.widgets import DataTable, Input

from ..logfilter import FIELDS, LogFilter
from ..state import LOG_LIMIT, DashboardState, LogEntry, Outcome
from .field import TypedInput
from .format import duration, plain

__all__ = ("JobLog", "LogView")

_PER_FRAME = 40
"""The most rows one frame adds; a busier frame shows only its newest outcomes."""

_SLACK = 200
"""Rows the table may hold beyond ``LOG_LIMIT`` before it is rebuilt."""

_OUTCOME_STYLE = {
    Outcome.SUCCEEDED: "green",
    Outcome.FAILED: "bold red",
    Outcome.RETRYING: "magenta",
    Outcome.TIMED_OUT: "dark_orange",
    Outcome.CANCELLED: "yellow",
    Outcome.ABANDONED: "bold red",
    Outcome.REJECTED: "red",
}

_JOB_WIDTH = 26
"""The job column: the id, and a shell job's command after it."""


def entry_fields(entry: LogEntry) -> dict[str, str]:
    """A log entry's fields, as the filter names them."""
    return {
        "id": entry.job_id,
        "command": entry.label,
        "worker": entry.worker_id or "",
        "outcome": entry.outcome.value,
        "error": entry.error,
    }


class JobLog(DataTable[Text]):
    """A table of job outcomes that follows the newest unless scrolled back.

    Scrolling back (up, page up, home, the mouse wheel or the scroll bar)
    holds the view where it is; ``end`` (or ``G``, or moving down onto the
    last row) follows the newest again. When the table is trimmed or
    rebuilt, a held view stays on the same entries.
    """

    BINDINGS = [
        Binding("end,G", "follow", "Follow", id="log-follow", show=False),
        Binding("home", "oldest", "Oldest", id="log-oldest", show=False),
    ]

    following: reactive[bool] = reactive(True, init=False)
    """Whether the view keeps the newest outcome in sight."""

    class StatusChanged(Message):
        """What the log shows changed: its title should say so."""

        def __init__(self, status: str) -> None:
            super().__init__()
            self.status = status

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._seen = 0  # state.log_total when last shown
        self._entries: list[LogEntry] = []  # the rows, in order
        self._serials: list[int] = []  # each row's place in the whole log, ascending
        self._next_key = 0
        self._filter = LogFilter.parse("")
        self._refilter = False
        self._total = 0  # entries the state's log holds
        self._origin = 0.0  # times are shown from the pool's start
        self._status = ""

    def on_mount(self) -> None:
        for label, width in (
            ("time", 8),
            ("job", _JOB_WIDTH),
            ("worker", 6),
            ("outcome", 9),
            ("took", 7),
            ("error", None),
        ):
            self.add_column(label, width=width)
        self._update_status()

    # --- what it shows ---------------------------------------------------------

    def set_filter(self, log_filter: LogFilter) -> None:
        """Show only the entries ``log_filter`` lets through (from the next :meth:`show`)."""
        if log_filter != self._filter:
            self._filter = log_filter
            self._refilter = True

    @property
    def filtered(self) -> bool:
        """Whether a filter hides some entries."""
        return bool(self._filter)

    def show(self, state: DashboardState) -> None:
        """Add the entries that ``state.log`` gained since the last call, in one batch.

        The table is rebuilt rather than trimmed row by row (removing a row
        costs about as much as rebuilding it), and a frame adds at most
        ``_PER_FRAME`` rows: the newest.
        """
        fresh = state.log_total - self._seen
        self._total = len(state.log)
        if fresh <= 0 and not self._refilter:
            return
        self._seen = state.log_total
        self._origin = state.started_at or 0.0
        first = state.log_total - len(state.log)  # the serial of state.log[0]
        log_filter = self._filter
        if self._refilter or len(self._entries) + min(fresh, _PER_FRAME) > LOG_LIMIT + _SLACK:
            # Start over: cheaper than removing old rows one by one. Under light
            # load the whole bounded log is drawn again; under heavy load only
            # this frame's newest rows, so that no frame does much more work.
            self._refilter = False
            count = len(state.log) if fresh <= _PER_FRAME else _PER_FRAME
            self._rebuild(state.log, first, count)
        else:
            count = min(fresh, _PER_FRAME)
            start = len(state.log) - count
            self._append(
                (first + start + i, entry)
                for i, entry in enumerate(list(state.log)[start:])
                if log_filter.matches(entry_fields(entry))
            )
        if self.following:
            self._to_tail()
        self._update_status()

    def _append(self, rows: Iterable[tuple[int, LogEntry]]) -> None:
        for serial, entry in rows:
            self._next_key += 1
            self._serials.append(serial)
            self._entries.append(entry)
            self.add_row(*_cells(entry, self._origin), key=str(self._next_key))

    def _rebuild(self, log: Iterable[LogEntry], first: int, count: int) -> None:
        # A held view stays on the entry at its top, and the cursor on its entry.
        top = self._serial_at(int(self.scroll_y))
        cursor = self._serial_at(self.cursor_row)
        offset = self.cursor_row - int(self.scroll_y)
        entries = list(log)
        start = len(entries) - count
        self.clear()
        self._serials.clear()
        self._entries.clear()
        self._append(
            (first + start + i, entry)
            for i, entry in enumerate(entries[start:])
            if self._filter.matches(entry_fields(entry))
        )
        if not self.following and self.row_count:
            row = self._row_of(cursor)
            self.move_cursor(row=row, animate=False, scroll=False)
            y = self._row_of(top) if top is not None else max(0, row - offset)
            self.call_after_refresh(self.scroll_to, y=y, animate=False)

    def _serial_at(self, row: int) -> int | None:
        return self._serials[row] if 0 <= row < len(self._serials) else None

    def _row_of(self, serial: int | None) -> int:
        """The row of the entry ``serial``, or of the first one after it (trimmed: the top)."""
        if serial is None:
            return 0
        return min(bisect_left(self._serials, serial), max(0, self.row_count - 1))

    def entry_key(self, row: int) -> str | None:
        """The job id shown in a row."""
        if 0 <= row < len(self._entries):
            return self._entries[row].job_id
        return None

    # --- following and holding -------------------------------------------------

    def _to_tail(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False, scroll=False)
        self.scroll_end(animate=False)

    def hold(self) -> None:
        """Stop following: the view stays where it is."""
        self.following = False

    def action_follow(self) -> None:
        """Follow the newest outcome again."""
        self.following = True

    def action_oldest(self) -> None:
        """Go to the oldest row the log keeps, and hold there."""
        self.hold()
        self.move_cursor(row=0, animate=False)
        self.scroll_home(animate=False)

    def watch_following(self, following: bool) -> None:
        if following:
            self._to_tail()
        self._update_status()

    def action_cursor_up(self) -> None:
        self.hold()
        super().action_cursor_up()

    def action_page_up(self) -> None:
        self.hold()
        super().action_page_up()

    def action_scroll_top(self) -> None:
        self.action_oldest()

    def action_cursor_down(self) -> None:
        super().action_cursor_down()
        self._follow_at_last_row()

    def action_page_down(self) -> None:
        super().action_page_down()
        self._follow_at_last_row()

    def action_scroll_bottom(self) -> None:
        self.action_follow()

    def _follow_at_last_row(self) -> None:
        if not self.following and self.cursor_row >= self.row_count - 1:
            self.following = True

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.hold()

    def on_click(self, event: events.Click) -> None:
        self.hold()  # a row picked out is a row to stay on

    def on_scroll_up(self, event: ScrollUp) -> None:
        self.hold()

    def on_scroll_to(self, event: ScrollTo) -> None:
        if event.y is not None and event.y < self.max_scroll_y:
            self.hold()

    def on_scroll_down(self, event: ScrollDown) -> None:
        pass  # scrolling down by hand still holds: end follows

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if not self.following:
            self._update_status()

    def _update_status(self) -> None:
        rows = self.row_count
        parts = []
        if self._filter:
            parts.append(f"filter {self._filter.text} · {rows} of {self._total} shown")
        else:
            parts.append(f"{rows} outcome{'s' if rows != 1 else ''}")
        if self.following:
            parts.append("following")
        else:
            top = min(rows, int(self.scroll_y) + 1)
            parts.append(f"paused at row {top} of {rows} · end follows again")
        status = " · ".join(parts)
        if status != self._status:
            self._status = status
            self.post_message(self.StatusChanged(status))


def _cells(entry: LogEntry, origin: float) -> tuple[Text, ...]:
    job = Text(plain(entry.job_id), no_wrap=True, overflow="ellipsis")
    if entry.label and entry.label != entry.job_id:
        job.append(" " + plain(entry.label), style="cyan")
    return (
        Text(f"{max(0.0, entry.at - origin):7.1f}s", style="dim"),
        job,
        Text(entry.worker_id or "-"),
        Text(entry.outcome.value, style=_OUTCOME_STYLE[entry.outcome]),
        Text(duration(entry.duration)),
        Text(
            plain(entry.error, limit=500),
            style="red" if entry.error else "",
            no_wrap=True,
            overflow="ellipsis",
        ),
    )


class LogView(Vertical):
    """The job log under its title line, with the filter line (``/``) over it."""

    DEFAULT_CSS = """
    LogView {
        height: 1fr;
        border-top: solid $panel-lighten-1;
        border-title-align: left;
        border-title-color: $text-muted;
    }
    LogView > #log-filter {
        display: none;
        height: 1;
        border: none;
        padding: 0 1;
    }
    LogView.-filtering > #log-filter {
        display: block;
    }
    LogView > JobLog {
        height: 1fr;
        overflow-x: hidden;
    }
    """

    BINDINGS = [Binding("escape", "clear_filter", "Clear filter", id="log-clear-filter")]

    def compose(self) -> ComposeResult:
        yield TypedInput(
            placeholder=f"filter: words, or {', '.join(f'{f}:' for f in FIELDS)}"
            " (enter keeps it, escape clears it)",
            id="log-filter",
        )
        yield JobLog(id="log")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._status = ""
        self._error = ""

    def on_mount(self) -> None:
        self.border_title = "log"

    def open_filter(self) -> None:
        """Show the filter line and put the cursor in it."""
        self.add_class("-filtering")
        field = self.query_one("#log-filter", Input)
        field.cursor_blink = self.app.animation_level != "none"
        field.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            return self.has_class("-filtering")
        return True

    def action_clear_filter(self) -> None:
        """Drop the filter: every row again, and the cursor back on the log."""
        self.query_one("#log-filter", Input).value = ""
        self.query_one(JobLog).set_filter(LogFilter.parse(""))
        self._error = ""
        self.remove_class("-filtering")
        self.query_one(JobLog).focus()

    @on(Input.Changed, "#log-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        log = self.query_one(JobLog)
        try:
            log_filter = LogFilter.parse(event.value)
        except ValueError as exc:
            # A line that does not parse filters nothing, and says why.
            log.set_filter(LogFilter.parse(""))
            self._error = f"filter: {exc}"
        else:
            log.set_filter(log_filter)
            self._error = ""
        self.post_message(self.FilterChanged())

    @on(Input.Submitted, "#log-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value.strip():
            self.action_clear_filter()
            return
        self.query_one(JobLog).focus()

    @on(JobLog.StatusChanged)
    def _status_changed(self, event: JobLog.StatusChanged) -> None:
        event.stop()
        self._status = event.status
        self._show_title()

    def _show_title(self) -> None:
        title = Text("log · ")
        if self._error:
            title.append(plain(self._error, limit=200), style="bold red")
            title.append(" · ")
        title.append(plain(self._status, limit=300))
        self.border_title = title

    class FilterChanged(Message):
        """The filter changed: the log wants a frame drawn."""
