"""A scenario played out in time: the samples a sensor would take, the service events a
manager would emit between them, and the processes alive at each moment.

``timeline(scenario)`` yields one ``Step`` per sample: the ``MetricsSample``, the
``ServiceEvent``s that happened since the previous sample (at their own moments), and the
``ScenarioProcesses`` world the remediation gate looks targets up in.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from watchkeeper.model.metrics import (
    CpuMetrics,
    DiskMetrics,
    FilesystemUsage,
    GpuDevice,
    GpuMetrics,
    InterfaceRates,
    MemoryMetrics,
    MetricsSample,
    NetworkMetrics,
    ProcessGroup,
    ProcessInfo,
    ProcessMetrics,
)
from watchkeeper.model.services import ServiceEvent, ServiceState, ServiceStatus
from watchkeeper.model.text import SERVICE_DETAIL, clean
from watchkeeper.testing._scenario_format import (
    STATUS_OF_STATE,
    ProcSpec,
    Scenario,
    ServiceSpecLite,
    noise_at,
    start_time,
    values_at,
)

__all__ = ["ScenarioProcesses", "ServiceWorld", "Step", "build_samples", "timeline"]

_MB = 1024 * 1024
_GB = 1024 * _MB
_KTHREADD = 2
_IDENTITY_SLACK = 0.05
_TOP = 10
_COUNT_OF_STATE = {"S": "sleeping", "D": "disk_sleep", "Z": "zombie", "T": "stopped"}

GroupJobs = Callable[..., tuple[ProcessGroup, ...]]


@functools.cache
def _group_jobs() -> GroupJobs | None:
    """The job grouping of the process collector, once it exists."""
    try:
        module = importlib.import_module("watchkeeper.collectors.jobs")
    except ImportError:
        return None
    fn: GroupJobs | None = getattr(module, "group_jobs", None)
    return fn


# -- processes --------------------------------------------------------------------------------


def _proc_values(p: ProcSpec, scenario: Scenario, step: int, t: float) -> dict[str, Any]:
    values: dict[str, Any] = {"cpu": p.cpu, "rss_mb": p.rss_mb, "state": p.state}
    for change in p.changes:
        if change.active(t):
            values.update({str(k): v for k, v in change.set.items()})
    grown = p.leak_mb_per_min * (t - p.start) / 60
    if p.sawtooth_mb:
        grown += p.sawtooth_mb * (((t - p.start) % p.sawtooth_period) / p.sawtooth_period)
    values["rss_mb"] = float(values["rss_mb"]) + grown
    for key, amplitude in p.noise.items():
        jitter = noise_at(f"{scenario.name}/{p.pid}", key, step, amplitude)
        values[key] = max(0.0, float(values[key]) + jitter)
    return values


def _proc(p: ProcSpec, values: dict[str, Any], t: float, t0: float) -> ProcessInfo:
    return ProcessInfo(
        pid=p.pid,
        name=p.name,
        user=p.user,
        cmdline=p.cmdline or p.name,
        status=STATUS_OF_STATE[str(values["state"])],
        cpu_percent=float(values["cpu"]),
        rss_bytes=int(float(values["rss_mb"]) * _MB),
        memory_percent=None,
        num_threads=p.threads,
        open_files=8,
        create_time=t0 - p.age_s + p.start,
        age_seconds=p.age_s + t - p.start,
        ppid=p.ppid,
        kernel_thread=p.kernel or p.ppid == _KTHREADD,
    )


def _names(proc: ProcessInfo) -> set[str]:
    """Every name a process goes by, as the gate reads them: its name and its command
    line's own name for itself (``sshd: user@pts/0`` is ``sshd``)."""
    names = {proc.name}
    first = proc.cmdline.split(":", 1)[0].split()
    if first:
        names.add(os.path.basename(first[0]))
    return {n.lower() for n in names if n}


def _is_monitor(proc: ProcessInfo) -> bool:
    argv = proc.cmdline.split()
    return (
        proc.name.lower() == "watchkeeper"
        or (bool(argv) and os.path.basename(argv[0]).lower() == "watchkeeper")
        or any(a == "-m" and b.split(".")[0] == "watchkeeper" for a, b in itertools.pairwise(argv))
    )


