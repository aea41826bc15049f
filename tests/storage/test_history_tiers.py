"""Hourly aggregates: a range in whole-hour steps reads them and says exactly what the
minute rows say; an older database without them is upgraded and filled in steps, and its
ranges are right before, during and after."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

from storage_helpers import T0, Clock

from watchkeeper.storage import SyncStorage
from watchkeeper.storage.migrations import migrate

HOUR = 3600
DAY = 86400
START = int(T0) // DAY * DAY  # a day boundary, so hour buckets are predictable
NOW = START + 6 * DAY + 1800


def minute_rows(metric_id: int, days: int) -> list[tuple[int, int, float, float, float, int]]:
    """Minute aggregates for ``days`` days, with the third day's afternoon missing (a
    daemon that was down) and uneven counts (a collector that missed samples)."""
    rows = []
    for ts in range(START, START + days * DAY, 60):
        if START + 2 * DAY + 12 * HOUR <= ts < START + 2 * DAY + 18 * HOUR:
            continue
        avg = (ts // 60) % 97
        count = 12 if ts % 7 else 5
        rows.append((metric_id, ts, avg - 1.0, float(avg), avg + 2.0, count))
    return rows


def seed(path: Path, version: int | None = None) -> None:
    """Six days of minute aggregates in a database at ``version`` (the latest if None)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        if version is None:
            migrate(conn)
        else:
            migrate(conn, target=version)
        conn.execute("BEGIN")
        conn.execute("INSERT INTO metric (id, name) VALUES (1, 'cpu.percent')")
        conn.executemany("INSERT INTO sample_1m VALUES (?, ?, ?, ?, ?, ?)", minute_rows(1, 6))
        conn.execute("INSERT INTO meta VALUES ('rollup_until', ?)", (str(START + 6 * DAY),))
        conn.execute("COMMIT")
    finally:
        conn.close()


def by_minutes(step: int, start: int, end: int) -> dict[int, tuple[float, float, float, int]]:
    """What the minute rows say for buckets of ``step`` (the reference)."""
    acc: dict[int, list[float]] = {}
    for _, ts, low, avg, high, count in minute_rows(1, 6):
        if not start <= ts < end:
            continue
        bucket = ts // step * step
        got = acc.setdefault(bucket, [math.inf, 0.0, -math.inf, 0])
        got[0] = min(got[0], low)
        got[1] += avg * count
        got[2] = max(got[2], high)
        got[3] += count
    return {ts: (a[0], a[1] / a[3], a[2], int(a[3])) for ts, a in acc.items()}


def same(db: SyncStorage, step: int, start: int, end: int) -> None:
    got = {
        int(p.ts): (p.min, p.avg, p.max, p.count)
        for p in db.metric_range("cpu.percent", start, end, step)
    }
    want = by_minutes(step, start, end)
    assert set(got) == set(want)
    for ts, (low, avg, high, count) in want.items():
        assert got[ts][0] == low and got[ts][2] == high and got[ts][3] == count, ts
        assert math.isclose(got[ts][1], avg, rel_tol=1e-12), ts


def hourly_rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM sample_1h").fetchone()[0])
    finally:
        conn.close()


def test_whole_hour_steps_read_hourly_rows_that_match_the_minutes(tmp_path: Path) -> None:
    path = tmp_path / "watchkeeper.db"
    seed(path)
    clock = Clock(NOW)
    with SyncStorage(path, clock=clock) as db:
        for _ in range(5):
            db.maintain()
        # Every whole hour before the minute watermark is folded, the gap has none.
        assert hourly_rows(path) == 6 * 24 - 6
        # Unaligned start and end: partial first and last hours come from minute rows.
        for step in (HOUR, 2 * HOUR, 6 * HOUR):
            same(db, step, START + 1234, START + 6 * DAY)
        gap = db.metric_range("cpu.percent", START + 2 * DAY, START + 3 * DAY, 2 * HOUR)
        assert [int(p.ts - START - 2 * DAY) // HOUR for p in gap] == [0, 2, 4, 6, 8, 10, 18, 20, 22]


def test_hourly_rows_are_what_is_read(tmp_path: Path) -> None:
    """Changing an hourly row changes the answer: the range really reads the hourly tier."""
    path = tmp_path / "watchkeeper.db"
    seed(path)
    with SyncStorage(path, clock=Clock(NOW)) as db:
        for _ in range(5):
            db.maintain()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("UPDATE sample_1h SET max = 1000 WHERE ts = ?", (START + 5 * HOUR,))
        conn.close()
        (point,) = db.metric_range("cpu.percent", START + 4 * HOUR, START + 6 * HOUR, 2 * HOUR)
        assert point.max == 1000
        minutes = db.metric_range("cpu.percent", START + 5 * HOUR, START + 6 * HOUR, 61 * 60)
        assert max(p.max for p in minutes) < 1000  # not whole hours: the minute rows


def test_an_older_database_is_upgraded_and_filled_in_steps(tmp_path: Path) -> None:
    path = tmp_path / "watchkeeper.db"
    seed(path, version=4)
    with SyncStorage(path, clock=Clock(NOW)) as db:
        assert db.schema_version() == 5
        same(db, 2 * HOUR, START, START + 6 * DAY)  # before any pass: minute rows
        db.maintain()
        filled = hourly_rows(path)
        assert 0 < filled < 6 * 24 - 6  # one bounded step, not the whole history at once
        same(db, 2 * HOUR, START, START + 6 * DAY)  # half filled: both tiers, exact
        for _ in range(4):
            db.maintain()
        assert hourly_rows(path) == 6 * 24 - 6
        same(db, 2 * HOUR, START, START + 6 * DAY)


def test_retention_removes_hourly_rows_with_the_minutes(tmp_path: Path) -> None:
    path = tmp_path / "watchkeeper.db"
    seed(path)
    clock = Clock(NOW)
    with SyncStorage(path, clock=clock) as db:
        for _ in range(5):
            db.maintain()
        clock.now = START + 30 * DAY + 3 * DAY + 1800  # three days past the month
        report = db.maintain()
        assert report.deleted["sample_1h"] == 3 * 24 - 6
        assert hourly_rows(path) == 3 * 24
