"""A fleet view fed with several hosts, for the fleet API and page tests.

``StandInFleet`` answers the read interface of the central host's fleet state
(``hosts``, ``host_view``, ``incidents``, ``incident``) from rows the test gives it;
``FleetStandInAgent`` carries it as ``orchestrator.agents["fleet"]`` in a real running
watchkeeper (``LiveServer(..., factories=fleet_factories(...))``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from watchkeeper.agents.base import AgentContext, BaseAgent
from watchkeeper.agents.remediator import RemediatorAgent
from watchkeeper.model.fleet import (
    FleetHostState,
    FleetHostSummary,
    FleetIncident,
    FleetIncidentHost,
)

_ORDER = {FleetHostState.LOST: 0, FleetHostState.STALE: 1, FleetHostState.UP: 2}


class StandInFleet:
    """Hosts by id: a summary (``age_s`` counted from ``last_seen`` at each read) and the
    rest of its view."""

    def __init__(self) -> None:
        self.rows: dict[str, FleetHostSummary] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.fleet_incidents: list[FleetIncident] = []

    def add(self, summary: FleetHostSummary, **view: Any) -> None:
        self.rows[summary.host] = summary
        self.views[summary.host] = {
            "beat": None,
            "sample": None,
            "alerts": [],
            "incidents": [],
            "approvals": [],
            "actions": [],
            **view,
        }

    def hosts(self, now: float) -> list[FleetHostSummary]:
        rows = [
            row.model_copy(update={"age_s": round(now - (row.last_seen or now), 1)})
            for row in self.rows.values()
        ]
        return sorted(rows, key=lambda r: (_ORDER[r.state], r.score or 0, r.host))

    def host_view(self, host: str, now: float) -> dict[str, Any] | None:
        if host not in self.rows:
            return None
        summary = next(row for row in self.hosts(now) if row.host == host)
        return {"summary": summary.model_dump(mode="json"), **self.views[host]}

    def incidents(self) -> list[FleetIncident]:
        return list(self.fleet_incidents)

    def incident(self, incident_id: str) -> FleetIncident | None:
        return next((i for i in self.fleet_incidents if i.id == incident_id), None)


class FleetStandInAgent(BaseAgent):
    """The central host's fleet agent as the web sees it: a running agent with a state."""

    kind = "fleet"

    def __init__(self, name: str, ctx: AgentContext, fleet: StandInFleet) -> None:
        super().__init__(name, ctx, interval=1.0)
        self.fleet_state = fleet


def sample_fleet(now: float | None = None) -> StandInFleet:
    """Three hosts (one up, one stale, one lost) and one fleet incident on two of them."""
    now = time.time() if now is None else now
    fleet = StandInFleet()
    fleet.add(
        FleetHostSummary(
            host="central-1",
            name="central",
            state=FleetHostState.UP,
            last_seen=now - 2,
            status="healthy",
            score=97.0,
            agents=["sensor", "remediator", "fleet"],
        )
    )
    fleet.add(
        FleetHostSummary(
            host="web-2",
            name="<img src=x onerror=alert(1)>",
            state=FleetHostState.STALE,
            last_seen=now - 40,
            status="degraded",
            score=61.0,
            firing=2,
            incidents=1,
            pending_approvals=1,
        ),
        alerts=[
            {
                "id": "a1",
                "rule": "disk_usage",
                "severity": "warning",
                "subject": "disk:/var/log",
                "summary": "<b>/var/log</b> is 91% full",
                "started_at": now - 300,
            }
        ],
        approvals=[
            {
                "id": "3f9a0c1d2e4b",
                "action": "restart_service",
                "target": "nginx",
                "outcome": "pending",
                "proposer": "rule",
                "reason": "nginx is down",
                "created_at": now - 30,
            }
        ],
        sample={"timestamp": now - 40, "cpu": {"percent": 12.5}, "memory": {"percent": 55.0}},
    )
    fleet.add(
        FleetHostSummary(
            host="db-3",
            name="db",
            state=FleetHostState.LOST,
            last_seen=now - 900,
            status="critical",
            score=20.0,
            firing=1,
        )
    )
    fleet.fleet_incidents.append(
        FleetIncident(
            id="f1",
            key="disk_usage:disk:/var/log",
            rule="disk_usage",
            subject="disk:/var/log",
            title="2 hosts: /var/log filling since 14:05",
            severity="warning",
            hosts=[
                FleetIncidentHost(
                    host=h, alert_id="a1", severity="warning", summary="full", since=now - 300
                )
                for h in ("web-2", "db-3")
            ],
            opened_at=now - 290,
            updated_at=now - 10,
            since=now - 300,
        )
    )
    return fleet


def fleet_factories(fleet: StandInFleet) -> dict[str, Callable[[str, AgentContext], BaseAgent]]:
    """A central host's team for the web tests: the real remediator and the fleet view."""

    def fleet_agent(name: str, ctx: AgentContext) -> BaseAgent:
        return FleetStandInAgent(name, ctx, fleet)

    return {"remediator": RemediatorAgent, "fleet": fleet_agent}
