"""Telling people: notification channels, routing by severity, and no alert storms.

Channels (console, log, webhook, Slack, PagerDuty, e-mail) are configured in
``[notifications]`` and routed by severity; people are told once per incident (its
opening, a rise in its severity, its resolution), not once per alert in it; an alert that
belongs to no incident is grouped by its fingerprint. Notices are repeated only after
``repeat_interval``, closed with a resolved notice, and held back (or dropped) in quiet
hours unless critical::

    notifier = Notifier(settings, build_channels(settings))
    await notifier.start()
    await notifier.incident("opened", incident)
    await notifier.alert_firing(alert)
    notifier.stats().channels[0].failed

See ``docs/notifications.md`` for every option and an example per channel.
"""

from __future__ import annotations

from watchkeeper.notify.base import (
    ChannelRegistry,
    DeliveryError,
    DuplicateChannelError,
    NoticeKind,
    Notification,
    NotificationChannel,
)
from watchkeeper.notify.channels import (
    ConsoleChannel,
    EmailChannel,
    LogChannel,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
    build_channel,
    build_channels,
)
from watchkeeper.notify.dispatcher import ChannelStats, Notifier, NotifierStats

__all__ = [
    "ChannelRegistry",
    "ChannelStats",
    "ConsoleChannel",
    "DeliveryError",
    "DuplicateChannelError",
    "EmailChannel",
    "LogChannel",
    "NoticeKind",
    "Notification",
    "NotificationChannel",
    "Notifier",
    "NotifierStats",
    "PagerDutyChannel",
    "SlackChannel",
    "WebhookChannel",
    "build_channel",
    "build_channels",
]
