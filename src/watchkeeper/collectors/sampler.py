"""One sampling round: run every registered collector, keep going past failures.

The SensorAgent calls :meth:`Sampler.sample` in a worker thread once per interval. A
collector that raises (``psutil.AccessDenied``, ``OSError``, a plugin's bug) costs only its
own family: the sample is partial, ``errors[name]`` says why, and the rest is there::

    sampler = Sampler(build_default_registry(top_n=10))
    sample = sampler.sample()
    if sample.errors: ...  # e.g. {"disks": "PermissionError: [Errno 13] ..."}
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from pydantic import BaseModel

from watchkeeper.collectors.base import (
    Collector,
    CollectorRegistry,
    CollectResult,
)
from watchkeeper.collectors.cpu import CpuCollector
from watchkeeper.collectors.disks import DiskCollector
from watchkeeper.collectors.gpu import GpuCollector
from watchkeeper.collectors.memory import MemoryCollector
from watchkeeper.collectors.network import NetworkCollector
from watchkeeper.collectors.processes import ProcessCollector
from watchkeeper.collectors.system import SystemCollector
from watchkeeper.model.metrics import (
    CpuMetrics,
    DiskMetrics,
    GpuMetrics,
    MemoryMetrics,
    MetricCatalog,
    MetricsSample,
    NetworkMetrics,
    ProcessMetrics,
    SystemMetrics,
)
from watchkeeper.model.text import LOG_LINE, clean

__all__ = ["Sampler", "build_default_registry"]

# Family models and the MetricsSample field each one fills. A replacement collector (a
# plugin's better CPU reader) fills the same field by returning the same type.
_FAMILY_FIELDS: dict[type[BaseModel], str] = {
    CpuMetrics: "cpu",
    MemoryMetrics: "memory",
    DiskMetrics: "disks",
    NetworkMetrics: "network",
    ProcessMetrics: "processes",
    SystemMetrics: "system",
    GpuMetrics: "gpu",
}


class _Rejected(Exception):
    """A collector returned something the sample cannot carry."""


class Sampler:
    """Runs the registry's collectors in order and assembles a :class:`MetricsSample`.

    ``top_n`` caps the process top lists in each sample (the process collector decides how
    many it gathers: ``build_default_registry(top_n=...)``). ``clock`` gives the sample's
    timestamp; ``hostname`` defaults to this machine's name. One sample at a time: calls
    from several threads are serialised, because rates depend on the previous call.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        top_n: int = 10,
        clock: Callable[[], float] = time.time,
        hostname: str | None = None,
    ) -> None:
        if top_n < 0:
            raise ValueError("top_n must be >= 0")
        self._registry = registry
        self._top_n = top_n
        self._clock = clock
        self._host = hostname if hostname is not None else socket.gethostname()
        self._lock = threading.Lock()
        self._last: float | None = None
        self._catalogs: dict[int, tuple[Collector, MetricCatalog]] = {}
        self._timings: Mapping[str, float] = MappingProxyType({})

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry

    @property
    def last_timings(self) -> Mapping[str, float]:
        """Milliseconds each collector took in the last sample: where the time goes."""
        return self._timings

    def close(self) -> None:
        """Release what collectors hold open (kept ``/proc`` files, NVML). Sampling again
        later still works; the collectors reopen what they need."""
        with self._lock:
            for collector in self._registry.collectors():
                close = getattr(collector, "close", None)
                if callable(close):
                    # Shutdown must reach every collector, whatever one of them raises.
                    with contextlib.suppress(Exception):
                        close()

    def sample(self) -> MetricsSample:
        """Run every collector once and return what they saw, failures named in ``errors``."""
        with self._lock:
            now = self._clock()
            interval = now - self._last if self._last is not None else None
            self._last = now
            families: dict[str, BaseModel] = {}
            extra: dict[str, float] = {}
            errors: dict[str, str] = {}
            timings: dict[str, float] = {}
            for collector in self._registry.collectors():
                name = collector.name
                started = time.perf_counter()
                try:
                    self._place(collector, collector.collect(), families, extra)
                except Exception as exc:  # any failure is this family's, never the sample's
                    errors[name] = _reason(exc)
                timings[name] = (time.perf_counter() - started) * 1000.0
            self._timings = MappingProxyType(timings)
            return MetricsSample(
                timestamp=now,
                host=self._host,
                interval=interval if interval is not None and interval > 0 else None,
                extra=extra,
                errors=errors,
                **families,
            )

    def _place(
        self,
        collector: Collector,
        result: CollectResult,
        families: dict[str, BaseModel],
        extra: dict[str, float],
    ) -> None:
        if result is None:
            return  # nothing of this kind on this host (no GPU)
        if isinstance(result, BaseModel):
            field = next(
                (_FAMILY_FIELDS[c] for c in type(result).__mro__ if c in _FAMILY_FIELDS), None
            )
            if field is None:
                raise _Rejected(f"unsupported result type {type(result).__name__}")
            if field in families:
                raise _Rejected(f"family {field!r} was already filled by another collector")
            if isinstance(result, ProcessMetrics) and self._over_top_n(result):
                n = self._top_n
                result = result.model_copy(
                    update={"top_cpu": result.top_cpu[:n], "top_memory": result.top_memory[:n]}
                )
            families[field] = result
            return
        if not isinstance(result, Mapping):
            raise _Rejected(f"unsupported result type {type(result).__name__}")
        catalog = self._catalog(collector)
        undeclared = catalog.undeclared(result)
        values: dict[str, float] = {}
        for key, value in result.items():
            number = float(value)
            if key not in undeclared and math.isfinite(number):
                values[key] = number
        extra.update(values)
        if undeclared:
            # Declare, then emit: what is not declared is dropped, loudly.
            raise _Rejected("undeclared metrics dropped: " + ", ".join(undeclared[:5]))

    def _over_top_n(self, result: ProcessMetrics) -> bool:
        return max(len(result.top_cpu), len(result.top_memory)) > self._top_n

    def _catalog(self, collector: Collector) -> MetricCatalog:
        cached = self._catalogs.get(id(collector))
        if cached is None or cached[0] is not collector:
            cached = (collector, MetricCatalog(collector.metrics))
            self._catalogs[id(collector)] = cached
        return cached[1]


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, _Rejected):
        return clean(text, LOG_LINE, 200)
    return clean(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, LOG_LINE, 200)


def build_default_registry(
    top_n: int = 10,
    *,
    include_loopback: bool = False,
    gpu: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> CollectorRegistry:
    """The built-in collectors, one per family, ready for a :class:`Sampler`.

    Plugins add theirs afterwards with ``registry.register(...)``.
    """
    registry = CollectorRegistry(
        [
            CpuCollector(clock=clock),
            MemoryCollector(clock=clock),
            DiskCollector(clock=clock),
            NetworkCollector(include_loopback=include_loopback, clock=clock),
            ProcessCollector(top_n=top_n, clock=clock),
            SystemCollector(),
        ]
    )
    if gpu:
        registry.register(GpuCollector())
    return registry
