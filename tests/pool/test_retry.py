"""Tests of ``pool.retry``: the policy's checks and its backoff."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from pool import RetryPolicy


def _one(name: str, value: object) -> dict[str, Any]:
    """Keyword arguments that set one field (any value: the checks are what is tested)."""
    return {name: value}


class TestValidation:
    def test_defaults_are_valid(self) -> None:
        policy = RetryPolicy()

        assert (policy.max_attempts, policy.backoff, policy.max_backoff, policy.jitter) == (
            3,
            0.1,
            10.0,
            0.1,
        )
        assert policy.retry_timeouts is False

    @pytest.mark.parametrize("value", [1, 2, 100])
    def test_max_attempts_of_one_or_more_is_accepted(self, value: int) -> None:
        assert RetryPolicy(max_attempts=value).max_attempts == value

    @pytest.mark.parametrize("value", [0, -1])
    def test_max_attempts_below_one_is_refused(self, value: int) -> None:
        with pytest.raises(ValueError, match=rf"^max_attempts must be >= 1, got {value}$"):
            RetryPolicy(max_attempts=value)

    @pytest.mark.parametrize(("value", "shown"), [(True, "True"), (2.0, "2.0"), ("3", "'3'")])
    def test_max_attempts_must_be_an_int(self, value: object, shown: str) -> None:
        with pytest.raises(TypeError, match=rf"^max_attempts must be an int, got {shown}$"):
            RetryPolicy(max_attempts=value)  # type: ignore[arg-type]

    @pytest.mark.parametrize("name", ["backoff", "max_backoff"])
    @pytest.mark.parametrize("value", [0, 0.0, 0.5, 60])
    def test_waits_of_zero_or_more_are_accepted(self, name: str, value: float) -> None:
        assert getattr(RetryPolicy(**_one(name, value)), name) == value

    @pytest.mark.parametrize("name", ["backoff", "max_backoff"])
    @pytest.mark.parametrize(("value", "shown"), [(-1, "-1"), (-0.1, "-0.1"), (math.nan, "nan")])
    def test_negative_or_nan_waits_are_refused(self, name: str, value: float, shown: str) -> None:
        with pytest.raises(ValueError, match=rf"^{name} must be >= 0, got {shown}$"):
            RetryPolicy(**_one(name, value))

    @pytest.mark.parametrize("name", ["backoff", "max_backoff"])
    def test_bool_waits_are_refused(self, name: str) -> None:
        with pytest.raises(
            TypeError, match=rf"^{name} must be a number of seconds or None, got True$"
        ):
            RetryPolicy(**_one(name, True))

    @pytest.mark.parametrize("name", ["backoff", "max_backoff"])
    def test_none_waits_are_refused(self, name: str) -> None:
        # None is no wait at all: accepted, it breaks delay() at the first retry
        # (None * 2.0), inside the pool. The pool words the same check so for
        # restart_window.
        with pytest.raises(TypeError, match=rf"^{name} must be a number of seconds, got None$"):
            RetryPolicy(**_one(name, None))

    @pytest.mark.parametrize("value", [0, 0.0, 0.5, 1, 1.0])
    def test_jitter_from_0_to_1_is_accepted(self, value: float) -> None:
        assert RetryPolicy(jitter=value).jitter == value

    @pytest.mark.parametrize(("value", "shown"), [(-0.1, "-0.1"), (1.5, "1.5"), (math.nan, "nan")])
    def test_jitter_outside_0_to_1_is_refused(self, value: float, shown: str) -> None:
        message = rf"^jitter must be between 0\.0 and 1\.0, got {shown}$"
        with pytest.raises(ValueError, match=message):
            RetryPolicy(jitter=value)

    @pytest.mark.parametrize(("value", "shown"), [(True, "True"), ("0.1", "'0.1'"), (None, "None")])
    def test_jitter_must_be_a_number(self, value: object, shown: str) -> None:
        with pytest.raises(TypeError, match=rf"^jitter must be a number, got {shown}$"):
            RetryPolicy(jitter=value)  # type: ignore[arg-type]


class TestDelay:
    def test_doubles_from_backoff_until_capped_by_max_backoff(self) -> None:
        policy = RetryPolicy(max_attempts=10, backoff=0.5, max_backoff=4.0, jitter=0.0)
        rng = random.Random(0)

        delays = [policy.delay(attempt, rng) for attempt in range(2, 9)]

        assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]

    def test_max_backoff_below_backoff_caps_the_first_wait(self) -> None:
        policy = RetryPolicy(backoff=3.0, max_backoff=1.0, jitter=0.0)

        assert policy.delay(2, random.Random(0)) == 1.0

    def test_zero_backoff_retries_at_once(self) -> None:
        policy = RetryPolicy(backoff=0.0, jitter=0.5)

        assert [policy.delay(n, random.Random(n)) for n in range(2, 6)] == [0.0] * 4

    @pytest.mark.parametrize(("attempt", "base"), [(2, 1.0), (3, 2.0), (4, 4.0), (12, 8.0)])
    def test_jitter_stays_within_its_bounds_and_uses_them(self, attempt: int, base: float) -> None:
        policy = RetryPolicy(backoff=1.0, max_backoff=8.0, jitter=0.25)
        rng = random.Random(20240601)

        delays = [policy.delay(attempt, rng) for _ in range(2000)]

        # The cap applies before the jitter: around max_backoff, never past 1.25x it.
        assert all(base * 0.75 <= d <= base * 1.25 for d in delays)
        assert min(delays) < base * 0.8
        assert max(delays) > base * 1.2
        assert len(set(delays)) > 1900

    def test_same_seed_gives_the_same_delays(self) -> None:
        policy = RetryPolicy(backoff=1.0, jitter=0.5)
        first, second = random.Random(7), random.Random(7)

        assert [policy.delay(3, first) for _ in range(20)] == [
            policy.delay(3, second) for _ in range(20)
        ]
