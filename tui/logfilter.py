"""The filter line of the job log and the failed-jobs list (``/``): parse it, match rows.

No Textual here. A filter is words separated by spaces, all of which must
match (case does not matter):

- ``outcome:failed``, ``worker:w3``: that field is exactly this value;
- ``id:img-``, ``command:rsync``, ``error:timeout``: that field contains it;
- any other word: the job's id, command, worker, outcome or error contains it.

A field named twice matches either value: ``outcome:failed outcome:timed_out``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ("FIELDS", "LogFilter")

FIELDS = ("id", "command", "worker", "outcome", "error")
"""What a row has that a filter can name, in the order the help lists them."""

_EXACT = frozenset({"worker", "outcome"})
"""Fields matched whole: ``worker:w1`` must not match ``w10``."""


@dataclass(frozen=True, slots=True)
class LogFilter:
    """A parsed filter line; the empty filter matches every row."""

    text: str
    """The line as typed (stripped)."""
    words: tuple[str, ...]
    """Free words: each must be in one of the row's fields."""
    terms: tuple[tuple[str, tuple[str, ...]], ...]
    """``field:value`` terms, grouped by field: each field must match one of its values."""

    @classmethod
    def parse(cls, text: str) -> LogFilter:
        """Parse a filter line.

        Raises:
            ValueError: A ``field:value`` term names an unknown field, or has no value.
        """
        words: list[str] = []
        terms: dict[str, list[str]] = {}
        for part in text.lower().split():
            name, colon, value = part.partition(":")
            if not colon:
                words.append(part)
                continue
            if name not in FIELDS:
                raise ValueError(f"unknown field {name!r} (fields: {', '.join(FIELDS)})")
            if not value:
                raise ValueError(f"{name}: needs a value, as in {name}:{_EXAMPLE[name]}")
            terms.setdefault(name, []).append(value)
        return cls(
            text=text.strip(),
            words=tuple(words),
            terms=tuple((name, tuple(values)) for name, values in terms.items()),
        )

    def __bool__(self) -> bool:
        return bool(self.words or self.terms)

    def matches(self, row: Mapping[str, str]) -> bool:
        """Whether a row (its fields by name, as in :data:`FIELDS`) passes the filter."""
        if not self:
            return True
        for name, values in self.terms:
            field = row.get(name, "").lower()
            if name in _EXACT:
                if field not in values:
                    return False
            elif not any(value in field for value in values):
                return False
        if self.words:
            everything = " ".join(row.get(name, "") for name in FIELDS).lower()
            return all(word in everything for word in self.words)
        return True


_EXAMPLE = {
    "id": "img-",
    "command": "rsync",
    "worker": "w3",
    "outcome": "failed",
    "error": "timeout",
}
