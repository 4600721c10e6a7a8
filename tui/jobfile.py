"""Job files: the input of ``wpool-tui run``, and the unfinished jobs it saves.

A job file holds one job a line, as a JSON object::

    {"id": "resize-1", "payload": "photo-1.jpg", "timeout": 30}

Only ``payload`` is required; a job without an ``id`` is named by its line
number. A string payload is encoded as UTF-8; any other JSON value becomes
its compact JSON text. ``meta`` (an object of
strings) is kept too. With ``--shell`` a line is a shell command instead,
its id its line number; a line that is a JSON object is still read as
above, so that the unfinished jobs of a shell run can be run again.
Blank lines are skipped everywhere.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable
from typing import Any, BinaryIO, Final

from pool import Job

__all__ = ("JobFileError", "job_line", "parse_jobs", "read_jobs", "write_jobs")

FIELDS: Final = ("id", "payload", "timeout", "meta")


class JobFileError(Exception):
    """A job file cannot be read: the message names the file, the line and what is wrong."""


def read_jobs(source: str, *, shell: bool, stdin: BinaryIO | None = None) -> list[Job]:
    """Every job in the file ``source`` (``-`` for standard input), in order.

    Raises:
        JobFileError: The file cannot be read, or a line is not a valid job;
            nothing is returned then.
    """
    if source == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return parse_jobs(stream.read().splitlines(), "<stdin>", shell=shell)
    try:
        with open(source, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise JobFileError(f"cannot read {source}: {exc.strerror or exc}") from None
    return parse_jobs(data.splitlines(), source, shell=shell)


def parse_jobs(lines: Iterable[bytes], name: str, *, shell: bool) -> list[Job]:
    """The jobs of a file's lines; ``name`` is the file's name in errors."""
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JobFileError(f"{name}:{number}: not UTF-8 text ({exc.reason})") from None
        if not text.strip():
            continue
        try:
            job = _parse_line(text, number, shell=shell)
        except ValueError as exc:
            raise JobFileError(f"{name}:{number}: {exc}") from None
        if job.id in seen:
            raise JobFileError(
                f"{name}:{number}: id {job.id!r} is already used on line {seen[job.id]}"
            )
        seen[job.id] = number
        jobs.append(job)
    return jobs


def _parse_line(text: str, number: int, *, shell: bool) -> Job:
    if shell:
        stripped = text.strip()
        if stripped.startswith("{"):
            try:
                data = json.loads(stripped)
            except json.JSONDecodeError:
                data = None  # a shell command that starts with a brace
            if isinstance(data, dict):
                return _job_from_object(data, number)
        return Job(id=str(number), payload=text.rstrip("\r").encode("utf-8"))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {_kind(data)}")
    return _job_from_object(data, number)


def _job_from_object(data: dict[str, Any], number: int) -> Job:
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    if "payload" not in data:
        raise ValueError("payload is required")
    payload = data["payload"]
    if isinstance(payload, str):
        encoded = payload.encode("utf-8")
    else:
        encoded = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    # Without an id, a job is named by its line, as a shell command is.
    fields: dict[str, Any] = {"payload": encoded, "id": str(number)}
    job_id = data.get("id")
    if job_id is not None:
        if isinstance(job_id, bool) or not isinstance(job_id, str | int) or job_id == "":
            raise ValueError(f"id must be a non-empty string or a whole number, got {job_id!r}")
        fields["id"] = str(job_id)
    timeout = data.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ValueError(f"timeout must be a number of seconds, got {timeout!r}")
        if not math.isfinite(timeout):
            raise ValueError(f"timeout must be a finite number of seconds, got {timeout!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        fields["timeout"] = float(timeout)
    meta = data.get("meta")
    if meta is not None:
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ValueError(f"meta must be an object of strings, got {meta!r}")
        fields["meta"] = meta
    return Job(**fields)


def _kind(value: object) -> str:
    match value:
        case list():
            return "an array"
        case str():
            return "a string"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case None:
            return "null"
    return type(value).__name__


def job_line(job: Job) -> str:
    """``job`` as one line of a job file (its payload as text, which must be UTF-8).

    Raises:
        ValueError: The payload is not UTF-8 (no job read from a file has one).
    """
    try:
        payload = job.payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"job {job.id!r}: its payload is not UTF-8 text") from None
    data: dict[str, object] = {"id": job.id, "payload": payload}
    if job.timeout is not None:
        data["timeout"] = job.timeout
    if job.meta:
        data["meta"] = dict(job.meta)
    return json.dumps(data, ensure_ascii=False, separators=(", ", ": "))


def write_jobs(path: str, jobs: Iterable[Job]) -> int:
    """Write ``jobs`` to ``path`` as a job file, atomically; returns how many.

    The file is complete or untouched: it is written beside ``path`` and
    renamed over it.
    """
    lines = [job_line(job) for job in jobs]
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        file.writelines(f"{line}\n" for line in lines)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    return len(lines)
