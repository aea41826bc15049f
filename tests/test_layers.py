"""The layer contract itself: it breaks when a module imports upward or in a circle.

The contract lives in pyproject.toml (``[tool.importlinter]``) and ``make lint`` runs it
with ``lint-imports``. These tests run the same contract on a copy of the package with a
module planted in it, so they show the contract catches what it promises to catch (an
import at the top of a module, one inside a function and one under ``if TYPE_CHECKING``),
and then on the real tree, which keeps it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "watchkeeper"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e '.[dev]')"
)

UPWARD = '''"""Planted by the test: the bottom layer reaching up three ways."""

from typing import TYPE_CHECKING

from watchkeeper.cli import app

if TYPE_CHECKING:
    from watchkeeper.runner import run_system


def later() -> object:
    from watchkeeper.web import server

    return server
'''


def copy_tree(tmp_path: Path) -> Path:
    """A copy of the package and the contract in ``tmp_path``; returns its ``src``."""
    src = tmp_path / "src"
    shutil.copytree(PACKAGE, src / "watchkeeper", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return src


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run the contract in ``root``/pyproject.toml on the package in ``root``/src (and
    only on it: the import path points there, and nothing is cached)."""
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "COLUMNS": "300"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "pyproject.toml"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_upward_import_breaks_the_layers_however_it_is_written(tmp_path: Path) -> None:
    src = copy_tree(tmp_path)
    (src / "watchkeeper" / "model" / "_planted.py").write_text(UPWARD, encoding="utf-8")

    result = lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "watchkeeper.model is not allowed to import watchkeeper.cli" in out
    assert "watchkeeper.model._planted -> watchkeeper.cli" in out  # at the top
    assert "watchkeeper.model._planted -> watchkeeper.runner" in out  # under TYPE_CHECKING
    assert "watchkeeper.model._planted -> watchkeeper.web.server" in out  # in a function


def test_a_circle_between_sibling_modules_breaks_the_contract(tmp_path: Path) -> None:
    src = copy_tree(tmp_path)
    planted = src / "watchkeeper" / "model" / "_circle"
    planted.mkdir()
    (planted / "__init__.py").write_text('"""Planted by the test."""\n', encoding="utf-8")
    (planted / "first.py").write_text("from watchkeeper.model._circle import second\n")
    (planted / "second.py").write_text(
        "def later() -> None:\n    from watchkeeper.model._circle import first\n"
    )

    result = lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "No cycles are allowed in watchkeeper.model._circle" in out


def test_the_tree_keeps_the_contract() -> None:
    result = lint_imports(ROOT)

    assert result.returncode == 0, result.stdout + result.stderr
