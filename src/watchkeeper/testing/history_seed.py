"""A metrics database with weeks of history, as a daemon sampling every few seconds and
the retention policy would have left it: one-minute aggregates for the older days, raw
samples for the last day, and gaps where nothing was recorded (the daemon was down).

Writing weeks of raw samples one by one would take minutes, and the raw rows would be
deleted by retention anyway; so the older days are written as the minute rows the roll-up
makes of them, the last day through the real write path, and then the real roll-up and
retention run until nothing is left to do (which fills the hourly aggregates too)::

    seed_history(path, now=time.time(), values={"cpu.percent": wave(40, 20)},
                 gaps=[(now - 10 * DAY, now - 9 * DAY)])
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchkeeper.storage import DB_FILENAME, SyncStorage

__all__ = ["DAY", "SeedReport", "seed_history", "seed_month", "wave"]

DAY = 86400
_MINUTE = 60
#: Raw samples go in through the real write path this many at a time.
_BATCH = 720

Values = Callable[[int], float]


@dataclass(frozen=True)
class SeedReport:
    """What was written: rows per kind, the raw window's start, the passes it took."""

    minute_rows: int
    raw_values: int
    raw_from: int
    passes: int


def wave(base: float, amplitude: float, period: float = DAY, phase: float = 0.0) -> Values:
    """A value that moves like a host's daily load: ``base`` plus a sine."""

    def value(ts: int) -> float:
        return max(0.0, base + amplitude * math.sin(2 * math.pi * ts / period + phase))

    return value


def _in_gap(ts: int, gaps: Sequence[tuple[float, float]]) -> bool:
    return any(low <= ts < high for low, high in gaps)


def seed_history(
    path: Path,
    *,
    now: float,
    values: Mapping[str, Values],
    days: float = 30,
    raw_hours: float = 24,
    interval: float = 5.0,
    gaps: Sequence[tuple[float, float]] = (),
    spread: float = 0.1,
) -> SeedReport:
    """Write ``days`` of history ending at ``now`` for each metric of ``values`` into the
    database at ``path`` (created if missing). Minute rows get min/max ``spread`` around
    the value; nothing is written inside ``gaps``. The older days start an hour inside
    the aggregate retention, so the first maintenance pass keeps them."""
    raw_from = int(now - raw_hours * 3600) // _MINUTE * _MINUTE + _MINUTE
    first = int(now - days * DAY) // _MINUTE * _MINUTE + 3600
    per_minute = max(1, round(_MINUTE / interval))
    minute_rows = 0
    with SyncStorage(path, clock=lambda: now) as db:
        db.write_sample(first, dict.fromkeys(values, 0.0))  # interns the names
        minute_rows = _write_minutes(db.path, values, first, raw_from, per_minute, gaps, spread)
        raw = _write_raw(db, values, raw_from, now, interval, gaps)
        # Each pass folds at most 6 hours of raw values and 2 days of minutes (and
        # always recomputes the last few minutes, so it never reports zero rows).
        passes = math.ceil(raw_hours / 6) + math.ceil(days / 2) + 2
        for _ in range(passes):
            db.maintain()
    return SeedReport(minute_rows=minute_rows, raw_values=raw, raw_from=raw_from, passes=passes)


def _write_minutes(
    path: Path,
    values: Mapping[str, Values],
    first: int,
    until: int,
    per_minute: int,
    gaps: Sequence[tuple[float, float]],
    spread: float,
) -> int:
    """The minute rows of ``[first, until)`` in one transaction, and the roll-up
    watermark at ``until`` (as if the roll-up had made them)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        ids = dict(conn.execute("SELECT name, id FROM metric"))
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM sample WHERE ts = ?", (first,))
        written = 0
        minutes = [ts for ts in range(first, until, _MINUTE) if not _in_gap(ts, gaps)]
        for name, value in values.items():
            rows = []
            for ts in minutes:
                avg = value(ts)
                rows.append((ids[name], ts, avg * (1 - spread), avg, avg * (1 + spread)))
            conn.executemany(
                f"INSERT OR REPLACE INTO sample_1m VALUES (?, ?, ?, ?, ?, {per_minute})", rows
            )
            written += len(rows)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('rollup_until', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(until),),
        )
        conn.execute("COMMIT")
        return written
    finally:
        conn.close()


def _write_raw(
    db: SyncStorage,
    values: Mapping[str, Values],
    start: int,
    now: float,
    interval: float,
    gaps: Sequence[tuple[float, float]],
) -> int:
    """Samples every ``interval`` seconds of ``[start, now)`` through ``write_samples``."""
    written = 0
    batch: list[tuple[float, dict[str, float]]] = []
    count = int((now - start) / interval)
    for i in range(count):
        ts = start + i * interval
        if _in_gap(int(ts), gaps):
            continue
        batch.append((ts, {name: value(int(ts)) for name, value in values.items()}))
        if len(batch) >= _BATCH:
            written += db.write_samples(batch)
            batch = []
    if batch:
        written += db.write_samples(batch)
    return written


def seed_month(data_dir: Path, now: float) -> dict[str, tuple[float, float]]:
    """The web tests' month: the dashboard's chart metrics (two disks, an interface and
    loopback) with two outages, a whole day ten days ago and a quarter of an hour forty
    minutes ago, in ``data_dir``'s database. Returns the outages by name."""
    gaps = {"day": (now - 10 * DAY, now - 9 * DAY), "minutes": (now - 40 * 60, now - 25 * 60)}
    values = {
        "cpu.percent": wave(40, 20),
        "memory.percent": wave(60, 5),
        "swap.percent": wave(1, 0),
        "diskio.sdx.read_bytes_per_s": wave(100, 0),
        "diskio.sdy.read_bytes_per_s": wave(50, 0),
        "net.lo.rx_bytes_per_s": wave(999, 0),
        "net.ethx.rx_bytes_per_s": wave(10, 0),
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    seed_history(data_dir / DB_FILENAME, now=now, values=values, gaps=list(gaps.values()))
    return gaps
