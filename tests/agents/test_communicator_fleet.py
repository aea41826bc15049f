"""The central communicator: every host's alerts, incidents and actions recorded with their
host, and people told once per fleet incident (a real loopback webhook receiver), with the
fleet agent judging on the same in-memory bus that carries the messages of several hosts."""

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
from watchkeeper.bus import InMemoryBus, Message
from watchkeeper.config import Settings
from watchkeeper.model.alerts import fingerprint_of
from watchkeeper.storage import Storage

GROUP_WAIT = 0.4


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
    bus: InMemoryBus
    storage: Storage
    communicator: CommunicatorAgent
    fleet: FleetAgent | None
    tasks: list[asyncio.Task[None]]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
        await self.storage.close()


def settings_for(tmp_path: Path, url: str, role: str) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": tmp_path,
            "fleet": {"role": role},
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

    async def make(url: str, role: str = "central", name: str = "central") -> Host:
        settings = settings_for(tmp_path / name, url, role)
        bus = InMemoryBus(host=name)
        storage = Storage.in_data_dir(tmp_path / name)
        await storage.open()  # as the orchestrator does, before the agents start
        ctx = AgentContext(
            bus=bus, settings=lambda: settings, data_dir=tmp_path / name, storage=storage
        )
        communicator = CommunicatorAgent("communicator", ctx, interval=0.05)
        fleet = FleetAgent("fleet", ctx, interval=0.05) if role == "central" else None
        agents: list[BaseAgent] = [communicator] + ([fleet] if fleet else [])
        tasks = [asyncio.create_task(agent.run()) for agent in agents]
        for agent in agents:
            await until(lambda a=agent: a.state.value == "running")  # type: ignore[misc]
        host = Host(bus, storage, communicator, fleet, tasks)
        made.append(host)
        return host

    yield make
    for host in made:
        await host.stop()


def remote(
    bus: InMemoryBus, host: str, topic: str, payload: dict[str, Any], msg_id: str | None = None
) -> None:
    """A message about another host, as the NATS backend delivers it: a JSON envelope."""
    bus.deliver(
        Message.from_dict(
            {
                "id": msg_id or f"{host}-{topic}-{time.monotonic_ns()}",
                "topic": topic,
                "sender": "analyzer",
                "timestamp": time.time(),
                "host": host,
                "origin": host,
                "payload": payload,
            }
        )
    )


def alert(
    host: str, rule: str = "disk_usage", subject: str = "/var/log", **kw: Any
) -> dict[str, Any]:
    now = time.time()
    return {
        "id": f"{host}-{rule}",
        "fingerprint": fingerprint_of(rule, subject),
        "rule": rule,
        "severity": "critical",
        "subject": subject,
        "summary": f"{subject} 97% full",
        "started_at": now - 30,
        "updated_at": now,
        **kw,
    }


def resolved(host: str, **kw: Any) -> dict[str, Any]:
    return alert(host, state="resolved", resolved_at=time.time(), **kw)


async def test_the_same_alert_on_many_hosts_is_told_once_and_each_host_keeps_its_history(
    start: Callable[..., Any], receiver: Receiver
) -> None:
    central: Host = await start(receiver.url)
    bus = central.bus
    # web-1 fires alone first and is told alone, its host named in the title.
    remote(bus, "web-1", "alert.firing", alert("web-1"))
    await until(lambda: receiver.bodies)
    assert receiver.titles()[0].startswith("web-1: FIRING critical disk_usage on /var/log")
    assert receiver.bodies[0]["host"] == "web-1"

    # Then four more within a moment: one fleet incident, not four alert notices.
    for host in ("web-2", "web-3", "web-4", "web-5"):
        remote(bus, host, "alert.firing", alert(host))
    await until(lambda: len(receiver.bodies) >= 2)
    await asyncio.sleep(GROUP_WAIT * 3 + 2.5)  # past group_wait and the fleet grace
    titles = receiver.titles()
    assert len(titles) == 2, titles
    assert titles[1].startswith("FLEET INCIDENT critical: ")
    assert " hosts: disk usage on /var/log since " in titles[1]
    fleet = receiver.bodies[1]["fleet_incident"]
    assert {h["host"] for h in fleet["hosts"]} >= {"web-1", "web-2", "web-3"}

    # A sixth host joins later: the incident grows, nobody is paged again.
    remote(bus, "web-6", "alert.firing", alert("web-6"))
    await asyncio.sleep(GROUP_WAIT + 2.5)
    assert len(receiver.bodies) == 2, receiver.titles()
    assert central.fleet is not None
    [incident] = central.fleet.fleet_state.incidents()
    assert incident.title.startswith("6 hosts: ")

    # Every host's history is kept centrally, each under its host.
    stored = await central.storage.alerts(host="web-3")
    assert [a.id for a in stored] == ["web-3-disk_usage"]
    assert len(await central.storage.alerts()) == 6

    # All resolve: one resolved notice for the fleet incident, one closing web-1's own.
    for host in ("web-1", "web-2", "web-3", "web-4", "web-5", "web-6"):
        remote(bus, host, "alert.resolved", resolved(host))
    await until(lambda: len(receiver.bodies) >= 4)
    await asyncio.sleep(0.5)
    last = sorted(receiver.titles()[2:])
    assert len(last) == 2, receiver.titles()
    assert last[0].startswith("FLEET RESOLVED critical: ")
    assert last[1].startswith("web-1: RESOLVED")


