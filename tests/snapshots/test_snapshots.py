"""Pictures of the dashboard in every state worth seeing (pytest-textual-snapshot).

Update the SVGs only with ``make snapshots-update``, and look at each changed
one before committing it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.snapshots.scenarios import SCENARIOS

SnapCompare = Callable[..., bool]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_snapshot(name: str, snap_compare: SnapCompare) -> None:
    scenario = SCENARIOS[name]()
    assert snap_compare(
        scenario.app,
        press=scenario.press,
        terminal_size=scenario.size,
        run_before=scenario.run_before,
    )
