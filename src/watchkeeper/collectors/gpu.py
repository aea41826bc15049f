"""NVIDIA GPUs through NVML, when the ``nvidia-ml-py`` package and a driver are present.

Most hosts have neither, so this collector is cheap to carry: the first ``collect()`` tries
to import ``pynvml`` and initialise the library; if either fails, this and every later call
return ``None`` and the sample simply has no ``gpu`` family (no error). A driver installed
later is picked up when the agent restarts. Readings a card does not support (power on
some consumer cards, temperature on some datacenter ones) are left ``None``; a card that
stops answering its basic utilisation and memory queries makes ``collect()`` raise, which
the sampler reports under ``errors["gpu"]``.

    GpuCollector().collect()  # None on a host without an NVIDIA driver
"""

from __future__ import annotations

from typing import Any

from watchkeeper.model.metrics import GpuDevice, GpuMetrics, MetricSpec
from watchkeeper.model.text import LOG_LINE, clean

__all__ = ["GPU_METRICS", "GpuCollector"]

GPU_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        name="gpu.{index}.utilization_percent",
        unit="percent",
        description="Share of time a kernel ran on the GPU.",
    ),
    MetricSpec(name="gpu.{index}.memory_used_bytes", unit="bytes", description="GPU memory used."),
    MetricSpec(name="gpu.{index}.memory_total_bytes", unit="bytes", description="GPU memory."),
    MetricSpec(name="gpu.{index}.memory_percent", unit="percent", description="GPU memory used."),
    MetricSpec(name="gpu.{index}.temperature_celsius", unit="celsius", description="GPU die."),
    MetricSpec(name="gpu.{index}.power_watts", unit="watts", description="Board power draw."),
)


class GpuCollector:
    """Reads every NVIDIA GPU through NVML; pass ``nvml`` (a pynvml-like object) to test."""

    name: str = "gpu"
    metrics: tuple[MetricSpec, ...] = GPU_METRICS

    def __init__(self, nvml: Any | None = None) -> None:
        self._nvml = nvml
        self._handles: list[tuple[int, str, Any]] | None = None
        self._unavailable = False

    @property
    def available(self) -> bool | None:
        """True once NVML answered, False if it cannot, None before the first attempt."""
        if self._unavailable:
            return False
        return True if self._handles is not None else None

    def collect(self) -> GpuMetrics | None:
        if self._handles is None and not self._start():
            return None
        nvml = self._nvml
        assert self._handles is not None and nvml is not None
        optional = _error_type(nvml)
        devices = []
        for index, name, handle in self._handles:
            util = nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                temp: float | None = float(
                    nvml.nvmlDeviceGetTemperature(handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0))
                )
            except optional:
                temp = None
            try:
                power: float | None = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # mW
            except optional:
                power = None
            devices.append(
                GpuDevice(
                    index=index,
                    name=name,
                    utilization_percent=float(util.gpu),
                    memory_used_bytes=int(memory.used),
                    memory_total_bytes=int(memory.total),
                    temperature_celsius=temp,
                    power_watts=power,
                )
            )
        return GpuMetrics(devices=tuple(devices))

    def close(self) -> None:
        """Release NVML; call when the agent stops."""
        if self._handles is not None and self._nvml is not None:
            self._handles = None
            try:
                self._nvml.nvmlShutdown()
            except _error_type(self._nvml):
                pass  # already gone with the driver; nothing left to release

    def _start(self) -> bool:
        if self._unavailable:
            return False
        if self._nvml is None:
            try:
                import pynvml  # optional dependency: the "gpu" extra
            except ImportError:
                self._unavailable = True
                return False
            self._nvml = pynvml
        nvml = self._nvml
        try:
            nvml.nvmlInit()
            handles = []
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                raw = nvml.nvmlDeviceGetName(handle)
                name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                handles.append((index, clean(name, LOG_LINE, 96), handle))
        except (_error_type(nvml), OSError):
            # No driver, no library, or no permission on the device node: no GPU family.
            self._unavailable = True
            return False
        self._handles = handles
        return True


def _error_type(nvml: Any) -> type[Exception]:
    error = getattr(nvml, "NVMLError", None)
    return error if isinstance(error, type) and issubclass(error, Exception) else OSError
