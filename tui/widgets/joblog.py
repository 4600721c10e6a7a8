"""The job log: how each job ended, newest at the bottom, following the tail.

:class:`JobLog` is the table; :class:`LogView` puts the filter line (``/``)
over it and says in its title what the log shows: whether it follows the
newest outcome or holds still where the operator scrolled back, and how many
rows a filter lets through.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollTo, ScrollUp
from textual.strip import Strip
from textual.widgets import Input

from ..logfilter import FIELDS, LogFilter
from ..state import LOG_LIMIT, DashboardState, LogEntry, Outcome
from .field import TypedInput, focus_now
from .format import duration, plain

__all__ = ("JobLog", "LogView")

_PER_FRAME = 40
"""The most rows one frame adds; a busier frame shows only its newest outcomes."""

_OUTCOME_STYLE = {
    Outcome.SUCCEEDED: "green",
    Outcome.FAILED: "bold red",
    Outcome.RETRYING: "magenta",
    Outcome.TIMED_OUT: "dark_orange",
    Outcome.CANCELLED: "yellow",
    Outcome.ABANDONED: "bold red",
    Outcome.REJECTED: "red",
}


def entry_fields(entry: LogEntry) -> dict[str, str]:
    """A log entry's fields, as the filter names them."""
    return {
        "id": entry.job_id,
        "command": entry.label,
        "worker": entry.worker_id or "",
        "outcome": entry.outcome.value,
        "error": entry.error,
    }


