"""The control server over real sockets: hello, events, requests, roles, peers, files, clients.

Every client here is a plain asyncio client that parses each line, as a
dashboard would. Waits are for what the server sends; the timeouts
(``GUARD``) only keep a broken test from hanging.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import typing
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from pool import (
    ControlServer,
    ErrorInfo,
    Job,
    JobContext,
    Pool,
    PoolError,
    PoolPhase,
    control,
    events,
    wire,
)
from pool.control import HELLO_TIMEOUT, MAX_LINE
from tests.helpers import Script, release_all, settle
from tests.services import Service

GUARD = 20.0
"""Seconds a read may take before the test fails: a guard against hangs, never a timer."""

LIMIT = 1 << 24  # a client's line limit: snapshots of big pools are long lines
Message = dict[str, Any]


# --- a client, as a dashboard would be -------------------------------------------


class Client:
    """A plain asyncio client of the protocol that parses every line it reads."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.messages: list[Message] = []
        """Every message read, in order."""
        self._ids = 0
        self._cursor = 0  # where event() looks from

    @classmethod
    async def unix(cls, path: Path) -> Client:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=LIMIT)
        return cls(reader, writer)

    @classmethod
    async def tcp(cls, address: tuple[str, int]) -> Client:
        reader, writer = await asyncio.open_connection(*address, limit=LIMIT)
        return cls(reader, writer)

    def send(self, message: Message | bytes) -> None:
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        self.writer.write(data)

    async def read(self) -> Message:
        async with asyncio.timeout(GUARD):
            return await self._read()

    async def _read(self) -> Message:
        line = await self.reader.readline()
        if not line:
            raise EOFError("the server closed the connection")
        message: Message = json.loads(line)
        self.messages.append(message)
        return message

    async def hello(self, role: str = "control", **fields: Any) -> tuple[Message, Message]:
        """Say hello; returns the welcome and the snapshot."""
        self.send({"hello": "wpool", "version": 1, "role": role, **fields})
        welcome = await self.read()
        assert welcome["type"] == "welcome", welcome
        snapshot = await self.read()
        assert snapshot["type"] == "snapshot", snapshot
        return welcome, snapshot

    async def call(
        self, method: str, params: Message | None = None, *, request_id: object = None
    ) -> Message:
        """Send a request and read until its answer (a result or an error)."""
        if request_id is None:
            self._ids += 1
            request_id = self._ids
        request: Message = {"id": request_id, "method": method}
        if params is not None:
            request["params"] = params
        self.send(request)
        return await self.until(
            lambda m: m["type"] in ("result", "error") and m.get("id") == request_id
        )

    async def until(self, predicate: Callable[[Message], bool]) -> Message:
        async with asyncio.timeout(GUARD):
            while True:
                message = await self._read()
                if predicate(message):
                    return message

    async def event(self, kind: str, **fields: Any) -> Message:
        """The next event of type ``kind`` with these fields after the last one found
        (among those read already, else reading on)."""

        def match(m: Message) -> bool:
            return m["type"] == kind and all(m.get(k) == v for k, v in fields.items())

        for index in range(self._cursor, len(self.messages)):
            if match(self.messages[index]):
                self._cursor = index + 1
                return self.messages[index]
        found = await self.until(match)
        self._cursor = len(self.messages)
        return found

    async def rest(self) -> list[Message]:
        """Read to the end of the stream; a reset ends it too."""
        rest: list[Message] = []
        try:
            async with asyncio.timeout(GUARD):
                while line := await self.reader.readline():
                    rest.append(json.loads(line))
        except ConnectionResetError:
            pass
        self.messages.extend(rest)
        return rest

    def events(self) -> list[Message]:
        """The events read so far (event types are CamelCase)."""
        return [m for m in self.messages if m["type"][0].isupper()]

    def close(self) -> None:
        self.writer.close()


def error(code: str, message: str, request_id: object = None) -> Message:
    return {"type": "error", "id": request_id, "error": {"code": code, "message": message}}


def result(value: object, request_id: object = 1) -> Message:
    return {"type": "result", "id": request_id, "result": value}


def assert_follows(snapshot_seq: int, stream: list[Message]) -> None:
    """The events of ``stream`` are every event after ``snapshot_seq``, in order, each once."""
    seqs = [m["seq"] for m in stream if m["type"][0].isupper()]
    assert seqs == list(range(snapshot_seq + 1, snapshot_seq + 1 + len(seqs)))


# --- pools, servers and their clean-up --------------------------------------------


class Gated:
    """A handler object whose workers are ready only while ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()

    def make_runner(self, name: str) -> _GatedRunner:
        return _GatedRunner(self.gate)


class _GatedRunner:
    cancels_task = True

    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate

    def start(self) -> None:
        pass

    async def wait_ready(self) -> None:
        await self.gate.wait()

    async def run(self, job: Job, ctx: JobContext) -> object:
        return job.payload

    def cancel(self) -> None:
        pass

    def abandon(self) -> None:
        pass

    def stop(self) -> None:
        pass


class World:
    """The pools, servers and clients of one test, all stopped at its end."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.pools: list[Pool] = []
        self.servers: list[ControlServer] = []
        self.clients: list[Client] = []

    async def pool(self, handler: Any = None, *, name: str = "svc", **kwargs: Any) -> Pool:
        kwargs.setdefault("workers", 2)
        pool = Pool(Script() if handler is None else handler, name=name, **kwargs)
        await pool.start()
        self.pools.append(pool)
        return pool

    async def serve(self, pool: Pool, **kwargs: Any) -> ControlServer:
        kwargs.setdefault("path", self.dir / f"{pool.name}.sock")
        path = kwargs.pop("path")
        server = ControlServer(pool, path, **kwargs)
        await server.start()
        self.servers.append(server)
        return server

    async def client(self, server: ControlServer, role: str | None = "control") -> Client:
        """A client of ``server``'s socket, welcomed already unless ``role`` is None."""
        client = await Client.unix(server.path)
        self.clients.append(client)
        if role is not None:
            await client.hello(role)
        return client

    async def close(self) -> None:
        release_all()
        for client in self.clients:
            client.close()
        for pool in self.pools:
            await pool.shutdown(grace=0, cancel_grace=0)
        for server in self.servers:
            server.close()
            await asyncio.wait_for(server.wait_closed(), GUARD)
        await settle()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A fresh directory of mode 0700: short, as a Unix socket's path has 107 bytes at most."""
    path = Path(tempfile.mkdtemp(prefix="wpool-test-"))
    yield path
    shutil.rmtree(path)


