"""Fixtures for the storage tests (helpers live in ``storage_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import Clock

from watchkeeper.storage import SyncStorage


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path, clock: Clock) -> Iterator[SyncStorage]:
    storage = SyncStorage(tmp_path / "watchkeeper.db", clock=clock).open()
    try:
        yield storage
    finally:
        storage.close()
