"""The communicator's engines without a bus: the health timeline, the activity lines and
the announcer that decides what people are told."""

from __future__ import annotations

import asyncio
import threading

from notify_helpers import NOON, Clock, make_alert

from watchkeeper.config.notifications import NotificationSettings
from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import Severity
from watchkeeper.model.services import ServiceState, ServiceStatus
from watchkeeper.notify import Notification
from watchkeeper.notify.activity import ActivityLines
from watchkeeper.notify.announcer import Announcer
from watchkeeper.notify.health import HealthTimeline, HealthTracker


class Kept:
    """A channel that keeps what it is given."""

    name = "kept"

    def __init__(self) -> None:
        self.notices: list[Notification] = []
        self._lock = threading.Lock()

    def send(self, notice: Notification) -> None:
        with self._lock:
            self.notices.append(notice)

    def keys(self) -> list[str]:
        with self._lock:
            return [notice.key for notice in self.notices]


def record(outcome: ActionOutcome) -> ActionRecord:
    return ActionRecord(
        id="r1",
        action="restart_service",
        target="web",
        target_kind="service",
        proposer="rule",
        reason="service web exited",
        outcome=outcome,
        detail="exit code 1 again",
        created_at=NOON,
    )


def test_the_timeline_keeps_only_a_new_status_or_band() -> None:
    timeline = HealthTimeline(HealthTracker(), clock=Clock())
    timeline.begin()
    assert timeline.update() is None  # healthy at 100, as it began
    timeline.tracker.alert(make_alert(severity=Severity.CRITICAL))
    change = timeline.update()
    assert change is not None and change.status == "critical"
    assert change.previous is not None and change.previous.score == 100
    assert change.band == "fair" and change.previous.status == "healthy"
    assert timeline.update() is None
    assert [r.status for r in timeline.records()] == ["healthy", "critical"]
    assert timeline.current.score == 75


def test_critical_services_count_from_the_sample_models() -> None:
    tracker = HealthTracker()

    def db(state: ServiceState) -> ServiceStatus:
        return ServiceStatus(name="db", manager="process", state=state, critical=True)

    cache = ServiceStatus(name="cache", manager="process", state=ServiceState.FAILED)
    assert tracker.services([db(ServiceState.RUNNING), cache])  # db is known from now on
    assert not tracker.services([db(ServiceState.RUNNING), cache])
    assert tracker.services([db(ServiceState.FAILED), cache])
    assert tracker.evaluate(NOON).reasons == ["critical service db is down"]
    assert not tracker.services([db(ServiceState.FAILED)])
    assert tracker.services([db(ServiceState.STARTING)])


def test_activity_lines_follow_the_personality_as_it_is_now() -> None:
    personality = ["plain"]
    lines = ActivityLines(lambda: personality[0])
    line = lines.alert(make_alert("disk_full", "/var"), "firing", NOON)
    assert line.text.startswith("alert firing: warning disk_full on /var")
    assert (line.severity, line.subject) == ("warning", "/var")
    failed = lines.action(record(ActionOutcome.FAILED), "failed")
    assert (
        failed.severity == "warning"
        and failed.plain == "action restart_service on web failed: exit code 1 again"
    )
    personality[0] = "witty"
    assert lines.action(record(ActionOutcome.FAILED), "failed").text != failed.text
    assert "a, b" in lines.config_changed("cli", {"b": 1, "a": 2}).text


async def test_the_announcer_tells_failures_and_alerts_not_successes() -> None:
    kept = Kept()
    settings = NotificationSettings.model_validate({"group_wait": 0})
    announcer = Announcer(lambda: settings, channels=[kept], clock=Clock())
    await announcer.start()
    try:
        lines = ActivityLines(lambda: "plain")
        ok = record(ActionOutcome.SUCCEEDED)
        await announcer.action(ok, "succeeded", lines.action(ok, "succeeded"))
        bad = record(ActionOutcome.FAILED)
        await announcer.action(bad, "failed", lines.action(bad, "failed"))
        alert = make_alert()
        await announcer.alert(alert, None, fired=False)  # the same alert again: nothing
        await announcer.alert(alert, "firing", fired=True)
        for _ in range(200):
            if len(kept.keys()) >= 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(kept.keys()) == sorted(
            ["remediation:restart_service:web:failed", alert.fingerprint]
        )
    finally:
        await announcer.aclose()
