"""The shutdown countdown, and the report once the pool has stopped."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from pool import PoolPhase

from ..state import DashboardState
from .format import PHASE_STYLE, bar, duration, plain
from .summary import render_outcomes

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

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: Text | None = None

    def show(self, state: DashboardState, hint: str = "") -> None:
        """Render the shutdown of ``state``, or hide when there is none.

        ``hint`` says which keys act on the shutdown now (the app knows).
        """
        view = state.shutdown
        self.set_class(view is not None, "-active")
        if view is None:
            return
        text = render_countdown(state, hint)
        if text != self._shown:
            self._shown = text
            self.update(text)


NEXT_STEP = {PoolPhase.DRAINING: "cancel now", PoolPhase.CANCELLING: "abandon now"}
"""What escalating a shutdown does in each phase that can be escalated."""

REASON_LIMIT = 300
"""The most of a shutdown's reason the banner shows (it may quote a long error)."""


def render_countdown(state: DashboardState, hint: str = "") -> Text:
    """The countdown's text for ``state`` (which has a shutdown)."""
    view = state.shutdown
    assert view is not None
    text = Text()
    stopped = view.stopped
    if stopped is not None:
        style = PHASE_STYLE[stopped.phase]
        text.append(f" {stopped.phase.value.upper()} ", style=style + " reverse")
        text.append(f"  after {duration(state.uptime)}: ", style="bold")
        text.append_text(render_outcomes(state))
        text.append(f" ({state.submitted - state.rejected} jobs)")
        live = stopped.finished + stopped.cancelled + stopped.not_started + stopped.abandoned
        text.append(f"\n shutdown took {duration(stopped.duration)}", style="")
        if live:
            text.append(f" (reached {stopped.phase_reached.value}), of the {live} jobs live then: ")
            text.append(f"{stopped.finished} finished", style="green")
            text.append(f", {stopped.cancelled} cancelled", style="yellow")
            text.append(f", {stopped.not_started} not started", style="yellow")
            text.append(f", {stopped.abandoned} abandoned", style="red")
        else:
            text.append(": no job was live then")
        if stopped.reason:
            text.append(f"\n reason: {plain(stopped.reason, limit=REASON_LIMIT)}", style="bold red")
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
    if hint:
        text.append(f"\n {hint}", style="dim")
    if view.reason:
        text.append(f"\n reason: {plain(view.reason, limit=REASON_LIMIT)}", style="bold red")
    if not view.drain and phase is PoolPhase.DRAINING:
        text.append("\n queued jobs were handed back (no drain)", style="dim")
    return text
