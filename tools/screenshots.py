"""Write the README's screenshots: the snapshot scenarios, saved as SVG in screenshots/.

Run with ``make screenshots``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from textual._doc import take_svg_screenshot

ROOT = Path(__file__).resolve().parent.parent
PICTURES = (
    "busy",
    "crashed",
    "shrinking",
    "countdown",
    "stopped",
    "job_detail_traceback",
    "log_filter",
)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)  # tracebacks show paths relative to here
    for name in list(os.environ):
        if name == "NO_COLOR" or name.startswith("TEXTUAL_"):
            del os.environ[name]
    from tests.snapshots.scenarios import SCENARIOS

    out = ROOT / "screenshots"
    out.mkdir(exist_ok=True)
    for name in PICTURES:
        scenario = SCENARIOS[name]()
        svg = take_svg_screenshot(
            app=scenario.app,
            press=scenario.press,
            terminal_size=scenario.size,
            run_before=scenario.run_before,
        )
        (out / f"{name}.svg").write_text(svg)
        print(f"screenshots/{name}.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
