"""The MCP tools, registered once on an SDK server for both transports.

``build_server(source)`` returns an :class:`mcp.server.mcpserver.MCPServer` whose tools
call :class:`~watchkeeper.mcp_server.readers.Readers` over ``source``; stdio serves it to
the assistant that launched ``watchkeeper mcp``, ``/mcp`` serves it in the daemon. Each
description says exactly what the tool returns. A bad argument or an answer the daemon
cannot give comes back as a tool error with one line that says why, never a traceback.

This module imports the SDK; only the MCP paths load it.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from watchkeeper import __version__
from watchkeeper.mcp_server.inputs import MAX_PARAMS, MAX_REASON, MAX_TARGET, InputError, identity
from watchkeeper.mcp_server.readers import Readers
from watchkeeper.mcp_server.source import Source, SourceError

__all__ = ["TOOL_NAMES", "build_server", "client_identity"]

T = TypeVar("T")

#: Every tool, in the order they are listed; ``propose_action`` is the only one that asks
#: for a change (and it only asks).
TOOL_NAMES = (
    "status",
    "agents",
    "metrics_now",
    "metric_names",
    "metric_history",
    "alerts",
    "incidents",
    "incident",
    "analysis",
    "remediation_audit",
    "list_actions",
    "explain_alert",
    "propose_action",
)

_INSTRUCTIONS = """watchkeeper watches this host, reasons about what it sees and heals what
is safe to heal. These tools read its live state and history. propose_action only puts an
action in the approval queue: a person approves or rejects it; nothing an assistant
proposes runs by itself."""

Range = Annotated[str, Field(max_length=32, description="a span such as 15m, 6h, 7d (90d at most)")]


async def _answer(work: Awaitable[T]) -> T:
    """The tool's answer, or a tool error in the daemon's (or the check's) own words."""
    try:
        return await work
    except (InputError, SourceError) as exc:
        raise ToolError(str(exc)) from None


def client_identity(ctx: Context | None) -> str:
    """The client's stated name and version from its ``initialize`` (``"unnamed"`` when it
    gave none, as over stateless HTTP), cleaned: it is the client's own claim."""
    params = None
    if ctx is not None:
        try:
            params = ctx.session.client_params
        except (AttributeError, RuntimeError, ValueError):
            params = None
    if params is None:
        return "unnamed"
    info = params.client_info
    return identity(f"{info.name} {info.version}".strip())


def build_server(source: Source) -> MCPServer[Any]:
    """An MCP server whose tools read (and propose) through ``source``."""
    readers = Readers(source)
    server: MCPServer[Any] = MCPServer(
        "watchkeeper", instructions=_INSTRUCTIONS, version=__version__, log_level="WARNING"
    )

    @server.tool(
        name="status",
        description="The whole system snapshot, as GET /api/system returns it: version, pid, "
        '"state" (created, running, stopping or stopped), "status" (healthy, degraded), '
        'uptime, each agent\'s summary ("agents"), bus statistics, "details" (each agent\'s '
        "own status by name: the sensor's services, the remediator's recent actions...), "
        'plugins and "health".',
    )
    async def status() -> Any:
        return await _answer(readers.status())

    @server.tool(
        name="agents",
        description="Each agent's health by name (sensor, analyzer, remediator, "
        "communicator), as GET /api/agents returns it: kind, state, interval, uptime, the "
        "last check and its duration, checks, errors, the last error, restarts and why.",
    )
    async def agents() -> Any:
        return await _answer(readers.agents())

    @server.tool(
        name="metrics_now",
        description="The latest sample, as GET /api/metrics returns it: CPU, memory, disks, "
        "network, top processes, system and services. flat=true gives "
        '{"timestamp": ..., "metrics": {"cpu.percent": 12.5, ...}} instead.',
    )
    async def metrics_now(flat: bool = False) -> Any:
        return await _answer(readers.metrics_now(flat))

    @server.tool(
        name="metric_names",
        description="The metric names with stored history (for metric_history), as "
        'GET /api/metrics/names returns them: {"prefix": ..., "names": [...]}.',
    )
    async def metric_names(
        prefix: Annotated[str, Field(max_length=100, description="e.g. cpu or disk")] = "",
    ) -> Any:
        return await _answer(readers.metric_names(prefix))

    @server.tool(
        name="metric_history",
        description="One stored metric over a time range, as GET /api/metrics/history "
        'returns it: {"metric", "start", "end", "step", "source", "points": [{"ts", "min", '
        '"avg", "max", "count"}]}, every step listed: one where nothing was stored (the '
        "daemon was down) has null min/avg/max. The metric must be a stored name "
        "(metric_names); range from 1m to 90d; step (optional) at least 1s, by default "
        "chosen from the range (at most 360 steps).",
    )
    async def metric_history(
        metric: Annotated[str, Field(max_length=300, description="e.g. cpu.percent")],
        range: Range = "1h",
        step: Annotated[str | None, Field(max_length=32, description="bucket, e.g. 1m")] = None,
        end: Annotated[
            float | None, Field(description="unix time the range ends (default now)")
        ] = None,
    ) -> Any:
        return await _answer(readers.metric_history(metric, range, step, end))

    @server.tool(
        name="alerts",
        description="Firing alerts worst first, with counts by severity, as GET /api/alerts "
        'returns them: {"analyzer", "counts", "firing": [...]}; with range (e.g. 24h) also '
        '"history": the stored alerts open at some point in that span.',
    )
    async def alerts(
        range: Annotated[str | None, Field(max_length=32, description="e.g. 24h")] = None,
        state: Literal["firing", "resolved", "all"] = "all",
        limit: Annotated[int, Field(ge=1, le=1000)] = 200,
    ) -> Any:
        return await _answer(readers.alerts(range, state, limit))

    @server.tool(
        name="incidents",
        description="Incidents (correlated alerts with their probable root cause, remedies "
        "root first), open ones first, as GET /api/incidents returns them.",
    )
    async def incidents(
        state: Literal["open", "resolved", "all"] = "open",
        limit: Annotated[int, Field(ge=1, le=500)] = 50,
    ) -> Any:
        return await _answer(readers.incidents(state, limit))

    @server.tool(
        name="incident",
        description="One incident by id with its member alerts in full, remedies and the "
        "actions taken for it, as GET /api/incidents/{id} returns it.",
    )
    async def incident(
        incident_id: Annotated[str, Field(max_length=64, description="an incident's id")],
    ) -> Any:
        return await _answer(readers.incident(incident_id))

    @server.tool(
        name="analysis",
        description="The latest analysis and its reasoning, as GET /api/analysis returns it: "
        '"latest" (rules or model), "latest_llm" (the model\'s, with "explanations" per alert '
        'id, "recommended" actions and "dropped" ones), "llm" (is the model reachable); with '
        "history=N also the N newest stored analyses.",
    )
    async def analysis(history: Annotated[int, Field(ge=0, le=200)] = 0) -> Any:
        return await _answer(readers.analysis(history))

    @server.tool(
        name="remediation_audit",
        description="The remediation audit, as GET /api/remediation returns it less the "
        'action declarations: "mode", "pending" (waiting for a person), "audit" (every '
        "decision and outcome, who proposed it and why, oldest first), success rates and "
        "the targets given up on. target= narrows the audit to one target.",
    )
    async def remediation_audit(
        limit: Annotated[int, Field(ge=1, le=1000)] = 50,
        target: Annotated[str | None, Field(max_length=MAX_TARGET)] = None,
    ) -> Any:
        return await _answer(readers.remediation(limit, target))

    @server.tool(
        name="list_actions",
        description='The remediation mode and every registered action: {"mode", "actions": '
        '[{"name", "description", "target_kind", "risk", "params"}]}, the names '
        "propose_action takes.",
    )
    async def list_actions() -> Any:
        return await _answer(readers.list_actions())

    @server.tool(
        name="explain_alert",
        description="Why an alert fired and what was done about it. alert is its id or "
        'fingerprint (firing, or stored from the last 7 days). Returns {"alert" (with its '
        'evidence and suggested actions), "explanation" (the model\'s words for it, or null), '
        '"analyses" (the latest analyses about it), "incident" (the incident it belongs to, '
        'or null), "actions" (pending approvals and audit records for it)}.',
    )
    async def explain_alert(
        alert: Annotated[str, Field(max_length=64, description="alert id or fingerprint")],
    ) -> Any:
        return await _answer(readers.explain_alert(alert))

    @server.tool(
        name="propose_action",
        description="Propose one registered action (list_actions) on a target for a person "
        "to approve. It NEVER runs by itself, whatever the mode: it lands in the approval "
        "queue, audited with proposer mcp and this client's name. Returns the record: "
        '{"id", "action", "target", "outcome": "pending", "detail", "proposer": "mcp", '
        '"proposed_by", ...}, or an error saying why the policy refused it (unknown action, '
        "protected or invalid target, bad parameters).",
    )
    async def propose_action(
        action: Annotated[str, Field(max_length=64, description="a registered action's name")],
        reason: Annotated[str, Field(max_length=MAX_REASON, description="why, for the person")],
        target: Annotated[
            str | None, Field(max_length=MAX_TARGET, description="pid, service or path")
        ] = None,
        params: Annotated[
            dict[str, Any] | None,
            Field(max_length=MAX_PARAMS, description="the action's parameters"),
        ] = None,
        requested_by: Annotated[
            str | None, Field(max_length=64, description="who asks, e.g. the person's name")
        ] = None,
        ctx: Context | None = None,
    ) -> Any:
        client = client_identity(ctx)
        return await _answer(
            readers.propose_action(action, target, params, reason, requested_by, client)
        )

    return server
