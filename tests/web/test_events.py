"""The live event stream (server-sent events), against a real server."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from web_helpers import LiveServer

from watchkeeper.bus import Topic
from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import Alert, Severity
from watchkeeper.model.metrics import (
    CpuMetrics,
    DiskIO,
    DiskMetrics,
    FilesystemUsage,
    InterfaceRates,
    MemoryMetrics,
    MetricsSample,
    NetworkMetrics,
)
from watchkeeper.web.feed import chart_point, describe
from watchkeeper.web.live import EventClient, LiveHub, TooManyClients


class Flood(BaseModel):
    """The tests' own ``system.flood``: a big message, many times."""

    n: int
    blob: str


class Marker(BaseModel):
    """The tests' own ``system.marker``: the end of the flood."""


def events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event name, data) for each event; ("comment", text) for comment lines."""
    name = "message"
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []


def first(stream: Iterator[tuple[str, Any]], wanted: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    for name, data in stream:
        if name == wanted:
            return data
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no {wanted!r} event within {timeout}s")


def test_stream_carries_status_samples_and_changes(server: LiveServer) -> None:
    with (
        server.client() as http,
        http.stream("GET", "/api/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response)
        status = first(stream, "status")
        assert set(status["agents"]) == {"sensor", "analyzer", "remediator", "communicator"}
        assert 0 <= status["health"]["score"] <= 100
        sample = first(stream, "sample")
        assert sample["topic"] == "metrics.sample"
        assert sample["data"]["cpu"]["count"] >= 1
        assert {"cpu", "memory", "net_rx", "disk_write"} <= set(sample["point"])
        change = {"changes": {"status_interval": 1.5}}
        assert http.patch("/api/config", json=change, headers=server.auth).status_code == 200
        config = first(stream, "config")
        assert config["data"]["changes"] == {"status_interval": 1.5}
        assert config["activity"]["message"] == "configuration changed by api: status_interval"


def test_a_slow_client_never_slows_the_daemon(server: LiveServer) -> None:
    """A client that never reads loses its oldest events; nobody else notices."""
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", server.port))
    slow.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert server.hub is not None
    hub = server.hub
    server.wait_for(lambda: server.on_loop(lambda: hub.client_count) >= 1, what="slow client")
    assert server.orchestrator is not None
    bus = server.orchestrator.bus
    blob = "x" * 20_000
    flood_topic = bus.topics.add(Topic("system.flood", Flood))
    marker = bus.topics.add(Topic("system.marker", Marker))

    async def flood() -> float:
        started = time.perf_counter()
        for index in range(400):
            await bus.publish(flood_topic, Flood(n=index, blob=blob), sender="test")
            if index % 20 == 0:
                await asyncio.sleep(0)  # let the hub and the writers run, as a real load would
        return time.perf_counter() - started

    try:
        with (
            server.client() as http,
            http.stream("GET", "/api/events") as response,
        ):
            stream = events(response)
            first(stream, "status")
            took = server.call(flood)
            assert took < 2.0  # publishing never waited on a client
            server.call(lambda: bus.publish(marker, Marker(), sender="test"))
            started = time.monotonic()
            while True:
                event = first(stream, "system", timeout=5)
                if event["topic"] == "system.marker":
                    break
            assert time.monotonic() - started < 3.0
            health = http.get("/api/health")
            assert health.status_code == 200 and health.elapsed.total_seconds() < 1.0
            web = http.get("/api/bus").json()
            assert web["web"]["dropped"] > 0
            live_sub = next(s for s in web["stats"]["subscribers"] if s["name"] == "web:live")
            assert live_sub["dropped"] == 0
    finally:
        slow.close()


async def test_event_client_queue_is_bounded_and_drops_the_oldest() -> None:
    client = EventClient(maxsize=3)
    for index in range(5):
        client.offer(f"{index}".encode())
    assert client.dropped == 2
    assert await client.next(timeout=0.01) == [b"2", b"3", b"4"]
    assert await client.next(timeout=0.01) == []  # nothing: time for a heartbeat
    client.close()
    with pytest.raises(EOFError):
        await client.next(timeout=0.01)


async def test_the_hub_caps_its_clients(server: LiveServer) -> None:
    assert server.orchestrator is not None
    hub = LiveHub(server.orchestrator, max_clients=2)
    hub.connect()
    hub.connect()
    with pytest.raises(TooManyClients):
        hub.connect()
    hub.close()
    with pytest.raises(TooManyClients):
        hub.connect()


def test_chart_points_and_activity_lines() -> None:
    fs = {"device": "/dev/sda1", "fstype": "ext4", "total_bytes": 100, "used_bytes": 40}
    sample = MetricsSample(
        timestamp=100.0,
        host="test",
        cpu=CpuMetrics(count=1, percent=12.345),
        memory=MemoryMetrics(
            total_bytes=100,
            available_bytes=50,
            used_bytes=50,
            percent=50.0,
            swap_total_bytes=100,
            swap_used_bytes=1,
            swap_percent=1.0,
        ),
        disks=DiskMetrics(
            filesystems=(
                FilesystemUsage(mount="/", free_bytes=60, percent=40.0, **fs),
                FilesystemUsage(mount="/srv", free_bytes=8, percent=91.5, **fs),
            ),
            io=(
                DiskIO(device="sda", read_bytes_per_s=10.0, write_bytes_per_s=None),
                DiskIO(device="sdb", read_bytes_per_s=5),
            ),
        ),
        network=NetworkMetrics(
            interfaces=(
                InterfaceRates(name="lo", rx_bytes_per_s=1e9, tx_bytes_per_s=1e9),
                InterfaceRates(name="eth0", rx_bytes_per_s=300.0, tx_bytes_per_s=200.0),
            )
        ),
    )
    point = chart_point(sample)
    assert point == {
        "ts": 100.0,
        "cpu": 12.35,
        "memory": 50.0,
        "swap": 1.0,
        "disk_read": 15.0,
        "disk_write": None,
        "net_rx": 300.0,
        "net_tx": 200.0,
        "disk_used": 91.5,
    }
    assert chart_point(MetricsSample(timestamp=1.0, host="test"))["cpu"] is None
    alert = Alert(
        id="a1",
        fingerprint="f1",
        rule="disk_full",
        severity=Severity.CRITICAL,
        subject="/",
        summary="disk\nfull",
        started_at=1.0,
        updated_at=1.0,
    )
    line = describe("alert.firing", alert)
    assert line == ("critical", "alert firing: disk full", "/")
    record = ActionRecord(
        id="r1",
        action="kill_process",
        target="42",
        proposer="rule",
        outcome=ActionOutcome.FAILED,
        created_at=1.0,
    )
    assert describe("remediation.failed", record) == (
        "warning",
        "action kill_process on 42: failed",
        "42",
    )
    assert describe("metrics.sample", MetricsSample(timestamp=1.0, host="test")) is None
