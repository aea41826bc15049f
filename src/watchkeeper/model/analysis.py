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
    tokens_per_s: float | None = None  # the model's writing speed on this call
    cached: bool = False
    # A model's analysis never lowers what the rules found: ``verdict`` is the worse of
    # the two; the model's own view is kept as its opinion.
    model_verdict: str | None = None
    rules_verdict: str | None = None
    rules_summary: str | None = None

    def disagreement(self) -> str | None:
        """One line when the model's opinion differs from the rules', else None, e.g.
        ``"the model thinks healthy; the rules say critical: service web is down"``."""
        if self.model_verdict is None or self.rules_verdict is None:
            return None
        if self.model_verdict == self.rules_verdict:
            return None
        because = f": {self.rules_summary}" if self.rules_summary else ""
        return f"the model thinks {self.model_verdict}; the rules say {self.rules_verdict}{because}"
