"""Modal dialogs: add jobs, resize, confirm shutdown, quit, help."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from ..widgets.field import TypedInput
from ..widgets.format import plain

__all__ = (
    "AddJobsScreen",
    "ConfirmShutdownScreen",
    "Dialog",
    "FormDialog",
    "HelpLine",
    "HelpScreen",
    "JobsToAdd",
    "JumpScreen",
    "QuitScreen",
    "ResizeScreen",
    "ShutdownChoice",
)


_T = TypeVar("_T")


def _focus_input(field: Input) -> None:
    # No blinking cursor when animation is off (reduced motion, and stable screenshots).
    field.cursor_blink = field.app.animation_level != "none"
    field.focus()


class Dialog(ModalScreen[_T]):
    """A modal screen of this app: it says when keys typed ahead may reach it.

    Keys typed in one burst with the key that opened a dialog arrive before
    the dialog's widget has the focus. The app holds them until the dialog
    is :attr:`ready` (a widget of it has the focus, or it has nothing to
    focus), which the dialog announces with :class:`Ready`; the app then
    lets them through, in order.
    """

    class Ready(Message):
        """The dialog's widget has the focus: keys typed now reach it."""

    def __init__(self) -> None:
        super().__init__()
        self._ready = False

    @property
    def ready(self) -> bool:
        """Whether keys typed now reach the dialog's focused widget."""
        return self._ready

    def on_mount(self) -> None:
        # A dialog whose widget never takes the focus is ready once drawn:
        # its keys are then the screen's own bindings.
        self.call_after_refresh(self.announce_ready)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        self.announce_ready()

    def announce_ready(self) -> None:
        """Say that keys may reach this dialog now (a dialog with nothing to focus
        calls it once mounted)."""
        if not self._ready:
            self._ready = True
            self.post_message(self.Ready())


