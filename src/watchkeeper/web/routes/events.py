"""``GET /api/events``: the live event stream (server-sent events).

Events: ``status`` (agents, health, uptime: on connect, on any agent change and every
few seconds), ``sample`` (each metrics sample, with its chart ``point``), ``alert``,
``analysis``, ``action``, ``agent``, ``service``, ``config``, ``health``, ``system``.
Each ``data`` is JSON: ``{"topic", "ts", "data", ...}``. A comment line is sent when
nothing else was for ``heartbeat`` seconds, so proxies keep the connection open and a
client notices a dead server. Once ``web.max_event_clients`` streams are open, one more
is answered 503 with ``Retry-After`` (the open ones are never dropped for it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from watchkeeper.web.live import TooManyClients
from watchkeeper.web.models import ErrorBody
from watchkeeper.web.routes._common import WebContext

__all__ = ["build"]

_RETRY_AFTER = 10  # seconds


def build(ctx: WebContext) -> APIRouter:
    router = APIRouter(tags=["events"])
    hub = ctx.hub

    @router.get(
        "/api/events",
        summary="Live events (text/event-stream)",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "the stream"},
            503: {"model": ErrorBody, "description": "too many clients"},
        },
    )
    async def events() -> StreamingResponse:
        try:
            client = hub.connect()
        except TooManyClients as exc:
            # The newcomer waits, not the oldest stream: an open dashboard keeps its
            # stream however often someone else reconnects.
            detail = f"{exc}; try again later"
            raise HTTPException(
                503, detail={"detail": detail}, headers={"retry-after": str(_RETRY_AFTER)}
            ) from None

        async def stream() -> AsyncIterator[bytes]:
            try:
                while True:
                    try:
                        frames = await client.next(hub.heartbeat)
                    except EOFError:
                        return
                    yield b"".join(frames) if frames else b": keep-alive\n\n"
            finally:
                hub.disconnect(client)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    return router
