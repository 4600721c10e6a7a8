"""Celery is an optional extra: without it, ``tui`` still imports and runs.

A child Python is started with a finder that refuses ``celery`` and
``kombu`` (as if the extra were not installed); in it the dashboard's
modules import, the Celery source can be built from events alone, and
``wpool-tui celery`` says what is missing instead of failing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK = textwrap.dedent(
    """
    import sys

    class NoCelery:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("celery", "kombu", "redis", "billiard"):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoCelery())
    """
)


def run_without_celery(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_dashboard_and_the_celery_source_import_without_celery() -> None:
    done = run_without_celery(
        """
        import tui.app, tui.cli, tui.sources.celery
        from tui.sources.celery import CelerySource
        source = CelerySource()
        source.feed({"type": "worker-online", "hostname": "a@h", "timestamp": 0.0})
        assert "a@h" in source.note
        assert not any(m.split(".")[0] in ("celery", "kombu") for m in sys.modules)
        print("ok")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"


def test_the_celery_command_says_what_is_missing() -> None:
    done = run_without_celery(
        """
        from tui.cli import main
        sys.exit(main(["celery", "--broker", "redis://127.0.0.1:1/0"]))
        """
    )
    assert done.returncode == 2
    assert done.stderr == (
        "wpool-tui celery: error: celery is not installed: pip install 'wpool-tui[celery]'\n"
    )
