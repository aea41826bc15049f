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


class RecordsMixin(DbBase):
    """Alerts and the audit trail. Mixed into :class:`SyncStorage`."""

    # -- alerts -------------------------------------------------------------------------
    @guarded
    def record_alert(self, alert: Alert, transition: str, at: float | None = None) -> None:
        """Keep the alert's latest state and add one transition (``firing``, ``changed``,
        ``escalated``, ``resolved``) to its history."""
        ts = at if at is not None else alert.updated_at
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO alert (id, fingerprint, rule, severity, subject, state, started_at,"
                " updated_at, resolved_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET severity = excluded.severity,"
                " subject = excluded.subject, state = excluded.state,"
                " updated_at = excluded.updated_at, resolved_at = excluded.resolved_at,"
                " data = excluded.data",
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
                ),
            )
            conn.execute(
                "INSERT INTO alert_transition (alert_id, fingerprint, ts, kind, severity, summary)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (alert.id, alert.fingerprint, ts, transition, alert.severity.value, alert.summary),
            )

    @guarded
    def mark_notified(self, fingerprint: str, at: float) -> None:
        """Remember that people were told about the firing alert with ``fingerprint``."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE alert SET notified_at = ? WHERE id = (SELECT id FROM alert"
                " WHERE fingerprint = ? ORDER BY started_at DESC LIMIT 1)",
                (at, fingerprint),
            )

    @guarded
    def last_notified(self, fingerprint: str) -> float | None:
        """When people were last told about ``fingerprint`` while it is still firing."""
        row = (
            self._db()
            .execute(
                "SELECT state, notified_at FROM alert WHERE fingerprint = ?"
                " ORDER BY started_at DESC LIMIT 1",
                (fingerprint,),
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
    ) -> list[Alert]:
        """Alerts that were open at some point in ``[start, end]``, newest first.

        ``state`` narrows to ``"firing"`` or ``"resolved"`` (their current state).
        """
        clause, args = where(
            ("started_at <= ?", end),
            ("(resolved_at IS NULL OR resolved_at >= ?)", start),
            ("state = ?", state),
        )
        sql = f"SELECT data FROM alert{clause} ORDER BY started_at DESC LIMIT ?"
        rows = self._db().execute(sql, (*args, limit))
        return list(self._parse_rows(Alert, rows))

    @guarded
    def alert_transitions(
        self, alert_id: str | None = None, fingerprint: str | None = None, limit: int = 1000
    ) -> list[AlertTransition]:
        """An alert's life, oldest step first (by id, or every alert with a fingerprint)."""
        clause, args = where(("alert_id = ?", alert_id), ("fingerprint = ?", fingerprint))
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
    def record_action(self, record: ActionRecord) -> None:
        """Keep an action record; a later record with the same id (the same attempt
        moving on, e.g. running → succeeded) replaces the earlier one."""
        updated = record.finished_at or record.started_at or record.created_at
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO audit (id, action, target, outcome, proposer, created_at,"
                " updated_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome,"
                " target = excluded.target, updated_at = excluded.updated_at,"
                " data = excluded.data",
                (
                    record.id,
                    record.action,
                    record.target,
                    record.outcome.value,
                    record.proposer,
                    record.created_at,
                    updated,
                    to_json(record.model_dump(mode="json")),
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
    ) -> list[ActionRecord]:
        """Action records, newest first, optionally for one target and/or one action."""
        clause, args = where(
            ("target = ?", target),
            ("action = ?", action),
            ("created_at >= ?", start),
            ("created_at <= ?", end),
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

    # -- helpers ----------------------------------------------------------------------
    @staticmethod
    def _parse_rows(model: Any, rows: Iterable[tuple[Any, ...]]) -> Iterable[Any]:
        for (data,) in rows:
            try:
                yield model.model_validate_json(data)
            except ValidationError as exc:  # a row from an incompatible older model
                log.warning("skipping a stored %s that no longer parses: %s", model.__name__, exc)
