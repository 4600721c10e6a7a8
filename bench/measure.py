"""How every figure is taken: rounds that alternate contenders, and medians.

Absolute times on a shared machine are noisy, so each figure is a ratio
against a peer measured in the same process and the same round. Within a
round the contenders run one after the other, and the order rotates from one
round to the next, so that neither side always runs first (or last, with a
warm cache or a full heap). A figure is the median over the rounds.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

__all__ = ("Line", "Sizes", "alternate", "median", "percentile", "ratios")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sizes:
    """How big each benchmark is: the full run, or a tiny one for the tests."""

    rounds: int = 5
    """Rounds of every alternating comparison (medians over these)."""
    dispatch_jobs: int = 50_000
    """No-op jobs per contender per round, on the event loop."""
    thread_jobs: int = 20_000
    """No-op jobs per contender per round, in threads."""
    workers: int = 100
    """Workers (or the concurrency limit) of every dispatch contender."""
    queue_size: int = 100
    """The bound of every contender's queue."""
    latency_jobs: int = 20_000
    """Jobs of the latency-bound benchmark."""
    latency_workers: int = 1_000
    """Workers of the latency-bound benchmark."""
    latency_sleep: float = 0.010
    """Seconds each latency-bound job sleeps."""
    shutdown_workers: int = 100
    """Workers of the idle pool that shuts down."""
    hung_jobs: int = 4
    """Jobs that ignore their cancellation, in the shutdown overshoot benchmark."""
    grace: float = 0.1
    """``grace`` of the shutdown with hung jobs."""
    cancel_grace: float = 0.1
    """``cancel_grace`` of the shutdown with hung jobs."""
    dashboard_seconds: float = 2.0
    """Seconds of each dashboard round (with, then without the dashboard)."""
    dashboard_workers: int = 8
    """Workers of the pool under the dashboard."""
    key_interval: float = 0.2
    """Seconds between two key presses while the dashboard is under load."""
    memory_jobs: int = 1_000_000
    """No-op jobs of the memory benchmark."""
    idle_seconds: float = 30.0
    """Seconds the idle dashboard's CPU time is measured over (a real terminal)."""
    busy_jobs: int = 3_000
    """``true`` commands of the busy run, with the dashboard and headless."""
    jobfile_lines: int = 1_000_000
    """Lines of the job file that ``wpool-tui run`` reads in the job file benchmark."""
    service_seconds: float = 2.0
    """Seconds of each run of the served pool (with nobody, one, or many readers)."""
    service_workers: int = 8
    """Workers of the served pool."""
    service_readers: int = 20
    """Readers attached at once in the many-readers run."""
    request_interval: float = 0.05
    """Seconds between two control requests while their latency is measured."""
    celery_tasks: int = 3_000
    """No-op tasks of the Celery flood (each makes four events: sent, received,
    started, succeeded)."""
    celery_lag_tasks: int = 200
    """Short tasks, sent at a steady pace, whose end-to-row lag is measured."""


FULL = Sizes()
"""The sizes ``make bench`` runs."""

TINY = Sizes(
    rounds=1,
    dispatch_jobs=200,
    thread_jobs=100,
    workers=10,
    queue_size=10,
    latency_jobs=200,
    latency_workers=50,
    latency_sleep=0.001,
    shutdown_workers=4,
    hung_jobs=1,
    grace=0.01,
    cancel_grace=0.01,
    dashboard_seconds=0.3,
    dashboard_workers=2,
    key_interval=0.05,
    memory_jobs=2_000,
    idle_seconds=0.5,
    busy_jobs=20,
    jobfile_lines=2_000,
    service_seconds=0.2,
    service_workers=2,
    service_readers=3,
    request_interval=0.02,
    celery_tasks=40,
    celery_lag_tasks=10,
)
"""Sizes small enough for a test: every benchmark runs, none of its figures means much."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One line of the table: a figure, its target and its verdict.

    Attributes:
        section: The benchmark it belongs to (``dispatch``, ``latency``...).
        name: What is measured, against what.
        value: The figure (a median).
        unit: How to read it: ``x`` for a ratio, ``ms``, ``MB``, ``/s``...
        target: The target as text (``>= 0.5x``), or empty for a figure
            shown for context.
        met: Whether the target is met; None when there is no target.
        detail: The figures behind it (the medians of each side).
    """

    section: str
    name: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    detail: str = ""

    @property
    def verdict(self) -> str:
        """``met``, ``MISSED`` or empty."""
        if self.met is None:
            return ""
        return "met" if self.met else "MISSED"


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (which must not be empty)."""
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile of ``values`` (nearest rank; ``values`` must not be empty)."""
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, round(p / 100 * len(ranked) + 0.5) - 1))]


async def alternate(
    contenders: dict[str, Callable[[], Awaitable[float]]], rounds: int
) -> dict[str, list[float]]:
    """Run each contender once a round, rotating the order, for ``rounds`` rounds.

    Args:
        contenders: Each returns its figure for one run (a rate, a time...).
        rounds: How many rounds.

    Returns:
        Every contender's figure of every round, in round order.
    """
    names = list(contenders)
    results: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            # Start each run from a collected heap: what one contender left
            # behind must not be collected on another's time.
            gc.collect()
            results[name].append(await contenders[name]())
    return results


def ratios(results: dict[str, list[float]], subject: str, peer: str) -> list[float]:
    """``subject / peer`` in each round."""
    return [a / b for a, b in zip(results[subject], results[peer], strict=True)]
