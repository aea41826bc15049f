"""The history of many hosts in one database: schema 4 adds the host of every alert,
transition, action record and incident; reads narrow to one host; the same bus message
recorded twice is one row; a version 3 database keeps its data and files it under the
daemon's host id."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from storage_helpers import T0

from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import Alert, AlertState, Severity, fingerprint_of
from watchkeeper.model.incidents import Incident, IncidentState
from watchkeeper.storage import SyncStorage
from watchkeeper.storage.migrations import migrate


def alert(alert_id: str, at: float = T0, state: str = "firing", severity: str = "warning") -> Alert:
    return Alert(
        id=alert_id,
        fingerprint=fingerprint_of("disk_usage", "/var/log"),
        rule="disk_usage",
        severity=Severity(severity),
        subject="/var/log",
        summary="/var/log 93% full",
        state=AlertState(state),
        started_at=T0,
        updated_at=at,
        resolved_at=at if state == "resolved" else None,
    )


def record(record_id: str, outcome: str, at: float) -> ActionRecord:
    return ActionRecord(
        id=record_id,
        action="restart_service",
        target="nginx",
        proposer="rule",
        outcome=ActionOutcome(outcome),
        created_at=T0,
        finished_at=at if outcome != "running" else None,
        started_at=T0,
    )


def build_v3(path: Path) -> None:
    """A database as schema version 3 left it, with an alert, a record and an incident."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(conn, target=3) == (0, 3)
        old = alert("old-a").model_dump(mode="json")
        conn.execute(
            "INSERT INTO alert (id, fingerprint, rule, severity, subject, state, started_at,"
            " updated_at, resolved_at, data, notified_at) VALUES (?, ?, 'disk_usage',"
            " 'warning', '/var/log', 'firing', ?, ?, NULL, ?, ?)",
            ("old-a", old["fingerprint"], T0, T0, json.dumps(old), T0 + 5),
        )
        conn.execute(
            "INSERT INTO alert_transition (alert_id, fingerprint, ts, kind, severity, summary)"
            " VALUES ('old-a', ?, ?, 'firing', 'warning', 'full')",
            (old["fingerprint"], T0),
        )
        rec = record("old-r", "succeeded", T0 + 1).model_dump(mode="json")
        conn.execute(
            "INSERT INTO audit VALUES ('old-r', 'restart_service', 'nginx', 'succeeded', 'rule',"
            " ?, ?, ?)",
            (T0, T0 + 1, json.dumps(rec)),
        )
        inc = Incident(
            id="old-i", key="/var/log", title="disk", severity=Severity.WARNING,
            opened_at=T0, updated_at=T0,
        ).model_dump(mode="json")  # fmt: skip
        conn.execute(
            "INSERT INTO incident (id, key, state, severity, title, members, remedies,"
            " opened_at, updated_at, data) VALUES ('old-i', '/var/log', 'open', 'warning',"
            " 'disk', '[]', '[]', ?, ?, ?)",
            (T0, T0, json.dumps(inc)),
        )
    finally:
        conn.close()


def test_a_v3_database_keeps_its_history_and_files_it_under_this_host(tmp_path: Path) -> None:
    path = tmp_path / "watchkeeper.db"
    build_v3(path)
    with SyncStorage(path) as db:
        assert db.schema_version() == 5
        # Nothing lost: every old row reads as before, with the host not yet known.
        assert [a.id for a in db.alerts()] == ["old-a"]
        assert [r.id for r in db.audit()] == ["old-r"]
        assert [i.id for i in db.incidents()] == ["old-i"]
        assert db.last_notified(alert("x").fingerprint) == T0 + 5
        assert db.hosts_recorded() == [""]
        assert db.claim_rows("central") == 4
        assert db.claim_rows("central") == 0  # once
        assert [a.id for a in db.alerts(host="central")] == ["old-a"]
        assert [r.id for r in db.audit(host="central")] == ["old-r"]
        assert [i.id for i in db.incidents(host="central")] == ["old-i"]
        assert db.last_notified(alert("x").fingerprint, host="central") == T0 + 5
        assert db.hosts_recorded() == ["central"]


