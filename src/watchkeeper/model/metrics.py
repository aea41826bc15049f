"""Typed metric samples, and the declarations every emitted metric must have.

Declare, then emit: each collector lists what it produces as :class:`MetricSpec` values
(name, unit, description) and returns one typed family model (:class:`CpuMetrics`,
:class:`MemoryMetrics`, ...). The sampler gathers the families into a :class:`MetricsSample`,
the message the SensorAgent publishes. :meth:`MetricsSample.flat` turns a sample into
``{"cpu.percent": 12.5, "disk./.percent": 71.0, ...}`` for rules, storage and Prometheus, and
every flat key matches a declared spec (:class:`MetricCatalog` checks it)::

    sample = Sampler(build_default_registry()).sample()
    sample.flat()["memory.percent"]

Spec names may hold ``{placeholders}`` for the parts that vary by host, such as
``disk.{mount}.percent``; a placeholder matches one or more characters, dots included,
because mount points may contain dots.

Rates (``*_per_s``) are ``None`` on the first sample and after a counter reset; ``flat()``
leaves out every ``None``, so a missing key means "not known", never zero.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.model.services import ServiceStatus

__all__ = [
    "SERVICE_METRIC_SPECS",
    "TCP_STATES",
    "BatteryStatus",
    "CpuMetrics",
    "DiskIO",
    "DiskMetrics",
    "FanReading",
    "FilesystemUsage",
    "GpuDevice",
    "GpuMetrics",
    "InterfaceRates",
    "MemoryMetrics",
    "MetricCatalog",
    "MetricSpec",
    "MetricsSample",
    "NetworkMetrics",
    "ProcessInfo",
    "ProcessMetrics",
    "SystemMetrics",
    "TemperatureReading",
]

#: TCP states as named in samples and flat keys (``tcp.time_wait``), in kernel order.
TCP_STATES: tuple[str, ...] = (
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
    "new_syn_recv",
)


class _Frozen(BaseModel):
    # Frozen: a sample is a message; once published nobody may change it under a subscriber.
    model_config = ConfigDict(frozen=True, extra="forbid")


class MetricSpec(_Frozen):
    """One declared metric: ``MetricSpec(name="cpu.percent", unit="percent", description=...)``.

    Units in use: ``percent``, ``bytes``, ``bytes/s``, ``count``, ``count/s``, ``seconds``,
    ``unix_time``, ``MHz``, ``celsius``, ``rpm``, ``watts``, ``load`` and ``boolean`` (1 or 0).
    """

    name: str = Field(min_length=1)
    unit: str = Field(min_length=1)
    description: str = Field(min_length=1)

    @property
    def is_pattern(self) -> bool:
        """True when the name has ``{placeholders}`` (``disk.{mount}.percent``)."""
        return "{" in self.name


#: Declared by the SensorAgent for the services it watches (not by a collector).
SERVICE_METRIC_SPECS: tuple[MetricSpec, ...] = (
    MetricSpec(
        name="service.{name}.up", unit="boolean", description="1 while the service runs or starts."
    ),
    MetricSpec(
        name="service.{name}.healthy",
        unit="boolean",
        description="1 while the service passes its health probe (only with a probe).",
    ),
)


class MetricCatalog:
    """Answers "is this flat key declared?" for a set of specs.

    Build one from the registry's specs and ask it about a sample::

        MetricCatalog(registry.metric_specs()).undeclared(sample.flat())
    """

    def __init__(self, specs: Iterable[MetricSpec]) -> None:
        self._exact: set[str] = set()
        patterns: list[str] = []
        for spec in specs:
            if spec.is_pattern:
                parts = re.split(r"\{[^{}]+\}", spec.name)
                patterns.append(".+".join(re.escape(part) for part in parts))
            else:
                self._exact.add(spec.name)
        self._pattern = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None

    def declares(self, key: str) -> bool:
        """Whether ``key`` is one of the specs or matches a pattern spec."""
        if key in self._exact:
            return True
        return self._pattern is not None and self._pattern.fullmatch(key) is not None

    def undeclared(self, keys: Iterable[str]) -> list[str]:
        """The keys no spec declares, sorted; empty when all is well."""
        return sorted(key for key in keys if not self.declares(key))


class _Family(_Frozen):
    def add_flat(self, out: dict[str, float]) -> None:
        """Add this family's metrics to ``out`` under their dotted names."""
        raise NotImplementedError


