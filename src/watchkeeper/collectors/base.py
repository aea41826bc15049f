"""The collector protocol, the registry that holds collectors, and counter-rate tracking.

A collector is anything with a ``name``, the ``metrics`` it declares and a synchronous
``collect()``. Built-in collectors return one typed family model from
:mod:`watchkeeper.model.metrics`; a plugin collector may return ``{"metric.name": value}`` with
names it declared, which land in ``MetricsSample.extra``. ``collect()`` may return ``None``
when the family does not exist on this host (no GPU): the sample then simply lacks it.

    registry = CollectorRegistry()
    registry.register(MemoryCollector())
    registry.register(MemoryCollector())  # DuplicateCollectorError
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Protocol, TypeAlias, runtime_checkable

from pydantic import BaseModel

from watchkeeper.model.metrics import MetricSpec

__all__ = [
    "CollectResult",
    "Collector",
    "CollectorRegistry",
    "DuplicateCollectorError",
    "DuplicateMetricError",
    "RateTracker",
    "UnknownCollectorError",
]

#: What ``collect()`` may return: a family model, plugin metrics by name, or nothing here.
CollectResult: TypeAlias = BaseModel | Mapping[str, float] | None


@runtime_checkable
class Collector(Protocol):
    """One metric family. ``collect()`` runs in a worker thread, once per sample; it should
    read only what it needs and raise freely: the sampler records the error and carries on."""

    @property
    def name(self) -> str: ...

    @property
    def metrics(self) -> tuple[MetricSpec, ...]: ...

    def collect(self) -> CollectResult: ...


class DuplicateCollectorError(ValueError):
    """A collector with this name is already registered; unregister it first to replace it."""


class DuplicateMetricError(ValueError):
    """Two collectors declare the same metric name; their values would overwrite each other."""


class UnknownCollectorError(KeyError):
    """No collector is registered under this name."""


class CollectorRegistry:
    """Named collectors in registration order; the sampler runs them in that order.

    Safe to change from one thread while another samples: readers get a snapshot.
    """

    def __init__(self, collectors: Iterable[Collector] = ()) -> None:
        self._lock = threading.Lock()
        self._collectors: dict[str, Collector] = {}
        for collector in collectors:
            self.register(collector)

    def register(self, collector: Collector) -> None:
        """Add ``collector``; its name and its metric names must be new."""
        name = collector.name
        if not name or name != name.strip():
            raise ValueError(f"collector name must be non-empty without edge spaces: {name!r}")
        with self._lock:
            if name in self._collectors:
                raise DuplicateCollectorError(f"collector {name!r} is already registered")
            taken = {
                spec.name: other for other in self._collectors.values() for spec in other.metrics
            }
            for spec in collector.metrics:
                if spec.name in taken:
                    raise DuplicateMetricError(
                        f"metric {spec.name!r} of {name!r} is already declared by "
                        f"{taken[spec.name].name!r}"
                    )
            self._collectors[name] = collector

    def unregister(self, name: str) -> Collector:
        """Remove and return the collector called ``name``."""
        with self._lock:
            try:
                return self._collectors.pop(name)
            except KeyError:
                raise UnknownCollectorError(name) from None

    def get(self, name: str) -> Collector:
        """The collector called ``name``; :class:`UnknownCollectorError` if there is none."""
        try:
            return self._collectors[name]
        except KeyError:
            raise UnknownCollectorError(name) from None

    def names(self) -> tuple[str, ...]:
        """Registered names in registration order."""
        with self._lock:
            return tuple(self._collectors)

    def collectors(self) -> tuple[Collector, ...]:
        """A snapshot of the registered collectors in registration order."""
        with self._lock:
            return tuple(self._collectors.values())

    def metric_specs(self) -> tuple[MetricSpec, ...]:
        """Every metric the registered collectors declare: what the API and exporters list."""
        return tuple(spec for collector in self.collectors() for spec in collector.metrics)

    def __contains__(self, name: object) -> bool:
        return name in self._collectors

    def __iter__(self) -> Iterator[Collector]:
        return iter(self.collectors())

    def __len__(self) -> int:
        return len(self._collectors)


class RateTracker:
    """Per-second rates from ever-growing counters (bytes sent, context switches...).

    The first reading of a key gives ``None``: a rate needs two points. A counter that goes
    backwards (reboot of a device, 32-bit wrap, an interface that vanished and came back)
    also gives ``None`` and becomes the new baseline, so a rate is never negative and never
    a huge jump from a bogus delta. Pass the clock in tests to control time::

        rates = RateTracker(clock=fake_clock)
        rates.rate("eth0.rx", 1000)   # None
        rates.rate("eth0.rx", 3000)   # 2000.0 per second after 1 s
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[Hashable, tuple[float, float]] = {}

    def rate(self, key: Hashable, value: float, now: float | None = None) -> float | None:
        """Record ``value`` for ``key`` and return its rate per second since the last one.

        Pass ``now`` to share one clock reading across many keys of a sample.
        """
        if now is None:
            now = self._clock()
        previous = self._last.get(key)
        if previous is not None and now <= previous[1]:
            # No time has passed (or the clock stepped back): keep the older baseline so the
            # next call still measures a real interval.
            return None
        self._last[key] = (value, now)
        if previous is None:
            return None
        delta = value - previous[0]
        if delta < 0:
            return None
        return delta / (now - previous[1])

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Forget every key not in ``keys`` (devices that disappeared), bounding memory and
        making a returning device start afresh."""
        keep = set(keys)
        for key in [k for k in self._last if k not in keep]:
            del self._last[key]

    def forget(self, key: Hashable) -> None:
        """Drop ``key``'s baseline; its next reading gives ``None`` again."""
        self._last.pop(key, None)

    def __len__(self) -> int:
        return len(self._last)
