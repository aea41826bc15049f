"""``/api/health``, ``/api/system``, ``/api/agents`` and ``/api/agents/{name}``.

Health answers two questions. *Ready* (the HTTP status): is watchkeeper watching this
host? 200 when it is running, every agent is up and the newest sample is fresh; 503 when
it is stopping, an agent is down, or sampling has stalled (a monitor that no longer
samples is blind, so an external check must hear about it). *Status*: ``ok``,
``degraded`` (still watching, but something is wrong: history writes failing, samples
stale, the LLM away, an agent unsteady) or ``unavailable``, with ``reasons`` in words.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from watchkeeper import __version__
from watchkeeper.model.snapshot import AgentHealth, HealthScore, SystemSnapshot
from watchkeeper.web.models import ErrorBody, HealthCheck, HealthReport
from watchkeeper.web.responses import AgentDetail
from watchkeeper.web.routes._common import WebContext, fail, json_response, model_response
from watchkeeper.web.sources import jsonable

__all__ = ["build"]

# An agent in one of these states cannot do its work: the system is not ready.
_DOWN = {"failed", "stopped"}
#: Samples older than this many sampling intervals are stale...
STALE_INTERVALS = 3
#: ...and never sooner than this many seconds, so a short interval on a busy host does
#: not make health flap.
STALE_FLOOR_S = 5.0


def sampling_check(ctx: WebContext) -> HealthCheck:
    """Whether samples are fresh: the newest no older than 3 sampling intervals."""
    sensor = ctx.orchestrator.agents.get("sensor")
    if sensor is None:
        return HealthCheck(ok=None, detail="no sensor agent on this host")
    interval = float(sensor.interval)
    limit = max(STALE_INTERVALS * interval, STALE_FLOOR_S)
    latest = ctx.sources.latest_sample()
    now = ctx.clock()
    if latest is not None:
        age = now - latest.timestamp
        if age <= limit:
            return HealthCheck(ok=True, detail=f"newest sample {max(age, 0.0):.1f}s old")
        detail = f"samples stale: the newest is {age:.0f}s old (sampling every {interval:g}s)"
    else:
        started = ctx.orchestrator.started_at
        waited = now - started if started else 0.0
        if waited <= limit:
            return HealthCheck(ok=True, detail="starting: no sample yet")
        detail = f"samples stale: none yet after {waited:.0f}s (sampling every {interval:g}s)"
    state = str(sensor.state)
    if state != "running":
        detail += f"; the sensor is {state}"
    return HealthCheck(ok=False, detail=detail)


def storage_check(ctx: WebContext) -> HealthCheck:
    """Open and taking writes; "writes failing: <reason>" while the disk refuses them."""
    storage = ctx.sources.storage()
    if storage is None:
        return HealthCheck(ok=False, detail=ctx.sources.storage_problem())
    stats = storage.stats()
    since = stats.failing_since
    if since is None:
        return HealthCheck(ok=True, detail=f"open; {stats.write_errors} write error(s) so far")
    when = time.strftime("%H:%M:%S", time.localtime(since))
    kept = stats.kept_writes
    reason = stats.last_error or "unknown error"
    return HealthCheck(
        ok=False,
        detail=f"writes failing since {when}: {reason}; {kept} write(s) kept in memory "
        "until they can be written",
    )


def health_report(ctx: WebContext) -> HealthReport:
    """Liveness, readiness and what each depends on, for people and load balancers."""
    orch = ctx.orchestrator
    states = {name: str(agent.state) for name, agent in orch.agents.items()}
    down = sorted(name for name, state in states.items() if state in _DOWN)
    unwell = sorted(name for name, state in states.items() if state == "degraded")
    if down:
        agents = HealthCheck(ok=False, detail="not running: " + ", ".join(down))
    elif unwell:
        agents = HealthCheck(ok=True, detail="degraded: " + ", ".join(unwell))
    else:
        agents = HealthCheck(ok=True, detail=f"{len(states)} agent(s) running")
    store = storage_check(ctx)
    sampling = sampling_check(ctx)
    analyzer = ctx.sources.analyzer()
    if analyzer is None:
        llm = HealthCheck(ok=None, detail="the analyzer is not running")
    elif not orch.settings.ollama.enabled:
        llm = HealthCheck(ok=None, detail=analyzer.llm_status)
    else:
        llm = HealthCheck(ok=bool(analyzer.llm_available), detail=analyzer.llm_status)
    checks = {"agents": agents, "storage": store, "sampling": sampling, "llm": llm}
    reasons = [f"{name}: {c.detail}" for name, c in checks.items() if c.ok is False]
    if unwell:
        reasons.append(f"agents: {agents.detail}")
    running = orch.state == "running"
    blind = sampling.ok is False
    if not running or down:
        status = "unavailable"
    elif unwell or blind or not store.ok or llm.ok is False:
        status = "degraded"
    else:
        status = "ok"
    if not running:
        reasons.insert(0, f"watchkeeper is {orch.state}")
    started = orch.started_at
    return HealthReport(
        status=status,
        live=True,
        ready=running and not down and not blind,
        state=orch.state,
        version=__version__,
        uptime_s=round(ctx.clock() - started, 1) if started else 0.0,
        reasons=reasons,
        checks=checks,
        health=HealthScore.model_validate(ctx.hub.health()),
    )


def build(ctx: WebContext) -> APIRouter:
    router = APIRouter(tags=["system"])

    @router.get(
        "/api/health",
        summary="Liveness and readiness",
        response_model=HealthReport,
        responses={
            200: {"model": HealthReport, "description": "ready (or live, with probe=live)"},
            503: {
                "model": HealthReport,
                "description": "not ready: stopping, an agent down, or samples stale",
            },
        },
    )
    async def health(
        probe: Literal["ready", "live"] = Query(
            "ready",
            description="live: 200 whenever the process answers; ready: 503 unless "
            "the system is running with every agent up and fresh samples",
        ),
    ) -> Response:
        report = health_report(ctx)
        code = 200 if probe == "live" or report.ready else 503
        return json_response(report, code, {"cache-control": "no-store"})

    @router.get("/api/system", summary="The whole system snapshot", response_model=SystemSnapshot)
    async def system() -> Response:
        """State, uptime, health score, every agent's health and status, bus counters.
        Served from a snapshot at most one second old."""
        return Response(ctx.hub.system_body(), media_type="application/json")

    @router.get(
        "/api/agents",
        summary="Every agent's health, by name",
        response_model=dict[str, AgentHealth],
    )
    async def agents() -> Response:
        return json_response({name: a.health() for name, a in ctx.orchestrator.agents.items()})

    @router.get(
        "/api/agents/{name}",
        summary="One agent: health, status and the commands it accepts",
        response_model=AgentDetail,
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
        return model_response(
            AgentDetail(health=found.health(), status=details, commands=found.commands())
        )

    return router
