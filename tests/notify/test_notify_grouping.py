"""No storms, against a real HTTP receiver and an injected clock: one notice per
fingerprint, a repeat interval, resolved notices, escalation, quiet hours."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from notify_helpers import NOON, Clock, HttpReceiver, make_alert, resolve, settle, utc_local

from watchkeeper.config.notifications import NotificationSettings, QuietHours, RetrySettings
from watchkeeper.model.alerts import Severity
from watchkeeper.notify import Notifier, WebhookChannel

HOUR = 3600.0
FAST = RetrySettings(attempts=2, backoff_initial=0.01)


class Harness:
    """A notifier with two webhook channels on one receiver: ``all`` and ``pager``
    (critical only), on a clock the test moves."""

    def __init__(self, receiver: HttpReceiver, **options: object) -> None:
        self.receiver = receiver
        self.clock = Clock()
        settings = NotificationSettings(
            channels=[
                {"type": "webhook", "name": "all", "url": receiver.url},
                {"type": "webhook", "name": "pager", "url": receiver.url + "/pager"},
            ],
            route={"pager": "critical"},
            retries=FAST,
            **options,  # type: ignore[arg-type]
        )
        channels = [WebhookChannel(c.name, c.url.get_secret_value()) for c in settings.channels]  # type: ignore[union-attr]
        self.notifier = Notifier(
            settings, channels, host="web01", clock=self.clock, local_time=utc_local
        )

    async def sent(self) -> list[tuple[str, str, str]]:
        """(channel, kind, key) of every notice delivered so far, in order."""
        await settle(self.notifier)
        return [
            ("pager" if r.path.endswith("/pager") else "all", r.body["kind"], r.body["key"])
            for r in self.receiver.requests
        ]

    async def by_channel(self) -> dict[str, list[str]]:
        """The kinds each channel delivered, in its own order (channels run side by side)."""
        out: dict[str, list[str]] = {}
        for channel, kind, _ in await self.sent():
            out.setdefault(channel, []).append(kind)
        return out


MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make(receiver: HttpReceiver) -> AsyncIterator[MakeHarness]:
    made: list[Harness] = []

    async def build(**options: object) -> Harness:
        harness = Harness(receiver, **options)
        await harness.notifier.start()
        made.append(harness)
        return harness

    yield build
    for harness in made:
        await harness.notifier.aclose()
        harness.notifier.close_channels()


async def test_one_notice_per_fingerprint_however_often_it_fires(make: MakeHarness) -> None:
    h = await make(group_wait=0)
    cpu, disk = make_alert("cpu_high"), make_alert("disk_full", "/var")
    for _ in range(5):
        await h.notifier.alert_firing(cpu)
    await h.notifier.alert_firing(disk)
    assert await h.sent() == [
        ("all", "firing", cpu.fingerprint),
        ("all", "firing", disk.fingerprint),
    ]
    assert h.notifier.stats().suppressed == 4


async def test_group_wait_swallows_a_flap(make: MakeHarness) -> None:
    h = await make(group_wait=30)
    flappy, lasting = make_alert("flappy"), make_alert("lasting")
    await h.notifier.alert_firing(flappy)
    await h.notifier.alert_firing(lasting)
    h.clock.advance(10)
    assert await h.notifier.pump() == 0
    await h.notifier.alert_resolved(resolve(flappy, h.clock.now))
    h.clock.advance(25)
    assert await h.notifier.pump() == 1
    assert await h.sent() == [("all", "firing", lasting.fingerprint)]
    assert h.notifier.stats().flapped == 1


async def test_a_firing_alert_is_repeated_only_after_the_repeat_interval(make: MakeHarness) -> None:
    h = await make(group_wait=0, repeat_interval="4h")
    alert = make_alert()
    await h.notifier.alert_firing(alert)
    h.clock.advance(4 * HOUR - 1)
    await h.notifier.alert_firing(alert)  # the analyzer saying it again changes nothing
    assert await h.notifier.pump() == 0
    h.clock.advance(1)
    assert await h.notifier.pump() == 1
    h.clock.advance(2 * HOUR)
    assert await h.notifier.pump() == 0
    h.clock.advance(2 * HOUR)
    assert await h.notifier.pump() == 1
    key = alert.fingerprint
    assert await h.sent() == [
        ("all", "firing", key),
        ("all", "repeat", key),
        ("all", "repeat", key),
    ]
    titles = [r.body["title"] for r in h.receiver.requests]
    assert titles[1].startswith("STILL FIRING warning cpu_high")


async def test_resolved_goes_to_every_channel_that_was_told(make: MakeHarness) -> None:
    h = await make(group_wait=0)
    alert = make_alert(severity=Severity.WARNING)
    await h.notifier.alert_firing(alert)
    h.clock.advance(60)
    critical = alert.model_copy(update={"severity": Severity.CRITICAL})
    await h.notifier.alert_firing(critical)  # escalation is told at once, to the pager too
    h.clock.advance(60)
    calmer = critical.model_copy(update={"severity": Severity.WARNING})
    await h.notifier.alert_firing(calmer)
    h.clock.advance(60)
    await h.notifier.alert_resolved(resolve(calmer, h.clock.now))
    assert {key for _, _, key in await h.sent()} == {alert.fingerprint}
    assert await h.by_channel() == {
        "all": ["firing", "escalated", "resolved"],
        "pager": ["escalated", "resolved"],
    }
    resolved = h.receiver.requests[-1].body
    assert resolved["title"].startswith("RESOLVED warning cpu_high on web01")
    assert "after 3m 0s" in resolved["body"]


async def test_an_unresolved_alert_of_an_unknown_fingerprint_is_ignored(make: MakeHarness) -> None:
    h = await make(group_wait=0)
    await h.notifier.alert_resolved(resolve(make_alert(), NOON))
    assert await h.sent() == []


async def test_a_restart_does_not_re_notify_an_alert_people_just_heard_about(
    make: MakeHarness,
) -> None:
    h = await make(group_wait=0, repeat_interval="1h")
    recent, stale = make_alert("recent"), make_alert("stale")
    await h.notifier.alert_firing(recent, notified_at=NOON - 600)
    await h.notifier.alert_firing(stale, notified_at=NOON - 2 * HOUR)
    assert await h.sent() == [("all", "firing", stale.fingerprint)]
    h.clock.advance(HOUR - 600)
    await h.notifier.pump()
    assert (await h.sent())[-1] == ("all", "repeat", recent.fingerprint)


async def test_escalated_topic_is_told_once(make: MakeHarness) -> None:
    h = await make(group_wait=0)
    alert = make_alert()
    await h.notifier.alert_firing(alert)
    escalated = alert.model_copy(update={"escalated": True})
    await h.notifier.alert_escalated(escalated)
    await h.notifier.alert_escalated(escalated)
    key = alert.fingerprint
    assert await h.sent() == [("all", "firing", key), ("all", "escalated", key)]


QUIET = {"start": "22:00", "end": "07:00"}


async def test_quiet_hours_hold_non_critical_notices_until_morning(make: MakeHarness) -> None:
    h = await make(group_wait=0, repeat_interval="12h", quiet_hours={**QUIET, "mode": "hold"})
    told_before = make_alert("told_before")
    await h.notifier.alert_firing(told_before)  # at noon: told at once
    assert await h.sent() == [("all", "firing", told_before.fingerprint)]
    h.clock.now = NOON + 11 * HOUR  # 23:00
    warning, critical = make_alert("warn"), make_alert("crit", severity=Severity.CRITICAL)
    await h.notifier.alert_firing(warning)
    await h.notifier.alert_firing(critical)  # critical wakes people, quiet hours or not
    await h.notifier.alert_resolved(resolve(told_before, h.clock.now))
    sent = await h.sent()
    assert sent[0] == ("all", "firing", told_before.fingerprint)
    assert sorted(sent[1:]) == [
        ("all", "firing", critical.fingerprint),
        ("pager", "firing", critical.fingerprint),
    ]
    assert h.notifier.stats().held == 2  # the warning's first notice, told_before's resolve
    next_due = h.notifier.grouper.next_due(h.clock.now)
    assert next_due is None or next_due > h.clock.now  # held notices do not keep it busy
    h.clock.now = NOON + 18 * HOUR  # 06:00, still quiet
    assert await h.notifier.pump() == 0
    h.clock.now = NOON + 19 * HOUR  # 07:00 the next day
    await h.notifier.pump()
    sent = await h.sent()
    assert sorted(sent[3:]) == [
        ("all", "firing", warning.fingerprint),
        ("all", "resolved", told_before.fingerprint),
    ]
    assert h.notifier.stats().held == 0


async def test_quiet_hours_can_drop_instead(make: MakeHarness) -> None:
    h = await make(group_wait=0, repeat_interval="12h", quiet_hours={**QUIET, "mode": "drop"})
    h.clock.now = NOON + 13 * HOUR  # 01:00
    warning = make_alert("warn")
    await h.notifier.alert_firing(warning)
    await h.notifier.event("remediation:x", Severity.WARNING, "restart failed")
    h.clock.now = NOON + 20 * HOUR  # 08:00
    await h.notifier.pump()
    assert await h.sent() == []
    assert h.notifier.stats().dropped_quiet == 2
    # Dropped counts as told: the next word is the repeat, a repeat interval later.
    h.clock.now = NOON + 25 * HOUR  # 13:00
    await h.notifier.pump()
    assert await h.sent() == [("all", "repeat", warning.fingerprint)]


async def test_events_are_not_repeated_within_the_repeat_interval(make: MakeHarness) -> None:
    h = await make(repeat_interval="1h")
    assert await h.notifier.event("agent:x:crash-loop", Severity.WARNING, "agent x crash-looping")
    assert not await h.notifier.event("agent:x:crash-loop", Severity.WARNING, "again")
    h.clock.advance(HOUR)
    assert await h.notifier.event("agent:x:crash-loop", Severity.WARNING, "still")
    assert await h.notifier.event("page", Severity.CRITICAL, "critical event")
    sent = await h.sent()
    assert [s for s in sent if s[2] == "agent:x:crash-loop"] == [
        ("all", "event", "agent:x:crash-loop")
    ] * 2
    assert sorted(s[0] for s in sent if s[2] == "page") == ["all", "pager"]


def test_quiet_hours_window_crosses_midnight() -> None:
    hours = QuietHours(start="22:30", end="06:15")

    def at(h: int, m: int) -> dt.datetime:
        moment: dt.datetime = utc_local(NOON + (h - 12) * HOUR + m * 60)
        return moment

    assert hours.contains(at(22, 30)) and hours.contains(at(23, 59)) and hours.contains(at(6, 14))
    assert not hours.contains(at(6, 15)) and not hours.contains(at(12, 0))
    daytime = QuietHours(start="12:00", end="13:00")
    assert daytime.contains(at(12, 30)) and not daytime.contains(at(13, 0))
