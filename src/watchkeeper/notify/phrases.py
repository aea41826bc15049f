"""Words for the activity log: each notable event as one line, plain or witty.

The witty line carries the same facts as the plain one, first, and adds at most a few
dry words; ``personality="plain"`` gives the plain line. The variant is picked by a
stable hash of the facts, so one event always reads the same::

    speak("alert_resolved", "witty", rule="cpu_high", subject="web01", duration="4m 2s")
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Literal

from watchkeeper.model.actions import ActionOutcome, ActionRecord
from watchkeeper.model.alerts import Alert
from watchkeeper.model.incidents import Incident
from watchkeeper.model.services import ServiceEvent
from watchkeeper.model.text import NOTIFICATION, clean
from watchkeeper.notify.compose import human_duration

__all__ = [
    "FAILED_OUTCOMES",
    "LINES",
    "action_facts",
    "alert_facts",
    "analysis_facts",
    "incident_facts",
    "service_facts",
    "speak",
]

Level = Literal["info", "warning"]

#: Outcomes (and the ``remediation.gave_up`` topic) that mean an action did not work.
FAILED_OUTCOMES = frozenset({ActionOutcome.FAILED.value, ActionOutcome.TIMED_OUT.value, "gave_up"})

#: event -> (plain, [witty variants])
LINES: dict[str, tuple[str, list[str]]] = {
    "alert_firing": (
        "alert firing: {severity} {rule} on {subject}: {summary}",
        [
            "🚨 {severity} {rule} on {subject}: {summary}. Passing it on.",
            "🚨 {rule} on {subject} ({severity}): {summary}. Eyes up.",
        ],
    ),
    "alert_changed": (
        "alert {rule} on {subject} is now {severity}: {summary}",
        ["📈 {rule} on {subject} is now {severity}: {summary}. Not the direction we like."],
    ),
    "alert_escalated": (
        "alert escalated: {severity} {rule} on {subject}: {summary}",
        ["⏫ {rule} on {subject} escalated ({severity}): {summary}. It did not go away."],
    ),
    "alert_resolved": (
        "alert resolved: {rule} on {subject} after {duration}",
        [
            "✅ {rule} on {subject} cleared after {duration}.",
            "✅ {rule} on {subject} is fine again after {duration}. As you were.",
        ],
    ),
    "incident_opened": (
        "incident opened: {severity} {title} ({members}){root}",
        ["🧩 {severity} incident: {title} ({members}){root}. Told as one problem."],
    ),
    "incident_updated": (
        "incident {severity}: {title} ({members}){root}",
        ["🧩 incident now {severity}: {title} ({members}){root}."],
    ),
    "incident_resolved": (
        "incident resolved: {title} after {duration}",
        ["✅ incident over: {title}, after {duration}."],
    ),
    "action_succeeded": (
        "action {action} on {target} succeeded{detail}",
        [
            "🩹 {action} on {target} worked{detail}.",
            "🩹 {action} on {target} did the trick{detail}.",
        ],
    ),
    "action_failed": (
        "action {action} on {target} {outcome}{detail}",
        ["❌ {action} on {target} {outcome}{detail}. A person may be needed."],
    ),
    "action_refused": (
        "action {action} on {target} refused by policy{detail}",
        ["🚫 {action} on {target} refused by policy{detail}. Rules are rules."],
    ),
    "action_pending": (
        "action {action} on {target} awaits approval{detail}",
        ["⏳ {action} on {target} awaits a human yes{detail}."],
    ),
    "action_other": (
        "action {action} on {target}: {outcome}{detail}",
        ["🔧 {action} on {target}: {outcome}{detail}."],
    ),
    "agent_restarted": (
        "agent {agent} restarted ({reason}); {restarts} restart(s) so far",
        ["🔁 {agent} restarted ({reason}); {restarts} so far."],
    ),
    "agent_event": (
        "agent {agent}: {kind}{detail}",
        ["🤖 {agent}: {kind}{detail}."],
    ),
    "service_event": (
        "service {name} {kind}{detail}",
        ["⚙️  service {name} {kind}{detail}."],
    ),
    "service_exited": (
        "service {name} exited{detail}",
        ["💥 service {name} exited{detail}. Uninvited."],
    ),
    "analysis": (
        "analysis by {model} in {latency}: {verdict}{summary}",
        ["🧠 {model} thought for {latency}: {verdict}{summary}."],
    ),
    "analysis_rules": (
        "analysis by the rules: {verdict}{summary}",
        ["📏 by the rules: {verdict}{summary}."],
    ),
    "analysis_fallback": (
        "analysis by the rules ({reason}): {verdict}{summary}",
        ["📏 the model did not answer ({reason}); by the rules: {verdict}{summary}."],
    ),
    "system_started": (
        "watchkeeper {version} started",
        ["🛡️  watchkeeper {version} on watch."],
    ),
    "system_stopped": (
        "watchkeeper stopping",
        ["👋 watchkeeper going off watch."],
    ),
    "system_event": (
        "system {kind}",
        ["🛡️  system {kind}."],
    ),
    "health_changed": (
        "health {status}, score {score}: {reasons}",
        ["🩺 health {status}, score {score}: {reasons}."],
    ),
    "health_ok": (
        "health {status}, score {score}",
        ["🩺 health {status}, score {score}. Quiet shift."],
    ),
    "notify_gave_up": (
        "notification {key} to {channel} failed: {error}",
        ["📪 {channel} would not take notice {key}: {error}."],
    ),
    "storage_failed": (
        "history unavailable: {error}",
        ["🗄️  cannot keep history: {error}. Carrying on without it."],
    ),
}


def speak(event: str, personality: str, **facts: Any) -> str:
    """The activity line for ``event``; plain unless ``personality == "witty"``."""
    plain, witty = LINES[event]
    if personality != "witty" or not witty:
        return plain.format(**facts)
    pick = zlib.crc32(repr(sorted(facts.items())).encode()) % len(witty)
    return witty[pick].format(**facts)


# -- facts from the bus's models, for the lines above ------------------------------------
def alert_facts(alert: Alert, kind: str, at: float) -> tuple[str, dict[str, Any]]:
    """The line for one step of an alert's life, and its facts."""
    facts: dict[str, Any] = {
        "severity": alert.severity.value,
        "rule": alert.rule,
        "subject": clean(alert.subject, NOTIFICATION, 120),
        "summary": clean(alert.summary, NOTIFICATION, 200),
    }
    if kind == "resolved":
        facts["duration"] = human_duration((alert.resolved_at or at) - alert.started_at)
    known = kind in ("firing", "changed", "escalated", "resolved")
    return (f"alert_{kind}" if known else "alert_changed"), facts


