"""One incident told from opening to resolution: what the incident page and its API show.

``/api/incidents/{id}`` and the page ``/incidents/{id}`` answer the same questions: when
did each alert open, escalate and resolve (``timeline``), what did the analysis say and
why (``analyses``, the rules' or a model's), what did the gate decide for each action and
did the action work (``decisions``), and how did it end. The audit keeps outcomes, not
verdicts, so a record's verdict is read back from its outcome::

    decision = decision_of([pending_record, succeeded_record])
    decision.verdict, decision.verification   # "approve", "verified"

Everything here is read: the live analyzer for an open incident, storage for the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from watchkeeper.config import WebSettings
from watchkeeper.config.sections import incident_path
from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import Alert
from watchkeeper.model.analysis import AnalysisResult
from watchkeeper.model.incidents import Incident
from watchkeeper.storage.models import AlertTransition, AnalysisRecord

__all__ = [
    "ANALYSIS_GRACE",
    "ActionDecision",
    "LinkedIncident",
    "TimelineStep",
    "analyses_of",
    "decision_of",
    "decisions_of",
    "incident_link",
    "linked",
    "timeline_of",
]

#: Analyses shown for one incident (the newest); an hour of flapping makes many.
ANALYSES_SHOWN = 20
#: Seconds after an incident ends that an analysis of it may still arrive (a model's
#: answer can come after the restart that resolved it).
ANALYSIS_GRACE = 600.0
#: Steps shown in one incident's timeline (the first ones, then the incident's end).
STEPS_SHOWN = 400

#: The gate's verdicts the audit lets us tell apart (a deferral leaves no record).
Verdict = Literal["run", "approve", "refuse", "dry_run"]
Verification = Literal["verified", "not verified", "not checked", "did not run", "waiting"]

_RAN = frozenset(
    {ActionOutcome.SUCCEEDED, ActionOutcome.FAILED, ActionOutcome.TIMED_OUT, ActionOutcome.RUNNING}
)


class LinkedIncident(Incident):
    """An incident as the API lists it: with ``url``, its page on the dashboard."""

    url: str = Field("", description="the incident's page (absolute when web.public_url is known)")


class TimelineStep(BaseModel):
    """One moment of the incident: it opened or resolved, or one of its alerts fired,
    changed severity, escalated or resolved."""

    at: float
    kind: Literal["opened", "firing", "changed", "escalated", "resolved", "closed"]
    subject: str = Field("", description="the alert's subject; empty for the incident's own steps")
    severity: str = ""
    summary: str = ""
    alert_id: str | None = None


class ActionDecision(BaseModel):
    """What the gate decided for one action request, and how it ended."""

    id: str = Field(description="the action record's id")
    verdict: Verdict
    reason: str = Field(description="why, in the words the audit kept")
    outcome: ActionOutcome
    verification: Verification
    detail: str = ""
    approved_by: str | None = None


def incident_link(web: WebSettings, incident_id: str) -> str:
    """The page's address people can open: absolute at ``web.public_url`` (or the
    address derived from ``web.host``/``port``), else a path on this server."""
    return web.incident_url(incident_id) or incident_path(incident_id)


def linked(incidents: Iterable[Incident], web: WebSettings) -> list[LinkedIncident]:
    return [
        LinkedIncident.model_validate({**dict(i), "url": incident_link(web, i.id)})
        for i in incidents
    ]


def timeline_of(
    incident: Incident, transitions: Sequence[AlertTransition], members: Sequence[Alert]
) -> list[TimelineStep]:
    """The incident's steps in time order. Stored transitions when there are any for an
    alert; otherwise (no history) what the alert itself says of its start and end."""
    subjects = {a.id: a.subject for a in members}
    steps = [
        TimelineStep(
            at=incident.opened_at,
            kind="opened",
            severity=incident.severity.value,
            summary=incident.title,
        )
    ]
    told = set()
    for step in transitions:
        if step.kind not in ("firing", "changed", "escalated", "resolved"):
            continue
        told.add(step.alert_id)
        steps.append(
            TimelineStep(
                at=step.ts,
                kind=step.kind,  # type: ignore[arg-type]  # narrowed just above
                subject=subjects.get(step.alert_id, ""),
                severity=step.severity,
                summary=step.summary,
                alert_id=step.alert_id,
            )
        )
    for alert in members:
        if alert.id in told:
            continue
        base = {"subject": alert.subject, "severity": alert.severity.value, "alert_id": alert.id}
        steps.append(
            TimelineStep(at=alert.started_at, kind="firing", summary=alert.summary, **base)
        )
        if alert.resolved_at is not None:
            steps.append(
                TimelineStep(at=alert.resolved_at, kind="resolved", summary=alert.summary, **base)
            )
    steps.sort(key=lambda s: (s.at, s.kind != "opened"))
    steps = steps[:STEPS_SHOWN]
    if incident.resolved_at is not None:
        steps.append(
            TimelineStep(
                at=incident.resolved_at,
                kind="closed",
                severity=incident.severity.value,
                summary=incident.title,
            )
        )
    return steps


def analyses_of(
    incident: Incident, stored: Sequence[AnalysisRecord], live: Sequence[AnalysisResult | None]
) -> list[AnalysisResult]:
    """The analyses about this incident, oldest first: by its id, or (an analysis made
    before it had one) by the alerts in it."""
    ids = set(incident.alert_ids)
    fingerprints = set(incident.fingerprints)
    found: dict[str, AnalysisResult] = {}
    candidates: list[AnalysisResult] = []
    for record in stored:
        try:
            candidates.append(AnalysisResult.model_validate(record.data))
        except ValueError:
            continue  # a row from an older shape: not this page's to fix
    candidates.extend(result for result in live if result is not None)
    for result in candidates:
        about = result.incident_id == incident.id or (
            result.incident_id is None
            and (ids & set(result.alert_ids) or fingerprints & set(result.fingerprints))
        )
        if about:
            found.setdefault(result.id, result)
    return sorted(found.values(), key=lambda r: r.at)[-ANALYSES_SHOWN:]


def _verification(last: ActionRecord) -> Verification:
    if last.outcome is ActionOutcome.PENDING:
        return "waiting"
    if last.outcome is ActionOutcome.RUNNING:
        return "waiting"
    if last.outcome not in _RAN:
        return "did not run"
    if last.verified is None:
        return "not checked"
    return "verified" if last.verified else "not verified"


def decision_of(records: Sequence[ActionRecord]) -> ActionDecision:
    """The gate's verdict for one request from its audit records (oldest first): a
    request that waited for a person was ``approve`` whatever came after."""
    first, last = records[0], records[-1]
    approved_by: str | None = None
    if last.reason.startswith("approved by "):
        approved_by = last.reason.removeprefix("approved by ").split(":", 1)[0]
    verdict: Verdict
    if (
        first.outcome is ActionOutcome.PENDING
        or approved_by
        or (last.outcome is ActionOutcome.REJECTED)
    ):
        verdict, reason = "approve", first.detail if first.outcome is ActionOutcome.PENDING else ""
        reason = reason or (f"approved by {approved_by}" if approved_by else "waited for a person")
    elif last.outcome is ActionOutcome.REFUSED:
        verdict, reason = "refuse", last.detail
    elif last.outcome is ActionOutcome.DRY_RUN:
        verdict, reason = "dry_run", last.detail
    elif last.proposer == "user":
        verdict, reason = "run", f"asked by a person ({last.proposed_by or 'unnamed'})"
    else:
        verdict, reason = "run", "allowed to run without a person"
    return ActionDecision(
        id=last.id,
        verdict=verdict,
        reason=reason,
        outcome=last.outcome,
        verification=_verification(last),
        detail=last.detail,
        approved_by=approved_by,
    )


def decisions_of(actions: Sequence[ActionRecord]) -> list[ActionDecision]:
    """One decision per action request, in the order the requests were made."""
    by_id: dict[str, list[ActionRecord]] = {}
    for record in actions:
        by_id.setdefault(record.id, []).append(record)
    return [decision_of(records) for records in by_id.values()]
