"""``/api/incidents`` and ``/api/incidents/{id}``: correlated alerts as one problem each.

Open incidents come live from the analyzer (or, when its engine cannot be read, from the
``incident.*`` messages the web saw); resolved ones from storage. Each carries ``url``,
its page (``/incidents/{id}``, see :mod:`watchkeeper.web.incident_view`). Reads only:
nothing here changes anything, so the routes follow ``web.open_reads`` like every GET.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from watchkeeper.config import WebSettings
from watchkeeper.model.actions import ActionRecord
from watchkeeper.model.alerts import SEVERITY_RANK, Alert
from watchkeeper.model.incidents import Incident
from watchkeeper.storage.errors import StorageError
from watchkeeper.storage.models import AlertTransition, AnalysisRecord
from watchkeeper.web.incident_view import (
    ANALYSIS_GRACE,
    analyses_of,
    decisions_of,
    incident_link,
    linked,
    timeline_of,
)
from watchkeeper.web.models import ErrorBody
from watchkeeper.web.responses import IncidentDetail, IncidentsReply
from watchkeeper.web.routes._common import WebContext, fail, model_response

__all__ = ["Located", "build", "live", "locate"]

Source = Literal["analyzer", "events"]


def _worst_first(incidents: list[Incident]) -> list[Incident]:
    return sorted(incidents, key=lambda i: (-SEVERITY_RANK[i.severity], -i.opened_at, i.id))


def _root_first(incident: Incident, alerts: list[Alert], order: dict[str, int]) -> list[Alert]:
    """The root's alert first, then the others in the order they joined."""
    return sorted(alerts, key=lambda a: (a.fingerprint != incident.root, order.get(a.id, 1 << 20)))


def live(ctx: WebContext) -> tuple[list[Incident], Source]:
    """The open incidents: the analyzer's, else those the web heard of on the bus."""
    found = ctx.sources.open_incidents()
    if found is not None:
        return found, "analyzer"
    return ctx.hub.open_incidents(), "events"


@dataclass(frozen=True)
class Located:
    """Where an incident was found (``None``: nowhere), and why history could not help."""

    incident: Incident | None
    source: Literal["analyzer", "events", "storage"]
    problem: str | None = None


async def locate(ctx: WebContext, incident_id: str) -> Located:
    """The incident ``incident_id``: live when open, else from storage."""
    open_now, live_source = live(ctx)
    found = next((i for i in open_now if i.id == incident_id), None)
    if found is not None:
        return Located(found, live_source)
    storage = ctx.sources.storage()
    if storage is None:
        return Located(None, live_source)
    try:
        return Located(await storage.incident(incident_id), "storage")
    except StorageError as exc:
        return Located(None, live_source, f"history is unavailable: {exc}")


