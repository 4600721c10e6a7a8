"""A text field whose keys act in the order they were typed."""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

from textual import events
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Input

__all__ = ("EnterHandler", "EscapeHandler", "TypedInput", "focus_now")


def _bound_keys() -> dict[str, str]:
    keys: dict[str, str] = {}
    for binding in Input.BINDINGS:
        if isinstance(binding, Binding):
            for key in binding.key.split(","):
                keys[key.strip()] = binding.action
    return keys


def focus_now(widget: Widget) -> None:
    """Give ``widget`` the focus at once, not after the keys already read.

    ``Widget.focus`` moves the focus once the messages pending have been
    handled: the rest of a burst of keys (``/upload``, ``escape p``) would
    go to the widget that had it before.
    """
    widget.screen.set_focus(widget)


@runtime_checkable
class EnterHandler(Protocol):
    """A widget or screen that acts on enter in its fields at once (a dialog
    that moves on to its next field or closes, a filter line)."""

    def field_entered(self, field: Input) -> None:
        """Enter was pressed in ``field``."""
        ...


@runtime_checkable
class EscapeHandler(Protocol):
    """A widget or screen that acts on escape in its fields at once (a dialog
    that closes, a filter line that clears)."""

    def field_escaped(self, field: Input) -> None:
        """Escape was pressed in ``field``."""
        ...


class TypedInput(Input):
    """An :class:`~textual.widgets.Input` whose keys act in the order they were typed.

    A terminal hands over the keys of a burst (``3 tab hello enter p``) all
    at once, and the app gives each to the field that has the focus as it
    reads them: all of them to this field, before it has acted on any.
    Textual inserts a printable key the moment the field reads it, but runs
    a bound key (backspace, enter, tab...) only once the key has gone up to
    the screen and the app, so the keys would act out of order. Here each
    key acts when the field reads it: its editing keys, tab and shift+tab
    (the next and previous field), and enter and escape, which the widget
    or screen around the field that is an :class:`EnterHandler` or an
    :class:`EscapeHandler` acts on at once. A
    key that reaches the field after an earlier one moved the focus away
    (to the next field, or out of a dialog that closed) goes back to the
    app, which gives it to whatever has the focus now.
    """

    _KEYS: ClassVar[dict[str, str]] = _bound_keys()

    async def on_key(self, event: events.Key) -> None:
        if self.app.focused is not self:
            event.stop()
            event.prevent_default()
            self.app.post_message(events.Key(event.key, event.character))
            return
        if event.key in ("tab", "shift+tab"):
            event.stop()
            event.prevent_default()
            if event.key == "tab":
                self.screen.focus_next()
            else:
                self.screen.focus_previous()
            return
        if event.key == "enter":
            entered = next((n for n in self.ancestors if isinstance(n, EnterHandler)), None)
            if entered is not None:
                event.stop()
                event.prevent_default()
                entered.field_entered(self)
                return
        if event.key == "escape":
            escaped = next((n for n in self.ancestors if isinstance(n, EscapeHandler)), None)
            if escaped is not None:
                event.stop()
                event.prevent_default()
                escaped.field_escaped(self)
                return
        action = self._KEYS.get(event.key)
        if action is None:
            return  # printable keys and the rest: Input's own handling
        event.stop()
        event.prevent_default()
        await self.run_action(action)