def _put(out: dict[str, float], key: str, value: float | None) -> None:
    if value is not None:
        out[key] = float(value)


def _put_all(out: dict[str, float], prefix: str, model: BaseModel, fields: Iterable[str]) -> None:
    for field in fields:
        _put(out, prefix + field, getattr(model, field))


class CpuMetrics(_Family):
    """CPU use across all cores (``percent``) and per core, load average, activity rates."""

    count: int = Field(ge=1, description="logical CPUs")
    percent: float | None = None
    user_percent: float | None = None
    system_percent: float | None = None
    iowait_percent: float | None = None
    steal_percent: float | None = None
    per_core_percent: tuple[float, ...] | None = None
    load_1m: float | None = None
    load_5m: float | None = None
    load_15m: float | None = None
    ctx_switches_per_s: float | None = None
    interrupts_per_s: float | None = None
    freq_mhz: float | None = None

    def add_flat(self, out: dict[str, float]) -> None:
        _put_all(out, "cpu.", self, ("count", "percent", "user_percent", "system_percent"))
        _put_all(out, "cpu.", self, ("iowait_percent", "steal_percent"))
        for core, value in enumerate(self.per_core_percent or ()):
            out[f"cpu.core.{core}.percent"] = value
        for window, load in (("1m", self.load_1m), ("5m", self.load_5m), ("15m", self.load_15m)):
            if load is not None:
                out[f"load.{window}"] = load
                out[f"load.{window}_per_core"] = load / self.count
        _put_all(out, "cpu.", self, ("ctx_switches_per_s", "interrupts_per_s", "freq_mhz"))


class MemoryMetrics(_Family):
    """Virtual memory and swap; swap in/out are rates of paging activity."""

    total_bytes: int
    available_bytes: int
    used_bytes: int
    percent: float
    swap_total_bytes: int
    swap_used_bytes: int
    swap_percent: float
    swap_in_bytes_per_s: float | None = None
    swap_out_bytes_per_s: float | None = None
    cached_bytes: int | None = Field(None, description="page cache (reclaimable)")
    buffers_bytes: int | None = None
    slab_bytes: int | None = Field(None, description="kernel slab, reclaimable or not")
    shared_bytes: int | None = Field(None, description="shmem and tmpfs (not reclaimable)")

    def add_flat(self, out: dict[str, float]) -> None:
        for field, value in self:
            # swap_used_bytes -> swap.used_bytes; used_bytes -> memory.used_bytes
            key = "swap." + field[5:] if field.startswith("swap_") else "memory." + field
            _put(out, key, value)


class FilesystemUsage(_Frozen):
    """Space and inodes of one mounted filesystem, as ``df`` would show them."""

    mount: str
    device: str
    fstype: str
    total_bytes: int
    used_bytes: int
    free_bytes: int = Field(description="space available to unprivileged users")
    percent: float = Field(description="used / (used + free), like df")
    inodes_total: int | None = None
    inodes_used: int | None = None
    inodes_percent: float | None = None


class DiskIO(_Frozen):
    """Throughput and utilisation of one block device (whole disks, not partitions)."""

    device: str
    read_bytes_per_s: float | None = None
    write_bytes_per_s: float | None = None
    read_ops_per_s: float | None = None
    write_ops_per_s: float | None = None
    busy_percent: float | None = Field(None, description="share of time with I/O in flight")


_DISKIO_FIELDS = tuple(f for f in DiskIO.model_fields if f != "device")


