"""The SensorAgent inside a real orchestrator: samples on the bus, services in them, and a
killed service's exit on the bus at once, not at the next tick."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from watchkeeper.agents.sensor import SensorAgent
from watchkeeper.bus import InMemoryBus
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.orchestrator import Orchestrator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[tuple[Orchestrator, InMemoryBus]]:
    import watchkeeper.testing.demo_service as demo

    port = free_port()
    base = Settings.model_validate({}).model_dump(mode="json")
    settings = Settings.model_validate(
        deep_merge(
            base,
            {
                "data_dir": str(tmp_path / "data"),
                "agents": {"check_interval": 5.0, "sensor": {"check_interval": 0.3}},
                "ollama": {"enabled": False},
                "remediation": {"mode": "dry_run"},
                "services": [
                    {
                        "name": "demo",
                        "argv": [sys.executable, "-I", "-S", demo.__file__, "--port", str(port)],
                        "probe": {"kind": "tcp", "port": port},
                    }
                ],
            },
        )
    )
    bus = InMemoryBus()
    orchestrator = Orchestrator(ConfigStore(settings, None, bus), bus=bus, factories=None)
    stop = asyncio.Event()
    task = asyncio.create_task(orchestrator.run(stop))
    try:
        yield orchestrator, bus
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def next_sample(sub: Any, predicate: Any, timeout: float = 10) -> MetricsSample:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError("no matching sample in time")
        sample: MetricsSample = (await sub.get(timeout=left)).parse(MetricsSample)
        if predicate(sample):
            return sample


async def test_samples_carry_host_and_services(system: tuple[Orchestrator, InMemoryBus]) -> None:
    orchestrator, bus = system
    samples = bus.subscribe("metrics.sample", name="t")
    sample = await next_sample(
        samples,
        lambda s: s.services and s.services[0].healthy and s.processes and s.processes.top_cpu,
    )
    assert sample.cpu is not None and sample.cpu.percent is not None
    assert sample.memory is not None and sample.disks is not None and sample.network is not None
    assert sample.services[0].name == "demo"
    flat = sample.flat()
    assert flat["service.demo.up"] == 1.0 and flat["service.demo.healthy"] == 1.0
    sensor = cast(SensorAgent, orchestrator.agents["sensor"])
    assert sensor.latest is not None  # the web reads this; no request ever samples
    assert (
        orchestrator.snapshot().model_dump(mode="json")["details"]["sensor"]["services"][0]["name"]
        == "demo"
    )


async def test_killed_service_exit_is_on_the_bus_at_once(
    system: tuple[Orchestrator, InMemoryBus],
) -> None:
    _orchestrator, bus = system
    samples = bus.subscribe("metrics.sample", name="t")
    exits = bus.subscribe("service.exited", name="e")
    sample = await next_sample(samples, lambda s: s.services and s.services[0].pid)
    pid = sample.services[0].pid
    assert pid is not None
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    event = await exits.get(timeout=5)
    latency = time.monotonic() - killed
    assert event.payload["name"] == "demo"
    assert event.payload["exit_signal"] == signal.SIGKILL
    assert event.sender == "sensor"
    # Event-driven: far below the 0.3 s sampling interval (and the 5 s default).
    assert latency < 0.2
