"""Who may do what: the API token, and the one middleware that checks it.

Every state-changing request (POST, PATCH, PUT, DELETE) needs ``Authorization: Bearer
<token>``; read-only requests need it too when ``web.open_reads`` is false. The check
lives in one ASGI middleware in front of every route, so a route added later (by a
plugin, say) cannot forget it::

    info = ensure_token(settings.data_dir, settings.web.token)
    app = AuthMiddleware(app, token=info.token, open_reads=True)

The token comes from ``web.token`` when configured; otherwise it is generated on the first
start into ``<data_dir>/api_token`` (mode 0600) and read from there on later starts. The
file is written whole in one rename, so a full disk leaves no file rather than an empty
one; a file that is empty, unreadable or not a token (a crash of an older version, a
stray edit) counts as missing: a new token replaces it, and the log says so.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from watchkeeper.status import write_bytes_atomic

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
#: Paths anyone may read even when reads are closed: the page shells, their files, the API
#: description and the health probe a load balancer calls without credentials. An
#: incident's page (``/incidents/<id>``) is a bare shell when reads are closed: its data
#: comes from the API, with the token.
PUBLIC_PATHS = frozenset({"/", "/docs", "/openapi.json", "/api/health", "/favicon.ico"})
_PUBLIC_PREFIXES = ("/static/", "/incidents/")
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: What a kept token may look like: visible ASCII, long enough to be a password. Ours are
#: 43 URL-safe characters; a person may put one of their own in the file.
_TOKEN_SHAPE = re.compile(r"[\x21-\x7e]{16,4096}")


@dataclass(frozen=True)
class TokenInfo:
    """The token in force and where it came from (``config``, ``file`` or ``created``)."""

    token: str
    source: Literal["config", "file", "created"]
    path: Path | None


def ensure_token(data_dir: Path, configured: str | None) -> TokenInfo:
    """The API token: ``configured`` when given, else the data dir's token file, created
    with mode 0600 on first use (and again when it holds no usable token). Raises
    ``OSError`` when the file cannot be written; nothing is left behind then."""
    if configured:
        return TokenInfo(configured, "config", None)
    path = Path(data_dir) / TOKEN_FILE
    for _ in range(3):
        token, problem = _read_token(path)
        if token is not None:
            _tighten(path)
            return TokenInfo(token, "file", path)
        token = secrets.token_urlsafe(32)
        data = (token + "\n").encode("ascii")
        if problem is None:
            try:
                # No replace: when two starts race, one creates and the other reads it.
                write_bytes_atomic(path, data, mode=0o600, replace=False)
            except FileExistsError:
                continue
        else:
            write_bytes_atomic(path, data, mode=0o600)
            log.warning("%s %s; made a new API token in its place", path, problem)
        return TokenInfo(token, "created", path)
    raise OSError(f"{path} keeps changing while watchkeeper reads it")


def _read_token(path: Path) -> tuple[str | None, str | None]:
    """``(token, None)`` for a usable file, ``(None, None)`` when there is none, and
    ``(None, why)`` when the file exists but holds no usable token."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"could not be read ({exc.strerror or exc})"
    text = raw.decode("ascii", errors="replace").strip()
    if not text:
        return None, "was empty"
    if not _TOKEN_SHAPE.fullmatch(text):
        return None, "did not hold a token"
    return text, None


def _tighten(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Someone loosened it; the token is a password, so put it back.
        os.chmod(path, 0o600)
        log.warning("%s was readable by others (mode %o); set it back to 0600", path, mode)


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
