"""Fixtures for the plugin tests: plugins written as real files into a temporary plugins
directory."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """An empty plugins directory (it has no base_plugin.py: watchkeeper provides one)."""
    path = tmp_path / "plugins"
    path.mkdir()
    return path


@pytest.fixture
def write_plugin(plugin_dir: Path) -> Callable[[str, str], Path]:
    """``write_plugin("name", source)`` writes ``plugins/name.py`` (source dedented)."""

    def write(name: str, source: str) -> Path:
        path = plugin_dir / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    return write
