"""``wpool-tui run`` under faults, as a user meets them: full disks, signal storms,
stubborn jobs, processes that escape, endless input, a rerun.

Real processes, real signals, real files (a full disk is a tiny tmpfs,
mounted for the test where the machine allows it). Each test waits on what
the program prints or on a named pipe its command writes, never on a sleep.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.test_run import WPOOL, Run, fifo, joblog, ready, runs, start, survivors, write
from tests.helpers import outlives, tmpfs

pytestmark = pytest.mark.skipif(not os.path.exists(WPOOL), reason="wpool-tui is not installed")

__all__ = ("runs",)  # the fixture, shared with test_run

ROOT = Path(__file__).resolve().parents[2]

STUBBORN = (
    "import asyncio\n"
    "async def stubborn(job, ctx):\n"
    "    with open('started', 'w') as fifo:\n"
    "        fifo.write('go')\n"
    "    while True:\n"
    "        try:\n"
    "            await asyncio.sleep(1000)\n"
    "        except asyncio.CancelledError:\n"
    "            pass\n"
)


def saved(path: Path) -> list[str]:
    """The ids in an unfinished file."""
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def stop_once_started(run: Run, started: Path) -> tuple[int, str]:
    """SIGTERM once the job that writes ``started`` runs; the exit status and stderr."""
    assert ready(started) == "go\n"
    run.proc.send_signal(signal.SIGTERM)
    return run.finish()


def leftovers(folder: Path) -> list[str]:
    """Temporary files of a save, which must never outlive the run."""
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


class Screen:
    """The dashboard on a terminal of its own (a pty), read as it draws."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.marker = f"{os.getpid()}-{time.monotonic_ns()}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TEXTUAL", "NO_COLOR"))}
        env["WPOOL_E2E"] = self.marker
        env["TERM"] = "xterm-256color"
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the dashboard
            os.chdir(cwd)
            os.execve(WPOOL, [WPOOL, *argv], env)
        self.output = bytearray()
        self._lock = threading.Lock()
        self._seen = threading.Condition(self._lock)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                data = b""
            with self._seen:
                self.output += data
                self._seen.notify_all()
            if not data:
                return

    def wait_for(self, text: bytes, within: float = 20.0) -> None:
        """Wait until ``text`` has been drawn (the condition is notified on each read)."""
        with self._seen:
            if not self._seen.wait_for(lambda: text in self.output, within):
                raise AssertionError(f"{text!r} not drawn within {within:g}s")

    def exit_status(self, within: float = 20.0) -> int:
        assert not outlives(self.pid, within), f"the dashboard still runs after {within:g}s"
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        if outlives(self.pid, within=0.0):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)
        for pid in survivors(self.marker):
            os.kill(pid, signal.SIGKILL)


# The alternate screen is left: the app has ended, and the save runs now.
LEFT_THE_APP = b"\x1b[?1049l"


