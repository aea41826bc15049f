"""A database left by an older version is migrated with its data; a newer one is refused
and left untouched; a migration that fails leaves the previous version intact."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from storage_helpers import T0

from watchkeeper.storage import LATEST_VERSION, SchemaVersionError, StorageError, SyncStorage
from watchkeeper.storage.migrations import migrate, schema_version


def build_v1(path: Path) -> None:
    """A database exactly as version 1 of the schema left it, with some history in it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(conn, target=1) == (0, 1)
        conn.execute("INSERT INTO metric (id, name) VALUES (1, 'cpu.percent')")
        conn.executemany(
            "INSERT INTO sample VALUES (1, ?, ?)", [(int(T0) + i * 5, float(i)) for i in range(12)]
        )
        alert = {
            "id": "a1",
            "fingerprint": "fp1",
            "rule": "cpu_high",
            "severity": "warning",
            "subject": "host",
            "summary": "CPU high",
            "started_at": T0,
            "updated_at": T0,
        }
        conn.execute(
            "INSERT INTO alert (id, fingerprint, rule, severity, subject, state, started_at,"
            " updated_at, resolved_at, data) VALUES ('a1', 'fp1', 'cpu_high', 'warning', 'host',"
            " 'firing', ?, ?, NULL, ?)",
            (T0, T0, json.dumps(alert)),
        )
        record = {
            "id": "r1",
            "action": "restart_service",
            "target": "web",
            "proposer": "rule",
            "outcome": "succeeded",
            "created_at": T0,
        }
        conn.execute(
            "INSERT INTO audit VALUES"
            " ('r1', 'restart_service', 'web', 'succeeded', 'rule', ?, ?, ?)",
            (T0, T0, json.dumps(record)),
        )
        conn.execute("INSERT INTO baseline VALUES ('cpu', ?, '{\"mean\": 12.5}')", (T0,))
        conn.execute(
            "INSERT INTO activity (ts, agent, kind, severity, message) "
            "VALUES (?, 'analyzer', 'alert.firing', 'warning', 'cpu_high on host')",
            (T0,),
        )
    finally:
        conn.close()


def test_a_v1_database_is_migrated_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "watchkeeper.db"
    build_v1(path)
    with SyncStorage(path) as db:
        assert db.schema_version() == LATEST_VERSION == 5
        points = db.metric_range("cpu.percent", T0, T0 + 60, 60)
        assert [(p.count, p.min, p.max) for p in points] == [(12, 0.0, 11.0)]
        (alert,) = db.alerts()
        assert (alert.id, alert.summary) == ("a1", "CPU high")
        assert db.last_notified("fp1") is None  # the column v2 added, empty for old rows
        db.mark_notified("fp1", T0 + 1)
        assert db.last_notified("fp1") == T0 + 1
        assert [r.id for r in db.audit(target="web")] == ["r1"]
        assert db.load_baselines() == {"cpu": {"mean": 12.5}}
        assert [e.message for e in db.search_activity(agent="analyzer")] == ["cpu_high on host"]
        # New writes work on the migrated file.
        db.write_sample(T0 + 60, {"cpu.percent": 50.0})
        assert db.integrity_check() == "ok"


def test_a_database_from_a_newer_version_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "watchkeeper.db"
    with SyncStorage(path) as db:
        db.save_baseline("keep", {"me": 1})
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(SchemaVersionError, match=f"schema version {LATEST_VERSION + 1}"):
        SyncStorage(path).open()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    conn = sqlite3.connect(path)
    try:
        assert schema_version(conn) == LATEST_VERSION + 1
        assert conn.execute("SELECT data FROM baseline").fetchone() == ('{"me":1}',)
    finally:
        conn.close()


def test_a_failed_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "watchkeeper.db"
    build_v1(path)
    conn = sqlite3.connect(path, isolation_level=None)
    # Something in the way of migration 2 (an object with a name it wants to create).
    conn.execute("CREATE TABLE activity_ts (x)")
    conn.close()
    with pytest.raises(StorageError, match="migration to version 2"):
        SyncStorage(path).open()
    conn = sqlite3.connect(path)
    try:
        assert schema_version(conn) == 1
        columns = [row[1] for row in conn.execute("PRAGMA table_info(alert)")]
        assert "notified_at" not in columns  # not half-applied
        assert conn.execute("SELECT count(*) FROM sample").fetchone() == (12,)
    finally:
        conn.close()


def test_a_read_only_open_wants_an_existing_current_database(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no history"):
        SyncStorage(tmp_path / "missing.db", readonly=True).open()
    path = tmp_path / "old.db"
    build_v1(path)
    with pytest.raises(StorageError, match="start the daemon once"):
        SyncStorage(path, readonly=True).open()
