"""What travels on the bus: typed topics.

A :class:`Topic` names one kind of message and the pydantic model it carries; a
:class:`TopicRegistry` is the set of topics one bus accepts. Publishing a name the
registry does not know, or a value that is not the topic's model, is an error raised at
once. The message itself (:class:`watchkeeper.model.message.Message`) carries the topic
name, the sender and the model; this module does not import it, so the topics can be
declared here and the message can look its topic up there::

    ALERT_FIRING: Topic[Alert] = Topic("alert.firing", Alert, "an alert started or changed")
    message = await bus.publish(ALERT_FIRING, alert, sender="analyzer")
    alert = ALERT_FIRING.read(message)      # typed: an Alert

The constants of watchkeeper's own topics live in :mod:`watchkeeper.model.topics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

__all__ = [
    "MessageLike",
    "Topic",
    "TopicError",
    "TopicRegistry",
    "UnknownTopic",
    "WrongPayload",
    "topic_matches",
]

T = TypeVar("T", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)


class MessageLike(Protocol):
    """What :meth:`Topic.read` needs of a message: a
    :class:`~watchkeeper.model.message.Message` is one."""

    def parse(self, model: type[M]) -> M: ...


class TopicError(ValueError):
    """A publish or declaration the topic registry refuses."""


class UnknownTopic(TopicError):
    """The topic is not registered on this bus."""


class WrongPayload(TopicError):
    """The value is not the model the topic carries."""


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether ``topic`` falls under ``pattern`` (``*`` one word, ``#`` the rest)."""
    if pattern in ("#", topic):
        return True
    pwords = pattern.split(".")
    twords = topic.split(".")
    for index, word in enumerate(pwords):
        if word == "#":
            return True
        if index >= len(twords):
            return False
        if word != "*" and word != twords[index]:
            return False
    return len(pwords) == len(twords)


class Topic(Generic[T]):
    """One kind of message and its model.

    A name with a ``*`` word is a *family* (``command.*``): :meth:`at` gives the concrete
    topic for one word (``COMMAND.at("sensor")`` is ``command.sensor``). ``reply`` is the
    model of the answer when the topic is used with ``bus.request``.
    """

    __slots__ = ("description", "model", "name", "reply")

    def __init__(
        self,
        name: str,
        model: type[T],
        description: str = "",
        *,
        reply: type[BaseModel] | None = None,
    ) -> None:
        words = name.split(".")
        if not name or any(not word or word == "#" for word in words):
            raise TopicError(f"bad topic name {name!r}")
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TopicError(f"topic {name!r}: the model must be a pydantic model, not {model!r}")
        self.name = name
        self.model = model
        self.description = description
        self.reply = reply

    @property
    def is_family(self) -> bool:
        return "*" in self.name.split(".")

    def at(self, *words: str) -> Topic[T]:
        """The concrete topic of a family: ``COMMAND.at("sensor")`` → ``command.sensor``."""
        parts = self.name.split(".")
        filled = iter(words)
        name = ".".join(next(filled) if part == "*" else part for part in parts)
        if next(filled, None) is not None or "*" in name.split("."):
            raise TopicError(f"{self.name!r} takes {parts.count('*')} word(s), got {words!r}")
        return Topic(name, self.model, self.description, reply=self.reply)

    def read(self, message: MessageLike) -> T:
        """The message's value as this topic's model (typed for the caller)."""
        return message.parse(self.model)

    def __repr__(self) -> str:
        return f"Topic({self.name!r}, {self.model.__name__})"


class TopicRegistry:
    """The topics one bus accepts: exact names first, then families (``agent.*``).

    Use ``registry.add(Topic(...))`` to declare a topic of your own (a plugin's
    ``heartbeat.beat``); a name already taken by another model is an error.
    """

    def __init__(self, topics: Iterable[Topic[Any]] = ()) -> None:
        self._exact: dict[str, Topic[Any]] = {}
        self._families: list[Topic[Any]] = []
        self._resolved: dict[str, Topic[Any] | None] = {}
        for topic in topics:
            self.add(topic)

    def add(self, topic: Topic[T]) -> Topic[T]:
        """Register ``topic``; the same name with the same model again is a no-op."""
        known = self._exact.get(topic.name) or next(
            (f for f in self._families if f.name == topic.name), None
        )
        if known is not None:
            if known.model is not topic.model:
                raise TopicError(
                    f"topic {topic.name!r} carries {known.model.__name__}, "
                    f"not {topic.model.__name__}"
                )
            return topic
        if topic.is_family:
            self._families.append(topic)
        else:
            self._exact[topic.name] = topic
        self._resolved.clear()
        return topic

    def get(self, name: str) -> Topic[Any] | None:
        """The topic a concrete name belongs to, or None."""
        try:
            return self._resolved[name]
        except KeyError:
            pass
        found = self._exact.get(name)
        if found is None:
            family = next((f for f in self._families if topic_matches(f.name, name)), None)
            if family is not None:
                found = Topic(name, family.model, family.description, reply=family.reply)
        if len(self._resolved) > 4096:
            self._resolved.clear()
        self._resolved[name] = found
        return found

    def resolve(self, name: str) -> Topic[Any]:
        """Like :meth:`get`, but an unknown name raises :class:`UnknownTopic`."""
        found = self.get(name)
        if found is None:
            raise UnknownTopic(f"topic {name!r} is not registered on this bus")
        return found

    def check(self, topic: Topic[Any] | str, value: object) -> Topic[Any]:
        """The registered topic for a publish of ``value``; raises when refused."""
        name = topic if isinstance(topic, str) else topic.name
        found = self.resolve(name)
        if not isinstance(value, found.model):
            raise WrongPayload(
                f"topic {name!r} carries {found.model.__name__}, not {type(value).__name__}"
            )
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[Topic[Any]]:
        yield from self._exact.values()
        yield from self._families

    def copy(self) -> TopicRegistry:
        return TopicRegistry(self)
