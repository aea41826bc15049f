"""The system snapshot: what the status file, ``GET /api/system`` and the CLI show.

The orchestrator builds one :class:`SystemSnapshot` (``orchestrator.snapshot()``); the
status file is its JSON, the web answers it with the health score added, and the CLI
reads either back with one call::

    snapshot = SystemSnapshot.model_validate(api.get("/api/system"))
    snapshot.agents["sensor"].state            # AgentState.RUNNING

Use these models wherever a snapshot crosses a boundary (a file, HTTP, the CLI); never
pass the JSON around as a dict. Each agent's own ``status()`` stays free-form
(``details``): its shape belongs to that agent.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AgentHealth",
    "AgentState",
    "AnalyzerDetails",
    "BusCounters",
    "HealthScore",
    "RemediatorDetails",
    "SensorDetails",
    "ServiceBrief",
    "StatusHeader",
    "SystemSnapshot",
]


class AgentState(StrEnum):
    """Where an agent is in its life; ``failed`` and ``stopped`` mean it does no work."""

    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"


class AgentHealth(BaseModel):
    """One agent's vital signs: ``agent.health()``, and each entry of ``snapshot.agents``."""

    name: str
    kind: str
    state: AgentState
    interval: float
    started_at: float | None
    uptime_s: float
    last_check: float | None
    last_duration_ms: float | None
    checks: int
    errors: int
    consecutive_errors: int
    last_error: str | None
    restarts: int
    last_restart_reason: str | None
    bad_remote_messages: int = Field(
        0, description="messages from other hosts whose payload did not parse: dropped"
    )


class BusCounters(BaseModel):
    """The bus totals a snapshot carries (``/api/bus`` has the full statistics)."""

    published: int
    delivered: int
    dropped: int
    subscribers: int = Field(description="how many subscriptions are open")


class ServiceBrief(BaseModel):
    """One watched service as the sensor last saw it."""

    name: str
    state: str
    pid: int | None = None
    healthy: bool | None = None


class SensorDetails(BaseModel):
    """The sensor's entry of ``snapshot.details``: how fresh the view is, what is missing."""

    sampled_at: float | None = None
    partial: dict[str, str] = Field(default_factory=dict)
    services: list[ServiceBrief] = Field(default_factory=list)
    comment: str | None = None


class AnalyzerDetails(BaseModel):
    """The analyzer's entry of ``snapshot.details`` (the parts the CLI shows)."""

    verdict: str | None = None
    firing: int = 0
    llm: str | None = None


class RemediatorDetails(BaseModel):
    """The remediator's entry of ``snapshot.details`` (the parts the CLI shows)."""

    mode: str | None = None
    running: int = 0
    pending: int = 0
    given_up: list[str] = Field(default_factory=list)


class HealthScore(BaseModel):
    """The 0-100 health score the web adds to the snapshot, and who computed it."""

    model_config = ConfigDict(extra="allow")

    status: str
    score: int | None = None
    reasons: list[str] = Field(default_factory=list)
    source: str | None = None


class SystemSnapshot(BaseModel):
    """The whole system at one moment; ``health`` is added by the web (the 0-100 score).

    ``details`` holds each agent's ``status()`` by agent name; ``plugins`` each plugin's
    state by plugin name (absent when the host loads no plugins).
    """

    model_config = ConfigDict(extra="allow")

    version: str
    pid: int
    state: str = Field(description="created, running, stopping or stopped")
    status: str = Field(description="healthy, degraded, or the state when not running")
    started_at: float | None
    updated_at: float
    uptime_s: float
    agents: dict[str, AgentHealth]
    bus: BusCounters
    config_file: str | None
    details: dict[str, Any] = Field(default_factory=dict)
    plugins: dict[str, Any] | None = None
    health: HealthScore | None = None

    def sensor(self) -> SensorDetails:
        """The sensor's details, typed; empty when there is no sensor or it reported an
        error instead. ``snapshot.sensor().services`` lists the watched services."""
        return _sensor(self.details)

    def analyzer(self) -> AnalyzerDetails | None:
        """The analyzer's details, or None when it is off or its status broke."""
        found = self._details_of("analyzer")
        return None if found is None else AnalyzerDetails.model_validate(found)

    def remediator(self) -> RemediatorDetails | None:
        """The remediator's details, or None when it is off or its status broke."""
        found = self._details_of("remediator")
        return None if found is None else RemediatorDetails.model_validate(found)

    def _details_of(self, name: str) -> dict[str, Any] | None:
        return _details_of(self.details, name)


class StatusHeader(BaseModel):
    """What a reader of someone else's status file needs: is its writer running, which
    process is it, how fresh is the file. Read this rather than the whole snapshot when
    the file may come from another version (``watchkeeper.status.read_status``)."""

    state: str
    pid: int = 0
    updated_at: float = 0.0
    details: dict[str, Any] = Field(default_factory=dict)

    def sensor(self) -> SensorDetails:
        """The sensor's details, as :meth:`SystemSnapshot.sensor`."""
        return _sensor(self.details)


def _details_of(details: dict[str, Any], name: str) -> dict[str, Any] | None:
    found = details.get(name)
    return found if isinstance(found, dict) and "error" not in found else None


def _sensor(details: dict[str, Any]) -> SensorDetails:
    return SensorDetails.model_validate(_details_of(details, "sensor") or {})
