"""Leaks and filling disks under a sawtooth, outliers and noise, through the real engine.

The samples are what a host shows at 3 a.m.: a service whose garbage collector frees a
few hundred MB every couple of minutes while it leaks underneath, a log disk that rotates
while something else fills it, readings that jump. The alerts are read as a person would
read them: the rule, the rate it states and the confidence it gives.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from watchkeeper.analysis.engine import AnalysisEngine
from watchkeeper.analysis.robust import BUCKETS, ExtremeSeries, theil_sen
from watchkeeper.config import Settings
from watchkeeper.model.alerts import Alert, Severity
from watchkeeper.model.metrics import (
    DiskMetrics,
    FilesystemUsage,
    MetricsSample,
    ProcessInfo,
    ProcessMetrics,
)

MB = 1024 * 1024
GB = 1024 * MB
T0 = 1_773_100_800.0  # a fixed day; trends do not care about the hour
PID = 4100

Rss = Callable[[float], float]  # seconds since start -> resident bytes


def proc(pid: int, rss: float, t: float, age: float = 86_400) -> ProcessInfo:
    return ProcessInfo(
        pid=pid,
        name="api-server",
        cmdline="/usr/bin/api-server --port 8080",
        status="sleeping",
        cpu_percent=4.0,
        rss_bytes=max(0, int(rss)),
        num_threads=24,
        create_time=T0 - age,
        age_seconds=age + t,
    )


def sample(
    t: float, procs: tuple[ProcessInfo, ...] = (), used: float | None = None
) -> MetricsSample:
    disks = None
    if used is not None:
        total = 100 * GB
        used_i = int(min(max(used, 0), total))
        disks = DiskMetrics(
            filesystems=(
                FilesystemUsage(
                    mount="/var",
                    device="/dev/sdb1",
                    fstype="ext4",
                    total_bytes=total,
                    used_bytes=used_i,
                    free_bytes=total - used_i,
                    percent=100 * used_i / total,
                ),
            )
        )
    return MetricsSample(
        timestamp=T0 + t,
        host="db-3",
        interval=5.0 if t else None,
        processes=ProcessMetrics(total=180, sleeping=180, top_memory=procs),
        disks=disks,
    )


def run(
    seconds: float,
    interval: float,
    *,
    rss: Rss | None = None,
    used: Rss | None = None,
    age: float = 86_400,
) -> tuple[AnalysisEngine, list[Alert]]:
    """Feed the engine; every alert that fired (or changed level) on the way, in order."""
    settings = Settings.model_validate({})
    engine = AnalysisEngine(lambda: settings)
    fired: list[Alert] = []
    for step in range(int(seconds / interval)):
        t = step * interval
        procs = (proc(PID, rss(t), t, age),) if rss is not None else ()
        for transition in engine.observe(sample(t, procs, used(t) if used else None), T0 + t):
            if transition.kind == "firing":
                fired.append(transition.alert)
    return engine, fired


def sawtooth(t: float, amplitude: float, period: float, phase: float = 0.3) -> float:
    """A garbage collector's shape: a steady climb, then a sudden drop, every ``period``."""
    return amplitude * (((t / period) + phase) % 1.0)


def firing(engine: AnalysisEngine, rule: str) -> list[Alert]:
    return [a for a in engine.firing() if a.rule == rule]


# -- memory -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_leak_under_a_gc_sawtooth_is_reported_with_its_rate_and_confidence(seed: int) -> None:
    noise = random.Random(seed)

    def rss(t: float) -> float:
        # 900 MB/h of leak under drops of ~300 MB every two minutes, and some jitter.
        return (
            1200 * MB
            + 900 * MB * t / 3600
            + sawtooth(t, 300 * MB, 120, phase=seed / 7)
            + noise.uniform(-15, 15) * MB
        )

    engine, fired = run(45 * 60, 5, rss=rss)
    leaks = firing(engine, "memory_leak")
    assert len(leaks) == 1, [a.summary for a in engine.firing()]
    alert = leaks[0]
    assert alert.subject == f"process:{PID}"
    rate = alert.evidence["growth_mb_per_hour"]
    assert 700 <= rate <= 1100, alert.summary
    low, high = alert.evidence["growth_mb_per_hour_low"], alert.evidence["growth_mb_per_hour_high"]
    assert 0 < low <= rate <= high
    assert alert.evidence["rising_share"] >= 0.8
    assert "MB/h (95% interval" in alert.summary and "of pairs rising" in alert.summary
    # It was found within the first window, not after an hour.
    first = next(a for a in fired if a.rule == "memory_leak")
    assert first.started_at - T0 <= 20 * 60 and first.severity is Severity.WARNING


@pytest.mark.parametrize("period", [60, 120, 300])
def test_steady_service_with_a_gc_sawtooth_and_noise_stays_quiet(period: float) -> None:
    noise = random.Random(period)

    def rss(t: float) -> float:
        spike = 900 * MB if noise.random() < 0.01 else 0.0  # a reading now and then is wild
        return 1500 * MB + sawtooth(t, 400 * MB, period) + noise.uniform(-40, 40) * MB + spike

    _, fired = run(3 * 3600, 5, rss=rss)
    assert [a.summary for a in fired if a.rule == "memory_leak"] == []


