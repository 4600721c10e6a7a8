"""``python -m tui``: the wpool-tui dashboard."""

from __future__ import annotations

from .cli import run

run()
