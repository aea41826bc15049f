"""The in-process asyncio bus: :class:`InMemoryBus` and its bounded subscriptions.

Delivery is synchronous into each subscriber's queue, so ordering per subscriber is the
publish order, and ``publish`` never waits on a slow consumer::

    bus = InMemoryBus()
    await bus.publish(METRICS_SAMPLE, sample, sender="sensor")

Every message is about one host (``message.host``; this bus's ``host`` unless the
publisher names another) and every subscription has a *scope*: ``"local"`` (the default)
receives only messages about this host, ``"fleet"`` those about every host, and a host
id those about that host. On one machine every message is local; a networked backend
(:mod:`watchkeeper.bus.nats`) delivers other hosts' messages into the same subscriptions.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from pydantic import BaseModel, Field

from watchkeeper.bus.subjects import is_telemetry
from watchkeeper.model.envelope import Topic, TopicRegistry, WrongPayload, topic_matches
from watchkeeper.model.message import Message

__all__ = [
    "FLEET",
    "LOCAL",
    "BusStats",
    "InMemoryBus",
    "RequestTimeout",
    "SubscriberStats",
    "Subscription",
]

T = TypeVar("T", bound=BaseModel)
REPLY_PREFIX = "_reply."
_RATE_WINDOW = 60.0  # seconds a topic's published rate is counted over
_RATE_STAMPS = 10_000  # at most this many stamps kept per topic (166 a second)
#: Subscription scopes besides a host id: this host's messages, or every host's.
LOCAL = "local"
FLEET = "fleet"


def _new_id() -> str:
    return uuid.uuid4().hex


class RequestTimeout(TimeoutError):
    """No reply came within the request's timeout."""


class SubscriberStats(BaseModel):
    name: str
    pattern: str
    queued: int
    maxsize: int
    delivered: int
    dropped: int


class BusStats(BaseModel):
    published: int
    delivered: int
    dropped: int
    subscribers: list[SubscriberStats]
    topics: dict[str, int]
    rates: dict[str, float] = Field(description="messages per second over the last minute")
    pending_requests: int


