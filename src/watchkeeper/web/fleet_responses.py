"""The shapes of the fleet API's GET answers, shared by the server and the CLI.

The routes send bytes serialised once; these models document them in ``/openapi.json``
and read them back::

    hosts = FleetHostsReply.model_validate(api.get("/api/fleet/hosts"))
    hosts.counts["lost"]
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from watchkeeper.model.actions import ActionRecord
from watchkeeper.model.alerts import Alert
from watchkeeper.model.fleet import FleetHostSummary, FleetIncident, HostBeat
from watchkeeper.model.incidents import Incident

__all__ = ["FleetHostView", "FleetHostsReply", "FleetIncidentsReply"]


class FleetHostsReply(BaseModel):
    """``/api/fleet/hosts``: every host, worst first, and how many are in each state."""

    central: str = Field(description="the host id of this, the central host")
    now: float
    counts: dict[str, int] = Field(description="hosts by state: up, stale, lost")
    total: int
    hosts: list[FleetHostSummary]


class FleetHostView(BaseModel):
    """``/api/fleet/hosts/{host}``: one host as the central host last heard of it."""

    host: str
    summary: FleetHostSummary
    beat: HostBeat | None = None
    sample: dict[str, Any] | None = Field(None, description="its newest MetricsSample")
    alerts: list[Alert] = Field(default_factory=list, description="firing")
    incidents: list[Incident] = Field(default_factory=list, description="open")
    approvals: list[ActionRecord] = Field(default_factory=list, description="pending")
    actions: list[ActionRecord] = Field(default_factory=list, description="recent, newest first")


class FleetIncidentsReply(BaseModel):
    """``/api/fleet/incidents``: fleet incidents, the open ones first."""

    open: int
    total: int
    incidents: list[FleetIncident]
