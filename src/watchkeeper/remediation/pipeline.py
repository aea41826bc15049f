"""RemediationPipeline: one proposal's whole life, from "should this run?" to "tell a person".

Every proposal (a rule's suggestion, the model's recommendation, a person's command, a
plugin's request) goes the same way, in this one object:

1. **decide** — the parameters are checked against the action's declaration before
   anything is recorded, then ``Policy`` says run, wait for a person, dry run, try later or
   refuse; approvals wait here until a person answers.
2. **record** — every step leaves an ``ActionRecord`` (``remediation.<outcome>``) in the
   audit trail and goes out through ``emit``.
3. **run** — as its own task, at most ``max_concurrent_actions`` at once, within the
   action's timeout; blocking work runs on the pipeline's own bounded thread pool, never
   the event loop's shared one, so a slow action cannot starve sampling or storage.
4. **verify** — the action checks its own effect; a failed check is a failed attempt.
5. **escalate** — a failed service action again, spaced by the crash-loop backoff until
   the guard gives up; then the alert's next (stronger) candidate; and when none is left
   or none may run, a person (``remediation.escalated``), exactly once per failed chain.

It knows no bus: whatever it has to say goes to ``emit(topic, payload)``, so a test drives
it directly and the RemediatorAgent only subscribes, hands messages in and publishes::

    pipeline = RemediationPipeline(builtin_registry(), actx, emit=publish)
    record = await pipeline.submit(ActionRequest("kill_process", "4242", "user"))

**One escalation path.** A failed attempt used to be escalated twice: here (next
candidate, then a person, told at every failure) and through ``remediation.failed`` →
analyzer → ``alert.escalated`` → remediator, which recomputed the candidates and tried
the first, already failed, one again (that second path was, unannounced, what retried a
crash-looping service). Only this object knows which candidates were tried, which are
left, what the crash-loop guard allows and whether the failure is final, so escalation
lives here alone, retries included: the analyzer marks the alert escalated when it hears
``remediation.escalated`` (so people are told once, when remediation has run out), and
the remediator does not act on ``alert.escalated`` at all — an escalation is news for
people, not a new proposal.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from watchkeeper.model.actions import (
    ActionInfo,
    ActionOutcome,
    ActionRecord,
    ActionRequest,
    ParamError,
    Proposer,
)
from watchkeeper.model.alerts import Alert, AlertState, Severity, SuggestedAction
from watchkeeper.model.events import GaveUp
from watchkeeper.model.topics import (
    ALERT_FIRING,
    ALERT_RESOLVED,
    REMEDIATION_ESCALATED,
    REMEDIATION_GAVE_UP,
    REMEDIATION_OUTCOMES,
    Topic,
)
from watchkeeper.remediation.actions import Action, ActionContext, ActionRegistry
from watchkeeper.remediation.approvals import Approvals, PendingNotFound
from watchkeeper.remediation.bookkeeping import (
    SuccessBook,
    attempt,
    describe,
    escalation,
    giveup_alert,
    giveup_cleared_alert,
    new_record,
    order_candidates,
    recommended,
    renewed,
)
from watchkeeper.remediation.policy import Decision, GiveUp, Policy
from watchkeeper.remediation.running import ActionRunner

__all__ = ["Emit", "PendingNotFound", "RemediationPipeline"]

log = logging.getLogger("watchkeeper.agent.remediator")

#: Where the pipeline says what happened: ``await emit(REMEDIATION_ESCALATED, escalation)``.
Emit = Callable[[Topic[Any], Any], Awaitable[object]]

_AUDIT_KEEP = 1000
_STILL_UP = ("running", "starting")


class RemediationPipeline:
    """Decide → record → run → verify → escalate, for every proposal, whoever made it."""

    def __init__(
        self,
        registry: ActionRegistry,
        actx: ActionContext,
        *,
        emit: Emit,
        policy: Policy | None = None,
    ) -> None:
        self.registry = registry
        self.actx = actx
        self.policy = policy or Policy()
        self.book = SuccessBook()
        self._emit = emit
        self._runner = ActionRunner(actx, limit=self._max_concurrent)
        self._approvals = Approvals()
        self._running: dict[str, ActionRequest] = {}
        self._deferred: set[tuple[str, str]] = set()
        self._candidates: dict[str, list[ActionRequest]] = {}
        # What the rules suggest now, per firing alert: what corroborates the model.
        self._rule_offers: dict[str, set[tuple[str, str]]] = {}
        self._audit: deque[ActionRecord] = deque(maxlen=_AUDIT_KEEP)
        # Service restarts that worked, by service: (the request, when it succeeded).
        self._restarted: dict[str, tuple[ActionRequest, float]] = {}

    # -- read-only views (web, CLI, status) --------------------------------------------------
    def actions(self) -> list[ActionInfo]:
        return self.registry.infos()

    def pending(self) -> list[ActionRecord]:
        return self._approvals.records()

    def audit(self, limit: int = 100, target: str | None = None) -> list[ActionRecord]:
        records = [r for r in self._audit if target is None or r.target == target]
        return records[-limit:]

    def running(self) -> int:
        return len(self._running)

    def given_up(self) -> list[GiveUp]:
        return list(self.policy.guard.given_up.values())

    # -- life --------------------------------------------------------------------------------
    def start(self) -> None:
        """Make the actions' own pool; idempotent, and again after ``close``."""
        self._runner.start()

    async def record_configured_paths(self) -> None:
        """Actions that guard configured places (the file actions) check them now, at
        start-up, and record which directories they are, so a later swap is refused."""
        for action in self.registry:
            record = getattr(action, "record_configured_paths", None)
            if record is None:
                continue
            try:
                await record(self.actx)
            except Exception as exc:  # a failed check must not stop remediation
                log.warning("%s: could not check its configured paths: %s", action.info.name, exc)

    async def close(self) -> None:
        """Cancel and await every task the pipeline started, then shut its pool."""
        await self._runner.close()

    async def tick(self) -> None:
        """Periodic upkeep: give-ups whose reset timer ran out are lifted."""
        cfg = self.actx.settings().remediation
        for target in self.policy.guard.expire(self.actx.clock(), cfg):
            log.info("give-up on %s expired; will try again", target)
            await self._giveup_cleared(target, "reset timer")

    # -- proposals in ------------------------------------------------------------------------
    async def on_alert(self, alert: Alert) -> ActionRecord | None:
        """A firing alert's suggestions: the best one now, the rest kept for escalation."""
        if alert.state is not AlertState.FIRING or not alert.suggested_actions:
            self._rule_offers.pop(alert.fingerprint, None)
            return None
        if alert.severity is Severity.INFO:
            return None  # information, not an incident
        self._rule_offers[alert.fingerprint] = {
            (s.action, s.target or "") for s in alert.suggested_actions
        }
        proposer: Proposer = "alertmanager" if alert.source == "alertmanager" else "rule"
        candidates = order_candidates(
            alert, list(alert.suggested_actions), proposer, self.registry, self.book
        )
        self._candidates[alert.fingerprint] = candidates[1:]
        return await self.submit(candidates[0])

    async def on_resolved(self, fingerprint: str) -> None:
        """The alert is gone: its spare candidates and its approvals are no longer needed."""
        self._candidates.pop(fingerprint, None)
        self._rule_offers.pop(fingerprint, None)
        for record in self._approvals.take_for_alert(fingerprint):
            await self._record(
                record, ActionOutcome.REJECTED, "no longer needed: the alert resolved"
            )

    async def on_recommendations(
        self,
        suggestions: list[SuggestedAction],
        *,
        source: str,
        alert_id: str | None,
        fingerprint: str | None,
    ) -> None:
        """The model's recommendations, each one confident enough submitted on its own.

        Whether one runs without a person is the gate's call (``remediation.llm_autonomy``):
        by default only when the rules suggest the same action on the same target now
        (:meth:`rules_suggest`) or the action is safe; otherwise it waits for approval,
        and its record says why."""
        minimum = self.actx.settings().remediation.min_confidence
        for suggestion in suggestions:
            if suggestion.confidence < minimum:
                continue
            await self.submit(recommended(suggestion, source, alert_id, fingerprint))

    async def on_service_exit(self, name: str, *, failed_start: bool, uptime: float) -> None:
        """A service died: one more failure for its crash-loop guard when it died soon after
        starting, and, when this pipeline restarted it lately, the same restart again.

        A crash loop is one alert (the analyzer's ``service_flapping``), and the analyzer
        proposes its restart once; each later death of a service restarted within the
        crash-loop window (or the analyzer's flap window, the longer) is this pipeline's to
        answer, through the gate like any proposal: the crash-loop backoff spaces the
        attempts and the give-up ends them."""
        attempting = any(
            r.target == name and r.action in Policy.SERVICE_ACTIONS for r in self._running.values()
        )
        if attempting:
            return  # during our own attempt its verification counts the failure, once
        if failed_start:
            await self._service_failure(name, f"died {uptime:.2f}s after starting")
        last = self._restarted.get(name)
        if last is None:
            return
        request, succeeded_at = last
        settings = self.actx.settings()
        now = self.actx.clock()
        horizon = max(settings.remediation.crash_loop_window, settings.analyzer.flap_window)
        if now - succeeded_at > horizon:
            del self._restarted[name]
            return
        if name in self.policy.guard.given_up:
            return
        again = dataclasses.replace(
            renewed(request, now), reason=f"{name} died again {uptime:.1f}s after its restart"
        )
        await self.submit(again)

    # -- decide --------------------------------------------------------------------------------
    async def submit(self, request: ActionRequest) -> ActionRecord:
        """Put ``request`` through the policy; returns its record as it stands now."""
        action = self.registry.get(request.action)
        self.start()
        try:
            request = self.policy.admit(request, action)
        except ParamError as exc:
            # Refused and recorded without the parameters: they never become stored state.
            bare = dataclasses.replace(request, params={})
            return await self._refuse(bare, str(exc))
        decision = await self.policy.decide(
            request, action, self.actx, self.actx.clock(), rules_agree=self.rules_suggest(request)
        )
        if decision.verdict == "run":
            assert action is not None
            return self._run(request, action, decision)
        if decision.verdict == "approve":
            return await self._await_approval(request, decision)
        if decision.verdict == "defer":
            return self._defer(request, decision)
        if decision.verdict == "dry_run":
            record = self._new(request, ActionOutcome.DRY_RUN, f"would {describe(request)}")
            await self._record(record, ActionOutcome.DRY_RUN, record.detail)
            return record
        return await self._refuse(request, decision.reason)

    def rules_suggest(self, request: ActionRequest) -> bool:
        """True when a firing alert's rules suggest this action on this target now."""
        key = Policy.key(request)
        return any(key in offers for offers in self._rule_offers.values())

    async def approve(self, request_id: str, by: str) -> ActionRecord:
        """A person said yes: the request goes through the gate again, as theirs."""
        request, _ = self._approvals.take(request_id)
        approved = dataclasses.replace(
            request, proposer="user", proposed_by=by, reason=f"approved by {by}: {request.reason}"
        )
        return await self.submit(approved)

    async def reject(self, request_id: str, by: str) -> None:
        """A person said no: the request is recorded as rejected and forgotten."""
        _, record = self._approvals.take(request_id)
        await self._record(record, ActionOutcome.REJECTED, f"rejected by {by}")

    async def reset_giveup(self, target: str, by: str) -> bool:
        """Lift a give-up (False when ``target`` is not given up); tells who did it."""
        if not self.policy.guard.reset(target):
            return False
        self.policy.forget_privileges()
        await self._giveup_cleared(target, by)
        return True

    async def _refuse(self, request: ActionRequest, why: str) -> ActionRecord:
        record = self._new(request, ActionOutcome.REFUSED, why)
        await self._record(record, ActionOutcome.REFUSED, why)
        return record

    async def _await_approval(self, request: ActionRequest, decision: Decision) -> ActionRecord:
        if len(self._approvals) >= self.actx.settings().remediation.pending_max:
            return await self._refuse(request, "too many actions awaiting approval")
        if self._approvals.holds_same(request):
            return self._new(request, ActionOutcome.PENDING, "already awaiting approval")
        record = self._new(request, ActionOutcome.PENDING, decision.reason)
        self._approvals.park(request, record)
        await self._record(record, ActionOutcome.PENDING, decision.reason)
        return record

    def _defer(self, request: ActionRequest, decision: Decision) -> ActionRecord:
        key = Policy.key(request)
        if key not in self._deferred:
            self._deferred.add(key)
            self._runner.spawn(self._retry_later(request, decision.retry_after))
        return self._new(request, ActionOutcome.PENDING, decision.reason)

    async def _retry_later(self, request: ActionRequest, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        finally:
            self._deferred.discard(Policy.key(request))
        if not await self._still_down(request):
            return
        await self.submit(renewed(request, self.actx.clock()))

    async def _still_down(self, request: ActionRequest) -> bool:
        """A deferred service action is still wanted only while the service is down."""
        if request.action not in Policy.SERVICE_ACTIONS or not request.target:
            return True
        manager = self.actx.manager_for(request.target)
        if manager is None:
            return True
        with contextlib.suppress(Exception):
            status = await manager.status(request.target)
            return str(status.state) not in _STILL_UP
        return True

    # -- run and verify ----------------------------------------------------------------------
    def _run(self, request: ActionRequest, action: Action, decision: Decision) -> ActionRecord:
        key = Policy.key(request)
        if any(Policy.key(r) == key for r in self._running.values()):
            return self._new(request, ActionOutcome.REFUSED, "the same action is already running")
        self.policy.started(request, self.actx.clock())
        self._running[request.id] = request
        record = self._new(request, ActionOutcome.RUNNING, decision.reason)
        self._runner.spawn(self._execute(request, action, record))
        return record

    async def _execute(self, request: ActionRequest, action: Action, record: ActionRecord) -> None:
        try:
            async with self._runner.slot():
                record = record.model_copy(update={"started_at": self.actx.clock()})
                await self._record(record, ActionOutcome.RUNNING, describe(request))
                t0 = time.perf_counter()
                outcome, detail, verified = await attempt(
                    action, request, self.actx, lambda why: self._lacks(request, why)
                )
                finished = {
                    "finished_at": self.actx.clock(),
                    "duration_s": round(time.perf_counter() - t0, 4),
                    "verified": verified,
                }
                await self._record(record.model_copy(update=finished), outcome, detail)
        finally:
            self._running.pop(request.id, None)
        self.book.count(request, outcome is ActionOutcome.SUCCEEDED)
        await self._after(request, outcome, detail)

    def _lacks(self, request: ActionRequest, why: str) -> None:
        self.policy.lacks_privilege(request, self.actx.clock(), why)

    # -- escalate ------------------------------------------------------------------------------
    async def _after(self, request: ActionRequest, outcome: ActionOutcome, detail: str) -> None:
        is_service = request.action in Policy.SERVICE_ACTIONS and bool(request.target)
        if outcome is ActionOutcome.SUCCEEDED:
            if is_service:
                self.policy.guard.success(request.target or "", self.actx.clock())
                self._restarted[request.target or ""] = (request, self.actx.clock())
            return
        log.debug("%s on %s failed: %s", request.action, request.target, detail)
        retry = is_service and "needs privileges" not in detail
        if retry:
            await self._service_failure(request.target or "", detail)
        await self._escalate(request, detail, retry=retry)

    async def _escalate(self, failed: ActionRequest, detail: str, *, retry: bool) -> None:
        """What follows a failed attempt, in order, until something may go on:

        1. a service action for a still-open alert, again: the crash-loop guard spaces the
           attempts (a growing backoff) and at last gives up, which refuses it;
        2. the alert's next candidate that the gate lets through;
        3. a person (``remediation.escalated``), once for the whole chain.

        A request the gate refuses is passed over; one that runs, waits for approval,
        waits out a backoff or is a dry run carries the chain on from there."""
        fingerprint = failed.fingerprint or ""
        if retry and fingerprint in self._candidates:
            again = await self.submit(renewed(failed, self.actx.clock()))
            if again.outcome is not ActionOutcome.REFUSED:
                return
        remaining = self._candidates.get(fingerprint, [])
        while remaining:
            record = await self.submit(remaining.pop(0))
            if record.outcome is not ActionOutcome.REFUSED:
                return
        self._candidates.pop(fingerprint, None)
        await self._emit(REMEDIATION_ESCALATED, escalation(failed, detail))

    async def _service_failure(self, name: str, why: str) -> None:
        cfg = self.actx.settings().remediation
        giveup = self.policy.guard.failure(name, self.actx.clock(), cfg, why)
        if giveup is not None:
            await self._gave_up(giveup)

    async def _gave_up(self, giveup: GiveUp) -> None:
        alert = giveup_alert(giveup, self.actx.clock())
        log.error("%s", alert.summary)
        gave_up = GaveUp(target=giveup.target, failures=giveup.failures, reason=giveup.reason)
        await self._emit(REMEDIATION_GAVE_UP, gave_up)
        await self._emit(ALERT_FIRING, alert)

    async def _giveup_cleared(self, target: str, by: str) -> None:
        await self._emit(ALERT_RESOLVED, giveup_cleared_alert(target, by, self.actx.clock()))

    # -- record --------------------------------------------------------------------------------
    def _new(self, request: ActionRequest, outcome: ActionOutcome, detail: str) -> ActionRecord:
        return new_record(self.registry, request, outcome, detail)

    async def _record(self, record: ActionRecord, outcome: ActionOutcome, detail: str) -> None:
        final = record.model_copy(update={"outcome": outcome, "detail": detail})
        if outcome is not ActionOutcome.RUNNING:
            self._audit.append(final)
        quiet = outcome in (ActionOutcome.SUCCEEDED, ActionOutcome.RUNNING)
        log.log(
            logging.INFO if quiet else logging.WARNING,
            "%s %s on %s (%s, %s): %s",
            outcome.value,
            final.action,
            final.target or "host",
            final.proposer,
            final.proposed_by or "-",
            detail,
        )
        await self._emit(REMEDIATION_OUTCOMES[outcome.value], final)

    def _max_concurrent(self) -> int:
        return self.actx.settings().remediation.max_concurrent_actions
