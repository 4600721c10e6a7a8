from __future__ import annotations

import pytest

from pool import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1000.0)