class JobLog(ScrollView, can_focus=True):
    """A table of job outcomes that follows the newest unless scrolled back.

    Scrolling back (up, page up, home, the mouse wheel or the scroll bar)
    holds the view where it is; ``end`` (or ``G``, or moving down onto the
    last row) follows the newest again. When old rows are trimmed or the
    rows are filtered anew, a held view stays on the same entries.

    A line-API widget: each row is rendered once into a strip, kept while
    the row is, and a frame draws only the strips in sight. (A ``DataTable``
    renders every cell of every row in sight again whenever the log moves,
    which cost most of a busy dashboard's frame.)
    """

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,ctrl+home", "oldest", "Oldest", id="log-oldest", show=False),
        Binding("end,G,ctrl+end", "follow", "Follow", id="log-follow", show=False),
        Binding("enter", "select", "Details", id="log-details", show=False),
    ]

    COMPONENT_CLASSES = {"job-log--header", "job-log--odd", "job-log--cursor"}
    """The header row, every other row, and the selected row."""

    DEFAULT_CSS = """
    JobLog {
        height: 1fr;
        overflow-x: hidden;
        background: $surface;
        & > .job-log--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .job-log--odd {
            background: $surface-lighten-1 50%;
        }
        & > .job-log--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
        }
        &:focus > .job-log--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: bold;
        }
    }
    """

    following: reactive[bool] = reactive(True, init=False)
    """Whether the view keeps the newest outcome in sight."""

    cursor_row: reactive[int] = reactive(0, init=False)
    """The selected row (its job's details are one ``enter`` away)."""

    class StatusChanged(Message):
        """What the log shows changed: its title should say so."""

        def __init__(self, status: str) -> None:
            super().__init__()
            self.status = status

    class Selected(Message):
        """``enter`` (or a click) on a row: show that job's details."""

        def __init__(self, job_id: str) -> None:
            super().__init__()
            self.job_id = job_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._seen = 0  # state.log_total when last shown
        self._entries: list[LogEntry] = []  # the rows, in order
        self._serials: list[int] = []  # each row's place in the whole log, ascending
        self._strips: dict[int, Strip] = {}  # a row's strip, by serial, for ``_strip_width``
        self._strip_width = 0
        self._filter = LogFilter.parse("")
        self._refilter = False
        self._total = 0  # entries the state's log holds
        self._origin = 0.0  # times are shown from the pool's start
        self._status = ""

    def on_mount(self) -> None:
        self._update_status()

    # --- what it shows ---------------------------------------------------------

    @property
    def row_count(self) -> int:
        """How many rows the log holds (those the filter lets through)."""
        return len(self._entries)

    def entry_key(self, row: int) -> str | None:
        """The job id shown in a row."""
        if 0 <= row < len(self._entries):
            return self._entries[row].job_id
        return None

    def row_text(self, row: int) -> list[str]:
        """A row's cells as plain text (time, job, worker, outcome, took, error)."""
        entry = self._entries[row]
        return [cell.plain for cell in _cells(entry, self._origin)]

    def set_filter(self, log_filter: LogFilter) -> None:
        """Show only the entries ``log_filter`` lets through (from the next :meth:`show`)."""
        if log_filter != self._filter:
            self._filter = log_filter
            self._refilter = True

    @property
    def filtered(self) -> bool:
        """Whether a filter hides some entries."""
        return bool(self._filter)

    def restart(self) -> None:
        """The state was made afresh (another pool, another moment of a replay):
        every row is rebuilt from it, and the log follows its newest."""
        self._strips.clear()
        self._entries.clear()
        self._serials.clear()
        self._seen = 0
        self._refilter = True
        self.following = True

    def show(self, state: DashboardState) -> None:
        """Add the entries that ``state.log`` gained since the last call.

        A frame adds at most ``_PER_FRAME`` rows, the newest; rows beyond
        ``LOG_LIMIT`` leave from the top.
        """
        fresh = state.log_total - self._seen
        self._total = len(state.log)
        if fresh <= 0 and not self._refilter:
            return
        self._seen = state.log_total
        self._origin = state.started_at or 0.0
        first = state.log_total - len(state.log)  # the serial of state.log[0]
        log_filter = self._filter
        if self._refilter:
            self._refilter = False
            self._refill(state.log, first)
        else:
            count = min(fresh, _PER_FRAME)
            start = len(state.log) - count
            for i, entry in enumerate(list(state.log)[start:]):
                if log_filter.matches(entry_fields(entry)):
                    self._serials.append(first + start + i)
                    self._entries.append(entry)
            self._trim()
        self._resized()
        if self.following:
            self._to_tail()
        self.refresh()
        self._update_status()

    def _refill(self, log: Iterable[LogEntry], first: int) -> None:
        """Every entry of the log that the filter lets through; a held view stays put."""
        anchor = self._serial_at(int(self.scroll_y))
        cursor = self._serial_at(self.cursor_row)
        self._entries.clear()
        self._serials.clear()
        for i, entry in enumerate(log):
            if self._filter.matches(entry_fields(entry)):
                self._serials.append(first + i)
                self._entries.append(entry)
        self._strips = {
            serial: self._strips[serial] for serial in self._serials if serial in self._strips
        }
        if not self.following:
            self._resized()
            self.cursor_row = self._row_of(cursor)
            self.scroll_to(y=self._row_of(anchor), animate=False, immediate=True, force=True)

    def _trim(self) -> None:
        extra = len(self._entries) - LOG_LIMIT
        if extra <= 0:
            return
        for serial in self._serials[:extra]:
            self._strips.pop(serial, None)
        del self._entries[:extra]
        del self._serials[:extra]
        if not self.following:
            # The rows in sight moved up by ``extra``: so does the view.
            self.scroll_to(
                y=max(0, self.scroll_y - extra), animate=False, immediate=True, force=True
            )
            self.cursor_row = max(0, self.cursor_row - extra)

    def _resized(self) -> None:
        # One line more than the rows: the header, which stays on top.
        self.virtual_size = Size(self.size.width, len(self._entries) + 1)

    def _serial_at(self, row: int) -> int | None:
        return self._serials[row] if 0 <= row < len(self._serials) else None

    def _row_of(self, serial: int | None) -> int:
        """The row of the entry ``serial``, or of the first one after it (trimmed: the top)."""
        if serial is None:
            return 0
        return min(bisect_left(self._serials, serial), max(0, len(self._serials) - 1))

    # --- drawing -----------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if width != self._strip_width:
            self._strips.clear()
            self._strip_width = width
        if y == 0:
            return self._line(_HEADER, self.get_component_rich_style("job-log--header"), width)
        row = int(self.scroll_y) + y - 1
        if not 0 <= row < len(self._entries):
            return Strip.blank(width, self.rich_style)
        if row == self.cursor_row:
            style = self.get_component_rich_style("job-log--cursor")
            return self._line(_cells(self._entries[row], self._origin), style, width, cursor=True)
        serial = self._serials[row]
        strip = self._strips.get(serial)
        if strip is None:
            style = self.rich_style
            if serial % 2:
                style += self.get_component_rich_style("job-log--odd")
            strip = self._line(_cells(self._entries[row], self._origin), style, width)
            self._strips[serial] = strip
        return strip

    def _line(
        self, cells: tuple[Text, ...], base: Style, width: int, *, cursor: bool = False
    ) -> Strip:
        segments = []
        used = 0
        for cell, column in zip(cells, _WIDTHS, strict=True):
            room = (width - used - 1) if column is None else column
            if room <= 0:
                break
            text = cell.copy()
            text.truncate(room, overflow="ellipsis", pad=True)
            # Text.render leaves out the text's own style: it is added here.
            own = text.style if isinstance(text.style, Style) else Style.parse(text.style)
            for segment in text.render(self.app.console):
                if cursor:
                    style = base
                else:
                    style = base + own + segment.style if segment.style else base + own
                segments.append(Segment(segment.text, style))
            segments.append(Segment(" ", base))
            used += room + 1
        return Strip(segments).adjust_cell_length(width, base)

    def watch_cursor_row(self, old: int, new: int) -> None:
        self.refresh()
        if not self.following:
            self._update_status()

    def _show_cursor(self) -> None:
        """Scroll so that the selected row is in sight."""
        top = int(self.scroll_y)
        rows = max(1, self.size.height - 1)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True, force=True)
        elif self.cursor_row >= top + rows:
            self.scroll_to(y=self.cursor_row - rows + 1, animate=False, immediate=True, force=True)

    # --- following and holding -------------------------------------------------

    def _to_tail(self) -> None:
        if self._entries:
            self.cursor_row = len(self._entries) - 1
        self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True, force=True)

    def hold(self) -> None:
        """Stop following: the view stays where it is."""
        self.following = False

    def action_follow(self) -> None:
        """Follow the newest outcome again."""
        self.following = True

    def action_oldest(self) -> None:
        """Go to the oldest row the log keeps, and hold there."""
        self.hold()
        self.cursor_row = 0
        self.scroll_to(y=0, animate=False, immediate=True, force=True)

    def watch_following(self, following: bool) -> None:
        if following:
            self._to_tail()
        self._update_status()

    def action_cursor_up(self) -> None:
        """Select the row above (and hold the view)."""
        self.hold()
        self.cursor_row = max(0, self.cursor_row - 1)
        self._show_cursor()

    def action_cursor_down(self) -> None:
        """Select the row below; on the last row, follow again."""
        if self.following:
            return
        self.cursor_row = min(len(self._entries) - 1, self.cursor_row + 1)
        self._show_cursor()
        self._follow_at_last_row()

    def action_page_up(self) -> None:
        """A page up (and hold the view)."""
        self.hold()
        page = max(1, self.size.height - 2)
        self.cursor_row = max(0, self.cursor_row - page)
        self.scroll_to(y=max(0, self.scroll_y - page), animate=False, immediate=True, force=True)
        self._show_cursor()

    def action_page_down(self) -> None:
        """A page down; on the last row, follow again."""
        if self.following:
            return
        page = max(1, self.size.height - 2)
        self.cursor_row = min(len(self._entries) - 1, self.cursor_row + page)
        self.scroll_to(
            y=min(self.max_scroll_y, self.scroll_y + page), animate=False, immediate=True
        )
        self._show_cursor()
        self._follow_at_last_row()

    def action_select(self) -> None:
        """Ask for the selected row's job details."""
        job_id = self.entry_key(self.cursor_row)
        if job_id is not None:
            self.post_message(self.Selected(job_id))

    def _follow_at_last_row(self) -> None:
        if not self.following and self.cursor_row >= len(self._entries) - 1:
            self.following = True

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.hold()

    def on_click(self, event: events.Click) -> None:
        row = int(self.scroll_y) + event.y - 1
        if event.y < 1 or not 0 <= row < len(self._entries):
            return
        self.hold()  # a row picked out is a row to stay on
        if row == self.cursor_row:
            self.action_select()
        self.cursor_row = row

    def on_scroll_up(self, event: ScrollUp) -> None:
        self.hold()

    def on_scroll_to(self, event: ScrollTo) -> None:
        if event.y is not None and event.y < self.max_scroll_y:
            self.hold()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if not self.following:
            self._update_status()

    def _update_status(self) -> None:
        rows = len(self._entries)
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


