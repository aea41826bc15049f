"""Sampler: partial samples when a family fails, plugin metrics, declarations, GPU."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from watchkeeper.collectors import (
    CollectorRegistry,
    CpuCollector,
    DiskCollector,
    GpuCollector,
    MemoryCollector,
    NetworkCollector,
    ProcessCollector,
    Sampler,
    SystemCollector,
    build_default_registry,
)
from watchkeeper.model.metrics import (
    SERVICE_METRIC_SPECS,
    BatteryStatus,
    CpuMetrics,
    DiskIO,
    DiskMetrics,
    FanReading,
    FilesystemUsage,
    GpuDevice,
    GpuMetrics,
    InterfaceRates,
    MemoryMetrics,
    MetricCatalog,
    MetricSpec,
    MetricsSample,
    NetworkMetrics,
    ProcessMetrics,
    SystemMetrics,
    TemperatureReading,
)
from watchkeeper.model.services import ServiceStatus

FAMILIES = ("cpu", "memory", "disks", "network", "processes", "system")


class Failing:
    """psutil, except that one function raises the given error."""

    def __init__(self, method: str, error: BaseException) -> None:
        self.method, self.error = method, error

    def __getattr__(self, name: str) -> Any:
        if name == self.method:

            def fail(*args: Any, **kwargs: Any) -> Any:
                raise self.error

            return fail
        return getattr(psutil, name)


class FakeNvml:
    """The slice of pynvml the GPU collector uses: there is no NVIDIA GPU on this machine."""

    class NVMLError(Exception):
        pass

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, *, broken: bool = False, no_driver: bool = False) -> None:
        self.broken, self.no_driver, self.shut = broken, no_driver, False

    def nvmlInit(self) -> None:
        if self.no_driver:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes | str:
        return b"Tesla T4" if handle == 0 else "NVIDIA A100\x1b[0m"

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        if self.broken:
            raise self.NVMLError("GPU is lost")
        return SimpleNamespace(gpu=40 + handle, memory=10)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=4 << 30, total=16 << 30, free=12 << 30)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return 61

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        if handle == 1:
            raise self.NVMLError("Not Supported")
        return 70_500  # milliwatts


def registry_with(**replacements: Any) -> CollectorRegistry:
    """The default families, each replaceable by a collector built by the test."""
    collectors: dict[str, Any] = {
        "cpu": CpuCollector(),
        "memory": MemoryCollector(),
        "disks": DiskCollector(),
        "network": NetworkCollector(),
        "processes": ProcessCollector(top_n=3),
        "system": SystemCollector(),
        "gpu": GpuCollector(nvml=FakeNvml()),
    }
    collectors.update(replacements)
    return CollectorRegistry(collectors.values())


ACCESS = psutil.AccessDenied(pid=1, name="init")
IO_ERROR = OSError(errno.EIO, "Input/output error")


@pytest.mark.parametrize(
    ("family", "make", "reason"),
    [
        ("cpu", lambda _: CpuCollector(Failing("cpu_times", ACCESS)), "AccessDenied"),
        ("memory", lambda _: MemoryCollector(Failing("virtual_memory", ACCESS)), "AccessDenied"),
        ("disks", lambda _: DiskCollector(Failing("disk_partitions", IO_ERROR)), "OSError"),
        ("network", lambda _: NetworkCollector(Failing("net_io_counters", IO_ERROR)), "OSError"),
        ("processes", lambda tmp: ProcessCollector(proc_root=tmp / "gone"), "FileNotFoundError"),
        (
            "processes",
            lambda _: ProcessCollector(Failing("process_iter", ACCESS), proc_root=None),
            "AccessDenied",
        ),
        ("system", lambda _: SystemCollector(Failing("boot_time", ACCESS)), "AccessDenied"),
        ("gpu", lambda _: GpuCollector(nvml=FakeNvml(broken=True)), "GPU is lost"),
    ],
)
def test_a_failing_family_leaves_a_partial_sample(
    tmp_path: Path, family: str, make: Any, reason: str
) -> None:
    sample = Sampler(registry_with(**{family: make(tmp_path)}), hostname="test").sample()
    assert set(sample.errors) == {family}
    assert reason in sample.errors[family]
    assert getattr(sample, family) is None
    for other in (*FAMILIES, "gpu"):
        if other != family:
            assert getattr(sample, other) is not None, other
    assert sample.partial
    assert all(not key.startswith(f"{family}.") for key in sample.flat())


def test_any_exception_is_contained_and_the_next_sample_recovers() -> None:
    class Flaky:
        name = "flaky"
        metrics = (MetricSpec(name="flaky.ok", unit="count", description="Test value."),)
        calls = 0

        def collect(self) -> dict[str, float]:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("bug in a plugin\nwith a second line")
            return {"flaky.ok": 1.0}

    registry = CollectorRegistry([MemoryCollector(), Flaky()])
    sampler = Sampler(registry)
    first = sampler.sample()
    assert first.errors == {"flaky": "RuntimeError: bug in a plugin with a second line"}
    assert first.memory is not None
    second = sampler.sample()
    assert second.errors == {} and second.extra == {"flaky.ok": 1.0}
    assert set(sampler.last_timings) == {"memory", "flaky"}


class Plugin:
    name = "queue"
    metrics = (
        MetricSpec(name="queue.depth", unit="count", description="Jobs waiting."),
        MetricSpec(name="queue.{worker}.busy", unit="boolean", description="Worker busy."),
    )

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def collect(self) -> dict[str, Any]:
        return self.values


def test_plugin_metrics_land_in_extra_and_undeclared_ones_are_dropped() -> None:
    good = Sampler(CollectorRegistry([Plugin({"queue.depth": 3, "queue.w1.busy": 1})])).sample()
    assert good.extra == {"queue.depth": 3.0, "queue.w1.busy": 1.0}
    assert good.flat() == good.extra and not good.errors

    bad = Sampler(CollectorRegistry([Plugin({"queue.depth": 3, "cpu.percent": 99})])).sample()
    assert bad.extra == {"queue.depth": 3.0}
    assert "undeclared" in bad.errors["queue"] and "cpu.percent" in bad.errors["queue"]

    odd = Sampler(CollectorRegistry([Plugin({"queue.depth": float("nan")})])).sample()
    assert odd.extra == {}


def test_none_means_absent_and_foreign_types_are_errors() -> None:
    class Nothing:
        name = "nothing"
        metrics = ()

        def collect(self) -> None:
            return None

    class Weird:
        name = "weird"
        metrics = ()

        def collect(self) -> object:
            return ["not", "a", "model"]

    sample = Sampler(CollectorRegistry([Nothing(), Weird()])).sample()  # type: ignore[list-item]
    assert "nothing" not in sample.errors
    assert "unsupported" in sample.errors["weird"]


def test_two_collectors_for_one_family_is_an_error_for_the_second() -> None:
    class OtherMemory(MemoryCollector):
        name = "memory2"
        metrics = ()

    sample = Sampler(CollectorRegistry([MemoryCollector(), OtherMemory()])).sample()
    assert sample.memory is not None and "already" in sample.errors["memory2"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/fd")
def test_close_releases_what_collectors_hold() -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    sampler = Sampler(CollectorRegistry([ProcessCollector(keep_open=10_000), MemoryCollector()]))
    sampler.sample()
    assert open_fds() > before + 10
    sampler.close()
    assert open_fds() <= before + 1
    assert sampler.sample().processes is not None  # usable again after close
    sampler.close()


def test_interval_timestamp_host_and_top_n_cap() -> None:
    now = [1_000.0]
    registry = CollectorRegistry([ProcessCollector(top_n=8)])
    sampler = Sampler(registry, top_n=2, clock=lambda: now[0], hostname="box")
    first = sampler.sample()
    assert (first.timestamp, first.host, first.interval) == (1_000.0, "box", None)
    time.sleep(0.2)
    now[0] += 5.0
    second = sampler.sample()
    assert second.interval == 5.0
    assert second.processes is not None and len(second.processes.top_memory) == 2
    assert Sampler(CollectorRegistry()).sample().host  # defaults to this machine's name


def test_default_registry_sample_is_complete_declared_and_json_safe() -> None:
    registry = build_default_registry(top_n=5, include_loopback=True)
    assert registry.names() == (*FAMILIES, "gpu")
    sampler = Sampler(registry)
    sampler.sample()
    time.sleep(0.2)
    sample = sampler.sample()
    assert sample.errors == {}
    assert sample.gpu is None  # no NVML here: omitted, not an error
    for family in FAMILIES:
        assert getattr(sample, family) is not None
    flat = sample.flat()
    assert MetricCatalog(registry.metric_specs()).undeclared(flat) == []
    for key in ("cpu.percent", "memory.percent", "swap.percent", "load.1m_per_core"):
        assert key in flat
    assert "disk./.percent" in flat and "disk./.inodes_percent" in flat
    assert "procs.zombie" in flat and "tcp.established" in flat
    if sys.platform.startswith("linux"):
        assert "net.lo.rx_bytes_per_s" in flat
    again = MetricsSample.model_validate_json(sample.model_dump_json())
    assert again == sample
    json.loads(sample.model_dump_json())


def full_sample() -> MetricsSample:
    """A sample with every family and every optional reading filled in."""
    return MetricsSample(
        timestamp=1.0,
        host="h",
        interval=1.0,
        cpu=CpuMetrics(
            count=2, percent=1, user_percent=1, system_percent=1, iowait_percent=1,
            steal_percent=1, per_core_percent=(1, 2), load_1m=1, load_5m=1, load_15m=1,
            ctx_switches_per_s=1, interrupts_per_s=1, freq_mhz=1,
        ),
        memory=MemoryMetrics(
            total_bytes=1, available_bytes=1, used_bytes=1, percent=1, swap_total_bytes=1,
            swap_used_bytes=1, swap_percent=1, swap_in_bytes_per_s=1, swap_out_bytes_per_s=1,
            cached_bytes=1, buffers_bytes=1, slab_bytes=1, shared_bytes=1,
        ),
        disks=DiskMetrics(
            filesystems=(
                FilesystemUsage(
                    mount="/srv/v1.2", device="d", fstype="xfs", total_bytes=1, used_bytes=1,
                    free_bytes=1, percent=1, inodes_total=1, inodes_used=1, inodes_percent=1,
                ),
            ),
            io=(DiskIO(device="sda", read_bytes_per_s=1, write_bytes_per_s=1,
                       read_ops_per_s=1, write_ops_per_s=1, busy_percent=1),),
        ),
        network=NetworkMetrics(
            interfaces=(InterfaceRates(name="eth0", **dict.fromkeys(
                ("rx_bytes_per_s", "tx_bytes_per_s", "rx_packets_per_s", "tx_packets_per_s",
                 "rx_errors_per_s", "tx_errors_per_s", "rx_drops_per_s", "tx_drops_per_s"), 1.0
            )),),
            tcp_states={"established": 3},
        ),
        processes=ProcessMetrics(total=1),
        system=SystemMetrics(
            boot_time=1, uptime_seconds=1, users=1,
            temperatures=(TemperatureReading(sensor="cpu_0", celsius=40),),
            fans=(FanReading(sensor="fan_0", rpm=900),),
            battery=BatteryStatus(percent=50, seconds_left=60, plugged=False),
        ),
        services=[ServiceStatus(name="web", manager="process", state="running", healthy=True)],
        gpu=GpuMetrics(devices=(GpuDevice(
            index=0, name="g", utilization_percent=1, memory_used_bytes=1,
            memory_total_bytes=2, temperature_celsius=1, power_watts=1,
        ),)),
    )  # fmt: skip


def test_every_flat_key_is_declared_and_every_declaration_is_used() -> None:
    specs = (*build_default_registry().metric_specs(), *SERVICE_METRIC_SPECS)
    flat = full_sample().flat()
    catalog = MetricCatalog(specs)
    assert catalog.undeclared(flat) == []
    for spec in specs:
        assert any(MetricCatalog([spec]).declares(key) for key in flat), spec.name
    assert flat["load.1m_per_core"] == 0.5
    assert flat["gpu.0.memory_percent"] == 50.0
    assert flat["disk./srv/v1.2.percent"] == 1.0
    assert flat["tcp.listen"] == 0.0 and flat["tcp.total"] == 3.0
    assert flat["service.web.up"] == 1.0 and flat["service.web.healthy"] == 1.0


def test_catalog_rejects_what_is_not_declared() -> None:
    catalog = MetricCatalog(build_default_registry().metric_specs())
    assert catalog.undeclared(["cpu.percent", "cpu.percentage", "disk..x", "net.eth0"]) == [
        "cpu.percentage",
        "disk..x",
        "net.eth0",
    ]


def test_flat_leaves_out_unknowns() -> None:
    sample = MetricsSample(
        timestamp=1.0, host="h", cpu=CpuMetrics(count=4, load_1m=2.0), memory=None
    )
    assert sample.flat() == {"cpu.count": 4.0, "load.1m": 2.0, "load.1m_per_core": 0.5}


def test_gpu_collector_reads_every_device_and_tolerates_unsupported_readings() -> None:
    nvml = FakeNvml()
    collector = GpuCollector(nvml=nvml)
    assert collector.available is None
    result = collector.collect()
    assert result is not None and collector.available
    first, second = result.devices
    assert (first.name, first.utilization_percent, first.power_watts) == ("Tesla T4", 40.0, 70.5)
    assert second.name == "NVIDIA A100 [0m" and second.power_watts is None
    assert second.memory_percent == 25.0
    collector.close()
    assert nvml.shut


def test_gpu_is_omitted_without_a_driver_or_library() -> None:
    assert GpuCollector(nvml=FakeNvml(no_driver=True)).collect() is None
    if importlib.util.find_spec("pynvml") is not None:
        pytest.skip("pynvml is installed here; the missing-library path cannot be seen")
    collector = GpuCollector()
    assert collector.collect() is None and collector.available is False
