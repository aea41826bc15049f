"""Metric history: aggregates equal what the raw values say; retention removes only
what is due; ranges pick raw values or aggregates as documented."""

from __future__ import annotations

import math
import random
import sqlite3
import statistics
from pathlib import Path
from typing import Any

from storage_helpers import T0, Clock

from watchkeeper.storage import RetentionPolicy, SyncStorage

DAY = 86400.0


def write_series(
    db: SyncStorage, start: float, seconds: float, step: float, seed: int = 7
) -> dict[str, list[tuple[float, float]]]:
    """Samples every ``step`` seconds with three metrics; returns what was written."""
    rng = random.Random(seed)
    written: dict[str, list[tuple[float, float]]] = {"cpu.percent": [], "load.1m": [], "ones": []}
    ts = start
    while ts < start + seconds:
        values = {"cpu.percent": rng.uniform(0, 100), "load.1m": rng.gauss(1, 0.5), "ones": 1.0}
        db.write_sample(ts, values)
        for name, value in values.items():
            written[name].append((round(ts), value))
        ts += step
    return written


Bucket = tuple[float, float, float, int]


def expected_buckets(points: list[tuple[float, float]], size: int) -> dict[int, Bucket]:
    buckets: dict[int, list[float]] = {}
    for ts, value in points:
        buckets.setdefault(int(ts) // size * size, []).append(value)
    return {ts: (min(vs), statistics.fmean(vs), max(vs), len(vs)) for ts, vs in buckets.items()}


def assert_points_match(points: list[Any], expected: dict[int, Bucket]) -> None:
    got = {int(p.ts): (p.min, p.avg, p.max, p.count) for p in points}
    assert set(got) == set(expected)
    for ts, (low, avg, high, count) in expected.items():
        g_low, g_avg, g_high, g_count = got[ts]
        assert g_count == count, ts
        assert g_low == low and g_high == high, ts
        assert math.isclose(g_avg, avg, rel_tol=1e-12, abs_tol=1e-12), ts


def test_aggregates_equal_the_raw_values_they_replace(db: SyncStorage, clock: Clock) -> None:
    written = write_series(db, T0, 45 * 60, 5)
    clock.now = T0 + 45 * 60 + 30
    report = db.maintain()
    assert report.rolled_up_rows > 0
    # Move past the raw retention: the raw rows go, only aggregates can answer now.
    clock.advance(DAY + 3600)
    db.maintain()
    assert db.metric_range("cpu.percent", T0, T0 + 45 * 60, 5)[0].count > 1  # not raw any more
    for name, points in written.items():
        got = db.metric_range(name, T0 - 60, T0 + 3600, 60)
        assert_points_match(got, expected_buckets(points, 60))
        # Coarser steps combine whole minutes exactly (avg weighted by count).
        got = db.metric_range(name, T0 - 600, T0 + 3600, 300)
        assert_points_match(got, expected_buckets(points, 300))


def test_a_range_reads_aggregates_and_the_raw_tail_together(db: SyncStorage, clock: Clock) -> None:
    written = write_series(db, T0, 10 * 60, 5)
    clock.now = T0 + 10 * 60 + 15
    db.maintain()
    watermark = db.rollup_watermark()
    assert watermark is not None and T0 < watermark <= T0 + 10 * 60
    # Two more minutes arrive after the roll-up; they are still raw.
    written_tail = write_series(db, T0 + 10 * 60, 120, 5, seed=8)
    points = written["cpu.percent"] + written_tail["cpu.percent"]
    got = db.metric_range("cpu.percent", T0, T0 + 13 * 60, 60)
    assert_points_match(got, expected_buckets(points, 60))
    assert sum(p.count for p in got) == len(points)


def test_steps_under_a_minute_read_raw_values(db: SyncStorage, clock: Clock) -> None:
    written = write_series(db, T0, 300, 5)
    clock.now = T0 + 400
    db.maintain()
    got = db.metric_range("cpu.percent", T0, T0 + 300, 10)
    assert_points_match(got, expected_buckets(written["cpu.percent"], 10))


def test_a_short_step_outside_the_raw_window_falls_back_to_minutes(
    db: SyncStorage, clock: Clock
) -> None:
    written = write_series(db, T0, 300, 5)
    clock.now = T0 + 2 * DAY
    db.maintain()
    got = db.metric_range("cpu.percent", T0, T0 + 300, 5)
    assert_points_match(got, expected_buckets(written["cpu.percent"], 60))


def test_raw_retention_deletes_only_what_is_due(db: SyncStorage, clock: Clock) -> None:
    write_series(db, T0, 2 * 3600, 5)
    clock.now = T0 + DAY + 3600 + 20  # raw from the first hour is now past 24 h
    db.maintain()
    # Look at the raw table itself (its layout is documented in docs/storage.md).
    with sqlite3.connect(db.path) as conn:
        oldest, count = conn.execute(
            "SELECT min(ts), count(*) FROM sample JOIN metric ON metric.id = sample.metric_id"
            " WHERE metric.name = 'ones'"
        ).fetchone()
    assert oldest == T0 + 3600  # now - 24 h, floored to the minute: nothing newer went
    assert count == 3600 // 5
    # The aggregates still hold both hours.
    minutes = db.metric_range("ones", T0, T0 + 3 * 3600, 60)
    assert sum(p.count for p in minutes) == 2 * 3600 // 5


def test_aggregate_retention_deletes_only_what_is_due(tmp_path: Path, clock: Clock) -> None:
    policy = RetentionPolicy(raw_hours=1, aggregate_days=2)
    with SyncStorage(tmp_path / "w.db", clock=clock, retention=policy) as db:
        write_series(db, T0, 4 * 3600, 60)
        clock.now = T0 + 4 * 3600 + 20
        db.maintain()
        clock.now = T0 + 2 * DAY + 2 * 3600 + 20  # the first two hours of minutes are due
        db.maintain()
        minutes = db.metric_range("ones", T0, T0 + 5 * 3600, 60)
        assert min(p.ts for p in minutes) == T0 + 2 * 3600
        assert len(minutes) == 2 * 60
        assert db.metric_names() == ["cpu.percent", "load.1m", "ones"]
        clock.advance(DAY)
        db.maintain()
        assert db.metric_range("ones", T0, T0 + 5 * 3600, 60) == []
        # Names nothing refers to any more are dropped with their last value.
        assert db.metric_names() == []


def test_a_lagging_roll_up_keeps_raw_values_until_they_are_folded(
    db: SyncStorage, clock: Clock
) -> None:
    # 30 hours written while nothing rolled up (say the maintenance never ran).
    write_series(db, T0, 30 * 3600, 60)
    clock.now = T0 + 30 * 3600 + 20
    db.maintain()  # one pass folds at most 6 hours
    watermark = db.rollup_watermark()
    assert watermark is not None and watermark < clock.now - DAY
    raw = db.metric_range("ones", watermark - 60, T0 + 31 * 3600, 1)
    assert raw and raw[0].ts == watermark - 60, "raw values after the watermark must survive"
    for _ in range(6):
        db.maintain()
    assert db.rollup_watermark() == T0 + 30 * 3600
    minutes = db.metric_range("ones", T0, T0 + 31 * 3600, 60)
    assert sum(p.count for p in minutes) == 30 * 60


def test_names_are_interned_and_listed_by_prefix(db: SyncStorage) -> None:
    db.write_sample(T0, {"disk./.percent": 50.0, "disk./home.percent": 20.0, "cpu.percent": 3.0})
    db.write_sample(T0 + 5, {"disk./.percent": 51.0, "net.eth0.rx_bytes_per_s": float("nan")})
    assert db.metric_names("disk.") == ["disk./.percent", "disk./home.percent"]
    assert db.metric_names() == ["cpu.percent", "disk./.percent", "disk./home.percent"]
    assert db.metric_range("nope", T0, T0 + 60, 60) == []
