"""Learned baselines: what is normal for this host, per metric and by hour of day.

Each watched metric keeps an exponentially weighted centre and spread (mean absolute
deviation). Updates are clipped to a few spreads around the centre, so one burst does not
drag the baseline along: a robust running estimate that costs a few float operations per
metric per sample. Once an hour-of-day bucket has enough samples it is used instead of
the all-day one, so a nightly batch job is normal at night and odd at noon.

A value more than ``sigma`` spreads above its baseline is an anomaly, even below every
fixed threshold.

**What an anomaly does to learning.** While a metric's anomaly is open its baselines do
not learn at all: a miner that moves CPU from 10 % to 55 % keeps its alert for as long as
it runs, instead of being learned as normal within minutes. The anomaly stays open until
the value falls back under half the line (hysteresis), so a one-off burst resolves as soon
as it ends and the baseline goes on learning as before.

**Drift and level shifts are told apart by speed.** Slow drift (a database growing over
days) moves the baseline a little every sample and never opens an anomaly. A step that
stays is a *level shift*: once it has lasted ``_STEP_SECONDS`` the alert calls it "a new
level since HH:MM", and a shadow baseline learns the new level meanwhile. After
``analyzer.baseline_accept_after`` seconds (6 h by default; 0 = never) the new level is
accepted: the baselines move to it (the hour-of-day buckets shift by the same amount, so
the daily shape is kept), the anomaly resolves, and an ``info`` alert ``baseline_shift``
says which level was accepted since when, for an hour. Nothing is ever accepted silently.

State is a plain dict (``to_state``/``load_state``, version 2) kept in storage so learning
survives restarts; version 1 states (before anomalies were remembered) still load.

**Bounded by the metrics that exist now.** Names come and go (``net.veth3f2a.*`` for each
container an engine starts, a disk plugged in once): a metric not seen for
``FORGET_AFTER_S`` loses its baselines, and at most ``MAX_METRICS`` metrics keep any (the
longest unseen goes first), so a host that runs a container an hour for months keeps what
its live metrics need, about 4 KB each (an all-day and 24 hourly baselines).
"""

from __future__ import annotations

import fnmatch
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.analysis.checks import Check
from watchkeeper.config import Settings
from watchkeeper.model.alerts import Severity

__all__ = [
    "BASELINE_METRICS",
    "FORGET_AFTER_S",
    "MAX_METRICS",
    "Baseline",
    "BaselineBook",
    "LevelShift",
]

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
_SHADOW_ALPHA = 0.1  # the level of an open anomaly: learnt within a few dozen samples
_CLEAR_SHARE = 0.5  # an open anomaly closes below half the line
_STEP_SECONDS = 300.0  # an anomaly this old is a level shift, not a burst
_NOTICE_SECONDS = 3600.0  # how long an accepted level shift stays on the alert list
_VERSION = 2

#: A metric unseen this long (its interface or disk went away) loses its baselines.
FORGET_AFTER_S = 86400.0
#: At most this many metrics keep baselines; past it the longest unseen are dropped.
MAX_METRICS = 256
_PRUNE_EVERY_S = 60.0  # how often unseen metrics are looked for
_MAX_FLOORS = 4096  # the cache of which flat names have a baseline at all


@dataclass
class Baseline:
    centre: float = 0.0
    spread: float = 0.0
    count: int = 0

    def update(self, value: float, floor: float, alpha: float = _ALPHA) -> None:
        if self.count == 0:
            self.centre = value
            self.spread = floor
        else:
            width = 4 * max(self.spread, floor)
            clipped = min(max(value, self.centre - width), self.centre + width)
            deviation = abs(clipped - self.centre)
            self.centre += alpha * (clipped - self.centre)
            self.spread += alpha * (deviation - self.spread)
        self.count += 1

    def row(self) -> list[float]:
        return [self.centre, self.spread, self.count]


@dataclass
class _Episode:
    """An open anomaly: since when, and the level the metric holds meanwhile."""

    since: float
    level: Baseline = field(default_factory=Baseline)


@dataclass(frozen=True)
class LevelShift:
    """A new level accepted as the baseline: it began at ``since`` and was accepted at
    ``accepted_at``, moving the centre from ``before`` to ``after``."""

    since: float
    accepted_at: float
    before: float
    after: float