def incident_facts(incident: Incident, kind: str, at: float) -> tuple[str, dict[str, Any]]:
    """The line for ``incident.opened/updated/resolved``, and its facts."""
    count = len(incident.members)
    cause = clean(incident.root_cause, NOTIFICATION, 160)
    facts: dict[str, Any] = {
        "severity": incident.severity.value,
        "title": clean(incident.title, NOTIFICATION, 200),
        "members": f"{count} alert{'' if count == 1 else 's'}",
        "count": count,
        "root": f"; probable cause: {cause}" if cause else "",
    }
    if kind == "resolved":
        facts["duration"] = human_duration((incident.resolved_at or at) - incident.opened_at)
    known = kind in ("opened", "updated", "resolved")
    return (f"incident_{kind}" if known else "incident_updated"), facts


def action_facts(record: ActionRecord, outcome: str) -> tuple[str, Level, dict[str, Any]]:
    """(line, activity severity, facts) for an audit record with ``outcome``."""
    facts: dict[str, Any] = {
        "action": record.action,
        "target": clean(record.target or "-", NOTIFICATION, 120),
        "outcome": outcome,
        "detail": f": {clean(record.detail, NOTIFICATION, 200)}" if record.detail else "",
    }
    if outcome in FAILED_OUTCOMES:
        return "action_failed", "warning", facts
    if outcome in ("succeeded", "refused", "pending"):
        return f"action_{outcome}", "info", facts
    return "action_other", "info", facts


def service_facts(event: ServiceEvent) -> tuple[str, Level, dict[str, Any]]:
    """(line, activity severity, facts) for a service event."""
    bits = [
        f"code {event.exit_code}" if event.exit_code is not None else "",
        f"signal {event.exit_signal}" if event.exit_signal is not None else "",
        "during start-up" if event.failed_start else "",
        clean(event.detail, NOTIFICATION, 200),
    ]
    detail = ", ".join(bit for bit in bits if bit)
    facts = {"name": clean(event.name, NOTIFICATION, 120), "kind": event.kind}
    facts["detail"] = f" ({detail})" if detail else ""
    line = "service_exited" if event.kind == "exited" else "service_event"
    level: Level = "warning" if event.kind in ("exited", "unhealthy") else "info"
    return line, level, facts


def analysis_facts(data: Mapping[str, Any]) -> dict[str, Any]:
    """Facts of an ``analysis.result`` payload (a loosely typed dict)."""
    latency = data.get("latency_s")
    verdict = clean(str(data.get("verdict") or ""), NOTIFICATION, 60)
    summary = clean(str(data.get("summary") or ""), NOTIFICATION, 200)
    return {
        "model": clean(str(data.get("model") or data.get("source") or "rules"), NOTIFICATION, 60),
        "latency": f"{latency:.1f}s" if isinstance(latency, int | float) else "?",
        "verdict": verdict,
        "summary": f" — {summary}" if summary and verdict else summary,
    }
