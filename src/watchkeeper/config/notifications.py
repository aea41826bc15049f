"""How notifications are configured: channels, routing by severity, and storm control.

In ``watchkeeper.toml`` (every key optional; without any, notices go to the console and
the log)::

    [notifications]
    repeat_interval = "4h"        # re-notify a still-firing alert this often
    group_wait = "5s"             # wait this long before the first notice of an alert
    route = { pagerduty = "critical", slack = "warning" }

    [[notifications.channels]]
    type = "slack"
    url = "https://hooks.slack.com/services/T000/B000/XXXX"

Listing ``channels`` replaces the defaults, so name ``console`` and ``log`` again if you
want them. Durations take seconds or ``"30s"``, ``"5m"``, ``"4h"``, ``"1d"``.

Credentials (a Slack URL, a PagerDuty routing key, an SMTP password, a webhook's headers
and the userinfo and query of its URL) are secret types from :mod:`watchkeeper.model.secret`:
shown as a fixed mask everywhere, used in full only by the channel that sends.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Secret,
    SecretStr,
    field_validator,
    model_validator,
)

from watchkeeper.model.secret import SecretHeaders, SecretText, SecretURL

__all__ = [
    "ChannelConfig",
    "ConsoleChannelConfig",
    "EmailChannelConfig",
    "LogChannelConfig",
    "NotificationSettings",
    "PagerDutyChannelConfig",
    "QuietHours",
    "RetrySettings",
    "SeverityName",
    "SlackChannelConfig",
    "WebhookChannelConfig",
    "parse_duration",
]

SeverityName = Literal["info", "warning", "critical"]
"""A :class:`~watchkeeper.model.alerts.Severity` as the config file writes it."""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
#: The shortest network timeout a channel may have, in seconds.
MIN_TIMEOUT = 0.1
#: The shortest repeat interval: an alert is never re-notified more often than this.
MIN_REPEAT_INTERVAL = 1.0


def parse_duration(value: Any) -> Any:
    """``"90s"``, ``"5m"``, ``"4h"``, ``"1d"`` or a number of seconds, as seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration (try 30s, 5m, 4h or 1d)")
        return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _http_url(value: str) -> str:
    value = value.strip()
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _http_secret(value: SecretStr) -> SecretStr:
    return SecretStr(_http_url(value.get_secret_value()))


class _Config(BaseModel):
    # No NaN or infinity anywhere: every number must survive being written back as JSON.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ConsoleChannelConfig(_Config):
    """One line per notice on the terminal that runs watchkeeper."""

    type: Literal["console"] = "console"
    name: str = "console"
    stream: Literal["stderr", "stdout"] = "stderr"


class LogChannelConfig(_Config):
    """One log record per notice (level by severity) on the named logger."""

    type: Literal["log"] = "log"
    name: str = "log"
    logger: str = "watchkeeper.notify"


class WebhookChannelConfig(_Config):
    """A JSON POST of the whole notice to any URL (see docs/notifications.md)."""

    type: Literal["webhook"] = "webhook"
    name: str = "webhook"
    url: SecretURL = Field(description="its userinfo and query string are secret")
    headers: SecretHeaders = Field(
        default_factory=lambda: Secret({}),
        description="secret as a whole (Authorization and the like)",
    )
    timeout: Duration = Field(5.0, ge=MIN_TIMEOUT, le=120)


class SlackChannelConfig(_Config):
    """A Slack incoming webhook. The URL is a secret: it is never shown or logged."""

    type: Literal["slack"] = "slack"
    name: str = "slack"
    url: Annotated[SecretText, AfterValidator(_http_secret)]
    channel: str | None = None
    username: str | None = None
    timeout: Duration = Field(5.0, ge=MIN_TIMEOUT, le=120)


class PagerDutyChannelConfig(_Config):
    """PagerDuty Events API v2: a trigger per firing alert, a resolve when it clears."""

    type: Literal["pagerduty"] = "pagerduty"
    name: str = "pagerduty"
    routing_key: SecretText
    url: str = "https://events.pagerduty.com/v2/enqueue"
    source: str | None = Field(None, description="defaults to the host name")
    timeout: Duration = Field(5.0, ge=MIN_TIMEOUT, le=120)

    _check_url = field_validator("url")(_http_url)


