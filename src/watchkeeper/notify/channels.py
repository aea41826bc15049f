"""The built-in channels, and building them from :class:`NotificationSettings`::

registry = build_channels(settings.notifications, host="web01")
"""

from __future__ import annotations

from typing import TextIO

from watchkeeper.config.notifications import (
    ChannelConfig,
    ConsoleChannelConfig,
    EmailChannelConfig,
    LogChannelConfig,
    NotificationSettings,
    PagerDutyChannelConfig,
    SlackChannelConfig,
    WebhookChannelConfig,
)
from watchkeeper.notify._email import EmailChannel
from watchkeeper.notify._http import PagerDutyChannel, SlackChannel, WebhookChannel
from watchkeeper.notify._local import ConsoleChannel, LogChannel
from watchkeeper.notify.base import ChannelRegistry, NotificationChannel

__all__ = [
    "ConsoleChannel",
    "EmailChannel",
    "LogChannel",
    "PagerDutyChannel",
    "SlackChannel",
    "WebhookChannel",
    "build_channel",
    "build_channels",
]


def build_channel(config: ChannelConfig, *, console: TextIO | None = None) -> NotificationChannel:
    """One channel from its config section."""
    if isinstance(config, ConsoleChannelConfig):
        return ConsoleChannel(config.name, stream=console)
    if isinstance(config, LogChannelConfig):
        return LogChannel(config.name, logger=config.logger)
    if isinstance(config, WebhookChannelConfig):
        return WebhookChannel(
            config.name,
            config.url.get_secret_value(),
            timeout=config.timeout,
            headers=config.headers.get_secret_value(),
        )
    if isinstance(config, SlackChannelConfig):
        return SlackChannel(
            config.name,
            config.url.get_secret_value(),
            timeout=config.timeout,
            channel=config.channel,
            username=config.username,
        )
    if isinstance(config, PagerDutyChannelConfig):
        return PagerDutyChannel(
            config.name,
            config.routing_key.get_secret_value(),
            url=config.url,
            source=config.source,
            timeout=config.timeout,
        )
    if isinstance(config, EmailChannelConfig):
        return EmailChannel(
            config.name,
            host=config.host,
            port=config.port,
            sender=config.sender,
            recipients=config.recipients,
            security=config.security,
            username=config.username,
            password=config.password.get_secret_value() if config.password else None,
            subject_prefix=config.subject_prefix,
            timeout=config.timeout,
        )
    raise TypeError(f"no channel for {type(config).__name__}")


def build_channels(
    settings: NotificationSettings, *, console: TextIO | None = None
) -> ChannelRegistry:
    """Every configured channel, in order; duplicate names were refused by the settings."""
    return ChannelRegistry(build_channel(config, console=console) for config in settings.channels)
