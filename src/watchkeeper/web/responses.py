"""The shapes of the API's GET answers, shared by the server and the CLI.

Each route declares its model as ``response_model`` (so ``/openapi.json`` documents it
and schemathesis checks answers against it), and the CLI reads an answer back with the
same model::

    alerts = AlertsReply.model_validate(api.get("/api/alerts"))
    alerts.counts["critical"]

The hot routes send bytes they serialised once (the latest sample, the system snapshot),
so declaring a model costs them no validation per request. Parts whose shape belongs to
one agent (its ``status()``) stay free-form here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.bus import BusStats
from watchkeeper.model.actions import ActionInfo, ActionRecord
from watchkeeper.model.alerts import Alert, SuggestedAction
from watchkeeper.model.analysis import AnalysisResult
from watchkeeper.model.events import ConfigChange
from watchkeeper.model.incidents import Incident
from watchkeeper.model.metrics import MetricSpec
from watchkeeper.model.snapshot import AgentHealth
from watchkeeper.storage.models import (
    ActivityEntry,
    AnalysisRecord,
    SuccessRates,
)
from watchkeeper.web.history import MetricHistory
from watchkeeper.web.incident_view import ActionDecision, LinkedIncident, TimelineStep

__all__ = [
    "ActivityReply",
    "AgentAnswer",
    "AgentDetail",
    "AlertsReply",
    "AnalysisReply",
    "BusMessage",
    "BusReply",
    "CommandAnswer",
    "ConfigPatchReply",
    "ConfigReply",
    "FlatMetrics",
    "GivenUp",
    "IncidentDetail",
    "IncidentsReply",
    "LiveRates",
    "LlmState",
    "MetricHistory",
    "MetricNames",
    "MetricSpecs",
    "RateRow",
    "RecentPoints",
    "RemediationReply",
    "WebStats",
]


class AgentDetail(BaseModel):
    """``/api/agents/{name}``: health, the agent's own status, the commands it takes."""

    health: AgentHealth
    status: Any = Field(None, description="the agent's status(); its shape is the agent's")
    commands: list[str]


class FlatMetrics(BaseModel):
    """``/api/metrics?flat=true``: every numeric metric under its dotted name."""

    timestamp: float
    metrics: dict[str, float]


class RecentPoints(BaseModel):
    """``/api/metrics/recent``: the chart history as columns; besides ``ts`` there is one
    list per name in ``series`` (``cpu``, ``memory``, ...), ``None`` where unknown."""

    model_config = ConfigDict(extra="allow")

    series: list[str]
    points: int
    ts: list[float | None]

    def column(self, name: str) -> list[float | None]:
        """One series' values, oldest first; empty for a name the server did not send."""
        values = (self.model_extra or {}).get(name)
        return list(values) if isinstance(values, list) else []


class MetricNames(BaseModel):
    """``/api/metrics/names``: the metrics with stored history under ``prefix``."""

    prefix: str
    names: list[str]


class MetricSpecs(BaseModel):
    """``/api/metrics/specs``: every declared metric."""

    specs: list[MetricSpec]


class AlertsReply(BaseModel):
    """``/api/alerts``: firing alerts (with counts by severity); ``history`` when a range
    was asked for."""

    analyzer: bool
    counts: dict[str, int]
    firing: list[Alert]
    history: list[Alert] | None = None


class IncidentsReply(BaseModel):
    """``/api/incidents``: incidents, open ones first (worst, then newest), then resolved
    ones newest first; ``counts`` are the open ones by severity. Open incidents come live
    from the analyzer (``source``), resolved ones from storage."""

    analyzer: bool
    state: Literal["open", "resolved", "all"]
    source: Literal["analyzer", "events", "storage", "none"]
    counts: dict[str, int]
    incidents: list[LinkedIncident]
    history_unavailable: str | None = None


class IncidentDetail(BaseModel):
    """``/api/incidents/{id}``: the incident, its alerts in full (every one that was ever
    in it, each in its own state; the root's first), its remedies root-first, and the
    actions taken for those alerts since it opened. ``url`` is its page, ``timeline`` its
    alerts' steps in time order, ``analyses`` what was concluded about it and why, and
    ``decisions`` the gate's verdict and the verification for each action request."""

    incident: Incident
    source: Literal["analyzer", "events", "storage"]
    members: list[Alert]
    remedies: list[SuggestedAction]
    actions: list[ActionRecord]
    history_unavailable: str | None = None
    url: str = ""
    timeline: list[TimelineStep] = Field(default_factory=list)
    analyses: list[AnalysisResult] = Field(default_factory=list)
    decisions: list[ActionDecision] = Field(default_factory=list)


