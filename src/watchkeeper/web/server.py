"""Serving the web app inside the daemon's event loop.

The listening socket is bound before anything else starts (:func:`bind_socket`), so a port
already in use is one clear line at start-up rather than a traceback later.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from typing import TYPE_CHECKING

from watchkeeper.personality import say

if TYPE_CHECKING:
    from watchkeeper.orchestrator import Orchestrator

__all__ = ["PortInUse", "bind_socket", "serve_web"]

log = logging.getLogger("watchkeeper.web")


class PortInUse(OSError):
    """The configured address cannot be bound; the message says which setting to change."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when ``host`` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve_web(
    orchestrator: Orchestrator, stop: asyncio.Event, sock: socket.socket | None = None
) -> None:
    """Serve the dashboard and API until ``stop`` is set."""
    import uvicorn

    from watchkeeper.web.app import create_app

    settings = orchestrator.settings.web
    if sock is None:
        sock = bind_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        create_app(orchestrator),
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
    )
    server = uvicorn.Server(config)
    # The daemon owns SIGINT/SIGTERM (one stop event for everything); uvicorn must not
    # replace those handlers or re-raise the signal after it stops.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "%s", say("web_ready", orchestrator.settings.personality, url=f"http://{shown}:{port}")
    )

    async def stopper() -> None:
        await stop.wait()
        server.should_exit = True

    async with asyncio.TaskGroup() as group:
        group.create_task(stopper())
        await server.serve(sockets=[sock])
        stop.set()
