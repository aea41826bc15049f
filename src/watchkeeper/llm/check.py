""" "Does my model work here?": one canned incident against the configured server.

``watchkeeper llm check`` runs :func:`run_check` and prints its :class:`CheckReport`::

    report = await run_check(settings.ollama)
    print(report.exit_code, report.valid, report.latency_s, report.tokens_per_s)

The incident is always the same (a web service down and a process pinning a core), so
figures from two hosts or two models can be compared; its rules' verdict is
``critical``. The check asks exactly as the analyzer does (same prompt, schema, streaming,
deadlines, ``keep_alive``), but makes one attempt: a retry would hide the first answer.

Exit codes (:data:`EXIT_CODES`): 0 the reply was schema-valid; 1 the server and model
answered but the reply was unusable (invalid, cut at the token limit, too slow); 3 the
server could not be reached; 4 the model is not pulled there. (2 stays the CLI's code for
a bad flag or config file.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.llm.advisor import OllamaAdvisor
from watchkeeper.llm.brief import (
    BriefAction,
    BriefFinding,
    BriefProcess,
    BriefService,
    IncidentBrief,
)

if TYPE_CHECKING:
    from watchkeeper.config import OllamaSettings

__all__ = ["CANNED_VERDICT", "EXIT_CODES", "CheckReport", "canned_brief", "run_check"]

CANNED_VERDICT = "critical"
"""What the rules say about the canned incident (a critical service is down)."""

EXIT_CODES: dict[int, str] = {
    0: "the model answered with a schema-valid reply",
    1: "the server and model answered, but the reply was unusable",
    2: "bad flag or config file",
    3: "the server could not be reached",
    4: "the model is not pulled on the server",
}

_LABELS = {"P1": "process stress-ng (pid 4242)", "S1": "service web", "none": "the host"}


def canned_brief() -> IncidentBrief:
    """The check's incident: ``web`` failed, ``stress-ng`` pins a core, the host is hot."""
    return IncidentBrief(
        host={"cpu_percent": 97.0, "mem_percent": 41.0, "load_per_core": 1.9},
        findings=[
            BriefFinding(
                id="E1",
                severity="critical",
                subject="service down",
                summary="service web is failed (exit code 1) for 2 minutes",
                evidence={"state": "failed", "restarts": 3.0},
            ),
            BriefFinding(
                id="E2",
                severity="warning",
                subject="runaway process",
                summary="stress-ng uses 99% of a core for 6 minutes",
                evidence={"cpu_percent": 99.0},
            ),
        ],
        processes=[
            BriefProcess(id="P1", label="stress-ng", cpu_percent=99.0, rss_mb=12.0, age_s=400.0)
        ],
        services=[BriefService(id="S1", label="web", state="failed")],
        actions=[
            BriefAction(
                name="restart_service",
                description="Restart a service through its manager.",
                target_kind="service",
                risk="moderate",
            ),
            BriefAction(
                name="renice_process",
                description="Lower a process's CPU priority.",
                target_kind="process",
                risk="safe",
            ),
            BriefAction(
                name="kill_process",
                description="Stop a process: SIGTERM, then SIGKILL after a grace.",
                target_kind="process",
                risk="dangerous",
            ),
        ],
    )


class CheckReport(BaseModel):
    """What ``watchkeeper llm check`` found, printed as text or as JSON."""

    model_config = ConfigDict(frozen=True)

    server: str
    model: str
    reachable: bool
    server_version: str | None = None
    model_present: bool = False
    models: list[str] = Field(default_factory=list)
    context_length: int | None = None
    num_ctx: int | None = None
    probe: str
    """The probe's status line, e.g. ``"llm: mistral ok (12 ms)"``."""
    valid: bool = False
    problem: str | None = None
    """Why the reply was unusable (or why no reply was asked for)."""
    latency_s: float | None = None
    deadline_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_s: float | None = None
    verdict: str | None = None
    """The model's verdict on the canned incident."""
    expected_verdict: str = CANNED_VERDICT
    summary: str | None = None
    recommended: list[str] = Field(default_factory=list)
    """``"restart_service on service web (confidence 0.9)"``, one per recommendation."""
    dropped: list[str] = Field(default_factory=list)
    exit_code: int


async def run_check(settings: OllamaSettings) -> CheckReport:
    """Probe the server, then ask about :func:`canned_brief` once; never raises."""
    advisor = OllamaAdvisor.from_settings(settings.model_copy(update={"retry_attempts": 1}))
    async with advisor:
        health = await advisor.probe()
        common = {
            "server": advisor.host,
            "model": advisor.model,
            "server_version": health.server_version,
            "models": health.models,
            "context_length": health.context_length,
            "num_ctx": health.num_ctx,
            "probe": health.status_line,
        }
        if not health.ok:
            # A server that answered the version call is reachable; the model may not be.
            missing = "not found" in health.state and health.server_version is not None
            return CheckReport(
                reachable=missing,
                problem=health.state,
                exit_code=4 if missing else 3,
                **common,
            )
        result = await advisor.analyze(canned_brief())
    common = {**common, "reachable": True, "model_present": True}
    figures = {
        "latency_s": round(result.latency_s, 2),
        "deadline_s": result.deadline_s,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "tokens_per_s": result.tokens_per_s,
    }
    if not result.ok or result.reply is None:
        problem = result.invalid_reason or (result.error or "no reply").removeprefix("llm: ")
        unreachable = "connection refused" in problem or "cannot resolve" in problem
        missing = problem.startswith("model ") and "not found" in problem
        return CheckReport(
            **{**common, "reachable": not unreachable, "model_present": not missing},
            problem=problem,
            exit_code=3 if unreachable else 4 if missing else 1,
            **figures,
        )
    reply = result.reply
    return CheckReport(
        **common,
        valid=True,
        verdict=reply.verdict,
        summary=reply.summary,
        recommended=[
            f"{r.action} on {_LABELS.get(r.target_id, r.target_id)} (confidence {r.confidence:g})"
            for r in reply.recommended_actions
        ],
        dropped=reply.dropped,
        exit_code=0,
        **figures,
    )
