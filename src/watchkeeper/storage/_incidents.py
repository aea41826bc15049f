"""Incidents: one row per incident, updated in place as the analyzer reports it.

An incident keeps its id from opening to resolution; each ``incident.opened`` /
``incident.updated`` / ``incident.resolved`` replaces the row's state, severity, members,
root and remedies (kept as JSON) and its times, never its ``opened_at``::

    db.record_incident(incident)
    open_now = db.incidents(state="open")
    one = db.incident("a1b2c3")            # None when unknown
"""

from __future__ import annotations

from typing import Literal

from watchkeeper.model.incidents import Incident, IncidentState
from watchkeeper.storage._db import DbBase, guarded, to_json
from watchkeeper.storage._records import RecordsMixin, where

__all__ = ["IncidentsMixin"]

IncidentFilter = Literal["open", "resolved", "all"]


class IncidentsMixin(DbBase):
    """Incidents. Mixed into :class:`SyncStorage`."""

    @guarded
    def record_incident(self, incident: Incident, *, host: str | None = None) -> None:
        """Keep the incident as it is now (insert it, or update its row in place); it is
        about ``host``, else the incident's own ``host``. An older report arriving after a
        newer one (a host catching up) does not turn it back."""
        about = incident.host if host is None else host
        members = to_json([m.model_dump(mode="json") for m in incident.members])
        remedies = to_json([r.model_dump(mode="json") for r in incident.remedies])
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO incident (id, key, state, severity, title, root, members, remedies,"
                " opened_at, updated_at, resolved_at, data, host)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " key = excluded.key, state = excluded.state, severity = excluded.severity,"
                " title = excluded.title, root = excluded.root, members = excluded.members,"
                " remedies = excluded.remedies, updated_at = excluded.updated_at,"
                " resolved_at = excluded.resolved_at, data = excluded.data,"
                " host = excluded.host WHERE excluded.updated_at >= incident.updated_at",
                (
                    incident.id,
                    incident.key,
                    incident.state.value,
                    incident.severity.value,
                    incident.title,
                    incident.root,
                    members,
                    remedies,
                    incident.opened_at,
                    incident.updated_at,
                    incident.resolved_at,
                    to_json(incident.model_dump(mode="json")),
                    about,
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO incident_alert (incident_id, alert_id, fingerprint,"
                " joined_at) VALUES (?, ?, ?, ?)",
                [
                    (incident.id, m.alert_id, m.fingerprint, incident.updated_at)
                    for m in incident.members
                ],
            )

    @guarded
    def incidents(
        self,
        state: IncidentFilter = "all",
        start: float | None = None,
        end: float | None = None,
        limit: int = 100,
        host: str | None = None,
    ) -> list[Incident]:
        """Stored incidents, newest opened first; ``state`` narrows to ``"open"`` or
        ``"resolved"``; ``[start, end]`` keeps those open at some point in that span;
        ``host`` keeps one host's (default: every host's)."""
        if state not in ("open", "resolved", "all"):
            raise ValueError(f"state must be open, resolved or all, not {state!r}")
        clause, args = where(
            ("state = ?", None if state == "all" else IncidentState(state).value),
            ("opened_at <= ?", end),
            ("(resolved_at IS NULL OR resolved_at >= ?)", start),
            ("host = ?", host),
        )
        sql = f"SELECT data FROM incident{clause} ORDER BY opened_at DESC, id LIMIT ?"
        rows = self._db().execute(sql, (*args, limit))
        return list(RecordsMixin._parse_rows(Incident, rows))

    @guarded
    def incident(self, incident_id: str) -> Incident | None:
        """One stored incident by id, or None."""
        rows = self._db().execute("SELECT data FROM incident WHERE id = ?", (incident_id,))
        found = list(RecordsMixin._parse_rows(Incident, rows))
        return found[0] if found else None

    @guarded
    def incident_alerts(self, incident_id: str) -> list[tuple[str, str]]:
        """``(alert_id, fingerprint)`` of every alert that was ever part of the incident,
        in the order they joined (members leave it as they clear)."""
        rows = self._db().execute(
            "SELECT alert_id, fingerprint FROM incident_alert WHERE incident_id = ?"
            " ORDER BY joined_at, alert_id",
            (incident_id,),
        )
        return [(str(alert_id), str(fingerprint)) for alert_id, fingerprint in rows]

    @guarded
    def mark_incident_notified(self, incident_id: str, at: float) -> None:
        """Remember that people were told about the incident ``incident_id``."""
        with self._tx() as conn:
            conn.execute("UPDATE incident SET notified_at = ? WHERE id = ?", (at, incident_id))

    @guarded
    def incident_last_notified(self, key: str, host: str | None = None) -> float | None:
        """When people were last told about an incident about ``key`` (its root's
        subject; on ``host``, when given) that is still open as far as storage knows:
        after a restart the analyzer opens a new incident for the same trouble, and
        people need not hear it twice."""
        clause, args = where(
            ("key = ?", key), ("state = ?", IncidentState.OPEN.value), ("host = ?", host)
        )
        row = self._db().execute(f"SELECT max(notified_at) FROM incident{clause}", args).fetchone()
        return None if row is None or row[0] is None else float(row[0])