def test_leak_with_wild_readings_is_still_found_and_its_rate_is_not_dragged() -> None:
    noise = random.Random(7)

    def rss(t: float) -> float:
        wild = noise.random()
        if wild < 0.01:
            return 10 * MB  # a reading from a process in the middle of being swapped out
        if wild < 0.05:
            return 9000 * MB
        return 800 * MB + 300 * MB * t / 3600

    engine, _ = run(40 * 60, 5, rss=rss)
    leaks = firing(engine, "memory_leak")
    assert len(leaks) == 1
    assert 250 <= leaks[0].evidence["growth_mb_per_hour"] <= 350


def test_warm_up_that_levels_off_is_not_a_leak_once_it_is_flat() -> None:
    def rss(t: float) -> float:
        return 400 * MB + 700 * MB * (1 - math.exp(-t / 300))  # caches fill, then stop

    engine, _ = run(75 * 60, 5, rss=rss)
    assert firing(engine, "memory_leak") == []


def test_a_cache_filling_after_a_restart_is_warm_up_not_a_leak() -> None:
    # Started 30 s ago: +10 MB a minute for ten minutes, then flat at its limit.
    _, fired = run(40 * 60, 5, rss=lambda t: 400 * MB + 10 * MB * min(t, 600) / 60, age=30)
    assert [a.summary for a in fired if a.rule == "memory_leak"] == []


def test_a_young_process_that_keeps_leaking_is_reported_after_its_warm_up() -> None:
    _, fired = run(40 * 60, 5, rss=lambda t: 400 * MB + 10 * MB * t / 60, age=30)
    leaks = [a for a in fired if a.rule == "memory_leak"]
    assert leaks and 15 * 60 <= leaks[0].started_at - T0 <= 25 * 60


def test_slow_growth_under_the_configured_rate_is_not_a_leak() -> None:
    _, fired = run(60 * 60, 5, rss=lambda t: 500 * MB + 20 * MB * t / 3600)
    assert [a for a in fired if a.rule == "memory_leak"] == []


# -- disks ------------------------------------------------------------------------------


def test_disk_filling_under_log_rotation_gives_an_eta() -> None:
    noise = random.Random(11)

    def used(t: float) -> float:
        # 80 GB used, 5 GB/h filling, rotation freeing ~2 GB every five minutes.
        return 80 * GB + 5 * GB * t / 3600 + sawtooth(t, 2 * GB, 300) + noise.uniform(0, 50) * MB

    engine, _ = run(40 * 60, 5, used=used)
    filling = firing(engine, "disk_filling")
    assert len(filling) == 1, [a.summary for a in engine.firing()]
    alert = filling[0]
    assert alert.subject == "disk-trend:/var"
    eta = alert.evidence["eta_hours"]
    assert 1.5 <= eta <= 4.0, alert.summary  # ~16 GB free at ~5 GB/h
    assert alert.severity is Severity.CRITICAL
    assert 4000 <= alert.evidence["fill_mb_per_hour"] <= 6500
    assert alert.evidence["fill_mb_per_hour_low"] > 0


def test_disk_with_rotation_and_no_growth_stays_quiet() -> None:
    noise = random.Random(5)

    def used(t: float) -> float:
        # 3 GB written and rotated away every ten minutes: busy, but not filling.
        return 60 * GB + sawtooth(t, 3 * GB, 600) + noise.uniform(-100, 100) * MB

    engine, fired = run(3 * 3600, 5, used=used)
    # The first tooth is a real climb of 3 GB in seven minutes, and nothing yet says it will
    # stop; once the window holds whole teeth, no phase of them may look like filling.
    later = [a.summary for a in fired if a.rule == "disk_filling" and a.started_at - T0 >= 1800]
    assert later == []
    assert firing(engine, "disk_filling") == []


# -- the estimator itself ---------------------------------------------------------------


def test_theil_sen_on_a_line_is_exact_and_confident() -> None:
    fit = theil_sen([(t, 3.0 + 0.5 * t) for t in range(0, 600, 60)])
    assert fit is not None
    assert fit.slope == pytest.approx(0.5) and fit.recent_slope == pytest.approx(0.5)
    assert fit.low == pytest.approx(0.5) and fit.high == pytest.approx(0.5)
    assert fit.rising_share == 1.0 and fit.points == 10 and fit.span == 540


def test_theil_sen_ignores_a_quarter_of_wild_points() -> None:
    points = [(float(t), 2.0 * t) for t in range(20)]
    for i in (2, 7, 11, 17, 19):
        points[i] = (points[i][0], 1e6 if i % 2 else -1e6)
    fit = theil_sen(points)
    assert fit is not None and fit.slope == pytest.approx(2.0, rel=0.2)


def test_theil_sen_on_flat_noise_is_not_confident() -> None:
    noise = random.Random(3)
    fit = theil_sen([(float(t), noise.gauss(0, 1)) for t in range(30)])
    assert fit is not None
    assert 0.3 <= fit.rising_share <= 0.7
    assert fit.low is not None and fit.high is not None and fit.low < fit.slope < fit.high


def test_too_few_points_give_no_fit() -> None:
    assert theil_sen([(0.0, 1.0), (1.0, 2.0)]) is None
    assert theil_sen([(0.0, 1.0), (0.0, 2.0), (0.0, 3.0)]) is None  # no time between them


def test_series_stays_bounded_at_one_sample_a_second() -> None:
    series = ExtremeSeries(lowest=True)
    for t in range(4 * 3600):
        series.add(float(t), float(t % 97), 1800.0)
    assert series.points <= BUCKETS
    fit = series.fit()
    assert fit is not None and abs(fit.slope) < 1e-3  # each bucket's low is 0
