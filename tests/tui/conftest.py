from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _signals_as_they_were() -> Iterator[None]:
    # wpool-tui run holds SIGINT, SIGTERM and SIGHUP until the program exits;
    # run in this process, it must not take ctrl+c away from pytest.
    before = {
        signum: signal.getsignal(signum)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)
