"""Levels with hysteresis, a "for" duration and a window, so a value at the line does not
flap and a fault that comes and goes is still seen.

Two rules decide the level of one (rule, subject) key, and the higher wins:

- **continuous**: a raw level must hold for ``for_s`` seconds before the level rises, and
  the raw level must stay lower for ``clear_s`` seconds before it falls;
- **windowed** (intermittent faults): when the raw level is at or above a line in at least
  ``fire_share`` of the samples of the last ``window_s`` seconds (the window at least half
  covered), and the condition came back after being clearly off at least once, the level
  rises to that line; it falls only when the share drops under ``clear_share``.

A sample "clearly off" a line is under it by more than the clear margin: a value hovering
inside the margin is a level question for hysteresis, not an intermittent fault, so it
never counts as coming back. Checks with ``for_s == 0`` (a disk already full, a service
down) fire at once and have no window::

    tracker = LevelTracker(for_s=15, clear_s=15)
    level = tracker.update(("cpu_high", "cpu"), raw=Severity.WARNING, now=t)
    tracker.end_round(t)  # once per sample: keys not heard about lose their pending timer

``raw_level`` turns a value and its warning/critical lines into the raw level, taking the
current level into account so the margin applies only on the way down; ``near_line`` says
whether the value sits inside the margin under the next line up.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import NamedTuple

from watchkeeper.config import AnalyzerSettings
from watchkeeper.model.alerts import SEVERITY_RANK, Severity

__all__ = ["LevelTracker", "WindowView", "near_line", "raw_level"]

_BY_RANK = {rank: level for level, rank in SEVERITY_RANK.items()}
_LINES = sorted(_BY_RANK, reverse=True)  # critical, warning, info
_OFF = -1
# The line a "near" sample is close to: thresholds have no info line, so from off (or
# info) the next line up is warning.
_NEXT_LINE = {_OFF: 1, 0: 1, 1: 2, 2: 3}


def _rank(level: Severity | None) -> int:
    return _OFF if level is None else SEVERITY_RANK[level]


def raw_level(
    value: float,
    warning: float,
    critical: float,
    *,
    margin: float,
    current: Severity | None,
) -> Severity | None:
    """The level ``value`` is at, with hysteresis: holding a level needs only ``line - margin``."""
    held = _rank(current)
    if value >= critical or (held >= 2 and value >= critical - margin):
        return Severity.CRITICAL
    if value >= warning or (held >= 1 and value >= warning - margin):
        return Severity.WARNING
    return None


def near_line(
    value: float, warning: float, critical: float, *, margin: float, raw: Severity | None
) -> bool:
    """True when ``value`` lies inside the clear margin under the line above ``raw``."""
    if raw is None:
        return value >= warning - margin
    if raw is Severity.WARNING:
        return value >= critical - margin
    return False


class WindowView(NamedTuple):
    """Why the windowed rule holds a level: ``on`` of the last ``samples`` reached ``line``."""

    line: Severity
    on: int
    samples: int
    window_s: float


@dataclass(slots=True)
class _Track:
    level: Severity | None = None  # held by the continuous rule
    candidate: Severity | None = None
    since: float = 0.0
    heard: float = 0.0
    ring: deque[tuple[float, int, bool]] | None = None  # (time, raw rank, near the line)
    wlevel: Severity | None = None  # held by the windowed rule
    view: WindowView | None = None


class LevelTracker:
    """Effective levels per key, moved only after a condition has held long enough (or
    recurred often enough in the window)."""

    def __init__(
        self,
        *,
        for_s: float,
        clear_s: float,
        window_s: float = 120.0,
        fire_share: float = 0.5,
        clear_share: float = 0.2,
    ) -> None:
        self.for_s = for_s
        self.clear_s = clear_s
        self.window_s = window_s
        self.fire_share = fire_share
        self.clear_share = clear_share
        self._tracks: dict[Hashable, _Track] = {}

    def configure(self, analyzer: AnalyzerSettings) -> None:
        """Take the durations and window shares from the analyzer settings (they may change
        while running)."""
        self.for_s = analyzer.for_seconds
        self.clear_s = analyzer.clear_seconds
        self.window_s = analyzer.window_seconds
        self.fire_share = analyzer.window_fire_share
        self.clear_share = analyzer.window_clear_share

    def current(self, key: Hashable) -> Severity | None:
        track = self._tracks.get(key)
        return _effective(track) if track else None

    def tracked(self, key: Hashable) -> bool:
        """True while anything is remembered for ``key`` (a level, a pending timer or a
        window with the condition in it): only then can a clear sample still hold a level."""
        return key in self._tracks

    def window(self, key: Hashable) -> WindowView | None:
        """The window's account when the windowed rule is what holds this key's level (an
        intermittent fault), else ``None``."""
        track = self._tracks.get(key)
        if track is None or track.wlevel is None or _rank(track.wlevel) <= _rank(track.level):
            return None
        return track.view

    def update(
        self,
        key: Hashable,
        raw: Severity | None,
        now: float,
        *,
        for_s: float | None = None,
        clear_s: float | None = None,
        near: bool = False,
        window: bool = False,
    ) -> Severity | None:
        """Feed the raw level seen at ``now``; returns the effective level.

        ``near``: the value is inside the clear margin under the next line up (see
        ``near_line``). ``window=True`` judges the key over the window too. A raw level
        of ``None`` with ``clear_s=0`` forgets the key at once, window included."""
        track = self._tracks.get(key)
        if track is None:
            if raw is None:
                return None
            track = self._tracks[key] = _Track(candidate=raw, since=now)
        hold_clear = self.clear_s if clear_s is None else clear_s
        if raw is None and hold_clear <= 0:
            del self._tracks[key]
            return None
        track.heard = now
        if raw == track.level:
            track.candidate = raw
            track.since = now
        else:
            if raw != track.candidate:
                track.candidate = raw
                track.since = now
            rising = _rank(raw) > _rank(track.level)
            hold = (self.for_s if for_s is None else for_s) if rising else hold_clear
            if now - track.since >= hold:
                track.level = raw
        if window and (self.for_s if for_s is None else for_s) > 0:
            self._record(track, now, _rank(raw), near)
        elif track.ring is not None:
            track.ring, track.wlevel, track.view = None, None, None
        if self._idle(track):
            del self._tracks[key]
            return None
        return _effective(track)

    def end_round(self, now: float) -> None:
        """Close one sample: every key not heard about at ``now`` is treated as clear for
        this sample. A pending rise is dropped (separate brief spikes never add up to a
        "for" duration), the window counts the sample as off, and a level already held
        stays held (whoever stopped reporting it decides whether it resolves)."""
        for key, track in list(self._tracks.items()):
            if track.heard >= now:
                continue
            track.candidate = track.level
            track.since = now
            if track.ring is not None:
                self._record(track, now, _OFF, False)
            if self._idle(track):
                del self._tracks[key]

    def keys(self) -> list[Hashable]:
        return list(self._tracks)

    # -- the window -------------------------------------------------------------------------
    def _record(self, track: _Track, now: float, rank: int, near: bool) -> None:
        ring = track.ring
        if ring is None:
            if rank == _OFF and track.wlevel is None:
                return  # nothing to remember: the window starts at the first sample on
            ring = track.ring = deque()
        ring.append((now, rank, near))
        cutoff = now - self.window_s
        while ring and ring[0][0] <= cutoff:
            ring.popleft()
        self._judge(track)

    def _judge(self, track: _Track) -> None:
        ring = track.ring
        if not ring:
            track.wlevel, track.view = None, None
            return
        samples = len(ring)
        counts = dict.fromkeys(_LINES, 0)
        for _, rank, _ in ring:
            if rank >= 0:
                counts[rank] += 1
        held = _rank(track.wlevel)
        covered = ring[-1][0] - ring[0][0] + (ring[-1][0] - ring[-2][0] if samples > 1 else 0.0)
        half_full = covered >= self.window_s / 2
        on = 0
        for line in _LINES:  # from the highest line down; ``on`` counts samples at or above
            on += counts[line]
            share = on / samples
            keeps = held >= line and share >= self.clear_share
            # A line fires only where some sample is (a threshold has no info line).
            fires = (
                counts[line] > 0
                and share >= self.fire_share
                and half_full
                and _recurred(ring, line)
            )
            if keeps or fires:
                track.wlevel = _BY_RANK[line]
                track.view = WindowView(track.wlevel, on, samples, self.window_s)
                return
        track.wlevel, track.view = None, None

    @staticmethod
    def _idle(track: _Track) -> bool:
        if track.level is not None or track.candidate is not None or track.wlevel is not None:
            return False
        return not track.ring or all(rank < 0 for _, rank, _ in track.ring)


def _effective(track: _Track) -> Severity | None:
    return track.level if _rank(track.level) >= _rank(track.wlevel) else track.wlevel


def _recurred(ring: deque[tuple[float, int, bool]], line: int) -> bool:
    """True when the condition reached ``line``, was clearly off, and reached it again."""
    state = 0  # 0: not yet on, 1: on, 2: clearly off after being on
    for _, rank, near in ring:
        if rank >= line:
            if state == 2:
                return True
            state = 1
        elif state == 1 and not (near and _NEXT_LINE[rank] == line):
            state = 2
    return False
