"""Everything that is not a metric: alerts and their transitions, the audit trail, agent
events, analyses, baselines, the health timeline and the activity log."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from watchkeeper.analysis.alerts import Alert, AlertState
from watchkeeper.remediation.records import ActionOutcome, ActionRecord
from watchkeeper.storage._db import DbBase, guarded
from watchkeeper.storage.models import (
    SEVERITY_ORDER,
    ActivityEntry,
    AgentEvent,
    AlertTransition,
    AnalysisRecord,
    HealthRecord,
    RetentionPolicy,
    SuccessRate,
    SuccessRates,
)

__all__ = ["RecordsMixin"]

log = logging.getLogger("watchkeeper.storage")

_FINISHED_OK = (ActionOutcome.SUCCEEDED.value,)
_FINISHED_BAD = (ActionOutcome.FAILED.value, ActionOutcome.TIMED_OUT.value)
_ANALYSIS_COLUMNS = (
    "source",
    "model",
    "latency_s",
    "prompt_chars",
    "prompt_tokens",
    "completion_tokens",
    "verdict",
    "summary",
)


def _json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str, ensure_ascii=False)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _column(value: Any, kind: type) -> Any:
    """A loosely typed analysis field as a column value, or None when it is not one."""
    if value is None or isinstance(value, bool):
        return None
    if kind is str:
        return str(value)[:2000]
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


class RecordsMixin(DbBase):
    """Writes and reads the event-like history. Mixed into :class:`SyncStorage`."""

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
                    _json(alert.model_dump(mode="json")),
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
        where: list[str] = []
        args: list[Any] = []
        if end is not None:
            where.append("started_at <= ?")
            args.append(end)
        if start is not None:
            where.append("(resolved_at IS NULL OR resolved_at >= ?)")
            args.append(start)
        if state is not None:
            where.append("state = ?")
            args.append(state)
        sql = "SELECT data FROM alert"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC LIMIT ?"
        rows = self._db().execute(sql, (*args, limit))
        return list(self._parse_rows(Alert, rows))

    @guarded
    def alert_transitions(
        self, alert_id: str | None = None, fingerprint: str | None = None, limit: int = 1000
    ) -> list[AlertTransition]:
        """An alert's life, oldest step first (by id, or every alert with a fingerprint)."""
        where: list[str] = []
        args: list[Any] = []
        if alert_id is not None:
            where.append("alert_id = ?")
            args.append(alert_id)
        if fingerprint is not None:
            where.append("fingerprint = ?")
            args.append(fingerprint)
        sql = "SELECT id, alert_id, fingerprint, ts, kind, severity, summary FROM alert_transition"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts, id LIMIT ?"
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
                    _json(record.model_dump(mode="json")),
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
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("target", target), ("action", action)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if start is not None:
            where.append("created_at >= ?")
            args.append(start)
        if end is not None:
            where.append("created_at <= ?")
            args.append(end)
        sql = "SELECT data FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT ?"
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

    # -- agent events, analyses, health, baselines --------------------------------------
    @guarded
    def record_agent_event(self, event: AgentEvent) -> int:
        with self._tx() as conn:
            cursor = conn.execute(
                "INSERT INTO agent_event (ts, agent, kind, detail, data) VALUES (?, ?, ?, ?, ?)",
                (event.ts, event.agent, event.kind, event.detail, _json(event.data)),
            )
        return int(cursor.lastrowid or 0)

    @guarded
    def agent_events(
        self,
        agent: str | None = None,
        start: float | None = None,
        end: float | None = None,
        limit: int = 100,
    ) -> list[AgentEvent]:
        """Agent starts, restarts and failures, newest first."""
        sql, args = self._window("agent_event", "agent", agent, start, end)
        rows = self._db().execute(
            f"SELECT id, ts, agent, kind, detail, data {sql} ORDER BY ts DESC LIMIT ?",
            (*args, limit),
        )
        return [
            AgentEvent(id=r[0], ts=r[1], agent=r[2], kind=r[3], detail=r[4], data=json.loads(r[5]))
            for r in rows
        ]

    @guarded
    def record_analysis(self, data: Mapping[str, Any], at: float) -> int:
        """Store an analysis as published; the known fields also go into columns."""
        kinds: dict[str, type] = {"latency_s": float, "prompt_chars": int}
        kinds.update(prompt_tokens=int, completion_tokens=int)
        values = [_column(data.get(key), kinds.get(key, str)) for key in _ANALYSIS_COLUMNS]
        if values[1] is None:  # the model, when only "source" names it
            values[1] = values[0]
        with self._tx() as conn:
            cursor = conn.execute(
                f"INSERT INTO analysis (ts, {', '.join(_ANALYSIS_COLUMNS)}, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (at, *values, _json(dict(data))),
            )
        return int(cursor.lastrowid or 0)

    @guarded
    def analyses(
        self, start: float | None = None, end: float | None = None, limit: int = 100
    ) -> list[AnalysisRecord]:
        """Stored analyses, newest first."""
        sql, args = self._window("analysis", None, None, start, end)
        columns = ", ".join(_ANALYSIS_COLUMNS)
        rows = self._db().execute(
            f"SELECT id, ts, {columns}, data {sql} ORDER BY ts DESC LIMIT ?", (*args, limit)
        )
        out = []
        for row in rows:
            fields = dict(zip(("id", "ts", *_ANALYSIS_COLUMNS), row[:-1], strict=True))
            out.append(AnalysisRecord(**fields, data=json.loads(row[-1])))
        return out

    @guarded
    def record_health(self, record: HealthRecord) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO health (ts, status, score, reasons) VALUES (?, ?, ?, ?)",
                (record.ts, record.status, record.score, _json(record.reasons)),
            )

    @guarded
    def health_history(
        self, start: float | None = None, end: float | None = None, limit: int = 1000
    ) -> list[HealthRecord]:
        """Health changes in the window, oldest first (the most recent ``limit`` of them)."""
        sql, args = self._window("health", None, None, start, end)
        rows = self._db().execute(
            f"SELECT ts, status, score, reasons {sql} ORDER BY ts DESC LIMIT ?", (*args, limit)
        )
        out = [
            HealthRecord(ts=r[0], status=r[1], score=r[2], reasons=json.loads(r[3])) for r in rows
        ]
        out.reverse()
        return out

    @guarded
    def save_baseline(self, key: str, data: Any, at: float | None = None) -> None:
        """Keep a learned baseline (any JSON-able value) under ``key``, replacing the old."""
        ts = at if at is not None else self._clock()
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO baseline (key, updated_at, data) VALUES (?, ?, ?) ON CONFLICT (key)"
                " DO UPDATE SET updated_at = excluded.updated_at, data = excluded.data",
                (key, ts, _json(data)),
            )

    @guarded
    def load_baselines(self) -> dict[str, Any]:
        """Every stored baseline: ``{key: data}``."""
        rows = self._db().execute("SELECT key, data FROM baseline ORDER BY key")
        return {str(key): json.loads(data) for key, data in rows}

    # -- the activity log ---------------------------------------------------------------
    @guarded
    def log_activity(self, entry: ActivityEntry) -> int:
        with self._tx() as conn:
            cursor = conn.execute(
                "INSERT INTO activity (ts, agent, kind, severity, message, subject)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (entry.ts, entry.agent, entry.kind, entry.severity, entry.message, entry.subject),
            )
        return int(cursor.lastrowid or 0)

    @guarded
    def search_activity(
        self,
        agent: str | None = None,
        severity: str | None = None,
        text: str | None = None,
        start: float | None = None,
        end: float | None = None,
        limit: int = 100,
    ) -> list[ActivityEntry]:
        """The activity log, newest first.

        ``severity`` keeps entries at least that severe (``"warning"`` gives warnings and
        criticals); ``text`` is a case-insensitive substring of the message or subject.
        """
        sql, args = self._window("activity", "agent", agent, start, end)
        if severity is not None:
            if severity not in SEVERITY_ORDER:
                raise ValueError(f"unknown severity {severity!r}")
            allowed = [s for s, rank in SEVERITY_ORDER.items() if rank >= SEVERITY_ORDER[severity]]
            sql += f" AND severity IN ({', '.join('?' * len(allowed))})"
            args.extend(allowed)
        if text:
            sql += " AND (message LIKE ? ESCAPE '\\' OR subject LIKE ? ESCAPE '\\')"
            args.extend([_like(text), _like(text)])
        rows = self._db().execute(
            f"SELECT id, ts, agent, kind, severity, message, subject {sql}"
            " ORDER BY ts DESC, id DESC LIMIT ?",
            (*args, limit),
        )
        fields = ActivityEntry.model_fields
        return [ActivityEntry(**dict(zip(fields, row, strict=True))) for row in rows]

    # -- helpers ------------------------------------------------------------------------
    @staticmethod
    def _window(
        table: str, column: str | None, value: str | None, start: float | None, end: float | None
    ) -> tuple[str, list[Any]]:
        sql = f"FROM {table} WHERE 1 = 1"
        args: list[Any] = []
        if column is not None and value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
        if start is not None:
            sql += " AND ts >= ?"
            args.append(start)
        if end is not None:
            sql += " AND ts <= ?"
            args.append(end)
        return sql, args

    @staticmethod
    def _parse_rows(model: Any, rows: Iterable[tuple[Any, ...]]) -> Iterable[Any]:
        for (data,) in rows:
            try:
                yield model.model_validate_json(data)
            except ValidationError as exc:  # a row from an incompatible older model
                log.warning("skipping a stored %s that no longer parses: %s", model.__name__, exc)

    def _event_retention(
        self, conn: sqlite3.Connection, now: float, policy: RetentionPolicy
    ) -> dict[str, int]:
        cut = now - policy.events_days * 86400
        deleted = {
            table: conn.execute(f"DELETE FROM {table} WHERE ts < ?", (cut,)).rowcount
            for table in ("activity", "agent_event", "analysis", "health", "alert_transition")
        }
        # Firing alerts stay however old they are: they are still true.
        deleted["alert"] = conn.execute(
            "DELETE FROM alert WHERE state = ? AND resolved_at < ?",
            (AlertState.RESOLVED.value, cut),
        ).rowcount
        audit_cut = now - policy.audit_days * 86400
        deleted["audit"] = conn.execute(
            "DELETE FROM audit WHERE updated_at < ?", (audit_cut,)
        ).rowcount
        return deleted
