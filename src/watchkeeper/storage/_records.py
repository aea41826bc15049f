"""Alerts with their transitions, and the remediation audit trail."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import Alert, AlertState
from watchkeeper.storage._db import DbBase, guarded, to_json
from watchkeeper.storage.models import AlertTransition, SuccessRate, SuccessRates

__all__ = ["RecordsMixin"]

log = logging.getLogger("watchkeeper.storage")

_FINISHED_OK = (ActionOutcome.SUCCEEDED.value,)


def where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """``(" WHERE a = ? AND b >= ?", [1, 2])`` from ``("a = ?", 1), ("b >= ?", 2)``;
    conditions whose value is None are left out (an empty string when none remain)."""
    kept = [(clause, value) for clause, value in conditions if value is not None]
    if not kept:
        return "", []
    return " WHERE " + " AND ".join(clause for clause, _ in kept), [v for _, v in kept]


_FINISHED_BAD = (ActionOutcome.FAILED.value, ActionOutcome.TIMED_OUT.value)
_FLEET_NOTIFIED = "fleet_notified:"
_CLAIMED = "rows_claimed_by"


class RecordsMixin(DbBase):
    """Alerts and the audit trail. Mixed into :class:`SyncStorage`."""

    # -- alerts -------------------------------------------------------------------------
    @guarded
    def record_alert(
        self,
        alert: Alert,
        transition: str,
        at: float | None = None,
        *,
        host: str = "",
        message_id: str | None = None,
    ) -> bool:
        """Keep the alert's latest state and add one transition (``firing``, ``changed``,
        ``escalated``, ``resolved``) to its history. ``host``: the host it is about
        (a central host records every host's). ``message_id``: the bus message it came
        in; the same message again adds nothing (False)."""
        ts = at if at is not None else alert.updated_at
        with self._tx() as conn:
            added = conn.execute(
                "INSERT OR IGNORE INTO alert_transition (alert_id, fingerprint, ts, kind,"
                " severity, summary, host, message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    alert.id,
                    alert.fingerprint,
                    ts,
                    transition,
                    alert.severity.value,
                    alert.summary,
                    host,
                    message_id,
                ),
            ).rowcount
            if not added:
                return False
            # A step older than the one stored (a host catching up out of order) adds to
            # the history but does not turn the alert back.
            conn.execute(
                "INSERT INTO alert (id, fingerprint, rule, severity, subject, state, started_at,"
                " updated_at, resolved_at, data, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET severity = excluded.severity,"
                " subject = excluded.subject, state = excluded.state,"
                " updated_at = excluded.updated_at, resolved_at = excluded.resolved_at,"
                " data = excluded.data, host = excluded.host"
                " WHERE excluded.updated_at >= alert.updated_at",
                (
                    alert.id,
                    alert.fingerprint,
                    alert.rule,
                    alert.severity.value,
                    alert.subject,
                    alert.state.value,
                    alert.started_at,
                    alert.updated_at,
                    alert.resolved_at,
                    to_json(alert.model_dump(mode="json")),
                    host,
                ),
            )
            return True

    @guarded
    def mark_notified(self, fingerprint: str, at: float, host: str | None = None) -> None:
        """Remember that people were told about the firing alert with ``fingerprint``
        (on ``host``, when given: the same rule and subject fire on many hosts)."""
        clause, args = where(("fingerprint = ?", fingerprint), ("host = ?", host))
        with self._tx() as conn:
            conn.execute(
                "UPDATE alert SET notified_at = ? WHERE id = (SELECT id FROM alert"
                f"{clause} ORDER BY started_at DESC LIMIT 1)",
                (at, *args),
            )

    @guarded
    def last_notified(self, fingerprint: str, host: str | None = None) -> float | None:
        """When people were last told about ``fingerprint`` (on ``host``, when given)
        while it is still firing."""
        clause, args = where(("fingerprint = ?", fingerprint), ("host = ?", host))
        row = (
            self._db()
            .execute(
                f"SELECT state, notified_at FROM alert{clause} ORDER BY started_at DESC LIMIT 1",
                args,
            )
            .fetchone()
        )
        if row is None or row[0] != AlertState.FIRING.value or row[1] is None:
            return None
        return float(row[1])

    @guarded
    def alerts(
        self,
        start: float | None = None,
        end: float | None = None,
        state: str | None = None,
        limit: int = 1000,
        host: str | None = None,
    ) -> list[Alert]:
        """Alerts that were open at some point in ``[start, end]``, newest first.

        ``state`` narrows to ``"firing"`` or ``"resolved"`` (their current state),
        ``host`` to one host's (default: every host's).
        """
        clause, args = where(
            ("started_at <= ?", end),
            ("(resolved_at IS NULL OR resolved_at >= ?)", start),
            ("state = ?", state),
            ("host = ?", host),
        )
        sql = f"SELECT data FROM alert{clause} ORDER BY started_at DESC LIMIT ?"
        rows = self._db().execute(sql, (*args, limit))
        return list(self._parse_rows(Alert, rows))

    @guarded
    def alert_transitions(
        self,
        alert_id: str | None = None,
        fingerprint: str | None = None,
        limit: int = 1000,
        host: str | None = None,
    ) -> list[AlertTransition]:
        """An alert's life, oldest step first (by id, or every alert with a fingerprint;
        ``host`` keeps one host's steps)."""
        clause, args = where(
            ("alert_id = ?", alert_id), ("fingerprint = ?", fingerprint), ("host = ?", host)
        )
        sql = (
            "SELECT id, alert_id, fingerprint, ts, kind, severity, summary FROM alert_transition"
            f"{clause} ORDER BY ts, id LIMIT ?"
        )
        fields = AlertTransition.model_fields
        return [
            AlertTransition(**dict(zip(fields, row, strict=True)))
            for row in self._db().execute(sql, (*args, limit))
        ]

    # -- the audit trail ----------------------------------------------------------------
    @guarded
    def record_action(self, record: ActionRecord, *, host: str = "") -> None:
        """Keep an action record (about ``host``); a later record with the same id (the
        same attempt moving on, e.g. running → succeeded) replaces the earlier one, an
        older one arriving late (a host catching up) does not."""
        updated = record.finished_at or record.started_at or record.created_at
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO audit (id, action, target, outcome, proposer, created_at,"
                " updated_at, data, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome,"
                " target = excluded.target, updated_at = excluded.updated_at,"
                " data = excluded.data, host = excluded.host"
                " WHERE excluded.updated_at >= audit.updated_at",
                (
                    record.id,
                    record.action,
                    record.target,
                    record.outcome.value,
                    record.proposer,
                    record.created_at,
                    updated,
                    to_json(record.model_dump(mode="json")),
                    host,
                ),
            )

    @guarded
    def audit(
        self,
        target: str | None = None,
        action: str | None = None,
        limit: int = 100,
        start: float | None = None,
        end: float | None = None,
        host: str | None = None,
    ) -> list[ActionRecord]:
        """Action records, newest first, optionally for one target and/or one action,
        and for one host (default: every host's)."""
        clause, args = where(
            ("target = ?", target),
            ("action = ?", action),
            ("created_at >= ?", start),
            ("created_at <= ?", end),
            ("host = ?", host),
        )
        sql = f"SELECT data FROM audit{clause} ORDER BY created_at DESC LIMIT ?"
        return list(self._parse_rows(ActionRecord, self._db().execute(sql, (*args, limit))))

    @guarded
    def success_rates(self, since: float | None = None) -> SuccessRates:
        """How often finished actions worked, per action name and per target."""
        conn = self._db()
        marks = ", ".join("?" * (len(_FINISHED_OK) + len(_FINISHED_BAD)))
        ok_marks = ", ".join("?" * len(_FINISHED_OK))
        args: list[Any] = [*_FINISHED_OK, *_FINISHED_OK, *_FINISHED_BAD]
        when = ""
        if since is not None:
            when = " AND created_at >= ?"
            args.append(since)

        def rates(column: str) -> list[SuccessRate]:
            rows = conn.execute(
                f"SELECT {column}, count(*), sum(outcome IN ({ok_marks})) FROM audit "
                f"WHERE outcome IN ({marks}) AND {column} IS NOT NULL{when} "
                f"GROUP BY {column} ORDER BY {column}",
                args,
            )
            return [
                SuccessRate(
                    key=str(key),
                    attempts=int(total),
                    succeeded=int(good),
                    failed=int(total) - int(good),
                    rate=round(int(good) / int(total), 4) if total else None,
                )
                for key, total, good in rows
            ]

        return SuccessRates(by_action=rates("action"), by_target=rates("target"))

    # -- hosts --------------------------------------------------------------------------
    @guarded
    def claim_rows(self, host: str) -> int:
        """File the rows written before hosts were recorded (host "") under ``host``,
        this daemon's id; how many. Done once per host id: later starts only read a
        mark (the transitions table has no host index and may be large)."""
        total = 0
        with self._tx() as conn:
            if self._meta_get(conn, _CLAIMED) == host:
                return 0
            for table in ("alert", "alert_transition", "audit", "incident"):
                total += conn.execute(
                    f"UPDATE {table} SET host = ? WHERE host = ''", (host,)
                ).rowcount
            self._meta_set(conn, _CLAIMED, host)
        return total

    @guarded
    def hosts_recorded(self) -> list[str]:
        """Every host some alert, action record or incident is about, sorted."""
        rows = self._db().execute(
            "SELECT host FROM alert UNION SELECT host FROM audit"
            " UNION SELECT host FROM incident ORDER BY 1"
        )
        return [str(host) for (host,) in rows]

    @guarded
    def firing_by_host(self, limit: int = 100_000) -> list[tuple[str, Alert]]:
        """``(host, alert)`` of every alert still firing as far as storage knows, newest
        first: what a restarted fleet view starts from."""
        rows = self._db().execute(
            "SELECT host, data FROM alert WHERE state = ? ORDER BY started_at DESC LIMIT ?",
            (AlertState.FIRING.value, limit),
        )
        out: list[tuple[str, Alert]] = []
        for host, data in rows:
            for alert in self._parse_rows(Alert, [(data,)]):
                out.append((str(host), alert))
        return out

    @guarded
    def mark_fleet_notified(self, incident_id: str, at: float | None) -> None:
        """Remember (or, with None, forget) when people were told of a fleet incident."""
        key = f"{_FLEET_NOTIFIED}{incident_id}"
        with self._tx() as conn:
            if at is None:
                conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._meta_set(conn, key, repr(float(at)))

    @guarded
    def fleet_last_notified(self, incident_id: str) -> float | None:
        """When people were told of the fleet incident ``incident_id`` (its id is the same
        after a restart of the fleet view), or None."""
        value = self._meta_get(self._db(), f"{_FLEET_NOTIFIED}{incident_id}")
        try:
            return None if value is None else float(value)
        except ValueError:
            return None

    # -- helpers ----------------------------------------------------------------------
    @staticmethod
    def _parse_rows(model: Any, rows: Iterable[tuple[Any, ...]]) -> Iterable[Any]:
        for (data,) in rows:
            try:
                yield model.model_validate_json(data)
            except ValidationError as exc:  # a row from an incompatible older model
                log.warning("skipping a stored %s that no longer parses: %s", model.__name__, exc)
