"""The rule path of the analyzer: samples in, alert transitions out.

::

    engine = AnalysisEngine(settings=store)
    for transition in engine.observe(sample, now):
        await bus.publish(ALERT_TOPICS[transition.kind], transition.alert, sender="analyzer")

Layers run cheapest first: thresholds (with hysteresis and "for" durations), trends,
baselines, then context (expected patterns cap a severity). Alerts are deduplicated by
fingerprint; a warning that persists past ``escalate_after`` escalates, as does an alert
whose remediation ran out of things to try. No I/O happens here: it is a deterministic
function of the samples, the settings and time, which is what the scenario tests rely on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from watchkeeper.analysis.baselines import BaselineBook
from watchkeeper.analysis.checks import Check, run_checks, service_checks
from watchkeeper.analysis.levels import LevelTracker
from watchkeeper.analysis.rules import RuleRegistry
from watchkeeper.analysis.trends import TrendTracker
from watchkeeper.config import Settings
from watchkeeper.model.alerts import (
    SEVERITY_RANK,
    Alert,
    AlertState,
    Severity,
    fingerprint_of,
)
from watchkeeper.model.metrics import MetricsSample

__all__ = ["AnalysisEngine", "Transition", "verdict_of"]

TransitionKind = Literal["firing", "resolved", "escalated"]


@dataclass(frozen=True)
class Transition:
    kind: TransitionKind
    alert: Alert


def verdict_of(alerts: Iterable[Alert]) -> str:
    """healthy (nothing above info), degraded (a warning) or critical."""
    worst = max(
        (SEVERITY_RANK[a.severity] for a in alerts if a.state is AlertState.FIRING), default=-1
    )
    return "critical" if worst >= 2 else "degraded" if worst >= 1 else "healthy"


def _capped(level: Severity | None, cap: Severity | None) -> Severity | None:
    if level is None or cap is None:
        return level
    return cap if SEVERITY_RANK[level] > SEVERITY_RANK[cap] else level


class AnalysisEngine:
    """Holds the analyzer's state: levels, trends, baselines and the alerts that fire.

    ``rules`` holds the rules beyond the built-in checks (plugins'); the orchestrator
    passes the one registry it owns, a test may leave it out."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        *,
        rules: RuleRegistry | None = None,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        self._settings = settings
        s = settings()
        self.levels = LevelTracker(for_s=s.analyzer.for_seconds, clear_s=s.analyzer.clear_seconds)
        self.trends = TrendTracker()
        self.baselines = BaselineBook()
        self.alerts: dict[str, Alert] = {}
        self._new_id = id_factory or (lambda: uuid.uuid4().hex[:12])
        self._checks_seen: dict[str, Check] = {}
        self.rules = rules if rules is not None else RuleRegistry()

    # -- inputs ----------------------------------------------------------------------------
    def observe(self, sample: MetricsSample, now: float) -> list[Transition]:
        """Analyse one sample; the alert transitions it causes."""
        settings = self._settings()
        self.levels.for_s = settings.analyzer.for_seconds
        self.levels.clear_s = settings.analyzer.clear_seconds
        level_of = self._level_of
        checks = run_checks(sample, settings, level_of, now)
        if self.rules:
            checks.extend(self.rules.run(sample, settings, level_of, now))
        service_pids = {
            s.pid: s.name for s in (getattr(sample, "services", None) or ()) if s.pid is not None
        }
        checks.extend(self.trends.observe(sample, settings, now, service_pids))
        checks.extend(self.baselines.observe(sample.flat(), settings, now))
        transitions = self._apply(checks, now)
        # Subjects that vanished (a process gone, a disk unmounted) resolve their alerts.
        families_present = {c.family for c in checks}
        seen_keys = {(c.rule, c.subject) for c in checks}
        for fingerprint, alert in list(self.alerts.items()):
            family = self._checks_seen.get(fingerprint)
            if family is None or (alert.rule, alert.subject) in seen_keys:
                continue
            if family.family in families_present or family.family in ("process", "leak"):
                self.levels.update((alert.rule, alert.subject), None, now, clear_s=0)
                transitions.append(self._resolve(fingerprint, now, "no longer observed"))
        transitions.extend(self._escalate_stale(settings, now))
        return transitions

    def observe_service(self, status: Any, now: float) -> list[Transition]:
        """A service event's status, analysed at once (no waiting for the next sample)."""
        return self._apply(list(service_checks(status)), now)

    def remediation_failed(
        self, alert_id: str | None, fingerprint: str | None, now: float, why: str
    ) -> Transition | None:
        """Escalate the alert remediation gave up on (``remediation.escalated``: every
        candidate failed or was refused)."""
        for fp, alert in self.alerts.items():
            if alert.id == alert_id or fp == fingerprint:
                return self._escalate(fp, now, f"remediation failed: {why}")
        return None

    # -- state -----------------------------------------------------------------------------
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.state is AlertState.FIRING]

    def verdict(self) -> str:
        return verdict_of(self.alerts.values())

    # -- internals -------------------------------------------------------------------------
    def _level_of(self, rule: str, subject: str) -> Severity | None:
        return self.levels.current((rule, subject))

    def _apply(self, checks: list[Check], now: float) -> list[Transition]:
        out: list[Transition] = []
        for check in checks:
            key = (check.rule, check.subject)
            level = self.levels.update(
                key, check.raw, now, for_s=check.for_s, clear_s=check.clear_s
            )
            level = _capped(level, check.cap)
            fingerprint = fingerprint_of(check.rule, check.subject)
            existing = self.alerts.get(fingerprint)
            if level is None:
                if existing is not None:
                    out.append(self._resolve(fingerprint, now, "back to normal"))
                continue
            self._checks_seen[fingerprint] = check
            if existing is not None and existing.escalated:
                level = Severity.CRITICAL  # an escalated alert stays escalated until it clears
            if existing is None:
                alert = Alert(
                    id=self._new_id(),
                    fingerprint=fingerprint,
                    rule=check.rule,
                    severity=level,
                    subject=check.subject,
                    summary=check.summary,
                    evidence=check.evidence,
                    suggested_actions=list(check.suggested),
                    started_at=now,
                    updated_at=now,
                )
                self.alerts[fingerprint] = alert
                out.append(Transition("firing", alert))
            elif existing.severity != level:
                alert = existing.model_copy(
                    update={
                        "severity": level,
                        "summary": check.summary,
                        "evidence": check.evidence,
                        "suggested_actions": list(check.suggested),
                        "updated_at": now,
                    }
                )
                self.alerts[fingerprint] = alert
                out.append(Transition("firing", alert))
            else:
                # Same level: keep the evidence fresh without announcing anything.
                self.alerts[fingerprint] = existing.model_copy(
                    update={"summary": check.summary, "evidence": check.evidence}
                )
        return out

    def _resolve(self, fingerprint: str, now: float, why: str) -> Transition:
        alert = self.alerts.pop(fingerprint)
        self._checks_seen.pop(fingerprint, None)
        resolved = alert.model_copy(
            update={
                "state": AlertState.RESOLVED,
                "resolved_at": now,
                "updated_at": now,
                "evidence": {**alert.evidence, "resolution": why},
            }
        )
        return Transition("resolved", resolved)

    def _escalate(self, fingerprint: str, now: float, why: str) -> Transition | None:
        alert = self.alerts.get(fingerprint)
        if alert is None or alert.escalated:
            return None
        escalated = alert.model_copy(
            update={
                "escalated": True,
                "severity": Severity.CRITICAL,
                "updated_at": now,
                "evidence": {**alert.evidence, "escalation": why},
            }
        )
        self.alerts[fingerprint] = escalated
        return Transition("escalated", escalated)

    def _escalate_stale(self, settings: Settings, now: float) -> list[Transition]:
        out = []
        limit = settings.analyzer.escalate_after
        for fp, alert in list(self.alerts.items()):
            if (
                alert.severity is Severity.WARNING
                and not alert.escalated
                and now - alert.started_at >= limit
            ):
                transition = self._escalate(fp, now, f"warning has persisted for {limit:.0f}s")
                if transition:
                    out.append(transition)
        return out
