"""Who tells people of what in a fleet, so a person gets one message per alert: the
central host tells of a host's own incident once, its host named, and not again when it
updates; it stays quiet about a host whose heartbeat says it tells people itself; a host
with ``[fleet] notify = "central"`` records its own alerts and tells no one. Notices go to
a real loopback webhook receiver; remote messages arrive as the NATS backend hands them
over (JSON envelopes about another host)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.agents._placement import host_beat
from watchkeeper.agents.base import AgentContext, BaseAgent
from watchkeeper.agents.communicator import CommunicatorAgent
from watchkeeper.agents.fleet import FleetAgent
from watchkeeper.bus import InMemoryBus, Message
from watchkeeper.config import Settings
from watchkeeper.model.alerts import Alert, fingerprint_of
from watchkeeper.model.topics import ALERT_FIRING
from watchkeeper.notify import NotificationChannel
from watchkeeper.notify._local import ConsoleChannel, LogChannel
from watchkeeper.storage import Storage

GROUP_WAIT = 0.4
#: Long enough for a first notice (group_wait and the incident grace) to have gone out.
SETTLE = GROUP_WAIT + 2.6


class Receiver:
    """A loopback HTTP server that keeps every JSON body it is sent."""

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

    def titles(self) -> list[str]:
        return [str(body["title"]) for body in self.bodies]


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


async def until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
    return value


@dataclass
class Host:
    settings: Settings
    bus: InMemoryBus
    storage: Storage
    communicator: CommunicatorAgent
    task: asyncio.Task[None]


def settings_for(
    tmp_path: Path, url: str, role: str, notify: str = "own", backend: str = "nats"
) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": tmp_path,
            "bus": {"backend": backend, "host_id": tmp_path.name},
            "fleet": {"role": role, "notify": notify},
            "notifications": {
                "group_wait": GROUP_WAIT,
                "retries": {"attempts": 2, "backoff_initial": 0.01},
                "channels": [{"type": "webhook", "url": url}],
            },
        }
    )


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Host] = []

    async def make(
        url: str,
        *,
        name: str = "central",
        role: str = "central",
        notify: str = "own",
        backend: str = "nats",
    ) -> Host:
        settings = settings_for(tmp_path / name, url, role, notify, backend)
        bus = InMemoryBus(host=name)
        storage = Storage.in_data_dir(tmp_path / name)
        await storage.open()
        ctx = AgentContext(
            bus=bus, settings=lambda: settings, data_dir=tmp_path / name, storage=storage
        )
        agent = CommunicatorAgent("communicator", ctx, interval=0.05)
        task = asyncio.create_task(agent.run())
        await until(lambda: agent.state.value == "running")
        host = Host(settings, bus, storage, agent, task)
        made.append(host)
        return host

    yield make
    for host in made:
        host.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await host.task
        await host.storage.close()


def remote(bus: InMemoryBus, host: str, topic: str, payload: dict[str, Any]) -> None:
    """A message about another host, as the NATS backend delivers it."""
    bus.deliver(
        Message.from_dict(
            {
                "id": f"{host}-{topic}-{time.monotonic_ns()}",
                "topic": topic,
                "sender": "analyzer",
                "timestamp": time.time(),
                "host": host,
                "origin": host,
                "payload": payload,
            }
        )
    )


def alert(host: str, rule: str, subject: str, severity: str = "critical") -> dict[str, Any]:
    now = time.time()
    return {
        "id": f"{host}-{rule}",
        "fingerprint": fingerprint_of(rule, subject),
        "rule": rule,
        "severity": severity,
        "subject": subject,
        "summary": f"{subject}: {rule}",
        "started_at": now - 30,
        "updated_at": now,
    }


def incident(host: str, alerts: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    now = time.time()
    members = [
        {
            "alert_id": a["id"],
            "fingerprint": a["fingerprint"],
            "rule": a["rule"],
            "subject": a["subject"],
            "severity": a["severity"],
            "summary": a["summary"],
            "role": "root" if n == 0 else "effect",
        }
        for n, a in enumerate(alerts)
    ]
    return {
        "id": f"inc-{host}-1",
        "key": alerts[0]["subject"],
        "title": f"{alerts[0]['subject']} is down",
        "severity": "critical",
        "root": alerts[0]["fingerprint"],
        "members": members,
        "opened_at": now - 20,
        "updated_at": now,
        "host": host,
        **kw,
    }


async def own_alert(host: Host, name: str) -> None:
    """The host's own analyzer fires an alert on its bus."""
    value = Alert.model_validate(alert(name, "service_down", "nginx"))
    await host.bus.publish(ALERT_FIRING, value, sender="analyzer")


