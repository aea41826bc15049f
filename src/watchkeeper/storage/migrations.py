"""Versioned schema migrations: the database says which version it is, we bring it up.

The version lives in SQLite's ``PRAGMA user_version``. Each migration is a list of
statements applied in one transaction together with the new version number, so a crash
half-way leaves the database at the previous version, never in between::

    from_version, to_version = migrate(conn)          # to the latest
    migrate(conn, target=1)                           # only the first step (tests do this)

A database newer than :data:`LATEST_VERSION` raises :class:`SchemaVersionError` and is
left untouched. Never edit a released migration: add a new one at the end.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from watchkeeper.storage.errors import SchemaVersionError, StorageError

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration", "migrate", "schema_version"]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_V1 = (
    # Small key/value facts about the database itself (the roll-up watermark).
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    # Metric names are interned: the value rows carry a small integer, not the name.
    "CREATE TABLE metric (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    # Clustered on (metric, time): one metric's history is one contiguous key range.
    """CREATE TABLE sample (
        metric_id INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL,
        PRIMARY KEY (metric_id, ts)) WITHOUT ROWID""",
    """CREATE TABLE sample_1m (
        metric_id INTEGER NOT NULL, ts INTEGER NOT NULL,
        min REAL NOT NULL, avg REAL NOT NULL, max REAL NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (metric_id, ts)) WITHOUT ROWID""",
    """CREATE TABLE alert (
        id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, rule TEXT NOT NULL,
        severity TEXT NOT NULL, subject TEXT NOT NULL, state TEXT NOT NULL,
        started_at REAL NOT NULL, updated_at REAL NOT NULL, resolved_at REAL,
        data TEXT NOT NULL)""",
    "CREATE INDEX alert_started ON alert (started_at)",
    """CREATE TABLE alert_transition (
        id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
        ts REAL NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL, summary TEXT NOT NULL)""",
    "CREATE INDEX alert_transition_alert ON alert_transition (alert_id, ts)",
    """CREATE TABLE audit (
        id TEXT PRIMARY KEY, action TEXT NOT NULL, target TEXT, outcome TEXT NOT NULL,
        proposer TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        data TEXT NOT NULL)""",
    "CREATE INDEX audit_created ON audit (created_at)",
    """CREATE TABLE agent_event (
        id INTEGER PRIMARY KEY, ts REAL NOT NULL, agent TEXT NOT NULL, kind TEXT NOT NULL,
        detail TEXT NOT NULL, data TEXT NOT NULL)""",
    "CREATE INDEX agent_event_ts ON agent_event (ts)",
    """CREATE TABLE analysis (
        id INTEGER PRIMARY KEY, ts REAL NOT NULL, source TEXT, model TEXT, latency_s REAL,
        prompt_chars INTEGER, prompt_tokens INTEGER, completion_tokens INTEGER,
        verdict TEXT, summary TEXT, data TEXT NOT NULL)""",
    "CREATE INDEX analysis_ts ON analysis (ts)",
    "CREATE TABLE baseline (key TEXT PRIMARY KEY, updated_at REAL NOT NULL, data TEXT NOT NULL)",
    """CREATE TABLE activity (
        id INTEGER PRIMARY KEY, ts REAL NOT NULL, agent TEXT NOT NULL, kind TEXT NOT NULL,
        severity TEXT NOT NULL, message TEXT NOT NULL, subject TEXT)""",
    """CREATE TABLE health (
        id INTEGER PRIMARY KEY, ts REAL NOT NULL, status TEXT NOT NULL,
        score INTEGER NOT NULL, reasons TEXT NOT NULL)""",
    "CREATE INDEX health_ts ON health (ts)",
)

_V2 = (
    # When the last notification for an alert went out, so a restarted daemon does not
    # page people again for an alert they heard about minutes ago.
    "ALTER TABLE alert ADD COLUMN notified_at REAL",
    "CREATE INDEX alert_fingerprint ON alert (fingerprint, started_at)",
    # The activity search filters by time and by agent; the audit view by target.
    "CREATE INDEX activity_ts ON activity (ts)",
    "CREATE INDEX activity_agent ON activity (agent, ts)",
    "CREATE INDEX audit_target ON audit (target, created_at)",
    "CREATE INDEX audit_action ON audit (action, created_at)",
)

_V3 = (
    # Incidents: correlated alerts as one problem, kept by id and updated in place as the
    # analyzer reports them (members, root, remedies and state change; the id does not).
    # The columns are what the lists filter and sort on; ``data`` is the whole Incident.
    """CREATE TABLE incident (
        id TEXT PRIMARY KEY, key TEXT NOT NULL, state TEXT NOT NULL, severity TEXT NOT NULL,
        title TEXT NOT NULL, root TEXT, members TEXT NOT NULL, remedies TEXT NOT NULL,
        opened_at REAL NOT NULL, updated_at REAL NOT NULL, resolved_at REAL,
        notified_at REAL, data TEXT NOT NULL)""",
    "CREATE INDEX incident_opened ON incident (opened_at)",
    "CREATE INDEX incident_state ON incident (state, opened_at)",
    "CREATE INDEX incident_key ON incident (key, opened_at)",
    # Every alert that was ever part of an incident (members leave as they clear, and an
    # incident may end smaller than it began): what its detail and its actions read.
    """CREATE TABLE incident_alert (
        incident_id TEXT NOT NULL, alert_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
        joined_at REAL NOT NULL, PRIMARY KEY (incident_id, alert_id)) WITHOUT ROWID""",
)

_V4 = (
    # A central host keeps the history of every host: each alert, transition, action
    # record and incident says which host it is about. Rows from before are this host's
    # ("" until the daemon that wrote them claims them under its host id).
    "ALTER TABLE alert ADD COLUMN host TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE alert_transition ADD COLUMN host TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE audit ADD COLUMN host TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE incident ADD COLUMN host TEXT NOT NULL DEFAULT ''",
    # The bus message a transition came from: a message delivered twice (a host catching
    # up after a restart) is one row.
    "ALTER TABLE alert_transition ADD COLUMN message_id TEXT",
    "CREATE UNIQUE INDEX alert_transition_message ON alert_transition (message_id)"
    " WHERE message_id IS NOT NULL",
    "CREATE INDEX alert_host ON alert (host, started_at)",
    "CREATE INDEX audit_host ON audit (host, created_at)",
    "CREATE INDEX incident_host ON incident (host, opened_at)",
)

_V5 = (
    # Hourly aggregates folded from the one-minute ones: a month of one metric is 720 rows
    # instead of 43,200, so a 30-day chart reads in about a millisecond. The roll-up fills
    # it in bounded steps (an older database catches up over its first maintenance passes,
    # and until then reads fall back to the minute rows).
    """CREATE TABLE sample_1h (
        metric_id INTEGER NOT NULL, ts INTEGER NOT NULL,
        min REAL NOT NULL, avg REAL NOT NULL, max REAL NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (metric_id, ts)) WITHOUT ROWID""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "base tables: metrics, alerts, audit, events, analyses, baselines", _V1),
    Migration(2, "alert.notified_at and the indexes the searches need", _V2),
    Migration(3, "incidents: correlated alerts with their root cause and remedies", _V3),
    Migration(4, "the host of every alert, action record and incident (a fleet)", _V4),
    Migration(5, "hourly metric aggregates for month-long charts", _V5),
)
LATEST_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    """The version recorded in the database (0 for a new, empty one)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int = LATEST_VERSION) -> tuple[int, int]:
    """Apply the migrations between the database's version and ``target``.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Returns
    ``(version_before, version_after)``.
    """
    if not 0 <= target <= LATEST_VERSION:
        raise ValueError(f"no schema version {target}; the latest is {LATEST_VERSION}")
    before = schema_version(conn)
    if before > LATEST_VERSION:
        raise SchemaVersionError(
            f"the database is at schema version {before}, newer than this watchkeeper "
            f"understands (up to {LATEST_VERSION}); it was left untouched: run a newer "
            "watchkeeper or use another data_dir"
        )
    for step in MIGRATIONS:
        if step.version <= before or step.version > target:
            continue
        # IMMEDIATE takes the write lock up front: two processes starting at once do not
        # both decide to run the same migration.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) >= step.version:  # someone else just did it
                conn.execute("ROLLBACK")
                continue
            for statement in step.statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {int(step.version)}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StorageError(
                f"schema migration to version {step.version} ({step.description}) failed: {exc}"
            ) from exc
    return before, schema_version(conn)
