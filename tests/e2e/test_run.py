"""``wpool-tui run --headless`` as a user runs it: a real subprocess, real commands.

Each test waits on what the program prints (its events, one JSON line each),
never on a sleep; every command it starts carries a marker in its
environment, so the process table tells whether any of them survived.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.helpers import outlives

WPOOL = str(Path(sys.executable).with_name("wpool-tui"))

pytestmark = pytest.mark.skipif(not os.path.exists(WPOOL), reason="wpool-tui is not installed")


def survivors(marker: str, within: float = 5.0) -> list[int]:
    """Pids of processes whose environment holds ``marker`` that live on after ``within`` s."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as file:
                environ = file.read()
            with open(f"/proc/{entry}/stat", "rb") as file:
                state = file.read().rpartition(b")")[2].split()[0]
        except OSError:
            continue
        if marker.encode() in environ and state != b"Z":
            found.append(int(entry))
    return [pid for pid in found if outlives(pid, within)]


class Run:
    """One ``wpool-tui`` process, its events read as they come."""

    def __init__(self, args: list[str], cwd: Path, stdin: bytes | IO[bytes] | None = None) -> None:
        self.marker = f"WPOOL_E2E={uuid.uuid4().hex}"
        key, _, value = self.marker.partition("=")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TEXTUAL", "NO_COLOR"))}
        env[key] = value
        self.proc = subprocess.Popen(
            [WPOOL, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL
            if stdin is None
            else subprocess.PIPE
            if isinstance(stdin, bytes)
            else stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if isinstance(stdin, bytes):
            assert self.proc.stdin is not None
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()
        self.events: list[dict[str, Any]] = []
        self._partial = b""

    def _read(self, timeout: float) -> bool:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return True
        data = os.read(fd, 65536)
        if not data:
            return False
        *lines, self._partial = (self._partial + data).split(b"\n")
        self.events.extend(json.loads(line) for line in lines if line)
        return True

    def wait_for(self, kind: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Read events until ``count`` of type ``kind`` have been printed."""
        self.wait_until(lambda: len(self.of(kind)) >= count, f"{count} {kind}", timeout)
        return self.of(kind)

    def wait_until(self, done: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
        """Read events until ``done()`` holds."""
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0 or (not self._read(min(left, 0.5)) and self.proc.poll() is not None):
                raise AssertionError(f"{what} not seen; got {self.types()}")

    def started(self) -> set[str]:
        """The ids of the jobs started so far."""
        return {e["job_id"] for e in self.of("JobStarted")}

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def finish(self, timeout: float = 20.0) -> tuple[int, str]:
        """Read to the end; the exit status and standard error."""
        deadline = time.monotonic() + timeout
        while self._read(max(0.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError("wpool-tui did not end")
        assert self.proc.stderr is not None
        status = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        return status, self.proc.stderr.read().decode()

    def kill(self) -> None:
        """Kill it if it still runs, and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.kill()
        stray = survivors(run.marker)
        for pid in stray:
            os.kill(pid, signal.SIGKILL)
        assert not stray, f"processes outlived wpool-tui: {stray}"


def start(
    runs: list[Run], tmp_path: Path, *args: str, stdin: bytes | IO[bytes] | None = None
) -> Run:
    run = Run(["run", "--headless", *args], tmp_path, stdin)
    runs.append(run)
    return run


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def fifo(path: Path) -> Path:
    """A named pipe: a command writes to it when it is ready, the test's read waits for that."""
    os.mkfifo(path)
    return path


def ready(path: Path, within: float = 15.0) -> str:
    """What a command wrote to the named pipe ``path``; fail if it does not within ``within``."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(path.read_text()), daemon=True)
    reader.start()
    reader.join(within)
    if reader.is_alive():
        # Unblock the reader (a writer that writes nothing), then fail.
        with open(path, "w"):
            pass
        raise AssertionError(f"nothing was written to {path.name} within {within:g}s")
    return got[0]


def joblog(path: Path) -> list[dict[str, str]]:
    header, *rows = path.read_text().splitlines()
    names = header.split("\t")
    return [dict(zip(names, row.split("\t"), strict=True)) for row in rows]


class TestShell:
    def test_commands_succeed_fail_and_are_not_found(self, runs: list[Run], tmp_path: Path) -> None:
        jobs = write(
            tmp_path / "cmds.txt",
            "echo hello; echo oops >&2",
            "",
            "exit 3",
            "no-such-command-here",
        )
        run = start(runs, tmp_path, "--shell", "--jobs", str(jobs), "--joblog", "log.tsv")
        status, err = run.finish()
        assert status == 1
        outputs = {e["job_id"]: e for e in run.events if e["type"] == "JobOutputCaptured"}
        assert outputs["1"]["exit_code"] == 0
        assert outputs["1"]["output"] == "hello\noops"
        assert outputs["3"]["exit_code"] == 3
        assert outputs["4"]["exit_code"] == 127
        failed = {
            e["job_id"]: e["error"]["message"] for e in run.events if e["type"] == "JobFailed"
        }
        assert failed["3"] == "exit code 3"
        assert failed["4"].startswith("command not found (exit code 127): ")
        assert "no-such-command-here" in failed["4"]
        rows = joblog(tmp_path / "log.tsv")
        assert sorted((r["seq"], r["id"], r["outcome"], r["exit"]) for r in rows) == [
            ("1", "1", "succeeded", "0"),
            ("2", "3", "failed", "3"),
            ("3", "4", "failed", "127"),
        ]
        assert "wpool-tui: 3 jobs: 1 succeeded, 2 failed" in err
        assert not (tmp_path / "wpool-unfinished.jsonl").exists()

    def test_every_job_succeeding_exits_0(self, runs: list[Run], tmp_path: Path) -> None:
        jobs = write(tmp_path / "cmds.txt", *(f"echo {n}" for n in range(20)))
        run = start(runs, tmp_path, "--shell", "--jobs", str(jobs), "--workers", "3")
        status, err = run.finish()
        assert status == 0, err
        assert len(run.wait_for("JobSucceeded", 20)) == 20
        assert run.types()[-1] == "PoolStopped"

    def test_output_dir_keeps_all_output(self, runs: list[Run], tmp_path: Path) -> None:
        jobs = write(tmp_path / "cmds.txt", "seq 1 500")
        run = start(
            runs, tmp_path, "--shell", "--jobs", str(jobs), "--output-dir", str(tmp_path / "out")
        )
        status, _ = run.finish()
        assert status == 0
        assert (tmp_path / "out" / "1.out").read_text().split() == [str(n) for n in range(1, 501)]
        (output,) = run.wait_for("JobOutputCaptured")
        assert output["output"].splitlines() == [str(n) for n in range(401, 501)]
        assert output["path"] == str(tmp_path / "out" / "1.out")

    def test_a_hung_command_times_out_and_its_group_is_killed(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        # The shell's background child is in the same group: it goes too.
        jobs = write(tmp_path / "cmds.txt", "sleep 60 & sleep 60", "echo after")
        run = start(runs, tmp_path, "--shell", "--jobs", str(jobs), "--job-timeout", "0.5")
        status, _ = run.finish()
        assert status == 1
        assert [e["job_id"] for e in run.wait_for("JobTimedOut")] == ["1"]
        assert [e["job_id"] for e in run.wait_for("JobSucceeded")] == ["2"]
        out = {e["job_id"]: e["exit_code"] for e in run.events if e["type"] == "JobOutputCaptured"}
        assert out["1"] == -signal.SIGTERM

    def test_a_command_ignoring_sigterm_is_killed_after_cancel_grace(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        jobs = write(tmp_path / "cmds.txt", "trap '' TERM; sleep 60")
        run = start(
            runs,
            tmp_path,
            "--shell",
            "--jobs",
            str(jobs),
            "--job-timeout",
            "2.0",  # ample for the shell to reach its trap
            "--cancel-grace",
            "0.5",
        )
        status, _ = run.finish()
        assert status == 1
        (abandoned,) = run.wait_for("JobAbandoned")
        assert abandoned["duration"] >= 2.5
        assert (tmp_path / "wpool-unfinished.jsonl").read_text() == (
            '{"id": "1", "payload": "trap \'\' TERM; sleep 60"}\n'
        )


class TestSignals:
    def test_sigterm_saves_the_unfinished_and_the_rerun_completes_them(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        flag = tmp_path / "go"
        wait = f"while [ ! -e {flag} ]; do sleep 0.05; done"
        trapped = fifo(tmp_path / "trapped")
        jobs = write(
            tmp_path / "cmds.txt",
            "echo quick",
            wait,
            f"trap '' TERM; [ -e {flag} ] || echo go > {trapped}; {wait}",
            *(f"echo later {n}" for n in range(5)),
        )
        args = ["--shell", "--workers", "3", "--grace", "0.5", "--cancel-grace", "0.5"]
        run = start(runs, tmp_path, *args, "--jobs", str(jobs), "--joblog", "log.tsv")
        run.wait_for("JobStarted", 3)
        assert ready(trapped) == "go\n"  # the trap is set: SIGTERM will be ignored
        sent = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        status, err = run.finish()
        took = time.monotonic() - sent
        assert status == 1
        assert took < 0.5 + 0.5 + 1.0, f"took {took:.2f}s"
        assert "SIGTERM: shutting down gracefully" in err
        saved = (tmp_path / "wpool-unfinished.jsonl").read_text().splitlines()
        ids = [json.loads(line)["id"] for line in saved]
        assert ids[:2] == ["2", "3"]  # cancelled, abandoned
        assert set(ids) >= {"2", "3"}
        assert "run them again with: wpool-tui run --jobs wpool-unfinished.jsonl --shell" in err
        assert len(joblog(tmp_path / "log.tsv")) == len(run.wait_for("JobStarted", 3)) + sum(
            1 for e in run.events if e["type"] == "JobCancelled" and not e["started"]
        )

        flag.touch()  # now the waiting commands can end
        again = start(runs, tmp_path, *args, "--jobs", "wpool-unfinished.jsonl")
        status, err = again.finish()
        assert status == 0, err
        assert sorted(e["job_id"] for e in again.wait_for("JobSucceeded", len(ids))) == sorted(ids)

    def test_a_second_sigterm_escalates(self, runs: list[Run], tmp_path: Path) -> None:
        trapped = fifo(tmp_path / "trapped")
        jobs = write(
            tmp_path / "cmds.txt", "sleep 60", f"trap '' TERM; echo go > {trapped}; sleep 60"
        )
        args = ["--shell", "--jobs", str(jobs), "--grace", "30", "--cancel-grace", "1"]
        run = start(runs, tmp_path, *args)
        run.wait_for("JobStarted", 2)
        assert ready(trapped) == "go\n"
        sent = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        run.wait_for("ShutdownStarted")
        run.proc.send_signal(signal.SIGTERM)
        status, err = run.finish()
        assert time.monotonic() - sent < 1 + 1.0  # not the 30 s grace
        assert status == 1
        assert "escalating" in err
        assert {e["job_id"] for e in run.events if e["type"] == "JobAbandoned"} == {"2"}

    def test_sigint_shuts_down_too(self, runs: list[Run], tmp_path: Path) -> None:
        jobs = write(tmp_path / "cmds.txt", "sleep 60")
        run = start(runs, tmp_path, "--shell", "--jobs", str(jobs), "--grace", "0")
        run.wait_for("JobStarted")
        run.proc.send_signal(signal.SIGINT)
        status, err = run.finish()
        assert status == 1
        assert "SIGINT: shutting down gracefully" in err


class TestHandlers:
    def test_a_python_handler_in_threads(self, runs: list[Run], tmp_path: Path) -> None:
        (tmp_path / "work.py").write_text(
            "def double(job, ctx):\n"
            "    n = int(job.payload)\n"
            "    if n < 0:\n"
            "        raise ValueError(f'negative: {n}')\n"
            "    return 2 * n\n"
        )
        jobs = write(
            tmp_path / "jobs.jsonl",
            '{"id": "a", "payload": "21"}',
            '{"payload": 4, "timeout": 5}',
            '{"id": "neg", "payload": "-1"}',
        )
        run = start(runs, tmp_path, "--handler", "work:double", "--jobs", str(jobs))
        status, err = run.finish()
        assert status == 1
        assert len(run.wait_for("JobSucceeded", 2)) == 2
        (failed,) = run.wait_for("JobFailed")
        assert failed["job_id"] == "neg"
        assert failed["error"]["message"] == "negative: -1"
        assert "wpool-tui: 3 jobs: 2 succeeded, 1 failed" in err

    def test_the_process_runner_restarts_a_dead_worker_and_kills_a_cpu_bound_job(
        self, runs: list[Run], tmp_path: Path
    ) -> None:
        (tmp_path / "work.py").write_text(
            "import os\n"
            "def work(job, ctx):\n"
            "    kind = job.payload.decode()\n"
            "    if kind == 'exit':\n"
            "        os._exit(3)\n"
            "    if kind == 'spin':\n"
            "        while True:\n"
            "            pass\n"
            "    print(f'done {kind} in', os.getpid())\n"
            "    return kind\n"
        )
        jobs = write(
            tmp_path / "jobs.jsonl",
            '{"id": "exit", "payload": "exit"}',
            '{"id": "spin", "payload": "spin"}',
            *(f'{{"id": "ok-{n}", "payload": "ok"}}' for n in range(4)),
        )
        args = ["--handler", "work:work", "--runner", "process", "--workers", "2"]
        run = start(runs, tmp_path, *args, "--jobs", str(jobs), "--job-timeout", "1")
        status, err = run.finish(timeout=30)
        assert status == 1, err
        (crash,) = run.wait_for("WorkerCrashed")
        assert crash["job_id"] == "exit"
        assert "exit code 3" in crash["error"]["message"]
        assert [e["worker_id"] for e in run.wait_for("WorkerRestarted")] == [crash["worker_id"]]
        assert [e["job_id"] for e in run.wait_for("JobFailed")] == ["exit"]
        assert [e["job_id"] for e in run.wait_for("JobTimedOut")] == ["spin"]
        assert sorted(e["job_id"] for e in run.wait_for("JobSucceeded", 4)) == [
            f"ok-{n}" for n in range(4)
        ]
        printed = [e["output"] for e in run.events if e["type"] == "JobOutputCaptured"]
        assert sum(line.startswith("done ok in ") for line in printed) == 4

    def test_jobs_from_standard_input(self, runs: list[Run], tmp_path: Path) -> None:
        run = start(runs, tmp_path, "--shell", "--jobs", "-", stdin=b"echo a\necho b\n")
        status, _ = run.finish()
        assert status == 0
        assert len(run.wait_for("JobSucceeded", 2)) == 2


class TestBadInput:
    def run(self, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [WPOOL, "run", "--headless", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def test_a_malformed_line_names_file_and_line_and_starts_nothing(self, tmp_path: Path) -> None:
        marker = tmp_path / "ran"
        jobs = write(
            tmp_path / "jobs.jsonl",
            json.dumps({"payload": f"touch {marker}"}),
            '{"payload": "x",}',
        )
        (tmp_path / "work.py").write_text(
            "import subprocess\n"
            "def run(job, ctx):\n"
            "    subprocess.run(job.payload.decode(), shell=True, check=True)\n"
        )
        done = self.run(tmp_path, "--handler", "work:run", "--jobs", str(jobs))
        # Our words exactly; the JSON decoder's own words are its to change
        # (3.13 says "Illegal trailing comma" where 3.11 says "Expecting property name").
        with pytest.raises(json.JSONDecodeError) as bad:
            json.loads('{"payload": "x",}')
        assert done.returncode == 2
        assert done.stderr == (
            f"wpool-tui run: error: {jobs}:2: not valid JSON: "
            f"{bad.value.msg} (column {bad.value.colno})\n"
        )
        assert done.stdout == ""
        assert not marker.exists()

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            ("[1, 2]", "expected a JSON object, got an array"),
            ('{"id": "x"}', "payload is required"),
            ('{"payload": "x", "timeout": -1}', "timeout must be > 0, got -1"),
            (
                '{"payload": "x", "time_out": 1}',
                "unknown field 'time_out' (fields: id, payload, timeout, meta)",
            ),
        ],
    )
    def test_bad_lines(self, tmp_path: Path, line: str, message: str) -> None:
        jobs = write(tmp_path / "jobs.jsonl", '{"payload": "ok"}', line)
        done = self.run(tmp_path, "--handler", "os:getcwd", "--jobs", "jobs.jsonl")
        assert (done.returncode, done.stderr) == (
            2,
            f"wpool-tui run: error: jobs.jsonl:2: {message}\n",
        )
        assert jobs.exists()

    def test_an_unimportable_handler(self, tmp_path: Path) -> None:
        jobs = write(tmp_path / "jobs.jsonl", '{"payload": "x"}')
        done = self.run(tmp_path, "--handler", "nosuchmodule:f", "--jobs", str(jobs))
        assert (done.returncode, done.stderr) == (
            2,
            "wpool-tui run: error: cannot import handler nosuchmodule:f: "
            "ModuleNotFoundError: No module named 'nosuchmodule'\n",
        )
        done = self.run(tmp_path, "--handler", "os:nosuchfunction", "--jobs", str(jobs))
        assert (done.returncode, done.stderr) == (
            2,
            "wpool-tui run: error: cannot import handler os:nosuchfunction: "
            "no 'nosuchfunction' in os\n",
        )

    def test_a_missing_jobs_file(self, tmp_path: Path) -> None:
        done = self.run(tmp_path, "--shell", "--jobs", "missing.txt")
        assert (done.returncode, done.stderr) == (
            2,
            "wpool-tui run: error: cannot read missing.txt: No such file or directory\n",
        )

    def test_an_empty_jobs_file_is_nothing_to_do(self, tmp_path: Path) -> None:
        write(tmp_path / "empty.txt", "", "   ")
        done = self.run(tmp_path, "--shell", "--jobs", "empty.txt")
        assert (done.returncode, done.stdout, done.stderr) == (
            0,
            "",
            "wpool-tui: no jobs in empty.txt: nothing to do\n",
        )

    def test_flags_that_do_not_go_together(self, tmp_path: Path) -> None:
        write(tmp_path / "jobs.txt", "true")
        done = self.run(tmp_path, "--shell", "--runner", "process", "--jobs", "jobs.txt")
        assert done.returncode == 2
        assert "--runner applies to --handler only" in done.stderr
        done = self.run(tmp_path, "--jobs", "jobs.txt")
        assert done.returncode == 2
        assert "one of the arguments --shell --handler is required" in done.stderr


class TestHeadlessDemo:
    def test_the_demo_runs_until_a_signal(self, runs: list[Run], tmp_path: Path) -> None:
        run = Run(
            ["--headless", "--rate", "0", "--jobs", "3", "--job-timeout", "2", "--seed", "7"],
            tmp_path,
        )
        runs.append(run)
        ended = ("JobSucceeded", "JobFailed", "JobTimedOut", "JobAbandoned")
        run.wait_until(lambda: sum(t in ended for t in run.types()) == 3, "3 ends", 30)
        run.proc.send_signal(signal.SIGTERM)
        status, err = run.finish()
        assert status == 0, err
        assert run.types()[-1] == "PoolStopped"
        assert re.search(
            r"wpool-tui: pool stopped after a \d+\.\ds shutdown \(reached draining\)", err
        )


class TestDashboardHangup:
    def test_a_closed_terminal_stops_every_command_and_saves_the_rest(self, tmp_path: Path) -> None:
        for name in ("r1", "r2"):
            fifo(tmp_path / name)
        write(
            tmp_path / "cmds.txt",
            "echo go > r1; sleep 60",
            "trap '' TERM; echo go > r2; sleep 60",
            "echo never started",
        )
        marker = f"WPOOL_E2E={uuid.uuid4().hex}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TEXTUAL", "NO_COLOR"))}
        env["WPOOL_E2E"] = marker.partition("=")[2]
        env["TERM"] = "xterm-256color"
        argv = [WPOOL, "run", "--shell", "--jobs", "cmds.txt", "--workers", "2"]
        pid, fd = pty.fork()
        if pid == 0:  # the child: the dashboard on a terminal of its own
            os.chdir(tmp_path)
            os.execve(WPOOL, [*argv, "--cancel-grace", "0.5"], env)
        screen = threading.Thread(target=_drain, args=(fd,), daemon=True)
        screen.start()
        try:
            for name in ("r1", "r2"):  # both commands have started
                assert ready(tmp_path / name) == "go\n"
        finally:
            os.close(fd)  # the terminal goes away: SIGHUP
        assert not outlives(pid, within=10.0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 1
        assert survivors(marker) == []
        saved = (tmp_path / "wpool-unfinished.jsonl").read_text().splitlines()
        assert [json.loads(line)["id"] for line in saved] == ["1", "2", "3"]


def _drain(fd: int) -> None:
    # The dashboard must be able to draw: read its screen until the terminal closes.
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        return