def beat(host: str, *, notifies: bool) -> dict[str, Any]:
    return {
        "host": host,
        "agents": ["sensor", "analyzer", "remediator", "communicator"],
        "sent_at": time.time(),
        "interval": 10.0,
        "notifies": notifies,
    }


async def test_the_central_tells_of_a_hosts_incident_once_with_its_host_named(
    start: Callable[..., Any], receiver: Receiver
) -> None:
    central: Host = await start(receiver.url)
    bus = central.bus
    down = alert("db-1", "service_down", "postgres")
    slow = alert("db-1", "http_latency", "api")
    remote(bus, "db-1", "alert.firing", down)
    remote(bus, "db-1", "alert.firing", slow)
    remote(bus, "db-1", "incident.opened", incident("db-1", [down]))
    remote(bus, "db-1", "incident.updated", incident("db-1", [down, slow]))
    await until(lambda: receiver.bodies)
    await asyncio.sleep(SETTLE)
    titles = receiver.titles()
    assert len(titles) == 1, titles  # one incident notice, not one per alert
    assert titles[0].startswith("db-1: INCIDENT critical: postgres is down"), titles
    body = receiver.bodies[0]
    assert body["host"] == "db-1" and body["key"] == "db-1/incident:inc-db-1-1"
    assert "Host: db-1" in body["body"]

    # The same incident updated again (an alert of the same severity joins): nothing new.
    late = alert("db-1", "disk_usage", "/var/lib/postgresql")
    remote(bus, "db-1", "alert.firing", late)
    remote(bus, "db-1", "incident.updated", incident("db-1", [down, slow, late]))
    await asyncio.sleep(SETTLE)
    assert len(receiver.bodies) == 1, receiver.titles()

    # It resolves: one resolved notice, host named; and it stays in db-1's history.
    remote(bus, "db-1", "incident.resolved", incident("db-1", [down], state="resolved"))
    await until(lambda: len(receiver.bodies) >= 2)
    assert receiver.titles()[1].startswith("db-1: RESOLVED"), receiver.titles()
    stored = await central.storage.incidents(host="db-1")
    assert [i.id for i in stored] == ["inc-db-1-1"]


async def test_the_central_is_quiet_about_a_host_that_tells_people_itself(
    start: Callable[..., Any], receiver: Receiver
) -> None:
    central: Host = await start(receiver.url)
    bus = central.bus
    remote(bus, "web-1", "fleet.heartbeat", beat("web-1", notifies=True))
    remote(bus, "web-2", "fleet.heartbeat", beat("web-2", notifies=False))
    await asyncio.sleep(0.2)
    for host in ("web-1", "web-2"):
        down = alert(host, "service_down", "nginx")
        remote(bus, host, "alert.firing", down)
        remote(bus, host, "incident.opened", incident(host, [down]))
    await until(lambda: receiver.bodies)
    await asyncio.sleep(SETTLE)
    titles = receiver.titles()
    assert len(titles) == 1 and titles[0].startswith("web-2: INCIDENT "), titles
    # Both are in the central history all the same.
    assert [a.id for a in await central.storage.alerts(host="web-1")] == ["web-1-service_down"]


async def test_a_host_that_leaves_notices_to_the_central_records_and_tells_no_one(
    start: Callable[..., Any], receiver: Receiver
) -> None:
    leaf: Host = await start(receiver.url, name="web-3", role="host", notify="central")
    assert leaf.communicator.notifies is False
    await own_alert(leaf, "web-3")
    await until(lambda: leaf.communicator.tracker.alerts)
    await asyncio.sleep(SETTLE)
    assert receiver.bodies == []
    assert [a.id for a in await leaf.storage.alerts()] == ["web-3-service_down"]
    # Its heartbeat tells the central host to tell people of it.
    agents: dict[str, BaseAgent] = {"communicator": leaf.communicator}
    made = host_beat(agents, leaf.settings, host="web-3", bus_status={}, started_at=0, now=1)
    assert made.notifies is False


