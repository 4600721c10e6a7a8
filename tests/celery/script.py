"""Celery events made by hand, in the form Celery's receiver gives them.

The unit tests and the snapshot scenarios feed these to a
:class:`~tui.sources.celery.CelerySource` instead of a live cluster, on a
clock that only moves when told: what they check and picture never
depends on real time. The fields are those a real cluster sends (see the
module's tests that run one).
"""

from __future__ import annotations

from typing import Any

from tui.sources.celery import CelerySource

__all__ = ("Script", "ScriptedControl", "uuid")


def uuid(number: int) -> str:
    """A task id whose first eight characters (the dashboard's job id) read ``task0001``."""
    return f"task{number:04d}-0000-4000-8000-{number:012d}"


class ScriptedControl:
    """A control transport that answers every command ``ok`` (or as told), and records them.

    Only for what cannot run live in a snapshot; the live tests use Celery's own.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], list[str] | None]] = []
        self.answers: dict[str, dict[str, Any] | None] = {}
        self.depths: dict[str, int] = {}

    def broadcast(
        self,
        command: str,
        arguments: dict[str, Any],
        destination: Any,
        reply: bool,
        timeout: float,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        self.sent.append(
            (command, dict(arguments), None if destination is None else list(destination))
        )
        if command in ("stats", "active", "reserved", "registered", "active_queues"):
            return []
        if not reply:
            return []
        answer = self.answers.get(command, {"ok": "done"})
        if answer is None:
            return []  # nobody answers
        return [{node: answer} for node in destination or ["any@node"]]

    def send_task(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
        self.sent.append(("send_task", {"name": name, "args": args, "kwargs": kwargs}, None))
        return "sent"

    def queue_lengths(self, queues: Any) -> dict[str, int]:
        return {queue: self.depths.get(queue, 0) for queue in queues}


class Script:
    """A clock, and the events of a cluster stamped with it.

    Args:
        start: The clock's first reading; Celery's wall-clock stamps are the
            same numbers (the source is made with ``wall_offset=0``).
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds

    def source(
        self, *, control: ScriptedControl | None = None, read_only: bool = False
    ) -> CelerySource:
        return CelerySource(
            control,
            title="celery · redis://snap:6379/0",
            now=self.now,
            wall_offset=0.0,
            read_only=read_only,
        )

    def _event(self, kind: str, node: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "hostname": node, "timestamp": self.time, "utcoffset": 0, **fields}

    def online(self, node: str, freq: float = 2.0) -> dict[str, Any]:
        return self._event("worker-online", node, freq=freq, active=0, processed=0)

    def heartbeat(self, node: str, active: int = 0, freq: float = 2.0) -> dict[str, Any]:
        return self._event("worker-heartbeat", node, freq=freq, active=active, processed=0)

    def offline(self, node: str) -> dict[str, Any]:
        return self._event("worker-offline", node, freq=2.0, active=0, processed=0)

    def sent(self, number: int, name: str, args: str = "()") -> dict[str, Any]:
        return self._event(
            "task-sent",
            "client@host",
            uuid=uuid(number),
            name=name,
            args=args,
            kwargs="{}",
            retries=0,
            queue="celery",
        )

    def received(
        self, number: int, node: str, name: str, args: str = "()", retries: int = 0
    ) -> dict[str, Any]:
        return self._event(
            "task-received",
            node,
            uuid=uuid(number),
            name=name,
            args=args,
            kwargs="{}",
            retries=retries,
        )

    def started(self, number: int, node: str) -> dict[str, Any]:
        return self._event("task-started", node, uuid=uuid(number))

    def progress(
        self, number: int, node: str, fraction: float, message: str = ""
    ) -> dict[str, Any]:
        return self._event(
            "task-progress", node, uuid=uuid(number), fraction=fraction, message=message
        )

    def succeeded(self, number: int, node: str, runtime: float) -> dict[str, Any]:
        return self._event(
            "task-succeeded", node, uuid=uuid(number), result="None", runtime=runtime
        )

    def failed(self, number: int, node: str, exception: str, traceback: str = "") -> dict[str, Any]:
        return self._event(
            "task-failed", node, uuid=uuid(number), exception=exception, traceback=traceback
        )

    def retried(self, number: int, node: str, exception: str) -> dict[str, Any]:
        return self._event(
            "task-retried", node, uuid=uuid(number), exception=exception, traceback=""
        )

    def revoked(self, number: int, node: str, *, terminated: bool = False) -> dict[str, Any]:
        return self._event(
            "task-revoked",
            node,
            uuid=uuid(number),
            terminated=terminated,
            signum=None,
            expired=False,
        )

    def rejected(self, number: int, node: str, *, requeue: bool = False) -> dict[str, Any]:
        return self._event("task-rejected", node, uuid=uuid(number), requeue=requeue)
