"""The ``wpool-tui`` command: parse the flags, build the pool and its workload, run the UI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import math
import os
import shlex
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from types import FrameType
from typing import IO, Any, NoReturn

from pool import Handler, Pool, PoolPhase, RetryPolicy, ShutdownReport, children
from pool.commands import ShellCommands

from .batch import Batch
from .demo import DemoSettings, DemoWorkload
from .jobfile import JobFileError, job_line, read_jobs

__all__ = ("main", "parse_args", "run_main")

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


def _dashboard_flags(parser: argparse.ArgumentParser, *, job_timeout: float | None) -> None:
    """The flags the demo and ``run`` share: the pool's shape, the shutdown, the UI."""
    add = parser.add_argument
    add(
        "--workers", type=_number(int, 0, 1024), default=4, help="workers to start with (default 4)"
    )
    add("--queue-size", type=_number(int, 1), default=100, help="queue bound (default 100)")
    add(
        "--job-timeout",
        type=_number(float, 0, low_open=True),
        default=job_timeout,
        help="per-job deadline in seconds "
        + (f"(default {job_timeout:g})" if job_timeout else "(default: none)"),
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
    add("--read-only", action="store_true", help="watch only: no controls")
    add(
        "--headless",
        action="store_true",
        help="no UI: events as JSON lines on stdout, a summary on stderr; "
        "SIGINT/SIGTERM shuts down gracefully, a second one escalates",
    )
    add(
        "--theme",
        choices=THEMES,
        default="textual-dark",
        metavar="THEME",
        help=f"colour theme: {', '.join(THEMES)} (default textual-dark)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The demo's flags (``wpool-tui`` with no subcommand)."""
    parser = _Parser(
        prog="wpool-tui",
        description="A live dashboard of a supervised worker pool, on a built-in demo "
        "workload. Keys: a add jobs, +/- grow/shrink, r resize, p pause, s graceful "
        "shutdown, q quit, ? help. To run your own commands or Python jobs: "
        "wpool-tui run --help.",
    )
    _dashboard_flags(parser, job_timeout=5.0)
    add = parser.add_argument
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
    add("--seed", type=_number(int, 0), default=1, help="seed of the demo workload (default 1)")
    return parser


def build_run_parser() -> argparse.ArgumentParser:
    """The flags of ``wpool-tui run``."""
    parser = _Parser(
        prog="wpool-tui run",
        description="Run a file of jobs under the pool, with the live dashboard (or "
        '--headless). Each line is a JSON object {"id": ..., "payload": ..., '
        '"timeout": ...} handed to --handler, or with --shell a shell command. '
        "Jobs left unfinished at shutdown are saved to --unfinished, to be run again. "
        "Exit status: 0 every job succeeded, 1 some job failed, timed out or was left, "
        "2 bad usage or input.",
    )
    add = parser.add_argument
    add("--jobs", required=True, metavar="FILE", help="the job file, or - for standard input")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--shell", action="store_true", help="each line is a shell command")
    what.add_argument(
        "--handler",
        metavar="MODULE:FUNCTION",
        help="the Python function called for each job (async or plain def), "
        "importable from the current directory",
    )
    add(
        "--runner",
        choices=("thread", "process"),
        default=None,
        help="how a plain def handler runs: in a thread per worker (default) or in a "
        "child process per worker, which can be killed",
    )
    add(
        "--retries",
        type=_number(int, 0, 100),
        default=0,
        help="times a failed job is run again (default 0)",
    )
    add("--joblog", metavar="FILE", help="write a TSV line per finished job to FILE")
    add(
        "--unfinished",
        metavar="FILE",
        default="wpool-unfinished.jsonl",
        help="where jobs left at shutdown are saved, only if some are "
        "(default wpool-unfinished.jsonl)",
    )
    add(
        "--output-dir",
        metavar="DIR",
        help="with --shell: keep each command's whole output in DIR/<id>.out",
    )
    _dashboard_flags(parser, job_timeout=None)
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
    """Run ``wpool-tui`` (the demo) or ``wpool-tui run``; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["run"]:
        return run_main(args_list[1:])
    return demo_main(args_list)


def demo_main(argv: Sequence[str]) -> int:
    """The dashboard (or ``--headless``) on the demo workload."""
    args = parse_args(argv)
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
        grace=args.grace,
        retry=RetryPolicy(max_attempts=2, backoff=0.5),
        seed=args.seed,
        name="demo",
    )

    async def feed() -> None:
        await demo.feed(pool)

    try:
        if args.headless:
            report: ShutdownReport | None = _headless(pool, feed, args)
            status = 0 if report is None or report.clean else 1
            print(summary(report), file=sys.stderr)
            return status
        from .app import create_app  # Textual loads only once the flags are good

        _exit_on_hangup(lambda: None, args.cancel_grace)
        app = create_app(
            pool,
            theme=args.theme,
            read_only=args.read_only,
            make_job=demo.make_job,
            grace=args.grace,
            cancel_grace=args.cancel_grace,
            on_started=feed,
            handle_signals=True,
            freeze_gc=True,
        )
        code = app.run()
        print(summary(app.report))
        return 1 if code is None else code
    finally:
        demo.release()  # hung demo jobs return, so their threads end


def _headless(
    pool: Pool, work: Callable[[], Coroutine[Any, Any, None]], args: argparse.Namespace
) -> ShutdownReport:
    from .headless import run_headless

    return asyncio.run(
        run_headless(
            pool,
            work,
            out=sys.stdout,
            err=sys.stderr,
            grace=args.grace,
            cancel_grace=args.cancel_grace,
        )
    )


class UsageError(Exception):
    """Bad flags or input for ``run``: one line on stderr, exit status 2."""


def run_main(argv: Sequence[str]) -> int:
    """``wpool-tui run``: a file of jobs under the pool; returns the exit status."""
    args = build_run_parser().parse_args(argv)
    try:
        return _run(args)
    except UsageError as exc:
        print(f"wpool-tui run: error: {exc}", file=sys.stderr)
        return 2
    finally:
        # The last line of defence: whatever the path out (a crash of the
        # dashboard included), no process a job started outlives the program.
        children.kill_all()


def _run(args: argparse.Namespace) -> int:
    handler = _make_handler(args)
    try:
        jobs = read_jobs(args.jobs, shell=args.shell)
    except JobFileError as exc:
        raise UsageError(str(exc)) from None
    if not jobs:
        print(f"wpool-tui: no jobs in {_name(args.jobs)}: nothing to do", file=sys.stderr)
        return 0
    if args.jobs == "-" and not args.headless:
        _take_terminal()
    folder = os.path.dirname(args.unfinished) or "."
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write --unfinished {args.unfinished}: no folder {folder}")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write --unfinished {args.unfinished}: {folder} is not writable")
    try:
        joblog = open(args.joblog, "w", encoding="utf-8") if args.joblog else None  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot write the joblog {args.joblog}: {exc.strerror}") from None
    pool = Pool(
        handler,
        workers=args.workers,
        queue_size=args.queue_size,
        job_timeout=args.job_timeout,
        cancel_grace=args.cancel_grace,
        grace=args.grace,
        retry=RetryPolicy(max_attempts=args.retries + 1) if args.retries else None,
        runner=None if args.shell else args.runner,
        name="run",
    )
    try:
        batch = Batch(pool, jobs, joblog=joblog, grace=args.grace, cancel_grace=args.cancel_grace)
    except OSError as exc:
        assert joblog is not None  # only the joblog's header is written here
        with contextlib.suppress(OSError):  # the same failure, told just below
            joblog.close()
        raise UsageError(f"cannot write the joblog {args.joblog}: {exc.strerror}") from None
    report: ShutdownReport | None = None
    try:
        if args.headless:
            report = _headless(pool, batch.feed, args)
        else:
            report = _dashboard(pool, batch, args, joblog)
    finally:
        # Saved whatever happened above: a crash must not lose the jobs.
        if joblog is not None:
            joblog.close()
        saved = _save_unfinished(batch, args.unfinished)
    notes = [] if saved else _older_unfinished(args)
    if batch.joblog_error is not None:
        notes.append(f"the joblog {args.joblog} stopped early: {batch.joblog_error.strerror}")
    out = sys.stderr if args.headless else sys.stdout
    print(batch_summary(batch, report, saved, args, notes), file=out)
    failed = report is None or report.failed
    return 0 if batch.succeeded() and not failed else 1


def _dashboard(
    pool: Pool, batch: Batch, args: argparse.Namespace, joblog: IO[str] | None
) -> ShutdownReport | None:
    from .app import create_app

    def hung_up() -> None:
        try:
            _save_unfinished(batch, args.unfinished)
        finally:
            if joblog is not None:
                joblog.flush()

    _exit_on_hangup(hung_up, args.cancel_grace)
    app = create_app(
        pool,
        theme=args.theme,
        read_only=args.read_only,
        grace=args.grace,
        cancel_grace=args.cancel_grace,
        on_started=batch.feed,
        handle_signals=True,
        freeze_gc=True,
        total_jobs=batch.total,
        find_job=batch.handle,
        resubmit=batch.resubmit,
    )
    app.run()
    return app.report


def _save_unfinished(batch: Batch, path: str) -> int:
    """Save the jobs left; if the file cannot be written, print them instead."""
    try:
        return batch.save_unfinished(path)
    except OSError as exc:
        left = batch.unfinished()
        print(
            f"wpool-tui: cannot save {len(left)} unfinished jobs to {path}: {exc.strerror}; "
            "here they are:",
            file=sys.stderr,
        )
        for job in left:
            print(job_line(job), file=sys.stderr)
        return 0


def _exit_on_hangup(save: Callable[[], None], cancel_grace: float) -> None:
    """On SIGHUP (the dashboard's terminal is gone), stop every command, save, exit.

    Nobody is left to watch, and the UI cannot be trusted to wind down: its
    writes to the dead terminal may block. So this runs as a plain signal
    handler, outside the event loop: the unfinished jobs saved, SIGTERM to
    every command's group, SIGKILL after the cancel grace, exit status 1.
    """

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        try:
            try:
                save()  # first: it is quick, and it is what must not be lost
            finally:
                children.terminate_all(cancel_grace)
        finally:
            os._exit(1)

    signal.signal(signal.SIGHUP, on_hangup)


def _older_unfinished(args: argparse.Namespace) -> list[str]:
    """Nothing is left of this run: deal with an unfinished file already there."""
    path = args.unfinished
    if not os.path.exists(path):
        return []
    if args.jobs != "-" and os.path.samefile(args.jobs, path):
        # This run took its jobs from it, and none is left: running it again
        # would run them twice.
        os.remove(path)
        return [f"nothing is left of {path}: removed it"]
    return [f"{path} is from an earlier run: none of this run's jobs is in it"]


def batch_summary(
    batch: Batch,
    report: ShutdownReport | None,
    saved: int,
    args: argparse.Namespace,
    notes: Sequence[str] = (),
) -> str:
    """The lines that say how a run's jobs ended, and where the unfinished ones went."""
    counts = batch.outcomes()
    # The outcome words are the joblog's and the dashboard's: timed_out, not "timed out".
    parts = [f"{counts[name]} {name}" for name in counts if counts[name]]
    lines = [f"wpool-tui: {batch.total} jobs: {', '.join(parts) or 'none ended'}"]
    if report is None:
        lines.append("wpool-tui: the pool was not shut down")
    elif report.failed or report.phase_reached is not PoolPhase.DRAINING or report.unfinished:
        state = "failed" if report.failed else "stopped"
        lines.append(
            f"wpool-tui: pool {state} after a {report.duration:.1f}s shutdown "
            f"(reached {report.phase_reached.value})"
            + (f": {report.reason}" if report.reason else "")
        )
    if saved:
        again = ["wpool-tui", "run", "--jobs", args.unfinished]
        again += ["--shell"] if args.shell else ["--handler", args.handler]
        if args.runner is not None:
            again += ["--runner", args.runner]
        lines.append(
            f"wpool-tui: {saved} unfinished job{'s' if saved != 1 else ''} saved to "
            f"{args.unfinished}; run them again with: {shlex.join(again)}"
        )
    lines.extend(f"wpool-tui: {note}" for note in notes)
    return "\n".join(lines)


def _make_handler(args: argparse.Namespace) -> Handler:
    if args.output_dir is not None and not args.shell:
        raise UsageError("--output-dir applies to --shell commands only")
    if args.shell:
        if args.runner is not None:
            raise UsageError("--runner applies to --handler only: shell commands run as processes")
        try:
            return ShellCommands(output_dir=args.output_dir)
        except OSError as exc:
            raise UsageError(
                f"cannot create --output-dir {args.output_dir}: {exc.strerror}"
            ) from None
    handler = import_handler(args.handler)
    if args.runner == "process":
        try:
            Pool(handler, runner="process")  # checks it can reach a child process
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--runner process: {exc}") from None
    return handler


def import_handler(spec: str) -> Handler:
    """The function named ``module:function``, imported from the current directory.

    Raises:
        UsageError: The name is malformed, or the import or lookup fails.
    """
    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name:
        raise UsageError(f"--handler must be MODULE:FUNCTION, got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # whatever the import raised, it is the user's to see
        raise UsageError(f"cannot import handler {spec}: {type(exc).__name__}: {exc}") from None
    target: object = module
    for part in name.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(
                f"cannot import handler {spec}: no {part!r} in {module_name}"
            ) from None
    if not callable(target):
        raise UsageError(f"handler {spec} is not callable: {type(target).__name__}")
    return target


def _name(source: str) -> str:
    return "standard input" if source == "-" else source


def _take_terminal() -> None:
    # The jobs came on standard input; the dashboard reads keys from it.
    if os.isatty(0):
        return
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        raise UsageError(
            "the jobs came on standard input and there is no terminal for the "
            "dashboard: use --headless, or give the jobs as a file"
        ) from None
    os.dup2(tty, 0)
    os.close(tty)


def run() -> NoReturn:
    """Entry point of the console script."""
    sys.exit(main())