class EmailChannelConfig(_Config):
    """Plain-text e-mail over SMTP (``security``: none, starttls or ssl)."""

    type: Literal["email"] = "email"
    name: str = "email"
    host: str
    port: int = Field(25, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password: SecretText | None = None
    sender: str = Field(min_length=3)
    recipients: list[str] = Field(min_length=1)
    subject_prefix: str = "[watchkeeper]"
    timeout: Duration = Field(10.0, ge=MIN_TIMEOUT, le=120)


ChannelConfig = Annotated[
    ConsoleChannelConfig
    | LogChannelConfig
    | WebhookChannelConfig
    | SlackChannelConfig
    | PagerDutyChannelConfig
    | EmailChannelConfig,
    Field(discriminator="type"),
]


class QuietHours(_Config):
    """A daily window (local time, may cross midnight) when only critical notices go out.

    ``mode = "hold"`` keeps the others back and sends what is still true when the window
    ends: one notice per alert still firing, and resolved notices for alerts people had
    been told about. ``mode = "drop"`` discards them (they are counted).
    """

    start: str = Field(description='"HH:MM", 24-hour local time')
    end: str = Field(description='"HH:MM", 24-hour local time')
    mode: Literal["hold", "drop"] = "hold"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value.strip()):
            raise ValueError(f"{value!r} is not a time of day as HH:MM (e.g. 22:30)")
        return value.strip()

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours start and end at the same time")
        return self

    @staticmethod
    def _minutes(hhmm: str) -> int:
        hours, minutes = hhmm.split(":")
        return int(hours) * 60 + int(minutes)

    def contains(self, moment: dt.datetime) -> bool:
        """Whether local ``moment`` falls inside the window (start included, end not)."""
        now = moment.hour * 60 + moment.minute
        start, end = self._minutes(self.start), self._minutes(self.end)
        if start < end:
            return start <= now < end
        return now >= start or now < end


class RetrySettings(_Config):
    """Delivery attempts per notice and the exponential backoff between them."""

    attempts: int = Field(4, ge=1, le=20, description="tries in all, the first included")
    backoff_initial: Duration = Field(1.0, ge=0)
    backoff_max: Duration = Field(60.0, ge=0)
    backoff_factor: float = Field(2.0, ge=1)

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the ``failed_attempts``-th failure."""
        delay = self.backoff_initial * self.backoff_factor ** max(0, failed_attempts - 1)
        return float(min(self.backoff_max, delay))


def _default_channels() -> list[ChannelConfig]:
    return [ConsoleChannelConfig(), LogChannelConfig()]


class NotificationSettings(_Config):
    """Everything about telling people; the defaults notify the console and the log."""

    enabled: bool = True
    channels: list[ChannelConfig] = Field(default_factory=_default_channels)
    route: dict[str, SeverityName] = Field(
        default_factory=dict, description="channel name -> least severity it receives"
    )
    default_min_severity: SeverityName = "info"
    repeat_interval: Duration = Field(4 * 3600.0, ge=MIN_REPEAT_INTERVAL)
    group_wait: Duration = Field(5.0, ge=0, le=300)
    send_resolved: bool = True
    quiet_hours: QuietHours | None = None
    retries: RetrySettings = RetrySettings()
    queue_size: int = Field(200, ge=1, le=100_000, description="notices waiting per channel")

    @model_validator(mode="after")
    def _names(self) -> NotificationSettings:
        seen: set[str] = set()
        for channel in self.channels:
            if channel.name in seen:
                raise ValueError(f"notification channel {channel.name!r} is defined twice")
            seen.add(channel.name)
        unknown = sorted(set(self.route) - seen)
        if unknown:
            raise ValueError(f"route names channels that are not defined: {', '.join(unknown)}")
        return self

    def min_severity(self, channel: str) -> SeverityName:
        return self.route.get(channel, self.default_min_severity)