class Subscription:
    """A bounded queue of the messages matching one pattern.

    Iterate it (``async for message in sub``) or ``await sub.get()``; ``close()`` (or the
    ``with`` block ending) unsubscribes. The queue never grows past ``maxsize``: when full,
    the oldest message is dropped and counted.
    """

    def __init__(
        self, bus: InMemoryBus, pattern: str, name: str, maxsize: int, scope: str = LOCAL
    ) -> None:
        self.pattern = pattern
        #: ``"fleet"`` or the one host id whose messages this subscription receives.
        self.scope = scope
        self.name = name
        self.maxsize = maxsize
        self.delivered = 0
        self.dropped = 0
        self._bus = bus
        self._queue: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    def _offer(self, message: Message) -> None:
        if len(self._queue) >= self.maxsize:
            self._queue.popleft()
            self.dropped += 1
            self._bus._dropped += 1
        self._queue.append(message)
        self.delivered += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def qsize(self) -> int:
        return len(self._queue)

    def get_nowait(self) -> Message | None:
        return self._queue.popleft() if self._queue else None

    async def get(self, timeout: float | None = None) -> Message:
        """The next message; raises ``TimeoutError`` after ``timeout`` seconds."""
        while not self._queue:
            if self.closed:
                raise asyncio.CancelledError("subscription closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:
                    await self._waiter
                else:
                    await asyncio.wait_for(self._waiter, timeout)
            finally:
                self._waiter = None
        return self._queue.popleft()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while not self.closed:
            try:
                yield await self.get()
            except asyncio.CancelledError:
                if self.closed:
                    return
                raise

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._bus._remove(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.cancel()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> SubscriberStats:
        return SubscriberStats(
            name=self.name,
            pattern=self.pattern,
            queued=len(self._queue),
            maxsize=self.maxsize,
            delivered=self.delivered,
            dropped=self.dropped,
        )


class InMemoryBus:
    """The in-process asyncio bus.

    ``topics`` is the registry of topics it accepts (a copy of watchkeeper's own,
    :data:`watchkeeper.model.topics.BUILTIN`, unless given); declare more with
    ``bus.topics.add(Topic(...))``.
    """

    def __init__(
        self,
        *,
        history_size: int = 500,
        telemetry_history: int = 20,
        clock: Callable[[], float] = time.monotonic,
        topics: TopicRegistry | None = None,
        host: str = "",
    ) -> None:
        self._host = host
        if topics is None:
            from watchkeeper.model.topics import BUILTIN

            topics = BUILTIN.copy()
        self._topics = topics
        self._subs: list[Subscription] = []
        self._route_cache: dict[str, list[Subscription]] = {}
        # What happened lately, for /api/bus: events (alerts, actions, service changes)
        # and, apart, only the last few telemetry messages. A sample is the largest and
        # most frequent message; kept among the events, 500 of them (tens of MB at a 1 s
        # interval) would push every event out and hold the memory for nothing.
        self._history: deque[Message] = deque(maxlen=history_size)
        self._telemetry: deque[Message] = deque(maxlen=telemetry_history)
        self._is_telemetry: dict[str, bool] = {}  # topic -> is it telemetry (memo)
        self._topic_counts: dict[str, int] = {}
        self._recent: dict[str, deque[float]] = {}
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._published = 0
        self._delivered_total = 0
        self._dropped = 0
        self._clock = clock

    @property
    def topics(self) -> TopicRegistry:
        """The topics this bus accepts."""
        return self._topics

    @property
    def host(self) -> str:
        """The id of the host this bus runs on ("" when none was given)."""
        return self._host

    # -- subscribing -------------------------------------------------------------------
    def subscribe(
        self, pattern: str, *, name: str, maxsize: int = 1000, scope: str = LOCAL
    ) -> Subscription:
        """A bounded queue of the messages matching ``pattern`` within ``scope``:
        ``"local"`` (about this host), ``"fleet"`` (about any host) or one host id."""
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        if not pattern or any(not word for word in pattern.split(".")):
            raise ValueError(f"bad topic pattern {pattern!r}")
        if not scope:
            raise ValueError("a subscription scope is 'local', 'fleet' or a host id")
        sub = Subscription(self, pattern, name, maxsize, self._host if scope == LOCAL else scope)
        self._subs.append(sub)
        self._route_cache.clear()
        return sub

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
            self._route_cache.clear()

    def _routes(self, topic: str) -> list[Subscription]:
        routes = self._route_cache.get(topic)
        if routes is None:
            routes = [sub for sub in self._subs if topic_matches(sub.pattern, topic)]
            if len(self._route_cache) > 4096:
                self._route_cache.clear()
            self._route_cache[topic] = routes
        return routes

    # -- publishing --------------------------------------------------------------------
    async def publish(
        self,
        topic: Topic[T] | str,
        value: T,
        *,
        sender: str,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        host: str | None = None,
    ) -> Message:
        """Publish ``value`` on ``topic`` and return the message as delivered.

        ``host`` names the host the message is about when it is not this one (a central
        analyzer's alert about the host whose sample it read). Raises
        :class:`UnknownTopic` for a topic this bus does not know and
        :class:`WrongPayload` for a value that is not the topic's model.
        """
        name = self._topics.check(topic, value).name
        message = Message(
            topic=name,
            sender=sender,
            value=value,
            correlation_id=correlation_id,
            reply_to=reply_to,
            host=self._host if host is None else host,
            origin=self._host,
        )
        self.deliver(message)
        return message

    def deliver(self, message: Message) -> None:
        """Hand an already-built message to every matching subscriber (a remote backend's
        receive side calls this too)."""
        topic = message.topic
        is_reply = topic.startswith(REPLY_PREFIX)
        # Reply topics are unique per request: count them together so stats stay bounded.
        key = "_reply.*" if is_reply else topic
        self._published += 1
        self._topic_counts[key] = self._topic_counts.get(key, 0) + 1
        stamps = self._recent.get(key)
        if stamps is None:
            stamps = self._recent[key] = deque(maxlen=_RATE_STAMPS)
        now = self._clock()
        stamps.append(now)
        while stamps[0] < now - _RATE_WINDOW:  # only the last minute counts for the rate
            stamps.popleft()
        if is_reply:
            future = self._pending.get(topic[len(REPLY_PREFIX) :])
            if future is not None and not future.done():
                future.set_result(message)
        else:
            telemetry = self._is_telemetry.get(topic)
            if telemetry is None:
                telemetry = self._is_telemetry[topic] = is_telemetry(topic)
            (self._telemetry if telemetry else self._history).append(message)
        about = message.host or self._host
        for sub in self._routes(topic):
            if sub.scope == about or sub.scope == FLEET:
                sub._offer(message)
                self._delivered_total += 1

    # -- request / reply ---------------------------------------------------------------
    async def request(
        self,
        topic: Topic[T] | str,
        value: T,
        *,
        sender: str,
        timeout: float = 5.0,
        host: str | None = None,
    ) -> Message:
        """Publish and wait for the first reply; ``RequestTimeout`` after ``timeout``.

        ``host`` addresses a command to another host (its agents answer over the
        network backend; on one machine nobody does, and the request times out)."""
        correlation_id = _new_id()
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        name = topic if isinstance(topic, str) else topic.name
        try:
            await self.publish(
                topic,
                value,
                sender=sender,
                correlation_id=correlation_id,
                reply_to=REPLY_PREFIX + correlation_id,
                host=host,
            )
            try:
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise RequestTimeout(f"no reply on {name!r} within {timeout:g}s") from None
        finally:
            self._pending.pop(correlation_id, None)

    async def reply(self, request: Message, value: BaseModel, *, sender: str) -> Message | None:
        """Answer ``request`` if it asked for a reply; returns the reply or None.

        ``value`` must be the request topic's reply model when the topic declares one.
        """
        message = self._reply_message(request, value, sender=sender)
        if message is not None:
            self.deliver(message)
        return message

    def _reply_message(self, request: Message, value: BaseModel, *, sender: str) -> Message | None:
        """The reply to ``request`` addressed to its asker, checked against the topic's
        reply model; None when the request asked for no reply. A backend sends it."""
        if not request.reply_to:
            return None
        topic = self._topics.get(request.topic)
        expected = topic.reply if topic is not None and topic.reply is not None else BaseModel
        if not isinstance(value, expected):
            raise WrongPayload(
                f"a reply on {request.topic!r} is {expected.__name__}, not {type(value).__name__}"
            )
        message = Message(
            topic=request.reply_to,
            sender=sender,
            value=value,
            correlation_id=request.correlation_id,
            host=request.origin or self._host,
            origin=self._host,
        )
        return message

    # -- looking at it -----------------------------------------------------------------
    def history(self, limit: int = 100, pattern: str = "#") -> list[Message]:
        """The most recent messages (oldest first) whose topic matches ``pattern``."""
        picked: list[Message] = []
        merged = sorted([*self._history, *self._telemetry], key=lambda m: m.timestamp)
        for message in reversed(merged):
            if topic_matches(pattern, message.topic):
                picked.append(message)
                if len(picked) >= limit:
                    break
        picked.reverse()
        return picked

    def stats(self) -> BusStats:
        now = self._clock()
        rates: dict[str, float] = {}
        for topic, stamps in self._recent.items():
            while stamps and stamps[0] < now - _RATE_WINDOW:
                stamps.popleft()
            if stamps:
                rates[topic] = round(len(stamps) / _RATE_WINDOW, 3)
        return BusStats(
            published=self._published,
            delivered=self._delivered_total,
            dropped=self._dropped,
            subscribers=[sub.stats() for sub in self._subs],
            topics=dict(self._topic_counts),
            rates=rates,
            pending_requests=len(self._pending),
        )

    # -- life ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect (a networked backend); nothing to do in memory."""

    async def stop(self) -> None:
        """Flush and disconnect (a networked backend); nothing to do in memory."""

    def status(self) -> dict[str, object]:
        """The backend's state for the status file and ``/api/status``."""
        return {"backend": "memory", "host": self._host}

    def close(self) -> None:
        """Close every subscription and fail pending requests."""
        for sub in list(self._subs):
            sub.close()
        for future in self._pending.values():
            if not future.done():
                future.cancel()
