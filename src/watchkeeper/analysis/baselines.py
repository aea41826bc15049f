"""Learned baselines: what is normal for this host, per metric and by hour of day.

Each watched metric keeps an exponentially weighted centre and spread (mean absolute
deviation). Updates are clipped to a few spreads around the centre, so one burst does not
drag the baseline along: a robust running estimate that costs a few float operations per
metric per sample. Once an hour-of-day bucket has enough samples it is used instead of
the all-day one, so a nightly batch job is normal at night and odd at noon.

A value more than ``sigma`` spreads above its baseline is an anomaly, even below every
fixed threshold. State is a plain dict (``to_state``/``from_state``) kept in storage so
learning survives restarts.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from watchkeeper.analysis.checks import Check
from watchkeeper.config import Settings
from watchkeeper.model.alerts import Severity

__all__ = ["BASELINE_METRICS", "Baseline", "BaselineBook"]

#: Metrics worth a baseline: (glob on flat names, floor of the spread in the metric's unit).
BASELINE_METRICS: tuple[tuple[str, float], ...] = (
    ("cpu.percent", 2.0),
    ("memory.percent", 1.0),
    ("swap.percent", 1.0),
    ("load.1m_per_core", 0.1),
    ("procs.total", 5.0),
    ("procs.running", 2.0),
    ("tcp.total", 10.0),
    ("tcp.established", 5.0),
    ("net.*.rx_bytes_per_s", 50_000.0),
    ("net.*.tx_bytes_per_s", 50_000.0),
    ("diskio.*.busy_percent", 2.0),
)

_ALPHA = 0.02  # about the last 50 samples weigh most


@dataclass
class Baseline:
    centre: float = 0.0
    spread: float = 0.0
    count: int = 0

    def update(self, value: float, floor: float) -> None:
        if self.count == 0:
            self.centre = value
            self.spread = floor
        else:
            width = 4 * max(self.spread, floor)
            clipped = min(max(value, self.centre - width), self.centre + width)
            deviation = abs(clipped - self.centre)
            self.centre += _ALPHA * (clipped - self.centre)
            self.spread += _ALPHA * (deviation - self.spread)
        self.count += 1


class BaselineBook:
    """All baselines of one host; ``observe`` learns and reports anomalies."""

    def __init__(self, metrics: tuple[tuple[str, float], ...] = BASELINE_METRICS) -> None:
        self._metrics = metrics
        self._floors: dict[str, float | None] = {}
        self.all_day: dict[str, Baseline] = {}
        self.hourly: dict[str, dict[int, Baseline]] = {}
        self.dirty = False

    def _floor(self, name: str) -> float | None:
        if name not in self._floors:
            self._floors[name] = next(
                (floor for pattern, floor in self._metrics if fnmatch.fnmatchcase(name, pattern)),
                None,
            )
        return self._floors[name]

    def observe(self, flat: dict[str, float], settings: Settings, now: float) -> Iterator[Check]:
        a = settings.analyzer
        hour = time.localtime(now).tm_hour
        for name, value in flat.items():
            floor = self._floor(name)
            if floor is None:
                continue
            day = self.all_day.setdefault(name, Baseline())
            bucket = self.hourly.setdefault(name, {}).setdefault(hour, Baseline())
            reference = bucket if bucket.count >= a.baseline_min_samples else day
            if reference.count >= a.baseline_min_samples:
                spread = max(reference.spread, floor, abs(reference.centre) * 0.05)
                score = (value - reference.centre) / spread
                severity = Severity.WARNING if score >= a.baseline_sigma else None
                yield Check(
                    "anomaly",
                    f"metric:{name}",
                    "anomaly",
                    severity,
                    f"{name} at {value:.4g}, far above its usual {reference.centre:.4g}",
                    {
                        "metric": name,
                        "value": value,
                        "baseline": round(reference.centre, 4),
                        "spread": round(spread, 4),
                        "deviations": round(score, 1),
                        "by_hour": reference is bucket,
                    },
                )
            day.update(value, floor)
            bucket.update(value, floor)
            self.dirty = True

    def to_state(self) -> dict[str, Any]:
        return {
            "version": 1,
            "all_day": {k: [b.centre, b.spread, b.count] for k, b in self.all_day.items()},
            "hourly": {
                k: {str(h): [b.centre, b.spread, b.count] for h, b in hours.items()}
                for k, hours in self.hourly.items()
            },
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != 1:
            return
        self.all_day = {k: Baseline(*v) for k, v in state.get("all_day", {}).items()}
        self.hourly = {
            k: {int(h): Baseline(*v) for h, v in hours.items()}
            for k, hours in state.get("hourly", {}).items()
        }
