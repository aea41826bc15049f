"""The in-memory chart window: columns of numbers of a fixed size, the same answers as
one dict per point had, however many samples the hub has seen."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest

from watchkeeper.config import build_settings
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.message import Message
from watchkeeper.model.metrics import (
    CpuMetrics,
    DiskIO,
    DiskMetrics,
    MemoryMetrics,
    MetricsSample,
)
from watchkeeper.orchestrator import Orchestrator
from watchkeeper.web.chart_ring import ChartRing
from watchkeeper.web.feed import SERIES, chart_point
from watchkeeper.web.live import LiveHub

WINDOW = 720
TWO_HOURS_AT_1S = 7200
#: What the hub may keep on top of its fixed window after two hours of samples: a dict per
#: point was about 350 bytes each (250 KB for the window).
GROWTH_BUDGET = 16 * 1024


def sample(i: int) -> MetricsSample:
    """A sample whose chart values all differ from one sample to the next; every third
    has no disk I/O rate (``None`` in the chart)."""
    return MetricsSample(
        timestamp=1_000_000.0 + i,
        host="test",
        cpu=CpuMetrics(count=2, percent=(i % 1000) / 10 + 0.125),
        memory=MemoryMetrics(
            total_bytes=100,
            available_bytes=50,
            used_bytes=50,
            percent=40.0 + i % 17,
            swap_total_bytes=100,
            swap_used_bytes=1,
            swap_percent=1.0,
        ),
        disks=DiskMetrics(
            io=(DiskIO(device="sda", read_bytes_per_s=None if i % 3 == 0 else float(i)),)
        ),
    )


def hub_for(tmp_path: Path) -> LiveHub:
    settings = build_settings({}, file_label="test", flags={"data_dir": str(tmp_path / "data")})
    orchestrator = Orchestrator(ConfigStore(settings, tmp_path / "watchkeeper.toml"))
    return LiveHub(orchestrator, history_points=WINDOW)


def metrics_message(i: int) -> Message:
    return Message(topic="metrics.sample", sender="sensor", value=sample(i))


def test_the_window_answers_what_the_last_points_were(tmp_path: Path) -> None:
    hub = hub_for(tmp_path)
    total = WINDOW * 2 + 37  # wrapped round more than once
    for i in range(total):
        hub.handle(metrics_message(i))
    expected = [chart_point(sample(i)) for i in range(total - WINDOW, total)]
    assert hub.points() == expected
    assert list(hub.points()[0]) == ["ts", *SERIES]
    columns = hub.columns()
    assert list(columns) == ["ts", *SERIES]
    for name in columns:
        assert columns[name] == [p[name] for p in expected]
    assert any(p["disk_read"] is None for p in hub.points())
    assert hub.stats()["points"] == WINDOW


def test_two_hours_of_samples_keep_the_window_at_its_fixed_size(tmp_path: Path) -> None:
    hub = hub_for(tmp_path)
    messages = [metrics_message(i) for i in range(TWO_HOURS_AT_1S)]
    hub.handle(messages[0])
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for message in messages[1:]:
            hub.handle(message)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(hub.points()) == WINDOW
    assert grown < GROWTH_BUDGET, f"the chart window grew {grown} bytes"


def test_ring_before_it_is_full_and_after() -> None:
    ring = ChartRing(3, ("a", "b"))
    assert len(ring) == 0 and ring.points() == [] and ring.columns() == {"ts": [], "a": [], "b": []}
    ring.append({"ts": 1.0, "a": 0.5, "b": None})
    ring.append({"ts": 2.0, "a": -1.0})  # an absent value is missing, like None
    assert ring.points() == [{"ts": 1.0, "a": 0.5, "b": None}, {"ts": 2.0, "a": -1.0, "b": None}]
    for t in (3.0, 4.0, 5.0):
        ring.append({"ts": t, "a": t, "b": t * 2})
    assert ring.columns() == {"ts": [3.0, 4.0, 5.0], "a": [3.0, 4.0, 5.0], "b": [6.0, 8.0, 10.0]}
    assert ring.nbytes == 3 * 3 * 8
    with pytest.raises(ValueError, match="at least one point"):
        ChartRing(0, ("a",))
