"""Running the program's event loop so that nothing left on it can hold the exit.

``asyncio.run`` cancels every task still pending at the end and waits for
each to finish: a job's coroutine that swallows ``CancelledError`` (which
the pool abandons on time) would hold the program forever. :func:`run_loop`
gives what is left a short moment, then closes the loop without it.

From the moment the loop ends to the program's exit, SIGINT, SIGTERM and
SIGHUP no longer stop the program (:func:`hold_signals`): what remains is
saving the unfinished jobs and printing the account, which a second ctrl+c
or a third SIGTERM must not cut short.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine
from types import FrameType
from typing import Any, Final, TypeVar

__all__ = ("HELD", "LINGER", "hold_signals", "run_loop")

T = TypeVar("T")

LINGER: Final = 0.25
"""Seconds the tasks left at the end have, once cancelled, to finish."""

HELD: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that, once the loop has ended, are told but never stop the program."""


def run_loop(main: Coroutine[Any, Any, T], *, linger: float = LINGER) -> T:
    """Run ``main`` on a new event loop and return its result; never wait on what it leaves.

    When ``main`` ends (or raises), every task still pending is cancelled
    and given ``linger`` seconds; whatever still runs then is left behind,
    unawaited, and the loop is closed. The default executor is not waited
    for either. The signals of :data:`HELD` are held from then on (see
    :func:`hold_signals`), with no moment in between when one would kill.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _let_go(loop, linger)
        finally:
            # Blocked before the loop's handlers go (closing the loop restores
            # the default ones), so that no signal lands in between.
            signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
            try:
                asyncio.set_event_loop(None)
                loop.close()
                hold_signals()
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)


def _let_go(loop: asyncio.AbstractEventLoop, linger: float) -> None:
    """Cancel what is left on ``loop``; wait ``linger`` seconds at most for it."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=linger))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {"message": "a task raised as the program ended", "exception": task.exception()}
            )
    _STRANDED.update(task for task in tasks if not task.done())
    shutdown = loop.create_task(loop.shutdown_asyncgens())
    loop.run_until_complete(asyncio.wait({shutdown}, timeout=linger))


# Tasks that would not stop, kept referenced so that they are never
# collected (and complained about) before the program has exited.
_STRANDED: set[asyncio.Task[Any]] = set()


def hold_signals() -> None:
    """From now on, SIGINT, SIGTERM and SIGHUP are told on standard error and ignored."""
    for signum in HELD:
        signal.signal(signum, _told)


def _told(signum: int, frame: FrameType | None) -> None:
    # os.write, not print: this may run in the middle of another write to stderr.
    name = signal.Signals(signum).name
    message = f"wpool-tui: {name}: the pool has stopped; finishing the account first\n"
    try:
        os.write(2, message.encode())
    except OSError:
        return  # no standard error: nothing to tell, and still nothing to stop
