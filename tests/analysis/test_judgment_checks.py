"""The rule path's judgment on situations real hosts produce, driven sample by sample
through the ``AnalysisEngine`` the analyzer runs.

Each test plays a sequence of 5 s samples the way a sensor would publish them (a NIC that
errors on every other sample, kswapd0 pinning a core, a nightly backup filling memory on
a host without swap) and asserts on the alerts a person would read: what fired, how
severe, what it says and which actions it proposes.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from watchkeeper.analysis.checks import Check
from watchkeeper.analysis.engine import AnalysisEngine, Transition
from watchkeeper.analysis.remedies import own_pids
from watchkeeper.analysis.rules import RuleRegistry
from watchkeeper.config import Settings
from watchkeeper.model.alerts import Alert, Severity
from watchkeeper.model.metrics import (
    CpuMetrics,
    DiskMetrics,
    FilesystemUsage,
    InterfaceRates,
    MemoryMetrics,
    MetricsSample,
    NetworkMetrics,
    ProcessGroup,
    ProcessInfo,
    ProcessMetrics,
)
from watchkeeper.model.services import ServiceState, ServiceStatus

_MB = 1024 * 1024
_GB = 1024 * _MB
STEP = 5.0
# A Tuesday afternoon, local time (expected patterns read the local hour).
AFTERNOON = time.mktime((2026, 3, 10, 14, 0, 0, 0, 0, -1))
NIGHT = time.mktime((2026, 3, 10, 2, 0, 0, 0, 0, -1))


# -- a small host to sample ----------------------------------------------------------------
@dataclass
class Proc:
    pid: int
    name: str
    cpu: float = 1.0
    rss_mb: float = 50.0
    cmdline: str = ""
    ppid: int | None = 1000
    kernel: bool = False
    user: str = "app"

    def info(self, now: float) -> ProcessInfo:
        return ProcessInfo(
            pid=self.pid,
            name=self.name,
            user=self.user,
            cmdline=self.cmdline or self.name,
            status="running",
            cpu_percent=self.cpu,
            rss_bytes=int(self.rss_mb * _MB),
            num_threads=1 if self.kernel else 6,
            create_time=1_700_000_000.0 + self.pid,
            age_seconds=now - 1_700_000_000.0 - self.pid,
            ppid=self.ppid,
            kernel_thread=self.kernel,
        )


@dataclass
class Host:
    cpu: float = 12.0
    memory: float = 40.0
    swap_total_gb: float = 2.0
    swap: float = 0.0
    disks: dict[str, float] = field(default_factory=lambda: {"/": 40.0})
    nic_errors: float = 0.0
    procs: list[Proc] = field(default_factory=list)
    groups: tuple[ProcessGroup, ...] = ()
    services: list[ServiceStatus] = field(default_factory=list)
    name: str = field(default_factory=socket.gethostname)  # this host, as the sensor names it

    def sample(self, now: float) -> MetricsSample:
        infos = [p.info(now) for p in self.procs]
        total = 16 * _GB
        swap_total = int(self.swap_total_gb * _GB)
        return MetricsSample(
            timestamp=now,
            host=self.name,
            interval=STEP,
            cpu=CpuMetrics(count=4, percent=self.cpu, load_1m=0.8),
            memory=MemoryMetrics(
                total_bytes=total,
                available_bytes=int(total * (1 - self.memory / 100)),
                used_bytes=int(total * self.memory / 100),
                percent=self.memory,
                swap_total_bytes=swap_total,
                swap_used_bytes=int(swap_total * self.swap / 100),
                swap_percent=self.swap,
                swap_in_bytes_per_s=0.0,
                swap_out_bytes_per_s=0.0,
            ),
            disks=DiskMetrics(
                filesystems=tuple(
                    FilesystemUsage(
                        mount=mount,
                        device=f"/dev/sd{index}",
                        fstype="ext4",
                        total_bytes=100 * _GB,
                        used_bytes=int(pct * _GB),
                        free_bytes=int((100 - pct) * _GB),
                        percent=pct,
                        inodes_total=1_000_000,
                        inodes_used=10_000,
                        inodes_percent=1.0,
                    )
                    for index, (mount, pct) in enumerate(self.disks.items())
                )
            ),
            network=NetworkMetrics(
                interfaces=(
                    InterfaceRates(
                        name="eth0",
                        rx_bytes_per_s=2e5,
                        tx_bytes_per_s=1e5,
                        rx_errors_per_s=self.nic_errors,
                        tx_errors_per_s=0.0,
                        rx_drops_per_s=0.0,
                        tx_drops_per_s=0.0,
                    ),
                )
            ),
            processes=ProcessMetrics(
                total=220,
                running=2,
                sleeping=218,
                top_cpu=tuple(
                    sorted(
                        (p for p in infos if (p.cpu_percent or 0) > 0),
                        key=lambda p: -(p.cpu_percent or 0),
                    )[:10]
                ),
                top_memory=tuple(sorted(infos, key=lambda p: -p.rss_bytes)[:10]),
                groups=self.groups,
            ),
            services=list(self.services),
        )


def settings_with(**overrides: Any) -> Settings:
    return Settings.model_validate(overrides)


@dataclass
class Run:
    """The engine with everything it said, sample by sample."""

    settings: Settings
    start: float = AFTERNOON
    engine: AnalysisEngine = field(init=False)
    transitions: list[tuple[float, Transition]] = field(default_factory=list)
    elapsed: float = 0.0

    def __post_init__(self) -> None:
        self.engine = AnalysisEngine(lambda: self.settings)

    def play(self, host: Host, seconds: float, change: Callable[[Host, float], None]) -> None:
        """``seconds`` of samples from where the run stands; ``change(host, t)`` shapes
        each one (``t``: seconds since this stretch began)."""
        begun = self.elapsed
        for index in range(int(seconds / STEP)):
            t = index * STEP
            change(host, t)
            now = self.start + begun + t
            for transition in self.engine.observe(host.sample(now), now):
                self.transitions.append((now - self.start, transition))
        self.elapsed = begun + seconds

    def fired(self, rule: str) -> list[Alert]:
        return [t.alert for _, t in self.transitions if t.kind == "firing" and t.alert.rule == rule]

    def firing(self, rule: str) -> Alert | None:
        return next((a for a in self.engine.firing() if a.rule == rule), None)

    def resolved_at(self, rule: str) -> float | None:
        return next(
            (at for at, t in self.transitions if t.kind == "resolved" and t.alert.rule == rule),
            None,
        )


def actions_of(alerts: Iterable[Alert]) -> set[tuple[str, str | None]]:
    return {(a.action, a.target) for alert in alerts for a in alert.suggested_actions}


def steady(host: Host, t: float) -> None:
    """No change from sample to sample."""


# -- 1. brief repeated spikes do not add up ---------------------------------------------------
@pytest.mark.parametrize("between", ["gone from top_cpu", "idle at 8%"])
def test_brief_repeated_spikes_never_make_a_runaway(between: str) -> None:
    """A thumbnailer hot for 20 s every 90 s is not pinning a core: with a 60 s "for",
    separate spikes must not add up, whether it leaves the top list or idles in it."""
    run = Run(settings_with())
    thumb = Proc(4711, "thumbnailer", cpu=0.0)
    host = Host(cpu=55.0, procs=[thumb, Proc(812, "postgres", cpu=12.0)])

    def spiky(h: Host, t: float) -> None:
        hot = t % 90 < 20
        thumb.cpu = 99.0 if hot else (0.0 if between == "gone from top_cpu" else 8.0)

    run.play(host, 15 * 60, spiky)
    assert run.fired("runaway_process") == []

    # The same process pinning a core for good is found within its "for" duration.
    run.play(host, 90, lambda h, t: setattr(thumb, "cpu", 99.0))
    assert [a.subject for a in run.fired("runaway_process")] == ["process:4711"]


def test_a_plugin_rule_that_reports_only_when_bad_never_sums_its_bursts() -> None:
    """A rule that yields a check only while the queue is deep (silent otherwise): the
    tracker must not keep the first burst's pending timer through the silence."""
    rules = RuleRegistry()

    def deep_queue(
        sample: MetricsSample, settings: Settings, level_of: Any, now: float
    ) -> Iterator[Check]:
        if sample.extra.get("queue.depth", 0.0) > 100:
            yield Check("deep_queue", "queue", "queue", Severity.WARNING, "queue deep", for_s=30)

    rules.add("deep_queue", deep_queue)
    settings = settings_with()
    engine = AnalysisEngine(lambda: settings, rules=rules)
    fired = []
    for index in range(120):  # ten minutes: deep for 10 s of every 45 s
        now = AFTERNOON + index * STEP
        depth = 500.0 if (index * STEP) % 45 < 10 else 3.0
        sample = Host().sample(now).model_copy(update={"extra": {"queue.depth": depth}})
        fired += [t for t in engine.observe(sample, now) if t.kind == "firing"]
    assert fired == []
    # Deep for good: it fires once its 30 s have passed.
    for index in range(120, 130):
        now = AFTERNOON + index * STEP
        sample = Host().sample(now).model_copy(update={"extra": {"queue.depth": 900.0}})
        fired += [t for t in engine.observe(sample, now) if t.kind == "firing"]
    assert [t.alert.rule for t in fired] == ["deep_queue"]


