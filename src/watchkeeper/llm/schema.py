"""Check a model's answer against the brief it was asked about.

The JSON schema sent as ``format`` should make a valid answer likely, but nothing makes
it certain (some builds ignore ``format``; a reply can be cut at the token limit), so
every reply goes through :func:`validate_reply`::

    result = validate_reply(content, done_reason, brief)
    if isinstance(result, ReplyInvalid):
        log.warning("llm reply rejected: %s", result.reason)
    else:
        for rec in result.recommended_actions:   # only offered actions and ids survive
            target = my_targets[rec.target_id]    # the caller maps ids to real targets

A reply whose top level is unusable (not JSON, cut, wrong verdict) is rejected whole.
Individual bad entries (unknown action, unknown or wrong-kind target, unknown evidence,
a confidence that is neither ``low``/``medium``/``high`` nor a number in 0..1,
duplicates, more than the schema allows) are dropped and listed in ``dropped`` while the
valid ones are kept: one bad idea should not hide a good one. Every bound of the schema
is checked again here (a server may ignore ``format``): text is cut to its
``maxLength``, evidence to ``MAX_EVIDENCE`` ids, explanations to ``MAX_EXPLANATIONS``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal, TypeGuard

from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.llm.brief import IncidentBrief
from watchkeeper.llm.prompt import (
    CONFIDENCE,
    MAX_EVIDENCE,
    MAX_EXPLANATIONS,
    MAX_REASON_CHARS,
    MAX_RECOMMENDATIONS,
    MAX_SUMMARY_CHARS,
    VERDICTS,
    fit_brief,
)
from watchkeeper.model.alerts import TargetKind
from watchkeeper.model.text import PROMPT_DATA, clean

__all__ = [
    "AnalysisReply",
    "FindingNote",
    "Recommendation",
    "ReplyInvalid",
    "validate_reply",
]

Verdict = Literal["healthy", "degraded", "critical"]
_TARGETED_KINDS: tuple[TargetKind, ...] = ("process", "service", "path")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FindingNote(_Frozen):
    """The model's explanation of one finding of the brief."""

    id: str
    explanation: str


class Recommendation(_Frozen):
    """A validated recommendation: an offered action on an offered target id.

    ``target_id`` is a brief id (``P1``, ``S2``, ``D1``) or ``"none"``; the caller keeps
    the mapping from ids to real pids, units and paths.
    """

    action: str
    target_id: str
    target_kind: TargetKind
    reason: str
    evidence: list[str]
    confidence: float = Field(ge=0, le=1)


class AnalysisReply(_Frozen):
    """A model answer that passed validation (possibly minus some dropped entries)."""

    verdict: Verdict
    summary: str
    findings: list[FindingNote] = Field(default_factory=list)
    recommended_actions: list[Recommendation] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list)
    """Why each rejected entry was dropped, e.g. ``"action #2: unknown action 'sh'"``."""


class ReplyInvalid(_Frozen):
    """A model answer that could not be used at all."""

    reason: str
    excerpt: str = ""
    """The sanitised start of the raw content, for logs."""


def _quote(value: Any) -> str:
    # Model output echoed into our own messages is untrusted text, too.
    return repr(clean(str(value), PROMPT_DATA, max_len=40))


def _strip_fences(text: str) -> str:
    # Models that ignore ``format`` like to wrap JSON in a Markdown code fence.
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and len(stripped) > 6:
        inner = stripped[3:-3]
        first_newline = inner.find("\n")
        if first_newline != -1 and inner[:first_newline].strip().isalpha():
            inner = inner[first_newline + 1 :]
        return inner.strip()
    return stripped


def _str_in(value: object, allowed: set[str] | dict[str, Any]) -> TypeGuard[str]:
    # Model output may put lists or objects where we expect ids: those are unhashable.
    return isinstance(value, str) and value in allowed


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_findings(items: list[Any], known: set[str], dropped: list[str]) -> list[FindingNote]:
    notes: list[FindingNote] = []
    seen: set[str] = set()
    for index, item in enumerate(items, start=1):
        where = f"finding #{index}"
        if not isinstance(item, dict):
            dropped.append(f"{where}: not an object")
        elif not _str_in(item.get("id"), known):
            dropped.append(f"{where}: unknown id {_quote(item.get('id'))}")
        elif item["id"] in seen:
            dropped.append(f"{where}: duplicate id {item['id']}")
        elif not isinstance(item.get("explanation"), str):
            dropped.append(f"{where}: explanation is not a string")
        elif len(notes) >= MAX_EXPLANATIONS:
            dropped.append(f"{where}: more than {MAX_EXPLANATIONS} explanations")
        else:
            seen.add(item["id"])
            text = clean(item["explanation"], PROMPT_DATA, MAX_REASON_CHARS)
            notes.append(FindingNote(id=item["id"], explanation=text))
    return notes


