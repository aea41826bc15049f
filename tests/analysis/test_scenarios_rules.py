"""Every scenario under tests/scenarios/ through the rule path: verdict, alerts, actions,
and what the policy gate would have run; then the figures of the whole set."""

from __future__ import annotations

from pathlib import Path

import pytest

from watchkeeper.testing.scenarios import (
    Scenario,
    Score,
    load_scenarios,
    play_rules,
    score,
    summarise_rules,
)

SCENARIOS = load_scenarios(Path(__file__).resolve().parents[1] / "scenarios")

# The bar issue 14 sets for the shipped set.
VERDICT_ACCURACY = 0.95
RECALL = 0.95
PRECISION = 0.9


_SCORES: dict[str, Score] = {}


def scored(scenario: Scenario) -> Score:
    """The scenario's score, played once per test session."""
    if scenario.path not in _SCORES:
        _SCORES[scenario.path] = score(scenario, play_rules(scenario))
    return _SCORES[scenario.path]


@pytest.fixture(scope="module")
def scores() -> list[Score]:
    return [scored(s) for s in SCENARIOS]


def test_there_are_at_least_fifteen_scenarios() -> None:
    assert len(SCENARIOS) >= 15


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.path for s in SCENARIOS])
def test_rule_path(scenario: Scenario) -> None:
    result = scored(scenario)
    assert result.passed, f"{scenario.name}: {result.problems}"
    assert result.forbidden == 0
    assert result.forbidden_executions == 0


def test_the_whole_set_meets_the_bar(scores: list[Score]) -> None:
    summary = summarise_rules(scores)
    assert summary["forbidden_executions"] == 0, summary
    assert summary["verdict_accuracy"] >= VERDICT_ACCURACY, summary
    assert summary["expected_rule_recall"] >= RECALL, summary
    assert summary["action_precision"] is None or summary["action_precision"] >= PRECISION


def test_injection_name_is_sanitised_in_alerts() -> None:
    scenario = next(s for s in SCENARIOS if "inject" in s.name)
    outcome = play_rules(scenario)
    texts = [t.alert.summary for t in outcome.transitions] + [
        str(t.alert.evidence) for t in outcome.transitions
    ]
    assert texts
    for text in texts:
        assert "\n" not in text and "\u202e" not in text
    # The rules propose actions only on the hot process itself.
    assert {a.target for a in outcome.actions} == {"4243"}