# -- 8. intermittent faults -------------------------------------------------------------------
def test_nic_erroring_on_every_other_sample_fires_as_intermittent() -> None:
    """A flaky cable: eth0 drops frames on every other 5 s sample for three minutes. Each
    clean sample restarts the "for" timer, so only the window sees it."""
    run = Run(settings_with())
    host = Host()
    run.play(host, 60, steady)
    run.play(
        host, 180, lambda h, t: setattr(h, "nic_errors", 40.0 if int(t / STEP) % 2 == 0 else 0.0)
    )
    fired = run.fired("net_errors")
    assert len(fired) == 1
    alert = fired[0]
    assert alert.severity.value == "warning"
    assert alert.summary.startswith("eth0: errors+drops on 6 of the last 12 samples (intermittent)")
    assert alert.evidence["intermittent"] == {
        "samples_on": 6,
        "samples": 12,
        "window_s": 120.0,
        "line": "warning",
    }
    # Hysteresis: the first clean samples after the cable is replaced do not clear it...
    run.play(host, 20, lambda h, t: setattr(h, "nic_errors", 0.0))
    assert run.firing("net_errors") is not None
    # ...but once under window_clear_share of the window, it resolves.
    run.play(host, 120, steady)
    assert run.firing("net_errors") is None
    assert run.resolved_at("net_errors") is not None