class TestTheUnfinishedAreSaved:
    def test_a_full_disk_under_the_joblog_never_stops_the_save(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        started = fifo(tmp_path / "started")
        jobs = write(
            tmp_path / "cmds.txt",
            *(f"echo {n}" for n in range(200)),
            f"echo go > {started}; sleep 60",
        )
        with tmpfs(tmp_path / "disk", "8k") as disk:
            log = disk / "log.tsv"
            args = ["--shell", "--jobs", str(jobs), "--joblog", str(log), "--grace", "0"]
            run = start(runs, tmp_path, *args)
            # Read the events meanwhile: a full pipe would hold the program.
            run.wait_until(lambda: "201" in run.started(), "job 201 started")
            status, err = stop_once_started(run, started)
            assert os.path.getsize(log) > 0
        assert status == 1, err
        assert "Traceback" not in err
        assert f"wpool-tui: the joblog {log} stopped early: No space left on device" in err
        assert saved(tmp_path / "wpool-unfinished.jsonl") == ["201"]
        assert leftovers(tmp_path) == []

    def test_a_full_disk_under_the_joblog_of_a_run_that_succeeds_exits_0(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        jobs = write(tmp_path / "cmds.txt", *(f"echo {n}" for n in range(200)))
        with tmpfs(tmp_path / "disk", "8k") as disk:
            log = disk / "log.tsv"
            run = start(runs, tmp_path, "--shell", "--jobs", str(jobs), "--joblog", str(log))
            status, err = run.finish()
        assert (status, "Traceback" in err) == (0, False), err
        assert "wpool-tui: 200 jobs: 200 succeeded" in err
        assert "stopped early: No space left on device" in err

    def test_a_save_onto_a_full_disk_goes_to_stderr_and_leaves_no_temporary_file(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        started = fifo(tmp_path / "started")
        jobs = write(
            tmp_path / "cmds.txt",
            f"echo go > {started}; sleep 60",
            *(f"echo {n:0100}" for n in range(400)),  # 40 KB of them: more than the disk
        )
        with tmpfs(tmp_path / "disk", "8k") as disk:
            left = disk / "left.jsonl"
            args = ["--shell", "--jobs", str(jobs), "--workers", "1", "--unfinished", str(left)]
            run = start(runs, tmp_path, *args, "--grace", "0")
            status, err = stop_once_started(run, started)
            assert (status, leftovers(disk), left.exists()) == (1, [], False), err
        printed = [json.loads(line)["id"] for line in err.splitlines() if line.startswith("{")]
        assert printed == [str(n) for n in range(1, 402)]
        assert f"cannot save 401 unfinished jobs to {left}: No space left on device" in err

    def test_three_sigterms_within_40ms_never_cut_the_save(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        # Enough jobs left that saving them takes a while: the third signal
        # lands after the pool has stopped, while they are written.
        jobs = write(tmp_path / "cmds.txt", "sleep 60", *(["true"] * 60_000))
        args = ["--shell", "--jobs", str(jobs), "--workers", "1", "--grace", "0"]
        run = start(runs, tmp_path, *args, "--cancel-grace", "0.2")
        run.wait_for("JobStarted")
        # As fast as the run answers (tens of ms): one at the start of the
        # shutdown, one during it, one after the stop, while the jobs are saved.
        run.proc.send_signal(signal.SIGTERM)
        run.wait_for("ShutdownStarted")
        run.proc.send_signal(signal.SIGTERM)
        run.wait_for("PoolStopped")
        run.proc.send_signal(signal.SIGTERM)
        status, err = run.finish()
        assert status == 1, err
        ids = saved(tmp_path / "wpool-unfinished.jsonl")
        assert (len(ids), ids[0], ids[-1]) == (60_001, "1", "60001")
        assert leftovers(tmp_path) == []
        assert "Traceback" not in err

    def test_ctrl_c_during_the_save_of_the_dashboard_is_only_told(self, tmp_path: Path) -> None:
        started = fifo(tmp_path / "started")
        write(tmp_path / "cmds.txt", f"echo go > {started}; sleep 60", *(["true"] * 60_000))
        argv = ["run", "--shell", "--jobs", "cmds.txt", "--workers", "1", "--grace", "0"]
        screen = Screen([*argv, "--cancel-grace", "0.2"], tmp_path)
        try:
            assert ready(started) == "go\n"
            os.kill(screen.pid, signal.SIGTERM)  # the shutdown; the app exits when it ends
            screen.wait_for(LEFT_THE_APP)
            # ctrl+c, as the terminal sends it, again and again until the end:
            # some land while the jobs are saved. Each wait is on the exit itself.
            deadline = time.monotonic() + 20
            while outlives(screen.pid, within=0.02) and time.monotonic() < deadline:
                os.kill(screen.pid, signal.SIGINT)
            status = screen.exit_status()
        finally:
            screen.close()
        output = screen.output.decode(errors="replace")
        assert status == 1, output
        assert "Traceback" not in output
        assert "KeyboardInterrupt" not in output
        assert len(saved(tmp_path / "wpool-unfinished.jsonl")) == 60_001
        assert leftovers(tmp_path) == []

    def test_an_earlier_runs_unfinished_file_is_never_overwritten(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        earlier = tmp_path / "wpool-unfinished.jsonl"
        earlier.write_text('{"id": "old", "payload": "true"}\n')
        stale = tmp_path / "wpool-unfinished.jsonl.tmp-999999999"  # a run killed as it saved
        stale.write_text("half a line")
        started = fifo(tmp_path / "started")
        jobs = write(tmp_path / "cmds.txt", f"echo go > {started}; sleep 60")
        run = start(runs, tmp_path, "--shell", "--jobs", str(jobs), "--grace", "0")
        status, err = stop_once_started(run, started)
        assert status == 1
        assert earlier.read_text() == '{"id": "old", "payload": "true"}\n'
        assert saved(tmp_path / "wpool-unfinished-2.jsonl") == ["1"]
        assert (
            "wpool-tui: 1 unfinished job saved to wpool-unfinished-2.jsonl; run them again with: "
            "wpool-tui run --jobs wpool-unfinished-2.jsonl --shell --grace 0 --headless\n"
            "wpool-tui: wpool-unfinished.jsonl is from an earlier run: left as it was\n"
        ) in err
        assert not stale.exists()


class TestNeverHangs:
    def test_a_job_that_swallows_its_cancellation_never_holds_the_exit(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        (tmp_path / "work.py").write_text(STUBBORN)
        started = fifo(tmp_path / "started")
        jobs = write(tmp_path / "jobs.jsonl", '{"id": "s", "payload": ""}')
        args = ["--handler", "work:stubborn", "--jobs", str(jobs)]
        run = start(runs, tmp_path, *args, "--grace", "0.5", "--cancel-grace", "0.5")
        assert ready(started) == "go"
        sent = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        status, err = run.finish(timeout=10)
        assert time.monotonic() - sent < 0.5 + 0.5 + 1.0
        assert status == 1
        assert run.wait_for("JobAbandoned")[0]["job_id"] == "s"
        assert "wpool-tui: 1 jobs: 1 abandoned" in err
        assert saved(tmp_path / "wpool-unfinished.jsonl") == ["s"]

    def test_nor_the_dashboards(self, tmp_path: Path) -> None:
        (tmp_path / "work.py").write_text(STUBBORN)
        started = fifo(tmp_path / "started")
        write(tmp_path / "jobs.jsonl", '{"id": "s", "payload": ""}')
        argv = ["run", "--handler", "work:stubborn", "--jobs", "jobs.jsonl"]
        screen = Screen([*argv, "--grace", "0.5", "--cancel-grace", "0.5"], tmp_path)
        try:
            assert ready(started) == "go"
            sent = time.monotonic()
            os.kill(screen.pid, signal.SIGTERM)
            status = screen.exit_status(within=10)
            took = time.monotonic() - sent
        finally:
            screen.close()
        assert took < 0.5 + 0.5 + 1.0, f"took {took:.2f}s"
        assert status == 1
        assert b"1 jobs: 1 abandoned" in screen.output
        assert saved(tmp_path / "wpool-unfinished.jsonl") == ["s"]


class TestNoProcessOutlives:
    def test_a_command_that_leaves_its_session_goes_with_its_job(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        jobs = write(tmp_path / "cmds.txt", "setsid sleep 300 & sleep 0.5")
        run = start(runs, tmp_path, "--shell", "--jobs", str(jobs))
        status, err = run.finish()
        assert status == 0, err
        assert survivors(run.marker) == []

    def test_sigkill_of_the_program_ends_every_job_process_within_2s(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        for name in ("r1", "r2"):
            fifo(tmp_path / name)
        jobs = write(
            tmp_path / "cmds.txt",
            "setsid sleep 300 & echo go > r1; sleep 60",
            "trap '' TERM; echo go > r2; sleep 60",
        )
        run = start(runs, tmp_path, "--shell", "--jobs", str(jobs), "--workers", "2")
        for name in ("r1", "r2"):
            assert ready(tmp_path / name) == "go\n"
        processes = [pid for pid in survivors(run.marker, within=0.0) if pid != run.proc.pid]
        assert len(processes) >= 5  # two shells, their sleeps, the escaped one (and a watchdog)
        run.proc.kill()
        killed = time.monotonic()
        assert [pid for pid in processes if outlives(pid, within=2.0)] == []
        assert time.monotonic() - killed < 2.0

    def test_a_process_job_that_starts_a_new_session_leaves_nothing(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        (tmp_path / "work.py").write_text(
            "import subprocess, sys\n"
            "def escape(job, ctx):\n"
            "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'],\n"
            "                     start_new_session=True)\n"
            "    return 'left one behind'\n"
        )
        jobs = write(tmp_path / "jobs.jsonl", '{"payload": ""}')
        args = ["--handler", "work:escape", "--runner", "process", "--jobs", str(jobs)]
        run = start(runs, tmp_path, *args)
        status, err = run.finish()
        assert status == 0, err
        assert survivors(run.marker) == []


class TestInputAtAnySize:
    def test_endless_standard_input_is_run_as_it_comes(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        # yes true | wpool-tui run --shell --jobs - --headless
        yes = subprocess.Popen(["yes", "true"], stdout=subprocess.PIPE)
        try:
            assert yes.stdout is not None
            run = start(runs, tmp_path, "--shell", "--jobs", "-", stdin=yes.stdout)
            yes.stdout.close()
            run.wait_for("JobSucceeded", 50)
            run.proc.send_signal(signal.SIGTERM)
            status, err = run.finish()
        finally:
            yes.kill()
            yes.wait()
        assert status == 1
        assert re.search(r"wpool-tui: <stdin> was not read past line \d+: the jobs after it", err)

    def test_a_bad_line_far_in_stops_the_intake_and_names_it(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        # Past the first block the program checks before it starts (64 KB).
        padding = "#" * 1000
        lines = [f"true {padding}"] * 150
        lines[119] = '{"id": "x", "payload": "true", "timeout": -1}'
        jobs = write(tmp_path / "cmds.txt", *lines)
        run = start(runs, tmp_path, "--shell", "--jobs", str(jobs), "--joblog", "log.tsv")
        status, err = run.finish()
        assert status == 2, err
        assert (
            f"wpool-tui: stopped reading the jobs: {jobs}:120: timeout must be > 0, got -1" in err
        )
        rows = joblog(tmp_path / "log.tsv")
        assert sorted(int(r["id"]) for r in rows) == list(range(1, 120))
        assert {r["outcome"] for r in rows} == {"succeeded"}
        assert not (tmp_path / "wpool-unfinished.jsonl").exists()

    def test_long_and_nul_ids_and_control_characters_are_safe_everywhere(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        long = "x" * 300
        jobs = write(
            tmp_path / "jobs.jsonl",
            "\ufeff" + json.dumps({"id": long, "payload": "echo long"}),  # a BOM first
            json.dumps({"id": "a\u0000b", "payload": "echo nul"}),
            json.dumps({"id": "sep\u2028\u0085end", "payload": "printf 'x\\ty\\n'"}),
            json.dumps({"id": "slow", "payload": "sleep 5"}),
        )
        args = ["--shell", "--jobs", str(jobs), "--output-dir", "out", "--joblog", "log.tsv"]
        run = start(runs, tmp_path, *args, "--job-timeout", "0.5")
        status, err = run.finish()
        assert status == 1, err  # the slow one timed out
        succeeded = sorted(e["job_id"] for e in run.wait_for("JobSucceeded", 3))
        assert succeeded == sorted([long, "a\u0000b", "sep\u2028\u0085end"])
        names = sorted(p.name for p in (tmp_path / "out").iterdir())
        assert len(names) == 4
        assert all(len(name.encode()) <= 255 and "\0" not in name for name in names)
        _, *rows = (tmp_path / "log.tsv").read_text().split("\n")[:-1]
        assert len(rows) == 4
        cells = {row.split("\t")[1]: row.split("\t") for row in rows}
        assert set(cells) == {long, "a\\x00b", "sep\\u2028\\x85end", "slow"}
        assert all(len(row) == 10 for row in cells.values())
        assert cells["slow"][5:8] == ["timed_out", "-", "SIGTERM"]
        assert cells["sep\\u2028\\x85end"][9] == "printf 'x\\\\ty\\\\n'"


class TestResume:
    def test_resume_runs_what_did_not_succeed_until_it_all_has(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        flag = tmp_path / "flag"
        jobs = write(tmp_path / "cmds.txt", "true", f"test -e {flag}", "true", f"test -e {flag}")
        args = ["--shell", "--jobs", str(jobs)]
        status, _ = start(runs, tmp_path, *args, "--joblog", "log.tsv").finish()
        assert status == 1
        flag.touch()
        again = start(runs, tmp_path, *args, "--resume", "log.tsv")
        status, err = again.finish()
        assert status == 0, err
        assert sorted(e["job_id"] for e in again.wait_for("JobSucceeded", 2)) == ["2", "4"]
        assert "wpool-tui: 4 jobs: 2 succeeded, 2 skipped" in err
        rows = joblog(tmp_path / "log.tsv")
        assert [(r["id"], r["outcome"]) for r in rows[-2:]] in (
            [("2", "succeeded"), ("4", "succeeded")],
            [("4", "succeeded"), ("2", "succeeded")],
        )
        assert len(rows) == 6  # the first run's four lines, then the rerun's two

    def test_retry_failed_runs_only_what_failed(self, runs: list[Run], tmp_path: Path) -> None:
        log, flag = tmp_path / "log.tsv", tmp_path / "flag"
        write(tmp_path / "cmds.txt", "true", f"test -e {flag}", "true")
        first = start(runs, tmp_path, "--shell", "--jobs", "cmds.txt", "--joblog", str(log))
        status, _ = first.finish()
        assert status == 1
        flag.touch()
        # A line the joblog never saw is not a failed one: it is skipped too.
        write(tmp_path / "cmds.txt", "true", f"test -e {flag}", "true", "echo new")
        retry = start(runs, tmp_path, "--shell", "--jobs", "cmds.txt", "--retry-failed", str(log))
        status, err = retry.finish()
        assert status == 0, err
        assert [e["job_id"] for e in retry.wait_for("JobSucceeded")] == ["2"]
        assert "wpool-tui: 4 jobs: 1 succeeded, 3 skipped" in err

    def test_a_line_that_changed_since_the_joblog_is_refused(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        write(tmp_path / "cmds.txt", "echo a", "echo b")
        first = start(runs, tmp_path, "--shell", "--jobs", "cmds.txt", "--joblog", "l.tsv")
        status, _ = first.finish()
        assert status == 0
        write(tmp_path / "cmds.txt", "echo a", "echo B")
        again = start(runs, tmp_path, "--shell", "--jobs", "cmds.txt", "--resume", "l.tsv")
        status, err = again.finish()
        assert status == 2
        assert (
            "wpool-tui: stopped reading the jobs: cmds.txt:2: the joblog l.tsv ran job '2' "
            "as 'echo b', not 'echo B': the input has changed since"
        ) in err


class TestOutput:
    def test_results_and_the_json_events_carry_what_handlers_return(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        (tmp_path / "work.py").write_text(
            "def double(job, ctx):\n"
            "    n = int(job.payload)\n"
            "    if n < 0:\n"
            "        raise ValueError(f'negative: {n}')\n"
            "    return {'double': 2 * n}\n"
        )
        jobs = write(tmp_path / "jobs.jsonl", '{"id": "a", "payload": "21"}', '{"payload": -1}')
        before = time.time()
        args = ["--handler", "work:double", "--jobs", str(jobs), "--results", "r.jsonl"]
        run = start(runs, tmp_path, *args)
        status, _ = run.finish()
        after = time.time()
        assert status == 1
        (succeeded,) = run.wait_for("JobSucceeded")
        assert succeeded["result"] == {"double": 42}
        assert all(before <= e["wall"] <= after for e in run.events)
        results = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
        assert sorted(results, key=lambda r: r["id"]) == [
            {"id": "2", "outcome": "failed", "error": "ValueError: negative: -1"},
            {"id": "a", "outcome": "succeeded", "result": {"double": 42}},
        ]

    def test_make_run_prints_nothing_but_the_programs_output(self, tmp_path: Path) -> None:
        venv = Path(sys.executable).parent.parent
        stamp = venv / ".installed"
        argv = ["make", "--no-print-directory", "-o", str(stamp), "run", f"VENV={venv}"]
        args = "ARGS=--headless --rate 0 --jobs 3 --grace 0 --cancel-grace 0"
        make = subprocess.Popen(
            [*argv, args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert make.stdout is not None
        try:
            while True:
                line = make.stdout.readline()
                assert line, "make ended before a job started"
                if json.loads(line)["type"] == "JobStarted":
                    break
            os.killpg(make.pid, signal.SIGTERM)  # as ctrl+c would: make and the program
            rest = make.stdout.read().splitlines()
            make.wait(timeout=20)
        finally:
            if make.poll() is None:
                os.killpg(make.pid, signal.SIGKILL)
            make.stdout.close()
        assert [json.loads(line)["type"] for line in rest][-1] == "PoolStopped"