def test_reads_narrow_to_one_host_and_default_to_every_host(db: SyncStorage) -> None:
    db.record_alert(alert("a-web1"), "firing", host="web-1", message_id="m1")
    db.record_alert(alert("a-web2"), "firing", host="web-2", message_id="m2")
    db.record_action(record("r-web2", "succeeded", T0 + 3), host="web-2")
    incident = Incident(
        id="i-web1", key="/var/log", title="disk", severity=Severity.WARNING,
        opened_at=T0, updated_at=T0, host="web-1",
    )  # fmt: skip
    db.record_incident(incident)
    assert sorted(a.id for a in db.alerts()) == ["a-web1", "a-web2"]
    assert [a.id for a in db.alerts(host="web-2")] == ["a-web2"]
    assert db.alerts(host="db-1") == []
    assert [r.id for r in db.audit(host="web-2")] == ["r-web2"]
    assert db.audit(host="web-1") == []
    assert [i.id for i in db.incidents(host="web-1")] == ["i-web1"]
    assert db.incidents(host="web-2") == []
    assert db.hosts_recorded() == ["web-1", "web-2"]
    fingerprint = alert("x").fingerprint
    assert [t.alert_id for t in db.alert_transitions(fingerprint=fingerprint)] == [
        "a-web1", "a-web2",
    ]  # fmt: skip
    steps = db.alert_transitions(fingerprint=fingerprint, host="web-2")
    assert [t.alert_id for t in steps] == ["a-web2"]
    # The same rule and subject fire on both hosts: each keeps its own notification memory.
    db.mark_notified(alert("x").fingerprint, T0 + 9, host="web-1")
    assert db.last_notified(alert("x").fingerprint, host="web-1") == T0 + 9
    assert db.last_notified(alert("x").fingerprint, host="web-2") is None


def test_the_same_message_twice_is_one_row(db: SyncStorage) -> None:
    assert db.record_alert(alert("a1"), "firing", host="web-1", message_id="m1") is True
    assert db.record_alert(alert("a1"), "firing", host="web-1", message_id="m1") is False
    resolved = alert("a1", T0 + 60, state="resolved")
    db.record_alert(resolved, "resolved", host="web-1", message_id="m2")
    db.record_alert(resolved, "resolved", host="web-1", message_id="m2")
    assert [t.kind for t in db.alert_transitions("a1")] == ["firing", "resolved"]
    # Without message ids (a local writer of old) every call is a step, as before.
    db.record_alert(alert("a2"), "firing")
    db.record_alert(alert("a2"), "firing")
    assert len(db.alert_transitions("a2")) == 2


def test_a_late_older_report_does_not_turn_history_back(db: SyncStorage) -> None:
    # A host catching up sends its backlog after the newer state already arrived.
    db.record_alert(alert("a1", T0 + 60, state="resolved"), "resolved", host="h", message_id="2")
    db.record_alert(alert("a1", T0), "firing", host="h", message_id="1")
    (stored,) = db.alerts(host="h")
    assert stored.state is AlertState.RESOLVED
    assert len(db.alert_transitions("a1")) == 2  # the older step is still in its history
    db.record_action(record("r1", "succeeded", T0 + 30), host="h")
    db.record_action(record("r1", "running", T0), host="h")
    (kept,) = db.audit(host="h")
    assert kept.outcome is ActionOutcome.SUCCEEDED
    newer = Incident(
        id="i1", key="k", title="t", severity=Severity.WARNING, state=IncidentState.RESOLVED,
        opened_at=T0, updated_at=T0 + 50, resolved_at=T0 + 50, host="h",
    )  # fmt: skip
    db.record_incident(newer)
    db.record_incident(newer.model_copy(update={"state": IncidentState.OPEN, "updated_at": T0}))
    (inc,) = db.incidents(host="h")
    assert inc.state is IncidentState.RESOLVED
