"""Dialogs about jobs: the failed jobs (dead letters) and one job's details."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Label, Static

from pool import DeadLetter, ErrorInfo, Job
from pool.commands import CommandResult, exit_description
from pool.events import JobOutputCaptured

from ..batch import result_json
from ..logfilter import FIELDS, LogFilter
from ..widgets.field import TypedInput, focus_now
from ..widgets.format import duration, plain
from .dialogs import Dialog

__all__ = (
    "ConfirmResubmitScreen",
    "DeadLettersScreen",
    "JobDetail",
    "JobDetailScreen",
    "Result",
)


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
    label: str = ""
    """What the job is, for people (a shell command's text)."""
    result: Result | None = None
    """What its handler returned, if it succeeded."""

    @classmethod
    def of_letter(
        cls, letter: DeadLetter, output: JobOutputCaptured | None, label: str = ""
    ) -> JobDetail:
        """The detail of a failed job the pool kept."""
        return cls(
            job=letter.job,
            state=letter.state.value,
            attempts=letter.attempts,
            error=letter.error,
            output=output,
            label=label,
        )


def _payload(job: Job, limit: int = 2000) -> str:
    text = job.payload.decode("utf-8", errors="backslashreplace")
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text)} characters)"
    return plain(text, lines=True)


def render_detail(detail: JobDetail) -> Text:
    """The body of the detail dialog; everything a job or handler wrote is plain text."""
    job = detail.job
    text = Text()
    text.append(f"{plain(job.id, limit=1000)}\n", style="bold")
    payload = _payload(job)
    if detail.label and not payload.startswith(detail.label.rstrip(" …")):
        text.append(f"label      {plain(detail.label)}\n", style="cyan")
    text.append(f"state      {detail.state}\n")
    text.append(f"attempts   {detail.attempts}\n")
    if detail.worker_id:
        text.append(f"worker     {detail.worker_id}")
        if detail.running_for is not None:
            text.append(f", running for {duration(detail.running_for)}")
        text.append("\n")
    text.append(f"timeout    {'-' if job.timeout is None else duration(job.timeout)}\n")
    for key, value in sorted(job.meta.items()):
        text.append(f"meta       {plain(key, limit=200)} = {plain(value, limit=1000)}\n")
    text.append("payload    ", style="")
    text.append(payload + "\n", style="cyan")
    if detail.result is not None and not isinstance(detail.result.value, CommandResult):
        # A command's result is its exit code and output, shown just below.
        text.append("result     ")
        text.append(plain(detail.result.text(), lines=True) + "\n", style="green")
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
            text.append(f"output in  {plain(output.path)}\n")
        text.append("\noutput (last lines)\n", style="bold")
        tail = plain(output.output, lines=True) if output.output else "(none)"
        text.append(tail + "\n", style="" if output.output else "dim")
    if detail.error is not None:
        text.append("\nerror      ", style="bold red")
        text.append(plain(detail.error.short(), limit=2000) + "\n", style="red")
        if "Traceback (most recent call last)" in detail.error.traceback:
            # Paths under the current directory read better, and shorter, relative.
            here = os.getcwd() + os.sep
            trace = detail.error.traceback.replace(here, "").rstrip()
            text.append("\n" + plain(trace, lines=True) + "\n", style="dim")
    return text


class JobDetailScreen(Dialog[bool]):
    """Payload, attempts, error and traceback of one job.

    With ``can_cancel`` (a queued or running job, and a source that cancels),
    ``c`` closes it with True: the app cancels the job.
    """

    BINDINGS = [
        Binding("escape,q,enter", "close", "Close", id="detail-close"),
        Binding("c", "cancel_job", "Cancel the job", id="detail-cancel"),
    ]

    def __init__(self, detail: JobDetail, *, can_cancel: bool = False) -> None:
        super().__init__()
        self._detail = detail
        self._can_cancel = can_cancel

    def compose(self) -> ComposeResult:
        hint = "c cancels the job · escape closes" if self._can_cancel else "escape closes"
        with Vertical(classes="dialog detail"):
            yield Label("Job details", classes="dialog-title")
            with VerticalScroll():
                yield Static(render_detail(self._detail))
            yield Label(hint, classes="dialog-hint")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self._can_cancel if action == "cancel_job" else True

    def action_close(self) -> None:
        self.dismiss(False)

    def action_cancel_job(self) -> None:
        self.dismiss(True)


def letter_fields(letter: DeadLetter, label: str) -> dict[str, str]:
    """A failed job's fields, as the filter names them."""
    return {
        "id": letter.job.id,
        "command": label,
        "worker": "",
        "outcome": letter.state.value,
        "error": letter.error.short() if letter.error is not None else "",
    }


