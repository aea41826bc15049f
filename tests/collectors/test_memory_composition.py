"""Memory composition: page cache, buffers, slab and shared memory (tmpfs), read for real.

A file written to tmpfs is memory nobody can reclaim while it exists, though it is
counted as cache: the test writes one and watches ``shared_bytes`` carry it.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from watchkeeper.collectors import MemoryCollector
from watchkeeper.model.metrics import MetricsSample

SHM = Path("/dev/shm")
SIZE = 256 << 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux reports all four")
def test_every_part_is_reported_and_matches_psutil() -> None:
    mine = MemoryCollector().collect()
    vm = psutil.virtual_memory()
    for field in ("cached", "buffers", "slab", "shared"):
        value = getattr(mine, f"{field}_bytes")
        assert value is not None and value >= 0, field
        assert abs(value - getattr(vm, field)) < 256 << 20, field  # others move it a little
    flat = MetricsSample(timestamp=0, host="h", memory=mine).flat()
    assert flat["memory.shared_bytes"] == float(mine.shared_bytes or 0)


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and SHM.is_dir() and os.access(SHM, os.W_OK)),
    reason="needs a writable tmpfs at /dev/shm",
)
def test_a_file_in_tmpfs_shows_as_shared_memory() -> None:
    if shutil.disk_usage(SHM).free < 2 * SIZE:
        pytest.skip("not enough room in /dev/shm")
    collector = MemoryCollector()
    before = collector.collect()
    path = SHM / f"watchkeeper-test-{uuid.uuid4().hex}"
    try:
        with open(path, "wb") as file:
            for _ in range(SIZE >> 20):
                file.write(b"\x5a" * (1 << 20))
        during = collector.collect()
    finally:
        path.unlink(missing_ok=True)
    after = collector.collect()
    assert before.shared_bytes is not None and during.shared_bytes is not None
    assert during.shared_bytes - before.shared_bytes > SIZE * 3 // 4
    assert during.cached_bytes is not None and before.cached_bytes is not None
    assert during.cached_bytes - before.cached_bytes > SIZE // 2  # tmpfs pages are "cache"
    assert after.shared_bytes is not None
    assert during.shared_bytes - after.shared_bytes > SIZE * 3 // 4  # and gone with the file


class PartialPlatform:
    """A platform whose virtual_memory has no slab and no shared figure (macOS has none)."""

    def virtual_memory(self) -> Any:
        return SimpleNamespace(
            total=8 << 30, available=4 << 30, used=3 << 30, percent=50.0,
            cached=1 << 30, buffers=0,
        )  # fmt: skip

    def swap_memory(self) -> Any:
        return SimpleNamespace(total=0, used=0, percent=0.0, sin=0, sout=0)


def test_a_platform_without_a_part_leaves_it_out() -> None:
    mine = MemoryCollector(PartialPlatform()).collect()
    assert (mine.cached_bytes, mine.buffers_bytes) == (1 << 30, 0)
    assert mine.slab_bytes is None and mine.shared_bytes is None
    flat = MetricsSample(timestamp=0, host="h", memory=mine).flat()
    assert "memory.slab_bytes" not in flat and "memory.shared_bytes" not in flat
    assert flat["memory.cached_bytes"] == float(1 << 30)
