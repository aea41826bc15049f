"""A fleet of hosts on one bus: what each host says of itself, and what many hosts share.

Every host publishes a :class:`HostBeat` on ``fleet.heartbeat`` (``[fleet]
heartbeat_interval``): who it is, which agents it runs, its health and counts. The fleet
view (the host with ``[fleet] role = "central"``) keeps the newest beat of every host and
flags a host *stale* or *lost* when beats stop (``stale_after``, ``lost_after``).

The same alert on many hosts within ``[fleet] incident_window`` is one
:class:`FleetIncident` ("7 hosts: /var/log filling since 14:05"), published on
``fleet.incident.opened`` / ``updated`` / ``resolved`` and notified once::

    FleetIncident(id="f1", key="disk_usage:/var/log", title="7 hosts: ...", hosts=[...])
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.model.alerts import Severity

__all__ = [
    "FleetHostState",
    "FleetHostSummary",
    "FleetIncident",
    "FleetIncidentHost",
    "HostBeat",
]


class FleetHostState(StrEnum):
    """How the fleet view sees a host, from the age of its last heartbeat."""

    UP = "up"
    STALE = "stale"
    LOST = "lost"


class HostBeat(BaseModel):
    """``fleet.heartbeat``: one host's account of itself, every heartbeat interval."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(description="the host id, its subject token")
    name: str = Field("", max_length=120, description="display name (host name by default)")
    version: str = ""
    agents: list[str] = Field(default_factory=list, description="the agents it runs")
    role: Literal["host", "central"] = "host"
    labels: dict[str, str] = Field(default_factory=dict)
    started_at: float | None = None
    sent_at: float
    interval: float = Field(description="seconds until the next beat")
    sample_interval: float | None = None
    status: str = Field("unknown", description="healthy, degraded, critical or unknown")
    score: float | None = Field(None, description="health score 0-100")
    firing: int = 0
    incidents: int = 0
    pending_approvals: int = 0
    last_sample_at: float | None = None
    outbox: int = Field(0, description="messages waiting for the server")
    connected: bool = True
    notifies: bool = Field(
        False, description="it tells people of its own alerts and incidents itself"
    )


class FleetHostSummary(BaseModel):
    """One row of the fleet view: a host as the central side last heard of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    name: str = ""
    state: FleetHostState
    last_seen: float | None = Field(None, description="time of its newest message")
    age_s: float | None = Field(None, description="seconds since then")
    status: str = "unknown"
    score: float | None = None
    firing: int = 0
    incidents: int = 0
    pending_approvals: int = 0
    agents: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    version: str = ""
    outbox: int = 0
    connected: bool = True
    worst_severity: Severity | None = None


class FleetIncidentHost(BaseModel):
    """One host inside a fleet incident."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    alert_id: str
    severity: Severity
    summary: str
    since: float
    firing: bool = True


class FleetIncident(BaseModel):
    """The same problem on many hosts, from the moment enough of them share it.

    ``key`` is what the alerts share (rule and subject, without the host)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    key: str
    rule: str
    subject: str
    title: str
    severity: Severity
    state: Literal["open", "resolved"] = "open"
    hosts: list[FleetIncidentHost] = Field(default_factory=list)
    opened_at: float
    updated_at: float
    resolved_at: float | None = None
    since: float = Field(description="when the first of its hosts began")