@pytest_asyncio.fixture
async def world(sock_dir: Path) -> AsyncIterator[World]:
    world = World(sock_dir)
    yield world
    await world.close()


# --- the connection: hello, welcome, snapshot, events ------------------------------


class TestHello:
    async def test_a_client_gets_a_welcome_a_snapshot_then_every_event_as_headless_prints_it(
        self, sock_dir: Path
    ) -> None:
        pool = Pool(Script(), workers=2, name="svc")
        await pool.start()
        server = await pool.serve(sock_dir / "svc.sock")
        published = pool.events()  # what the pool told, to compare with the wire
        client = await Client.unix(server.path)
        welcome, snapshot = await client.hello("read")
        assert welcome == {
            "type": "welcome",
            "version": 1,
            "role": "read",
            "pool": {
                "name": "svc",
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "max_workers": 1024,
                "queue_size": 100,
                "grace": 10.0,
                "cancel_grace": 2.0,
            },
        }
        pictured = wire.snapshot_from_dict(snapshot["snapshot"])
        assert (pictured.phase, pictured.stats.workers) == (PoolPhase.RUNNING, 2)
        for name in ("a", "b", "c"):
            pool.submit_nowait(Job(id=name, payload=b"ok"))
        await client.event("JobSucceeded", job_id="c")
        await pool.shutdown()
        rest = await client.rest()
        assert rest[-1]["type"] == "PoolStopped"
        told = [events.to_dict(event) for event in published.drain()]
        assert client.events() == told
        assert_follows(pictured.seq, client.messages[2:])
        client.close()
        await server.wait_closed()

    async def test_a_client_that_comes_mid_stream_gets_each_event_once(self, world: World) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        first = await world.client(server)
        pool.submit_nowait(Job(id="a", payload=b"ok"))
        await first.event("JobSucceeded", job_id="a")
        for name in ("b", "c", "d"):
            pool.submit_nowait(Job(id=name, payload=b"ok"))
        await settle()  # their events wait in the server's subscription
        second = await world.client(server)
        _, snapshot = second.messages
        pool.submit_nowait(Job(id="e", payload=b"ok"))
        await first.event("JobSucceeded", job_id="e")
        await second.event("JobSucceeded", job_id="e")
        assert_follows(first.messages[1]["snapshot"]["seq"], first.messages[2:])
        assert_follows(snapshot["snapshot"]["seq"], second.messages[2:])
        assert first.events()[-1] == second.events()[-1]

    async def test_a_hello_may_come_in_pieces_and_blank_lines_are_ignored(
        self, world: World
    ) -> None:
        server = await world.serve(await world.pool())
        client = await Client.unix(server.path)
        world.clients.append(client)
        for piece in (b"\n", b'{"hello": "wpool", ', b'"version": 1, "role": "read"', b"}\n"):
            client.send(piece)
            await client.writer.drain()
            await settle()
        assert (await client.read())["type"] == "welcome"
        assert (await client.read())["type"] == "snapshot"

    @pytest.mark.parametrize(
        ("hello", "answer"),
        [
            (b"hello\n", error("auth", "expected a hello, got a line that is not JSON")),
            (
                b"[1]\n",
                error(
                    "auth",
                    'expected a hello: {"hello": "wpool", "version": 1, "role": "read" or "control"}',
                ),
            ),
            (
                b'{"id": 1, "method": "snapshot"}\n',
                error(
                    "auth",
                    'expected a hello: {"hello": "wpool", "version": 1, "role": "read" or "control"}',
                ),
            ),
            (
                b'{"hello": "wpool", "version": 2, "role": "read"}\n',
                error("version", "protocol version 2 is not supported; this server speaks 1"),
            ),
            (
                b'{"hello": "wpool", "role": "read"}\n',
                error("version", "protocol version None is not supported; this server speaks 1"),
            ),
            (
                b'{"hello": "wpool", "version": 1, "role": "admin"}\n',
                error("bad_request", "hello.role: expected 'read' or 'control', got 'admin'"),
            ),
            (
                b'{"hello": "wpool", "version": 1, "role": "read", "as": "root"}\n',
                error("bad_request", "hello: unexpected field 'as'"),
            ),
        ],
        ids=["not-json", "not-an-object", "a-request", "version", "no-version", "role", "field"],
    )
    async def test_a_malformed_hello_gets_an_error_and_the_connection_is_closed(
        self, world: World, hello: bytes, answer: Message
    ) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        bystander = await world.client(server, "read")
        client = await world.client(server, role=None)
        client.send(hello)
        assert await client.rest() == [answer]
        assert server.clients == 1
        assert (await bystander.call("snapshot"))["type"] == "result"
        assert [m["type"] for m in bystander.messages] == ["welcome", "snapshot", "result"]

    async def test_a_client_that_says_nothing_is_closed_after_the_hello_timeout(
        self, world: World
    ) -> None:
        server = await world.serve(await world.pool(), hello_timeout=0.2)
        client = await world.client(server, role=None)
        assert await client.rest() == [error("auth", "no hello within 0.2 s")]

    async def test_the_hello_timeout_is_five_seconds(self, world: World) -> None:
        pool = await world.pool()
        assert HELLO_TIMEOUT == 5.0
        assert ControlServer(pool, world.dir / "x.sock").hello_timeout == 5.0


# --- events on the wire ---------------------------------------------------------------


def sample_events(variant: int) -> list[events.PoolEvent]:
    """One event of every type, with plain values (variant 0) or awkward ones (1, 2)."""
    strings = ["w1", 'é "quoted" \\ \n\t\x00 \u2028 😀', ""]
    floats = [12.5, float("nan"), -0.0]
    edge_floats = [1e-7, float("inf"), 1e300]

    def value(hint: Any) -> Any:
        args = typing.get_args(hint)
        if type(None) in args:
            return None if variant == 1 else value(next(a for a in args if a is not type(None)))
        if hint is str:
            return strings[variant]
        if hint is float:
            return (floats if variant < 2 else edge_floats)[variant]
        if hint is bool:
            return variant == 1
        if hint is int:
            return [3, -1, 10**20][variant]
        if hint is PoolPhase:
            return list(PoolPhase)[variant]
        if hint is ErrorInfo:
            return ErrorInfo(
                type="ValueError", message=strings[variant], traceback=strings[2 - variant]
            )
        raise AssertionError(f"no sample for {hint!r}")

    made: list[events.PoolEvent] = []
    for cls in events.EVENT_TYPES.values():
        hints = typing.get_type_hints(cls)
        made.append(cls(**{name: value(hint) for name, hint in hints.items()}))
    return made


