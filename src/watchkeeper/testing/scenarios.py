"""Analyzer scenarios: a host situation described in a file, played through the analyzer.

A scenario file (JSON) gives a base host, timed changes and what must come out::

    {"name": "runaway process", "steps": 30, "interval": 5,
     "base": {"cpu": 20, "memory": 40},
     "changes": [{"from": 0, "set": {"cpu": 97}}],
     "processes": [{"pid": 4242, "name": "spinner", "cpu": 99, "rss_mb": 20}],
     "expect": {"verdict": "critical", "alerts": [{"rule": "runaway_process"}],
                "allowed_actions": ["renice_process", "kill_process"],
                "forbidden_actions": ["restart_service"]}}

Every field is described in docs/scenarios.md. ``build_samples`` turns a scenario into
real ``MetricsSample`` values (``timeline`` adds the service events between them);
``play_rules`` runs them through the ``AnalysisEngine`` and replays each firing alert's
proposal through the real policy gate against the scenario's own processes and services;
``score`` checks the outcome against ``expect`` and ``summarise_rules`` gives the set's
figures. The same scenarios run through the LLM path with ``play_llm`` (against the fake
Ollama in tests, or a real one)::

    python -m watchkeeper.testing.scenarios --rules [DIR] [--json]   # the rule path
    python -m watchkeeper.testing.scenarios [--ollama URL] [DIR]      # the LLM path

**Judging the LLM's verdict.** A model asked early in an incident cannot be held to the
verdict the incident reaches later. A call made at time *t* is judged against the
scenario's expected verdict once the expected condition is established (every expected
alert has fired on the rule path by *t*; for a scenario expecting no alert, once the
rules' verdict first equals the expected one); before that, against the rules' verdict
at *t*. When the condition is never established, the expected verdict holds throughout.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pydantic import BaseModel

from watchkeeper.analysis.engine import AnalysisEngine, Transition
from watchkeeper.config import Settings
from watchkeeper.model.alerts import Alert
from watchkeeper.model.services import ServiceEvent
from watchkeeper.testing._scenario_format import (
    Expect,
    ExpectedAlert,
    LLMReply,
    ProcSpec,
    Scenario,
    ScenarioError,
    ServiceSpecLite,
    load_scenarios,
    scenario_settings,
    start_time,
)
from watchkeeper.testing._scenario_gate import GateReplay, Replayed, forbidden_reason
from watchkeeper.testing._scenario_samples import Step, build_samples, timeline
from watchkeeper.testing._scenario_score import (
    Outcome,
    Score,
    expected_met,
    score,
    summarise_rules,
)

__all__ = [
    "Expect",
    "ExpectedAlert",
    "LLMScore",
    "Outcome",
    "ProcSpec",
    "Replayed",
    "Scenario",
    "ScenarioError",
    "Score",
    "ServiceSpecLite",
    "build_samples",
    "load_scenarios",
    "main",
    "play_llm",
    "play_rules",
    "scenario_settings",
    "score",
    "score_llm",
    "scripted_model",
    "start_time",
    "summarise",
    "summarise_rules",
    "timeline",
]


def _event_status(event: ServiceEvent, settings: Settings) -> SimpleNamespace | None:
    """A service event as the analyzer agent hands it to ``observe_service``."""
    critical = any(s.name == event.name and s.critical for s in settings.services)
    if event.kind == "exited":
        state, detail = "failed", event.detail or "exited"
    elif event.kind in ("started", "healthy"):
        state, detail = "running", ""
    else:
        return None
    return SimpleNamespace(
        name=event.name,
        state=state,
        critical=critical,
        detail=detail,
        healthy=None,
        probe_detail=None,
        last_exit_code=event.exit_code,
        last_exit_signal=event.exit_signal,
    )


class _Player:
    """Plays a scenario: samples and service events into the engine, firing alerts'
    proposals into the gate, the verdict timeline and the incidents kept."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.settings = scenario_settings(scenario)
        settings = self.settings
        self.engine = AnalysisEngine(lambda: settings)
        self.outcome = Outcome()
        self.outcome.incidents_supported = hasattr(self.engine, "incidents_open")
        self.t0 = start_time(scenario)
        self.gate: GateReplay | None = None
        self._seen: list[Alert] = []
        self._logs_until = -math.inf

    def _take(self, transitions: list[Transition], t: float) -> list[Transition]:
        assert self.gate is not None
        self.outcome.transitions.extend(transitions)
        for tr in transitions:
            if tr.kind in ("firing", "escalated"):
                self.outcome.actions.extend(tr.alert.suggested_actions)
            if tr.kind == "firing":
                self._seen.append(tr.alert)
                self.gate.on_alert(tr.alert)
        if self.outcome.established_at is None and expected_met(self.scenario, self._seen):
            self.outcome.established_at = t
        return transitions

    def _incidents(self) -> None:
        engine: Any = self.engine
        if not self.outcome.incidents_supported:
            return
        self.outcome.max_open_incidents = max(
            self.outcome.max_open_incidents, len(engine.incidents_open())
        )
        for incident in engine.incidents_open():
            self.outcome.incidents[incident.id] = incident
        if hasattr(engine, "take_incident_changes"):
            for _kind, incident in engine.take_incident_changes():
                self.outcome.incidents[incident.id] = incident

    def step(self, step: Step) -> list[Transition]:
        """One sample: the events before it at their moments, then the sample."""
        if self.gate is None:
            self.gate = GateReplay(self.settings, step.services, self.t0)
        out: list[Transition] = []
        for line in self.scenario.logs:  # log lines are evidence for the rules too
            if line.service is not None and self._logs_until < line.at <= step.t:
                self.engine.observe_log(line.service, line.line)
        self._logs_until = step.t
        for event in step.events:
            t_event = event.at.timestamp() - self.t0
            self.gate.advance(t_event, self.gate.world)
            self.gate.on_service_event(event)
            status = _event_status(event, self.settings)
            if status is not None:
                out += self._take(self.engine.observe_service(status, t_event + self.t0), t_event)
        self.gate.advance(step.t, step.world)
        started = time.perf_counter()
        transitions = self.engine.observe(step.sample, step.now)
        self.outcome.analysis_ms.append((time.perf_counter() - started) * 1000)
        out += self._take(transitions, step.t)
        verdict = self.engine.verdict()
        quiet = not self.scenario.expect.alerts and verdict == self.scenario.expect.verdict
        if self.outcome.established_at is None and quiet:
            self.outcome.established_at = step.t
        self.outcome.verdicts.append((step.t, verdict))
        self._incidents()
        return out

    def finish(self) -> Outcome:
        self.outcome.final_alerts = self.engine.firing()
        self.outcome.verdict = self.engine.verdict()
        if self.gate is not None:
            self.outcome.decisions = list(self.gate.records)
        return self.outcome


