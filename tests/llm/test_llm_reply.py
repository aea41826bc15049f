"""validate_reply: whole replies are rejected, bad recommendations are dropped and counted."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from watchkeeper.llm import AnalysisReply, IncidentBrief, ReplyInvalid, validate_reply
from watchkeeper.llm.prompt import MAX_SUMMARY_CHARS

MakeBrief = Callable[..., IncidentBrief]


def _check(reply: Any, brief: IncidentBrief, done_reason: str = "stop") -> AnalysisReply:
    result = validate_reply(json.dumps(reply), done_reason, brief)
    assert isinstance(result, AnalysisReply), result
    return result


def _rec(action: str, target: Any, **extra: Any) -> dict[str, Any]:
    return {
        "action": action,
        "target": target,
        "reason": "because",
        "evidence": ["E1"],
        "confidence": 0.5,
        **extra,
    }


def test_valid_reply_maps_to_ids_and_kinds(
    make_brief: MakeBrief, valid_reply: dict[str, Any]
) -> None:
    result = _check(valid_reply, make_brief())
    assert result.verdict == "degraded"
    assert [(r.action, r.target_id, r.target_kind) for r in result.recommended_actions] == [
        ("kill_process", "P1", "process"),
        ("restart_service", "S1", "service"),
    ]
    assert result.recommended_actions[0].evidence == ["E1"]
    assert result.findings[0].id == "E1"
    assert result.dropped == []


def test_unknown_or_mismatched_recommendations_are_dropped_and_counted(
    make_brief: MakeBrief, valid_reply: dict[str, Any]
) -> None:
    valid_reply["recommended_actions"] = [
        _rec("run_shell", "none"),  # not a registered action
        _rec("kill_process", "rm -rf /"),  # not an offered target
        _rec("kill_process", "S1"),  # a service id for a process action
        _rec("notify_admin", "P1"),  # a "none" action given a target
        _rec("restart_service", "S1", evidence=["E9"]),  # unknown evidence
        _rec("restart_service", "S1", evidence=[]),  # no evidence
        _rec("kill_process", "P1", confidence=1.5),
        _rec("kill_process", "P1", confidence=True),
        _rec("kill_process", ["P1"]),  # unhashable junk must not crash
        _rec("kill_process", "P2"),  # the one good one
        _rec("kill_process", "P2"),  # duplicate
        "kill everything",
    ]
    result = _check(valid_reply, make_brief())
    assert [(r.action, r.target_id) for r in result.recommended_actions] == [("kill_process", "P2")]
    expected = [
        "action #1: unknown action 'run_shell'",
        "action #2: unknown target 'rm -rf /'",
        "action #3: target S1 does not fit kill_process (needs a process target)",
        "action #4: target P1 does not fit notify_admin (needs a none target)",
        "action #5: unknown evidence 'E9'",
        "action #6: no evidence cited",
        "action #7: confidence '1.5' is not low, medium, high or a number in 0..1",
        "action #8: confidence 'True' is not low, medium, high or a number in 0..1",
        "action #9: unknown target",
        "action #11: duplicate of an earlier recommendation",
        "action #12: not an object",
    ]
    assert len(result.dropped) == len(expected)
    for got, want in zip(result.dropped, expected, strict=True):
        assert got.startswith(want)


def test_at_most_three_recommendations_are_kept(make_brief: MakeBrief) -> None:
    recs = [_rec("kill_process", "P1"), _rec("kill_process", "P2"), _rec("notify_admin", "none")]
    recs += [_rec("restart_service", "S1"), _rec("clean_dir", "D1"), _rec("kill_process", "P1")]
    many = make_brief()
    reply = {"verdict": "critical", "summary": "s", "findings": [], "recommended_actions": recs}
    result = _check(reply, many)
    assert len(result.recommended_actions) == 3
    assert len(result.dropped) == 3


def test_unknown_finding_ids_are_dropped(
    make_brief: MakeBrief, valid_reply: dict[str, Any]
) -> None:
    valid_reply["findings"] = [{"id": "E7", "explanation": "x"}, {"id": "E2", "explanation": "y"}]
    result = _check(valid_reply, make_brief())
    assert [f.id for f in result.findings] == ["E2"]
    assert result.dropped == ["finding #1: unknown id 'E7'"]


def test_text_from_the_model_is_sanitised(
    make_brief: MakeBrief, valid_reply: dict[str, Any]
) -> None:
    valid_reply["summary"] = "all fine\x1b[2J\u202e" + "!" * 900
    result = _check(valid_reply, make_brief())
    assert "\x1b" not in result.summary
    assert "\u202e" not in result.summary
    assert len(result.summary) == MAX_SUMMARY_CHARS  # the schema's maxLength, held here too


def test_code_fences_around_json_are_tolerated(
    make_brief: MakeBrief, valid_reply: dict[str, Any]
) -> None:
    fenced = "```json\n" + json.dumps(valid_reply) + "\n```"
    assert isinstance(validate_reply(fenced, "stop", make_brief()), AnalysisReply)


@pytest.mark.parametrize(
    ("content", "done_reason", "reason"),
    [
        ("Sure! The host is fine.", "stop", "not JSON"),
        ('{"verdict": "degraded", "summ', "stop", "not JSON"),
        ("[1, 2]", "stop", "expected a JSON object"),
        ('{"verdict": "fine", "summary": "x"}', "stop", "verdict 'fine'"),
        ('{"verdict": "healthy"}', "stop", "summary"),
        ('{"verdict": "healthy", "summary": "x", "findings": {}}', "stop", "must be lists"),
        ('{"verdict": "healthy", "summary": "x"}', "length", "cut at the token limit"),
        ('{"verdict": "healthy", "summary": "x"}', "load", "no answer"),
    ],
)
def test_unusable_replies_are_invalid(
    make_brief: MakeBrief, content: str, done_reason: str, reason: str
) -> None:
    result = validate_reply(content, done_reason, make_brief())
    assert isinstance(result, ReplyInvalid)
    assert reason in result.reason


def test_older_servers_without_done_reason_are_accepted(make_brief: MakeBrief) -> None:
    content = '{"verdict": "healthy", "summary": "x", "findings": [], "recommended_actions": []}'
    assert isinstance(validate_reply(content, "", make_brief()), AnalysisReply)
