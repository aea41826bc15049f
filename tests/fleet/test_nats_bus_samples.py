"""NatsBus and samples from other hosts, against a real nats-server: a sample's envelope is
checked on arrival and its payload when a reader first parses it, a payload that does not
parse is refused to that reader and counted then, a duplicate is still dropped, and
telemetry goes out without a JetStream message id."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from pydantic import ValidationError

from watchkeeper.bus import Subscription
from watchkeeper.bus.nats import INSTANCE_HEADER, MSG_ID_HEADER, NatsBus
from watchkeeper.config.fleet import BusSettings
from watchkeeper.fleet.state import FleetState
from watchkeeper.model.events import SystemStarted
from watchkeeper.model.message import Message
from watchkeeper.model.metrics import MetricsSample
from watchkeeper.model.topics import METRICS_SAMPLE, SYSTEM_STARTED
from watchkeeper.testing.fleet_sim import FleetSim, SimConfig
from watchkeeper.testing.nats_server import NatsServer

BusFactory = Callable[[NatsServer, str], NatsBus]


@pytest.fixture
async def make_bus(tmp_path: Path) -> AsyncIterator[BusFactory]:
    buses: list[NatsBus] = []

    def make(server: NatsServer, host: str) -> NatsBus:
        settings = BusSettings.model_validate(
            {
                "backend": "nats",
                "servers": [server.url],
                "host_id": host,
                "connect_timeout": 0.5,
                "reconnect_wait": 0.1,
                "request_timeout": 2.0,
            }
        )
        bus = NatsBus(settings, host=host, data_dir=tmp_path / host)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.stop()


@pytest.fixture(scope="module")
def sample_envelope() -> dict[str, Any]:
    """A real sample envelope, as a host on the NATS bus sends it (via the simulator)."""
    sim = FleetSim(SimConfig(hosts=1, host_prefix="db"))
    _subject, body, _id, _event = sim.sample(sim.hosts[0], time.time())
    envelope: dict[str, Any] = json.loads(body)
    return envelope


async def started(bus: NatsBus) -> NatsBus:
    await bus.start()
    assert await bus.wait_connected(10), bus.status()
    return bus


async def drain(sub: Subscription, wait: float = 0.5) -> list[Message]:
    got: list[Message] = []
    while True:
        try:
            got.append(await sub.get(timeout=wait))
        except TimeoutError:
            return got


def dropped(bus: NatsBus) -> dict[str, int]:
    counts = bus.status()["dropped"]
    assert isinstance(counts, dict)
    return counts


def with_id(envelope: dict[str, Any], message_id: str, **payload: object) -> bytes:
    data = json.loads(json.dumps(envelope))
    data["id"] = message_id
    data["payload"].update(payload)
    return json.dumps(data).encode()


async def test_a_bad_sample_is_refused_when_parsed_and_counted_once(
    nats_server: NatsServer, make_bus: BusFactory, sample_envelope: dict[str, Any]
) -> None:
    host = sample_envelope["host"]
    central = make_bus(nats_server, "central")
    samples = central.subscribe(METRICS_SAMPLE.name, name="view", scope="fleet")
    await started(central)
    raw = await nats.connect(nats_server.url)
    where = f"wk.{host}.metrics.sample"
    await raw.publish(where, with_id(sample_envelope, "good"))
    await raw.publish(where, with_id(sample_envelope, "bad", timestamp="not a time"))
    not_an_object = json.loads(with_id(sample_envelope, "flat"))
    not_an_object["payload"] = ["a", "list"]
    await raw.publish(where, json.dumps(not_an_object).encode())
    forged = json.loads(with_id(sample_envelope, "forged"))
    forged["host"] = "web-1"
    await raw.publish(where, json.dumps(forged).encode())
    await raw.flush()
    await raw.close()

    got = {message.id: message for message in await drain(samples, 1.0)}
    # The envelope is checked on arrival: a payload that is not an object, or another
    # host's id on this host's subject, never reaches a reader.
    assert sorted(got) == ["bad", "good"]
    assert dropped(central)["malformed"] == 1 and dropped(central)["mismatched"] == 1
    good = got["good"].parse(MetricsSample)
    assert isinstance(good, MetricsSample) and got["good"].value is good
    # The bad payload reached the reader unparsed; parsing it refuses it and counts it.
    assert dropped(central)["malformed"] == 1
    with pytest.raises(ValidationError):
        got["bad"].parse(MetricsSample)
    assert dropped(central)["malformed"] == 2
    with pytest.raises(ValidationError):
        _ = got["bad"].value
    assert dropped(central)["malformed"] == 2  # one message, counted once
    # The fleet view keeps the payload as it came and refuses it when the host is opened.
    state = FleetState()
    state.observe_sample(host, got["bad"].payload, 1.0)
    assert state.sample(host) is None
    view = state.host_view(host, 1.0)
    assert view is not None and view["sample"] is None
    state.observe_sample(host, got["good"].payload, 2.0)
    parsed = state.sample(host)
    assert parsed is not None and parsed.timestamp == good.timestamp
    # Still receiving.
    web = await started(make_bus(nats_server, host))
    await web.publish(METRICS_SAMPLE, good, sender="sensor")
    [after] = await drain(samples, 1.0)
    assert after.parse(MetricsSample).timestamp == good.timestamp


async def test_a_sample_sent_twice_is_delivered_once(
    nats_server: NatsServer, make_bus: BusFactory, sample_envelope: dict[str, Any]
) -> None:
    host = sample_envelope["host"]
    central = make_bus(nats_server, "central")
    samples = central.subscribe(METRICS_SAMPLE.name, name="view", scope="fleet")
    await started(central)
    raw = await nats.connect(nats_server.url)
    body = with_id(sample_envelope, "once")
    for _ in range(3):
        await raw.publish(f"wk.{host}.metrics.sample", body)
    await raw.flush()
    await raw.close()
    assert [message.id for message in await drain(samples, 1.0)] == ["once"]
    assert central.status()["duplicates_received"] == 2


async def test_telemetry_carries_no_jetstream_message_id_and_events_do(
    nats_server: NatsServer, make_bus: BusFactory, sample_envelope: dict[str, Any]
) -> None:
    raw = await nats.connect(nats_server.url)
    heard: list[tuple[str, dict[str, str]]] = []

    async def hear(msg: Any) -> None:
        heard.append((msg.subject, dict(msg.headers or {})))

    await raw.subscribe("wk.db-1.>", cb=hear)
    await raw.flush()
    bus = await started(make_bus(nats_server, "db-1"))
    sample = MetricsSample.model_validate(sample_envelope["payload"])
    sent = await bus.publish(METRICS_SAMPLE, sample, sender="sensor")
    await bus.publish(SYSTEM_STARTED, SystemStarted(version="t"), sender="t")
    assert await bus.flush(5)
    deadline = time.monotonic() + 5
    while len(heard) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await raw.close()
    by_subject = dict(heard)
    telemetry = by_subject["wk.db-1.metrics.sample"]
    assert MSG_ID_HEADER not in telemetry and telemetry[INSTANCE_HEADER] == bus.instance
    event = by_subject["wk.db-1.system.started"]
    assert event[MSG_ID_HEADER] and event[INSTANCE_HEADER] == bus.instance
    assert sent.host == "db-1"