class TestEventsOnTheWire:
    @pytest.mark.parametrize("variant", [0, 1, 2])
    def test_each_event_is_sent_exactly_as_to_json_writes_it(self, variant: int) -> None:
        made = sample_events(variant)
        assert {type(event) for event in made} == set(events.EVENT_TYPES.values())
        for event in made:
            batch = control._Batch([event])
            assert batch.data.decode() == events.to_json(event) + "\n"

    def test_a_batch_leaves_out_what_a_snapshot_already_has(self) -> None:
        made = [events.WorkerStarted(seq=seq, at=1.0, worker_id=f"w{seq}") for seq in range(5, 9)]
        batch = control._Batch(made)
        assert (batch.first, batch.last) == (5, 8)
        assert batch.after(6).decode().splitlines() == [events.to_json(e) for e in made[2:]]


# --- requests ----------------------------------------------------------------------


class TestRequests:
    async def test_snapshot_answers_with_the_pool_and_the_events_after_it_follow_it(
        self, world: World
    ) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        client = await world.client(server, "read")
        for name in ("a", "b"):
            pool.submit_nowait(Job(id=name, payload=b"ok"))
        await settle()  # their events wait in the server's subscription
        answer = await client.call("snapshot", request_id="s1")
        picture = wire.snapshot_from_dict(answer["result"])
        assert answer["id"] == "s1"
        assert picture.stats.succeeded == 2
        answered = len(client.messages)
        pool.submit_nowait(Job(id="c", payload=b"ok"))
        await client.event("JobSucceeded", job_id="c")
        assert_follows(picture.seq, client.messages[answered:])

    async def test_dead_letters_answers_with_the_failed_jobs_kept(self, world: World) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        client = await world.client(server, "read")
        pool.submit_nowait(Job(id="bad", payload=b"fail"))
        await client.event("JobFailed", job_id="bad")
        answer = await client.call("dead_letters")
        assert answer == result([wire.dead_letter_to_dict(d) for d in pool.dead_letters()])
        assert answer["result"][0]["job"] == {"id": "bad", "payload": "fail"}

    async def test_job_answers_with_a_live_job_a_dead_letter_or_null(self, world: World) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        client = await world.client(server, "read")
        pool.submit_nowait(Job(id="held", payload=b"hold", meta={"k": "v"}))
        pool.submit_nowait(Job(id="bad", payload=b"fail"))
        await client.event("JobFailed", job_id="bad")
        live = (await client.call("job", {"job_id": "held"}))["result"]
        handle = pool.job("held")
        assert handle is not None
        assert live == {
            "job": {"id": "held", "payload": "hold", "meta": {"k": "v"}},
            "state": "running",
            "attempts": 1,
            "worker_id": handle.worker_id,
            "error": None,
            "started_at": handle.started_at,
            "ended_at": None,
            "output": None,
        }
        dead = (await client.call("job", {"job_id": "bad"}))["result"]
        (letter,) = pool.dead_letters()
        assert letter.error is not None
        assert dead == {
            "job": {"id": "bad", "payload": "fail"},
            "state": "failed",
            "attempts": 1,
            "worker_id": None,
            "error": wire.error_to_dict(letter.error),
            "started_at": None,
            "ended_at": letter.at,
            "output": None,
        }
        assert await client.call("job", {"job_id": "nope"}) == result(None, 3)

    async def test_submit_queues_data_and_a_full_queue_rejects_without_waiting(
        self, world: World
    ) -> None:
        pool = await world.pool(workers=0, queue_size=2)
        server = await world.serve(pool)
        client = await world.client(server)
        jobs = [
            {"id": "a", "payload": "text"},
            {"id": "b", "payload_base64": "/wA=", "timeout": 2.5, "meta": {"k": "v"}},
            {"id": "c"},
        ]
        answer = await client.call("submit", {"jobs": jobs})
        assert answer == result(
            {
                "accepted": ["a", "b"],
                "rejected": [{"id": "c", "error": "queue is full (2 jobs waiting)"}],
            }
        )
        handle = pool.job("b")
        assert handle is not None
        assert handle.job == Job(id="b", payload=b"\xff\x00", timeout=2.5, meta={"k": "v"})
        again = await client.call("submit", {"jobs": [{"id": "a"}]})
        assert again["result"]["rejected"] == [
            {"id": "a", "error": "job id 'a' is already queued or running"}
        ]
        assert (pool.stats().rejected, pool.stats().submitted) == (1, 3)

    async def test_submit_refuses_a_request_with_a_malformed_job_and_submits_none_of_it(
        self, world: World
    ) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        client = await world.client(server)
        jobs = [{"id": "fine", "payload": "x"}, {"payload": "x", "code": "__import__('os')"}]
        answer = await client.call("submit", {"jobs": jobs})
        assert answer == error("invalid", "params.jobs[1]: unexpected field 'code'", 1)
        assert pool.stats().submitted == 0

    async def test_submit_to_a_closed_pool_is_refused_by_the_pool(self, world: World) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        client = await world.client(server)
        pool.submit_nowait(Job(id="held", payload=b"hold"))
        assert (await client.call("shutdown", {"grace": 60})) == result({"begun": True})
        answer = await client.call("submit", {"jobs": [{"id": "late"}]})
        assert answer == error("pool", "pool is draining: it accepts no more jobs", 2)

    async def test_resize_answers_once_its_workers_are_ready(self, world: World) -> None:
        pool = await world.pool(max_workers=8)
        server = await world.serve(pool)
        client = await world.client(server)
        assert await client.call("resize", {"workers": 5}) == result({"target": 5})
        stats = pool.stats()
        assert (stats.target_workers, stats.workers) == (5, 5)
        assert await client.call("resize", {"workers": 9}) == error(
            "invalid", "workers must be <= 8, got 9", 2
        )
        assert await client.call("resize", {"workers": "3"}) == error(
            "invalid", "workers must be an int, got '3'", 3
        )
        await client.event("PoolResized", target=5)

    async def test_pause_and_resume(self, world: World) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        client = await world.client(server)
        assert await client.call("pause") == result({})
        assert pool.phase is PoolPhase.PAUSED
        assert await client.call("pause") == error("pool", "cannot pause: pool is paused", 2)
        assert await client.call("resume", {}) == result({}, 3)
        assert pool.phase is PoolPhase.RUNNING
        assert await client.call("resume") == error("pool", "cannot resume: pool is running", 4)

    async def test_shutdown_answers_at_once_and_a_second_one_skips_to_the_next_phase(
        self, world: World
    ) -> None:
        script = Script()
        pool = await world.pool(script)
        server = await world.serve(pool)
        client = await world.client(server)
        pool.submit_nowait(Job(id="held", payload=b"hold"))
        assert await client.call("shutdown", {"grace": 60, "drain": True}) == result(
            {"begun": True}
        )
        await client.event("ShutdownStarted", grace=60.0, drain=True)
        assert pool.phase is PoolPhase.DRAINING  # the held job holds it there
        assert await client.call("shutdown") == result({"begun": True}, 2)
        await client.event("PhaseChanged", phase="cancelling")
        await client.event("JobCancelled", job_id="held")
        rest = await client.rest()
        assert rest[-1]["type"] == "PoolStopped"
        assert script.cancelled == ["held"]

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ({"grace": -1}, "grace must be >= 0, got -1"),
            (
                {"cancel_grace": "soon"},
                "cancel_grace must be a number of seconds or None, got 'soon'",
            ),
            ({"drain": 0}, "params.drain: expected bool, got 0"),
            ({"now": True}, "params: unexpected field 'now'"),
        ],
    )
    async def test_shutdown_with_bad_params_begins_nothing(
        self, world: World, params: Message, message: str
    ) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        client = await world.client(server)
        assert await client.call("shutdown", params) == error("invalid", message, 1)
        assert pool.phase is PoolPhase.RUNNING

    async def test_cancel_a_running_job(self, world: World) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        client = await world.client(server)
        pool.submit_nowait(Job(id="held", payload=b"hold"))
        await client.event("JobStarted", job_id="held")
        assert await client.call("cancel", {"job_id": "held"}) == result({"cancelled": True})
        await client.event("JobCancelled", job_id="held")
        assert await client.call("cancel", {"job_id": "held"}) == result({"cancelled": False}, 2)
        assert await client.call("cancel", {"job_id": 7}) == error(
            "invalid", "params.job_id: expected str, got 7", 3
        )

    async def test_resubmit_runs_a_dead_letter_again(self, world: World) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        client = await world.client(server)
        pool.submit_nowait(Job(id="bad", payload=b"fail"))
        await client.event("JobFailed", job_id="bad")
        assert await client.call("resubmit", {"job_id": "bad"}) == result({"job_id": "bad"})
        await client.event("JobSubmitted", job_id="bad")
        await client.event("JobFailed", job_id="bad")
        assert await client.call("resubmit", {"job_id": "nope"}) == error(
            "invalid", "no dead letter with id 'nope'", 2
        )

    async def test_resubmit_to_a_full_queue_is_refused_at_once(self, world: World) -> None:
        pool = await world.pool(workers=1, queue_size=1)
        server = await world.serve(pool)
        client = await world.client(server)
        pool.submit_nowait(Job(id="bad", payload=b"fail"))
        await client.event("JobFailed", job_id="bad")
        await client.call("resize", {"workers": 0})
        pool.submit_nowait(Job(id="filler"))  # no worker takes it: the queue is full
        answer = await client.call("resubmit", {"job_id": "bad"})
        assert answer == error("pool", "queue is full (1 jobs waiting)", 2)
        assert [d.job.id for d in pool.dead_letters()] == ["bad"]


