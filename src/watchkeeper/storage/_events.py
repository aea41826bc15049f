"""Agent events, analyses, the health timeline, learned baselines and the activity log."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from watchkeeper.model.events import HealthPoint
from watchkeeper.storage._db import DbBase, guarded, to_json
from watchkeeper.storage.models import (
    SEVERITY_ORDER,
    ActivityEntry,
    AgentEvent,
    AnalysisRecord,
    RetentionPolicy,
)

__all__ = ["EventsMixin"]

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


class EventsMixin(DbBase):
    """The event-like history. Mixed into :class:`SyncStorage`."""

    # -- agent events, analyses, health, baselines --------------------------------------
    @guarded
    def record_agent_event(self, event: AgentEvent) -> int:
        with self._tx() as conn:
            cursor = conn.execute(
                "INSERT INTO agent_event (ts, agent, kind, detail, data) VALUES (?, ?, ?, ?, ?)",
                (event.ts, event.agent, event.kind, event.detail, to_json(event.data)),
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
                (at, *values, to_json(dict(data))),
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
    def record_health(self, record: HealthPoint) -> None:
        """Keep one change of the health timeline (its status, score and reasons)."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO health (ts, status, score, reasons) VALUES (?, ?, ?, ?)",
                (record.ts, record.status, record.score, to_json(record.reasons)),
            )

    @guarded
    def health_history(
        self, start: float | None = None, end: float | None = None, limit: int = 1000
    ) -> list[HealthPoint]:
        """Health changes in the window, oldest first (the most recent ``limit`` of them)."""
        sql, args = self._window("health", None, None, start, end)
        rows = self._db().execute(
            f"SELECT ts, status, score, reasons {sql} ORDER BY ts DESC LIMIT ?", (*args, limit)
        )
        out = [
            HealthPoint(ts=r[0], status=r[1], score=r[2], reasons=json.loads(r[3])) for r in rows
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
                (key, ts, to_json(data)),
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

    # -- helpers ----------------------------------------------------------------------
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
            "DELETE FROM alert WHERE state = 'resolved' AND resolved_at < ?", (cut,)
        ).rowcount
        # Incidents likewise: a resolved one goes with its alerts, an open one stays, unless
        # nothing was heard of it for as long (left open by a run that ended: the analyzer
        # rewrites the row of every incident it still holds whenever that one changes).
        deleted["incident"] = conn.execute(
            "DELETE FROM incident WHERE (state = 'resolved' AND resolved_at < ?)"
            " OR (state = 'open' AND updated_at < ?)",
            (cut, cut),
        ).rowcount
        conn.execute(
            "DELETE FROM incident_alert WHERE incident_id NOT IN (SELECT id FROM incident)"
        )
        audit_cut = now - policy.audit_days * 86400
        deleted["audit"] = conn.execute(
            "DELETE FROM audit WHERE updated_at < ?", (audit_cut,)
        ).rowcount
        return deleted