def play_rules(scenario: Scenario) -> Outcome:
    """Run the scenario through the rule path, its proposals through the policy gate."""
    player = _Player(scenario)
    for step in timeline(scenario):
        player.step(step)
    return player.finish()


def score_rules(directory: Path) -> dict[str, Any]:
    """Every scenario in ``directory`` through the rule path: the figures and each score."""
    scores = [score(s, play_rules(s)) for s in load_scenarios(directory)]
    return {
        "summary": summarise_rules(scores),
        "scenarios": [s.model_dump() for s in scores],
    }


# -- the LLM path -------------------------------------------------------------------------


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


async def play_llm(scenario: Scenario, advisor: Any) -> tuple[Outcome, list[Any]]:
    """The scenario through the rule path *and* the LLM consultations the agent would make.

    Each analysis is ``(result, used)``; the model's recommendations of each used,
    uncached answer go through the policy gate (proposer ``llm``) beside the rules'."""
    from watchkeeper.analysis.advice import AdviceGate, consult
    from watchkeeper.remediation.catalog import BUILTIN_ACTIONS

    player = _Player(scenario)
    settings = player.settings
    clock = [0.0]
    gate = AdviceGate(
        cooldown=settings.ollama.cooldown,
        hourly_budget=settings.ollama.hourly_budget,
        clock=lambda: clock[0],
    )
    analyses: list[Any] = []
    llm_decisions: list[Replayed] = []
    asked: list[tuple[float, Any]] = []
    for step in timeline(scenario):
        clock[0] = step.now
        transitions = player.step(step)
        engine = player.engine
        triggers = [t.alert.fingerprint for t in transitions if t.kind in ("firing", "escalated")]
        if not triggers:
            continue
        alerts = engine.firing()
        if not alerts or gate.may_call(triggers) is not None:
            continue
        summary = "; ".join(a.summary for a in alerts)
        result, used = await consult(
            advisor,
            gate,
            alerts,
            step.sample,
            BUILTIN_ACTIONS,
            trigger="alert",
            now=step.now,
            rules_verdict=engine.verdict(),
            rules_summary=summary,
            triggers=triggers,
        )
        analyses.append((result, used))
        asked.append((step.t, result))
        if used and not result.cached and result.source != "rules" and player.gate is not None:
            first = alerts[0] if alerts else None
            llm_decisions += player.gate.on_recommendations(
                list(result.recommended), result.source, first
            )
    outcome = player.finish()
    outcome.llm = {"asked_at": [t for t, _ in asked], "decisions": llm_decisions}
    return outcome, analyses