def build(ctx: WebContext) -> APIRouter:
    router = APIRouter(tags=["analysis"])

    def web() -> WebSettings:
        return ctx.orchestrator.settings.web

    @router.get(
        "/api/incidents",
        summary="Incidents: correlated alerts with their probable root cause",
        response_model=IncidentsReply,
    )
    async def incidents(
        state: Literal["open", "resolved", "all"] = Query(
            "open", description="open (live), resolved (stored) or all"
        ),
        limit: int = Query(50, ge=1, le=500),
    ) -> Response:
        """Each incident lists its member alerts (``root`` is the probable cause's
        fingerprint, with ``root_cause`` in words), its remedies root-first and whether
        it is flapping. Open incidents first, worst first."""
        open_now, source = live(ctx)
        open_now = _worst_first(open_now)
        counts = {"critical": 0, "warning": 0, "info": 0}
        for incident in open_now:
            counts[incident.severity.value] += 1
        reply = IncidentsReply(
            analyzer=ctx.sources.analyzer() is not None,
            state=state,
            source=source,
            counts=counts,
            incidents=linked(open_now[:limit] if state != "resolved" else [], web()),
        )
        if state != "open" and len(reply.incidents) < limit:
            storage = ctx.sources.storage()
            if storage is None:
                reply.history_unavailable = ctx.sources.storage_problem()
            else:
                try:
                    # Stored rows still marked open are not open now (a previous run's,
                    # or resolved a moment ago and not yet written): the live list rules.
                    past = await storage.incidents("resolved", limit=limit)
                except StorageError as exc:
                    reply.history_unavailable = f"history is unavailable: {exc}"
                else:
                    seen = {i.id for i in reply.incidents}
                    fresh = [i for i in past if i.id not in seen]
                    reply.incidents.extend(linked(fresh[: limit - len(reply.incidents)], web()))
                    if state == "resolved":
                        reply.source = "storage"
        return model_response(reply)

    @router.get(
        "/api/incidents/{incident_id}",
        summary="One incident with its member alerts, remedies and actions",
        response_model=IncidentDetail,
        responses={404: {"model": ErrorBody, "description": "no such incident"}},
    )
    async def incident(
        incident_id: str = Path(min_length=1, max_length=128),
    ) -> Response:
        """Live when the incident is open, else from storage. ``members`` are the alerts
        in full (evidence, suggested actions), root first; ``actions`` the audit records
        of actions taken for them since the incident opened."""
        located = await locate(ctx, incident_id)
        found, source, problem = located.incident, located.source, located.problem
        if found is None:
            raise fail(404, problem or f"no incident {incident_id!r}")
        storage = ctx.sources.storage()
        # Every alert that was ever in it: members leave an incident as they clear.
        joined = list(zip(found.alert_ids, found.fingerprints, strict=True))
        actions: list[ActionRecord] = []
        remediator = ctx.sources.remediator()
        if remediator is not None:
            actions = [r for r in remediator.audit(limit=500) if isinstance(r, ActionRecord)]
        stored: list[Alert] = []
        transitions: list[AlertTransition] = []
        analyses: list[AnalysisRecord] = []
        if storage is not None:
            try:
                joined += await storage.incident_alerts(found.id)
                end = found.resolved_at or ctx.clock()
                stored = await storage.alerts(found.opened_at, end, None, 1000)
                if remediator is None:
                    actions = await storage.audit(limit=500, start=found.opened_at)
                for alert_id in dict.fromkeys(alert_id for alert_id, _ in joined):
                    transitions += await storage.alert_transitions(alert_id=alert_id, limit=100)
                analyses = await storage.analyses(found.opened_at - 1, end + ANALYSIS_GRACE, 200)
            except StorageError as exc:
                problem = f"history is unavailable: {exc}"
        elif source != "storage":
            problem = ctx.sources.storage_problem()
        order = {alert_id: n for n, (alert_id, _) in reversed(list(enumerate(joined)))}
        ids = set(order)
        fingerprints = {fingerprint for _, fingerprint in joined}
        members = {a.id: a for a in ctx.sources.firing() if a.id in ids}
        for a in stored:
            if a.id in ids:
                members.setdefault(a.id, a)
        mine = [
            r
            for r in actions
            if r.created_at >= found.opened_at
            and (r.alert_id in ids or r.fingerprint in fingerprints)
        ]
        mine.sort(key=lambda r: r.created_at)
        everyone = _root_first(found, list(members.values()), order)
        analyzer = ctx.sources.analyzer()
        latest = [analyzer.latest_analysis, analyzer.latest_llm_analysis] if analyzer else []
        detail = IncidentDetail(
            incident=found,
            source=source,
            members=everyone,
            remedies=list(found.remedies),
            actions=mine,
            history_unavailable=problem,
            url=incident_link(web(), found.id),
            timeline=timeline_of(found, transitions, everyone),
            analyses=analyses_of(found, analyses, latest),
            decisions=decisions_of(mine),
        )
        return model_response(detail)

    return router
