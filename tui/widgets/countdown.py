"""The shutdown countdown, and the report once the pool has stopped."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from pool import PoolPhase

from ..state import DashboardState
from .format import PHASE_STYLE, bar, duration

__all__ = ("Countdown",)


class Countdown(Static):
    """Prominent while the pool shuts down: phase, seconds left, a bar, what runs and waits."""

    DEFAULT_CSS = """
    Countdown {
        height: auto;
        padding: 0 1;
        display: none;
    }
    Countdown.-active {
        display: block;
    }
    """

    def show(self, state: DashboardState) -> None:
        """Render the shutdown of ``state``, or hide when there is none."""
        view = state.shutdown
        self.set_class(view is not None, "-active")
        if view is None:
            return
        self.update(render_countdown(state))


def render_countdown(state: DashboardState) -> Text:
    """The countdown's text for ``state`` (which has a shutdown)."""
    view = state.shutdown
    assert view is not None
    text = Text()
    stopped = view.stopped
    if stopped is not None:
        style = PHASE_STYLE[stopped.phase]
        text.append(f" {stopped.phase.value.upper()} ", style=style + " reverse")
        text.append(f"  shut down in {duration(stopped.duration)}", style="bold")
        text.append(f" (reached {stopped.phase_reached.value}):  ")
        text.append(f"{stopped.finished} finished", style="green")
        text.append(f", {stopped.cancelled} cancelled", style="yellow")
        text.append(f", {stopped.not_started} not started", style="yellow")
        text.append(f", {stopped.abandoned} abandoned", style="red")
        if stopped.reason:
            text.append(f"\n reason: {stopped.reason}", style="bold red")
        text.append("\n press q to exit", style="dim")
        return text
    phase = view.phase
    text.append(" SHUTTING DOWN ", style="bold reverse red")
    text.append(f" {phase.value} ", style=PHASE_STYLE[phase] + " reverse")
    text.append(f"  {view.remaining:5.1f}s left  ", style="bold")
    length = view.phase_length or 1.0
    fraction = view.remaining / length if phase is not PoolPhase.FORCING else 0.0
    text.append(bar(fraction, 30), style=PHASE_STYLE[phase])
    text.append(f"  running {view.running}  queued {view.queued}", style="bold")
    nxt = {
        PoolPhase.DRAINING: "cancel now",
        PoolPhase.CANCELLING: "abandon now",
    }.get(phase)
    if nxt:
        text.append(f"   s: {nxt}", style="dim")
    if not view.drain and phase is PoolPhase.DRAINING:
        text.append("\n queued jobs were handed back (no drain)", style="dim")
    return text
