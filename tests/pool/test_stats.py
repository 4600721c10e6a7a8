"""Tests of ``pool.stats``: latency percentiles, throughput and the pool's counters."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from pool import Percentiles, PoolStats
from pool.stats import LatencyWindow, Throughput

NO_TIMES = Percentiles(p50=0.0, p95=0.0, p99=0.0, count=0)


class TestLatencyWindow:
    def test_nearest_rank_of_1_to_100(self) -> None:
        window = LatencyWindow()
        samples = [float(n) for n in range(1, 101)]
        random.Random(3).shuffle(samples)
        for s in samples:
            window.add(s)

        assert window.percentiles() == Percentiles(p50=50.0, p95=95.0, p99=99.0, count=100)

    def test_nearest_rank_of_few_samples(self) -> None:
        window = LatencyWindow()
        for s in (0.3, 0.1, 0.2):
            window.add(s)

        # Ranks ceil(3 * p / 100): 2, 3 and 3.
        assert window.percentiles() == Percentiles(p50=0.2, p95=0.3, p99=0.3, count=3)

    def test_one_sample_is_every_percentile(self) -> None:
        window = LatencyWindow()
        window.add(0.7)

        assert window.percentiles() == Percentiles(p50=0.7, p95=0.7, p99=0.7, count=1)

    def test_empty_gives_zeros_and_count_0(self) -> None:
        assert LatencyWindow().percentiles() == NO_TIMES

    def test_keeps_only_the_last_size_samples(self) -> None:
        window = LatencyWindow(size=10)
        for n in range(1, 1001):
            window.add(float(n))

        # Only 991..1000 remain: rank 5 of 10 is 995, rank 10 is 1000.
        assert window.percentiles() == Percentiles(p50=995.0, p95=1000.0, p99=1000.0, count=10)

    def test_old_outliers_leave_the_window(self) -> None:
        window = LatencyWindow(size=4)
        window.add(100.0)
        for _ in range(4):
            window.add(1.0)

        assert window.percentiles().p99 == 1.0


def _steady(meter: Throughput, per_second: int, start: int, end: int) -> None:
    """Count ``per_second`` events spread over each whole second in ``[start, end)``."""
    for second in range(start, end):
        for i in range(per_second):
            meter.add(second + i / per_second)


class TestThroughput:
    def test_steady_rate_reads_as_that_rate(self) -> None:
        meter = Throughput(now=0.0, window=5)
        _steady(meter, 10, 0, 5)

        assert meter.rate(5.0) == pytest.approx(10.0)

    def test_steady_rate_long_after_start(self) -> None:
        meter = Throughput(now=1000.0, window=5)
        _steady(meter, 20, 1000, 1060)

        assert meter.rate(1060.0) == pytest.approx(20.0)

    def test_first_second_after_start_is_not_a_spike(self) -> None:
        meter = Throughput(now=100.0, window=5)
        for _ in range(3):
            meter.add(100.05)

        # 3 events in 0.1 s are 3 per second, not 30.
        assert meter.rate(100.1) == pytest.approx(3.0)

    def test_time_before_start_does_not_dilute_the_rate(self) -> None:
        meter = Throughput(now=100.0, window=5)
        _steady(meter, 10, 100, 102)

        # Two seconds of 10/s: the window's earlier seconds predate the meter.
        assert meter.rate(102.0) == pytest.approx(10.0)

    def test_old_buckets_fall_out_of_the_window(self) -> None:
        meter = Throughput(now=0.0, window=5)
        _steady(meter, 10, 0, 2)  # seconds 0 and 1
        _steady(meter, 4, 6, 7)  # second 6

        # At 7.0 the window is seconds 3..7: only second 6's 4 events remain.
        assert meter.rate(7.0) == pytest.approx(1.0)
        assert meter.rate(20.0) == 0.0

    def test_no_events_reads_zero(self) -> None:
        meter = Throughput(now=50.0)

        assert meter.rate(50.5) == 0.0
        assert meter.rate(80.0) == 0.0

    def test_reading_the_rate_does_not_change_it(self) -> None:
        meter = Throughput(now=0.0, window=5)
        _steady(meter, 10, 0, 3)

        first = meter.rate(3.5)
        assert meter.rate(3.5) == first
        meter.add(3.6)
        assert meter.rate(3.7) == pytest.approx((30 + 1) / 3.7)


def make_stats(**changes: Any) -> PoolStats:
    """A balanced set of figures: 20 submitted = 1 + 3 + 2 + (8 + 2 + 1 + 2 + 1)."""
    stats = PoolStats(
        submitted=20,
        rejected=1,
        queued=3,
        running=2,
        succeeded=8,
        failed=2,
        timed_out=1,
        cancelled=2,
        abandoned=1,
        retried=4,
        restarts=1,
        workers=4,
        target_workers=4,
        busy_workers=2,
        retiring_workers=0,
        queue_capacity=10,
        oldest_queued_age=0.0,
        run_time=NO_TIMES,
        queue_wait=NO_TIMES,
        throughput=0.0,
        dead_letters=2,
    )
    return dataclasses.replace(stats, **changes)


IDENTITY_TERMS = [
    "submitted",
    "rejected",
    "queued",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "abandoned",
]


class TestPoolStats:
    def test_balanced_when_the_identity_holds(self) -> None:
        assert make_stats().balanced() is True

    @pytest.mark.parametrize("name", IDENTITY_TERMS)
    def test_unbalanced_when_any_term_is_off(self, name: str) -> None:
        stats = make_stats()

        assert make_stats(**{name: getattr(stats, name) + 1}).balanced() is False

    @pytest.mark.parametrize("name", ["retried", "restarts", "dead_letters", "busy_workers"])
    def test_other_counters_are_not_in_the_identity(self, name: str) -> None:
        assert make_stats(**{name: 99}).balanced() is True

    def test_finished_counts_each_terminal_state_once(self) -> None:
        stats = make_stats(succeeded=1, failed=2, timed_out=4, cancelled=8, abandoned=16)

        assert stats.finished == 31

    def test_utilisation_is_busy_over_live_workers(self) -> None:
        assert make_stats(workers=4, busy_workers=3).utilisation == 0.75
        assert make_stats(workers=4, busy_workers=0).utilisation == 0.0

    def test_utilisation_with_no_workers_is_zero(self) -> None:
        assert make_stats(workers=0, busy_workers=0).utilisation == 0.0

    def test_frozen(self) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            make_stats().queued = 0  # type: ignore[misc]
