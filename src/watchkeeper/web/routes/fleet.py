"""``/api/fleet``: every host of the fleet, one host's own view, fleet incidents, and
approvals for any host.

Only the central host (``[fleet] role = "central"``) keeps the fleet view: its fleet
agent holds every host's newest heartbeat, sample, alerts, incidents and pending
approvals. Elsewhere every route here answers 409 and says where the view lives.

An approval given here is a request to the addressed host's remediator over the bus
(``command.remediator`` with ``host=<id>``); that host's policy gate decides and its own
audit records who approved it and from which host. Nothing runs on this host::

    POST /api/fleet/hosts/web-2/approvals/3f9a0c1d2e4b   {"by": "alice"}
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Path
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from watchkeeper.bus import RequestTimeout
from watchkeeper.config.fleet import check_host_id
from watchkeeper.model.events import AgentReply, Command
from watchkeeper.model.fleet import FleetHostState, FleetHostSummary, FleetIncident
from watchkeeper.model.text import LABEL, LOG_LINE, clean
from watchkeeper.model.topics import command_for
from watchkeeper.web.fleet_responses import FleetHostsReply, FleetHostView, FleetIncidentsReply
from watchkeeper.web.fleet_view import FleetView, fleet_view
from watchkeeper.web.json_body import StrictJSONRoute
from watchkeeper.web.models import ErrorBody
from watchkeeper.web.routes._common import WebContext, fail, json_response

__all__ = ["AnswerBody", "build"]

_Responses = dict[int | str, dict[str, Any]]
_NOT_CENTRAL: dict[str, Any] = {
    "model": ErrorBody,
    "description": "this host does not keep the fleet view",
}
_READ: _Responses = {409: _NOT_CENTRAL}
_ONE: _Responses = {
    404: {"model": ErrorBody, "description": "no such host or incident in the fleet"},
    409: _NOT_CENTRAL,
    422: {"model": ErrorBody, "description": "not a host id or an id"},
}
_ANSWER: _Responses = {
    **_ONE,
    409: {"description": "the host refused (no such pending action), or not central"},
    502: {"model": ErrorBody, "description": "the answer was not the host's reply"},
    504: {"description": "the host did not answer within [bus] request_timeout"},
}
_HOSTS = TypeAdapter(list[FleetHostSummary])
_INCIDENTS = TypeAdapter(list[FleetIncident])
_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
_BY_DEFAULT = "fleet-api"


class AnswerBody(BaseModel):
    """Who answers, as the audit on the host will show it (``approved by alice from host
    central-1``). Optional: without it the answer is recorded as the fleet API's."""

    model_config = ConfigDict(extra="forbid")

    by: str = Field(_BY_DEFAULT, min_length=1, max_length=64, description="who answers")


def _host_id(value: str) -> str:
    try:
        return check_host_id(value)
    except ValueError as exc:
        raise fail(422, str(exc)) from None