def _score(value: float, reference: Baseline, floor: float) -> tuple[float, float]:
    """How many spreads ``value`` lies above ``reference``, and the spread used."""
    spread = max(reference.spread, floor, abs(reference.centre) * 0.05)
    return (value - reference.centre) / spread, spread


def _clock(at: float) -> str:
    return time.strftime("%H:%M", time.localtime(at))


class BaselineBook:
    """All baselines of one host; ``observe`` learns and reports anomalies."""

    def __init__(self, metrics: tuple[tuple[str, float], ...] = BASELINE_METRICS) -> None:
        self._metrics = metrics
        self._floors: dict[str, float | None] = {}
        self.all_day: dict[str, Baseline] = {}
        self.hourly: dict[str, dict[int, Baseline]] = {}
        self.episodes: dict[str, _Episode] = {}
        self.shifts: dict[str, LevelShift] = {}
        self.dirty = False
        self._seen: dict[str, float] = {}  # metric -> when a sample last had it
        self._pruned_at = -math.inf

    def __len__(self) -> int:
        """How many metrics have baselines."""
        return len(self.all_day)

    def _floor(self, name: str) -> float | None:
        if name not in self._floors:
            if len(self._floors) >= _MAX_FLOORS:  # names that churn: recompute, not grow
                self._floors.clear()
            self._floors[name] = next(
                (floor for pattern, floor in self._metrics if fnmatch.fnmatchcase(name, pattern)),
                None,
            )
        return self._floors[name]

    def observe(self, flat: dict[str, float], settings: Settings, now: float) -> Iterator[Check]:
        a = settings.analyzer
        accept_after = a.baseline_accept_after
        hour = time.localtime(now).tm_hour
        for name, value in flat.items():
            floor = self._floor(name)
            if floor is None:
                continue
            day = self.all_day.setdefault(name, Baseline())
            bucket = self.hourly.setdefault(name, {}).setdefault(hour, Baseline())
            reference = bucket if bucket.count >= a.baseline_min_samples else day
            episode = self.episodes.get(name)
            if reference.count >= a.baseline_min_samples:
                score, spread = _score(value, reference, floor)
                if score < a.baseline_sigma * (_CLEAR_SHARE if episode is not None else 1.0):
                    if episode is not None:  # over: learn again from this sample on
                        del self.episodes[name]
                        episode = None
                else:
                    if episode is None:
                        episode = self.episodes[name] = _Episode(since=now)
                    episode.level.update(value, floor, _SHADOW_ALPHA)
                    if accept_after and now - episode.since >= accept_after:
                        self._accept(name, episode, reference, now)
                        episode = None
                        score, spread = _score(value, reference, floor)
                yield self._anomaly(name, value, reference, spread, score, episode, bucket, now)
            if episode is None:
                day.update(value, floor)
                bucket.update(value, floor)
            shift = self.shifts.get(name)
            if shift is not None:
                yield self._shift_check(name, shift, now)
            self._seen[name] = now
            self.dirty = True
        if now - self._pruned_at >= _PRUNE_EVERY_S or len(self.all_day) > MAX_METRICS:
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Drop the metrics unseen for ``FORGET_AFTER_S``, then the longest unseen past
        ``MAX_METRICS``. A metric loaded from storage counts as seen when first pruned."""
        self._pruned_at = now
        seen = self._seen
        for table in (self.all_day, self.hourly, self.episodes, self.shifts):
            for name in table:
                seen.setdefault(name, now)
        gone = [name for name, at in seen.items() if now - at > FORGET_AFTER_S]
        excess = len(seen) - len(gone) - MAX_METRICS
        if excess > 0:
            kept = sorted((at, name) for name, at in seen.items() if now - at <= FORGET_AFTER_S)
            gone.extend(name for _, name in kept[:excess])
        for name in gone:
            self._forget(name)

    def _forget(self, name: str) -> None:
        for table in (self._seen, self.all_day, self.hourly, self.episodes, self.shifts):
            table.pop(name, None)
        self.dirty = True

    def _anomaly(
        self,
        name: str,
        value: float,
        reference: Baseline,
        spread: float,
        score: float,
        episode: _Episode | None,
        bucket: Baseline,
        now: float,
    ) -> Check:
        summary = f"{name} at {value:.4g}, far above its usual {reference.centre:.4g}"
        evidence: dict[str, Any] = {
            "metric": name,
            "value": value,
            "baseline": round(reference.centre, 4),
            "spread": round(spread, 4),
            "deviations": round(score, 1),
            "by_hour": reference is bucket,
        }
        if episode is not None:
            evidence["anomalous_since"] = episode.since
            evidence["learning"] = "paused while the anomaly lasts"
            if now - episode.since >= _STEP_SECONDS:
                summary += (
                    f": a new level (~{episode.level.centre:.4g}) since {_clock(episode.since)}"
                )
                evidence["new_level"] = round(episode.level.centre, 4)
        return Check(
            "anomaly",
            f"metric:{name}",
            "anomaly",
            Severity.WARNING if episode is not None else None,
            summary,
            evidence,
        )

    def _accept(self, name: str, episode: _Episode, reference: Baseline, now: float) -> None:
        """Take the episode's level as the new normal, for every hour of the day."""
        before = reference.centre
        delta = episode.level.centre - before
        for baseline in (self.all_day[name], *self.hourly.get(name, {}).values()):
            if baseline.count:
                baseline.centre += delta
                baseline.spread = max(baseline.spread, episode.level.spread)
        self.shifts[name] = LevelShift(
            since=episode.since, accepted_at=now, before=before, after=episode.level.centre
        )
        del self.episodes[name]

    def _shift_check(self, name: str, shift: LevelShift, now: float) -> Check:
        showing = now - shift.accepted_at < _NOTICE_SECONDS
        if not showing:
            del self.shifts[name]
        held = (shift.accepted_at - shift.since) / 3600
        return Check(
            "baseline_shift",
            f"metric:{name}",
            "anomaly",
            Severity.INFO if showing else None,
            f"{name}: a new level since {_clock(shift.since)} (~{shift.after:.4g}, was "
            f"~{shift.before:.4g}), accepted as normal after {held:.1f} h",
            {
                "metric": name,
                "since": shift.since,
                "accepted_at": shift.accepted_at,
                "before": round(shift.before, 4),
                "after": round(shift.after, 4),
            },
            for_s=0,
            clear_s=0,
        )

    # -- persistence -------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "all_day": {k: b.row() for k, b in self.all_day.items()},
            "hourly": {
                k: {str(h): b.row() for h, b in hours.items()} for k, hours in self.hourly.items()
            },
            "episodes": {k: [e.since, *e.level.row()] for k, e in self.episodes.items()},
            "shifts": {
                k: [s.since, s.accepted_at, s.before, s.after] for k, s in self.shifts.items()
            },
        }

    def load_state(self, state: Any) -> None:
        """Load what ``to_state`` wrote (version 2) or an older build wrote (version 1).

        A state of another version, or not a dict, is ignored: learning starts afresh.
        Entries that are not what they should be are skipped one by one, so one bad row
        costs that row, not the rest."""
        if not isinstance(state, dict) or state.get("version") not in (1, _VERSION):
            return
        self.all_day = {k: b for k, v in _items(state, "all_day") if (b := _baseline(v))}
        self.hourly = {}
        for k, hours in _items(state, "hourly"):
            if isinstance(hours, dict):
                self.hourly[k] = {
                    int(h): b
                    for h, v in hours.items()
                    if str(h).isdigit() and 0 <= int(h) < 24 and (b := _baseline(v))
                }
        self.episodes = {}
        for k, row in _items(state, "episodes"):
            numbers = _numbers(row, 4)
            if numbers is not None and (level := _baseline(numbers[1:])):
                self.episodes[k] = _Episode(since=numbers[0], level=level)
        self.shifts = {}
        for k, row in _items(state, "shifts"):
            numbers = _numbers(row, 4)
            if numbers is not None:
                self.shifts[k] = LevelShift(*numbers)
        self._seen = {}
        # A state saved before the bound (or by a host with more metrics): keep the
        # metrics stored last, the newest names.
        for name in list(self.all_day)[:-MAX_METRICS]:
            self._forget(name)


def _items(state: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    table = state.get(key)
    return (
        [(k, v) for k, v in table.items() if isinstance(k, str)] if isinstance(table, dict) else []
    )


def _numbers(row: Any, length: int) -> list[float] | None:
    if not isinstance(row, list | tuple) or len(row) != length:
        return None
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in row):
        return None
    values = [float(x) for x in row]
    return values if all(math.isfinite(x) for x in values) else None


def _baseline(row: Any) -> Baseline | None:
    numbers = _numbers(row, 3)
    if numbers is None or numbers[2] < 0:
        return None
    return Baseline(numbers[0], max(0.0, numbers[1]), int(numbers[2]))