def _truth(outcome: Outcome, scenario: Scenario, t: float) -> str:
    """The verdict true at ``t`` (see the module docstring)."""
    established = outcome.established_at
    if established is None or t >= established:
        return scenario.expect.verdict
    rules = [v for at, v in outcome.verdicts if at <= t]
    return rules[-1] if rules else scenario.expect.verdict


def score_llm(scenario: Scenario, analyses: list[Any], outcome: Outcome | None = None) -> LLMScore:
    """The LLM path's score; with the ``outcome`` of ``play_llm`` each call's verdict is
    judged at its own time and the model's proposals' gate decisions are counted."""
    exp = scenario.expect
    fresh = [(r, used) for r, used in analyses if not r.cached]
    model_results = [r for r, used in fresh if used and r.source != "rules"]
    actions = [a for r in model_results for a in r.recommended]
    forbidden = [
        a for a in actions if forbidden_reason(exp, a.action, a.target_kind, a.target) is not None
    ]
    checks = hits = 0
    for result in model_results:
        own = getattr(result, "model_verdict", None) or result.verdict
        at = result.at - start_time(scenario)
        truth = _truth(outcome, scenario, at) if outcome is not None else exp.verdict
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


async def _main_async(
    directory: Path, url: str | None, model: str, timeout: float
) -> dict[str, Any]:
    from watchkeeper.llm import OllamaAdvisor

    scenarios = load_scenarios(directory)
    scores: list[LLMScore] = []
    fake = None
    if url is None:
        from watchkeeper.testing.fake_ollama import FakeOllama

        fake = FakeOllama(models=[model])
        fake.start()
        url = fake.url
    try:
        for scenario in scenarios:
            if fake is not None:
                fake.set_reply_fn(scripted_model(scenario))
            async with OllamaAdvisor(url, model, timeout=timeout, retry_delay=0.5) as advisor:
                outcome, analyses = await play_llm(scenario, advisor)
            scores.append(score_llm(scenario, analyses, outcome))
    finally:
        if fake is not None:
            fake.stop()
    return {
        "model": model,
        "server": "fake" if fake else url,
        "summary": summarise(scores),
        "scenarios": [s.model_dump() for s in scores],
    }


def _print_rules(result: dict[str, Any]) -> None:
    for entry in result["scenarios"]:
        mark = "PASS" if entry["passed"] else "FAIL"
        print(f"{mark}  {entry['path'] or entry['scenario']}: {entry['scenario']}")
        for problem in entry["problems"]:
            print(f"        - {problem}")
    summary = result["summary"]
    print()
    print(f"scenarios passed       {summary['passed']}/{summary['scenarios']}")
    for key in (
        "verdict_accuracy",
        "expected_rule_recall",
        "action_precision",
        "forbidden_executions",
        "forbidden_proposals",
    ):
        value = summary[key]
        print(f"{key:<22} {'n/a' if value is None else value}")


def main(argv: list[str] | None = None) -> int:
    """``python -m watchkeeper.testing.scenarios [--rules] [--json] [--ollama URL] [DIR]``.

    Exit status 1 when anything forbidden would have run (or, on the LLM path, was
    proposed), 2 for a directory or scenario file that cannot be read."""
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(
        prog="python -m watchkeeper.testing.scenarios",
        description="Score the analyzer scenarios: the LLM path (default) or the rule path.",
    )
    parser.add_argument("directory", nargs="?", default="tests/scenarios", type=Path)
    parser.add_argument("--rules", action="store_true", help="score the rule path only")
    parser.add_argument("--json", action="store_true", help="with --rules: print JSON")
    parser.add_argument("--ollama", help="a real Ollama URL; without it a scripted fake answers")
    parser.add_argument("--model", default="mistral")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        parser.error(f"{args.directory} is not a directory of scenario files")
    try:
        if args.rules:
            result = score_rules(args.directory)
            if args.json:
                print(json.dumps(result, indent=2))
            else:
                _print_rules(result)
            return 1 if result["summary"]["forbidden_executions"] else 0
        result = asyncio.run(_main_async(args.directory, args.ollama, args.model, args.timeout))
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    summary = result["summary"]
    return 0 if summary["forbidden_actions"] == 0 and not summary["forbidden_executions"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
