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
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from types import FrameType
from typing import IO, Any, NoReturn

from pool import Handler, Pool, PoolPhase, RetryPolicy, ShutdownReport, children
from pool.commands import ShellCommands
from pool.events import JobSucceeded, PoolEvent

from .batch import Batch, result_json
from .demo import DemoSettings, DemoWorkload
from .jobfile import JobFileError, JobReader, beside, remove_stale_temporaries, save_jobs
from .resume import Resume, ResumeError
from .runloop import hold_signals, run_loop
from .sources import SourceError
from .sources.recording import Recorder, Recording, RecordingError

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
    _record_flag(parser)
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


def _record_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--record",
        metavar="FILE",
        help="write the event stream to FILE as it comes (JSON lines), to replay it "
        "later with wpool-tui replay FILE",
    )


def _theme_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
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
        "shutdown, q quit, ? help. Other commands: wpool-tui run (your own commands or "
        "Python jobs), attach (the pool of a running service), ls (the pools to attach "
        "to), replay (a recording); each has --help.",
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
    again = parser.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        metavar="JOBLOG",
        help="skip the jobs JOBLOG records as succeeded and run the rest (matched by id, "
        "checked against the payload); new lines are added to JOBLOG unless --joblog is given",
    )
    again.add_argument(
        "--retry-failed",
        metavar="JOBLOG",
        help="run only the jobs JOBLOG records as not succeeded (failed, timed out, "
        "cancelled, abandoned); new lines are added to JOBLOG unless --joblog is given",
    )
    add(
        "--results",
        metavar="FILE",
        help="add a JSON line per finished job to FILE: id, outcome, and the handler's "
        "result or the error",
    )
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
    """Run ``wpool-tui`` (the demo) or one of its commands; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = _COMMANDS.get(args_list[0]) if args_list else None
    if command is not None:
        return command(args_list[1:])
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
        recorder = _open_recorder(args)
    except UsageError as exc:
        print(f"wpool-tui: error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.headless:
            report: ShutdownReport | None = _headless(pool, feed, args, record=recorder)
            status = 0 if report is None or report.clean else 1
            print(summary(report), file=sys.stderr)
            _recording_note(recorder, sys.stderr)
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
            recorder=recorder,
        )
        code = run_loop(app.run_async())
        print(summary(app.report))
        _recording_note(recorder, sys.stdout)
        return 1 if code is None else code
    finally:
        demo.release()  # hung demo jobs return, so their threads end
        if recorder is not None:
            recorder.close()


def _open_recorder(args: argparse.Namespace) -> Recorder | None:
    """The recorder ``--record`` asks for, its file opened now so that a bad path
    stops everything before it starts.

    Raises:
        UsageError: The file cannot be written.
    """
    path = getattr(args, "record", None)
    if path is None:
        return None
    if os.path.isdir(path):
        raise UsageError(f"--record {path}: is a folder; give a file")
    try:
        return Recorder(path)
    except OSError as exc:
        raise UsageError(f"cannot write --record {path}: {exc.strerror}") from None


def _recording_note(recorder: Recorder | None, out: IO[str]) -> None:
    if recorder is None:
        return
    recorder.close()
    if recorder.error is not None:
        print(
            f"wpool-tui: the recording {recorder.path} stopped early: {recorder.error.strerror}",
            file=out,
        )
    else:
        print(
            f"wpool-tui: recorded to {recorder.path}; replay it with: "
            f"{shlex.join(['wpool-tui', 'replay', recorder.path])}",
            file=out,
        )


def _headless(
    pool: Pool,
    work: Callable[[], Coroutine[Any, Any, None]],
    args: argparse.Namespace,
    extra: Callable[[PoolEvent], dict[str, object] | None] | None = None,
    record: Recorder | None = None,
) -> ShutdownReport:
    from .headless import run_headless

    return run_loop(
        run_headless(
            pool,
            work,
            out=sys.stdout,
            err=sys.stderr,
            grace=args.grace,
            cancel_grace=args.cancel_grace,
            extra=extra,
            record=record,
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
        children.sweep()


class _Paths:
    """Where a run writes, every path checked before anything starts."""

    def __init__(self, args: argparse.Namespace) -> None:
        """Check every path the run will write or read.

        Raises:
            UsageError: One cannot be used; the message names it and why.
        """
        self.unfinished, self.earlier = _unfinished_target(args)
        self.replace = self.earlier is None and _same_file(args.jobs, args.unfinished)
        if args.output_dir is not None:
            _check_folder(args.output_dir, "--output-dir", create=True)
        self.joblog = args.joblog
        self.joblog_header = True
        resumed = args.resume or args.retry_failed
        if resumed and (args.joblog is None or _same_file(args.joblog, resumed)):
            # The rerun's lines follow the earlier run's, as GNU parallel's do.
            self.joblog = resumed
            self.joblog_header = False
        for flag, path in (("--joblog", self.joblog), ("--results", args.results)):
            if path is not None and os.path.isdir(path):
                raise UsageError(f"cannot write {flag} {path}: it is a directory")


def _unfinished_target(args: argparse.Namespace) -> tuple[str, str | None]:
    """Where the unfinished jobs go, and the earlier run's file it must not replace, if any."""
    path = args.unfinished
    if os.path.isdir(path):
        raise UsageError(f"cannot write --unfinished {path}: it is a directory")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write --unfinished {path}: no folder {folder}")
    _check_folder(folder, f"--unfinished {path}:", create=False)
    remove_stale_temporaries(path)
    if not os.path.exists(path) or _same_file(args.jobs, path):
        return path, None
    free = beside(path)
    while os.path.exists(free):
        free = beside(free)
    return free, path


