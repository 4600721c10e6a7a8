from __future__ import annotations

import asyncio

import pytest

from tests.loops import LOOP_KINDS, EagerLoopPolicy


@pytest.fixture(scope="session", params=LOOP_KINDS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    """``default``, then ``eager`` where Python has ``asyncio.eager_task_factory``."""
    kind: str = request.param
    return kind


@pytest.fixture(scope="session")
def event_loop_policy(loop_kind: str) -> asyncio.AbstractEventLoopPolicy:
    """Every async test of the pool runs on each kind of loop in :data:`LOOP_KINDS`."""
    if loop_kind == "eager":
        return EagerLoopPolicy()
    return asyncio.get_event_loop_policy()