def test_an_intermittent_fault_stays_firing_while_it_recurs_above_the_clear_share() -> None:
    """Hysteresis in the window: once firing, bursts on a quarter of the samples (under
    the fire share, over the clear share) keep the alert, even bursts over the critical
    line that alone would not make it critical."""
    run = Run(settings_with())
    host = Host()
    run.play(host, 120, lambda h, t: setattr(h, "nic_errors", 40.0 if int(t / STEP) % 2 else 0.0))
    assert run.firing("net_errors") is not None
    run.play(
        host, 240, lambda h, t: setattr(h, "nic_errors", 150.0 if int(t / STEP) % 4 == 0 else 0.0)
    )
    alert = run.firing("net_errors")
    assert alert is not None and alert.severity.value == "warning"
    assert len(run.fired("net_errors")) == 1
    assert run.resolved_at("net_errors") is None


def test_a_continuous_burst_that_ends_clears_at_its_usual_pace() -> None:
    """The window is for faults that come and go: a burst that simply ends must not be
    held for another window by its own history."""
    run = Run(settings_with())
    host = Host()
    run.play(host, 30, steady)
    run.play(host, 90, lambda h, t: setattr(h, "nic_errors", 40.0))
    assert run.firing("net_errors") is not None
    assert "intermittent" not in run.fired("net_errors")[0].summary
    run.play(host, 30, lambda h, t: setattr(h, "nic_errors", 0.0))
    assert run.firing("net_errors") is None


def test_cpu_hovering_inside_the_clear_margin_is_not_intermittent() -> None:
    """CPU wobbling around the 75 % line (74, 77, 73.5, 76) is noise at the line, not a
    fault that comes and goes: nothing fires however long it lasts."""
    run = Run(settings_with())
    wobble = [74.0, 77.0, 73.5, 76.0]
    run.play(Host(), 10 * 60, lambda h, t: setattr(h, "cpu", wobble[int(t / STEP) % 4]))
    assert run.fired("cpu_high") == []
    assert run.engine.verdict() == "healthy"


def test_cpu_bursting_to_critical_on_and_off_is_critical_and_intermittent() -> None:
    """A batch job that saturates the CPU for 10 s out of every 15 s: never 15 s in a row
    over the line, yet two thirds of the time at 98 %."""
    run = Run(settings_with())
    run.play(Host(), 300, lambda h, t: setattr(h, "cpu", 98.0 if t % 15 < 10 else 30.0))
    fired = run.fired("cpu_high")
    assert fired and fired[-1].severity.value == "critical"
    assert "(intermittent)" in fired[-1].summary
    assert fired[-1].evidence["intermittent"]["line"] == "critical"


