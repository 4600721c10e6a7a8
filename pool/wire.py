"""The JSON form of what leaves the process besides events: snapshots, jobs, dead letters.

The control socket (``control.py``) and recordings carry these; events have
their own in ``events.py``. Every ``*_from_dict`` checks what it is given, as
it may come from another program: a wrong type or a missing field raises
``ValueError`` naming the field, and nothing is ever evaluated.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from .job import ErrorInfo, Job, JobState
from .phase import PoolPhase
from .pool import DeadLetter, PoolSnapshot
from .stats import Percentiles, PoolStats
from .worker import WorkerInfo, WorkerState

__all__ = (
    "dead_letter_from_dict",
    "dead_letter_to_dict",
    "error_from_dict",
    "error_to_dict",
    "job_from_dict",
    "job_to_dict",
    "snapshot_from_dict",
    "snapshot_to_dict",
)


# --- reading what another program sent -------------------------------------------


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise ValueError(f"{where}: missing field {key!r}")
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and bool not in kinds:
        raise ValueError(f"{where}.{key}: expected {_names(kinds)}, got {value!r}")
    if not isinstance(value, kinds):
        raise ValueError(f"{where}.{key}: expected {_names(kinds)}, got {value!r}")
    return value


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object, got {value!r}")
    return value


def _enum(kind: Any, value: Any, where: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(member.value for member in kind)
        raise ValueError(f"{where}: expected one of {names}, got {value!r}") from None


# --- errors -----------------------------------------------------------------------


def error_to_dict(error: ErrorInfo) -> dict[str, str]:
    """An :class:`ErrorInfo` as JSON-ready data."""
    return {"type": error.type, "message": error.message, "traceback": error.traceback}


def error_from_dict(value: Any, where: str = "error") -> ErrorInfo:
    """Rebuild an :class:`ErrorInfo` (``traceback`` may be left out)."""
    data = _object(value, where)
    return ErrorInfo(
        type=_get(data, "type", str, where),
        message=_get(data, "message", str, where),
        traceback=_get(data, "traceback", str, where) if "traceback" in data else "",
    )


# --- jobs -------------------------------------------------------------------------


def job_to_dict(job: Job) -> dict[str, Any]:
    """A job as JSON-ready data: its payload as text when it is UTF-8, else base64."""
    out: dict[str, Any] = {"id": job.id}
    try:
        out["payload"] = job.payload.decode("utf-8")
    except UnicodeDecodeError:
        out["payload_base64"] = base64.b64encode(job.payload).decode("ascii")
    if job.timeout is not None:
        out["timeout"] = job.timeout
    if job.meta:
        out["meta"] = dict(job.meta)
    return out


def job_from_dict(value: Any, where: str = "job") -> Job:
    """A job from :func:`job_to_dict`'s form.

    ``id`` may be left out (one is made); the payload is ``payload`` (text,
    sent as its UTF-8 bytes, or any other JSON value, sent as its JSON text
    by the caller beforehand) or ``payload_base64``; ``timeout`` and
    ``meta`` are optional. Data only: nothing in it is run.
    """
    data = _object(value, where)
    unknown = sorted(set(data) - {"id", "payload", "payload_base64", "timeout", "meta"})
    if unknown:
        raise ValueError(f"{where}: unexpected field {unknown[0]!r}")
    if "payload" in data and "payload_base64" in data:
        raise ValueError(f"{where}: give payload or payload_base64, not both")
    payload = b""
    if "payload" in data:
        payload = _get(data, "payload", str, where).encode("utf-8")
    elif "payload_base64" in data:
        try:
            payload = base64.b64decode(_get(data, "payload_base64", str, where), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"{where}.payload_base64: not base64: {exc}") from None
    fields: dict[str, Any] = {"payload": payload}
    if "id" in data:
        fields["id"] = _get(data, "id", str, where)
    if data.get("timeout") is not None:
        fields["timeout"] = _get(data, "timeout", float, where)
    if "meta" in data:
        meta = _object(data["meta"], f"{where}.meta")
        for key, item in meta.items():
            if not isinstance(item, str):
                raise ValueError(f"{where}.meta.{key}: expected str, got {item!r}")
        fields["meta"] = dict(meta)
    try:
        return Job(**fields)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


# --- dead letters -----------------------------------------------------------------


def dead_letter_to_dict(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as JSON-ready data."""
    return {
        "job": job_to_dict(letter.job),
        "state": letter.state.value,
        "error": None if letter.error is None else error_to_dict(letter.error),
        "attempts": letter.attempts,
        "at": letter.at,
    }