@dataclass
class ScenarioProcesses:
    """The scenario's processes at one moment, answering as /proc would (a
    ``remediation.processes.ProcessLookup``).

    The monitor itself is the process called ``watchkeeper`` (by name, by its command
    line, or ``python -m watchkeeper``); it and its ancestors are protected as watchkeeper
    and its parents are on a real host, with pid 1 and kthreadd."""

    alive: dict[int, ProcessInfo] = field(default_factory=dict)

    def thread_group_of(self, pid: int) -> int | None:
        return pid if pid in self.alive else None

    def is_kernel_thread(self, pid: int) -> bool:
        proc = self.alive.get(pid)
        return pid == _KTHREADD or (
            proc is not None and (proc.kernel_thread or proc.ppid == _KTHREADD)
        )

    def protected_pids(self) -> set[int]:
        pids = {0, 1, _KTHREADD}
        for proc in self.alive.values():
            if not _is_monitor(proc):
                continue
            current: ProcessInfo | None = proc
            while current is not None and current.pid not in pids:
                pids.add(current.pid)
                current = self.alive.get(current.ppid) if current.ppid is not None else None
        return pids

    def same_process(self, pid: int, create_time: float | None) -> ProcessInfo | None:
        proc = self.alive.get(pid)
        if proc is None or create_time is None:
            return None
        if abs(proc.create_time - float(create_time)) > _IDENTITY_SLACK:
            return None
        return None if proc.status == "zombie" else proc

    def names_of(self, proc: Any) -> set[str]:
        return _names(proc) if isinstance(proc, ProcessInfo) else set()


# -- services --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Phase:
    state: str
    restarts: int
    exit_code: int | None
    up_since: float | None  # scenario seconds the current run began, when known


class ServiceWorld:
    """Each scenario service's state at any moment (not only at samples)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.names = list(dict.fromkeys(s.name for s in scenario.services))
        self._entries = {n: [s for s in scenario.services if s.name == n] for n in self.names}
        self._logs = sorted(
            (line for line in scenario.logs if line.service is not None), key=lambda x: x.at
        )

    def entry_at(self, name: str, t: float) -> ServiceSpecLite | None:
        found = None
        for entry in self._entries[name]:
            if entry.from_s <= t and (entry.until_s is None or t < entry.until_s):
                found = entry  # later entries override earlier ones
        return found

    def phase(self, entry: ServiceSpecLite, t: float) -> _Phase:
        """The entry's state at ``t``; with a flap, failed from each crash until the
        restart that ends its period (or the end of the flap window), restarts counted."""
        flap = entry.flap
        if flap is None or t < flap.from_s:
            return _Phase(entry.state, entry.restarts, entry.exit_code, None)
        end = math.inf if flap.until_s is None else flap.until_s
        crashed = restarted = 0
        since = None
        for _crash, back in self._cycles(entry, t):
            crashed += 1
            if back <= t:
                restarted += 1
                since = back
        exit_code = flap.exit_code if crashed else entry.exit_code
        state = "failed" if crashed > restarted else "running"
        if since is None and crashed == 0 and t < end:
            since = flap.from_s
        return _Phase(state, entry.restarts + restarted, exit_code, since)

    @staticmethod
    def _cycles(entry: ServiceSpecLite, until: float) -> Iterator[tuple[float, float]]:
        """(crash, restart) moments of the entry's flap, for crashes up to ``until``."""
        flap = entry.flap
        if flap is None:
            return
        end = math.inf if flap.until_s is None else flap.until_s
        k = 0
        while True:
            crash = flap.from_s + k * flap.every + (flap.every - flap.down_for)
            if crash > until or crash >= end:
                return
            yield crash, min(flap.from_s + (k + 1) * flap.every, end)
            k += 1

    def change_times(self, name: str, after: float, until: float) -> list[float]:
        """Moments in ``(after, until]`` at which the service may change state."""
        times: set[float] = set()
        for entry in self._entries[name]:
            times.update(x for x in (entry.from_s, entry.until_s) if x is not None)
            for crash, back in self._cycles(entry, until):
                times.update((crash, back))
        return sorted(x for x in times if after < x <= until)

    def detail(self, name: str, t: float) -> str:
        """The service's latest log line at ``t``, as its manager's status line."""
        line = ""
        for entry in self._logs:
            if entry.at > t:
                break
            if entry.service == name:
                line = entry.line
        return clean(line, SERVICE_DETAIL) if line else ""

    def status(self, name: str, t: float, t0: float) -> ServiceStatus | None:
        entry = self.entry_at(name, t)
        if entry is None:
            return None
        phase = self.phase(entry, t)
        flapping = entry.flap is not None and t >= entry.flap.from_s
        pid = None if flapping and phase.state == "failed" else entry.pid
        return ServiceStatus(
            name=entry.name,
            manager=entry.manager,
            state=ServiceState(phase.state),
            pid=pid,
            healthy=entry.healthy,
            critical=entry.critical,
            probe_detail=entry.probe_detail,
            last_exit_code=phase.exit_code,
            last_exit_signal=entry.exit_signal,
            restarts=phase.restarts,
            detail=self.detail(name, t),
        )

    def events(self, after: float, until: float, t0: float) -> list[ServiceEvent]:
        """What a manager would emit between two samples: an exit when a service fails,
        a start when it comes back, a stop when it is stopped."""
        out: list[tuple[float, ServiceEvent]] = []
        for name in self.names:
            for moment in self.change_times(name, after, until):
                before = self.status(name, moment - 1e-6, t0)
                now = self.status(name, moment, t0)
                was = str(before.state) if before is not None else None
                state = str(now.state) if now is not None else None
                if now is None or was == state:
                    continue
                kind = {"failed": "exited", "running": "started", "stopped": "stopped"}.get(
                    state or ""
                )
                if kind is None or (kind == "started" and was in (None, "starting")):
                    continue
                entry = self.entry_at(name, moment - 1e-6)
                up = None
                if kind == "exited" and entry is not None:
                    since = self.phase(entry, moment - 1e-6).up_since
                    up = None if since is None else moment - since
                out.append(
                    (
                        moment,
                        ServiceEvent(
                            name=name,
                            manager=now.manager,
                            kind=kind,  # type: ignore[arg-type]
                            pid=before.pid if before is not None else None,
                            exit_code=now.last_exit_code if kind == "exited" else None,
                            exit_signal=now.last_exit_signal if kind == "exited" else None,
                            at=datetime.fromtimestamp(t0 + moment, UTC),
                            uptime=up,
                            detail=self.detail(name, moment),
                        ),
                    )
                )
        return [event for _, event in sorted(out, key=lambda pair: pair[0])]


