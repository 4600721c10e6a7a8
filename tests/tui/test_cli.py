"""The ``wpool-tui`` command line: flags, their errors, ``--help`` and the exit summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pool import Job, PoolPhase, ShutdownReport
from tui.cli import THEMES, parse_args, summary

ROOT = Path(__file__).resolve().parents[2]

FLAGS = (
    "--workers",
    "--queue-size",
    "--rate",
    "--jobs",
    "--fail-rate",
    "--hang-rate",
    "--job-timeout",
    "--grace",
    "--cancel-grace",
    "--seed",
    "--read-only",
    "--headless",
    "--record",
    "--theme",
)


def test_defaults() -> None:
    args = parse_args([])
    assert vars(args) == {
        "workers": 4,
        "queue_size": 100,
        "rate": 2.0,
        "jobs": 0,
        "fail_rate": 0.1,
        "hang_rate": 0.01,
        "job_timeout": 5.0,
        "grace": 10.0,
        "cancel_grace": 2.0,
        "seed": 1,
        "read_only": False,
        "headless": False,
        "record": None,
        "theme": "textual-dark",
    }


def test_every_flag_is_parsed() -> None:
    args = parse_args(
        [
            "--workers=0",
            "--queue-size=1",
            "--rate=0",
            "--jobs=7",
            "--fail-rate=1",
            "--hang-rate=0",
            "--job-timeout=0.5",
            "--grace=0",
            "--cancel-grace=3600",
            "--seed=42",
            "--read-only",
            "--headless",
            "--record=shutdown.wpool",
            "--theme=nord",
        ]
    )
    assert vars(args) == {
        "workers": 0,
        "queue_size": 1,
        "rate": 0.0,
        "jobs": 7,
        "fail_rate": 1.0,
        "hang_rate": 0.0,
        "job_timeout": 0.5,
        "grace": 0.0,
        "cancel_grace": 3600.0,
        "seed": 42,
        "read_only": True,
        "headless": True,
        "record": "shutdown.wpool",
        "theme": "nord",
    }
    assert isinstance(args.workers, int)
    assert isinstance(args.seed, int)


@pytest.mark.parametrize("theme", THEMES)
def test_every_theme_is_accepted(theme: str) -> None:
    assert parse_args(["--theme", theme]).theme == theme


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--workers", "-1"], "argument --workers: must be from 0 to 1024, got -1"),
        (["--workers", "abc"], "argument --workers: not a whole number: 'abc'"),
        (["--workers", "2.5"], "argument --workers: not a whole number: '2.5'"),
        (["--workers", "1025"], "argument --workers: must be from 0 to 1024, got 1025"),
        (["--workers"], "argument --workers: expected one argument"),
        (["--queue-size", "0"], "argument --queue-size: must be >= 1, got 0"),
        (["--rate", "-0.5"], "argument --rate: must be >= 0, got -0.5"),
        (["--rate", "nan"], "argument --rate: must be >= 0, got nan"),
        (["--jobs", "-1"], "argument --jobs: must be >= 0, got -1"),
        (["--fail-rate", "1.5"], "argument --fail-rate: must be from 0 to 1, got 1.5"),
        (["--hang-rate", "-0.1"], "argument --hang-rate: must be from 0 to 1, got -0.1"),
        (["--job-timeout", "0"], "argument --job-timeout: must be > 0, got 0"),
        (["--grace", "3601"], "argument --grace: must be from 0 to 3600, got 3601"),
        (["--cancel-grace", "x"], "argument --cancel-grace: not a number: 'x'"),
        (["--seed", "-2"], "argument --seed: must be >= 0, got -2"),
        (
            ["--theme", "nope"],
            "argument --theme: invalid choice: 'nope' (choose from "
            + ", ".join(repr(t) for t in THEMES)
            + ")",
        ),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["extra"], "unrecognized arguments: extra"),
    ],
)
def test_a_bad_flag_or_value_exits_2_with_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], argv: list[str], problem: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"wpool-tui: error: {problem} (see --help)\n"
    assert err.count("\n") == 1


def test_help_exits_0_and_names_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--help"])
    assert exc.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("usage: wpool-tui ")
    for flag in (*FLAGS, "--help"):
        assert flag in out, flag
    for theme in THEMES:
        assert theme in out, theme


def report(
    *,
    finished: tuple[str, ...] = ("a", "b", "c"),
    cancelled: tuple[str, ...] = (),
    not_started: tuple[str, ...] = (),
    abandoned: tuple[str, ...] = (),
    unfinished: tuple[Job, ...] = (),
    duration: float = 0.0,
    phase_reached: PoolPhase = PoolPhase.DRAINING,
    reason: str | None = None,
    failed: bool = False,
) -> ShutdownReport:
    return ShutdownReport(
        finished=finished,
        cancelled=cancelled,
        not_started=not_started,
        abandoned=abandoned,
        unfinished=unfinished,
        duration=duration,
        phase_reached=phase_reached,
        reason=reason,
        failed=failed,
    )


def test_summary_of_a_clean_shutdown() -> None:
    assert summary(report(duration=0.04)) == (
        "wpool-tui: pool stopped after a 0.0s shutdown (reached draining)\n"
        "  finished 3, cancelled 0, not started 0, abandoned 0"
    )


def test_summary_of_a_forced_shutdown() -> None:
    cancelled, queued, hung = Job(id="c1"), Job(id="q1"), Job(id="h1")
    text = summary(
        report(
            finished=("a",),
            cancelled=("c1",),
            not_started=("q1",),
            abandoned=("h1",),
            unfinished=(cancelled, queued, hung),
            duration=12.345,
            phase_reached=PoolPhase.FORCING,
        )
    )
    assert text == (
        "wpool-tui: pool stopped after a 12.3s shutdown (reached forcing)\n"
        "  finished 1, cancelled 1, not started 1, abandoned 1"
    )


def test_summary_of_a_failed_pool_gives_the_reason() -> None:
    text = summary(
        report(
            finished=(),
            duration=1.0,
            reason="worker w1 crashed 4 times in 5s",
            failed=True,
        )
    )
    assert text == (
        "wpool-tui: pool failed after a 1.0s shutdown (reached draining)\n"
        "  finished 0, cancelled 0, not started 0, abandoned 0\n"
        "  reason: worker w1 crashed 4 times in 5s"
    )


def test_summary_without_a_shutdown() -> None:
    assert summary(None) == "wpool-tui: the pool was not shut down"


def test_python_m_tui_with_a_bad_value_exits_2_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tui", "--workers", "-1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "wpool-tui: error: argument --workers: must be from 0 to 1024, got -1 (see --help)\n"
    )
