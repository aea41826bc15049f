"""A central analyzer on a bus that carries other hosts' messages: one analysis state per
host, hosts that analyse themselves left alone, findings published about the host they
concern. Other hosts' messages enter the bus the way a network backend hands them over
(``bus.deliver``), each with its own host and origin."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from watchkeeper import __version__
from watchkeeper.agents.analyzer import AnalyzerAgent
from watchkeeper.agents.base import AgentContext
from watchkeeper.bus import InMemoryBus, Message
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.fleet import HostBeat
from watchkeeper.model.services import ServiceEvent
from watchkeeper.supervisor import Supervisor
from watchkeeper.testing.fake_ollama import FakeOllama
from watchkeeper.testing.scenarios import Scenario, build_samples, scripted_model

HOT = Scenario.model_validate(
    {
        "name": "hot",
        "steps": 12,
        "changes": [{"from": 0, "set": {"cpu": 97}}],
        "processes": [{"pid": 4242, "name": "spinner", "cpu": 99, "rss_mb": 20}],
        "expect": {"verdict": "critical"},
        "llm": {
            "verdict": "critical",
            "actions": [{"action": "renice_process", "target": "process:4242"}],
        },
    }
)
QUIET = Scenario.model_validate({"name": "quiet", "steps": 12, "expect": {"verdict": "healthy"}})


def _settings(tmp_path: Path, role: str = "central", ollama_port: int | None = None) -> Settings:
    base = Settings.model_validate({}).model_dump(mode="json")
    ollama: dict[str, Any] = {"enabled": False}
    if ollama_port is not None:
        ollama = {
            "url": f"http://127.0.0.1:{ollama_port}",
            "timeout": 5,
            "retry_attempts": 1,
            "probe_interval": 0.1,
            "cooldown": 0,
        }
    return Settings.model_validate(
        deep_merge(
            base,
            {
                "data_dir": str(tmp_path),
                "agents": {"check_interval": 0.1},
                "analyzer": {"for_seconds": 0, "runaway_for_seconds": 10},
                "ollama": ollama,
                "bus": {"host_id": "central"},
                "fleet": {"role": role},
            },
        )
    )


class Central:
    def __init__(self, agent: AnalyzerAgent, bus: InMemoryBus) -> None:
        self.agent = agent
        self.bus = bus

    def remote(self, topic: str, value: BaseModel, host: str, sender: str = "sensor") -> None:
        """A message from ``host`` about itself, as the network hands it over."""
        self.bus.deliver(Message(topic=topic, sender=sender, value=value, host=host, origin=host))

    def beat(self, host: str, agents: list[str]) -> None:
        beat = HostBeat(host=host, agents=agents, sent_at=0.0, interval=10.0, version=__version__)
        self.remote("fleet.heartbeat", beat, host, sender="orchestrator")

    async def samples(self, scenario: Scenario, host: str) -> None:
        for _, sample in build_samples(scenario):
            self.remote("metrics.sample", sample.model_copy(update={"host": host}), host)
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def _running(
    tmp_path: Path, role: str, ollama_port: int | None = None, **kw: Any
) -> AsyncIterator[Central]:
    bus = InMemoryBus(host="central")
    store = ConfigStore(_settings(tmp_path, role, ollama_port), None, bus)
    ctx = AgentContext(bus=bus, settings=store, data_dir=tmp_path)
    agent = AnalyzerAgent("analyzer", ctx, **kw)
    stop = asyncio.Event()
    task = asyncio.create_task(Supervisor(bus).run([agent], stop))
    await until(lambda: agent.state.value == "running")
    try:
        yield Central(agent, bus)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[Central]:
    async with _running(tmp_path, "central") as c:
        yield c


async def until(predicate: Any, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def drain(sub: Any) -> list[Message]:
    out = []
    while (message := sub.get_nowait()) is not None:
        out.append(message)
    return out


async def test_hot_host_a_alerts_about_a_only_and_a_self_analysing_host_is_left_alone(
    central: Central,
) -> None:
    alerts = central.bus.subscribe("alert.*", name="t", scope="fleet")
    analyses = central.bus.subscribe("analysis.result", name="t2", scope="fleet")
    local = central.bus.subscribe("alert.*", name="t3")  # the central host's own
    central.beat("host-a", ["sensor", "remediator"])
    central.beat("host-b", ["sensor", "analyzer", "remediator"])
    central.beat("host-c", ["sensor", "remediator"])
    await asyncio.sleep(0.05)
    # a is hot, b is hot too but analyses itself, c is quiet: interleaved, never mixed.
    await asyncio.gather(
        central.samples(HOT, "host-a"),
        central.samples(HOT, "host-b"),
        central.samples(QUIET, "host-c"),
    )
    await until(lambda: alerts.qsize() > 0)
    await asyncio.sleep(0.2)
    fired = [m for m in drain(alerts) if m.topic == "alert.firing"]
    assert fired, "host a's high CPU raised no alert"
    assert {m.host for m in fired} == {"host-a"}
    assert {m.origin for m in fired} == {"central"}
    assert {m.payload["rule"] for m in fired} & {"cpu_high", "runaway_process"}
    results = drain(analyses)
    assert results and {m.host for m in results} == {"host-a"}
    assert all(m.payload["verdict"] == "critical" for m in results)
    assert drain(local) == []  # nothing said about the central host itself
    status = central.agent.status()
    assert status["verdict"] == "healthy"  # its own host: untouched by a's samples
    assert status["fleet"]["hosts"] == 2  # a and c; b analyses itself
    assert status["fleet"]["self_analysing"] == 1
    assert status["fleet"]["firing"] >= 1


async def test_a_host_that_starts_its_own_analyzer_is_no_longer_analysed_here(
    central: Central,
) -> None:
    alerts = central.bus.subscribe("alert.firing", name="t", scope="fleet")
    central.beat("host-a", ["sensor", "remediator"])
    await central.samples(QUIET, "host-a")
    await until(lambda: central.agent.status()["fleet"]["hosts"] == 1)
    central.beat("host-a", ["sensor", "analyzer", "remediator"])
    await until(lambda: central.agent.status()["fleet"]["hosts"] == 0)
    await central.samples(HOT, "host-a")
    await asyncio.sleep(0.2)
    assert drain(alerts) == []


async def test_samples_before_a_heartbeat_or_with_a_forged_beat_are_not_analysed(
    central: Central,
) -> None:
    alerts = central.bus.subscribe("alert.firing", name="t", scope="fleet")
    await central.samples(HOT, "host-x")  # no heartbeat heard yet: may run its own analyzer
    # A beat about host-y published by host-z is not host-y's word on itself.
    forged = HostBeat(host="host-y", agents=["sensor"], sent_at=0.0, interval=10.0)
    central.bus.deliver(
        Message(topic="fleet.heartbeat", sender="x", value=forged, host="host-y", origin="host-z")
    )
    await central.samples(HOT, "host-y")
    await asyncio.sleep(0.2)
    assert drain(alerts) == []
    assert central.agent.status()["fleet"]["hosts"] == 0
    assert central.agent.status()["fleet"]["ignored_samples"] >= 24


async def test_a_service_killed_on_a_leaf_is_an_alert_about_that_leaf_with_a_restart(
    central: Central,
) -> None:
    alerts = central.bus.subscribe("alert.firing", name="t", scope="fleet")
    central.beat("leaf-1", ["sensor", "remediator"])
    await asyncio.sleep(0.05)
    event = ServiceEvent(
        kind="exited", name="web", manager="process", at=1.0, detail="killed", exit_signal=9
    )
    central.remote("service.exited", event, "leaf-1")
    message = await alerts.get(timeout=5)
    assert message.host == "leaf-1"
    assert message.payload["subject"] == "service:web"
    actions = [a["action"] for a in message.payload["suggested_actions"]]
    assert "restart_service" in actions


async def test_hosts_past_the_cap_are_refused_and_counted(tmp_path: Path) -> None:
    async with _running(tmp_path, "central", max_hosts=1) as central:
        alerts = central.bus.subscribe("alert.firing", name="t", scope="fleet")
        central.beat("host-a", ["sensor"])
        central.beat("host-b", ["sensor"])
        await asyncio.sleep(0.05)
        await central.samples(QUIET, "host-a")
        await central.samples(HOT, "host-b")
        await asyncio.sleep(0.2)
        assert drain(alerts) == []
        fleet = central.agent.status()["fleet"]
        assert fleet["hosts"] == 1 and fleet["refused_samples"] >= 12


async def test_a_plain_host_analyser_never_reads_other_hosts_samples(tmp_path: Path) -> None:
    async with _running(tmp_path, "host") as host:
        alerts = host.bus.subscribe("alert.firing", name="t", scope="fleet")
        host.beat("host-a", ["sensor"])
        await host.samples(HOT, "host-a")
        await asyncio.sleep(0.2)
        assert drain(alerts) == []
        assert "fleet" not in host.agent.status()


async def test_each_hosts_baselines_are_saved_on_their_own(tmp_path: Path) -> None:
    async with _running(tmp_path, "central") as central:
        central.beat("host-a", ["sensor"])
        await asyncio.sleep(0.05)
        await central.samples(QUIET, "host-a")
        await until(lambda: central.agent.status()["fleet"]["hosts"] == 1)
    saved = tmp_path / "fleet-baselines" / "host-a.json"
    assert saved.is_file(), list(tmp_path.rglob("*"))
    assert not (tmp_path / "fleet-baselines" / "central.json").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_one_model_is_asked_about_a_hosts_incident_with_the_host_named(
    tmp_path: Path,
) -> None:
    port = free_port()
    with FakeOllama(models=["mistral"], port=port) as fake:
        fake.set_reply_fn(scripted_model(HOT))
        async with _running(tmp_path, "central", ollama_port=port) as central:
            analyses = central.bus.subscribe("analysis.result", name="t", scope="fleet")
            await until(lambda: central.agent.llm_available)
            central.beat("host-a", ["sensor", "remediator"])
            await asyncio.sleep(0.05)
            await central.samples(HOT, "host-a")

            found: list[Message] = []

            def answered() -> bool:
                found.extend(m for m in drain(analyses) if m.payload["source"] == "mistral")
                return bool(found)

            await until(answered, timeout=15)
        answer = found[0]
        assert answer.host == "host-a" and answer.origin == "central"
        assert answer.payload["incident_id"]
        assert [a["action"] for a in answer.payload["recommended"]] == ["renice_process"]
        prompts = [json.dumps(body) for body in fake.bodies("/api/chat")]
        assert prompts and all("host-a" in prompt for prompt in prompts)
        assert central.agent.latest_llm_analysis is None  # the central's own host: not asked


async def test_a_replayed_old_service_event_is_not_news_but_a_fresh_one_is(
    central: Central,
) -> None:
    alerts = central.bus.subscribe("alert.firing", name="t", scope="fleet")
    central.beat("leaf-1", ["sensor", "remediator"])
    await asyncio.sleep(0.05)
    await central.samples(QUIET, "leaf-1")  # its services: none down
    newest = [s for _, s in build_samples(QUIET)][-1].timestamp

    def died(at: float) -> None:
        event = ServiceEvent(kind="exited", name="web", manager="process", at=at, detail="x")
        central.remote("service.exited", event, "leaf-1")

    died(newest - 600)  # ten minutes before the samples the central has read since
    await asyncio.sleep(0.2)
    assert drain(alerts) == []
    died(newest)
    message = await alerts.get(timeout=5)
    assert message.host == "leaf-1" and message.payload["subject"] == "service:web"


async def test_the_first_alert_of_a_dead_unit_carries_its_journal_and_restart_policy(
    central: Central,
) -> None:
    # The alert made from the exit event itself (before any sample) is the one people are
    # told of first: it must already carry the unit's last log lines, cleaned.
    alerts = central.bus.subscribe("alert.firing", name="t", scope="fleet")
    central.beat("leaf-2", ["sensor", "remediator"])
    await asyncio.sleep(0.05)
    event = ServiceEvent(
        kind="exited",
        name="api",
        manager="systemd",
        at=1.0,
        detail="exit-code",
        exit_code=1,
        restart_policy="no",
        journal=["api: cannot bind 0.0.0.0:80: address in use", "api: exiting\x1b[31m"],
    )
    central.remote("service.exited", event, "leaf-2")
    message = await alerts.get(timeout=5)
    evidence = message.payload["evidence"]
    assert evidence["journal"][0] == "api: cannot bind 0.0.0.0:80: address in use"
    assert "\x1b" not in evidence["journal"][1]


async def test_another_hosts_sample_that_does_not_parse_is_dropped_not_an_agent_fault(
    central: Central,
) -> None:
    # A networked bus checks a sample's envelope on arrival and its payload only when a
    # reader parses it: a host that sends garbage must not degrade the central's analyzer.
    alerts = central.bus.subscribe("alert.firing", name="t", scope="fleet")
    central.beat("host-a", ["sensor"])
    await asyncio.sleep(0.05)
    for bad in ({"timestamp": "soon"}, {"cpu": {"percent": "hot"}}, {}):
        central.bus.deliver(
            Message(topic="metrics.sample", sender="sensor", payload=bad, host="host-a",
                    origin="host-a")
        )  # fmt: skip
    await until(lambda: central.agent.bad_remote_messages == 3)
    health = central.agent.health()
    assert health.state.value == "running" and health.errors == 0
    assert health.bad_remote_messages == 3
    await central.samples(HOT, "host-a")  # the host's good samples are still analysed
    await until(lambda: any(m.host == "host-a" for m in drain(alerts)))
