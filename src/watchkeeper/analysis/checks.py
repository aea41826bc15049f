"""Threshold checks: what one sample says, before hysteresis and "for" durations.

Each ``check_*`` function reads one family of a ``MetricsSample`` and yields ``Check``
values: the raw level of one (rule, subject), with the evidence and the actions worth
proposing. They are pure functions of the sample, the settings and the levels currently
held (for hysteresis), so scenario tests can drive them with synthetic samples.

``judge`` feeds one check to the ``LevelTracker`` and, when the level is held by the
window rather than by a continuous run, rewrites its summary and evidence to say the fault
is intermittent. Which proposals survive configuration and protection is decided after
the checks, for every rule alike (``watchkeeper.analysis.remedies``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.analysis.levels import LevelTracker, near_line, raw_level
from watchkeeper.config import ExpectedPattern, Settings
from watchkeeper.model.alerts import Severity, SuggestedAction
from watchkeeper.model.metrics import MetricsSample, ProcessGroup, ProcessInfo
from watchkeeper.model.text import LABEL, LOG_LINE, clean

__all__ = [
    "Check",
    "LevelOf",
    "expected_match",
    "job_label",
    "judge",
    "process_ref",
    "run_checks",
    "service_checks",
]

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
    near: bool = False  # the value sits inside the clear margin under the next line up
    window: bool = True  # judged over the window too (intermittent faults)
    label: str = ""  # what is wrong, for "<label> on 6 of the last 12 samples"


def judge(levels: LevelTracker, check: Check, now: float) -> tuple[Severity | None, Check]:
    """The level ``check`` brings its (rule, subject) to, and the check as the alert should
    tell it: when the window holds the level (the fault comes and goes), the summary and
    evidence say so."""
    level = levels.update(
        (check.rule, check.subject),
        check.raw,
        now,
        for_s=check.for_s,
        clear_s=check.clear_s,
        near=check.near,
        window=check.window,
    )
    view = levels.window((check.rule, check.subject)) if level is not None else None
    if view is None:
        return level, check
    what = check.label or f"{check.rule} on {check.subject}"
    told = f"{what} on {view.on} of the last {view.samples} samples (intermittent)"
    evidence = {
        **check.evidence,
        "intermittent": {
            "samples_on": view.on,
            "samples": view.samples,
            "window_s": view.window_s,
            "line": view.line.value,
        },
    }
    return level, dataclasses.replace(
        check, summary=f"{told}; now: {check.summary}", evidence=evidence
    )


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
    return _cap_for_name(proc.name, settings, now)


def _cap_for_name(name: str, settings: Settings, now: float) -> tuple[Severity | None, str]:
    match = expected_match(name, settings.analyzer.expected, now)
    if match is None:
        return None, ""
    note = match.note or f"{clean(name, LABEL, 48)} matches expected pattern {match.process!r}"
    return Severity(match.max_severity), note


def _graded(
    value: float, warn: float, crit: float, margin: float, current: Severity | None
) -> tuple[Severity | None, bool]:
    """The raw level of ``value`` and whether it sits just under the next line up."""
    raw = raw_level(value, warn, crit, margin=margin, current=current)
    return raw, near_line(value, warn, crit, margin=margin, raw=raw)


def job_label(group: ProcessGroup) -> str:
    """How one job reads in a summary: ``make: cc1plus x2 (190%)``; a process whose load
    is its own reads as its name: ``postgres (85%)``."""
    command = clean(group.command, LABEL, 32)
    if group.command == group.parent_name and group.count <= 1:
        text = command
    else:
        text = f"{clean(group.parent_name, LABEL, 32)}: {command}"
        if group.count > 1:
            text += f" x{group.count}"
    return f"{text} ({group.cpu_percent:.0f}%)"


def _job_ref(group: ProcessGroup) -> dict[str, Any]:
    return {
        "parent_pid": group.parent_pid,
        "parent": clean(group.parent_name, LABEL, 48),
        "command": clean(group.command, LABEL, 48),
        "count": group.count,
        "cpu_percent": round(group.cpu_percent, 1),
    }


def check_cpu(
    sample: MetricsSample, settings: Settings, level_of: LevelOf, now: float
) -> Iterator[Check]:
    cpu, procs = sample.cpu, sample.processes
    if cpu is None or cpu.percent is None:
        return
    t, a = settings.thresholds, settings.analyzer
    raw, near = _graded(
        cpu.percent, t.cpu_warning, t.cpu_critical, a.clear_margin, level_of("cpu_high", "cpu")
    )
    top = list(procs.top_cpu[:3]) if procs else []
    driver = top[0] if top else None
    # The busiest job names what keeps the CPU busy even when its processes live shorter
    # than an interval (a compile's cc1plus): per-process figures miss those.
    jobs = sorted(procs.groups, key=lambda g: -g.cpu_percent)[:3] if procs else []
    cap, note = _cap_for(driver, settings, now)
    if cap is None and jobs:
        cap, note = _cap_for_name(jobs[0].command, settings, now)
        if cap is None:
            cap, note = _cap_for_name(jobs[0].parent_name, settings, now)
    evidence: dict[str, Any] = {
        "cpu_percent": round(cpu.percent, 1),
        "warning": t.cpu_warning,
        "critical": t.cpu_critical,
        "top_processes": [process_ref(p) for p in top],
    }
    if jobs:
        evidence["top_jobs"] = [_job_ref(g) for g in jobs]
    if note:
        evidence["expected"] = note
    if jobs:
        driver_text = f"; top: {job_label(jobs[0])}"
    elif driver:
        driver_text = f"; top: {clean(driver.name, LABEL, 32)} ({driver.cpu_percent or 0:.0f}%)"
    else:
        driver_text = ""
    yield Check(
        "cpu_high",
        "cpu",
        "cpu",
        raw,
        f"CPU at {cpu.percent:.0f}%{driver_text}",
        evidence,
        cap=cap,
        near=near,
        label="CPU high",
    )
    # A single process pinning a core for a long time is its own problem. One below the
    # floor is not reported at all: the tracker then drops any pending timer it had, so
    # separate brief spikes never add up to the "for" duration.
    line = a.runaway_cpu_percent
    for proc in procs.top_cpu if procs else ():
        used = proc.cpu_percent or 0.0
        if used < line * 0.5:
            continue
        subject = f"process:{proc.pid}"
        current = level_of("runaway_process", subject)
        hot = used >= line - (a.clear_margin if current else 0)
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
        ev = {"process": process_ref(proc), "threshold_percent_of_core": line}
        if pnote:
            ev["expected"] = pnote
        yield Check(
            "runaway_process",
            subject,
            "process",
            severity if hot else None,
            f"process {label} (pid {proc.pid}) at {used:.0f}% of a core",
            ev,
            suggested,
            for_s=a.runaway_for_seconds,
            cap=pcap,
            near=not hot and used >= line - a.clear_margin,
            label=f"process {label} (pid {proc.pid}) pinning a core",
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
    raw, near = _graded(
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
    # An expected pattern may quiet a level, never an imminent exhaustion: memory critical
    # with no swap to fall back on (or swap nearly full too) is an OOM about to happen.
    no_swap = mem.swap_total_bytes <= 0
    if (
        cap is not None
        and raw is Severity.CRITICAL
        and (no_swap or mem.swap_percent >= t.swap_critical)
    ):
        left = "no swap" if no_swap else f"swap {mem.swap_percent:.0f}% full"
        evidence["expected_overridden"] = (
            f"not lowered: memory at {mem.percent:.0f}% with {left} is about to run out"
        )
        cap = None
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
        near=near,
        label="memory high",
    )
    if mem.swap_total_bytes > 0:
        raw, near = _graded(
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
            near=near,
            label="swap high",
        )
    paging = (mem.swap_in_bytes_per_s or 0.0) + (mem.swap_out_bytes_per_s or 0.0)
    if mem.swap_in_bytes_per_s is not None or mem.swap_out_bytes_per_s is not None:
        raw, near = _graded(
            paging,
            a.swap_io_warning,
            a.swap_io_critical,
            a.swap_io_warning * 0.2,
            level_of("swap_thrashing", "swap-io"),
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
            near=near,
            label="heavy swapping",
        )


def check_load(
    sample: MetricsSample, settings: Settings, level_of: LevelOf, now: float
) -> Iterator[Check]:
    cpu = sample.cpu
    if cpu is None or cpu.load_1m is None:
        return
    t = settings.thresholds
    per_core = cpu.load_1m / cpu.count
    raw, near = _graded(
        per_core,
        t.load_warning,
        t.load_critical,
        t.load_warning * 0.1,
        level_of("load_high", "load"),
    )
    yield Check(
        "load_high",
        "load",
        "cpu",
        raw,
        f"load {cpu.load_1m:.1f} on {cpu.count} cores ({per_core:.2f} per core)",
        {"load_1m": cpu.load_1m, "load_per_core": round(per_core, 2), "cores": cpu.count},
        near=near,
        label="load high",
    )


def check_disks(
    sample: MetricsSample, settings: Settings, level_of: LevelOf, now: float
) -> Iterator[Check]:
    if sample.disks is None:
        return
    t, a = settings.thresholds, settings.analyzer
    for fs in sample.disks.filesystems:
        subject = f"disk:{fs.mount}"
        # Proposed only where configuration allows (watchkeeper.analysis.remedies).
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
        raw = raw_level(
            fs.percent,
            t.disk_warning,
            t.disk_critical,
            margin=a.clear_margin,
            current=level_of("disk_full", subject),
        )
        # Never capped by an expected pattern: a full disk is an exhaustion.
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
            raw = raw_level(
                fs.inodes_percent,
                t.inode_warning,
                t.inode_critical,
                margin=a.clear_margin,
                current=level_of("inodes_full", isubject),
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
    raw, near = _graded(
        float(procs.zombie),
        a.zombie_warning,
        a.zombie_critical,
        max(1.0, a.zombie_warning * 0.2),
        level_of("zombie_storm", "zombies"),
    )
    yield Check(
        "zombie_storm",
        "zombies",
        "process",
        raw,
        f"{procs.zombie} zombie processes (their parent is not reaping them)",
        {"zombies": procs.zombie, "total_processes": procs.total},
        near=near,
        label="zombies piling up",
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
        name = clean(iface.name, LABEL, 32)
        raw, near = _graded(
            bad,
            a.net_errors_warning,
            a.net_errors_critical,
            a.net_errors_warning * 0.5,
            level_of("net_errors", subject),
        )
        yield Check(
            "net_errors",
            subject,
            "net",
            raw,
            f"{name}: {bad:.0f} errors+drops per second",
            {"interface": iface.name, "errors_drops_per_s": round(bad, 1)},
            near=near,
            label=f"{name}: errors+drops",
        )


def check_services(
    sample: MetricsSample, settings: Settings, level_of: LevelOf, now: float
) -> Iterator[Check]:
    statuses = getattr(sample, "services", ()) or ()
    procs: dict[int, ProcessInfo] = {}
    if statuses and sample.processes is not None:
        procs = {p.pid: p for p in (*sample.processes.top_memory, *sample.processes.top_cpu)}
    for status in statuses:
        proc = procs.get(status.pid) if status.pid is not None else None
        yield from service_checks(status, settings, now, proc=proc, sampled=True)


# States that mean "launched, not up yet" (systemd's "activating" and Windows'
# "start_pending" arrive as ServiceState.STARTING; the raw names are accepted too).
_NOT_YET_UP = frozenset({"starting", "activating", "start_pending"})
# A starting service whose main process keeps this much of a core busy, or waits on the
# disk, is working through something (crash recovery, a migration, a cache warm-up).
_BUSY_CPU_PERCENT = 20.0
_DISK_WAIT = frozenset({"disk-sleep", "disk_sleep", "D"})


def systemd_evidence(status: Any) -> dict[str, Any]:
    """What a status says beyond its state: the unit's ``Restart=``, its restart count, a
    start-limit hit, and its last log lines (``journal``; cleaned again here, since a
    status may come from another host)."""
    out: dict[str, Any] = {}
    policy = getattr(status, "restart_policy", None)
    if policy:
        out["restart_policy"] = clean(str(policy), LABEL, 20)
        out["restarts"] = getattr(status, "restarts", 0) or 0
    if getattr(status, "start_limit_hit", False):
        out["start_limit_hit"] = True
    journal = getattr(status, "journal", None) or ()
    if journal:
        out["journal"] = [clean(str(line), LOG_LINE, 200) for line in list(journal)[-20:]]
    return out


def restarts_itself(status: Any) -> bool:
    """True for a unit systemd restarts on its own (``Restart=`` set, not ``no``)."""
    return getattr(status, "restart_policy", None) not in (None, "", "no")


def down_remedies(status: Any, name: str, evidence: dict[str, Any]) -> tuple[SuggestedAction, ...]:
    """What to propose for a service that is down (and why not, in ``evidence``).

    A unit systemd restarts itself gets no restart from watchkeeper (two supervisors
    racing for one service help nobody); once systemd gave up (a start-limit hit), the
    remedy is ``reset_failed``, for a person to approve when the cause is addressed, since
    a plain start is refused until then."""
    if getattr(status, "start_limit_hit", False):
        evidence["not_proposed"] = {
            "restart_service": "systemd refuses to start it again until its failed state is reset"
        }
        return (
            SuggestedAction(
                action="reset_failed",
                target=status.name,
                target_kind="service",
                reason=f"systemd gave up on {name} (start limit hit): reset it once the cause "
                "is fixed",
                confidence=0.5,
            ),
        )
    if restarts_itself(status):
        policy = clean(str(status.restart_policy), LABEL, 20)
        evidence["not_proposed"] = {
            "restart_service": f"systemd restarts it itself (Restart={policy}); watchkeeper "
            "watches instead of racing it"
        }
        return ()
    return (
        SuggestedAction(
            action="restart_service",
            target=status.name,
            target_kind="service",
            reason=f"service {name} is down",
            confidence=0.9,
        ),
    )


def service_checks(
    status: Any,
    settings: Settings | None = None,
    now: float | None = None,
    *,
    proc: ProcessInfo | None = None,
    sampled: bool = False,
) -> Iterator[Check]:
    """Checks for one ``ServiceStatus`` (also used on service events, without waiting).

    With ``settings`` (and ``now``), a service still starting after
    ``analyzer.stuck_starting_seconds`` is ``service_stuck``; it proposes a restart
    unless its main process (``proc``, from the sample) is busy, which means the start is
    making progress that a restart would throw away. Only a sample (``sampled``) shows
    whether that process is busy, so a service event can clear ``service_stuck`` (the
    service came up) but never raise it."""
    name = clean(status.name, LABEL, 64)
    subject = f"service:{status.name}"
    state = str(status.state)
    down = state == "failed"
    severity = Severity.CRITICAL if status.critical else Severity.WARNING
    down_evidence: dict[str, Any] = {
        "service": status.name,
        "state": state,
        "exit_code": status.last_exit_code,
        "exit_signal": status.last_exit_signal,
        "critical": status.critical,
    }
    down_evidence.update(systemd_evidence(status))
    yield Check(
        "service_down",
        subject,
        "service",
        severity if down else None,
        f"service {name} is down ({status.detail or state})"
        if down
        else f"service {name} is {state}",
        down_evidence,
        down_remedies(status, name, down_evidence),
        for_s=0,
        clear_s=0,
    )
    unhealthy = state == "running" and status.healthy is False
    yield Check(
        "service_unhealthy",
        subject,
        "service",
        severity if unhealthy else None,
        f"service {name} runs but fails its probe: {status.probe_detail or '?'}",
        {"service": status.name, "probe": status.probe_detail, "critical": status.critical},
        (
            SuggestedAction(
                action="restart_service",
                target=status.name,
                target_kind="service",
                reason=f"service {name} fails its health probe",
                confidence=0.6,
            ),
        ),
        label=f"service {name} failing its probe",
    )
    if settings is None:
        return
    limit = settings.analyzer.stuck_starting_seconds
    starting = state in _NOT_YET_UP
    if starting and not sampled:
        return
    hold = limit
    evidence: dict[str, Any] = {
        "service": status.name,
        "state": state,
        "stuck_after_s": limit,
        "critical": status.critical,
    }
    started = getattr(status, "started_at", None)
    if starting and started is not None and now is not None:
        # Launched before we began watching: count from its own start.
        age = max(0.0, now - started.timestamp())
        hold = max(0.0, limit - age)
        evidence["starting_for_s"] = round(age, 1)
    if status.detail:
        evidence["detail"] = clean(str(status.detail), LABEL, 120)
    restart: tuple[SuggestedAction, ...] = (
        SuggestedAction(
            action="restart_service",
            target=status.name,
            target_kind="service",
            reason=f"service {name} is stuck {state}",
            confidence=0.6,
        ),
    )
    if starting and proc is not None:
        used = proc.cpu_percent or 0.0
        waiting = proc.status in _DISK_WAIT
        if used >= _BUSY_CPU_PERCENT or waiting:
            busy = f"{used:.0f}% of a core" + (", waiting on the disk" if waiting else "")
            evidence["progress"] = f"its process (pid {proc.pid}) is busy: {busy}"
            evidence["not_proposed"] = {
                "restart_service": "it is still working: a restart would throw that work away"
            }
            restart = ()
    yield Check(
        "service_stuck",
        subject,
        "service",
        severity if starting else None,
        f"service {name} has been {state} for over {limit:.0f}s without coming up"
        if starting
        else f"service {name} is {state}",
        evidence,
        restart,
        for_s=hold,
        clear_s=0,
        window=False,
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
