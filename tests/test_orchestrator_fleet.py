"""The orchestrator in fleet mode, on a bus whose connection state the test sets: the
heartbeat's content (at start, every interval, "stopped" at the end), none on the memory
bus, a host placed without some agents, and the fallback analyzer of a host without one,
started when cut off from the server and stopped, its alerts resolved, when back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from watchkeeper import __version__
from watchkeeper.agents._placement import FallbackSwitch, LinkWatch
from watchkeeper.bus import InMemoryBus, Message
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.actions import ActionRequest
from watchkeeper.orchestrator import Orchestrator
from watchkeeper.testing.scenarios import Scenario, build_samples

HOT = Scenario.model_validate(
    {
        "name": "hot",
        "steps": 12,
        "changes": [{"from": 0, "set": {"cpu": 97}}],
        "expect": {"verdict": "critical"},
    }
)


class CutBus(InMemoryBus):
    """The in-memory bus standing in for a networked one whose link the test cuts."""

    def __init__(self, host: str) -> None:
        super().__init__(host=host)
        self.connected = True
        self.outbox = 0

    def status(self) -> dict[str, object]:
        return {
            "backend": "nats",
            "host": self.host,
            "connected": self.connected,
            "outbox": self.outbox,
        }


def _settings(
    tmp_path: Path,
    agents: list[str],
    backend: str = "nats",
    sensor_every: float | None = None,
    **fleet: Any,
) -> Settings:
    base = Settings.model_validate({}).model_dump(mode="json")
    names = ("sensor", "analyzer", "remediator", "communicator")
    return Settings.model_validate(
        deep_merge(
            base,
            {
                "data_dir": str(tmp_path),
                "status_interval": 0.2,
                "analyzer": {"for_seconds": 0},
                "ollama": {"enabled": False},
                "agents": {
                    "check_interval": 0.2,
                    **{name: {"enabled": name in agents} for name in names},
                    # A slow sensor leaves the test's own samples alone on the bus.
                    "sensor": {"enabled": "sensor" in agents, "check_interval": sensor_every},
                },
                "bus": {"backend": backend, "host_id": "leaf-1"},
                "fleet": {
                    "heartbeat_interval": 0.5,
                    "stale_after": 1.0,
                    "lost_after": 2.0,
                    "display_name": "Leaf One",
                    "labels": {"rack": "r7"},
                    **fleet,
                },
            },
        )
    )


class Running:
    def __init__(self, orchestrator: Orchestrator, bus: CutBus, stop: asyncio.Event) -> None:
        self.orchestrator = orchestrator
        self.bus = bus
        self.stop = stop


@contextlib.asynccontextmanager
async def _run(settings: Settings) -> AsyncIterator[Running]:
    bus = CutBus(host="leaf-1")
    orchestrator = Orchestrator(ConfigStore(settings, None, bus), bus=bus)
    stop = asyncio.Event()
    task = asyncio.create_task(orchestrator.run(stop))
    await until(lambda: orchestrator.state == "running")
    try:
        yield Running(orchestrator, bus, stop)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


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


async def test_heartbeat_says_who_this_host_is_every_interval_and_stopped_at_the_end(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, ["sensor", "remediator"])
    bus = CutBus(host="leaf-1")
    bus.outbox = 7
    beats = bus.subscribe("fleet.heartbeat", name="t", maxsize=100)
    orchestrator = Orchestrator(ConfigStore(settings, None, bus), bus=bus)
    stop = asyncio.Event()
    task = asyncio.create_task(orchestrator.run(stop))
    first = (await beats.get(timeout=5)).payload
    second = (await beats.get(timeout=5)).payload
    await until(lambda: orchestrator.agents["sensor"].latest is not None)  # type: ignore[attr-defined]
    await asyncio.sleep(0.6)
    stop.set()
    await asyncio.wait_for(task, 30)
    rest = [m.payload for m in drain(beats)]
    assert first["host"] == "leaf-1"
    assert first["name"] == "Leaf One"
    assert first["version"] == __version__
    assert first["agents"] == ["sensor", "remediator"]
    assert first["role"] == "host"
    assert first["labels"] == {"rack": "r7"}
    assert first["started_at"] == orchestrator.started_at
    assert first["interval"] == 0.5
    assert first["outbox"] == 7 and first["connected"] is True
    assert first["status"] in ("healthy", "degraded") and 0 <= first["score"] <= 100
    assert first["pending_approvals"] == 0
    assert 0.3 <= second["sent_at"] - first["sent_at"] <= 2.0
    assert rest[-1]["status"] == "stopped"
    assert any(b["last_sample_at"] for b in rest[:-1])
    assert all(b["status"] != "stopped" for b in [first, second, *rest[:-1]])


async def test_the_memory_bus_publishes_no_heartbeat(tmp_path: Path) -> None:
    settings = _settings(tmp_path, ["sensor", "remediator"], backend="memory")
    bus = CutBus(host="leaf-1")
    beats = bus.subscribe("fleet.heartbeat", name="t", maxsize=100)
    orchestrator = Orchestrator(ConfigStore(settings, None, bus), bus=bus)
    stop = asyncio.Event()
    task = asyncio.create_task(orchestrator.run(stop))
    await asyncio.sleep(1.2)
    bus.connected = False  # and no fallback either: there is no server to be cut from
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert drain(beats) == []
    assert orchestrator.snapshot().model_dump()["placement"]["fallback_analyzer"] == "never"
    assert "analyzer" not in orchestrator.agents


async def test_a_central_host_says_so_and_a_host_with_its_own_analyzer_has_no_fallback(
    tmp_path: Path,
) -> None:
    settings = _settings(
        tmp_path, ["analyzer", "communicator"], role="central", fallback_analyzer_after=0.2
    )
    async with _run(settings) as run:
        beats = run.bus.subscribe("fleet.heartbeat", name="t", maxsize=100)
        beat = (await beats.get(timeout=5)).payload
        assert beat["role"] == "central"
        assert {"analyzer", "communicator"} <= set(beat["agents"])
        assert "sensor" not in beat["agents"]
        run.bus.connected = False
        await asyncio.sleep(0.8)
        placement = run.orchestrator.snapshot().model_dump()["placement"]
        assert placement["fallback_analyzer"] == "never"
        assert placement["agents"] == beat["agents"]
        assert placement["role"] == "central"


async def test_a_host_without_sensor_or_remediator_runs_and_says_what_is_missing(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, ["analyzer"])
    async with _run(settings) as run:
        beats = run.bus.subscribe("fleet.heartbeat", name="t", maxsize=100)
        beat = (await beats.get(timeout=5)).payload
        assert beat["agents"] == ["analyzer"]
        assert beat["last_sample_at"] is None and beat["sample_interval"] is None
        request = ActionRequest(action="restart_service", target="web", proposer="user")
        with pytest.raises(LookupError, match="no remediator"):
            await run.orchestrator.submit_action(request)
        await asyncio.sleep(0.5)
        snapshot = run.orchestrator.snapshot()
        assert snapshot.status == "healthy"
        assert set(snapshot.agents) == {"analyzer"}
        assert snapshot.model_dump()["placement"]["agents"] == ["analyzer"]


async def test_fallback_analyzer_finds_trouble_alone_when_cut_off_and_hands_back_when_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="watchkeeper.orchestrator")
    settings = _settings(
        tmp_path, ["sensor", "remediator"], sensor_every=600, fallback_analyzer_after=0.5
    )
    async with _run(settings) as run:
        o, bus = run.orchestrator, run.bus
        alerts = bus.subscribe("alert.*", name="t", maxsize=1000)
        beats = bus.subscribe("fleet.heartbeat", name="b", maxsize=1000)
        await asyncio.sleep(0.8)
        assert "analyzer" not in o.agents  # connected: the central analyses this host
        assert o.snapshot().model_dump()["placement"]["fallback_analyzer"] == "standby"

        bus.connected = False
        await until(lambda: "analyzer" in o.agents, timeout=5)
        await until(lambda: o.agents["analyzer"].state.value == "running")
        placement = o.snapshot().model_dump()["placement"]
        assert placement["fallback_analyzer"] == "running"
        assert placement["agents"] == ["sensor", "remediator"]
        assert o.agents["analyzer"].status()["llm"] == "llm: off (rules only)"  # type: ignore[attr-defined]
        await until(lambda: any("fallback-analyzer" in m.payload["agents"] for m in drain(beats)))
        for _, sample in build_samples(HOT):
            await bus.publish("metrics.sample", sample, sender="test")
            await asyncio.sleep(0.01)
        await until(lambda: alerts.qsize() > 0)
        fired = drain(alerts)
        assert {m.topic for m in fired} == {"alert.firing"}
        assert {m.host for m in fired} == {"leaf-1"}

        bus.connected = True
        await until(lambda: "analyzer" not in o.agents, timeout=5)
        resolved = [m for m in drain(alerts) if m.topic == "alert.resolved"]
        assert {m.payload["fingerprint"] for m in resolved} == {
            m.payload["fingerprint"] for m in fired
        }
        assert all("connection" in m.payload["evidence"]["resolved_because"] for m in resolved)
        placement = o.snapshot().model_dump()["placement"]
        assert placement["fallback_analyzer"] == "standby"
        assert placement["fallback_runs"] == 1

        # A second cut starts it again.
        bus.connected = False
        await until(lambda: "analyzer" in o.agents, timeout=5)
    lines = [r.getMessage() for r in caplog.records if "fallback analyzer" in r.getMessage()]
    assert any(line.startswith("no connection to the bus server") for line in lines), lines
    assert any(line.startswith("connection to the bus server is back") for line in lines), lines


def test_fallback_switch_waits_out_short_cuts_and_a_flapping_link() -> None:
    now = [0.0]
    switch = FallbackSwitch(30.0, settle=2.0, monotonic=lambda: now[0])
    changes = []
    # (time, connected): a 29 s cut, then a long one, a link that flaps back for 1 s,
    # and the connection back for good.
    for t, up in [
        (0, False),
        (29, False),
        (29.5, True),
        (31, False),
        (60, False),
        (61.5, False),
        (62, True),
        (62.9, True),
        (63, False),
        (64, True),
        (65, True),
        (66.1, True),
        (70, True),
    ]:
        now[0] = t
        changes.append((t, switch.update(up)))
    assert [c for c in changes if c[1]] == [(61.5, "start"), (66.1, "stop")]
    assert not switch.active and switch.cut_for() == 0.0


def test_link_watch_sees_a_silent_cut_as_an_outbox_that_stops_draining() -> None:
    now = [0.0]
    link = LinkWatch(5.0, monotonic=lambda: now[0])

    def up(t: float, count: int, connected: bool = True) -> bool:
        now[0] = t
        return link.up({"connected": connected, "outbox": {"count": count, "bytes": 10}})

    assert up(0, 0) and up(1, 2) and up(2, 1)  # events go out and are acknowledged
    assert up(3, 3) and up(6.9, 5)  # waiting, none acknowledged for 4.9 s
    assert not up(7.1, 6)  # 5 s without one acknowledged: cut, though "connected"
    assert link.why == "the bus server has acknowledged nothing (6 event(s) waiting)"
    assert up(8, 4) and link.why == ""  # draining again
    assert not up(9, 0, connected=False) and link.why == "no connection to the bus server"


async def test_a_silent_cut_starts_the_fallback_and_a_drained_outbox_stops_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="watchkeeper.orchestrator")
    settings = _settings(
        tmp_path, ["sensor", "remediator"], sensor_every=600, fallback_analyzer_after=0.5
    )
    async with _run(settings) as run:
        o, bus = run.orchestrator, run.bus
        bus.outbox = 3  # the client still says connected; nothing is acknowledged
        await until(lambda: "analyzer" in o.agents, timeout=10)
        bus.outbox = 0
        await until(lambda: "analyzer" not in o.agents, timeout=10)
    lines = [" ".join(r.getMessage().split()) for r in caplog.records]
    assert any(
        line.startswith("the bus server has acknowledged nothing (3 event(s) waiting)")
        and "fallback analyzer started" in line
        for line in lines
    ), lines
