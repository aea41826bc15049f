"""Remediation's bookkeeping: success records, audit records, one attempt, give-up alerts,
the requests made from proposals and the escalation a person gets.

Kept apart from ``RemediationPipeline`` so the pipeline holds only the flow (decide,
record, run, verify, escalate) and these pieces can be tested and reused on their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

from watchkeeper.model.actions import (
    ActionOutcome,
    ActionRecord,
    ActionRequest,
    ActionResult,
    Proposer,
)
from watchkeeper.model.alerts import (
    Alert,
    AlertState,
    Severity,
    SuggestedAction,
    fingerprint_of,
)
from watchkeeper.model.events import Escalation
from watchkeeper.remediation.actions import Action, ActionContext, ActionRegistry, NeedsPrivilege
from watchkeeper.remediation.policy import GiveUp

__all__ = [
    "RISK_RANK",
    "SuccessBook",
    "attempt",
    "describe",
    "escalation",
    "giveup_alert",
    "giveup_cleared_alert",
    "new_record",
    "order_candidates",
    "recommended",
    "renewed",
]

_UNKNOWN_RATE = 0.5  # an action never tried here counts as even odds
RISK_RANK = {"safe": 0, "moderate": 1, "dangerous": 2}


class SuccessBook:
    """Attempts, successes and failures per action and per target."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, dict[str, int]]] = {"by_action": {}, "by_target": {}}

    def count(self, request: ActionRequest, ok: bool) -> None:
        keys = (
            ("by_action", request.action),
            ("by_target", f"{request.target_kind}:{request.target}"),
        )
        for table, key in keys:
            row = self._tables[table].setdefault(key, {"attempts": 0, "succeeded": 0, "failed": 0})
            row["attempts"] += 1
            row["succeeded" if ok else "failed"] += 1

    def rate_of(self, action: str) -> float:
        row = self._tables["by_action"].get(action)
        return row["succeeded"] / row["attempts"] if row and row["attempts"] else _UNKNOWN_RATE

    def attempts(self) -> int:
        return sum(row["attempts"] for row in self._tables["by_action"].values())

    def rates(self) -> dict[str, Any]:
        def with_rate(table: dict[str, dict[str, int]]) -> dict[str, Any]:
            return {
                key: {
                    **row,
                    "rate": round(row["succeeded"] / row["attempts"], 3)
                    if row["attempts"]
                    else None,
                }
                for key, row in table.items()
            }

        return {name: with_rate(table) for name, table in self._tables.items()}


def describe(request: ActionRequest) -> str:
    """``restart service web``: what an action would do, in words."""
    return f"{request.action.replace('_', ' ')} {request.target or ''}".strip()


def new_record(
    registry: ActionRegistry, request: ActionRequest, outcome: ActionOutcome, detail: str
) -> ActionRecord:
    action = registry.get(request.action)
    return ActionRecord(
        id=request.id,
        action=request.action,
        target=request.target,
        target_kind=request.target_kind,
        params=request.params,
        proposer=request.proposer,
        proposed_by=request.proposed_by,
        reason=request.reason,
        alert_id=request.alert_id,
        fingerprint=request.fingerprint,
        outcome=outcome,
        detail=detail,
        created_at=request.created_at,
        risk=action.info.risk if action else "unknown",
    )


async def attempt(
    action: Action,
    request: ActionRequest,
    actx: ActionContext,
    on_privilege: Callable[[str], None],
) -> tuple[ActionOutcome, str, bool | None]:
    """Execute with the action's timeout, then verify: (outcome, detail, verified)."""
    timeout = action.info.timeout
    try:
        result: ActionResult = await asyncio.wait_for(action.execute(request, actx), timeout)
    except TimeoutError:
        return ActionOutcome.TIMED_OUT, f"no result within {timeout:g}s", None
    except NeedsPrivilege as exc:
        on_privilege(str(exc))
        return ActionOutcome.FAILED, f"needs privileges the daemon lacks: {exc}", None
    except Exception as exc:
        return ActionOutcome.FAILED, f"{type(exc).__name__}: {exc}", None
    if not result.ok:
        return ActionOutcome.FAILED, result.detail, None
    try:
        verified = await action.verify(request, actx, result)
    except Exception as exc:
        return ActionOutcome.FAILED, f"{result.detail}; verification failed: {exc}", False
    if verified is False:
        return (
            ActionOutcome.FAILED,
            f"{result.detail}; the problem is still there afterwards",
            False,
        )
    return ActionOutcome.SUCCEEDED, result.detail, verified


