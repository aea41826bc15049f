"""Webhook, Slack and PagerDuty channels against a real loopback HTTP receiver:
delivery, retries on 500, giving up after N, payload shapes, dead endpoints."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from notify_helpers import NOON, Clock, HttpReceiver, make_alert, resolve, settle

from watchkeeper.config.notifications import NotificationSettings, RetrySettings
from watchkeeper.model.alerts import Severity
from watchkeeper.notify import Notifier, PagerDutyChannel, SlackChannel, WebhookChannel
from watchkeeper.notify.base import Notification

FAST = RetrySettings(attempts=3, backoff_initial=0.01, backoff_max=0.05)

MakeNotifier = Callable[..., Notifier]


@pytest.fixture
async def make_notifier() -> AsyncIterator[MakeNotifier]:
    made: list[Notifier] = []

    def make(channels: list[Any], **options: Any) -> Notifier:
        on_give_up = options.pop("on_give_up", None)
        clock = options.pop("clock", Clock())
        options.setdefault("retries", FAST)
        settings = NotificationSettings(group_wait=0, **options)  # type: ignore[arg-type]
        notifier = Notifier(settings, channels, host="web01", clock=clock, on_give_up=on_give_up)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        await notifier.aclose()
        notifier.close_channels()


async def test_a_webhook_receives_the_whole_notice_as_json(
    receiver: HttpReceiver, make_notifier: MakeNotifier
) -> None:
    notifier = make_notifier([WebhookChannel("hook", receiver.url, headers={"X-Token": "t0k"})])
    await notifier.start()
    alert = make_alert()
    await notifier.alert_firing(alert)
    (request,) = await receiver.wait_for(1)
    body = request.body
    assert request.path == "/hook/secret-token"
    assert request.headers["X-Token"] == "t0k"
    assert request.headers["Content-Type"] == "application/json"
    assert body["version"] == 1 and body["source"] == "watchkeeper"
    assert (body["kind"], body["key"], body["severity"]) == ("firing", alert.fingerprint, "warning")
    assert body["title"].startswith("FIRING warning cpu_high on web01")
    assert body["alert"]["id"] == alert.id and body["host"] == "web01"
    assert "Fingerprint: " + alert.fingerprint in body["body"]
    await settle(notifier)
    assert notifier.stats().channels[0].sent == 1


async def test_a_500_is_retried_with_backoff_until_it_is_accepted(
    receiver: HttpReceiver, make_notifier: MakeNotifier
) -> None:
    receiver.script = [500, 503]
    notifier = make_notifier([WebhookChannel("hook", receiver.url)])
    await notifier.start()
    await notifier.alert_firing(make_alert())
    requests = await receiver.wait_for(3)
    await settle(notifier)
    assert len({str(r.body) for r in requests}) == 1  # the same notice each time
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    assert all(gap >= 0.009 for gap in gaps)  # it waited between attempts
    (stats,) = notifier.stats().channels
    assert (stats.sent, stats.retries, stats.failed) == (1, 2, 0)
    assert (
        stats.last_error
        == f"http://127.0.0.1:{receiver.server.server_address[1]} answered HTTP 503"
    )


async def test_it_gives_up_after_n_attempts_and_counts_the_failure(
    receiver: HttpReceiver, make_notifier: MakeNotifier
) -> None:
    receiver.default = 500
    gave_up: list[tuple[str, str, str]] = []

    async def on_give_up(channel: str, notice: Notification, error: str) -> None:
        gave_up.append((channel, notice.key, error))

    notifier = make_notifier([WebhookChannel("hook", receiver.url)], on_give_up=on_give_up)
    await notifier.start()
    alert = make_alert()
    await notifier.alert_firing(alert)
    await receiver.wait_for(3)
    await settle(notifier)
    await asyncio.sleep(0.1)
    assert len(receiver.requests) == 3  # attempts=3, and not one more
    (stats,) = notifier.stats().channels
    assert (stats.sent, stats.failed, stats.retries) == (0, 1, 2)
    assert "HTTP 500" in (stats.last_error or "") and stats.last_error_at == NOON
    assert gave_up == [("hook", alert.fingerprint, stats.last_error)]
    assert "secret-token" not in (stats.last_error or "")  # the URL's secret stays out


async def test_a_4xx_answer_is_not_retried(
    receiver: HttpReceiver, make_notifier: MakeNotifier
) -> None:
    receiver.default = 400
    notifier = make_notifier([WebhookChannel("hook", receiver.url)])
    await notifier.start()
    await notifier.alert_firing(make_alert())
    await receiver.wait_for(1)
    await settle(notifier)
    await asyncio.sleep(0.1)
    assert len(receiver.requests) == 1
    assert notifier.stats().channels[0].failed == 1


async def test_a_dead_endpoint_only_delays_its_own_channel(
    receiver: HttpReceiver, dead_url: str, make_notifier: MakeNotifier
) -> None:
    slow_retries = RetrySettings(attempts=3, backoff_initial=0.3, backoff_max=0.3)
    dead = WebhookChannel("dead", dead_url, timeout=2)
    live = WebhookChannel("live", receiver.url)
    notifier = make_notifier([dead, live], retries=slow_retries)
    await notifier.start()
    await notifier.alert_firing(make_alert())  # returns before any delivery is tried
    await notifier.event("ping", Severity.WARNING, "second notice")
    await receiver.wait_for(2)  # the live channel delivered both meanwhile
    while {c.name: c for c in notifier.stats().channels}["live"].sending:
        await asyncio.sleep(0.005)
    stats = {c.name: c for c in notifier.stats().channels}
    assert stats["live"].sent == 2
    assert stats["dead"].sent == 0 and stats["dead"].failed == 0  # still retrying the first
    await settle(notifier)
    stats = {c.name: c for c in notifier.stats().channels}
    assert (stats["dead"].failed, stats["dead"].retries) == (2, 4)
    assert "refused" in (stats["dead"].last_error or "").lower()


def test_slack_payload_is_an_incoming_webhook_message() -> None:
    channel = SlackChannel("slack", "https://hooks.example/x", channel="#ops", username="wk")
    alert = make_alert(subject="<web01> & co", severity=Severity.CRITICAL)
    from watchkeeper.notify.compose import alert_notice

    payload = channel.payload(alert_notice(alert, "firing", host="web01", now=NOON))
    assert payload["channel"] == "#ops" and payload["username"] == "wk"
    assert payload["text"] == (
        "FIRING critical cpu_high on &lt;web01&gt; &amp; co: cpu_high on &lt;web01&gt; &amp; co:"
        " CPU at 97%"
    )
    header, section, context = payload["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert section["text"]["type"] == "mrkdwn" and "&lt;web01&gt;" in section["text"]["text"]
    assert "<web01>" not in section["text"]["text"]
    assert context["elements"][0]["text"].startswith("critical · web01 · ")


async def test_slack_delivery_over_http(
    receiver: HttpReceiver, make_notifier: MakeNotifier
) -> None:
    notifier = make_notifier([SlackChannel("slack", receiver.url)])
    await notifier.start()
    await notifier.alert_firing(make_alert())
    (request,) = await receiver.wait_for(1)
    assert set(request.body) == {"text", "blocks"}
    assert [b["type"] for b in request.body["blocks"]] == ["header", "section", "context"]


async def test_pagerduty_triggers_then_resolves_with_the_fingerprint_as_dedup_key(
    receiver: HttpReceiver, make_notifier: MakeNotifier
) -> None:
    receiver.default = 202
    clock = Clock()
    pagerduty = PagerDutyChannel("pd", "R0UT1NGKEY", url=receiver.url, source="web01.example")
    notifier = make_notifier([pagerduty], clock=clock)
    await notifier.start()
    alert = make_alert(severity=Severity.CRITICAL)
    await notifier.alert_firing(alert)
    clock.advance(120)
    await notifier.alert_resolved(resolve(alert, clock.now))
    trigger, resolved = (r.body for r in await receiver.wait_for(2))
    assert trigger["routing_key"] == "R0UT1NGKEY"
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == alert.fingerprint
    assert trigger["client"] == "watchkeeper"
    payload = trigger["payload"]
    assert payload["summary"].startswith("FIRING critical cpu_high on web01")
    assert (payload["source"], payload["severity"]) == ("web01.example", "critical")
    assert dt.datetime.fromisoformat(payload["timestamp"]).timestamp() == NOON
    assert (payload["component"], payload["group"], payload["class"]) == (
        "web01",
        "cpu_high",
        "cpu_high",
    )
    assert payload["custom_details"]["evidence"] == {"cpu.percent": 97.25}
    assert resolved == {
        "routing_key": "R0UT1NGKEY",
        "event_action": "resolve",
        "dedup_key": alert.fingerprint,
    }


async def test_a_429_waits_as_long_as_the_receiver_asks(
    receiver: HttpReceiver, make_notifier: MakeNotifier
) -> None:
    receiver.script = [429]
    receiver.headers = {"Retry-After": "0.2"}
    retries = RetrySettings(attempts=3, backoff_initial=0.01, backoff_max=1.0)
    notifier = make_notifier([WebhookChannel("hook", receiver.url)], retries=retries)
    await notifier.start()
    await notifier.alert_firing(make_alert())
    first, second = await receiver.wait_for(2)
    assert second.at - first.at >= 0.19
    await settle(notifier)
    assert notifier.stats().channels[0].sent == 1
