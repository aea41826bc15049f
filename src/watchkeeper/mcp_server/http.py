"""``/mcp`` on the daemon's web server, and the route an MCP proposal arrives by.

``mount(app, orchestrator, token=...)`` adds two things to the web app, cheaply (the SDK
is imported on the first ``/mcp`` request, not before):

- ``/mcp``: streamable HTTP, answered in-process. Each request is served on its own
  (stateless, JSON responses), so no session outlives it and no task is left behind.
  Every request needs the API token, reads included (an assistant reads host details),
  checked here as well as by the web's token middleware.
- ``POST /api/mcp/proposals``: an MCP client's proposal, from either transport, handed to
  the remediator as ``run_action`` with proposer ``mcp``. The one policy gate holds it for
  a person whatever the mode; the audit names the client.

It sits behind the web's own middleware (security headers, the ``Host:`` check, the body
limit, the token), like every route.
"""

from __future__ import annotations

import hmac
import json
import re
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from watchkeeper.bus import RequestTimeout
from watchkeeper.mcp_server.readers import PROPOSALS_PATH
from watchkeeper.model.events import AgentReply, Command
from watchkeeper.model.topics import command_for

if TYPE_CHECKING:
    from fastapi import FastAPI
    from mcp.server.mcpserver import MCPServer

    from watchkeeper.orchestrator import Orchestrator

__all__ = ["MCP_PATH", "McpEndpoint", "mount"]

MCP_PATH = "/mcp"
_PROPOSAL_TIMEOUT = 15.0
_BY_MAX = 128
_LABEL = re.compile(r"[^A-Za-z0-9 ._@:/+\-]")


class Proposal(BaseModel):
    """What ``propose_action`` sends; the remediator's gate checks the rest."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    target: str | None = Field(None, max_length=1024)
    params: dict[str, Any] = Field(default_factory=dict, max_length=16)
    reason: str = Field("", max_length=500)
    client: str = Field("unnamed", max_length=64)
    requested_by: str | None = Field(None, max_length=64)


def _label(text: str) -> str:
    return _LABEL.sub("", text).strip()[:64]


def _proposer_name(proposal: Proposal) -> str:
    """``mcp client <name version>``, and for whom when the client says."""
    who = f"mcp client {_label(proposal.client) or 'unnamed'}"
    if proposal.requested_by and _label(proposal.requested_by):
        who += f" for {_label(proposal.requested_by)}"
    return who[:_BY_MAX]


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def proposals_router(orchestrator: Orchestrator) -> APIRouter:
    router = APIRouter(tags=["mcp"])

    @router.post(
        PROPOSALS_PATH,
        summary="An MCP client's proposal: it waits for a person, always",
        responses={
            400: {"description": "unknown action"},
            409: {"description": "the policy refused it"},
            503: {"description": "no remediator runs here, or it did not answer"},
        },
    )
    async def propose(proposal: Proposal) -> JSONResponse:
        """Hands the proposal to the remediator as proposer ``mcp``: it lands in the
        approval queue (``/api/remediation`` ``pending``) or is refused with the reason,
        and never runs without a person's approval."""
        name = next(
            (n for n, agent in orchestrator.agents.items() if agent.kind == "remediator"), None
        )
        if name is None or orchestrator.state != "running":
            return _problem(503, "no remediator runs on this host now; nothing was proposed")
        params: dict[str, Any] = {
            "action": proposal.action,
            "params": proposal.params,
            "reason": proposal.reason or "proposed by an MCP client",
            "proposer": "mcp",
            "by": _proposer_name(proposal),
        }
        if proposal.target is not None:
            params["target"] = proposal.target
        try:
            message = await orchestrator.bus.request(
                command_for(name),
                Command(command="run_action", params=params),
                sender="web",
                timeout=_PROPOSAL_TIMEOUT,
            )
        except RequestTimeout:
            return _problem(503, f"the remediator did not answer in {_PROPOSAL_TIMEOUT:g}s")
        reply = message.parse(AgentReply).result()
        if not reply.get("ok"):
            return _problem(400, str(reply.get("error") or "the remediator refused it")[:500])
        record = reply.get("record") or {}
        if record.get("outcome") == "refused":
            return _problem(409, f"the policy refused it: {record.get('detail', '')}"[:500])
        return JSONResponse(record)

    return router


def _authorized(scope: Scope, token: str) -> bool:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, given = value.decode("latin-1").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode(), token.encode()
            )
    return False


async def _refuse(send: Send) -> None:
    body = json.dumps(
        {"detail": "/mcp needs the API token: send 'Authorization: Bearer <token>'"}
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b'Bearer realm="watchkeeper"'),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class McpEndpoint:
    """The ASGI app behind ``/mcp``: the token, then the SDK's streamable HTTP handling,
    one stateless exchange per request over the tools built on the first one."""

    def __init__(self, app: FastAPI, token: str) -> None:
        self._app = app
        self._token = token
        self._server: MCPServer[Any] | None = None

    def _built(self) -> MCPServer[Any]:
        if self._server is None:
            import httpx

            from watchkeeper.mcp_server.source import IN_PROCESS_URL, ApiSource
            from watchkeeper.mcp_server.tools import build_server

            transport = httpx.ASGITransport(app=self._app)
            self._server = build_server(ApiSource(IN_PROCESS_URL, self._token, transport=transport))
        return self._server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _authorized(scope, self._token):
            await _refuse(send)
            return
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
        from mcp.server.transport_security import TransportSecuritySettings

        server = self._built()
        manager = StreamableHTTPSessionManager(
            # The SDK offers no public handle on its low-level server for a manager of
            # our own; one manager per request keeps every task inside the request.
            app=server._lowlevel_server,
            stateless=True,
            json_response=True,
            # The web's Host check already ran; the token stops a page from elsewhere.
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        async with manager.run():
            await manager.handle_request(scope, receive, send)


def mount(app: FastAPI, orchestrator: Orchestrator, *, token: str) -> None:
    """Add ``/mcp`` and ``POST /api/mcp/proposals`` to ``app`` (see the module docstring)."""
    app.include_router(proposals_router(orchestrator))
    # A Route whose endpoint is not a function serves it as an ASGI app, as is.
    route = Route(MCP_PATH, McpEndpoint(app, token), methods=["GET", "POST", "DELETE"])
    app.router.routes.append(route)