def giveup_alert(giveup: GiveUp, now: float) -> Alert:
    """The critical alert raised when the remediator stops trying a target."""
    fingerprint = fingerprint_of("remediation_gave_up", giveup.target)
    return Alert(
        id=f"giveup-{fingerprint[:8]}",
        fingerprint=fingerprint,
        rule="remediation_gave_up",
        severity=Severity.CRITICAL,
        subject=f"service:{giveup.target}",
        summary=(
            f"gave up restarting {giveup.target} after {giveup.failures} failures: {giveup.reason}"
        ),
        evidence={"failures": giveup.failures, "reason": giveup.reason},
        started_at=now,
        updated_at=now,
        source="remediator",
    )


def giveup_cleared_alert(target: str, by: str, now: float) -> Alert:
    fingerprint = fingerprint_of("remediation_gave_up", target)
    return Alert(
        id=f"giveup-{fingerprint[:8]}",
        fingerprint=fingerprint,
        rule="remediation_gave_up",
        severity=Severity.CRITICAL,
        subject=f"service:{target}",
        summary=f"give-up on {target} reset by {by}",
        state=AlertState.RESOLVED,
        started_at=now,
        updated_at=now,
        resolved_at=now,
        source="remediator",
    )


def order_candidates(
    alert: Alert,
    suggestions: list[SuggestedAction],
    proposer: Proposer,
    registry: ActionRegistry,
    book: SuccessBook,
) -> list[ActionRequest]:
    """An alert's proposals as requests, best first: the better success record here, then
    the safer action, then the more confident proposal."""

    def risk(s: SuggestedAction) -> int:
        action = registry.get(s.action)
        return RISK_RANK.get(action.info.risk, 3) if action else 9

    ordered = sorted(suggestions, key=lambda s: (-book.rate_of(s.action), risk(s), -s.confidence))
    return [
        ActionRequest(
            action=s.action,
            target=s.target,
            target_kind=s.target_kind,
            params=dict(s.params),
            proposer=proposer,
            proposed_by=s.source if proposer == "llm" else alert.rule,
            reason=s.reason or alert.summary,
            alert_id=alert.id,
            fingerprint=alert.fingerprint,
            confidence=s.confidence,
        )
        for s in ordered
    ]


def renewed(request: ActionRequest, now: float) -> ActionRequest:
    """The same request again, as a new attempt with its own id."""
    return dataclasses.replace(request, id=uuid.uuid4().hex[:12], created_at=now)


def recommended(
    suggestion: SuggestedAction, source: str, alert_id: str | None, fingerprint: str | None
) -> ActionRequest:
    """The model's recommendation as a request, proposed by ``source`` (the model's name)."""
    return ActionRequest(
        action=suggestion.action,
        target=suggestion.target,
        target_kind=suggestion.target_kind,
        params=dict(suggestion.params),
        proposer="llm",
        proposed_by=source,
        reason=suggestion.reason,
        alert_id=alert_id,
        fingerprint=fingerprint,
        confidence=suggestion.confidence,
    )


def escalation(failed: ActionRequest, detail: str) -> Escalation:
    """What a person is told when remediation has run out of things to try."""
    return Escalation(
        action=failed.action,
        target=failed.target,
        detail=detail,
        alert_id=failed.alert_id,
        fingerprint=failed.fingerprint,
    )
