"""``/api/health``, ``/api/system``, ``/api/agents`` and ``/api/agents/{name}``."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from watchkeeper import __version__
from watchkeeper.web.models import ErrorBody, HealthReport
from watchkeeper.web.routes._common import WebContext, fail, json_response
from watchkeeper.web.sources import jsonable

__all__ = ["build"]

# An agent in one of these states cannot do its work: the system is not ready.
_DOWN = {"failed", "stopped"}


def health_report(ctx: WebContext) -> dict[str, Any]:
    """Liveness, readiness and what each depends on, for people and load balancers."""
    orch = ctx.orchestrator
    states = {name: str(agent.state) for name, agent in orch.agents.items()}
    down = sorted(name for name, state in states.items() if state in _DOWN)
    unwell = sorted(name for name, state in states.items() if state == "degraded")
    if down:
        agents = {"ok": False, "detail": "not running: " + ", ".join(down)}
    elif unwell:
        agents = {"ok": True, "detail": "degraded: " + ", ".join(unwell)}
    else:
        agents = {"ok": True, "detail": f"{len(states)} agent(s) running"}
    storage = ctx.sources.storage()
    if storage is not None:
        stats = getattr(storage, "stats", None)
        errors = getattr(stats(), "write_errors", 0) if callable(stats) else 0
        store = {"ok": True, "detail": f"open; {errors} write error(s) so far"}
    else:
        store = {"ok": False, "detail": ctx.sources.storage_problem()}
    analyzer = ctx.sources.analyzer()
    if analyzer is None:
        llm: dict[str, Any] = {"ok": None, "detail": "the analyzer is not running"}
    elif not orch.settings.ollama.enabled:
        llm = {"ok": None, "detail": analyzer.llm_status}
    else:
        llm = {"ok": bool(analyzer.llm_available), "detail": analyzer.llm_status}
    running = orch.state == "running"
    ready = running and not down
    if not ready:
        status = "unavailable"
    elif unwell or not store["ok"] or llm["ok"] is False:
        status = "degraded"
    else:
        status = "ok"
    started = orch.started_at
    return {
        "status": status,
        "live": True,
        "ready": ready,
        "state": orch.state,
        "version": __version__,
        "uptime_s": round(ctx.clock() - started, 1) if started else 0.0,
        "checks": {"agents": agents, "storage": store, "llm": llm},
        "health": ctx.hub.health(),
    }


def build(ctx: WebContext) -> APIRouter:
    router = APIRouter(tags=["system"])

    @router.get(
        "/api/health",
        summary="Liveness and readiness",
        responses={
            200: {"model": HealthReport, "description": "ready (or live, with probe=live)"},
            503: {"model": HealthReport, "description": "not ready: stopping or an agent down"},
        },
    )
    async def health(
        probe: Literal["ready", "live"] = Query(
            "ready",
            description="live: 200 whenever the process answers; ready: 503 unless "
            "the system is running with every agent up",
        ),
    ) -> Response:
        report = health_report(ctx)
        code = 200 if probe == "live" or report["ready"] else 503
        return json_response(report, code, {"cache-control": "no-store"})

    @router.get("/api/system", summary="The whole system snapshot")
    async def system() -> Response:
        """State, uptime, health score, every agent's health and status, bus counters.
        Served from a snapshot at most one second old."""
        return Response(ctx.hub.system_body(), media_type="application/json")

    @router.get("/api/agents", summary="Every agent's health, by name")
    async def agents() -> Response:
        return json_response({name: a.health() for name, a in ctx.orchestrator.agents.items()})

    @router.get(
        "/api/agents/{name}",
        summary="One agent: health, status and the commands it accepts",
        responses={404: {"model": ErrorBody}},
    )
    async def agent(
        name: str = Path(max_length=64, examples=["sensor"], description="an agent's name"),
    ) -> Response:
        found = ctx.orchestrator.agents.get(name)
        if found is None:
            valid = sorted(ctx.orchestrator.agents)
            raise fail(404, f"no agent named {name!r}; agents: {', '.join(valid)}", valid=valid)
        status = getattr(found, "status", None)
        details: Any = None
        if callable(status):
            try:
                details = jsonable(status())
            except Exception as exc:  # a broken status must not break the page
                details = {"error": str(exc)}
        return json_response(
            {"health": found.health(), "status": details, "commands": found.commands()}
        )

    return router