def build(ctx: WebContext) -> APIRouter:
    router = APIRouter(tags=["fleet"], route_class=StrictJSONRoute)
    orch = ctx.orchestrator

    def this_host() -> str:
        return str(orch.bus.host)

    def view() -> FleetView:
        if orch.settings.fleet.role != "central":
            raise fail(
                409,
                f"this watchkeeper (host {this_host()}) does not keep the fleet view: "
                'its [fleet] role is "host"; ask the central host',
            )
        state = fleet_view(orch)
        if state is None:
            raise fail(
                409,
                "the fleet agent is not running on this central host; "
                "start watchkeeper with the fleet agent",
            )
        return state

    @router.get(
        "/api/fleet/hosts",
        summary="Every host of the fleet, worst first",
        response_model=FleetHostsReply,
        responses=_READ,
    )
    async def hosts() -> Response:
        """Each host's state (up, stale, lost), health status and score, firing alerts,
        open incidents, pending approvals and when it was last heard of; plus the count
        of hosts in each state."""
        state = view()
        now = ctx.clock()
        rows = state.hosts(now)
        counts = {s.value: 0 for s in FleetHostState}
        for row in rows:
            key = str(row.state)
            counts[key] = counts.get(key, 0) + 1
        head = {"central": this_host(), "now": now, "counts": counts, "total": len(rows)}
        return _with_rows(head, "hosts", _HOSTS.dump_json(rows))

    @router.get(
        "/api/fleet/hosts/{host}",
        summary="One host's own view",
        response_model=FleetHostView,
        responses=_ONE,
    )
    async def host(host: str = Path(max_length=128)) -> Response:
        """The host's summary, its newest heartbeat and sample, firing alerts, open
        incidents, pending approvals and recent actions, as the central host last heard."""
        state = view()
        host_id = _host_id(host)
        found = state.host_view(host_id, ctx.clock())
        if found is None:
            raise fail(404, f"no host {host_id!r} in the fleet")
        return json_response({"host": host_id, **found})

    @router.get(
        "/api/fleet/incidents",
        summary="Fleet incidents: one problem on many hosts",
        response_model=FleetIncidentsReply,
        responses=_READ,
    )
    async def incidents() -> Response:
        state = view()
        rows = state.incidents()
        open_count = sum(1 for row in rows if row.state == "open")
        head = {"open": open_count, "total": len(rows)}
        return _with_rows(head, "incidents", _INCIDENTS.dump_json(rows))

    @router.get(
        "/api/fleet/incidents/{incident_id}",
        summary="One fleet incident",
        response_model=FleetIncident,
        responses=_ONE,
    )
    async def incident(incident_id: str = Path(max_length=128)) -> Response:
        state = view()
        if not _ID.match(incident_id):
            raise fail(422, f"incident id {incident_id[:80]!r} is not an id")
        found = state.incident(incident_id)
        if found is None:
            raise fail(404, f"no fleet incident {incident_id!r}")
        return json_response(jsonable_row(found))

    async def answer(host: str, request_id: str, command: str, body: AnswerBody | None) -> Response:
        state = view()
        host_id = _host_id(host)
        if not _ID.match(request_id):
            raise fail(422, f"action id {request_id[:80]!r} is not an id")
        if state.host_view(host_id, ctx.clock()) is None:
            raise fail(404, f"no host {host_id!r} in the fleet")
        who = clean((body.by if body is not None else _BY_DEFAULT), LABEL) or _BY_DEFAULT
        timeout = orch.settings.bus.request_timeout
        try:
            reply = await orch.bus.request(
                command_for("remediator"),
                Command(command=command, params={"id": request_id, "by": who}),
                sender="web",
                timeout=timeout,
                host=host_id,
            )
        except RequestTimeout:
            return json_response(
                {
                    "ok": False,
                    "host": host_id,
                    "command": command,
                    "detail": f"host {host_id} did not answer within {timeout:g} s",
                },
                504,
            )
        # The answer is another host's text: checked and cleaned before anyone reads it.
        if reply.origin and reply.origin != host_id:
            detail = f"the answer for host {host_id} came from host {clean(reply.origin, LABEL)}"
            return json_response({"ok": False, "host": host_id, "detail": detail}, 502)
        try:
            result = reply.parse(AgentReply).result()
        except ValidationError:
            detail = f"host {host_id} answered with something that is not a reply"
            return json_response({"ok": False, "host": host_id, "detail": detail}, 502)
        data = {**result, "host": host_id, "answered_by": reply.origin}
        if result.get("ok"):
            return json_response(data)
        error = clean(str(result.get("error") or "refused"), LOG_LINE)
        data["error"] = error
        data["detail"] = f"host {host_id}: {error}"
        return json_response(data, 409)

    @router.post(
        "/api/fleet/hosts/{host}/approvals/{request_id}",
        summary="Approve a pending action on a host",
        responses=_ANSWER,
    )
    async def approve(
        host: str = Path(max_length=128),
        request_id: str = Path(max_length=128),
        body: AnswerBody | None = None,
    ) -> Response:
        """Sent to that host's remediator; its policy gate decides, its audit records who
        approved it from which host. 504 when the host does not answer in
        ``[bus] request_timeout``; 409 when it refuses (no such pending action)."""
        return await answer(host, request_id, "approve", body)

    @router.post(
        "/api/fleet/hosts/{host}/rejections/{request_id}",
        summary="Reject a pending action on a host",
        responses=_ANSWER,
    )
    async def reject(
        host: str = Path(max_length=128),
        request_id: str = Path(max_length=128),
        body: AnswerBody | None = None,
    ) -> Response:
        """Like an approval: the host records the rejection, who gave it and from where."""
        return await answer(host, request_id, "reject", body)

    return router


def _with_rows(head: dict[str, Any], key: str, rows: bytes) -> Response:
    """``head`` with ``key`` holding rows already serialised (a thousand hosts' rows are
    dumped by pydantic in one go, not walked again as Python data)."""
    body = json.dumps(head, separators=(",", ":")).encode()[:-1]
    body += b',"' + key.encode() + b'":' + rows + b"}"
    return Response(body, media_type="application/json")


def jsonable_row(value: Any) -> dict[str, Any]:
    """A summary or incident (a model, or already JSON) as a JSON object."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return dict(value)
