"""The notifier's parts that hold no policy: one channel's queue and counters (a lane),
and the counters ``Notifier.stats()`` reports."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from pydantic import BaseModel

from watchkeeper.notify.base import Notification, NotificationChannel

__all__ = ["ChannelStats", "Lane", "NotifierStats", "close_quietly"]


class ChannelStats(BaseModel):
    name: str
    min_severity: str
    sent: int
    failed: int
    retries: int
    dropped: int
    queued: int
    sending: bool
    last_error: str | None
    last_error_at: float | None
    last_sent_at: float | None


class NotifierStats(BaseModel):
    enabled: bool
    channels: list[ChannelStats]
    firing_groups: int
    suppressed: int
    flapped: int
    held: int
    dropped_quiet: int
    incidents_open: int = 0
    absorbed: int = 0
    """Alert notices not sent because the alert was told through its incident."""


class Lane:
    """One channel's queue, worker state and counters."""

    def __init__(self, channel: NotificationChannel, size: int) -> None:
        self.channel = channel
        self.queue: deque[Notification] = deque()
        self.size = size
        self.wake = asyncio.Event()
        self.sending = False
        self.sent = self.failed = self.retries = self.dropped = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_sent_at: float | None = None

    def put(self, notice: Notification) -> None:
        if len(self.queue) >= self.size:
            self.queue.popleft()  # the oldest goes: the newest says more about now
            self.dropped += 1
        self.queue.append(notice)
        self.wake.set()


def close_quietly(channel: NotificationChannel) -> None:
    closer = getattr(channel, "close", None)
    if callable(closer):
        with contextlib.suppress(Exception):
            closer()
