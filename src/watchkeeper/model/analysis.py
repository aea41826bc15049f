"""What one analysis concluded, from the rules or from a model.

The analyzer publishes it on ``analysis.result``; storage keeps it, the remediator takes
its recommendations as candidates, and the web and CLI show it::

    result = AnalysisResult(at=now, trigger="alert", source="rules", verdict="cpu", summary="...")
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.model.alerts import SuggestedAction

__all__ = ["AnalysisResult"]


class AnalysisResult(BaseModel):
    """One analysis, published on ``analysis.result``: from the rules or from a model.

    Frozen: every subscriber on the bus receives this same instance."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    at: float
    trigger: Literal["alert", "analyze_now"]
    source: str  # "rules" or the model's name
    verdict: str
    summary: str
    alert_ids: list[str] = Field(default_factory=list)
    fingerprints: list[str] = Field(default_factory=list)
    incident_id: str | None = None  # the incident this analysis is about, when one
    explanations: dict[str, str] = Field(default_factory=dict)  # alert id → model's words
    recommended: list[SuggestedAction] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list)
    fallback_reason: str | None = None
    latency_s: float | None = None
    prompt_chars: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached: bool = False
