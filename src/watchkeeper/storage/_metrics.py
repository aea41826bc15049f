"""Metric history: raw values for a day, one-minute and hourly aggregates for a month.

Raw rows are ``(metric_id, ts, value)`` with whole-second timestamps, clustered by metric
so one metric over a day is one contiguous read. A roll-up pass folds whole minutes of
raw values into ``sample_1m`` (min, avg, max, count) and advances a watermark; raw rows
are only deleted once they are older than the raw retention *and* rolled up, so a lagging
roll-up never loses data. A second pass folds whole hours of minute rows into
``sample_1h`` behind its own watermark, so a month-long chart reads 720 rows per metric.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping, Sequence

from watchkeeper.storage._db import DbBase, guarded
from watchkeeper.storage.models import MetricPoint, RetentionPolicy

__all__ = ["MetricsMixin"]

MINUTE = 60
HOUR = 3600
_WATERMARK = "rollup_until"
_HOUR_WATERMARK = "rollup_1h_until"
#: Samples arriving up to this late are still folded into their minute: each pass
#: recomputes the last few minutes before the watermark (a few hundred rows).
_LOOKBACK = 5 * MINUTE
#: A roll-up pass covers at most this much time, so catching up stays in short steps.
_MAX_ROLLUP_SPAN = 6 * 3600
#: The hourly pass folds at most this much per call (about 130,000 minute rows for 90
#: metrics): an older database fills its hourly table over its first passes.
_MAX_HOURLY_SPAN = 2 * 86400

# Bucketed reads of the aggregate tables: (bucket start, min, sum, max, count). The table
# name is one of two constants, never input.
_AGG_QUERY = (
    "SELECT (ts / ?1) * ?1, min(min), sum(avg * count), max(max), sum(count) "
    "FROM {table} WHERE metric_id = ?2 AND ts >= ?3 AND ts < ?4 GROUP BY ts / ?1"
)
_RAW_QUERY = (
    "SELECT (ts / ?1) * ?1, min(value), sum(value), max(value), count(*) "
    "FROM sample WHERE metric_id = ?2 AND ts >= ?3 AND ts < ?4 GROUP BY ts / ?1"
)


def _floor_minute(ts: float) -> int:
    return int(ts // MINUTE) * MINUTE


def _floor_hour(ts: float) -> int:
    return int(ts // HOUR) * HOUR


def _ceil_hour(ts: float) -> int:
    return -int(-ts // HOUR) * HOUR


class MetricsMixin(DbBase):
    """Writes and reads metric history. Mixed into :class:`SyncStorage`."""

    _ids: dict[str, int]

    # -- writing ------------------------------------------------------------------------
    def _metric_id(self, conn: sqlite3.Connection, name: str, created: list[str]) -> int:
        metric_id = self._ids.get(name)
        if metric_id is None:
            row = conn.execute("SELECT id FROM metric WHERE name = ?", (name,)).fetchone()
            if row is None:
                cursor = conn.execute("INSERT INTO metric (name) VALUES (?)", (name,))
                metric_id = int(cursor.lastrowid or 0)
                created.append(name)
            else:
                metric_id = int(row[0])
            self._ids[name] = metric_id
        return metric_id

    @guarded
    def write_samples(self, batch: Sequence[tuple[float, Mapping[str, float]]]) -> int:
        """Store several samples in one transaction; returns the number of values stored.

        Each sample is ``(unix_time, {"cpu.percent": 12.5, ...})``. Timestamps are rounded
        to whole seconds; NaN and infinities are skipped (they cannot be averaged).
        """
        created: list[str] = []
        rows: list[tuple[int, int, float]] = []
        try:
            with self._tx() as conn:
                for ts, values in batch:
                    second = round(ts)
                    for name, value in values.items():
                        if value is None or not math.isfinite(value):
                            continue
                        rows.append((self._metric_id(conn, name, created), second, float(value)))
                conn.executemany("INSERT OR REPLACE INTO sample VALUES (?, ?, ?)", rows)
        except BaseException:
            # Ids handed out inside the rolled-back transaction do not exist.
            for name in created:
                self._ids.pop(name, None)
            raise
        return len(rows)

    def write_sample(self, ts: float, values: Mapping[str, float]) -> int:
        """Store one sample: ``write_sample(time.time(), sample.flat())``."""
        return self.write_samples([(ts, values)])

    # -- maintenance --------------------------------------------------------------------
    def _watermark(self, conn: sqlite3.Connection) -> int | None:
        value = self._meta_get(conn, _WATERMARK)
        return None if value is None else int(value)

    def _first_raw_at_or_after(self, conn: sqlite3.Connection, ts: int) -> int | None:
        # One index seek per metric: ts alone is not a key prefix of the sample table.
        row = conn.execute(
            "SELECT min((SELECT min(ts) FROM sample WHERE metric_id = m.id AND ts >= ?)) "
            "FROM metric m",
            (ts,),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _rollup(self, conn: sqlite3.Connection, now: float, lag: float) -> tuple[int, int | None]:
        """Fold complete minutes into ``sample_1m``, then complete hours into
        ``sample_1h``; returns (rows written to both, minute watermark)."""
        rows, watermark = self._rollup_minutes(conn, now, lag)
        return rows + self._rollup_hours(conn), watermark

    def _rollup_minutes(
        self, conn: sqlite3.Connection, now: float, lag: float
    ) -> tuple[int, int | None]:
        cutoff = _floor_minute(now - lag)
        watermark = self._watermark(conn)
        low = (watermark - _LOOKBACK) if watermark is not None else 0
        first = self._first_raw_at_or_after(conn, low)
        if first is None or first >= cutoff:
            if watermark is None or cutoff > watermark:
                watermark = cutoff if first is None else min(cutoff, _floor_minute(first))
                self._meta_set(conn, _WATERMARK, str(watermark))
            return 0, watermark
        low = max(low, _floor_minute(first))
        high = min(cutoff, low + _MAX_ROLLUP_SPAN)
        cursor = conn.execute(
            "INSERT OR REPLACE INTO sample_1m (metric_id, ts, min, avg, max, count) "
            "SELECT m.id, (s.ts / 60) * 60, min(s.value), avg(s.value), max(s.value), count(*) "
            "FROM metric m JOIN sample s ON s.metric_id = m.id AND s.ts >= ? AND s.ts < ? "
            "GROUP BY m.id, s.ts / 60",
            (low, high),
        )
        new_mark = max(high, watermark or high)
        self._meta_set(conn, _WATERMARK, str(new_mark))
        return cursor.rowcount, new_mark

    def _hour_watermark(self, conn: sqlite3.Connection) -> int | None:
        value = self._meta_get(conn, _HOUR_WATERMARK)
        return None if value is None else int(value)

    def _rollup_hours(self, conn: sqlite3.Connection) -> int:
        """Fold whole hours of minute rows into ``sample_1h``; returns rows written.

        An hour is final once the minute watermark, less the minutes the minute pass may
        still recompute for late samples, is past its end.
        """
        minute_mark = self._watermark(conn)
        if minute_mark is None:
            return 0
        cutoff = _floor_hour(minute_mark - _LOOKBACK)
        low = self._hour_watermark(conn)
        if low is None or low < cutoff:
            row = conn.execute(
                "SELECT min((SELECT min(ts) FROM sample_1m WHERE metric_id = m.id AND ts >= ?)) "
                "FROM metric m",
                (low or 0,),
            ).fetchone()
            first = None if row is None or row[0] is None else int(row[0])
        else:
            return 0
        if first is None or first >= cutoff:
            self._meta_set(conn, _HOUR_WATERMARK, str(cutoff))
            return 0
        low = _floor_hour(first) if low is None else max(low, _floor_hour(first))
        high = min(cutoff, low + _MAX_HOURLY_SPAN)
        cursor = conn.execute(
            "INSERT OR REPLACE INTO sample_1h (metric_id, ts, min, avg, max, count) "
            "SELECT m.id, (a.ts / 3600) * 3600, min(a.min), sum(a.avg * a.count) / sum(a.count), "
            "max(a.max), sum(a.count) "
            "FROM metric m JOIN sample_1m a ON a.metric_id = m.id AND a.ts >= ? AND a.ts < ? "
            "GROUP BY m.id, a.ts / 3600",
            (low, high),
        )
        self._meta_set(conn, _HOUR_WATERMARK, str(high))
        return cursor.rowcount

    def _metric_retention(
        self, conn: sqlite3.Connection, now: float, policy: RetentionPolicy
    ) -> dict[str, int]:
        watermark = self._watermark(conn)
        raw_cut = _floor_minute(now - policy.raw_hours * 3600)
        # Never delete raw values that are not rolled up yet, nor the minute that the next
        # pass recomputes for late samples.
        raw_cut = min(raw_cut, (watermark - _LOOKBACK) if watermark is not None else 0)
        deleted_raw = conn.execute(
            "DELETE FROM sample WHERE metric_id IN (SELECT id FROM metric) AND ts < ?",
            (raw_cut,),
        ).rowcount
        agg_cut = _floor_minute(now - policy.aggregate_days * 86400)
        deleted_agg = conn.execute(
            "DELETE FROM sample_1m WHERE metric_id IN (SELECT id FROM metric) AND ts < ?",
            (agg_cut,),
        ).rowcount
        deleted_hourly = conn.execute(
            "DELETE FROM sample_1h WHERE metric_id IN (SELECT id FROM metric) AND ts < ?",
            (_floor_hour(agg_cut),),
        ).rowcount
        # Names nothing refers to any more (an unplugged disk, a vanished interface).
        orphans = [
            (int(row[0]), str(row[1]))
            for row in conn.execute(
                "SELECT id, name FROM metric m WHERE NOT EXISTS "
                "(SELECT 1 FROM sample WHERE metric_id = m.id) AND NOT EXISTS "
                "(SELECT 1 FROM sample_1m WHERE metric_id = m.id) AND NOT EXISTS "
                "(SELECT 1 FROM sample_1h WHERE metric_id = m.id)"
            )
        ]
        conn.executemany("DELETE FROM metric WHERE id = ?", [(mid,) for mid, _ in orphans])
        for _, name in orphans:
            self._ids.pop(name, None)
        return {
            "sample": deleted_raw,
            "sample_1m": deleted_agg,
            "sample_1h": deleted_hourly,
            "metric": len(orphans),
        }

    # -- reading ------------------------------------------------------------------------
    @guarded
    def metric_names(self, prefix: str = "") -> list[str]:
        """Stored metric names starting with ``prefix``, sorted."""
        conn = self._db()
        if not prefix:
            rows = conn.execute("SELECT name FROM metric ORDER BY name")
        else:
            # A range on the UNIQUE index instead of LIKE: no escaping, no case folding.
            rows = conn.execute(
                "SELECT name FROM metric WHERE name >= ? AND name < ? ORDER BY name",
                (prefix, prefix + "\U0010ffff"),
            )
        return [str(row[0]) for row in rows]

    @guarded
    def rollup_watermark(self) -> int | None:
        """Raw values before this time have been rolled up into one-minute aggregates."""
        return self._watermark(self._db())

    @guarded
    def metric_range(
        self,
        name: str,
        start: float,
        end: float,
        step: float = 60,
    ) -> list[MetricPoint]:
        """``name`` over ``[start, end)`` in buckets of ``step`` seconds, oldest first.

        Steps under a minute read raw values and are only possible inside the raw window
        (the raw retention before now); otherwise the step is raised to 60 s and the
        one-minute aggregates are read (the hourly ones for the whole hours they cover
        when ``step`` is a multiple of an hour), plus raw values for the minutes not
        rolled up yet. Buckets are aligned to multiples of ``step`` since the epoch;
        empty ones are absent.
        """
        conn = self._db()
        row = conn.execute("SELECT id FROM metric WHERE name = ?", (name,)).fetchone()
        if row is None or end <= start:
            return []
        metric_id = int(row[0])
        lo, hi = math.floor(start), math.ceil(end)
        size = max(1, int(step))
        horizon = self._clock() - self.retention.raw_hours * 3600
        if size < MINUTE and lo < horizon:
            size = MINUTE
        buckets: dict[int, list[float]] = {}
        raw_from = lo
        if size >= MINUTE:
            raw_from = self._read_aggregates(conn, buckets, metric_id, size, lo, hi)
        if raw_from < hi:
            self._fold(buckets, conn.execute(_RAW_QUERY, (size, metric_id, raw_from, hi)))
        return [
            MetricPoint(ts=ts, min=acc[0], avg=acc[1] / acc[3], max=acc[2], count=int(acc[3]))
            for ts, acc in sorted(buckets.items())
        ]

    @guarded
    def metric_ranges(
        self, names: Sequence[str], start: float, end: float, step: float = 60
    ) -> dict[str, list[MetricPoint]]:
        """:meth:`metric_range` for each of ``names`` in one call (one trip to the
        storage thread for a chart of several series); unknown names map to ``[]``."""
        return {name: self.metric_range(name, start, end, step) for name in dict.fromkeys(names)}

    def _read_aggregates(
        self,
        conn: sqlite3.Connection,
        buckets: dict[int, list[float]],
        metric_id: int,
        size: int,
        lo: int,
        hi: int,
    ) -> int:
        """Fold the rolled-up part of ``[lo, hi)`` into ``buckets``; returns where the
        raw values take over."""
        watermark = self._watermark(conn)
        if watermark is None or watermark <= lo:
            return lo
        agg_to = min(hi, watermark)
        spans: list[tuple[str, int, int]] = []
        minutes_from = lo
        hour_mark = self._hour_watermark(conn) if size % HOUR == 0 else None
        if hour_mark is not None:
            first_hour, last_hour = _ceil_hour(lo), min(_floor_hour(agg_to), hour_mark)
            if first_hour < last_hour:
                spans += [("sample_1m", lo, first_hour), ("sample_1h", first_hour, last_hour)]
                minutes_from = last_hour
        spans.append(("sample_1m", minutes_from, agg_to))
        for table, span_lo, span_hi in spans:
            if span_lo < span_hi:
                query = _AGG_QUERY.format(table=table)
                self._fold(buckets, conn.execute(query, (size, metric_id, span_lo, span_hi)))
        return agg_to

    @staticmethod
    def _fold(buckets: dict[int, list[float]], rows: sqlite3.Cursor) -> None:
        # A bucket can straddle the roll-up watermark: combine both halves exactly.
        for ts, low, total, high, count in rows:
            acc = buckets.get(int(ts))
            if acc is None:
                buckets[int(ts)] = [low, total, high, count]
            else:
                acc[0] = min(acc[0], low)
                acc[1] += total
                acc[2] = max(acc[2], high)
                acc[3] += count
