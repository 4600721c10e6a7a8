"""Tests that ``pool`` stands alone: no UI imports, a tuple ``__all__``, and ``py.typed``."""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import pool

POOL_DIR = Path(pool.__file__).resolve().parent
ROOT = POOL_DIR.parent
FORBIDDEN = frozenset({"textual", "rich", "tui"})
POOL_FILES = sorted(POOL_DIR.rglob("*.py"))
SUBMODULES = sorted(f"pool.{m.name}" for m in pkgutil.iter_modules(pool.__path__))

_IMPORT_ALL = """
import importlib, pkgutil, sys
import pool
for module in pkgutil.iter_modules(pool.__path__):
    importlib.import_module("pool." + module.name)
print(" ".join(sorted(name for name in sys.modules if name.partition(".")[0] == "pool")))
print(" ".join(sorted({name.partition(".")[0] for name in sys.modules})))
"""


def forbidden_imports(source: str, filename: str = "<source>") -> list[str]:
    """Where ``source`` imports a forbidden package, as ``file:line: name``.

    Counts ``import x``, ``from x import y``, relative imports that climb out
    of ``pool`` (``from .. import tui``), and ``importlib.import_module`` or
    ``__import__`` with a literal name, wherever they are (under
    ``TYPE_CHECKING`` and inside functions too).
    """
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names = [node.module or ""]
            elif node.level >= 2:  # above pool/: a sibling top-level package
                names = [node.module] if node.module else [a.name for a in node.names]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                called in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                names = [first.value]
        line = getattr(node, "lineno", 0)
        found.extend(
            f"{filename}:{line}: {name}" for name in names if name.partition(".")[0] in FORBIDDEN
        )
    return found


class TestNoUiImports:
    def test_importing_every_pool_module_loads_no_ui_package(self) -> None:
        path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path}
        done = subprocess.run(
            [sys.executable, "-c", _IMPORT_ALL],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

        assert done.returncode == 0, done.stderr
        loaded_pool, loaded_top = (line.split() for line in done.stdout.splitlines())
        assert set(SUBMODULES) <= set(loaded_pool)  # the imports did happen
        assert not FORBIDDEN & set(loaded_top)

    def test_finds_every_module(self) -> None:
        names = {p.relative_to(POOL_DIR).as_posix() for p in POOL_FILES}

        assert {"__init__.py", "pool.py", "events.py", "bus.py", "job.py"} <= names

    @pytest.mark.parametrize("path", POOL_FILES, ids=lambda p: p.name)
    def test_no_source_file_imports_a_ui_package(self, path: Path) -> None:
        assert forbidden_imports(path.read_text(encoding="utf-8"), path.name) == []


class TestForbiddenImportsCheck:
    """The static check itself: it must see each way of importing."""

    @pytest.mark.parametrize(
        "source",
        [
            "import textual",
            "import rich.console",
            "import os, tui.app",
            "import textual.widgets as w",
            "from textual import on",
            "from tui.app import App",
            "from rich.text import Text",
            "from .. import tui",
            "from ..tui import app",
            "if TYPE_CHECKING:\n    from textual.app import App",
            "def f():\n    import rich\n",
            "importlib.import_module('textual.app')",
            "__import__('tui')",
        ],
    )
    def test_flags(self, source: str) -> None:
        assert len(forbidden_imports(source)) == 1

    @pytest.mark.parametrize(
        "source",
        [
            "import asyncio",
            "import textwrap",
            "import tuition",
            "from . import events",
            "from .tui import x",
            "from richer import y",
            "importlib.import_module(name)",
        ],
    )
    def test_passes(self, source: str) -> None:
        assert forbidden_imports(source) == []


class TestPublicSurface:
    def test_all_is_a_tuple(self) -> None:
        assert isinstance(pool.__all__, tuple)

    def test_every_name_in_all_exists(self) -> None:
        missing = [name for name in pool.__all__ if not hasattr(pool, name)]

        assert missing == []

    def test_all_has_no_duplicates(self) -> None:
        assert len(set(pool.__all__)) == len(pool.__all__)

    @pytest.mark.parametrize("module_name", SUBMODULES)
    def test_every_module_has_a_tuple_all_of_names_it_has(self, module_name: str) -> None:
        module = importlib.import_module(module_name)

        assert isinstance(module.__all__, tuple)
        assert [n for n in module.__all__ if not hasattr(module, n)] == []

    def test_ships_py_typed(self) -> None:
        assert (POOL_DIR / "py.typed").is_file()
        config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        assert "py.typed" in config["tool"]["setuptools"]["package-data"]["pool"]
