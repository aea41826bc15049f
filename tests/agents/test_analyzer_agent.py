"""The AnalyzerAgent on a real bus with the fake Ollama on loopback: rules always, the
LLM when it answers, a clear status when it does not, and recovery by itself."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.agents.analyzer import AnalyzerAgent
from watchkeeper.agents.base import AgentContext
from watchkeeper.bus import InMemoryBus
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.events import Command
from watchkeeper.supervisor import Supervisor
from watchkeeper.testing.fake_ollama import FakeOllama
from watchkeeper.testing.scenarios import Scenario, build_samples, scripted_model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


HOT = Scenario.model_validate(
    {
        "name": "hot",
        "steps": 12,
        "changes": [{"from": 0, "set": {"cpu": 97}}],
        "processes": [{"pid": 4242, "name": "spinner", "cpu": 99, "rss_mb": 20}],
        "settings": {"analyzer": {"runaway_for_seconds": 10}},
        "expect": {"verdict": "critical"},
        "llm": {
            "verdict": "critical",
            "actions": [{"action": "renice_process", "target": "process:4242"}],
        },
    }
)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[AnalyzerAgent, InMemoryBus, int]]:
    port = free_port()
    base = Settings.model_validate({}).model_dump(mode="json")
    settings = Settings.model_validate(
        deep_merge(
            base,
            {
                "data_dir": str(tmp_path),
                "agents": {"check_interval": 0.1},
                "analyzer": {"for_seconds": 0, "runaway_for_seconds": 10},
                "ollama": {
                    "url": f"http://127.0.0.1:{port}",
                    "timeout": 2,
                    "retry_attempts": 1,
                    "probe_interval": 0.1,
                    "cooldown": 0,
                },
            },
        )
    )
    bus = InMemoryBus()
    store = ConfigStore(settings, None, bus)
    agent = AnalyzerAgent("analyzer", AgentContext(bus=bus, settings=store, data_dir=tmp_path))
    stop = asyncio.Event()
    task = asyncio.create_task(Supervisor(bus).run([agent], stop))
    try:
        yield agent, bus, port
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def until(predicate: Any, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def feed(bus: InMemoryBus, scenario: Scenario) -> None:
    for _, sample in build_samples(scenario):
        await bus.publish("metrics.sample", sample, sender="sensor")
        await asyncio.sleep(0.01)


async def test_rules_work_while_ollama_is_away_and_it_comes_back_by_itself(
    running: tuple[AnalyzerAgent, InMemoryBus, int],
) -> None:
    agent, bus, port = running
    alerts = bus.subscribe("alert.firing", name="t")
    analyses = bus.subscribe("analysis.result", name="a")
    await until(lambda: agent.llm_status == "llm: unavailable (connection refused)")
    await feed(bus, HOT)
    fired = await alerts.get(timeout=5)
    assert fired.payload["rule"] in ("cpu_high", "runaway_process")
    first = await analyses.get(timeout=5)
    assert first.payload["source"] == "rules"
    assert agent.status()["verdict"] == "critical"

    with FakeOllama(models=["mistral"], port=port) as fake:
        fake.set_reply_fn(scripted_model(HOT))
        await until(lambda: agent.llm_available, timeout=10)
        assert agent.llm_status.startswith("llm: mistral ok")
        reply = await bus.request(
            "command.analyzer", Command(command="analyze_now"), sender="t", timeout=10
        )
        analysis = reply.payload["analysis"]
        assert analysis["source"] == "mistral"
        assert analysis["verdict"] == "critical"
        assert [a["action"] for a in analysis["recommended"]] == ["renice_process"]
        assert analysis["recommended"][0]["target"] == "4242"  # mapped back on our side only
        assert analysis["prompt_chars"] > 0 and analysis["latency_s"] >= 0
    # Gone again: the next consultation falls back to the rules and says why.
    reply = await bus.request(
        "command.analyzer", Command(command="analyze_now"), sender="t", timeout=10
    )
    fallback = reply.payload["analysis"]
    assert fallback["source"] == "rules"
    assert fallback["fallback_reason"] == "llm: unavailable (connection refused)"
    assert not agent.llm_available


async def test_missing_model_has_a_clear_status(
    running: tuple[AnalyzerAgent, InMemoryBus, int],
) -> None:
    agent, _bus, port = running
    with FakeOllama(models=["llama3"], port=port):
        await until(lambda: "not found" in agent.llm_status)
    assert agent.llm_status == "llm: model 'mistral' not found: run `ollama pull mistral`"
    assert not agent.llm_available
