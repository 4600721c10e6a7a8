"""The pool's figures at the top of the dashboard."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

from ..state import DashboardState
from .format import PHASE_STYLE, clock, duration, sparkline

__all__ = ("Summary", "render_outcomes", "render_progress", "render_summary")


class Summary(Static):
    """Phase, uptime, workers, queue, counters, throughput and latencies."""

    DEFAULT_CSS = """
    Summary {
        height: auto;
        padding: 0 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shape: tuple[int, int] | None = None
        self._shown: Text | None = None

    def show(self, state: DashboardState, *, frozen: bool = False) -> None:
        """Render ``state`` (nothing is redrawn when the text has not changed).

        The screen's layout is redone only when the summary's height has
        changed: a layout each frame costs more than the summary itself, and
        it repaints every widget on the screen.
        """
        width = self.content_size.width
        text = render_summary(state, frozen=frozen, width=width or None)
        if text == self._shown:
            return
        self._shown = text
        self.update(text, layout=False)
        shape = None
        if width > 0:
            lines = text.plain.split("\n")
            if all(cell_len(line) <= width for line in lines):
                height = len(lines)  # no line wraps: one row each
            else:
                # Wrapped (a piece wider than the screen): measured as the layout measures it.
                height = self.get_content_height(self.size, self.app.size, width)
            shape = (height, width)
        if shape is None or shape != self._shape:
            self.refresh(layout=True)
        self._shape = shape


def _lines(groups: list[list[Text]], width: int | None) -> Text:
    """Each group of pieces on a line of its own, two spaces apart, wrapped between
    pieces (never inside one) where the line would be wider than ``width``."""
    out = Text()
    for number, group in enumerate(groups):
        if number:
            out.append("\n")
        line = 0
        for index, piece in enumerate(group):
            size = piece.cell_len
            if index and width is not None and line + 2 + size > width:
                out.append("\n")
                line = 0
            elif index:
                out.append("  ")
                line += 2
            out.append_text(piece)
            line += size
    return out


def _figure(label: str, value: object, style: str = "bold", after: str = "") -> Text:
    text = Text(label)
    text.append(str(value), style=style)
    text.append(after)
    return text


def render_summary(
    state: DashboardState, *, frozen: bool = False, width: int | None = None
) -> Text:
    """The summary's text for ``state``, its lines wrapped to ``width`` between figures."""
    first = [Text(f" {state.phase.value.upper()} ", style=PHASE_STYLE[state.phase] + " reverse")]
    if frozen:
        first.append(Text("FROZEN (space resumes the view)", style="bold reverse yellow"))
    first.append(Text(f"uptime {clock(state.uptime)}"))
    workers = _figure("workers ", state.busy_workers, after=" busy / ")
    workers.append(f"{state.live_workers}", style="bold")
    workers.append(" live / ")
    workers.append(f"{state.target_workers}", style="bold")
    workers.append(" target")
    if state.retiring_workers:
        workers.append(f" ({state.retiring_workers} retiring)", style="yellow")
    first += [workers, Text(f"{state.utilisation:.0%} busy")]
    # A Celery cluster has no bound the dashboard knows of: no "/capacity" then.
    capacity = f"/{state.queue_capacity}" if state.queue_capacity else ""
    queue = _figure("queue ", state.queued, after=capacity)
    queue.append(f" oldest {duration(state.oldest_queued_age())}")
    first.append(queue)
    counters = [
        _figure("submitted ", state.submitted),
        *(
            _figure(f"{name} ", count, f"bold {OUTCOME_STYLE[name]}")
            for name, count in outcome_counts(state)
        ),
        _figure("retried ", state.retried, "bold magenta"),
        _figure("restarts ", state.restarts, "bold magenta"),
        _figure("rejected ", state.rejected, "bold red"),
    ]
    # jobs/s: jobs that ran to an end (see DashboardState.throughput).
    rate = _figure("", f"{state.throughput():.1f}", after=" jobs/s ")
    spark_width = 30 if width is None or width >= 100 else 15
    rate.append(sparkline(state.sparkline(), spark_width), style="cyan")
    run = state.run_time()
    wait = state.queue_wait()
    third = [
        rate,
        Text(f"run p50 {duration(run.p50)} p95 {duration(run.p95)} p99 {duration(run.p99)}"),
        Text(f"wait p50 {duration(wait.p50)} p95 {duration(wait.p95)} p99 {duration(wait.p99)}"),
    ]
    if state.missed:
        third.append(Text(f"(view resynced, {state.missed} events skipped)", style="dim"))
    groups = [first, counters, third]
    progress = state.progress()
    if progress is not None:
        groups.append([render_progress(state, progress)])
    return _lines(groups, width)


def outcome_counts(state: DashboardState) -> tuple[tuple[str, int], ...]:
    """How many jobs ended each way, named as everywhere (:class:`~tui.state.Outcome`)."""
    return (
        ("succeeded", state.succeeded),
        ("failed", state.failed),
        ("timed_out", state.timed_out),
        ("cancelled", state.cancelled),
        ("abandoned", state.abandoned),
    )


OUTCOME_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "dark_orange",
    "cancelled": "yellow",
    "abandoned": "bold red",
}


def render_outcomes(state: DashboardState) -> Text:
    """``169 succeeded, 31 cancelled``: every way jobs ended, none left out."""
    text = Text()
    for name, count in outcome_counts(state):
        if count:
            if text:
                text.append(", ")
            text.append(f"{count} {name}", style=OUTCOME_STYLE[name])
    return text or Text("none ended", style="dim")


def render_progress(state: DashboardState, progress: float, width: int = 30) -> Text:
    """``ended 37/100 37% [bar] ETA 1m12s`` for a batch of known size.

    The bar is coloured by how the jobs ended; once the run is over, or
    every job has ended, it says how (never "all ended" over cancelled jobs).
    """
    assert state.total
    text = Text("ended ")
    text.append(f"{state.finished}/{state.total}", style="bold")
    text.append(f" {progress:.0%} ")
    used = 0
    for name, count in outcome_counts(state):
        cells = round(count / state.total * width)
        cells = min(cells, width - used)
        text.append("█" * cells, style=OUTCOME_STYLE[name])
        used += cells
    text.append("░" * (width - used), style="dim")
    text.append("  ")
    if state.stopped_at is not None or state.finished >= state.total:
        left = state.total - state.finished
        text.append_text(render_outcomes(state))
        if left:
            text.append(f"; {left} not run", style="bold yellow")
        return text
    eta = state.eta()
    if eta is not None:
        text.append(f"ETA {duration(eta)}")
    elif (longest := state.running_longest()) is not None:
        # Running past the typical time: when they end cannot be told.
        text.append(f"ETA - ({state.running} running, longest {duration(longest)})")
    else:
        text.append("ETA -")
    return text
