"""One panel per worker, in a grid, in a stable order; the grid is one stop for tab."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.containers import Grid
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Static

from pool import WorkerState

from ..state import DashboardState, WorkerView
from .format import STATE_STYLE, bar, clock, plain

__all__ = ("HIGHLIGHT_SECONDS", "WorkerGrid", "WorkerPanel")

HIGHLIGHT_SECONDS = 1.0
"""How long a panel stays highlighted after its state changes."""


class WorkerPanel(Static):
    """A worker: id, state, job, time running, progress and its counts."""

    DEFAULT_CSS = """
    WorkerPanel {
        height: 6;
        border: round $panel-lighten-2;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    WorkerPanel.-busy { border: round $success; }
    WorkerPanel.-retiring { border: round $warning; }
    WorkerPanel.-crashed { border: round $error; }
    WorkerPanel.-restarting { border: round $secondary; }
    WorkerPanel.-stopped { border: round $panel; }
    WorkerPanel.-changed { background: $boost; }
    WorkerPanel.-selected { border: double $accent; }
    """

    class Clicked(Message):
        """The panel was clicked: its grid selects it."""

        def __init__(self, worker_id: str) -> None:
            super().__init__()
            self.worker_id = worker_id

    def __init__(self, worker_id: str) -> None:
        super().__init__(id=f"worker-{worker_id}")
        self.worker_id = worker_id
        self._shown: tuple[object, ...] = ()

    def show(self, view: WorkerView, now: float) -> None:
        """Render ``view`` at time ``now`` (only what changed is redrawn)."""
        changed = now - view.changed_at < HIGHLIGHT_SECONDS
        running = None if view.job_started_at is None else now - view.job_started_at
        key = (
            view.state,
            view.job_id,
            view.label,
            view.attempt,
            view.progress,
            view.progress_message,
            view.jobs_done,
            view.jobs_failed,
            view.restarts,
            view.cancelling,
            changed,
            None if running is None else int(running),
        )
        if key == self._shown:
            return
        self._shown = key
        for state in WorkerState:
            self.set_class(state is view.state, f"-{state.value}")
        self.set_class(changed, "-changed")
        title = f"{view.id} {view.state.value}"
        if view.restarts:
            title += f" · {view.restarts} restart{'s' if view.restarts != 1 else ''}"
        self.border_title = title
        self.update(render_worker(view, running), layout=False)  # its height is fixed

    def on_click(self, event: events.Click) -> None:
        self.post_message(self.Clicked(self.worker_id))


def render_worker(view: WorkerView, running: float | None) -> Text:
    """A worker panel's body."""
    text = Text(no_wrap=True, overflow="ellipsis")
    state_style = STATE_STYLE[view.state]
    if view.job_id is None:
        text.append(view.state.value, style=state_style)
        text.append("\n\n")
    else:
        text.append(plain(view.job_id, limit=200), style="bold")
        if view.attempt and view.attempt > 1:
            text.append(f" (try {view.attempt})", style="magenta")
        if view.label and view.label != view.job_id:
            text.append(" " + plain(view.label, limit=200), style="cyan")
        text.append("\n")
        text.append(f"running {clock(running or 0.0)}")
        if view.cancelling:
            text.append("  cancelling", style="bold dark_orange")
        text.append("\n")
        if view.progress is not None:
            text.append(bar(view.progress, 10), style="green")
            text.append(f" {view.progress:4.0%} {plain(view.progress_message, limit=200)}")
    text.append("\n")
    text.append(f"done {view.jobs_done}", style="green")
    # Attempts, not jobs: a retried job that then succeeds counts here once.
    text.append(f"  failed tries {view.jobs_failed}", style="red" if view.jobs_failed else "")
    return text


class WorkerGrid(Grid, can_focus=True):
    """The worker panels, kept in the order of their ids.

    The grid takes the focus as one stop (tab goes on to the log); the
    arrow keys select a panel, and enter asks for the details of its job.
    """

    BINDINGS = [
        Binding("left", "move(-1)", "Previous worker", show=False),
        Binding("right", "move(1)", "Next worker", show=False),
        Binding("up", "move_row(-1)", "Worker above", show=False),
        Binding("down", "move_row(1)", "Worker below", show=False),
        Binding("enter", "details", "Details", id="worker-details"),
    ]

    DEFAULT_CSS = """
    WorkerGrid {
        grid-size: 4;
        grid-gutter: 0 1;
        height: auto;
        max-height: 45%;
        overflow-y: auto;
        padding: 0 1;
    }
    """

    PANEL_WIDTH = 28
    """The narrowest a panel gets before the grid drops a column."""

    selected: reactive[str | None] = reactive(None, init=False)
    """The id of the selected worker (shown while the grid has the focus)."""

    class DetailsWanted(Message):
        """Enter on a worker: show the job it runs."""

        def __init__(self, worker_id: str) -> None:
            super().__init__()
            self.worker_id = worker_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._order: list[str] = []

    def on_resize(self) -> None:
        self.styles.grid_size_columns = self._columns()

    def _columns(self) -> int:
        return max(1, min(6, self.size.width // self.PANEL_WIDTH))

    def show(self, state: DashboardState) -> None:
        """Add, remove and render the panels from ``state``.

        A pool's new slots have higher numbers than the ones already shown
        (ids are never reused): they are mounted at the end. A source of
        parts (a Celery node that grows) may add a slot before others: it
        is mounted in its place, so that each part's panels stay together.
        """
        views = state.ordered_workers()
        wanted = {v.id for v in views}
        panels: dict[str, WorkerPanel] = {}
        for panel in self.query(WorkerPanel):
            if panel.worker_id in wanted:
                panels[panel.worker_id] = panel
            else:
                panel.remove()
        new = [WorkerPanel(v.id) for v in views if v.id not in panels]
        if new:
            made = {p.worker_id: p for p in new}
            order = [v.id for v in views]
            last_old = max((order.index(i) for i in panels), default=-1)
            tail = [p for p in new if order.index(p.worker_id) > last_old]
            for panel in new:
                if panel in tail:
                    continue
                # The first panel already shown after it, in order.
                after = next(i for i in order[order.index(panel.worker_id) + 1 :] if i in panels)
                self.mount(panel, before=panels[after])
            if tail:
                self.mount_all(tail)
            panels.update(made)
        for view in views:
            panels[view.id].show(view, state.now)
        order = [v.id for v in views]
        if order != self._order:
            self._order = order
            if self.selected not in wanted:
                self.selected = order[0] if order else None
            self._mark_selected()

    # --- selection ---------------------------------------------------------------

    def on_focus(self) -> None:
        if self.selected is None and self._order:
            self.selected = self._order[0]
        self._mark_selected()

    def on_blur(self) -> None:
        self._mark_selected()

    def watch_selected(self) -> None:
        self._mark_selected()

    def _mark_selected(self) -> None:
        focused = self.has_focus
        for panel in self.query(WorkerPanel):
            panel.set_class(focused and panel.worker_id == self.selected, "-selected")

    def action_move(self, step: int) -> None:
        """Select the worker ``step`` places on."""
        if not self._order:
            return
        index = self._order.index(self.selected) if self.selected in self._order else 0
        index = min(len(self._order) - 1, max(0, index + step))
        self.selected = self._order[index]
        self.query_one(f"#worker-{self.selected}").scroll_visible(animate=False)

    def action_move_row(self, rows: int) -> None:
        """Select the worker ``rows`` rows up or down."""
        self.action_move(rows * self._columns())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Under a dialog the grid's keys reach the dialog, not the grid: the
        # footer of the grid's screen (still seen below it) must not offer them.
        return action != "details" or self.screen is self.app.screen

    def action_details(self) -> None:
        """Ask for the details of the selected worker's job."""
        if self.selected is not None:
            self.post_message(self.DetailsWanted(self.selected))

    def on_worker_panel_clicked(self, event: WorkerPanel.Clicked) -> None:
        event.stop()
        self.selected = event.worker_id
        self.focus()
