"""``wpool-tui run``'s parts: job files, the batch's account and joblog, the flags."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from pool import Job, ManualClock, Pool, PoolPhase, ShutdownReport, children, events
from pool.process import ProcessRunner
from tests.helpers import Script, next_event, outlives, release_all, settle, tmpfs
from tui import cli
from tui.batch import JOBLOG_HEADER, Batch
from tui.cli import UsageError, batch_summary, build_run_parser, import_handler
from tui.jobfile import (
    JobFileError,
    JobReader,
    job_line,
    parse_jobs,
    read_jobs,
    save_jobs,
    write_jobs,
)


@pytest_asyncio.fixture(autouse=True)
async def _release_held_jobs() -> AsyncIterator[None]:
    yield
    release_all()
    await settle()


def lines(*texts: str) -> list[bytes]:
    return [text.encode() for text in texts]


class TestJobFile:
    def test_json_lines(self) -> None:
        jobs = parse_jobs(
            lines(
                '{"id": "a", "payload": "héllo", "timeout": 2}',
                "",
                '{"payload": {"n": [1, 2]}, "meta": {"k": "v"}}',
                '{"id": 7, "payload": 3}',
            ),
            "f",
            shell=False,
        )
        assert [(j.id, j.payload, j.timeout) for j in jobs[::2]] == [
            ("a", "héllo".encode(), 2.0),
            ("7", b"3", None),
        ]
        assert (jobs[1].payload, dict(jobs[1].meta)) == (b'{"n":[1,2]}', {"k": "v"})
        assert jobs[1].id == "3"  # named by its line

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            ("nope", "not valid JSON: Expecting value (column 1)"),
            ('"text"', "expected a JSON object, got a string"),
            ("null", "expected a JSON object, got null"),
            ("{}", "payload is required"),
            (
                '{"payload": "x", "id": ""}',
                "id must be a non-empty string or a whole number, got ''",
            ),
            (
                '{"payload": "x", "id": true}',
                "id must be a non-empty string or a whole number, got True",
            ),
            ('{"payload": "x", "timeout": "5"}', "timeout must be a number of seconds, got '5'"),
            ('{"payload": "x", "timeout": 0}', "timeout must be > 0, got 0"),
            (
                '{"payload": "x", "meta": {"a": 1}}',
                "meta must be an object of strings, got {'a': 1}",
            ),
        ],
    )
    def test_a_bad_line_is_named(self, line: str, message: str) -> None:
        with pytest.raises(JobFileError) as caught:
            parse_jobs(lines('{"payload": "fine"}', "", line), "jobs.jsonl", shell=False)
        assert str(caught.value) == f"jobs.jsonl:3: {message}"

    def test_a_repeated_id_names_both_lines(self) -> None:
        with pytest.raises(JobFileError, match=r"^f:3: id 'a' is already used on line 1$"):
            parse_jobs(
                lines('{"id": "a", "payload": ""}', "", '{"id": "a", "payload": ""}'),
                "f",
                shell=False,
            )

    def test_bytes_that_are_not_utf8(self) -> None:
        with pytest.raises(JobFileError, match=r"^f:1: not UTF-8 text \(invalid start byte\)$"):
            parse_jobs([b"\xff"], "f", shell=True)

    def test_shell_lines_are_commands_with_their_line_numbers(self) -> None:
        jobs = parse_jobs(
            lines("echo a", "   ", "{ echo b; }", '{"id": "x", "payload": "echo c"}\r'),
            "f",
            shell=True,
        )
        assert [(j.id, j.payload) for j in jobs] == [
            ("1", b"echo a"),
            ("3", b"{ echo b; }"),
            ("x", b"echo c"),
        ]

    def test_a_written_file_reads_back_the_same(self, tmp_path: Path) -> None:
        jobs = [
            Job(id="1", payload=b"echo 'quoted' \"too\""),
            Job(id="b", payload="ünïcode".encode(), timeout=1.5, meta={"k": "v"}),
        ]
        path = tmp_path / "left.jsonl"
        assert write_jobs(str(path), jobs) == 2
        for shell in (True, False):
            again = read_jobs(str(path), shell=shell)
            assert [(j.id, j.payload, j.timeout, dict(j.meta)) for j in again] == [
                (j.id, j.payload, j.timeout, dict(j.meta)) for j in jobs
            ]
        assert list(tmp_path.iterdir()) == [path]  # no temporary file left

    def test_a_binary_payload_cannot_be_written(self) -> None:
        with pytest.raises(ValueError, match=r"^job 'x': its payload is not UTF-8 text$"):
            job_line(Job(id="x", payload=b"\xff"))

    def test_standard_input(self) -> None:
        jobs = read_jobs("-", shell=True, stdin=io.BytesIO(b"true\nfalse\n"))
        assert [j.payload for j in jobs] == [b"true", b"false"]

    def test_a_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(JobFileError, match=r"^cannot read .*nope: No such file or directory$"):
            read_jobs(str(tmp_path / "nope"), shell=False)

    def test_a_byte_order_mark_at_the_start_is_ignored(self) -> None:
        jobs = parse_jobs([b"\xef\xbb\xbfecho a", b"\xef\xbb\xbfecho b"], "f", shell=True)
        # Only at the start of the file: further on it is the line's own.
        assert [j.payload for j in jobs] == [b"echo a", "\ufeffecho b".encode()]
        (job,) = parse_jobs([b'\xef\xbb\xbf{"payload": "x"}'], "f", shell=False)
        assert job.payload == b"x"

    def test_a_reused_id_is_refused_between_named_and_numbered_lines(self) -> None:
        with pytest.raises(JobFileError, match=r"^f:3: id '1' is already used on line 1$"):
            parse_jobs(lines("echo a", "", '{"id": 1, "payload": "b"}'), "f", shell=True)
        with pytest.raises(JobFileError, match=r"^f:2: id '2' is already used on line 1$"):
            parse_jobs(lines('{"id": "2", "payload": "b"}', "echo a"), "f", shell=True)

    def test_a_file_is_read_as_its_jobs_are_taken(self, tmp_path: Path) -> None:
        path = tmp_path / "big.txt"
        path.write_bytes(b"true\n" * 100_000)
        reader = JobReader(str(path), shell=True)
        try:
            reader.add(reader.read_block())
            assert reader.take() is not None
            assert not reader.eof  # one block read of half a megabyte
            assert sum(1 for _ in reader) == 99_999
        finally:
            reader.close()


class TestBatch:
    async def run_batch(
        self, clock: ManualClock, script: Script, jobs: list[Job], log: io.StringIO
    ) -> tuple[Pool, Batch]:
        pool = Pool(script, workers=2, queue_size=2, job_timeout=5.0, clock=clock)
        await pool.start()
        batch = Batch(pool, jobs, joblog=log, grace=1.0, cancel_grace=1.0)
        return pool, batch

    async def test_every_job_gets_a_joblog_line_and_the_pool_stops_at_the_end(
        self, clock: ManualClock
    ) -> None:
        script = Script()
        log = io.StringIO()
        jobs = [Job(id=f"j{n}", payload=b"ok") for n in range(5)] + [Job(id="bad", payload=b"fail")]
        pool, batch = await self.run_batch(clock, script, jobs, log)
        await batch.feed()
        assert pool.phase is PoolPhase.STOPPED
        header, *rows = log.getvalue().splitlines()
        assert header == JOBLOG_HEADER
        cells = [row.split("\t") for row in rows]
        assert sorted((c[0], c[1], c[5]) for c in cells) == sorted(
            [(str(n + 1), f"j{n}", "succeeded") for n in range(5)] + [("6", "bad", "failed")]
        )
        assert all(len(c) == 10 for c in cells)
        bad = next(c for c in cells if c[1] == "bad")
        assert bad[6:] == ["-", "-", "ValueError: job bad failed on purpose", "fail"]
        assert batch.outcomes()["succeeded"] == 5
        assert not batch.succeeded()
        assert list(batch.unfinished()) == []

    async def test_a_shutdown_leaves_the_unsubmitted_and_the_stopped_unfinished(
        self, clock: ManualClock, tmp_path: Path
    ) -> None:
        script = Script()
        log = io.StringIO()
        jobs = [Job(id=f"j{n}", payload=b"hold") for n in range(8)]
        pool, batch = await self.run_batch(clock, script, jobs, log)
        feeding = asyncio.ensure_future(batch.feed())
        await settle()
        assert batch.submitted == 4  # two running, two queued: the feed waits for room
        stopping = asyncio.ensure_future(pool.shutdown(grace=0.0, cancel_grace=1.0))
        await settle()
        await feeding  # woken by PoolClosed: it ends quietly
        await clock.advance(1.0)
        report: ShutdownReport = await stopping
        assert report.phase_reached is PoolPhase.CANCELLING
        path = tmp_path / "left.jsonl"
        assert batch.save_unfinished(str(path)) == 8
        assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [
            f"j{n}" for n in range(8)
        ]
        assert batch.outcomes() == {
            "succeeded": 0,
            "failed": 0,
            "timed_out": 0,
            "cancelled": 4,
            "abandoned": 0,
            "not ended": 0,
            "skipped": 0,
            "not submitted": 4,
        }
        assert len(log.getvalue().splitlines()) == 1 + 4

    async def test_nothing_left_writes_no_file(self, clock: ManualClock, tmp_path: Path) -> None:
        _, batch = await self.run_batch(clock, Script(), [Job(payload=b"ok")], io.StringIO())
        await batch.feed()
        assert batch.succeeded()
        assert batch.save_unfinished(str(tmp_path / "left.jsonl")) == 0
        assert not (tmp_path / "left.jsonl").exists()


class TestJoblogLines:
    async def test_control_and_separator_characters_are_escaped(self, clock: ManualClock) -> None:
        pool = Pool(Script(), workers=1, clock=clock)
        await pool.start()
        log = io.StringIO()
        odd = "a\tb\nc\rd\x00e\u2028f\u2029g\x85h\\i"
        batch = Batch(pool, [Job(id=odd, payload=odd.encode())], joblog=log)
        await batch.feed()
        (row,) = log.getvalue().splitlines()[1:]
        cells = row.split("\t")
        escaped = "a\\tb\\nc\\rd\\x00e\\u2028f\\u2029g\\x85h\\\\i"
        assert (len(cells), cells[1], cells[9]) == (10, escaped, escaped)


class TestRunFlags:
    def parse(self, *argv: str) -> argparse.Namespace:
        return build_run_parser().parse_args(argv)

    def test_defaults(self) -> None:
        args = self.parse("--jobs", "f", "--shell")
        assert (args.job_timeout, args.runner, args.retries, args.unfinished, args.joblog) == (
            None,
            None,
            0,
            "wpool-unfinished.jsonl",
            None,
        )

    def test_errors_are_one_line_with_status_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as caught:
            self.parse("--jobs", "f", "--shell", "--handler", "m:f")
        assert caught.value.code == 2
        assert capsys.readouterr().err == (
            "wpool-tui run: error: argument --handler: not allowed with argument --shell "
            "(see --help)\n"
        )

    async def test_summary_names_the_rerun(self, clock: ManualClock) -> None:
        args = self.parse("--jobs", "f", "--handler", "my mod:f", "--unfinished", "left.jsonl")
        batch = Batch(Pool(Script(), clock=clock), [Job(id="a"), Job(id="b")])
        assert [job.id for job in batch.unfinished()] == ["a", "b"]
        report = ShutdownReport(
            finished=(),
            cancelled=("a",),
            not_started=(),
            abandoned=(),
            unfinished=(Job(id="a"),),
            duration=1.25,
            phase_reached=PoolPhase.CANCELLING,
            reason=None,
            failed=False,
        )
        assert batch_summary(batch, report, 2, args) == (
            "wpool-tui: 2 jobs: 2 not submitted\n"
            "wpool-tui: pool stopped after a 1.2s shutdown (reached cancelling)\n"
            "wpool-tui: 2 unfinished jobs saved to left.jsonl; run them again with: "
            "wpool-tui run --jobs left.jsonl --handler 'my mod:f' --unfinished left.jsonl"
        )

    def test_the_rerun_carries_every_option_of_the_run(self) -> None:
        args = self.parse(
            *("--jobs", "cmds.txt", "--shell", "--workers", "8", "--queue-size", "5"),
            *("--job-timeout", "30", "--retries", "2", "--joblog", "run.tsv"),
            *("--output-dir", "out", "--grace", "2.5", "--cancel-grace", "1"),
            *("--results", "r.jsonl", "--headless", "--read-only", "--theme", "nord"),
        )
        assert cli.rerun_command(args, "wpool-unfinished.jsonl") == [
            *("wpool-tui", "run", "--jobs", "wpool-unfinished.jsonl", "--shell"),
            *("--retries", "2", "--results", "r.jsonl", "--output-dir", "out"),
            *("--workers", "8", "--queue-size", "5", "--job-timeout", "30"),
            *("--grace", "2.5", "--cancel-grace", "1", "--read-only", "--headless"),
            *("--theme", "nord", "--resume", "run.tsv"),
        ]


class TestCheckedAtStart:
    def run(self, tmp_path: Path, *argv: str) -> int:
        (tmp_path / "jobs.jsonl").write_text('{"payload": "true"}\n')
        return cli.run_main(["--headless", "--jobs", str(tmp_path / "jobs.jsonl"), *argv])

    def test_headless_with_no_worker_is_refused(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert self.run(tmp_path, "--shell", "--workers", "0") == 2
        assert capsys.readouterr().err == (
            "wpool-tui run: error: --workers 0 runs nothing without the dashboard to add "
            "workers: give --workers 1 or more\n"
        )

    def test_an_unfinished_file_that_is_a_folder_is_refused(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert self.run(tmp_path, "--shell", "--unfinished", str(tmp_path)) == 2
        assert capsys.readouterr().err == (
            f"wpool-tui run: error: cannot write --unfinished {tmp_path}: it is a directory\n"
        )

    def test_an_output_dir_that_cannot_be_written_is_refused(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with tmpfs(tmp_path / "ro", "4k", read_only=True) as folder:
            assert self.run(tmp_path, "--shell", "--output-dir", str(folder)) == 2
        assert capsys.readouterr().err == (
            f"wpool-tui run: error: cannot write --output-dir {folder}: Read-only file system\n"
        )

    def test_a_handler_module_that_exits_on_import_is_told(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "wpool_exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        assert self.run(tmp_path, "--handler", "wpool_exits_on_import:f") == 2
        assert capsys.readouterr().err == (
            "wpool-tui run: error: cannot import handler wpool_exits_on_import:f: "
            "the module called sys.exit(3) on import\n"
        )

    def test_a_process_handler_that_hangs_loading_fails_the_run_in_bounded_time(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # It hangs in the child only (the parent imported it fine).
        (tmp_path / "wpool_hangs_in_child.py").write_text(
            "import sys, time\nif sys.argv[0] == '-c':\n    time.sleep(600)\n"
            "def handler(job, ctx):\n    return b''\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(ProcessRunner, "load_timeout", 0.5)
        args = ["--handler", "wpool_hangs_in_child:handler", "--runner", "process"]
        assert self.run(tmp_path, *args, "--workers", "1") == 1
        err = capsys.readouterr().err
        assert (
            "wpool-tui: pool failed after a 0.0s shutdown (reached draining): worker w1 could "
            "not start: process run-w1 did not load its handler within 0.5s\n"
        ) in err


class TestImportHandler:
    def test_a_function_of_a_module_in_the_current_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "wpool_test_handlers.py").write_text("def go(job, ctx):\n    return 1\n")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", ".")])
        handler = import_handler("wpool_test_handlers:go")
        assert handler.__name__ == "go"  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            ("nocolon", "--handler must be MODULE:FUNCTION, got 'nocolon'"),
            (":f", "--handler must be MODULE:FUNCTION, got ':f'"),
            ("os:", "--handler must be MODULE:FUNCTION, got 'os:'"),
            ("os:sep", "handler os:sep is not callable: str"),
            ("os:path.nothing", "cannot import handler os:path.nothing: no 'nothing' in os"),
        ],
    )
    def test_bad_names(self, spec: str, message: str) -> None:
        with pytest.raises(UsageError) as caught:
            import_handler(spec)
        assert str(caught.value) == message

    def test_an_import_that_raises(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "wpool_broken_handlers.py").write_text("raise RuntimeError('bad module')\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        with pytest.raises(UsageError) as caught:
            import_handler("wpool_broken_handlers:f")
        assert str(caught.value) == (
            "cannot import handler wpool_broken_handlers:f: RuntimeError: bad module"
        )


class TestNothingLost:
    def test_a_crash_of_the_dashboard_saves_the_jobs_and_kills_the_commands(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "cmds.txt").write_text("sleep 60\necho b\n")
        groups: list[int] = []

        def crash(pool: Pool, batch: Batch, *args: object) -> None:
            # The real pool and batch run a real command; then the UI dies.
            async def dashboard() -> None:
                sub = pool.events()
                await pool.start()
                feeding = asyncio.ensure_future(batch.feed())
                await next_event(sub, events.JobStarted, lambda e: e.job_id == "1")
                groups.extend(children.live_groups())
                assert not feeding.done()
                raise RuntimeError("the dashboard crashed")

            asyncio.run(dashboard())

        monkeypatch.setattr(cli, "_dashboard", crash)
        monkeypatch.chdir(tmp_path)
        with pytest.raises(RuntimeError, match=r"^the dashboard crashed$"):
            cli.run_main(["--shell", "--jobs", "cmds.txt", "--workers", "1"])
        (group,) = groups
        assert not outlives(group)
        assert children.live_groups() == frozenset()
        saved = (tmp_path / "wpool-unfinished.jsonl").read_text().splitlines()
        assert [json.loads(line)["payload"] for line in saved] == ["sleep 60", "echo b"]

    def test_an_unwritable_unfinished_file_prints_the_jobs(self, tmp_path: Path) -> None:
        out = io.StringIO()
        saved = save_jobs(
            str(tmp_path / "gone" / "left.jsonl"), [Job(id="a", payload=b"x")], fallback=out
        )
        assert saved == (1, "", "No such file or directory")
        assert out.getvalue() == '{"id": "a", "payload": "x"}\n'
        assert list(tmp_path.iterdir()) == []

    def test_an_unfinished_file_that_cannot_be_written_is_refused_first(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "cmds.txt").write_text("echo a\n")
        left = tmp_path / "missing" / "left.jsonl"
        argv = ["--shell", "--headless", "--jobs", str(tmp_path / "cmds.txt")]
        assert cli.run_main([*argv, "--unfinished", str(left)]) == 2
        assert capsys.readouterr().err == (
            f"wpool-tui run: error: cannot write --unfinished {left}: no folder {left.parent}\n"
        )


class TestRerun:
    def test_a_rerun_that_leaves_nothing_removes_its_unfinished_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.chdir(tmp_path)
        write_jobs("wpool-unfinished.jsonl", [Job(id="7", payload=b"true")])
        argv = ["--shell", "--headless", "--jobs", "wpool-unfinished.jsonl"]
        assert cli.run_main(argv) == 0
        assert not (tmp_path / "wpool-unfinished.jsonl").exists()
        err = capsys.readouterr().err
        assert "wpool-tui: nothing is left of wpool-unfinished.jsonl: removed it\n" in err

    def test_an_older_unfinished_file_is_left_alone_and_named(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.chdir(tmp_path)
        write_jobs("wpool-unfinished.jsonl", [Job(id="old", payload=b"false")])
        (tmp_path / "cmds.txt").write_text("true\n")
        assert cli.run_main(["--shell", "--headless", "--jobs", "cmds.txt"]) == 0
        assert "old" in (tmp_path / "wpool-unfinished.jsonl").read_text()
        assert (
            "wpool-tui: wpool-unfinished.jsonl is from an earlier run: "
            "none of this run's jobs is in it\n"
        ) in capsys.readouterr().err


class FailingLog(io.StringIO):
    """A joblog whose disk fills after ``room`` writes."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, text: str) -> int:
        if self.room <= 0:
            raise OSError(28, "No space left on device")
        self.room -= 1
        return super().write(text)