def _check_recommendation(
    item: Any, brief: IncidentBrief, finding_ids: set[str]
) -> Recommendation | str:
    """Return the validated recommendation, or why it is rejected."""
    if not isinstance(item, dict):
        return "not an object"
    actions = {a.name: a for a in brief.actions}
    name = item.get("action")
    if not _str_in(name, actions):
        return f"unknown action {_quote(name)}"
    action = actions[name]
    target = item.get("target")
    all_targets = {"none"}
    for kind in _TARGETED_KINDS:
        all_targets.update(brief.target_ids(kind))
    if not _str_in(target, all_targets):
        return f"unknown target {_quote(target)}"
    if target not in brief.target_ids(action.target_kind):
        return f"target {target} does not fit {action.name} (needs a {action.target_kind} target)"
    evidence = item.get("evidence")
    if not isinstance(evidence, list) or not evidence:
        return "no evidence cited"
    unknown = [e for e in evidence if not _str_in(e, finding_ids)]
    if unknown:
        return f"unknown evidence {_quote(unknown[0])}"
    confidence = _confidence(item.get("confidence"))
    if confidence is None:
        return (
            f"confidence {_quote(item.get('confidence'))} is not low, medium, high "
            "or a number in 0..1"
        )
    reason = item.get("reason")
    if not isinstance(reason, str):
        return "reason is not a string"
    return Recommendation(
        action=action.name,
        target_id=str(target),
        target_kind=action.target_kind,
        reason=clean(reason, PROMPT_DATA, MAX_REASON_CHARS),
        evidence=list(dict.fromkeys(evidence))[:MAX_EVIDENCE],
        confidence=confidence,
    )


def _confidence(value: object) -> float | None:
    """The schema's word as our number; a number in 0..1 from a server that ignored
    ``format``; None for anything else."""
    if isinstance(value, str):
        return CONFIDENCE.get(value.strip().lower())
    if _is_number(value) and 0 <= value <= 1:
        return float(value)
    return None


def validate_reply(
    raw_content: str, done_reason: str, brief: IncidentBrief
) -> AnalysisReply | ReplyInvalid:
    """Parse and check ``raw_content`` (the message content) for ``brief``.

    ``done_reason`` is the server's: ``"length"`` means the JSON was cut, so the reply
    is invalid whatever it looks like; ``""`` (older servers) is treated as ``"stop"``.
    """
    fitted = fit_brief(brief)
    excerpt = clean(raw_content, PROMPT_DATA, max_len=120) if raw_content.strip() else ""

    def invalid(reason: str) -> ReplyInvalid:
        return ReplyInvalid(reason=reason, excerpt=excerpt)

    if done_reason == "length":
        return invalid("cut at the token limit, done_reason=length")
    if done_reason not in ("stop", ""):
        return invalid(f"no answer, done_reason={_quote(done_reason)}")
    try:
        data = json.loads(_strip_fences(raw_content))
    except ValueError as exc:
        return invalid(f"not JSON: {clean(str(exc), PROMPT_DATA, 80)}")
    if not isinstance(data, dict):
        return invalid(f"expected a JSON object, got {type(data).__name__}")
    verdict = data.get("verdict")
    if verdict not in VERDICTS:
        return invalid(f"verdict {_quote(verdict)} is not one of {', '.join(VERDICTS)}")
    summary = data.get("summary")
    if not isinstance(summary, str):
        return invalid("summary is missing or not a string")
    raw_findings = data.get("findings", [])
    raw_actions = data.get("recommended_actions", [])
    if not isinstance(raw_findings, list) or not isinstance(raw_actions, list):
        return invalid("findings and recommended_actions must be lists")

    dropped: list[str] = []
    finding_ids = {f.id for f in fitted.findings}
    notes = _check_findings(raw_findings, finding_ids, dropped)
    kept: list[Recommendation] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(raw_actions, start=1):
        checked = _check_recommendation(item, fitted, finding_ids)
        where = f"action #{index}"
        if isinstance(checked, str):
            dropped.append(f"{where}: {checked}")
        elif (checked.action, checked.target_id) in seen:
            dropped.append(f"{where}: duplicate of an earlier recommendation")
        elif len(kept) >= MAX_RECOMMENDATIONS:
            dropped.append(f"{where}: more than {MAX_RECOMMENDATIONS} recommendations")
        else:
            seen.add((checked.action, checked.target_id))
            kept.append(checked)
    return AnalysisReply(
        verdict=verdict,
        summary=clean(summary, PROMPT_DATA, MAX_SUMMARY_CHARS),
        findings=notes,
        recommended_actions=kept,
        dropped=dropped,
    )
