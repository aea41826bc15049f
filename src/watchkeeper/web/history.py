"""Stored history shaped for charts: a bucket size fit for the range, every bucket listed.

A chart of the past must show where nothing was recorded (the daemon was down, a
collector failed) as a gap, never as a line drawn across it, so every bucket of the range
is in the answer and the empty ones carry ``null``. The bucket size follows the range (a
few hundred points, about one per pixel of a chart) and is never finer than twice the
sampling interval, so a sample arriving a little late does not look like a gap::

    step = auto_step(7 * 86400, interval=5)            # 1800.0: 336 half-hour buckets
    points = dense(stored, bucket_starts(t0, t1, step))

The dashboard's chart series (``web.feed.SERIES``) are totals over disks and interfaces;
:data:`CHART_SERIES` says which stored metrics each one is made of.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from watchkeeper.storage.models import MetricPoint

__all__ = [
    "CHART_SERIES",
    "NICE_STEPS",
    "TARGET_POINTS",
    "ChartHistory",
    "ChartSeries",
    "HistoryPoint",
    "MetricHistory",
    "SeriesSource",
    "auto_step",
    "bucket_starts",
    "combine",
    "dense",
]

#: About as many buckets as a chart is wide in pixels.
TARGET_POINTS = 360
#: Bucket sizes a range may get, in seconds: each divides the next larger whole unit, so
#: buckets line up with minutes, hours and days (and whole hours read hourly aggregates).
NICE_STEPS = (
    5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip
#: A bucket holds at least this many sampling intervals: one late sample is no gap.
_MIN_INTERVALS = 2


class HistoryPoint(BaseModel):
    """One bucket: its start, and min/avg/max over ``count`` stored values, or ``null``
    for all three (``count`` 0) when nothing was recorded in it."""

    ts: float
    min: float | None
    avg: float | None
    max: float | None
    count: int


class MetricHistory(BaseModel):
    """``/api/metrics/history``: one metric's min/avg/max per step, from storage. Every
    step of the range is listed, oldest first; an empty one is a gap (``null``)."""

    metric: str
    start: float
    end: float
    step: float
    source: Literal["storage"]
    points: list[HistoryPoint]


class ChartSeries(BaseModel):
    """One chart series over the buckets of :class:`ChartHistory` (``null``: a gap).
    ``min``/``max`` are given when the series is one stored metric; a total over several
    disks or interfaces has averages only (the extremes of a sum are not stored)."""

    avg: list[float | None]
    min: list[float | None] | None = None
    max: list[float | None] | None = None
    metrics: list[str] = Field(description="the stored metrics summed into this series")


class ChartHistory(BaseModel):
    """``/api/metrics/history/chart``: the dashboard's chart series over a range, in
    columns: ``ts`` holds each bucket's start, each series one value per bucket."""

    start: float
    end: float
    step: float
    source: Literal["storage"]
    ts: list[float]
    series: dict[str, ChartSeries]


@dataclass(frozen=True)
class SeriesSource:
    """Which stored metrics make a chart series: ``exact`` names one; otherwise every
    ``{prefix}{device}{suffix}`` is summed, less devices starting with ``skip``."""

    exact: str = ""
    prefix: str = ""
    suffix: str = ""
    skip: tuple[str, ...] = ()

    def members(self, names: Iterable[str]) -> list[str]:
        if self.exact:
            return [self.exact] if self.exact in names else []
        found = []
        for name in names:
            if not (name.startswith(self.prefix) and name.endswith(self.suffix)):
                continue
            device = name[len(self.prefix) : len(name) - len(self.suffix)]
            if device and not device.startswith(self.skip):
                found.append(name)
        return sorted(found)


#: The dashboard's series as the live chart computes them (``web.feed.chart_point``):
#: totals over disks, and over interfaces less loopback.
CHART_SERIES: dict[str, SeriesSource] = {
    "cpu": SeriesSource(exact="cpu.percent"),
    "memory": SeriesSource(exact="memory.percent"),
    "swap": SeriesSource(exact="swap.percent"),
    "disk_read": SeriesSource(prefix="diskio.", suffix=".read_bytes_per_s"),
    "disk_write": SeriesSource(prefix="diskio.", suffix=".write_bytes_per_s"),
    "net_rx": SeriesSource(prefix="net.", suffix=".rx_bytes_per_s", skip=("lo",)),
    "net_tx": SeriesSource(prefix="net.", suffix=".tx_bytes_per_s", skip=("lo",)),
}


def auto_step(span: float, interval: float) -> float:
    """The bucket for a range of ``span`` seconds sampled every ``interval`` seconds: the
    smallest nice step giving at most :data:`TARGET_POINTS` buckets and at least two
    samples per bucket."""
    want = max(span / TARGET_POINTS, _MIN_INTERVALS * max(interval, 0.0))
    for step in NICE_STEPS:
        if step >= want:
            return float(step)
    return float(math.ceil(want / 86400) * 86400)


def bucket_starts(start: float, end: float, step: float) -> list[float]:
    """Every bucket of ``step`` (aligned to multiples of ``step`` since the epoch, as
    storage aligns them) that overlaps ``[start, end)``."""
    size = max(1, int(step))
    first = math.floor(start) // size * size
    return [float(ts) for ts in range(first, math.ceil(end), size)]


def dense(points: Sequence[MetricPoint], starts: Sequence[float]) -> list[HistoryPoint]:
    """``points`` (the buckets that have values) on the full grid ``starts``: a bucket
    with no value is a gap, never interpolated."""
    found = {int(p.ts): p for p in points}
    out = []
    for ts in starts:
        p = found.get(int(ts))
        if p is None:
            out.append(HistoryPoint(ts=ts, min=None, avg=None, max=None, count=0))
        else:
            out.append(HistoryPoint(ts=ts, min=p.min, avg=p.avg, max=p.max, count=p.count))
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def combine(
    members: Sequence[str], stored: Sequence[Sequence[MetricPoint]], starts: Sequence[float]
) -> ChartSeries:
    """One chart series from its members' stored buckets: a member's own min/avg/max when
    it is alone, else the sum of the averages present in each bucket (null when none)."""
    index = {int(ts): i for i, ts in enumerate(starts)}
    avg: list[float | None] = [None] * len(starts)
    low: list[float | None] = [None] * len(starts)
    high: list[float | None] = [None] * len(starts)
    for points in stored:
        for p in points:
            i = index.get(int(p.ts))
            if i is None:
                continue
            current = avg[i]
            avg[i] = p.avg if current is None else current + p.avg
            low[i], high[i] = p.min, p.max
    alone = len(members) == 1
    return ChartSeries(
        avg=[_round(v) for v in avg],
        min=[_round(v) for v in low] if alone else None,
        max=[_round(v) for v in high] if alone else None,
        metrics=list(members),
    )
