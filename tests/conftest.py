"""Markers by place, so a subset can be chosen without editing every test.

``e2e`` marks whole-system runs (tests/e2e/), ``browser`` the headless-Chromium tests and
``tmux`` the real-terminal tests; ``make test-fast`` leaves those out. Tests under
tests/fleet/ are ``fleet`` (real nats-server) and those under tests/systemd_real/ are
``systemd`` (a real systemd in a private root: ``make test-systemd``). A test may add
``slow`` itself when it takes more than a few seconds for reasons of its own.
"""

from __future__ import annotations

import pytest

_BY_FILE = {"test_browser.py": "browser", "test_menu_tmux.py": "tmux"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path
        if "e2e" in path.parts:
            item.add_marker(pytest.mark.e2e)
        if "fleet" in path.parts:
            item.add_marker(pytest.mark.fleet)
        if "systemd_real" in path.parts:
            item.add_marker(pytest.mark.systemd)
        marker = _BY_FILE.get(path.name)
        if marker is not None:
            item.add_marker(getattr(pytest.mark, marker))
