"""NatsBus against a real nats-server with JetStream: scopes, request/reply between
hosts, untrusted input, a server crash, a central that was down, and the outbox."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nats
import pytest

from watchkeeper.bus import Subscription
from watchkeeper.bus.memory import RequestTimeout
from watchkeeper.bus.nats import NatsBus
from watchkeeper.config.fleet import BusSettings
from watchkeeper.model.events import AgentReply as Reply
from watchkeeper.model.events import Command
from watchkeeper.model.events import SystemStarted as Started
from watchkeeper.model.fleet import HostBeat as Beat
from watchkeeper.model.message import Message
from watchkeeper.model.topics import COMMAND, SYSTEM_STARTED
from watchkeeper.model.topics import FLEET_HEARTBEAT as HEARTBEAT
from watchkeeper.testing.nats_server import NatsServer

PING = COMMAND.at("ping")

BusFactory = Callable[..., NatsBus]


def settings(server: NatsServer, host: str, **extra: object) -> BusSettings:
    values: dict[str, object] = {
        "backend": "nats",
        "servers": [server.url],
        "host_id": host,
        "connect_timeout": 0.5,
        "reconnect_wait": 0.1,
        "request_timeout": 2.0,
    }
    values.update(extra)
    return BusSettings.model_validate(values)


@pytest.fixture
async def make_bus(tmp_path: Path) -> AsyncIterator[BusFactory]:
    buses: list[NatsBus] = []

    def make(server: NatsServer, host: str, *, data: str | None = None, **extra: object) -> NatsBus:
        bus = NatsBus(
            settings(server, host, **extra), host=host, data_dir=tmp_path / (data or host)
        )
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.stop()


async def started(bus: NatsBus) -> NatsBus:
    await bus.start()
    assert await bus.wait_connected(10), bus.status()
    return bus


async def drain(sub: Subscription, wait: float = 0.5) -> list[Message]:
    """Every message that arrives until none has for ``wait`` seconds."""
    got: list[Message] = []
    while True:
        try:
            got.append(await sub.get(timeout=wait))
        except TimeoutError:
            return got


async def collect(sub: Subscription, count: int, timeout: float = 10.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(await sub.get(timeout=max(0.01, deadline - time.monotonic())))
        except TimeoutError:
            break
    return got


def versions(messages: list[Message]) -> list[str]:
    return [m.parse(Started).version for m in messages]


async def test_scopes_and_patterns_between_two_hosts(
    nats_server: NatsServer, make_bus: BusFactory
) -> None:
    web = make_bus(nats_server, "web-1")
    db = make_bus(nats_server, "db-1")
    central = make_bus(nats_server, "central")
    web_local = web.subscribe("system.*", name="local")
    db_local = db.subscribe("#", name="local")
    fleet_all = central.subscribe("#", name="view", scope="fleet")
    only_web = central.subscribe("system.started", name="web-watch", scope="web-1")
    for bus in (web, db, central):
        await started(bus)

    await web.publish(SYSTEM_STARTED, Started(version="w1"), sender="t")
    await db.publish(SYSTEM_STARTED, Started(version="d1"), sender="t")
    await web.publish(HEARTBEAT, Beat(host="web-1", sent_at=time.time(), interval=5), sender="t")
    # The central speaks about web-1: web-1's local subscription receives it.
    await central.publish(SYSTEM_STARTED, Started(version="about-web"), sender="t", host="web-1")

    fleet_msgs = await collect(fleet_all, 4)
    fleet_msgs += await drain(fleet_all)
    seen = sorted((m.topic, m.host, m.origin) for m in fleet_msgs)
    assert seen == [
        ("fleet.heartbeat", "web-1", "web-1"),
        ("system.started", "db-1", "db-1"),
        ("system.started", "web-1", "central"),
        ("system.started", "web-1", "web-1"),
    ]
    assert sorted(versions(await collect(only_web, 2) + await drain(only_web))) == [
        "about-web",
        "w1",
    ]
    # web-1: its own message once (local delivery, never echoed back), the central's once.
    assert versions(await drain(web_local)) == ["w1", "about-web"]
    # db-1 hears only about db-1, its own message exactly once.
    assert [m.topic for m in await drain(db_local)] == ["system.started"]
    assert web.status()["connected"] is True
    assert central.status()["dropped"] == {
        "outbox_events": 0,
        "outbox_telemetry": 0,
        "malformed": 0,
        "mismatched": 0,
        "refused": 0,
        "telemetry_unsent": 0,
        "oversized": 0,
        "outbox_failed": 0,
    }


async def test_request_to_another_host_and_a_timeout_naming_it(
    nats_server: NatsServer, make_bus: BusFactory
) -> None:
    web = make_bus(nats_server, "web-1")
    central = make_bus(nats_server, "central")
    commands = web.subscribe("command.*", name="remediator")
    await started(web)
    await started(central)

    async def answer() -> None:
        request = await commands.get(timeout=10)
        assert request.origin == "central" and request.host == "web-1"
        assert request.parse(Command).command == "ping"
        await web.reply(request, Reply(ok=True, agent="remediator", command="ping"), sender="r")

    responder = asyncio.create_task(answer())
    reply = await central.request(PING, Command(command="ping"), sender="view", host="web-1")
    await responder
    assert reply.parse(Reply).ok is True and reply.origin == "web-1"
    assert isinstance(reply.value, Reply) and reply.value.agent == "remediator"

    with pytest.raises(RequestTimeout, match="'db-9'"):
        await central.request(
            PING, Command(command="ping"), sender="view", host="db-9", timeout=0.5
        )


async def test_garbage_and_a_forged_host_are_dropped_and_counted(
    nats_server: NatsServer, make_bus: BusFactory
) -> None:
    central = make_bus(nats_server, "central")
    sub = central.subscribe("#", name="view", scope="fleet")
    await started(central)
    raw = await nats.connect(nats_server.url)
    good = Message(topic="system.started", sender="x", value=Started(version="ok"), host="db-1")
    forged = Message(topic="system.started", sender="x", value=Started(version="f"), host="db-2")
    await raw.publish("wk.db-1.system.started", b"\xff not json {")
    await raw.publish("wk.db-1.system.started", b'["a list"]')
    await raw.publish("wk.db-1.system.started", json.dumps({"topic": "system.started"}).encode())
    bad_payload = good.to_dict() | {"id": "bad", "payload": {"version": ["not", "text"]}}
    await raw.publish("wk.db-1.system.started", json.dumps(bad_payload).encode())
    await raw.publish("wk.db-1.system.started", json.dumps(forged.to_dict()).encode())
    await raw.publish("wk.db-1.system.stopped", json.dumps(good.to_dict()).encode())
    await raw.publish("wk.db-1.system.started", json.dumps(good.to_dict()).encode())
    await raw.flush()
    await raw.close()

    got = await collect(sub, 1)
    got += await drain(sub)
    assert versions(got) == ["ok"]
    dropped = central.status()["dropped"]
    assert isinstance(dropped, dict)
    assert dropped["malformed"] == 4
    assert dropped["mismatched"] == 2  # another host's id, another topic than the subject
    # Still working.
    web = await started(make_bus(nats_server, "web-1"))
    await web.publish(SYSTEM_STARTED, Started(version="after"), sender="t")
    assert versions(await collect(sub, 1)) == ["after"]


async def test_server_crash_loses_nothing_and_duplicates_nothing(
    nats_server: NatsServer, make_bus: BusFactory
) -> None:
    central = make_bus(nats_server, "central")
    view = central.subscribe("system.*", name="view", scope="fleet")
    web = make_bus(nats_server, "web-1")
    await started(central)
    await started(web)
    sent: list[str] = []

    async def send(count: int, tag: str) -> None:
        for i in range(count):
            msg = await web.publish(SYSTEM_STARTED, Started(version=f"{tag}{i}"), sender="t")
            sent.append(msg.id)

    await send(20, "before-")
    assert await web.flush(10)
    nats_server.kill()
    await send(30, "during-")  # the server is away: the host goes on alone
    assert web.status()["outbox"] == {
        "count": 30,
        "bytes": web.outbox.size,
        "max_bytes": 64 << 20,
    }
    nats_server.restart()
    assert await web.flush(20), web.status()
    await send(10, "after-")
    assert await web.flush(10)

    got = await collect(view, 60, timeout=20)
    got += await drain(view, 1.0)
    assert [m.id for m in got] == sent
    assert versions(got) == (
        [f"before-{i}" for i in range(20)]
        + [f"during-{i}" for i in range(30)]
        + [f"after-{i}" for i in range(10)]
    )
    # A redelivery after the crash (acks the server had not written) is recognised by id.
    assert central.status()["received"] == 60
    # And the stream holds each event once.
    raw = await nats.connect(nats_server.url)
    info = await raw.jetstream().stream_info("WK_EVENTS")
    await raw.close()
    assert info.state.messages == 60


async def test_a_central_that_was_down_catches_up_exactly_once(
    nats_server: NatsServer, make_bus: BusFactory
) -> None:
    web = await started(make_bus(nats_server, "web-1"))
    central = make_bus(nats_server, "central", data="central-a")
    first = central.subscribe("system.*", name="view", scope="fleet")
    await started(central)
    await web.publish(SYSTEM_STARTED, Started(version="seen-live"), sender="t")
    assert versions(await collect(first, 1)) == ["seen-live"]
    await asyncio.sleep(0.3)  # the ack reaches the server
    await central.stop()

    for i in range(5):
        await web.publish(SYSTEM_STARTED, Started(version=f"missed-{i}"), sender="t")
    assert await web.flush(10)

    again = make_bus(nats_server, "central", data="central-b")
    second = again.subscribe("system.*", name="view", scope="fleet")
    await started(again)
    got = await collect(second, 5)
    got += await drain(second, 1.0)
    assert versions(got) == [f"missed-{i}" for i in range(5)]


async def test_the_outbox_survives_a_restart_of_the_bus(
    nats_server: NatsServer, make_bus: BusFactory, tmp_path: Path
) -> None:
    nats_server.kill()
    first = make_bus(nats_server, "web-1", data="web")
    local = first.subscribe("system.*", name="local")
    await first.start()  # returns at once although the server is away
    ids = []
    for i in range(3):
        ids.append((await first.publish(SYSTEM_STARTED, Started(version=f"v{i}"), sender="t")).id)
    assert versions(await drain(local, 0.1)) == ["v0", "v1", "v2"]  # local delivery works
    status = first.status()
    assert status["connected"] is False and status["last_error"]
    await first.stop()

    nats_server.restart()
    central = make_bus(nats_server, "central")
    view = central.subscribe("system.*", name="view", scope="fleet")
    await started(central)
    second = await started(make_bus(nats_server, "web-1", data="web"))
    assert await second.flush(10)
    got = await collect(view, 3)
    got += await drain(view)
    assert [m.id for m in got] == ids


async def test_the_outbox_bound_drops_the_oldest_and_counts(
    nats_server: NatsServer, make_bus: BusFactory
) -> None:
    nats_server.kill()
    bus = make_bus(nats_server, "web-1", outbox_max_mb=1)
    await bus.start()
    big = "x" * 20_000
    for i in range(80):  # about 1.6 MB of events into a 1 MB outbox
        await bus.publish(SYSTEM_STARTED, Started(version=f"{i}:{big}"), sender="t")
    status = bus.status()
    outbox, dropped = status["outbox"], status["dropped"]
    assert isinstance(outbox, dict) and isinstance(dropped, dict)
    assert outbox["bytes"] <= 1 << 20
    assert dropped["outbox_events"] == 80 - outbox["count"] > 0
    # What is kept is the newest, in order.
    rows = bus.outbox.peek(100)
    kept = [json.loads(r.body)["payload"]["version"].split(":")[0] for r in rows]
    assert kept == [str(i) for i in range(80 - len(rows), 80)]


PERMISSIONS = """
listen: "127.0.0.1:{port}"
jetstream { store_dir: "{store}" }
authorization {
  users = [
    { user: central, password: central-secret }
    { user: web-1, password: web-secret,
      permissions: {
        publish: { allow: ["wk.web-1.>"] }
        subscribe: { allow: ["wk.web-1.>", "_INBOX_web-1.>"] }
        allow_responses: true
      }
    }
  ]
}
"""


async def test_a_host_cannot_publish_as_another(
    nats_server_factory: Callable[..., NatsServer], make_bus: BusFactory
) -> None:
    server = nats_server_factory(config_text=PERMISSIONS, name="perm")
    central = make_bus(server, "central", user="central", password="central-secret")
    view = central.subscribe("system.*", name="view", scope="fleet")
    await started(central)
    assert central.status()["streams"] == "ready"
    web = make_bus(server, "web-1", user="web-1", password="web-secret", connect_timeout=3.0)
    began = time.monotonic()
    await started(web)
    # The refused stream API does not hold it up (waiting each call out would take 6 s).
    assert time.monotonic() - began < 4.0
    assert web.status()["streams"] == "not managed here"
    assert web.status()["last_error"] is None  # that refusal is expected for a host
    await web.publish(SYSTEM_STARTED, Started(version="forged"), sender="t", host="db-1")
    await web.publish(SYSTEM_STARTED, Started(version="own"), sender="t")
    assert await web.flush(10), web.status()
    got = await collect(view, 1)
    got += await drain(view)
    assert [(m.host, m.parse(Started).version) for m in got] == [("web-1", "own")]
    status = web.status()
    assert status["connected"] is True
    assert "permissions violation" in str(status["last_error"]).lower()
    assert "wk.db-1.system.started" in str(status["last_error"])
    dropped = status["dropped"]
    assert isinstance(dropped, dict) and dropped["refused"] >= 1
    assert "web-secret" not in json.dumps(status)


async def test_streams_follow_the_settings(nats_server: NatsServer, make_bus: BusFactory) -> None:
    await started(make_bus(nats_server, "central", events_max_age_hours=48))
    raw = await nats.connect(nats_server.url)
    js = raw.jetstream()
    events = (await js.stream_info("WK_EVENTS")).config
    telemetry = (await js.stream_info("WK_TELEMETRY")).config
    await raw.close()
    assert str(getattr(events.storage, "value", events.storage)) == "file"
    assert events.max_age == 48 * 3600 and telemetry.max_age == 3600
    assert "wk.*.alert.firing" in (events.subjects or [])
    assert "wk.*.metrics.sample" in (telemetry.subjects or [])
    # Commands are requests on core NATS: no stream answers them in the replier's place.
    every = (events.subjects or []) + (telemetry.subjects or [])
    assert not any(".command." in s for s in every)


def test_the_default_bus_does_not_import_nats() -> None:
    import subprocess
    import sys

    code = (
        "import sys, watchkeeper.bus, watchkeeper.bus.subjects, watchkeeper.bus.outbox;"
        "from watchkeeper.bus import make_bus;"
        "from watchkeeper.config import Settings;"
        "make_bus(Settings());"
        "print(sorted(m for m in sys.modules if m == 'nats' or m.startswith('nats.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_a_crash_in_the_middle_of_sending(
    nats_server: NatsServer, make_bus: BusFactory
) -> None:
    """The server dies while events are in flight: each is stored once, in order."""
    central = make_bus(nats_server, "central")
    view = central.subscribe("system.*", name="view", scope="fleet")
    web = make_bus(nats_server, "web-1")
    await started(central)
    await started(web)
    sent: list[str] = []

    async def publisher() -> None:
        for i in range(600):
            sent.append((await web.publish(SYSTEM_STARTED, Started(version=str(i)), sender="t")).id)
            if i % 50 == 0:
                await asyncio.sleep(0.01)

    task = asyncio.create_task(publisher())
    while len(sent) < 200:
        await asyncio.sleep(0.001)
    nats_server.kill()
    await task
    nats_server.restart()
    assert await web.flush(30), web.status()
    got = await collect(view, 600, timeout=30)
    got += await drain(view, 1.0)
    assert [m.id for m in got] == sent
    raw = await nats.connect(nats_server.url)
    js = raw.jetstream()
    info = await js.stream_info("WK_EVENTS")
    stored = [
        json.loads((await js.get_msg("WK_EVENTS", seq)).data or b"{}")["id"]
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]
    await raw.close()
    assert stored == sent


async def test_an_event_too_big_for_the_server_is_dropped_and_counted(
    nats_server: NatsServer, make_bus: BusFactory
) -> None:
    central = make_bus(nats_server, "central")
    view = central.subscribe("system.*", name="view", scope="fleet")
    web = make_bus(nats_server, "web-1")
    await started(central)
    await started(web)
    await web.publish(SYSTEM_STARTED, Started(version="x" * (2 << 20)), sender="t")
    await web.publish(SYSTEM_STARTED, Started(version="next"), sender="t")
    assert await web.flush(10), web.status()
    assert versions(await collect(view, 1) + await drain(view)) == ["next"]
    dropped = web.status()["dropped"]
    assert isinstance(dropped, dict) and dropped["oversized"] == 1


async def test_a_scope_that_is_no_host_id_is_refused(
    nats_server: NatsServer, make_bus: BusFactory
) -> None:
    bus = make_bus(nats_server, "central")
    for scope in ("web.*", ">", "web-1.alert", "Web 1"):
        with pytest.raises(ValueError, match="host id"):
            bus.subscribe("alert.*", name="view", scope=scope)
    assert bus.subscribe("alert.*", name="view", scope="web-1").scope == "web-1"


async def test_an_unreadable_outbox_file_is_kept_aside_and_the_bus_goes_on(
    nats_server: NatsServer, make_bus: BusFactory, tmp_path: Path
) -> None:
    data = tmp_path / "web"
    data.mkdir()
    (data / "outbox.sqlite3").write_bytes(b"this is not a database, it is a disk gone wrong" * 50)
    web = make_bus(nats_server, "web-1", data="web")
    assert "unreadable" in str(web.status()["last_error"])
    assert [p.name.split("-")[0] for p in data.glob("outbox.sqlite3.unreadable-*")] == [
        "outbox.sqlite3.unreadable"
    ]
    central = make_bus(nats_server, "central")
    view = central.subscribe("system.*", name="view", scope="fleet")
    await started(central)
    await started(web)
    await web.publish(SYSTEM_STARTED, Started(version="fine"), sender="t")
    assert versions(await collect(view, 1)) == ["fine"]


async def test_a_server_that_lost_its_store_gets_streams_and_consumers_again(
    nats_server: NatsServer, make_bus: BusFactory
) -> None:
    import shutil

    central = make_bus(nats_server, "central")
    view = central.subscribe("system.*", name="view", scope="fleet")
    web = make_bus(nats_server, "web-1")
    await started(central)
    await started(web)
    await web.publish(SYSTEM_STARTED, Started(version="before"), sender="t")
    assert versions(await collect(view, 1)) == ["before"]
    nats_server.kill()
    shutil.rmtree(nats_server.store_dir)  # the server's disk was replaced
    await web.publish(SYSTEM_STARTED, Started(version="queued"), sender="t")
    nats_server.restart()
    got = await collect(view, 1, timeout=20)
    assert versions(got) == ["queued"], (central.status(), web.status())
    await web.publish(SYSTEM_STARTED, Started(version="after"), sender="t")
    assert versions(await collect(view, 1)) == ["after"]
