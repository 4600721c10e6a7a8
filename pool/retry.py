"""When a failed job runs again."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .job import check_timeout

__all__ = ("RetryPolicy",)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how soon a failed job is tried again.

    Attempt ``n`` (the first retry is attempt 2) waits
    ``min(backoff * 2 ** (n - 2), max_backoff)`` seconds, scaled by a random
    factor in ``[1 - jitter, 1 + jitter]``.

    Attributes:
        max_attempts: Attempts in all, the first included (1 means no retry).
        backoff: The wait before the first retry, in seconds.
        max_backoff: The longest wait between attempts.
        jitter: How much of each wait is randomised, from 0.0 to 1.0.
        retry_timeouts: Whether a job that timed out is retried too
            (by default only failures and crashes are).
    """

    max_attempts: int = 3
    backoff: float = 0.1
    max_backoff: float = 10.0
    jitter: float = 0.1
    retry_timeouts: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        for name in ("backoff", "max_backoff"):
            value = getattr(self, name)
            if value is None:
                raise TypeError(f"{name} must be a number of seconds, got None")
            object.__setattr__(self, name, check_timeout(name, value, allow_zero=True))
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, int | float):
            raise TypeError(f"jitter must be a number, got {self.jitter!r}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be between 0.0 and 1.0, got {self.jitter!r}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait before ``attempt`` (2 or more)."""
        base = min(self.backoff * 2.0 ** (attempt - 2), self.max_backoff)
        if self.jitter:
            base *= rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return base