class DiskMetrics(_Family):
    """Real filesystems (pseudo and network ones skipped) and block device I/O."""

    filesystems: tuple[FilesystemUsage, ...] = ()
    io: tuple[DiskIO, ...] = ()

    def add_flat(self, out: dict[str, float]) -> None:
        for fs in self.filesystems:
            key = f"disk.{fs.mount}"
            out[f"{key}.total_bytes"] = float(fs.total_bytes)
            out[f"{key}.used_bytes"] = float(fs.used_bytes)
            out[f"{key}.free_bytes"] = float(fs.free_bytes)
            out[f"{key}.percent"] = fs.percent
            _put_all(out, key + ".", fs, ("inodes_total", "inodes_used", "inodes_percent"))
        for dev in self.io:
            _put_all(out, f"diskio.{dev.device}.", dev, _DISKIO_FIELDS)


class InterfaceRates(_Frozen):
    """Per-second traffic and trouble counters of one network interface."""

    name: str
    rx_bytes_per_s: float | None = None
    tx_bytes_per_s: float | None = None
    rx_packets_per_s: float | None = None
    tx_packets_per_s: float | None = None
    rx_errors_per_s: float | None = None
    tx_errors_per_s: float | None = None
    rx_drops_per_s: float | None = None
    tx_drops_per_s: float | None = None


_IFACE_FIELDS = tuple(f for f in InterfaceRates.model_fields if f != "name")


class NetworkMetrics(_Family):
    """Interface rates and TCP connections by state (``None`` when they cannot be counted)."""

    interfaces: tuple[InterfaceRates, ...] = ()
    tcp_states: dict[str, int] | None = Field(None, description="keys from TCP_STATES")

    def add_flat(self, out: dict[str, float]) -> None:
        for iface in self.interfaces:
            _put_all(out, f"net.{iface.name}.", iface, _IFACE_FIELDS)
        if self.tcp_states is not None:
            for state in TCP_STATES:
                out[f"tcp.{state}"] = float(self.tcp_states.get(state, 0))
            out["tcp.total"] = float(sum(self.tcp_states.values()))


class ProcessInfo(_Frozen):
    """One process in a top list. Text fields are sanitised: no control characters.

    ``cpu_percent`` is relative to one core (a process keeping two cores busy shows 200);
    ``open_files`` counts open descriptors (files, sockets, pipes), ``None`` when not readable.
    """

    pid: int
    name: str
    user: str | None = None
    cmdline: str = ""
    status: str
    cpu_percent: float | None = None
    rss_bytes: int
    memory_percent: float | None = None
    num_threads: int
    open_files: int | None = None
    create_time: float = Field(description="unix time the process started")
    age_seconds: float
    ppid: int | None = Field(None, description="parent pid, when readable")
    kernel_thread: bool = Field(False, description="a kernel thread (kthreadd's child)")


class ProcessGroup(_Frozen):
    """The CPU of one job: a parent's children of one command, taken together.

    ``cpu_percent`` (of one core) adds the children seen now and the CPU of children that
    exited between two samples (it lands in the parent's cutime/cstime), so a compile of
    many short-lived ``cc1plus`` shows as ``make: cc1plus x2, 190%`` even when no single
    child lives through an interval. ``command`` is the parent's own name for a process
    whose load is its own.
    """

    parent_pid: int
    parent_name: str
    command: str
    count: int = Field(ge=0, description="processes of that command under the parent now")
    cpu_percent: float = Field(ge=0)


class ProcessMetrics(_Family):
    """Process counts by state and the heaviest processes by CPU and by memory.

    ``top_cpu`` is empty on the first sample: CPU % needs two readings.
    """

    total: int
    running: int = 0
    sleeping: int = 0
    disk_sleep: int = 0
    stopped: int = 0
    zombie: int = 0
    idle: int = 0
    other: int = 0
    threads: int = 0
    top_cpu: tuple[ProcessInfo, ...] = ()
    top_memory: tuple[ProcessInfo, ...] = ()
    groups: tuple[ProcessGroup, ...] = Field((), description="the busiest jobs, by CPU")

    def add_flat(self, out: dict[str, float]) -> None:
        counts = ("total", "running", "sleeping", "disk_sleep", "stopped", "zombie", "idle")
        _put_all(out, "procs.", self, (*counts, "other", "threads"))


class TemperatureReading(_Frozen):
    """One temperature sensor; ``sensor`` is a key-safe ``chip_label`` slug."""

    sensor: str
    celsius: float
    high_celsius: float | None = None
    critical_celsius: float | None = None


