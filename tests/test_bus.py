"""The in-memory bus: ordering, wildcards, request/reply, bounded queues, stats."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel

from watchkeeper.bus import InMemoryBus, Message, RequestTimeout, topic_matches


class Reading(BaseModel):
    value: float
    unit: str


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
    bus = InMemoryBus()
    first = bus.subscribe("metrics.*", name="first")
    second = bus.subscribe("#", name="second")
    for i in range(50):
        await bus.publish("metrics.sample", {"i": i}, sender="test")
    got_first = [(await first.get()).payload["i"] for _ in range(50)]
    got_second = [(await second.get()).payload["i"] for _ in range(50)]
    assert got_first == list(range(50))
    assert got_second == list(range(50))


async def test_wildcards_route_only_matching_topics() -> None:
    bus = InMemoryBus()
    alerts = bus.subscribe("alert.*", name="alerts")
    everything = bus.subscribe("#", name="all")
    await bus.publish("alert.firing", {"n": 1}, sender="t")
    await bus.publish("metrics.sample", {"n": 2}, sender="t")
    await bus.publish("alert.resolved", {"n": 3}, sender="t")
    await bus.publish("alert.firing.extra", {"n": 4}, sender="t")
    assert [m.payload["n"] for m in [alerts.get_nowait(), alerts.get_nowait()] if m] == [1, 3]
    assert alerts.get_nowait() is None
    assert everything.qsize() == 4


async def test_payload_models_round_trip_through_json() -> None:
    bus = InMemoryBus()
    sub = bus.subscribe("reading", name="r")
    sent = await bus.publish("reading", Reading(value=1.5, unit="%"), sender="sensor")
    received = await sub.get()
    assert received is sent
    wire = json.loads(received.model_dump_json())
    again = Message.model_validate(wire)
    assert again.parse(Reading) == Reading(value=1.5, unit="%")
    assert again.sender == "sensor" and again.id == sent.id


async def test_request_gets_the_reply_with_the_same_correlation_id() -> None:
    bus = InMemoryBus()
    service = bus.subscribe("math.double", name="doubler")

    async def serve() -> None:
        request = await service.get()
        await bus.reply(request, {"result": request.payload["x"] * 2}, sender="doubler")

    server = asyncio.create_task(serve())
    reply = await bus.request("math.double", {"x": 21}, sender="asker", timeout=2)
    await server
    assert reply.payload == {"result": 42}
    assert reply.correlation_id is not None
    assert bus.stats().pending_requests == 0


async def test_request_times_out_when_nobody_answers() -> None:
    bus = InMemoryBus()
    with pytest.raises(RequestTimeout, match=r"nobody\.here"):
        await bus.request("nobody.here", {}, sender="asker", timeout=0.05)
    assert bus.stats().pending_requests == 0


async def test_slow_subscriber_is_bounded_and_its_drops_are_counted() -> None:
    bus = InMemoryBus()
    slow = bus.subscribe("tick", name="slow", maxsize=10)
    fast = bus.subscribe("tick", name="fast", maxsize=1000)
    for i in range(100):
        await bus.publish("tick", {"i": i}, sender="t")
    # The slow one keeps only the newest ten; the fast one has them all.
    assert slow.qsize() == 10
    assert [slow.get_nowait().payload["i"] for _ in range(10)] == list(range(90, 100))  # type: ignore[union-attr]
    assert fast.qsize() == 100
    stats = {s.name: s for s in bus.stats().subscribers}
    assert stats["slow"].dropped == 90
    assert stats["fast"].dropped == 0
    assert bus.stats().dropped == 90


async def test_a_blocked_consumer_does_not_block_publishers_or_others() -> None:
    bus = InMemoryBus()
    bus.subscribe("tick", name="never-reads", maxsize=5)
    reader = bus.subscribe("tick", name="reader", maxsize=5000)
    received: list[int] = []

    async def consume() -> None:
        while len(received) < 2000:
            received.append((await reader.get()).payload["i"])

    consumer = asyncio.create_task(consume())
    for i in range(2000):
        await bus.publish("tick", {"i": i}, sender="t")
    await asyncio.wait_for(consumer, 5)
    assert received == list(range(2000))


async def test_stats_history_and_unsubscribe() -> None:
    bus = InMemoryBus(history_size=3)
    sub = bus.subscribe("a.*", name="a")
    for topic in ("a.x", "a.y", "b.z", "a.x"):
        await bus.publish(topic, {}, sender="t")
    stats = bus.stats()
    assert stats.topics == {"a.x": 2, "a.y": 1, "b.z": 1}
    assert stats.published == 4
    assert stats.rates["a.x"] > 0
    assert [m.topic for m in bus.history()] == ["a.y", "b.z", "a.x"]
    assert [m.topic for m in bus.history(pattern="a.*")] == ["a.y", "a.x"]
    sub.close()
    await bus.publish("a.x", {}, sender="t")
    assert bus.stats().subscribers == []


async def test_reply_topics_do_not_grow_the_stats() -> None:
    bus = InMemoryBus()
    service = bus.subscribe("ping", name="pong")

    async def serve() -> None:
        async for request in service:
            await bus.reply(request, {"pong": True}, sender="pong")

    server = asyncio.create_task(serve())
    for _ in range(20):
        await bus.request("ping", {}, sender="t", timeout=1)
    service.close()
    await server
    assert set(bus.stats().topics) == {"ping", "_reply.*"}


async def test_get_times_out_and_closed_iteration_ends() -> None:
    bus = InMemoryBus()
    sub = bus.subscribe("x", name="x")
    with pytest.raises(TimeoutError):
        await sub.get(timeout=0.01)
    with pytest.raises(ValueError):
        bus.subscribe("bad..pattern", name="bad")
