"""The notice, the one-method channel protocol, and the registry of channels.

A channel is anything with a ``name`` and a blocking ``send(notice)`` that either
delivers or raises; the :class:`~watchkeeper.notify.Notifier` calls it in a worker
thread, with retries, so a channel never needs to think about the event loop::

    class Pager:
        name = "pager"

        def send(self, notice: Notification) -> None:
            if not page(notice.title):
                raise DeliveryError("pager refused", retryable=False)

    registry = ChannelRegistry()
    registry.register(Pager())
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.model.alerts import Alert, Severity
from watchkeeper.model.fleet import FleetIncident
from watchkeeper.model.incidents import Incident

__all__ = [
    "ChannelRegistry",
    "DeliveryError",
    "DuplicateChannelError",
    "NoticeKind",
    "Notification",
    "NotificationChannel",
]

NoticeKind = Literal["firing", "repeat", "escalated", "resolved", "event"]


class Notification(BaseModel):
    """One message for people. ``key`` groups notices about the same thing: an incident
    (``incident:<id>``), a fleet incident (``fleet:<id>``), an alert's fingerprint
    (``<host>/<fingerprint>`` for another host's alert, told by a central host), or an
    event's key such as ``remediation:restart_service:web:failed``. ``incident``,
    ``fleet_incident`` or ``alert`` is what it is about, whole (a webhook receives it as
    JSON); ``host`` is the host it is about, ``remote`` when that is another host of the
    fleet (a central host tells it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: NoticeKind
    key: str
    severity: Severity
    title: str = Field(description="one line, facts first")
    body: str = Field(description="a few plain-text lines")
    host: str
    created_at: float
    alert: Alert | None = None
    incident: Incident | None = None
    fleet_incident: FleetIncident | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    remote: bool = Field(
        False, description="about another host of the fleet, told by a central host"
    )

    @property
    def resolved(self) -> bool:
        return self.kind == "resolved"


class DeliveryError(Exception):
    """A channel could not deliver. ``retryable=False`` means trying again cannot help
    (a 4xx answer, a refused recipient); ``retry_after`` is a wait the receiver asked for."""

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@runtime_checkable
class NotificationChannel(Protocol):
    """Delivers notices somewhere. ``send`` blocks (it runs in a worker thread), returns
    when the receiver has accepted the notice, and raises (preferably ``DeliveryError``)
    when it has not. Any other exception counts as a retryable failure."""

    name: str

    def send(self, notice: Notification) -> None: ...


class DuplicateChannelError(ValueError):
    """Two channels with one name: the second would silently replace the first."""


class ChannelRegistry:
    """Channels by name; registering a name twice is an error, not an override."""

    def __init__(self, channels: Iterable[NotificationChannel] = ()) -> None:
        self._channels: dict[str, NotificationChannel] = {}
        for channel in channels:
            self.register(channel)

    def register(self, channel: NotificationChannel) -> None:
        if not isinstance(channel, NotificationChannel):
            raise TypeError(f"{channel!r} is not a notification channel (needs name and send)")
        if channel.name in self._channels:
            raise DuplicateChannelError(f"a notification channel named {channel.name!r} exists")
        self._channels[channel.name] = channel

    def get(self, name: str) -> NotificationChannel:
        return self._channels[name]

    def names(self) -> list[str]:
        return list(self._channels)

    def __contains__(self, name: object) -> bool:
        return name in self._channels

    def __iter__(self) -> Iterator[NotificationChannel]:
        return iter(list(self._channels.values()))

    def __len__(self) -> int:
        return len(self._channels)
