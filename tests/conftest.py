from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from pool import ManualClock
from tests.services import Service


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1000.0)


@pytest_asyncio.fixture
async def services() -> AsyncIterator[list[Service]]:
    """``examples/service.py`` processes a test started; killed at its end if still running."""
    started: list[Service] = []
    yield started
    for service in started:
        await service.kill()
