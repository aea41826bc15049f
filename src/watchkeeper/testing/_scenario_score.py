"""Scoring a scenario's rule-path outcome against its ``expect``, and the set's figures.

What is measured, per scenario: the verdict at the end; each expected alert fired (rule,
severity, subject, words in its summary, marked intermittent); rules that must stay
quiet; firings and proposals per rule and action at most; the incidents; proposals of
forbidden actions, targets or pairs; and, from the policy gate's replay, what would have
**run**: forbidden executions, and the share of executions whose action is allowed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from watchkeeper.analysis.engine import Transition
from watchkeeper.model.alerts import Alert, SuggestedAction
from watchkeeper.model.incidents import Incident
from watchkeeper.testing._scenario_format import ExpectedAlert, Scenario
from watchkeeper.testing._scenario_gate import Replayed, forbidden_reason

__all__ = ["Outcome", "Score", "expected_met", "matches", "score", "summarise_rules"]


@dataclass
class Outcome:
    """What a scenario's play produced (the rule path, or the rule path beside the LLM)."""

    transitions: list[Transition] = field(default_factory=list)
    final_alerts: list[Alert] = field(default_factory=list)
    verdict: str = "healthy"
    actions: list[SuggestedAction] = field(default_factory=list)
    analysis_ms: list[float] = field(default_factory=list)
    llm: dict[str, Any] = field(default_factory=dict)
    decisions: list[Replayed] = field(default_factory=list)
    verdicts: list[tuple[float, str]] = field(default_factory=list)  # (t, rules' verdict)
    established_at: float | None = None  # when every expected alert had fired
    incidents: dict[str, Incident] = field(default_factory=dict)  # id → latest
    max_open_incidents: int = 0
    incidents_supported: bool = False


def _intermittent(alert: Alert) -> bool:
    flag = alert.evidence.get("intermittent", alert.labels.get("intermittent"))
    if isinstance(flag, str):
        return flag.lower() in ("1", "true", "yes")
    return bool(flag) or "intermittent" in alert.summary.lower()


def matches(want: ExpectedAlert, alert: Alert) -> bool:
    return (
        alert.rule == want.rule
        and (want.severity is None or alert.severity.value == want.severity)
        and (want.subject is None or alert.subject == want.subject)
        and (
            want.summary_contains is None or want.summary_contains.lower() in alert.summary.lower()
        )
        and (want.intermittent is None or _intermittent(alert) == want.intermittent)
    )


def expected_met(scenario: Scenario, seen: list[Alert]) -> bool:
    """Every expected alert is among ``seen`` (with no expected alerts: never by alerts)."""
    wants = scenario.expect.alerts
    return bool(wants) and all(any(matches(w, a) for a in seen) for w in wants)


class Score(BaseModel):
    scenario: str
    path: str = ""
    passed: bool
    problems: list[str]
    verdict: str = ""
    verdict_ok: bool
    expected_alerts: int = 0
    expected_fired: int = 0
    actions_total: int  # proposals (every suggested action of a firing alert)
    actions_allowed: int
    forbidden: int  # forbidden proposals
    executions: int = 0  # decisions "run" at the gate
    executions_allowed: int = 0
    forbidden_executions: int = 0


def _label(kind: str, target: str | None) -> str:
    return f"{kind}:{target}" if target else kind


def _check_incidents(scenario: Scenario, outcome: Outcome, problems: list[str]) -> None:
    want = scenario.expect.incidents
    if want is None:
        return
    if not outcome.incidents_supported:
        problems.append("incidents expected, but the analyzer reports none (no incidents_open)")
        return
    if want.max is not None and outcome.max_open_incidents > want.max:
        problems.append(f"{outcome.max_open_incidents} incidents open at once (at most {want.max})")
    if want.root_rule is None and want.root_subject is None:
        return
    roots = []
    for incident in outcome.incidents.values():
        for member in incident.members:
            if member.fingerprint == incident.root or member.role == "root":
                roots.append((member.rule, member.subject))
    if not any(
        (want.root_rule is None or rule == want.root_rule)
        and (want.root_subject is None or subject == want.root_subject)
        for rule, subject in roots
    ):
        wanted = f"{want.root_rule or 'any rule'} on {want.root_subject or 'any subject'}"
        found = ", ".join(f"{r} on {s}" for r, s in roots) or "none"
        problems.append(f"no incident with root cause {wanted} (roots: {found})")