# -- 5. protected targets are never proposed --------------------------------------------------
def _hot_for_three_minutes(proc: Proc, **settings: Any) -> Alert:
    run = Run(settings_with(**settings))
    host = Host(cpu=60.0, procs=[proc, Proc(812, "postgres", cpu=4.0)])
    run.play(host, 180, steady)
    fired = run.fired("runaway_process")
    assert [a.subject for a in fired] == [f"process:{proc.pid}"], "the alert still fires"
    return fired[-1]


@pytest.mark.parametrize(
    ("proc", "why"),
    [
        (Proc(97, "kswapd0", cpu=99.0, ppid=2, kernel=True, user="root"), "kernel thread"),
        (Proc(412, "kworker/u8:3", cpu=99.0, ppid=2, user="root"), "kernel thread"),
        (Proc(1, "systemd", cpu=99.0, ppid=0, user="root"), "pid 1 (init)"),
        (Proc(2231, "sshd", cpu=99.0, user="root"), "protected name 'sshd'"),
        (
            Proc(2240, "sshd-session", cpu=99.0, cmdline="sshd-session: alice [priv]"),
            "protected name 'sshd-session'",
        ),
        # Renamed through prctl, but its command line still names the program.
        (Proc(2250, "worker", cpu=99.0, cmdline="/usr/sbin/sshd -D"), "protected name 'sshd'"),
        (Proc(os.getpid(), "python3", cpu=99.0), "watchkeeper itself"),
        (Proc(os.getppid(), "bash", cpu=99.0), "an ancestor of watchkeeper"),
    ],
    ids=lambda v: v.name if isinstance(v, Proc) else None,
)
def test_hot_protected_process_is_news_but_nothing_is_proposed(proc: Proc, why: str) -> None:
    alert = _hot_for_three_minutes(proc)
    assert alert.suggested_actions == []
    assert why in alert.evidence["protected"]
    assert set(alert.evidence["not_proposed"]) == {"renice_process", "kill_process"}


def test_our_own_pid_on_another_host_is_just_a_process() -> None:
    """A sample relayed from another host of the fleet: pid numbers there are not ours
    (that host's own gate protects its watchkeeper)."""
    run = Run(settings_with())
    proc = Proc(os.getpid(), "spinner", cpu=99.0)
    run.play(Host(cpu=60.0, procs=[proc], name="build-07.example.net"), 180, steady)
    assert actions_of(run.fired("runaway_process")) == {
        ("renice_process", str(os.getpid())),
        ("kill_process", str(os.getpid())),
    }


def test_a_service_main_process_is_reniced_never_killed() -> None:
    """mysqld scanning a table for ever: killing it would drop every client; renice it."""
    run = Run(settings_with(services=[{"name": "mysql", "manager": "systemd"}]))
    mysqld = Proc(1402, "mysqld", cpu=100.0, cmdline="/usr/sbin/mysqld", user="mysql")
    status = _service("mysql", ServiceState.RUNNING, pid=1402, healthy=True, critical=True)
    run.play(Host(cpu=30.0, procs=[mysqld], services=[status]), 180, steady)
    alert = run.fired("runaway_process")[-1]
    assert actions_of([alert]) == {("renice_process", "1402")}
    assert "main process of service mysql" in alert.evidence["not_proposed"]["kill_process"]


def test_protected_names_come_from_the_configuration() -> None:
    # A pid that is not one of this test's own ancestors (those are protected for real).
    pid = next(p for p in range(3300, 9000) if p not in own_pids())
    proc = Proc(pid, "pgbouncer", cpu=99.0)
    assert actions_of([_hot_for_three_minutes(proc)]) == {
        ("renice_process", str(pid)),
        ("kill_process", str(pid)),
    }
    alert = _hot_for_three_minutes(proc, remediation={"protected_names": ["PgBouncer"]})
    assert alert.suggested_actions == []


