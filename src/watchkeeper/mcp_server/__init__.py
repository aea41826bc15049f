"""watchkeeper as an MCP server: what an AI assistant may read, and the one thing it may ask.

Two transports share one set of tools (:mod:`watchkeeper.mcp_server.tools`):

- ``watchkeeper mcp`` speaks MCP over stdio to the assistant that launched it, and reads
  the *running* daemon through its HTTP API (the URL and token found as the CLI finds
  them), so no second daemon starts;
- ``/mcp`` on the daemon's own web server speaks streamable HTTP, in-process, behind the
  API token like the rest of the API (reads included: an assistant reads host details).

Both reach the daemon through a :class:`~watchkeeper.mcp_server.source.ApiSource`, over the
network or straight into the web app, so a tool's answer is what the REST API says. The
tools only read, except ``propose_action``, whose proposal lands in the approval queue and
never runs by itself (the policy gate holds every ``mcp`` proposal for a person).

Nothing here imports the MCP SDK at import time: the daemon pays for it on the first
``/mcp`` request, never when no assistant asks.
"""

from __future__ import annotations

__all__: list[str] = []
