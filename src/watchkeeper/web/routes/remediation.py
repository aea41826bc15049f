"""``/api/remediation``: declared actions, pending approvals, the audit trail, success
rates and the targets the remediator has given up on."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import Response

from watchkeeper.storage.errors import StorageError
from watchkeeper.web.responses import RemediationReply
from watchkeeper.web.routes._common import WebContext, model_response

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
        mode = ctx.orchestrator.settings.remediation.mode
        counts = dict(ctx.hub.action_counts)
        remediator = ctx.sources.remediator()
        if remediator is not None:
            status = getattr(remediator, "status", None)
            live = RemediationReply(
                mode=mode,
                counts=counts,
                available=True,
                actions=remediator.actions(),
                pending=remediator.pending(),
                audit=remediator.audit(limit=limit, target=target),
                success_rates=remediator.success_rates(),
                given_up=remediator.given_up(),
                status=status() if callable(status) else None,
                source="remediator",
            )
            return model_response(live)
        reply = RemediationReply(
            mode=mode,
            counts=counts,
            available=False,
            actions=ctx.orchestrator.registries.actions.infos(),
            pending=[],
            audit=[],
            success_rates=None,
            given_up=[],
            status=None,
            source="none",
        )
        storage = ctx.sources.storage()
        if storage is not None:
            try:
                reply.audit = await storage.audit(target, None, limit)
                reply.success_rates = await storage.success_rates()
                reply.source = "storage"
            except StorageError as exc:
                reply.history_unavailable = str(exc)
        return model_response(reply)

    return router
