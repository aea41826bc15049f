"""Trends: slopes over a recent window, to see trouble before it arrives.

- a disk filling: how long until it is full at the current rate;
- a process whose memory grows (a leak), identified by pid *and* start time;
- load climbing.

Memory and disks are read through :mod:`watchkeeper.analysis.robust`: the Theil–Sen
slope of each bucket's lowest resident size (what survives a garbage collection) or
highest disk use (what hits "full" first), so a GC sawtooth, a log rotation or one odd
reading neither hides a real rise nor invents one. A leak is reported when the lower end
of the slope's 95 % interval is at least ``leak_min_bytes_per_hour`` (97.5 % sure it grows
that fast), the later half of the window still climbs (a warm-up that has levelled off is
not a leak) and that holds for one bucket (two fits in a row); the first half window of
a process's life is its warm-up and not watched at all. The alert states the interval and
the share of rising pairs as its confidence. A disk is filling when the lower end of its
interval is above zero and the later half still climbs; its time to full comes from the
slope. Load keeps a least-squares line and speaks only when it fits (r² high). Every
trend needs enough points over enough time (``trend_min_points``, a sixth of
``trend_window``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from watchkeeper.analysis.checks import Check, process_action, process_ref
from watchkeeper.analysis.robust import BUCKETS, ExtremeSeries, RobustFit
from watchkeeper.config import Settings
from watchkeeper.model.alerts import Severity, SuggestedAction
from watchkeeper.model.metrics import MetricsSample, ProcessInfo
from watchkeeper.model.text import LABEL, clean

__all__ = ["Fit", "TrendTracker", "fit_line"]

_MB = 1024 * 1024


@dataclass(frozen=True)
class Fit:
    slope: float  # units per second
    r2: float
    points: int
    span: float  # seconds covered


def fit_line(points: list[tuple[float, float]]) -> Fit | None:
    """Least-squares slope and r² of ``(t, value)`` points; None when it cannot be fitted."""
    n = len(points)
    if n < 3:
        return None
    t0 = points[0][0]
    xs = [t - t0 for t, _ in points]
    ys = [v for _, v in points]
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return None
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    syy = sum((y - my) ** 2 for y in ys)
    slope = sxy / sxx
    r2 = 1.0 if syy == 0 else (sxy * sxy) / (sxx * syy)
    return Fit(slope=slope, r2=r2, points=n, span=xs[-1] - xs[0])


class _Series:
    """A window of points kept at most ``MAX_POINTS`` long, so a least-squares fit stays
    cheap at 1 s (load's trend)."""

    MAX_POINTS = 120
    __slots__ = ("_fit", "points")

    def __init__(self) -> None:
        self.points: deque[tuple[float, float]] = deque()
        self._fit: Fit | None = None

    def add(self, now: float, value: float, window: float) -> None:
        spacing = window / self.MAX_POINTS
        if self.points and now - self.points[-1][0] < spacing:
            return  # too close to the last point to change the line
        self.points.append((now, value))
        while self.points and self.points[0][0] < now - window:
            self.points.popleft()
        self._fit = None

    def fit(self) -> Fit | None:
        if self._fit is None:
            self._fit = fit_line(list(self.points))
        return self._fit


class TrendTracker:
    """Keeps short series per subject and turns their slopes into checks."""

    MIN_R2 = 0.8  # load's least-squares line must fit this well

    def __init__(self) -> None:
        self._disks: dict[str, ExtremeSeries] = {}
        self._procs: dict[tuple[int, float], ExtremeSeries] = {}
        self._load = _Series()

    def _enough(self, fit: Fit | None, settings: Settings) -> bool:
        a = settings.analyzer
        return (
            fit is not None and fit.points >= a.trend_min_points and fit.span >= a.trend_window / 6
        )

    @staticmethod
    def _robust(series: ExtremeSeries, settings: Settings) -> RobustFit | None:
        """The series' fit when it rests on enough buckets over enough time, else None."""
        a = settings.analyzer
        if series.points < a.trend_min_points or series.covered < a.trend_window / 6:
            return None
        return series.fit()

    def observe(
        self, sample: MetricsSample, settings: Settings, now: float, service_pids: dict[int, str]
    ) -> Iterator[Check]:
        a = settings.analyzer
        window = a.trend_window
        if sample.disks is not None:
            seen = set()
            for fs in sample.disks.filesystems:
                seen.add(fs.mount)
                series = self._disks.get(fs.mount)
                if series is None:
                    series = self._disks[fs.mount] = ExtremeSeries(lowest=False)
                series.add(now, float(fs.used_bytes), window)
                yield self._disk_check(fs.mount, fs.free_bytes, series, settings)
            for mount in set(self._disks) - seen:
                del self._disks[mount]
        if sample.processes is not None:
            seen_procs = set()
            for proc in sample.processes.top_memory:
                key = (proc.pid, proc.create_time)
                seen_procs.add(key)
                if proc.age_seconds < window / 2:
                    # Warm-up: a process fills its caches, pools and heap after it starts;
                    # what it takes in its first half window is not held against it.
                    yield self._leak_check(proc, None, settings, service_pids)
                    continue
                series = self._procs.get(key)
                if series is None:
                    series = self._procs[key] = ExtremeSeries(lowest=True)
                series.add(now, float(proc.rss_bytes), window)
                yield self._leak_check(proc, self._robust(series, settings), settings, service_pids)
            for key in set(self._procs) - seen_procs:
                del self._procs[key]
        if sample.cpu is not None and sample.cpu.load_1m is not None:
            per_core = sample.cpu.load_1m / sample.cpu.count
            self._load.add(now, per_core, window)
            fit = self._load.fit()
            climbing = (
                self._enough(fit, settings)
                and fit is not None
                and fit.r2 >= self.MIN_R2
                and fit.slope * 3600 >= a.load_climb_per_hour
                and per_core >= settings.thresholds.load_warning * 0.5
            )
            yield Check(
                "load_climbing",
                "load-trend",
                "cpu",
                Severity.WARNING if climbing else None,
                f"load per core climbing: {per_core:.2f} now, "
                f"+{(fit.slope * 3600 if fit else 0):.1f}/h",
                {
                    "load_per_core": round(per_core, 2),
                    "per_hour": round(fit.slope * 3600, 2) if fit else None,
                },
                for_s=0,
            )

    def _leak_check(
        self,
        proc: ProcessInfo,
        fit: RobustFit | None,
        settings: Settings,
        service_pids: dict[int, str],
    ) -> Check:
        least = settings.analyzer.leak_min_bytes_per_hour
        # Sure (at 97.5 %) that it grows at least the configured rate, and still growing in
        # the later half of the window; held for one bucket, so one lucky fit is not enough.
        leaking = (
            fit is not None
            and fit.low is not None
            and fit.low * 3600 >= least
            and fit.long_slope * 3600 >= least
            and fit.recent_slope * 3600 >= least / 2
            and fit.stands_out()
        )
        label = clean(proc.name, LABEL, 32)
        service = service_pids.get(proc.pid)
        suggested: tuple[SuggestedAction, ...]
        if service:
            suggested = (
                SuggestedAction(
                    action="restart_service",
                    target=service,
                    target_kind="service",
                    reason=f"service {service} leaks memory",
                    confidence=0.7,
                ),
            )
        else:
            suggested = (process_action("kill_process", proc, f"{label} leaks memory", 0.3),)
        rate = fit.slope * 3600 / _MB if fit else 0.0
        return Check(
            "memory_leak",
            f"process:{proc.pid}",
            "leak",
            Severity.WARNING if leaking else None,
            f"memory of {label} (pid {proc.pid}) grows steadily: +{rate:.0f} MB/h"
            f"{_confidence_text(fit, _MB)}, now {proc.rss_bytes / _MB:.0f} MB",
            {
                "process": process_ref(proc),
                "growth_mb_per_hour": round(rate, 1),
                **_fit_evidence(fit, _MB, "growth_mb_per_hour"),
                "service": service,
            },
            suggested,
            for_s=settings.analyzer.trend_window / BUCKETS,
        )

    def _disk_check(
        self, mount: str, free: int, series: ExtremeSeries, settings: Settings
    ) -> Check:
        a = settings.analyzer
        fit = self._robust(series, settings)
        severity = None
        eta_h = None
        if (
            fit is not None
            and fit.slope > 0
            and fit.low is not None
            and fit.low > 0
            and fit.long_slope > 0
            and fit.recent_slope > 0
            and fit.stands_out()
        ):
            eta_h = free / fit.slope / 3600
            if eta_h <= a.disk_fill_critical_hours:
                severity = Severity.CRITICAL
            elif eta_h <= a.disk_fill_warning_hours:
                severity = Severity.WARNING
        eta_text = f"{eta_h:.1f} h" if eta_h is not None else "?"
        rate = (fit.slope if fit else 0.0) * 3600 / _MB
        return Check(
            "disk_filling",
            f"disk-trend:{mount}",
            "disk",
            severity,
            f"{mount} fills at {rate:.0f} MB/h{_confidence_text(fit, _MB)}: full in {eta_text}",
            {
                "mount": mount,
                "eta_hours": round(eta_h, 2) if eta_h is not None else None,
                "fill_mb_per_hour": round(rate, 1),
                **_fit_evidence(fit, _MB, "fill_mb_per_hour"),
                "free_bytes": free,
            },
            (
                SuggestedAction(
                    action="clean_directory",
                    target=mount,
                    target_kind="path",
                    reason=f"{mount} will be full in {eta_text}",
                    confidence=0.6,
                ),
            ),
            for_s=0,
        )


def _per_hour(slope: float | None, unit: float) -> float | None:
    return None if slope is None else round(slope * 3600 / unit, 1)


def _fit_evidence(fit: RobustFit | None, unit: float, name: str) -> dict[str, object]:
    """The interval and confidence behind a robust slope, as evidence keys."""
    return {
        f"{name}_low": _per_hour(fit.low, unit) if fit else None,
        f"{name}_high": _per_hour(fit.high, unit) if fit else None,
        "rising_share": round(fit.rising_share, 3) if fit else None,
        "buckets": fit.points if fit else 0,
        "method": "theil-sen on per-bucket extremes",
    }


def _confidence_text(fit: RobustFit | None, unit: float) -> str:
    if fit is None or fit.low is None or fit.high is None:
        return ""
    low, high = fit.low * 3600 / unit, fit.high * 3600 / unit
    return f" (95% interval {low:.0f} to {high:.0f}, {fit.rising_share:.0%} of pairs rising)"