class TestRoles:
    @pytest.mark.parametrize(
        ("method", "params"),
        [
            ("submit", {"jobs": [{"id": "x"}]}),
            ("resize", {"workers": 1}),
            ("pause", None),
            ("resume", None),
            ("shutdown", None),
            ("cancel", {"job_id": "held"}),
            ("resubmit", {"job_id": "bad"}),
        ],
    )
    async def test_a_read_connection_is_refused_every_control_method_by_the_server(
        self, world: World, method: str, params: Message | None
    ) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        client = await world.client(server, "read")
        pool.submit_nowait(Job(id="held", payload=b"hold"))
        pool.submit_nowait(Job(id="bad", payload=b"fail"))
        await client.event("JobFailed", job_id="bad")
        before = pool.snapshot()
        assert await client.call(method, params) == error(
            "forbidden", f"{method} needs the control role; this connection is read", 1
        )
        after = pool.snapshot()
        assert (after.phase, after.stats, after.seq) == (before.phase, before.stats, before.seq)
        assert (await client.call("dead_letters"))["type"] == "result"  # and it goes on

    async def test_a_read_connection_may_read(self, world: World) -> None:
        server = await world.serve(await world.pool())
        client = await world.client(server, "read")
        for method, params in (
            ("snapshot", None),
            ("dead_letters", None),
            ("job", {"job_id": "x"}),
        ):
            assert (await client.call(method, params))["type"] == "result"


# --- malformed input and clients that go away ---------------------------------------


