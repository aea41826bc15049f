"""RemediatorAgent: the fixer.

It turns proposals into actions: the rules' suggestions on ``alert.firing`` /
``alert.escalated``, the model's recommendations on ``analysis.result``, a person's
``run_action`` command, a plugin's request. Every proposal passes the same ``Policy``;
every attempt leaves an ``ActionRecord`` on the bus (``remediation.<outcome>``) and in the
audit trail. Actions run as their own tasks with their own timeouts, limited to
``max_concurrent_actions`` at once, so a slow restart never delays detection. Their
blocking work runs on the remediator's own bounded thread pool, never the event loop's
shared one, so actions cannot starve sampling or storage however long they take.

A request's parameters are checked against the action's declaration before anything
about it is recorded: a bad one is refused with the reason, and the record of the
refusal does not carry the parameters that were refused.

When an alert offers several candidates for a target, the one with the better success
record here goes first; when it fails, the next (stronger) candidate is tried, and when
none is left a person is told (``remediation.escalated``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from watchkeeper.agents.base import AgentContext, BaseAgent, CommandError
from watchkeeper.analysis.alerts import Alert, AlertState, Severity, SuggestedAction
from watchkeeper.bus import Message
from watchkeeper.remediation.actions import (
    Action,
    ActionContext,
    ActionRegistry,
    ActionRequest,
)
from watchkeeper.remediation.bookkeeping import (
    SuccessBook,
    attempt,
    describe,
    giveup_alert,
    giveup_cleared_alert,
    new_record,
    order_candidates,
    renewed,
)
from watchkeeper.remediation.builtin import builtin_registry
from watchkeeper.remediation.catalog import ActionInfo, ParamError
from watchkeeper.remediation.policy import GiveUp, Policy
from watchkeeper.remediation.records import ActionOutcome, ActionRecord, Proposer

__all__ = ["RemediatorAgent"]

log = logging.getLogger("watchkeeper.agent.remediator")

_AUDIT_KEEP = 1000
_POOL_THREADS = 4  # blocking work of actions and their checks; they wait in turn beyond
_REASON_MAX = 500
_BY_MAX = 128


class RemediatorAgent(BaseAgent):
    kind = "remediator"
    extra_commands = ("list_actions", "run_action", "approve", "reject", "reset_giveup")

    def __init__(
        self,
        name: str,
        ctx: AgentContext,
        *,
        registry: ActionRegistry | None = None,
        interval: float | None = None,
    ) -> None:
        super().__init__(name, ctx, interval=interval)
        self.registry = registry or builtin_registry()
        self.policy = Policy()
        self.actx = ActionContext(
            settings=ctx.settings, services=ctx.services, clock=ctx.clock, monotonic=ctx.monotonic
        )
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[str, tuple[ActionRequest, ActionRecord]] = {}
        self._audit: deque[ActionRecord] = deque(maxlen=_AUDIT_KEEP)
        self.book = SuccessBook()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running: dict[str, ActionRequest] = {}
        self._slots: asyncio.Semaphore | None = None
        self._slots_size = 0
        self._deferred: set[tuple[str, str]] = set()
        self._alert_candidates: dict[str, list[ActionRequest]] = {}
        self.on("alert.firing", self._on_alert, maxsize=500)
        self.on("alert.escalated", self._on_alert, maxsize=500)
        self.on("alert.resolved", self._on_resolved, maxsize=500)
        self.on("analysis.result", self._on_analysis, maxsize=100)
        self.on("service.exited", self._on_service_exit, maxsize=500)

    # -- public read-only views (web, CLI, status) -------------------------------------------
    def actions(self) -> list[ActionInfo]:
        return self.registry.infos()

    def pending(self) -> list[ActionRecord]:
        return [record for _, record in self._pending.values()]

    def audit(self, limit: int = 100, target: str | None = None) -> list[ActionRecord]:
        records = [r for r in self._audit if target is None or r.target == target]
        return records[-limit:]

    def success_rates(self) -> dict[str, Any]:
        return self.book.rates()

    def given_up(self) -> list[dict[str, Any]]:
        return [
            {"target": g.target, "since": g.since, "failures": g.failures, "reason": g.reason}
            for g in self.policy.guard.given_up.values()
        ]

    def status(self) -> dict[str, Any]:
        return {
            "mode": self.settings.remediation.mode,
            "running": len(self._running),
            "pending": len(self._pending),
            "given_up": [g["target"] for g in self.given_up()],
            "attempts": self.book.attempts(),
            "recent": [
                {
                    "action": r.action,
                    "target": r.target,
                    "outcome": r.outcome.value,
                    "proposer": r.proposer,
                    "detail": r.detail[:160],
                    "duration_s": r.duration_s,
                }
                for r in list(self._audit)[-10:]
            ],
        }

    def register_action(self, action: Action) -> None:
        """Add an action (plugins); it is gated and audited like the built-in ones."""
        self.registry.register(action)

    # -- plugins in the product brief's style (watchkeeper.plugins.adapter) ------------------
    # Hidden from mypy so it keeps flagging misspelt attributes on this class.
    if not TYPE_CHECKING:

        def __setattr__(self, name, value):
            # The brief's plugins add an action by assigning a method onto the remediator
            # (``remediator.clear_event_logs = self.clear_event_logs``). A new public name
            # given a function becomes a registered action, so the policy gates it and the
            # audit records it; a name already registered is an error, as everywhere. Every
            # other assignment is a plain one.
            if (
                not name.startswith("_")
                and (inspect.isfunction(value) or inspect.ismethod(value))
                and "registry" in self.__dict__
                and not hasattr(type(self), name)
                and (name not in self.__dict__ or name in self.registry)
            ):
                from watchkeeper.plugins.adapter import action_from_callable

                self.register_action(action_from_callable(name, value))
            super().__setattr__(name, value)

    # -- life ------------------------------------------------------------------------------
    def _ensure_pool(self) -> None:
        """The actions' own pool, (re)made on first use after a start or a restart."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_POOL_THREADS, thread_name_prefix="watchkeeper-action")
            self.actx.executor = self._pool

    async def setup(self) -> None:
        self._ensure_pool()
        await self._record_configured_paths()

    async def _record_configured_paths(self) -> None:
        """Actions that guard configured places (the file actions) check them now, at
        start-up, and record which directories they are, so a later swap is refused."""
        for action in self.registry:
            record = getattr(action, "record_configured_paths", None)
            if record is None:
                continue
            try:
                await record(self.actx)
            except Exception as exc:  # a failed check must not stop the remediator
                log.warning("%s: could not check its configured paths: %s", action.info.name, exc)

    async def teardown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        pool, self._pool = self._pool, None
        self.actx.executor = None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def _perform_check(self) -> None:
        now = self.ctx.clock()
        for target in self.policy.guard.expire(now, self.settings.remediation):
            log.info("give-up on %s expired; will try again", target)
            await self._publish_giveup_cleared(target, "reset timer")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _semaphore(self) -> asyncio.Semaphore:
        size = self.settings.remediation.max_concurrent_actions
        if self._slots is None or size != self._slots_size:
            self._slots = asyncio.Semaphore(size)
            self._slots_size = size
        return self._slots

    # -- proposals in ----------------------------------------------------------------------
    def _candidates(
        self, alert: Alert, suggestions: list[SuggestedAction], proposer: Proposer
    ) -> list[ActionRequest]:
        return order_candidates(alert, suggestions, proposer, self.registry, self.book)

    async def _on_alert(self, message: Message) -> None:
        alert = message.parse(Alert)
        if alert.state is not AlertState.FIRING or not alert.suggested_actions:
            return
        if alert.severity is Severity.INFO:
            return  # information, not an incident
        candidates = self._candidates(alert, list(alert.suggested_actions), "rule")
        self._alert_candidates[alert.fingerprint] = candidates[1:]
        await self.submit(candidates[0])

    async def _on_resolved(self, message: Message) -> None:
        fingerprint = message.payload.get("fingerprint")
        self._alert_candidates.pop(str(fingerprint), None)
        for request_id, (request, record) in list(self._pending.items()):
            if request.fingerprint == fingerprint:
                del self._pending[request_id]
                await self._record(
                    record, ActionOutcome.REJECTED, "no longer needed: the alert resolved"
                )

    async def _on_analysis(self, message: Message) -> None:
        payload = message.payload
        source = str(payload.get("source", "rules"))
        if source == "rules" or payload.get("cached"):
            return  # the rules' proposals arrive with their alerts
        minimum = self.settings.remediation.min_confidence
        for raw in payload.get("recommended", []):
            suggestion = SuggestedAction.model_validate(raw)
            if suggestion.confidence < minimum:
                continue
            await self.submit(
                ActionRequest(
                    action=suggestion.action,
                    target=suggestion.target,
                    target_kind=suggestion.target_kind,
                    params=dict(suggestion.params),
                    proposer="llm",
                    proposed_by=source,
                    reason=suggestion.reason,
                    alert_id=(payload.get("alert_ids") or [None])[0],
                    fingerprint=(payload.get("fingerprints") or [None])[0],
                    confidence=suggestion.confidence,
                )
            )

    async def _on_service_exit(self, message: Message) -> None:
        payload = message.payload
        name = str(payload.get("name", ""))
        attempting = any(
            r.target == name and r.action in Policy.SERVICE_ACTIONS for r in self._running.values()
        )
        # During our own attempt its verification counts the failure; count it once.
        if payload.get("failed_start") and not attempting:
            await self._service_failure(
                name, f"died {payload.get('uptime') or 0:.2f}s after starting"
            )

    async def _service_failure(self, name: str, why: str) -> None:
        giveup = self.policy.guard.failure(name, self.ctx.clock(), self.settings.remediation, why)
        if giveup is not None:
            await self._publish_giveup(giveup)

    # -- the gate --------------------------------------------------------------------------
    def _new_record(
        self, request: ActionRequest, outcome: ActionOutcome, detail: str
    ) -> ActionRecord:
        return new_record(self.registry, request, outcome, detail)

    async def submit(self, request: ActionRequest) -> ActionRecord:
        """Put ``request`` through the policy; returns its record as it stands now."""
        action = self.registry.get(request.action)
        self._ensure_pool()
        try:
            request = self.policy.admit(request, action)
        except ParamError as exc:
            # Refused and recorded without the parameters: they never become stored state.
            bare = dataclasses.replace(request, params={})
            record = self._new_record(bare, ActionOutcome.REFUSED, str(exc))
            await self._record(record, ActionOutcome.REFUSED, str(exc))
            return record
        decision = await self.policy.decide(request, action, self.actx, self.ctx.clock())
        if decision.verdict == "refuse":
            record = self._new_record(request, ActionOutcome.REFUSED, decision.reason)
            await self._record(record, ActionOutcome.REFUSED, decision.reason)
            return record
        if decision.verdict == "defer":
            key = Policy.key(request)
            if key not in self._deferred:
                self._deferred.add(key)
                self._spawn(self._retry_later(request, decision.retry_after))
            return self._new_record(request, ActionOutcome.PENDING, decision.reason)
        if decision.verdict == "dry_run":
            record = self._new_record(request, ActionOutcome.DRY_RUN, f"would {describe(request)}")
            await self._record(record, ActionOutcome.DRY_RUN, record.detail)
            return record
        if decision.verdict == "approve":
            if len(self._pending) >= self.settings.remediation.pending_max:
                record = self._new_record(
                    request, ActionOutcome.REFUSED, "too many actions awaiting approval"
                )
                await self._record(record, ActionOutcome.REFUSED, record.detail)
                return record
            if any(Policy.key(r) == Policy.key(request) for r, _ in self._pending.values()):
                return self._new_record(request, ActionOutcome.PENDING, "already awaiting approval")
            record = self._new_record(request, ActionOutcome.PENDING, decision.reason)
            self._pending[request.id] = (request, record)
            await self._record(record, ActionOutcome.PENDING, decision.reason)
            return record
        assert action is not None
        if any(Policy.key(r) == Policy.key(request) for r in self._running.values()):
            return self._new_record(
                request, ActionOutcome.REFUSED, "the same action is already running"
            )
        self.policy.started(request, self.ctx.clock())
        self._running[request.id] = request
        record = self._new_record(request, ActionOutcome.RUNNING, decision.reason)
        self._spawn(self._execute(request, action, record))
        return record

    async def _retry_later(self, request: ActionRequest, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        finally:
            self._deferred.discard(Policy.key(request))
        # Still wanted only while the service is still down.
        if request.action in Policy.SERVICE_ACTIONS and request.target:
            manager = self.actx.manager_for(request.target)
            if manager is not None:
                with contextlib.suppress(Exception):
                    status = await manager.status(request.target)
                    if str(status.state) in ("running", "starting"):
                        return
        await self.submit(renewed(request, self.ctx.clock()))

    # -- running -------------------------------------------------------------------------
    async def _execute(self, request: ActionRequest, action: Action, record: ActionRecord) -> None:
        try:
            async with self._semaphore():
                started = self.ctx.clock()
                t0 = time.perf_counter()
                record = record.model_copy(update={"started_at": started})
                await self._record(record, ActionOutcome.RUNNING, f"{describe(request)}")
                outcome, detail, verified = await self._attempt(request, action)
                duration = round(time.perf_counter() - t0, 4)
                record = record.model_copy(
                    update={
                        "finished_at": self.ctx.clock(),
                        "duration_s": duration,
                        "verified": verified,
                    }
                )
                await self._record(record, outcome, detail)
        finally:
            self._running.pop(request.id, None)
        self.book.count(request, outcome is ActionOutcome.SUCCEEDED)
        await self._after(request, outcome, detail)

    async def _attempt(
        self, request: ActionRequest, action: Action
    ) -> tuple[ActionOutcome, str, bool | None]:
        def lacks(why: str) -> None:
            self.policy.lacks_privilege(request, self.ctx.clock(), why)

        outcome, detail, verified = await attempt(action, request, self.actx, lacks)
        if outcome is ActionOutcome.FAILED:
            log.debug("%s on %s failed: %s", request.action, request.target, detail)
        return outcome, detail, verified

    async def _after(self, request: ActionRequest, outcome: ActionOutcome, detail: str) -> None:
        now = self.ctx.clock()
        is_service = request.action in Policy.SERVICE_ACTIONS and request.target
        if outcome is ActionOutcome.SUCCEEDED:
            if is_service:
                self.policy.guard.success(request.target or "", now)
            return
        if is_service and "needs privileges" not in detail:
            await self._service_failure(request.target or "", detail)
        # Escalate: the next candidate for the same alert, else a person.
        remaining = self._alert_candidates.get(request.fingerprint or "", [])
        if remaining:
            following = remaining.pop(0)
            await self.submit(following)
            return
        await self.publish(
            "remediation.escalated",
            {
                "action": request.action,
                "target": request.target,
                "detail": detail,
                "alert_id": request.alert_id,
                "fingerprint": request.fingerprint,
            },
        )

    async def _record(self, record: ActionRecord, outcome: ActionOutcome, detail: str) -> None:
        final = record.model_copy(update={"outcome": outcome, "detail": detail})
        if outcome is not ActionOutcome.RUNNING:
            self._audit.append(final)
        level = (
            logging.INFO
            if outcome in (ActionOutcome.SUCCEEDED, ActionOutcome.RUNNING)
            else logging.WARNING
        )
        log.log(
            level,
            "%s %s on %s (%s, %s): %s",
            outcome.value,
            final.action,
            final.target or "host",
            final.proposer,
            final.proposed_by or "-",
            detail,
        )
        topic = (
            "remediation.started"
            if outcome is ActionOutcome.RUNNING
            else f"remediation.{outcome.value}"
        )
        await self.publish(topic, final)

    async def _publish_giveup(self, giveup: GiveUp) -> None:
        alert = giveup_alert(giveup, self.ctx.clock())
        log.error("%s", alert.summary)
        await self.publish(
            "remediation.gave_up",
            {"target": giveup.target, "failures": giveup.failures, "reason": giveup.reason},
        )
        await self.publish("alert.firing", alert)

    async def _publish_giveup_cleared(self, target: str, by: str) -> None:
        await self.publish("alert.resolved", giveup_cleared_alert(target, by, self.ctx.clock()))

    # -- commands ----------------------------------------------------------------------------
    async def handle_command(self, command: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if command == "list_actions":
            return {"actions": [info.model_dump(mode="json") for info in self.actions()]}
        if command == "run_action":
            name = str(params.get("action", ""))
            if name not in self.registry:
                raise CommandError(
                    f"unknown action {name!r}; known: {', '.join(self.registry.names())}"
                )
            action = self.registry.get(name)
            assert action is not None
            extra = params.get("params") or {}
            if not isinstance(extra, dict):
                raise CommandError("params must be an object")
            target = params.get("target")
            request = ActionRequest(
                action=name,
                target=str(target) if target is not None else None,
                target_kind=action.info.target_kind,
                params=dict(extra),
                proposer="user",
                proposed_by=str(params.get("by", "user"))[:_BY_MAX],
                reason=str(params.get("reason", "asked by a person"))[:_REASON_MAX],
            )
            record = await self.submit(request)
            return {"record": record.model_dump(mode="json")}
        if command in ("approve", "reject"):
            request_id = str(params.get("id", ""))
            entry = self._pending.pop(request_id, None)
            if entry is None:
                raise CommandError(f"no pending action with id {request_id!r}")
            request, record = entry
            if command == "reject":
                await self._record(
                    record, ActionOutcome.REJECTED, f"rejected by {params.get('by', 'a person')}"
                )
                return {"id": request_id, "outcome": "rejected"}
            approved = dataclasses.replace(
                request,
                proposer="user",
                proposed_by=str(params.get("by", "user")),
                reason=f"approved: {request.reason}",
            )
            new = await self.submit(approved)
            return {
                "id": request_id,
                "outcome": new.outcome.value,
                "record": new.model_dump(mode="json"),
            }
        if command == "reset_giveup":
            target = str(params.get("target", ""))
            if not self.policy.guard.reset(target):
                raise CommandError(f"{target!r} is not in a given-up state")
            self.policy.forget_privileges()
            await self._publish_giveup_cleared(target, "a person")
            return {"target": target, "reset": True}
        raise CommandError(f"agent {self.name!r} has no command {command!r}")
