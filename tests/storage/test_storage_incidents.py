"""Incidents in the history: kept by id and updated in place, filtered by state and span,
kept as long as open, deleted with the other events once resolved and old; a version 2
database (the schema before incidents) is migrated with its data and gains the table."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from storage_helpers import T0, Clock, make_alert

from watchkeeper.model.alerts import Severity, SuggestedAction
from watchkeeper.model.incidents import Incident, IncidentMember, IncidentState
from watchkeeper.storage import LATEST_VERSION, RetentionPolicy, Storage, SyncStorage
from watchkeeper.storage.migrations import migrate


def incident(
    incident_id: str = "inc1",
    *,
    key: str = "disk:/",
    opened_at: float = T0,
    members: int = 3,
    severity: Severity = Severity.CRITICAL,
    resolved_at: float | None = None,
) -> Incident:
    rules = [("disk_full", "/"), ("service_down", "db"), ("service_unhealthy", "web")]
    people = [
        IncidentMember(
            alert_id=f"a{i}",
            fingerprint=f"fp{i}",
            rule=rule,
            subject=subject,
            severity=severity,
            summary=f"{rule} on {subject}",
            role="root" if i == 0 else "effect",
        )
        for i, (rule, subject) in enumerate(rules[:members])
    ]
    return Incident(
        id=incident_id,
        key=key,
        title="/ is full: db and web fail",
        severity=severity,
        state=IncidentState.RESOLVED if resolved_at is not None else IncidentState.OPEN,
        root="fp0",
        root_cause="/ is full",
        confidence=0.8,
        members=people,
        remedies=[
            SuggestedAction(action="clean_directory", target="/", target_kind="path"),
            SuggestedAction(action="restart_service", target="db", target_kind="service"),
        ],
        opened_at=opened_at,
        updated_at=resolved_at or opened_at,
        resolved_at=resolved_at,
    )


def test_an_incident_is_updated_in_place_by_id(db: SyncStorage) -> None:
    db.record_incident(incident(members=1, severity=Severity.WARNING))
    grown = incident().model_copy(update={"updated_at": T0 + 30})
    db.record_incident(grown)
    (stored,) = db.incidents()
    assert stored == grown
    assert [m.subject for m in stored.members] == ["/", "db", "web"]
    assert stored.severity is Severity.CRITICAL and stored.opened_at == T0
    resolved = grown.model_copy(
        update={"state": IncidentState.RESOLVED, "resolved_at": T0 + 90, "updated_at": T0 + 90}
    )
    db.record_incident(resolved)
    assert db.incidents(state="open") == []
    assert db.incidents(state="resolved") == [resolved]
    assert db.incident("inc1") == resolved
    assert db.incident("nope") is None


def test_every_alert_that_was_ever_in_an_incident_is_kept(db: SyncStorage) -> None:
    db.record_incident(incident(members=3))
    shrunk = incident(members=1).model_copy(update={"updated_at": T0 + 60})
    db.record_incident(shrunk)  # two members cleared and left it
    (stored,) = db.incidents()
    assert [m.alert_id for m in stored.members] == ["a0"]
    assert db.incident_alerts("inc1") == [("a0", "fp0"), ("a1", "fp1"), ("a2", "fp2")]
    assert db.incident_alerts("nope") == []


def test_incidents_filter_by_state_and_span_newest_first(db: SyncStorage) -> None:
    db.record_incident(incident("old", opened_at=T0, resolved_at=T0 + 60))
    db.record_incident(incident("mid", opened_at=T0 + 100, resolved_at=T0 + 200))
    db.record_incident(incident("now", opened_at=T0 + 300))
    assert [i.id for i in db.incidents()] == ["now", "mid", "old"]
    assert [i.id for i in db.incidents(state="open")] == ["now"]
    assert [i.id for i in db.incidents(state="resolved", limit=1)] == ["mid"]
    assert [i.id for i in db.incidents(start=T0 + 150, end=T0 + 400)] == ["now", "mid"]


def test_notified_is_remembered_by_key_while_open(db: SyncStorage) -> None:
    db.record_incident(incident("first"))
    assert db.incident_last_notified("disk:/") is None
    db.mark_incident_notified("first", T0 + 6)
    assert db.incident_last_notified("disk:/") == T0 + 6
    assert db.incident_last_notified("disk:/var") is None
    db.record_incident(incident("first", resolved_at=T0 + 60))
    assert db.incident_last_notified("disk:/") is None  # over: a new one is news again


def test_retention_keeps_open_incidents_and_drops_old_resolved_ones(
    db: SyncStorage, clock: Clock
) -> None:
    long_open = incident("long", opened_at=T0).model_copy(update={"updated_at": T0 + 9 * 86400})
    db.record_incident(long_open)  # open for ten days, still heard of: it stays
    db.record_incident(incident("abandoned", opened_at=T0 + 1))  # an ended run's, never again
    db.record_incident(incident("done", opened_at=T0, resolved_at=T0 + 10))
    db.record_incident(incident("recent", opened_at=T0 + 5 * 86400, resolved_at=T0 + 5 * 86400))
    clock.now = T0 + 10 * 86400
    report = db.maintain(RetentionPolicy(events_days=7))
    assert report.deleted["incident"] == 2
    assert sorted(i.id for i in db.incidents()) == ["long", "recent"]
    assert db.incident_alerts("abandoned") == [] and db.incident_alerts("done") == []
    assert len(db.incident_alerts("long")) == 3


def test_a_row_that_no_longer_parses_is_skipped_not_fatal(db: SyncStorage) -> None:
    db.record_incident(incident("good"))
    conn = sqlite3.connect(db.path, isolation_level=None)
    try:
        conn.execute(
            "INSERT INTO incident (id, key, state, severity, title, members, remedies,"
            " opened_at, updated_at, data) VALUES ('bad', 'k', 'open', 'warning', 't', '[]',"
            " '[]', ?, ?, '{\"id\": \"bad\"}')",
            (T0 + 1, T0 + 1),
        )
    finally:
        conn.close()
    assert [i.id for i in db.incidents()] == ["good"]
    assert db.incident("bad") is None


def build_v2(path: Path) -> None:
    """A database exactly as schema version 2 left it (before incidents), with history."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(conn, target=2) == (0, 2)
        alert = make_alert("disk_full", "/").model_dump(mode="json")
        conn.execute(
            "INSERT INTO alert (id, fingerprint, rule, severity, subject, state, started_at,"
            " updated_at, resolved_at, data, notified_at) VALUES (?, ?, 'disk_full',"
            " 'warning', '/', 'firing', ?, ?, NULL, ?, ?)",
            (alert["id"], alert["fingerprint"], T0, T0, json.dumps(alert), T0 + 5),
        )
        conn.execute("INSERT INTO metric (id, name) VALUES (1, 'disk./.percent')")
        conn.execute("INSERT INTO sample VALUES (1, ?, 99.5)", (int(T0),))
        conn.execute("INSERT INTO baseline VALUES ('cpu', ?, '{\"mean\": 3}')", (T0,))
    finally:
        conn.close()


