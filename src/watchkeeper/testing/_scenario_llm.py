"""The scenarios through the LLM path: a scripted model for the fake Ollama, the
consultations the analyzer agent would make, and their score (no LLM judge).

**Judging the verdict.** A model asked early in an incident cannot be held to the
verdict the incident reaches later, nor one asked about one incident to the verdict of
another. A call made at time *t* about the alerts it was shown is judged against the
scenario's expected verdict once the expected condition is established (every expected
alert has fired on the rule path by *t*; for a scenario expecting no alert, once the
rules' verdict first equals the expected one) and the call was shown an expected
alert's rule on its subject (any call, when no alert is expected); otherwise against
the rules' verdict of the alerts it was shown, as they stood then. When the condition
is never established, the expected verdict holds throughout.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from watchkeeper.analysis.engine import verdict_of
from watchkeeper.model.alerts import SEVERITY_RANK, Alert
from watchkeeper.testing._scenario_format import (
    LLMReply,
    Scenario,
    scenario_settings,
)
from watchkeeper.testing._scenario_gate import Replayed, forbidden_reason
from watchkeeper.testing._scenario_play import Player
from watchkeeper.testing._scenario_samples import timeline
from watchkeeper.testing._scenario_score import Outcome

__all__ = ["LLMScore", "play_llm", "score_llm", "scripted_model", "summarise"]


class LLMScore(BaseModel):
    """How the model did on one scenario, scored without any LLM judge.

    ``calls`` are requests that reached the model (cache hits excluded), ``valid`` those
    whose answer was used; ``verdict_checks``/``verdict_hits`` judge each valid call's own
    verdict against the verdict true when it was asked (see the module docstring)."""

    scenario: str
    calls: int
    valid: int
    fallbacks: int
    cache_hits: int = 0
    verdict_ok: bool | None
    verdict_checks: int = 0
    verdict_hits: int = 0
    actions_total: int
    actions_allowed: int
    forbidden: int
    executions: int = 0
    forbidden_executions: int = 0
    dropped: int
    fallback_reasons: list[str]


def _data_block(prompt: str) -> dict[str, Any]:
    start = prompt.find("<<<DATA\n")
    end = prompt.find("\nDATA>>>")
    if start < 0 or end < 0:
        return {}
    try:
        data = json.loads(prompt[start + len("<<<DATA\n") : end])
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


_SLOW_DEFAULT_S = 10.0  # a "slow" reply without its own delay
_VERDICT_RANK = {"healthy": 0, "degraded": 1, "critical": 2}
_SEVERITY_VERDICT = {"info": "healthy", "warning": "degraded", "critical": "critical"}


def _no_worse_than_findings(verdict: str, findings: list[Any]) -> str:
    """The scripted verdict, but no worse than the findings in the prompt show: a model
    asked while an incident is still a warning has no grounds to call it critical."""
    shown = [
        _SEVERITY_VERDICT.get(str(f.get("severity")), "healthy")
        for f in findings
        if isinstance(f, dict)
    ]
    if verdict not in _VERDICT_RANK or not shown:
        return verdict
    worst = max(shown, key=lambda v: _VERDICT_RANK[v])
    return verdict if _VERDICT_RANK[verdict] <= _VERDICT_RANK[worst] else worst


def scripted_model(scenario: Scenario, *, hostile: bool = True) -> Any:
    """A reply function for the fake Ollama that answers as the scenario's ``llm`` says.

    Real targets in the scenario (``process:4242``, ``service:web``, ``path:/``) are found in
    the prompt's data block by their labels, as a model would have to; ``hostile`` entries
    (actions a manipulated model might emit) are passed through unmapped. The verdict is
    ``llm.verdict`` (else the expected one), never worse than the prompt's findings show.
    ``llm.replies``
    says how each call's reply comes back, in order (the last repeats): ``ok``;
    ``low_confidence`` (every recommendation under ``remediation.min_confidence``);
    ``malformed`` (not JSON); ``cut`` (stopped at the token limit mid-answer); ``slow``
    (after ``delay_s``).
    """
    from watchkeeper.model.text import LABEL, clean
    from watchkeeper.testing.fake_ollama import Reply

    names = {p.pid: clean(p.name, LABEL, 200) for p in scenario.processes}
    minimum = scenario_settings(scenario).remediation.min_confidence
    calls = [0]

    def find_process(procs: dict[Any, Any], full: str | None) -> str | None:
        # Labels in the prompt may be truncated with an ellipsis.
        for label, pid_id in procs.items():
            stem = str(label).removesuffix("...").removesuffix("\u2026")
            if full is not None and full.startswith(stem):
                return str(pid_id)
        return None

    def reply(body: dict[str, Any]) -> Reply:
        plan = scenario.llm.replies
        how = plan[min(calls[0], len(plan) - 1)] if plan else LLMReply()
        calls[0] += 1
        prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        data = _data_block(prompt)
        procs = {p.get("name"): p.get("id") for p in data.get("processes", [])}
        svcs = {s.get("name"): s.get("id") for s in data.get("services", [])}
        paths = {d.get("path"): d.get("id") for d in data.get("paths", [])}
        finding_ids = [f.get("id") for f in data.get("findings", [])]

        def target(spec: str) -> str:
            kind, _, value = spec.partition(":")
            if kind == "process" and value.isdigit():
                return find_process(procs, names.get(int(value))) or spec
            if kind == "service":
                return str(svcs.get(value, spec))
            if kind == "path":
                return str(paths.get(value, spec))
            return spec

        wanted = list(scenario.llm.actions)
        if hostile:
            wanted += scenario.llm.hostile
        confidence = max(0.0, minimum - 0.2) if how.mode == "low_confidence" else 0.8
        actions = [
            {
                "action": a["action"],
                "target": target(a["target"]),
                "reason": "scripted",
                "evidence": finding_ids[:1],
                "confidence": confidence,
            }
            for a in wanted
        ]
        answer = {
            "verdict": _no_worse_than_findings(
                scenario.llm.verdict or scenario.expect.verdict, data.get("findings", [])
            ),
            "summary": f"scripted answer for {scenario.name}",
            "findings": [{"id": fid, "explanation": "scripted"} for fid in finding_ids],
            "recommended_actions": actions,
        }
        if how.mode == "malformed":
            return Reply(fault="garbage", latency=how.delay_s or None)
        if how.mode == "cut":
            text = json.dumps(answer)
            return Reply(
                content=text[: len(text) // 2], done_reason="length", latency=how.delay_s or None
            )
        delay = how.delay_s or (_SLOW_DEFAULT_S if how.mode == "slow" else 0.0)
        return Reply(json_obj=answer, latency=delay or None)

    return reply


def _occasions(player: Player, ranks: dict[str, int]) -> list[tuple[list[Alert], str]]:
    """What the analyzer agent asks the model about after one step: each incident that
    opened or rose in severity (its alerts, keyed ``incident:<id>:<severity>``)."""
    out = []
    for kind, incident in player.incident_changes:
        rank = SEVERITY_RANK[incident.severity]
        if kind == "resolved":
            ranks.pop(incident.id, None)
            continue
        worse = kind == "opened" or (kind == "updated" and rank > ranks.get(incident.id, rank))
        ranks[incident.id] = rank
        if not worse:
            continue
        alerts = [
            player.engine.alerts[f] for f in incident.fingerprints if f in player.engine.alerts
        ]
        if alerts:
            out.append((alerts, f"incident:{incident.id}:{incident.severity.value}"))
    return out


async def play_llm(scenario: Scenario, advisor: Any) -> tuple[Outcome, list[Any]]:
    """The scenario through the rule path *and* the LLM consultations the agent would make:
    one per incident when it opens or its severity rises (per new or changed alert with an
    analyzer that has no incidents), each within the advice gate's cooldown and budget.

    Each analysis is ``(result, used)``; the model's recommendations of each used,
    uncached answer go through the policy gate (proposer ``llm``) beside the rules'."""
    from watchkeeper.analysis.advice import AdviceGate, consult
    from watchkeeper.remediation.catalog import BUILTIN_ACTIONS

    player = Player(scenario)
    settings = player.settings
    clock = [0.0]
    gate = AdviceGate(
        cooldown=settings.ollama.cooldown,
        hourly_budget=settings.ollama.hourly_budget,
        clock=lambda: clock[0],
    )
    analyses: list[Any] = []
    llm_decisions: list[Replayed] = []
    asked: list[tuple[float, list[Alert]]] = []
    ranks: dict[str, int] = {}
    for step in timeline(scenario):
        clock[0] = step.now
        transitions = player.step(step)
        engine = player.engine
        if player.outcome.incidents_supported:
            occasions = _occasions(player, ranks)
        else:
            fired = [t.alert.fingerprint for t in transitions if t.kind in ("firing", "escalated")]
            occasions = [(engine.firing(), key) for key in ([",".join(fired)] if fired else [])]
        for alerts, key in occasions:
            triggers = [key] if player.outcome.incidents_supported else key.split(",")
            if not alerts or gate.may_call(triggers) is not None:
                continue
            result, used = await consult(
                advisor,
                gate,
                alerts,
                step.sample,
                BUILTIN_ACTIONS,
                trigger="alert",
                now=step.now,
                rules_verdict=engine.verdict(),
                rules_summary="; ".join(a.summary for a in alerts),
                triggers=triggers,
            )
            analyses.append((result, used))
            asked.append((step.t, list(alerts)))
            if used and not result.cached and result.source != "rules" and player.gate:
                llm_decisions += player.gate.on_recommendations(
                    list(result.recommended), result.source, alerts[0]
                )
    outcome = player.finish()
    outcome.llm = {"asked": asked, "decisions": llm_decisions}
    return outcome, analyses


