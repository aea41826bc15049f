"""model.actions: one risk vocabulary and one action-name pattern for everyone."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from watchkeeper.llm import BriefAction
from watchkeeper.model.actions import (
    ACTION_NAME_PATTERN,
    RISKS,
    ActionInfo,
    ActionOutcome,
    ActionRecord,
)
from watchkeeper.remediation.catalog import BUILTIN_ACTIONS


def test_the_risk_words_are_the_three_the_policy_knows() -> None:
    assert RISKS == ("safe", "moderate", "dangerous")
    assert {info.risk for info in BUILTIN_ACTIONS} <= set(RISKS)


def test_a_record_with_a_risk_word_from_elsewhere_still_reads() -> None:
    record = ActionRecord(
        id="r1",
        action="x",
        proposer="rule",
        outcome=ActionOutcome.FAILED,
        created_at=0,
        risk="high",
    )
    assert record.risk == "unknown"


@pytest.mark.parametrize("name", ["Kill", "kill-process", "dns.flush", "_x", "a" * 65])
def test_every_declaration_holds_names_to_the_one_pattern(name: str) -> None:
    assert re.match(ACTION_NAME_PATTERN, name) is None
    with pytest.raises(ValidationError):
        ActionInfo(name=name, description="d", target_kind="none", risk="safe")
    with pytest.raises(ValidationError):
        BriefAction(name=name, description="d", target_kind="none", risk="safe")


def test_the_brief_takes_only_the_risk_vocabulary() -> None:
    with pytest.raises(ValidationError):
        BriefAction.model_validate(
            {"name": "kill_process", "description": "d", "target_kind": "process", "risk": "high"}
        )