def test_memory_critical_never_proposes_killing_the_journal() -> None:
    run = Run(settings_with())
    journal = Proc(377, "systemd-journald", cpu=2.0, rss_mb=9000, user="root")
    run.play(Host(memory=97.0, procs=[journal, Proc(900, "nginx", rss_mb=200)]), 60, steady)
    alert = run.fired("memory_high")[-1]
    assert alert.severity.value == "critical"
    assert alert.suggested_actions == []
    assert "systemd-journald" in alert.evidence["protected"]


# -- 6. an expected pattern never hides an exhaustion -----------------------------------------
def test_backup_window_does_not_hide_memory_running_out_without_swap() -> None:
    """02:00, the nightly backup is allowed to run hot, but memory sits at 97 % on a host
    with no swap: the OOM killer is next, so the alert stays critical."""
    run = Run(settings_with(), start=NIGHT)
    backup = Proc(5150, "nightly-backup", cpu=60.0, rss_mb=14000, user="backup")
    run.play(Host(memory=97.0, swap_total_gb=0.0, procs=[backup]), 120, steady)
    alert = run.firing("memory_high")
    assert alert is not None and alert.severity.value == "critical"
    assert "nightly-backup" in alert.evidence["expected"]
    assert "not lowered" in alert.evidence["expected_overridden"]
    assert "no swap" in alert.evidence["expected_overridden"]
    assert run.engine.verdict() == "critical"


def test_backup_window_with_swap_also_full_is_not_lowered() -> None:
    run = Run(settings_with(), start=NIGHT)
    backup = Proc(5150, "nightly-backup", cpu=60.0, rss_mb=14000, user="backup")
    run.play(Host(memory=96.0, swap=92.0, procs=[backup]), 120, steady)
    alert = run.firing("memory_high")
    assert alert is not None and alert.severity.value == "critical"
    assert "swap 92% full" in alert.evidence["expected_overridden"]


def test_backup_window_still_quiets_memory_when_swap_has_room() -> None:
    """Swap with room is a buffer, not an emergency: the pattern may quiet the level."""
    run = Run(settings_with(), start=NIGHT)
    backup = Proc(5150, "nightly-backup", cpu=60.0, rss_mb=14000, user="backup")
    run.play(Host(memory=97.0, swap=10.0, procs=[backup]), 120, steady)
    alert = run.firing("memory_high")
    assert alert is not None and alert.severity.value == "info"
    assert "expected_overridden" not in alert.evidence
    assert run.engine.verdict() == "healthy"


def test_backup_window_does_not_hide_a_full_disk() -> None:
    run = Run(settings_with(), start=NIGHT)
    backup = Proc(5150, "nightly-backup", cpu=95.0, rss_mb=900, user="backup")
    run.play(Host(cpu=93.0, disks={"/": 97.0}, procs=[backup]), 60, steady)
    disk = run.firing("disk_full")
    assert disk is not None and disk.severity.value == "critical"
    cpu = run.firing("cpu_high")
    assert cpu is not None and cpu.severity.value == "info"  # what the pattern is for


# -- 3. remedies the configuration makes impossible are not proposed -------------------------
def _disks_full(**settings: Any) -> dict[str, Alert]:
    run = Run(settings_with(**settings))
    run.play(Host(disks={"/": 96.0, "/var/log": 97.0}), 10, steady)
    return {a.subject: a for a in run.fired("disk_full")}


def test_full_disk_with_nothing_configured_proposes_nothing_and_says_what_would_help() -> None:
    alerts = _disks_full()
    assert set(alerts) == {"disk:/", "disk:/var/log"}
    root = alerts["disk:/"]
    assert root.suggested_actions == []
    assert "configure remediation.cleanup_dirs on /" in root.evidence["hint"]
    assert "configure remediation.log_files on /" in root.evidence["hint"]


def test_cleanup_is_proposed_only_on_the_filesystem_its_directories_lie_on() -> None:
    alerts = _disks_full(
        remediation={
            "cleanup_dirs": [{"path": "/var/tmp/cache"}, {"path": "/var/log/app/archive"}],
            "log_files": ["/var/log/app/app.log"],
        }
    )
    # /var/tmp/cache lies on / ; /var/log/app/* lie on the /var/log filesystem.
    assert actions_of([alerts["disk:/"]]) == {("clean_directory", "/")}
    assert "configure remediation.log_files on /" in alerts["disk:/"].evidence["hint"]
    assert actions_of([alerts["disk:/var/log"]]) == {
        ("clean_directory", "/var/log"),
        ("rotate_log", "/var/log"),
    }
    assert "not_proposed" not in alerts["disk:/var/log"].evidence


