"""The audit trail's unit: one record per attempted action, whoever proposed it.

Records go out on the bus as ``remediation.<outcome>`` (``remediation.pending``,
``remediation.started``, ``remediation.succeeded``, ``remediation.failed``,
``remediation.refused``, ``remediation.dry_run``, ``remediation.gave_up``...) and are kept
in storage, so "what did it do, why, and did it work" always has an answer.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ActionOutcome", "ActionRecord", "Proposer"]

Proposer = Literal["rule", "llm", "user", "plugin"]

# What a record keeps of its parameters at most: they were checked against the action's
# declaration before anything was recorded, so these only bite on a record from elsewhere
# (an old database, a plugin's own record) and keep every reader of the audit working.
_PARAMS_KEEP = 32
_TEXT_KEEP = 1024
_DROPPED = "(not a plain value; not kept)"


def _plain(value: Any) -> Any:
    """``value`` if it is a plain JSON scalar, else a short placeholder."""
    if value is None or isinstance(value, bool | int | str):
        return value[:_TEXT_KEEP] if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return _DROPPED


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

    @field_validator("params", mode="before")
    @classmethod
    def _plain_params(cls, value: Any) -> dict[str, Any]:
        """Flat, finite, bounded: one odd record must never stop the audit being read."""
        if not isinstance(value, dict):
            return {}
        items = list(value.items())[:_PARAMS_KEEP]
        return {str(key)[:64]: _plain(item) for key, item in items}