async def test_a_host_tells_its_own_by_default_and_says_so_in_its_heartbeat(
    start: Callable[..., Any], receiver: Receiver
) -> None:
    leaf: Host = await start(receiver.url, name="web-4", role="host")
    await own_alert(leaf, "web-4")
    await until(lambda: receiver.bodies)
    assert receiver.titles()[0].startswith("FIRING critical service_down on nginx")
    agents: dict[str, BaseAgent] = {"communicator": leaf.communicator}
    made = host_beat(agents, leaf.settings, host="web-4", bus_status={}, started_at=0, now=1)
    assert made.notifies is True


async def test_notify_central_means_nothing_without_a_fleet(
    start: Callable[..., Any], receiver: Receiver
) -> None:
    """On the in-memory bus there is no central host: the host tells its own."""
    alone: Host = await start(
        receiver.url, name="solo", role="host", notify="central", backend="memory"
    )
    assert alone.communicator.notifies is True
    await own_alert(alone, "solo")
    await until(lambda: receiver.bodies)


async def test_the_central_console_and_log_keep_a_hosts_single_alerts_at_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Per-host chatter: another host's lone alert is logged at DEBUG and left off the
    console; another host's incident is a line at its level on both."""
    settings = settings_for(tmp_path / "central", "http://127.0.0.1:9/unused", "central")
    console = io.StringIO()
    storage = Storage.in_data_dir(tmp_path / "central")
    await storage.open()
    bus = InMemoryBus(host="central")
    ctx = AgentContext(
        bus=bus, settings=lambda: settings, data_dir=tmp_path / "central", storage=storage
    )
    channels: list[NotificationChannel] = [ConsoleChannel(stream=console), LogChannel()]
    agent = CommunicatorAgent("communicator", ctx, channels=channels, interval=0.05)
    task = asyncio.create_task(agent.run())
    try:
        await until(lambda: agent.state.value == "running")
        caplog.set_level(logging.DEBUG, logger="watchkeeper.notify")
        remote(bus, "web-7", "alert.firing", alert("web-7", "memory_high", "memory"))
        down = alert("db-2", "service_down", "postgres")
        remote(bus, "db-2", "alert.firing", down)
        remote(bus, "db-2", "incident.opened", incident("db-2", [down]))
        await until(lambda: len([r for r in caplog.records if r.name == "watchkeeper.notify"]) >= 2)
        notices = [r for r in caplog.records if r.name == "watchkeeper.notify"]
        levels = {r.getMessage().split(": ")[0]: r.levelno for r in notices}
        assert levels == {"[critical] web-7": logging.DEBUG, "[critical] db-2": logging.ERROR}
        assert "db-2: INCIDENT critical" in console.getvalue()
        assert "web-7" not in console.getvalue()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await storage.close()


async def test_hosts_incidents_inside_a_fleet_incident_are_told_by_it_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The same trouble on four hosts that do not tell people themselves: one fleet
    incident notice, not four host incidents (with the fleet agent judging beside)."""
    settings = settings_for(tmp_path / "central", receiver.url, "central")
    storage = Storage.in_data_dir(tmp_path / "central")
    await storage.open()
    bus = InMemoryBus(host="central")
    ctx = AgentContext(
        bus=bus, settings=lambda: settings, data_dir=tmp_path / "central", storage=storage
    )
    agents: list[BaseAgent] = [
        CommunicatorAgent("communicator", ctx, interval=0.05),
        FleetAgent("fleet", ctx, interval=0.05),
    ]
    tasks = [asyncio.create_task(agent.run()) for agent in agents]
    try:
        for agent in agents:
            await until(lambda a=agent: a.state.value == "running")  # type: ignore[misc]
        for host in ("web-1", "web-2", "web-3", "web-4"):
            full = alert(host, "disk_usage", "/var/log")
            remote(bus, host, "alert.firing", full)
            remote(bus, host, "incident.opened", incident(host, [full]))
        await until(lambda: receiver.bodies)
        await asyncio.sleep(SETTLE)
        titles = receiver.titles()
        assert len(titles) == 1 and titles[0].startswith("FLEET INCIDENT critical: "), titles
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await storage.close()
