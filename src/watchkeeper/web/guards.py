"""Requests refused before any route runs: a foreign ``Host:`` and an oversized body.

Both are pure ASGI middlewares (no task or buffering per request on the common path)::

    app = HostGuard(app, policy=HostPolicy.for_bind("127.0.0.1"))
    app = BodyLimit(app, max_bytes=1_048_576)

``HostGuard`` answers 400 to a ``Host:`` the server does not answer to (DNS rebinding,
see :mod:`watchkeeper.web.hosts`). ``BodyLimit`` answers 413 to a body over the limit: a
declared ``Content-Length`` is checked before a byte of the body is read; a body without
one (chunked) is read up to the limit and refused as soon as it passes it, so memory
never holds more than the limit. What the client still sends after a refusal is
discarded by the server as it arrives, never kept.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watchkeeper.web.hosts import HostPolicy

__all__ = ["BodyLimit", "HostGuard"]

_CACHE_SIZE = 64


async def _refuse(send: Send, status: int, detail: str, **extra: Any) -> None:
    body = json.dumps({"detail": detail, **extra}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return None


class HostGuard:
    """400 for a request whose ``Host:`` the policy does not allow (see the module
    docstring). A request without ``Host:`` (HTTP/1.0) has no name to rebind and is
    served. Decisions are remembered per header value, so the steady state is one dict
    lookup."""

    def __init__(self, app: ASGIApp, *, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy
        self._seen: dict[bytes, bool] = {}

    def allows(self, header: bytes) -> bool:
        known = self._seen.get(header)
        if known is None:
            known = self.policy.allows(header.decode("latin-1"))
            if len(self._seen) < _CACHE_SIZE:  # bounded: foreign values cannot grow it
                self._seen[header] = known
        return known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = _header(scope, b"host")
            if host is not None and not self.allows(host):
                if scope["type"] == "http":
                    await _refuse(
                        send,
                        400,
                        "this server does not answer to that Host header; to reach it by "
                        "that name, add the name to web.allowed_hosts",
                    )
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for a request body over ``max_bytes`` (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes (web.max_body_bytes)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            # The HTTP parser has already refused a malformed or conflicting length.
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await _refuse(send, 413, self._detail(), limit=self.max_bytes)
                return
            await self.app(scope, receive, send)
            return
        if _header(scope, b"transfer-encoding") is None:
            await self.app(scope, receive, send)  # no body at all
            return
        first = await self._read_capped(receive)
        if first is None:
            await _refuse(send, 413, self._detail(), limit=self.max_bytes)
            return
        await self.app(scope, _replay(first, receive), send)

    async def _read_capped(self, receive: Receive) -> Message | None:
        """The whole streamed body as one message, or None once it passes the limit."""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message  # the client went away; the app will see that
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(parts), "more_body": False}


def _replay(first: Message, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``first`` once, then the connection's own."""
    pending: list[Message] = [first]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay
