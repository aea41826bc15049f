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

Every message is about one host (``message.host``) and was published by one
(``message.origin``). A subscription's ``scope`` is ``"local"`` (this host's messages, the
default), ``"fleet"`` (every host's) or one host id; ``publish(..., host=H)`` and
``request(..., host=H)`` speak about or to another host. :func:`make_bus` builds the
backend ``[bus]`` asks for: this in-memory one, or NATS JetStream across machines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

from pydantic import BaseModel

from watchkeeper.bus.memory import (
    FLEET,
    LOCAL,
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

if TYPE_CHECKING:
    from watchkeeper.config import Settings

__all__ = [
    "FLEET",
    "LOCAL",
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
    "make_bus",
    "topic_matches",
]

T = TypeVar("T", bound=BaseModel)


class Bus(Protocol):
    """What agents may rely on; :class:`InMemoryBus` is the in-process backend."""

    @property
    def topics(self) -> TopicRegistry: ...

    @property
    def host(self) -> str: ...

    async def publish(
        self,
        topic: Topic[T] | str,
        value: T,
        *,
        sender: str,
        correlation_id: str | None = None,
        host: str | None = None,
    ) -> Message: ...

    def subscribe(
        self, pattern: str, *, name: str, maxsize: int = 1000, scope: str = LOCAL
    ) -> Subscription: ...

    async def request(
        self,
        topic: Topic[T] | str,
        value: T,
        *,
        sender: str,
        timeout: float = 5.0,
        host: str | None = None,
    ) -> Message: ...

    async def reply(self, request: Message, value: BaseModel, *, sender: str) -> Message | None: ...

    def stats(self) -> BusStats: ...

    def history(self, limit: int = 100, pattern: str = "#") -> list[Message]: ...


def make_bus(settings: Settings) -> InMemoryBus:
    """The bus ``[bus]`` asks for, on this host's id: in memory (the default) or NATS
    JetStream (``backend = "nats"``; imported only then). Not connected yet:
    ``await bus.start()`` connects, ``await bus.stop()`` flushes and disconnects."""
    host = settings.bus.resolved_host_id()
    if settings.bus.backend == "nats":
        from watchkeeper.bus.nats import NatsBus

        return NatsBus(settings.bus, host=host, data_dir=settings.data_dir / "bus")
    return InMemoryBus(host=host)
