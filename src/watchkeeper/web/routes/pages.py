"""The dashboard page, the API reference page, an incident's page, and ``/metrics``.

The dashboard and reference pages are static HTML shells: every value arrives through the
API. An incident's page (``/incidents/{id}``) is rendered with the incident's headline
(title, severity, state, times), every value HTML-escaped, and its script fills in the
rest from ``/api/incidents/{id}``; an unknown id is a 404 page. With ``web.open_reads``
off the page is a bare shell anyone may load, and its script reads the incident with the
token. No token or other secret is ever written into a page.
"""

from __future__ import annotations

import html
import re
import time
from importlib import resources
from urllib.parse import quote

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse, Response

from watchkeeper.humanize import human_duration
from watchkeeper.model.incidents import Incident
from watchkeeper.web.routes._common import WebContext
from watchkeeper.web.routes.incidents import locate

__all__ = ["build", "read_template", "render"]

_SLOT = re.compile(r"\{\{(\w+)\}\}")


def read_template(name: str) -> str:
    return (resources.files("watchkeeper.web") / "templates" / name).read_text(encoding="utf-8")


def render(template: str, **values: str) -> str:
    """``template`` with each ``{{name}}`` replaced by ``values[name]``, HTML-escaped
    (quotes too: values also fill attributes), in one pass, so a value that contains
    ``{{...}}`` stays text. A slot without a value is an error, never left in the page."""
    return _SLOT.sub(lambda m: html.escape(values[m.group(1)], quote=True), template)


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _closed_page(template: str, incident_id: str) -> str:
    """The shell with nothing of the incident in it but the id its address already has."""
    return render(
        template,
        id=incident_id,
        id_path=quote(incident_id, safe=""),
        title=f"incident {incident_id}",
        host="…",
        severity="unknown",
        state="unknown",
        state_level="unknown",
        opened="…",
        opened_at="",
        cause="Reads need the API token here: set it below.",
        resolution="",
    )


def _incident_page(template: str, incident: Incident) -> str:
    """The page's headline, as the server knows it now; the script keeps it current."""
    if incident.resolved_at is not None:
        took = human_duration(incident.resolved_at - incident.opened_at)
        resolution = f"Resolved at {_utc(incident.resolved_at)} after {took}."
    else:
        resolution = "Still open."
    cause = incident.root_cause or "Root cause not determined; the alerts below are related."
    if incident.root_cause and incident.confidence:
        cause = f"Probable cause: {incident.root_cause} ({incident.confidence:.0%} sure)"
    elif incident.root_cause:
        cause = f"Probable cause: {incident.root_cause}"
    state = incident.state.value
    return render(
        template,
        id=incident.id,
        id_path=quote(incident.id, safe=""),
        title=incident.title,
        host=incident.host or "this host",
        severity=incident.severity.value,
        state=state,
        state_level="ok" if state == "resolved" else incident.severity.value,
        opened=_utc(incident.opened_at),
        opened_at=f"{incident.opened_at:.3f}",
        cause=cause,
        resolution=resolution,
    )


def build(ctx: WebContext) -> APIRouter:
    router = APIRouter()
    index = read_template("index.html")
    docs = read_template("docs.html")
    fleet = read_template("fleet.html")
    incident_shell = read_template("incident.html")
    missing = read_template("incident_missing.html")
    registry = None
    cache: dict[str, tuple[float, bytes]] = {}

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(index, headers={"cache-control": "no-cache"})

    @router.get("/fleet", response_class=HTMLResponse, include_in_schema=False)
    async def fleet_page() -> HTMLResponse:
        """Every host of the fleet; a row opens that host's own view (``/fleet#host``)."""
        return HTMLResponse(fleet, headers={"cache-control": "no-cache"})

    @router.get("/incidents/{incident_id}", response_class=HTMLResponse, include_in_schema=False)
    async def incident_page(incident_id: str = Path(min_length=1, max_length=128)) -> HTMLResponse:
        """One incident: its timeline, analysis, actions and resolution (a 404 page when
        no incident has that id, live or stored)."""
        headers = {"cache-control": "no-cache"}
        if not ctx.orchestrator.settings.web.open_reads:
            # Anyone may load the page; with reads closed it says nothing until the
            # script reads the incident with the token (not even whether it exists).
            return HTMLResponse(_closed_page(incident_shell, incident_id), headers=headers)
        located = await locate(ctx, incident_id)
        if located.incident is None:
            why = located.problem or "No open incident has this id, and none is stored."
            body = render(missing, id=incident_id, why=why)
            return HTMLResponse(body, status_code=404, headers=headers)
        return HTMLResponse(_incident_page(incident_shell, located.incident), headers=headers)

    @router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def reference() -> HTMLResponse:
        return HTMLResponse(docs, headers={"cache-control": "no-cache"})

    @router.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        data = (resources.files("watchkeeper.web") / "static" / "icon.svg").read_bytes()
        return Response(data, media_type="image/svg+xml")

    @router.get(
        "/metrics",
        tags=["metrics"],
        summary="Prometheus exposition",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def metrics() -> Response:
        """Host metrics, alert states, action counts and watchkeeper's own health in the
        Prometheus text format. Built at most once a second, whoever scrapes."""
        nonlocal registry
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from watchkeeper.web.exposition import build_registry, fleet_exposition

        if registry is None:
            registry = build_registry(ctx.hub)
        now = time.monotonic()
        cached = cache.get("text")
        if cached is None or now - cached[0] >= 1.0:
            # On the loop on purpose: the collector reads the agents' state, which only
            # the loop's thread may touch. A scrape costs a few milliseconds.
            cached = (now, generate_latest(registry) + fleet_exposition(ctx.orchestrator))
            cache["text"] = cached
        return Response(cached[1], media_type=CONTENT_TYPE_LATEST)

    return router
