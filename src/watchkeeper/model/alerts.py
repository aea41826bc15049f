"""Alerts: what the analyzer tells the rest of the team.

An alert is identified for its whole life by its ``fingerprint`` (rule + subject), so the
same trouble seen on every tick is one alert, not a stream of them. Its transitions go out
on the bus as ``alert.firing`` (new, or its severity changed), ``alert.escalated`` and
``alert.resolved``; the payload is always the full ``Alert``.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SEVERITY_RANK",
    "Alert",
    "AlertState",
    "Severity",
    "SuggestedAction",
    "TargetKind",
    "fingerprint_of",
]

TargetKind = Literal["process", "service", "path", "none"]
"""What an action acts on; decides which ids (P*, S*, D* or ``none``) it may target."""


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class SuggestedAction(BaseModel):
    """A registered action the analyzer proposes, with its target (never free text to run)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: str
    target: str | None = None
    target_kind: TargetKind = "none"
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""
    source: str = "rules"  # "rules" or the LLM model's name
    confidence: float = Field(1.0, ge=0, le=1)


class Alert(BaseModel):
    """One problem on the host, from first firing to resolution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    fingerprint: str
    rule: str
    severity: Severity
    subject: str
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    suggested_actions: list[SuggestedAction] = Field(default_factory=list)
    state: AlertState = AlertState.FIRING
    started_at: float
    updated_at: float
    resolved_at: float | None = None
    escalated: bool = False
    source: str = "rules"
    labels: dict[str, str] = Field(default_factory=dict)


def fingerprint_of(rule: str, subject: str) -> str:
    """A short stable identity for (rule, subject)."""
    return hashlib.sha256(f"{rule}\x00{subject}".encode()).hexdigest()[:16]
