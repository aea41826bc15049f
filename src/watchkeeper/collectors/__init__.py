"""Metric collectors: one per family, a registry plugins extend, and the sampler.

The SensorAgent builds the default registry once and samples it every interval, in a
worker thread (collectors are synchronous)::

    from watchkeeper.collectors import Sampler, build_default_registry

    sampler = Sampler(build_default_registry(top_n=10))
    sample = sampler.sample()          # a watchkeeper.model.metrics.MetricsSample
    sample.flat()["cpu.percent"]       # absent on the very first sample: rates need two

A plugin adds a collector with a ``name``, declared ``metrics`` and a ``collect()`` that
returns ``{"metric.name": value}``; the values land in ``sample.extra``.

Every collector takes its data source as a parameter (a psutil-like object, a ``/proc``
root, a clock), so tests point it at real test data or at a source that fails.
"""

from __future__ import annotations

from watchkeeper.collectors.base import (
    Collector,
    CollectorRegistry,
    CollectResult,
    DuplicateCollectorError,
    DuplicateMetricError,
    RateTracker,
    UnknownCollectorError,
)
from watchkeeper.collectors.cpu import CpuCollector
from watchkeeper.collectors.disks import DiskCollector
from watchkeeper.collectors.gpu import GpuCollector
from watchkeeper.collectors.memory import MemoryCollector
from watchkeeper.collectors.network import NetworkCollector
from watchkeeper.collectors.processes import ProcessCollector
from watchkeeper.collectors.sampler import Sampler, build_default_registry
from watchkeeper.collectors.system import SystemCollector

__all__ = [
    "CollectResult",
    "Collector",
    "CollectorRegistry",
    "CpuCollector",
    "DiskCollector",
    "DuplicateCollectorError",
    "DuplicateMetricError",
    "GpuCollector",
    "MemoryCollector",
    "NetworkCollector",
    "ProcessCollector",
    "RateTracker",
    "Sampler",
    "SystemCollector",
    "UnknownCollectorError",
    "build_default_registry",
]
