"""A host's login may not use the JetStream API (the security model): the server refusing
its stream look-ups at start is expected and shown as such in the bus status, not counted
among the refusals, which stay for what looks like an attack (publishing on another host's
subjects). A real nats-server with the example fleet configuration; web-1 is a NatsBus."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.bus.nats import NatsBus
from watchkeeper.config import Settings
from watchkeeper.fleet.serverconf import render_server_config
from watchkeeper.model.alerts import Alert, fingerprint_of
from watchkeeper.model.topics import ALERT_FIRING
from watchkeeper.testing.fleet_hosts import free_port
from watchkeeper.testing.nats_server import NatsServer, require_nats

PASSWORDS = {name: f"pw-{name}-expected-refusals" for name in ("central", "web-1", "web-2")}


async def until(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    require_nats()
    port = free_port()
    text = render_server_config(
        ["web-1", "web-2"],
        "central",
        passwords=PASSWORDS,
        port=port,
        store_dir=str(tmp_path / "store"),
        address="127.0.0.1",
    )
    with NatsServer(directory=tmp_path / "nats", port=port, config_text=text) as running:
        yield running


@pytest.fixture
async def web1(server: NatsServer, tmp_path: Path) -> AsyncIterator[NatsBus]:
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path / "web-1"),
            "bus": {
                "backend": "nats",
                "servers": [server.url],
                "host_id": "web-1",
                "user": "web-1",
                "password": PASSWORDS["web-1"],
                "connect_timeout": 1.0,
                "reconnect_wait": 0.2,
            },
        }
    )
    bus = NatsBus(settings.bus, host="web-1", data_dir=tmp_path / "web-1")
    await bus.start()
    try:
        assert await bus.wait_connected(10), bus.status()
        yield bus
    finally:
        await bus.stop()


def _alert() -> Alert:
    now = time.time()
    return Alert(
        id="a-1",
        fingerprint=fingerprint_of("disk_usage", "/var/log"),
        rule="disk_usage",
        severity="warning",
        subject="/var/log",
        summary="/var/log 91% full",
        started_at=now,
        updated_at=now,
    )


async def test_the_refused_jetstream_api_is_expected_and_another_hosts_subject_is_refused(
    web1: NatsBus,
) -> None:
    await until(lambda: web1.status()["streams"] == "not managed here", what="stream checks")
    status = web1.status()
    expected = status["expected_refusals"]
    assert isinstance(expected, dict) and expected["jetstream_api"] >= 1, status
    assert "JetStream API" in expected["why"]
    dropped = status["dropped"]
    assert isinstance(dropped, dict) and dropped["refused"] == 0, status
    assert status["last_error"] is None, status

    # Speaking for web-2 is what the server refuses for real: counted as refused.
    before = expected["jetstream_api"]
    await web1.publish(ALERT_FIRING, _alert(), sender="analyzer", host="web-2")

    def refused() -> int:
        counts = web1.status()["dropped"]
        return counts["refused"] if isinstance(counts, dict) else 0

    await until(lambda: refused() >= 1, what="the refusal of web-2's subject")
    after = web1.status()["expected_refusals"]
    assert isinstance(after, dict) and after["jetstream_api"] == before