class TestJoblogTrouble:
    async def test_a_joblog_that_fails_does_not_stall_the_run(self, clock: ManualClock) -> None:
        pool = Pool(Script(), workers=2, clock=clock)
        await pool.start()
        log = FailingLog(room=2)  # the header and one line
        batch = Batch(pool, [Job(id=f"j{n}", payload=b"ok") for n in range(4)], joblog=log)
        await batch.feed()
        assert pool.phase is PoolPhase.STOPPED
        assert batch.succeeded()
        assert batch.joblog_error is not None
        assert batch.joblog_error.strerror == "No space left on device"
        assert len(log.getvalue().splitlines()) == 2

    def test_a_joblog_that_cannot_be_written_at_all_is_bad_usage(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (tmp_path / "cmds.txt").write_text("true\n")
        argv = ["--shell", "--headless", "--jobs", str(tmp_path / "cmds.txt")]
        assert cli.run_main([*argv, "--joblog", "/dev/full"]) == 2
        assert capsys.readouterr().err == (
            "wpool-tui run: error: cannot write the joblog /dev/full: No space left on device\n"
        )


class TestResubmit:
    async def test_a_resubmitted_job_is_the_batchs_again(self, clock: ManualClock) -> None:
        script = Script()
        pool = Pool(script, workers=2, clock=clock)
        await pool.start()
        log = io.StringIO()
        batch = Batch(
            pool, [Job(id="bad", payload=b"fail"), Job(id="wait", payload=b"hold")], joblog=log
        )
        feeding = asyncio.ensure_future(batch.feed())
        await settle()
        assert batch.outcomes()["failed"] == 1
        again = await batch.resubmit("bad")
        assert batch.handle("bad") is again
        await settle()
        script.release()
        await settle()
        await feeding  # both ended (the resubmitted one failed again): the pool stops
        assert pool.phase is PoolPhase.STOPPED
        assert batch.outcomes()["failed"] == 1
        rows = [row.split("\t") for row in log.getvalue().splitlines()[1:]]
        assert sorted((r[0], r[1], r[5]) for r in rows) == [
            ("1", "bad", "failed"),
            ("1", "bad", "failed"),
            ("2", "wait", "succeeded"),
        ]