# -- samples ---------------------------------------------------------------------------------


@dataclass
class Step:
    t: float  # seconds into the scenario
    now: float  # the sample's unix time
    sample: MetricsSample
    events: list[ServiceEvent]
    world: ScenarioProcesses
    services: ServiceWorld


def _filesystems(v: dict[str, Any], t: float) -> list[FilesystemUsage]:
    out = []
    for mount, d in v["disks"].items():
        size = int(d.get("total_gb", 100.0) * _GB)
        used = int(
            size * d.get("percent", 0.0) / 100 + d.get("fill_mb_per_min", 0.0) * _MB * t / 60
        )
        used = min(used, size)
        ipct = d.get("inodes_percent")
        out.append(
            FilesystemUsage(
                mount=mount,
                device="/dev/sim",
                fstype="ext4",
                total_bytes=size,
                used_bytes=used,
                free_bytes=size - used,
                percent=100.0 * used / size,
                inodes_total=1_000_000,
                inodes_used=int(10_000 * (ipct or 0)),
                inodes_percent=ipct,
            )
        )
    return out


def _gpus(v: dict[str, Any]) -> GpuMetrics | None:
    gpus = v.get("gpus")
    if not gpus:
        return None
    devices = []
    for index, g in enumerate(gpus):
        used, total = g.get("mem_used_gb"), g.get("mem_total_gb")
        devices.append(
            GpuDevice(
                index=index,
                name=str(g.get("name", f"gpu{index}")),
                utilization_percent=g.get("util"),
                memory_used_bytes=None if used is None else int(used * _GB),
                memory_total_bytes=None if total is None else int(total * _GB),
                temperature_celsius=g.get("temp"),
                power_watts=g.get("power"),
            )
        )
    return GpuMetrics(devices=tuple(devices))


def _gb(v: dict[str, Any], key: str) -> int | None:
    value = v.get(key)
    return None if value is None else int(float(value) * _GB)


def _memory(v: dict[str, Any], step: int) -> MemoryMetrics:
    total = int(v["memory_total_gb"] * _GB)
    swap_total = int(v["swap_total_gb"] * _GB)
    return MemoryMetrics(
        total_bytes=total,
        available_bytes=int(total * (1 - v["memory"] / 100)),
        used_bytes=int(total * v["memory"] / 100),
        percent=v["memory"],
        swap_total_bytes=swap_total,
        swap_used_bytes=int(swap_total * v["swap"] / 100),
        swap_percent=v["swap"],
        swap_in_bytes_per_s=v["swap_in"] if step else None,
        swap_out_bytes_per_s=v["swap_out"] if step else None,
        cached_bytes=_gb(v, "cached_gb"),
        buffers_bytes=_gb(v, "buffers_gb"),
        slab_bytes=_gb(v, "slab_gb"),
        shared_bytes=_gb(v, "shared_gb"),
    )


