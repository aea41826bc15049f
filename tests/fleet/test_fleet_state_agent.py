"""FleetAgent on a real in-memory bus carrying the messages of several hosts, delivered as
a networked bus delivers them: JSON envelopes with the host they are about."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.agents.base import AgentContext
from watchkeeper.agents.fleet import FleetAgent
from watchkeeper.bus import InMemoryBus, Message
from watchkeeper.config import Settings
from watchkeeper.model.alerts import fingerprint_of
from watchkeeper.model.fleet import FleetHostState, HostBeat
from watchkeeper.orchestrator import build_registries, default_agent_factories

FLEET = {"role": "central", "heartbeat_interval": 1, "stale_after": 5, "lost_after": 20}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def until(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
    return value


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[tuple[FleetAgent, InMemoryBus, Clock]]:
    settings = Settings(data_dir=tmp_path, fleet=FLEET)
    bus = InMemoryBus(host="central")
    clock = Clock()
    ctx = AgentContext(bus=bus, settings=lambda: settings, data_dir=tmp_path, clock=clock)
    agent = FleetAgent("fleet", ctx, interval=0.05)
    task = asyncio.create_task(agent.run())
    await until(lambda: agent.state.value == "running")
    try:
        yield agent, bus, clock
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def remote(bus: InMemoryBus, host: str, topic: str, payload: dict[str, Any]) -> None:
    """A message from another host, as the NATS backend hands it over: JSON only."""
    envelope = {
        "id": f"{host}-{topic}-{time.monotonic_ns()}",
        "topic": topic,
        "sender": "test",
        "timestamp": time.time(),
        "host": host,
        "origin": host,
        "payload": payload,
    }
    bus.deliver(Message.from_dict(envelope))


def beat(host: str, at: float, **fields: Any) -> dict[str, Any]:
    return {"host": host, "sent_at": at, "interval": 1, "status": "healthy", **fields}


def alert(host: str, at: float, state: str = "firing") -> dict[str, Any]:
    return {
        "id": f"{host}-disk",
        "fingerprint": fingerprint_of("disk_usage", "/var/log"),
        "rule": "disk_usage",
        "severity": "critical",
        "subject": "/var/log",
        "summary": "/var/log 95% full",
        "started_at": at,
        "updated_at": at,
        "state": state,
    }


async def test_every_host_shows_and_goes_stale_then_lost(
    central: tuple[FleetAgent, InMemoryBus, Clock],
) -> None:
    agent, bus, clock = central
    for host in ("web-1", "web-2", "db-1"):
        remote(bus, host, "fleet.heartbeat", beat(host, clock.now, agents=["sensor"]))
    remote(bus, "web-1", "metrics.sample", {"timestamp": clock.now, "host": "web-1"})
    await until(lambda: len(agent.fleet_state.hosts(clock.now)) == 3)
    # The central host's own messages count too (a local publish).
    await bus.publish("fleet.heartbeat", HostBeat(**beat("central", clock.now)), sender="t")
    await until(lambda: len(agent.fleet_state.hosts(clock.now)) == 4)
    view = agent.fleet_state.host_view("web-1", clock.now)
    assert view is not None and view["sample"]["host"] == "web-1"

    clock.now += 6
    remote(bus, "db-1", "fleet.heartbeat", beat("db-1", clock.now))
    await until(lambda: agent.fleet_state.state_of("db-1", clock.now) is FleetHostState.UP)
    assert agent.fleet_state.state_of("web-1", clock.now) is FleetHostState.STALE
    clock.now += 20
    remote(bus, "db-1", "system.stopped", {})
    await until(lambda: agent.fleet_state.hosts(clock.now)[0].status == "stopped")
    states = {row.host: row.state for row in agent.fleet_state.hosts(clock.now)}
    assert states == {h: FleetHostState.LOST for h in ("web-1", "web-2", "db-1", "central")}
    status = agent.status()
    assert status["hosts"] == 4 and status["by_state"]["lost"] == 4


async def test_a_beat_is_filed_under_the_host_that_sent_it_not_the_one_it_names(
    central: tuple[FleetAgent, InMemoryBus, Clock],
) -> None:
    agent, bus, clock = central
    remote(bus, "web-1", "fleet.heartbeat", beat("db-1", clock.now, status="critical"))
    await until(lambda: agent.fleet_state.hosts(clock.now))
    [row] = agent.fleet_state.hosts(clock.now)
    assert row.host == "web-1"


async def test_the_same_alert_on_three_hosts_is_one_fleet_incident_on_the_bus(
    central: tuple[FleetAgent, InMemoryBus, Clock],
) -> None:
    agent, bus, clock = central
    events = bus.subscribe("fleet.incident.*", name="test:fleet-incidents")
    for host in ("web-1", "web-2", "web-3", "web-4"):
        remote(bus, host, "alert.firing", alert(host, clock.now))
    opened = await events.get(timeout=5)
    assert opened.topic == "fleet.incident.opened"
    assert opened.payload["title"].startswith("3 hosts: disk usage on /var/log since ")
    assert opened.host == "central"  # the fleet view speaks as itself
    updated = await events.get(timeout=5)
    assert updated.topic == "fleet.incident.updated"
    assert updated.payload["title"].startswith("4 hosts: ")
    for host in ("web-1", "web-2", "web-3", "web-4"):
        remote(bus, host, "alert.resolved", alert(host, clock.now, state="resolved"))
    kinds = []
    while (message := await events.get(timeout=5)).topic != "fleet.incident.resolved":
        kinds.append(message.topic)
    assert set(kinds) <= {"fleet.incident.updated"}
    [incident] = agent.fleet_state.incidents()
    assert incident.state == "resolved" and incident.id == opened.payload["id"]
    assert agent.fleet_state.host_view("web-1", clock.now)["alerts"] == []  # type: ignore[index]


async def test_bad_messages_are_counted_and_the_agent_carries_on(
    central: tuple[FleetAgent, InMemoryBus, Clock],
) -> None:
    agent, bus, clock = central
    remote(bus, "web-1", "fleet.heartbeat", {"host": "web-1", "sent_at": "yesterday"})
    remote(bus, "web-1", "alert.firing", {"id": 3})
    remote(bus, "web-1", "remediation.pending", {"outcome": "maybe"})
    remote(bus, "web-2", "fleet.heartbeat", beat("web-2", clock.now))
    await until(lambda: agent.fleet_state.hosts(clock.now))
    await until(lambda: agent.bad_messages == 3)
    assert agent.state.value == "running"
    assert "remediation.pending from 'web-1'" in agent.status()["last_bad"]
    assert [row.host for row in agent.fleet_state.hosts(clock.now)] == ["web-2"]


async def test_approvals_of_every_host_are_listed(
    central: tuple[FleetAgent, InMemoryBus, Clock],
) -> None:
    agent, bus, clock = central
    pending = {
        "id": "a1", "action": "restart_service", "target": "nginx", "target_kind": "service",
        "proposer": "rule", "outcome": "pending", "created_at": clock.now,
    }  # fmt: skip
    remote(bus, "web-2", "remediation.pending", pending)
    await until(lambda: agent.fleet_state.approvals("web-2"))
    reply = await agent.handle_command("fleet", {})
    assert reply["hosts"][0]["pending_approvals"] == 1
    remote(bus, "web-2", "remediation.succeeded", {**pending, "outcome": "succeeded"})
    await until(lambda: not agent.fleet_state.approvals("web-2"))


def test_the_fleet_agent_runs_only_on_the_central_host(tmp_path: Path) -> None:
    host = Settings(data_dir=tmp_path)
    central = Settings(data_dir=tmp_path, fleet={"role": "central"})
    assert "fleet" not in default_agent_factories(build_registries(host), host)
    assert "fleet" in default_agent_factories(build_registries(central), central)