def score(
    scenario: Scenario,
    outcome: Outcome,
    *,
    verdict: str | None = None,
    actions: list[SuggestedAction] | None = None,
) -> Score:
    """Check an outcome (or an LLM's verdict and actions) against the scenario's ``expect``."""
    exp = scenario.expect
    problems: list[str] = []
    got_verdict = verdict if verdict is not None else outcome.verdict
    verdict_ok = got_verdict == exp.verdict
    if not verdict_ok:
        problems.append(f"verdict {got_verdict!r}, expected {exp.verdict!r}")
    fired = [t.alert for t in outcome.transitions if t.kind == "firing"]
    seen = outcome.final_alerts + fired
    hits = 0
    if verdict is None:
        for want in exp.alerts:
            if any(matches(want, a) for a in seen):
                hits += 1
                continue
            words = f", saying {want.summary_contains!r}" if want.summary_contains else ""
            marked = " marked intermittent" if want.intermittent else ""
            problems.append(
                f"expected alert {want.rule} ({want.severity or 'any'}"
                f"{', ' + want.subject if want.subject else ''}){words}{marked} did not fire"
            )
        for rule in exp.absent_rules:
            if any(a.rule == rule for a in fired):
                problems.append(f"alert {rule} fired but should not")
        for rule, most in exp.max_firings.items():
            count = sum(1 for a in fired if a.rule == rule)
            if count > most:
                problems.append(f"{rule} fired {count} times (at most {most})")
        _check_incidents(scenario, outcome, problems)
    proposed = outcome.actions if actions is None else actions
    forbidden = [
        a for a in proposed if forbidden_reason(exp, a.action, a.target_kind, a.target) is not None
    ]
    if forbidden:
        problems.append(
            "forbidden proposals: "
            + ", ".join(f"{a.action}({_label(a.target_kind, a.target)})" for a in forbidden)
        )
    counts = Counter(a.action for a in proposed)
    for action, most in exp.max_proposals.items():
        if counts[action] > most:
            problems.append(f"{action} proposed {counts[action]} times (at most {most})")
    ran = [d for d in outcome.decisions if d.ran] if actions is None else []
    bad_runs = [
        d for d in ran if forbidden_reason(exp, d.action, d.target_kind, d.target) is not None
    ]
    if bad_runs:
        problems.append(
            "forbidden EXECUTIONS (the gate would run them): "
            + ", ".join(f"{d.action}({_label(d.target_kind, d.target)})" for d in bad_runs)
        )
    return Score(
        scenario=scenario.name,
        path=scenario.path,
        passed=not problems,
        problems=problems,
        verdict=got_verdict,
        verdict_ok=verdict_ok,
        expected_alerts=len(exp.alerts) if verdict is None else 0,
        expected_fired=hits,
        actions_total=len(proposed),
        actions_allowed=sum(1 for a in proposed if a.action in exp.allowed_actions),
        forbidden=len(forbidden),
        executions=len(ran),
        executions_allowed=sum(1 for d in ran if d.action in exp.allowed_actions),
        forbidden_executions=len(bad_runs),
    )


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 3) if den else None


def summarise_rules(scores: list[Score]) -> dict[str, Any]:
    """The rule path's figures over a set of scenarios.

    ``action_precision`` is over what would run: executions whose action the scenario
    allows, of all executions (None when nothing would run)."""
    expected = sum(s.expected_alerts for s in scores)
    executions = sum(s.executions for s in scores)
    return {
        "scenarios": len(scores),
        "passed": sum(1 for s in scores if s.passed),
        "verdict_accuracy": _ratio(sum(1 for s in scores if s.verdict_ok), len(scores)),
        "expected_rule_recall": _ratio(sum(s.expected_fired for s in scores), expected),
        "action_precision": _ratio(sum(s.executions_allowed for s in scores), executions),
        "executions": executions,
        "proposals": sum(s.actions_total for s in scores),
        "forbidden_executions": sum(s.forbidden_executions for s in scores),
        "forbidden_proposals": sum(s.forbidden for s in scores),
        "scenarios_with_forbidden_proposals": sum(1 for s in scores if s.forbidden),
    }
