"""Modal dialogs: add jobs, resize, confirm shutdown, quit, help."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

__all__ = (
    "AddJobsScreen",
    "ConfirmShutdownScreen",
    "HelpScreen",
    "QuitScreen",
    "ResizeScreen",
    "ShutdownChoice",
)


_T = TypeVar("_T")


def _focus_input(field: Input) -> None:
    # No blinking cursor when animation is off (reduced motion, and stable screenshots).
    field.cursor_blink = field.app.animation_level != "none"
    field.focus()


class _FormDialog(ModalScreen[_T | None], Generic[_T]):
    """A dialog with a field: Enter or OK checks it, and either dismisses with
    the value or shows what is wrong in its ``#error`` label; escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog-cancel")]

    def _value(self) -> _T | None:
        """The checked value, or None after showing the problem."""
        raise NotImplementedError

    def _refuse(self, message: str) -> None:
        self.query_one("#error", Label).update(message)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._accept()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self._accept()
        else:
            self.dismiss(None)

    def _accept(self) -> None:
        value = self._value()
        if value is not None:
            self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class _NumberDialog(_FormDialog[int]):
    """Asks for a whole number in a range; refuses anything else with a message."""

    def __init__(self, *, title: str, prompt: str, default: int, low: int, high: int) -> None:
        super().__init__()
        self._title = title
        self._prompt = prompt
        self._default = default
        self._low = low
        self._high = high

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            yield Label(self._prompt)
            yield Input(str(self._default), id="number", select_on_focus=True)
            yield Label("", id="error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        _focus_input(self.query_one("#number", Input))

    def _value(self) -> int | None:
        raw = self.query_one("#number", Input).value.strip()
        try:
            value = int(raw)
        except ValueError:
            self._refuse(f"enter a whole number from {self._low} to {self._high}, not {raw!r}")
            return None
        if not self._low <= value <= self._high:
            self._refuse(f"must be from {self._low} to {self._high}, got {value}")
            return None
        return value


class AddJobsScreen(_NumberDialog):
    """How many demo jobs to add."""

    def __init__(self, *, default: int = 10, high: int = 10_000) -> None:
        super().__init__(
            title="Add jobs", prompt="How many jobs?", default=default, low=1, high=high
        )


class ResizeScreen(_NumberDialog):
    """The pool's new size."""

    def __init__(self, *, target: int, live: int, high: int) -> None:
        super().__init__(
            title="Resize the pool",
            prompt=f"Workers (now {target} target, {live} live; 0 to {high}):",
            default=target,
            low=0,
            high=high,
        )


@dataclass(frozen=True, slots=True)
class ShutdownChoice:
    """What the operator chose for the graceful shutdown."""

    grace: float
    drain: bool


class ConfirmShutdownScreen(_FormDialog[ShutdownChoice]):
    """Confirm a graceful shutdown; Enter confirms with the grace and drain shown."""

    def __init__(self, *, grace: float, cancel_grace: float, drain: bool = True) -> None:
        super().__init__()
        self._grace = grace
        self._cancel_grace = cancel_grace
        self._drain = drain

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Shut down gracefully?", classes="dialog-title")
            yield Static(
                "Intake closes now. Running jobs get the grace period to finish;\n"
                f"then they are cancelled, and after {self._cancel_grace:g}s more, abandoned."
            )
            yield Label("Grace period (seconds):")
            yield Input(f"{self._grace:g}", id="grace", select_on_focus=True)
            yield Checkbox("Run the queued jobs too (drain)", value=self._drain, id="drain")
            yield Label("", id="error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Shut down", variant="error", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        _focus_input(self.query_one("#grace", Input))

    def _value(self) -> ShutdownChoice | None:
        raw = self.query_one("#grace", Input).value.strip()
        try:
            grace = float(raw)
        except ValueError:
            self._refuse(f"enter a number of seconds, not {raw!r}")
            return None
        if not 0 <= grace <= 3600 or grace != grace:
            self._refuse(f"grace must be from 0 to 3600 seconds, got {raw}")
            return None
        return ShutdownChoice(grace=grace, drain=self.query_one("#drain", Checkbox).value)


class QuitScreen(ModalScreen[str | None]):
    """Quitting while the pool runs: shut down gracefully first, or quit at once."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog-cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("The pool is still running", classes="dialog-title")
            yield Static(
                "A graceful shutdown lets running jobs finish and accounts for every job.\n"
                "Quitting now cancels them at once, within the pool's cancel grace."
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Shut down gracefully", variant="primary", id="graceful")
                yield Button("Quit now", variant="error", id="now")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#graceful", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


HELP = """\
[b]wpool-tui[/b] shows a supervised worker pool live and drives it.

[b]a[/b]      add jobs (asks how many)
[b]+ / -[/b]  grow / shrink the pool by one worker
[b]r[/b]      resize the pool to a number of workers
[b]p[/b]      pause / resume taking jobs from the queue
[b]space[/b]  freeze / unfreeze the view (events are still read)
[b]f[/b]      failed jobs (dead letters), with resubmit
[b]enter[/b]  details of the selected worker's job or log row
[b]s[/b]      graceful shutdown; during one, skip to the next phase
[b]q[/b]      quit (offers a graceful shutdown while the pool runs)
[b]ctrl+p[/b] every action in the command palette
[b]?[/b]      this help

A worker's colour is its state: [green]busy[/], [dim]idle[/], [yellow]retiring[/],
[magenta]restarting[/], [red]crashed[/]. A panel is highlighted for a second when
its state changes. A shutdown drains (running and, with drain, queued jobs
finish), then cancels what still runs, then abandons what ignores it.
"""


class HelpScreen(ModalScreen[None]):
    """The keys and what the colours mean."""

    BINDINGS = [
        Binding("escape,q,question_mark", "close", "Close", id="help-close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help"):
            yield Static(HELP)
            yield Label("escape closes", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
