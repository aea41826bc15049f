"""The typed rows storage hands back, and the few it takes in besides bus models.

Alerts and audit records come back as the bus's own models (:class:`Alert`,
:class:`ActionRecord`), so the web and the CLI render history and live messages alike.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.model.activity import ActivitySeverity

__all__ = [
    "ActivityEntry",
    "AgentEvent",
    "AlertTransition",
    "AnalysisRecord",
    "MaintenanceReport",
    "MetricPoint",
    "RetentionPolicy",
    "StorageStats",
    "SuccessRate",
    "SuccessRates",
]


#: Order of activity severities, for "at least this severe" searches.
SEVERITY_ORDER: dict[str, int] = {"debug": 0, "info": 1, "warning": 2, "critical": 3}


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MetricPoint(_Row):
    """One step of a metric series: the bucket's start and its min/avg/max over ``count``
    raw values. ``metric_range("cpu.percent", t0, t1, 60)`` returns these."""

    ts: float
    min: float
    avg: float
    max: float
    count: int


class ActivityEntry(_Row):
    """One line of the activity log: what happened, told once, searchable later.

    ``agent`` is who did it or whom it concerns (``"analyzer"``, ``"supervisor"``);
    ``kind`` is what sort of event (usually the bus topic, ``"alert.firing"``);
    ``subject`` what it was about (an alert's subject, an action's target).
    """

    id: int | None = None
    ts: float
    agent: str
    kind: str
    severity: ActivitySeverity = "info"
    message: str
    subject: str | None = None


class AgentEvent(_Row):
    """A start, stop, restart or failure of an agent (or of the whole system)."""

    id: int | None = None
    ts: float
    agent: str
    kind: str
    detail: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class AlertTransition(_Row):
    """One step in an alert's life: ``firing``, ``changed`` (severity), ``escalated``,
    ``resolved``."""

    id: int
    alert_id: str
    fingerprint: str
    ts: float
    kind: str
    severity: str
    summary: str


class AnalysisRecord(_Row):
    """An analysis (LLM or rules) as stored: the columns the UI lists, plus all it said."""

    id: int
    ts: float
    source: str | None = None
    model: str | None = None
    latency_s: float | None = None
    prompt_chars: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    verdict: str | None = None
    summary: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class SuccessRate(_Row):
    """How often actions on one key (an action name or a target) worked.

    Only finished attempts count: ``succeeded`` against ``failed`` (which includes timed
    out). ``rate`` is ``None`` when nothing has finished yet.
    """

    key: str
    attempts: int
    succeeded: int
    failed: int
    rate: float | None


class SuccessRates(_Row):
    by_action: list[SuccessRate]
    by_target: list[SuccessRate]


class RetentionPolicy(_Row):
    """How long each kind of history is kept.

    Built from ``settings.storage`` with :meth:`from_settings`; the fields that settings
    do not carry (yet) keep the defaults here.
    """

    raw_hours: float = Field(24.0, gt=0)
    aggregate_days: float = Field(30.0, gt=0)
    events_days: float = Field(
        90.0, gt=0, description="activity, alerts, incidents, agent events, analyses, health"
    )
    audit_days: float = Field(365.0, gt=0)

    @classmethod
    def from_settings(cls, storage_settings: object) -> RetentionPolicy:
        """From a ``StorageSettings``; extra fields are read when the settings have them."""
        defaults = cls()
        return cls(
            raw_hours=getattr(storage_settings, "raw_retention_hours", defaults.raw_hours),
            aggregate_days=getattr(
                storage_settings, "aggregate_retention_days", defaults.aggregate_days
            ),
            events_days=getattr(storage_settings, "event_retention_days", defaults.events_days),
            audit_days=getattr(storage_settings, "audit_retention_days", defaults.audit_days),
        )


class MaintenanceReport(_Row):
    """What one maintenance pass did (roll-up, then retention)."""

    ts: float
    rolled_up_rows: int
    rollup_until: float | None
    deleted: dict[str, int]
    duration_ms: float


class StorageStats(_Row):
    """Counters for the status page: is history being written, and how big is it."""

    path: str
    open: bool
    schema_version: int | None
    size_bytes: int
    writes: int
    write_errors: int
    dropped_writes: int
    samples_written: int
    pending_writes: int
    kept_writes: int = 0
    """Failed writes kept in memory, to be written once the disk takes them again."""
    failing_since: float | None = None
    """When the run of failed writes going on now began; None while writes work."""
    last_error: str | None
    last_error_at: float | None
    last_maintenance: MaintenanceReport | None
