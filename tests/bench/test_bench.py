"""Every benchmark runs once on a tiny size, so that none of them rots.

These check that each benchmark runs and reports well-formed lines, never
how fast anything is: timing belongs to ``make bench``, not to the tests.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bench.__main__ import SUITES, main
from bench.measure import TINY, Line, alternate, ratios

SECTIONS = {
    "dispatch": 7,
    "latency": 2,
    "shutdown": 2,
    "dashboard": 5,
    "memory": 1,
    "terminal": 2,
    "jobfile": 2,
    "service": 5,
    "celery": 2,
}
"""How many lines each benchmark prints."""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(SUITES))
async def test_each_benchmark_runs_once_and_reports_well_formed_lines(name: str) -> None:
    lines = await SUITES[name](TINY)
    assert len(lines) == SECTIONS[name]
    for line in lines:
        assert isinstance(line, Line)
        assert line.section == name
        assert line.name
        assert math.isfinite(line.value)
        assert line.unit in ("x", "", "ms", "MB", "/s", "%")
        assert (line.met is None) == (line.target == "")
        assert line.verdict in ("", "met", "MISSED")


class TestMeasure:
    async def test_alternate_rotates_the_order_and_keeps_each_contenders_figures(self) -> None:
        order: list[str] = []

        def contender(name: str, figure: float) -> Callable[[], Awaitable[float]]:
            async def run() -> float:
                order.append(name)
                return figure

            return run

        results = await alternate({"a": contender("a", 2.0), "b": contender("b", 1.0)}, rounds=3)
        assert order == ["a", "b", "b", "a", "a", "b"]
        assert results == {"a": [2.0, 2.0, 2.0], "b": [1.0, 1.0, 1.0]}
        assert ratios(results, "a", "b") == [2.0, 2.0, 2.0]


@pytest.mark.timeout(120)
def test_the_command_prints_the_table_and_writes_the_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "benchmarks.md"
    assert main(["--tiny", "--only", "shutdown", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| shutdown | idle pool of 4 workers shuts down |" in printed
    text = out.read_text()
    assert text.startswith("# Benchmarks\n")
    assert "- command: `python -m bench --tiny --only shutdown --out " in text
    assert "Python 3." in text
    assert printed.strip() in text
