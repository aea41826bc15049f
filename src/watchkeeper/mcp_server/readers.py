"""What each MCP tool does, over a :class:`~watchkeeper.mcp_server.source.Source`.

Plain async methods, no MCP in sight: :mod:`watchkeeper.mcp_server.tools` registers them
with the SDK, and both transports (stdio, ``/mcp``) call the same code. The answers are
the REST API's own JSON (each method names its path), trimmed only where a question asks
for less; the two that compose (``explain_alert``, ``propose_action``) say what they
put together. Arguments are checked by :mod:`watchkeeper.mcp_server.inputs` first.
"""

from __future__ import annotations

from typing import Any

from watchkeeper.mcp_server import inputs
from watchkeeper.mcp_server.source import Source, SourceError

__all__ = ["PROPOSALS_PATH", "Readers"]

#: Where a proposal goes: the web's route that hands it to the remediator as "mcp".
PROPOSALS_PATH = "/api/mcp/proposals"
_EXPLAIN_SPAN = "7d"
_EXPLAIN_ALERTS = 1000
_EXPLAIN_AUDIT = 1000
_EXPLAIN_INCIDENTS = 200


class Readers:
    """The tools' logic; ``Readers(source).status()`` is what the ``status`` tool answers."""

    def __init__(self, source: Source) -> None:
        self.source = source

    async def status(self) -> Any:
        """``GET /api/system``."""
        return await self.source.get("/api/system")

    async def agents(self) -> Any:
        """``GET /api/agents``."""
        return await self.source.get("/api/agents")

    async def metrics_now(self, flat: bool) -> Any:
        """``GET /api/metrics`` (``?flat=true`` for dotted names)."""
        return await self.source.get("/api/metrics", {"flat": "true"} if flat else None)

    async def metric_names(self, prefix: str) -> Any:
        """``GET /api/metrics/names``."""
        if len(prefix) > 100:
            raise inputs.InputError("prefix: at most 100 characters")
        return await self.source.get("/api/metrics/names", {"prefix": prefix})

    async def metric_history(
        self, metric: str, range_: str, step: str | None, end: float | None
    ) -> Any:
        """``GET /api/metrics/history``, for a stored metric only."""
        name = inputs.metric_name(metric)
        span = inputs.duration(range_, "range", minimum=60, maximum=inputs.MAX_RANGE_S)
        if step is not None:
            inputs.duration(step, "step", minimum=1, maximum=span)
        known = await self.source.get("/api/metrics/names", {"prefix": name.split(".", 1)[0]})
        names = list(known.get("names", [])) if isinstance(known, dict) else []
        if name not in names:
            some = ", ".join(names[:10]) or "none under that prefix"
            raise inputs.InputError(f"no stored metric {name!r}; stored names include: {some}")
        params = {"metric": name, "range": range_.strip().lower(), "step": step, "end": end}
        return await self.source.get("/api/metrics/history", params)

    async def alerts(self, range_: str | None, state: str, limit: int) -> Any:
        """``GET /api/alerts``."""
        if range_ is not None:
            inputs.duration(range_, "range", minimum=60, maximum=inputs.MAX_RANGE_S)
        params = {"range": range_, "state": state, "limit": limit}
        return await self.source.get("/api/alerts", params)

    async def incidents(self, state: str, limit: int) -> Any:
        """``GET /api/incidents``."""
        return await self.source.get("/api/incidents", {"state": state, "limit": limit})

    async def incident(self, incident_id: str) -> Any:
        """``GET /api/incidents/{id}``."""
        checked = inputs.record_id(incident_id, "incident id")
        return await self.source.get(f"/api/incidents/{checked}")

    async def analysis(self, history: int) -> Any:
        """``GET /api/analysis``."""
        return await self.source.get("/api/analysis", {"history": history})

    async def remediation(self, limit: int, target: str | None) -> Any:
        """``GET /api/remediation``, less the action declarations (``list_actions``)."""
        checked = inputs.target(target)
        reply = await self.source.get("/api/remediation", {"limit": limit, "target": checked})
        if isinstance(reply, dict):
            reply.pop("actions", None)
        return reply

    async def list_actions(self) -> Any:
        """The ``actions`` of ``GET /api/remediation``, with the mode in force."""
        reply = await self.source.get("/api/remediation", {"limit": 1})
        if not isinstance(reply, dict):
            raise SourceError("the remediation answer was not an object")
        return {"mode": reply.get("mode"), "actions": reply.get("actions", [])}

    async def explain_alert(self, alert: str) -> dict[str, Any]:
        """One alert by id or fingerprint, with what explains it (see the tool's words)."""
        ref = inputs.record_id(alert, "alert")
        found = await self._find_alert(ref)
        if found is None:
            raise inputs.InputError(
                f"no alert {ref!r} is firing or stored from the last {_EXPLAIN_SPAN}; "
                "the tool alerts lists them"
            )
        alert_id, fingerprint = str(found.get("id")), str(found.get("fingerprint"))
        analysis = await self.source.get("/api/analysis")
        analyses: list[dict[str, Any]] = []
        for key in ("latest_llm", "latest"):
            result = analysis.get(key) if isinstance(analysis, dict) else None
            if not isinstance(result, dict):
                continue
            about = alert_id in result.get("alert_ids", []) or fingerprint in result.get(
                "fingerprints", []
            )
            if about and all(result.get("id") != seen.get("id") for seen in analyses):
                analyses.append(result)
        explanation = next(
            (
                a["explanations"][alert_id]
                for a in analyses
                if alert_id in a.get("explanations", {})
            ),
            None,
        )
        return {
            "alert": found,
            "explanation": explanation,
            "analyses": analyses,
            "incident": await self._incident_of(fingerprint),
            "actions": await self._actions_for(alert_id, fingerprint),
        }

    async def _find_alert(self, ref: str) -> dict[str, Any] | None:
        params: dict[str, Any] = {"range": _EXPLAIN_SPAN, "limit": _EXPLAIN_ALERTS}
        try:
            reply = await self.source.get("/api/alerts", params)
        except SourceError:
            reply = await self.source.get("/api/alerts")  # no storage: the firing ones
        candidates = [*reply.get("firing", []), *(reply.get("history") or [])]
        for item in candidates:
            if isinstance(item, dict) and ref in (item.get("id"), item.get("fingerprint")):
                return item
        return None

    async def _incident_of(self, fingerprint: str) -> dict[str, Any] | None:
        reply = await self.source.get(
            "/api/incidents", {"state": "all", "limit": _EXPLAIN_INCIDENTS}
        )
        for incident in reply.get("incidents", []):
            if any(m.get("fingerprint") == fingerprint for m in incident.get("members", [])):
                return incident  # type: ignore[no-any-return]
        return None

    async def _actions_for(self, alert_id: str, fingerprint: str) -> list[dict[str, Any]]:
        reply = await self.source.get("/api/remediation", {"limit": _EXPLAIN_AUDIT})
        records = [*reply.get("pending", []), *reply.get("audit", [])]
        return [
            r
            for r in records
            if r.get("alert_id") == alert_id
            or (fingerprint and r.get("fingerprint") == fingerprint)
        ]

    async def propose_action(
        self,
        action: str,
        target: str | None,
        params: dict[str, Any] | None,
        reason: str,
        requested_by: str | None,
        client: str,
    ) -> Any:
        """``POST /api/mcp/proposals``: the proposal waits for a person, or is refused."""
        body = {
            "action": inputs.action_name(action),
            "target": inputs.target(target),
            "params": inputs.params(params),
            "reason": inputs.reason(reason),
            "client": client,
            "requested_by": inputs.identity(requested_by) if requested_by else None,
        }
        return await self.source.post(PROPOSALS_PATH, body)
