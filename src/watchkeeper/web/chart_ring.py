"""The in-memory chart window as columns of numbers, not one object per sample.

A chart point is a handful of floats; kept as a dict per sample, each point costs some
600 bytes (the dict, its float objects), so an hour at 1 s is megabytes of mostly
bookkeeping. ``ChartRing`` keeps one ``array('d')`` per column, allocated once at its full
size: ``capacity * (1 + len(series)) * 8`` bytes, whatever the daemon's uptime. A missing
value (``None``) is stored as NaN, which no chart value can be (the JSON the API sends
allows no NaN), and read back as ``None``::

    ring = ChartRing(720, ("cpu", "memory"))
    ring.append({"ts": 100.0, "cpu": 12.5, "memory": None})
    ring.points()   # [{"ts": 100.0, "cpu": 12.5, "memory": None}]
    ring.columns()  # {"ts": [100.0], "cpu": [12.5], "memory": [None]}

Older history than the ring holds comes from storage (``/api/metrics/history``).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ChartRing"]

_MISSING = math.nan
_BYTES_PER_VALUE = 8  # array('d')


def _stored(value: Any) -> float:
    return _MISSING if value is None else float(value)


def _read(value: float) -> float | None:
    return None if math.isnan(value) else value


class ChartRing:
    """The last ``capacity`` chart points; ``ts`` and each of ``series`` are columns."""

    def __init__(self, capacity: int, series: Sequence[str]) -> None:
        if capacity < 1:
            raise ValueError("the chart window needs room for at least one point")
        self.capacity = capacity
        self.names: tuple[str, ...] = ("ts", *series)
        self._columns = [array("d", [_MISSING]) * capacity for _ in self.names]
        self._next = 0  # where the next point goes
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """The bytes the columns hold (fixed from the start)."""
        return self.capacity * len(self.names) * _BYTES_PER_VALUE

    def append(self, point: Mapping[str, Any]) -> None:
        """Keep ``point`` (a value per column; absent or None is stored as missing),
        dropping the oldest once the ring is full."""
        slot = self._next
        for name, column in zip(self.names, self._columns, strict=True):
            column[slot] = _stored(point.get(name))
        self._next = (slot + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def _order(self) -> list[int]:
        start = (self._next - self._count) % self.capacity
        return [(start + i) % self.capacity for i in range(self._count)]

    def columns(self) -> dict[str, list[float | None]]:
        """Each column's values, oldest first."""
        order = self._order()
        return {
            name: [_read(column[i]) for i in order]
            for name, column in zip(self.names, self._columns, strict=True)
        }

    def points(self) -> list[dict[str, float | None]]:
        """The points, oldest first, each as the dict it was appended as."""
        columns = self._columns
        names = self.names
        return [
            {name: _read(column[i]) for name, column in zip(names, columns, strict=True)}
            for i in self._order()
        ]
