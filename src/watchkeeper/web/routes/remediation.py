"""``/api/remediation``: declared actions, pending approvals, the audit trail, success
rates and the targets the remediator has given up on."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from watchkeeper.storage.errors import StorageError
from watchkeeper.web.responses import RemediationReply
from watchkeeper.web.routes._common import WebContext, json_response
from watchkeeper.web.sources import jsonable

__all__ = ["build"]


def build(ctx: WebContext) -> APIRouter:
    router = APIRouter(tags=["remediation"])

    @router.get(
        "/api/remediation",
        summary="Actions, approvals, audit trail, success rates",
        response_model=RemediationReply,
    )
    async def remediation(
        limit: int = Query(50, ge=1, le=1000, description="audit records to return"),
        target: str | None = Query(None, max_length=4096, description="audit of one target"),
    ) -> Response:
        """From the RemediatorAgent when it runs; otherwise the declared actions (the
        orchestrator's registry) and, when storage is open, the stored audit trail and
        success rates."""
        settings = ctx.orchestrator.settings.remediation
        body: dict[str, Any] = {
            "mode": settings.mode,
            "counts": dict(ctx.hub.action_counts),
        }
        remediator = ctx.sources.remediator()
        if remediator is not None:
            status = getattr(remediator, "status", None)
            body.update(
                available=True,
                actions=remediator.actions(),
                pending=remediator.pending(),
                audit=remediator.audit(limit=limit, target=target),
                success_rates=remediator.success_rates(),
                given_up=remediator.given_up(),
                status=status() if callable(status) else None,
                source="remediator",
            )
            return json_response(body)
        body.update(
            available=False,
            actions=ctx.orchestrator.registries.actions.infos(),
            pending=[],
            given_up=[],
            status=None,
            audit=[],
            success_rates=None,
            source="none",
        )
        storage = ctx.sources.storage()
        if storage is not None:
            try:
                body["audit"] = jsonable(await storage.audit(target, None, limit))
                body["success_rates"] = jsonable(await storage.success_rates())
                body["source"] = "storage"
            except StorageError as exc:
                body["history_unavailable"] = str(exc)
        return json_response(body)

    return router
