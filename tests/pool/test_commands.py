"""Shell commands as jobs: exit codes, output, process groups, cancellation and kills.

These run real ``/bin/sh`` processes on the real clock; they wait on the
pool's events and handles, never on sleeps.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pool import Job, JobFailedError, JobState, Pool, children, events
from pool.commands import (
    CommandFailed,
    CommandResult,
    OutputTail,
    ShellCommands,
    exit_description,
    read_tail,
)
from tests.helpers import next_event, outlives


@pytest.fixture
async def shell(tmp_path: Path) -> AsyncIterator[Pool]:
    pool = Pool(
        ShellCommands(cwd=tmp_path),
        workers=2,
        job_timeout=None,
        cancel_grace=0.3,
        name="sh",
    )
    await pool.start()
    yield pool
    await pool.shutdown(grace=0, cancel_grace=0.3)
    assert children.live_groups() == frozenset()


def command(text: str, **fields: object) -> Job:
    return Job(payload=text.encode(), **fields)  # type: ignore[arg-type]


class TestOutcomes:
    async def test_a_command_that_exits_0_succeeds_with_its_output(self, shell: Pool) -> None:
        handle = await shell.submit(command("echo out; echo err >&2; printf 'no newline'"))
        result = await handle
        assert result == CommandResult(exit_code=0, output="out\nerr\nno newline", path=None)
        assert handle.output is not None
        assert (handle.output.exit_code, handle.output.attempt) == (0, 1)

    async def test_a_non_zero_exit_fails_with_its_code(self, shell: Pool) -> None:
        handle = await shell.submit(command("echo partial; exit 7"))
        with pytest.raises(JobFailedError) as caught:
            await handle
        cause = caught.value.__cause__
        assert isinstance(cause, CommandFailed)
        assert (cause.exit_code, cause.output, str(cause)) == (7, "partial", "exit code 7")
        assert handle.error is not None
        assert handle.error.short() == "CommandFailed: exit code 7"
        # The pool's own frames would only hide the news.
        assert handle.error.traceback == "pool.commands.CommandFailed: exit code 7\n"

    async def test_a_command_not_found_says_so(self, shell: Pool) -> None:
        handle = await shell.submit(command("surely-not-a-command"))
        with pytest.raises(JobFailedError):
            await handle
        assert handle.error is not None
        assert handle.error.message.startswith("command not found (exit code 127): ")
        assert handle.error.message.endswith("surely-not-a-command: not found")

    async def test_a_payload_that_is_not_utf8_fails_clearly(self, shell: Pool) -> None:
        handle = await shell.submit(Job(payload=b"echo \xff"))
        with pytest.raises(JobFailedError):
            await handle
        assert handle.error is not None
        assert handle.error.message.startswith("the command is not UTF-8: ")

    async def test_the_environment_names_the_job(self, shell: Pool) -> None:
        handle = await shell.submit(
            command('echo "$WPOOL_JOB_ID $WPOOL_WORKER $WPOOL_ATTEMPT"', id="j-1")
        )
        result = await handle
        assert isinstance(result, CommandResult)
        assert result.output in ("j-1 w1 1", "j-1 w2 1")

    async def test_output_is_published_before_the_outcome(self, shell: Pool) -> None:
        sub = shell.events()
        handle = await shell.submit(command("echo hi; exit 2"))
        output = await next_event(sub, events.JobOutputCaptured)
        failed = await next_event(sub, events.JobFailed)
        assert output.seq < failed.seq
        assert (output.job_id, output.exit_code, output.output) == (handle.id, 2, "hi")


class TestOutputFiles:
    async def test_output_dir_keeps_every_attempt_whole(self, tmp_path: Path) -> None:
        commands = ShellCommands(output_dir=tmp_path / "out", tail_lines=3)
        async with Pool(commands, workers=1) as pool:
            handle = await pool.submit(command("seq 1 10", id="a/b"))
            result = await handle
        assert isinstance(result, CommandResult)
        path = tmp_path / "out" / "a_b+c14cddc033.out"
        assert result.path == str(path)
        assert result.output == "8\n9\n10"
        assert path.read_text().split() == [str(n) for n in range(1, 11)]

    def test_retries_get_files_of_their_own(self, tmp_path: Path) -> None:
        commands = ShellCommands(output_dir=tmp_path)
        x = Job(id="x", payload=b"")
        assert commands.output_path(x, 1) == str(tmp_path / "x.out")
        assert commands.output_path(x, 3) == str(tmp_path / "x+3.out")
        assert ShellCommands().output_path(x, 1) is None

    def test_ids_that_clean_up_alike_get_files_of_their_own(self, tmp_path: Path) -> None:
        commands = ShellCommands(output_dir=tmp_path)
        ids = ["a b", "a_b", "a/b", "x.2", "x", "..", "a_b+2"]
        paths = {commands.output_path(Job(id=i, payload=b""), n) for i in ids for n in (1, 2)}
        assert len(paths) == 2 * len(ids)
        assert commands.output_path(Job(id="a b", payload=b""), 1) == str(
            tmp_path / "a_b+c8687a08aa.out"
        )

    def test_an_id_too_long_for_a_file_name_gets_a_short_one(self, tmp_path: Path) -> None:
        commands = ShellCommands(output_dir=tmp_path)
        long, longer = "x" * 300, "x" * 301
        path = commands.output_path(Job(id=long, payload=b""), 12)
        assert path is not None
        assert len(os.path.basename(path).encode()) <= 255
        assert path != commands.output_path(Job(id=longer, payload=b""), 12)

    async def test_an_id_with_a_nul_or_a_lone_surrogate_runs_all_the_same(
        self, tmp_path: Path
    ) -> None:
        async with Pool(ShellCommands(output_dir=tmp_path), workers=1) as pool:
            for job_id, seen in (("a\0b", "a\\0b"), ("s\ud800", "s\\ud800")):
                handle = await pool.submit(command('printf %s "$WPOOL_JOB_ID"', id=job_id))
                result = await handle
                assert isinstance(result, CommandResult)
                assert result.output == seen
                assert result.path is not None
                assert os.path.exists(result.path)

    def test_tail_lines_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match=r"^tail_lines must be an int >= 1, got 0$"):
            ShellCommands(tail_lines=0)


class TestTail:
    def test_keeps_the_last_lines_across_chunks(self) -> None:
        tail = OutputTail(lines=2)
        tail.feed(b"one\ntw")
        tail.feed(b"o\nthree\nfo")
        assert tail.text() == "two\nthree\nfo"

    def test_long_lines_are_cut(self) -> None:
        tail = OutputTail(lines=5, max_line=10)
        tail.feed(b"x" * 25 + b"\n")
        assert tail.text() == "x" * 9 + "…"

    def test_a_line_without_end_is_kept_in_bounds(self) -> None:
        tail = OutputTail(lines=5, max_line=10)
        tail.feed(b"y" * 100)
        assert tail.text() == "y" * 9 + "…"

    def test_bad_utf8_is_replaced(self) -> None:
        tail = OutputTail()
        tail.feed(b"caf\xe9\n")
        assert tail.text() == "caf\ufffd"

    def test_read_tail_drops_the_cut_first_line(self) -> None:
        data = b"".join(b"%06d\n" % n for n in range(20_000))  # 140,000 bytes
        assert read_tail(io.BytesIO(data), 2) == "019998\n019999"
        assert len(read_tail(io.BytesIO(data), 100_000).splitlines()) < 20_000


class TestExitDescription:
    @pytest.mark.parametrize(
        ("code", "text"),
        [
            (0, "exit code 0"),
            (3, "exit code 3"),
            (-9, "killed by SIGKILL"),
            (-15, "killed by SIGTERM"),
            (-99, "killed by signal 99"),
        ],
    )
    def test_codes(self, code: int, text: str) -> None:
        assert exit_description(code) == text


async def ready(fifo: Path) -> str:
    """Wait (in a thread) until the command writes its line to ``fifo``."""
    return (await asyncio.to_thread(fifo.read_text)).strip()


class TestStopping:
    async def test_a_timeout_terminates_the_whole_group(self, shell: Pool, tmp_path: Path) -> None:
        sub = shell.events()
        handle = await shell.submit(command("sleep 60 & echo $! > bg.pid; sleep 60", timeout=0.5))
        timed_out = await next_event(sub, events.JobTimedOut)
        assert timed_out.job_id == handle.id
        assert handle.state is JobState.TIMED_OUT
        assert handle.output is not None
        assert handle.output.exit_code == -signal.SIGTERM
        pid = int((tmp_path / "bg.pid").read_text())
        assert not outlives(pid)

    async def test_a_command_ignoring_sigterm_is_killed_when_abandoned(
        self, shell: Pool, tmp_path: Path
    ) -> None:
        sub = shell.events()
        fifo = tmp_path / "ready"
        os.mkfifo(fifo)
        handle = await shell.submit(command("trap '' TERM; echo $$ > ready; sleep 60 & wait"))
        pid = int(await ready(fifo))
        handle.cancel()
        abandoned = await next_event(sub, events.JobAbandoned)
        assert abandoned.duration >= 0.3
        output = await next_event(sub, events.JobOutputCaptured)
        assert output.exit_code == -signal.SIGKILL
        assert not outlives(pid)

    async def test_what_a_command_leaves_behind_is_killed_when_it_exits(
        self, shell: Pool, tmp_path: Path
    ) -> None:
        handle = await shell.submit(command("sleep 60 & echo $! > bg.pid"))
        await handle
        assert not outlives(int((tmp_path / "bg.pid").read_text()))

    @pytest.mark.parametrize(
        "how", ["setsid sleep 60", "(setsid sleep 60 &)", "setsid -f sleep 60"]
    )
    async def test_what_leaves_its_group_or_session_is_killed_when_the_job_ends(
        self, shell: Pool, tmp_path: Path, how: str
    ) -> None:
        job_id = f"escape-{uuid.uuid4().hex}"  # what tells this test's sleeper from others'
        await (await shell.submit(command(f"{how} & sleep 0.1", id=job_id)))
        sleepers = [p for p in _pids_of("sleep") if _environ_has(p, f"WPOOL_JOB_ID={job_id}")]
        assert sleepers == []

    async def test_kill_all_reaches_a_running_command(self, shell: Pool) -> None:
        sub = shell.events()
        handle = await shell.submit(command("exec sleep 60"))
        await next_event(sub, events.JobStarted)
        assert len(children.live_groups()) == 1
        assert children.kill_all() == 1
        await next_event(sub, events.JobFailed)
        assert handle.output is not None
        assert handle.output.exit_code == -signal.SIGKILL
        assert children.live_groups() == frozenset()


class TestLabels:
    """A command job is named by its command line where people read it."""

    @pytest.mark.parametrize(
        ("payload", "label"),
        [
            (b"echo hi", "echo hi"),
            (b"  make -j4 all  \n", "make -j4 all"),
            (b"for i in 1 2; do\n  echo $i\ndone", "for i in 1 2; do …"),
            (b"x" * 300, "x" * 199 + "…"),
            (b"printf '\xff'", "printf '\\xff'"),
        ],
    )
    def test_describe_gives_the_first_line_shortened(self, payload: bytes, label: str) -> None:
        assert ShellCommands().describe(Job(payload=payload)) == label

    async def test_the_label_is_in_the_submitted_event_and_from_the_pool(self, shell: Pool) -> None:
        sub = shell.events()
        job = command("echo labelled", id="7")
        handle = await shell.submit(job)
        submitted = await next_event(sub, events.JobSubmitted)
        assert (submitted.job_id, submitted.label) == ("7", "echo labelled")
        assert shell.describe(job) == "echo labelled"
        await handle

    async def test_a_pool_given_describe_uses_it_and_others_have_no_label(self) -> None:
        async def handler(job: Job, ctx: object) -> None:
            return None

        async with Pool(handler, describe=lambda job: f"<{job.id}>") as pool:
            sub = pool.events()
            await pool.submit(Job(id="a"))
            assert (await next_event(sub, events.JobSubmitted)).label == "<a>"
        async with Pool(handler) as pool:
            sub = pool.events()
            await pool.submit(Job(id="b"))
            assert (await next_event(sub, events.JobSubmitted)).label == ""
            assert pool.describe(Job(id="b")) == ""

    def test_a_describe_that_is_not_callable_is_refused(self) -> None:
        with pytest.raises(TypeError, match=r"^describe must be callable or None, got 'x'$"):
            Pool(ShellCommands(), describe="x")  # type: ignore[arg-type]


def _pids_of(name: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/comm") as file:
                if file.read().strip() == name:
                    pids.append(int(entry))
        except (OSError, ValueError):
            continue
    return pids


def _environ_has(pid: int, entry: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return entry.encode() in file.read().split(b"\0")
    except OSError:
        return False
