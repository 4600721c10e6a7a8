"""The pool's settings, checked once: every ``Pool(...)`` argument, or a clear error."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal

from .clock import Clock, MonotonicClock
from .job import Job, JobContext, check_timeout
from .retry import RetryPolicy
from .runners import RunnerFactory

__all__ = (
    "DEFAULT_GRACE",
    "Handler",
    "HandlerKind",
    "RunnerKind",
    "Settings",
    "check_int",
)

Handler = (
    Callable[[Job, JobContext], Awaitable[object]]
    | Callable[[Job, JobContext], object]
    | RunnerFactory
)
"""``async def handler(job, ctx)``, a plain ``def`` that the pool runs in a thread
or a child process, or an object that makes its own runners (shell commands)."""

RunnerKind = Literal["async", "thread", "process"]
"""How the pool runs a handler function."""

HandlerKind = RunnerKind | Literal["factory"]
"""How the pool runs a handler: one of :data:`RunnerKind`, or by the runners it makes."""

DEFAULT_GRACE: Final = 10.0
"""The default of the pool's ``grace`` setting."""


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` if it is an int from ``low`` to ``high``, else a clear error."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def _seconds(name: str, value: object, *, allow_zero: bool) -> float:
    checked = check_timeout(name, value, allow_zero=allow_zero)
    if checked is None:
        raise TypeError(f"{name} must be a number of seconds, got None")
    return checked


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """A pool's settings, each checked (see :class:`~pool.Pool` for their meaning)."""

    handler: Handler
    kind: HandlerKind
    workers: int
    queue_size: int
    max_workers: int
    job_timeout: float | None
    cancel_grace: float
    grace: float
    retry: RetryPolicy | None
    max_restarts: int
    restart_window: float
    restart_backoff: float
    max_dead_letters: int
    clock: Clock
    seed: int | None
    name: str
    describe: Callable[[Job], str] | None

    @classmethod
    def check(
        cls,
        handler: Handler,
        *,
        workers: int,
        queue_size: int,
        max_workers: int,
        job_timeout: float | None,
        cancel_grace: float,
        grace: float,
        retry: RetryPolicy | None,
        max_restarts: int,
        restart_window: float,
        restart_backoff: float,
        max_dead_letters: int,
        runner: str | None,
        clock: Clock | None,
        seed: int | None,
        name: str,
        describe: Callable[[Job], str] | None,
    ) -> Settings:
        """The settings, once each is checked (in the order ``Pool`` takes them).

        Raises:
            TypeError, ValueError: An argument is of the wrong type or out of range.
        """
        if not (callable(handler) or isinstance(handler, RunnerFactory)):
            raise TypeError(f"handler must be callable or have make_runner(), got {handler!r}")
        max_workers = check_int("max_workers", max_workers, 1)
        workers = check_int("workers", workers, 0, max_workers)
        queue_size = check_int("queue_size", queue_size, 1)
        job_timeout = check_timeout("job_timeout", job_timeout)
        cancel = check_timeout("cancel_grace", cancel_grace, allow_zero=True)
        default_grace = _seconds("grace", grace, allow_zero=True)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, got {retry!r}")
        max_restarts = check_int("max_restarts", max_restarts, 0)
        window = _seconds("restart_window", restart_window, allow_zero=False)
        backoff = check_timeout("restart_backoff", restart_backoff, allow_zero=True)
        check_int("max_dead_letters", max_dead_letters, 0)
        kind = _handler_kind(handler, runner)
        if describe is None:
            describe = getattr(handler, "describe", None)
        if describe is not None and not callable(describe):
            raise TypeError(f"describe must be callable or None, got {describe!r}")
        if clock is None:
            clock = MonotonicClock()
        elif not (
            callable(getattr(clock, "now", None)) and callable(getattr(clock, "call_later", None))
        ):
            raise TypeError(f"clock must have now() and call_later(), got {clock!r}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        return cls(
            handler=handler,
            kind=kind,
            workers=workers,
            queue_size=queue_size,
            max_workers=max_workers,
            job_timeout=job_timeout,
            cancel_grace=0.0 if cancel is None else cancel,
            grace=default_grace,
            retry=retry,
            max_restarts=max_restarts,
            restart_window=window,
            restart_backoff=0.0 if backoff is None else backoff,
            max_dead_letters=max_dead_letters,
            clock=clock,
            seed=seed,
            name=name,
            describe=describe,
        )


def _handler_kind(handler: object, runner: str | None) -> HandlerKind:
    """How ``handler`` runs; ``"factory"`` when it makes its own runners."""
    if isinstance(handler, RunnerFactory):
        if runner is not None:
            raise ValueError(
                f"runner must be None for a handler with make_runner(), got {runner!r}"
            )
        return "factory"
    if runner is None:
        return "async" if _is_async(handler) else "thread"
    if runner == "async":
        return "async"
    if runner == "thread":
        return "thread"
    if runner != "process":
        raise ValueError(f"runner must be 'async', 'thread' or 'process', got {runner!r}")
    if _is_async(handler):
        raise ValueError("runner 'process' needs a plain def handler, got an async one")
    from .process import check_picklable

    check_picklable(handler)
    return "process"


def _is_async(handler: object) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - an object with an async __call__
    return inspect.iscoroutinefunction(call)
