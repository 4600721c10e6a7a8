"""The pool's lifecycle phases."""

from __future__ import annotations

import enum

__all__ = ("PoolPhase", "can_move")


class PoolPhase(enum.Enum):
    """Where the pool is in its life: created -> starting -> running <-> paused
    -> draining -> cancelling -> forcing -> stopped (or failed)."""

    CREATED = "created"
    """Built, not started: no workers yet."""
    STARTING = "starting"
    """``start()`` is bringing workers up."""
    RUNNING = "running"
    """Workers take jobs from the queue."""
    PAUSED = "paused"
    """Jobs are still accepted, but workers take none from the queue."""
    DRAINING = "draining"
    """Shutdown, first phase: intake closed, running (and, with drain, queued) jobs finish."""
    CANCELLING = "cancelling"
    """Shutdown, second phase: the grace period ran out and running jobs were cancelled."""
    FORCING = "forcing"
    """Shutdown, last phase: jobs that ignored cancellation are abandoned."""
    STOPPED = "stopped"
    """Shut down; every job has a terminal state."""
    FAILED = "failed"
    """Shut down because supervision gave up (workers crashed too often)."""

    @property
    def is_shutting_down(self) -> bool:
        """Whether a shutdown has begun (including when it has finished)."""
        return self in _SHUTDOWN

    @property
    def is_final(self) -> bool:
        """Whether the pool has stopped for good."""
        return self is PoolPhase.STOPPED or self is PoolPhase.FAILED


_SHUTDOWN = frozenset(
    {
        PoolPhase.DRAINING,
        PoolPhase.CANCELLING,
        PoolPhase.FORCING,
        PoolPhase.STOPPED,
        PoolPhase.FAILED,
    }
)


_MOVES: dict[PoolPhase, frozenset[PoolPhase]] = {
    PoolPhase.CREATED: frozenset({PoolPhase.STARTING, PoolPhase.STOPPED, PoolPhase.FAILED}),
    # Supervision may give up while the workers start: the shutdown then drains.
    PoolPhase.STARTING: frozenset({PoolPhase.RUNNING, PoolPhase.DRAINING}),
    PoolPhase.RUNNING: frozenset({PoolPhase.PAUSED, PoolPhase.DRAINING}),
    PoolPhase.PAUSED: frozenset({PoolPhase.RUNNING, PoolPhase.DRAINING}),
    PoolPhase.DRAINING: frozenset({PoolPhase.CANCELLING, PoolPhase.STOPPED, PoolPhase.FAILED}),
    PoolPhase.CANCELLING: frozenset({PoolPhase.FORCING, PoolPhase.STOPPED, PoolPhase.FAILED}),
    PoolPhase.FORCING: frozenset({PoolPhase.STOPPED, PoolPhase.FAILED}),
    PoolPhase.STOPPED: frozenset(),
    PoolPhase.FAILED: frozenset(),
}
"""The phases each phase may move to; every other move is a bug."""


def can_move(start: PoolPhase, end: PoolPhase) -> bool:
    """Whether a pool may go from phase ``start`` to phase ``end``."""
    return end in _MOVES[start]
