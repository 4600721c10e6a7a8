"""What a graceful shutdown hands back."""

from __future__ import annotations

from dataclasses import dataclass

from .job import Job
from .phase import PoolPhase

__all__ = ("ShutdownReport",)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownReport:
    """The account of a shutdown, for every job that was live when it began.

    Attributes:
        finished: Ids of jobs that ended on their own during the shutdown
            (succeeded, failed or timed out).
        cancelled: Ids of jobs that were running and were cancelled.
        not_started: Ids of queued jobs handed back without running (with
            ``drain=False``, or left when the grace period ran out).
        abandoned: Ids of jobs that ignored cancellation and were abandoned.
        unfinished: The jobs of ``cancelled``, ``not_started`` and
            ``abandoned``, in that order, ready to be saved and submitted again.
        duration: Seconds from the start of the shutdown to its end.
        phase_reached: The last shutdown phase it went through: ``draining``
            if everything finished in time, ``cancelling`` if it had to
            cancel, ``forcing`` if it had to abandon.
        reason: Why the pool shut down, when not on request (supervision
            gave up); None for a requested shutdown.
        failed: Whether the pool ended ``failed`` rather than ``stopped``.
    """

    finished: tuple[str, ...]
    cancelled: tuple[str, ...]
    not_started: tuple[str, ...]
    abandoned: tuple[str, ...]
    unfinished: tuple[Job, ...]
    duration: float
    phase_reached: PoolPhase
    reason: str | None
    failed: bool

    @property
    def clean(self) -> bool:
        """Whether nothing was cancelled, left unstarted or abandoned."""
        return not self.unfinished and not self.failed
