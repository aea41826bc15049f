"""The FastAPI application: the API, the event stream, ``/metrics`` and the dashboard.

Requests never trigger collection: they read what the agents already keep, through the
:class:`~watchkeeper.web.live.LiveHub`. Build it with the orchestrator and the API token::

    hub = LiveHub(orchestrator)
    app = create_app(orchestrator, token="...", hub=hub)

and run ``hub.run()`` for as long as the app serves (``serve_web`` does both).
Middleware, outermost first: security headers, the ``Host:`` check (400), the body limit
(413), CORS (only when ``web.cors_origins`` is set), the token check, then the routes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from watchkeeper import __version__
from watchkeeper.web.auth import PUBLIC_PATHS, AuthMiddleware
from watchkeeper.web.guards import BodyLimit, HostGuard
from watchkeeper.web.hosts import HostPolicy
from watchkeeper.web.live import LiveHub
from watchkeeper.web.routes import (
    alertmanager,
    control,
    events,
    fleet,
    incidents,
    insight,
    metrics,
    pages,
    remediation,
    system,
)
from watchkeeper.web.routes._common import WebContext
from watchkeeper.web.security import SecurityHeadersMiddleware, install_error_handlers
from watchkeeper.web.sources import Sources

if TYPE_CHECKING:
    from watchkeeper.orchestrator import Orchestrator

__all__ = ["create_app"]

_DESCRIPTION = """watchkeeper's API. Reads are open unless `web.open_reads` is false;
every state-changing request needs `Authorization: Bearer <token>` (the token is in
`<data_dir>/api_token`, or `web.token`). Live events: `GET /api/events` (server-sent
events). Prometheus: `GET /metrics`."""


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The generated schema, plus the bearer scheme the middleware enforces."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {})
            components["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "the API token"}
            }
            for path in schema.get("paths", {}).values():
                for method, operation in path.items():
                    if method.upper() not in ("GET", "HEAD", "OPTIONS"):
                        operation["security"] = [{"bearer": []}]
                        operation.setdefault("responses", {})["401"] = {
                            "description": "no token, or the wrong one"
                        }
            app.openapi_schema = schema
        return app.openapi_schema

    return build


class SnapshotFastPath:
    """The two hottest reads answered before routing: plain ``GET /api/metrics`` and
    ``GET /api/system`` send the hub's cached bytes straight out.

    It sits inside the token check and the security headers, so they still apply; any
    other request (or these with a query string) goes through the routes, which serve
    the same bytes and document them."""

    def __init__(self, app: ASGIApp, *, hub: LiveHub) -> None:
        self.app = app
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            path = scope["path"]
            body: bytes | None = None
            if path == "/api/metrics":
                body = self.hub.metrics_body()
            elif path == "/api/system":
                body = self.hub.system_body()
            if body is not None:
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def create_app(
    orchestrator: Orchestrator,
    *,
    token: str,
    hub: LiveHub | None = None,
    clock: Callable[[], float] = time.time,
    bind_host: str | None = None,
) -> FastAPI:
    """The whole web app over ``orchestrator``; ``token`` guards every change.

    ``bind_host`` is the address the server listens on (``web.host`` when not given):
    it decides which ``Host:`` headers are served (see :mod:`watchkeeper.web.hosts`)."""
    web = orchestrator.settings.web
    hub = hub or LiveHub(orchestrator, clock=clock, max_clients=web.max_event_clients)
    ctx = WebContext(orchestrator=orchestrator, hub=hub, sources=Sources(orchestrator), clock=clock)
    app = FastAPI(
        title="watchkeeper",
        version=__version__,
        description=_DESCRIPTION,
        docs_url=None,  # our own offline /docs page: no CDN, no inline script
        redoc_url=None,
    )
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    install_error_handlers(app)
    for module in (
        system,
        metrics,
        insight,
        incidents,
        remediation,
        control,
        alertmanager,
        fleet,
        events,
        pages,
    ):
        app.include_router(module.build(ctx))
    from watchkeeper.mcp_server.http import mount as mount_mcp  # the SDK loads on first use

    mount_mcp(app, orchestrator, token=token)  # /mcp and POST /api/mcp/proposals
    static = resources.files("watchkeeper.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    app.add_middleware(SnapshotFastPath, hub=hub)
    app.add_middleware(
        AuthMiddleware,
        token=token,
        open_reads=lambda: orchestrator.settings.web.open_reads,
        public_paths=PUBLIC_PATHS | {"/fleet"},
    )
    if web.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(web.cors_origins),
            allow_methods=["GET", "POST", "PATCH"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(BodyLimit, max_bytes=web.max_body_bytes)
    policy = HostPolicy.for_bind(bind_host or web.host, web.allowed_hosts)
    app.add_middleware(HostGuard, policy=policy)
    app.add_middleware(SecurityHeadersMiddleware)
    app.state.hub = hub
    return app
