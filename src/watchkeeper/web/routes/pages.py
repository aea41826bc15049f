"""The dashboard page, the API reference page, and ``/metrics`` for Prometheus.

The pages are static HTML shells: every value arrives through the API, and no token or
other secret is ever written into them.
"""

from __future__ import annotations

import time
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from watchkeeper.web.routes._common import WebContext

__all__ = ["build", "read_template"]


def read_template(name: str) -> str:
    return (resources.files("watchkeeper.web") / "templates" / name).read_text(encoding="utf-8")


def build(ctx: WebContext) -> APIRouter:
    router = APIRouter()
    index = read_template("index.html")
    docs = read_template("docs.html")
    fleet = read_template("fleet.html")
    registry = None
    cache: dict[str, tuple[float, bytes]] = {}

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(index, headers={"cache-control": "no-cache"})

    @router.get("/fleet", response_class=HTMLResponse, include_in_schema=False)
    async def fleet_page() -> HTMLResponse:
        """Every host of the fleet; a row opens that host's own view (``/fleet#host``)."""
        return HTMLResponse(fleet, headers={"cache-control": "no-cache"})

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
