"""Settings, the registry, and the console and log channels."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from notify_helpers import NOON, make_alert, resolve
from pydantic import ValidationError

from watchkeeper.config.notifications import (
    EmailChannelConfig,
    NotificationSettings,
    PagerDutyChannelConfig,
    RetrySettings,
    SlackChannelConfig,
    WebhookChannelConfig,
)
from watchkeeper.model.alerts import Severity
from watchkeeper.notify import (
    ChannelRegistry,
    ConsoleChannel,
    DuplicateChannelError,
    LogChannel,
    build_channels,
)
from watchkeeper.notify.compose import alert_notice


def test_defaults_notify_the_console_and_the_log_only() -> None:
    settings = NotificationSettings()
    assert [(c.type, c.name) for c in settings.channels] == [("console", "console"), ("log", "log")]
    assert settings.repeat_interval == 4 * 3600 and 0 <= settings.group_wait <= 10
    assert settings.quiet_hours is None and settings.send_resolved
    assert [type(c).__name__ for c in build_channels(settings)] == ["ConsoleChannel", "LogChannel"]


def test_channel_configs_are_told_apart_by_type() -> None:
    settings = NotificationSettings.model_validate(
        {
            "repeat_interval": "2h",
            "group_wait": "10s",
            "route": {"pd": "critical", "slack": "warning"},
            "retries": {"attempts": 5, "backoff_initial": "2s", "backoff_max": "1m"},
            "channels": [
                {"type": "webhook", "url": "https://example.org/hook", "timeout": "3s"},
                {"type": "slack", "url": "https://hooks.slack.com/services/T/B/X"},
                {"type": "pagerduty", "name": "pd", "routing_key": "abc123"},
                {
                    "type": "email",
                    "host": "smtp.example.org",
                    "port": 587,
                    "security": "starttls",
                    "sender": "wk@example.org",
                    "recipients": ["ops@example.org"],
                    "password": "hunter2",
                },
            ],
        }
    )
    kinds = [type(c) for c in settings.channels]
    assert kinds == [
        WebhookChannelConfig,
        SlackChannelConfig,
        PagerDutyChannelConfig,
        EmailChannelConfig,
    ]
    assert settings.repeat_interval == 7200 and settings.group_wait == 10
    assert settings.retries.backoff_max == 60 and settings.channels[0].timeout == 3  # type: ignore[union-attr]
    assert settings.min_severity("pd") == "critical" and settings.min_severity("webhook") == "info"
    dumped = repr(settings) + settings.model_dump_json()
    assert "hunter2" not in dumped and "abc123" not in dumped and "T/B/X" not in dumped
    assert sorted(c.name for c in build_channels(settings)) == ["email", "pd", "slack", "webhook"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"channels": [{"type": "console"}, {"type": "console"}]}, "defined twice"),
        ({"route": {"pagerduty": "critical"}}, "not defined: pagerduty"),
        ({"channels": [{"type": "carrier_pigeon"}]}, "does not match any of the expected tags"),
        ({"channels": [{"type": "webhook", "url": "ftp://x"}]}, "http:// or https://"),
        (
            {"channels": [{"type": "email", "host": "h", "sender": "a@b", "recipients": []}]},
            "at least 1",
        ),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "HH:MM"),
        ({"quiet_hours": {"start": "07:00", "end": "07:00"}}, "same time"),
        ({"repeat_interval": "soon"}, "not a duration"),
        ({"route": {"console": "loud"}}, "'info', 'warning' or 'critical'"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        NotificationSettings.model_validate(data)


def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    retries = RetrySettings(attempts=6, backoff_initial=1, backoff_max=5, backoff_factor=2)
    assert [retries.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_a_duplicate_channel_name_is_an_error() -> None:
    registry = ChannelRegistry([ConsoleChannel("a")])
    with pytest.raises(DuplicateChannelError, match="'a'"):
        registry.register(LogChannel("a"))
    with pytest.raises(TypeError, match="not a notification channel"):
        registry.register(object())  # type: ignore[arg-type]
    assert registry.names() == ["a"] and "a" in registry and len(registry) == 1


def test_console_and_log_channels_write_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    alert = make_alert(subject="web01\x1b[31m", severity=Severity.CRITICAL)
    firing = alert_notice(alert, "firing", host="web01", now=NOON)
    ConsoleChannel(stream=stream).send(firing)
    line = stream.getvalue()
    assert line.count("\n") == 1 and "\x1b" not in line
    assert "[critical] FIRING critical cpu_high on web01 [31m" in line
    caplog.set_level(logging.INFO, logger="watchkeeper.notify.test")
    log = LogChannel(logger="watchkeeper.notify.test")
    log.send(firing)
    log.send(alert_notice(resolve(alert, NOON + 90), "resolved", host="web01", now=NOON + 90))
    assert [(r.levelno, r.getMessage().split(" cpu_high")[0]) for r in caplog.records] == [
        (logging.ERROR, "[critical] FIRING critical"),
        (logging.INFO, "[critical] RESOLVED critical"),
    ]
