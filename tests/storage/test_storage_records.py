"""Alerts, the audit trail, events, analyses, baselines and the activity search."""

from __future__ import annotations

from pathlib import Path

from storage_helpers import T0, Clock, make_alert, make_record

from watchkeeper.model.actions import ActionOutcome
from watchkeeper.model.alerts import AlertState, Severity
from watchkeeper.model.events import HealthPoint
from watchkeeper.storage import (
    ActivityEntry,
    AgentEvent,
    RetentionPolicy,
    SyncStorage,
)

DAY = 86400.0


def test_alerts_keep_their_latest_state_and_every_transition(db: SyncStorage) -> None:
    firing = make_alert(started_at=T0)
    db.record_alert(firing, "firing")
    critical = firing.model_copy(update={"severity": Severity.CRITICAL, "updated_at": T0 + 60})
    db.record_alert(critical, "changed")
    resolved = critical.model_copy(
        update={"state": AlertState.RESOLVED, "resolved_at": T0 + 300, "updated_at": T0 + 300}
    )
    db.record_alert(resolved, "resolved")
    (stored,) = db.alerts()
    assert stored == resolved
    steps = db.alert_transitions(alert_id=firing.id)
    assert [(s.kind, s.severity, s.ts) for s in steps] == [
        ("firing", "warning", T0),
        ("changed", "critical", T0 + 60),
        ("resolved", "critical", T0 + 300),
    ]
    assert db.alert_transitions(fingerprint=firing.fingerprint) == steps


def test_alerts_in_a_range_are_those_open_during_it(db: SyncStorage) -> None:
    early = make_alert("a", started_at=T0, resolved_at=T0 + 100)
    middle = make_alert("b", started_at=T0 + 200, resolved_at=T0 + 400)
    still = make_alert("c", started_at=T0 + 500)
    for alert in (early, middle, still):
        db.record_alert(alert, "firing")
    assert [a.rule for a in db.alerts(T0 + 150, T0 + 250)] == ["b"]
    assert [a.rule for a in db.alerts(T0 + 350, T0 + 10_000)] == ["c", "b"]
    assert [a.rule for a in db.alerts(state="firing")] == ["c"]
    assert [a.rule for a in db.alerts(end=T0 + 50)] == ["a"]


def test_notified_at_is_remembered_only_while_the_alert_fires(db: SyncStorage) -> None:
    alert = make_alert()
    db.record_alert(alert, "firing")
    assert db.last_notified(alert.fingerprint) is None
    db.mark_notified(alert.fingerprint, T0 + 5)
    assert db.last_notified(alert.fingerprint) == T0 + 5
    resolved = alert.model_copy(update={"state": AlertState.RESOLVED, "resolved_at": T0 + 9})
    db.record_alert(resolved, "resolved")
    assert db.last_notified(alert.fingerprint) is None


def test_the_audit_trail_by_target_and_action(db: SyncStorage) -> None:
    db.record_action(make_record("r1", outcome=ActionOutcome.RUNNING, created_at=T0))
    db.record_action(make_record("r1", outcome=ActionOutcome.SUCCEEDED, created_at=T0))
    db.record_action(
        make_record("r2", target="db", outcome=ActionOutcome.FAILED, created_at=T0 + 1)
    )
    db.record_action(make_record("r3", action="kill_process", target="db", created_at=T0 + 2))
    assert [r.id for r in db.audit()] == ["r3", "r2", "r1"]
    assert [r.id for r in db.audit(target="db")] == ["r3", "r2"]
    assert [r.id for r in db.audit(target="db", action="restart_service")] == ["r2"]
    assert db.audit(target="web")[0].outcome is ActionOutcome.SUCCEEDED  # moved on, not doubled
    assert [r.id for r in db.audit(limit=1)] == ["r3"]


def test_success_rates_count_finished_attempts_only(db: SyncStorage) -> None:
    outcomes = [
        ("a", "restart_service", "web", ActionOutcome.SUCCEEDED),
        ("b", "restart_service", "web", ActionOutcome.FAILED),
        ("c", "restart_service", "db", ActionOutcome.TIMED_OUT),
        ("d", "restart_service", "db", ActionOutcome.SUCCEEDED),
        ("e", "restart_service", "db", ActionOutcome.REFUSED),  # never ran: not counted
        ("f", "clean_tmp", None, ActionOutcome.SUCCEEDED),
    ]
    for record_id, action, target, outcome in outcomes:
        db.record_action(make_record(record_id, action=action, target=target, outcome=outcome))
    rates = db.success_rates()
    by_action = {r.key: (r.attempts, r.succeeded, r.failed, r.rate) for r in rates.by_action}
    assert by_action == {"clean_tmp": (1, 1, 0, 1.0), "restart_service": (4, 2, 2, 0.5)}
    by_target = {r.key: (r.attempts, r.succeeded, r.rate) for r in rates.by_target}
    assert by_target == {"db": (2, 1, 0.5), "web": (2, 1, 0.5)}
    assert db.success_rates(since=T0 + 1).by_action == []


