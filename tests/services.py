"""``examples/service.py`` in a child process, for the tests that attach to a real service."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

SERVICE = Path(__file__).resolve().parent.parent / "examples" / "service.py"

GUARD = 20.0
"""Seconds any one wait on the service may take before the test fails (never a timer)."""


class Service:
    """``examples/service.py`` running in a child process."""

    def __init__(self, process: asyncio.subprocess.Process, socket_path: Path, port: int) -> None:
        self.process = process
        self.socket = socket_path
        self.port = port
        """The TCP port it takes jobs on."""

    @classmethod
    async def start(cls, socket_path: Path, *args: str) -> Service:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SERVICE),
            "--socket",
            str(socket_path),
            "--port",
            "0",
            *args,
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        port = 0
        async with asyncio.timeout(GUARD):
            while (line := (await process.stdout.readline()).decode()) != "ready\n":
                assert line, "the service ended before it was ready"
                if " jobs on " in line:
                    port = int(line.split(" jobs on ", 1)[1].split(",")[0].rsplit(":", 1)[1])
        return cls(process, socket_path, port)

    async def send_jobs(self, *lines: str) -> list[str]:
        """Send job lines to the service's TCP port; returns what it answers for each."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write("".join(f"{line}\n" for line in lines).encode())
        writer.write_eof()
        async with asyncio.timeout(GUARD):
            answers = (await reader.read()).decode().splitlines()
        writer.close()
        return answers

    async def wait(self) -> tuple[int, str]:
        """Its exit status and what it printed after ``ready``."""
        assert self.process.stdout is not None
        async with asyncio.timeout(GUARD):
            out = await self.process.stdout.read()
            return await self.process.wait(), out.decode()

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