_WIDTHS: tuple[int | None, ...] = (8, 26, 6, 9, 7, None)
"""Each column's width; the last (the error) takes what is left."""

_HEADER = tuple(Text(name) for name in ("time", "job", "worker", "outcome", "took", "error"))


def _cells(entry: LogEntry, origin: float) -> tuple[Text, ...]:
    job = Text(plain(entry.job_id, limit=200))
    if entry.label and entry.label != entry.job_id:
        job.append(" " + plain(entry.label, limit=200), style="cyan")
    return (
        Text(f"{max(0.0, entry.at - origin):7.1f}s", style="dim"),
        job,
        Text(entry.worker_id or "-"),
        Text(entry.outcome.value, style=_OUTCOME_STYLE[entry.outcome]),
        Text(duration(entry.duration)),
        Text(plain(entry.error, limit=500), style="red" if entry.error else ""),
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
        focus_now(field)  # the keys typed after / are the filter's

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
        focus_now(self.query_one(JobLog))

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

    def field_escaped(self, field: Input) -> None:
        """Escape in the filter line: drop the filter."""
        self.action_clear_filter()

    def field_entered(self, field: Input) -> None:
        """Enter in the filter line: keep the filter and go to the log (an empty one
        is dropped)."""
        if not field.value.strip():
            self.action_clear_filter()
            return
        focus_now(self.query_one(JobLog))

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
