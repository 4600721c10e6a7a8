"""A text field whose keys act in the order they were typed."""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding
from textual.widgets import Input

__all__ = ("TypedInput",)


def _bound_keys() -> dict[str, str]:
    keys: dict[str, str] = {}
    for binding in Input.BINDINGS:
        if isinstance(binding, Binding):
            for key in binding.key.split(","):
                keys[key.strip()] = binding.action
    return keys


class TypedInput(Input):
    """An :class:`~textual.widgets.Input` whose editing keys act as they arrive.

    Textual inserts a printable key the moment the field reads it, but runs
    a bound key (backspace, enter, the arrows...) only once the key has gone
    up to the app. Keys typed in one burst (``backspace 6 enter``) then act
    out of order: the ``6`` is typed, then deleted, then an empty field is
    submitted. Here each key the field binds acts when the field reads it.
    """

    _KEYS: ClassVar[dict[str, str]] = _bound_keys()

    async def on_key(self, event: events.Key) -> None:
        action = self._KEYS.get(event.key)
        if action is None:
            return  # printable keys and the rest: Input's own handling
        event.stop()
        event.prevent_default()
        await self.run_action(action)