def _cpu(v: dict[str, Any]) -> CpuMetrics:
    per_core = v.get("per_core")
    cores = len(per_core) if per_core else int(v["cores"])
    return CpuMetrics(
        count=cores,
        percent=v["cpu"],
        iowait_percent=v.get("iowait"),
        steal_percent=v.get("steal"),
        per_core_percent=tuple(float(c) for c in per_core) if per_core else (v["cpu"],) * cores,
        load_1m=v["load1"],
        load_5m=v["load1"],
        load_15m=v["load1"],
    )


def _processes(
    scenario: Scenario, step: int, t: float, t0: float, v: dict[str, Any]
) -> tuple[ProcessMetrics, dict[int, ProcessInfo]]:
    alive = [p for p in scenario.processes if p.start <= t and (p.end is None or t < p.end)]
    infos: list[ProcessInfo] = []
    counts = {"sleeping": 0, "disk_sleep": 0, "zombie": 0, "stopped": 0}
    for p in alive:
        values = _proc_values(p, scenario, step, t)
        infos.append(_proc(p, values, t, t0))
        bucket = _COUNT_OF_STATE.get(str(values["state"]))
        if bucket is not None:
            counts[bucket] += 1
    by_cpu = sorted(
        (p for p in infos if (p.cpu_percent or 0) > 0), key=lambda p: -(p.cpu_percent or 0)
    )
    top_cpu = tuple(by_cpu[:_TOP])
    top_mem = tuple(sorted(infos, key=lambda p: -p.rss_bytes)[:_TOP])
    groups: tuple[ProcessGroup, ...] = ()
    jobs = _group_jobs()
    uses_jobs = any(p.ppid is not None or p.exited_children_cpu for p in alive)
    if jobs is not None and uses_jobs and step:
        exited = {p.pid: p.exited_children_cpu for p in alive if p.exited_children_cpu}
        groups = jobs(infos, exited, {p.pid: p.name for p in infos}, limit=5)
    extra = sum(counts.values())
    metrics = ProcessMetrics(
        total=int(v["total_procs"]) + v["zombies"] + extra,
        zombie=int(v["zombies"]) + counts["zombie"],
        running=1,
        sleeping=int(v["total_procs"]) - 1 + counts["sleeping"],
        disk_sleep=counts["disk_sleep"],
        stopped=counts["stopped"],
        top_cpu=top_cpu if step else (),
        top_memory=top_mem,
        groups=groups,
    )
    return metrics, {p.pid: p for p in infos}


def timeline(scenario: Scenario) -> Iterator[Step]:
    """The scenario, sample by sample, with the service events between samples."""
    t0 = start_time(scenario)
    services = ServiceWorld(scenario)
    previous = 0.0
    for step in range(scenario.steps):
        t = step * scenario.interval
        v = values_at(scenario, step, t)
        ifaces = [
            InterfaceRates(
                name=name,
                rx_bytes_per_s=n.get("rx_bytes", 0.0),
                tx_bytes_per_s=n.get("rx_bytes", 0.0),
                rx_errors_per_s=n.get("errors", 0.0),
                tx_errors_per_s=0.0,
                rx_drops_per_s=n.get("drops", 0.0),
                tx_drops_per_s=0.0,
            )
            for name, n in v["nets"].items()
        ]
        procs, alive = _processes(scenario, step, t, t0, v)
        statuses = [services.status(name, t, t0) for name in services.names]
        sample = MetricsSample(
            timestamp=t0 + t,
            host="scenario",
            interval=scenario.interval if step else None,
            cpu=_cpu(v),
            memory=_memory(v, step),
            disks=DiskMetrics(filesystems=tuple(_filesystems(v, t))),
            network=NetworkMetrics(interfaces=tuple(ifaces)),
            processes=procs,
            gpu=_gpus(v),
            services=[s for s in statuses if s is not None],
        )
        events = services.events(previous, t, t0) if step else []
        previous = t
        yield Step(t, t0 + t, sample, events, ScenarioProcesses(alive), services)


def build_samples(scenario: Scenario) -> Iterator[tuple[float, MetricsSample]]:
    """The scenario's samples, with their timestamps."""
    for step in timeline(scenario):
        yield step.now, step.sample
