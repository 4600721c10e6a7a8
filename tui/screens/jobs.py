"""Dialogs about jobs: the failed jobs (dead letters) and one job's details."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from pool import DeadLetter, ErrorInfo, Job
from pool.commands import CommandResult, exit_description
from pool.events import JobOutputCaptured

from ..batch import result_json
from ..widgets.format import duration

__all__ = ("DeadLettersScreen", "JobDetail", "JobDetailScreen", "Result")


@dataclass(frozen=True, slots=True)
class Result:
    """A succeeded job's return value (wrapped: None is a value too)."""

    value: object

    def text(self, limit: int = 2000) -> str:
        """The value as JSON (bytes as text, objects as their repr), cut at ``limit``."""
        text = json.dumps(result_json(self.value), ensure_ascii=False)
        return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobDetail:
    """What the detail dialog shows of a job."""

    job: Job
    state: str
    attempts: int
    worker_id: str | None = None
    running_for: float | None = None
    error: ErrorInfo | None = None
    output: JobOutputCaptured | None = None
    """What its process left, for commands and process jobs."""
    result: Result | None = None
    """What its handler returned, if it succeeded."""

    @classmethod
    def of_letter(cls, letter: DeadLetter, output: JobOutputCaptured | None) -> JobDetail:
        """The detail of a failed job the pool kept."""
        return cls(
            job=letter.job,
            state=letter.state.value,
            attempts=letter.attempts,
            error=letter.error,
            output=output,
        )


def _payload(job: Job, limit: int = 2000) -> str:
    try:
        text = job.payload.decode("utf-8")
    except UnicodeDecodeError:
        text = repr(job.payload)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def render_detail(detail: JobDetail) -> Text:
    """The body of the detail dialog."""
    job = detail.job
    text = Text()
    text.append(f"{job.id}\n", style="bold")
    text.append(f"state      {detail.state}\n")
    text.append(f"attempts   {detail.attempts}\n")
    if detail.worker_id:
        text.append(f"worker     {detail.worker_id}")
        if detail.running_for is not None:
            text.append(f", running for {duration(detail.running_for)}")
        text.append("\n")
    text.append(f"timeout    {'-' if job.timeout is None else duration(job.timeout)}\n")
    for key, value in sorted(job.meta.items()):
        text.append(f"meta       {key} = {value}\n")
    text.append("payload    ", style="")
    text.append(_payload(job) + "\n", style="cyan")
    if detail.result is not None and not isinstance(detail.result.value, CommandResult):
        # A command's result is its exit code and output, shown just below.
        text.append("result     ")
        text.append(detail.result.text() + "\n", style="green")
    output = detail.output
    if output is not None:
        text.append("exit       ")
        if output.exit_code is None:
            text.append("-\n")
        else:
            style = "green" if output.exit_code == 0 else "bold red"
            text.append(f"{exit_description(output.exit_code)}", style=style)
            text.append(f" (attempt {output.attempt})\n")
        if output.path:
            text.append(f"output in  {output.path}\n")
        text.append("\noutput (last lines)\n", style="bold")
        text.append((output.output or "(none)") + "\n", style="" if output.output else "dim")
    if detail.error is not None:
        text.append("\nerror      ", style="bold red")
        text.append(detail.error.short() + "\n", style="red")
        if "Traceback (most recent call last)" in detail.error.traceback:
            # Paths under the current directory read better, and shorter, relative.
            here = os.getcwd() + os.sep
            trace = detail.error.traceback.replace(here, "").rstrip()
            text.append("\n" + trace + "\n", style="dim")
    return text


class JobDetailScreen(ModalScreen[None]):
    """Payload, attempts, error and traceback of one job."""

    BINDINGS = [Binding("escape,q,enter", "close", "Close", id="detail-close")]

    def __init__(self, detail: JobDetail) -> None:
        super().__init__()
        self._detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog detail"):
            yield Label("Job details", classes="dialog-title")
            with VerticalScroll():
                yield Static(render_detail(self._detail))
            yield Label("escape closes", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)


class DeadLettersScreen(ModalScreen[None]):
    """The failed jobs the pool kept: enter shows one, r resubmits it."""

    BINDINGS = [
        Binding("escape,q,f", "close", "Close", id="dead-close"),
        Binding("r", "resubmit", "Resubmit", id="dead-resubmit"),
        Binding("enter", "details", "Details", id="dead-details"),
    ]

    class Resubmit(Message):
        """The operator asked to run a dead letter's job again."""

        def __init__(self, job_id: str) -> None:
            super().__init__()
            self.job_id = job_id

    def __init__(
        self,
        letters: tuple[DeadLetter, ...],
        *,
        read_only: bool = False,
        outputs: Mapping[str, JobOutputCaptured] | None = None,
    ) -> None:
        super().__init__()
        self._letters = list(letters)
        self._read_only = read_only
        self._outputs: Mapping[str, JobOutputCaptured] = outputs or {}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dead-letters"):
            yield Label(f"Failed jobs ({len(self._letters)})", classes="dialog-title")
            table: DataTable[str] = DataTable(cursor_type="row", id="letters")
            yield table
            hint = (
                "enter details   escape closes"
                if self._read_only
                else ("enter details   r resubmit   escape closes")
            )
            yield Label(hint, classes="dialog-hint")

    def on_mount(self) -> None:
        table = self.query_one("#letters", DataTable)
        table.add_columns("job", "outcome", "attempts", "error")
        for letter in self._letters:
            error = letter.error.short() if letter.error is not None else "timed out"
            table.add_row(
                letter.job.id, letter.state.value, str(letter.attempts), error, key=letter.job.id
            )
        table.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "resubmit":
            return False if self._read_only else bool(self._letters) or None
        return True

    def _selected(self) -> DeadLetter | None:
        table = self.query_one("#letters", DataTable)
        if not self._letters or table.cursor_row < 0:
            return None
        return self._letters[min(table.cursor_row, len(self._letters) - 1)]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # The table takes enter for itself: selecting a row shows it.
        event.stop()
        self.action_details()

    def action_details(self) -> None:
        letter = self._selected()
        if letter is not None:
            self.app.push_screen(
                JobDetailScreen(JobDetail.of_letter(letter, self._outputs.get(letter.job.id)))
            )

    def action_resubmit(self) -> None:
        letter = self._selected()
        if letter is None or self._read_only:
            return
        self.post_message(self.Resubmit(letter.job.id))
        table = self.query_one("#letters", DataTable)
        table.remove_row(letter.job.id)
        self._letters.remove(letter)
        self.refresh_bindings()

    def action_close(self) -> None:
        self.dismiss(None)