def dead_letter_from_dict(value: Any, where: str = "dead_letter") -> DeadLetter:
    """Rebuild a :class:`DeadLetter`."""
    data = _object(value, where)
    error = data.get("error")
    return DeadLetter(
        job=job_from_dict(_get(data, "job", dict, where), f"{where}.job"),
        state=_enum(JobState, _get(data, "state", str, where), f"{where}.state"),
        error=None if error is None else error_from_dict(error, f"{where}.error"),
        attempts=_get(data, "attempts", int, where),
        at=_get(data, "at", float, where),
    )


# --- snapshots --------------------------------------------------------------------

_PERCENTILES = ("run_time", "queue_wait")


def snapshot_to_dict(snapshot: PoolSnapshot) -> dict[str, Any]:
    """A snapshot as JSON-ready data (``seq`` says which events it includes)."""
    stats = snapshot.stats
    stats_out: dict[str, Any] = {}
    for name in PoolStats.__dataclass_fields__:
        value = getattr(stats, name)
        if isinstance(value, Percentiles):
            value = {"p50": value.p50, "p95": value.p95, "p99": value.p99, "count": value.count}
        stats_out[name] = value
    return {
        "phase": snapshot.phase.value,
        "seq": snapshot.seq,
        "at": snapshot.at,
        "started_at": snapshot.started_at,
        "phase_deadline": snapshot.phase_deadline,
        "stats": stats_out,
        "workers": [
            {
                "id": w.id,
                "state": w.state.value,
                "job_id": w.job_id,
                "job_started_at": w.job_started_at,
                "attempt": w.attempt,
                "progress": w.progress,
                "progress_message": w.progress_message,
                "jobs_done": w.jobs_done,
                "jobs_failed": w.jobs_failed,
                "restarts": w.restarts,
            }
            for w in snapshot.workers
        ],
    }


def _percentiles(value: Any, where: str) -> Percentiles:
    data = _object(value, where)
    return Percentiles(
        p50=_get(data, "p50", float, where),
        p95=_get(data, "p95", float, where),
        p99=_get(data, "p99", float, where),
        count=_get(data, "count", int, where),
    )


def _worker(value: Any, where: str) -> WorkerInfo:
    data = _object(value, where)
    return WorkerInfo(
        id=_get(data, "id", str, where),
        state=_enum(WorkerState, _get(data, "state", str, where), f"{where}.state"),
        job_id=_get(data, "job_id", (str, type(None)), where),
        job_started_at=_get(data, "job_started_at", (float, type(None)), where),
        attempt=_get(data, "attempt", (int, type(None)), where),
        progress=_get(data, "progress", (float, type(None)), where),
        progress_message=_get(data, "progress_message", str, where),
        jobs_done=_get(data, "jobs_done", int, where),
        jobs_failed=_get(data, "jobs_failed", int, where),
        restarts=_get(data, "restarts", int, where),
    )


def snapshot_from_dict(value: Any, where: str = "snapshot") -> PoolSnapshot:
    """Rebuild a :class:`PoolSnapshot` from :func:`snapshot_to_dict`'s form."""
    data = _object(value, where)
    stats_data = _object(_get(data, "stats", dict, where), f"{where}.stats")
    stats: dict[str, Any] = {}
    for name, field in PoolStats.__dataclass_fields__.items():
        here = f"{where}.stats"
        if name in _PERCENTILES:
            stats[name] = _percentiles(_get(stats_data, name, dict, here), f"{here}.{name}")
        elif field.type in ("float", float):
            stats[name] = _get(stats_data, name, float, here)
        else:
            stats[name] = _get(stats_data, name, int, here)
    workers = _get(data, "workers", list, where)
    return PoolSnapshot(
        phase=_enum(PoolPhase, _get(data, "phase", str, where), f"{where}.phase"),
        seq=_get(data, "seq", int, where),
        at=_get(data, "at", float, where),
        stats=PoolStats(**stats),
        workers=tuple(_worker(w, f"{where}.workers[{i}]") for i, w in enumerate(workers)),
        phase_deadline=_get(data, "phase_deadline", (float, type(None)), where),
        started_at=_get(data, "started_at", (float, type(None)), where),
    )