class ConfirmResubmitScreen(Dialog[bool]):
    """Resubmit every failed job the list shows? Enter confirms."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog-cancel")]

    def __init__(self, count: int, filtered: bool) -> None:
        super().__init__()
        self._count = count
        self._filtered = filtered

    def compose(self) -> ComposeResult:
        what = "shown (the filter's)" if self._filtered else "in the list"
        with Vertical(classes="dialog"):
            yield Label(f"Resubmit {self._count} failed jobs?", classes="dialog-title")
            yield Static(
                f"Every failed job {what} runs again, as a new attempt; the ones\n"
                "that fail again come back to this list."
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"Resubmit {self._count}", variant="warning", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#ok", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "ok")

    def action_cancel(self) -> None:
        self.dismiss(False)


class DeadLettersScreen(Dialog[None]):
    """The failed jobs the pool kept: enter shows one, r resubmits it, / filters,
    R resubmits every one shown (after a confirmation)."""

    BINDINGS = [
        Binding("escape,q,f", "close", "Close", id="dead-close"),
        Binding("r", "resubmit", "Resubmit", id="dead-resubmit"),
        Binding("R", "resubmit_shown", "Resubmit all shown", id="dead-resubmit-shown"),
        Binding("slash", "filter", "Filter", id="dead-filter", key_display="/"),
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
        describe: Callable[[Job], str] | None = None,
    ) -> None:
        super().__init__()
        self._letters = list(letters)
        self._read_only = read_only
        self._outputs: Mapping[str, JobOutputCaptured] = outputs or {}
        describe_job = describe or (lambda job: "")
        self._labels = {letter.job.id: describe_job(letter.job) for letter in self._letters}
        self._filter = LogFilter.parse("")
        self._shown: list[DeadLetter] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dead-letters"):
            yield Label("", id="title", classes="dialog-title")
            yield TypedInput(
                placeholder=f"filter: words, or {', '.join(f'{f}:' for f in FIELDS)}"
                " (enter keeps it, escape clears it)",
                id="letters-filter",
            )
            table: DataTable[Text] = DataTable(cursor_type="row", id="letters")
            yield table
            hint = (
                "enter details   / filter   escape closes"
                if self._read_only
                else "enter details   r resubmit   R resubmit all shown   / filter   escape closes"
            )
            yield Label(hint, classes="dialog-hint")

    def on_mount(self) -> None:
        table = self.query_one("#letters", DataTable)
        table.add_columns("job", "outcome", "attempts", "error")
        self._fill()
        table.focus()

    def _fill(self) -> None:
        table: DataTable[Text] = self.query_one("#letters", DataTable)
        table.clear()
        self._shown = [
            letter
            for letter in self._letters
            if self._filter.matches(letter_fields(letter, self._labels.get(letter.job.id, "")))
        ]
        for letter in self._shown:
            error = letter.error.short() if letter.error is not None else "timed out"
            job = Text(plain(letter.job.id, limit=200))
            label = self._labels.get(letter.job.id, "")
            if label and label != letter.job.id:
                job.append(" " + plain(label, limit=200), style="cyan")
            table.add_row(
                job,
                Text(letter.state.value),
                Text(str(letter.attempts)),
                Text(plain(error, limit=500), style="red"),
            )
        title = f"Failed jobs ({len(self._letters)})"
        if self._filter:
            title = f"Failed jobs: {len(self._shown)} of {len(self._letters)} shown"
        self.query_one("#title", Label).update(Text(title))
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "resubmit" or action == "resubmit_shown":
            return False if self._read_only else bool(self._shown) or None
        return True

    def _selected(self) -> DeadLetter | None:
        table = self.query_one("#letters", DataTable)
        if not self._shown or table.cursor_row < 0:
            return None
        return self._shown[min(table.cursor_row, len(self._shown) - 1)]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # The table takes enter for itself: selecting a row shows it.
        event.stop()
        self.action_details()

    def action_details(self) -> None:
        letter = self._selected()
        if letter is not None:
            self.app.push_screen(
                JobDetailScreen(
                    JobDetail.of_letter(
                        letter,
                        self._outputs.get(letter.job.id),
                        self._labels.get(letter.job.id, ""),
                    )
                )
            )

    def action_filter(self) -> None:
        """Put the cursor in the filter line."""
        focus_now(self.query_one("#letters-filter", Input))

    @on(Input.Changed, "#letters-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        try:
            self._filter = LogFilter.parse(event.value)
        except ValueError as exc:
            self.query_one("#title", Label).update(Text(plain(f"filter: {exc}"), style="red"))
            return
        self._fill()

    def field_escaped(self, field: Input) -> None:
        """Escape in the filter line: clear it, or close when it is empty."""
        self.action_close()

    def field_entered(self, field: Input) -> None:
        """Enter in the filter line: keep the filter and go to the list."""
        focus_now(self.query_one("#letters", DataTable))

    def action_resubmit(self) -> None:
        letter = self._selected()
        if letter is None or self._read_only:
            return
        self._resubmit([letter])

    def action_resubmit_shown(self) -> None:
        """Resubmit every failed job the list shows, after a confirmation."""
        if self._read_only or not self._shown:
            return
        shown = list(self._shown)

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._resubmit(shown)

        self.app.push_screen(ConfirmResubmitScreen(len(shown), bool(self._filter)), confirmed)

    def _resubmit(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            self.post_message(self.Resubmit(letter.job.id))
            self._letters.remove(letter)
        self._fill()

    def action_close(self) -> None:
        filter_field = self.query_one("#letters-filter", Input)
        if filter_field.has_focus and filter_field.value:
            filter_field.value = ""  # escape in the filter clears it first
            focus_now(self.query_one("#letters", DataTable))
            return
        self.dismiss(None)
