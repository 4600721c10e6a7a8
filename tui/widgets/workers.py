"""One panel per worker, in a grid, in a stable order."""

from __future__ import annotations

from rich.text import Text
from textual.containers import Grid
from textual.widgets import Static

from pool import WorkerState

from ..state import DashboardState, WorkerView
from .format import STATE_STYLE, bar, duration

__all__ = ("HIGHLIGHT_SECONDS", "WorkerGrid", "WorkerPanel")

HIGHLIGHT_SECONDS = 1.0
"""How long a panel stays highlighted after its state changes."""


class WorkerPanel(Static, can_focus=True):
    """A worker: id, state, job, time running, progress and its counts."""

    DEFAULT_CSS = """
    WorkerPanel {
        height: 6;
        border: round $panel-lighten-2;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    WorkerPanel:focus {
        border: round $accent;
    }
    WorkerPanel.-busy { border: round $success; }
    WorkerPanel.-retiring { border: round $warning; }
    WorkerPanel.-crashed { border: round $error; }
    WorkerPanel.-restarting { border: round $secondary; }
    WorkerPanel.-stopped { border: round $panel; }
    WorkerPanel.-changed { background: $boost; }
    WorkerPanel:focus.-busy, WorkerPanel:focus.-retiring { border: double $accent; }
    """

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
            view.attempt,
            view.progress,
            view.progress_message,
            view.jobs_done,
            view.jobs_failed,
            view.restarts,
            view.cancelling,
            changed,
            None if running is None else round(running, 1),
        )
        if key == self._shown:
            return
        self._shown = key
        for state in WorkerState:
            self.set_class(state is view.state, f"-{state.value}")
        self.set_class(changed, "-changed")
        self.border_title = f"{view.id} {view.state.value}"
        self.update(render_worker(view, running), layout=False)  # its height is fixed

    def on_click(self) -> None:
        self.focus()


def render_worker(view: WorkerView, running: float | None) -> Text:
    """A worker panel's body."""
    text = Text(no_wrap=True, overflow="ellipsis")
    state_style = STATE_STYLE[view.state]
    if view.job_id is None:
        text.append(view.state.value, style=state_style)
        text.append("\n\n")
    else:
        text.append(view.job_id, style="bold")
        if view.attempt and view.attempt > 1:
            text.append(f" (try {view.attempt})", style="magenta")
        text.append("\n")
        text.append(f"running {duration(running)}")
        if view.cancelling:
            text.append("  cancelling", style="bold dark_orange")
        text.append("\n")
        if view.progress is not None:
            text.append(bar(view.progress, 10), style="green")
            text.append(f" {view.progress:4.0%} {view.progress_message}")
    text.append("\n")
    text.append(f"done {view.jobs_done}", style="green")
    text.append(f"  failed {view.jobs_failed}", style="red" if view.jobs_failed else "")
    text.append(f"  restarts {view.restarts}", style="magenta" if view.restarts else "")
    return text


class WorkerGrid(Grid):
    """The worker panels, kept in the order of their ids."""

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

    def on_resize(self) -> None:
        self.styles.grid_size_columns = max(1, min(6, self.size.width // self.PANEL_WIDTH))
        self.set_class(self.app.size.height < 30, "-compact")

    def show(self, state: DashboardState) -> None:
        """Add, remove and render the panels from ``state``.

        New slots always have higher numbers than the ones already shown
        (ids are never reused), so mounting at the end keeps the order.
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
            self.mount_all(new)
            panels.update((p.worker_id, p) for p in new)
        for view in views:
            panels[view.id].show(view, state.now)
