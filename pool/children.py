"""Every process the pool's runners start, so that none outlives its job or the program.

Runners that start processes (shell commands, the process runner) put each
child in a process group of its own and record it here while it lives. A
normal shutdown kills what still runs when it abandons it; :func:`kill_all`
is the last line of defence, for every other way out: the program calls it
when it ends, and it also runs at interpreter exit.

A process can leave its group (``setsid``, ``start_new_session=True``).
Each job's processes carry a key of that attempt in their environment
(:data:`JOB_VARIABLE`); when the job ends, :func:`end_job` kills whatever
still carries it, wherever it went. A program that runs jobs calls
:func:`guard` once: it becomes a child subreaper (orphans come to it, not
to init), and a watchdog process kills every job process, found by a run
marker in their environment, as soon as the program is gone, even by
SIGKILL. What no key can find is a process that also clears its
environment (``env -i``) and closes the descriptors it inherited, as a
daemon does: it lives until the program ends (:func:`sweep` kills what
the program adopted), and survives a SIGKILL of the program.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import os
import secrets
import select
import signal
import sys
import threading
import time
from typing import Final

__all__ = (
    "JOB_VARIABLE",
    "RUN_VARIABLE",
    "become_subreaper",
    "end_job",
    "guard",
    "has_children",
    "job_environment",
    "kill_all",
    "live_groups",
    "new_job_key",
    "run_environment",
    "signal_group",
    "sweep",
    "terminate_all",
    "track",
    "untrack",
)

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


# --- what a job leaves behind, and what outlives this program -----------------

RUN_VARIABLE: Final = "WPOOL_RUN"
"""Set by :func:`guard` in every job process's environment: the watchdog finds them by it."""

JOB_VARIABLE: Final = "WPOOL_JOB_KEY"
"""Set in each job's environment to a key of that attempt: what it leaves is found by it."""

_keys = itertools.count(1)
_run_marker: str | None = None
_watchdog: int | None = None
"""The watchdog's pid: it lives until this process ends, so nothing waits for it."""
_watchdog_pipe = -1


def new_job_key() -> str:
    """A key no other job of this process has had (``<pid>.<n>``)."""
    return f"{os.getpid()}.{next(_keys)}"


def run_environment(env: dict[str, str]) -> dict[str, str]:
    """``env`` with this program's run marker, once :func:`guard` has run."""
    if _run_marker is not None:
        env[RUN_VARIABLE] = _run_marker
    return env


def job_environment(env: dict[str, str], key: str) -> dict[str, str]:
    """``env`` with the job's key, and this program's run marker once :func:`guard` ran."""
    env[JOB_VARIABLE] = key
    return run_environment(env)


def has_children() -> bool:
    """Whether this process has any child process, live or not yet reaped."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def end_job(key: str, sentinel: int | None = None, *, wait: float = 0.05) -> int:
    """Kill every process the job ``key`` left, wherever it went; returns how many.

    Call once the job's own process has exited and its group has been
    killed. A process that left the job's process group or session (``setsid
    cmd &``, ``Popen(start_new_session=True)``) is found by the job's key in
    its environment. ``sentinel`` is the read end of a pipe whose write end
    every process of the job inherited: at its end of file, none is left
    that kept it, and nothing is searched (the usual case, which costs
    nothing). Processes that were adopted by this one (a child subreaper)
    are reaped.
    """
    if sentinel is not None and _ended(sentinel, wait):
        return 0
    return _kill_marked(f"{JOB_VARIABLE}={key}".encode())


def _ended(fd: int, wait: float) -> bool:
    """Whether every writer of the pipe ``fd`` has closed it, within ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            return False
        if not os.read(fd, 4096):
            return True


def _kill_marked(needle: bytes) -> int:
    """SIGKILL every process whose environment holds ``needle``, until none is left."""
    spared = {os.getpid()}
    if _watchdog is not None:
        spared.add(_watchdog)
    killed: set[int] = set()
    for _ in range(50):  # each round kills what the last one's forked meanwhile
        found = [pid for pid in _marked(needle) if pid not in spared]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed.update(found)
        _wait_gone(found, 0.5)
    # One that was dying at the last look (its environment already gone) has
    # not necessarily exited yet: ended means exited.
    _wait_gone(list(killed), 1.0)
    _reap(killed)
    return len(killed)


