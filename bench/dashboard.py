"""The dashboard under load: the headless app on a real pool running no-op jobs flat out.

In each round the same pool set-up runs for ``dashboard_seconds`` twice, in
alternating order: once alone, once with the dashboard attached (``App.run_test``,
headless: the frames are composed, not written to a terminal). A feeder
submits no-op jobs as fast as the pool takes them. The throughput is taken
while the dashboard watches; then, for another ``dashboard_seconds`` with
the jobs still pouring in, a key (``+``, then ``-``, and so on) is pressed
every ``key_interval`` seconds, and the time is taken from the key event
being posted to the first frame painted after the dashboard's state shows
the new target size: the key's effect on screen, through the pool and its
event stream.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual import events as textual_events
from textual.screen import Screen

import tui.app
from pool import Pool
from tui.app import WpoolApp

from .dispatch import fed_rate, feed, noop
from .measure import Line, Sizes, median, percentile

__all__ = ("run",)

SIZE = (120, 40)
"""The terminal size of the headless dashboard."""


class _MeasuredApp(WpoolApp):
    """The dashboard, counting its frames and timing a key's effect until it is painted."""

    CSS_PATH = str(Path(tui.app.__file__).with_name("app.tcss"))

    def __init__(self, pool: Pool) -> None:
        super().__init__(pool, animate=False, freeze_gc=True)  # as the command does
        self.want_target: int | None = None
        self.shown = False
        self.painted: asyncio.Future[float] | None = None

    def refresh_now(self) -> None:
        super().refresh_now()
        if self.want_target is not None and self.state.target_workers == self.want_target:
            self.shown = True  # in the widgets now; on screen at the next paint

    def _display(self, screen: Screen[Any], renderable: Any) -> None:
        super()._display(screen, renderable)
        painted = self.painted
        if self.shown and painted is not None and not painted.done():
            painted.set_result(time.perf_counter())

    async def press(self, key: str, character: str, target: int) -> float:
        """Post ``key`` and return the seconds until its effect (``target``) is painted."""
        self.want_target = target
        self.shown = False
        self.painted = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        self.post_message(textual_events.Key(key, character))
        try:
            end = await asyncio.wait_for(self.painted, 5.0)
        finally:
            self.want_target = None
            self.painted = None
        return end - start


@dataclass(slots=True)
class _Round:
    alone: float = 0.0
    attached: float = 0.0
    folded: float = 0.0
    fps: float = 0.0
    missed: int = 0
    keys: list[float] = field(default_factory=list)


async def _alone(sizes: Sizes) -> float:
    pool = Pool(noop, workers=sizes.dashboard_workers, queue_size=100)
    await pool.start()
    rate = await fed_rate(pool, sizes.dashboard_seconds)  # timed once the jobs flow, as below
    await pool.shutdown()
    return rate


async def _attached(sizes: Sizes, into: _Round) -> float:
    pool = Pool(noop, workers=sizes.dashboard_workers, queue_size=100)
    await pool.start()
    app = _MeasuredApp(pool)
    async with app.run_test(size=SIZE):
        stop = asyncio.Event()
        feeder = asyncio.create_task(feed(pool, stop))
        await asyncio.sleep(0.1)  # the first frames are drawn; the events pour in
        # First the throughput, with the dashboard only watching: keys come after,
        # as each resize is a layout of the screen the watching alone never needs.
        state = app.state
        before = pool.stats().finished
        seq, missed, frames = state.seq, state.missed, app.frames
        start = time.perf_counter()
        await asyncio.sleep(sizes.dashboard_seconds)
        done = pool.stats().finished - before
        elapsed = time.perf_counter() - start
        into.missed += state.missed - missed
        into.folded = (state.seq - seq - (state.missed - missed)) / elapsed
        into.fps = (app.frames - frames) / elapsed
        # Then the keys, while the events still pour in.
        end = time.perf_counter() + sizes.dashboard_seconds
        grow = True
        while time.perf_counter() + sizes.key_interval < end:
            await asyncio.sleep(sizes.key_interval)
            target = app.state.target_workers + (1 if grow else -1)
            key, char = ("plus", "+") if grow else ("minus", "-")
            into.keys.append(await app.press(key, char, target))
            grow = not grow
        stop.set()
        await feeder
        await pool.shutdown(grace=1.0)
        app.exit(0)
    return done / elapsed


async def run(sizes: Sizes) -> list[Line]:
    """Throughput kept, events folded, frames and key latency, medians over the rounds."""
    rounds = [_Round() for _ in range(sizes.rounds)]
    for index, one in enumerate(rounds):
        if index % 2:
            one.attached = await _attached(sizes, one)
            one.alone = await _alone(sizes)
        else:
            one.alone = await _alone(sizes)
            one.attached = await _attached(sizes, one)
    kept = median([r.attached / r.alone for r in rounds])
    keys = [k * 1000 for r in rounds for k in r.keys]
    p50 = percentile(keys, 50) if keys else float("nan")
    p99 = percentile(keys, 99) if keys else float("nan")
    missed = sum(r.missed for r in rounds)
    w = sizes.dashboard_workers
    return [
        Line(
            section="dashboard",
            name=f"pool throughput with the dashboard / without ({w} workers)",
            value=kept,
            unit="x",
            target=">= 0.70x",
            met=kept >= 0.7,
            detail=(
                f"{median([r.attached for r in rounds]):,.0f} vs "
                f"{median([r.alone for r in rounds]):,.0f} jobs/s"
            ),
        ),
        Line(
            section="dashboard",
            name="events folded per second",
            value=median([r.folded for r in rounds]),
            unit="/s",
            detail=f"{missed:,} events missed (resynced)" if missed else "none missed",
        ),
        Line(
            section="dashboard",
            name="frames per second",
            value=median([r.fps for r in rounds]),
            unit="/s",
            detail="the pump and widgets, at most 20 a second",
        ),
        Line(
            section="dashboard",
            name="key to its effect on screen, p50",
            value=p50,
            unit="ms",
            detail=f"{len(keys)} presses of + and -",
        ),
        Line(
            section="dashboard",
            name="key to its effect on screen, p99",
            value=p99,
            unit="ms",
            target="< 150 ms",
            met=p99 < 150,
            detail=f"worst {max(keys):.0f} ms" if keys else "",
        ),
    ]
