"""What the advisor hands back: results of analyses and of health probes.

Both are plain, frozen pydantic models so they can travel on the bus as JSON, be
stored, and be rendered by the web UI and the CLI without knowing about Ollama.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.llm.schema import AnalysisReply

__all__ = ["AdvisorStats", "LLMHealth", "LLMResult", "ModelSpeed"]


class ModelSpeed(BaseModel):
    """What the advisor learned about the model's speed on this server (see ``_speed``)."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens_per_s: float | None = None
    """Reading the prompt (``prompt_eval_count / prompt_eval_duration``)."""
    tokens_per_s: float | None = None
    """Writing the answer (``eval_count / eval_duration``)."""
    load_s: float | None = None
    """The last time the server had to load the model first."""
    calls: int = 0
    """Answered calls learned from."""


class LLMResult(BaseModel):
    """The outcome of one :meth:`OllamaAdvisor.analyze` call; never an exception.

    ``ok`` is true only with a validated ``reply``. Otherwise ``error`` says why, as one
    line starting with ``llm:``, e.g. ``"llm: unavailable (connection refused)"`` or
    ``"llm: invalid reply (cut at the token limit, done_reason=length)"``; for invalid
    replies ``invalid_reason`` holds the bare reason.
    """

    model_config = ConfigDict(frozen=True)

    ok: bool
    reply: AnalysisReply | None = None
    error: str | None = None
    source: str
    """The model that answered (or was asked), e.g. ``"mistral"``."""
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    """The server's ``prompt_eval_count``."""
    completion_tokens: int | None = None
    """The server's ``eval_count``."""
    attempts: int = 0
    """HTTP calls made: 0 when the breaker refused, up to ``retry_attempts``."""
    prompt_chars: int = 0
    invalid_reason: str | None = None
    prompt_version: str = ""
    tokens_per_s: float | None = None
    """Completion tokens per second of generation, as the server measured it."""
    deadline_s: float | None = None
    """What the last attempt was allowed in all (learned from the model's speed)."""
    num_ctx: int | None = None
    """The context window asked for (fitted to the model's own)."""


class LLMHealth(BaseModel):
    """The outcome of one :meth:`OllamaAdvisor.probe` call.

    ``state`` is ``"available"``, ``"unavailable (<reason>)"`` or
    ``"model 'mistral' not found: run `ollama pull mistral`"``; ``status_line`` is the
    one-liner for the UI, e.g. ``"llm: mistral ok (412 ms)"``.
    """

    model_config = ConfigDict(frozen=True)

    ok: bool
    state: str
    status_line: str
    model: str
    host: str
    latency_s: float | None = None
    server_version: str | None = None
    models: list[str] = Field(default_factory=list)
    """Models the server has pulled, as it names them (``"mistral:latest"``)."""
    last_error: str | None = None
    """The most recent failure seen by the advisor (probe or analysis), if any."""
    breaker: Literal["closed", "open", "half_open"] = "closed"
    context_length: int | None = None
    """The model's own context window, from ``/api/show`` (None when it did not say)."""
    num_ctx: int | None = None
    """The context the advisor asks for: the setting, fitted to ``context_length``."""
    speed: ModelSpeed = Field(default_factory=ModelSpeed)


class AdvisorStats(BaseModel):
    """Counters since the advisor was created; cheap to read, e.g. for metrics."""

    model_config = ConfigDict(frozen=True)

    calls: int = 0
    """``analyze`` calls, including those the breaker refused."""
    ok: int = 0
    failures: int = 0
    """Calls that ended without a reply from the server (after retries)."""
    invalid_replies: int = 0
    retries: int = 0
    refused_by_breaker: int = 0
    breaker_opened: int = 0
    dropped_recommendations: int = 0
