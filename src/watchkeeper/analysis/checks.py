"""Threshold checks: what one sample says, before hysteresis and "for" durations.

Each ``check_*`` function reads one family of a ``MetricsSample`` and yields ``Check``
values: the raw level of one (rule, subject), with the evidence and the actions worth
proposing. They are pure functions of the sample, the settings and the levels currently
held (for hysteresis), so scenario tests can drive them with synthetic samples.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.analysis.levels import raw_level
from watchkeeper.config import ExpectedPattern, Settings
from watchkeeper.model.alerts import Severity, SuggestedAction
from watchkeeper.model.metrics import MetricsSample, ProcessInfo
from watchkeeper.model.text import LABEL, clean

__all__ = ["Check", "LevelOf", "expected_match", "process_ref", "run_checks"]

LevelOf = Callable[[str, str], Severity | None]
_MB = 1024 * 1024


@dataclass(frozen=True)
class Check:
    """The raw level of one (rule, subject) in one sample."""

    rule: str
    subject: str
    family: str
    raw: Severity | None
    summary: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    suggested: tuple[SuggestedAction, ...] = ()
    for_s: float | None = None
    clear_s: float | None = None
    cap: Severity | None = None  # an expected pattern's ceiling


def process_ref(proc: ProcessInfo) -> dict[str, Any]:
    """Evidence for one process: identity (pid + start time) and a sanitised label."""
    return {
        "pid": proc.pid,
        "name": clean(proc.name, LABEL, max_len=48),
        "create_time": proc.create_time,
        "cpu_percent": round(proc.cpu_percent or 0.0, 1),
        "rss_mb": round(proc.rss_bytes / _MB, 1),
        "user": clean(proc.user or "?", LABEL, max_len=32),
    }


def process_action(
    action: str, proc: ProcessInfo, reason: str, confidence: float
) -> SuggestedAction:
    return SuggestedAction(
        action=action,
        target=str(proc.pid),
        target_kind="process",
        params={"create_time": proc.create_time, "name": proc.name},
        reason=reason,
        confidence=confidence,
    )


def expected_match(
    name: str, patterns: list[ExpectedPattern], now: float | None = None
) -> ExpectedPattern | None:
    """The expected pattern that covers process ``name`` at ``now`` (local time), if any."""
    hour = time.localtime(now if now is not None else time.time()).tm_hour
    lowered = name.lower()
    for pattern in patterns:
        if not fnmatch.fnmatchcase(lowered, pattern.process.lower()):
            continue
        if pattern.hours is None:
            return pattern
        start, end = pattern.hours
        inside = start <= hour < end if start <= end else (hour >= start or hour < end)
        if inside:
            return pattern
    return None


def _cap_for(
    proc: ProcessInfo | None, settings: Settings, now: float
) -> tuple[Severity | None, str]:
    if proc is None:
        return None, ""
    match = expected_match(proc.name, settings.analyzer.expected, now)
    if match is None:
        return None, ""
    note = match.note or f"{clean(proc.name, LABEL, 48)} matches expected pattern {match.process!r}"
    return Severity(match.max_severity), note


def _pct_level(
    value: float, warn: float, crit: float, margin: float, current: Severity | None
) -> Severity | None:
    return raw_level(value, warn, crit, margin=margin, current=current)


def check_cpu(
    sample: MetricsSample, settings: Settings, level_of: LevelOf, now: float
) -> Iterator[Check]:
    cpu, procs = sample.cpu, sample.processes
    if cpu is None or cpu.percent is None:
        return
    t, a = settings.thresholds, settings.analyzer
    raw = _pct_level(
        cpu.percent, t.cpu_warning, t.cpu_critical, a.clear_margin, level_of("cpu_high", "cpu")
    )
    top = list(procs.top_cpu[:3]) if procs else []
    driver = top[0] if top else None
    cap, note = _cap_for(driver, settings, now)
    evidence: dict[str, Any] = {
        "cpu_percent": round(cpu.percent, 1),
        "warning": t.cpu_warning,
        "critical": t.cpu_critical,
        "top_processes": [process_ref(p) for p in top],
    }
    if note:
        evidence["expected"] = note
    driver_text = (
        f"; top: {clean(driver.name, LABEL, 32)} ({driver.cpu_percent or 0:.0f}%)" if driver else ""
    )
    yield Check(
        "cpu_high",
        "cpu",
        "cpu",
        raw,
        f"CPU at {cpu.percent:.0f}%{driver_text}",
        evidence,
        cap=cap,
    )
    # A single process pinning a core for a long time is its own problem.
    for proc in procs.top_cpu if procs else ():
        if (proc.cpu_percent or 0.0) < a.runaway_cpu_percent * 0.5:
            continue
        subject = f"process:{proc.pid}"
        current = level_of("runaway_process", subject)
        hot = (proc.cpu_percent or 0.0) >= (
            a.runaway_cpu_percent - (a.clear_margin if current else 0)
        )
        pcap, pnote = _cap_for(proc, settings, now)
        severity = Severity.CRITICAL if cpu.percent >= t.cpu_critical else Severity.WARNING
        label = clean(proc.name, LABEL, 32)
        suggested = (
            ()
            if pcap
            else (
                process_action("renice_process", proc, f"{label} has pinned a core", 0.7),
                process_action(
                    "kill_process", proc, f"{label} keeps a core busy and did not calm down", 0.4
                ),
            )
        )
        ev = {"process": process_ref(proc), "threshold_percent_of_core": a.runaway_cpu_percent}
        if pnote:
            ev["expected"] = pnote
        yield Check(
            "runaway_process",
            subject,
            "process",
            severity if hot else None,
            f"process {label} (pid {proc.pid}) at {proc.cpu_percent or 0:.0f}% of a core",
            ev,
            suggested,
            for_s=a.runaway_for_seconds,
            cap=pcap,
        )


def check_memory(
    sample: MetricsSample, settings: Settings, level_of: LevelOf, now: float
) -> Iterator[Check]:
    mem, procs = sample.memory, sample.processes
    if mem is None:
        return
    t, a = settings.thresholds, settings.analyzer
    top = list(procs.top_memory[:3]) if procs else []
    cap, note = _cap_for(top[0] if top else None, settings, now)
    raw = _pct_level(
        mem.percent,
        t.memory_warning,
        t.memory_critical,
        a.clear_margin,
        level_of("memory_high", "memory"),
    )
    evidence: dict[str, Any] = {
        "memory_percent": round(mem.percent, 1),
        "available_mb": round(mem.available_bytes / _MB),
        "top_processes": [process_ref(p) for p in top],
    }
    if note:
        evidence["expected"] = note
    suggested: tuple[SuggestedAction, ...] = ()
    if top and not cap and raw is Severity.CRITICAL:
        suggested = (
            process_action(
                "kill_process", top[0], "largest memory user while memory is critical", 0.3
            ),
        )
    driver = (
        f"; top: {clean(top[0].name, LABEL, 32)} ({top[0].rss_bytes / _MB:.0f} MB)" if top else ""
    )
    yield Check(
        "memory_high",
        "memory",
        "memory",
        raw,
        f"memory at {mem.percent:.0f}%{driver}",
        evidence,
        suggested,
        cap=cap,
    )
    if mem.swap_total_bytes > 0:
        raw = _pct_level(
            mem.swap_percent,
            t.swap_warning,
            t.swap_critical,
            a.clear_margin,
            level_of("swap_high", "swap"),
        )
        yield Check(
            "swap_high",
            "swap",
            "memory",
            raw,
            f"swap at {mem.swap_percent:.0f}%",
            {"swap_percent": round(mem.swap_percent, 1)},
        )
    paging = (mem.swap_in_bytes_per_s or 0.0) + (mem.swap_out_bytes_per_s or 0.0)
    if mem.swap_in_bytes_per_s is not None or mem.swap_out_bytes_per_s is not None:
        margin = a.swap_io_warning * 0.2
        raw = raw_level(
            paging,
            a.swap_io_warning,
            a.swap_io_critical,
            margin=margin,
            current=level_of("swap_thrashing", "swap-io"),
        )
        yield Check(
            "swap_thrashing",
            "swap-io",
            "memory",
            raw,
            f"swapping {paging / _MB:.1f} MB/s with memory at {mem.percent:.0f}%",
            {
                "swap_io_bytes_per_s": round(paging),
                "memory_percent": round(mem.percent, 1),
                "top_processes": [process_ref(p) for p in top],
            },
        )


def check_load(
    sample: MetricsSample, settings: Settings, level_of: LevelOf, now: float
) -> Iterator[Check]:
    cpu = sample.cpu
    if cpu is None or cpu.load_1m is None:
        return
    t = settings.thresholds
    per_core = cpu.load_1m / cpu.count
    raw = raw_level(
        per_core,
        t.load_warning,
        t.load_critical,
        margin=t.load_warning * 0.1,
        current=level_of("load_high", "load"),
    )
    yield Check(
        "load_high",
        "load",
        "cpu",
        raw,
        f"load {cpu.load_1m:.1f} on {cpu.count} cores ({per_core:.2f} per core)",
        {"load_1m": cpu.load_1m, "load_per_core": round(per_core, 2), "cores": cpu.count},
    )


def check_disks(
    sample: MetricsSample, settings: Settings, level_of: LevelOf, now: float
) -> Iterator[Check]:
    if sample.disks is None:
        return
    t, a = settings.thresholds, settings.analyzer
    for fs in sample.disks.filesystems:
        subject = f"disk:{fs.mount}"
        cleanup = (
            SuggestedAction(
                action="clean_directory",
                target=fs.mount,
                target_kind="path",
                reason=f"{fs.mount} is filling up",
                confidence=0.6,
            ),
            SuggestedAction(
                action="rotate_log",
                target=fs.mount,
                target_kind="path",
                reason=f"logs on {fs.mount} may be large",
                confidence=0.5,
            ),
        )
        raw = _pct_level(
            fs.percent,
            t.disk_warning,
            t.disk_critical,
            a.clear_margin,
            level_of("disk_full", subject),
        )
        yield Check(
            "disk_full",
            subject,
            "disk",
            raw,
            f"{fs.mount} is {fs.percent:.0f}% full ({fs.free_bytes / 2**30:.1f} GiB free)",
            {"mount": fs.mount, "percent": round(fs.percent, 1), "free_bytes": fs.free_bytes},
            cleanup,
            for_s=0,
        )
        if fs.inodes_percent is not None:
            isubject = f"inodes:{fs.mount}"
            raw = _pct_level(
                fs.inodes_percent,
                t.inode_warning,
                t.inode_critical,
                a.clear_margin,
                level_of("inodes_full", isubject),
            )
            yield Check(
                "inodes_full",
                isubject,
                "disk",
                raw,
                f"{fs.mount} has used {fs.inodes_percent:.0f}% of its inodes",
                {
                    "mount": fs.mount,
                    "inodes_percent": round(fs.inodes_percent, 1),
                    "inodes_used": fs.inodes_used,
                },
                cleanup[:1],
                for_s=0,
            )


def check_processes(
    sample: MetricsSample, settings: Settings, level_of: LevelOf, now: float
) -> Iterator[Check]:
    procs = sample.processes
    if procs is None:
        return
    a = settings.analyzer
    raw = raw_level(
        float(procs.zombie),
        a.zombie_warning,
        a.zombie_critical,
        margin=max(1.0, a.zombie_warning * 0.2),
        current=level_of("zombie_storm", "zombies"),
    )
    yield Check(
        "zombie_storm",
        "zombies",
        "process",
        raw,
        f"{procs.zombie} zombie processes (their parent is not reaping them)",
        {"zombies": procs.zombie, "total_processes": procs.total},
    )


def check_network(
    sample: MetricsSample, settings: Settings, level_of: LevelOf, now: float
) -> Iterator[Check]:
    if sample.network is None:
        return
    a = settings.analyzer
    for iface in sample.network.interfaces:
        rates = (
            iface.rx_errors_per_s,
            iface.tx_errors_per_s,
            iface.rx_drops_per_s,
            iface.tx_drops_per_s,
        )
        if all(rate is None for rate in rates):
            continue
        bad = sum(rate or 0.0 for rate in rates)
        subject = f"net:{iface.name}"
        raw = raw_level(
            bad,
            a.net_errors_warning,
            a.net_errors_critical,
            margin=a.net_errors_warning * 0.5,
            current=level_of("net_errors", subject),
        )
        yield Check(
            "net_errors",
            subject,
            "net",
            raw,
            f"{clean(iface.name, LABEL, 32)}: {bad:.0f} errors+drops per second",
            {"interface": iface.name, "errors_drops_per_s": round(bad, 1)},
        )


def check_services(
    sample: MetricsSample, settings: Settings, level_of: LevelOf, now: float
) -> Iterator[Check]:
    for status in getattr(sample, "services", ()) or ():
        yield from service_checks(status)


def service_checks(status: Any) -> Iterator[Check]:
    """Checks for one ``ServiceStatus`` (also used on service events, without waiting)."""
    name = clean(status.name, LABEL, 64)
    subject = f"service:{status.name}"
    state = str(status.state)
    down = state == "failed"
    severity = Severity.CRITICAL if status.critical else Severity.WARNING
    action = "restart_service"
    yield Check(
        "service_down",
        subject,
        "service",
        severity if down else None,
        f"service {name} is down ({status.detail or state})"
        if down
        else f"service {name} is {state}",
        {
            "service": status.name,
            "state": state,
            "exit_code": status.last_exit_code,
            "exit_signal": status.last_exit_signal,
            "critical": status.critical,
        },
        (
            SuggestedAction(
                action=action,
                target=status.name,
                target_kind="service",
                reason=f"service {name} is down",
                confidence=0.9,
            ),
        ),
        for_s=0,
        clear_s=0,
    )
    unhealthy = state == "running" and status.healthy is False
    yield Check(
        "service_unhealthy",
        subject,
        "service",
        Severity.WARNING if unhealthy else None,
        f"service {name} runs but fails its probe: {status.probe_detail or '?'}",
        {"service": status.name, "probe": status.probe_detail},
        (
            SuggestedAction(
                action="restart_service",
                target=status.name,
                target_kind="service",
                reason=f"service {name} fails its health probe",
                confidence=0.6,
            ),
        ),
    )


CHECKS = (
    check_cpu,
    check_memory,
    check_load,
    check_disks,
    check_processes,
    check_network,
    check_services,
)


def run_checks(
    sample: MetricsSample, settings: Settings, level_of: LevelOf, now: float
) -> list[Check]:
    """Every threshold check over one sample."""
    out: list[Check] = []
    for check in CHECKS:
        out.extend(check(sample, settings, level_of, now))
    return out
