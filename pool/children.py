"""Every process group the pool's runners start, so that none outlives the program.

Runners that start processes (shell commands, the process runner) put each
child in a process group of its own and record it here while it lives. A
normal shutdown kills what still runs when it abandons it; :func:`kill_all`
is the last line of defence, for every other way out: the program calls it
when it ends, and it also runs at interpreter exit.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time

__all__ = ("kill_all", "live_groups", "signal_group", "terminate_all", "track", "untrack")

# Reentrant: a signal handler that kills every group (the terminal hung up)
# may run on the thread that holds it.
_lock = threading.RLock()
_groups: set[int] = set()
_hooked = False


def track(pgid: int) -> None:
    """Record a live process group (its leader's pid)."""
    global _hooked
    with _lock:
        _groups.add(pgid)
        if not _hooked:
            atexit.register(kill_all)
            _hooked = True


def untrack(pgid: int) -> None:
    """Forget a process group whose leader has been reaped."""
    with _lock:
        _groups.discard(pgid)


def live_groups() -> frozenset[int]:
    """The process groups recorded now."""
    with _lock:
        return frozenset(_groups)


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a whole process group; False if it no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        # The group's leader has been reaped and its id taken by a process
        # that is not ours: there is nothing of ours left to signal.
        return False
    return True


def kill_all() -> int:
    """SIGKILL every recorded process group; returns how many were signalled."""
    with _lock:
        groups = list(_groups)
        _groups.clear()
    return sum(signal_group(pgid, signal.SIGKILL) for pgid in groups)


def terminate_all(grace: float) -> int:
    """SIGTERM every recorded group, SIGKILL what is left after ``grace`` seconds.

    For a program that must go now without its event loop (its terminal
    hung up): it blocks, for ``grace`` seconds at most. Returns how many
    groups were still alive for the SIGKILL.
    """
    groups = [g for g in live_groups() if signal_group(g, signal.SIGTERM)]
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        time.sleep(0.02)  # no event to wait on: these are not our children's exits
        groups = [g for g in groups if signal_group(g, 0)]
    kill_all()
    return len(groups)