def test_activity_search_by_agent_severity_text_and_time(db: SyncStorage) -> None:
    entries = [
        ("analyzer", "warning", "cpu_high on web01: CPU at 97%", T0),
        ("remediator", "info", "restart_service on web worked", T0 + 10),
        ("analyzer", "critical", "disk_full on /var: 99% used", T0 + 20),
        ("supervisor", "warning", "agent analyzer restarted (hung)", T0 + 30),
        ("analyzer", "info", "100% literal_match here", T0 + 40),
    ]
    for agent, severity, message, ts in entries:
        db.log_activity(
            ActivityEntry(ts=ts, agent=agent, kind="test", severity=severity, message=message)
        )

    def found(**query: object) -> list[float]:
        return [e.ts for e in db.search_activity(**query)]  # type: ignore[arg-type]

    assert found() == [T0 + 40, T0 + 30, T0 + 20, T0 + 10, T0]
    assert found(agent="analyzer") == [T0 + 40, T0 + 20, T0]
    assert found(severity="warning") == [T0 + 30, T0 + 20, T0]
    assert found(severity="critical") == [T0 + 20]
    assert found(text="WEB") == [T0 + 10, T0]  # case-insensitive
    assert found(text="analyzer") == [T0 + 30]  # the message, not the agent column
    assert found(text="% literal_") == [T0 + 40]  # % and _ are plain characters
    assert found(text="0%") == [T0 + 40]
    assert found(start=T0 + 10, end=T0 + 30) == [T0 + 30, T0 + 20, T0 + 10]
    assert found(agent="analyzer", severity="warning", text="disk") == [T0 + 20]
    assert found(limit=2) == [T0 + 40, T0 + 30]


def test_agent_events_analyses_health_and_baselines(db: SyncStorage) -> None:
    db.record_agent_event(AgentEvent(ts=T0, agent="sensor", kind="restarted", detail="hung"))
    db.record_agent_event(AgentEvent(ts=T0 + 1, agent="system", kind="started"))
    assert [e.kind for e in db.agent_events()] == ["started", "restarted"]
    assert db.agent_events(agent="sensor")[0].detail == "hung"

    analysis = {
        "source": "mistral",
        "latency_s": 2.5,
        "prompt_chars": 3100,
        "prompt_tokens": 812,
        "completion_tokens": 96,
        "verdict": "act",
        "summary": "memory leak in web",
        "extra": {"anything": [1, 2]},
    }
    db.record_analysis(analysis, T0)
    db.record_analysis({"source": "rules", "latency_s": "not a number"}, T0 + 1)
    rules, llm = db.analyses()
    assert (llm.model, llm.latency_s, llm.prompt_chars, llm.prompt_tokens) == (
        "mistral",
        2.5,
        3100,
        812,
    )
    assert llm.data == analysis
    assert (rules.model, rules.latency_s) == ("rules", None)

    db.record_health(HealthPoint(ts=T0, status="degraded", score=80, reasons=["1 warning"]))
    db.record_health(HealthPoint(ts=T0 + 5, status="healthy", score=100))
    assert [h.status for h in db.health_history()] == ["degraded", "healthy"]
    assert db.health_history(start=T0 + 1)[0].score == 100

    db.save_baseline("cpu.percent:hourly", {"mean": [1.0, 2.0], "n": 40})
    db.save_baseline("load.1m", [0.5])
    db.save_baseline("load.1m", [0.7])
    assert db.load_baselines() == {
        "cpu.percent:hourly": {"mean": [1.0, 2.0], "n": 40},
        "load.1m": [0.7],
    }


def test_event_retention_deletes_only_what_is_due(tmp_path: Path, clock: Clock) -> None:
    policy = RetentionPolicy(events_days=10, audit_days=20)
    with SyncStorage(tmp_path / "w.db", clock=clock, retention=policy) as db:
        for day in range(0, 30, 5):
            ts = T0 + day * DAY
            db.log_activity(ActivityEntry(ts=ts, agent="a", kind="k", message=f"day {day}"))
            db.record_action(make_record(f"r{day}", created_at=ts))
        old_resolved = make_alert("gone", started_at=T0, resolved_at=T0 + 60)
        old_firing = make_alert("still", started_at=T0)
        db.record_alert(old_resolved, "resolved")
        db.record_alert(old_firing, "firing")
        clock.now = T0 + 25 * DAY - 1
        report = db.maintain()
        assert [e.message for e in db.search_activity()] == ["day 25", "day 20", "day 15"]
        assert sorted(r.id for r in db.audit()) == ["r10", "r15", "r20", "r25", "r5"]
        assert [a.rule for a in db.alerts()] == ["still"]  # firing alerts are never aged out
        assert report.deleted["activity"] == 3 and report.deleted["audit"] == 1