MALFORMED: list[tuple[bytes, Message]] = [
    (b"resize 3", error("bad_request", "not JSON: Expecting value: line 1 column 1 (char 0)")),
    (b"\xff\xfe\x00", error("bad_request", "not JSON: not UTF-8 (invalid start byte at byte 0)")),
    (b"[" * 100_000, error("bad_request", "not JSON: nested too deeply")),
    (b'{"id": NaN, "method": "snapshot"}', error("bad_request", "not JSON: NaN is not JSON")),
    (b"[1, 2]", error("bad_request", "a request is a JSON object, got list")),
    (b'{"method": "snapshot"}', error("bad_request", "missing field 'id'")),
    (
        b'{"id": true, "method": "snapshot"}',
        error("bad_request", "id: expected a number or a string, got True"),
    ),
    (b'{"id": 1}', error("bad_request", "missing field 'method'", 1)),
    (
        b'{"id": 1, "method": ["resize"]}',
        error("bad_request", "method: expected str, got ['resize']", 1),
    ),
    (
        b'{"id": 1, "method": "snapshot", "params": []}',
        error("bad_request", "params: expected an object, got []", 1),
    ),
    (b'{"id": 1, "method": "snapshot", "x": 1}', error("bad_request", "unexpected field 'x'", 1)),
    (b'{"id": "r", "method": "reboot"}', error("unknown_method", "no method 'reboot'", "r")),
    (
        b'{"id": 1, "method": "resize", "params": {}}',
        error("invalid", "params: missing field 'workers'", 1),
    ),
    (
        b'{"id": 1, "method": "snapshot", "params": {"full": true}}',
        error("invalid", "params: unexpected field 'full'", 1),
    ),
    (
        b'{"id": 1, "method": "submit", "params": {"jobs": "a"}}',
        error("invalid", "params.jobs: expected a list, got 'a'", 1),
    ),
    (
        b'{"id": 1, "method": "submit", "params": {"jobs": [{"payload": 3}]}}',
        error("invalid", "params.jobs[0].payload: expected str, got 3", 1),
    ),
    (
        b'{"id": 1, "method": "job", "params": {"job_id": "' + b"x" * 100 + b'"}, "y": 2}',
        error("bad_request", "unexpected field 'y'", 1),
    ),
    (
        b'{"id": 1, "method": "cancel", "params": {"job_id": "' + b"x" * 100 + b'", "z": 1}}',
        error("invalid", "params: unexpected field 'z'", 1),
    ),
    (
        b'{"id": 1, "method": "job", "params": {"job_id": ["' + b"x" * 100 + b'"]}}',
        error("invalid", "params.job_id: expected str, got ['" + "x" * 55 + "...", 1),
    ),
]


class TestMalformedInput:
    async def test_each_malformed_request_gets_its_error_and_nobody_else_notices(
        self, world: World
    ) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        bystander = await world.client(server)
        client = await world.client(server)
        before = pool.snapshot()
        for line, answer in MALFORMED:
            client.send(line + b"\n")
            assert await client.read() == answer, line[:60]
        after = pool.snapshot()
        assert (after.phase, after.stats, after.seq) == (before.phase, before.stats, before.seq)
        # The connection goes on, and the other client saw nothing of it.
        assert (await client.call("snapshot", request_id="after"))["type"] == "result"
        assert (await bystander.call("snapshot"))["type"] == "result"
        assert [m["type"] for m in bystander.messages] == ["welcome", "snapshot", "result"]

    @pytest.mark.parametrize("welcomed", [True, False], ids=["after-hello", "as-hello"])
    async def test_a_line_over_one_mib_gets_too_long_and_the_connection_is_closed(
        self, world: World, welcomed: bool
    ) -> None:
        server = await world.serve(await world.pool())
        bystander = await world.client(server)
        client = await world.client(server, "control" if welcomed else None)
        client.send(b"x" * (MAX_LINE + 1) + b"\n")
        rest = await client.rest()
        assert rest == [error("too_long", "line is over 1048576 bytes")]
        assert server.clients == 1
        assert (await bystander.call("snapshot"))["type"] == "result"

    async def test_a_line_of_one_mib_is_read(self, world: World) -> None:
        server = await world.serve(await world.pool())
        client = await world.client(server)
        client.send(b"[" + b" " * (MAX_LINE - 2) + b"]\n")
        assert await client.read() == error("bad_request", "a request is a JSON object, got list")
        assert (await client.call("snapshot"))["type"] == "result"

    async def test_a_client_that_goes_away_mid_request_is_never_noticed(self, world: World) -> None:
        gated = Gated()
        pool = await world.pool(gated, workers=1)
        server = await world.serve(pool)
        bystander = await world.client(server)
        leaving = await world.client(server)
        gated.gate.clear()  # new workers wait to be ready: the resize waits for them
        leaving.send({"id": 1, "method": "resize", "params": {"workers": 3}})
        await bystander.event("PoolResized", target=3)  # the request is under way
        sock = leaving.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        leaving.writer.transport.abort()
        gated.gate.set()
        answer = await bystander.call("snapshot")
        picture = wire.snapshot_from_dict(answer["result"])
        assert (picture.phase, picture.stats.workers) == (PoolPhase.RUNNING, 3)
        pool.submit_nowait(Job(id="after", payload=b"ok"))
        await bystander.event("JobSucceeded", job_id="after")
        assert not [m for m in bystander.messages if m["type"] == "error"]

    async def test_a_client_that_sends_and_closes_gets_its_answers_then_is_closed(
        self, world: World
    ) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        client = await world.client(server)
        client.send({"id": 1, "method": "submit", "params": {"jobs": [{"id": "a"}, {"id": "b"}]}})
        client.writer.write_eof()
        rest = await client.rest()
        assert result({"accepted": ["a", "b"], "rejected": []}) in rest


# --- who may connect ------------------------------------------------------------------

NOBODY = 65534
"""An unprivileged user id (``nobody``)."""

AS_NOBODY = """
import json, os, socket, sys
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(10)
sock.connect(sys.argv[1])  # the socket's and its directory's modes let it
end, received = "eof", b""
try:
    sock.sendall(b'{"hello": "wpool", "version": 1, "role": "control"}\\n')
    while b"\\n" not in received and (chunk := sock.recv(65536)):
        received += chunk
    end = "eof" if b"\\n" not in received else "line"
except (BrokenPipeError, ConnectionResetError):
    end = "reset"
print(json.dumps({"uid": os.getuid(), "connected": True, "end": end, "received": received.decode()}))
"""


