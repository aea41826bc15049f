"""The in-memory bus: ordering, wildcards, request/reply, bounded queues, stats, and the
typed topics it insists on."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel

from watchkeeper.bus import (
    InMemoryBus,
    Message,
    RequestTimeout,
    Topic,
    TopicRegistry,
    UnknownTopic,
    WrongPayload,
    topic_matches,
)
from watchkeeper.model.events import AgentStateChange, Command, SystemStarted
from watchkeeper.model.topics import (
    AGENT_RESTARTED,
    BUILTIN,
    COMMAND,
    METRICS_SAMPLE,
    SYSTEM_STARTED,
    adopt,
    command_for,
)


class Reading(BaseModel):
    value: float
    unit: str


class I(BaseModel):  # noqa: E742 -- the tests' one-field payloads
    i: int = 0


class N(BaseModel):
    n: int = 0


class Empty(BaseModel):
    pass


class X(BaseModel):
    x: int


class Result(BaseModel):
    result: int


class Pong(BaseModel):
    pong: bool


def _bus(**kwargs: object) -> InMemoryBus:
    """A bus that knows only these tests' topics."""
    topics = TopicRegistry(
        [
            Topic("metrics.sample", I),
            Topic("tick", I),
            Topic("alert.*", N),
            Topic("alert.firing.extra", N),
            Topic("reading", Reading),
            Topic("math.double", X, reply=Result),
            Topic("nobody.here", Empty),
            Topic("a.*", Empty),
            Topic("b.z", Empty),
            Topic("ping", Empty, reply=Pong),
            Topic("x", Empty),
        ]
    )
    return InMemoryBus(topics=topics, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("alert.firing", "alert.firing", True),
        ("alert.*", "alert.firing", True),
        ("alert.*", "alert.firing.cpu", False),
        ("alert.#", "alert.firing.cpu", True),
        ("alert.#", "alert", True),
        ("*.firing", "alert.firing", True),
        ("*.firing", "alert.resolved", False),
        ("#", "anything.at.all", True),
        ("metrics.sample", "metrics", False),
        ("metrics", "metrics.sample", False),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.b.d", False),
    ],
)
def test_topic_matching(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected


async def test_each_subscriber_gets_messages_in_publish_order() -> None:
    bus = _bus()
    first = bus.subscribe("metrics.*", name="first")
    second = bus.subscribe("#", name="second")
    for i in range(50):
        await bus.publish("metrics.sample", I(i=i), sender="test")
    got_first = [(await first.get()).payload["i"] for _ in range(50)]
    got_second = [(await second.get()).payload["i"] for _ in range(50)]
    assert got_first == list(range(50))
    assert got_second == list(range(50))


async def test_wildcards_route_only_matching_topics() -> None:
    bus = _bus()
    alerts = bus.subscribe("alert.*", name="alerts")
    everything = bus.subscribe("#", name="all")
    await bus.publish("alert.firing", N(n=1), sender="t")
    await bus.publish("metrics.sample", I(i=2), sender="t")
    await bus.publish("alert.resolved", N(n=3), sender="t")
    await bus.publish("alert.firing.extra", N(n=4), sender="t")
    assert [m.payload["n"] for m in [alerts.get_nowait(), alerts.get_nowait()] if m] == [1, 3]
    assert alerts.get_nowait() is None
    assert everything.qsize() == 4


async def test_payload_models_round_trip_through_json() -> None:
    bus = _bus()
    sub = bus.subscribe("reading", name="r")
    sent = await bus.publish("reading", Reading(value=1.5, unit="%"), sender="sensor")
    received = await sub.get()
    assert received is sent
    wire = json.loads(json.dumps(received.to_dict()))
    again = Message.from_dict(wire)
    assert again.parse(Reading) == Reading(value=1.5, unit="%")
    assert again.sender == "sensor" and again.id == sent.id


async def test_request_gets_the_reply_with_the_same_correlation_id() -> None:
    bus = _bus()
    service = bus.subscribe("math.double", name="doubler")

    async def serve() -> None:
        request = await service.get()
        await bus.reply(request, Result(result=request.payload["x"] * 2), sender="doubler")

    server = asyncio.create_task(serve())
    reply = await bus.request("math.double", X(x=21), sender="asker", timeout=2)
    await server
    assert reply.payload == {"result": 42}
    assert reply.correlation_id is not None
    assert bus.stats().pending_requests == 0


async def test_request_times_out_when_nobody_answers() -> None:
    bus = _bus()
    with pytest.raises(RequestTimeout, match=r"nobody\.here"):
        await bus.request("nobody.here", Empty(), sender="asker", timeout=0.05)
    assert bus.stats().pending_requests == 0


async def test_slow_subscriber_is_bounded_and_its_drops_are_counted() -> None:
    bus = _bus()
    slow = bus.subscribe("tick", name="slow", maxsize=10)
    fast = bus.subscribe("tick", name="fast", maxsize=1000)
    for i in range(100):
        await bus.publish("tick", I(i=i), sender="t")
    # The slow one keeps only the newest ten; the fast one has them all.
    assert slow.qsize() == 10
    assert [slow.get_nowait().payload["i"] for _ in range(10)] == list(range(90, 100))  # type: ignore[union-attr]
    assert fast.qsize() == 100
    stats = {s.name: s for s in bus.stats().subscribers}
    assert stats["slow"].dropped == 90
    assert stats["fast"].dropped == 0
    assert bus.stats().dropped == 90


async def test_a_blocked_consumer_does_not_block_publishers_or_others() -> None:
    bus = _bus()
    bus.subscribe("tick", name="never-reads", maxsize=5)
    reader = bus.subscribe("tick", name="reader", maxsize=5000)
    received: list[int] = []

    async def consume() -> None:
        while len(received) < 2000:
            received.append((await reader.get()).payload["i"])

    consumer = asyncio.create_task(consume())
    for i in range(2000):
        await bus.publish("tick", I(i=i), sender="t")
    await asyncio.wait_for(consumer, 5)
    assert received == list(range(2000))


async def test_stats_history_and_unsubscribe() -> None:
    bus = _bus(history_size=3)
    sub = bus.subscribe("a.*", name="a")
    for topic in ("a.x", "a.y", "b.z", "a.x"):
        await bus.publish(topic, Empty(), sender="t")
    stats = bus.stats()
    assert stats.topics == {"a.x": 2, "a.y": 1, "b.z": 1}
    assert stats.published == 4
    assert stats.rates["a.x"] > 0
    assert [m.topic for m in bus.history()] == ["a.y", "b.z", "a.x"]
    assert [m.topic for m in bus.history(pattern="a.*")] == ["a.y", "a.x"]
    sub.close()
    await bus.publish("a.x", Empty(), sender="t")
    assert bus.stats().subscribers == []


async def test_reply_topics_do_not_grow_the_stats() -> None:
    bus = _bus()
    service = bus.subscribe("ping", name="pong")

    async def serve() -> None:
        async for request in service:
            await bus.reply(request, Pong(pong=True), sender="pong")

    server = asyncio.create_task(serve())
    for _ in range(20):
        await bus.request("ping", Empty(), sender="t", timeout=1)
    service.close()
    await server
    assert set(bus.stats().topics) == {"ping", "_reply.*"}


async def test_get_times_out_and_closed_iteration_ends() -> None:
    bus = _bus()
    sub = bus.subscribe("x", name="x")
    with pytest.raises(TimeoutError):
        await sub.get(timeout=0.01)
    with pytest.raises(ValueError):
        bus.subscribe("bad..pattern", name="bad")


# -- typed topics ------------------------------------------------------------------------------
async def test_an_unknown_topic_or_a_wrong_model_is_refused_at_once() -> None:
    bus = _bus()
    seen = bus.subscribe("#", name="all")
    with pytest.raises(UnknownTopic, match=r"no\.such"):
        await bus.publish("no.such", Empty(), sender="t")
    with pytest.raises(WrongPayload, match="carries I, not N"):
        await bus.publish("tick", N(n=1), sender="t")
    with pytest.raises(WrongPayload, match="not dict"):
        await bus.publish("tick", {"i": 1}, sender="t")  # type: ignore[type-var]
    assert seen.qsize() == 0 and bus.stats().published == 0


async def test_a_wildcard_subscriber_gets_each_topics_own_model() -> None:
    bus = InMemoryBus()
    sub = bus.subscribe("#", name="all")
    await bus.publish(SYSTEM_STARTED, SystemStarted(version="1.2"), sender="t")
    await bus.publish("agent.paused", AgentStateChange(agent="p", state="paused"), sender="t")
    first, second = sub.get_nowait(), sub.get_nowait()
    assert first is not None and second is not None
    assert first.value == SystemStarted(version="1.2")
    assert SYSTEM_STARTED.read(first).version == "1.2"
    assert isinstance(second.value, AgentStateChange)
    # Built from JSON (as a networked bus would), the value is parsed by its topic's model.
    again = Message.from_dict(json.loads(json.dumps(first.to_dict())))
    assert again.value == first.value and again.payload == {"version": "1.2"}


async def test_a_reply_must_be_the_request_topics_reply_model() -> None:
    bus = _bus()
    service = bus.subscribe("math.double", name="doubler")
    asking = asyncio.create_task(bus.request("math.double", X(x=1), sender="t", timeout=1))
    request = await service.get(timeout=1)
    with pytest.raises(WrongPayload, match="Result"):
        await bus.reply(request, Pong(pong=True), sender="doubler")
    await bus.reply(request, Result(result=2), sender="doubler")
    assert (await asking).parse(Result).result == 2


def test_every_builtin_topic_has_a_model_and_one_name() -> None:
    names = [topic.name for topic in BUILTIN]
    assert len(names) == len(set(names))
    assert all(issubclass(topic.model, BaseModel) for topic in BUILTIN)
    assert BUILTIN.resolve("metrics.sample") is METRICS_SAMPLE
    assert BUILTIN.resolve("agent.restarted") is AGENT_RESTARTED  # exact beats agent.*
    assert BUILTIN.resolve("command.sensor").reply is COMMAND.reply
    assert command_for("sensor").name == "command.sensor"
    assert "command.sensor.extra" not in BUILTIN
    with pytest.raises(ValueError, match="takes 1"):
        COMMAND.at("a", "b")


async def test_a_plugin_topic_is_declared_by_its_first_publish_outside_ours() -> None:
    bus = InMemoryBus()
    beat = adopt(bus.topics, "heartbeat.beat", N(n=1))
    await bus.publish(beat, N(n=1), sender="plugin")
    assert adopt(bus.topics, "heartbeat.beat", N(n=2)) is bus.topics.get("heartbeat.beat")
    with pytest.raises(WrongPayload):
        await bus.publish("heartbeat.beat", Empty(), sender="plugin")
    with pytest.raises(UnknownTopic, match="not one of watchkeeper's"):
        adopt(bus.topics, "alert.sneaky", N())
    with pytest.raises(WrongPayload, match="not dict"):
        adopt(bus.topics, "heartbeat.loose", {"n": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pydantic model"):
        Topic("heartbeat.loose", dict)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="carries"):
        bus.topics.add(Topic("heartbeat.beat", Empty))
    assert "heartbeat.beat" not in BUILTIN  # each bus declares for itself


async def test_commands_are_typed_requests() -> None:
    bus = InMemoryBus()
    sub = bus.subscribe("command.*", name="agent")
    await bus.publish(command_for("sensor"), Command(command="pause"), sender="t")
    message = sub.get_nowait()
    assert message is not None and message.parse(Command).command == "pause"


async def test_samples_do_not_push_events_out_of_the_history() -> None:
    # A day at a 1 s interval is 86,400 samples: what the bus keeps of them must not grow
    # with them, and the events between them must still be there to look at.
    bus = _bus(history_size=50, telemetry_history=5)
    await bus.publish("alert.firing", N(n=1), sender="t")
    for i in range(2_000):
        await bus.publish("metrics.sample", I(i=i), sender="t")
    await bus.publish("alert.resolved", N(n=2), sender="t")
    kept = bus.history(limit=500)
    assert [m.topic for m in kept if m.topic.startswith("alert.")] == [
        "alert.firing",
        "alert.resolved",
    ]
    samples = [m for m in kept if m.topic == "metrics.sample"]
    assert [m.parse(I).i for m in samples] == [1995, 1996, 1997, 1998, 1999]
    assert kept[-1].topic == "alert.resolved"  # still in publishing order


async def test_rate_stamps_keep_only_the_last_minute() -> None:
    now = [1000.0]
    bus = _bus(clock=lambda: now[0])
    for _ in range(600):  # ten minutes at 1 a second
        await bus.publish("tick", I(i=0), sender="t")
        now[0] += 1.0
    assert bus.stats().rates["tick"] == 1.0
    assert len(bus._recent["tick"]) <= 61
