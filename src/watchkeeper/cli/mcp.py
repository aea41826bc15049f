"""``watchkeeper mcp``: an MCP server for AI assistants, over stdio.

The assistant launches this command; it answers on stdin/stdout and reads the running
daemon through its HTTP API, finding the URL and token the way every API command does
(``--url``/``--token``, ``$WATCHKEEPER_URL``/``$WATCHKEEPER_TOKEN``, else the
configuration and ``<data_dir>/api_token``). See docs/mcp.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from watchkeeper.cli._common import fail, settings_for

__all__ = ["register"]


def mcp(
    url: Annotated[
        str | None,
        typer.Option(help="The daemon's API (default: $WATCHKEEPER_URL, else the config's)."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="The API token (default: $WATCHKEEPER_TOKEN, else the data dir's)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file the URL and token are read from."),
    ] = None,
) -> None:
    """Serve watchkeeper's MCP tools on stdin/stdout, for an assistant that launches it.

    Read-only tools (status, agents, metrics and their history, alerts, incidents, the
    analysis, the remediation audit, explain an alert) and propose_action, whose proposal
    waits for a person's approval and never runs by itself."""
    from watchkeeper.cli.client import ApiError, resolve_endpoint
    from watchkeeper.mcp_server.stdio import serve_stdio

    settings, _ = settings_for(config)
    try:
        endpoint = resolve_endpoint(url=url, token=token, settings=settings)
    except ApiError as exc:
        fail(exc.message, exc.exit_code)
    serve_stdio(endpoint.url, endpoint.token)


def register(app: typer.Typer) -> None:
    """Add ``watchkeeper mcp`` to the ``watchkeeper`` command."""
    app.command("mcp")(mcp)
