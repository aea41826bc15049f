"""The audit trail's unit: one record per attempted action, whoever proposed it.

Records go out on the bus as ``remediation.<outcome>`` (``remediation.pending``,
``remediation.started``, ``remediation.succeeded``, ``remediation.failed``,
``remediation.refused``, ``remediation.dry_run``, ``remediation.gave_up``...) and are kept
in storage, so "what did it do, why, and did it work" always has an answer.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ActionOutcome", "ActionRecord", "Proposer"]

Proposer = Literal["rule", "llm", "user", "plugin"]


class ActionOutcome(StrEnum):
    PENDING = "pending"  # waiting for a person's approval
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # ran and verified
    FAILED = "failed"  # ran and did not work (or could not be verified)
    REFUSED = "refused"  # the policy said no
    REJECTED = "rejected"  # a person said no
    DRY_RUN = "dry_run"  # said what it would do, changed nothing
    TIMED_OUT = "timed_out"


class ActionRecord(BaseModel):
    """What was attempted, by whom, why, and what came of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    action: str
    target: str | None = None
    target_kind: str = "none"
    params: dict[str, Any] = Field(default_factory=dict)
    proposer: Proposer
    proposed_by: str = ""  # rule name, model name, user or plugin name
    reason: str = ""
    alert_id: str | None = None
    fingerprint: str | None = None
    outcome: ActionOutcome
    detail: str = ""
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    verified: bool | None = None
    risk: str = "safe"
