"""Tests of ``pool.phase``: the lifecycle's phases and the moves between them."""

from __future__ import annotations

import asyncio

from pool import Job, JobContext, ManualClock, Pool, PoolPhase, events
from pool.phase import can_move

P = PoolPhase

ALLOWED = {
    (P.CREATED, P.STARTING),
    (P.CREATED, P.STOPPED),
    (P.CREATED, P.FAILED),
    (P.STARTING, P.RUNNING),
    (P.STARTING, P.DRAINING),
    (P.RUNNING, P.PAUSED),
    (P.PAUSED, P.RUNNING),
    (P.RUNNING, P.DRAINING),
    (P.PAUSED, P.DRAINING),
    (P.DRAINING, P.CANCELLING),
    (P.CANCELLING, P.FORCING),
    *((p, end) for p in (P.DRAINING, P.CANCELLING, P.FORCING) for end in (P.STOPPED, P.FAILED)),
}
"""Every move a pool makes: created -> starting -> running <-> paused -> draining ->
cancelling -> forcing -> stopped (or failed), skipping only what a shutdown may skip."""


def test_only_the_lifecycles_moves_are_allowed() -> None:
    for start in PoolPhase:
        for end in PoolPhase:
            assert can_move(start, end) == ((start, end) in ALLOWED), (start, end)


async def test_a_pools_phases_change_only_by_allowed_moves(clock: ManualClock) -> None:
    gate = asyncio.Event()

    async def handler(job: Job, ctx: JobContext) -> None:
        await gate.wait()

    pool = Pool(handler, workers=1, clock=clock)
    sub = pool.events()
    await pool.start()
    await pool.pause()
    await pool.resume()
    pool.submit_nowait(Job())
    stopping = asyncio.ensure_future(pool.shutdown(grace=1.0, cancel_grace=1.0))
    await clock.advance(2.0)
    await stopping

    moves = [(e.previous, e.phase) for e in sub.drain() if isinstance(e, events.PhaseChanged)]
    assert moves == [
        (P.CREATED, P.STARTING),
        (P.STARTING, P.RUNNING),
        (P.RUNNING, P.PAUSED),
        (P.PAUSED, P.RUNNING),
        (P.RUNNING, P.DRAINING),
        (P.DRAINING, P.CANCELLING),
        (P.CANCELLING, P.STOPPED),
    ]
    assert all(can_move(*move) for move in moves)