class LlmState(BaseModel):
    """Whether the model is reachable, and why not; only ``status`` without an analyzer."""

    status: str
    available: bool | None = None
    enabled: bool | None = None
    model: str | None = None
    stats: Any = None


class AnalysisReply(BaseModel):
    """``/api/analysis``: the newest analysis of either path and the newest from the LLM."""

    analyzer: bool
    latest: AnalysisResult | None
    latest_llm: AnalysisResult | None
    llm: LlmState
    history: list[AnalysisRecord] | None = None
    history_unavailable: str | None = None


class ActivityReply(BaseModel):
    """``/api/activity``: the activity feed, newest first, and where it came from."""

    source: Literal["storage", "memory"]
    items: list[ActivityEntry]


class GivenUp(BaseModel):
    """A target the remediator stopped trying to heal, and why."""

    target: str
    since: float
    failures: int
    reason: str


class RateRow(BaseModel):
    """Finished attempts of one action or target since the remediator started."""

    attempts: int
    succeeded: int
    failed: int
    rate: float | None


class LiveRates(BaseModel):
    """The running remediator's success rates, by action name and by target."""

    by_action: dict[str, RateRow]
    by_target: dict[str, RateRow]


class RemediationReply(BaseModel):
    """``/api/remediation``: the mode, declared actions, approvals, audit, success rates.

    ``success_rates`` is the remediator's live table when it runs, or the stored one."""

    mode: str
    counts: dict[str, int]
    available: bool
    actions: list[ActionInfo]
    pending: list[ActionRecord]
    audit: list[ActionRecord]
    success_rates: LiveRates | SuccessRates | None
    given_up: list[GivenUp]
    status: dict[str, Any] | None
    source: Literal["remediator", "storage", "none"]
    history_unavailable: str | None = None


class BusMessage(BaseModel):
    """One recent bus message; ``payload`` only when asked for."""

    id: str
    topic: str
    sender: str
    timestamp: float
    correlation_id: str | None
    payload: Any = None


class WebStats(BaseModel):
    """The web layer's own counters."""

    clients: int
    dropped: int
    frames_built: int
    messages_seen: int
    points: int


class BusReply(BaseModel):
    """``/api/bus``: traffic per topic, subscribers, the latest messages."""

    stats: BusStats
    recent: list[BusMessage]
    web: WebStats


class ConfigReply(BaseModel):
    """``/api/config``: the settings in force (secrets masked), which sections change
    live, and the file they came from."""

    settings: dict[str, Any]
    live_sections: list[str]
    file: str | None


class ConfigPatchReply(BaseModel):
    """``PATCH /api/config``: the change as applied (and whether it was written)."""

    change: ConfigChange


class AgentAnswer(BaseModel):
    """One agent's reply to a command, as the CLI reads it: ``record`` when the command
    ran or decided an action (``run_action``, ``approve``, ``reject``), ``health`` for
    ``health_check``, ``state`` for ``pause``/``resume``/``restart``, ``actions`` for
    ``list_actions``; other commands' fields stay in :meth:`rest`."""

    model_config = ConfigDict(extra="allow")

    ok: bool
    agent: str
    command: str
    error: str | None = None

    record: ActionRecord | None = None
    health: AgentHealth | None = None
    state: str | None = None
    actions: list[ActionInfo] | None = None
    timeout: bool = False

    def rest(self) -> dict[str, Any]:
        """What else the command answered (its own result fields)."""
        return dict(self.model_extra or {})


class CommandAnswer(BaseModel):
    """``POST /api/command`` (200, 409 or 504): each asked agent's reply by name;
    ``detail`` says what went wrong when not ``ok``."""

    ok: bool
    command: str
    target: str
    replies: dict[str, AgentAnswer]
    detail: str | None = None

    def outcomes(self) -> list[str]:
        """The outcomes of the actions the replies carry (``succeeded``, ``refused``...)."""
        return [str(r.record.outcome) for r in self.replies.values() if r.record is not None]
