"""The pool's figures at the top of the dashboard."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

from ..state import DashboardState
from .format import PHASE_STYLE, duration, sparkline

__all__ = ("Summary",)


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

    def show(self, state: DashboardState, *, frozen: bool = False) -> None:
        """Render ``state``.

        The screen's layout is redone only when the summary's height has
        changed: a layout each frame costs more than the summary itself, and
        it repaints every widget on the screen.
        """
        text = render_summary(state, frozen=frozen)
        width = self.content_size.width
        self.update(text, layout=False)
        shape = None
        if width > 0:
            lines = text.plain.split("\n")
            if all(cell_len(line) <= width for line in lines):
                height = len(lines)  # no line wraps: one row each
            else:
                # Wrapped (a long resync note): measured as the layout measures it.
                height = self.get_content_height(self.size, self.app.size, width)
            shape = (height, width)
        if shape is None or shape != self._shape:
            self.refresh(layout=True)
        self._shape = shape


def render_summary(state: DashboardState, *, frozen: bool = False) -> Text:
    """The summary's text for ``state``."""
    text = Text()
    text.append(f" {state.phase.value.upper()} ", style=PHASE_STYLE[state.phase] + " reverse")
    if frozen:
        text.append("  FROZEN (space resumes the view)", style="bold reverse yellow")
    text.append(f"  uptime {duration(state.uptime)}", style="")
    live = state.live_workers
    text.append("   workers ")
    text.append(f"{state.busy_workers}", style="bold")
    text.append(" busy / ")
    text.append(f"{live}", style="bold")
    text.append(" live / ")
    text.append(f"{state.target_workers}", style="bold")
    text.append(" target")
    if state.retiring_workers:
        text.append(f" ({state.retiring_workers} retiring)", style="yellow")
    text.append(f"  {state.utilisation:.0%} busy")
    text.append("   queue ")
    text.append(f"{state.queued}", style="bold")
    text.append(f"/{state.queue_capacity}")
    text.append(f" oldest {duration(state.oldest_queued_age())}")
    text.append("\n")
    counters = (
        ("submitted", state.submitted, ""),
        ("succeeded", state.succeeded, "green"),
        ("failed", state.failed, "red"),
        ("timed out", state.timed_out, "dark_orange"),
        ("cancelled", state.cancelled, "yellow"),
        ("abandoned", state.abandoned, "bold red"),
        ("retried", state.retried, "magenta"),
        ("restarts", state.restarts, "magenta"),
        ("rejected", state.rejected, "red"),
    )
    for index, (label, value, style) in enumerate(counters):
        if index:
            text.append("  ")
        text.append(f"{label} ")
        text.append(str(value), style=f"bold {style}".strip())
    text.append("\n")
    text.append(f"{state.throughput():.1f}", style="bold")
    text.append(" jobs/s ")
    text.append(sparkline(state.sparkline(), 30), style="cyan")
    run = state.run_time()
    wait = state.queue_wait()
    text.append(
        f"  run p50 {duration(run.p50)} p95 {duration(run.p95)} p99 {duration(run.p99)}"
        f"   wait p50 {duration(wait.p50)} p95 {duration(wait.p95)} p99 {duration(wait.p99)}"
    )
    if state.missed:
        text.append(f"   (view resynced, {state.missed} events skipped)", style="dim")
    progress = state.progress()
    if progress is not None:
        text.append("\n")
        text.append_text(render_progress(state, progress))
    return text


def render_progress(state: DashboardState, progress: float, width: int = 30) -> Text:
    """``done 37/100 37% [bar] ETA 1m12s`` for a batch of known size."""
    text = Text("done ")
    text.append(f"{state.finished}/{state.total}", style="bold")
    text.append(f" {progress:.0%} ")
    filled = round(progress * width)
    text.append("█" * filled, style="green")
    text.append("░" * (width - filled), style="dim")
    eta = state.eta()
    if state.stopped_at is not None or eta == 0.0:
        text.append("  all ended" if progress >= 1.0 else "  stopped", style="bold")
    else:
        text.append(f"  ETA {'-' if eta is None else duration(eta)}")
    return text
