"""The message on the bus: who sent what on which topic, and when.

A :class:`Message` carries the topic name, the sender, the host it is about (``host``), the
host that published it (``origin``) and the topic's model; its envelope
(:meth:`Message.to_dict`) is plain JSON, so a bus that crosses machines can carry it. A
message built from JSON alone is parsed by its topic's model from
:data:`watchkeeper.model.topics.BUILTIN` when its ``value`` is first read::

    message = await bus.publish(ALERT_FIRING, alert, sender="analyzer")
    alert = ALERT_FIRING.read(message)      # typed: an Alert
    again = Message.from_dict(message.to_dict()).value
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from watchkeeper.model.topics import BUILTIN

__all__ = ["Message"]

M = TypeVar("M", bound=BaseModel)


def _new_id() -> str:
    return uuid.uuid4().hex


class Message:
    """One message on the bus: who sent what on which topic, and when.

    ``value`` is the topic's model; ``payload`` is its JSON (built once, when first
    needed). Subscribers read ``message.value`` or, typed, ``TOPIC.read(message)`` /
    ``message.parse(Model)``. Treat a message as immutable.
    """

    __slots__ = (
        "_payload",
        "_value",
        "correlation_id",
        "host",
        "id",
        "origin",
        "reply_to",
        "sender",
        "timestamp",
        "topic",
    )

    def __init__(
        self,
        *,
        topic: str,
        sender: str,
        value: BaseModel | None = None,
        payload: Mapping[str, Any] | None = None,
        id: str | None = None,
        timestamp: float | None = None,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        host: str = "",
        origin: str = "",
    ) -> None:
        self.topic = topic
        #: The host the message is about (its subject prefix in a fleet); "" on a bus that
        #: has never been given a host id.
        self.host = host
        #: The host that published it: the same as ``host`` unless another host spoke about
        #: it (a central analyzer's alert, a fleet view's approval).
        self.origin = origin or host
        self.sender = sender
        self.id = id or _new_id()
        self.timestamp = time.time() if timestamp is None else timestamp
        self.correlation_id = correlation_id
        self.reply_to = reply_to
        self._value = value
        self._payload = dict(payload) if payload is not None else None

    @property
    def payload(self) -> dict[str, Any]:
        """The value as JSON data (what a networked bus sends)."""
        if self._payload is None:
            self._payload = {} if self._value is None else self._value.model_dump(mode="json")
        return self._payload

    @property
    def value(self) -> BaseModel:
        """The parsed model; a message built from JSON is parsed by its topic's model."""
        if self._value is None:
            self._value = BUILTIN.resolve(self.topic).model.model_validate(self.payload)
        return self._value

    def parse(self, model: type[M]) -> M:
        """The value as ``model``: ``sample = message.parse(MetricsSample)``."""
        value = self._value
        if isinstance(value, model):
            return value
        parsed = model.model_validate(self.payload)
        if value is None:
            self._value = parsed
        return parsed

    def to_dict(self) -> dict[str, Any]:
        """The JSON envelope: topic, sender, ids, time and the payload."""
        return {
            "id": self.id,
            "topic": self.topic,
            "sender": self.sender,
            "timestamp": self.timestamp,
            "correlation_id": self.correlation_id,
            "reply_to": self.reply_to,
            "host": self.host,
            "origin": self.origin,
            "payload": self.payload,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], model: type[BaseModel] | None = None) -> Message:
        """A message back from its envelope; ``model`` parses the payload at once."""
        payload = dict(data.get("payload") or {})
        return cls(
            topic=str(data["topic"]),
            sender=str(data["sender"]),
            value=model.model_validate(payload) if model is not None else None,
            payload=payload,
            id=str(data["id"]),
            timestamp=float(data["timestamp"]),
            correlation_id=data.get("correlation_id"),
            reply_to=data.get("reply_to"),
            host=str(data.get("host") or ""),
            origin=str(data.get("origin") or ""),
        )

    def __repr__(self) -> str:
        return (
            f"Message(topic={self.topic!r}, sender={self.sender!r}, host={self.host!r}, "
            f"id={self.id!r})"
        )