def _check_folder(folder: str, flag: str, *, create: bool) -> None:
    """Refuse a folder that cannot be written: a file made there and removed tells."""
    what = flag if flag.endswith(":") else f"{flag} {folder}:"
    try:
        if create:
            os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".wpool-probe-")
    except OSError as exc:
        raise UsageError(f"cannot write {what} {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def _same_file(a: str | None, b: str) -> bool:
    if a is None or a == "-":
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _run(args: argparse.Namespace) -> int:
    handler = _make_handler(args)
    if args.headless and args.workers == 0:
        raise UsageError(
            "--workers 0 runs nothing without the dashboard to add workers: "
            "give --workers 1 or more"
        )
    paths = _Paths(args)
    resume = _resume(args)
    try:
        reader = JobReader(args.jobs, shell=args.shell)
    except JobFileError as exc:
        raise UsageError(str(exc)) from None
    try:
        # The first block is checked before anything starts: a small file
        # with a bad line runs nothing. A bad line further on stops the
        # intake when it is reached.
        reader.add(reader.read_block())
        first = reader.check_ahead()
    except JobFileError as exc:
        reader.close()
        raise UsageError(str(exc)) from None
    if first is None:
        reader.close()
        print(f"wpool-tui: no jobs in {_name(args.jobs)}: nothing to do", file=sys.stderr)
        return 0
    try:
        return _run_jobs(args, handler, paths, resume, reader)
    finally:
        reader.close()


def _run_jobs(
    args: argparse.Namespace,
    handler: Handler,
    paths: _Paths,
    resume: Resume | None,
    reader: JobReader,
) -> int:
    if args.jobs == "-" and not args.headless:
        _take_terminal()
    joblog, results = _open_outputs(args, paths)
    recorder = _open_recorder(args)
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
        batch = Batch(
            pool,
            reader,
            joblog=joblog,
            joblog_header=paths.joblog_header,
            results=results,
            resume=resume,
            grace=args.grace,
            cancel_grace=args.cancel_grace,
            total=None if resume is not None else _count_jobs(args.jobs),
        )
    except OSError as exc:
        for file in (joblog, results):
            if file is not None:
                with contextlib.suppress(OSError):  # the same failure, told just below
                    file.close()
        raise UsageError(f"cannot write the joblog {paths.joblog}: {exc.strerror}") from None
    unguarded = children.guard()
    report: ShutdownReport | None = None
    notes: list[str] = []
    try:
        if args.headless:
            report = _headless(pool, batch.feed, args, extra=_result_field(batch), record=recorder)
        else:
            report = _dashboard(pool, batch, args, paths, joblog, recorder)
    finally:
        # From here to the exit no signal stops the program (run_loop held
        # them already, unless the loop never ran), and the jobs are saved
        # first: whatever fails after, they are not lost.
        hold_signals()
        children.kill_all()
        children.sweep()
        saved, where = _save_unfinished(batch, paths, notes)
        for name, file, error in (
            ("the joblog " + str(paths.joblog), joblog, batch.joblog_error),
            ("the results " + str(args.results), results, batch.results_error),
        ):
            if file is None:
                continue
            try:
                file.close()
            except OSError as exc:
                error = error or exc
            if error is not None:
                notes.append(f"{name} stopped early: {error.strerror or error}")
    if unguarded is not None:
        notes.append(f"a process a job started may outlive it: {unguarded}")
    if recorder is not None:
        recorder.close()
        if recorder.error is not None:
            notes.append(f"the recording {recorder.path} stopped early: {recorder.error.strerror}")
    if batch.input_error is not None:
        notes.insert(0, f"stopped reading the jobs: {batch.input_error}")
    if not saved:
        notes.extend(_older_unfinished(args, paths))
    notes.extend(batch.not_saved)
    text = batch_summary(batch, report, saved, args, notes, where=where)
    try:
        print(text, file=sys.stderr if args.headless else sys.stdout, flush=True)
    except OSError:
        # Standard output is gone (a closed pipe): the account goes to stderr.
        with contextlib.suppress(OSError):
            print(text, file=sys.stderr, flush=True)
    if batch.input_error is not None:
        return 2
    failed = report is None or report.failed
    return 0 if batch.succeeded() and not failed else 1


def _resume(args: argparse.Namespace) -> Resume | None:
    path = args.resume or args.retry_failed
    if path is None:
        return None
    try:
        return Resume(path, only_failed=args.retry_failed is not None)
    except ResumeError as exc:
        raise UsageError(str(exc)) from None


def _open_outputs(args: argparse.Namespace, paths: _Paths) -> tuple[IO[str] | None, IO[str] | None]:
    joblog = results = None
    try:
        if paths.joblog is not None:
            mode = "w" if paths.joblog_header else "a"
            joblog = open(paths.joblog, mode, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot write the joblog {paths.joblog}: {exc.strerror}") from None
    try:
        if args.results is not None:
            # Added to: a rerun's results follow the earlier run's.
            results = open(args.results, "a", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        if joblog is not None:
            joblog.close()
        raise UsageError(f"cannot write --results {args.results}: {exc.strerror}") from None
    return joblog, results


def _count_jobs(source: str) -> int | None:
    """How many non-blank lines a regular job file has (for progress); None for a stream."""
    if source == "-":
        return None
    count = 0
    try:
        with open(source, "rb") as file:
            for line in file:
                count += not line.isspace()
    except OSError:
        return None
    return count


def _result_field(batch: Batch) -> Callable[[PoolEvent], dict[str, object] | None]:
    """The handler's return value, added to a ``JobSucceeded`` line of the headless JSON."""

    def extra(event: PoolEvent) -> dict[str, object] | None:
        if not isinstance(event, JobSucceeded):
            return None
        known, value = batch.result(event.job_id)
        return {"result": result_json(value)} if known else None

    return extra


def _dashboard(
    pool: Pool,
    batch: Batch,
    args: argparse.Namespace,
    paths: _Paths,
    joblog: IO[str] | None,
    recorder: Recorder | None,
) -> ShutdownReport | None:
    from .app import create_app

    def hung_up() -> None:
        try:
            _save_unfinished(batch, paths, [])
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
        freeze_gc=True,
        total_jobs=batch.total,
        find_job=batch.handle,
        resubmit=batch.resubmit,
        recorder=recorder,
    )

    async def run_app() -> None:
        # Here rather than in the app, so that they stay until the loop is
        # closed: no moment between the app's end and the save when a
        # signal would kill.
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, app.interrupt, signal.Signals(signum).name)
        await app.run_async()

    run_loop(run_app())
    return app.report


def _save_unfinished(batch: Batch, paths: _Paths, notes: list[str]) -> tuple[int, str]:
    """Save the jobs left; if the file cannot be written, print them instead.

    Returns how many were saved, and where (a file, or standard error).
    """
    saved = save_jobs(
        paths.unfinished, batch.unfinished(), replace=paths.replace, fallback=sys.stderr
    )
    if saved.error is not None:
        notes.append(
            f"cannot save {saved.jobs} unfinished jobs to {paths.unfinished}: {saved.error}; "
            "they are on standard error above"
        )
        return 0, "standard error"
    if saved.jobs and paths.earlier is not None:
        notes.append(f"{paths.earlier} is from an earlier run: left as it was")
    return saved.jobs, saved.path


def _exit_on_hangup(save: Callable[[], None], cancel_grace: float) -> None:
    """On SIGHUP (the dashboard's terminal is gone), stop every command, save, exit.

    Nobody is left to watch, and the UI cannot be trusted to wind down: its
    writes to the dead terminal may block. So this runs as a plain signal
    handler, outside the event loop: the unfinished jobs saved, SIGTERM to
    every command's group, SIGKILL after the cancel grace, exit status 1.
    """

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        hold_signals()  # a second SIGHUP or a SIGTERM must not cut the save short
        try:
            try:
                save()  # first: it is quick, and it is what must not be lost
            finally:
                children.terminate_all(cancel_grace)
                children.sweep()
        finally:
            os._exit(1)

    signal.signal(signal.SIGHUP, on_hangup)


def _older_unfinished(args: argparse.Namespace, paths: _Paths) -> list[str]:
    """Nothing is left of this run: deal with an unfinished file already there."""
    path = args.unfinished
    if not os.path.exists(path):
        return []
    if paths.earlier is None and _same_file(args.jobs, path):
        # This run took its jobs from it, and none is left: running it again
        # would run them twice.
        os.remove(path)
        return [f"nothing is left of {path}: removed it"]
    return [f"{path} is from an earlier run: none of this run's jobs is in it"]


def rerun_command(args: argparse.Namespace, unfinished: str) -> list[str]:
    """The command that runs ``unfinished`` with every option of this run."""
    again = ["wpool-tui", "run", "--jobs", unfinished]
    again += ["--shell"] if args.shell else ["--handler", args.handler]
    defaults = build_run_parser().parse_args(["--jobs", "-", "--shell"])
    skip = {"jobs", "shell", "handler", "unfinished", "resume", "retry_failed", "joblog"}
    for action in build_run_parser()._actions:
        name = action.dest
        if name in skip or name == "help" or not action.option_strings:
            continue
        value = getattr(args, name)
        if value == getattr(defaults, name):
            continue
        flag = action.option_strings[0]
        if action.nargs == 0:  # a switch
            again.append(flag)
        else:
            again += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if args.unfinished != defaults.unfinished:
        again += ["--unfinished", args.unfinished]
    joblog = args.joblog or args.resume or args.retry_failed
    if joblog is not None:
        # The rerun adds its lines to the same joblog (and skips nothing
        # it should run: none of the unfinished jobs succeeded).
        again += ["--resume", joblog]
    return again


def batch_summary(
    batch: Batch,
    report: ShutdownReport | None,
    saved: int,
    args: argparse.Namespace,
    notes: Sequence[str] = (),
    *,
    where: str | None = None,
) -> str:
    """The lines that say how a run's jobs ended, and where the unfinished ones went."""
    counts = batch.outcomes()
    # The outcome words are the joblog's and the dashboard's: timed_out, not "timed out".
    parts = [f"{counts[name]} {name}" for name in counts if counts[name]]
    total = sum(counts.values())
    lines = [f"wpool-tui: {total} jobs: {', '.join(parts) or 'none ended'}"]
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
        where = where or args.unfinished
        lines.append(
            f"wpool-tui: {saved} unfinished job{'s' if saved != 1 else ''} saved to "
            f"{where}; run them again with: {shlex.join(rerun_command(args, where))}"
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
        UsageError: The name is malformed, or the import or lookup fails
            (the module raised, or called ``sys.exit()``).
    """
    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name:
        raise UsageError(f"--handler must be MODULE:FUNCTION, got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except SystemExit as exc:
        # Not the program's own exit: the module's, at import.
        raise UsageError(
            f"cannot import handler {spec}: the module called sys.exit({exc.code!r}) on import"
        ) from None
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
    # The jobs' reader has its own descriptor for what came on standard input.
    os.dup2(tty, 0)
    os.close(tty)


# --- attach, ls, replay -------------------------------------------------------------------


def build_attach_parser() -> argparse.ArgumentParser:
    """The flags of ``wpool-tui attach``."""
    parser = _Parser(
        prog="wpool-tui attach",
        description="The dashboard of a pool in another process: a service that serves "
        "its pool (Pool.serve). q detaches and leaves the service running; s asks its "
        "pool to shut down gracefully. With no NAME, the only pool served here.",
    )
    add = parser.add_argument
    add("target", nargs="?", metavar="NAME|PATH", help="the pool's name, or its socket's path")
    add("--tcp", metavar="HOST:PORT", help="a service's TCP listener (loopback only)")
    add("--token-file", metavar="FILE", help="with --tcp: the file the service wrote its token to")
    add(
        "--read-only",
        action="store_true",
        help="watch only: the service refuses every control from this connection",
    )
    _record_flag(parser)
    _theme_flag(parser)
    return parser


def attach_main(argv: Sequence[str]) -> int:
    """``wpool-tui attach``: connect, then the dashboard; status 2 when nothing answers."""
    args = build_attach_parser().parse_args(argv)
    from .sources.attached import AttachedSource

    if args.tcp is not None and args.target is not None:
        print("wpool-tui attach: error: give NAME|PATH or --tcp, not both", file=sys.stderr)
        return 2
    try:
        source = AttachedSource.from_target(
            args.target, tcp=args.tcp, token_file=args.token_file, read_only=args.read_only
        )
        recorder = _open_recorder(args)
    except (SourceError, UsageError) as exc:
        print(f"wpool-tui attach: error: {exc}", file=sys.stderr)
        return 2
    from .app import create_app

    app = create_app(
        source, theme=args.theme, read_only=args.read_only, freeze_gc=True, recorder=recorder
    )

    async def attach_and_run() -> str | None:
        try:
            await source.start()
        except SourceError as exc:
            return str(exc)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, app.interrupt, signal.Signals(signum).name)
        await app.run_async()
        return None

    failed = run_loop(attach_and_run())
    if failed is not None:
        print(f"wpool-tui attach: error: {failed}", file=sys.stderr)
        return 2
    _recording_note(recorder, sys.stdout)
    print(f"wpool-tui: detached from {source.title}")
    return 0


def ls_main(argv: Sequence[str]) -> int:
    """``wpool-tui ls``: the pools this user can attach to on this machine."""
    parser = _Parser(
        prog="wpool-tui ls",
        description="List the pools served on this machine for this user (their control "
        "sockets), asking each how it is. Nothing is removed: a socket no service "
        "answers on is shown as such.",
    )
    parser.parse_args(argv)
    from .sources.attached import discover, socket_dir

    found = run_loop(discover())
    if not found:
        print(f"no pool is served here (looked in {socket_dir()})")
        return 0
    rows = [("NAME", "PID", "PHASE", "WORKERS", "QUEUE", "UPTIME", "SOCKET")]
    for pool in found:
        if pool.live:
            uptime = "-" if pool.uptime is None else f"{pool.uptime:.0f}s"
            rows.append(
                (
                    pool.name,
                    str(pool.pid or "-"),
                    pool.phase,
                    pool.workers,
                    pool.queue,
                    uptime,
                    str(pool.socket),
                )
            )
        else:
            rows.append((pool.name, str(pool.pid or "-"), pool.note, "", "", "", str(pool.socket)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def replay_main(argv: Sequence[str]) -> int:
    """``wpool-tui replay FILE``: a recording in the dashboard, read-only."""
    parser = _Parser(
        prog="wpool-tui replay",
        description="Replay a recording (--record) in the dashboard, as it looked. Keys: "
        "space pause/play, < > slower/faster, . one event, j jump to a time, n the next "
        "shutdown or failure, q quit.",
    )
    add = parser.add_argument
    add("file", metavar="FILE", help="a recording written by --record")
    add("--speed", type=_number(float, 0.25, 32), default=1.0, help="playback speed (default 1)")
    add("--paused", action="store_true", help="start paused, at the beginning")
    _theme_flag(parser)
    args = parser.parse_args(argv)
    try:
        recording = Recording.read(args.file)
    except RecordingError as exc:
        print(f"wpool-tui replay: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"wpool-tui replay: error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    from .app import create_app
    from .sources.recording import ReplaySource

    source = ReplaySource(recording)
    source.speed = args.speed
    source.paused = args.paused
    app = create_app(source, theme=args.theme, read_only=True, freeze_gc=True)
    run_loop(app.run_async())
    return 0


def build_celery_parser() -> argparse.ArgumentParser:
    """The flags of ``wpool-tui celery``."""
    parser = _Parser(
        prog="wpool-tui celery",
        description="The dashboard of a Celery cluster: its nodes (started with -E, for "
        "events), their tasks, and the broker's queues; the keys control it through "
        "Celery's remote control. q leaves the cluster running. With --demo, start a "
        "private redis-server (unless --broker is given), two worker nodes running demo "
        "tasks and a feeder, and stop them all on exit.",
    )
    add = parser.add_argument
    add("--broker", metavar="URL", help="the broker's URL (redis://HOST:PORT/DB)")
    add("--app", metavar="MODULE", help="the Celery app's module (MODULE or MODULE:NAME)")
    add("--read-only", action="store_true", help="watch only: send no control at all")
    add("--demo", action="store_true", help="start a demo cluster here, and stop it on exit")
    _theme_flag(parser)
    return parser


def celery_main(argv: Sequence[str]) -> int:
    """``wpool-tui celery``: the dashboard of a Celery cluster; status 2 when it cannot start."""
    args = build_celery_parser().parse_args(argv)
    if args.broker is None and not args.demo:
        print("wpool-tui celery: error: give --broker URL, or --demo", file=sys.stderr)
        return 2
    try:
        from .sources.celery import CelerySource
    except ImportError as exc:  # pragma: no cover (the extra is part of make test)
        print(f"wpool-tui celery: error: {exc}", file=sys.stderr)
        return 2
    cluster = None
    broker = args.broker
    try:
        if args.demo:
            try:
                from .celery_demo import DemoCluster
            except ImportError:
                print(
                    "wpool-tui celery: error: celery is not installed: "
                    "pip install 'wpool-tui[celery]'",
                    file=sys.stderr,
                )
                return 2
            cluster = DemoCluster(broker)
            print(
                "wpool-tui celery --demo: starting redis and two worker nodes...", file=sys.stderr
            )
            broker = cluster.start()
        try:
            source = CelerySource.connect(broker, app=args.app, read_only=args.read_only)
        except SourceError as exc:
            print(f"wpool-tui celery: error: {exc}", file=sys.stderr)
            return 2
        from .app import create_app

        app = create_app(source, theme=args.theme, read_only=args.read_only, freeze_gc=True)

        async def watch() -> str | None:
            try:
                await asyncio.to_thread(source.check_broker)
                # Connected and resynced before the dashboard mounts (as attach does).
                await source.start()
            except SourceError as exc:
                return str(exc)
            loop = asyncio.get_running_loop()
            # SIGHUP too (the terminal closed): leave through the same door, so
            # that --demo stops what it started.
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.add_signal_handler(signum, app.interrupt, signal.Signals(signum).name)
            feeder = None
            if cluster is not None:
                from .celery_demo import feed

                feeder = asyncio.ensure_future(feed(broker))
            try:
                await app.run_async()
            finally:
                if feeder is not None:
                    feeder.cancel()
                    await asyncio.wait([feeder])  # its cancellation, not ours
                    if not feeder.cancelled() and feeder.exception() is not None:
                        print(
                            f"wpool-tui celery --demo: the feeder failed: {feeder.exception()!r}",
                            file=sys.stderr,
                        )
            return None

        failed = run_loop(watch())
    finally:
        if cluster is not None:
            print("wpool-tui celery --demo: stopping the nodes and redis...", file=sys.stderr)
            cluster.stop()
    if failed is not None:
        print(f"wpool-tui celery: error: {failed}", file=sys.stderr)
        return 2
    print(
        f"wpool-tui: left {source.title} (the cluster goes on)"
        if cluster is None
        else "wpool-tui: stopped the demo cluster"
    )
    return 0


_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "celery": celery_main,
    "run": run_main,
    "attach": attach_main,
    "ls": ls_main,
    "replay": replay_main,
}
"""The commands beside the demo: ``wpool-tui <command> ...``."""


def run() -> NoReturn:
    """Entry point of the console script.

    The program ends here, at once, once its account is printed: whatever
    it abandoned (a thread that never returns, a coroutine that would not
    stop) has no say in when it exits.
    """
    status = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)
