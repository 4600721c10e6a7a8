"""The ``wpool-tui`` command: parse the flags, build the pool and its workload, run the UI."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from pool import Pool, RetryPolicy, ShutdownReport

from .demo import DemoSettings, DemoWorkload

__all__ = ("main", "parse_args")

THEMES = ("textual-dark", "textual-light", "nord", "gruvbox", "dracula", "monokai", "tokyo-night")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as a shell user expects, and the usage status.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(
    kind: Callable[[str], float], low: float, high: float = math.inf, *, low_open: bool = False
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a {'whole ' if kind is int else ''}number: {text!r}"
            ) from None
        if math.isnan(value) or value < low or (low_open and value == low) or value > high:
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            if high != math.inf:
                bound = f"from {low:g} to {high:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command's flags."""
    parser = _Parser(
        prog="wpool-tui",
        description="A live dashboard of a supervised worker pool, on a built-in demo "
        "workload. Keys: a add jobs, +/- grow/shrink, r resize, p pause, s graceful "
        "shutdown, q quit, ? help.",
    )
    add = parser.add_argument
    add(
        "--workers", type=_number(int, 0, 1024), default=4, help="workers to start with (default 4)"
    )
    add("--queue-size", type=_number(int, 1), default=100, help="queue bound (default 100)")
    add(
        "--rate",
        type=_number(float, 0),
        default=2.0,
        help="demo jobs submitted per second (default 2: about what 4 workers keep up with)",
    )
    add("--jobs", type=_number(int, 0), default=0, help="demo jobs submitted at start (default 0)")
    add(
        "--fail-rate",
        type=_number(float, 0, 1),
        default=0.1,
        help="fraction of jobs that fail (default 0.1)",
    )
    add(
        "--hang-rate",
        type=_number(float, 0, 1),
        default=0.01,
        help="fraction of jobs that hang and ignore cancellation (default 0.01)",
    )
    add(
        "--job-timeout",
        type=_number(float, 0, low_open=True),
        default=5.0,
        help="per-job deadline in seconds (default 5)",
    )
    add(
        "--grace",
        type=_number(float, 0, 3600),
        default=10.0,
        help="shutdown grace period in seconds (default 10)",
    )
    add(
        "--cancel-grace",
        type=_number(float, 0, 3600),
        default=2.0,
        help="seconds a cancelled job has before it is abandoned (default 2)",
    )
    add("--seed", type=_number(int, 0), default=1, help="seed of the demo workload (default 1)")
    add("--read-only", action="store_true", help="watch only: no controls")
    add(
        "--theme",
        choices=THEMES,
        default="textual-dark",
        metavar="THEME",
        help=f"colour theme: {', '.join(THEMES)} (default textual-dark)",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; bad flags or values print one line and exit with status 2."""
    return build_parser().parse_args(argv)


def summary(report: ShutdownReport | None) -> str:
    """The lines printed when the dashboard exits."""
    if report is None:
        return "wpool-tui: the pool was not shut down"
    state = "failed" if report.failed else "stopped"
    lines = [
        f"wpool-tui: pool {state} after a {report.duration:.1f}s shutdown "
        f"(reached {report.phase_reached.value})",
        f"  finished {len(report.finished)}, cancelled {len(report.cancelled)}, "
        f"not started {len(report.not_started)}, abandoned {len(report.abandoned)}",
    ]
    if report.reason:
        lines.append(f"  reason: {report.reason}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the dashboard on the demo workload; returns the exit status."""
    args = parse_args(argv)
    from .app import create_app  # Textual loads only once the flags are good

    demo = DemoWorkload(
        DemoSettings(
            rate=args.rate,
            jobs=args.jobs,
            fail_rate=args.fail_rate,
            hang_rate=args.hang_rate,
            seed=args.seed,
        )
    )
    pool = Pool(
        demo.handler,
        workers=args.workers,
        queue_size=args.queue_size,
        job_timeout=args.job_timeout,
        cancel_grace=args.cancel_grace,
        retry=RetryPolicy(max_attempts=2, backoff=0.5),
        seed=args.seed,
        name="demo",
    )

    async def feed() -> None:
        await demo.feed(pool)

    app = create_app(
        pool,
        theme=args.theme,
        read_only=args.read_only,
        make_job=demo.make_job,
        grace=args.grace,
        cancel_grace=args.cancel_grace,
        on_started=feed,
        handle_signals=True,
    )
    try:
        status = app.run()
    finally:
        demo.release()  # hung demo jobs return, so their threads end
    print(summary(app.report))
    return 1 if status is None else status


def run() -> NoReturn:
    """Entry point of the console script."""
    sys.exit(main())
