"""Shared pieces for the storage tests: a settable clock and model factories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import Alert, AlertState, Severity, fingerprint_of

#: A fixed start (aligned to a minute) so bucket boundaries are predictable.
T0 = 1_700_000_040.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_alert(
    rule: str = "cpu_high",
    subject: str = "host",
    *,
    severity: Severity = Severity.WARNING,
    started_at: float = T0,
    resolved_at: float | None = None,
    alert_id: str | None = None,
) -> Alert:
    state = AlertState.RESOLVED if resolved_at is not None else AlertState.FIRING
    return Alert(
        id=alert_id or f"{rule}-{subject}-{int(started_at)}",
        fingerprint=fingerprint_of(rule, subject),
        rule=rule,
        severity=severity,
        subject=subject,
        summary=f"{rule} on {subject}",
        evidence={"cpu.percent": 97.5},
        state=state,
        started_at=started_at,
        updated_at=resolved_at or started_at,
        resolved_at=resolved_at,
    )


def make_record(
    record_id: str,
    *,
    action: str = "restart_service",
    target: str | None = "web",
    outcome: ActionOutcome = ActionOutcome.SUCCEEDED,
    created_at: float = T0,
    **extra: Any,
) -> ActionRecord:
    return ActionRecord(
        id=record_id,
        action=action,
        target=target,
        target_kind="service",
        proposer="rule",
        proposed_by="service_down",
        outcome=outcome,
        created_at=created_at,
        finished_at=created_at + 1,
        **extra,
    )


AlertFactory = Callable[..., Alert]
