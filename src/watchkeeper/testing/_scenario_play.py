"""Playing a scenario: its samples and service events into the ``AnalysisEngine``, each
firing alert's proposal into the policy gate's replay, and what that leaves (the
``Outcome``): transitions, the verdict over time, the gate's decisions, the incidents.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from watchkeeper.analysis.engine import AnalysisEngine, Transition
from watchkeeper.config import Settings
from watchkeeper.model.alerts import Alert
from watchkeeper.model.incidents import Incident
from watchkeeper.model.services import ServiceEvent
from watchkeeper.testing._scenario_format import (
    Scenario,
    ScenarioError,
    load_scenarios,
    scenario_settings,
    start_time,
)
from watchkeeper.testing._scenario_gate import GateReplay
from watchkeeper.testing._scenario_samples import Step, timeline
from watchkeeper.testing._scenario_score import Outcome, expected_met, score, summarise_rules

__all__ = ["Player", "play_rules", "score_rules"]


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


class Player:
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
        #: The incident changes of the last step, as the analyzer agent takes them.
        self.incident_changes: list[tuple[str, Incident]] = []

    def _take(self, transitions: list[Transition], t: float) -> list[Transition]:
        assert self.gate is not None
        self.outcome.transitions.extend(transitions)
        for tr in transitions:
            if tr.kind == "resolved":
                self.gate.on_resolved(tr.alert.fingerprint)
            if tr.kind in ("firing", "escalated"):
                self.outcome.actions.extend(tr.alert.suggested_actions)
                # An escalated alert is seen at its new severity (an expected critical may
                # be reached only by escalation).
                self._seen.append(tr.alert)
            if tr.kind == "firing":
                self.gate.on_alert(tr.alert)
        if self.outcome.established_at is None and expected_met(self.scenario, self._seen):
            self.outcome.established_at = t
        return transitions

    def _gave_up(self, t: float) -> list[Transition]:
        """The gate's give-ups and run-out chains, told to the analyzer as the remediator
        tells it (``remediation.gave_up``, ``remediation.escalated``)."""
        assert self.gate is not None
        engine: Any = self.engine
        out: list[Transition] = []
        for giveup in self.gate.take_gave_up():
            if hasattr(engine, "remediation_gave_up"):
                told = engine.remediation_gave_up(
                    giveup.target, giveup.failures, giveup.reason, self.t0 + t
                )
                out += self._take(told, t)
        for failed, detail in self.gate.take_escalations():
            escalated = engine.remediation_failed(
                failed.alert_id, failed.fingerprint, self.t0 + t, detail
            )
            if escalated is not None:
                out += self._take([escalated], t)
        return out

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
            self.incident_changes = list(engine.take_incident_changes())
            for _kind, incident in self.incident_changes:
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
            out += self._gave_up(t_event)
            status = _event_status(event, self.settings)
            if status is not None:
                out += self._take(self.engine.observe_service(status, t_event + self.t0), t_event)
        self.gate.advance(step.t, step.world)
        out += self._gave_up(step.t)
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
    player = Player(scenario)
    for step in timeline(scenario):
        player.step(step)
    return player.finish()


def score_rules(directory: Path) -> dict[str, Any]:
    """Every scenario in ``directory`` through the rule path: the figures and each score."""
    scores = []
    for scenario in load_scenarios(directory):
        try:
            outcome = play_rules(scenario)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            # A value the format let through but a sample cannot hold (a percentage as
            # text, a path to nothing): one line naming the file.
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ScenarioError(f"{scenario.path}: cannot be played: {first}") from None
        scores.append(score(scenario, outcome))
    return {
        "summary": summarise_rules(scores),
        "scenarios": [s.model_dump() for s in scores],
    }
