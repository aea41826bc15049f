"""What a subscriber on the real in-memory bus sees of incidents.

A full / takes the database down and the web answers 502: ``incident.opened`` once, an
update as each victim joins, nothing while it stays put; the rules' analysis names the
incident and lists its remedies root-first; the remediator giving up, and a person
lifting the give-up, show on it; the model is asked once per incident.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.agents.analyzer import AnalyzerAgent
from watchkeeper.agents.base import AgentContext
from watchkeeper.bus import InMemoryBus
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.events import GaveUp
from watchkeeper.model.metrics import DiskMetrics, FilesystemUsage, MetricsSample
from watchkeeper.model.services import ServiceState, ServiceStatus
from watchkeeper.model.topics import ALERT_RESOLVED, METRICS_SAMPLE, REMEDIATION_GAVE_UP
from watchkeeper.remediation.bookkeeping import giveup_cleared_alert
from watchkeeper.supervisor import Supervisor
from watchkeeper.testing.fake_ollama import FakeOllama
from watchkeeper.testing.scenarios import Scenario, scripted_model

GIB = 2**30
T0 = 1_773_000_000.0
SERVICES = [
    {"name": "db", "manager": "systemd", "critical": True, "paths": ["/var/lib/pg"]},
    {"name": "web", "manager": "systemd", "depends_on": ["db"]},
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build(tmp_path: Path, ollama: dict[str, Any]) -> tuple[AnalyzerAgent, InMemoryBus]:
    base = Settings.model_validate({}).model_dump(mode="json")
    settings = Settings.model_validate(
        deep_merge(
            base,
            {
                "data_dir": str(tmp_path),
                "agents": {"check_interval": 0.1},
                "services": SERVICES,
                "analyzer": {"flap_window": 60},
                "remediation": {
                    "cleanup_dirs": [{"path": "/var/tmp", "older_than_days": 7}],
                    "log_files": ["/var/log/app.log"],
                },
                "ollama": ollama,
            },
        )
    )
    bus = InMemoryBus()
    store = ConfigStore(settings, None, bus)
    return AnalyzerAgent("analyzer", AgentContext(bus=bus, settings=store, data_dir=tmp_path)), bus


@pytest.fixture
async def quiet_model(tmp_path: Path) -> AsyncIterator[tuple[AnalyzerAgent, InMemoryBus]]:
    agent, bus = build(tmp_path, {"enabled": False})
    stop = asyncio.Event()
    task = asyncio.create_task(Supervisor(bus).run([agent], stop))
    try:
        yield agent, bus
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def fs(mount: str, percent: float) -> FilesystemUsage:
    total = 100 * GIB
    used = int(total * percent / 100)
    return FilesystemUsage(
        mount=mount,
        device="/dev/vda1",
        fstype="ext4",
        total_bytes=total,
        used_bytes=used,
        free_bytes=total - used,
        percent=percent,
    )


def status(name: str, state: str = "running", **kw: Any) -> ServiceStatus:
    return ServiceStatus(name=name, manager="systemd", state=ServiceState(state), **kw)


class Host:
    """Publishes samples as the sensor would, 5 s apart in sample time."""

    def __init__(self, bus: InMemoryBus) -> None:
        self.bus, self.t = bus, T0

    async def sample(self, percent: float, services: Sequence[ServiceStatus], n: int = 1) -> None:
        for _ in range(n):
            sample = MetricsSample(
                timestamp=self.t,
                host="db1",
                disks=DiskMetrics(filesystems=(fs("/", percent),)),
                services=list(services),
            )
            await self.bus.publish(METRICS_SAMPLE, sample, sender="sensor")
            self.t += 5
            await asyncio.sleep(0.01)


async def drain(sub: Any, settle: float = 0.3) -> list[Any]:
    """Every message the subscription holds once the bus has gone quiet."""
    out = []
    while True:
        try:
            out.append(await sub.get(timeout=settle))
        except TimeoutError:
            return out


DB_UP = status("db", critical=True)
DB_DOWN = status("db", "failed", critical=True, detail="exit-code 1")
WEB_OK = status("web", healthy=True)
WEB_502 = status("web", healthy=False, probe_detail="HTTP 502")


async def test_a_subscriber_sees_one_incident_grow_hold_its_restarts_and_end(
    quiet_model: tuple[AnalyzerAgent, InMemoryBus],
) -> None:
    agent, bus = quiet_model
    incidents = bus.subscribe("incident.*", name="pager")
    firing = bus.subscribe("alert.*", name="remediator-ish")
    analyses = bus.subscribe("analysis.result", name="dashboard")
    host = Host(bus)

    await host.sample(50, [DB_UP, WEB_OK], n=3)
    await host.sample(99.5, [DB_UP, WEB_OK], n=2)
    await host.sample(99.5, [DB_DOWN, WEB_502], n=6)
    seen = await drain(incidents)
    assert [m.topic for m in seen] == ["incident.opened", "incident.updated", "incident.updated"]
    ids = {m.value.id for m in seen}
    assert len(ids) == 1
    last = seen[-1].value
    assert last.title == "/ is full: db and web fail"
    assert last.key == "disk:/"
    assert [(r.action, r.target) for r in last.remedies] == [
        ("clean_directory", "/"),
        ("rotate_log", "/"),
        ("restart_service", "db"),
        ("restart_service", "web"),
    ]
    alerts = [m.value for m in await drain(firing)]
    services = [a for a in alerts if a.subject.startswith("service:")]
    assert {a.subject for a in services} == {"service:db", "service:web"}
    assert all(a.suggested_actions == [] for a in services), "a restart while / is full"
    results = [m.value for m in await drain(analyses)]
    assert {r.incident_id for r in results} == ids
    assert [(r.action, r.target) for r in results[-1].recommended] == [
        (r.action, r.target) for r in last.remedies
    ]
    assert agent.status()["incidents"] == 1

    # Still full, still down: nothing new for anyone.
    await host.sample(99.5, [DB_DOWN, WEB_502], n=5)
    assert await drain(incidents) == []

    # The remediator gives up on db, then a person lifts the give-up.
    gave_up = GaveUp(target="db", failures=5, reason="restart failed 5 times")
    await bus.publish(REMEDIATION_GAVE_UP, gave_up, sender="remediator")
    (update,) = await drain(incidents)
    assert update.topic == "incident.updated"
    assert "remediation gave up after 5 failures" in update.value.root_cause
    assert await drain(firing) == []  # said on the incident, not as another alert
    await bus.publish(
        ALERT_RESOLVED, giveup_cleared_alert("db", "a person", host.t), sender="remediator"
    )
    (update,) = await drain(incidents)
    assert "give-up reset by a person" in update.value.root_cause
    await drain(firing)

    # Room on /: db's restart goes out now; once all is well the incident ends.
    await host.sample(60, [DB_DOWN, WEB_502], n=4)
    restarts = [
        (m.value.subject, [s.action for s in m.value.suggested_actions])
        for m in await drain(firing)
        if m.topic == "alert.firing"
    ]
    assert restarts == [("service:db", ["restart_service"])]
    await host.sample(60, [DB_UP, WEB_OK], n=4)
    await host.sample(60, [DB_UP, WEB_OK], n=4)  # past the minute-long grace for db
    seen = await drain(incidents)
    assert seen[-1].topic == "incident.resolved"
    assert seen[-1].value.id in ids
    assert agent.status()["incidents"] == 0


async def test_the_model_is_asked_once_per_incident(tmp_path: Path) -> None:
    port = free_port()
    agent, bus = build(
        tmp_path,
        {
            "url": f"http://127.0.0.1:{port}",
            "timeout": 5,
            "retry_attempts": 1,
            "probe_interval": 0.1,
        },
    )
    scenario = Scenario.model_validate(
        {"name": "full", "expect": {"verdict": "critical"}, "llm": {"verdict": "critical"}}
    )
    analyses = bus.subscribe("analysis.result", name="dashboard")
    with FakeOllama(models=["mistral"], port=port) as fake:
        fake.set_reply_fn(scripted_model(scenario))
        stop = asyncio.Event()
        task = asyncio.create_task(Supervisor(bus).run([agent], stop))
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while not agent.llm_available:
                assert asyncio.get_running_loop().time() < deadline, agent.llm_status
                await asyncio.sleep(0.05)
            host = Host(bus)
            await host.sample(99.5, [DB_UP, WEB_OK], n=2)
            await host.sample(99.5, [DB_DOWN, WEB_OK], n=3)
            await host.sample(99.5, [DB_DOWN, WEB_502], n=3)
            results = [m.value for m in await drain(analyses, settle=1.0)]
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        chats = [b for b in fake.bodies() if "messages" in b or "prompt" in b]
    model = [r for r in results if r.source != "rules"]
    # Opened critical with the disk; db and web joined at the same severity: one call.
    assert len(chats) == 1, len(chats)
    (incident,) = agent.engine.incidents_open()
    assert [r.incident_id for r in model] == [incident.id]
    assert all(r.incident_id == incident.id for r in results)