async def as_nobody(path: Path) -> Message:
    """What a client running as ``nobody`` gets from the socket at ``path``."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", AS_NOBODY, str(path), stdout=subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(child.communicate(), GUARD)
    assert child.returncode == 0
    answer: Message = json.loads(out)
    return answer


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="becoming another user needs root")


class TestPeers:
    @needs_root
    async def test_a_peer_of_another_user_is_refused_before_anything_is_read(
        self, world: World
    ) -> None:
        server = await world.serve(await world.pool())
        # The directory (0700) and the socket (0600) alone would keep nobody
        # out; opened up here so that nobody can connect, and only the peer
        # check (SO_PEERCRED) stands in its way.
        os.chmod(world.dir, 0o711)
        os.chmod(server.path, 0o666)
        got = await as_nobody(server.path)
        assert (got["uid"], got["connected"]) == (NOBODY, True)
        assert got["received"] == ""  # not even an error: it was never read
        assert got["end"] in ("eof", "reset")
        assert server.clients == 0
        mine = await world.client(server, role=None)
        welcome, _ = await mine.hello("read")  # the same socket, for this user
        assert welcome["type"] == "welcome"

    @needs_root
    async def test_without_the_peer_check_that_peer_would_have_been_served(
        self, world: World, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The test above is the peer check's, not the file modes': with the
        # check off and the same modes, the other user is welcomed.
        monkeypatch.setattr(control, "_same_user", lambda transport: True)
        server = await world.serve(await world.pool())
        os.chmod(world.dir, 0o711)
        os.chmod(server.path, 0o666)
        got = await as_nobody(server.path)
        assert got["received"].startswith('{"type":"welcome"')

    async def test_tcp_without_a_token_or_with_a_wrong_one_is_refused(self, world: World) -> None:
        pool = await world.pool()
        server = await world.serve(pool, tcp=("127.0.0.1", 0))
        assert server.address is not None
        hello = {"hello": "wpool", "version": 1, "role": "control"}
        for token, answer in (
            (None, error("auth", "a token is needed over TCP")),
            ("guess", error("auth", "wrong token")),
            (7, error("auth", "wrong token")),
            ("ü", error("auth", "wrong token")),
        ):
            client = await Client.tcp(server.address)
            world.clients.append(client)
            client.send(hello if token is None else {**hello, "token": token})
            assert await client.rest() == [answer]
        assert server.clients == 0

    async def test_tcp_with_the_token_is_welcomed_and_the_token_file_is_private(
        self, world: World
    ) -> None:
        pool = await world.pool()
        server = await world.serve(pool, tcp=("127.0.0.1", 0))
        assert server.address is not None
        assert server.token_path is not None
        assert server.address[0] == "127.0.0.1"
        assert server.address[1] > 0
        assert server.token_path == world.dir / "svc.token"
        assert stat.S_IMODE(os.stat(server.token_path).st_mode) == 0o600
        token = server.token_path.read_text().strip()
        assert len(token) >= 40
        client = await Client.tcp(server.address)
        world.clients.append(client)
        welcome, _ = await client.hello("control", token=token)
        assert welcome["role"] == "control"
        assert await client.call("resize", {"workers": 3}) == result({"target": 3})
        info = json.loads(server.info_path.read_text())
        assert info["tcp"] == f"127.0.0.1:{server.address[1]}"

    async def test_each_server_has_its_own_token_in_the_file_it_is_given(
        self, world: World
    ) -> None:
        first = await world.serve(await world.pool(name="a"), tcp=("127.0.0.1", 0))
        token_file = world.dir / "private" / "b.token"
        token_file.parent.mkdir(mode=0o700)
        second = await world.serve(
            await world.pool(name="b"), tcp=("127.0.0.1", 0), token_file=token_file
        )
        assert second.token_path == token_file
        assert first.token_path is not None
        assert first.token_path.read_text() != token_file.read_text()
        second.close()
        await second.wait_closed()
        assert not token_file.exists()

    @pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "localhost", "10.0.0.1"])
    async def test_tcp_off_the_loopback_interface_is_refused(self, world: World, host: str) -> None:
        pool = await world.pool()
        message = (
            rf"^tcp address must be a loopback address \(127\.0\.0\.0/8 or ::1\), got '{host}'$"
        )
        with pytest.raises(ValueError, match=message):
            await pool.serve(world.dir / "svc.sock", tcp=(host, 0))
        assert list(world.dir.iterdir()) == []

    @pytest.mark.parametrize(
        ("kwargs", "kind", "message"),
        [
            ({"token_file": "t"}, ValueError, r"^token_file is only used with tcp$"),
            (
                {"tcp": ("127.0.0.1", 70000)},
                ValueError,
                r"^tcp port must be from 0 to 65535, got 70000$",
            ),
            (
                {"tcp": "127.0.0.1:80"},
                TypeError,
                r"^tcp must be a \(host, port\) tuple or None, got '127\.0\.0\.1:80'$",
            ),
            ({"tcp": ("127.0.0.1", "80")}, TypeError, r"^tcp port must be an int, got '80'$"),
        ],
    )
    async def test_bad_serve_arguments_are_named(
        self, world: World, kwargs: Message, kind: type[Exception], message: str
    ) -> None:
        pool = await world.pool()
        with pytest.raises(kind, match=message):
            await pool.serve(world.dir / "svc.sock", **kwargs)


# --- the socket and its files -------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


class TestFiles:
    async def test_by_default_the_socket_is_under_xdg_runtime_dir_with_its_info_file(
        self, world: World, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(world.dir))
        pool = await world.pool(name="svc")
        server = await pool.serve()
        world.servers.append(server)
        directory = world.dir / "wpool"
        assert server.path == directory / "svc.sock"
        assert mode(directory) == 0o700
        assert stat.S_ISSOCK(os.lstat(server.path).st_mode)
        assert mode(server.path) == 0o600
        assert server.info_path == directory / "svc.json"
        assert mode(server.info_path) == 0o600
        info = json.loads(server.info_path.read_text())
        started = info.pop("started")
        assert isinstance(started, float)
        assert started > 1.6e9
        assert info == {
            "name": "svc",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "socket": str(server.path),
            "tcp": None,
        }
        assert (server.address, server.token_path) == (None, None)
        client = await world.client(server)
        assert client.messages[0]["type"] == "welcome"

    async def test_without_xdg_runtime_dir_it_is_under_tmp_for_this_user(
        self, world: World, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        name = f"test-{uuid.uuid4().hex[:12]}"
        server = await world.serve(await world.pool(name=name), path=None)
        assert server.path == Path(f"/tmp/wpool-{os.geteuid()}/{name}.sock")
        assert mode(server.path.parent) == 0o700
        server.close()
        await server.wait_closed()
        assert not server.path.exists()
        assert not server.info_path.exists()

    async def test_a_directory_open_to_others_is_refused(self, world: World) -> None:
        directory = world.dir / "open"
        directory.mkdir()
        os.chmod(directory, 0o755)
        pool = await world.pool()
        with pytest.raises(
            PoolError, match=rf"^socket directory {directory} must have mode 0700, got 0755$"
        ):
            await pool.serve(directory / "svc.sock")
        assert list(directory.iterdir()) == []

    @needs_root
    async def test_a_directory_of_another_user_is_refused(self, world: World) -> None:
        directory = world.dir / "theirs"
        directory.mkdir(mode=0o700)
        os.chown(directory, NOBODY, NOBODY)
        pool = await world.pool()
        message = (
            rf"^socket directory {directory} belongs to uid {NOBODY}, not to this process's uid 0$"
        )
        with pytest.raises(PoolError, match=message):
            await pool.serve(directory / "svc.sock")

    async def test_a_stale_socket_is_replaced_with_the_files_beside_it(self, world: World) -> None:
        path = world.dir / "svc.sock"
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(path))
        dead.close()  # as a service that died: the file stays, nothing listens
        (world.dir / "svc.json").write_text('{"pid": 1}')
        (world.dir / "svc.token").write_text("old")
        server = await world.serve(await world.pool(), path=path)
        client = await world.client(server)
        assert client.messages[0]["type"] == "welcome"
        assert json.loads(server.info_path.read_text())["pid"] == os.getpid()
        assert sorted(p.name for p in world.dir.iterdir()) == ["svc.json", "svc.sock"]

    async def test_a_live_socket_is_never_stolen(self, world: World) -> None:
        first = await world.serve(await world.pool(name="first"), path=world.dir / "svc.sock")
        other = await world.pool(name="second")
        with pytest.raises(PoolError, match=rf"^a live service already serves on {first.path}$"):
            await other.serve(first.path)
        client = await world.client(first)
        assert client.messages[0]["pool"]["name"] == "first"
        assert json.loads(first.info_path.read_text())["name"] == "first"

    async def test_a_file_that_is_not_a_socket_is_never_replaced(self, world: World) -> None:
        path = world.dir / "svc.sock"
        path.write_text("mine")
        pool = await world.pool()
        with pytest.raises(
            PoolError, match=rf"^{path} exists and is not a socket: not replacing it$"
        ):
            await pool.serve(path)
        assert path.read_text() == "mine"

    async def test_a_pool_name_that_cannot_be_a_file_name_is_refused(self, world: World) -> None:
        pool = await world.pool(name="a/b")
        with pytest.raises(
            ValueError, match=r"^pool name must be usable as a file name for its socket, got 'a/b'$"
        ):
            await pool.serve()

    async def test_a_path_too_long_for_a_unix_socket_is_refused(self, world: World) -> None:
        path = world.dir / ("x" * 120)
        with pytest.raises(
            ValueError, match=r"^socket path is too long for a Unix socket \(at most 107 bytes\): "
        ):
            await (await world.pool()).serve(path)


# --- lifecycle ---------------------------------------------------------------------


class TestLifecycle:
    async def test_the_server_stops_with_the_pool_after_the_last_event_and_cleans_up(
        self, world: World
    ) -> None:
        pool = await world.pool()
        server = await world.serve(pool, tcp=("127.0.0.1", 0))
        files = [server.path, server.info_path, server.token_path]
        reader = await world.client(server, "read")
        controller = await world.client(server)
        await controller.call("shutdown")
        for client in (reader, controller):
            rest = await client.rest()
            assert rest[-1]["type"] == "PoolStopped"
        await asyncio.wait_for(server.wait_closed(), GUARD)
        assert server.closed
        assert [f for f in files if f is not None and f.exists()] == []

    async def test_a_server_nobody_attached_to_stops_with_the_pool_too(self, world: World) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        await pool.shutdown()
        await asyncio.wait_for(server.wait_closed(), GUARD)
        assert list(world.dir.iterdir()) == []

    async def test_closing_the_server_leaves_the_pool_running(self, world: World) -> None:
        pool = await world.pool()
        server = await world.serve(pool)
        client = await world.client(server)
        server.close()
        await client.rest()  # the end of the stream
        await asyncio.wait_for(server.wait_closed(), GUARD)
        assert list(world.dir.iterdir()) == []
        assert pool.phase is PoolPhase.RUNNING
        again = await world.serve(pool)  # the same path, once more
        assert (await world.client(again)).messages[0]["type"] == "welcome"

    async def test_async_with_closes_the_server(self, world: World) -> None:
        pool = await world.pool()
        async with await pool.serve(world.dir / "svc.sock") as server:
            assert server.path.exists()
        assert server.closed
        assert not server.path.exists()

    async def test_a_stopped_pool_cannot_be_served(self, world: World) -> None:
        pool = await world.pool()
        await pool.shutdown()
        with pytest.raises(PoolError, match=r"^cannot serve: pool is stopped$"):
            await pool.serve(world.dir / "svc.sock")

    async def test_a_server_starts_once(self, world: World) -> None:
        server = await world.serve(await world.pool())
        with pytest.raises(PoolError, match=r"^the control server was already started$"):
            await server.start()

    def test_a_loop_that_ends_without_a_shutdown_leaves_no_files(self, sock_dir: Path) -> None:
        # asyncio.run cancels what is left when main returns: the server's task
        # removes its socket and files as it is cancelled.
        script = f"""
