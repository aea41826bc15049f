"""Incidents: correlated alerts seen as one problem, with a probable root cause.

A full ``/`` makes the database fail and the web answer 502: three alerts, one incident.
The analyzer groups firing alerts that explain each other (a resource exhausted before
the services that need it failed; a service before the ones that depend on it; the same
subject flapping) and publishes the group on ``incident.opened`` / ``incident.updated`` /
``incident.resolved``; the payload is always the full ``Incident``::

    incident = Incident(id="a1b2c3", key="disk:/", title="/ is full: db and web fail", ...)

``root`` is the fingerprint of the alert judged the probable cause (``None`` when the
members are only related, not explained), ``members`` every alert in it, and ``remedies``
the suggested actions ordered root-first: what fixes the cause comes before what restarts
its victims. People are told once per incident, not once per alert.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.model.alerts import Severity, SuggestedAction

__all__ = ["Incident", "IncidentMember", "IncidentState"]


class IncidentState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class IncidentMember(BaseModel):
    """One alert inside an incident, as the incident last saw it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alert_id: str
    fingerprint: str
    rule: str
    subject: str
    severity: Severity
    summary: str
    role: str = Field("related", description="root, effect or related")
    firing: bool = True


class Incident(BaseModel):
    """One problem on a host, made of one or more alerts, from opening to resolution.

    Frozen: every subscriber on the bus receives this same instance."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    key: str = Field(description="what the incident is about: its root's subject, stable")
    title: str
    severity: Severity
    state: IncidentState = IncidentState.OPEN
    root: str | None = Field(None, description="fingerprint of the probable root cause")
    root_cause: str = Field("", description="the probable cause, in words")
    confidence: float = Field(0.0, ge=0, le=1, description="how sure the root cause is")
    members: list[IncidentMember] = Field(default_factory=list)
    remedies: list[SuggestedAction] = Field(default_factory=list)
    flapping: bool = False
    flaps: int = Field(0, ge=0, description="state changes counted in the flap window")
    opened_at: float
    updated_at: float
    resolved_at: float | None = None
    host: str = ""

    @property
    def alert_ids(self) -> list[str]:
        return [m.alert_id for m in self.members]

    @property
    def fingerprints(self) -> list[str]:
        return [m.fingerprint for m in self.members]
