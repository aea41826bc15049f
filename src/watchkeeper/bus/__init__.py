"""The message bus: how agents talk without calling each other.

Every topic is a typed constant (:mod:`watchkeeper.model.topics`) with its model; the bus
refuses a topic it does not know and a value that is not the topic's model. A
subscription pattern matches word by word: ``*`` stands for exactly one word and ``#``
for any number of trailing words (``alert.*``, ``command.#``, ``#``)::

    sub = bus.subscribe("alert.*", name="notifier")
    await bus.publish(ALERT_FIRING, alert, sender="analyzer")
    alert = (await sub.get()).parse(Alert)

Every subscriber has its own bounded queue: one that falls behind loses its *oldest*
messages, never blocks the publisher or the others, and the loss is counted. A message's
envelope is plain JSON (:meth:`Message.to_dict`), so a networked backend can replace
:class:`InMemoryBus` without any agent changing. :class:`Bus` is what agents rely on.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from pydantic import BaseModel

from watchkeeper.bus.memory import (
    BusStats,
    InMemoryBus,
    RequestTimeout,
    SubscriberStats,
    Subscription,
)
from watchkeeper.model.envelope import (
    Topic,
    TopicError,
    TopicRegistry,
    UnknownTopic,
    WrongPayload,
    topic_matches,
)
from watchkeeper.model.message import Message

__all__ = [
    "Bus",
    "BusStats",
    "InMemoryBus",
    "Message",
    "RequestTimeout",
    "SubscriberStats",
    "Subscription",
    "Topic",
    "TopicError",
    "TopicRegistry",
    "UnknownTopic",
    "WrongPayload",
    "topic_matches",
]

T = TypeVar("T", bound=BaseModel)


class Bus(Protocol):
    """What agents may rely on; :class:`InMemoryBus` is the in-process backend."""

    @property
    def topics(self) -> TopicRegistry: ...

    async def publish(
        self,
        topic: Topic[T] | str,
        value: T,
        *,
        sender: str,
        correlation_id: str | None = None,
    ) -> Message: ...

    def subscribe(self, pattern: str, *, name: str, maxsize: int = 1000) -> Subscription: ...

    async def request(
        self,
        topic: Topic[T] | str,
        value: T,
        *,
        sender: str,
        timeout: float = 5.0,
    ) -> Message: ...

    async def reply(self, request: Message, value: BaseModel, *, sender: str) -> Message | None: ...

    def stats(self) -> BusStats: ...

    def history(self, limit: int = 100, pattern: str = "#") -> list[Message]: ...
