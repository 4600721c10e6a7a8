"""wpool-tui: a Textual dashboard that shows a pool live and drives it."""
