"""``/api/alerts``, ``/api/analysis`` and ``/api/activity``: what the team concluded."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from watchkeeper.storage.errors import StorageError
from watchkeeper.web.models import ErrorBody
from watchkeeper.web.responses import ActivityReply, AlertsReply, AnalysisReply, LlmState
from watchkeeper.web.routes._common import (
    WebContext,
    fail,
    json_response,
    model_response,
    parse_duration,
)

__all__ = ["build"]

_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def build(ctx: WebContext) -> APIRouter:
    router = APIRouter(tags=["analysis"])

    @router.get(
        "/api/alerts",
        summary="Firing alerts, and optionally their history",
        response_model=AlertsReply,
        responses={503: {"model": ErrorBody, "description": "history asked for, no storage"}},
    )
    async def alerts(
        range_: str | None = Query(
            None, alias="range", max_length=32, description="also list alerts of this past span"
        ),
        state: Literal["firing", "resolved", "all"] = Query("all"),
        limit: int = Query(200, ge=1, le=1000),
    ) -> Response:
        """``firing`` comes live from the analyzer; with ``range`` (e.g. ``24h``),
        ``history`` lists stored alerts open at some point in that span."""
        firing = sorted(
            ctx.sources.firing(),
            key=lambda a: (_SEVERITY_ORDER.get(a.severity.value, 9), -a.started_at),
        )
        counts = {"critical": 0, "warning": 0, "info": 0}
        for alert in firing:
            counts[alert.severity.value] = counts.get(alert.severity.value, 0) + 1
        reply = AlertsReply(
            analyzer=ctx.sources.analyzer() is not None, counts=counts, firing=firing
        )
        if range_ is not None:
            span = parse_duration(range_, "range", minimum=1, maximum=365 * 86400.0)
            storage = ctx.sources.storage()
            if storage is None:
                raise fail(503, ctx.sources.storage_problem())
            now = ctx.clock()
            try:
                reply.history = await storage.alerts(
                    now - span, now, None if state == "all" else state, limit
                )
            except StorageError as exc:
                raise fail(503, f"history is unavailable: {exc}") from None
        return model_response(reply)

    @router.get(
        "/api/analysis",
        summary="The latest analyses and the LLM's status",
        response_model=AnalysisReply,
    )
    async def analysis(
        history: int = Query(0, ge=0, le=200, description="also this many stored analyses"),
    ) -> Response:
        """``latest`` is the newest analysis from either path; ``latest_llm`` the newest
        the model gave, with its per-alert explanations (its reasoning) and
        recommendations. ``llm`` says whether the model is reachable and why not."""
        analyzer = ctx.sources.analyzer()
        if analyzer is not None:
            status = getattr(analyzer, "status", None)
            ollama = ctx.orchestrator.settings.ollama
            reply = AnalysisReply(
                analyzer=True,
                latest=analyzer.latest_analysis,
                latest_llm=analyzer.latest_llm_analysis,
                llm=LlmState(
                    status=analyzer.llm_status,
                    available=analyzer.llm_available,
                    enabled=ollama.enabled,
                    model=ollama.model,
                    stats=status() if callable(status) else None,
                ),
            )
        else:
            reply = AnalysisReply(
                analyzer=False,
                latest=None,
                latest_llm=None,
                llm=LlmState(status="analyzer not running"),
            )
        if history:
            storage = ctx.sources.storage()
            if storage is None:
                reply.history = []
                reply.history_unavailable = ctx.sources.storage_problem()
            else:
                try:
                    reply.history = await storage.analyses(limit=history)
                except StorageError as exc:
                    reply.history = []
                    reply.history_unavailable = str(exc)
        return model_response(reply)

    @router.get(
        "/api/activity",
        summary="The recent-activity feed, newest first",
        response_model=ActivityReply,
    )
    async def activity(
        limit: int = Query(50, ge=1, le=500),
        source: Literal["auto", "memory", "storage"] = Query(
            "auto", description="auto: storage when open, else the in-memory feed"
        ),
        agent: str | None = Query(None, max_length=64),
        severity: Literal["debug", "info", "warning", "critical"] | None = Query(
            None, description="at least this severe (storage only)"
        ),
        text: str | None = Query(None, max_length=200, description="words to search for"),
    ) -> Response:
        storage = ctx.sources.storage() if source != "memory" else None
        if source == "storage" and storage is None:
            raise fail(503, ctx.sources.storage_problem())
        if storage is not None:
            try:
                items = await storage.search_activity(agent, severity, text, None, None, limit)
                return json_response({"source": "storage", "items": items})
            except StorageError as exc:
                if source == "storage":
                    raise fail(503, f"history is unavailable: {exc}") from None
        items_mem = ctx.hub.activity(500)
        if agent:
            items_mem = [i for i in items_mem if i["agent"] == agent]
        if text:
            needle = text.lower()
            items_mem = [i for i in items_mem if needle in i["message"].lower()]
        return json_response({"source": "memory", "items": items_mem[:limit]})

    return router
