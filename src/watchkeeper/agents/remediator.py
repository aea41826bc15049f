"""RemediatorAgent: the fixer's seat on the bus.

It turns proposals into actions: the rules' suggestions on ``alert.firing``, the model's
recommendations on ``analysis.result``, a person's ``run_action`` / ``approve`` /
``reject`` / ``reset_giveup`` command, a plugin's request. It is a thin adapter: each
message is handed to the :class:`~watchkeeper.remediation.pipeline.RemediationPipeline`,
which owns the whole lifecycle (decide → record → run → verify → escalate), and whatever
the pipeline emits is published. ``alert.escalated`` is not a proposal and is not heard
here: escalation happens once, inside the pipeline (its docstring says why).

Commands are heard only for this host (the bus's local scope): an approval or a request to
act sent through the fleet (the fleet view, ``watchkeeper fleet approve``, any client of
the central host) arrives as a command from the central host and passes this host's gate
like a local one; its audit names the person and the host it came from ("alice from host
central-1"), and a request to act says in its reason that it came through the fleet.

The action registry is injected (``RemediatorAgent(name, ctx, actions=registry)``, built
by the orchestrator); without one the agent holds the built-in actions.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any

from watchkeeper.agents.base import AgentContext, BaseAgent, CommandError
from watchkeeper.bus import Message
from watchkeeper.model.actions import ActionInfo, ActionRecord, ActionRequest, Proposer
from watchkeeper.model.alerts import Alert
from watchkeeper.model.analysis import AnalysisResult
from watchkeeper.model.services import ServiceEvent
from watchkeeper.model.text import LABEL, LOG_LINE, clean
from watchkeeper.model.topics import ALERT_FIRING, ALERT_RESOLVED, ANALYSIS_RESULT, SERVICE_TOPICS
from watchkeeper.remediation.actions import Action, ActionContext, ActionRegistry
from watchkeeper.remediation.builtin import builtin_registry
from watchkeeper.remediation.pipeline import PendingNotFound, RemediationPipeline

__all__ = ["RemediatorAgent"]

_REASON_MAX = 500
_BY_MAX = 128
_WHO_MAX = 64
#: The host a command being served came from (``Message.origin``), for the audit.
_ASKED_FROM: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "remediator_asked_from", default=None
)


class RemediatorAgent(BaseAgent):
    kind = "remediator"
    extra_commands = ("list_actions", "run_action", "approve", "reject", "reset_giveup")

    def __init__(
        self,
        name: str,
        ctx: AgentContext,
        *,
        actions: ActionRegistry | None = None,
        interval: float | None = None,
    ) -> None:
        super().__init__(name, ctx, interval=interval)
        actx = ActionContext(
            settings=ctx.settings, services=ctx.services, clock=ctx.clock, monotonic=ctx.monotonic
        )
        registry = actions if actions is not None else builtin_registry()
        self.pipeline = RemediationPipeline(registry, actx, emit=self.publish)
        self.actx = actx
        self.policy = self.pipeline.policy
        self.book = self.pipeline.book
        self.registry = self.pipeline.registry
        self.on(ALERT_FIRING.name, self._on_alert, maxsize=500)
        self.on(ALERT_RESOLVED.name, self._on_resolved, maxsize=500)
        self.on(ANALYSIS_RESULT.name, self._on_analysis, maxsize=100)
        self.on(SERVICE_TOPICS["exited"].name, self._on_service_exit, maxsize=500)

    # -- public read-only views (web, CLI, status) -------------------------------------------
    def actions(self) -> list[ActionInfo]:
        return self.pipeline.actions()

    def pending(self) -> list[ActionRecord]:
        return self.pipeline.pending()

    def audit(self, limit: int = 100, target: str | None = None) -> list[ActionRecord]:
        return self.pipeline.audit(limit, target)

    def success_rates(self) -> dict[str, Any]:
        return self.pipeline.book.rates()

    def given_up(self) -> list[dict[str, Any]]:
        return [
            {"target": g.target, "since": g.since, "failures": g.failures, "reason": g.reason}
            for g in self.pipeline.given_up()
        ]

    def status(self) -> dict[str, Any]:
        return {
            "mode": self.settings.remediation.mode,
            "running": self.pipeline.running(),
            "pending": len(self.pipeline.pending()),
            "given_up": [g.target for g in self.pipeline.given_up()],
            "attempts": self.pipeline.book.attempts(),
            "recent": [
                {
                    "action": r.action,
                    "target": r.target,
                    "outcome": r.outcome.value,
                    "proposer": r.proposer,
                    "detail": r.detail[:160],
                    "duration_s": r.duration_s,
                }
                for r in self.pipeline.audit(10)
            ],
        }

    def register_action(self, action: Action) -> None:
        """Add an action (plugins); it is gated and audited like the built-in ones."""
        self.registry.register(action)

    async def submit(self, request: ActionRequest) -> ActionRecord:
        """Put ``request`` through the pipeline; returns its record as it stands now."""
        return await self.pipeline.submit(request)

    # -- life ------------------------------------------------------------------------------
    async def setup(self) -> None:
        self.pipeline.start()
        await self.pipeline.record_configured_paths()

    async def teardown(self) -> None:
        await self.pipeline.close()

    async def _perform_check(self) -> None:
        await self.pipeline.tick()

    # -- messages in -----------------------------------------------------------------------
    async def _on_alert(self, message: Message) -> None:
        await self.pipeline.on_alert(message.parse(Alert))

    async def _on_resolved(self, message: Message) -> None:
        await self.pipeline.on_resolved(message.parse(Alert).fingerprint)

    async def _on_analysis(self, message: Message) -> None:
        result = message.parse(AnalysisResult)
        if result.source == "rules" or result.cached:
            return  # the rules' proposals arrive with their alerts
        await self.pipeline.on_recommendations(
            result.recommended,
            source=result.source,
            alert_id=result.alert_ids[0] if result.alert_ids else None,
            fingerprint=result.fingerprints[0] if result.fingerprints else None,
        )

    async def _on_service_exit(self, message: Message) -> None:
        event = message.parse(ServiceEvent)
        await self.pipeline.on_service_exit(
            event.name, failed_start=event.failed_start, uptime=event.uptime or 0.0
        )

    # -- commands ----------------------------------------------------------------------------
    async def execute_command(self, message: Message) -> dict[str, Any]:
        """As every agent does, remembering which host sent the command: an approval from
        another host (the fleet view) is recorded as "alice from host central-1"."""
        token = _ASKED_FROM.set(message.origin or None)
        try:
            return await super().execute_command(message)
        finally:
            _ASKED_FROM.reset(token)

    def _who(self, params: Mapping[str, Any], default: str) -> str:
        """Who answers, cleaned (it is another program's text), and from which host when
        the command came over the network."""
        who = clean(str(params.get("by", default)), LABEL)[:_WHO_MAX] or default
        origin = self._asked_from()
        if origin is not None:
            who = f"{who} from host {origin}"
        return who[:_BY_MAX]

    def _asked_from(self) -> str | None:
        """The other host the command being served came from (cleaned), or None for this
        host's own."""
        origin = _ASKED_FROM.get()
        if not origin or origin == self.ctx.bus.host:
            return None
        return clean(origin, LABEL)[:_WHO_MAX]

    async def handle_command(self, command: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if command == "list_actions":
            return {"actions": [info.model_dump(mode="json") for info in self.actions()]}
        if command == "run_action":
            record = await self.submit(self._command_request(params))
            return {"record": record.model_dump(mode="json")}
        if command in ("approve", "reject"):
            return await self._answer(command, str(params.get("id", "")), params)
        if command == "reset_giveup":
            target = str(params.get("target", ""))
            if not await self.pipeline.reset_giveup(target, self._who(params, "a person")):
                raise CommandError(f"{target!r} is not in a given-up state")
            return {"target": target, "reset": True}
        raise CommandError(f"agent {self.name!r} has no command {command!r}")

    def _command_request(self, params: Mapping[str, Any]) -> ActionRequest:
        """A person's ``run_action``, as a request (unknown actions and bad params refused)."""
        name = str(params.get("action", ""))
        action = self.registry.get(name)
        if action is None:
            raise CommandError(
                f"unknown action {name!r}; known: {', '.join(self.registry.names())}"
            )
        extra = params.get("params") or {}
        if not isinstance(extra, dict):
            raise CommandError("params must be an object")
        target = params.get("target")
        # An MCP client's proposal (the web's /api/mcp/proposals) comes this way too, and
        # says so; anything else asking is a person. "mcp" only ever makes it wait longer.
        proposer: Proposer = "mcp" if params.get("proposer") == "mcp" else "user"
        reason = clean(str(params.get("reason", "asked by a person")), LOG_LINE, _REASON_MAX)
        origin = self._asked_from()
        if origin is not None:
            reason = f"asked through the fleet from host {origin}: {reason}"[:_REASON_MAX]
        return ActionRequest(
            action=name,
            target=str(target) if target is not None else None,
            target_kind=action.info.target_kind,
            params=dict(extra),
            proposer=proposer,
            proposed_by=self._who(params, proposer),
            reason=reason,
        )

    async def _answer(
        self, command: str, request_id: str, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A person's ``approve`` or ``reject`` of an action awaiting approval."""
        try:
            if command == "reject":
                who = self._who(params, "a person")
                await self.pipeline.reject(request_id, who)
                return {"id": request_id, "outcome": "rejected", "by": who}
            who = self._who(params, "user")
            record = await self.pipeline.approve(request_id, who)
        except PendingNotFound:
            raise CommandError(f"no pending action with id {request_id!r}") from None
        return {
            "id": request_id,
            "outcome": record.outcome.value,
            "by": who,
            "record": record.model_dump(mode="json"),
        }
