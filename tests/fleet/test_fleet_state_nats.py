"""The fleet view and the central communicator on a real nats-server with JetStream: three
hosts on their own NatsBus publish heartbeats and the same alert; the central host's fleet
agent shows every host and opens one fleet incident, its communicator records each host's
alert under that host and tells people once (a real loopback webhook). The central host is
stopped, the hosts' alerts resolve meanwhile, and a new central process on the same data
dir catches up from the stream: every step recorded once, nothing counted twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.agents.base import AgentContext, BaseAgent
from watchkeeper.agents.communicator import CommunicatorAgent
from watchkeeper.agents.fleet import FleetAgent
from watchkeeper.bus.nats import NatsBus
from watchkeeper.config import Settings
from watchkeeper.model.alerts import Alert, AlertState, Severity, fingerprint_of
from watchkeeper.model.fleet import FleetHostState, HostBeat
from watchkeeper.model.topics import ALERT_FIRING, ALERT_RESOLVED, FLEET_HEARTBEAT
from watchkeeper.storage import Storage
from watchkeeper.testing.nats_server import NatsServer

HOSTS = ("web-1", "web-2", "web-3")


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()
        rec.thread.join(timeout=5)


async def until(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
    return value


def settings(tmp_path: Path, server: NatsServer, host: str, role: str, url: str) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": tmp_path / host,
            "bus": {
                "backend": "nats", "servers": [server.url], "host_id": host,
                "connect_timeout": 0.5, "reconnect_wait": 0.1,
            },
            "fleet": {"role": role},
            "notifications": {
                "group_wait": 0.3,
                "retries": {"attempts": 2, "backoff_initial": 0.01},
                "channels": [{"type": "webhook", "url": url}],
            },
        }
    )  # fmt: skip


@dataclass
class Central:
    bus: NatsBus
    storage: Storage
    fleet: FleetAgent
    communicator: CommunicatorAgent
    tasks: list[asyncio.Task[None]]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.bus.stop()
        await self.storage.close()


@pytest.fixture
async def fleet(
    tmp_path: Path, nats_server: NatsServer, receiver: Receiver
) -> AsyncIterator[tuple[Callable[[], Any], dict[str, NatsBus]]]:
    centrals: list[Central] = []
    leaves: dict[str, NatsBus] = {}

    async def start_central() -> Central:
        config = settings(tmp_path, nats_server, "central", "central", receiver.url)
        bus = NatsBus(config.bus, host="central", data_dir=tmp_path / "central" / "bus")
        await bus.start()
        assert await bus.wait_connected(10), bus.status()
        storage = Storage.in_data_dir(tmp_path / "central")
        await storage.open()
        ctx = AgentContext(
            bus=bus, settings=lambda: config, data_dir=tmp_path / "central", storage=storage
        )
        fleet_agent = FleetAgent("fleet", ctx, interval=0.1)
        communicator = CommunicatorAgent("communicator", ctx, interval=0.1)
        agents: list[BaseAgent] = [fleet_agent, communicator]
        tasks = [asyncio.create_task(agent.run()) for agent in agents]
        for agent in agents:
            await until(lambda a=agent: a.state.value == "running")  # type: ignore[misc]
        central = Central(bus, storage, fleet_agent, communicator, tasks)
        centrals.append(central)
        return central

    for host in HOSTS:
        config = settings(tmp_path, nats_server, host, "host", receiver.url)
        bus = NatsBus(config.bus, host=host, data_dir=tmp_path / host / "bus")
        await bus.start()
        assert await bus.wait_connected(10), bus.status()
        leaves[host] = bus
    try:
        yield start_central, leaves
    finally:
        for central in centrals:
            with contextlib.suppress(Exception):
                await central.stop()
        for bus in leaves.values():
            await bus.stop()


def disk_alert(host: str, *, resolved: bool = False) -> Alert:
    now = time.time()
    return Alert(
        id=f"{host}-disk",
        fingerprint=fingerprint_of("disk_usage", "/var/log"),
        rule="disk_usage",
        severity=Severity.CRITICAL,
        subject="/var/log",
        summary="/var/log 97% full",
        state=AlertState.RESOLVED if resolved else AlertState.FIRING,
        started_at=now - 20,
        updated_at=now,
        resolved_at=now if resolved else None,
    )


async def test_three_hosts_one_fleet_incident_told_once_and_a_central_restart_counts_once(
    fleet: tuple[Callable[[], Any], dict[str, NatsBus]], receiver: Receiver
) -> None:
    start_central, leaves = fleet
    central: Central = await start_central()
    for host, bus in leaves.items():
        beat = HostBeat(host=host, sent_at=time.time(), interval=10, status="degraded")
        await bus.publish(FLEET_HEARTBEAT, beat, sender="orchestrator")
        await bus.publish(ALERT_FIRING, disk_alert(host), sender="analyzer")
    state = central.fleet.fleet_state
    await until(lambda: len(state.hosts(time.time())) == 3)
    assert all(row.state is FleetHostState.UP for row in state.hosts(time.time()))
    [incident] = await until(state.incidents)
    assert incident.title.startswith("3 hosts: disk usage on /var/log since ")
    await until(lambda: any(b.get("fleet_incident") for b in receiver.bodies))
    await asyncio.sleep(1.5)
    fleet_notices = [b for b in receiver.bodies if b.get("fleet_incident")]
    assert len(fleet_notices) == 1, [b["title"] for b in receiver.bodies]
    alone = [b["title"] for b in receiver.bodies if not b.get("fleet_incident")]
    assert alone == [], alone  # every host's alert told through the fleet incident
    for host in HOSTS:
        deadline = time.monotonic() + 20
        while not await central.storage.alerts(host=host):
            assert time.monotonic() < deadline, host
            await asyncio.sleep(0.1)

    # The central host goes away; the hosts' alerts resolve meanwhile (in the stream).
    await central.stop()
    for host, bus in leaves.items():
        await bus.publish(ALERT_RESOLVED, disk_alert(host, resolved=True), sender="analyzer")
    for bus in leaves.values():
        assert await bus.flush(10)

    again: Central = await start_central()

    async def steps(host: str) -> list[str]:
        return [t.kind for t in await again.storage.alert_transitions(f"{host}-disk")]

    for host in HOSTS:
        deadline = time.monotonic() + 20
        while await steps(host) != ["firing", "resolved"]:
            assert time.monotonic() < deadline, (host, await steps(host))
            await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # anything replayed twice would have landed by now
    for host in HOSTS:
        assert await steps(host) == ["firing", "resolved"]
        [stored] = await again.storage.alerts(host=host)
        assert stored.state is AlertState.RESOLVED
    assert sorted(await again.storage.hosts_recorded()) == sorted(HOSTS)