class FanReading(_Frozen):
    """One fan; ``sensor`` is a key-safe ``chip_label`` slug."""

    sensor: str
    rpm: float


class BatteryStatus(_Frozen):
    """Battery charge; ``seconds_left`` is ``None`` when unknown or on mains."""

    percent: float
    seconds_left: float | None = None
    plugged: bool | None = None


class SystemMetrics(_Family):
    """Uptime and users, plus hardware sensors where the platform exposes them."""

    boot_time: float
    uptime_seconds: float
    users: int | None = None
    temperatures: tuple[TemperatureReading, ...] = ()
    fans: tuple[FanReading, ...] = ()
    battery: BatteryStatus | None = None

    def add_flat(self, out: dict[str, float]) -> None:
        out["system.boot_time"] = self.boot_time
        out["system.uptime_seconds"] = self.uptime_seconds
        _put(out, "system.users", self.users)
        for temp in self.temperatures:
            out[f"temp.{temp.sensor}.celsius"] = temp.celsius
        for fan in self.fans:
            out[f"fan.{fan.sensor}.rpm"] = fan.rpm
        if self.battery is not None:
            out["battery.percent"] = self.battery.percent
            _put(out, "battery.seconds_left", self.battery.seconds_left)
            if self.battery.plugged is not None:
                out["battery.plugged"] = 1.0 if self.battery.plugged else 0.0


class GpuDevice(_Frozen):
    """One GPU; every reading is optional because drivers differ in what they expose."""

    index: int
    name: str
    utilization_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_celsius: float | None = None
    power_watts: float | None = None

    @property
    def memory_percent(self) -> float | None:
        if self.memory_used_bytes is None or not self.memory_total_bytes:
            return None
        return 100.0 * self.memory_used_bytes / self.memory_total_bytes


_GPU_FIELDS = (*(f for f in GpuDevice.model_fields if f not in ("index", "name")), "memory_percent")


class GpuMetrics(_Family):
    """GPUs the driver reports; the family is absent on hosts without one."""

    devices: tuple[GpuDevice, ...] = ()

    def add_flat(self, out: dict[str, float]) -> None:
        for gpu in self.devices:
            _put_all(out, f"gpu.{gpu.index}.", gpu, _GPU_FIELDS)


class MetricsSample(_Frozen):
    """Everything one sampling round saw; a family is ``None`` when its collector failed
    (the reason is in ``errors[family]``) or has nothing to report on this host (no GPU).

    ``interval`` is the time since the previous sample (``None`` for the first one);
    ``extra`` holds plugin collectors' metrics under their own declared names;
    ``services`` is filled by the SensorAgent from the service managers (collectors leave
    it empty); in :meth:`flat` each service gives ``service.{name}.up`` and, with a probe,
    ``service.{name}.healthy``, declared by :data:`SERVICE_METRIC_SPECS`.
    """

    timestamp: float
    host: str
    interval: float | None = None
    cpu: CpuMetrics | None = None
    memory: MemoryMetrics | None = None
    disks: DiskMetrics | None = None
    network: NetworkMetrics | None = None
    processes: ProcessMetrics | None = None
    system: SystemMetrics | None = None
    gpu: GpuMetrics | None = None
    services: list[ServiceStatus] = Field(default_factory=list)
    extra: dict[str, float] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """True when at least one collector failed this round."""
        return bool(self.errors)

    def flat(self) -> dict[str, float]:
        """All numeric metrics under dotted names, e.g. ``{"cpu.percent": 3.2, ...}``."""
        out: dict[str, float] = {}
        for family in (
            self.cpu,
            self.memory,
            self.disks,
            self.network,
            self.processes,
            self.system,
            self.gpu,
        ):
            if family is not None:
                family.add_flat(out)
        for service in self.services:
            out[f"service.{service.name}.up"] = 1.0 if service.is_up else 0.0
            if service.healthy is not None:
                out[f"service.{service.name}.healthy"] = 1.0 if service.healthy else 0.0
        out.update(self.extra)
        return out
