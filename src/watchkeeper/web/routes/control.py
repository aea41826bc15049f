"""``/api/bus``, ``/api/config`` (GET, PATCH) and ``/api/command``.

Every state change goes through the same doors the CLI uses: configuration through
``ConfigStore.update`` (validated whole before anything applies), commands as bus
requests to the agents (``command.<agent>``), never by calling an agent's methods.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from watchkeeper.bus import RequestTimeout
from watchkeeper.config import ConfigError
from watchkeeper.live_config import LIVE_SECTIONS
from watchkeeper.model.actions import ActionInfo, ParamError
from watchkeeper.model.events import AgentReply, Command
from watchkeeper.model.secret import MASK
from watchkeeper.model.topics import command_for
from watchkeeper.web.json_body import StrictJSONRoute
from watchkeeper.web.models import (
    ApproveParams,
    CommandReply,
    CommandRequest,
    ConfigPatch,
    ErrorBody,
    NoParams,
    NotifyTestParams,
    ResetGiveUpParams,
    RunActionParams,
)
from watchkeeper.web.responses import (
    BusMessage,
    BusReply,
    ConfigPatchReply,
    ConfigReply,
    WebStats,
)
from watchkeeper.web.routes._common import WebContext, fail, json_response, model_response

__all__ = ["PARAMS", "build", "masked"]

#: How each known command's ``params`` are validated; other (plugin) commands pass as is.
PARAMS: dict[str, type[BaseModel]] = {
    "health_check": NoParams,
    "pause": NoParams,
    "resume": NoParams,
    "restart": NoParams,
    "analyze_now": NoParams,
    "sample_now": NoParams,
    "list_actions": NoParams,
    "health": NoParams,
    "stats": NoParams,
    "run_action": RunActionParams,
    "approve": ApproveParams,
    "reject": ApproveParams,
    "reset_giveup": ResetGiveUpParams,
    "notify_test": NotifyTestParams,
}
_SLOW = {"run_action": 60.0, "approve": 60.0}
#: Seconds an ``analyze_now`` may take beyond the advisor's deadline (brief, publishing).
_ANALYSIS_SLACK = 10.0
_PATTERN = re.compile(r"^[A-Za-z0-9_\-*#]+(\.[A-Za-z0-9_\-*#]+)*$")
_SECRET_WORDS = ("token", "password", "secret", "api_key", "apikey")
_ALIVE = {"running", "paused", "degraded", "starting"}


def masked(data: Any) -> Any:
    """``data`` with every secret-looking value replaced, for showing configuration.

    The secret settings are masked by their types already; this also covers free-form
    tables (``plugins.plugin_configs``) whose keys say they hold a secret."""
    if isinstance(data, dict):
        return {
            key: (
                MASK
                if value and any(word in str(key).lower() for word in _SECRET_WORDS)
                else masked(value)
            )
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [masked(item) for item in data]
    return data


def _problems(exc: ValidationError, prefix: str) -> str:
    out = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in (prefix, *error["loc"]))
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        out.append(f"{loc}: {message}")
    return "; ".join(out)


def build(ctx: WebContext) -> APIRouter:
    # Strict JSON bodies: no NaN or Infinity, no deep nesting (a clear 422 instead).
    router = APIRouter(tags=["control"], route_class=StrictJSONRoute)
    orch = ctx.orchestrator

    # -- the bus --------------------------------------------------------------------------
    _NO_PAYLOAD = {"recent": {"__all__": {"payload"}}}

    @router.get("/api/bus", summary="Bus statistics and recent messages", response_model=BusReply)
    async def bus(
        limit: int = Query(50, ge=1, le=500),
        pattern: str = Query("#", min_length=1, max_length=200, description="e.g. alert.*"),
        payload: bool = Query(False, description="include each message's payload"),
    ) -> Response:
        if not _PATTERN.match(pattern):
            raise fail(422, f"pattern: {pattern!r} is not a topic pattern (words, * and #)")
        recent = [
            BusMessage(
                id=message.id,
                topic=message.topic,
                sender=message.sender,
                timestamp=message.timestamp,
                correlation_id=message.correlation_id,
                payload=message.payload if payload else None,
            )
            for message in orch.bus.history(limit, pattern)
        ]
        reply = BusReply(
            stats=orch.bus.stats(), recent=recent, web=WebStats.model_validate(ctx.hub.stats())
        )
        # Without ?payload the messages carry no payload key at all, as documented.
        return model_response(reply, exclude=None if payload else _NO_PAYLOAD)

    # -- configuration --------------------------------------------------------------------
    @router.get(
        "/api/config",
        summary="The configuration in force (secrets masked)",
        response_model=ConfigReply,
    )
    async def config() -> Response:
        store = orch.store
        return model_response(
            ConfigReply(
                settings=masked(store.current.model_dump(mode="json")),
                live_sections=sorted(LIVE_SECTIONS),
                file=str(store.path) if store.path else None,
            )
        )

    @router.patch(
        "/api/config",
        summary="Change settings on the running system",
        response_model=ConfigPatchReply,
        responses={422: {"model": ErrorBody, "description": "a key or value is not valid"}},
    )
    async def patch_config(patch: ConfigPatch) -> Response:
        """Keys in ``live_sections`` apply at once (``config.changed`` goes out); other
        keys are refused with a message that says they need a restart. ``persist`` also
        writes them to the config file."""
        try:
            change = await orch.store.update(patch.changes, actor="api", persist=patch.persist)
        except ConfigError as exc:
            raise fail(422, str(exc)) from None
        return model_response(ConfigPatchReply(change=change))

    # -- commands -------------------------------------------------------------------------
    def valid_targets() -> list[str]:
        return ["all", *sorted(orch.agents)]

    def commands_of(target: str) -> list[str]:
        if target == "all":
            sets = [set(agent.commands()) for agent in orch.agents.values()]
            return sorted(set.intersection(*sets)) if sets else []
        return list(orch.agents[target].commands())

    def check_params(request: CommandRequest) -> dict[str, Any]:
        model = PARAMS.get(request.command)
        if model is None:
            return request.params
        try:
            parsed = model.model_validate(request.params)
        except ValidationError as exc:
            raise fail(422, _problems(exc, "params")) from None
        if isinstance(parsed, RunActionParams):
            remediator = ctx.sources.remediator()
            infos = {
                str(getattr(a, "name", a)): a for a in (remediator.actions() if remediator else ())
            }
            known = sorted(infos)
            if parsed.action not in known:
                raise fail(
                    400,
                    f"unknown action {parsed.action!r}; valid: {', '.join(known) or 'none'}",
                    valid=known,
                )
            # Checked against the action's declaration before it goes on the bus, so a bad
            # parameter is refused here and never reaches the bus history or the audit.
            info = infos[parsed.action]
            if isinstance(info, ActionInfo):
                try:
                    info.check_params(parsed.params)
                except ParamError as exc:
                    raise fail(422, str(exc)) from None
        checked = parsed.model_dump(exclude_none=True)
        if request.command in ("run_action", "approve", "reject"):
            checked["by"] = "api"  # the audit trail says who asked
        return checked

    async def ask(name: str, command: str, params: dict[str, Any]) -> dict[str, Any]:
        agent = orch.agents[name]
        state = str(agent.state)
        if state not in _ALIVE:
            return {
                "ok": False,
                "agent": name,
                "command": command,
                "error": (f"agent {name!r} is not running (state {state}); it cannot answer now"),
                "conflict": True,
            }
        restarts = agent.restarts
        timeout = _SLOW.get(command, 10.0)
        if command == "analyze_now":
            # Wait as long as the advisor may take (one figure, from the advisor's own
            # rule), plus time to build the brief and publish: the analysis always comes
            # back, answered by the model or marked as fallen back to the rules.
            from watchkeeper.llm import call_deadline

            o = orch.settings.ollama
            timeout = call_deadline(o.timeout, o.retry_attempts, o.retry_delay) + _ANALYSIS_SLACK
        try:
            reply = await orch.bus.request(
                command_for(name),
                Command(command=command, params=params),
                sender="web",
                timeout=timeout,
            )
        except RequestTimeout:
            if agent.restarts != restarts or str(agent.state) not in _ALIVE:
                return {
                    "ok": False,
                    "agent": name,
                    "command": command,
                    "error": (f"agent {name!r} restarted before it answered; try again"),
                    "conflict": True,
                }
            return {
                "ok": False,
                "agent": name,
                "command": command,
                "error": (f"agent {name!r} did not answer within {timeout:g}s"),
                "timeout": True,
            }
        return reply.parse(AgentReply).result()

    @router.post(
        "/api/command",
        summary="Send a command to one agent or to all",
        responses={
            200: {"model": CommandReply, "description": "every agent asked did it"},
            400: {"model": ErrorBody, "description": "unknown command, target or action"},
            409: {"model": CommandReply, "description": "an agent refused or is not running"},
            422: {"model": ErrorBody, "description": "bad parameters"},
            503: {"model": ErrorBody, "description": "the system is stopping"},
            504: {"model": CommandReply, "description": "an agent did not answer in time"},
        },
    )
    async def command(request: CommandRequest) -> Response:
        """Commands every agent takes: ``health_check``, ``pause``, ``resume``,
        ``restart``. The analyzer adds ``analyze_now``, the sensor ``sample_now``, the
        remediator ``list_actions``, ``run_action`` (params ``action``, ``target``,
        ``params``), ``approve`` / ``reject`` (param ``id``) and ``reset_giveup``
        (param ``target``). ``target`` is an agent's name or ``all``."""
        targets = valid_targets()
        if request.target not in targets:
            raise fail(
                400,
                f"unknown target {request.target!r}; valid: {', '.join(targets)}",
                valid=targets,
            )
        valid = commands_of(request.target)
        if request.command not in valid:
            raise fail(
                400,
                f"unknown command {request.command!r} for {request.target}; "
                f"valid: {', '.join(valid)}",
                valid=valid,
            )
        if orch.state != "running":
            raise fail(503, f"the system is {orch.state}; commands are not taken now")
        params = check_params(request)
        names = sorted(orch.agents) if request.target == "all" else [request.target]
        answers = await asyncio.gather(*(ask(n, request.command, params) for n in names))
        replies = dict(zip(names, answers, strict=True))
        ok = all(bool(a.get("ok")) for a in answers)
        body: dict[str, Any] = {
            "ok": ok,
            "command": request.command,
            "target": request.target,
            "replies": replies,
        }
        if ok:
            return json_response(body)
        errors = [f"{n}: {a.get('error', 'failed')}" for n, a in replies.items() if not a.get("ok")]
        body["detail"] = "; ".join(errors)
        timed_out = any(a.get("timeout") for a in answers)
        return json_response(body, 504 if timed_out else 409)

    return router
