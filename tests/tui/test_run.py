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
from tests.helpers import Script, next_event, outlives, release_all, settle
from tui import cli
from tui.batch import JOBLOG_HEADER, Batch
from tui.cli import UsageError, batch_summary, build_run_parser, import_handler
from tui.jobfile import JobFileError, job_line, parse_jobs, read_jobs, write_jobs


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
        assert all(len(c) == 8 for c in cells)
        bad = next(c for c in cells if c[1] == "bad")
        assert bad[6:] == ["-", "ValueError: job bad failed on purpose"]
        assert batch.outcomes()["succeeded"] == 5
        assert not batch.succeeded()
        assert batch.unfinished() == []

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
        left = batch.unfinished()
        assert [job.id for job in left] == [f"j{n}" for n in range(8)]
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
            "not submitted": 4,
        }
        assert len(log.getvalue().splitlines()) == 1 + 4

    async def test_nothing_left_writes_no_file(self, clock: ManualClock, tmp_path: Path) -> None:
        _, batch = await self.run_batch(clock, Script(), [Job(payload=b"ok")], io.StringIO())
        await batch.feed()
        assert batch.succeeded()
        assert batch.save_unfinished(str(tmp_path / "left.jsonl")) == 0
        assert not (tmp_path / "left.jsonl").exists()


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

    def test_summary_names_the_rerun(self) -> None:
        args = self.parse("--jobs", "f", "--handler", "my mod:f", "--unfinished", "left.jsonl")
        batch = Batch.__new__(Batch)
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
        batch.jobs = (Job(id="a"), Job(id="b"))
        batch._handles = []
        assert batch_summary(batch, report, 2, args) == (
            "wpool-tui: 2 jobs: 2 not submitted\n"
            "wpool-tui: pool stopped after a 1.2s shutdown (reached cancelling)\n"
            "wpool-tui: 2 unfinished jobs saved to left.jsonl; run them again with: "
            "wpool-tui run --jobs left.jsonl --handler 'my mod:f'"
        )


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

    def test_an_unwritable_unfinished_file_prints_the_jobs(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        batch = Batch.__new__(Batch)
        batch.jobs = (Job(id="a", payload=b"x"),)
        batch._handles = []
        assert cli._save_unfinished(batch, str(tmp_path / "gone" / "left.jsonl")) == 0
        assert capsys.readouterr().err == (
            f"wpool-tui: cannot save 1 unfinished jobs to {tmp_path}/gone/left.jsonl: "
            "No such file or directory; here they are:\n"
            '{"id": "a", "payload": "x"}\n'
        )

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
