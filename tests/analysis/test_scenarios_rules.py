"""Every scenario under tests/scenarios/ through the rule path: verdict, alerts, actions."""

from __future__ import annotations

from pathlib import Path

import pytest

from watchkeeper.testing.scenarios import Scenario, load_scenarios, play_rules, score

SCENARIOS = load_scenarios(Path(__file__).resolve().parents[1] / "scenarios")


def test_there_are_at_least_fifteen_scenarios() -> None:
    assert len(SCENARIOS) >= 15


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.path for s in SCENARIOS])
def test_rule_path(scenario: Scenario) -> None:
    outcome = play_rules(scenario)
    result = score(scenario, outcome)
    assert result.passed, f"{scenario.name}: {result.problems}"
    assert result.forbidden == 0


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
