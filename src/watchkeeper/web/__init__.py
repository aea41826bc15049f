"""watchkeeper's web face: the REST API, the live event stream, Prometheus' ``/metrics``
and the dashboard, served in the daemon's own event loop.

::

    sock = bind_socket("127.0.0.1", 8000)
    await serve_web(orchestrator, stop, sock)

Heavy imports (FastAPI, uvicorn) happen inside these functions, not at package import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["PortInUse", "bind_socket", "create_app", "serve_web"]

if TYPE_CHECKING:
    from watchkeeper.web.app import create_app
    from watchkeeper.web.server import PortInUse, bind_socket, serve_web


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from watchkeeper.web.app import create_app

        return create_app
    if name in ("PortInUse", "bind_socket", "serve_web"):
        from watchkeeper.web import server

        return getattr(server, name)
    raise AttributeError(name)
