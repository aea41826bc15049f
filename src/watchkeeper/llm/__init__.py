"""watchkeeper.llm: the local-LLM advisor (Ollama through its official client).

The LLM is an advisor, not an actor: it sees an :class:`IncidentBrief` made of sanitised
labels and short ids, answers in a JSON schema whose enums hold only this incident's ids
and registered actions, and its answer is validated again before anyone acts on it.

Typical use, from the AnalyzerAgent::

    from watchkeeper.llm import OllamaAdvisor, IncidentBrief

    advisor = OllamaAdvisor("http://127.0.0.1:11434", "mistral")
    result = await advisor.analyze(brief)   # LLMResult, never raises

Importing this package does not import ``ollama`` or ``httpx``; the advisor does, on
first use.
"""

from __future__ import annotations

from watchkeeper.llm.advisor import MAX_DEADLINE_S, MAX_REPLY_BYTES, OllamaAdvisor, call_deadline
from watchkeeper.llm.brief import (
    BriefAction,
    BriefFinding,
    BriefPath,
    BriefProcess,
    BriefService,
    IncidentBrief,
)
from watchkeeper.llm.prompt import (
    PROMPT_TOKEN_BUDGET,
    PROMPT_VERSION,
    build_prompt,
    build_schema,
    estimate_tokens,
    fit_brief,
    system_prompt,
)
from watchkeeper.llm.results import AdvisorStats, LLMHealth, LLMResult, ModelSpeed
from watchkeeper.llm.schema import (
    AnalysisReply,
    FindingNote,
    Recommendation,
    ReplyInvalid,
    validate_reply,
)

__all__ = [
    "MAX_DEADLINE_S",
    "MAX_REPLY_BYTES",
    "PROMPT_TOKEN_BUDGET",
    "PROMPT_VERSION",
    "AdvisorStats",
    "AnalysisReply",
    "BriefAction",
    "BriefFinding",
    "BriefPath",
    "BriefProcess",
    "BriefService",
    "FindingNote",
    "IncidentBrief",
    "LLMHealth",
    "LLMResult",
    "ModelSpeed",
    "OllamaAdvisor",
    "Recommendation",
    "ReplyInvalid",
    "build_prompt",
    "build_schema",
    "call_deadline",
    "estimate_tokens",
    "fit_brief",
    "system_prompt",
    "validate_reply",
]
