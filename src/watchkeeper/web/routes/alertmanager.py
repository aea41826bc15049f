"""``POST /api/alertmanager``: the receiver for Prometheus Alertmanager's webhook.

Point an Alertmanager ``webhook_configs`` entry here, with the API token as its bearer
credentials (docs/alertmanager.md has the block). The body is network input: it is
bounded (size here, alerts and labels in
:class:`~watchkeeper.analysis.external.AlertmanagerPayload`) and checked whole before
anything changes, so a bad one gets a 422 with one ``detail`` and changes nothing. A good
one goes to the analyzer as a bus command (``command.analyzer``, ``alertmanager``), the
same door every other change uses; the analyzer turns its alerts into ours and the rules'
proposals go through the remediation policy like any other.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from watchkeeper.analysis.external import AlertmanagerPayload
from watchkeeper.bus import RequestTimeout
from watchkeeper.model.datacheck import DataError, loads_strict
from watchkeeper.model.events import AgentReply, Command
from watchkeeper.model.text import LABEL, clean
from watchkeeper.model.topics import command_for
from watchkeeper.web.models import ErrorBody
from watchkeeper.web.routes._common import WebContext, fail, json_response

__all__ = ["MAX_BODY_BYTES", "build"]

#: The largest webhook body taken (the app's own ``web.max_body_bytes`` may be lower).
MAX_BODY_BYTES = 1_048_576
_ANALYZER = "analyzer"
_TIMEOUT = 10.0


def _problem(exc: ValidationError) -> str:
    """The first thing wrong with a payload, where it is: one line for the sender."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "body"
    message = "missing" if error["type"] == "missing" else error["msg"]
    return clean(f"{where}: {message}", LABEL, 300)


def parse_payload(body: bytes) -> AlertmanagerPayload:
    """The webhook body as a payload, or a 413/422 naming what is wrong."""
    if len(body) > MAX_BODY_BYTES:
        raise fail(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    if not body.strip():
        raise fail(422, "the body is empty: send Alertmanager's webhook JSON")
    try:
        data = loads_strict(body)
    except (DataError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise fail(422, f"the body is not valid JSON: {clean(str(exc), LABEL, 120)}") from None
    if not isinstance(data, dict):
        raise fail(422, "the body must be a JSON object (Alertmanager's webhook payload)")
    try:
        return AlertmanagerPayload.model_validate(data)
    except ValidationError as exc:
        raise fail(422, f"not an Alertmanager webhook payload: {_problem(exc)}") from None


def build(ctx: WebContext) -> APIRouter:
    router = APIRouter(tags=["integrations"])
    orch = ctx.orchestrator

    @router.post(
        "/api/alertmanager",
        summary="Receive Prometheus Alertmanager's webhook (firing and resolved alerts)",
        responses={
            401: {"model": ErrorBody, "description": "no token, or the wrong one"},
            413: {"model": ErrorBody, "description": "the body is too large"},
            422: {"model": ErrorBody, "description": "not an Alertmanager webhook payload"},
            503: {"model": ErrorBody, "description": "no analyzer runs, or it did not answer"},
        },
    )
    async def alertmanager(request: Request) -> Response:
        """Each alert of the group fires, updates or resolves one watchkeeper alert
        (``source`` "alertmanager", its labels kept); see docs/alertmanager.md for the
        labels read (``severity``, ``service``, ``mountpoint``, ``instance``)."""
        payload = parse_payload(await request.body())
        agent = orch.agents.get(_ANALYZER)
        if agent is None or orch.state != "running":
            raise fail(503, "no analyzer is running here: the alerts were not taken")
        params = {"payload": payload.compact().model_dump(mode="json", by_alias=True)}
        try:
            reply = await orch.bus.request(
                command_for(_ANALYZER),
                Command(command="alertmanager", params=params),
                sender="web",
                timeout=_TIMEOUT,
            )
        except RequestTimeout:
            raise fail(503, f"the analyzer did not answer within {_TIMEOUT:g}s") from None
        result = reply.parse(AgentReply).result()
        if not result.get("ok"):
            raise fail(422, str(result.get("error", "the analyzer refused the payload")))
        return json_response(
            {
                "ok": True,
                "alerts": len(payload.alerts),
                "changed": result.get("changed", 0),
                "truncated_alerts": payload.truncated_alerts,
            }
        )

    return router
