"""One line under the figures for what the source itself says: a lost connection,
or where a replay stands."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from .format import bar, duration, plain

__all__ = ("Banner", "render_playback")


class Banner(Static):
    """Hidden unless there is something to say; redrawn only when that changes."""

    DEFAULT_CSS = """
    Banner {
        height: auto;
        padding: 0 1;
        display: none;
    }
    Banner.-active {
        display: block;
    }
    Banner.-warning {
        background: $warning 20%;
        color: $text;
        text-style: bold;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: Text | None = None

    def say(self, text: Text | None, *, warning: bool = False) -> None:
        """Show ``text`` (None hides the banner)."""
        self.set_class(text is not None, "-active")
        self.set_class(warning, "-warning")
        if text is not None and text != self._shown:
            self._shown = text
            self.update(text)


def render_playback(
    start: float, now: float, end: float, *, paused: bool, speed: float, note: str = ""
) -> Text:
    """The replay's line: ``▶ 2x  0:12.3 / 0:45.0  [bar]  keys``."""
    text = Text()
    text.append(" ❚❚ PAUSED " if paused else " ▶ PLAYING ", style="bold reverse")
    text.append(f" {speed:g}x  ", style="bold")
    span = max(end - start, 1e-9)
    text.append(f"{duration(now - start)} / {duration(end - start)}  ")
    text.append(bar((now - start) / span, 30), style="cyan")
    text.append("  space play/pause  < > speed  . step  j jump  n next mark", style="dim")
    if note:
        text.append(f"\n {plain(note, limit=200)}", style="yellow")
    return text