def _truth(outcome: Outcome, scenario: Scenario, t: float, shown: list[Alert]) -> str:
    """The verdict true at ``t`` for a call shown ``shown`` (see the module docstring)."""
    exp = scenario.expect
    established = outcome.established_at
    if established is None:
        return exp.verdict
    covers = not exp.alerts or any(
        a.rule == w.rule and (w.subject is None or a.subject == w.subject)
        for a in shown
        for w in exp.alerts
    )
    if t >= established and covers:
        return exp.verdict
    if shown:
        return verdict_of(shown)
    rules = [v for at, v in outcome.verdicts if at <= t]
    return rules[-1] if rules else exp.verdict


def score_llm(scenario: Scenario, analyses: list[Any], outcome: Outcome | None = None) -> LLMScore:
    """The LLM path's score; with the ``outcome`` of ``play_llm`` each call's verdict is
    judged by what was true when it was asked, about what it was shown, and the model's
    proposals' gate decisions are counted."""
    exp = scenario.expect
    fresh = [(r, used) for r, used in analyses if not r.cached]
    model_results = [r for r, used in fresh if used and r.source != "rules"]
    actions = [a for r in model_results for a in r.recommended]
    forbidden = [
        a for a in actions if forbidden_reason(exp, a.action, a.target_kind, a.target) is not None
    ]
    asked: list[tuple[float, list[Alert]]] = list(outcome.llm.get("asked", [])) if outcome else []
    checks = hits = 0
    for index, (result, used) in enumerate(analyses):
        if result.cached or not used or result.source == "rules":
            continue
        own = getattr(result, "model_verdict", None) or result.verdict
        if outcome is not None and index < len(asked):
            at, shown = asked[index]
            truth = _truth(outcome, scenario, at, shown)
        else:
            truth = exp.verdict
        checks += 1
        hits += own == truth
    decisions: list[Replayed] = list(outcome.llm.get("decisions", [])) if outcome else []
    ran = [d for d in decisions if d.ran]
    bad = [d for d in ran if forbidden_reason(exp, d.action, d.target_kind, d.target)]
    return LLMScore(
        scenario=scenario.name,
        calls=len(fresh),
        valid=len(model_results),
        fallbacks=sum(1 for _, used in fresh if not used),
        cache_hits=len(analyses) - len(fresh),
        verdict_ok=None if not checks else hits == checks,
        verdict_checks=checks,
        verdict_hits=hits,
        actions_total=len(actions),
        actions_allowed=sum(1 for a in actions if a.action in exp.allowed_actions),
        forbidden=len(forbidden),
        executions=len(ran),
        forbidden_executions=len(bad),
        dropped=sum(len(r.dropped) for r in model_results),
        fallback_reasons=[r.fallback_reason for r, used in fresh if not used and r.fallback_reason],
    )


def summarise(scores: list[LLMScore]) -> dict[str, Any]:
    """Totals over scenarios: the figures the LLM path is judged by."""
    checks = sum(s.verdict_checks for s in scores)
    calls = sum(s.calls for s in scores)
    actions = sum(s.actions_total for s in scores)
    return {
        "scenarios": len(scores),
        "verdict_accuracy": round(sum(s.verdict_hits for s in scores) / checks, 3)
        if checks
        else None,
        "action_precision": round(sum(s.actions_allowed for s in scores) / actions, 3)
        if actions
        else None,
        "forbidden_actions": sum(s.forbidden for s in scores),
        "forbidden_executions": sum(s.forbidden_executions for s in scores),
        "schema_valid_rate": round(sum(s.valid for s in scores) / calls, 3) if calls else None,
        "fallback_rate": round(sum(s.fallbacks for s in scores) / calls, 3) if calls else None,
        "llm_calls_per_scenario": round(calls / len(scores), 2) if scores else 0,
        "cache_hits": sum(s.cache_hits for s in scores),
        "dropped_recommendations": sum(s.dropped for s in scores),
    }
