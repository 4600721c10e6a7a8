"""Running a job file again from its joblog, as GNU parallel's ``--resume-failed`` and
``--retry-failed`` do.

A joblog line names its job (``id``), how it ended (``outcome``) and what
it ran (``payload``: the command, or the job's payload). ``--resume``
skips the jobs whose last line says ``succeeded``; ``--retry-failed`` runs
only the jobs whose last line says anything else. Either way a job is
matched by its id and checked against what it ran: a line of the input
that changed since is an error, never silently skipped or run.
"""

from __future__ import annotations

from typing import Final

from pool import Job

from .jobfile import JobFileError, JobReader

__all__ = ("PAYLOAD_LIMIT", "Resume", "ResumeError", "escape", "payload_text")

PAYLOAD_LIMIT: Final = 1000
"""Characters of a payload the joblog keeps (a longer one is cut, and ends with …)."""

_ESCAPES: Final[dict[int, str]] = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))},
    0x2028: "\\u2028",
    0x2029: "\\u2029",
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\\"): "\\\\",
}


def escape(text: str) -> str:
    """``text`` on one TSV cell: backslashes, control characters (C0, DEL, C1 such as
    NEL) and the Unicode line and paragraph separators written as escapes."""
    return text.translate(_ESCAPES)


def payload_text(payload: bytes) -> str:
    """A payload as the joblog shows it: its text (its repr if not UTF-8), cut at
    :data:`PAYLOAD_LIMIT` characters."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = repr(payload)
    return text if len(text) <= PAYLOAD_LIMIT else text[: PAYLOAD_LIMIT - 1] + "…"


class ResumeError(Exception):
    """The joblog to resume from cannot be read: the message says why."""


class Resume:
    """What an earlier run's joblog says of each job: the last outcome and payload per id."""

    def __init__(self, path: str, *, only_failed: bool = False) -> None:
        """Read the joblog at ``path``.

        Args:
            path: The joblog.
            only_failed: Run only the jobs it records as not succeeded
                (``--retry-failed``); else run all but the succeeded ones.

        Raises:
            ResumeError: It cannot be read, or is not a joblog with the
                ``id``, ``outcome`` and ``payload`` columns.
        """
        self.path = path
        self.only_failed = only_failed
        self._last: dict[str, tuple[bool, str]] = {}  # escaped id -> succeeded?, escaped payload
        try:
            with open(path, encoding="utf-8", newline="\n") as file:
                header = file.readline().rstrip("\n").split("\t")
                missing = [name for name in ("id", "outcome", "payload") if name not in header]
                if missing:
                    raise ResumeError(
                        f"{path} is not a joblog with a payload column (no {missing[0]!r}): "
                        "only a joblog of this version can be resumed"
                    )
                at_id, at_outcome, at_payload = (
                    header.index(name) for name in ("id", "outcome", "payload")
                )
                width = len(header)
                for line in file:
                    cells = line.rstrip("\n").split("\t")
                    if len(cells) != width:
                        # A line cut short by a crash or a full disk: not evidence of anything.
                        continue
                    self._last[cells[at_id]] = (
                        cells[at_outcome] == "succeeded",
                        cells[at_payload],
                    )
        except OSError as exc:
            raise ResumeError(f"cannot read the joblog {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ResumeError(f"{path} is not a joblog: {exc.reason}") from None

    @property
    def succeeded(self) -> int:
        """How many jobs the joblog records as succeeded."""
        return sum(ok for ok, _ in self._last.values())

    def skips(self, job: Job, reader: JobReader | None = None) -> bool:
        """Whether ``job`` is to be skipped.

        Raises:
            JobFileError: The joblog ran a job of this id with another payload.
        """
        entry = self._last.get(escape(job.id))
        if entry is None:
            return self.only_failed
        succeeded, payload = entry
        now = escape(payload_text(job.payload))
        if payload != now:
            where = f"{reader.name}:{reader.line}" if reader is not None else f"job {job.id!r}"
            raise JobFileError(
                f"{where}: the joblog {self.path} ran job {job.id!r} as {payload!r}, "
                f"not {now!r}: the input has changed since"
            )
        return succeeded
