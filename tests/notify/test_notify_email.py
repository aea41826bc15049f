"""E-mail against a small SMTP server on loopback that speaks enough of the protocol."""

from __future__ import annotations

import asyncio

from notify_helpers import NOON, Clock, SmtpReceiver, make_alert, settle

from watchkeeper.config.notifications import NotificationSettings, RetrySettings
from watchkeeper.notify import EmailChannel, Notifier


def channel(smtp: SmtpReceiver, recipients: list[str] | None = None) -> EmailChannel:
    return EmailChannel(
        "mail",
        host="127.0.0.1",
        port=smtp.port,
        sender="watchkeeper@example.org",
        recipients=recipients or ["ops@example.org", "oncall@example.org"],
        timeout=5,
    )


def notifier_for(mail: EmailChannel) -> Notifier:
    settings = NotificationSettings(
        group_wait=0, retries=RetrySettings(attempts=3, backoff_initial=0.01)
    )
    return Notifier(settings, [mail], host="web01", clock=Clock())


async def test_an_alert_arrives_as_a_plain_text_mail(smtp: SmtpReceiver) -> None:
    notifier = notifier_for(channel(smtp))
    await notifier.start()
    try:
        alert = make_alert(subject="web01\r\nBcc: attacker@example.org")
        await notifier.alert_firing(alert)
        (message,) = await smtp.wait_for(1)
        await settle(notifier)
    finally:
        await notifier.aclose()
    assert message["Subject"] == (
        "[watchkeeper] FIRING warning cpu_high on web01 Bcc: attacker@example.org: cpu_high on"
        " web01 Bcc: attacker@example.org: CPU at 97%"
    )
    assert message["Bcc"] is None  # the line break in the subject did not become a header
    assert message["From"] == "watchkeeper@example.org"
    assert message["To"] == "ops@example.org, oncall@example.org"
    assert message["X-Watchkeeper-Key"] == alert.fingerprint
    assert smtp.envelopes == [
        ("watchkeeper@example.org", ["ops@example.org", "oncall@example.org"])
    ]
    body = message.get_content()
    assert "CPU at 97%" in body and f"Fingerprint: {alert.fingerprint}" in body
    assert "Evidence: cpu.percent=97.25" in body
    assert notifier.stats().channels[0].sent == 1


async def test_a_refused_recipient_is_a_failure_not_retried(smtp: SmtpReceiver) -> None:
    smtp.refuse = {"nobody@example.org"}
    notifier = notifier_for(channel(smtp, ["nobody@example.org"]))
    await notifier.start()
    try:
        await notifier.alert_firing(make_alert())
        await settle(notifier)
        await asyncio.sleep(0.05)
    finally:
        await notifier.aclose()
    (stats,) = notifier.stats().channels
    assert (stats.sent, stats.failed, stats.retries) == (0, 1, 0)
    assert "refused every recipient" in (stats.last_error or "")
    assert smtp.sessions == 1 and smtp.messages == []


async def test_a_dead_smtp_server_is_retried_then_given_up(dead_url: str) -> None:
    port = int(dead_url.rsplit(":", 1)[1].split("/")[0])
    mail = EmailChannel(
        "mail", host="127.0.0.1", port=port, sender="a@b.c", recipients=["d@e.f"], timeout=2
    )
    notifier = notifier_for(mail)
    await notifier.start()
    try:
        await notifier.alert_firing(make_alert())
        await settle(notifier)
    finally:
        await notifier.aclose()
    (stats,) = notifier.stats().channels
    assert (stats.failed, stats.retries) == (1, 2)
    assert stats.last_error is not None and "refused" in stats.last_error.lower()
    assert stats.last_error_at == NOON
