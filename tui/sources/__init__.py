"""What the dashboard reads: a source (see :mod:`.base`), and the kinds there are."""

from __future__ import annotations

from .base import Control as Control
from .base import EventFeed as EventFeed
from .base import JobView as JobView
from .base import Source as Source
from .base import SourceError as SourceError

__all__ = ("Control", "EventFeed", "JobView", "Source", "SourceError")
