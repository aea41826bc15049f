"""Security headers on every response, and errors that never leak a traceback.

``SecurityHeadersMiddleware`` adds a strict Content-Security-Policy (scripts and styles
only from files this server serves, so no inline script can run), ``nosniff``, frame
denial and a referrer policy. ``install_error_handlers`` makes every error a small JSON
body: 422 with the list of problems for a bad request, a generic 500 (details in the log,
never in the response) for a bug.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "SecurityHeadersMiddleware", "install_error_handlers"]

log = logging.getLogger("watchkeeper.web")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeadersMiddleware:
    """Pure ASGI (no per-request task or body buffering): adds ``_HEADERS`` to every
    response start; responses that set one of them themselves keep their own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in _HEADERS if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _location(loc: Any) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    """422 with readable messages, JSON for HTTP errors, and a generic 500."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
            if error.get("type") == "extra_forbidden":
                message = "unknown field"
            loc = error.get("loc", ())
            problems.append(
                {
                    "loc": [str(part) for part in loc],
                    "msg": message,
                    "type": error.get("type", "value_error"),
                    "field": _location(loc),
                }
            )
        summary = "; ".join(f"{p['field']}: {p['msg']}" for p in problems)
        return JSONResponse({"detail": problems, "message": summary}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        body: dict[str, Any] = detail if isinstance(detail, dict) else {"detail": detail}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.error("web: %s %s failed", request.method, request.url.path, exc_info=exc)
        # This response is sent outside the middleware, so it carries the headers itself.
        headers = {name.decode(): value.decode() for name, value in _HEADERS}
        return JSONResponse(
            {"detail": "internal error; the details are in watchkeeper's log"},
            status_code=500,
            headers=headers,
        )
