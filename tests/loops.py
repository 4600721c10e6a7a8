"""Event loops with each task factory the pool must work under.

Python 3.12 added ``asyncio.eager_task_factory``: a task created under it runs
its coroutine's first steps inside ``create_task``, before the call returns.
Textual installs it on its loop, and services use it for speed, so the pool's
tests run once on a default loop and once on an eager one where Python has it.
"""

from __future__ import annotations

import asyncio
import sys

__all__ = ("LOOP_KINDS", "EagerLoopPolicy", "new_loop")

HAS_EAGER = sys.version_info >= (3, 12)

LOOP_KINDS: tuple[str, ...] = ("default", "eager") if HAS_EAGER else ("default",)
"""The loop kinds this Python has: ``default``, and ``eager`` from 3.12."""


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new event loop of ``kind`` (one of :data:`LOOP_KINDS`)."""
    if kind not in LOOP_KINDS:
        raise ValueError(f"loop kind must be one of {LOOP_KINDS}, got {kind!r}")
    loop = asyncio.new_event_loop()
    if kind == "eager":
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    return loop


class EagerLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """The default policy, but every loop it makes starts tasks eagerly."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
        return loop
