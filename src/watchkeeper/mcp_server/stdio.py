"""``watchkeeper mcp``: the MCP server over stdio, reading the running daemon's API.

An assistant launches it as a subprocess and speaks MCP on its stdin and stdout; every
tool reads the daemon through its HTTP API (the URL and token the CLI would use), so no
second daemon starts and a daemon that is down is a clear tool error, not a crash::

    serve_stdio("http://127.0.0.1:8000", token)

stdout carries only MCP messages: logging goes to stderr, warnings and worse only.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["serve_stdio"]

_QUIET = ("mcp", "httpx", "httpcore", "httpx2")


def _quiet_logging() -> None:
    """Warnings and worse, to stderr, before the SDK sets up its own handler."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def serve_stdio(url: str, token: str | None) -> None:
    """Serve the tools on stdin/stdout until the client closes them."""
    _quiet_logging()
    import anyio

    from watchkeeper.mcp_server.source import ApiSource
    from watchkeeper.mcp_server.tools import build_server

    async def run() -> None:
        source = ApiSource(url, token)
        try:
            await build_server(source).run_stdio_async()
        finally:
            await source.aclose()

    anyio.run(run)
