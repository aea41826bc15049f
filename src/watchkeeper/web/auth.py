"""Who may do what: the API token, and the one middleware that checks it.

Every state-changing request (POST, PATCH, PUT, DELETE) needs ``Authorization: Bearer
<token>``; read-only requests need it too when ``web.open_reads`` is false. The check
lives in one ASGI middleware in front of every route, so a route added later (by a
plugin, say) cannot forget it::

    info = ensure_token(settings.data_dir, settings.web.token)
    app = AuthMiddleware(app, token=info.token, open_reads=True)

The token comes from ``web.token`` when configured; otherwise it is generated on the first
start into ``<data_dir>/api_token`` (mode 0600) and read from there on later starts.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "PUBLIC_PATHS",
    "TOKEN_FILE",
    "AuthMiddleware",
    "TokenInfo",
    "ensure_token",
    "token_matches",
]

log = logging.getLogger("watchkeeper.web")

TOKEN_FILE = "api_token"
#: Paths anyone may read even when reads are closed: the page shell, its files, the API
#: description and the health probe a load balancer calls without credentials.
PUBLIC_PATHS = frozenset({"/", "/docs", "/openapi.json", "/api/health", "/favicon.ico"})
_PUBLIC_PREFIXES = ("/static/",)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class TokenInfo:
    """The token in force and where it came from (``config``, ``file`` or ``created``)."""

    token: str
    source: Literal["config", "file", "created"]
    path: Path | None


def ensure_token(data_dir: Path, configured: str | None) -> TokenInfo:
    """The API token: ``configured`` when given, else the data dir's token file, created
    with mode 0600 on first use. Raises ``OSError`` when the file cannot be written."""
    if configured:
        return TokenInfo(configured, "config", None)
    path = Path(data_dir) / TOKEN_FILE
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    if token:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            # Someone loosened it; the token is a password, so put it back.
            os.chmod(path, 0o600)
            log.warning("%s was readable by others (mode %o); set it back to 0600", path, mode)
        return TokenInfo(token, "file", path)
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: when two starts race, one creates and the other fails instead of both
    # writing different tokens. Mode 0600 from the first byte, not chmod afterwards.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return TokenInfo(token, "created", path)


def token_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token``, compared in constant time."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _unauthorized(error: str, detail: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    body = json.dumps({"detail": detail}).encode()
    challenge = 'Bearer realm="watchkeeper"'
    if error:
        challenge += f', error="{error}"'
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge.encode()),
    ]
    return body, headers


class AuthMiddleware:
    """Pure ASGI middleware: refuse with 401 whatever needs the token and lacks it.

    ``open_reads`` is read through a callable so a configuration change applies at once.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str,
        open_reads: Callable[[], bool],
        public_paths: Iterable[str] = PUBLIC_PATHS,
    ) -> None:
        self.app = app
        self.token = token
        self.open_reads = open_reads
        self.public = frozenset(public_paths)

    def needs_token(self, method: str, path: str) -> bool:
        if method not in _READ_METHODS:
            return True
        if method == "OPTIONS" or path in self.public or path.startswith(_PUBLIC_PREFIXES):
            return False
        return not self.open_reads()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.needs_token(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        if token_matches(header, self.token):
            await self.app(scope, receive, send)
            return
        if header is None:
            body, headers = _unauthorized(
                "", "this request needs the API token: send 'Authorization: Bearer <token>'"
            )
        else:
            body, headers = _unauthorized("invalid_token", "the API token is not valid")
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