class FormDialog(Dialog[_T | None], Generic[_T]):
    """A dialog with a field: Enter or OK checks it, and either dismisses with
    the value or shows what is wrong in its ``#error`` label; escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog-cancel")]

    def _value(self) -> _T | None:
        """The checked value, or None after showing the problem."""
        raise NotImplementedError

    def _refuse(self, message: str) -> None:
        # What was typed is in the message: plain text, never markup.
        self.query_one("#error", Label).update(Text(plain(message, limit=300)))

    def field_entered(self, field: Input) -> None:
        """Enter in a field (at once, in the order of the keys: see
        :class:`~tui.widgets.field.TypedInput`): accept; a dialog of several
        fields may move on instead."""
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

    def field_escaped(self, field: Input) -> None:
        """Escape in a field: cancel, at once (the keys after it are the dashboard's)."""
        self.action_cancel()


class _NumberDialog(FormDialog[int]):
    """Asks for a whole number in a range; refuses anything else with a message."""

    def __init__(self, *, title: str, prompt: str, default: int, low: int, high: int) -> None:
        super().__init__()
        self._title = title
        self._prompt = prompt
        self._count = _Count(default=default, low=low, high=high)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            yield Label(self._prompt)
            yield TypedInput(str(self._count.default), id="number", select_on_focus=True)
            yield Label("", id="error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        _focus_input(self.query_one("#number", Input))

    def _value(self) -> int | None:
        return self._count.read(self.query_one("#number", Input).value, self._refuse)


@dataclass(frozen=True, slots=True)
class JobsToAdd:
    """What the add dialog asked for: how many jobs, and (for a service) their payload."""

    count: int
    payload: str | None = None


class AddJobsScreen(FormDialog[JobsToAdd]):
    """How many jobs to add; for a pool in another process, their payload too
    (its meaning is that service's: the text is sent as it is)."""

    def __init__(
        self,
        *,
        default: int = 10,
        high: int = 10_000,
        with_payload: bool = False,
        payload_label: str = "",
    ) -> None:
        super().__init__()
        self._count = _Count(default=default, low=1, high=high)
        self._with_payload = with_payload
        self._payload_label = payload_label or "Payload of each (text, as the service takes it):"

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Add jobs", classes="dialog-title")
            yield Label("How many jobs?")
            yield TypedInput(str(self._count.default), id="number", select_on_focus=True)
            if self._with_payload:
                yield Label(self._payload_label)
                yield TypedInput("", id="payload")
            yield Label("", id="error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        _focus_input(self.query_one("#number", Input))

    def field_entered(self, field: Input) -> None:
        if field.id == "number" and self._with_payload:
            # Enter moves on to the payload, at once: the next keys are for it.
            self.set_focus(self.query_one("#payload", Input))
            return
        self._accept()

    def _value(self) -> JobsToAdd | None:
        count = self._count.read(self.query_one("#number", Input).value, self._refuse)
        if count is None:
            return None
        payload = self.query_one("#payload", Input).value if self._with_payload else None
        return JobsToAdd(count, payload)


@dataclass(frozen=True, slots=True)
class _Count:
    """A whole number in a range, read from what was typed."""

    default: int
    low: int
    high: int

    def read(self, typed: str, refuse: Callable[[str], None]) -> int | None:
        raw = typed.strip()
        try:
            value = int(raw)
        except ValueError:
            refuse(f"enter a whole number from {self.low} to {self.high}, not {raw!r}")
            return None
        if not self.low <= value <= self.high:
            refuse(f"must be from {self.low} to {self.high}, got {value}")
            return None
        return value


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


class ConfirmShutdownScreen(FormDialog[ShutdownChoice]):
    """Confirm a graceful shutdown; Enter confirms with the grace and drain shown."""

    def __init__(
        self,
        *,
        grace: float,
        cancel_grace: float,
        drain: bool = True,
        title: str = "Shut down gracefully?",
    ) -> None:
        super().__init__()
        self._title = title
        self._grace = grace
        self._cancel_grace = cancel_grace
        self._drain = drain

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            yield Static(
                "Intake closes now. Running jobs get the grace period to finish;\n"
                f"then they are cancelled, and after {self._cancel_grace:g}s more, abandoned."
            )
            yield Label("Grace period (seconds):")
            yield TypedInput(f"{self._grace:g}", id="grace", select_on_focus=True)
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


class JumpScreen(FormDialog[float]):
    """Where in a recording to go: seconds from its start."""

    def __init__(self, *, now: float, length: float) -> None:
        super().__init__()
        self._now = now
        self._length = length

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Jump to", classes="dialog-title")
            yield Label(f"Seconds from the start of the recording (0 to {self._length:.1f}):")
            yield TypedInput(f"{self._now:.1f}", id="seconds", select_on_focus=True)
            yield Label("", id="error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Jump", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        _focus_input(self.query_one("#seconds", Input))

    def _value(self) -> float | None:
        raw = self.query_one("#seconds", Input).value.strip()
        try:
            seconds = float(raw)
        except ValueError:
            self._refuse(f"enter a number of seconds, not {raw!r}")
            return None
        if not 0 <= seconds <= self._length:
            self._refuse(f"must be from 0 to {self._length:.1f}, got {raw}")
            return None
        return seconds


class QuitScreen(Dialog[str | None]):
    """Quitting while the pool runs: shut down gracefully first, or quit at once."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog-cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("The pool is still running", classes="dialog-title")
            yield Static(
                "Enter shuts it down gracefully, then quits: running jobs finish and "
                "every job is accounted for. Quit now cancels them at once, within "
                "the pool's cancel grace."
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


HELP_NOTES = """
A worker's colour is its state: [green]busy[/], [dim]idle[/], [yellow]retiring[/],
[magenta]restarting[/], [red]crashed[/]; a panel is highlighted for a second when
its state changes. A shutdown drains (running and, with drain, queued jobs
finish), then cancels what still runs, then abandons what ignores that.
Outcomes: succeeded, failed, timed_out, cancelled, abandoned; the log also
shows retrying (another attempt follows) and rejected (the queue was full).
"""


@dataclass(frozen=True, slots=True)
class HelpLine:
    """One key in the help: what it does, and when (if not always)."""

    key: str
    does: str
    when: str = ""


class HelpScreen(Dialog[None]):
    """The keys that work in this dashboard, and what the colours mean."""

    BINDINGS = [
        Binding("escape,q,question_mark", "close", "Close", id="help-close"),
    ]

    def __init__(self, lines: list[HelpLine], *, title: str = "wpool-tui") -> None:
        super().__init__()
        self._lines = lines
        self._title = title

    def compose(self) -> ComposeResult:
        width = max((len(line.key) for line in self._lines), default=1) + 2
        keys = Text()
        for line in self._lines:
            keys.append(line.key.ljust(width), style="bold")
            keys.append(line.does)
            if line.when:
                keys.append(f" ({line.when})", style="dim")
            keys.append("\n")
        with Vertical(classes="dialog help"):
            yield Label(self._title, classes="dialog-title")
            with VerticalScroll():
                yield Static(keys)
                yield Static(HELP_NOTES)
            yield Label("escape closes", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
