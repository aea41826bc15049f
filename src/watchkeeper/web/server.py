"""Serving the web app inside the daemon's event loop.

The listening socket is bound before anything else starts (:func:`bind_socket`), so a port
already in use is one clear line at start-up rather than a traceback later.
:func:`serve_web` then sets up the API token, warns when the server is reachable from
other machines with reads open, and runs uvicorn and the live hub until ``stop`` is set::

    sock = bind_socket("127.0.0.1", 8000)
    await serve_web(orchestrator, stop, sock)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import sys
from typing import TYPE_CHECKING

from watchkeeper.model.secret import secret_value
from watchkeeper.personality import say

if TYPE_CHECKING:
    from watchkeeper.orchestrator import Orchestrator
    from watchkeeper.web.live import LiveHub

__all__ = ["PortInUse", "bind_socket", "is_loopback", "serve_web"]

log = logging.getLogger("watchkeeper.web")


class PortInUse(OSError):
    """The configured address cannot be bound; the message says which setting to change."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when ``host`` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets that
    # say they are TCP, and accepted sockets copy this one. With proto 0 every response
    # (head and body written separately) waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {port} on {host} is already in use; choose another with --port, "
                f"web.port in the config file or WATCHKEEPER_WEB__PORT"
            ) from None
        raise PortInUse(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; check web.host and web.port"
        ) from None
    sock.listen(512)
    sock.setblocking(False)
    return sock


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _announce_token(orchestrator: Orchestrator) -> str:
    from watchkeeper.web.auth import ensure_token

    settings = orchestrator.settings
    try:
        info = ensure_token(settings.data_dir, secret_value(settings.web.token))
    except OSError as exc:
        # Reads still work; changes are impossible until the token can be kept.
        log.error(
            "cannot create the API token file in %s: %s; the API refuses every change "
            "until web.token is set or the data dir is writable",
            settings.data_dir,
            exc.strerror or exc,
        )
        import secrets

        return secrets.token_urlsafe(32)
    if info.source == "created":
        # Shown once, at creation, on the terminal only: log files are often readable by
        # more people than the token should be. Later starts say where the file is.
        log.warning(
            "API token created in %s (mode 0600); it is needed for every change made "
            "through the API or the dashboard",
            info.path,
        )
        sys.stderr.write(f"watchkeeper: API token (shown once): {info.token}\n")
        sys.stderr.flush()
    elif info.source == "file":
        log.info("API token: %s", info.path)
    return info.token


def _warn_exposure(orchestrator: Orchestrator, host: str, port: int) -> None:
    web = orchestrator.settings.web
    if is_loopback(host):
        return
    if web.open_reads:
        log.warning(
            "the web server listens on %s:%d, beyond this machine, and its read endpoints "
            "need no token: anyone who can reach the port sees processes, services and "
            "alerts. Set web.open_reads = false (and web.token), or web.host = 127.0.0.1",
            host,
            port,
        )
    if not web.token:
        log.warning(
            "the web server listens on %s:%d with a generated token and no web.token "
            "configured; keep %s/api_token private",
            host,
            port,
            orchestrator.settings.data_dir,
        )


async def serve_web(
    orchestrator: Orchestrator,
    stop: asyncio.Event,
    sock: socket.socket | None = None,
    *,
    hub: LiveHub | None = None,
) -> None:
    """Serve the dashboard and API until ``stop`` is set (and set ``stop`` if the server
    ends by itself)."""
    import uvicorn

    from watchkeeper.web._uvicorn import CalmServer, ConnectionGuard, GuardedProtocol
    from watchkeeper.web.app import create_app
    from watchkeeper.web.live import LiveHub

    settings = orchestrator.settings.web
    if sock is None:
        sock = bind_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    token = _announce_token(orchestrator)
    _warn_exposure(orchestrator, host, port)
    hub = hub or LiveHub(orchestrator, max_clients=settings.max_event_clients)
    guard = ConnectionGuard(
        max_connections=settings.max_connections, request_timeout=settings.request_timeout
    )
    config = uvicorn.Config(
        create_app(orchestrator, token=token, hub=hub, bind_host=host),
        # Always h11 under the guard (never "auto", which would pick httptools when
        # installed, without the request timeout and the connection cap).
        http=GuardedProtocol.bound(guard),
        ws="none",  # no WebSocket routes: an upgrade would leave the guard's watch
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=3,
        timeout_keep_alive=settings.keep_alive_timeout,
        limit_concurrency=None,  # the guard bounds connections without refusing real ones
    )
    server = CalmServer(config, stop)
    # The daemon owns SIGINT/SIGTERM (one stop event for everything); uvicorn must not
    # replace those handlers or re-raise the signal after it stops.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "%s", say("web_ready", orchestrator.settings.personality, url=f"http://{shown}:{port}")
    )

    async def stopper() -> None:
        await stop.wait()
        hub.close()  # end the event streams, or uvicorn would wait on them
        server.should_exit = True

    async with asyncio.TaskGroup() as group:
        live = group.create_task(hub.run(), name="web-live")
        halt = group.create_task(stopper(), name="web-stopper")
        try:
            await server.serve(sockets=[sock])
        finally:
            stop.set()
            live.cancel()
            halt.cancel()
