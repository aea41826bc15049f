"""The communicator on a real in-memory bus, with real storage and a real webhook receiver
on loopback: three alerts and the incident that groups them become one notice, one
stored incident (updated in place) and one activity line; resolving it is one more."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from notify_helpers import HttpReceiver

from watchkeeper.agents.base import AgentContext
from watchkeeper.agents.communicator import CommunicatorAgent
from watchkeeper.bus import InMemoryBus
from watchkeeper.config import Settings
from watchkeeper.config.notifications import NotificationSettings
from watchkeeper.model.alerts import Alert, AlertState, Severity, SuggestedAction, fingerprint_of
from watchkeeper.model.incidents import Incident, IncidentMember, IncidentState
from watchkeeper.model.topics import ALERT_FIRING, ALERT_RESOLVED, INCIDENT_TOPICS
from watchkeeper.storage import Storage


async def until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def alert(rule: str, subject: str, *, resolved: bool = False) -> Alert:
    now = time.time()
    return Alert(
        id=f"{rule}-{subject}",
        fingerprint=fingerprint_of(rule, subject),
        rule=rule,
        severity=Severity.CRITICAL,
        subject=subject,
        summary=f"{rule} on {subject}",
        state=AlertState.RESOLVED if resolved else AlertState.FIRING,
        started_at=now - 5,
        updated_at=now,
        resolved_at=now if resolved else None,
    )


ALERTS = [alert("disk_full", "/"), alert("service_down", "db"), alert("service_down", "web")]


def incident(state: IncidentState = IncidentState.OPEN) -> Incident:
    now = time.time()
    return Incident(
        id="inc-1",
        key="disk:/",
        title="/ is full: db and web are down",
        severity=Severity.CRITICAL,
        state=state,
        root=ALERTS[0].fingerprint,
        root_cause="/ is full",
        confidence=0.9,
        members=[
            IncidentMember(
                alert_id=a.id,
                fingerprint=a.fingerprint,
                rule=a.rule,
                subject=a.subject,
                severity=a.severity,
                summary=a.summary,
                role="root" if i == 0 else "effect",
            )
            for i, a in enumerate(ALERTS)
        ],
        remedies=[SuggestedAction(action="clean_directory", target="/tmp", target_kind="path")],
        opened_at=now - 5,
        updated_at=now,
        resolved_at=now if state is IncidentState.RESOLVED else None,
    )


class SettingsWithNotifications(Settings):
    notifications: NotificationSettings = NotificationSettings()


@pytest.fixture
async def running(
    tmp_path: Path, receiver: HttpReceiver
) -> AsyncIterator[tuple[CommunicatorAgent, InMemoryBus]]:
    notifications = NotificationSettings.model_validate(
        {
            "group_wait": "1s",
            "retries": {"attempts": 2, "backoff_initial": 0.01},
            "channels": [{"type": "webhook", "url": receiver.url}],
        }
    )
    settings = SettingsWithNotifications(
        data_dir=tmp_path, personality="plain", notifications=notifications
    )
    bus = InMemoryBus()
    storage = Storage.in_data_dir(tmp_path)
    ctx = AgentContext(bus=bus, settings=lambda: settings, data_dir=tmp_path)
    agent = CommunicatorAgent("communicator", ctx, storage=storage, interval=0.05)
    task = asyncio.create_task(agent.run())
    await until(lambda: agent.state.value in ("running", "degraded"))
    try:
        yield agent, bus
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await storage.close()


async def test_an_incident_is_stored_logged_and_told_once(
    running: tuple[CommunicatorAgent, InMemoryBus], receiver: HttpReceiver
) -> None:
    agent, bus = running
    for a in ALERTS:
        await bus.publish(ALERT_FIRING, a, sender="analyzer")
    await bus.publish(INCIDENT_TOPICS["opened"], incident(), sender="analyzer")
    storage = agent.storage
    await until(lambda: receiver.requests)
    await asyncio.sleep(1.5)  # anything else would have been sent by now
    assert [(r.body["kind"], r.body["key"]) for r in receiver.requests] == [
        ("firing", "incident:inc-1")
    ]
    (stored,) = await until(lambda: storage.incidents(state="open"))
    assert [m.subject for m in stored.members] == ["/", "db", "web"]
    assert await until(lambda: storage.incident_last_notified("disk:/"))
    lines = [e.message for e in await storage.search_activity(text="incident")]
    assert lines == [
        "incident opened: critical / is full: db and web are down (3 alerts);"
        " probable cause: / is full"
    ]

    for a in ALERTS[1:]:
        await bus.publish(
            ALERT_RESOLVED, alert(a.rule, a.subject, resolved=True), sender="analyzer"
        )
    await bus.publish(
        INCIDENT_TOPICS["resolved"], incident(IncidentState.RESOLVED), sender="analyzer"
    )
    await bus.publish(ALERT_RESOLVED, alert("disk_full", "/", resolved=True), sender="analyzer")
    await until(lambda: len(receiver.requests) >= 2)
    await asyncio.sleep(0.5)
    assert [(r.body["kind"], r.body["key"]) for r in receiver.requests] == [
        ("firing", "incident:inc-1"),
        ("resolved", "incident:inc-1"),
    ]
    (done,) = await until(lambda: storage.incidents(state="resolved"))
    assert done.id == "inc-1" and await storage.incidents(state="open") == []
    assert agent.notifier.stats().absorbed >= 3