def _wait_gone(pids: list[int], within: float) -> None:
    """Wait until every one of ``pids`` has exited (a pidfd turns readable), ``within`` at most."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            continue  # gone already
    try:
        deadline = time.monotonic() + within
        pending = list(fds)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            readable, _, _ = select.select(pending, [], [], left)
            pending = [fd for fd in pending if fd not in readable]
    finally:
        for fd in fds:
            os.close(fd)


def _marked(needle: bytes) -> list[int]:
    """Pids of the live processes whose environment holds the entry ``needle``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as file:
                environ = file.read()
        except OSError:
            continue  # gone, or not ours to read
        if needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


def _reap(pids: set[int]) -> None:
    """Reap those of ``pids`` that are this process's children and have died."""
    for pid in list(pids):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue  # not ours to reap: its own parent, or init, does
        if done:
            pids.discard(pid)


def become_subreaper() -> bool:
    """Adopt the orphans of this process's descendants (Linux's PR_SET_CHILD_SUBREAPER).

    A process whose parent dies is then given to this one, not to init: it
    stays within reach. Returns False where the kernel does not offer it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


_PR_SET_CHILD_SUBREAPER: Final = 36


def guard() -> str | None:
    """Make sure no process a job starts outlives this program; None if done, else why not.

    For a program that runs jobs (``wpool-tui run``), on Linux: this
    process becomes a child subreaper (:func:`become_subreaper`), every job
    carries a run marker in its environment, and a small watchdog process,
    in a session of its own, waits for this one to vanish, however it ends
    (SIGKILL included), then kills every process that carries the marker,
    within about a second. Calling it again does nothing more.
    """
    global _run_marker, _watchdog, _watchdog_pipe
    if _run_marker is not None:
        return None
    if not become_subreaper():
        return "no child subreaper here (it needs Linux)"
    marker = f"{os.getpid()}-{secrets.token_hex(6)}"
    read, write = os.pipe()  # not inherited by jobs: only the watchdog gets it
    try:
        # Spawned, not a Popen: it outlives this process by design, and a
        # Popen would warn, at exit, that it is still running.
        os.set_inheritable(read, True)
        _watchdog = os.posix_spawn(
            sys.executable,
            [sys.executable, "-c", _WATCHDOG, str(read), f"{RUN_VARIABLE}={marker}"],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            ],
            setsid=True,  # out of reach of the terminal's ctrl+c
        )
    except OSError as exc:
        os.close(write)
        return f"no watchdog process: {exc.strerror or exc}"
    finally:
        os.close(read)
    _watchdog_pipe = write
    _run_marker = marker
    return None


def sweep() -> int:
    """Kill every process of this program's jobs (after :func:`guard`); how many there were.

    Those that carry the run marker, and, this process being their child
    subreaper, every orphan it adopted: a daemon that cleared its
    environment is one of those once its parents are gone.
    """
    if _run_marker is None:
        return 0
    killed = _kill_marked(f"{RUN_VARIABLE}={_run_marker}".encode())
    me = os.getpid()
    spared = {_watchdog} if _watchdog is not None else set()
    for _ in range(50):  # each round, the children of the last one's are adopted
        found = [pid for pid in _children_of(me) if pid not in spared]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(found, 0.5)
        _reap(set(found))
        killed += len(found)
    return killed


def _children_of(parent: int) -> list[int]:
    """The live (not zombie) child processes of ``parent``, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                fields = file.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != b"Z":
            found.append(int(entry))
    return found


# The watchdog: it reads until this process has gone (its end of the pipe
# closes with it, whatever killed it), then kills the marked processes.
_WATCHDOG: Final = """
import os, signal, sys, time
fd, needle = int(sys.argv[1]), sys.argv[2].encode()
signal.signal(signal.SIGINT, signal.SIG_IGN)
while os.read(fd, 4096):
    pass
me = os.getpid()
for _ in range(100):
    found = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as file:
                if needle not in file.read().split(b"\\0"):
                    continue
            os.kill(int(entry), signal.SIGKILL)
            found += 1
        except OSError:
            continue
    if not found:
        break
    time.sleep(0.01)
"""
