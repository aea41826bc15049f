"""One notice per incident, not per alert, against a real HTTP receiver on loopback and an
injected clock: opened (title, root cause, members and remedies root-first), a rise in
severity, resolved; members firing or clearing inside an open incident say nothing; the
throttling (group wait, repeat interval) and quiet hours of alert notices still apply."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from notify_helpers import NOON, Clock, HttpReceiver, make_alert, resolve, settle, utc_local

from watchkeeper.config.notifications import NotificationSettings, RetrySettings
from watchkeeper.model.alerts import Alert, Severity, SuggestedAction
from watchkeeper.model.incidents import Incident, IncidentMember, IncidentState
from watchkeeper.notify import Notifier, WebhookChannel

HOUR = 3600.0


def member(alert: Alert, role: str) -> IncidentMember:
    return IncidentMember(
        alert_id=alert.id,
        fingerprint=alert.fingerprint,
        rule=alert.rule,
        subject=alert.subject,
        severity=alert.severity,
        summary=alert.summary,
        role=role,
    )


DISK = make_alert("disk_full", "/", severity=Severity.WARNING)
DB = make_alert("service_down", "db", severity=Severity.WARNING)
WEB = make_alert("service_unhealthy", "web", severity=Severity.WARNING)


def disk_incident(severity: Severity = Severity.WARNING, **changes: Any) -> Incident:
    base = Incident(
        id="inc-disk",
        key="disk:/",
        title="/ is full: db and web fail",
        severity=severity,
        root=DISK.fingerprint,
        root_cause="/ is full, so the database cannot write",
        confidence=0.8,
        # Listed effects first on purpose: the notice puts the root first itself.
        members=[member(WEB, "effect"), member(DB, "effect"), member(DISK, "root")],
        remedies=[
            SuggestedAction(action="clean_directory", target="/var/tmp", target_kind="path"),
            SuggestedAction(action="restart_service", target="db", target_kind="service"),
            SuggestedAction(action="restart_service", target="web", target_kind="service"),
        ],
        opened_at=NOON,
        updated_at=NOON,
    )
    return base.model_copy(update=changes)


def resolved(incident: Incident, at: float) -> Incident:
    return incident.model_copy(
        update={"state": IncidentState.RESOLVED, "resolved_at": at, "updated_at": at}
    )


class Harness:
    def __init__(
        self, receiver: HttpReceiver, *, expect_incidents: bool = False, **options: Any
    ) -> None:
        self.receiver = receiver
        self.clock = Clock()
        settings = NotificationSettings.model_validate(
            {
                "channels": [
                    {"type": "webhook", "name": "all", "url": receiver.url},
                    {"type": "webhook", "name": "pager", "url": receiver.url + "/pager"},
                ],
                "route": {"pager": "critical"},
                **options,
            }
        ).model_copy(update={"retries": RetrySettings(attempts=2, backoff_initial=0.01)})
        channels = [
            WebhookChannel("all", receiver.url),
            WebhookChannel("pager", receiver.url + "/pager"),
        ]
        self.notifier = Notifier(
            settings,
            channels,
            host="web01",
            clock=self.clock,
            local_time=utc_local,
            expect_incidents=expect_incidents,
        )

    async def sent(self) -> list[tuple[str, str, str]]:
        await settle(self.notifier)
        return [
            ("pager" if r.path.endswith("/pager") else "all", r.body["kind"], r.body["key"])
            for r in self.receiver.requests
        ]

    async def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.notifier.pump()


MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make(receiver: HttpReceiver) -> AsyncIterator[MakeHarness]:
    made: list[Harness] = []

    async def build(**options: Any) -> Harness:
        harness = Harness(receiver, **options)
        await harness.notifier.start()
        made.append(harness)
        return harness

    yield build
    for harness in made:
        await harness.notifier.aclose()
        harness.notifier.close_channels()


KEY = "incident:inc-disk"


async def test_three_alerts_of_one_incident_are_one_notice_then_one_rise_then_one_end(
    make: MakeHarness,
) -> None:
    h = await make(group_wait="5s")
    # The analyzer's order: the alerts, then the incident that groups them.
    for alert in (DISK, DB, WEB):
        await h.notifier.alert_firing(alert)
    await h.notifier.incident("opened", disk_incident())
    await h.wait(5)
    assert await h.sent() == [("all", "firing", KEY)]
    opened = h.receiver.requests[0].body
    assert opened["title"] == "INCIDENT warning: / is full: db and web fail (3 alerts)"
    body = opened["body"].splitlines()
    assert "Probable root cause: / is full, so the database cannot write (confidence 80%)" in body
    alerts = [line for line in body if line.startswith("  [")]
    assert [line.split()[0] for line in alerts] == ["[root]", "[effect]", "[effect]"]
    assert "disk_full on /" in alerts[0]
    remedies = [line.strip() for line in body if line.strip()[:2] in ("1.", "2.", "3.")]
    assert remedies == [
        "1. clean_directory /var/tmp",
        "2. restart_service db",
        "3. restart_service web",
    ]
    assert opened["incident"]["id"] == "inc-disk"  # the webhook gets the incident whole

    # Inside the open incident, members coming and going say nothing on their own.
    await h.notifier.alert_resolved(resolve(WEB, h.clock.now))
    await h.notifier.alert_firing(WEB)
    await h.notifier.alert_firing(DB.model_copy(update={"severity": Severity.CRITICAL}))
    await h.notifier.incident("updated", disk_incident())  # nothing new for people
    await h.wait(60)
    assert await h.sent() == [("all", "firing", KEY)]

    # The incident itself turning critical is told at once, to the pager too.
    await h.notifier.incident("updated", disk_incident(Severity.CRITICAL))
    await h.wait(60)
    await h.notifier.incident("resolved", resolved(disk_incident(Severity.CRITICAL), h.clock.now))
    for alert in (DISK, DB, WEB):
        await h.notifier.alert_resolved(resolve(alert, h.clock.now))
    await h.wait(60)
    sent = await h.sent()
    assert sent[0] == ("all", "firing", KEY)
    assert sorted(sent[1:]) == [
        ("all", "escalated", KEY),
        ("all", "resolved", KEY),
        ("pager", "escalated", KEY),
        ("pager", "resolved", KEY),
    ]
    last = h.receiver.requests[-1].body
    assert (
        last["title"].startswith("RESOLVED critical: / is full") and "after 2m 5s" in last["body"]
    )
    assert h.notifier.stats().absorbed >= 3


async def test_the_incident_may_come_first_and_its_alerts_after(make: MakeHarness) -> None:
    h = await make(group_wait=0)
    await h.notifier.incident("opened", disk_incident())
    for alert in (DISK, DB, WEB):
        await h.notifier.alert_firing(alert)
    await h.wait(30)
    assert await h.sent() == [("all", "firing", KEY)]


async def test_with_no_group_wait_an_alert_waits_briefly_for_its_incident(
    make: MakeHarness,
) -> None:
    h = await make(group_wait=0)
    await h.notifier.incident("opened", disk_incident())  # incidents are being made
    assert await h.sent() == [("all", "firing", KEY)]
    cpu = make_alert("cpu_high", "host", severity=Severity.WARNING)
    await h.notifier.alert_firing(cpu)  # arrives a moment before the incident naming it
    assert await h.notifier.pump() == 0
    lone = Incident(
        id="inc-cpu",
        key="host",
        title="CPU high",
        severity=Severity.WARNING,
        root=cpu.fingerprint,
        members=[member(cpu, "root")],
        opened_at=NOON,
        updated_at=NOON,
    )
    await h.notifier.incident("opened", lone)
    await h.wait(10)
    assert await h.sent() == [("all", "firing", KEY), ("all", "firing", "incident:inc-cpu")]


async def test_an_alert_in_no_incident_is_still_told_alone(make: MakeHarness) -> None:
    h = await make(group_wait=0)
    await h.notifier.incident("opened", disk_incident())
    other = make_alert("memory_high", "host")
    await h.notifier.alert_firing(other)
    await h.wait(5)  # its incident never came: after the grace it is told on its own
    assert await h.sent() == [("all", "firing", KEY), ("all", "firing", other.fingerprint)]


async def test_an_incident_over_within_the_group_wait_is_a_flap(make: MakeHarness) -> None:
    h = await make(group_wait="30s")
    await h.notifier.incident("opened", disk_incident())
    await h.wait(10)
    await h.notifier.incident("resolved", resolved(disk_incident(), h.clock.now))
    await h.wait(60)
    assert await h.sent() == []
    assert h.notifier.stats().flapped == 1


async def test_a_still_open_incident_is_repeated_after_the_repeat_interval(
    make: MakeHarness,
) -> None:
    h = await make(group_wait=0, repeat_interval="4h")
    await h.notifier.incident("opened", disk_incident())
    await h.wait(4 * HOUR - 1)
    await h.notifier.incident("updated", disk_incident())
    await h.wait(1)
    assert await h.sent() == [("all", "firing", KEY), ("all", "repeat", KEY)]
    assert h.receiver.requests[1].body["title"].startswith("STILL OPEN warning")


async def test_a_restart_does_not_re_notify_an_incident_people_just_heard_about(
    make: MakeHarness,
) -> None:
    h = await make(group_wait=0, repeat_interval="1h")
    await h.notifier.incident("opened", disk_incident(), notified_at=NOON - 600)
    await h.wait(60)
    assert await h.sent() == []


async def test_an_escalated_member_escalates_its_incident_once(make: MakeHarness) -> None:
    h = await make(group_wait=0)
    await h.notifier.incident("opened", disk_incident())
    louder = DB.model_copy(update={"escalated": True})
    await h.notifier.alert_escalated(louder)
    await h.notifier.alert_escalated(louder)
    assert await h.sent() == [("all", "firing", KEY), ("all", "escalated", KEY)]


async def test_quiet_hours_hold_a_warning_incident_but_not_a_critical_one(
    make: MakeHarness,
) -> None:
    h = await make(group_wait=0, quiet_hours={"start": "22:00", "end": "07:00", "mode": "drop"})
    h.clock.now = NOON + 13 * HOUR  # 01:00
    await h.notifier.incident("opened", disk_incident())
    await h.wait(60)
    assert await h.sent() == []
    assert h.notifier.stats().dropped_quiet == 1
    critical = disk_incident(Severity.CRITICAL, id="inc-2", key="disk:/data")
    await h.notifier.incident("opened", critical)
    assert sorted(await h.sent()) == [
        ("all", "firing", "incident:inc-2"),
        ("pager", "firing", "incident:inc-2"),
    ]


async def test_untrusted_names_in_an_incident_are_cleaned(make: MakeHarness) -> None:
    h = await make(group_wait=0)
    evil = make_alert("service_down", "web\x1b[2J\x07\r\nFIRING fake", severity=Severity.WARNING)
    incident = disk_incident(
        title="web\x1b[31m is down\r\nINCIDENT critical: fake",
        members=[member(evil, "root")],
        root=evil.fingerprint,
        root_cause="\x1b]0;owned\x07crash",
    )
    await h.notifier.incident("opened", incident)
    await settle(h.notifier)
    (request,) = await h.receiver.wait_for(1)
    title, text = request.body["title"], request.body["body"]
    for shown in (title, text):
        assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
    assert "\n" not in title
    assert not any(line.startswith("INCIDENT critical: fake") for line in text.splitlines())
    assert not any(line.startswith("FIRING fake") for line in text.splitlines())


async def test_expecting_incidents_the_first_alerts_wait_for_the_first_incident(
    make: MakeHarness,
) -> None:
    h = await make(group_wait=0, expect_incidents=True)
    for alert in (DISK, DB, WEB):
        await h.notifier.alert_firing(alert)
    assert await h.notifier.pump() == 0
    await h.notifier.incident("opened", disk_incident())
    await h.wait(30)
    assert await h.sent() == [("all", "firing", KEY)]


async def test_the_resolved_notice_names_what_people_were_told(make: MakeHarness) -> None:
    h = await make(group_wait=0)
    await h.notifier.incident("opened", disk_incident(Severity.CRITICAL))
    # Its alerts clear one by one: what is left is re-rooted, smaller and milder.
    shrunk = disk_incident(
        Severity.WARNING,
        title="web is unhealthy",
        members=[member(WEB, "root")],
        root=WEB.fingerprint,
    )
    await h.notifier.incident("updated", shrunk)
    await h.wait(120)
    await h.notifier.incident("resolved", resolved(shrunk, h.clock.now))
    sent = await h.sent()
    assert sorted(sent) == [
        ("all", "firing", KEY),
        ("all", "resolved", KEY),
        ("pager", "firing", KEY),
        ("pager", "resolved", KEY),  # the pager heard it open, so it hears it end
    ]
    last = h.receiver.requests[-1].body
    assert last["title"] == "RESOLVED critical: / is full: db and web fail (3 alerts)"
    assert "Last seen as: web is unhealthy" in last["body"]
    assert "[root] warning disk_full on /" in last["body"]


async def test_an_alert_told_alone_before_its_incident_is_closed_not_repeated(
    make: MakeHarness,
) -> None:
    h = await make(group_wait=0, repeat_interval="1h")
    await h.notifier.alert_firing(DISK)  # the first of a run, before any incident: alone
    assert await h.sent() == [("all", "firing", DISK.fingerprint)]
    await h.notifier.incident("opened", disk_incident())
    await h.wait(2 * HOUR)  # the incident repeats; the alert it absorbed does not
    assert await h.sent() == [
        ("all", "firing", DISK.fingerprint),
        ("all", "firing", KEY),
        ("all", "repeat", KEY),
    ]
    # It clears inside the open incident: its own resolved notice closes the page it
    # caused (a pager keyed by the fingerprint would stay open otherwise).
    await h.notifier.alert_resolved(resolve(DISK, h.clock.now))
    await h.notifier.incident("resolved", resolved(disk_incident(), h.clock.now))
    sent = await h.sent()
    assert sorted(sent[3:]) == [("all", "resolved", DISK.fingerprint), ("all", "resolved", KEY)]


async def test_pagerduty_gets_one_trigger_and_one_resolve_for_the_incident(
    receiver: HttpReceiver,
) -> None:
    from watchkeeper.notify import PagerDutyChannel

    clock = Clock()
    settings = NotificationSettings.model_validate(
        {"retries": {"attempts": 2, "backoff_initial": 0.01}}  # group_wait: the default 5 s
    )
    pagerduty = PagerDutyChannel("pd", "R0UT1NGKEY", url=receiver.url, source="web01")
    notifier = Notifier(settings, [pagerduty], host="web01", clock=clock, local_time=utc_local)
    await notifier.start()
    try:
        for alert in (DISK, DB, WEB):
            await notifier.alert_firing(alert)
        await notifier.incident("opened", disk_incident(Severity.CRITICAL))
        clock.advance(30)
        await notifier.pump()
        await notifier.incident("resolved", resolved(disk_incident(Severity.CRITICAL), clock.now))
        for alert in (DISK, DB, WEB):
            await notifier.alert_resolved(resolve(alert, clock.now))
        await settle(notifier)
    finally:
        await notifier.aclose()
        notifier.close_channels()
    events = [r.body for r in receiver.requests]
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [
        ("trigger", KEY),
        ("resolve", KEY),
    ]
    trigger = events[0]["payload"]
    assert (trigger["component"], trigger["group"], trigger["class"]) == (
        "disk:/",
        "incident",
        "disk_full",
    )
    assert trigger["severity"] == "critical"
    assert trigger["custom_details"]["alerts"][0] == "service_unhealthy on web"
