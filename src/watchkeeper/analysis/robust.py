"""Slopes that a sawtooth, a burst or a stray reading cannot fool.

A process whose garbage collector frees a few hundred MB every couple of minutes, or a
disk whose logs rotate, draws a sawtooth; a least-squares line through it fits the right
slope with a poor r², and one wild reading can tilt it. Two things make the estimate
robust here:

- **per-bucket extremes** (:class:`ExtremeSeries`): the window is cut into ``BUCKETS``
  equal buckets and only each bucket's lowest (or highest) reading is kept. The lows of a
  memory sawtooth are what survives a collection, so they rise only when memory really
  leaks; the highs of a disk are what will hit "full" first. It also bounds the work: at
  most ``BUCKETS`` points per series, whatever the sampling rate.
- **the Theil–Sen slope** (:func:`theil_sen`): the median of the slopes between every pair
  of points. Up to about 29 % of the points may be anything at all without moving it much.

The confidence comes with it, without resampling: ``rising_share`` is the share of the
pairwise slopes that are positive (ties count half; about 0.5 for a flat series, 1.0 for a
clean climb), and ``low``/``high`` bound the slope with Sen's distribution-free interval,
which reads the ranks of the sorted pairwise slopes off the Mann–Kendall variance. A
``low`` above zero means the rise is real at about 97.5 % confidence::

    fit = theil_sen([(0, 10.0), (60, 11.0), (120, 12.5), (180, 13.0), (240, 14.2)])
    fit.slope, fit.low, fit.rising_share
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BUCKETS", "ExtremeSeries", "RobustFit", "theil_sen"]

#: Buckets per trend window: 60 s each at the default 30-minute window.
BUCKETS = 30

_Z = 1.96  # two-sided 95 %: the lower bound alone is a one-sided 97.5 %


@dataclass(frozen=True)
class RobustFit:
    """A Theil–Sen slope with its evidence. Slopes are in units per second."""

    slope: float
    low: float | None  # None: too few points to bound it
    high: float | None
    rising_share: float
    recent_slope: float  # Theil–Sen over the later half alone: still rising *now*?
    long_slope: float  # median over pairs at least half the span apart (see theil_sen)
    scatter: float  # median distance of the points from the fitted line
    points: int
    span: float  # seconds between the first and the last point

    @property
    def rise(self) -> float:
        """How far the line climbs over the span, by the more cautious of the two slopes."""
        return min(self.slope, self.long_slope) * self.span

    def stands_out(self, factor: float = 3.0) -> bool:
        """Whether the climb is well above the points' scatter around the line (a slow
        sawtooth seen at an unlucky phase, or noise, climbs about as much as it scatters)."""
        return self.rise > factor * self.scatter


def _pair_slopes(points: Sequence[tuple[float, float]], apart: float = 0.0) -> list[float]:
    """Sorted slopes between every two points more than ``apart`` seconds apart."""
    slopes: list[float] = []
    append = slopes.append
    for i, (ti, vi) in enumerate(points):
        for tj, vj in points[i + 1 :]:
            if tj - ti > apart:
                append((vj - vi) / (tj - ti))
    slopes.sort()
    return slopes


def _median(ordered: list[float]) -> float:
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def theil_sen(points: Sequence[tuple[float, float]], z: float = _Z) -> RobustFit | None:
    """The Theil–Sen slope of ``(t, value)`` points in time order; None below 3 points.

    ``z`` sets the interval's width (1.96: 95 %, two-sided)."""
    n = len(points)
    if n < 3:
        return None
    slopes = _pair_slopes(points)
    count = len(slopes)
    if count == 0:
        return None
    # Sen's interval: ranks (count -/+ C) / 2 of the sorted slopes, where C is z times the
    # standard deviation of the Mann-Kendall statistic (no tie correction: ties only
    # shrink that deviation, so leaving it out keeps the interval on the safe, wide side).
    c = z * math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
    lower_rank = math.floor((count - c) / 2)
    upper_rank = math.ceil((count + c) / 2) + 1
    rising = (count - bisect_right(slopes, 0.0)) + 0.5 * (
        bisect_right(slopes, 0.0) - bisect_left(slopes, 0.0)
    )
    later = points[n // 2 :]
    recent = _pair_slopes(later) if len(later) >= 3 else slopes
    span = points[-1][0] - points[0][0]
    # Pairs close together sit inside one tooth of a slow sawtooth and all rise; pairs half
    # the span apart see whole teeth and do not. A real climb shows in both.
    long = _pair_slopes(points, span / 2 - 1e-9 * span)
    slope = _median(slopes)
    offsets = sorted(v - slope * t for t, v in points)
    centre = _median(offsets)
    return RobustFit(
        slope=slope,
        low=slopes[lower_rank - 1] if lower_rank >= 1 else None,
        high=slopes[upper_rank - 1] if upper_rank <= count else None,
        rising_share=rising / count,
        recent_slope=_median(recent) if recent else 0.0,
        long_slope=_median(long) if long else 0.0,
        scatter=_median(sorted(abs(o - centre) for o in offsets)),
        points=n,
        span=span,
    )


class ExtremeSeries:
    """The lowest (``lowest=True``) or highest reading of each bucket of a sliding window.

    ``add`` is a few comparisons; the fit is recomputed only when a bucket completes (once
    a bucket length, 60 s by default), so a series costs next to nothing per sample. Only
    completed buckets are fitted: a bucket still filling has not seen its trough yet.
    """

    __slots__ = ("_bucket", "_current", "_done", "_fit", "_lowest", "_start")

    def __init__(self, *, lowest: bool) -> None:
        self._lowest = lowest
        self._bucket = 0.0
        self._start: float | None = None
        self._current: tuple[float, float] | None = None
        self._done: deque[tuple[float, float]] = deque()
        self._fit: RobustFit | None = None

    def add(self, now: float, value: float, window: float) -> None:
        bucket = window / BUCKETS
        start, current = self._start, self._current
        if bucket != self._bucket or start is None or current is None or now < start:
            # First reading, a new window length or a clock that went back: start afresh.
            self._bucket, self._start, self._current = bucket, now, (now, value)
            self._done.clear()
            self._fit = None
            return
        if now >= start + bucket:
            done = self._done
            done.append(current)
            self._start = start + ((now - start) // bucket) * bucket
            self._current = (now, value)
            while done and done[0][0] < now - window:
                done.popleft()
            self._fit = None
        elif (value < current[1]) if self._lowest else (value > current[1]):
            self._current = (now, value)

    @property
    def points(self) -> int:
        """Completed buckets in the window."""
        return len(self._done)

    @property
    def covered(self) -> float:
        """Seconds of history behind the fit: completed buckets times their length."""
        return len(self._done) * self._bucket

    def fit(self) -> RobustFit | None:
        if self._fit is None and len(self._done) >= 3:
            self._fit = theil_sen(list(self._done))
        return self._fit