def test_a_v2_database_is_migrated_with_its_data_and_gains_incidents(tmp_path: Path) -> None:
    path = tmp_path / "watchkeeper.db"
    build_v2(path)
    with SyncStorage(path) as db:
        assert db.schema_version() == LATEST_VERSION == 5
        (alert,) = db.alerts()
        assert (alert.rule, alert.subject) == ("disk_full", "/")
        assert db.last_notified(alert.fingerprint) == T0 + 5
        assert [p.max for p in db.metric_range("disk./.percent", T0 - 1, T0 + 1, 60)] == [99.5]
        assert db.load_baselines() == {"cpu": {"mean": 3}}
        assert db.incidents() == []
        db.record_incident(incident())
        assert len(db.incident_alerts("inc1")) == 3
        assert [i.id for i in db.incidents(state="open")] == ["inc1"]
        assert db.integrity_check() == "ok"


async def test_the_async_storage_writes_and_reads_incidents(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "watchkeeper.db")
    await storage.open()
    try:
        assert await storage.record_incident(incident())
        assert await storage.mark_incident_notified("inc1", T0 + 1)
        assert [i.id for i in await storage.incidents(state="open")] == ["inc1"]
        found = await storage.incident("inc1")
        assert found is not None and [r.action for r in found.remedies] == [
            "clean_directory",
            "restart_service",
        ]
        assert await storage.incident_last_notified("disk:/") == T0 + 1
    finally:
        await storage.close()
