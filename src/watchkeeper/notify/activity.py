"""The activity log's words: one line per notable event, in the chosen personality.

``ActivityLines`` turns what the team hears (alert steps, audit records, restarts, agent
and service events, analyses, configuration changes, system start and stop, health
changes) into a :class:`Line`: its text, activity severity and subject. It only
composes; whoever holds the line logs it and keeps it::

    lines = ActivityLines(lambda: settings.personality)
    line = lines.alert(alert, "firing", at=message.timestamp)
    line.text, line.severity, line.subject
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from watchkeeper.model.actions import ActionRecord
from watchkeeper.model.activity import ActivitySeverity
from watchkeeper.model.alerts import Alert, Severity
from watchkeeper.model.events import HealthPoint
from watchkeeper.model.incidents import Incident
from watchkeeper.model.services import ServiceEvent
from watchkeeper.model.text import NOTIFICATION, clean
from watchkeeper.notify.phrases import (
    action_facts,
    alert_facts,
    analysis_facts,
    incident_facts,
    service_facts,
    speak,
)
from watchkeeper.personality import say

__all__ = ["ActionLine", "ActivityLines", "Line"]

_ALERT_SEVERITY: dict[Severity, ActivitySeverity] = {
    Severity.INFO: "info",
    Severity.WARNING: "warning",
    Severity.CRITICAL: "critical",
}
_HEALTH_SEVERITY: dict[str, ActivitySeverity] = {
    "healthy": "info",
    "degraded": "warning",
    "critical": "critical",
}


@dataclass(frozen=True, slots=True)
class Line:
    """One activity line: the words, how serious, and what it is about."""

    text: str
    severity: ActivitySeverity = "info"
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class ActionLine(Line):
    """An audit record's line, with the plain words people are told when it failed."""

    plain: str = ""


class ActivityLines:
    """Composes activity lines; ``personality`` is read at each line, so a live change
    of the setting applies from the next line on."""

    def __init__(self, personality: Callable[[], str]) -> None:
        self._personality = personality

    def say(self, event: str, **facts: Any) -> str:
        """The phrase ``event`` with ``facts``, in the personality chosen now."""
        return speak(event, self._personality(), **facts)

    def alert(self, alert: Alert, kind: str, at: float) -> Line:
        """One step (``firing``, ``changed``, ``escalated``, ``resolved``) of an alert."""
        phrase, facts = alert_facts(alert, kind, at)
        severity = "info" if kind == "resolved" else _ALERT_SEVERITY[alert.severity]
        return Line(self.say(phrase, **facts), severity, alert.subject)

    def incident(self, incident: Incident, kind: str, at: float) -> Line:
        """``incident.opened``, ``.updated`` or ``.resolved``."""
        phrase, facts = incident_facts(incident, kind, at)
        severity = "info" if kind == "resolved" else _ALERT_SEVERITY[incident.severity]
        return Line(self.say(phrase, **facts), severity, clean(incident.key, NOTIFICATION, 120))

    def action(self, record: ActionRecord, outcome: str) -> ActionLine:
        """An audit record that reached ``outcome`` (its own, or ``gave_up``)."""
        phrase, severity, facts = action_facts(record, outcome)
        plain = speak(phrase, "plain", **facts)
        return ActionLine(self.say(phrase, **facts), severity, record.target, plain)

    def restart(self, agent: str, reason: str, restarts: int) -> Line:
        """The supervisor restarted ``agent``."""
        text = self.say("agent_restarted", agent=agent, reason=reason, restarts=restarts)
        return Line(text, "warning", None)

    def agent_event(self, agent: str, kind: str, detail: str) -> Line:
        """``agent.<kind>`` from a plugin or another agent; ``detail`` cleaned already."""
        extra = f": {detail}" if detail else ""
        severity: ActivitySeverity = "warning" if kind in ("failed", "degraded") else "info"
        return Line(self.say("agent_event", agent=agent, kind=kind, detail=extra), severity)

    def service(self, event: ServiceEvent) -> Line:
        """A service started, exited, turned healthy or unhealthy, ..."""
        phrase, severity, facts = service_facts(event)
        return Line(self.say(phrase, **facts), severity, event.name)

    def llm_status(self, status: str, ok: bool) -> Line:
        """The LLM advisor's state in words (already cleaned of anything untrusted)."""
        return Line(clean(status, NOTIFICATION, 160), "info" if ok else "warning", "llm")

    def analysis(self, data: Mapping[str, Any]) -> Line:
        """An ``analysis.result``: the rules' verdict, or the model's."""
        facts = analysis_facts(data)
        if data.get("source", "rules") == "rules":
            phrase = "analysis_fallback" if data.get("fallback_reason") else "analysis_rules"
            facts["reason"] = clean(str(data.get("fallback_reason") or ""), NOTIFICATION, 120)
        else:
            phrase = "analysis"
        subject = data.get("alert_id") or data.get("fingerprint")
        return Line(self.say(phrase, **facts), "info", str(subject) if subject else None)

    def config_changed(self, actor: str, changes: object) -> Line:
        """Someone changed the settings; ``changes`` maps the changed keys."""
        keys = ", ".join(sorted(changes)) if isinstance(changes, Mapping) else "?"
        return Line(say("config_changed", self._personality(), actor=actor, keys=keys))

    def system(self, kind: str, version: str) -> Line:
        """``system.started``, ``system.stopped`` or another system event."""
        if kind == "started":
            return Line(self.say("system_started", version=version))
        if kind == "stopped":
            return Line(self.say("system_stopped"))
        return Line(self.say("system_event", kind=kind))

    def health(self, record: HealthPoint) -> Line:
        """The health moved to a new status or score band."""
        reasons = "; ".join(record.reasons)
        event = "health_changed" if reasons else "health_ok"
        text = self.say(event, status=record.status, score=record.score, reasons=reasons)
        return Line(text, _HEALTH_SEVERITY[record.status])

    def gave_up(self, channel: str, key: str, error: str) -> Line:
        """A channel gave up delivering a notice."""
        text = self.say("notify_gave_up", channel=channel, key=key, error=error)
        return Line(text, "warning", channel)
