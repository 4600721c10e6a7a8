from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Textual reads these; a snapshot must not depend on the shell it runs in.
    # (TEXTUAL_SNAPSHOT_* belong to the snapshot plugin itself.)
    for name in list(os.environ):
        if name == "NO_COLOR" or (
            name.startswith("TEXTUAL_") and not name.startswith("TEXTUAL_SNAPSHOT")
        ):
            monkeypatch.delenv(name)