import asyncio
from pool import Pool

async def noop(job, ctx):
    pass

async def main():
    pool = Pool(noop, name="svc")
    await pool.start()
    server = await pool.serve({str(sock_dir / "svc.sock")!r})
    print(sorted(p.name for p in server.path.parent.iterdir()))

asyncio.run(main())
"""
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=GUARD,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == "['svc.json', 'svc.sock']\n"
        assert list(sock_dir.iterdir()) == []


# --- many clients ---------------------------------------------------------------------


class Lazy:
    """A client that says hello, reads its welcome and snapshot, then reads nothing for long."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.left = b""

    @classmethod
    async def hello(cls, path: Path) -> tuple[Lazy, Message]:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, str(path))
        await loop.sock_sendall(sock, b'{"hello": "wpool", "version": 1, "role": "read"}\n')
        lazy = cls(sock)
        data = b""
        while data.count(b"\n") < 2:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), GUARD)
            assert chunk, "closed before its snapshot"
            data += chunk
        welcome, snapshot, lazy.left = data.split(b"\n", 2)
        assert json.loads(welcome)["type"] == "welcome"
        return lazy, json.loads(snapshot)

    async def read_at_last(self) -> Client:
        """Start reading: a client over the same socket, with what was read already."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=LIMIT)
        reader.feed_data(self.left)  # what came with the snapshot, read already
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await loop.create_unix_connection(lambda: protocol, sock=self.sock)
        return Client(reader, asyncio.StreamWriter(transport, protocol, reader, loop))


class TestManyClients:
    async def test_twenty_clients_and_one_that_never_reads(self, world: World) -> None:
        # 19 readers keep up; the 20th reads nothing until the jobs are done.
        # The readers get every event in order; the pool and they never wait
        # for it; once it reads, it gets what it had, a gap marker and a
        # snapshot, then the events after the snapshot.
        pool = await world.pool(workers=4)
        outbox = 64 * 1024
        server = await world.serve(pool, client_buffer=outbox, flush_interval=0.01)
        readers = [await world.client(server, "read") for _ in range(19)]
        lazy, lazy_snapshot = await Lazy.hello(server.path)
        assert server.clients == 20
        # What the non-reader can hold: the kernel's buffer, the transport's
        # (64 KiB) and its outbox. Twice that in events (a job makes three, of
        # 100 bytes or more each), so that it surely overflows.
        kernel = int(Path("/proc/sys/net/core/wmem_default").read_text())
        wave = 50
        jobs = wave * math.ceil(2 * (kernel + 64 * 1024 + outbox) / (300 * wave))
        for first in range(0, jobs, wave):
            for number in range(first, first + wave):
                pool.submit_nowait(Job(id=f"j{number}", payload=b"ok"))
            last = f"j{first + wave - 1}"
            await asyncio.gather(*(r.event("JobSucceeded", job_id=last) for r in readers))
        assert pool.stats().succeeded == jobs

        late = await lazy.read_at_last()
        world.clients.append(late)
        gap = await late.until(lambda m: m["type"] == "gap")
        before_gap = late.messages[:-1]
        assert_follows(lazy_snapshot["snapshot"]["seq"], before_gap)
        snapshot = await late.read()
        assert snapshot["type"] == "snapshot"
        resync = wire.snapshot_from_dict(snapshot["snapshot"])
        assert gap == {"type": "gap", "missed": resync.seq - before_gap[-1]["seq"]}
        assert resync.stats.succeeded == jobs

        await pool.shutdown()
        after = await late.rest()
        assert_follows(resync.seq, after)
        assert after[-1]["type"] == "PoolStopped"
        for reader in readers:
            await reader.rest()
            assert not [m for m in reader.messages if not m["type"][0].isupper()][2:]
            assert_follows(reader.messages[1]["snapshot"]["seq"], reader.messages[2:])
            assert reader.messages[-1] == after[-1]
            succeeded = [m for m in reader.messages if m["type"] == "JobSucceeded"]
            assert len(succeeded) == jobs

    async def test_a_server_that_falls_behind_the_pool_resyncs_every_client(
        self, world: World
    ) -> None:
        pool = await world.pool()
        server = await world.serve(pool, events_buffer=10)
        clients = [await world.client(server, "read") for _ in range(3)]
        for number in range(30):  # at once: more than the server's subscription holds
            pool.submit_nowait(Job(id=f"j{number}", payload=b"ok"))
        for client in clients:
            gap = await client.until(lambda m: m["type"] == "gap")
            before = client.messages[2:-1]
            start = client.messages[1]["snapshot"]["seq"]
            assert_follows(start, before)
            assert len(before) == 10
            snapshot = wire.snapshot_from_dict((await client.read())["snapshot"])
            assert gap["missed"] == snapshot.seq - start - 10
        pool.submit_nowait(Job(id="after", payload=b"ok"))
        for client in clients:
            await client.event("JobSucceeded", job_id="after")
            seq = client.messages[-1]["seq"]
            resynced = client.messages.index(next(m for m in client.messages if m["type"] == "gap"))
            assert_follows(
                client.messages[resynced + 1]["snapshot"]["seq"], client.messages[resynced + 2 :]
            )
            assert seq == pool.snapshot().seq


# --- a real service in another process ----------------------------------------------


async def attached(
    world: World, services: list[Service], role: str, *args: str
) -> tuple[Service, Client]:
    """A service on ``svc.sock`` in the test's directory, and a client it has welcomed."""
    service = await Service.start(world.dir / "svc.sock", "--word-time", "0.001", *args)
    services.append(service)
    client = await Client.unix(service.socket)
    world.clients.append(client)
    welcome, _ = await client.hello(role)
    assert welcome["pool"]["pid"] == service.process.pid
    return service, client