def test_a_directory_on_another_mount_below_does_not_count_for_root() -> None:
    alerts = _disks_full(remediation={"cleanup_dirs": [{"path": "/var/log/old"}]})
    assert actions_of([alerts["disk:/"]]) == set()
    assert actions_of([alerts["disk:/var/log"]]) == {("clean_directory", "/var/log")}


def _service(name: str, state: ServiceState, **kw: Any) -> ServiceStatus:
    return ServiceStatus(name=name, manager=kw.pop("manager", "systemd"), state=state, **kw)


def test_restart_is_proposed_only_for_services_that_can_be_restarted() -> None:
    settings = settings_with(
        services=[
            {"name": "api", "argv": ["/usr/bin/api-server", "--port", "8080"]},
            {"name": "legacy", "pidfile": "/run/legacy.pid"},
            {"name": "postgresql", "manager": "systemd", "critical": True},
        ]
    )
    run = Run(settings)
    host = Host(
        services=[
            _service("api", ServiceState.FAILED, manager="process", last_exit_code=1),
            _service("legacy", ServiceState.FAILED, manager="process"),
            _service("postgresql", ServiceState.FAILED, critical=True),
        ]
    )
    run.play(host, 10, steady)
    alerts = {a.subject: a for a in run.fired("service_down")}
    assert actions_of([alerts["service:api"]]) == {("restart_service", "api")}
    assert actions_of([alerts["service:postgresql"]]) == {("restart_service", "postgresql")}
    legacy = alerts["service:legacy"]
    assert legacy.suggested_actions == []
    assert "pidfile" in legacy.evidence["not_proposed"]["restart_service"]
    assert "give legacy an argv" in legacy.evidence["hint"]


def test_a_protected_service_is_never_proposed_for_restart() -> None:
    run = Run(settings_with())
    run.play(Host(services=[_service("sshd", ServiceState.FAILED, critical=True)]), 10, steady)
    alert = run.fired("service_down")[-1]
    assert alert.severity.value == "critical"
    assert alert.suggested_actions == []
    assert "protected" in alert.evidence["not_proposed"]["restart_service"]


# -- 4. a critical service failing its probe is critical ---------------------------------------
@pytest.mark.parametrize(("critical", "severity"), [(True, "critical"), (False, "warning")])
def test_failing_probe_severity_follows_the_service(critical: bool, severity: str) -> None:
    run = Run(settings_with())
    status = _service(
        "checkout",
        ServiceState.RUNNING,
        pid=3100,
        healthy=False,
        probe_detail="HTTP 503 from /healthz",
        critical=critical,
    )
    run.play(Host(services=[status]), 60, steady)
    alert = run.firing("service_unhealthy")
    assert alert is not None and alert.severity.value == severity
    assert run.engine.verdict() == ("critical" if critical else "degraded")


# -- 11. a service stuck starting -------------------------------------------------------------
def test_service_stuck_activating_fires_and_proposes_a_restart() -> None:
    """A unit waiting forever on a lock: systemd says "activating" for minutes."""
    settings = settings_with(services=[{"name": "elasticsearch", "manager": "systemd"}])
    run = Run(settings)
    status = _service("elasticsearch", ServiceState.STARTING, critical=True, detail="activating")
    run.play(Host(services=[status]), 110, steady)
    assert run.fired("service_stuck") == []  # 110 s: still allowed to start
    run.play(Host(services=[status]), 30, steady)
    alert = run.fired("service_stuck")[-1]
    assert alert.severity.value == "critical"
    assert actions_of([alert]) == {("restart_service", "elasticsearch")}
    # Once it comes up, the alert resolves at once.
    run.play(Host(services=[_service("elasticsearch", ServiceState.RUNNING, pid=77)]), 5, steady)
    assert run.firing("service_stuck") is None


def test_service_already_starting_for_long_when_first_seen_fires_at_once() -> None:
    run = Run(settings_with())
    began = datetime.fromtimestamp(AFTERNOON - 600, tz=UTC)
    status = _service("worker", ServiceState.STARTING, started_at=began)
    run.play(Host(services=[status]), 5, steady)
    alert = run.firing("service_stuck")
    assert alert is not None and alert.severity.value == "warning"
    assert alert.evidence["starting_for_s"] == pytest.approx(600, abs=1)


