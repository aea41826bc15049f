"""Levels with hysteresis and a "for" duration, so a value at the line does not flap.

A condition must hold for ``for_s`` seconds before its level rises, and must stay below
the level *minus a margin* for ``clear_s`` seconds before it falls::

    tracker = LevelTracker(for_s=15, clear_s=15)
    level = tracker.update(("cpu_high", "cpu"), raw=Severity.WARNING, now=t)

``raw_level`` turns a value and its warning/critical lines into the raw level, taking the
current level into account so the margin applies only on the way down.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from watchkeeper.model.alerts import SEVERITY_RANK, Severity

__all__ = ["LevelTracker", "raw_level"]


def _rank(level: Severity | None) -> int:
    return -1 if level is None else SEVERITY_RANK[level]


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


@dataclass
class _Track:
    level: Severity | None = None
    candidate: Severity | None = None
    since: float = 0.0


class LevelTracker:
    """Effective levels per key, moved only after a condition has held long enough."""

    def __init__(self, *, for_s: float, clear_s: float) -> None:
        self.for_s = for_s
        self.clear_s = clear_s
        self._tracks: dict[Hashable, _Track] = {}

    def current(self, key: Hashable) -> Severity | None:
        track = self._tracks.get(key)
        return track.level if track else None

    def update(
        self,
        key: Hashable,
        raw: Severity | None,
        now: float,
        *,
        for_s: float | None = None,
        clear_s: float | None = None,
    ) -> Severity | None:
        """Feed the raw level seen at ``now``; returns the effective level."""
        track = self._tracks.get(key)
        if track is None:
            if raw is None:
                return None
            track = self._tracks[key] = _Track(candidate=raw, since=now)
        if raw == track.level:
            track.candidate = raw
            track.since = now
        else:
            if raw != track.candidate:
                track.candidate = raw
                track.since = now
            rising = _rank(raw) > _rank(track.level)
            hold = (
                (self.for_s if for_s is None else for_s)
                if rising
                else (self.clear_s if clear_s is None else clear_s)
            )
            if now - track.since >= hold:
                track.level = raw
        if track.level is None and track.candidate is None:
            del self._tracks[key]
            return None
        return track.level

    def keys(self) -> list[Hashable]:
        return list(self._tracks)