class TestService:
    async def test_killed_mid_stream_its_clients_see_the_end_and_its_socket_is_taken_over(
        self, world: World, services: list[Service]
    ) -> None:
        service, client = await attached(world, services, "read", "--feed", "200")
        path = service.socket
        for _ in range(3):
            await client.event("JobSucceeded")  # the stream flows
        service.process.kill()
        await client.rest()  # the end of the stream, not a hang
        assert await service.process.wait() == -signal.SIGKILL
        assert path.exists()  # left behind, stale: a new service takes it over
        server = await world.serve(await world.pool(), path=path)
        assert (await world.client(server)).messages[0]["pool"]["pid"] == os.getpid()

    async def test_its_jobs_come_over_tcp_and_sigterm_stops_it_gracefully(
        self, world: World, services: list[Service]
    ) -> None:
        service, client = await attached(world, services, "read")
        other = await world.pool()
        path = service.socket
        with pytest.raises(PoolError, match=rf"^a live service already serves on {path}$"):
            await other.serve(path)  # never stolen from a live service
        answers = await service.send_jobs("hello brave world", "fail now")
        assert sorted(answers) == [
            "accepted job-1",
            "accepted job-2",
            "failed job-2 job 'job-2' failed: ValueError: asked to fail: 'fail now'",
            "ok job-1 world brave hello",
        ]
        await client.event("JobProgressed", job_id="job-1", fraction=1.0, message="world")
        service.process.send_signal(signal.SIGTERM)
        rest = await client.rest()
        assert rest[-1]["type"] == "PoolStopped"
        status, out = await service.wait()
        assert (status, out) == (
            0,
            "shutting down...\nstopped: 0 finished, 0 cancelled, 0 not started, 0 abandoned\n",
        )
        assert list(world.dir.iterdir()) == []

    async def test_a_shutdown_over_the_socket_ends_the_service(
        self, world: World, services: list[Service]
    ) -> None:
        service, client = await attached(world, services, "control")
        answer = await client.call("submit", {"jobs": [{"id": "a", "payload": "one two"}]})
        assert answer == result({"accepted": ["a"], "rejected": []})
        assert await client.call("shutdown") == result({"begun": True}, 2)
        rest = await client.rest()
        assert rest[-1]["type"] == "PoolStopped"
        status, out = await service.wait()
        assert status == 0
        assert out.endswith("not started, 0 abandoned\n")
        assert list(world.dir.iterdir()) == []