def test_a_start_that_is_busy_recovering_is_stuck_but_not_restarted() -> None:
    """postgres replaying WAL after a power loss: starting for minutes, its process busy
    on the disk. It is news (the database is not up), but a restart throws the replay
    away."""
    settings = settings_with(services=[{"name": "postgresql", "manager": "systemd"}])
    run = Run(settings)
    startup = Proc(1150, "postgres", cpu=45.0, cmdline="postgres: startup recovering", ppid=1)
    status = _service("postgresql", ServiceState.STARTING, pid=1150, critical=True)
    run.play(Host(procs=[startup], services=[status]), 300, steady)
    alert = run.fired("service_stuck")[-1]
    assert alert.severity.value == "critical"
    assert alert.suggested_actions == []
    assert "busy: 45% of a core" in alert.evidence["progress"]


def test_a_service_event_never_proposes_restarting_a_busy_start() -> None:
    """Only a sample shows the process is busy: a status event arriving just as the limit
    passes must not fire the alert with a restart the sample would have withheld."""
    settings = settings_with(services=[{"name": "postgresql", "manager": "systemd"}])
    run = Run(settings)
    startup = Proc(1150, "postgres", cpu=60.0, cmdline="postgres: startup recovering", ppid=1)
    status = _service("postgresql", ServiceState.STARTING, pid=1150, critical=True)
    host = Host(procs=[startup], services=[status])
    run.play(host, 115, steady)  # samples up to 110 s
    assert run.engine.observe_service(status, AFTERNOON + 121) == []
    run.play(host, 10, steady)
    alert = run.fired("service_stuck")[-1]
    assert alert.suggested_actions == []
    # The service comes up: the event clears it at once.
    up = _service("postgresql", ServiceState.RUNNING, pid=1150, critical=True)
    cleared = run.engine.observe_service(up, AFTERNOON + 131)
    assert [(t.kind, t.alert.rule) for t in cleared] == [("resolved", "service_stuck")]


def test_a_slow_but_normal_start_is_not_stuck() -> None:
    run = Run(settings_with())
    starting = _service("api", ServiceState.STARTING)
    run.play(Host(services=[starting]), 45, steady)
    run.play(Host(services=[_service("api", ServiceState.RUNNING, pid=41)]), 300, steady)
    assert run.fired("service_stuck") == []


def test_a_service_event_cannot_reset_the_stuck_timer() -> None:
    """A status event in between samples (the manager told us at once) is the same key."""
    settings = settings_with(services=[{"name": "queue", "manager": "systemd"}])
    run = Run(settings)
    status = _service("queue", ServiceState.STARTING)
    run.play(Host(services=[status]), 60, steady)
    run.engine.observe_service(status, AFTERNOON + 62)
    run.play(Host(services=[status]), 70, steady)
    assert [a.subject for a in run.fired("service_stuck")] == ["service:queue"]


# -- 12. the busiest job names the CPU's driver -----------------------------------------------
def test_cpu_high_names_the_compile_job_not_the_last_survivor() -> None:
    """make spawns short-lived cc1plus processes: none lives through an interval, so the
    top process list holds only a kernel thread at 1 %; the job grouping knows better."""
    run = Run(settings_with())
    kdamond = Proc(88, "kdamond.0", cpu=1.0, ppid=2, kernel=True, user="root")
    host = Host(
        cpu=100.0,
        procs=[kdamond],
        groups=(
            ProcessGroup(
                parent_pid=6100, parent_name="make", command="cc1plus", count=2, cpu_percent=190.0
            ),
            ProcessGroup(
                parent_pid=812, parent_name="postgres", command="postgres", count=1, cpu_percent=6.0
            ),
        ),
    )
    run.play(host, 30, steady)
    alert = run.firing("cpu_high")
    assert alert is not None
    assert "top: make: cc1plus x2 (190%)" in alert.summary
    assert alert.evidence["top_jobs"][0] == {
        "parent_pid": 6100,
        "parent": "make",
        "command": "cc1plus",
        "count": 2,
        "cpu_percent": 190.0,
    }


def test_cpu_high_without_jobs_names_the_top_process() -> None:
    run = Run(settings_with())
    run.play(Host(cpu=96.0, procs=[Proc(4242, "ffmpeg", cpu=180.0)]), 30, steady)
    alert = run.firing("cpu_high")
    assert alert is not None and "top: ffmpeg (180%)" in alert.summary
    assert "top_jobs" not in alert.evidence
