"""A running service's health is probed again while it runs, not only after a start: a
service that stops answering but keeps running is seen as unhealthy, within its
``probe_every``, by the real sensor in a real orchestrator, with a real probe."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.bus import InMemoryBus
from watchkeeper.config import Settings, deep_merge
from watchkeeper.live_config import ConfigStore
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.orchestrator import Orchestrator

# Listens until the flag file appears, then closes its socket and keeps running: the hung
# service a process table alone calls healthy.
HANGS = """
import os, socket, sys, time
port, flag = int(sys.argv[1]), sys.argv[2]
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(8)
listener.settimeout(0.1)
while not os.path.exists(flag):
    try:
        listener.accept()[0].close()
    except OSError:
        pass
listener.close()
while True:
    time.sleep(1)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[tuple[InMemoryBus, Path]]:
    script = tmp_path / "hangs.py"
    script.write_text(HANGS)
    flag = tmp_path / "hang-now"
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
                        "name": "hangs",
                        "argv": [sys.executable, "-I", str(script), str(port), str(flag)],
                        "probe": {"kind": "tcp", "port": port, "timeout": 0.5},
                        "probe_every": 1.0,
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
        yield bus, flag
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def _until(sub: Any, predicate: Any, timeout: float) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        message = await sub.get(timeout=left)
        if predicate(message):
            return message
    raise AssertionError("not seen in time")


def _hangs(message: Any) -> Any:
    sample = message.parse(MetricsSample)
    return next((s for s in sample.services if s.name == "hangs"), None)


async def test_a_service_that_stops_answering_is_seen_unhealthy(
    system: tuple[InMemoryBus, Path],
) -> None:
    bus, flag = system
    samples = bus.subscribe("metrics.sample", name="t-samples")
    events = bus.subscribe("service.*", name="t-events")
    await _until(samples, lambda m: (s := _hangs(m)) is not None and s.healthy is True, 20)
    flag.touch()
    unhealthy = await _until(events, lambda m: m.topic == "service.unhealthy", 10)
    assert unhealthy.payload["name"] == "hangs"
    sample = await _until(samples, lambda m: (s := _hangs(m)) is not None and s.healthy is False, 5)
    status = _hangs(sample)
    assert str(status.state) == "running"  # it still runs: only the probe tells
    assert status.probe_detail