async def test_one_hosts_alert_names_the_host_and_a_replayed_message_counts_once(
    start: Callable[..., Any], receiver: Receiver
) -> None:
    central: Host = await start(receiver.url)
    payload = alert("db-1", rule="service_down", subject="postgres")
    for _ in range(3):  # the same message delivered again after a reconnect
        remote(central.bus, "db-1", "alert.firing", payload, msg_id="m-1")
    await until(lambda: receiver.bodies)
    await asyncio.sleep(GROUP_WAIT + 0.3)
    assert len(receiver.bodies) == 1
    assert receiver.titles()[0].startswith("db-1: FIRING critical service_down on postgres")
    assert receiver.bodies[0]["key"] == f"db-1/{fingerprint_of('service_down', 'postgres')}"
    transitions = await central.storage.alert_transitions("db-1-service_down")
    assert [t.kind for t in transitions] == ["firing"]
    # The central host's own alert of the same rule and subject is its own.
    assert await central.storage.last_notified(payload["fingerprint"], "central") is None
    assert await central.storage.last_notified(payload["fingerprint"], "db-1") is not None
    # A failed remediation there is told with the host named, and audited under it.
    failed = {
        "id": "r-9", "action": "restart_service", "target": "postgres",
        "target_kind": "service", "proposer": "rule", "outcome": "failed",
        "created_at": time.time(), "reason": "postgres down",
    }  # fmt: skip
    remote(central.bus, "db-1", "remediation.failed", failed)
    await until(lambda: len(receiver.bodies) >= 2)
    assert receiver.titles()[1].startswith("db-1: ")
    [record] = await central.storage.audit(host="db-1")
    assert record.id == "r-9"
    # The central activity log has both, each beginning with its host.
    lines = [e.message for e in await central.storage.search_activity(text="db-1: ")]
    assert len(lines) == 2 and all(line.startswith("db-1: ") for line in lines), lines


async def test_a_leaf_host_records_only_its_own_history(
    start: Callable[..., Any], receiver: Receiver
) -> None:
    leaf: Host = await start(receiver.url, role="host", name="web-9")
    remote(leaf.bus, "web-2", "alert.firing", alert("web-2"))
    remote(leaf.bus, "web-9", "alert.firing", alert("web-9"))
    await until(lambda: receiver.bodies)
    await asyncio.sleep(GROUP_WAIT + 0.3)
    assert [a.id for a in await leaf.storage.alerts()] == ["web-9-disk_usage"]
    assert (await leaf.storage.alerts())[0].id == "web-9-disk_usage"
    assert await leaf.storage.hosts_recorded() == ["web-9"]
    assert len(receiver.bodies) == 1
    assert receiver.titles()[0].startswith("FIRING critical disk_usage")  # its own: no prefix


async def test_a_restarted_central_host_remembers_its_fleet_incident_and_tells_no_one_again(
    start: Callable[..., Any], receiver: Receiver
) -> None:
    first: Host = await start(receiver.url)
    hosts = ("web-1", "web-2", "web-3")
    for host in hosts:
        remote(first.bus, host, "alert.firing", alert(host))
    await until(lambda: receiver.bodies)
    await asyncio.sleep(GROUP_WAIT + 0.5)
    assert [b["title"][:15] for b in receiver.bodies] == ["FLEET INCIDENT "]
    assert first.fleet is not None
    [before] = first.fleet.fleet_state.incidents()
    await first.stop()

    # The same data dir: the fleet view starts from the history, with the same incident.
    again: Host = await start(receiver.url)
    assert again.fleet is not None
    state = again.fleet.fleet_state
    [after] = await until(state.incidents)
    assert after.id == before.id and after.title.startswith("3 hosts: ")
    view = state.host_view("web-2", time.time())
    assert view is not None and [a["id"] for a in view["alerts"]] == ["web-2-disk_usage"]
    await asyncio.sleep(GROUP_WAIT + 1.0)
    assert len(receiver.bodies) == 1, [b["title"] for b in receiver.bodies]

    # It ends: people who were told it began are told it is over, once.
    for host in hosts:
        remote(again.bus, host, "alert.resolved", resolved(host))
    await until(lambda: len(receiver.bodies) >= 2)
    await asyncio.sleep(0.5)
    assert [b["title"][:15] for b in receiver.bodies] == ["FLEET INCIDENT ", "FLEET RESOLVED "]
    assert await again.storage.fleet_last_notified(before.id) is None
