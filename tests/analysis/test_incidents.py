"""Incidents from the engine, fed samples the way these incidents look on real hosts.

A database writing to /var/lib/pg on a full / fails, and the web in front of it answers
502 because the database is down: one incident, the disk as its root, the restarts held
until the disk has room. Two problems that have nothing to do with each other stay two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from watchkeeper.analysis.engine import AnalysisEngine, Transition
from watchkeeper.analysis.incidents import mount_of
from watchkeeper.config import Settings
from watchkeeper.model.alerts import Alert, AlertState
from watchkeeper.model.incidents import Incident
from watchkeeper.model.metrics import (
    CpuMetrics,
    DiskMetrics,
    FilesystemUsage,
    MemoryMetrics,
    MetricsSample,
    ProcessInfo,
    ProcessMetrics,
)
from watchkeeper.model.services import ServiceState, ServiceStatus

GIB = 2**30
T0 = 1_773_000_000.0


# Cleanup the host allows on /, so the disk's remedies are real ones.
CLEANUP = {
    "cleanup_dirs": [{"path": "/var/tmp", "older_than_days": 7}],
    "log_files": ["/var/log/app.log"],
}


def settings(services: Sequence[dict[str, Any]] = (), **analyzer: Any) -> Settings:
    return Settings.model_validate(
        {"services": list(services), "analyzer": analyzer, "remediation": CLEANUP}
    )


def fs(mount: str, percent: float) -> FilesystemUsage:
    total = 100 * GIB
    used = int(total * percent / 100)
    return FilesystemUsage(
        mount=mount,
        device="/dev/sda1",
        fstype="ext4",
        total_bytes=total,
        used_bytes=used,
        free_bytes=total - used,
        percent=percent,
    )


def svc(
    name: str,
    state: str = "running",
    *,
    healthy: bool | None = None,
    probe: str | None = None,
    detail: str = "",
    critical: bool = False,
    restarts: int = 0,
) -> ServiceStatus:
    return ServiceStatus(
        name=name,
        manager="systemd",
        state=ServiceState(state),
        healthy=healthy,
        probe_detail=probe,
        detail=detail,
        critical=critical,
        restarts=restarts,
    )


def sample(
    t: float,
    *,
    disks: Sequence[FilesystemUsage] = (),
    services: Sequence[ServiceStatus] = (),
    cpu: float | None = None,
    top: Sequence[ProcessInfo] = (),
    memory: MemoryMetrics | None = None,
) -> MetricsSample:
    return MetricsSample(
        timestamp=t,
        host="db1",
        memory=memory,
        disks=DiskMetrics(filesystems=tuple(disks)) if disks else None,
        cpu=CpuMetrics(percent=cpu, count=2) if cpu is not None else None,
        processes=ProcessMetrics(total=100, top_cpu=tuple(top)) if top else None,
        services=list(services),
    )


class Run:
    """An engine fed samples every 5 s, remembering what a subscriber would have seen."""

    def __init__(self, s: Settings) -> None:
        self.engine = AnalysisEngine(lambda: s)
        self.t = T0
        self.transitions: list[Transition] = []
        self.changes: list[tuple[str, Incident]] = []

    def feed(self, steps: int, **kwargs: Any) -> list[Transition]:
        out: list[Transition] = []
        for _ in range(steps):
            out.extend(self.engine.observe(sample(self.t, **kwargs), self.t))
            self.changes.extend(self.engine.take_incident_changes())
            self.t += 5
        self.transitions.extend(out)
        return out

    def alert(self, rule: str, subject: str) -> Alert:
        found = [a for a in self.engine.firing() if a.rule == rule and a.subject == subject]
        assert len(found) == 1, [(a.rule, a.subject) for a in self.engine.firing()]
        return found[0]

    def check_invariant(self) -> None:
        """Every firing alert above info is in exactly one open incident."""
        incidents = self.engine.incidents_open()
        for alert in self.engine.firing():
            if alert.severity.value == "info":
                continue
            holding = [i for i in incidents if alert.fingerprint in i.fingerprints]
            assert len(holding) == 1, (alert.rule, alert.subject, [i.title for i in holding])


PG: list[dict[str, Any]] = [
    {"name": "db", "manager": "systemd", "critical": True, "paths": ["/var/lib/pg"]},
    {"name": "web", "manager": "systemd", "depends_on": ["db"]},
]


def test_full_root_disk_is_the_root_of_db_failing_and_web_answering_502() -> None:
    run = Run(settings(PG))
    disks = [fs("/", 55), fs("/boot", 30)]
    up = [svc("db", critical=True), svc("web", healthy=True)]
    run.feed(6, disks=disks, services=up)
    assert run.engine.incidents_open() == []

    full = [fs("/", 99.5), fs("/boot", 30)]
    run.feed(2, disks=full, services=up)
    db_down = svc("db", "failed", critical=True, detail="exit-code 1")
    web_502 = svc("web", healthy=False, probe="HTTP 502 from http://127.0.0.1:8080/")
    during = run.feed(12, disks=full, services=[db_down, web_502])

    incidents = run.engine.incidents_open()
    assert len(incidents) == 1, [i.title for i in incidents]
    incident = incidents[0]
    assert incident.title == "/ is full: db and web fail"
    assert incident.key == "disk:/"
    disk = run.alert("disk_full", "disk:/")
    assert incident.root == disk.fingerprint
    roles = {(m.rule, m.subject): m.role for m in incident.members}
    assert roles == {
        ("disk_full", "disk:/"): "root",
        ("service_down", "service:db"): "effect",
        ("service_unhealthy", "service:web"): "effect",
    }
    assert incident.severity.value == "critical"
    assert "db keeps /var/lib/pg on /" in incident.root_cause
    assert "web depends on db" in incident.root_cause
    # Root first: make room, then restart what failed, the nearer effect first.
    assert [(r.action, r.target) for r in incident.remedies] == [
        ("clean_directory", "/"),
        ("rotate_log", "/"),
        ("restart_service", "db"),
        ("restart_service", "web"),
    ]
    # While / is full nothing the remediator hears proposes a restart.
    fired = [t.alert for t in during if t.kind in ("firing", "escalated")]
    assert {a.subject for a in fired} >= {"service:db", "service:web"}
    for alert in fired:
        if alert.subject.startswith("service:"):
            assert alert.suggested_actions == []
            assert alert.evidence["held"] == "held until / is fixed"
    for alert in run.engine.firing():
        if alert.subject.startswith("service:"):
            assert alert.suggested_actions == [], alert.rule
            assert alert.evidence["held"] == "held until / is fixed"
    run.check_invariant()

    # One incident from the first alert on, updated as it grew, never while it stayed put.
    assert [k for k, _ in run.changes].count("opened") == 1
    updates = len(run.changes)
    run.feed(10, disks=full, services=[db_down, web_502])
    assert len(run.changes) == updates

    # Room again (once the disk alert has cleared): db's restart is proposed, web's waits.
    after = run.feed(4, disks=[fs("/", 60), fs("/boot", 30)], services=[db_down, web_502])
    assert [t.alert.rule for t in after if t.kind == "resolved"] == ["disk_full"]
    released = [t.alert for t in after if t.kind == "firing"]
    assert [(a.rule, a.subject) for a in released] == [("service_down", "service:db")]
    assert [(s.action, s.target) for s in released[0].suggested_actions] == [
        ("restart_service", "db")
    ]
    assert "held" not in released[0].evidence
    (still,) = run.engine.incidents_open()
    assert still.id == incident.id
    assert still.key == "service:db"
    assert still.title == "db is down: web fails"
    assert run.alert("service_unhealthy", "service:web").evidence["held"] == (
        "held until db is fixed"
    )
    assert [k for k, _ in run.changes][-1] == "updated"


def test_restart_proposals_only_once_the_disk_has_room() -> None:
    run = Run(settings(PG))
    down = [svc("db", "failed", critical=True), svc("web", "failed")]
    run.feed(6, disks=[fs("/", 99.5)], services=down)
    run.feed(6, disks=[fs("/", 60)], services=down)
    disk_clear = next(t.alert.resolved_at for t in run.transitions if t.kind == "resolved")
    run.feed(8, disks=[fs("/", 60)], services=[svc("db", critical=True), svc("web", "failed")])
    db_ok = next(
        t.alert.resolved_at
        for t in run.transitions
        if t.kind == "resolved" and t.alert.subject == "service:db"
    )
    # db's service_down clears once db has stayed up a while (it just came back).
    assert db_ok is not None and db_ok - (T0 + 12 * 5) == 15
    restarts = [
        (s.target, t.alert.updated_at)
        for t in run.transitions
        if t.kind in ("firing", "escalated")
        for s in t.alert.suggested_actions
        if s.action == "restart_service"
    ]
    # db's once / had room, web's once db was well again: none while / was full or db down.
    assert restarts == [("db", disk_clear), ("web", db_ok)]


def test_no_space_left_in_a_service_detail_links_it_without_declared_paths() -> None:
    broken = svc("queue", "failed", detail="write /srv/q/seg.42: No space left on device")
    run = Run(settings())
    run.feed(3, disks=[fs("/", 99.8), fs("/boot", 20)], services=[broken])
    (incident,) = run.engine.incidents_open()
    assert incident.key == "disk:/"
    assert incident.title == "/ is full: queue fails"
    assert "queue reports no space left" in incident.root_cause

    # The same failure saying nothing about space is a problem of its own.
    other = Run(settings())
    other.feed(3, disks=[fs("/", 99.8)], services=[svc("queue", "failed", detail="exit 1")])
    assert sorted(i.key for i in other.engine.incidents_open()) == ["disk:/", "service:queue"]
    other.check_invariant()


def test_log_lines_are_evidence_too() -> None:
    run = Run(settings())
    run.engine.observe_log("queue", "FATAL: could not extend file: No space left on device")
    run.feed(2, disks=[fs("/", 99.8)], services=[svc("queue", "failed")])
    (incident,) = run.engine.incidents_open()
    assert incident.key == "disk:/"


def test_two_unrelated_problems_at_once_stay_two_incidents() -> None:
    spinner = ProcessInfo(
        pid=4242,
        name="spinner",
        status="running",
        cpu_percent=99.0,
        rss_bytes=20 << 20,
        num_threads=1,
        create_time=T0 - 600,
        age_seconds=600,
    )
    run = Run(settings(PG, runaway_for_seconds=10))
    run.feed(
        10,
        cpu=97.0,
        top=[spinner],
        disks=[fs("/", 50), fs("/data", 99.0)],
        services=[svc("db", critical=True), svc("web", healthy=True)],
    )
    incidents = {i.key: i for i in run.engine.incidents_open()}
    assert sorted(incidents) == ["cpu", "disk:/data"], list(incidents)
    cpu = incidents["cpu"]
    assert {(m.rule, m.role) for m in cpu.members} == {
        ("cpu_high", "root"),
        ("runaway_process", "related"),
    }
    assert cpu.title == "CPU is saturated: spinner (pid 4242) pins a core"
    # The process is what to act on: its actions are the remedy, not held.
    assert [r.action for r in cpu.remedies] == ["renice_process", "kill_process"]
    assert run.alert("runaway_process", "process:4242").suggested_actions
    assert incidents["disk:/data"].title == "/data is full"
    run.check_invariant()


def test_ids_stay_while_open_and_a_lone_alert_is_an_incident_of_one() -> None:
    run = Run(settings())
    run.feed(2, services=[svc("api", "failed")])
    (first,) = run.engine.incidents_open()
    assert first.key == "service:api"
    assert first.title == "api is down"
    assert first.root is not None and first.confidence == 1.0
    assert [(r.action, r.target) for r in first.remedies] == [("restart_service", "api")]
    run.feed(1, services=[svc("api", "failed", healthy=False)])
    (same,) = run.engine.incidents_open()
    assert same.id == first.id


def test_mount_of_takes_the_longest_mount_that_holds_the_path() -> None:
    mounts = ["/", "/var", "/var/lib", "/variable"]
    assert mount_of("/var/lib/pg/base", mounts) == "/var/lib"
    assert mount_of("/variable/x", mounts) == "/variable"
    assert mount_of("/varx", mounts) == "/"
    assert mount_of("/srv", ["/boot"]) is None


def test_untrusted_service_names_are_cleaned_in_titles() -> None:
    run = Run(settings())
    run.feed(2, services=[svc("evil\u202etxt")], disks=[fs("/", 50)])
    hostile = ServiceStatus(
        name="x\x1b[31mred", manager="systemd", state=ServiceState.FAILED, detail="boom"
    )
    run.feed(1, services=[hostile])
    titles = [i.title for i in run.engine.incidents_open()]
    assert titles == ["x[31mred is down"], titles
    assert all("\x1b" not in t and "\u202e" not in t for t in titles)


def test_resolved_incident_lists_its_members_as_cleared() -> None:
    run = Run(settings())
    run.feed(2, disks=[fs("/", 99.0)])
    run.feed(4, disks=[fs("/", 50)])
    kinds = [k for k, _ in run.changes]
    assert kinds == ["opened", "resolved"]
    resolved = run.changes[-1][1]
    assert resolved.state.value == "resolved" and resolved.resolved_at is not None
    assert all(not m.firing for m in resolved.members)
    assert run.engine.incidents_open() == []
    assert all(a.state is AlertState.FIRING for a in run.engine.firing())


def test_a_disk_that_is_only_filling_does_not_hold_a_crash_of_what_lives_on_it() -> None:
    """86 % full leaves room to write: db dying there is its own problem, restart it."""
    run = Run(settings(PG))
    run.feed(3, disks=[fs("/", 86)], services=[svc("db", "failed", critical=True)])
    incidents = {i.key: i for i in run.engine.incidents_open()}
    assert sorted(incidents) == ["disk:/", "service:db"]
    assert [s.action for s in run.alert("service_down", "service:db").suggested_actions] == [
        "restart_service"
    ]
    # Unless db itself says the disk is why.
    said = Run(settings(PG))
    enospc = svc("db", "failed", critical=True, detail="could not write: No space left on device")
    said.feed(3, disks=[fs("/", 86)], services=[enospc])
    (incident,) = said.engine.incidents_open()
    assert incident.key == "disk:/"
    assert said.alert("service_down", "service:db").suggested_actions == []


def test_a_probe_timing_out_while_the_host_thrashes_swap_is_explained_by_memory() -> None:
    thrashing = MemoryMetrics(
        total_bytes=8 * GIB,
        available_bytes=GIB // 2,
        used_bytes=7 * GIB,
        percent=88.0,
        swap_total_bytes=4 * GIB,
        swap_used_bytes=3 * GIB,
        swap_percent=75.0,
        swap_in_bytes_per_s=30e6,
        swap_out_bytes_per_s=25e6,
    )
    slow = svc("api", healthy=False, probe="GET http://127.0.0.1:9000/health timed out after 2.0s")
    run = Run(settings(for_seconds=0))
    run.feed(4, memory=thrashing, services=[slow])
    (incident,) = run.engine.incidents_open()
    assert incident.key == "memory"
    roles = {(m.rule, m.role) for m in incident.members}
    assert {("memory_high", "root"), ("swap_thrashing", "related")} <= roles
    assert ("service_unhealthy", "effect") in roles
    assert "api's probe times out while swapping" in incident.root_cause
    # A probe that answers 500 on the same host is not explained by the swapping.
    other = Run(settings(for_seconds=0))
    other.feed(4, memory=thrashing, services=[svc("api", healthy=False, probe="HTTP 500")])
    assert len(other.engine.incidents_open()) == 2
